#include "replica/migrations.hpp"

#include <SQLiteCpp/Transaction.h>

#include <string>

#include "schema/embedded.hpp"

namespace knosc::replica {

int schema_version(SQLite::Database& db) {
  return db.execAndGet("PRAGMA user_version").getInt();
}

const std::vector<std::string_view>& builtin_migrations() {
  return schema::embedded::kMigrations;
}

int migrate(SQLite::Database& db, const std::vector<std::string_view>& migrations) {
  const int before = schema_version(db);
  const int known = static_cast<int>(migrations.size());
  if (before > known) {
    throw SchemaTooNew("the replica's schema is version " + std::to_string(before) +
                       " but this knosc-syncd knows only up to " + std::to_string(known) +
                       "; run the newer knosc-syncd that wrote it, or restore a backup");
  }
  for (int v = before + 1; v <= known; ++v) {
    SQLite::Transaction tx(db);
    db.exec(std::string(migrations[static_cast<std::size_t>(v - 1)]));
    // user_version lives in the database header and is written by this transaction, so the step and its
    // number commit together.
    db.exec("PRAGMA user_version = " + std::to_string(v));
    tx.commit();
  }
  return before;
}

}  // namespace knosc::replica
