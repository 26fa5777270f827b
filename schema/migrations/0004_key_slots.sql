-- 4: key slots. The list queries filter and sort on a handful of keys per resource. Expression indexes on
-- json_extract(body, ...) made SQLite parse every row's JSON once per index on each write, and as partial
-- indexes (one per resource and key) had their WHERE evaluated on every insert. Instead the writer copies
-- each row's values of its resource's indexed keys (at most eight, see replica/key_slots.hpp) into k1..k8
-- from the JSON it has already parsed, and eight plain indexes on (resource, kN, id) serve every resource:
-- equality and ranges are seeks, and "sort by the key, ties by id" is a walk of one index.
--
-- The slots have no declared type, so a value keeps its JSON type (INTEGER, REAL, TEXT; NULL when absent),
-- as json_extract gives it: numbers compare with numbers and text with text, as the list queries require.
-- Rows written before this version have NULL slots until the replica refills them at start (it does so for
-- every resource whose stored assignment in key_slot differs from the catalog's, which includes all of
-- them the first time). The expression indexes (named rx_...) are dropped at start too: their names were
-- computed, so plain SQL cannot list them.
ALTER TABLE record ADD COLUMN k1;
ALTER TABLE record ADD COLUMN k2;
ALTER TABLE record ADD COLUMN k3;
ALTER TABLE record ADD COLUMN k4;
ALTER TABLE record ADD COLUMN k5;
ALTER TABLE record ADD COLUMN k6;
ALTER TABLE record ADD COLUMN k7;
ALTER TABLE record ADD COLUMN k8;
CREATE INDEX record_k1 ON record (resource, k1, id);
CREATE INDEX record_k2 ON record (resource, k2, id);
CREATE INDEX record_k3 ON record (resource, k3, id);
CREATE INDEX record_k4 ON record (resource, k4, id);
CREATE INDEX record_k5 ON record (resource, k5, id);
CREATE INDEX record_k6 ON record (resource, k6, id);
CREATE INDEX record_k7 ON record (resource, k7, id);
CREATE INDEX record_k8 ON record (resource, k8, id);

-- Which key each slot of a resource holds, as the rows' slots were last filled. Compared with the catalog at
-- every start; a resource with no entry here has never had its slots filled.
CREATE TABLE key_slot (
  resource TEXT NOT NULL,
  slot     INTEGER NOT NULL,  -- 1..8: column k<slot>
  key      TEXT NOT NULL,
  PRIMARY KEY (resource, slot)
) WITHOUT ROWID;
