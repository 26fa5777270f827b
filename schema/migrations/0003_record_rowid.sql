-- 3: `record` becomes an ordinary rowid table with a unique (resource, id) index. Rows hold whole upstream
-- records (often over 1 KB); in a WITHOUT ROWID table they live inside the primary-key B-tree, which makes
-- every insert move large cells around. A rowid table keeps the key index small and the rows apart.
CREATE TABLE record_v3 (
  rid         INTEGER PRIMARY KEY,
  resource    TEXT NOT NULL,
  id          NOT NULL,
  parent_id,
  body        TEXT NOT NULL,
  body_hash   INTEGER NOT NULL,
  nested      TEXT,
  nested_hash INTEGER,
  nested_at   INTEGER,
  updated_at  INTEGER NOT NULL
);
INSERT INTO record_v3 (resource, id, parent_id, body, body_hash, nested, nested_hash, nested_at, updated_at)
  SELECT resource, id, parent_id, body, body_hash, nested, nested_hash, nested_at, updated_at FROM record
  ORDER BY resource, id;
DROP TABLE record;
ALTER TABLE record_v3 RENAME TO record;
CREATE UNIQUE INDEX record_key ON record (resource, id);
CREATE INDEX record_parent ON record (resource, parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX record_nested_due ON record (resource, nested_at);
