#include "conflict/field_merge.hpp"

namespace knosc::conflict {
namespace {

const Json* lookup(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool same(const Json* a, const Json* b) {
  if (!a || !b) return a == b;
  return *a == *b;
}

}  // namespace

FieldMerge merge_fields(const Json& base, const Json& local, const Json& remote,
                        const std::set<std::string>& ignore) {
  FieldMerge out;
  out.merged = Json::object();
  std::vector<std::string> keys;
  std::set<std::string> seen;
  for (const Json* side : {&remote, &local, &base}) {
    if (!side->is_object()) continue;
    for (const auto& [k, _] : side->items())
      if (seen.insert(k).second) keys.push_back(k);
  }
  for (const auto& key : keys) {
    const Json* b = lookup(base, key);
    const Json* l = lookup(local, key);
    const Json* r = lookup(remote, key);
    const bool local_changed = !same(b, l);
    const bool remote_changed = !same(b, r);
    out.local_changed |= local_changed && !ignore.count(key);
    out.remote_changed |= remote_changed && !ignore.count(key);
    const Json* take = r;
    if (ignore.count(key)) {
      take = r;
    } else if (local_changed && !remote_changed) {
      take = l;
    } else if (local_changed && remote_changed && !same(l, r)) {
      FieldConflict c;
      c.key = key;
      if ((c.has_base = b != nullptr)) c.base = *b;
      if ((c.has_local = l != nullptr)) c.local = *l;
      if ((c.has_remote = r != nullptr)) c.remote = *r;
      out.conflicts.push_back(std::move(c));
    }
    if (take) out.merged[key] = *take;
  }
  return out;
}

}  // namespace knosc::conflict
