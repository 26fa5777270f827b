#include "replica/savepoint.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

namespace knosc::replica {

namespace {
// One name for every level: ROLLBACK TO and RELEASE act on the innermost savepoint of that name, which is
// this object's, because RAII keeps them strictly nested.
constexpr const char* kName = "knosc_change";
}  // namespace

Savepoint::Savepoint(SQLite::Database& db) : db_(db) {
  db_.exec(std::string("SAVEPOINT ") + kName);
}

Savepoint::~Savepoint() {
  if (!open_) return;
  try {
    rollback();
  } catch (const std::exception& e) {
    spdlog::error("replica: undoing a savepoint failed: {}", e.what());
  }
}

void Savepoint::release() {
  db_.exec(std::string("RELEASE ") + kName);
  open_ = false;
}

void Savepoint::rollback() {
  if (!open_) return;
  open_ = false;
  // SQLite may have rolled back the whole transaction itself (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM...):
  // then the savepoint no longer exists and there is nothing to undo.
  if (!in_transaction(db_)) return;
  db_.exec(std::string("ROLLBACK TO ") + kName);
  db_.exec(std::string("RELEASE ") + kName);
}

bool in_transaction(SQLite::Database& db) {
  return sqlite3_get_autocommit(db.getHandle()) == 0;
}

}  // namespace knosc::replica
