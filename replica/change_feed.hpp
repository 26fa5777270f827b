#pragma once
// Per-resource change generations of the replica, for caches of answers built from it (the loopback's
// response cache).
//
// How changes are seen: SQLite's pre-update hook on the writer's connection reports every row inserted,
// updated or deleted in the tables an answer is built from (records and their lines, upstream's versions of
// pending records, outbox entries, local ids, list headers, and a pass's completion time), with the row's
// `resource`. The writer thread collects those names while a transaction runs and publishes them right after
// it commits (SQLite's WAL hook, which runs once the commit is visible to readers), by bumping each named
// resource's generation; the writer publishes again after each task as a backstop. Publishing before the
// writer's task answers anyone matters: a tool reading right after its own write must see it.
//
// Why that order makes a cache safe: a reader takes the generations it depends on *before* it reads the
// replica, and an answer is served from the cache only while those generations are unchanged. A change
// committed before or during the read bumps a generation after the commit, hence after the reader took it,
// so the answer can never outlive the change. The cost of a rolled-back change is a needless bump.
//
// Threads: mark() and publish() are the writer thread's (the hook runs there); generation() may be read
// from any thread.

#include <SQLiteCpp/Database.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/catalog.hpp"

namespace knosc::replica {

class ChangeFeed {
 public:
  // While one lives, rows of `record` that this thread's statements write are taken to be rows of
  // `resource` without reading the row: the hook would otherwise unpack every written row to read its
  // resource, a few percent of a first sync's CPU. Only for statements that name the resource themselves
  // (a page's inserts and updates of one resource's rows, by (resource, id)).
  class RecordsOf {
   public:
    explicit RecordsOf(const std::string& resource);
    ~RecordsOf();
    RecordsOf(const RecordsOf&) = delete;
    RecordsOf& operator=(const RecordsOf&) = delete;

   private:
    const std::string* outer_;
  };

  // One generation per resource of `catalog` (which must outlive the feed), all starting at 0.
  explicit ChangeFeed(const schema::Catalog& catalog);
  ~ChangeFeed();
  ChangeFeed(const ChangeFeed&) = delete;
  ChangeFeed& operator=(const ChangeFeed&) = delete;

  // Installs the pre-update and WAL hooks on `db`, the writer's connection (one per feed), taking over its
  // automatic checkpoints at the wal_autocheckpoint it has now (setting that pragma later would remove the
  // WAL hook). The connection must close before the feed is destroyed (ReplicaWriter keeps that order).
  // Call before the connection is handed to its thread.
  void watch(SQLite::Database& db);

  // The index of a catalog resource, for generation(); nullopt for names the catalog does not have.
  std::optional<std::size_t> index_of(std::string_view resource) const;
  std::uint64_t generation(std::size_t index) const {
    return counters_[index].load(std::memory_order_acquire);
  }

  // Writer thread: a row of `resource` changed in the transaction now running.
  void mark(std::string_view resource);
  // Writer thread, after a task's transactions committed: bumps every resource marked since the last call.
  void publish();

 private:
  struct Watch;
  const schema::Catalog& catalog_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counters_;
  std::vector<char> marked_;  // by catalog index
  bool any_marked_ = false;
  std::size_t last_marked_ = 0;  // most rows of a task belong to one resource: checked first
  std::unique_ptr<Watch> watch_;
};

}  // namespace knosc::replica
