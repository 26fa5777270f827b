// Local edits: the checks and changes Knosc makes for a write, decided from the replica (see local_edit.hpp).
//
// The rules are data (schema/catalog.toml, [resource.write]); this file interprets them in the order Knosc
// checks them, so the first failure is the one Knosc would report, with Knosc's message and code.
//
// What a local edit does not reproduce, because it would touch records the edit does not name (the next pull
// brings Knosc's versions of them):
//   - denormalised copies in other records: an item's new description in order lines, inventory and BOMs, a
//     supplier's new name in orders and ASNs, an order's new number in ASN lines and linked tickets, a unit's
//     new code in items;
//   - custom-column defaults of records created locally (Knosc fills them from the column definitions).
// What it does reproduce: everything inside the edited record (header aggregates over the lines, header keys
// copied down to lines, a line set's ids and statuses), cascades and cleared references on delete, a ticket's
// "Updated At" when its notes or subscribers change, and the last-line rule of flat line lists.

#include "replica/local_edit.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "replica/python_text.hpp"

namespace knosc::replica {
namespace {

using schema::Catalog;
using schema::FieldType;
using schema::LineRules;
using schema::Resource;
using schema::WriteField;
using schema::WriteRef;
using schema::WriteRules;

constexpr std::string_view kTickets = "issue-tracker-tickets";
constexpr std::string_view kPurchaseOrders = "purchase-order";
constexpr std::string_view kShipFroms = "ship-from-master";
// How many related rows a cascade, a cleared reference or a uniqueness check reads at most. Far above any
// real fan-out (a supplier's ship-froms, the tickets linked to one order).
constexpr std::size_t kScanLimit = 100000;

// A refusal raised deep inside a check and returned by plan_edit as its EditError; it never leaves this file.
// Knosc stops at its first failed check, in a fixed order, and so does the planner: a throw keeps each check
// one line, as in Knosc's own code.
struct Refused {
  EditError error;
};

[[noreturn]] void refuse(std::string message, std::string code, int status = 400) {
  throw Refused{EditError{status, std::move(message), std::move(code), std::nullopt}};
}
[[noreturn]] void route_not_found() {
  refuse("Not Found", "Route.NotFound", 404);
}
[[noreturn]] void bad_json() {
  refuse("Bad Request Format", "JSON.Invalid");
}
[[noreturn]] void missing(const std::string& field, const std::string& prefix,
                          const std::string& where = {}) {
  refuse("Missing required field: " + field + where, prefix + ".MissingField");
}
[[noreturn]] void invalid(std::string message, const std::string& prefix) {
  refuse(std::move(message), prefix + ".InvalidField");
}
[[noreturn]] void bad_move(std::string message) {
  refuse(std::move(message), "PurchaseOrderDetails.InvalidMove");
}
// accept-suggested-orders answers its refusals as {"error": message}.
[[noreturn]] void refuse_as_error(const std::string& message) {
  throw Refused{EditError{400, message, "", Json{{"error", message}}}};
}

// ---------------------------------------------------------------------------------------------------------
// Python's conventions, which Knosc's messages follow
// ---------------------------------------------------------------------------------------------------------

// Python's str() of a decoded JSON value, as "%s" puts it in a message.
std::string py_str(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_float()) return py_float_repr(v.get<double>());
  return v.dump();
}

// Python's truth value of a decoded JSON value.
bool truthy(const Json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v != 0;
  if (v.is_number_float()) return v.get<double>() != 0.0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return !v.empty();
}

// One code point of UTF-8 text at `i` (a stray byte counts as itself).
std::uint32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto b = static_cast<unsigned char>(s[i]);
  int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
  if (i + static_cast<std::size_t>(len) > s.size()) len = 1;
  std::uint32_t cp = len == 1 ? b : b & (0x7Fu >> len);
  for (int k = 1; k < len; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0x3Fu);
  i += static_cast<std::size_t>(len);
  return cp;
}

// Python's str.isspace() for one code point.
bool is_python_space(std::uint32_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's `not s.strip()`.
bool is_blank(std::string_view s) {
  for (std::size_t i = 0; i < s.size();)
    if (!is_python_space(next_code_point(s, i))) return false;
  return true;
}

// Python's date.fromisoformat() on text matching \d{4}-\d{2}-\d{2}.
bool is_date(const Json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return false;
  const int year = std::stoi(s.substr(0, 4));
  const int month = std::stoi(s.substr(5, 2));
  const int day = std::stoi(s.substr(8, 2));
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return day <= kDays[month - 1] + (month == 2 && leap ? 1 : 0);
}

// Python's int() of a path segment: optional spaces and sign, digits with single underscores between them.
std::optional<std::int64_t> py_int(std::string_view s) {
  while (!s.empty() && is_python_space(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && is_python_space(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t value = 0;
  bool after_digit = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      const int d = c - '0';
      if (value > (kMax - d) / 10) return std::nullopt;  // beyond any id the replica can hold
      value = value * 10 + d;
      after_digit = true;
    } else if (c == '_' && after_digit && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
      after_digit = false;
    } else {
      return std::nullopt;
    }
  }
  return negative ? -value : value;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  return out;
}

// Python's running `total += x` over numbers: an integer until a float joins.
struct PyNumber {
  bool is_float = false;
  std::int64_t i = 0;
  double d = 0;

  void add(const Json& v) {
    if (v.is_boolean()) {
      add_int(v.get<bool>() ? 1 : 0);
    } else if (v.is_number_float()) {
      if (!is_float) d = static_cast<double>(i);
      is_float = true;
      d += v.get<double>();
    } else if (v.is_number_integer() || v.is_number_unsigned()) {
      add_int(v.get<std::int64_t>());
    }
  }
  void add_int(std::int64_t x) {
    if (is_float) {
      d += static_cast<double>(x);
    } else {
      i += x;
    }
  }
  double value() const { return is_float ? d : static_cast<double>(i); }
  Json json() const { return is_float ? Json(d) : Json(i); }
};

// Python's round(x, 4): to_chars rounds the exact binary value, ties to even, as Python does.
double round4(double v) {
  if (!std::isfinite(v) || std::fabs(v) >= 4503599627370496.0) return v;
  char buf[400];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 4);
  double out = 0;
  std::from_chars(buf, res.ptr, out);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Small JSON helpers
// ---------------------------------------------------------------------------------------------------------

// Python's dict.get(key): null when absent.
Json val(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? Json() : *it;
}

Json id_json(const RecordId& id) {
  if (const auto* i = std::get_if<std::int64_t>(&id)) return *i;
  return std::get<std::string>(id);
}

// The order in which get-one shows lines and notes: Knosc's ids ascending, then local ones (negative) in the
// order they were made, which is where Knosc will put them once they are pushed.
bool shown_before(const Json& a, const Json& b) {
  const Json ia = val(a, "id");
  const Json ib = val(b, "id");
  if (!ia.is_number_integer() || !ib.is_number_integer()) return false;
  const auto x = ia.get<std::int64_t>();
  const auto y = ib.get<std::int64_t>();
  if ((x < 0) != (y < 0)) return y < 0;
  return x < 0 ? x > y : x < y;
}

void sort_shown(std::vector<Json>& rows) {
  std::stable_sort(rows.begin(), rows.end(), shown_before);
}

Json array_of(const std::vector<Json>& rows) {
  Json a = Json::array();
  for (const auto& r : rows)
    a.push_back(r);
  return a;
}

std::vector<Json> rows_of(const Json& arr) {
  std::vector<Json> out;
  if (arr.is_array())
    for (const auto& r : arr)
      out.push_back(r);
  return out;
}

Json message(std::string text) {
  return Json{{"message", std::move(text)}};
}
Json created(const RecordId& id) {
  return Json{{"message", "Created successfully."}, {"id", id_json(id)}};
}

WriteField typed(FieldType type, bool nullable) {
  WriteField f;
  f.type = type;
  f.nullable = nullable;
  return f;
}

// Knosc's check of one value; returns it, or refuses with <prefix>.InvalidField naming the field (and line).
Json check_value(const std::string& field, const Json& value, const WriteField& f, const std::string& prefix,
                 const std::string& where = {}) {
  const std::string loc = field + where;
  if (f.type == FieldType::Enum) {
    if (value.is_null() && f.nullable) return value;
    if (!value.is_string() ||
        std::find(f.values.begin(), f.values.end(), value.get<std::string>()) == f.values.end()) {
      std::string allowed;
      for (const auto& v : f.values)
        allowed += (allowed.empty() ? "" : ", ") + v;
      invalid("Field '" + loc + "' must be one of: " + allowed + ".", prefix);
    }
    return value;
  }
  if (value.is_null()) {
    if (f.nullable || f.type == FieldType::Any) return value;
    invalid("Field '" + loc + "' must not be null.", prefix);
  }
  switch (f.type) {
    case FieldType::String:
      if (!value.is_string()) invalid("Field '" + loc + "' must be a string.", prefix);
      if (!f.nullable && is_blank(value.get_ref<const std::string&>()))
        invalid("Field '" + loc + "' must not be empty.", prefix);
      break;
    case FieldType::Number:
      if (!value.is_number()) invalid("Field '" + loc + "' must be a number.", prefix);
      break;
    case FieldType::Integer:
      if (!value.is_number_integer()) invalid("Field '" + loc + "' must be an integer.", prefix);
      break;
    case FieldType::Date:
      if (!is_date(value)) invalid("Field '" + loc + "' must be a date (YYYY-MM-DD).", prefix);
      break;
    case FieldType::Boolean:
      if (!value.is_boolean()) invalid("Field '" + loc + "' must be a boolean.", prefix);
      break;
    case FieldType::Email:
      if (!value.is_string() || value.get_ref<const std::string&>().find('@') == std::string::npos)
        invalid("Field '" + loc + "' must be an e-mail address.", prefix);
      break;
    case FieldType::Any:
    case FieldType::Enum:
      break;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// The planner
// ---------------------------------------------------------------------------------------------------------

// A document's line as the write leaves it, with the line it replaces.
struct BuiltLine {
  Json line;
  std::optional<Json> prev;
};

struct BuiltDoc {
  Json header;  // header keys only: no line set, no groups
  std::vector<BuiltLine> lines;
  std::vector<Json> removed;  // lines the write leaves out
};

class Planner {
 public:
  Planner(const Catalog& catalog, RecordLookup& lookup, const EditRequest& req,
          const LocalIdAllocator& next_id)
      : catalog_(catalog), lookup_(lookup), req_(req), next_id_(next_id) {}

  EditPlan run() {
    const auto& p = req_.path;
    const std::string& m = req_.method;
    if (p.empty()) route_not_found();
    if (p[0] == "issue-tracker-notes") return notes();
    if (p[0] == "purchase-order-details-move-lines") {
      if (p.size() != 1 || m != "PUT") route_not_found();
      return move_lines();
    }
    if (p[0] == "purchase-order-details-accept-suggested-orders") {
      if (p.size() != 1 || m != "PUT") route_not_found();
      return accept_suggested();
    }
    const Resource* res = catalog_.find(p[0]);
    if (!res || p.size() > 3) route_not_found();
    if (p.size() == 3) {
      if (res->name == kTickets && p[2] == "subscribers" && (m == "POST" || m == "DELETE"))
        return subscribers(*res);
      route_not_found();
    }
    const WriteRules* w = res->write.get();
    if (p.size() == 1) {
      if (m != "POST" || !w || !w->allows("POST")) route_not_found();
      if (w->online_only) offline_only(*res);
      return create(*res, *w);
    }
    const RecordId id = path_id(*res, p[1]);
    if ((m != "PUT" && m != "DELETE") || !w || !w->allows(m)) route_not_found();
    if (w->online_only) offline_only(*res);
    if (m == "PUT") return update(*res, *w, id);
    if (res->is_line_list()) return line_delete(*res, *w, id);
    return remove(*res, *w, id);
  }

 private:
  // ---- reading ----------------------------------------------------------------------------------------

  std::optional<Json> get(const Resource& res, const Json& id) {
    auto rid = record_id_from_json(id);
    if (!rid) return std::nullopt;
    return lookup_.get(res, *rid);
  }

  std::optional<Json> find_one(const Resource& res, const std::string& key, const Json& value) {
    auto rows = lookup_.find(res, key, value, 1);
    if (rows.empty()) return std::nullopt;
    return rows.front();
  }

  const Json& body() {
    if (!req_.body || !req_.body->is_object()) bad_json();
    return *req_.body;
  }

  Json now() const { return req_.now_iso; }
  Json user_email() const { return req_.user_email.empty() ? Json() : Json(req_.user_email); }

  RecordId path_id(const Resource& res, const std::string& raw) {
    if (res.id_type == schema::IdType::String) return raw;
    auto v = py_int(raw);
    if (!v) refuse(res.missing_message(raw), res.not_found_code);
    return *v;
  }

  Json existing(const Resource& res, const RecordId& id) {
    auto rec = lookup_.get(res, id);
    if (!rec) refuse(res.missing_message(to_string(id)), res.not_found_code);
    return *rec;
  }

  [[noreturn]] void offline_only(const Resource& res) {
    refuse("Changes to " + res.label +
               " records are made in Knosc and need the link to it; try again when it "
               "is back.",
           "Sync.Offline", 503);
  }

  [[noreturn]] void not_found_number(const Resource& target, const Json& value) {
    if (value.is_number_integer())
      refuse(target.label + " #" + py_str(value) + " not found.", target.not_found_code);
    refuse(target.label + " " + py_str(value) + " not found.", target.not_found_code);
  }

  // ---- fields and references ------------------------------------------------------------------------

  // Sets the fields the body names; on a create (or a full PUT) the others get their defaults.
  static void fill_fields(Json& rec, const std::vector<WriteField>& fields, const Json& body, bool partial,
                          const std::string& prefix, const std::string& where = {}) {
    for (const auto& f : fields) {
      auto it = body.find(f.key);
      if (it != body.end()) {
        if (it->is_null() && f.required) missing(f.key, prefix, where);
        rec[f.key] = check_value(f.key, *it, f, prefix, where);
      } else if (!partial) {
        if (f.required) missing(f.key, prefix, where);
        rec[f.key] = f.default_value;
      }
    }
  }

  Json resolve(const WriteRef& ref, const Json& value, const std::string& prefix, const std::string& where) {
    const Resource& target = catalog_.at(ref.target);
    std::optional<Json> found;
    if (ref.by_id()) {
      if (!value.is_number_integer())
        invalid("Field '" + ref.field + where + "' must be an integer.", prefix);
      found = get(target, value);
    } else {
      if (!value.is_string() || is_blank(value.get_ref<const std::string&>()))
        invalid("Field '" + ref.field + where + "' must be a non-empty string.", prefix);
      found = find_one(target, ref.target_key, value);
    }
    if (!found) not_found_number(target, value);
    return *found;
  }

  static void apply_ref(Json& rec, const WriteRef& ref, const Json* target, const Json& value) {
    rec[ref.field] = target ? value : Json();
    if (!ref.id_field.empty()) rec[ref.id_field] = target ? val(*target, "id") : Json();
    for (const auto& [dst, src] : ref.copy)
      rec[dst] = target ? val(*target, src) : Json();
  }

  void check_belongs(const Json& rec, const WriteRef& ref, const Json& target, const std::string& prefix,
                     const std::string& where, const Json* outer) {
    const std::string& mine = ref.belongs_own_key;
    const Json& src = rec.contains(mine) || !outer ? rec : *outer;
    if (val(target, ref.belongs_target_key) == val(src, mine)) return;
    std::string owner_key = mine;
    if (owner_key.size() > 3 && owner_key.compare(owner_key.size() - 3, 3, " Id") == 0)
      owner_key = owner_key.substr(0, owner_key.size() - 3) + " Number";
    std::string owner = owner_key;
    for (auto pos = owner.find(" Number"); pos != std::string::npos; pos = owner.find(" Number"))
      owner.erase(pos, 7);
    invalid(catalog_.at(ref.target).label + " " + py_str(val(rec, ref.field)) + where +
                " does not belong to " + owner + " " + py_str(val(src, owner_key)) + ".",
            prefix);
  }

  // Resolves the references the body names (all of them on a create); returns the related records by field.
  std::map<std::string, Json> fill_refs(Json& rec, const std::vector<WriteRef>& refs, const Json& body,
                                        bool partial, const std::string& prefix,
                                        const std::string& where = {}, const Json* outer = nullptr) {
    std::map<std::string, Json> targets;
    for (const auto& ref : refs) {
      auto it = body.find(ref.field);
      if (it != body.end()) {
        if (it->is_null()) {
          if (ref.required) missing(ref.field, prefix, where);
          apply_ref(rec, ref, nullptr, Json());
        } else {
          const Json value = *it;
          Json target = resolve(ref, value, prefix, where);
          apply_ref(rec, ref, &target, value);
          targets[ref.field] = std::move(target);
        }
      } else if (!partial) {
        if (ref.required) missing(ref.field, prefix, where);
        apply_ref(rec, ref, nullptr, Json());
      } else if (!val(rec, ref.field).is_null() && !ref.id_field.empty()) {
        // Unchanged: the belongs-to rule still holds it against the new values of the others.
        if (auto t = get(catalog_.at(ref.target), val(rec, ref.id_field))) targets[ref.field] = std::move(*t);
      }
    }
    for (const auto& ref : refs)
      if (ref.has_belongs())
        if (auto t = targets.find(ref.field); t != targets.end())
          check_belongs(rec, ref, t->second, prefix, where, outer);
    return targets;
  }

  void check_unique(const Resource& res, const WriteRules& w, const Json& rec) {
    if (w.unique.empty()) return;
    const std::string* probe = nullptr;
    for (const auto& k : w.unique)
      if (!val(rec, k).is_null()) {
        probe = &k;
        break;
      }
    if (!probe) return;
    const Json own_id = val(rec, "id");
    for (const auto& other : lookup_.find(res, *probe, val(rec, *probe), kScanLimit)) {
      if (!own_id.is_null() && val(other, "id") == own_id) continue;
      if (!std::all_of(w.unique.begin(), w.unique.end(),
                       [&](const std::string& k) { return val(other, k) == val(rec, k); }))
        continue;
      std::string shown;
      for (const auto& k : w.unique)
        if (!val(rec, k).is_null()) shown += (shown.empty() ? "" : " / ") + py_str(val(rec, k));
      refuse(res.label + " " + shown + " already exists.", w.prefix + ".AlreadyExists");
    }
  }

  void apply_stamps(Json& rec, const WriteRules& w, const Json* base) const {
    if (!w.stamps.created_at.empty())
      rec[w.stamps.created_at] = base ? val(*base, w.stamps.created_at) : now();
    if (!w.stamps.created_by.empty())
      rec[w.stamps.created_by] = base ? val(*base, w.stamps.created_by) : user_email();
    if (!w.stamps.updated_at.empty()) rec[w.stamps.updated_at] = now();
  }

  // ---- rules implemented in code ---------------------------------------------------------------------

  // A supplier allocation's percentage lies in 0..100, its priority is 1 or more, and the item's allocations
  // add up to at most 100 %.
  void allocation_limits(const Resource& res, const WriteRules& w, const Json& rec) {
    const Json pct = val(rec, "Allocation Percentage");
    if (pct.is_number() && (pct.get<double>() < 0 || pct.get<double>() > 100))
      invalid("Field 'Allocation Percentage' must be between 0 and 100.", w.prefix);
    const Json priority = val(rec, "Priority");
    if (priority.is_number() && priority.get<double>() < 1)
      invalid("Field 'Priority' must be 1 or more.", w.prefix);
    PyNumber others;
    const Json own_id = val(rec, "id");
    for (const auto& a : lookup_.find(res, "Item Id", val(rec, "Item Id"), kScanLimit))
      if (own_id.is_null() || val(a, "id") != own_id) others.add(val(a, "Allocation Percentage"));
    if (pct.is_number() && others.value() + pct.get<double>() > 100 + 1e-9)
      refuse("Total allocation for item " + py_str(val(rec, "Item Number")) + " would exceed 100% (" +
                 py_str(others.json()) + "% already allocated).",
             w.prefix + ".ExceedsTotal");
  }

  // A ticket's reporter (the caller unless the body names one), its linked order (by number or id), and on
  // create its subscribers (the body's, else the reporter and the assignee).
  void ticket_rule(Json& rec, const Json& body, const WriteRules& w, bool create) {
    const WriteField optional_text = typed(FieldType::String, true);
    if (create) {
      const Json given = val(body, "Reporter Email");
      rec["Reporter Email"] =
          check_value("Reporter Email", truthy(given) ? given : user_email(), optional_text, w.prefix);
    } else if (body.contains("Reporter Email")) {
      rec["Reporter Email"] = check_value("Reporter Email", body["Reporter Email"], optional_text, w.prefix);
    }
    const Resource& orders = catalog_.at(kPurchaseOrders);
    const Json number = val(body, "Linked PO Number");
    const Json id = val(body, "Linked PO Id");
    std::optional<Json> po;
    if (!number.is_null()) {
      check_value("Linked PO Number", number, typed(FieldType::String, false), w.prefix);
      po = find_one(orders, "PO List Number", number);
      if (!po) not_found_number(orders, number);
    } else if (!id.is_null()) {
      check_value("Linked PO Id", id, typed(FieldType::Integer, false), w.prefix);
      po = get(orders, id);
      if (!po) not_found_number(orders, id);
    }
    if (po || body.contains("Linked PO Number") || body.contains("Linked PO Id")) {
      rec["Linked PO Id"] = po ? val(*po, "id") : Json();
      rec["Linked PO Number"] = po ? val(*po, "PO List Number") : Json();
    }
    if (!create) return;
    Json subs = val(body, "Subscribers");
    if (!subs.is_null()) {
      bool ok = subs.is_array();
      if (ok)
        for (const auto& s : subs)
          ok = ok && s.is_string() && !s.get_ref<const std::string&>().empty();
      if (!ok) invalid("Field 'Subscribers' must be an array of e-mail addresses.", w.prefix);
    } else {
      subs = Json::array();
      for (const auto& e : {val(rec, "Reporter Email"), val(rec, "Assignee Email")})
        if (truthy(e)) subs.push_back(e);
    }
    Json unique = Json::array();
    for (const auto& s : subs)
      if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
    rec["Notes"] = Json::array();
    rec["Subscribers"] = std::move(unique);
  }

  // ---- master data, tickets, scenarios, allocations, inventory --------------------------------------

  Json build_record(const Resource& res, const WriteRules& w, const Json& body, const Json* base) {
    Json rec = Json::object();
    if (base) {
      rec = *base;
    } else {
      for (const auto& k : w.keys)
        rec[k] = nullptr;
    }
    fill_fields(rec, w.fields, body, base != nullptr, w.prefix);
    fill_refs(rec, w.refs, body, base != nullptr, w.prefix);
    if (w.has_rule("allocation-limits")) allocation_limits(res, w, rec);
    if (w.has_rule("ticket")) ticket_rule(rec, body, w, base == nullptr);
    apply_stamps(rec, w, base);
    check_unique(res, w, rec);
    return rec;
  }

  EditPlan create(const Resource& res, const WriteRules& w) {
    const Json& b = body();
    if (w.lines) return create_document(res, w, b);
    Json rec = build_record(res, w, b, nullptr);
    for (const auto& d : res.derived)
      rec[d.key] = Json::array();  // nothing refers to a record that did not exist yet
    const RecordId id = next_id_(res);
    rec["id"] = id_json(id);
    EditPlan plan{"create", &res, id, {}, created(id)};
    plan.records.push_back({&res, id, std::move(rec)});
    return plan;
  }

  EditPlan update(const Resource& res, const WriteRules& w, const RecordId& id) {
    const Json base = existing(res, id);
    const Json& b = body();
    EditPlan plan{"update", &res, id, {}, message("Update successful")};
    if (w.lines) {
      write_document(res, w, build_document(res, w, b, &base), &base, plan);
    } else {
      plan.records.push_back({&res, id, build_record(res, w, b, &base)});
    }
    return plan;
  }

  EditPlan remove(const Resource& res, const WriteRules& w, const RecordId& id) {
    const Json rec = existing(res, id);
    EditPlan plan{"delete", &res, id, {}, message("Deleted successfully.")};
    delete_record(res, rec, w.prefix, plan.records);
    return plan;
  }

  // ---- deletes --------------------------------------------------------------------------------------

  [[noreturn]] void still_in_use(const Resource& res, const Json& rec, const std::string& root_prefix) {
    const WriteRules* w = res.write.get();
    std::string shown;
    if (w && !w->number.empty()) {
      shown = w->number_prefix + py_str(val(rec, w->number));
    } else {
      shown = "#" + py_str(val(rec, "id"));
    }
    refuse(res.label + " " + shown + " is still in use and cannot be deleted.", root_prefix + ".StillInUse");
  }

  // Deletes `rec` with Knosc's checks: records that still refer to it refuse the delete (with the code of the
  // record the route named, `root_prefix`, or of a line for a line), children go with it, and references to
  // it are cleared. Appends every record it changes to `out`, this one first.
  void delete_record(const Resource& res, const Json& rec, const std::string& root_prefix,
                     std::vector<RecordAfter>& out) {
    const Json id = val(rec, "id");
    if (auto rid = record_id_from_json(id)) out.push_back({&res, *rid, std::nullopt});
    const WriteRules* w = res.write.get();
    if (!w) return;
    for (const auto& b : w->blockers) {
      const Json own = val(rec, b.own_key);
      if (own.is_null()) continue;
      const Resource& other = catalog_.at(b.resource);
      const auto hits = b.lines.empty() ? lookup_.find(other, b.key, own, 1)
                                        : lookup_.find_in_lines(other, b.lines, b.key, own, 1);
      if (!hits.empty()) still_in_use(res, rec, root_prefix);
    }
    for (const auto& c : w->cascades) {
      const Resource& child = catalog_.at(c.resource);
      const std::string child_root = child.is_line_list() && child.write ? child.write->prefix : root_prefix;
      for (const auto& row : lookup_.find(child, c.key, id, kScanLimit))
        delete_record(child, row, child_root, out);
    }
    if (w->lines && !w->lines->nested_resource) {
      const Resource& lines = w->lines->lines_resource(catalog_);
      const std::string line_root = lines.write ? lines.write->prefix : w->lines->prefix;
      for (const auto& line : rows_of(val(rec, w->lines->key)))
        delete_record(lines, line, line_root, out);
    }
    for (const auto& c : w->clears) {
      const Resource& other = catalog_.at(c.resource);
      for (const auto& row : lookup_.find(other, c.key, id, kScanLimit)) {
        auto rid = record_id_from_json(val(row, "id"));
        if (!rid) continue;
        auto full = lookup_.get(other, *rid);
        if (!full) continue;
        for (const auto& k : c.keys)
          (*full)[k] = nullptr;
        if (!c.stamp.empty()) (*full)[c.stamp] = now();
        out.push_back({&other, *rid, std::move(*full)});
      }
    }
  }

  // DELETE of one line of a flat line list: the line, and its order recomputed without it, or deleted with
  // it when it was the last line.
  EditPlan line_delete(const Resource& res, const WriteRules& w, const RecordId& id) {
    const Json line = existing(res, id);
    EditPlan plan{"line-delete", &res, id, {}, message("Deleted successfully.")};
    delete_record(res, line, w.prefix, plan.records);
    const Resource& parent_res = catalog_.at(res.parent);
    auto parent = get(parent_res, val(line, res.parent_key));
    if (!parent || !parent_res.write || !parent_res.write->lines) return plan;
    const WriteRules& pw = *parent_res.write;
    const LineRules& lr = *pw.lines;
    std::vector<Json> remaining;
    for (const auto& l : rows_of(val(*parent, lr.key)))
      if (val(l, "id") != val(line, "id")) remaining.push_back(l);
    (*parent)[lr.key] = array_of(remaining);
    if (remaining.empty()) {
      delete_record(parent_res, *parent, pw.prefix, plan.records);
      return plan;
    }
    recompute_header(*parent, pw, remaining);
    auto pid = record_id_from_json(val(*parent, "id"));
    if (pid) plan.records.push_back({&parent_res, *pid, std::move(*parent)});
    return plan;
  }

  // ---- documents: orders, forecasts, BOMs, ASNs -------------------------------------------------------

  // The write body that would recreate a stored document (a partial PUT starts from it).
  static Json document_body(const WriteRules& w, const Json& base) {
    const LineRules& lr = *w.lines;
    Json b = Json::object();
    for (const auto& f : w.fields)
      b[f.key] = val(base, f.key);
    for (const auto& r : w.refs)
      b[r.field] = val(base, r.field);
    Json lines = Json::array();
    for (const auto& ln : rows_of(val(base, lr.key))) {
      Json lb = Json::object();
      lb["id"] = val(ln, "id");
      for (const auto& f : lr.fields)
        lb[f.key] = val(ln, f.key);
      for (const auto& r : lr.refs)
        lb[r.field] = val(ln, r.field);
      if (lr.warehouse_from_header) lb["Warehouse Number"] = val(ln, "Warehouse Number");
      lines.push_back(std::move(lb));
    }
    b[lr.key] = std::move(lines);
    return b;
  }

  static bool is_writable(const WriteRules& w, const std::string& key) {
    return w.field(key) ||
           std::any_of(w.refs.begin(), w.refs.end(), [&](const WriteRef& r) { return r.field == key; });
  }

  BuiltDoc build_document(const Resource& res, const WriteRules& w, const Json& sent, const Json* base) {
    const LineRules& lr = *w.lines;
    const std::string& prefix = w.prefix;
    Json b = sent;
    if (base && w.update == schema::UpdateMode::Partial) {
      b = document_body(w, *base);
      for (const auto& [k, v] : sent.items())
        b[k] = v;
    }
    // Writable keys may be named inside the row's groups ("From": {"Supplier Number": ...}).
    for (const auto& g : w.groups) {
      const Json obj = val(b, g.key);
      if (!obj.is_object()) continue;
      for (const auto& k : g.keys)
        if (is_writable(w, k) && !b.contains(k) && obj.contains(k)) b[k] = obj[k];
    }

    BuiltDoc doc;
    Json& h = doc.header;
    h = Json::object();
    for (const auto& k : w.keys)
      h[k] = nullptr;
    if (base) {
      h["id"] = val(*base, "id");
      // Keys Knosc keeps that a write cannot set (custom columns).
      std::set<std::string> derived = {lr.key};
      for (const auto& g : w.groups)
        derived.insert(g.key);
      for (const auto& k : res.nested)
        derived.insert(k);
      for (const auto& [k, v] : base->items())
        if (!h.contains(k) && !derived.count(k)) h[k] = v;
    }
    fill_fields(h, w.fields, b, false, prefix);
    fill_refs(h, w.refs, b, false, prefix);
    apply_stamps(h, w, base);
    check_unique(res, w, h);

    Json details = val(b, lr.key);
    if (details.is_null()) details = Json::array();
    if (!details.is_array()) invalid("Field '" + lr.key + "' must be an array.", prefix);
    if (details.size() < static_cast<std::size_t>(lr.min_lines))
      refuse(lr.no_items_message, lr.no_items_code);

    std::vector<std::pair<Json, Json>> existing_lines;  // id -> line, in the base's order
    if (base)
      for (const auto& ln : rows_of(val(*base, lr.key)))
        existing_lines.emplace_back(val(ln, "id"), ln);
    std::vector<Json> seen;
    std::size_t i = 0;
    for (const auto& lb : details)
      doc.lines.push_back(build_line(w, h, lb, ++i, base != nullptr, existing_lines, seen));

    if (lr.single_warehouse) {
      std::vector<Json> warehouses;
      for (const auto& l : doc.lines) {
        const Json wh = val(l.line, "Warehouse Number");
        if (std::find(warehouses.begin(), warehouses.end(), wh) == warehouses.end()) warehouses.push_back(wh);
      }
      if (warehouses.size() > 1)
        refuse("All items must be for the same warehouse", "OrderList.MultipleWarehouses");
    }
    if (!lr.duplicate_keys.empty()) {
      std::vector<Json> keys;
      for (const auto& l : doc.lines) {
        Json key = Json::array();
        for (const auto& k : lr.duplicate_keys)
          key.push_back(val(l.line, k));
        if (std::find(keys.begin(), keys.end(), key) != keys.end())
          refuse(lr.duplicate_message, lr.duplicate_code);
        keys.push_back(std::move(key));
      }
    }
    if (!lr.date_code.empty()) {
      for (const auto& l : doc.lines) {
        Json order = val(l.line, lr.date_line_order);
        if (!truthy(order)) order = val(h, lr.date_header_order);
        const Json ship = val(l.line, lr.date_line_ship);
        // Knosc compares the date texts; both are YYYY-MM-DD once they passed their field checks.
        if (truthy(order) && truthy(ship) && order.is_string() && ship.is_string() &&
            order.get<std::string>() > ship.get<std::string>())
          refuse("Order date cannot be after ship date", lr.date_code);
      }
    }
    for (const auto& [lid, ln] : existing_lines)
      if (std::find(seen.begin(), seen.end(), lid) == seen.end()) doc.removed.push_back(ln);
    return doc;
  }

  BuiltLine build_line(const WriteRules& w, const Json& h, const Json& sent, std::size_t i, bool update,
                       const std::vector<std::pair<Json, Json>>& existing_lines, std::vector<Json>& seen) {
    const LineRules& lr = *w.lines;
    const std::string& prefix = w.prefix;
    const std::string where = " (line " + std::to_string(i) + ")";
    if (!sent.is_object()) invalid("Each entry of '" + lr.key + "' must be an object" + where + ".", prefix);
    Json lid = val(sent, "id");
    if (lid.is_null() && !lr.id_alias.empty()) lid = val(sent, lr.id_alias);
    BuiltLine out;
    if (update && !lid.is_null()) {
      auto it = std::find_if(existing_lines.begin(), existing_lines.end(),
                             [&](const auto& e) { return e.first == lid; });
      if (!lid.is_number_integer() || it == existing_lines.end())
        refuse(lr.label + " #" + py_str(lid) + " not found.", lr.prefix + ".NotFound");
      if (std::find(seen.begin(), seen.end(), lid) != seen.end())
        invalid(lr.label + " #" + py_str(lid) + " appears twice in '" + lr.key + "'.", prefix);
      seen.push_back(lid);
      out.prev = it->second;
    }
    Json lb = sent;
    const bool po_lines = std::find(lr.rules.begin(), lr.rules.end(), "asn-po-lines") != lr.rules.end();
    if (po_lines && val(lb, "Item Number").is_null() && val(lb, "PO Details Id").is_number_integer()) {
      // An ASN line may name only the PO line it ships; it then ships that line's item.
      if (auto pol = get(catalog_.at("purchase-order-details"), lb["PO Details Id"])) {
        lb["Item Number"] = val(*pol, "Item Number");
        if (!lb.contains("Sub Item Number")) lb["Sub Item Number"] = val(*pol, "Sub Item Number");
      }
    }
    Json& ln = out.line;
    ln = Json::object();
    for (const auto& k : lr.keys)
      ln[k] = nullptr;
    if (out.prev)
      for (const auto& [k, v] : out.prev->items())
        if (!ln.contains(k)) ln[k] = v;
    ln["id"] = out.prev ? val(*out.prev, "id") : Json();
    fill_fields(ln, lr.fields, lb, false, prefix, where);
    const auto targets = fill_refs(ln, lr.refs, lb, false, prefix, where, &h);
    for (const auto& [dst, src] : lr.copy) {
      if (lr.warehouse_from_header && dst == "Warehouse Number") {
        const Json given = val(lb, "Warehouse Number");
        if (!given.is_null() && given != val(h, "Warehouse Number"))
          refuse("All items must be for the same warehouse", "OrderList.MultipleWarehouses");
      }
      ln[dst] = val(h, src);
    }
    if (!lr.status_line.empty() && val(ln, lr.status_line).is_null())
      ln[lr.status_line] = val(h, lr.status_header);
    for (const auto& d : lr.ref_defaults) {
      if (!val(ln, d.key).is_null()) continue;
      auto t = targets.find(d.ref);
      ln[d.key] = t != targets.end() ? val(t->second, d.target_key) : Json();
    }
    if (po_lines && !val(ln, "PO Details Id").is_null()) {
      auto t = targets.find("PO Details Id");
      if (t != targets.end() && val(t->second, "Item Id") != val(ln, "Item Id"))
        invalid("ASN line" + where + " names item " + py_str(val(ln, "Item Number")) + " but PO Detail #" +
                    py_str(val(t->second, "id")) + " is for item " + py_str(val(t->second, "Item Number")) +
                    ".",
                prefix);
    }
    if (!lr.id_alias.empty()) ln[lr.id_alias] = ln["id"];
    return out;
  }

  // The header keys Knosc computes over the lines (shown in `lines` order), and the row's groups.
  static void recompute_header(Json& h, const WriteRules& w, const std::vector<Json>& lines) {
    const LineRules& lr = *w.lines;
    for (const auto& a : lr.aggregates) {
      if (a.sum.empty()) {
        h[a.key] = static_cast<std::int64_t>(lines.size());
        continue;
      }
      PyNumber total;
      for (const auto& l : lines)
        total.add(val(l, a.sum));
      h[a.key] = total.is_float ? Json(round4(total.d)) : Json(total.i);
    }
    if (lr.header_warehouse)
      h["Warehouse Number"] = lines.empty() ? Json() : val(lines.front(), "Warehouse Number");
    for (const auto& g : w.groups) {
      Json obj = Json::object();
      for (const auto& k : g.keys)
        obj[k] = val(h, k);
      h[g.key] = std::move(obj);
    }
  }

  // Gives the document and its new lines their ids and appends the records it changes to the plan: the header
  // (as get-one shows it, lines included) first, then, for a flat line list, each changed, new or removed
  // line.
  void write_document(const Resource& res, const WriteRules& w, BuiltDoc doc, const Json* base,
                      EditPlan& plan) {
    const LineRules& lr = *w.lines;
    const Resource& lines_res = lr.lines_resource(catalog_);
    const bool flat = !lr.nested_resource;
    // Removed lines are deleted with their own checks (an ASN still naming a PO line) before anything gets an
    // id, so a refused write hands out none.
    std::vector<RecordAfter> removed;
    for (const auto& ln : doc.removed) {
      if (flat) {
        delete_record(lines_res, ln, lines_res.write ? lines_res.write->prefix : lr.prefix, removed);
      }
    }
    Json& h = doc.header;
    RecordId hid = base ? *record_id_from_json(val(*base, "id")) : next_id_(res);
    h["id"] = id_json(hid);
    std::vector<Json> lines;
    for (auto& l : doc.lines) {
      l.line[lr.parent_field] = h["id"];
      if (!l.prev) {
        l.line["id"] = id_json(next_id_(lines_res));
        if (!lr.id_alias.empty()) l.line[lr.id_alias] = l.line["id"];
      }
      lines.push_back(l.line);
    }
    sort_shown(lines);
    recompute_header(h, w, lines);
    h[lr.key] = array_of(lines);
    plan.id = hid;
    plan.records.push_back({&res, hid, h});
    if (!flat) return;
    for (const auto& l : doc.lines) {
      if (l.prev && *l.prev == l.line) continue;
      if (auto lid = record_id_from_json(val(l.line, "id")))
        plan.records.push_back({&lines_res, *lid, l.line});
    }
    for (auto& r : removed)
      plan.records.push_back(std::move(r));
  }

  EditPlan create_document(const Resource& res, const WriteRules& w, const Json& b) {
    BuiltDoc doc = build_document(res, w, b, nullptr);
    EditPlan plan{"create", &res, RecordId{}, {}, Json()};
    write_document(res, w, std::move(doc), nullptr, plan);
    plan.response = created(plan.id);
    return plan;
  }

  // ---- issue-tracker notes and subscribers ----------------------------------------------------------

  Json& touch(Json& ticket) {
    const Resource& tickets = catalog_.at(kTickets);
    const std::string key = tickets.write && !tickets.write->stamps.updated_at.empty()
                                ? tickets.write->stamps.updated_at
                                : "Updated At";
    ticket[key] = now();
    return ticket;
  }

  EditPlan notes() {
    const auto& p = req_.path;
    const std::string& m = req_.method;
    const Resource& tickets = catalog_.at(kTickets);
    const std::string prefix = "IssueTrackerNotes";
    const WriteField text = typed(FieldType::String, false);
    if (p.size() == 1 && m == "POST") {
      const Json& b = body();
      for (const char* key : {"Ticket Id", "Note"})
        if (val(b, key).is_null()) missing(key, prefix);
      const Json tid = check_value("Ticket Id", b["Ticket Id"], text, prefix);
      const Json note_text = check_value("Note", b["Note"], text, prefix);
      const RecordId ticket_id = tid.get<std::string>();
      Json ticket = existing(tickets, ticket_id);
      Json note = Json::object();
      note["id"] = nullptr;
      note["Ticket Id"] = tid;
      note["Note"] = note_text;
      note["Author Email"] = user_email();
      note["Created At"] = now();
      const RecordId note_id = next_id_(note_resource());
      note["id"] = id_json(note_id);
      std::vector<Json> all = rows_of(val(ticket, "Notes"));
      all.push_back(std::move(note));
      sort_shown(all);
      ticket["Notes"] = array_of(all);
      EditPlan plan{"note-create", &note_resource(), note_id, {}, created(note_id)};
      plan.records.push_back({&tickets, ticket_id, std::move(touch(ticket))});
      return plan;
    }
    if (p.size() != 2) route_not_found();
    const auto parsed = py_int(p[1]);
    const Json nid = parsed ? Json(*parsed) : Json(p[1]);
    if (m != "PUT" && m != "DELETE") route_not_found();
    auto holders = lookup_.find_in_lines(tickets, "Notes", "id", nid, 1);
    if (holders.empty()) refuse("Note #" + py_str(nid) + " not found.", prefix + ".NotFound");
    Json ticket = std::move(holders.front());
    const RecordId ticket_id = *record_id_from_json(val(ticket, "id"));
    std::vector<Json> all = rows_of(val(ticket, "Notes"));
    auto note = std::find_if(all.begin(), all.end(), [&](const Json& n) { return val(n, "id") == nid; });
    if (note == all.end()) refuse("Note #" + py_str(nid) + " not found.", prefix + ".NotFound");
    const RecordId note_id = *record_id_from_json(nid);
    EditPlan plan;
    plan.res = &note_resource();
    plan.id = note_id;
    if (m == "PUT") {
      const Json& b = body();
      if (b.contains("Note")) (*note)["Note"] = check_value("Note", b["Note"], text, prefix);
      plan.op = "note-update";
      plan.response = message("Update successful");
    } else {
      all.erase(note);
      plan.op = "note-delete";
      plan.response = message("Deleted successfully.");
    }
    ticket["Notes"] = array_of(all);
    plan.records.push_back({&tickets, ticket_id, std::move(touch(ticket))});
    return plan;
  }

  EditPlan subscribers(const Resource& tickets) {
    const std::string& m = req_.method;
    const RecordId tid = req_.path[1];
    Json ticket = existing(tickets, tid);
    const Json& b = body();
    const std::string prefix = "IssueTrackerSubscribers";
    const Json given = val(b, "email");
    if (given.is_null()) missing("email", prefix);
    const Json email = check_value("email", given, typed(FieldType::Email, false), prefix);
    const std::string wanted = ascii_lower(email.get<std::string>());
    Json kept = Json::array();
    bool subscribed = false;
    for (const auto& s : rows_of(val(ticket, "Subscribers"))) {
      if (s.is_string() && ascii_lower(s.get<std::string>()) == wanted) {
        subscribed = true;
        if (m == "POST") kept.push_back(s);
      } else {
        kept.push_back(s);
      }
    }
    EditPlan plan{m == "POST" ? "subscriber-add" : "subscriber-remove", &tickets, tid, {}, Json()};
    if (m == "POST") {
      if (!subscribed) {
        kept.push_back(email);
        touch(ticket);
      }
      plan.response = message("Subscriber added.");
    } else {
      if (!subscribed)
        refuse(email.get<std::string>() + " is not subscribed to " + req_.path[1] + ".",
               prefix + ".NotFound");
      touch(ticket);
      plan.response = message("Subscriber removed.");
    }
    ticket["Subscribers"] = std::move(kept);
    plan.records.push_back({&tickets, tid, std::move(ticket)});
    return plan;
  }

  // ---- purchase-order line helpers ------------------------------------------------------------------

  // An order with its lines replaced by `lines` (in get-one order), its aggregates recomputed.
  static Json with_lines(Json order, const WriteRules& w, std::vector<Json> lines) {
    sort_shown(lines);
    recompute_header(order, w, lines);
    order[w.lines->key] = array_of(lines);
    return order;
  }

  EditPlan move_lines() {
    static const std::string kNewId = "New Purchase Order List Id";
    static const std::string kNewNumber = "New Purchase Order List Number";
    static const std::string kOldId = "Old Purchase Order List Id";
    const Json& b = body();
    const Json moves = val(b, "moves");
    if (!moves.is_array() || moves.empty()) bad_move("'moves' must be a non-empty list.");
    std::vector<Json> sources;
    std::vector<std::pair<bool, Json>> targets;  // (by id, value)
    std::vector<Json> line_ids;
    std::size_t i = 0;
    for (const auto& mv : moves) {
      const std::string n = std::to_string(++i);
      if (!mv.is_object()) bad_move("Move " + n + " must be an object.");
      if (!val(mv, "id").is_number_integer()) bad_move("Move " + n + ": 'id' must be an integer line id.");
      if (!val(mv, kOldId).is_number_integer())
        bad_move("Move " + n + ": '" + kOldId + "' must be an integer.");
      const bool has_id = !val(mv, kNewId).is_null();
      const bool has_number = !val(mv, kNewNumber).is_null();
      if (has_id == has_number)
        bad_move("Move " + n + ": give exactly one of '" + kNewId + "' and '" + kNewNumber + "'.");
      if (has_id && !mv[kNewId].is_number_integer())
        bad_move("Move " + n + ": '" + kNewId + "' must be an integer.");
      if (has_number &&
          (!mv[kNewNumber].is_string() || is_blank(mv[kNewNumber].get_ref<const std::string&>())))
        bad_move("Move " + n + ": '" + kNewNumber + "' must be a non-empty string.");
      if (std::find(sources.begin(), sources.end(), mv[kOldId]) == sources.end())
        sources.push_back(mv[kOldId]);
      std::pair<bool, Json> target{has_id, has_id ? mv[kNewId] : mv[kNewNumber]};
      if (std::find(targets.begin(), targets.end(), target) == targets.end()) targets.push_back(target);
      line_ids.push_back(mv["id"]);
    }
    if (sources.size() > 1) bad_move("All moves must share one source purchase order.");
    if (targets.size() > 1) bad_move("All moves must share one target purchase order.");
    for (std::size_t a = 0; a < line_ids.size(); ++a)
      for (std::size_t c = a + 1; c < line_ids.size(); ++c)
        if (line_ids[a] == line_ids[c]) bad_move("A line appears more than once in 'moves'.");

    const Resource& orders = catalog_.at(kPurchaseOrders);
    const WriteRules& w = *orders.write;
    const Resource& lines_res = w.lines->lines_resource(catalog_);
    auto src = get(orders, sources.front());
    if (!src) refuse(orders.missing_message(py_str(moves[0][kOldId])), orders.not_found_code);
    std::vector<Json> moved;
    for (const auto& lid : line_ids) {
      auto ln = get(lines_res, lid);
      if (!ln || val(*ln, lines_res.parent_key) != val(*src, "id"))
        refuse(lines_res.label + " #" + py_str(lid) + " not found.", lines_res.not_found_code);
      moved.push_back(std::move(*ln));
    }
    const auto& [by_id, value] = targets.front();
    std::optional<Json> dst;
    if (by_id) {
      dst = get(orders, value);
      if (!dst) refuse(orders.missing_message(py_str(value)), orders.not_found_code);
      if (val(*dst, "id") == val(*src, "id")) bad_move("Source and target purchase orders are the same.");
    } else if (find_one(orders, w.number, value)) {
      refuse(orders.label + " " + py_str(value) + " already exists.", w.prefix + ".AlreadyExists");
    }
    const std::vector<Json> dst_lines = dst ? rows_of(val(*dst, w.lines->key)) : std::vector<Json>{};
    std::vector<Json> warehouses;
    std::vector<Json> keys;
    for (const std::vector<Json>* set : std::initializer_list<const std::vector<Json>*>{&moved, &dst_lines})
      for (const auto& ln : *set) {
        const Json wh = val(ln, "Warehouse Number");
        if (std::find(warehouses.begin(), warehouses.end(), wh) == warehouses.end()) warehouses.push_back(wh);
        Json key = Json::array();
        key.push_back(val(ln, "Item Number"));
        key.push_back(val(ln, "Sub Item Number"));
        keys.push_back(std::move(key));
      }
    if (warehouses.size() > 1)
      refuse("All items must be for the same warehouse", "OrderList.MultipleWarehouses");
    for (std::size_t a = 0; a < keys.size(); ++a)
      for (std::size_t c = a + 1; c < keys.size(); ++c)
        if (keys[a] == keys[c])
          refuse("Duplicate entries found in order details", "OrderDetails.DuplicateRows");

    // Knosc creates the target order on the fly from the source's supplier, date and status.
    if (!dst) {
      Json made = Json::object();
      for (const auto& k : w.keys)
        made[k] = nullptr;
      for (const char* k : {"PO List Order Date", "Supplier Id", "Supplier Number", "Supplier Name",
                            "PO List Document Status"})
        made[k] = val(*src, k);
      made[w.number] = value;
      made["id"] = id_json(next_id_(orders));
      dst = std::move(made);
    }
    const Resource& ship_froms = catalog_.at(kShipFroms);
    std::vector<Json> now_in_dst = dst_lines;
    for (auto& ln : moved) {
      ln[lines_res.parent_key] = val(*dst, "id");
      ln[w.number] = val(*dst, w.number);
      if (!val(ln, "Ship From Id").is_null()) {
        // A ship-from belongs to one supplier: a line moved to another supplier's order loses it.
        auto sf = get(ship_froms, ln["Ship From Id"]);
        if (!sf || val(*sf, "Supplier Id") != val(*dst, "Supplier Id"))
          ln["Ship From Id"] = ln["Ship From Number"] = ln["Ship From Name"] = nullptr;
      }
      now_in_dst.push_back(ln);
    }
    std::vector<Json> left_in_src;
    for (const auto& ln : rows_of(val(*src, w.lines->key)))
      if (std::find(line_ids.begin(), line_ids.end(), val(ln, "id")) == line_ids.end())
        left_in_src.push_back(ln);
    // An emptied source order is kept.
    const RecordId src_id = *record_id_from_json(val(*src, "id"));
    const RecordId dst_id = *record_id_from_json(val(*dst, "id"));
    EditPlan plan{"line-move", &orders, src_id, {}, Json()};
    plan.records.push_back({&orders, src_id, with_lines(*src, w, left_in_src)});
    plan.records.push_back({&orders, dst_id, with_lines(*dst, w, now_in_dst)});
    for (const auto& ln : moved)
      plan.records.push_back({&lines_res, *record_id_from_json(val(ln, "id")), ln});
    plan.response =
        Json{{"message", "Update successful"}, {"rows_updated", static_cast<std::int64_t>(moved.size())}};
    return plan;
  }

  EditPlan accept_suggested() {
    const Json& b = body();
    const Resource& orders = catalog_.at(kPurchaseOrders);
    const WriteRules& w = *orders.write;
    const LineRules& lr = *w.lines;
    const Resource& lines_res = lr.lines_resource(catalog_);
    const Json status = val(b, "status");
    if (status.is_null()) refuse_as_error("Missing required field: status");
    const WriteField* statuses = w.field(lr.status_header);
    if (!status.is_string() || !statuses ||
        std::find(statuses->values.begin(), statuses->values.end(), status.get<std::string>()) ==
            statuses->values.end()) {
      std::string allowed;
      if (statuses)
        for (const auto& v : statuses->values)
          allowed += (allowed.empty() ? "" : ", ") + v;
      refuse_as_error("status must be one of: " + allowed);
    }
    const Json ids = val(b, "parentIds");
    bool ok = ids.is_array() && !ids.empty();
    if (ok)
      for (const auto& v : ids)
        ok = ok && v.is_number_integer();
    if (!ok) refuse_as_error("parentIds must be a non-empty list of integers");
    std::vector<Json> unique_ids;
    std::vector<Json> found;
    for (const auto& pid : ids) {
      auto po = get(orders, pid);
      if (!po) refuse_as_error("Purchase order " + py_str(pid) + " not found");
      if (std::find(unique_ids.begin(), unique_ids.end(), pid) == unique_ids.end()) {
        unique_ids.push_back(pid);
        found.push_back(std::move(*po));
      }
    }
    const RecordId first = *record_id_from_json(ids[0]);
    EditPlan plan{"accept-suggested", &orders, first, {}, Json()};
    std::int64_t updated = 0;
    std::vector<RecordAfter> changed_lines;
    // The header's own status is left alone: only the lines change.
    for (auto& po : found) {
      std::vector<Json> lines = rows_of(val(po, lr.key));
      for (auto& ln : lines) {
        ++updated;
        if (val(ln, lr.status_line) == status) continue;
        ln[lr.status_line] = status;
        changed_lines.push_back({&lines_res, *record_id_from_json(val(ln, "id")), ln});
      }
      po[lr.key] = array_of(lines);
      plan.records.push_back({&orders, *record_id_from_json(val(po, "id")), std::move(po)});
    }
    for (auto& r : changed_lines)
      plan.records.push_back(std::move(r));
    plan.response = Json{{"message", "Update successful"}, {"rows_updated", updated}};
    return plan;
  }

  const Catalog& catalog_;
  RecordLookup& lookup_;
  const EditRequest& req_;
  const LocalIdAllocator& next_id_;
};

}  // namespace

const schema::Resource& note_resource() {
  static const schema::Resource notes = [] {
    schema::Resource r;
    r.name = "issue-tracker-notes";
    r.label = "Note";
    r.id_type = schema::IdType::Integer;
    r.module = "Issue Tracker";
    r.get_one = schema::GetOneShape::None;
    r.not_found_code = "IssueTrackerNotes.NotFound";
    r.delete_check = schema::DeleteCheck::ParentGetOne;
    r.parent = std::string(kTickets);
    r.parent_key = "Ticket Id";
    r.mirror = false;
    return r;
  }();
  return notes;
}

std::variant<EditPlan, EditError> plan_edit(const schema::Catalog& catalog, RecordLookup& lookup,
                                            const EditRequest& request, const LocalIdAllocator& next_id) {
  try {
    return Planner(catalog, lookup, request, next_id).run();
  } catch (const Refused& r) {
    return r.error;
  }
}

}  // namespace knosc::replica
