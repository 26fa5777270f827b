-- 1: the mirrored rows, pull-pass checkpoints, rows awaiting deletion checks, and the daemon's own state.

-- One row per upstream record of every catalog resource. `id` has no declared type so each value keeps the
-- upstream's type: INTEGER for most resources, TEXT for issue-tracker tickets ("TKT-001").
CREATE TABLE record (
  resource    TEXT NOT NULL,
  id          NOT NULL,
  parent_id,                     -- flat line lists: the id of the header the line belongs to
  body        TEXT NOT NULL,     -- the upstream list row as JSON, every key kept (custom columns too)
  body_hash   INTEGER NOT NULL,  -- 64-bit content hash of body; a pass writes a row only when it changed
  nested      TEXT,              -- JSON object of the keys only get-one carries (line sets, notes)
  nested_hash INTEGER,
  nested_at   INTEGER,           -- unix time nested was fetched; NULL = fetch due (new or changed row)
  updated_at  INTEGER NOT NULL,  -- unix time of the last write of this row
  PRIMARY KEY (resource, id)
) WITHOUT ROWID;
CREATE INDEX record_parent ON record (resource, parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX record_nested_due ON record (resource, nested_at);

-- The state of each resource's pull pass, written in the same transaction as the page it describes, so a
-- restart resumes at the next page.
CREATE TABLE pull_pass (
  resource          TEXT PRIMARY KEY,
  generation        INTEGER NOT NULL DEFAULT 0,  -- number of the current (or last) pass
  next_page         INTEGER,                     -- page to fetch next; NULL when no pass is in progress
  page_size         INTEGER,
  last_id,                                       -- id of the last row of the last applied page
  pages_done        INTEGER NOT NULL DEFAULT 0,
  rows_seen         INTEGER NOT NULL DEFAULT 0,
  rows_written      INTEGER NOT NULL DEFAULT 0,
  started_at        INTEGER,
  last_complete_at  INTEGER,
  last_pass_seconds REAL,
  last_error        TEXT,
  last_error_at     INTEGER,
  access            TEXT NOT NULL DEFAULT 'unknown'  -- 'ok', 'forbidden' or 'unknown'
);

-- Rows a pass missed. Each is confirmed (or cleared) by asking upstream for that record before it is deleted,
-- because rows shift between pages while others write.
CREATE TABLE delete_candidate (
  resource   TEXT NOT NULL,
  id         NOT NULL,
  generation INTEGER NOT NULL,
  PRIMARY KEY (resource, id)
) WITHOUT ROWID;

-- Small facts about the daemon: connectivity, clock skew, last start.
CREATE TABLE daemon_state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
