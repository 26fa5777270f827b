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
  // `context` names the table in messages about unknown keys, `subject` in messages about missing ones.
  ResourceReader(std::string_view source, const toml::table& table, std::string context = "[[resource]]",
                 std::string subject = "resource")
      : source_(source), table_(table), context_(std::move(context)), subject_(std::move(subject)) {}

  const toml::table& table() const { return table_; }
  std::string_view source() const { return source_; }
  const std::string& context() const { return context_; }

  std::string str(std::string_view key, std::optional<std::string> fallback = std::nullopt) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) {
      if (fallback) return *fallback;
      fail(source_, table_, subject_ + " is missing required key '" + std::string(key) + "'");
    }
    auto v = n->value<std::string>();
    if (!v) fail(source_, *n, "key '" + std::string(key) + "' must be a string");
    return *v;
  }

  // A string that must not be empty when given.
  std::string name(std::string_view key, std::optional<std::string> fallback = std::nullopt) {
    std::string v = str(key, fallback);
    if (v.empty() && table_.get(key))
      fail(source_, *table_.get(key), "key '" + std::string(key) + "' must not be empty");
    return v;
  }

  int non_negative(std::string_view key, int fallback) {
    seen_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (!n) return fallback;
    auto v = n->value<int64_t>();
    if (!v || *v < 0 || *v > 1'000'000)
      fail(source_, *n, "key '" + std::string(key) + "' must be a non-negative integer");
    return static_cast<int>(*v);
  }

  // The node of an optional key, marked as read.
  const toml::node* node(std::string_view key) {
    seen_.insert(std::string(key));
    return table_.get(key);
  }

  // A table of string values, e.g. copy = { "Supplier Name" = "Supplier Name" }, in key order.
  std::vector<std::pair<std::string, std::string>> string_map(std::string_view key) {
    std::vector<std::pair<std::string, std::string>> out;
    const toml::node* n = node(key);
    if (!n) return out;
    const toml::table* t = n->as_table();
    if (!t) fail(source_, *n, "key '" + std::string(key) + "' must be a table of strings");
    for (const auto& [k, v] : *t) {
      auto s = v.value<std::string>();
      if (!s || s->empty() || k.str().empty())
        fail(source_, v, "key '" + std::string(key) + "' must map non-empty keys to non-empty strings");
      out.emplace_back(std::string(k.str()), *s);
    }
    return out;
  }

  // Each table of an array of tables, read by `read` with a reader of its own (unknown keys refused).
  template <typename F>
  void tables(std::string_view key, F&& read) {
    const toml::node* n = node(key);
    if (!n) return;
    const toml::array* arr = n->as_array();
    if (!arr) fail(source_, *n, "key '" + std::string(key) + "' must be an array of tables");
    for (const auto& e : *arr) {
      const toml::table* t = e.as_table();
      if (!t) fail(source_, e, "key '" + std::string(key) + "' must contain only tables");
      ResourceReader r(source_, *t, context_ + "." + std::string(key),
                       "an entry of '" + std::string(key) + "'");
      read(r);
      r.reject_unknown_keys();
    }
  }

  // An optional sub-table, read by `read`; returns false when absent.
  template <typename F>
  bool sub_table(std::string_view key, const std::string& context, F&& read) {
    const toml::node* n = node(key);
    if (!n) return false;
    const toml::table* t = n->as_table();
    if (!t) fail(source_, *n, "key '" + std::string(key) + "' must be a table");
    ResourceReader r(source_, *t, context, context);
    read(r);
    r.reject_unknown_keys();
    return true;
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
      fail(source_, table_, subject_ + " is missing required key '" + std::string(key) + "'");
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
      ResourceReader r(source_, *t, context_ + ".derived", "an entry of 'derived'");
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
        fail(source_, node, "unknown key '" + std::string(name.str()) + "' in " + context_);
  }

 private:
  std::string_view source_;
  const toml::table& table_;
  std::string context_;
  std::string subject_;
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

// ---------------------------------------------------------------------------------------------------------
// Write rules ([resource.write])
// ---------------------------------------------------------------------------------------------------------

// A resource named by a write rule, checked once every resource is known.
struct NamedResource {
  std::string where;  // "file:line: " of the naming key
  std::string name;   // the resource named
  std::string what;   // which key names it, for the message
  std::string lines;  // non-empty: the named resource must have this line set
  // A nested line set's own name, which must not be a catalog resource: local ids and messages would mix the
  // two.
  bool must_be_unknown = false;
};

const std::set<std::string, std::less<>> kWriteRules = {"allocation-limits", "ticket"};
const std::set<std::string, std::less<>> kLineRules = {"asn-po-lines"};

bool is_date_text(const std::string& s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// Whether a default value is one the field's own check accepts.
bool fits(const WriteField& f, const nlohmann::ordered_json& v) {
  if (v.is_null()) return f.nullable || f.type == FieldType::Any;
  switch (f.type) {
    case FieldType::String:
      return v.is_string() &&
             v.get_ref<const std::string&>().find_first_not_of(" \t\r\n") != std::string::npos;
    case FieldType::Number:
      return v.is_number();
    case FieldType::Integer:
      return v.is_number_integer();
    case FieldType::Date:
      return v.is_string() && is_date_text(v.get<std::string>());
    case FieldType::Boolean:
      return v.is_boolean();
    case FieldType::Email:
      return v.is_string() && v.get_ref<const std::string&>().find('@') != std::string::npos;
    case FieldType::Any:
      return true;
    case FieldType::Enum:
      return v.is_string() &&
             std::find(f.values.begin(), f.values.end(), v.get<std::string>()) != f.values.end();
  }
  return false;
}

class WriteReader {
 public:
  WriteReader(std::vector<NamedResource>& named) : named_(named) {}

  void name_resource(ResourceReader& r, const toml::node& at, const std::string& name,
                     const std::string& what, const std::string& lines = {}) {
    named_.push_back({where(r.source(), at) + ": ", name, r.context() + "." + what, lines});
  }

  WriteField field(ResourceReader& r) {
    WriteField f;
    f.key = r.name("key");
    const std::string type = r.str("type");
    std::string base = type;
    if (!base.empty() && base.back() == '?') {
      f.nullable = true;
      base.pop_back();
    }
    static const std::vector<std::pair<std::string_view, FieldType>> kTypes = {
        {"str", FieldType::String}, {"num", FieldType::Number},   {"int", FieldType::Integer},
        {"date", FieldType::Date},  {"bool", FieldType::Boolean}, {"email", FieldType::Email},
        {"any", FieldType::Any},    {"enum", FieldType::Enum}};
    bool known = false;
    for (const auto& [n, t] : kTypes)
      if (n == base) {
        f.type = t;
        known = true;
      }
    if (!known || (f.type == FieldType::Any && f.nullable))
      fail(r.source(), *r.node("type"),
           "key 'type' of field '" + f.key +
               "' must be one of \"str\", \"num\", \"int\", \"date\", \"bool\", \"email\", \"enum\" (each "
               "with "
               "an optional '?' that allows null) or \"any\"");
    f.values = r.strings("values");
    if (f.type == FieldType::Enum && f.values.empty())
      fail(r.source(), r.table(), "field '" + f.key + "' of type \"enum\" needs 'values'");
    if (f.type != FieldType::Enum && !f.values.empty())
      fail(r.source(), *r.node("values"), "field '" + f.key + "': 'values' go with type \"enum\" only");
    f.required = r.boolean("required", false);
    if (const toml::node* d = r.node("default")) {
      if (auto s = d->value<std::string>()) {
        f.default_value = *s;
      } else if (d->is_integer()) {
        f.default_value = *d->value<int64_t>();
      } else if (d->is_floating_point()) {
        f.default_value = *d->value<double>();
      } else if (d->is_boolean()) {
        f.default_value = *d->value<bool>();
      } else {
        fail(r.source(), *d, "key 'default' of field '" + f.key + "' must be a string, number or boolean");
      }
      if (f.required) fail(r.source(), *d, "field '" + f.key + "' is required, so it takes no 'default'");
      if (!fits(f, f.default_value))
        fail(r.source(), *d, "key 'default' of field '" + f.key + "' is not a valid value of its type");
    }
    return f;
  }

  WriteRef ref(ResourceReader& r) {
    WriteRef ref;
    ref.field = r.name("field");
    ref.target = r.name("target");
    name_resource(r, r.table(), ref.target, "target");
    ref.target_key = r.name("target_key", ref.field);
    ref.id_field = r.str("id_field", std::string());
    ref.copy = r.string_map("copy");
    ref.required = r.boolean("required", false);
    r.sub_table("belongs", r.context() + ".belongs", [&](ResourceReader& b) {
      ref.belongs_target_key = b.name("target_key");
      ref.belongs_own_key = b.name("own_key");
    });
    return ref;
  }

  std::vector<WriteField> fields(ResourceReader& r) {
    std::vector<WriteField> out;
    r.tables("fields", [&](ResourceReader& e) {
      WriteField f = field(e);
      for (const auto& o : out)
        if (o.key == f.key) fail(e.source(), e.table(), "field '" + f.key + "' is listed twice");
      out.push_back(std::move(f));
    });
    return out;
  }

  std::vector<WriteRef> refs(ResourceReader& r, const std::vector<WriteField>& fields) {
    std::vector<WriteRef> out;
    r.tables("refs", [&](ResourceReader& e) {
      WriteRef ref = this->ref(e);
      for (const auto& f : fields)
        if (f.key == ref.field) fail(e.source(), e.table(), "'" + ref.field + "' is both a field and a ref");
      for (const auto& o : out)
        if (o.field == ref.field) fail(e.source(), e.table(), "ref '" + ref.field + "' is listed twice");
      out.push_back(std::move(ref));
    });
    return out;
  }

  // Every key a write stores must be one of the record's keys, so a create builds the record Knosc shows.
  static void check_stored(ResourceReader& r, const std::vector<std::string>& keys, const std::string& key,
                           const std::string& what) {
    if (key.empty() || keys.empty()) return;
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      fail(r.source(), r.table(), what + " '" + key + "' is not one of 'keys'");
  }
  static void check_fields_stored(ResourceReader& r, const std::vector<std::string>& keys,
                                  const std::vector<WriteField>& fields, const std::vector<WriteRef>& refs) {
    for (const auto& f : fields)
      check_stored(r, keys, f.key, "field");
    for (const auto& ref : refs) {
      check_stored(r, keys, ref.field, "ref");
      check_stored(r, keys, ref.id_field, "id_field");
      for (const auto& [dst, src] : ref.copy)
        check_stored(r, keys, dst, "copied key");
    }
  }

  LineRules lines(ResourceReader& r, const Resource& res, const std::vector<std::string>& header_keys,
                  const std::vector<WriteField>& header_fields) {
    LineRules l;
    l.key = r.name("key", std::string("details"));
    l.resource = r.name("resource");
    l.parent_field = r.name("parent_field");
    l.id_alias = r.str("id_alias", std::string());
    l.label = r.name("label");
    l.prefix = r.name("prefix");
    l.keys = r.strings("keys");
    if (l.keys.empty()) fail(r.source(), r.table(), r.context() + " needs 'keys'");
    l.fields = fields(r);
    l.refs = refs(r, l.fields);
    check_fields_stored(r, l.keys, l.fields, l.refs);
    for (const auto& k : {std::string("id"), l.parent_field, l.id_alias})
      check_stored(r, l.keys, k, "key");
    l.copy = r.string_map("copy");
    for (const auto& [dst, src] : l.copy) {
      check_stored(r, l.keys, dst, "copied key");
      check_stored(r, header_keys, src, "header key");
    }
    r.tables("aggregates", [&](ResourceReader& e) {
      LineAggregate a;
      a.key = e.name("key");
      a.sum = e.str("sum", std::string());
      check_stored(e, header_keys, a.key, "aggregate");
      check_stored(e, l.keys, a.sum, "summed key");
      l.aggregates.push_back(std::move(a));
    });
    l.single_warehouse = r.boolean("single_warehouse", false);
    l.warehouse_from_header = r.boolean("warehouse_from_header", false);
    l.header_warehouse = r.boolean("header_warehouse", false);
    if (l.warehouse_from_header && std::none_of(l.copy.begin(), l.copy.end(),
                                                [](const auto& c) { return c.first == "Warehouse Number"; }))
      fail(r.source(), r.table(), "'warehouse_from_header' needs \"Warehouse Number\" in 'copy'");
    if (l.header_warehouse) check_stored(r, header_keys, "Warehouse Number", "header_warehouse key");
    r.sub_table("duplicate", r.context() + ".duplicate", [&](ResourceReader& d) {
      l.duplicate_keys = d.strings("keys");
      if (l.duplicate_keys.empty()) fail(d.source(), d.table(), "'duplicate' needs 'keys'");
      l.duplicate_code = d.name("code");
      l.duplicate_message = d.name("message");
    });
    r.sub_table("date_rule", r.context() + ".date_rule", [&](ResourceReader& d) {
      l.date_line_order = d.name("line_order_date");
      l.date_header_order = d.name("header_order_date");
      l.date_line_ship = d.name("line_ship_date");
      l.date_code = d.name("code");
    });
    l.min_lines = r.non_negative("min_lines", 1);
    const bool has_no_items = r.sub_table("no_items", r.context() + ".no_items", [&](ResourceReader& d) {
      l.no_items_code = d.name("code");
      l.no_items_message = d.name("message");
    });
    if (l.min_lines > 0 && !has_no_items)
      fail(r.source(), r.table(), r.context() + " needs 'no_items' (the error for too few lines)");
    r.sub_table("status_pair", r.context() + ".status_pair", [&](ResourceReader& d) {
      l.status_header = d.name("header");
      l.status_line = d.name("line");
      if (std::none_of(header_fields.begin(), header_fields.end(),
                       [&](const WriteField& f) { return f.key == l.status_header; }))
        fail(d.source(), d.table(), "status_pair.header '" + l.status_header + "' is not a header field");
      check_stored(d, l.keys, l.status_line, "status_pair.line");
    });
    r.tables("defaults_from_refs", [&](ResourceReader& e) {
      RefDefault d;
      d.key = e.name("key");
      d.ref = e.name("ref");
      d.target_key = e.name("target_key");
      if (std::none_of(l.refs.begin(), l.refs.end(), [&](const WriteRef& x) { return x.field == d.ref; }))
        fail(e.source(), e.table(), "'" + d.ref + "' is not one of the lines' refs");
      check_stored(e, l.keys, d.key, "key");
      l.ref_defaults.push_back(std::move(d));
    });
    l.rules = r.strings("rules");
    for (const auto& rule : l.rules)
      if (!kLineRules.count(rule)) fail(r.source(), *r.node("rules"), "unknown line rule '" + rule + "'");

    if (l.resource == res.lines) {
      // A flat line list: the lines are records of that catalog resource.
    } else if (!res.lines.empty()) {
      fail(r.source(), r.table(),
           "lines.resource must be '" + res.lines + "', the resource's flat line list");
    } else if (std::find(res.nested.begin(), res.nested.end(), l.key) == res.nested.end()) {
      fail(r.source(), r.table(),
           "the line set '" + l.key +
               "' must be one of the resource's 'nested' keys (or 'lines' a flat list)");
    } else {
      auto nested = std::make_shared<Resource>();
      nested->name = l.resource;
      nested->label = l.label;
      nested->id_type = IdType::Integer;
      nested->module = res.module;
      nested->get_one = GetOneShape::None;
      nested->not_found_code = l.prefix + ".NotFound";
      nested->delete_check = DeleteCheck::ParentGetOne;
      nested->parent = res.name;
      nested->parent_key = l.parent_field;
      nested->mirror = false;
      l.nested_resource = std::move(nested);
      named_.push_back(
          {where(r.source(), r.table()) + ": ", l.resource, r.context() + ".resource", "", true});
    }
    return l;
  }

  WriteRules rules(ResourceReader& r, const Resource& res) {
    WriteRules w;
    w.methods = r.strings("methods");
    if (w.methods.empty()) fail(r.source(), r.table(), r.context() + " needs 'methods'");
    for (std::size_t i = 0; i < w.methods.size(); ++i) {
      const auto& m = w.methods[i];
      if (m != "POST" && m != "PUT" && m != "DELETE")
        fail(r.source(), *r.node("methods"), "key 'methods' may only hold \"POST\", \"PUT\" and \"DELETE\"");
      if (std::find(w.methods.begin(), w.methods.begin() + static_cast<std::ptrdiff_t>(i), m) !=
          w.methods.begin() + static_cast<std::ptrdiff_t>(i))
        fail(r.source(), *r.node("methods"), "method \"" + m + "\" is listed twice");
    }
    w.online_only = r.boolean("online_only", false);
    w.prefix = r.name("prefix");
    w.number = r.str("number", std::string());
    w.number_prefix = r.str("number_prefix", std::string());
    w.update = r.choice<UpdateMode>("update", {{"partial", UpdateMode::Partial}, {"full", UpdateMode::Full}},
                                    UpdateMode::Partial);
    w.keys = r.strings("keys");
    w.fields = fields(r);
    w.refs = refs(r, w.fields);
    check_fields_stored(r, w.keys, w.fields, w.refs);
    check_stored(r, w.keys, w.number, "number");
    w.unique = r.strings("unique");
    for (const auto& k : w.unique)
      check_stored(r, w.keys, k, "unique key");
    r.tables("blockers", [&](ResourceReader& e) {
      DeleteBlocker b;
      b.resource = e.name("resource");
      b.key = e.name("key");
      b.own_key = e.name("own_key", std::string("id"));
      b.lines = e.str("lines", std::string());
      name_resource(e, e.table(), b.resource, "resource", b.lines);
      w.blockers.push_back(std::move(b));
    });
    r.tables("cascades", [&](ResourceReader& e) {
      DeleteCascade c;
      c.resource = e.name("resource");
      c.key = e.name("key");
      name_resource(e, e.table(), c.resource, "resource");
      w.cascades.push_back(std::move(c));
    });
    r.tables("clear_on_delete", [&](ResourceReader& e) {
      DeleteClear c;
      c.resource = e.name("resource");
      c.key = e.name("key");
      c.keys = e.strings("keys");
      if (c.keys.empty()) fail(e.source(), e.table(), "an entry of 'clear_on_delete' needs 'keys'");
      c.stamp = e.str("stamp", std::string());
      name_resource(e, e.table(), c.resource, "resource");
      w.clears.push_back(std::move(c));
    });
    r.sub_table("stamps", r.context() + ".stamps", [&](ResourceReader& e) {
      w.stamps.created_at = e.str("created_at", std::string());
      w.stamps.updated_at = e.str("updated_at", std::string());
      w.stamps.created_by = e.str("created_by", std::string());
      for (const auto& k : {w.stamps.created_at, w.stamps.updated_at, w.stamps.created_by})
        check_stored(e, w.keys, k, "stamped key");
    });
    r.tables("groups", [&](ResourceReader& e) {
      KeyGroup g;
      g.key = e.name("key");
      g.keys = e.strings("keys");
      if (g.keys.empty()) fail(e.source(), e.table(), "an entry of 'groups' needs 'keys'");
      for (const auto& k : g.keys)
        check_stored(e, w.keys, k, "grouped key");
      w.groups.push_back(std::move(g));
    });
    w.rules = r.strings("rules");
    for (const auto& rule : w.rules)
      if (!kWriteRules.count(rule)) fail(r.source(), *r.node("rules"), "unknown write rule '" + rule + "'");
    r.sub_table("lines", r.context() + ".lines",
                [&](ResourceReader& l) { w.lines = lines(l, res, w.keys, w.fields); });

    const bool writes_records = !w.online_only && (w.allows("POST") || w.allows("PUT"));
    if (res.is_line_list() && (w.methods.size() != 1 || w.methods[0] != "DELETE"))
      fail(r.source(), r.table(),
           "resource '" + res.name +
               "' is a flat line list: lines are written through their header, so "
               "'methods' must be [\"DELETE\"]");
    if (writes_records && w.keys.empty()) fail(r.source(), r.table(), r.context() + " needs 'keys'");
    if (writes_records && !res.lines.empty() && !w.lines)
      fail(r.source(), r.table(),
           "resource '" + res.name + "' has a flat line list, so it needs [resource.write.lines]");
    if (w.update == UpdateMode::Full && !w.lines)
      fail(r.source(), r.table(), "update \"full\" replaces a line set, so it needs [resource.write.lines]");
    return w;
  }

 private:
  std::vector<NamedResource>& named_;
};

}  // namespace

bool WriteRules::allows(std::string_view method) const {
  return std::find(methods.begin(), methods.end(), method) != methods.end();
}

bool WriteRules::has_rule(std::string_view rule) const {
  return std::find(rules.begin(), rules.end(), rule) != rules.end();
}

const WriteField* WriteRules::field(std::string_view key) const {
  for (const auto& f : fields)
    if (f.key == key) return &f;
  return nullptr;
}

const Resource& LineRules::lines_resource(const Catalog& catalog) const {
  return nested_resource ? *nested_resource : catalog.at(resource);
}

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
  std::vector<NamedResource> named_resources;
  WriteReader write_reader(named_resources);
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
    r.sub_table("write", "[resource.write]", [&](ResourceReader& w) {
      res.write = std::make_shared<const WriteRules>(write_reader.rules(w, res));
    });
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
  for (const auto& n : named_resources) {
    const Resource* target = catalog.find(n.name);
    if (n.must_be_unknown) {
      if (target)
        throw CatalogError(n.where + "key '" + n.what + "' names '" + n.name +
                           "', a catalog resource; a nested line set needs a name of its own");
      continue;
    }
    if (!target) throw CatalogError(n.where + "key '" + n.what + "' names unknown resource '" + n.name + "'");
    const bool has_lines =
        (!target->lines.empty() && n.lines == "details") ||
        std::find(target->nested.begin(), target->nested.end(), n.lines) != target->nested.end();
    if (!n.lines.empty() && !has_lines)
      throw CatalogError(n.where + "key '" + n.what + "' names lines '" + n.lines + "' of '" + n.name +
                         "', which has no such line set");
  }
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
