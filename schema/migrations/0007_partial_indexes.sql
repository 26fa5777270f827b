-- 7: the key-slot indexes and record_nested_due hold only the rows of the resources that use them. Every row
-- had an entry in all eight slot indexes and in record_nested_due, although most resources use only a few
-- slots (the others are NULL) and only resources with nested parts ever read nested_at: on a first sync those
-- entries cost about a fifth of the writer's time and were never read.
--
-- A partial index's condition is evaluated on every row written, so it is a comparison of small integers
-- rather than of resource names (a list of twenty names cost more than the entries it saved):
--   slot_count    how many of the shared slot indexes record_k1..record_k<slot_count> hold the row: its
--                 resource's number of indexed keys, or 0 for a resource with slot indexes of its own;
--   nested_parts  1 when the row's resource has nested parts (record_nested_due holds it), else 0.
-- Both follow from the row's resource and the catalog, which can change between versions: the replica sets
-- them at every start from the catalog it runs with (resource_layout remembers what the rows hold, so only a
-- changed resource's rows are rewritten) and (re)creates the partial indexes then, each as
--   CREATE INDEX record_kN ON record (resource, kN, id) WHERE slot_count >= N
--   CREATE INDEX "record_kN_<line list>" ON record (kN, id) WHERE resource = '<line list>'
--   CREATE INDEX record_nested_due ON record (resource, nested_at) WHERE nested_parts = 1
-- (see replica/key_slots.hpp). Queries name these conditions as literal terms (resource_terms), which is how
-- SQLite sees that a partial index holds the rows they ask for. A replica at this version therefore has these
-- indexes only once a knosc-syncd of this version or later has started on it.
DROP INDEX record_k1;
DROP INDEX record_k2;
DROP INDEX record_k3;
DROP INDEX record_k4;
DROP INDEX record_k5;
DROP INDEX record_k6;
DROP INDEX record_k7;
DROP INDEX record_k8;
DROP INDEX record_nested_due;
ALTER TABLE record ADD COLUMN slot_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE record ADD COLUMN nested_parts INTEGER NOT NULL DEFAULT 0;

-- What the rows of each resource hold in slot_count and nested_parts.
CREATE TABLE resource_layout (
  resource     TEXT PRIMARY KEY,
  slot_count   INTEGER NOT NULL,
  nested_parts INTEGER NOT NULL
) WITHOUT ROWID;
