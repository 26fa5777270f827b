-- 5: records with queued local edits. While edits of a record wait in the outbox, `record` holds the local
-- version (what the loopback serves, so lists, filters and indexes show it with no extra work) and this
-- table holds upstream's latest version as pull passes list it. Passes write here instead of `record` for
-- these rows, so they never overwrite a local edit, and never take a local create (negative id, not yet
-- upstream) for a deletion. The row goes when the record's last queued edit has landed or been dropped.
DROP TABLE local_record;
CREATE TABLE pending_record (
  resource      TEXT NOT NULL,
  id            NOT NULL,
  upstream_body TEXT,              -- upstream's version as last listed; NULL: never seen upstream
  upstream_hash INTEGER,
  seen_at       INTEGER,           -- when a pass last listed it
  since         INTEGER NOT NULL,  -- when the first queued edit was made
  PRIMARY KEY (resource, id)
) WITHOUT ROWID;

-- JSON array of the local ids of records created locally that the entry names besides its own (a PO naming a
-- supplier created locally): the pusher sends it only after those creates have landed.
ALTER TABLE outbox ADD COLUMN refs TEXT;
-- Every record an entry changed locally (its own, a header's lines, cascades): a record stays pending while
-- any open entry touches it.
CREATE TABLE outbox_touch (
  resource TEXT NOT NULL,
  id       NOT NULL,
  seq      INTEGER NOT NULL,
  PRIMARY KEY (resource, id, seq)
) WITHOUT ROWID;
CREATE INDEX outbox_touch_seq ON outbox_touch (seq);
-- The conflict a parked entry waits on.
ALTER TABLE outbox ADD COLUMN conflict_id INTEGER;
-- How the conflict was settled, and by whom.
ALTER TABLE conflict ADD COLUMN resolved_by TEXT;
ALTER TABLE conflict ADD COLUMN kind TEXT NOT NULL DEFAULT 'fields';  -- fields, deleted-upstream, ...
-- A create whose last attempt may have reached Knosc (the link failed after sending): before trying again the
-- pusher looks the record up by its business key.
ALTER TABLE outbox ADD COLUMN outcome_unknown INTEGER NOT NULL DEFAULT 0;
-- A create's guard against duplicates, taken before its first attempt: JSON {"sent_at": unix time,
-- "not_ours": [ids]} — the rows that already held its business key (or, for tickets, its reporter's tickets)
-- and so cannot be the record a lost answer created.
ALTER TABLE outbox ADD COLUMN create_guard TEXT;
