#include "daemon/response_cache.hpp"

#include <iterator>

namespace knosc::daemon {

namespace {

// What an entry costs beyond its key and body: node, map slot, headers, generations (an estimate; the
// budget is about bodies, which dominate).
std::size_t size_of(const std::string& key, const CachedAnswer& a) {
  std::size_t n = 160 + 2 * key.size() + a.response.content().size() + a.read_at.size() * 16;
  for (const auto& [name, value] : a.response.headers)
    n += name.size() + value.size() + 64;
  return n;
}

}  // namespace

ResponseCache::ResponseCache(std::size_t max_bytes, const replica::ChangeFeed* feed)
    : max_bytes_(max_bytes), feed_(feed) {}

Generations ResponseCache::snapshot(const std::vector<std::size_t>& resources) const {
  Generations g;
  if (!feed_) return g;
  g.reserve(resources.size());
  for (std::size_t r : resources)
    g.emplace_back(r, feed_->generation(r));
  return g;
}

bool ResponseCache::current(const CachedAnswer& a) const {
  for (const auto& [r, gen] : a.read_at)
    if (feed_->generation(r) != gen) return false;
  return true;
}

const CachedAnswer* ResponseCache::find(const std::string& key) {
  if (!enabled()) return nullptr;
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  if (!current(it->second->answer)) {
    ++stale_;
    ++misses_;
    erase(it->second);
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->answer;
}

void ResponseCache::store(std::string key, CachedAnswer answer) {
  if (!enabled()) return;
  const std::size_t bytes = size_of(key, answer);
  if (bytes > max_bytes_ / 8) return;
  // An answer already retired by a change that committed while it was read is not worth keeping.
  if (!current(answer)) return;
  if (auto old = index_.find(key); old != index_.end()) erase(old->second);
  lru_.push_front(Node{key, std::move(answer), bytes});
  index_.emplace(std::move(key), lru_.begin());
  bytes_ += bytes;
  while (bytes_ > max_bytes_ && !lru_.empty())
    erase(std::prev(lru_.end()));
}

void ResponseCache::erase(std::list<Node>::iterator it) {
  bytes_ -= it->bytes;
  index_.erase(it->key);
  lru_.erase(it);
}

ResponseCacheStats ResponseCache::stats() const {
  return ResponseCacheStats{hits_, misses_, stale_, index_.size(), bytes_};
}

}  // namespace knosc::daemon
