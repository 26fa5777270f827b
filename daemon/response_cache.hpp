#pragma once
// The loopback's cache of answers read from the replica (list pages and get-one records).
//
// Why: a plant's tools poll the same few pages and records over and over, and most of the time the replica
// has not changed in between. A hit is answered on the loop thread at once, without the hop to a reader
// thread, SQLite and the JSON encoding.
//
// Correctness: every entry names the resources its answer was built from, with their change generations
// (replica/change_feed.hpp) as the reader took them *before* it read the replica. An entry is served only
// while all of them are unchanged; any committed change to one of those resources (a pull page, a local
// edit, a push result, a pass completing) retires it. Entries are keyed by the request target and the
// caller's row scope (granular filters); module privileges are checked before the cache is consulted, so
// two callers with the same scope may share an answer. Headers that depend on the moment (the data's age,
// the link's state) are added when an answer is served, not stored.
//
// Threads: the loop thread only, except snapshot(), which any thread may call.

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/http_server.hpp"
#include "replica/change_feed.hpp"

namespace knosc::daemon {

// Resources (change-feed indexes) and the generations an answer was read at.
using Generations = std::vector<std::pair<std::size_t, std::uint64_t>>;

struct CachedAnswer {
  HttpResponse response;                      // as the route built it, without per-moment headers
  std::optional<std::int64_t> last_complete;  // the resource's last complete pass, for the data-age header
  Generations read_at;
};

struct ResponseCacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t stale = 0;  // found but retired by a change
  std::size_t entries = 0;
  std::size_t bytes = 0;
};

class ResponseCache {
 public:
  // max_bytes 0 disables the cache (find() never hits, store() keeps nothing).
  ResponseCache(std::size_t max_bytes, const replica::ChangeFeed* feed);

  bool enabled() const { return max_bytes_ > 0 && feed_ != nullptr; }

  // The current generations of `resources` (change-feed indexes); take them before reading the replica.
  Generations snapshot(const std::vector<std::size_t>& resources) const;

  // The entry for `key` while every resource it was read from is unchanged; null otherwise (a stale entry is
  // dropped). A hit becomes the most recently used entry.
  const CachedAnswer* find(const std::string& key);

  // Keeps an answer, evicting the least recently used entries beyond the byte budget. Answers larger than
  // an eighth of the budget are not kept, so one huge page cannot flush everything else.
  void store(std::string key, CachedAnswer answer);

  ResponseCacheStats stats() const;

 private:
  struct Node {
    std::string key;
    CachedAnswer answer;
    std::size_t bytes = 0;
  };
  bool current(const CachedAnswer& a) const;
  void erase(std::list<Node>::iterator it);

  std::size_t max_bytes_;
  const replica::ChangeFeed* feed_;
  std::list<Node> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Node>::iterator> index_;
  std::size_t bytes_ = 0;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
  std::uint64_t stale_ = 0;
};

}  // namespace knosc::daemon
