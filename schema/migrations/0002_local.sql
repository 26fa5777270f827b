-- 2: what the loopback API adds: list metadata, local edits and the outbox, local users and sessions,
-- uploaded jobs, cached analytics responses, conflicts.

-- The envelope parts of each list as upstream last sent them (headers include custom columns), so the
-- loopback answers with the same headers offline.
CREATE TABLE list_meta (
  resource   TEXT PRIMARY KEY,
  headers    TEXT NOT NULL,  -- JSON array, data.headers of page 1
  fetched_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The local version of a record with queued edits. `record` keeps upstream's version (pulls go on updating
-- it); loopback reads show this one until the push has landed. A local create has a negative id.
CREATE TABLE local_record (
  resource   TEXT NOT NULL,
  id         NOT NULL,
  parent_id,
  body       TEXT,               -- the record as the loopback serves it; NULL when deleted locally
  nested     TEXT,
  deleted    INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (resource, id)
) WITHOUT ROWID;

-- Every accepted local edit, in order. Committed in the same transaction as its local_record change, with
-- synchronous=FULL, before the tool gets its answer.
CREATE TABLE outbox (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  resource     TEXT NOT NULL,
  record_id    NOT NULL,          -- the record the edit is about (negative for local creates until remapped)
  op           TEXT NOT NULL,     -- create, update, delete, line-delete, move-lines, accept-suggested, ...
  method       TEXT NOT NULL,
  path         TEXT NOT NULL,     -- the Knosc route, e.g. /purchase-order/42
  request      TEXT,              -- the tool's JSON body
  base         TEXT,              -- the record as upstream had it when the edit was made (NULL for creates)
  local_user   TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  state        TEXT NOT NULL DEFAULT 'queued',  -- queued, sending, done, rejected, conflict
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error   TEXT,
  upstream_id,                    -- the server id once a create has landed
  done_at      INTEGER
);
CREATE INDEX outbox_record ON outbox (resource, record_id, seq);
CREATE INDEX outbox_state ON outbox (state, seq);

-- Local ids handed out for creates, and what they became upstream (a tool holding a negative id can still
-- find the record).
CREATE TABLE local_id (
  resource   TEXT NOT NULL,
  local_id   INTEGER NOT NULL,
  server_id,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (resource, local_id)
) WITHOUT ROWID;
CREATE TABLE id_counter (
  name TEXT PRIMARY KEY,
  next INTEGER NOT NULL
) WITHOUT ROWID;

-- Users who logged in through the loopback: a salted slow hash of the password checked upstream, and what
-- upstream said they may do. Offline logins are checked against this until it expires.
CREATE TABLE local_user (
  username       TEXT PRIMARY KEY COLLATE NOCASE,
  user_id        INTEGER,
  kdf            TEXT NOT NULL,   -- e.g. pbkdf2-sha256
  iterations     INTEGER NOT NULL,
  salt           BLOB NOT NULL,
  hash           BLOB NOT NULL,
  profile        TEXT NOT NULL,   -- JSON: privileges, granular filters, role, 2FA flag
  verified_at    INTEGER NOT NULL,  -- last time upstream accepted the password
  failed_logins  INTEGER NOT NULL DEFAULT 0,
  locked_until   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Loopback sessions; only a hash of each token is stored.
CREATE TABLE local_session (
  token_hash  BLOB PRIMARY KEY,
  kind        TEXT NOT NULL,      -- access or refresh
  username    TEXT NOT NULL COLLATE NOCASE,
  csrf        TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX local_session_user ON local_session (username);

-- Uploaded job files, kept until forwarded and for "download the last file".
CREATE TABLE job (
  job_id          TEXT PRIMARY KEY,
  trigger         TEXT NOT NULL,
  file_name       TEXT,
  content_type    TEXT,
  file            BLOB,
  local_user      TEXT NOT NULL,
  created_at      INTEGER NOT NULL,
  state           TEXT NOT NULL DEFAULT 'queued',  -- queued, forwarded, completed, failed
  upstream_job_id TEXT,
  upstream_status TEXT,            -- upstream's last poll answer (JSON)
  updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX job_trigger ON job (trigger, created_at);

-- Read-through cache of analytics routes (dashboards, helpers not computed locally).
CREATE TABLE cached_response (
  cache_key  TEXT PRIMARY KEY,     -- route with its query, and the user's privilege scope
  status     INTEGER NOT NULL,
  body       TEXT NOT NULL,
  fetched_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Overlapping edits a person must look at; the losing side is kept here, never dropped.
CREATE TABLE conflict (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  outbox_seq  INTEGER NOT NULL,
  resource    TEXT NOT NULL,
  record_id   NOT NULL,
  base        TEXT,
  local       TEXT,
  remote      TEXT,
  fields      TEXT NOT NULL,       -- JSON array of colliding keys
  created_at  INTEGER NOT NULL,
  resolved_at INTEGER,
  resolution  TEXT
);
