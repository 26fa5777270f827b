#pragma once
// A SAVEPOINT with RAII: the writer's unit of "all of this or none of it" that nests.
//
// SQLiteCpp's Transaction issues BEGIN, which fails inside a transaction, so a function that used one could
// not run inside the replica writer's group transaction (replica/writer.hpp: concurrent local changes share
// one commit, each in a savepoint of its own). A Savepoint works either way:
// - inside a transaction it marks a point to roll back to: release() keeps its changes as part of the
//   enclosing transaction (they are on disk once that commits), and leaving it unreleased undoes them alone;
// - outside any transaction it opens one (SQLite starts a deferred transaction), and release() commits it,
//   durable as the connection's `synchronous` says, exactly as Transaction::commit() would.
// So functions that must be atomic (write_locally, complete_entry...) use a Savepoint and work both when
// called on their own and as one change of a group.

#include <SQLiteCpp/Database.h>

namespace knosc::replica {

class Savepoint {
 public:
  explicit Savepoint(SQLite::Database& db);
  // Not released: rolls back to the savepoint and removes it, undoing everything done since it was made and
  // nothing before. Errors are logged, never thrown (when SQLite already rolled back the whole transaction,
  // after a disk-full or I/O error, there is nothing left to undo).
  ~Savepoint();
  Savepoint(const Savepoint&) = delete;
  Savepoint& operator=(const Savepoint&) = delete;

  // Keeps the changes (commits them when this savepoint opened the transaction). Throws SQLite::Exception
  // when that commit fails; the destructor then undoes them.
  void release();
  // Undoes the changes now; the savepoint is gone afterwards.
  void rollback();

 private:
  SQLite::Database& db_;
  bool open_ = true;
};

// True while the connection is inside a transaction (an explicit BEGIN or an outermost savepoint).
bool in_transaction(SQLite::Database& db);

}  // namespace knosc::replica
