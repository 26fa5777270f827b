// Debian's SQLite is built with the pre-update hook; its declaration is only visible with this defined.
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "replica/change_feed.hpp"

#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <array>
#include <cstring>

namespace knosc::replica {

namespace {

// The resource a RecordsOf on this thread names, if any.
thread_local const std::string* declared_records = nullptr;

// Tables whose rows answers are built from, each with a `resource` column naming the catalog resource.
constexpr std::array<const char*, 5> kResourceTables = {"record", "pending_record", "outbox", "local_id",
                                                        "list_meta"};
// pull_pass changes with every page (its checkpoint), but answers only show its completion time (the
// X-Knosc-Syncd-Data-Age header), so only a change of last_complete_at counts.
constexpr const char* kPassTable = "pull_pass";

std::optional<int> column_index(SQLite::Database& db, const char* table, const char* column) {
  SQLite::Statement q(db, std::string("PRAGMA table_info(") + table + ")");
  while (q.executeStep())
    if (q.getColumn(1).getString() == column) return q.getColumn(0).getInt();
  return std::nullopt;
}

std::string_view text_of(sqlite3_value* v) {
  if (!v || sqlite3_value_type(v) != SQLITE_TEXT) return {};
  const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
  return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_value_bytes(v))) : std::string_view();
}

bool same_value(sqlite3_value* a, sqlite3_value* b) {
  if (!a || !b) return a == b;
  const int ta = sqlite3_value_type(a);
  if (ta != sqlite3_value_type(b)) return false;
  if (ta == SQLITE_NULL) return true;
  if (ta == SQLITE_INTEGER) return sqlite3_value_int64(a) == sqlite3_value_int64(b);
  return text_of(a) == text_of(b);
}

}  // namespace

struct ChangeFeed::Watch {
  ChangeFeed* feed = nullptr;
  sqlite3* db = nullptr;
  std::array<int, kResourceTables.size()> resource_column{};  // -1: table absent
  int pass_resource_column = -1;
  int pass_complete_column = -1;
  int checkpoint_frames = 0;  // the connection's wal_autocheckpoint, which the commit hook takes over

  // SQLite calls this after each commit in WAL mode, once the write lock is released: the change is visible
  // to every reader that starts from now on, so it is published at once, before the task that made it can
  // answer anyone (a tool that reads right after its own write must see it).
  static int committed(void* ctx, sqlite3* db, const char* schema_name, int frames) {
    auto* w = static_cast<Watch*>(ctx);
    w->feed->publish();
    // The WAL hook is also how SQLite runs its automatic checkpoints; installing ours replaced that, so it
    // is done here the same way.
    if (w->checkpoint_frames > 0 && frames >= w->checkpoint_frames) sqlite3_wal_checkpoint(db, schema_name);
    return SQLITE_OK;
  }

  static void hook(void* ctx, sqlite3* db, int op, const char* schema_name, const char* table,
                   sqlite3_int64 /*old_rowid*/, sqlite3_int64 /*new_rowid*/) {
    auto* w = static_cast<Watch*>(ctx);
    if (std::strcmp(schema_name, "main") != 0) return;
    if (declared_records && std::strcmp(table, kResourceTables[0]) == 0) {
      w->feed->mark(*declared_records);
      return;
    }
    for (std::size_t i = 0; i < kResourceTables.size(); ++i) {
      if (w->resource_column[i] < 0 || std::strcmp(table, kResourceTables[i]) != 0) continue;
      w->mark_row(db, op, w->resource_column[i]);
      return;
    }
    if (w->pass_complete_column >= 0 && std::strcmp(table, kPassTable) == 0) {
      if (op == SQLITE_UPDATE) {
        sqlite3_value* before = nullptr;
        sqlite3_value* after = nullptr;
        sqlite3_preupdate_old(db, w->pass_complete_column, &before);
        sqlite3_preupdate_new(db, w->pass_complete_column, &after);
        if (same_value(before, after)) return;
      }
      w->mark_row(db, op, w->pass_resource_column);
    }
  }

  void mark_row(sqlite3* conn, int op, int column) {
    sqlite3_value* v = nullptr;
    if (op != SQLITE_INSERT && sqlite3_preupdate_old(conn, column, &v) == SQLITE_OK) feed->mark(text_of(v));
    v = nullptr;
    if (op != SQLITE_DELETE && sqlite3_preupdate_new(conn, column, &v) == SQLITE_OK) feed->mark(text_of(v));
  }
};

ChangeFeed::RecordsOf::RecordsOf(const std::string& resource) : outer_(declared_records) {
  declared_records = &resource;
}

ChangeFeed::RecordsOf::~RecordsOf() {
  declared_records = outer_;
}

ChangeFeed::ChangeFeed(const schema::Catalog& catalog)
    : catalog_(catalog),
      counters_(new std::atomic<std::uint64_t>[catalog.resources().size()]),
      marked_(catalog.resources().size(), 0) {
  for (std::size_t i = 0; i < catalog.resources().size(); ++i)
    counters_[i].store(0, std::memory_order_relaxed);
}

ChangeFeed::~ChangeFeed() = default;

void ChangeFeed::watch(SQLite::Database& db) {
  auto w = std::make_unique<Watch>();
  w->feed = this;
  w->db = db.getHandle();
  for (std::size_t i = 0; i < kResourceTables.size(); ++i)
    w->resource_column[i] = column_index(db, kResourceTables[i], "resource").value_or(-1);
  w->pass_resource_column = column_index(db, kPassTable, "resource").value_or(-1);
  w->pass_complete_column =
      w->pass_resource_column < 0 ? -1 : column_index(db, kPassTable, "last_complete_at").value_or(-1);
  w->checkpoint_frames = db.execAndGet("PRAGMA wal_autocheckpoint").getInt();
  sqlite3_preupdate_hook(w->db, &Watch::hook, w.get());
  sqlite3_wal_hook(w->db, &Watch::committed, w.get());
  watch_ = std::move(w);
}

std::optional<std::size_t> ChangeFeed::index_of(std::string_view resource) const {
  const auto& all = catalog_.resources();
  for (std::size_t i = 0; i < all.size(); ++i)
    if (all[i].name == resource) return i;
  return std::nullopt;
}

void ChangeFeed::mark(std::string_view resource) {
  const auto& all = catalog_.resources();
  if (last_marked_ < all.size() && all[last_marked_].name == resource && marked_[last_marked_]) return;
  if (auto i = index_of(resource)) {
    marked_[*i] = 1;
    last_marked_ = *i;
    any_marked_ = true;
  }
}

void ChangeFeed::publish() {
  if (!any_marked_) return;
  for (std::size_t i = 0; i < marked_.size(); ++i) {
    if (!marked_[i]) continue;
    marked_[i] = 0;
    counters_[i].fetch_add(1, std::memory_order_release);
  }
  any_marked_ = false;
}

}  // namespace knosc::replica
