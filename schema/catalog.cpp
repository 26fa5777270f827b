#include "schema/catalog.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <set>

#include "schema/embedded.hpp"

namespace knosc::schema {
namespace {

std::string where(std::string_view source, const toml::node& node) {
  const auto& r = node.source();
  return std::string(source) + ":" + std::to_string(r.begin.line);
}

[[noreturn]] void fail(std::string_view source, const toml::node& node, const std::string& what) {
  throw CatalogError(where(source, node) + ": " + what);
}

// Reads the keys of one [[resource]] table, refusing unknown keys so that a typo cannot silently turn a
// setting off.
class ResourceReader {
 public:
  ResourceReader(std::string_view source, const toml::table& table) : source_(source), table_(table) {}

  std::string str(std::string_view key, std::optional<std::string> fallback = std::nullopt) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) {
      if (fallback) return *fallback;
      fail(source_, table_, "resource is missing required key '" + std::string(key) + "'");
    }
    auto v = n->value<std::string>();
    if (!v) fail(source_, *n, "key '" + std::string(key) + "' must be a string");
    return *v;
  }

  bool boolean(std::string_view key, bool fallback) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) return fallback;
    auto v = n->value<bool>();
    if (!v) fail(source_, *n, "key '" + std::string(key) + "' must be true or false");
    return *v;
  }

  int positive(std::string_view key, int fallback) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) return fallback;
    auto v = n->value<int64_t>();
    if (!v || *v <= 0 || *v > 1'000'000'000)
      fail(source_, *n, "key '" + std::string(key) + "' must be a positive integer");
    return static_cast<int>(*v);
  }

  std::vector<std::string> strings(std::string_view key) {
    seen_.insert(std::string(key));
    std::vector<std::string> out;
    const toml::node* n = table_.get(key);
    if (!n) return out;
    const toml::array* arr = n->as_array();
    if (!arr) fail(source_, *n, "key '" + std::string(key) + "' must be an array of strings");
    for (const auto& e : *arr) {
      auto v = e.value<std::string>();
      if (!v) fail(source_, e, "key '" + std::string(key) + "' must contain only strings");
      out.push_back(*v);
    }
    return out;
  }

  SortSpec sort(std::string_view key) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) return SortSpec{"id", false};
    const toml::table* t = n->as_table();
    if (!t) fail(source_, *n, "key '" + std::string(key) + "' must be a table { key, type }");
    SortSpec s;
    auto k = (*t)["key"].value<std::string>();
    auto ty = (*t)["type"].value<std::string>();
    if (!k || k->empty()) fail(source_, *n, "'" + std::string(key) + ".key' must be a non-empty string");
    if (!ty || (*ty != "Ascending" && *ty != "Descending"))
      fail(source_, *n, "'" + std::string(key) + ".type' must be \"Ascending\" or \"Descending\"");
    for (const auto& [name, _] : *t)
      if (name != "key" && name != "type")
        fail(source_, *n, "unknown key '" + std::string(key) + "." + std::string(name.str()) + "'");
    s.key = *k;
    s.descending = *ty == "Descending";
    return s;
  }

  template <typename E>
  E choice(std::string_view key, const std::vector<std::pair<std::string_view, E>>& options,
           std::optional<E> fallback = std::nullopt) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) {
      if (fallback) return *fallback;
      fail(source_, table_, "resource is missing required key '" + std::string(key) + "'");
    }
    auto v = n->value<std::string>();
    std::string allowed;
    for (const auto& [name, value] : options) {
      if (v && *v == name) return value;
      allowed += (allowed.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    }
    fail(source_, *n, "key '" + std::string(key) + "' must be one of " + allowed);
  }

  std::vector<DerivedList> derived_lists(std::string_view key) {
    seen_.insert(std::string(key));
    std::vector<DerivedList> out;
    const toml::node* n = table_.get(key);
    if (!n) return out;
    const toml::array* arr = n->as_array();
    if (!arr) fail(source_, *n, "key '" + std::string(key) + "' must be an array of tables");
    for (const auto& e : *arr) {
      const toml::table* t = e.as_table();
      if (!t) fail(source_, e, "key '" + std::string(key) + "' must contain tables");
      ResourceReader r(source_, *t);
      DerivedList d;
      d.key = r.str("key");
      d.from = r.str("from");
      d.match_key = r.str("match_key");
      d.own_key = r.str("own_key", std::string("id"));
      d.fields = r.strings("fields");
      r.reject_unknown_keys();
      out.push_back(std::move(d));
    }
    return out;
  }

  void reject_unknown_keys() {
    for (const auto& [name, node] : table_)
      if (!seen_.count(std::string(name.str())))
        fail(source_, node, "unknown key '" + std::string(name.str()) + "' in [[resource]]");
  }

 private:
  std::string_view source_;
  const toml::table& table_;
  std::set<std::string> seen_;
};

// The replica indexes a resource's default sort, filterable and sortable keys through at most eight key slots
// per row (record.k1..k8; replica/key_slots.hpp assigns them by the same rule): each key counts once, and
// "id" (indexed by itself) and keys containing '"' or NUL (which list requests cannot name) need none.
constexpr std::size_t kMaxIndexedKeys = 8;

std::vector<std::string> indexed_keys(const Resource& res) {
  std::vector<std::string> keys;
  const auto add = [&](const std::string& key) {
    if (key == "id" || key.find('"') != std::string::npos || key.find('\0') != std::string::npos) return;
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  };
  add(res.default_sort.key);
  for (const auto& k : res.filterable)
    add(k);
  for (const auto& k : res.sortable)
    add(k);
  return keys;
}

}  // namespace

std::string_view to_string(ConflictPolicy p) {
  switch (p) {
    case ConflictPolicy::Merge:
      return "merge";
    case ConflictPolicy::ServerWins:
      return "server-wins";
    case ConflictPolicy::ClientWins:
      return "client-wins";
    case ConflictPolicy::Manual:
      return "manual";
  }
  return "merge";
}

Catalog Catalog::parse(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw CatalogError(std::string(source) + ":" + std::to_string(e.source().begin.line) + ": " +
                       std::string(e.description()));
  }
  Catalog catalog;
  for (const auto& [key, node] : root)
    if (key != "resource") fail(source, node, "unknown top-level key '" + std::string(key.str()) + "'");
  const toml::array* list = root["resource"].as_array();
  if (!list || list->empty()) throw CatalogError(std::string(source) + ": no [[resource]] entries");

  for (const auto& node : *list) {
    const toml::table* t = node.as_table();
    if (!t) fail(source, node, "[[resource]] entries must be tables");
    ResourceReader r(source, *t);
    Resource res;
    res.name = r.str("name");
    if (res.name.empty() || res.name.find_first_of("/?# ") != std::string::npos)
      fail(source, *t, "resource name '" + res.name + "' must be a non-empty route segment");
    res.label = r.str("label", res.name);
    res.not_found_message = r.str("not_found_message", res.not_found_message);
    res.id_type = r.choice<IdType>("id_type", {{"integer", IdType::Integer}, {"string", IdType::String}});
    res.business_key = r.strings("business_key");
    res.module = r.str("module");
    res.default_sort = r.sort("default_sort");
    res.get_one = r.choice<GetOneShape>(
        "get_one",
        {{"data", GetOneShape::Data}, {"rows-object", GetOneShape::RowsObject}, {"none", GetOneShape::None}});
    res.not_found_code = r.str("not_found_code");
    res.delete_check = r.choice<DeleteCheck>("delete_check", {{"get-one", DeleteCheck::GetOne},
                                                              {"parent-get-one", DeleteCheck::ParentGetOne},
                                                              {"filter-by-key", DeleteCheck::FilterByKey}});
    res.warehouse_scoped = r.boolean("warehouse_scoped", false);
    res.nested = r.strings("nested");
    res.nested_refresh_hours = r.positive("nested_refresh_hours", 24);
    res.parent = r.str("parent", std::string());
    res.parent_key = r.str("parent_key", std::string());
    res.lines = r.str("lines", std::string());
    res.filterable = r.strings("filterable");
    res.sortable = r.strings("sortable");
    res.pull_interval_seconds = r.positive("pull_interval_seconds", 300);
    res.conflict_policy = r.choice<ConflictPolicy>("conflict_policy",
                                                   {{"merge", ConflictPolicy::Merge},
                                                    {"server-wins", ConflictPolicy::ServerWins},
                                                    {"client-wins", ConflictPolicy::ClientWins},
                                                    {"manual", ConflictPolicy::Manual}},
                                                   ConflictPolicy::Merge);
    res.manual_fields = r.strings("manual_fields");
    res.mirror = r.boolean("mirror", true);
    res.derived = r.derived_lists("derived");
    res.export_views = r.strings("export_views");
    r.reject_unknown_keys();

    if (res.parent.empty() != res.parent_key.empty())
      fail(source, *t, "resource '" + res.name + "': 'parent' and 'parent_key' go together");
    if (res.delete_check == DeleteCheck::ParentGetOne && res.parent.empty())
      fail(source, *t, "resource '" + res.name + "': delete_check \"parent-get-one\" needs 'parent'");
    if (res.delete_check == DeleteCheck::GetOne && res.get_one == GetOneShape::None)
      fail(source, *t, "resource '" + res.name + "': delete_check \"get-one\" needs a get_one shape");
    if (res.delete_check == DeleteCheck::FilterByKey && res.business_key.empty())
      fail(source, *t, "resource '" + res.name + "': delete_check \"filter-by-key\" needs a business_key");
    if (res.has_nested() && res.get_one == GetOneShape::None)
      fail(source, *t, "resource '" + res.name + "': 'nested' keys need a get_one shape");
    if (const auto keys = indexed_keys(res); keys.size() > kMaxIndexedKeys) {
      std::string named;
      for (const auto& k : keys)
        named += (named.empty() ? "'" : ", '") + k + "'";
      fail(source, *t,
           "resource '" + res.name + "' has " + std::to_string(keys.size()) +
               " distinct default_sort, filterable and sortable keys (" + named +
               "); the replica indexes at most " + std::to_string(kMaxIndexedKeys) + " keys per resource");
    }
    if (catalog.by_name_.count(res.name)) fail(source, *t, "resource '" + res.name + "' is listed twice");
    catalog.by_name_.emplace(res.name, catalog.resources_.size());
    catalog.resources_.push_back(std::move(res));
  }

  // Cross-references are checked once every name is known.
  for (const auto& res : catalog.resources_) {
    if (!res.parent.empty()) {
      const Resource* p = catalog.find(res.parent);
      if (!p)
        throw CatalogError(std::string(source) + ": resource '" + res.name + "' names unknown parent '" +
                           res.parent + "'");
      if (p->get_one == GetOneShape::None && res.delete_check == DeleteCheck::ParentGetOne)
        throw CatalogError(std::string(source) + ": resource '" + res.name + "': parent '" + res.parent +
                           "' has no get-one route to confirm line deletions");
    }
    if (!res.lines.empty()) {
      const Resource* l = catalog.find(res.lines);
      if (!l || l->parent != res.name)
        throw CatalogError(std::string(source) + ": resource '" + res.name + "' names lines '" + res.lines +
                           "', which must be a resource whose parent is '" + res.name + "'");
    }
  }
  return catalog;
}

const Catalog& Catalog::builtin() {
  static const Catalog catalog = parse(embedded::kCatalog, "schema/catalog.toml");
  return catalog;
}

std::string Resource::missing_message(std::string_view id) const {
  std::string out;
  const std::string& t = not_found_message;
  for (std::size_t i = 0; i < t.size();) {
    if (t.compare(i, 7, "{label}") == 0) {
      out += label;
      i += 7;
    } else if (t.compare(i, 4, "{id}") == 0) {
      out += id;
      i += 4;
    } else {
      out += t[i++];
    }
  }
  return out;
}

const Resource* Catalog::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &resources_[it->second];
}

const Resource* Catalog::find_export_view(std::string_view view) const {
  for (const auto& r : resources_)
    for (const auto& v : r.export_views)
      if (v == view) return &r;
  return nullptr;
}

const Resource& Catalog::at(std::string_view name) const {
  const Resource* r = find(name);
  if (!r) throw CatalogError("unknown resource '" + std::string(name) + "'");
  return *r;
}

}  // namespace knosc::schema
