#include "replica/list_query.hpp"

#include <SQLiteCpp/Statement.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "replica/key_slots.hpp"

namespace knosc::replica {
namespace {

using OJson = nlohmann::ordered_json;

ListError invalid(std::string message) {
  return ListError{400, std::move(message), "JSON.Invalid"};
}

// Knosc's answer to JSON it cannot parse at all.
ListError bad_request_format() {
  return invalid("Bad Request Format");
}

// A string as Knosc's messages quote it (Python's repr): single quotes unless the text holds a single quote
// and no double quote, control characters escaped.
std::string repr(std::string_view s) {
  const bool dq = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(q)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + q;
}

// A JSON value in a message: strings as repr, anything else as JSON text.
std::string describe(const OJson& v) {
  return v.is_string() ? repr(v.get_ref<const std::string&>()) : v.dump();
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && space(s.back()))
    s.remove_suffix(1);
  return s;
}

// `page` and `page_size`: an optionally signed decimal integer with surrounding blanks allowed, at least 1.
// Values beyond int64 saturate (a page that far out is simply empty; a page size that large is clamped).
Result<std::int64_t> positive_int(const std::map<std::string, std::string>& query, const std::string& name,
                                  std::int64_t fallback) {
  auto it = query.find(name);
  if (it == query.end() || it->second.empty()) return fallback;
  const std::string_view raw = it->second;
  std::string_view s = trim(raw);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return invalid("Invalid value for '" + name + "': " + repr(raw) + " is not a positive integer.");
  }
  while (s.size() > 1 && s.front() == '0')
    s.remove_prefix(1);
  std::int64_t value = 0;
  for (char c : s) {
    const int d = c - '0';
    if (value > (std::numeric_limits<std::int64_t>::max() - d) / 10) {
      value = std::numeric_limits<std::int64_t>::max();
      break;
    }
    value = value * 10 + d;
  }
  if (negative || value < 1) {
    const bool zero = s == "0";
    return invalid("Invalid value for '" + name + "': must be a positive integer, got " +
                   (negative && !zero ? "-" : "") + std::string(s) + ".");
  }
  return value;
}

// A JSON parameter: nullopt when absent, empty or JSON null (Knosc treats all three as not given).
Result<std::optional<OJson>> json_param(const std::map<std::string, std::string>& query,
                                        const std::string& name) {
  auto it = query.find(name);
  if (it == query.end() || it->second.empty()) return std::optional<OJson>();
  OJson v = OJson::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return bad_request_format();
  if (v.is_null()) return std::optional<OJson>();
  return std::optional<OJson>(std::move(v));
}

bool is_scalar(const OJson& v) {
  return !v.is_object() && !v.is_array();
}

// Filter values are scalars; conditions keep them as plain json with their JSON type.
nlohmann::json plain(const OJson& v) {
  switch (v.type()) {
    case OJson::value_t::string:
      return v.get<std::string>();
    case OJson::value_t::number_integer:
      return v.get<std::int64_t>();
    case OJson::value_t::number_unsigned:
      return v.get<std::uint64_t>();
    case OJson::value_t::number_float:
      return v.get<double>();
    case OJson::value_t::boolean:
      return v.get<bool>();
    default:
      return nullptr;
  }
}

std::optional<ListError> check_key(const std::string& key, const std::string& what) {
  if (json_key_supported(key)) return std::nullopt;
  return invalid(what + " key " + repr(key) + " is not supported: column keys cannot contain '\"'.");
}

std::optional<ListError> parse_filter(const OJson& filt, std::vector<Condition>& out) {
  if (!filt.is_object()) return invalid("'filter' must be a JSON object keyed by column key.");
  for (const auto& [key, spec] : filt.items()) {
    if (auto e = check_key(key, "Filter")) return e;
    if (spec.is_object()) {
      const bool only_ends = std::all_of(spec.items().begin(), spec.items().end(), [](const auto& kv) {
        return kv.key() == "from" || kv.key() == "to";
      });
      if (spec.empty() || !only_ends) {
        return invalid("Filter on " + repr(key) +
                       " must be a value, an array of values or {\"from\": ..., \"to\": ...}.");
      }
      Range r;
      for (const char* end : {"from", "to"}) {
        auto it = spec.find(end);
        if (it == spec.end() || it->is_null()) continue;
        if (!it->is_string() && !it->is_number()) {
          return invalid(std::string("Filter range '") + end + "' of " + repr(key) +
                         " must be a date string or a number.");
        }
        (std::string_view(end) == "from" ? r.from : r.to) = plain(*it);
      }
      out.push_back(Condition{key, std::move(r), false});
    } else if (spec.is_array()) {
      AnyOf any;
      for (const auto& v : spec) {
        if (!is_scalar(v)) return invalid("Filter values of " + repr(key) + " must be scalars.");
        any.values.push_back(plain(v));
      }
      out.push_back(Condition{key, std::move(any), false});
    } else {
      out.push_back(Condition{key, AnyOf{{plain(spec)}}, false});
    }
  }
  return std::nullopt;
}

std::optional<ListError> parse_search(const OJson& search, std::vector<Condition>& out) {
  const auto filters = search.is_object() ? search.find("filters") : search.end();
  if (!search.is_object() || filters == search.end() || !filters->is_object()) {
    return invalid("'search' must be {\"filters\": {\"include\": {...}, \"exclude\": {...}}}.");
  }
  std::vector<std::string> extra;
  for (const auto& [part, _] : filters->items())
    if (part != "include" && part != "exclude") extra.push_back(part);
  if (!extra.empty()) {
    std::sort(extra.begin(), extra.end());
    std::string list;
    for (const auto& e : extra)
      list += (list.empty() ? "" : ", ") + e;
    return invalid("'search.filters' takes only 'include' and 'exclude', not " + list + ".");
  }
  for (const char* part : {"include", "exclude"}) {
    auto sub = filters->find(part);
    if (sub == filters->end() || sub->is_null()) continue;
    if (!sub->is_object()) {
      return invalid(std::string("'search.filters.") + part +
                     "' must be an object of column key -> array of values.");
    }
    for (const auto& [key, values] : sub->items()) {
      if (auto e = check_key(key, "Search")) return e;
      const bool scalars = values.is_array() && std::all_of(values.begin(), values.end(),
                                                            [](const OJson& v) { return is_scalar(v); });
      if (!scalars)
        return invalid(std::string("'search.filters.") + part + "." + key + "' must be an array of values.");
      AnyOf any;
      for (const auto& v : values)
        any.values.push_back(plain(v));
      out.push_back(Condition{key, std::move(any), std::string_view(part) == "exclude"});
    }
  }
  return std::nullopt;
}

Result<schema::SortSpec> parse_sort(const OJson& sort) {
  const auto key = sort.is_object() ? sort.find("key") : sort.end();
  if (!sort.is_object() || key == sort.end() || !key->is_string() ||
      key->get_ref<const std::string&>().empty()) {
    return invalid("'sort' must be {\"key\": \"<column key>\", \"type\": \"Ascending\"|\"Descending\"}.");
  }
  schema::SortSpec s{key->get<std::string>(), false};
  if (auto e = check_key(s.key, "Sort")) return *e;
  auto type = sort.find("type");
  if (type != sort.end()) {
    if (*type == "Descending") {
      s.descending = true;
    } else if (*type != "Ascending") {
      return invalid("'sort.type' must be \"Ascending\" or \"Descending\", got " + describe(*type) + ".");
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------------------

// How SQL reads one column key of a row.
struct Column {
  // The value as json_extract gives it: NULL when absent or JSON null, true and false as 1 and 0.
  std::string value;
  // Its json_type name ('text', 'integer', 'real', 'true', 'false', 'null'); NULL when absent.
  std::string type;
  // True when the value is a JSON number (not a boolean).
  std::string number;
  // The key slot holding the value (k1..k8), when the key has one; empty otherwise.
  std::string slot;
};

// The smallest string above every string that starts with `s`, or nullopt when there is none. Byte-wise,
// as SQLite compares text: "v starts with s or v < s" is "v < successor(s)".
std::optional<std::string> successor(std::string s) {
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xff)
    s.pop_back();
  if (s.empty()) return std::nullopt;
  s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

bool is_bool_like_number(const nlohmann::json& v) {
  // json_extract gives true and false as 1 and 0, so only these numbers could be confused with booleans.
  return v.is_number() && (v.get<double>() == 0.0 || v.get<double>() == 1.0);
}

bool is_virtual_status(const schema::Resource& res, const WarehouseStatusLookup& wh, std::string_view key) {
  return res.warehouse_scoped && res.name != wh.resource && key == wh.status_key;
}

// The key slot of a condition whose index on (resource, slot, id) can serve it (a seek or a range), else
// nullopt.
std::optional<int> indexable_slot(const schema::Resource& res, const WarehouseStatusLookup& wh,
                                  const Condition& c) {
  if (c.exclude || c.key == "id" || is_virtual_status(res, wh, c.key)) return std::nullopt;
  const auto slot = slot_of(res, c.key);
  if (!slot) return std::nullopt;
  if (const auto* any = std::get_if<AnyOf>(&c.test)) {
    // One IN list of a single type; booleans and null are told apart from 1, 0 and absent by json_type,
    // which no index holds.
    const auto& vs = any->values;
    const bool strings = std::all_of(vs.begin(), vs.end(), [](const auto& v) { return v.is_string(); });
    const bool numbers = std::all_of(vs.begin(), vs.end(), [](const auto& v) { return v.is_number(); });
    if (vs.empty() || !(strings || numbers)) return std::nullopt;
    return slot;
  }
  const auto& r = std::get<Range>(c.test);
  if (!r.from && !r.to) return std::nullopt;
  return slot;
}

// Whether the condition can match no row: an empty list of values, or a range with a string end and a number
// end. Its SQL is the constant 0 (see QueryBuilder::match and range), into which SQLite folds the whole
// WHERE, `resource = '...'` included; a slot index, which is partial, is then no longer implied by the WHERE,
// and a query that names it (INDEXED BY) fails. Such a list is empty whatever the access path.
bool matches_nothing(const Condition& c) {
  if (c.exclude) return false;
  if (const auto* any = std::get_if<AnyOf>(&c.test)) return any->values.empty();
  const auto& r = std::get<Range>(c.test);
  const bool text = (r.from && r.from->is_string()) || (r.to && r.to->is_string());
  const bool number = (r.from && r.from->is_number()) || (r.to && r.to->is_number());
  return text && number;
}

// The resource that holds warehouse statuses, as the replica's catalog describes it.
const schema::Resource* warehouse_master(const schema::Resource& res, const WarehouseStatusLookup& wh) {
  if (res.name == wh.resource) return &res;
  return (wh.catalog ? *wh.catalog : schema::Catalog::builtin()).find(wh.resource);
}

// `key` of the row `table` names: its key slot when the key has one, else the JSON expression.
std::string stored_value(const schema::Resource* res, std::string_view key, const std::string& table) {
  if (res) {
    if (auto slot = slot_of(*res, key)) return table + "." + slot_column(*slot);
  }
  return json_key_sql(key, table + ".body");
}

enum class Form {
  List,              // the list query
  FiltersUnindexed,  // the list query with its filters kept off their indexes (the rows are read in id order)
  Probe,             // one condition, reading only what its index holds
};

class QueryBuilder {
 public:
  QueryBuilder(const schema::Resource& res, const WarehouseStatusLookup& wh, Form form = Form::List)
      : res_(res), wh_(wh), form_(form), master_(warehouse_master(res, wh)) {}

  std::vector<nlohmann::json> binds;

  std::string param(nlohmann::json v) {
    binds.push_back(std::move(v));
    return "?" + std::to_string(binds.size());
  }

  Column column(const std::string& key) const {
    if (!json_key_supported(key)) {
      throw std::invalid_argument("column key " + repr(key) + " cannot be named in a JSON path");
    }
    const std::string type = "json_type(body, " + sql_quote(path(key)) + ")";
    const std::string json_number = type + " IN ('integer', 'real')";
    if (key == "id") {
      // The record's id column holds the same value as the body's "id" and is the primary key's order.
      return {"id", type, json_number, ""};
    }
    if (is_virtual_status(res_, wh_, key)) {
      // Rows carry only their warehouse's number; its status is the one on the warehouse-master row.
      const std::string lookup_type = warehouse_lookup(true);
      return {warehouse_lookup(false), lookup_type, lookup_type + " IN ('integer', 'real')", ""};
    }
    // A unary + keeps SQLite from serving this term through the key's index (the rows are read in id order).
    const char* plus = form_ == Form::FiltersUnindexed ? "+" : "";
    if (auto slot = slot_of(res_, key)) {
      // The slot holds what json_extract would give, without parsing the body. Only 1 and 0 can be booleans
      // there, so only those rows need the body's json_type to tell.
      const std::string k = slot_column(*slot);
      return {
          plus + k, type,
          "(typeof(" + k + ") IN ('integer', 'real') AND (" + k + " NOT IN (0, 1) OR " + json_number + "))",
          k};
    }
    return {plus + json_key_sql(key), type, json_number, ""};
  }

  // True when the row's value is one of `values`, typed: strings equal strings, numbers numbers (1 = 1.0),
  // booleans booleans, null a stored null. Never NULL for a row that has the key.
  std::string match(const Column& c, const std::vector<nlohmann::json>& values) {
    std::vector<const nlohmann::json*> strings, numbers;
    bool want_true = false, want_false = false, want_null = false, guard_numbers = false;
    for (const auto& v : values) {
      if (v.is_string()) {
        strings.push_back(&v);
      } else if (v.is_number()) {
        numbers.push_back(&v);
        guard_numbers = guard_numbers || is_bool_like_number(v);
      } else if (v.is_boolean()) {
        (v.get<bool>() ? want_true : want_false) = true;
      } else if (v.is_null()) {
        want_null = true;
      }
    }
    // A type test on the body; with a slot, only rows whose slot holds what json_extract gives for that type
    // need it.
    const auto typed = [&](const char* slot_test, const char* type) {
      const std::string t = c.type + " = '" + type + "'";
      return c.slot.empty() ? t : "(" + c.slot + slot_test + " AND " + t + ")";
    };
    std::vector<std::string> parts;
    if (!strings.empty()) parts.push_back(in_list(c.value, strings));
    if (!numbers.empty()) {
      std::string p = in_list(c.value, numbers);
      if (guard_numbers && form_ != Form::Probe) p = "(" + p + " AND " + c.number + ")";
      parts.push_back(std::move(p));
    }
    if (want_true) parts.push_back(typed(" = 1", "true"));
    if (want_false) parts.push_back(typed(" = 0", "false"));
    if (want_null) parts.push_back(typed(" IS NULL", "null"));
    if (parts.empty()) return "0";  // an empty list matches nothing
    if (parts.size() == 1) return parts.front();
    std::string out;
    for (const auto& p : parts)
      out += (out.empty() ? "(" : " OR ") + p;
    return out + ")";
  }

  // Inclusive range, written as plain comparisons on the value so an index on the key serves it.
  std::string range(const Column& c, const Range& r) {
    const bool text = (r.from && r.from->is_string()) || (r.to && r.to->is_string());
    const bool number = (r.from && r.from->is_number()) || (r.to && r.to->is_number());
    if (text && number) return "0";  // no value is both a string and a number
    std::vector<std::string> parts;
    if (text) {
      // SQLite orders NULL < numbers < text, so ">= ''" alone keeps exactly the strings.
      parts.push_back(c.value + " >= " + (r.from ? param(*r.from) : std::string("''")));
      if (r.to) {
        // "to" is inclusive at its own precision: "2024-03-05T17:00" is inside a range to "2024-03-05".
        if (auto up = successor(r.to->get<std::string>())) parts.push_back(c.value + " < " + param(*up));
      }
    } else if (number) {
      if (r.from) parts.push_back(c.value + " >= " + param(*r.from));
      if (r.to) parts.push_back(c.value + " <= " + param(*r.to));
      // Text sorts above every number and NULL below, so an open end needs the type; booleans read as 1/0
      // and are not numbers in a range.
      if (form_ != Form::Probe) parts.push_back(c.number);
    } else {
      parts.push_back(c.type + " IN ('integer', 'real', 'text')");  // both ends open: any number or string
    }
    std::string out;
    for (const auto& p : parts)
      out += (out.empty() ? "" : " AND ") + p;
    return "(" + out + ")";
  }

  std::string condition(const Condition& cond) {
    const Column c = column(cond.key);
    if (const auto* r = std::get_if<Range>(&cond.test)) return range(c, *r);
    const std::string m = match(c, std::get<AnyOf>(cond.test).values);
    // Excluding: a row without the key, or whose value is not listed, stays.
    return cond.exclude ? "(" + m + ") IS NOT TRUE" : m;
  }

  std::string granular(const GranularFilter& g) {
    const Column c = column(g.category);
    const std::string m = match(c, g.values);
    // Rows without the column (or with a null value) are not restricted by it.
    return "(" + c.value + " IS NULL OR " + (g.include ? m : "(" + m + ") IS NOT TRUE") + ")";
  }

  // Leaves out rows of inactive warehouses.
  std::string active_warehouses() {
    if (res_.name == wh_.resource) {
      // The warehouse-master row's own status is a real column.
      return stored_value(&res_, wh_.status_key, "record") + " IS NOT " + param(wh_.inactive);
    }
    // The inactive warehouses' numbers are computed once per query (a non-correlated IN subquery, which
    // reads the warehouse-master rows through the status slot's index). NULL numbers are kept out of it: one
    // NULL would make NOT IN unknown for every row. A row without a warehouse number belongs to no inactive
    // warehouse, hence IS NOT FALSE.
    const std::string number = stored_value(master_, wh_.number_key, "w");
    return "(" + stored_value(&res_, wh_.number_key, "record") + " NOT IN (SELECT " + number +
           " FROM record AS w WHERE " + master_terms() + " AND " +
           stored_value(master_, wh_.status_key, "w") + " = " + param(wh_.inactive) + " AND " + number +
           " IS NOT NULL)) IS NOT FALSE";
  }

 private:
  static std::string path(std::string_view key) { return "$.\"" + std::string(key) + "\""; }

  std::string in_list(const std::string& value, const std::vector<const nlohmann::json*>& vs) {
    if (vs.size() == 1) return value + " = " + param(*vs.front());
    std::string out = value + " IN (";
    for (std::size_t i = 0; i < vs.size(); ++i)
      out += (i ? ", " : "") + param(*vs[i]);
    return out + ")";
  }

  // The status (or its json_type) of the row's warehouse, found through the warehouse-master rows' number
  // slot. The outer row is `record`: inside the subquery an unqualified column would be the
  // warehouse-master row's.
  // The warehouse-master rows' terms (resource_terms), which let the subqueries read its slot indexes.
  std::string master_terms() const {
    return master_ ? resource_terms(*master_, "w") : "w.resource = " + sql_quote(wh_.resource);
  }

  std::string warehouse_lookup(bool type) const {
    const std::string status = type ? "json_type(w.body, " + sql_quote(path(wh_.status_key)) + ")"
                                    : stored_value(master_, wh_.status_key, "w");
    return "(SELECT " + status + " FROM record AS w WHERE " + master_terms() + " AND " +
           stored_value(master_, wh_.number_key, "w") + " = " +
           stored_value(&res_, wh_.number_key, "record") + " LIMIT 1)";
  }

  const schema::Resource& res_;
  const WarehouseStatusLookup& wh_;
  Form form_;
  const schema::Resource* master_;  // null when the catalog has no such resource
};

std::string where_clause(QueryBuilder& b, const schema::Resource& res, const ListParams& p,
                         const ListScope& scope, const WarehouseStatusLookup& wh) {
  // The resource's terms are literals rather than parameters so the planner sees which partial indexes hold
  // its rows (resource_terms), the same for every request of this list.
  std::string where = resource_terms(res);
  if (res.warehouse_scoped && !p.names_key(wh.status_key)) where += " AND " + b.active_warehouses();
  for (const auto& g : scope.granular)
    where += " AND " + b.granular(g);
  for (const auto& c : p.conditions)
    where += " AND " + b.condition(c);
  return where;
}

void bind_json(SQLite::Statement& st, int index, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::string:
      st.bind(index, v.get_ref<const std::string&>());
      break;
    case nlohmann::json::value_t::number_integer:
      st.bind(index, static_cast<std::int64_t>(v.get<std::int64_t>()));
      break;
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = v.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        st.bind(index, static_cast<std::int64_t>(u));
      } else {
        st.bind(index, static_cast<double>(u));  // as SQLite's JSON reads such a number
      }
      break;
    }
    case nlohmann::json::value_t::number_float:
      st.bind(index, v.get<double>());
      break;
    default:
      throw std::logic_error("list query: only strings and numbers are bound");
  }
}

void bind_all(SQLite::Statement& st, const std::vector<nlohmann::json>& binds) {
  for (std::size_t i = 0; i < binds.size(); ++i)
    bind_json(st, static_cast<int>(i + 1), binds[i]);
}

// ---------------------------------------------------------------------------------------------------------
// Access path
//
// Without statistics SQLite's planner guesses that an equality on an index matches about ten rows and that
// `resource = '...'` on the primary key matches few, so it would sort a whole resource for an unfiltered page
// and always prefer a filter's index over the sort key's, even when the filter matches a fifth of 100,000
// rows. Neither guess depends on the request, so the list query names its index itself:
//   A  through the most selective filter's index, then sort what matched: costs about M rows (M = matches);
//   B  through the sort key's index in list order, filtering as it goes, until the page is full: costs about
//      (offset + page_size) * N / M rows (N = the resource's rows).
// A bounded count through each filter's index tells M. Plan A wins when M is below sqrt((offset +
// page_size) * N), the point where both cost the same; N is taken as 100,000, the size of the largest lists
// the daemon is tuned for, and the bound is kept within [1,000, 20,000] so the count stays cheap.
// ---------------------------------------------------------------------------------------------------------

constexpr std::int64_t kTypicalRows = 100000;

std::int64_t probe_limit(const ListParams& p) {
  const std::int64_t rows = std::min(p.offset(), kTypicalRows) + p.page_size;
  const auto c =
      static_cast<std::int64_t>(std::sqrt(static_cast<double>(rows) * static_cast<double>(kTypicalRows)));
  return std::clamp<std::int64_t>(c, 1000, 20000);
}

// Rows matching one condition, counted through its index and stopped at `limit`.
std::int64_t probe(SQLite::Database& db, const schema::Resource& res, const WarehouseStatusLookup& wh,
                   const Condition& c, const std::string& index, std::int64_t limit) {
  QueryBuilder b(res, wh, Form::Probe);
  const std::string cond = b.condition(c);
  SQLite::Statement q(db, "SELECT count(*) FROM (SELECT 1 FROM record INDEXED BY " + index + " WHERE " +
                              resource_terms(res) + " AND " + cond + " LIMIT " + b.param(limit) + ")");
  bind_all(q, b.binds);
  q.executeStep();
  return q.getColumn(0).getInt64();
}

AccessPath choose_access_path(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                              const WarehouseStatusLookup& wh) {
  const schema::SortSpec sort = effective_sort(p, res);
  if (std::any_of(p.conditions.begin(), p.conditions.end(), matches_nothing)) return {};
  for (const auto& c : p.conditions) {
    // Ids are looked up in the primary key, which nothing beats.
    if (!c.exclude && c.key == "id" && std::holds_alternative<AnyOf>(c.test)) return {};
  }
  struct Candidate {
    const Condition* condition;
    std::string index;
  };
  // Every slot has its index since schema version 4, which every replica the list engine reads has.
  std::vector<Candidate> filters;
  for (const auto& c : p.conditions) {
    if (auto slot = indexable_slot(res, wh, c)) filters.push_back({&c, slot_index(res, *slot)});
  }
  const bool sort_by_id = sort.key == "id";
  const auto sort_slot =
      sort_by_id || is_virtual_status(res, wh, sort.key) ? std::nullopt : slot_of(res, sort.key);
  const std::string sort_index = sort_slot ? slot_index(res, *sort_slot) : "";
  const bool sort_path = sort_by_id || sort_slot.has_value();
  // A condition on the sort key itself narrows plan B's own index (a seek or a range in list order).
  if (sort_path) std::erase_if(filters, [&](const Candidate& f) { return f.index == sort_index; });

  if (filters.empty()) {
    // B is the only index path. The primary key already gives id order when nothing else is indexable.
    if (sort_path && !sort_by_id) return AccessPath{sort_index, false, false};
    return AccessPath{"", false, !sort_path};
  }
  if (!sort_path && filters.size() == 1) return AccessPath{filters.front().index, false, true};

  const std::int64_t limit = probe_limit(p);
  const Candidate* best = nullptr;
  std::int64_t best_rows = 0;
  for (const auto& f : filters) {
    const std::int64_t rows = probe(db, res, wh, *f.condition, f.index, limit);
    if (!best || rows < best_rows) {
      best = &f;
      best_rows = rows;
    }
  }
  if (!sort_path || best_rows < limit) {
    // A single value's entries are in id order within the index: sorted by id, nothing is left to sort.
    const auto* any = std::get_if<AnyOf>(&best->condition->test);
    const bool in_id_order = sort_by_id && any && any->values.size() == 1 && !best->condition->exclude;
    return AccessPath{best->index, false, !in_id_order};
  }
  return sort_by_id ? AccessPath{"", true, false} : AccessPath{sort_index, false, false};
}

}  // namespace

bool ListParams::names_key(std::string_view key) const {
  return std::any_of(conditions.begin(), conditions.end(), [&](const Condition& c) { return c.key == key; });
}

std::int64_t ListParams::offset() const {
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  if (page <= 1 || page_size <= 0) return 0;
  if (page - 1 > max / page_size) return max;
  return (page - 1) * page_size;
}

Result<ListParams> parse_list_params(const std::map<std::string, std::string>& query) {
  ListParams p;
  auto page = positive_int(query, "page", 1);
  if (!page) return page.error();
  p.page = *page;
  auto size = positive_int(query, "page_size", kDefaultPageSize);
  if (!size) return size.error();
  p.page_size = std::min(*size, kMaxPageSize);

  auto filter = json_param(query, "filter");
  if (!filter) return filter.error();
  if (*filter) {
    if (auto e = parse_filter(**filter, p.conditions)) return *e;
  }
  auto search = json_param(query, "search");
  if (!search) return search.error();
  if (*search) {
    if (auto e = parse_search(**search, p.conditions)) return *e;
  }
  auto sort = json_param(query, "sort");
  if (!sort) return sort.error();
  if (*sort) {
    auto s = parse_sort(**sort);
    if (!s) return s.error();
    p.sort = *s;
  }
  return p;
}

schema::SortSpec effective_sort(const ListParams& p, const schema::Resource& res) {
  return p.sort ? *p.sort : res.default_sort;
}

ListSql build_list_sql(const schema::Resource& res, const ListParams& p, const ListScope& scope,
                       const WarehouseStatusLookup& wh, bool paged, const AccessPath& path) {
  QueryBuilder b(res, wh, path.id_order ? Form::FiltersUnindexed : Form::List);
  const std::string where = where_clause(b, res, p, scope, wh);
  const schema::SortSpec sort = effective_sort(p, res);
  const char* dir = sort.descending ? " DESC" : "";
  // Rows without the sort key (or with null) sort as NULL, which SQLite puts first when ascending and last
  // when descending, as Knosc does. Ties break by id ascending in both directions so paging is stable.
  std::string order = sort.key == "id" ? std::string("id") + dir
                                       : QueryBuilder(res, wh).column(sort.key).value + dir + ", id";
  std::string from = "record";
  if (!path.index.empty()) from += " INDEXED BY " + path.index;
  if (!paged)
    return {"SELECT body FROM " + from + " WHERE " + where + " ORDER BY " + order, std::move(b.binds)};
  std::string page = " LIMIT " + b.param(p.page_size);
  page += " OFFSET " + b.param(p.offset());
  if (!path.sorts)
    return {"SELECT body FROM " + from + " WHERE " + where + " ORDER BY " + order + page, std::move(b.binds)};
  // The matches are sorted: SQLite's sorter would carry every match's body (about 1 KB each) to keep the
  // page's. Sorting row ids and reading the page's bodies afterwards costs a fifth of that for a filter
  // matching thousands of rows.
  return {"SELECT body FROM record WHERE rid IN (SELECT rid FROM " + from + " WHERE " + where + " ORDER BY " +
              order + page + ") ORDER BY " + order,
          std::move(b.binds)};
}

AccessPath choose_list_access_path(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                                   const WarehouseStatusLookup& wh) {
  return choose_access_path(db, res, p, wh);
}

ListResult run_list(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                    const ListScope& scope, const WarehouseStatusLookup& wh) {
  const ListSql q = build_list_sql(res, p, scope, wh, true, choose_access_path(db, res, p, wh));
  SQLite::Statement st(db, q.sql);
  bind_all(st, q.binds);
  ListResult out;
  out.sort = effective_sort(p, res);
  out.rows.reserve(static_cast<std::size_t>(std::min<std::int64_t>(p.page_size, kMaxPageSize)));
  while (st.executeStep())
    out.rows.push_back(nlohmann::ordered_json::parse(st.getColumn(0).getString()));
  return out;
}

std::int64_t count_list(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                        const ListScope& scope, const WarehouseStatusLookup& wh) {
  // No order to keep, so SQLite's own choice (a filter's index when there is one) is the right one.
  QueryBuilder b(res, wh);
  const std::string where = where_clause(b, res, p, scope, wh);
  SQLite::Statement st(db, "SELECT COUNT(*) FROM record WHERE " + where);
  bind_all(st, b.binds);
  st.executeStep();
  return st.getColumn(0).getInt64();
}

std::vector<std::string> list_query_plan(SQLite::Database& db, const schema::Resource& res,
                                         const ListParams& p, const ListScope& scope,
                                         const WarehouseStatusLookup& wh) {
  const ListSql q = build_list_sql(res, p, scope, wh, true, choose_access_path(db, res, p, wh));
  SQLite::Statement st(db, "EXPLAIN QUERY PLAN " + q.sql);
  bind_all(st, q.binds);
  std::vector<std::string> plan;
  while (st.executeStep())
    plan.push_back(st.getColumn(3).getString());
  return plan;
}

bool json_key_supported(std::string_view key) {
  return key.find('"') == std::string_view::npos && key.find('\0') == std::string_view::npos;
}

std::string json_key_sql(std::string_view key, std::string_view column) {
  return "json_extract(" + std::string(column) + ", " + sql_quote("$.\"" + std::string(key) + "\"") + ")";
}

std::string sql_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

std::string sql_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

}  // namespace knosc::replica
