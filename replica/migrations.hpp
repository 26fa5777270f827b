#pragma once
// Numbered schema migrations of the replica, tracked in PRAGMA user_version.

#include <SQLiteCpp/Database.h>

#include <stdexcept>
#include <string_view>
#include <vector>

namespace knosc::replica {

// The replica file was written by a newer knosc-syncd; opening it could corrupt data this binary does not
// know.
class SchemaTooNew : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Applies migrations user_version+1 .. size() in order, each in its own transaction together with the new
// user_version, so a crash leaves the file at a whole step. Returns the version before migrating.
// Throws SchemaTooNew when the file's version is above migrations.size().
int migrate(SQLite::Database& db, const std::vector<std::string_view>& migrations);

// Migrations compiled into this binary.
const std::vector<std::string_view>& builtin_migrations();
int schema_version(SQLite::Database& db);

}  // namespace knosc::replica
