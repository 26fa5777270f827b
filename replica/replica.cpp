#include "replica/replica.hpp"

#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <spdlog/spdlog.h>

#include <set>

#include "replica/content_hash.hpp"
#include "replica/list_query.hpp"
#include "replica/migrations.hpp"

namespace knosc::replica {
namespace {

int open_flags(Replica::Mode mode) {
  // Each connection is used by one thread only (the writer's, or a reader's own), so SQLite's per-call mutex
  // would only cost time.
  return mode == Replica::Mode::ReadWrite
             ? SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX
             : SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX;
}

void bind_id(SQLite::Statement& st, int index, const RecordId& id) {
  if (const auto* i = std::get_if<std::int64_t>(&id)) {
    st.bind(index, static_cast<std::int64_t>(*i));
  } else {
    st.bind(index, std::get<std::string>(id));
  }
}

void bind_optional_id(SQLite::Statement& st, int index, const std::optional<RecordId>& id) {
  if (id) {
    bind_id(st, index, *id);
  } else {
    st.bind(index);
  }
}

std::optional<RecordId> column_id(const SQLite::Column& c) {
  if (c.isInteger()) return RecordId{static_cast<std::int64_t>(c.getInt64())};
  if (c.isText()) return RecordId{c.getString()};
  return std::nullopt;
}

template <typename T>
std::optional<T> column_optional(const SQLite::Column& c);
template <>
std::optional<std::int64_t> column_optional(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getInt64();
}
template <>
std::optional<double> column_optional(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getDouble();
}
template <>
std::optional<std::string> column_optional(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getString();
}

bool id_less(const RecordId& a, const RecordId& b) {
  // Same order as SQLite's: integers before text, integers numerically, text by bytes.
  if (a.index() != b.index()) return a.index() < b.index();
  return a < b;
}

struct IdLess {
  bool operator()(const RecordId& a, const RecordId& b) const { return id_less(a, b); }
};

}  // namespace

struct Replica::Statements {
  SQLite::Statement select_hash;
  SQLite::Statement insert_row;
  SQLite::Statement update_row;
  SQLite::Statement ids_in_range_from;
  SQLite::Statement ids_in_range_all;
  SQLite::Statement ids_in_range_to;
  SQLite::Statement ids_all;
  SQLite::Statement insert_candidate;

  explicit Statements(SQLite::Database& db)
      : select_hash(db, "SELECT body_hash FROM record WHERE resource = ?1 AND id = ?2"),
        insert_row(db,
                   "INSERT INTO record (resource, id, parent_id, body, body_hash, updated_at) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        update_row(db,
                   "UPDATE record SET parent_id = ?3, body = ?4, body_hash = ?5, updated_at = ?6, "
                   "nested_at = CASE WHEN ?7 THEN NULL ELSE nested_at END "
                   "WHERE resource = ?1 AND id = ?2"),
        ids_in_range_from(db,
                          "SELECT id, body_hash FROM record WHERE resource = ?1 AND id > ?2 AND id <= ?3"),
        ids_in_range_all(db, "SELECT id, body_hash FROM record WHERE resource = ?1 AND id > ?2"),
        ids_in_range_to(db, "SELECT id, body_hash FROM record WHERE resource = ?1 AND id <= ?2"),
        ids_all(db, "SELECT id, body_hash FROM record WHERE resource = ?1"),
        insert_candidate(
            db, "INSERT OR IGNORE INTO delete_candidate (resource, id, generation) VALUES (?1, ?2, ?3)") {}
};

Replica::Replica(const std::string& path, const schema::Catalog& catalog, Mode mode)
    : catalog_(catalog), db_(path, open_flags(mode), 10'000) {
  if (mode == Mode::ReadWrite) {
    // WAL lets readers work while the writer commits; synchronous=FULL makes every commit durable before it
    // returns, which is what lets the daemon acknowledge a local edit only after its commit.
    db_.exec("PRAGMA journal_mode = WAL");
    db_.exec("PRAGMA synchronous = FULL");
    db_.exec("PRAGMA foreign_keys = ON");
    // 16 MiB of page cache: a pass reads each page's id range back, and the default 2 MiB makes those reads
    // go to the kernel again and again on a large replica.
    db_.exec("PRAGMA cache_size = -16384");
    migrate(db_, builtin_migrations());
    prepare_statements();
  } else {
    const int v = schema_version(db_);
    const int known = static_cast<int>(builtin_migrations().size());
    if (v > known) {
      throw SchemaTooNew("the replica's schema is version " + std::to_string(v) +
                         " but this knosc-syncd knows only up to " + std::to_string(known));
    }
    if (v < known) {
      throw std::runtime_error("the replica has not been upgraded to schema version " +
                               std::to_string(known) + " yet; start the daemon once to upgrade it");
    }
  }
}

Replica::~Replica() = default;

void Replica::prepare_statements() {
  st_ = std::make_unique<Statements>(db_);
}

PassCursor Replica::resume_or_begin_pass(const schema::Resource& res, int page_size, std::int64_t now) {
  SQLite::Transaction tx(db_);
  {
    SQLite::Statement ins(db_, "INSERT OR IGNORE INTO pull_pass (resource) VALUES (?1)");
    ins.bind(1, res.name);
    ins.exec();
  }
  SQLite::Statement q(db_,
                      "SELECT generation, next_page, page_size, last_id FROM pull_pass WHERE resource = ?1");
  q.bind(1, res.name);
  q.executeStep();
  PassCursor c;
  c.generation = q.getColumn(0).getInt64();
  const bool in_progress = !q.getColumn(1).isNull();
  const int stored_size = q.getColumn(2).isNull() ? 0 : q.getColumn(2).getInt();
  if (in_progress && stored_size == page_size) {
    c.page = q.getColumn(1).getInt();
    c.page_size = page_size;
    c.last_id = column_id(q.getColumn(3));
    c.resumed = true;
    tx.commit();
    return c;
  }
  // A new pass; also when the page size changed, since page numbers of another size mean other rows.
  c.generation += 1;
  c.page = 1;
  c.page_size = page_size;
  SQLite::Statement up(
      db_,
      "UPDATE pull_pass SET generation = ?2, next_page = 1, page_size = ?3, last_id = NULL, "
      "pages_done = 0, rows_seen = 0, rows_written = 0, started_at = ?4 WHERE resource = ?1");
  up.bind(1, res.name);
  up.bind(2, static_cast<std::int64_t>(c.generation));
  up.bind(3, page_size);
  up.bind(4, static_cast<std::int64_t>(now));
  up.exec();
  tx.commit();
  return c;
}

PageOutcome Replica::apply_page(const schema::Resource& res, const PassCursor& cursor, const Json& rows,
                                std::int64_t now) {
  PageOutcome out;
  if (!rows.is_array()) throw std::invalid_argument("page rows must be a JSON array");
  SQLite::Transaction tx(db_);

  {
    // The checkpoint must be where this page was fetched from; anything else means the page belongs to an
    // older pass and applying it would corrupt the range bookkeeping.
    SQLite::Statement q(db_, "SELECT generation, next_page FROM pull_pass WHERE resource = ?1");
    q.bind(1, res.name);
    if (!q.executeStep() || q.getColumn(0).getInt64() != cursor.generation || q.getColumn(1).isNull() ||
        q.getColumn(1).getInt() != cursor.page) {
      throw std::logic_error("page " + std::to_string(cursor.page) + " of " + res.name +
                             " does not match the stored pass checkpoint");
    }
  }

  const bool track_nested = res.has_nested();

  // First pass over the page: ids and the highest one, which bound the id range the page covers.
  struct Listed {
    const Json* row;
    RecordId id;
  };
  std::vector<Listed> listed;
  listed.reserve(rows.size());
  std::optional<RecordId> max_id;
  for (const auto& row : rows) {
    std::optional<RecordId> id;
    if (row.is_object())
      if (auto it = row.find("id"); it != row.end()) id = record_id_from_json(*it);
    if (!id) {
      ++out.without_id;
      continue;
    }
    if (!max_id || id_less(*max_id, *id)) max_id = *id;
    listed.push_back({&row, std::move(*id)});
  }
  out.rows = static_cast<int>(listed.size());

  // A page shorter than the page size is the last one: it covers every id above the previous page's last id.
  // Otherwise it covers (previous last id, its own highest id]. One range read gives both the stored hashes
  // of the rows it lists and the stored rows it failed to list (deletion candidates), instead of a lookup per
  // row.
  out.pass_complete = out.rows + out.without_id < cursor.page_size;
  SQLite::Statement* range = nullptr;
  if (out.pass_complete) {
    range = cursor.last_id ? &st_->ids_in_range_all : &st_->ids_all;
  } else if (max_id) {
    range = cursor.last_id ? &st_->ids_in_range_from : &st_->ids_in_range_to;
  }
  std::map<RecordId, std::int64_t, IdLess> stored;  // id -> body_hash, within the range
  if (range) {
    range->reset();
    range->clearBindings();
    range->bind(1, res.name);
    if (range == &st_->ids_in_range_from) {
      bind_id(*range, 2, *cursor.last_id);
      bind_id(*range, 3, *max_id);
    } else if (range == &st_->ids_in_range_all) {
      bind_id(*range, 2, *cursor.last_id);
    } else if (range == &st_->ids_in_range_to) {
      bind_id(*range, 2, *max_id);
    }
    while (range->executeStep())
      if (auto id = column_id(range->getColumn(0)))
        stored.emplace(std::move(*id), range->getColumn(1).getInt64());
    range->reset();
  }
  const auto in_range = [&](const RecordId& id) {
    if (!range) return false;
    if (cursor.last_id && !id_less(*cursor.last_id, id)) return false;
    return out.pass_complete || !id_less(*max_id, id);
  };

  std::set<RecordId, IdLess> seen;
  for (const auto& [row_ptr, id] : listed) {
    const Json& row = *row_ptr;
    seen.insert(id);
    const auto hash = static_cast<std::int64_t>(content_hash(row));
    bool exists = false;
    std::int64_t old_hash = 0;
    if (auto it = stored.find(id); it != stored.end()) {
      exists = true;
      old_hash = it->second;
    } else if (!in_range(id)) {
      // Only when upstream's order disagrees with ours: the row lies outside the range read above.
      auto& sel = st_->select_hash;
      sel.reset();
      sel.bind(1, res.name);
      bind_id(sel, 2, id);
      exists = sel.executeStep();
      if (exists) old_hash = sel.getColumn(0).getInt64();
      sel.reset();
    }
    if (exists && old_hash == hash) continue;

    std::optional<RecordId> parent;
    if (!res.parent_key.empty()) {
      auto p = row.find(res.parent_key);
      if (p != row.end()) parent = record_id_from_json(*p);
    }
    auto& w = exists ? st_->update_row : st_->insert_row;
    w.reset();
    w.clearBindings();
    w.bind(1, res.name);
    bind_id(w, 2, id);
    bind_optional_id(w, 3, parent);
    w.bind(4, row.dump());
    w.bind(5, hash);
    w.bind(6, now);
    if (exists) w.bind(7, track_nested ? 1 : 0);
    w.exec();
    ++out.written;
  }

  for (const auto& [id, hash] : stored) {
    if (seen.count(id)) continue;
    auto& ins = st_->insert_candidate;
    ins.reset();
    ins.bind(1, res.name);
    bind_id(ins, 2, id);
    ins.bind(3, cursor.generation);
    ins.exec();
    ++out.missed;
  }

  out.next = cursor;
  out.next.resumed = false;
  if (out.pass_complete) {
    SQLite::Statement up(
        db_,
        "UPDATE pull_pass SET next_page = NULL, last_id = NULL, pages_done = pages_done + 1, "
        "rows_seen = rows_seen + ?2, rows_written = rows_written + ?3, last_complete_at = ?4, "
        "last_pass_seconds = ?4 - started_at, last_error = NULL, last_error_at = NULL, "
        "access = 'ok' WHERE resource = ?1");
    up.bind(1, res.name);
    up.bind(2, out.rows);
    up.bind(3, out.written);
    up.bind(4, static_cast<std::int64_t>(now));
    up.exec();
  } else {
    out.next.page = cursor.page + 1;
    if (max_id) out.next.last_id = max_id;
    SQLite::Statement up(db_,
                         "UPDATE pull_pass SET next_page = ?2, last_id = ?3, pages_done = pages_done + 1, "
                         "rows_seen = rows_seen + ?4, rows_written = rows_written + ?5, access = 'ok' "
                         "WHERE resource = ?1");
    up.bind(1, res.name);
    up.bind(2, out.next.page);
    bind_optional_id(up, 3, out.next.last_id);
    up.bind(4, out.rows);
    up.bind(5, out.written);
    up.exec();
  }
  tx.commit();
  return out;
}

void Replica::record_pass_error(const schema::Resource& res, const std::string& message, std::int64_t now) {
  SQLite::Statement up(db_,
                       "INSERT INTO pull_pass (resource, last_error, last_error_at) VALUES (?1, ?2, ?3) "
                       "ON CONFLICT (resource) DO UPDATE SET last_error = ?2, last_error_at = ?3");
  up.bind(1, res.name);
  up.bind(2, message);
  up.bind(3, static_cast<std::int64_t>(now));
  up.exec();
}

void Replica::set_access(const schema::Resource& res, const std::string& access, std::int64_t now) {
  SQLite::Statement up(db_,
                       "INSERT INTO pull_pass (resource, access) VALUES (?1, ?2) "
                       "ON CONFLICT (resource) DO UPDATE SET access = ?2");
  up.bind(1, res.name);
  up.bind(2, access);
  up.exec();
  if (access == "forbidden") record_pass_error(res, "the service account may not read this list (403)", now);
}

std::vector<DeleteCandidate> Replica::delete_candidates(const schema::Resource& res, std::size_t limit) {
  std::vector<DeleteCandidate> out;
  SQLite::Statement q(db_,
                      "SELECT c.id, r.parent_id, r.body FROM delete_candidate c "
                      "LEFT JOIN record r ON r.resource = c.resource AND r.id = c.id "
                      "WHERE c.resource = ?1 ORDER BY c.id LIMIT ?2");
  q.bind(1, res.name);
  q.bind(2, static_cast<std::int64_t>(limit));
  std::vector<RecordId> gone;
  while (q.executeStep()) {
    auto id = column_id(q.getColumn(0));
    if (!id) continue;
    if (q.getColumn(2).isNull()) {
      gone.push_back(*id);  // the row was removed meanwhile; nothing left to check
      continue;
    }
    DeleteCandidate c{*id, column_id(q.getColumn(1)), Json::parse(q.getColumn(2).getString())};
    out.push_back(std::move(c));
  }
  for (const auto& id : gone)
    resolve_candidate(res, id, false);
  return out;
}

void Replica::resolve_candidate(const schema::Resource& res, const RecordId& id, bool deleted) {
  SQLite::Transaction tx(db_);
  SQLite::Statement del(db_, "DELETE FROM delete_candidate WHERE resource = ?1 AND id = ?2");
  del.bind(1, res.name);
  bind_id(del, 2, id);
  del.exec();
  if (deleted) {
    SQLite::Statement rm(db_, "DELETE FROM record WHERE resource = ?1 AND id = ?2");
    rm.bind(1, res.name);
    bind_id(rm, 2, id);
    rm.exec();
    if (!res.lines.empty()) {
      // Knosc deletes a header's lines with it (DELETE cascades); so does the replica.
      SQLite::Statement lines(db_, "DELETE FROM record WHERE resource = ?1 AND parent_id = ?2");
      lines.bind(1, res.lines);
      bind_id(lines, 2, id);
      lines.exec();
    }
  }
  tx.commit();
}

std::vector<RecordId> Replica::nested_due(const schema::Resource& res, std::int64_t fetched_before,
                                          std::size_t limit) {
  std::vector<RecordId> out;
  if (!res.has_nested()) return out;
  SQLite::Statement q(db_,
                      "SELECT id FROM record WHERE resource = ?1 AND (nested_at IS NULL OR nested_at < ?2) "
                      "ORDER BY nested_at IS NOT NULL, nested_at, id LIMIT ?3");
  q.bind(1, res.name);
  q.bind(2, fetched_before);
  q.bind(3, static_cast<std::int64_t>(limit));
  while (q.executeStep())
    if (auto id = column_id(q.getColumn(0))) out.push_back(*id);
  return out;
}

bool Replica::store_nested(const schema::Resource& res, const RecordId& id, const Json& record,
                           std::int64_t now) {
  Json nested = Json::object();
  for (const auto& key : res.nested) {
    auto it = record.find(key);
    nested[key] = it == record.end() ? Json() : *it;
  }
  const auto hash = static_cast<std::int64_t>(content_hash(nested));
  SQLite::Statement q(db_, "SELECT nested_hash FROM record WHERE resource = ?1 AND id = ?2");
  q.bind(1, res.name);
  bind_id(q, 2, id);
  if (!q.executeStep()) return false;  // the row is gone; its nested parts have no home
  const bool changed = q.getColumn(0).isNull() || q.getColumn(0).getInt64() != hash;
  q.reset();
  SQLite::Statement up(
      db_, changed ? "UPDATE record SET nested = ?3, nested_hash = ?4, nested_at = ?5, updated_at = ?5 "
                     "WHERE resource = ?1 AND id = ?2"
                   : "UPDATE record SET nested_at = ?5 WHERE resource = ?1 AND id = ?2");
  up.bind(1, res.name);
  bind_id(up, 2, id);
  if (changed) {
    up.bind(3, nested.dump());
    up.bind(4, static_cast<std::int64_t>(hash));
  }
  up.bind(5, static_cast<std::int64_t>(now));
  up.exec();
  return changed;
}

void Replica::defer_nested(const schema::Resource& res, const RecordId& id, std::int64_t now) {
  SQLite::Statement up(db_, "UPDATE record SET nested_at = ?3 WHERE resource = ?1 AND id = ?2");
  up.bind(1, res.name);
  bind_id(up, 2, id);
  up.bind(3, static_cast<std::int64_t>(now));
  up.exec();
}

void Replica::store_list_headers(const schema::Resource& res, const Json& headers, std::int64_t now) {
  SQLite::Statement up(
      db_,
      "INSERT INTO list_meta (resource, headers, fetched_at) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (resource) DO UPDATE SET headers = ?2, fetched_at = ?3 WHERE headers IS NOT ?2");
  up.bind(1, res.name);
  up.bind(2, headers.dump());
  up.bind(3, now);
  up.exec();
}

std::optional<Json> Replica::list_headers(const schema::Resource& res) {
  SQLite::Statement q(db_, "SELECT headers FROM list_meta WHERE resource = ?1");
  q.bind(1, res.name);
  if (!q.executeStep()) return std::nullopt;
  return Json::parse(q.getColumn(0).getString());
}

void Replica::ensure_indexes(const schema::Resource& res) {
  std::set<std::string> keys(res.filterable.begin(), res.filterable.end());
  keys.insert(res.sortable.begin(), res.sortable.end());
  if (res.default_sort.key != "id") keys.insert(res.default_sort.key);
  for (const auto& key : keys) {
    if (!json_key_supported(key)) continue;  // cannot be named in a JSON path; served by scan
    const std::string name = expression_index_name(res.name, key);
    // The list queries spell the key the same way (json_key_sql), which is what lets SQLite use this index.
    const std::string expr = json_key_sql(key);
    db_.exec("CREATE INDEX IF NOT EXISTS " + name + " ON record (" + expr +
             ") WHERE resource = " + sql_quote(res.name));
  }
}

std::optional<Json> Replica::row(const schema::Resource& res, const RecordId& id) {
  SQLite::Statement q(db_, "SELECT body FROM record WHERE resource = ?1 AND id = ?2");
  q.bind(1, res.name);
  bind_id(q, 2, id);
  if (!q.executeStep()) return std::nullopt;
  return Json::parse(q.getColumn(0).getString());
}

std::int64_t Replica::count(const schema::Resource& res) {
  SQLite::Statement q(db_, "SELECT COUNT(*) FROM record WHERE resource = ?1");
  q.bind(1, res.name);
  q.executeStep();
  return q.getColumn(0).getInt64();
}

ReplicaStatus Replica::status() {
  ReplicaStatus s;
  s.schema_version = schema_version(db_);
  std::map<std::string, std::int64_t> counts, pending, due;
  {
    SQLite::Statement q(db_, "SELECT resource, COUNT(*) FROM record GROUP BY resource");
    while (q.executeStep())
      counts[q.getColumn(0).getString()] = q.getColumn(1).getInt64();
  }
  {
    SQLite::Statement q(db_, "SELECT resource, COUNT(*) FROM delete_candidate GROUP BY resource");
    while (q.executeStep())
      pending[q.getColumn(0).getString()] = q.getColumn(1).getInt64();
  }
  for (const auto& res : catalog_.resources()) {
    if (!res.mirror) continue;
    ResourceStatus r;
    r.name = res.name;
    r.rows = counts[res.name];
    r.pending_deletion_checks = pending[res.name];
    if (res.has_nested()) {
      // Only parts never fetched or invalidated by a change count as due here; periodic refreshes depend on
      // the running daemon's settings.
      SQLite::Statement q(db_, "SELECT COUNT(*) FROM record WHERE resource = ?1 AND nested_at IS NULL");
      q.bind(1, res.name);
      q.executeStep();
      r.nested_due = q.getColumn(0).getInt64();
    }
    SQLite::Statement q(db_,
                        "SELECT generation, next_page, pages_done, rows_seen, rows_written, started_at, "
                        "last_complete_at, last_pass_seconds, last_error, last_error_at, access "
                        "FROM pull_pass WHERE resource = ?1");
    q.bind(1, res.name);
    if (q.executeStep()) {
      r.generation = q.getColumn(0).getInt64();
      r.in_progress = !q.getColumn(1).isNull();
      r.next_page = q.getColumn(1).isNull() ? 0 : q.getColumn(1).getInt();
      r.pages_done = q.getColumn(2).getInt();
      r.rows_seen = q.getColumn(3).getInt64();
      r.rows_written = q.getColumn(4).getInt64();
      r.started_at = column_optional<std::int64_t>(q.getColumn(5));
      r.last_complete_at = column_optional<std::int64_t>(q.getColumn(6));
      r.last_pass_seconds = column_optional<double>(q.getColumn(7));
      r.last_error = column_optional<std::string>(q.getColumn(8));
      r.last_error_at = column_optional<std::int64_t>(q.getColumn(9));
      r.access = q.getColumn(10).getString();
    }
    s.resources.push_back(std::move(r));
  }
  SQLite::Statement q(db_, "SELECT key, value FROM daemon_state");
  while (q.executeStep())
    s.state[q.getColumn(0).getString()] = q.getColumn(1).getString();
  return s;
}

void Replica::set_state(const std::string& key, const std::string& value) {
  SQLite::Statement up(db_,
                       "INSERT INTO daemon_state (key, value) VALUES (?1, ?2) "
                       "ON CONFLICT (key) DO UPDATE SET value = ?2 WHERE value IS NOT ?2");
  up.bind(1, key);
  up.bind(2, value);
  up.exec();
}

std::optional<std::string> Replica::state(const std::string& key) {
  SQLite::Statement q(db_, "SELECT value FROM daemon_state WHERE key = ?1");
  q.bind(1, key);
  if (!q.executeStep()) return std::nullopt;
  return q.getColumn(0).getString();
}

}  // namespace knosc::replica
