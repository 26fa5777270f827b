#include "replica/replica.hpp"

#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

#include "replica/change_feed.hpp"
#include "replica/content_hash.hpp"
#include "replica/id_sql.hpp"
#include "replica/key_slots.hpp"
#include "replica/list_page.hpp"
#include "replica/list_query.hpp"
#include "replica/migrations.hpp"
#include "replica/savepoint.hpp"

namespace knosc::replica {
namespace {

// Process-wide SQLite settings, which SQLite accepts only before its first connection opens (later calls
// are refused and change nothing): called before each connection opens.
void configure_sqlite() {
  static const bool once = [] {
    // Memory statistics take a global mutex around every allocation SQLite makes; nothing reads them.
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)once;
}

int open_flags(Replica::Mode mode) {
  configure_sqlite();
  // Each connection is used by one thread only (the writer's, or a reader's own), so SQLite's per-call mutex
  // would only cost time.
  return mode == Replica::Mode::ReadWrite
             ? SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX
             : SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX;
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

// The slot parameters of the row update and of the slot refill: ?8 .. ?15 are k1 .. k8.
constexpr int kFirstSlotParam = 8;
static_assert(kKeySlots == 8, "the row writes name k1..k8");

// Appends `s` as a JSON string the way Json::dump does, when it is ASCII; false when it holds other bytes
// (dump checks those are UTF-8, which is left to it).
bool append_ascii_string(const std::string& s, std::string& out) {
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) return false;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s, run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        static constexpr char hex[] = "0123456789abcdef";
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xf];
      }
    }
  }
  out.append(s, run);
  out += '"';
  return true;
}

// Appends `v` as Json::dump() writes it (compact), for values whose strings are ASCII; false otherwise, with
// `out` partly written. Upstream rows are almost always ASCII, and this is several times faster than
// nlohmann's serializer, which goes through its UTF-8 decoder byte by byte.
bool append_ascii_json(const Json& v, std::string& out) {
  using T = Json::value_t;
  switch (v.type()) {
    case T::null:
      out += "null";
      return true;
    case T::boolean:
      out += v.get<bool>() ? "true" : "false";
      return true;
    case T::number_integer:
    case T::number_unsigned: {
      char buf[24];
      const auto r = v.is_number_unsigned() ? std::to_chars(buf, buf + sizeof buf, v.get<std::uint64_t>())
                                            : std::to_chars(buf, buf + sizeof buf, v.get<std::int64_t>());
      out.append(buf, r.ptr);
      return true;
    }
    case T::number_float: {
      const double d = v.get<double>();
      if (!std::isfinite(d)) {
        out += "null";
        return true;
      }
      char buf[64];
      out.append(buf, nlohmann::detail::to_chars(buf, buf + sizeof buf, d));  // dump's own number format
      return true;
    }
    case T::string:
      return append_ascii_string(v.get_ref<const std::string&>(), out);
    case T::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ',';
        first = false;
        if (!append_ascii_json(e, out)) return false;
      }
      out += ']';
      return true;
    }
    case T::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, e] : v.get_ref<const Json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        if (!append_ascii_string(key, out)) return false;
        out += ':';
        if (!append_ascii_json(e, out)) return false;
      }
      out += '}';
      return true;
    }
    case T::binary:
    case T::discarded:
      return false;
  }
  return false;
}

// Serializes rows into one reused buffer, byte for byte as Json::dump does: dump returns a fresh string that
// grows by doubling, which costs several allocations for every written row.
class RowText {
 public:
  const std::string& of(const Json& row) {
    text_.clear();
    if (append_ascii_json(row, text_)) return text_;
    text_.clear();
    out_.dump(row, false, false, 0);
    return text_;
  }
  // A row's text read from a page, copied into the reused buffer: SQLiteCpp binds text only from a whole
  // std::string.
  const std::string& of(const PageRow& row) {
    if (row.dom) return of(*row.dom);
    text_.assign(row.text);
    return text_;
  }

 private:
  std::string text_;
  nlohmann::detail::serializer<Json> out_{nlohmann::detail::output_adapter<char, std::string>(text_), ' '};
};

// New rows of a page, written kInsertBatch to a statement. Every INSERT opens a cursor on the table and on
// each of its indexes (eleven with the key slots) and closes them again; sharing them among a batch of rows
// saves about a quarter of SQLite's work per row. OR FAIL spares SQLite the statement journal a multi-row
// INSERT would otherwise keep: a failing row (a page listing one id twice) still fails the page, whose
// transaction is then rolled back.
class RowInserter {
 public:
  static constexpr std::size_t kInsertBatch = 32;

  explicit RowInserter(SQLite::Database& db) : db_(db) { pending_.reserve(kInsertBatch); }

  // Starts a page: rows queued by a page that failed are dropped.
  void begin(const std::string& resource, const ListPage& page, const SlotFiller& slots, std::int64_t now) {
    pending_.clear();
    resource_ = &resource;
    page_ = &page;
    slots_ = &slots;
    now_ = now;
  }

  // Queues a row of the page; `row` and `id` must stay alive until the next flush, which happens by itself
  // every kInsertBatch rows.
  void add(const PageRow& row, const RecordId& id, std::optional<RecordId> parent, std::int64_t hash) {
    pending_.push_back({&row, &id, std::move(parent), hash});
    if (pending_.size() == kInsertBatch) flush();
  }

  void flush() {
    if (pending_.empty()) return;
    SQLite::Statement& st = statement(pending_.size());
    st.reset();
    st.clearBindings();
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      const auto& r = pending_[i];
      const int base = static_cast<int>(i) * kParams;
      st.bindNoCopy(base + 1, *resource_);
      bind_id(st, base + 2, *r.id);
      bind_optional_id(st, base + 3, r.parent);
      st.bindNoCopy(base + 4, text_[i].of(*r.row));
      st.bind(base + 5, r.hash);
      st.bind(base + 6, now_);
      slots_->bind(st, base + 7, *page_, *r.row, slot_text_[i]);
      st.bind(base + 7 + kKeySlots, slots_->layout().slot_count);
      st.bind(base + 8 + kKeySlots, static_cast<int>(slots_->layout().nested_parts));
    }
    pending_.clear();
    st.exec();
    st.reset();
  }

 private:
  // Per row: resource, id, parent_id, body, body_hash, updated_at, k1..k8, slot_count, nested_parts.
  static constexpr int kParams = 8 + kKeySlots;

  SQLite::Statement& statement(std::size_t rows) {
    auto& st = statements_[rows];
    if (!st) {
      std::string sql =
          "INSERT OR FAIL INTO record (resource, id, parent_id, body, body_hash, updated_at, "
          "k1, k2, k3, k4, k5, k6, k7, k8, slot_count, nested_parts) VALUES ";
      for (std::size_t i = 0; i < rows; ++i) {
        sql += i ? ", (" : "(";
        for (int p = 1; p <= kParams; ++p)
          sql += (p > 1 ? ", ?" : "?") + std::to_string(static_cast<int>(i) * kParams + p);
        sql += ")";
      }
      st = std::make_unique<SQLite::Statement>(db_, sql);
    }
    return *st;
  }

  struct Pending {
    const PageRow* row;
    const RecordId* id;
    std::optional<RecordId> parent;
    std::int64_t hash;
  };
  SQLite::Database& db_;
  std::array<std::unique_ptr<SQLite::Statement>, kInsertBatch + 1> statements_;  // by row count
  std::vector<Pending> pending_;
  std::array<RowText, kInsertBatch> text_;  // DOM rows' texts
  std::array<SlotText, kInsertBatch> slot_text_;
  const std::string* resource_ = nullptr;
  const ListPage* page_ = nullptr;
  const SlotFiller* slots_ = nullptr;
  std::int64_t now_ = 0;
};

// Statements are reused: reset them before use and on every way out, so none keeps a read open.
class Reset {
 public:
  explicit Reset(SQLite::Statement& st) : st_(st) {
    st_.reset();
    st_.clearBindings();
  }
  ~Reset() {
    try {
      st_.reset();
    } catch (...) {  // NOLINT(bugprone-empty-catch): reset repeats the last step's error, already thrown
    }
  }
  Reset(const Reset&) = delete;
  Reset& operator=(const Reset&) = delete;
  SQLite::Statement* operator->() { return &st_; }
  SQLite::Statement& operator*() { return st_; }

 private:
  SQLite::Statement& st_;
};

}  // namespace

struct Replica::Statements {
  SQLite::Statement select_hash;
  RowInserter insert_rows;
  SQLite::Statement update_row;
  SQLite::Statement ids_in_range_from;
  SQLite::Statement ids_in_range_all;
  SQLite::Statement ids_in_range_to;
  SQLite::Statement ids_all;
  SQLite::Statement insert_candidate;
  SQLite::Statement pass_checkpoint;
  SQLite::Statement pass_next_page;
  SQLite::Statement pass_complete;
  SQLite::Statement update_nested;
  SQLite::Statement touch_nested;
  SQLite::Statement pending_ids;
  SQLite::Statement select_pending;
  SQLite::Statement update_pending_upstream;
  SQLite::Statement upsert_row;  // write_row: local edits and fetched records
  RowText row_text;
  SlotText slot_text;

  explicit Statements(SQLite::Database& db)
      : select_hash(db, "SELECT body_hash FROM record WHERE resource = ?1 AND id = ?2"),
        insert_rows(db),
        update_row(db,
                   "UPDATE record SET parent_id = ?3, body = ?4, body_hash = ?5, updated_at = ?6, "
                   "nested_at = CASE WHEN ?7 THEN NULL ELSE nested_at END, "
                   "k1 = ?8, k2 = ?9, k3 = ?10, k4 = ?11, k5 = ?12, k6 = ?13, k7 = ?14, k8 = ?15 "
                   "WHERE resource = ?1 AND id = ?2"),
        // In id order (the order of the (resource, id) index they read), which apply_page relies on.
        ids_in_range_from(db,
                          "SELECT id, body_hash FROM record WHERE resource = ?1 AND id > ?2 AND id <= ?3 "
                          "ORDER BY id"),
        ids_in_range_all(db, "SELECT id, body_hash FROM record WHERE resource = ?1 AND id > ?2 ORDER BY id"),
        ids_in_range_to(db, "SELECT id, body_hash FROM record WHERE resource = ?1 AND id <= ?2 ORDER BY id"),
        ids_all(db, "SELECT id, body_hash FROM record WHERE resource = ?1 ORDER BY id"),
        insert_candidate(
            db, "INSERT OR IGNORE INTO delete_candidate (resource, id, generation) VALUES (?1, ?2, ?3)"),
        pass_checkpoint(db, "SELECT generation, next_page FROM pull_pass WHERE resource = ?1"),
        pass_next_page(db,
                       "UPDATE pull_pass SET next_page = ?2, last_id = ?3, pages_done = pages_done + 1, "
                       "rows_seen = rows_seen + ?4, rows_written = rows_written + ?5, access = 'ok' "
                       "WHERE resource = ?1"),
        pass_complete(db,
                      "UPDATE pull_pass SET next_page = NULL, last_id = NULL, pages_done = pages_done + 1, "
                      "rows_seen = rows_seen + ?2, rows_written = rows_written + ?3, last_complete_at = ?4, "
                      "last_pass_seconds = ?4 - started_at, last_error = NULL, last_error_at = NULL, "
                      "access = 'ok' WHERE resource = ?1"),
        update_nested(db,
                      "UPDATE record SET nested = ?3, nested_hash = ?4, nested_at = ?5, updated_at = ?5 "
                      "WHERE resource = ?1 AND id = ?2 AND nested_hash IS NOT ?4"),
        touch_nested(db, "UPDATE record SET nested_at = ?3 WHERE resource = ?1 AND id = ?2"),
        pending_ids(db, "SELECT id FROM pending_record WHERE resource = ?1"),
        select_pending(db, "SELECT 1 FROM pending_record WHERE resource = ?1 AND id = ?2"),
        update_pending_upstream(
            db,
            "UPDATE pending_record SET upstream_body = ?3, upstream_hash = ?4, seen_at = ?5 "
            "WHERE resource = ?1 AND id = ?2"),
        // The key slots (?7..?14) are written with the body, as a pass writes them, so the lists' indexes see
        // the new values; a new row gets its resource's layout (?15, ?16), which the partial indexes read.
        upsert_row(
            db,
            "INSERT INTO record (resource, id, parent_id, body, body_hash, updated_at, k1, k2, k3, k4, k5, "
            "k6, k7, k8, slot_count, nested_parts) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) "
            "ON CONFLICT (resource, id) DO UPDATE SET parent_id = ?3, body = ?4, body_hash = ?5, "
            "updated_at = ?6, k1 = ?7, k2 = ?8, k3 = ?9, k4 = ?10, k5 = ?11, k6 = ?12, k7 = ?13, k8 = ?14 "
            "WHERE body_hash IS NOT ?5") {}
};

Replica::Cached::Cached(SQLite::Statement& st, bool* busy) : st_(&st), busy_(busy) {
  st_->reset();
  st_->clearBindings();
  *busy_ = true;
}

Replica::Cached::Cached(std::unique_ptr<SQLite::Statement> own) : own_(std::move(own)), st_(own_.get()) {}

Replica::Cached::~Cached() {
  if (!busy_) return;
  try {
    st_->reset();
  } catch (...) {  // NOLINT(bugprone-empty-catch): reset repeats the last step's error, already thrown
  }
  *busy_ = false;
}

Replica::Cached Replica::cached(const std::string& sql) {
  // A bound, in case a caller builds SQL of many shapes: dropping the lot costs only parsing again.
  constexpr std::size_t kMaxCached = 256;
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    if (cache_.size() >= kMaxCached) std::erase_if(cache_, [](const auto& kv) { return !kv.second.busy; });
    it = cache_.emplace(sql, CacheEntry{std::make_unique<SQLite::Statement>(db_, sql), false}).first;
  }
  if (it->second.busy) return Cached(std::make_unique<SQLite::Statement>(db_, sql));
  return Cached(*it->second.statement, &it->second.busy);
}

void Replica::write_row(const schema::Resource& res, const Json& row, std::int64_t now) {
  auto idv = row.find("id");
  if (idv == row.end()) return;
  auto id = record_id_from_json(*idv);
  if (!id) return;
  std::optional<RecordId> parent;
  if (!res.parent_key.empty())
    if (auto p = row.find(res.parent_key); p != row.end()) parent = record_id_from_json(*p);
  const auto hash = static_cast<std::int64_t>(content_hash(row));
  // Prepared once: every local edit writes its records here, and parsing the statement each time cost more
  // than running it.
  Reset up(st_->upsert_row);
  up->bind(1, res.name);
  bind_id(*up, 2, *id);
  bind_optional_id(*up, 3, parent);
  up->bind(4, row.dump());
  up->bind(5, hash);
  up->bind(6, now);
  SlotText slot_text;
  const SlotFiller slots(res);
  slots.bind(*up, 7, row, slot_text);
  up->bind(15, slots.layout().slot_count);
  up->bind(16, static_cast<int>(slots.layout().nested_parts));
  up->exec();
}

Replica::Replica(const std::string& path, const schema::Catalog& catalog, Mode mode)
    : catalog_(catalog), db_(path, open_flags(mode), 10'000) {
  if (mode == Mode::ReadWrite) {
    // WAL lets readers work while the writer commits; synchronous=FULL makes every commit durable before it
    // returns, which is what lets the daemon acknowledge a local edit only after its commit.
    // A new replica gets SQLite's 4 KiB pages. A commit writes every page it dirtied to the WAL whole, and a
    // local edit dirties about ten pages far apart (its row, key-slot indexes, pending version, outbox
    // entry and indexes): with 16 KiB pages a group of edits wrote four times the bytes, and bench/push
    // acknowledged about a quarter fewer edits a second (1,450 against 1,830 from 16 writers). A first sync,
    // which writes rows in id order, costs about a fifth more CPU with 4 KiB pages (bench/initial_sync, 3.0
    // against 2.4 CPU s per 100k rows), but it happens once, while tools edit every day. Only a file without
    // tables takes it; an existing replica keeps its page size.
    db_.exec("PRAGMA page_size = 4096");
    db_.exec("PRAGMA journal_mode = WAL");
    db_.exec("PRAGMA synchronous = FULL");
    db_.exec("PRAGMA foreign_keys = ON");
    // 16 MiB of page cache: a pass reads each page's id range back, and the default 2 MiB makes those reads
    // go to the kernel again and again on a large replica.
    db_.exec("PRAGMA cache_size = -16384");
    // A pass rewrites the same index pages page after page; checkpointing after 1000 pages of WAL (the
    // default) copied each of them into the database file again and again. 64 MiB of WAL lets a checkpoint
    // copy the last version of a page once for many commits (a scale-100 first sync writes about 350 MB of
    // WAL for a 136 MB replica; with 32 MiB its checkpoints wrote about 25 MB more).
    const int page_size = db_.execAndGet("PRAGMA page_size").getInt();
    db_.exec("PRAGMA wal_autocheckpoint = " + std::to_string((64 << 20) / std::max(page_size, 512)));
    migrate(db_, builtin_migrations());
    // Before the slots are refilled: every row update would otherwise maintain the old indexes too.
    drop_expression_indexes();
    // Before the partial indexes are made, so rows the catalog moves in or out of them are written once.
    ensure_row_layouts();
    // Before the statements are prepared, which a change of the schema would make SQLite prepare again.
    ensure_partial_indexes();
    prepare_statements();
    for (const auto& res : catalog_.resources())
      ensure_indexes(res);
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

void Replica::drop_expression_indexes() {
  // Replicas before schema version 4 had an expression index per resource and key, named rx_<hash>; the key
  // slots replace them.
  std::vector<std::string> names;
  {
    SQLite::Statement q(db_,
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'record' AND "
                        "name LIKE 'rx\\_%' ESCAPE '\\'");
    while (q.executeStep())
      names.push_back(q.getColumn(0).getString());
  }
  if (names.empty()) return;
  SQLite::Transaction tx(db_);
  for (const auto& name : names)
    db_.exec("DROP INDEX IF EXISTS \"" + name + "\"");
  tx.commit();
  spdlog::info("replica: dropped {} expression indexes that key slots replace", names.size());
}

void Replica::ensure_row_layouts() {
  // Rows hold their resource's slot_count and nested_parts (row_layout), which the partial indexes'
  // conditions read. resource_layout says what a resource's rows hold; a resource whose layout the catalog
  // changed (or that has none recorded, as after the upgrade to schema version 7) gets its rows rewritten.
  std::map<std::string, RowLayout> stored;
  {
    SQLite::Statement q(db_, "SELECT resource, slot_count, nested_parts FROM resource_layout");
    while (q.executeStep())
      stored[q.getColumn(0).getString()] = {q.getColumn(1).getInt(), q.getColumn(2).getInt() != 0};
  }
  for (const auto& res : catalog_.resources()) {
    const RowLayout want = row_layout(res);
    if (auto it = stored.find(res.name); it != stored.end() && it->second == want) continue;
    SQLite::Transaction tx(db_);
    SQLite::Statement up(db_,
                         "UPDATE record SET slot_count = ?2, nested_parts = ?3 WHERE resource = ?1 AND "
                         "(slot_count IS NOT ?2 OR nested_parts IS NOT ?3)");
    up.bind(1, res.name);
    up.bind(2, want.slot_count);
    up.bind(3, static_cast<int>(want.nested_parts));
    const int rows = up.exec();
    SQLite::Statement put(
        db_,
        "INSERT INTO resource_layout (resource, slot_count, nested_parts) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (resource) DO UPDATE SET slot_count = ?2, nested_parts = ?3");
    put.bind(1, res.name);
    put.bind(2, want.slot_count);
    put.bind(3, static_cast<int>(want.nested_parts));
    put.exec();
    tx.commit();
    if (rows > 0)
      spdlog::info("replica: {}: {} rows moved to the indexes the catalog gives them", res.name, rows);
  }
}

void Replica::ensure_partial_indexes() {
  // The catalog says which resources use each key slot and which have nested parts; the indexes hold those
  // resources' rows only (see schema/migrations/0007_partial_indexes.sql), so they follow the catalog this
  // replica runs with. An index whose statement differs from the stored one (SQLite keeps each index's
  // CREATE text as written) is made again, and one the catalog no longer needs goes: a catalog change costs
  // an index build at start.
  std::map<std::string, std::string> wanted;
  for (auto& [name, sql] : partial_indexes(catalog_))
    wanted.emplace(std::move(name), std::move(sql));

  std::vector<std::string> drop;
  {
    // The slot indexes of any catalog are named record_k<digit>...; record_key is not one of them.
    SQLite::Statement q(db_,
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'record' "
                        "AND (name GLOB 'record_k[0-9]*' OR name = 'record_nested_due')");
    while (q.executeStep()) {
      const std::string name = q.getColumn(0).getString();
      auto it = wanted.find(name);
      if (it != wanted.end() && it->second == q.getColumn(1).getString()) {
        wanted.erase(it);  // as it should be
      } else {
        drop.push_back(name);  // no longer needed, or made from another statement
      }
    }
  }
  if (drop.empty() && wanted.empty()) return;
  SQLite::Transaction tx(db_);
  for (const auto& name : drop)
    db_.exec("DROP INDEX " + sql_identifier(name));
  for (const auto& [name, sql] : wanted)
    db_.exec(sql);
  tx.commit();
  spdlog::info("replica: {} partial index(es) made to match the catalog", wanted.size());
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
  if (!rows.is_array()) throw std::invalid_argument("page rows must be a JSON array");
  const ListPage page(rows);
  return apply_page(res, cursor, page, now);
}

PageOutcome Replica::apply_page(const schema::Resource& res, const PassCursor& cursor, const ListPage& page,
                                std::int64_t now) {
  PageOutcome out;
  const RefetchableWrites relaxed(*this);
  SQLite::Transaction tx(db_);

  {
    // The checkpoint must be where this page was fetched from; anything else means the page belongs to an
    // older pass and applying it would corrupt the range bookkeeping.
    Reset q(st_->pass_checkpoint);
    q->bind(1, res.name);
    if (!q->executeStep() || q->getColumn(0).getInt64() != cursor.generation || q->getColumn(1).isNull() ||
        q->getColumn(1).getInt() != cursor.page) {
      throw std::logic_error("page " + std::to_string(cursor.page) + " of " + res.name +
                             " does not match the stored pass checkpoint");
    }
  }

  const bool track_nested = res.has_nested();

  // First pass over the page: ids and the highest one, which bound the id range the page covers.
  struct Listed {
    const PageRow* row;
    RecordId id;
  };
  static const std::string kId = "id";
  std::vector<Listed> listed;
  listed.reserve(page.rows().size());
  std::optional<RecordId> max_id;
  for (const auto& row : page.rows()) {
    std::optional<RecordId> id;
    if (row.object) id = page.record_id(row, kId);
    if (!id) {
      ++out.without_id;
      continue;
    }
    if (!max_id || upstream_id_less(*max_id, *id)) max_id = *id;
    listed.push_back({&row, std::move(*id)});
  }
  out.rows = static_cast<int>(listed.size());

  // A page shorter than the page size is the last one: it covers every id above the previous page's last id.
  // Otherwise it covers (previous last id, its own highest id]. One range read gives both the stored hashes
  // of the rows it lists and the stored rows it failed to list (deletion candidates), instead of a lookup per
  // row.
  // Ids compare in Knosc's order throughout (upstream_id_less), which is the order the pages come in.
  out.pass_complete = out.rows + out.without_id < cursor.page_size;
  const bool has_range = out.pass_complete || max_id.has_value();
  const auto in_range = [&](const RecordId& id) {
    if (!has_range) return false;
    if (cursor.last_id && !upstream_id_less(*cursor.last_id, id)) return false;
    return out.pass_complete || !upstream_id_less(*max_id, id);
  };
  // The stored rows of the range, in Knosc's id order; `listed` marks those the page named. A sorted vector
  // rather than a tree: one allocation per page instead of one per row.
  struct StoredRow {
    RecordId id;
    std::int64_t hash;
    bool listed;
  };
  std::vector<StoredRow> stored;
  if (has_range && res.id_type == schema::IdType::String) {
    // SQLite orders text bytewise and Knosc naturally ("TKT-999" < "TKT-1000"), so a range read in SQL would
    // take rows of other pages for rows this page missed (a needless deletion check each) and miss rows it
    // lists (a lookup each). String ids are few (tickets): the resource's ids are read whole and the range
    // is taken here.
    Reset q(st_->ids_all);
    q->bind(1, res.name);
    while (q->executeStep())
      if (auto id = column_id(q->getColumn(0)); id && in_range(*id))
        stored.push_back({std::move(*id), q->getColumn(1).getInt64(), false});
    std::sort(stored.begin(), stored.end(),
              [](const StoredRow& a, const StoredRow& b) { return upstream_id_less(a.id, b.id); });
  } else if (has_range) {
    // Integer ids: SQLite's order is Knosc's, and the range statements read the (resource, id) index in it.
    SQLite::Statement* range = nullptr;
    if (out.pass_complete) {
      range = cursor.last_id ? &st_->ids_in_range_all : &st_->ids_all;
    } else {
      range = cursor.last_id ? &st_->ids_in_range_from : &st_->ids_in_range_to;
    }
    Reset q(*range);
    q->bind(1, res.name);
    if (range == &st_->ids_in_range_from) {
      bind_id(*q, 2, *cursor.last_id);
      bind_id(*q, 3, *max_id);
    } else if (range == &st_->ids_in_range_all) {
      bind_id(*q, 2, *cursor.last_id);
    } else if (range == &st_->ids_in_range_to) {
      bind_id(*q, 2, *max_id);
    }
    while (q->executeStep())
      if (auto id = column_id(q->getColumn(0)))
        stored.push_back({std::move(*id), q->getColumn(1).getInt64(), false});
  }

  // Records with queued local edits: `record` holds the local version, so upstream's goes to pending_record,
  // and a pending row the page did not list (a local create, not yet upstream) is no deletion candidate.
  // Usually there are none, and the lookup is one probe of an empty index range.
  std::vector<RecordId> pending;
  {
    Reset q(st_->pending_ids);
    q->bind(1, res.name);
    while (q->executeStep())
      if (auto id = column_id(q->getColumn(0))) pending.push_back(std::move(*id));
    std::sort(pending.begin(), pending.end(), upstream_id_less);
  }
  const auto is_pending = [&](const RecordId& id) {
    return !pending.empty() && std::binary_search(pending.begin(), pending.end(), id, upstream_id_less);
  };

  // The stored row with this id, marked as listed by the page; null when the range holds none.
  const auto take_stored = [&](const RecordId& id) -> StoredRow* {
    auto it = std::lower_bound(stored.begin(), stored.end(), id, [](const StoredRow& r, const RecordId& i) {
      return upstream_id_less(r.id, i);
    });
    if (it == stored.end() || it->id != id) return nullptr;
    it->listed = true;
    return &*it;
  };

  const SlotFiller slots(res);
  // The record statements below write rows of `res` only (by its name), so the change feed need not read
  // each row to learn its resource.
  const ChangeFeed::RecordsOf records_of(res.name);
  st_->insert_rows.begin(res.name, page, slots, now);
  for (const auto& [row_ptr, id] : listed) {
    const PageRow& row = *row_ptr;
    const auto hash = static_cast<std::int64_t>(row.hash);
    const auto text = [&]() -> const std::string& { return st_->row_text.of(row); };
    if (is_pending(id)) {
      take_stored(id);
      Reset up(st_->update_pending_upstream);
      up->bind(1, res.name);
      bind_id(*up, 2, id);
      up->bindNoCopy(3, text());
      up->bind(4, hash);
      up->bind(5, now);
      up->exec();
      continue;
    }
    bool exists = false;
    std::int64_t old_hash = 0;
    if (const StoredRow* found = take_stored(id)) {
      exists = true;
      old_hash = found->hash;
    } else if (!in_range(id)) {
      // Only when upstream's order disagrees with ours: the row lies outside the range read above. Queued
      // rows are written first so the lookup sees them.
      st_->insert_rows.flush();
      Reset sel(st_->select_hash);
      sel->bind(1, res.name);
      bind_id(*sel, 2, id);
      exists = sel->executeStep();
      if (exists) old_hash = sel->getColumn(0).getInt64();
    }
    if (exists && old_hash == hash) continue;

    std::optional<RecordId> parent;
    if (!res.parent_key.empty()) parent = page.record_id(row, res.parent_key);
    ++out.written;
    if (!exists) {
      st_->insert_rows.add(row, id, std::move(parent), hash);
      continue;
    }
    Reset w(st_->update_row);
    w->bind(1, res.name);
    bind_id(*w, 2, id);
    bind_optional_id(*w, 3, parent);
    w->bindNoCopy(4, text());
    w->bind(5, hash);
    w->bind(6, now);
    w->bind(7, track_nested ? 1 : 0);
    slots.bind(*w, kFirstSlotParam, page, row, st_->slot_text);
    w->exec();
  }
  st_->insert_rows.flush();

  for (const auto& r : stored) {
    if (r.listed || is_pending(r.id)) continue;
    Reset ins(st_->insert_candidate);
    ins->bind(1, res.name);
    bind_id(*ins, 2, r.id);
    ins->bind(3, cursor.generation);
    ins->exec();
    ++out.missed;
  }

  out.next = cursor;
  out.next.resumed = false;
  if (out.pass_complete) {
    Reset up(st_->pass_complete);
    up->bind(1, res.name);
    up->bind(2, out.rows);
    up->bind(3, out.written);
    up->bind(4, static_cast<std::int64_t>(now));
    up->exec();
  } else {
    out.next.page = cursor.page + 1;
    if (max_id) out.next.last_id = max_id;
    Reset up(st_->pass_next_page);
    up->bind(1, res.name);
    up->bind(2, out.next.page);
    bind_optional_id(*up, 3, out.next.last_id);
    up->bind(4, out.rows);
    up->bind(5, out.written);
    up->exec();
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
  Savepoint tx(db_);  // nests: the pusher's restore runs it inside a group commit (replica/writer.hpp)
  SQLite::Statement del(db_, "DELETE FROM delete_candidate WHERE resource = ?1 AND id = ?2");
  del.bind(1, res.name);
  bind_id(del, 2, id);
  del.exec();
  // A record that became pending since it was missed keeps its local version: the push finds out that
  // upstream deleted it and treats that as an edit-versus-delete.
  if (deleted && is_pending(res, id)) deleted = false;
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
  tx.release();
}

std::vector<RecordId> Replica::nested_due(const schema::Resource& res, std::int64_t fetched_before,
                                          std::size_t limit) {
  std::vector<RecordId> out;
  if (!res.has_nested()) return out;
  // The order of the (resource, nested_at) index, where never-fetched rows (NULL) come first and ties keep
  // insertion order: the due rows are a prefix of the index walk, which stops at the limit instead of
  // sorting every due row for each batch. The index holds only resources with nested parts, and SQLite reads
  // it only for a query that names its condition (resource_terms).
  SQLite::Statement q(db_,
                      "SELECT id FROM record INDEXED BY record_nested_due "
                      "WHERE " +
                          resource_terms(res) +
                          " AND (nested_at IS NULL OR nested_at < ?2) "
                          // Pending records hold local nested parts; the push fetches upstream's afterwards.
                          "AND NOT EXISTS (SELECT 1 FROM pending_record p WHERE p.resource = record.resource "
                          "AND p.id = record.id) "
                          "ORDER BY nested_at, rid LIMIT ?3");
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
  const std::string& text = st_->row_text.of(nested);
  return store_nested_text(res, id, text, content_hash(nested), now);
}

bool Replica::store_nested(const schema::Resource& res, const RecordId& id, const NestedParts& parts,
                           std::int64_t now) {
  return store_nested_text(res, id, parts.text, parts.hash, now);
}

bool Replica::store_nested_text(const schema::Resource& res, const RecordId& id, const std::string& text,
                                std::uint64_t content, std::int64_t now) {
  if (is_pending(res, id)) return false;  // fetched before the local edit; the local parts stand
  const auto hash = static_cast<std::int64_t>(content);
  const ChangeFeed::RecordsOf records_of(res.name);  // both statements write this resource's row only
  {
    // One statement when the parts changed (always on a first sync): it writes only a row whose stored hash
    // differs, so no lookup of that hash has to come first.
    Reset up(st_->update_nested);
    up->bind(1, res.name);
    bind_id(*up, 2, id);
    up->bindNoCopy(3, text);
    up->bind(4, static_cast<std::int64_t>(hash));
    up->bind(5, static_cast<std::int64_t>(now));
    if (up->exec() > 0) return true;
  }
  // The same parts as stored (or the row is gone, and this changes nothing): the fetch time moves on.
  Reset touch(st_->touch_nested);
  touch->bind(1, res.name);
  bind_id(*touch, 2, id);
  touch->bind(3, static_cast<std::int64_t>(now));
  touch->exec();
  return false;
}

void Replica::defer_nested(const schema::Resource& res, const RecordId& id, std::int64_t now) {
  Reset up(st_->touch_nested);
  up->bind(1, res.name);
  bind_id(*up, 2, id);
  up->bind(3, static_cast<std::int64_t>(now));
  up->exec();
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
  const std::vector<std::string> keys = indexed_keys(res);
  std::vector<std::string> stored;
  {
    SQLite::Statement q(db_, "SELECT slot, key FROM key_slot WHERE resource = ?1 ORDER BY slot");
    q.bind(1, res.name);
    while (q.executeStep()) {
      if (q.getColumn(0).getInt() != static_cast<int>(stored.size()) + 1) break;  // a gap: not ours
      stored.push_back(q.getColumn(1).getString());
    }
  }
  if (stored == keys) return;

  // The rows are read in batches of the (resource, id) index and rewritten batch by batch, each batch its own
  // transaction, so the WAL stays small and memory stays bounded. The new assignment is stored last: a run
  // cut short leaves the old one, and the next start fills every row again.
  constexpr int kBatch = 2000;
  const SlotFiller filler(res);
  SlotText text;
  SQLite::Statement first(db_, "SELECT rid, id, body FROM record WHERE resource = ?1 ORDER BY id LIMIT ?2");
  SQLite::Statement next(
      db_, "SELECT rid, id, body FROM record WHERE resource = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
  SQLite::Statement up(
      db_,
      "UPDATE record SET k1 = ?8, k2 = ?9, k3 = ?10, k4 = ?11, k5 = ?12, k6 = ?13, k7 = ?14, "
      "k8 = ?15 WHERE rid = ?1");
  struct Stored {
    std::int64_t rid;
    std::string body;
  };
  std::vector<Stored> batch;
  std::optional<RecordId> last;
  std::int64_t filled = 0;
  for (;;) {
    batch.clear();
    {
      Reset q(last ? next : first);
      q->bind(1, res.name);
      if (last) bind_id(*q, 2, *last);
      q->bind(last ? 3 : 2, kBatch);
      while (q->executeStep()) {
        batch.push_back({q->getColumn(0).getInt64(), q->getColumn(2).getString()});
        last = column_id(q->getColumn(1));
      }
    }
    if (batch.empty()) break;
    SQLite::Transaction tx(db_);
    for (const auto& row : batch) {
      const Json body = Json::parse(row.body, nullptr, /*allow_exceptions=*/false);
      Reset w(up);
      w->bind(1, row.rid);
      filler.bind(*w, kFirstSlotParam, body, text);  // a body that does not parse (none should): NULL slots
      w->exec();
    }
    tx.commit();
    filled += static_cast<std::int64_t>(batch.size());
    if (batch.size() < static_cast<std::size_t>(kBatch) || !last) break;
  }

  SQLite::Transaction tx(db_);
  {
    SQLite::Statement del(db_, "DELETE FROM key_slot WHERE resource = ?1");
    del.bind(1, res.name);
    del.exec();
    SQLite::Statement ins(db_, "INSERT INTO key_slot (resource, slot, key) VALUES (?1, ?2, ?3)");
    for (std::size_t i = 0; i < keys.size(); ++i) {
      Reset w(ins);
      w->bind(1, res.name);
      w->bind(2, static_cast<int>(i + 1));
      w->bind(3, keys[i]);
      w->exec();
    }
  }
  tx.commit();
  if (filled > 0) spdlog::info("replica: {}: key slots filled for {} rows", res.name, filled);
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
      // The resource's terms as literals, so the count reads record_nested_due (see nested_due).
      SQLite::Statement q(
          db_, "SELECT COUNT(*) FROM record WHERE " + resource_terms(res) + " AND nested_at IS NULL");
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

bool Replica::is_pending(const schema::Resource& res, const RecordId& id) {
  if (st_) {
    // The writer asks once per get-one record it stores; preparing the query each time cost more than it.
    Reset q(st_->select_pending);
    q->bind(1, res.name);
    bind_id(*q, 2, id);
    return q->executeStep();
  }
  SQLite::Statement q(db_, "SELECT 1 FROM pending_record WHERE resource = ?1 AND id = ?2");
  q.bind(1, res.name);
  bind_id(q, 2, id);
  return q.executeStep();
}

void Replica::clear_pending(const schema::Resource& res, const RecordId& id) {
  SQLite::Statement rm(db_, "DELETE FROM pending_record WHERE resource = ?1 AND id = ?2");
  rm.bind(1, res.name);
  bind_id(rm, 2, id);
  rm.exec();
}

std::optional<std::string> Replica::state(const std::string& key) {
  SQLite::Statement q(db_, "SELECT value FROM daemon_state WHERE key = ?1");
  q.bind(1, key);
  if (!q.executeStep()) return std::nullopt;
  return q.getColumn(0).getString();
}

Replica::RefetchableWrites::RefetchableWrites(Replica& rep) : db_(rep.db_) {
  // Inside a transaction (a group commit of local changes: replica/writer.hpp) the commit is not this
  // caller's to relax: it carries changes that must be on disk before they are acknowledged.
  if (in_transaction(db_)) return;
  db_.exec("PRAGMA synchronous = NORMAL");
}

Replica::RefetchableWrites::~RefetchableWrites() {
  try {
    db_.exec("PRAGMA synchronous = FULL");
  } catch (const std::exception& e) {  // the connection is unusable; the next statement reports it
    spdlog::error("replica: restoring synchronous=FULL: {}", e.what());
  }
}

}  // namespace knosc::replica
