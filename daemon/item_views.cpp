#include "daemon/item_views.hpp"

#include <SQLiteCpp/Statement.h>
#include <locale.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <cwctype>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>

#include "replica/key_slots.hpp"
#include "replica/list_query.hpp"

namespace knosc::daemon {

using OJson = nlohmann::ordered_json;

// ===========================================================================================================
// Pure parts: Python's conventions, list parameters and row visibility as Knosc applies them
// ===========================================================================================================
namespace item_views_detail {
namespace {

struct Decoded {
  char32_t cp = 0;
  std::size_t len = 1;
  bool valid = false;
};

// One UTF-8 sequence at s[i]. Anything malformed decodes as its first byte alone, flagged invalid.
Decoded decode_utf8(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t len = 0;
  char32_t cp = 0;
  if ((b0 & 0xe0) == 0xc0) {
    len = 2;
    cp = b0 & 0x1fu;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3;
    cp = b0 & 0x0fu;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4;
    cp = b0 & 0x07u;
  } else {
    return {b0, 1, false};
  }
  if (i + len > s.size()) return {b0, 1, false};
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return {b0, 1, false};
    cp = (cp << 6) | (b & 0x3fu);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return {b0, 1, false};
  return {cp, len, true};
}

void encode_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// glibc's built-in C.UTF-8 locale gives Unicode character classes and case mappings independent of the
// process's own locale. Null when it is missing: callers then treat non-ASCII text as caseless and printable.
locale_t unicode_ctype() {
  static const locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr);
  return loc;
}

// Python's str.isprintable() for one code point: separators other than the ASCII space and "other" characters
// (controls, format characters, private use, unassigned) are not printable.
bool py_printable(char32_t cp) {
  if (cp < 0x20 || cp == 0x7f) return false;
  if (cp < 0x7f) return true;
  if (cp < 0xa1 || cp == 0xad || cp == 0x1680 || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
      cp == 0x205f || cp == 0x3000 || cp == 0xfeff)
    return false;
  if ((cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) ||
      (cp >= 0xe000 && cp <= 0xf8ff) || (cp >= 0xfff9 && cp <= 0xfffb) || (cp & 0xfffe) == 0xfffe)
    return false;
  if (const locale_t loc = unicode_ctype()) return iswprint_l(static_cast<wint_t>(cp), loc) != 0;
  return true;
}

void hex_escape(std::string& out, char32_t cp) {
  static constexpr char hex[] = "0123456789abcdef";
  int digits = 8;
  if (cp <= 0xff) {
    out += "\\x";
    digits = 2;
  } else if (cp <= 0xffff) {
    out += "\\u";
    digits = 4;
  } else {
    out += "\\U";
  }
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
    out += hex[(cp >> shift) & 0xf];
}

bool is_numeric(const OJson& v) {
  return v.is_number() || v.is_boolean();
}
// Exact for every int64, uint64 and double (x86-64's long double has a 64-bit mantissa).
long double numeric(const OJson& v) {
  if (v.is_boolean()) return v.get<bool>() ? 1.0L : 0.0L;
  if (v.is_number_unsigned()) return static_cast<long double>(v.get<std::uint64_t>());
  if (v.is_number_integer()) return static_cast<long double>(v.get<std::int64_t>());
  if (v.is_number_float()) return static_cast<long double>(v.get<double>());
  return 0.0L;
}
// An integer (or a boolean, which Python counts as one) as int64; nullopt for anything else or beyond int64.
std::optional<std::int64_t> as_int64(const OJson& v) {
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<std::int64_t>();
  return std::nullopt;
}
int compare_numbers(const OJson& a, const OJson& b) {
  const long double x = numeric(a), y = numeric(b);
  return x < y ? -1 : (x > y ? 1 : 0);
}

// Python's == between two decoded JSON scalars (True == 1 == 1.0); containers never match.
bool py_eq(const OJson& a, const OJson& b) {
  if (is_numeric(a) && is_numeric(b)) return compare_numbers(a, b) == 0;
  if (a.is_string() && b.is_string())
    return a.get_ref<const std::string&>() == b.get_ref<const std::string&>();
  return a.is_null() && b.is_null();
}

// Python's str() of a scalar.
std::string py_str(const OJson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_float()) return py_float_repr(v.get<double>());
  return py_repr_json(v);
}

// The first `n` code points of s (Python's s[:n]).
std::string_view prefix_code_points(std::string_view s, std::size_t n) {
  std::size_t i = 0;
  while (i < s.size() && n > 0) {
    i += decode_utf8(s, i).len;
    --n;
  }
  return s.substr(0, i);
}
std::size_t count_code_points(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); i += decode_utf8(s, i).len)
    ++n;
  return n;
}

bool is_python_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

std::optional<ParamsError> positive_int(const std::map<std::string, std::string>& query,
                                        const std::string& name, long long fallback, long long& out) {
  out = fallback;
  auto it = query.find(name);
  if (it == query.end() || it->second.empty()) return std::nullopt;
  auto v = py_int(it->second);
  if (!v)
    return ParamsError{"Invalid value for '" + name + "': " + py_repr(it->second) +
                       " is not a positive integer."};
  if (*v < 1)
    return ParamsError{"Invalid value for '" + name + "': must be a positive integer, got " +
                       std::to_string(*v) + "."};
  out = *v;
  return std::nullopt;
}

// A JSON query parameter; absent, empty or JSON null all mean "not given".
std::optional<ParamsError> json_param(const std::map<std::string, std::string>& query,
                                      const std::string& name, std::optional<OJson>& out) {
  out.reset();
  auto it = query.find(name);
  if (it == query.end() || it->second.empty()) return std::nullopt;
  OJson v = OJson::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return ParamsError{"Bad Request Format"};
  if (!v.is_null()) out = std::move(v);
  return std::nullopt;
}

std::optional<ParamsError> check_search(const OJson& search) {
  const auto f = search.is_object() ? search.find("filters") : search.end();
  if (!search.is_object() || f == search.end() || !f->is_object())
    return ParamsError{"'search' must be {\"filters\": {\"include\": {...}, \"exclude\": {...}}}."};
  std::vector<std::string> extra;
  for (const auto& [part, _] : f->items())
    if (part != "include" && part != "exclude") extra.push_back(part);
  if (!extra.empty()) {
    std::sort(extra.begin(), extra.end());
    std::string list;
    for (const auto& e : extra)
      list += (list.empty() ? "" : ", ") + e;
    return ParamsError{"'search.filters' takes only 'include' and 'exclude', not " + list + "."};
  }
  for (const char* part : {"include", "exclude"}) {
    auto sub = f->find(part);
    if (sub == f->end() || sub->is_null()) continue;
    if (!sub->is_object())
      return ParamsError{std::string("'search.filters.") + part +
                         "' must be an object of column key -> array of values."};
    for (const auto& [key, values] : sub->items()) {
      const bool scalars =
          values.is_array() && std::none_of(values.begin(), values.end(),
                                            [](const OJson& v) { return v.is_array() || v.is_object(); });
      if (!scalars)
        return ParamsError{std::string("'search.filters.") + part + "." + key +
                           "' must be an array of values."};
    }
  }
  return std::nullopt;
}

// Python's sorting key of a list cell: missing and null first, then booleans and numbers, then strings, then
// anything else by its JSON text.
int sort_rank(const OJson* v) {
  if (v == nullptr || v->is_null()) return 0;
  if (is_numeric(*v)) return 1;
  if (v->is_string()) return 2;
  return 3;
}
int compare_cells(const OJson* a, const OJson* b) {
  const int ra = sort_rank(a), rb = sort_rank(b);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 1:
      return compare_numbers(*a, *b);
    case 2:
      return a->get_ref<const std::string&>().compare(b->get_ref<const std::string&>());
    case 3: {
      // Key order does not matter to this text: nlohmann::json sorts object keys.
      const std::string x = nlohmann::json(*a).dump(), y = nlohmann::json(*b).dump();
      return x.compare(y);
    }
    default:
      return 0;
  }
}

// Python's `v in values` where values are a row's granular filter (a set: containers cannot be members).
bool member(const OJson& v, const std::vector<OJson>& values) {
  if (v.is_array() || v.is_object()) return false;
  return std::any_of(values.begin(), values.end(), [&](const OJson& x) { return py_eq(v, x); });
}

// A filter or search value list matches a cell equal to one of them, or whose str() equals one's str()
// ("5" matches 5).
bool matches(const OJson& v, const std::vector<OJson>& values) {
  if (v.is_array() || v.is_object()) return false;
  for (const auto& x : values)
    if (!x.is_array() && !x.is_object() && py_eq(v, x)) return true;
  if (v.is_null()) return false;
  const std::string sv = py_str(v);
  for (const auto& x : values)
    if (!x.is_array() && !x.is_object() && !x.is_null() && py_str(x) == sv) return true;
  return false;
}

// An inclusive range: strings compare as text ("to" at its own precision: a timestamp on the "to" day is
// inside), numbers as numbers; a cell of the other kind, null or a boolean is outside.
bool in_range(const OJson& v, const OJson* lo, const OJson* hi) {
  if (v.is_null() || v.is_boolean()) return false;
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (lo && (!lo->is_string() || s < lo->get_ref<const std::string&>())) return false;
    if (hi) {
      if (!hi->is_string()) return false;
      const auto& h = hi->get_ref<const std::string&>();
      if (prefix_code_points(s, count_code_points(h)) > std::string_view(h)) return false;
    }
    return true;
  }
  if (v.is_number()) {
    if (lo && (lo->is_string() || compare_numbers(v, *lo) < 0)) return false;
    if (hi && (hi->is_string() || compare_numbers(v, *hi) > 0)) return false;
    return true;
  }
  return false;
}

}  // namespace

std::string py_repr(std::string_view s) {
  const bool dq = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (std::size_t i = 0; i < s.size();) {
    const Decoded d = decode_utf8(s, i);
    if (!d.valid) {
      hex_escape(out, d.cp);
    } else if (d.cp == '\\') {
      out += "\\\\";
    } else if (d.cp == static_cast<char32_t>(q)) {
      out += '\\';
      out += q;
    } else if (d.cp == '\n') {
      out += "\\n";
    } else if (d.cp == '\r') {
      out += "\\r";
    } else if (d.cp == '\t') {
      out += "\\t";
    } else if (!py_printable(d.cp)) {
      hex_escape(out, d.cp);
    } else {
      out.append(s.substr(i, d.len));
    }
    i += d.len;
  }
  return out + q;
}

std::string py_repr_json(const OJson& v) {
  switch (v.type()) {
    case OJson::value_t::null:
      return "None";
    case OJson::value_t::boolean:
      return v.get<bool>() ? "True" : "False";
    case OJson::value_t::string:
      return py_repr(std::string_view(v.get_ref<const std::string&>()));
    case OJson::value_t::array: {
      std::string out = "[";
      for (std::size_t i = 0; i < v.size(); ++i)
        out += (i ? ", " : "") + py_repr_json(v[i]);
      return out + "]";
    }
    case OJson::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.items()) {
        out += (first ? "" : ", ") + py_repr(std::string_view(k)) + ": " + py_repr_json(x);
        first = false;
      }
      return out + "}";
    }
    default:
      return py_str(v);
  }
}

double round2(double v) {
  // Every double of this magnitude is an integer already; round() gives it back unchanged.
  if (!std::isfinite(v) || std::fabs(v) >= 4503599627370496.0) return v;
  char buf[400];
  // to_chars with a precision rounds the exact binary value, ties to even, as Python's round() does.
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 2);
  double out = 0;
  std::from_chars(buf, res.ptr, out);
  return out;
}

std::optional<long long> py_int(std::string_view s) {
  while (!s.empty() && is_python_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_python_space(s.back()))
    s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  constexpr long long kMax = std::numeric_limits<long long>::max();
  long long value = 0;
  bool after_digit = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      const int d = c - '0';
      value = value > (kMax - d) / 10 ? kMax : value * 10 + d;
      after_digit = true;
    } else if (c == '_' && after_digit && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9') {
      after_digit = false;  // one underscore between digits, as in Python literals
    } else {
      return std::nullopt;
    }
  }
  return negative ? -value : value;
}

std::string py_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const locale_t loc = unicode_ctype();
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      ++i;
      continue;
    }
    const Decoded d = decode_utf8(s, i);
    if (!d.valid || loc == nullptr) {
      out.append(s.substr(i, d.len));
    } else {
      encode_utf8(static_cast<char32_t>(towlower_l(static_cast<wint_t>(d.cp), loc)), out);
    }
    i += d.len;
  }
  return out;
}

namespace {
// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
long long days_from_civil(long long y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long long>(doe) - 719468;
}

std::optional<long long> parse_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len) -> std::optional<unsigned> {
    unsigned v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return std::nullopt;
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
    }
    return v;
  };
  const auto y = num(0, 4), m = num(5, 2), d = num(8, 2);
  if (!y || !m || !d || *y < 1 || *m < 1 || *m > 12 || *d < 1) return std::nullopt;
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0;
  if (*d > kDays[*m - 1] + (*m == 2 && leap ? 1 : 0)) return std::nullopt;
  return days_from_civil(*y, *m, *d);
}
}  // namespace

std::optional<long long> days_between(std::string_view a, std::string_view b) {
  const auto x = parse_date(a), y = parse_date(b);
  if (!x || !y) return std::nullopt;
  return *y - *x;
}

bool ComputedParams::names_key(const std::string& key) const {
  if (filter && filter->is_object() && filter->contains(key)) return true;
  if (search && search->is_object()) {
    auto f = search->find("filters");
    if (f != search->end() && f->is_object()) {
      for (const char* part : {"include", "exclude"}) {
        auto sub = f->find(part);
        if (sub != f->end() && sub->is_object() && sub->contains(key)) return true;
      }
    }
  }
  return false;
}

std::optional<ParamsError> check_filter(const OJson& filt, const std::string& name) {
  if (!filt.is_object()) return ParamsError{"'" + name + "' must be a JSON object keyed by column key."};
  for (const auto& [key, spec] : filt.items()) {
    if (spec.is_object()) {
      const bool only_ends = std::all_of(spec.items().begin(), spec.items().end(), [](const auto& kv) {
        return kv.key() == "from" || kv.key() == "to";
      });
      if (spec.empty() || !only_ends)
        return ParamsError{"Filter on '" + key +
                           "' must be a value, an array of values or {\"from\": ..., \"to\": ...}."};
      for (const char* end : {"from", "to"}) {
        auto it = spec.find(end);
        if (it != spec.end() && !it->is_null() && !it->is_string() && !it->is_number() && !it->is_boolean())
          return ParamsError{std::string("Filter range '") + end + "' of '" + key +
                             "' must be a date string or a number."};
      }
    } else if (spec.is_array()) {
      for (const auto& v : spec)
        if (v.is_array() || v.is_object())
          return ParamsError{"Filter values of '" + key + "' must be scalars."};
    }
  }
  return std::nullopt;
}

std::variant<ComputedParams, ParamsError> parse_computed_params(
    const std::map<std::string, std::string>& query, const std::string& default_sort_key,
    bool default_descending, bool whole_by_default) {
  ComputedParams p;
  long long page = 1, page_size = 50;
  if (auto e = positive_int(query, "page", 1, page)) return *e;
  if (auto e = positive_int(query, "page_size", 50, page_size)) return *e;
  page_size = std::min(page_size, 1000LL);
  if (auto e = json_param(query, "filter", p.filter)) return *e;
  if (p.filter) {
    if (auto e = check_filter(*p.filter, "filter")) return *e;
  }
  if (auto e = json_param(query, "search", p.search)) return *e;
  if (p.search) {
    if (auto e = check_search(*p.search)) return *e;
  }
  std::optional<OJson> sort;
  if (auto e = json_param(query, "sort", sort)) return *e;
  if (sort) {
    auto key = sort->is_object() ? sort->find("key") : sort->end();
    if (!sort->is_object() || key == sort->end() || !key->is_string() ||
        key->get_ref<const std::string&>().empty())
      return ParamsError{
          "'sort' must be {\"key\": \"<column key>\", \"type\": \"Ascending\"|\"Descending\"}."};
    p.sort_key = key->get<std::string>();
    auto type = sort->find("type");
    const OJson stype = type == sort->end() ? OJson("Ascending") : *type;
    if (stype != "Ascending" && stype != "Descending")
      return ParamsError{"'sort.type' must be \"Ascending\" or \"Descending\", got " + py_repr_json(stype) +
                         "."};
    p.descending = stype == "Descending";
  } else {
    p.sort_key = default_sort_key;
    p.descending = default_descending;
  }
  constexpr long long kMax = std::numeric_limits<long long>::max();
  p.offset = page - 1 > kMax / page_size ? kMax : (page - 1) * page_size;
  p.limit = page_size;
  if (whole_by_default && !query.count("page") && !query.count("page_size")) {
    p.offset = 0;
    p.limit = kMax;
  }
  return p;
}

RowFilter::RowFilter(WarehouseStatus warehouse_status, const std::vector<replica::GranularFilter>& granular,
                     const ComputedParams* params, const ColumnDefaults* defaults)
    : status_(std::move(warehouse_status)), params_(params), defaults_(defaults) {
  for (const auto& [number, status] : status_)
    if (status == "Inactive") inactive_.push_back(number);
  hide_inactive_ = !inactive_.empty() && !(params_ && params_->names_key("Warehouse Status"));
  for (const auto& g : granular) {
    Granular x{g.category, g.include, {}};
    for (const auto& v : g.values)
      x.values.push_back(OJson(v));
    granular_.push_back(std::move(x));
  }
  if (params_ && params_->filter) {
    for (const auto& [key, spec] : params_->filter->items()) {
      Condition c;
      c.key = key;
      if (spec.is_object()) {
        c.range = true;
        if (auto f = spec.find("from"); f != spec.end() && !f->is_null()) c.from = *f;
        if (auto t = spec.find("to"); t != spec.end() && !t->is_null()) c.to = *t;
      } else if (spec.is_array()) {
        for (const auto& v : spec)
          c.values.push_back(v);
      } else {
        c.values.push_back(spec);
      }
      conditions_.push_back(std::move(c));
    }
  }
  if (params_ && params_->search) {
    const auto& f = params_->search->at("filters");
    for (const char* part : {"include", "exclude"}) {
      auto sub = f.find(part);
      if (sub == f.end() || !sub->is_object()) continue;
      for (const auto& [key, values] : sub->items()) {
        Condition c;
        c.key = key;
        c.exclude = std::string_view(part) == "exclude";
        for (const auto& v : values)
          c.values.push_back(v);
        conditions_.push_back(std::move(c));
      }
    }
  }
}

const OJson* RowFilter::get(const OJson& row, const std::string& key) const {
  if (!row.is_object()) return nullptr;
  auto it = row.find(key);
  if (it != row.end()) return &*it;
  if (key == "Warehouse Status") {
    // A virtual column: the status of the row's warehouse (the last warehouse of that number wins).
    auto num = row.find("Warehouse Number");
    if (num == row.end() || num->is_null()) return nullptr;
    for (auto w = status_.rbegin(); w != status_.rend(); ++w)
      if (py_eq(w->first, *num)) return &w->second;
    return nullptr;
  }
  if (defaults_) {
    auto d = defaults_->find(key);
    if (d != defaults_->end()) return &d->second;
  }
  return nullptr;
}

bool RowFilter::trivial() const {
  return !hide_inactive_ && granular_.empty() && conditions_.empty();
}

bool RowFilter::visible(const OJson& row) const {
  if (hide_inactive_) {
    auto num = row.find("Warehouse Number");
    if (num != row.end() && member(*num, inactive_)) return false;
  }
  for (const auto& g : granular_) {
    const OJson* v = get(row, g.category);
    if (v == nullptr || v->is_null()) continue;
    if (member(*v, g.values) != g.include) return false;
  }
  for (const auto& c : conditions_) {
    const OJson* v = get(row, c.key);
    bool ok = false;
    if (c.range) {
      ok = v != nullptr && in_range(*v, c.from ? &*c.from : nullptr, c.to ? &*c.to : nullptr);
    } else if (c.exclude) {
      ok = v == nullptr || !matches(*v, c.values);
    } else {
      ok = v != nullptr && matches(*v, c.values);
    }
    if (!ok) return false;
  }
  return true;
}

std::vector<std::size_t> RowFilter::order(const std::vector<OJson>& rows, const std::string& key,
                                          bool descending) const {
  std::vector<std::size_t> out(rows.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = i;
  if (key == "id") {
    if (descending) std::reverse(out.begin(), out.end());
    return out;
  }
  std::vector<const OJson*> cells(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    cells[i] = get(rows[i], key);
  std::stable_sort(out.begin(), out.end(), [&](std::size_t a, std::size_t b) {
    const int c = compare_cells(cells[a], cells[b]);
    return descending ? c > 0 : c < 0;
  });
  return out;
}

}  // namespace item_views_detail

// ===========================================================================================================
// Reading the replica
// ===========================================================================================================
namespace {

using namespace item_views_detail;
using replica::json_key_sql;
using replica::sql_quote;

const std::vector<std::string> kOpenPo = {"Open", "Planned", "Shipped", "Partially Received"};
const std::vector<std::string> kOpenSo = {"Open", "Partially Shipped"};
const std::vector<std::string> kOpenMo = {"Planned", "Open", "In Progress"};

HttpResponse json_response(int status, const OJson& body) {
  return HttpResponse::json(status, body.dump());
}
HttpResponse not_privileged() {
  return HttpResponse::knosc_error(403, "Not Privileged for this action", "User.NotPrivileged");
}
HttpResponse route_not_found() {
  return HttpResponse::knosc_error(404, "Not Found", "Route.NotFound");
}
HttpResponse bad_request(const ParamsError& e) {
  return HttpResponse::knosc_error(400, e.message, e.code);
}

bool one_of(const OJson* v, const std::vector<std::string>& set) {
  return v && v->is_string() &&
         std::find(set.begin(), set.end(), v->get_ref<const std::string&>()) != set.end();
}

const OJson* field(const OJson& row, const std::string& key) {
  if (!row.is_object()) return nullptr;
  auto it = row.find(key);
  return it == row.end() ? nullptr : &*it;
}
OJson value_or_null(const OJson& row, const std::string& key) {
  const OJson* v = field(row, key);
  return v ? *v : OJson();
}

// Python's `a + b` on numbers: integers stay integers while they fit.
OJson add(const OJson& a, const OJson& b) {
  const auto x = as_int64(a), y = as_int64(b);
  std::int64_t sum = 0;
  if (x && y && !__builtin_add_overflow(*x, *y, &sum)) return sum;
  return static_cast<double>(numeric(a) + numeric(b));
}
OJson negate(const OJson& a) {
  if (const auto x = as_int64(a); x && *x != std::numeric_limits<std::int64_t>::min()) return -*x;
  return static_cast<double>(-numeric(a));
}
// Python's `v or 0` for a quantity: null, false and zero count as 0.
OJson quantity(const OJson* v) {
  if (v == nullptr || !is_numeric(*v)) return 0;
  if (v->is_boolean()) return v->get<bool>() ? 1 : 0;
  return *v;
}

OJson column_json(const SQLite::Column& c) {
  switch (c.getType()) {
    case SQLITE_INTEGER:
      return c.getInt64();
    case SQLITE_FLOAT:
      return c.getDouble();
    case SQLITE_TEXT:
      return c.getString();
    default:
      return nullptr;
  }
}

// How SQL reads `key` of a `record` row (aliased `alias`) of `res`: its key slot when it has one (the value
// json_extract would give, without parsing the body, and indexed with the resource and id), else the JSON.
std::string key_sql(const schema::Resource& res, const std::string& key,
                    const std::string& alias = "record") {
  if (auto slot = replica::slot_of(res, key)) return alias + "." + replica::slot_column(*slot);
  return json_key_sql(key, alias + ".body");
}

// Whether that value is a JSON string. A slot holds objects and arrays as JSON text too, so text that could
// be one is checked in the body.
std::string is_text_sql(const schema::Resource& res, const std::string& key,
                        const std::string& alias = "record") {
  const std::string json_type =
      "json_type(" + alias + ".body, " + sql_quote("$.\"" + key + "\"") + ") = 'text'";
  if (!replica::slot_of(res, key)) return json_type;
  const std::string v = key_sql(res, key, alias);
  return "(typeof(" + v + ") = 'text' AND (substr(" + v + ", 1, 1) NOT IN ('[', '{') OR " + json_type + "))";
}

// Values bound to ?1, ?2, ... of one statement, kept with their JSON type.
class Binds {
 public:
  std::string add(OJson v) {
    values_.push_back(std::move(v));
    return "?" + std::to_string(values_.size());
  }
  void bind(SQLite::Statement& st) const {
    for (std::size_t i = 0; i < values_.size(); ++i) {
      const int at = static_cast<int>(i + 1);
      const OJson& v = values_[i];
      if (v.is_string()) {
        st.bind(at, v.get_ref<const std::string&>());
      } else if (v.is_boolean()) {
        // json_extract gives true as 1, and Knosc compares True == 1 too.
        st.bind(at, static_cast<std::int64_t>(v.get<bool>()));
      } else if (const auto n = as_int64(v)) {
        st.bind(at, *n);
      } else if (v.is_number()) {
        st.bind(at, v.get<double>());
      } else {
        st.bind(at);
      }
    }
  }

 private:
  std::vector<OJson> values_;
};

std::string sql_in(const std::string& expr, const std::vector<std::string>& values, Binds& b) {
  std::string out = expr + " IN (";
  for (std::size_t i = 0; i < values.size(); ++i)
    out += (i ? ", " : "") + b.add(values[i]);
  return out + ")";
}

// The read-only connection's memo of aggregates over whole resources. They cost tens of milliseconds on the
// largest tenants (every row's JSON is parsed), so each reader connection keeps them until the replica
// changes: SQLite's PRAGMA data_version changes whenever another connection (the replica writer) commits. A
// random nonce in a TEMP table, which lives and dies with its connection, tells a new connection from an old
// one that had the same address.
struct MemoEntry {
  std::shared_ptr<const void> value;
  std::size_t weight = 0;
  std::uint64_t used = 0;
};
struct MemoState {
  std::int64_t nonce = 0;
  std::int64_t version = -1;
  std::map<std::string, MemoEntry> entries;
  std::size_t weight = 0;
  std::uint64_t clock = 0;
};
// What a connection keeps, counted in rows of any kind (a few hundred bytes each): tens of megabytes at the
// largest tenants, enough for every aggregate of a handful of users' scopes. The least recently used go
// first.
constexpr std::size_t kMemoBudget = 100'000;

template <typename T>
std::size_t memo_weight(const T& v) {
  if constexpr (requires { v.size(); }) {
    return v.size() + 1;
  } else {
    return 1;
  }
}
thread_local std::unordered_map<sqlite3*, MemoState> t_memos;  // reader threads each own their connection

std::int64_t connection_nonce(SQLite::Database& db) {
  {
    SQLite::Statement q(db, "SELECT name FROM temp.sqlite_master WHERE name = 'knosc_item_views_nonce'");
    if (q.executeStep()) {
      SQLite::Statement n(db, "SELECT nonce FROM temp.knosc_item_views_nonce");
      if (n.executeStep()) return n.getColumn(0).getInt64();
    }
  }
  std::random_device rd;
  const std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  const auto nonce = static_cast<std::int64_t>(r | 1);
  db.exec("CREATE TEMP TABLE IF NOT EXISTS knosc_item_views_nonce (nonce INTEGER NOT NULL)");
  db.exec("DELETE FROM temp.knosc_item_views_nonce");
  SQLite::Statement ins(db, "INSERT INTO temp.knosc_item_views_nonce (nonce) VALUES (?1)");
  ins.bind(1, nonce);
  ins.exec();
  return nonce;
}

class Memo {
 public:
  explicit Memo(SQLite::Database& db) {
    std::int64_t nonce = 0;
    try {
      nonce = connection_nonce(db);
    } catch (const SQLite::Exception&) {
      return;  // a connection that may not even keep a TEMP table (query_only): everything is computed afresh
    }
    SQLite::Statement v(db, "PRAGMA data_version");
    v.executeStep();
    const std::int64_t version = v.getColumn(0).getInt64();
    if (t_memos.size() > 4 && !t_memos.count(db.getHandle())) t_memos.clear();  // connections long closed
    state_ = &t_memos[db.getHandle()];
    if (state_->nonce != nonce || state_->version != version) {
      state_->entries.clear();
      state_->weight = 0;
      state_->nonce = nonce;
      state_->version = version;
    }
  }

  template <typename T, typename Compute>
  std::shared_ptr<const T> get(const std::string& key, Compute&& compute) {
    if (state_ == nullptr) return std::make_shared<const T>(compute());
    auto& entries = state_->entries;
    if (auto it = entries.find(key); it != entries.end()) {
      it->second.used = ++state_->clock;
      return std::static_pointer_cast<const T>(it->second.value);
    }
    std::shared_ptr<const T> made = std::make_shared<const T>(compute());
    const std::size_t weight = memo_weight(*made);
    while (!entries.empty() && state_->weight + weight > kMemoBudget) {
      auto oldest = std::min_element(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
        return a.second.used < b.second.used;
      });
      state_->weight -= oldest->second.weight;
      entries.erase(oldest);
    }
    if (weight <= kMemoBudget) {
      entries.emplace(key, MemoEntry{made, weight, ++state_->clock});
      state_->weight += weight;
    }
    return made;
  }

 private:
  MemoState* state_ = nullptr;
};

// One consistent snapshot for all reads of a request (WAL readers see the replica as of their first read).
class ReadSnapshot {
 public:
  explicit ReadSnapshot(SQLite::Database& db) : db_(db) {
    if (sqlite3_get_autocommit(db.getHandle()) != 0) {
      db.exec("BEGIN");
      open_ = true;
    }
  }
  ~ReadSnapshot() {
    if (!open_) return;
    try {
      db_.exec("COMMIT");
    } catch (...) {  // nothing was written; the connection stays usable either way
    }
  }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;

 private:
  SQLite::Database& db_;
  bool open_ = false;
};

// What one request reads: the memo (taken before the snapshot, so a memo entry is never older than the data
// version it is filed under), the snapshot, and the warehouses' statuses.
class View {
 public:
  View(replica::Replica& rep, const LocalSession& session)
      : rep_(rep), session_(session), memo_(rep.db()), snapshot_(rep.db()) {}

  SQLite::Database& db() { return rep_.db(); }
  const schema::Catalog& catalog() const { return rep_.catalog(); }
  Memo& memo() { return memo_; }
  const std::vector<replica::GranularFilter>& granular() const { return session_.privileges.granular; }

  // Warehouse number -> status, in id order (Knosc's own map: a later warehouse of the same number wins).
  const WarehouseStatus& warehouses() {
    if (!warehouses_) {
      warehouses_.emplace();
      SQLite::Statement q(db(), "SELECT body FROM record WHERE resource = 'warehouse-master' ORDER BY id");
      while (q.executeStep()) {
        const OJson w = OJson::parse(q.getColumn(0).getString());
        const OJson num = value_or_null(w, "Warehouse Number"), status = value_or_null(w, "Warehouse Status");
        auto same = std::find_if(warehouses_->begin(), warehouses_->end(),
                                 [&](const auto& e) { return py_eq(e.first, num); });
        if (same != warehouses_->end()) warehouses_->erase(same);
        warehouses_->emplace_back(num, status);
      }
    }
    return *warehouses_;
  }

  RowFilter filter(const ComputedParams* params, const ColumnDefaults* defaults = nullptr) {
    return RowFilter(warehouses(), granular(), params, defaults);
  }

  // The same visibility as a SQL condition, for aggregates SQLite computes: rows of inactive warehouses left
  // out, then the granular filters (a row without the column, or with null, passes). `key` spells a key of
  // the row in SQL; `json` is the row's JSON (to tell an absent key from a null one).
  template <typename KeySql>
  std::string visibility_sql(KeySql&& key, const std::string& json, Binds& b) {
    std::string out = "1";
    std::vector<OJson> inactive;
    for (const auto& [num, status] : warehouses())
      if (status == "Inactive" && !num.is_null()) inactive.push_back(num);
    const std::string number = key("Warehouse Number");
    if (!inactive.empty()) {
      out += " AND (" + number + " IS NULL OR " + number + " NOT IN (";
      for (std::size_t i = 0; i < inactive.size(); ++i)
        out += (i ? ", " : "") + b.add(inactive[i]);
      out += "))";
    }
    for (const auto& g : granular()) {
      // A key SQLite's JSON path cannot name cannot be in any mirrored row either.
      if (!replica::json_key_supported(g.category)) continue;
      std::string value = key(g.category);
      if (g.category == "Warehouse Status") {
        std::string by_number = "(CASE " + number;
        bool any = false;
        for (auto w = warehouses().rbegin(); w != warehouses().rend(); ++w) {
          by_number += " WHEN " + b.add(w->first) + " THEN " + b.add(w->second);
          any = true;
        }
        by_number = any ? by_number + " END)" : "NULL";
        value = "(CASE WHEN json_type(" + json + ", '$.\"Warehouse Status\"') IS NOT NULL THEN " + value +
                " ELSE " + by_number + " END)";
      }
      std::vector<std::string> slots;
      for (const auto& v : g.values)
        if (!v.is_null() && !v.is_array() && !v.is_object()) slots.push_back(b.add(OJson(v)));
      if (slots.empty()) {
        if (g.include) out += " AND " + value + " IS NULL";
        continue;
      }
      std::string list;
      for (const auto& s : slots)
        list += (list.empty() ? "" : ", ") + s;
      out += " AND (" + value + " IS NULL OR " + value + (g.include ? " IN (" : " NOT IN (") + list + "))";
    }
    return out;
  }

  // Visibility of `record` rows of `res` (aliased `alias`), reading keys from their slots where they have
  // one.
  std::string visibility_sql(const schema::Resource& res, const std::string& alias, Binds& b) {
    return visibility_sql([&](const std::string& k) { return key_sql(res, k, alias); }, alias + ".body", b);
  }

  // A key for memo entries that depend on what this user sees.
  std::string scope_key() {
    OJson k = OJson::array();
    for (const auto& g : granular())
      k.push_back(OJson{g.category, g.include, g.values});
    for (const auto& [num, status] : warehouses())
      k.push_back(OJson{num, status});
    return k.dump();
  }

 private:
  replica::Replica& rep_;
  const LocalSession& session_;
  Memo memo_;
  ReadSnapshot snapshot_;
  std::optional<WarehouseStatus> warehouses_;
};

void sort_by_id(std::vector<OJson>& rows) {
  std::stable_sort(rows.begin(), rows.end(), [](const OJson& a, const OJson& b) {
    return compare_cells(field(a, "id"), field(b, "id")) < 0;
  });
}

std::optional<OJson> body_by_id(SQLite::Database& db, const std::string& resource, const OJson& id) {
  const auto number = id.is_number_integer() ? as_int64(id) : std::nullopt;
  if (!number && !id.is_string()) return std::nullopt;
  SQLite::Statement q(db, "SELECT body FROM record WHERE resource = ?1 AND id = ?2");
  q.bind(1, resource);
  if (number) {
    q.bind(2, *number);
  } else {
    q.bind(2, id.get_ref<const std::string&>());
  }
  if (!q.executeStep()) return std::nullopt;
  return OJson::parse(q.getColumn(0).getString());
}

// A record named by an integer path segment, or Knosc's 400 for it ("Item #7 not found."; the id as Knosc
// parsed it, "007" is 7).
std::variant<OJson, HttpResponse> record_by_segment(View& v, const std::string& resource,
                                                    const std::string& segment) {
  const auto& res = v.catalog().at(resource);
  const auto id = py_int(segment);
  const std::string shown = id ? std::to_string(*id) : segment;
  if (id) {
    if (auto rec = body_by_id(v.db(), resource, OJson(static_cast<std::int64_t>(*id))))
      return std::move(*rec);
  }
  return HttpResponse::knosc_error(400, res.missing_message(shown), res.not_found_code);
}

// Rows of a flat resource (lines, inventory, mappings) whose "Item Id" is the item's id. They are found
// through the key slot of "Item Number" (the item's denormalised number on every such row) and its index,
// then checked by id.
std::vector<OJson> rows_of_item(View& v, const std::string& resource, const OJson& item) {
  const OJson id = value_or_null(item, "id");
  const OJson number = value_or_null(item, "Item Number");
  std::vector<OJson> out;
  if (id.is_null()) return out;
  const auto& res = v.catalog().at(resource);
  const std::string by = number.is_string() ? key_sql(res, "Item Number") : key_sql(res, "Item Id");
  // No ORDER BY: it could lead SQLite to walk the resource in id order instead of seeking the slot's index.
  SQLite::Statement q(
      v.db(), "SELECT body FROM record WHERE " + replica::resource_terms(res) + " AND " + by + " = ?1");
  Binds b;
  b.add(number.is_string() ? number : id);
  b.bind(q);
  while (q.executeStep()) {
    OJson row = OJson::parse(q.getColumn(0).getString());
    const OJson* line_item = field(row, "Item Id");
    if (line_item && py_eq(*line_item, id)) out.push_back(std::move(row));
  }
  sort_by_id(out);
  return out;
}

// Manufacturing orders and forecasts keep their lines inside the header's nested "details". Which headers
// hold lines of which item is kept per connection (see Memo), so an item's lines cost a few point reads.
using NestedItemIndex = std::unordered_map<std::int64_t, std::vector<std::int64_t>>;

std::int64_t integral_key(const SQLite::Column& c, bool& ok) {
  ok = true;
  if (c.getType() == SQLITE_INTEGER) return c.getInt64();
  if (c.getType() == SQLITE_FLOAT) {
    const double d = c.getDouble();
    if (std::trunc(d) == d && std::fabs(d) < 9.2e18) return static_cast<std::int64_t>(d);
  }
  ok = false;
  return 0;
}

std::vector<OJson> nested_lines_of_item(View& v, const std::string& header_resource, const OJson& item) {
  const OJson id = value_or_null(item, "id");
  std::vector<OJson> out;
  const auto item_id = id.is_number_integer() ? as_int64(id) : std::nullopt;
  if (!item_id) return out;
  auto index = v.memo().get<NestedItemIndex>("nested-items\x1f" + header_resource, [&] {
    NestedItemIndex idx;
    SQLite::Statement q(v.db(),
                        "SELECT r.id, json_extract(d.value, '$.\"Item Id\"') FROM record AS r, "
                        "json_each(r.nested, '$.details') AS d WHERE r.resource = " +
                            sql_quote(header_resource) + " AND r.nested IS NOT NULL ORDER BY r.id");
    while (q.executeStep()) {
      bool ok_item = false, ok_header = false;
      const auto line_item = integral_key(q.getColumn(1), ok_item);
      const auto header_id = integral_key(q.getColumn(0), ok_header);
      if (!ok_item || !ok_header) continue;
      auto& headers = idx[line_item];
      if (headers.empty() || headers.back() != header_id) headers.push_back(header_id);
    }
    return idx;
  });
  auto it = index->find(*item_id);
  if (it == index->end()) return out;
  SQLite::Statement q(v.db(), "SELECT nested FROM record WHERE resource = ?1 AND id = ?2");
  for (const auto header_id : it->second) {
    q.reset();
    q.bind(1, header_resource);
    q.bind(2, header_id);
    if (!q.executeStep() || q.getColumn(0).isNull()) continue;
    const OJson nested = OJson::parse(q.getColumn(0).getString());
    const OJson* details = field(nested, "details");
    if (!details || !details->is_array()) continue;
    for (const auto& line : *details) {
      const OJson* line_item = field(line, "Item Id");
      if (line_item && py_eq(*line_item, id)) out.push_back(line);
    }
  }
  sort_by_id(out);
  return out;
}

void keep_warehouse(std::vector<OJson>& rows, const std::optional<OJson>& warehouse) {
  if (!warehouse) return;
  const OJson wid = value_or_null(*warehouse, "id");
  std::erase_if(rows, [&](const OJson& r) {
    const OJson* w = field(r, "Warehouse Id");
    return !(w && py_eq(*w, wid));
  });
}

void keep_visible(std::vector<OJson>& rows, const RowFilter& f) {
  std::erase_if(rows, [&](const OJson& r) { return !f.visible(r); });
}

// A list header as Knosc's computed lists describe a column: filterable on its own key.
OJson header(const std::string& key, const std::string& format = "string", const std::string& alias = "") {
  OJson h{{"key", key}, {"format", format}};
  if (!alias.empty()) h["alias"] = alias;
  h["filters"] = OJson::array({OJson{{"category", key}, {"alias", alias.empty() ? key : alias}}});
  return h;
}

// The page of computed rows (given in their base order: id order, or the route's own) that Knosc's list
// parameters select: visible rows in list order, from the offset on. A sort order of memoised rows is kept in
// the memo under `memo_key` (empty: sorted per request; the rows are few).
std::vector<const OJson*> select_page(View& v, const std::vector<OJson>& rows, const ComputedParams& p,
                                      const std::string& memo_key = "",
                                      const ColumnDefaults* defaults = nullptr) {
  const RowFilter f = v.filter(&p, defaults);
  std::shared_ptr<const std::vector<std::size_t>> order;
  if (memo_key.empty() || p.sort_key == "id") {
    order = std::make_shared<const std::vector<std::size_t>>(f.order(rows, p.sort_key, p.descending));
  } else {
    // Stable-sorting all rows and then keeping the visible ones gives the same order as sorting those alone.
    order = v.memo().get<std::vector<std::size_t>>(
        memo_key + "\x1fsort\x1f" + p.sort_key + (p.descending ? "\x1f-" : "\x1f+"),
        [&] { return f.order(rows, p.sort_key, p.descending); });
  }
  std::vector<const OJson*> page;
  long long skip = p.offset;
  for (const auto i : *order) {
    if (static_cast<long long>(page.size()) >= p.limit) break;
    if (!f.visible(rows[i])) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    page.push_back(&rows[i]);
  }
  return page;
}

OJson page_json(const std::vector<const OJson*>& page) {
  OJson out = OJson::array();
  for (const OJson* r : page)
    out.push_back(*r);
  return out;
}

OJson envelope(OJson headers, const ComputedParams& p, OJson rows) {
  return OJson{
      {"data",
       OJson{{"headers", std::move(headers)},
             {"sort", OJson{{"key", p.sort_key}, {"type", p.descending ? "Descending" : "Ascending"}}},
             {"rows", std::move(rows)}}},
      {"tags", OJson::object()},
      {"extra", OJson::object()}};
}

// Python's `sorted(..., key=lambda r: r[...] or "")` on text.
std::string text_or_empty(const OJson* v) {
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

struct OrderItemSpec {
  const char* module;
  const char* header_resource;
  const char* lines_resource;  // a flat line list, or null when the lines are nested in the header
  const char* parent_key;
  std::vector<std::string> copy;  // header keys copied onto each row
  std::vector<OJson> headers;
  const char* sort_key;
};

const OrderItemSpec& order_item_spec(OrderItemKind kind) {
  static const OrderItemSpec purchase{
      "Procurement",
      "purchase-order",
      "purchase-order-details",
      "Purchase Order Id",
      {"Supplier Name", "Supplier Number"},
      {header("PO List Number", "string-link", "PO #"), header("Supplier Name"),
       header("Warehouse Number", "string-link", "Warehouse #"),
       header("PO Details Document Status", "string", "Status"),
       header("PO Details Quantity", "number", "Quantity"), header("PO Details ETA Date", "date", "ETA"),
       header("PO Details Ship Date", "date", "Ship Date")},
      "PO Details ETA Date"};
  static const OrderItemSpec sales{"Demand",
                                   "sales-order",
                                   "sales-order-details",
                                   "Sales Order Id",
                                   {"Customer Name", "Customer Number"},
                                   {header("SO List Number", "string-link", "SO #"), header("Customer Name"),
                                    header("Warehouse Number", "string-link", "Warehouse #"),
                                    header("SO Details Document Status", "string", "Status"),
                                    header("SO Details Quantity", "number", "Quantity"),
                                    header("SO Details Ship Date", "date", "Ship Date")},
                                   "SO Details Ship Date"};
  static const OrderItemSpec manufacturing{"Manufacturing",
                                           "manufacturing-order",
                                           nullptr,
                                           nullptr,
                                           {},
                                           {header("MO List Number", "string-link", "MO #"),
                                            header("Warehouse Number", "string-link", "Warehouse #"),
                                            header("MO Details Document Status", "string", "Status"),
                                            header("MO Details Quantity", "number", "Quantity"),
                                            header("MO Details Start Date", "date", "Start Date"),
                                            header("MO Details End Date", "date", "End Date")},
                                           "MO Details End Date"};
  static const OrderItemSpec forecast{"Forecast",
                                      "forecast",
                                      nullptr,
                                      nullptr,
                                      {},
                                      {header("Forecast List Number", "string-link", "Forecast #"),
                                       header("Warehouse Number", "string-link", "Warehouse #"),
                                       header("Forecast Details Date", "date", "Date"),
                                       header("Forecast Details Quantity", "number", "Quantity"),
                                       header("Forecast Details Document Status", "string", "Status")},
                                      "Forecast Details Date"};
  switch (kind) {
    case OrderItemKind::Purchase:
      return purchase;
    case OrderItemKind::Sales:
      return sales;
    case OrderItemKind::Manufacturing:
      return manufacturing;
    case OrderItemKind::Forecast:
    default:
      return forecast;
  }
}

// The item and, when named, the warehouse of a per-item route; or the 400 for the first that is missing.
struct ItemAndWarehouse {
  OJson item;
  std::optional<OJson> warehouse;
};
std::variant<ItemAndWarehouse, HttpResponse> item_and_warehouse(
    View& v, const std::string& item_id, const std::optional<std::string>& warehouse_id) {
  ItemAndWarehouse out;
  auto item = record_by_segment(v, "item-master", item_id);
  if (auto* r = std::get_if<HttpResponse>(&item)) return std::move(*r);
  out.item = std::move(std::get<OJson>(item));
  if (warehouse_id) {
    auto wh = record_by_segment(v, "warehouse-master", *warehouse_id);
    if (auto* r = std::get_if<HttpResponse>(&wh)) return std::move(*r);
    out.warehouse = std::move(std::get<OJson>(wh));
  }
  return out;
}

// Canonical text of a grouping key, equal exactly when Knosc's keys are equal (5 and 5.0 are one key).
std::string group_key(const OJson& v) {
  if (v.is_null()) return "n";
  if (is_numeric(v)) {
    const long double x = numeric(v);
    if (std::trunc(x) == x && std::fabs(x) < 9.2e18L) return "i" + std::to_string(static_cast<long long>(x));
    return "f" + py_float_repr(static_cast<double>(x));
  }
  if (v.is_string()) return "s" + v.get<std::string>();
  return "j" + v.dump();
}

}  // namespace

// ===========================================================================================================
// Routes
// ===========================================================================================================
std::string analytics_today() {
  if (const char* pinned = std::getenv("KNOSC_SYNCD_TODAY")) {
    if (days_between(pinned, pinned)) return pinned;
  }
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &utc);
  return buf;
}

HttpResponse order_item_view(replica::Replica& rep, const LocalSession& session, OrderItemKind kind,
                             const std::string& item_id, const std::optional<std::string>& warehouse_id,
                             const std::map<std::string, std::string>& query) {
  const OrderItemSpec& spec = order_item_spec(kind);
  if (!session.privileges.allows(spec.module, Access::View)) return not_privileged();
  View v(rep, session);
  auto found = item_and_warehouse(v, item_id, warehouse_id);
  if (auto* r = std::get_if<HttpResponse>(&found)) return std::move(*r);
  // Plain references rather than a structured binding: lambdas below capture them, which clang 14 refuses for
  // structured bindings.
  const auto& item_and_wh = std::get<ItemAndWarehouse>(found);
  const auto& item = item_and_wh.item;
  const auto& warehouse = item_and_wh.warehouse;

  std::vector<OJson> rows = spec.lines_resource ? rows_of_item(v, spec.lines_resource, item)
                                                : nested_lines_of_item(v, spec.header_resource, item);
  keep_warehouse(rows, warehouse);
  if (!spec.copy.empty()) {
    std::map<std::string, OJson> headers;  // by group key of the parent id
    for (auto& row : rows) {
      const OJson parent = value_or_null(row, spec.parent_key);
      const std::string key = group_key(parent);
      auto h = headers.find(key);
      if (h == headers.end())
        h = headers.emplace(key, body_by_id(v.db(), spec.header_resource, parent).value_or(OJson::object()))
                .first;
      for (const auto& k : spec.copy)
        row[k] = value_or_null(h->second, k);
    }
  }
  auto params = parse_computed_params(query, spec.sort_key, true, false);
  if (auto* e = std::get_if<ParamsError>(&params)) return bad_request(*e);
  const auto& p = std::get<ComputedParams>(params);
  OJson headers = OJson::array();
  for (const auto& h : spec.headers)
    headers.push_back(h);
  return json_response(200, envelope(std::move(headers), p, page_json(select_page(v, rows, p))));
}

HttpResponse inventory_item_view(replica::Replica& rep, const LocalSession& session,
                                 const std::string& item_id, const std::optional<std::string>& warehouse_id) {
  if (!session.privileges.allows("Inventory", Access::View)) return not_privileged();
  View v(rep, session);
  auto found = item_and_warehouse(v, item_id, warehouse_id);
  if (auto* r = std::get_if<HttpResponse>(&found)) return std::move(*r);
  // Plain references rather than a structured binding: lambdas below capture them, which clang 14 refuses for
  // structured bindings.
  const auto& item_and_wh = std::get<ItemAndWarehouse>(found);
  const auto& item = item_and_wh.item;
  const auto& warehouse = item_and_wh.warehouse;
  const RowFilter visible = v.filter(nullptr);

  // One row per warehouse number, in the order the warehouses first appear (stock first, then orders).
  std::vector<OJson> slots;
  std::map<std::string, std::size_t> slot_of;
  auto slot = [&](const OJson& rec) -> OJson& {
    const OJson num = value_or_null(rec, "Warehouse Number");
    auto [it, fresh] = slot_of.emplace(group_key(num), slots.size());
    if (fresh)
      slots.push_back(OJson{{"Warehouse Number", num},
                            {"Warehouse Name", value_or_null(rec, "Warehouse Name")},
                            {"Inventory Quantity", 0},
                            {"Open PO Quantity", 0},
                            {"Open SO Quantity", 0},
                            {"Open MO Quantity", 0}});
    return slots[it->second];
  };
  auto rows_of = [&](std::vector<OJson> rows) {
    keep_warehouse(rows, warehouse);
    keep_visible(rows, visible);
    return rows;
  };
  for (const auto& r : rows_of(rows_of_item(v, "inventory", item))) {
    OJson& s = slot(r);
    s["Inventory Quantity"] = add(s["Inventory Quantity"], quantity(field(r, "Inventory Quantity")));
  }
  struct Open {
    std::vector<OJson> rows;
    const char* quantity;
    const char* status;
    const std::vector<std::string>* open;
    const char* column;
  };
  Open open[] = {
      {rows_of(rows_of_item(v, "purchase-order-details", item)), "PO Details Quantity",
       "PO Details Document Status", &kOpenPo, "Open PO Quantity"},
      {rows_of(rows_of_item(v, "sales-order-details", item)), "SO Details Quantity",
       "SO Details Document Status", &kOpenSo, "Open SO Quantity"},
      {rows_of(nested_lines_of_item(v, "manufacturing-order", item)), "MO Details Quantity",
       "MO Details Document Status", &kOpenMo, "Open MO Quantity"},
  };
  for (const auto& o : open) {
    for (const auto& r : o.rows) {
      if (!one_of(field(r, o.status), *o.open)) continue;
      OJson& s = slot(r);
      s[o.column] = add(s[o.column], quantity(field(r, o.quantity)));
    }
  }
  std::stable_sort(slots.begin(), slots.end(), [](const OJson& a, const OJson& b) {
    return text_or_empty(field(a, "Warehouse Number")) < text_or_empty(field(b, "Warehouse Number"));
  });
  OJson total = 0;
  int stocked = 0;
  OJson rows = OJson::array();
  for (auto& s : slots) {
    // Net available = stock + inbound - outbound; Knosc's own example leaves manufacturing out
    // (850 + 200 - 300 = 750).
    s["Net Available"] =
        add(add(s["Inventory Quantity"], s["Open PO Quantity"]), negate(s["Open SO Quantity"]));
    total = add(total, s["Inventory Quantity"]);
    if (compare_numbers(s["Inventory Quantity"], OJson(0)) > 0) ++stocked;
    rows.push_back(std::move(s));
  }
  const OJson headers = OJson::array({OJson{{"key", "Warehouse Number"}, {"format", "string-link"}},
                                      OJson{{"key", "Inventory Quantity"}, {"format", "number"}},
                                      OJson{{"key", "Open PO Quantity"}, {"format", "number"}},
                                      OJson{{"key", "Open SO Quantity"}, {"format", "number"}},
                                      OJson{{"key", "Open MO Quantity"}, {"format", "number"}}});
  OJson summary{{"Item Number", value_or_null(item, "Item Number")},
                {"Item Description", value_or_null(item, "Item Description")},
                {"Item Type", value_or_null(item, "Item Type")},
                {"Total Quantity", total},
                {"Total Warehouses", stocked}};
  return json_response(
      200, OJson{{"data", OJson{{"item", std::move(summary)},
                                {"orders", OJson{{"headers", headers}, {"rows", std::move(rows)}}}}}});
}

HttpResponse sales_prioritized_view(replica::Replica& rep, const LocalSession& session,
                                    const std::string& item_id,
                                    const std::optional<std::string>& warehouse_id) {
  if (!session.privileges.allows("Demand", Access::View)) return not_privileged();
  View v(rep, session);
  auto found = item_and_warehouse(v, item_id, warehouse_id);
  if (auto* r = std::get_if<HttpResponse>(&found)) return std::move(*r);
  // Plain references rather than a structured binding: lambdas below capture them, which clang 14 refuses for
  // structured bindings.
  const auto& item_and_wh = std::get<ItemAndWarehouse>(found);
  const auto& item = item_and_wh.item;
  const auto& warehouse = item_and_wh.warehouse;
  const RowFilter visible = v.filter(nullptr);
  auto rows_of = [&](std::vector<OJson> rows) {
    keep_warehouse(rows, warehouse);
    keep_visible(rows, visible);
    return rows;
  };

  std::map<std::string, OJson> stock;  // by warehouse number
  for (const auto& r : rows_of(rows_of_item(v, "inventory", item))) {
    OJson& s = stock.try_emplace(group_key(value_or_null(r, "Warehouse Number")), 0).first->second;
    s = add(s, quantity(field(r, "Inventory Quantity")));
  }
  std::vector<OJson> lines;
  for (auto& ln : rows_of(rows_of_item(v, "sales-order-details", item)))
    if (one_of(field(ln, "SO Details Document Status"), kOpenSo)) lines.push_back(std::move(ln));
  // Per warehouse, the earliest ship date first (undated lines last), then the oldest line.
  std::stable_sort(lines.begin(), lines.end(), [](const OJson& a, const OJson& b) {
    const std::string wa = text_or_empty(field(a, "Warehouse Number")),
                      wb = text_or_empty(field(b, "Warehouse Number"));
    if (wa != wb) return wa < wb;
    const OJson* da = field(a, "SO Details Ship Date");
    const OJson* db = field(b, "SO Details Ship Date");
    const std::string sa = da && da->is_string() && !da->get_ref<const std::string&>().empty()
                               ? da->get<std::string>()
                               : "9999-99-99";
    const std::string sb = db && db->is_string() && !db->get_ref<const std::string&>().empty()
                               ? db->get<std::string>()
                               : "9999-99-99";
    if (sa != sb) return sa < sb;
    return compare_numbers(value_or_null(a, "id"), value_or_null(b, "id")) < 0;
  });
  OJson rows = OJson::array();
  std::map<std::string, OJson> customers;  // by sales order id
  OJson last_wh;
  long long rank = 0;
  for (const auto& ln : lines) {
    const OJson whn = value_or_null(ln, "Warehouse Number");
    if (!py_eq(whn, last_wh)) {
      rank = 0;
      last_wh = whn;
    }
    ++rank;
    const std::string wkey = group_key(whn);
    const OJson avail = stock.count(wkey) ? stock[wkey] : OJson(0);
    const OJson qty = quantity(field(ln, "SO Details Quantity"));
    // Python's min() and max() keep the first of equal values.
    const OJson least = compare_numbers(avail, qty) < 0 ? avail : qty;
    const OJson alloc = compare_numbers(least, OJson(0)) > 0 ? least : OJson(0);
    stock[wkey] = add(avail, negate(alloc));
    const OJson order = value_or_null(ln, "Sales Order Id");
    const std::string okey = group_key(order);
    auto c = customers.find(okey);
    if (c == customers.end())
      c = customers
              .emplace(okey, value_or_null(body_by_id(v.db(), "sales-order", order).value_or(OJson::object()),
                                           "Customer Name"))
              .first;
    rows.push_back(OJson{{"id", value_or_null(ln, "id")},
                         {"SO List Number", value_or_null(ln, "SO List Number")},
                         {"Customer Name", c->second},
                         {"SO Details Quantity", value_or_null(ln, "SO Details Quantity")},
                         {"SO Details Ship Date", value_or_null(ln, "SO Details Ship Date")},
                         {"SO Details Document Status", value_or_null(ln, "SO Details Document Status")},
                         {"Warehouse Number", whn},
                         {"Priority", rank},
                         {"Allocated Quantity", alloc},
                         {"Available Inventory", stock[wkey]}});
  }
  return json_response(200, OJson{{"data", OJson{{"rows", std::move(rows)}}}});
}

HttpResponse external_item_details_view(replica::Replica& rep, const LocalSession& session,
                                        const std::string& id) {
  if (!session.privileges.allows("External Item Master", Access::View)) return not_privileged();
  View v(rep, session);
  auto found = record_by_segment(v, "external-item-master", id);
  if (auto* r = std::get_if<HttpResponse>(&found)) return std::move(*r);
  OJson out = std::move(std::get<OJson>(found));
  const OJson item_id = value_or_null(out, "Item Id");
  const OJson item = body_by_id(v.db(), "item-master", item_id).value_or(OJson::object());
  OJson summary = OJson::object();
  for (const char* k : {"id", "Item Number", "Item Description", "Item Type", "Item Unit"})
    summary[k] = value_or_null(item, k);
  OJson mappings = OJson::array();
  if (!item_id.is_null()) {
    // The mappings carry the item's number as well, which the replica indexes.
    OJson by = OJson{{"id", item_id}, {"Item Number", value_or_null(out, "Item Number")}};
    for (auto& m : rows_of_item(v, "external-item-master", by))
      mappings.push_back(std::move(m));
  }
  out["Item"] = std::move(summary);
  out["Number of Mappings"] = mappings.size();
  out["Mappings"] = std::move(mappings);
  return json_response(200, OJson{{"data", std::move(out)}});
}

namespace {

// Open purchase quantity per (item id, supplier id of the order), over the purchase lines the user sees.
struct OpenPurchases {
  std::map<std::pair<std::string, std::string>, OJson> by_item_supplier;
  std::map<std::string, OJson> by_item;
};

OpenPurchases open_purchases(View& v) {
  Binds b;
  const auto& lines = v.catalog().at("purchase-order-details");
  const auto& heads = v.catalog().at("purchase-order");
  const std::string sql = "SELECT " + key_sql(lines, "Item Id", "l") + ", " +
                          key_sql(heads, "Supplier Id", "h") + ", SUM(COALESCE(" +
                          key_sql(lines, "PO Details Quantity", "l") +
                          ", 0)) FROM record AS l LEFT JOIN record AS h ON h.resource = 'purchase-order' "
                          "AND h.id = l.parent_id "
                          "WHERE l.resource = 'purchase-order-details' AND " +
                          sql_in(key_sql(lines, "PO Details Document Status", "l"), kOpenPo, b) + " AND " +
                          v.visibility_sql(lines, "l", b) + " GROUP BY 1, 2";
  SQLite::Statement q(v.db(), sql);
  b.bind(q);
  OpenPurchases out;
  while (q.executeStep()) {
    const std::string item = group_key(column_json(q.getColumn(0)));
    const OJson qty = column_json(q.getColumn(2));
    auto& cell =
        out.by_item_supplier.try_emplace({item, group_key(column_json(q.getColumn(1)))}, 0).first->second;
    cell = add(cell, qty);
    auto& total = out.by_item.try_emplace(item, 0).first->second;
    total = add(total, qty);
  }
  return out;
}

std::vector<OJson> all_rows(View& v, const std::string& resource) {
  std::vector<OJson> out;
  SQLite::Statement q(v.db(), "SELECT body FROM record WHERE resource = ?1 ORDER BY id");
  q.bind(1, resource);
  while (q.executeStep())
    out.push_back(OJson::parse(q.getColumn(0).getString()));
  return out;
}

// Python's `a * b / 100.0` for an allocation: the exact product when both are integers, then a float
// division.
double percent_of(const OJson& total, const OJson& pct) {
  const auto a = as_int64(total), b = as_int64(pct);
  std::int64_t product = 0;
  if (a && b && !__builtin_mul_overflow(*a, *b, &product)) return static_cast<double>(product) / 100.0;
  return static_cast<double>(numeric(total)) * static_cast<double>(numeric(pct)) / 100.0;
}

}  // namespace

HttpResponse supplier_net_allocation_view(replica::Replica& rep, const LocalSession& session,
                                          const std::map<std::string, std::string>& query) {
  if (!session.privileges.allows("Supplier Allocation", Access::View)) return not_privileged();
  View v(rep, session);
  const std::string memo_key = "net-allocation\x1f" + v.scope_key();
  auto rows = v.memo().get<std::vector<OJson>>(memo_key, [&] {
    const auto open = open_purchases(v);
    std::vector<OJson> out;
    for (const auto& a : all_rows(v, "supplier-allocation")) {
      const std::string item = group_key(value_or_null(a, "Item Id"));
      auto t = open.by_item.find(item);
      const OJson total = t == open.by_item.end() ? OJson(0) : t->second;
      const OJson pct = value_or_null(a, "Allocation Percentage");
      const double net = round2(percent_of(total, pct));
      auto o = open.by_item_supplier.find({item, group_key(value_or_null(a, "Supplier Id"))});
      const OJson opened = o == open.by_item_supplier.end() ? OJson(0) : o->second;
      out.push_back(OJson{{"id", value_or_null(a, "id")},
                          {"Item Number", value_or_null(a, "Item Number")},
                          {"Supplier Number", value_or_null(a, "Supplier Number")},
                          {"Supplier Name", value_or_null(a, "Supplier Name")},
                          {"Allocation Percentage", pct},
                          {"Net Allocated Quantity", net},
                          {"Open PO Quantity", opened},
                          {"Variance", round2(static_cast<double>(numeric(opened)) - net)}});
    }
    return out;
  });
  auto params = parse_computed_params(query, "id", false, true);
  if (auto* e = std::get_if<ParamsError>(&params)) return bad_request(*e);
  const auto& p = std::get<ComputedParams>(params);
  return json_response(200, OJson{{"data", OJson{{"rows", page_json(select_page(v, *rows, p, memo_key))}}}});
}

namespace {
// The allocation cross-tab: one row per item with its suppliers' percentages. A tenant has thousands of
// suppliers and every row names all of them (0 where the item has no allocation), so rows are kept sparse and
// the empty cells read as 0 (ColumnDefaults) until a row is written out.
struct AllocationTable {
  std::vector<OJson> rows;                         // sparse, in item id order
  std::vector<std::pair<OJson, OJson>> suppliers;  // (number, name) in order, each pair once
  ColumnDefaults zeros;                            // every supplier number -> 0
  std::size_t size() const { return rows.size() + suppliers.size(); }  // its weight in the memo
};

AllocationTable allocation_table(View& v) {
  AllocationTable t;
  std::set<std::pair<std::string, std::string>> seen;
  std::vector<std::string> item_order;
  std::map<std::string, OJson> by_item;
  for (const auto& a : all_rows(v, "supplier-allocation")) {
    const OJson num = value_or_null(a, "Supplier Number"), name = value_or_null(a, "Supplier Name");
    if (seen.insert({group_key(num), group_key(name)}).second) t.suppliers.emplace_back(num, name);
    const OJson item_id = value_or_null(a, "Item Id");
    const std::string key = group_key(item_id);
    auto it = by_item.find(key);
    if (it == by_item.end()) {
      it = by_item
               .emplace(key, OJson{{"id", item_id},
                                   {"Item Number", value_or_null(a, "Item Number")},
                                   {"Item Description", value_or_null(a, "Item Description")},
                                   {"Total Allocation", 0}})
               .first;
      item_order.push_back(key);
    }
    const OJson pct = value_or_null(a, "Allocation Percentage");
    if (num.is_string()) it->second[num.get<std::string>()] = pct;
    it->second["Total Allocation"] = add(it->second["Total Allocation"], quantity(&pct));
  }
  std::stable_sort(t.suppliers.begin(), t.suppliers.end(), [](const auto& x, const auto& y) {
    const int c = compare_cells(&x.first, &y.first);
    return c != 0 ? c < 0 : compare_cells(&x.second, &y.second) < 0;
  });
  for (const auto& key : item_order)
    t.rows.push_back(std::move(by_item[key]));
  sort_by_id(t.rows);
  for (const auto& [num, _] : t.suppliers)
    if (num.is_string()) t.zeros.emplace(num.get<std::string>(), 0);
  return t;
}

// A sparse cross-tab row with every supplier's cell. Appended to the object's own storage: a lookup per key
// (what operator[] does) would make thousands of columns quadratic.
OJson full_row(const OJson& sparse, const AllocationTable& t) {
  OJson row = sparse;
  auto& cells = row.get_ref<OJson::object_t&>();
  for (const auto& [num, _] : t.suppliers)
    if (num.is_string() && !sparse.contains(num.get<std::string>()))
      cells.emplace_back(num.get<std::string>(), 0);
  return row;
}
}  // namespace

HttpResponse supplier_net_allocation_table_view(replica::Replica& rep, const LocalSession& session,
                                                const std::map<std::string, std::string>& query) {
  if (!session.privileges.allows("Supplier Allocation", Access::View)) return not_privileged();
  View v(rep, session);
  const std::string memo_key = "allocation-table";
  auto table = v.memo().get<AllocationTable>(memo_key, [&] { return allocation_table(v); });
  auto params = parse_computed_params(query, "Item Number", false, true);
  if (auto* e = std::get_if<ParamsError>(&params)) return bad_request(*e);
  const auto& p = std::get<ComputedParams>(params);
  OJson headers = OJson::array({header("Item Number", "string-link", "Item #"), header("Item Description")});
  for (const auto& [num, name] : table->suppliers)
    if (num.is_string())
      headers.push_back(
          header(num.get<std::string>(), "number", name.is_string() ? name.get<std::string>() : ""));
  headers.push_back(header("Total Allocation", "number"));
  // The sort order depends on the warehouses' statuses only through the virtual "Warehouse Status" column.
  const auto page = select_page(v, table->rows, p, memo_key + "\x1f" + v.scope_key(), &table->zeros);
  // Written row by row: without paging the whole cross-tab can be far larger than its sparse form.
  OJson env = envelope(std::move(headers), p, OJson::array());
  std::string body = env.dump();
  const std::string empty_rows = "\"rows\":[]";
  const auto at = body.find(empty_rows);
  std::string rows_text = "\"rows\":[";
  for (std::size_t i = 0; i < page.size(); ++i) {
    if (i) rows_text += ',';
    rows_text += full_row(*page[i], *table).dump();
  }
  body.replace(at, empty_rows.size(), rows_text + "]");
  return HttpResponse::json(200, std::move(body));
}

namespace {
HttpResponse ticket_part(replica::Replica& rep, const LocalSession& session, const std::string& ticket_id,
                         const char* part) {
  if (!session.privileges.allows("Issue Tracker", Access::View)) return not_privileged();
  const auto& res = rep.catalog().at("issue-tracker-tickets");
  ReadSnapshot snapshot(rep.db());
  SQLite::Statement q(rep.db(),
                      "SELECT nested FROM record WHERE resource = 'issue-tracker-tickets' AND id = ?1");
  q.bind(1, ticket_id);
  if (!q.executeStep())
    return HttpResponse::knosc_error(400, res.missing_message(ticket_id), res.not_found_code);
  // A ticket whose notes have not been fetched yet (it was mirrored moments ago) has none to show.
  OJson data = OJson::array();
  if (!q.getColumn(0).isNull()) {
    const OJson nested = OJson::parse(q.getColumn(0).getString());
    if (const OJson* p = field(nested, part); p && p->is_array()) data = *p;
  }
  return json_response(200, OJson{{"data", std::move(data)}});
}
}  // namespace

HttpResponse ticket_notes_view(replica::Replica& rep, const LocalSession& session,
                               const std::string& ticket_id) {
  return ticket_part(rep, session, ticket_id, "Notes");
}
HttpResponse ticket_subscribers_view(replica::Replica& rep, const LocalSession& session,
                                     const std::string& ticket_id) {
  return ticket_part(rep, session, ticket_id, "Subscribers");
}

namespace {
// Categories auto-complete offers, in Knosc's order (its error message lists them so), with their resource.
const std::vector<std::pair<std::string, std::string>>& autocomplete_categories() {
  static const std::vector<std::pair<std::string, std::string>> c = {
      {"Item Number", "item-master"},
      {"Item Description", "item-master"},
      {"Supplier Number", "supplier-master"},
      {"Supplier Name", "supplier-master"},
      {"Customer Number", "customer-master"},
      {"Customer Name", "customer-master"},
      {"Warehouse Number", "warehouse-master"},
      {"Warehouse Name", "warehouse-master"},
      {"Ship From Number", "ship-from-master"},
      {"Ship To Number", "ship-to-master"},
      {"User Email", "user"},
      {"PO List Number", "purchase-order"},
      {"SO List Number", "sales-order"},
      {"MO List Number", "manufacturing-order"},
  };
  return c;
}
constexpr std::size_t kAutocompleteMax = 50;

// A resource's text values of one column with their folded form, kept per connection (see Memo): matching
// is a substring search in Knosc's own case folding, which SQLite's lower() (ASCII only) cannot do.
struct Candidate {
  OJson id;
  std::string text;
  std::string folded;
};
using Candidates = std::vector<Candidate>;
}  // namespace

HttpResponse auto_complete_view(replica::Replica& rep, const LocalSession& session,
                                const std::map<std::string, std::string>& query) {
  const auto started = std::chrono::steady_clock::now();
  auto param = [&](const char* name) -> const std::string* {
    auto it = query.find(name);
    return it == query.end() ? nullptr : &it->second;
  };
  const std::string* category = param("category");
  const std::string* text = param("text");
  if (!category || category->empty())
    return HttpResponse::knosc_error(400, "Missing required parameter: category",
                                     "AutoComplete.MissingField");
  if (!text)
    return HttpResponse::knosc_error(400, "Missing required parameter: text", "AutoComplete.MissingField");
  const auto& cats = autocomplete_categories();
  auto cat = std::find_if(cats.begin(), cats.end(), [&](const auto& c) { return c.first == *category; });
  if (cat == cats.end()) {
    std::string names;
    for (const auto& c : cats)
      names += (names.empty() ? "" : ", ") + c.first;
    return HttpResponse::knosc_error(
        400, "Unknown category " + py_repr(*category) + "; use one of: " + names + ".",
        "AutoComplete.InvalidCategory");
  }
  ComputedParams subset;
  if (const std::string* raw = param("subset_filters"); raw && !raw->empty()) {
    OJson f = OJson::parse(*raw, nullptr, /*allow_exceptions=*/false);
    if (f.is_discarded()) return HttpResponse::knosc_error(400, "Bad Request Format", "JSON.Invalid");
    if (auto e = check_filter(f, "subset_filters")) return bad_request(*e);
    subset.filter = std::move(f);
  }
  View v(rep, session);
  const std::string& resource = cat->second;
  auto candidates = v.memo().get<Candidates>("autocomplete\x1f" + resource + "\x1f" + *category, [&] {
    Candidates out;
    const auto& res = v.catalog().at(resource);
    SQLite::Statement q(v.db(), "SELECT id, " + key_sql(res, *category) + " FROM record WHERE " +
                                    replica::resource_terms(res) + " AND " + is_text_sql(res, *category));
    while (q.executeStep()) {
      std::string t = q.getColumn(1).getString();
      std::string folded = py_lower(t);
      out.push_back({column_json(q.getColumn(0)), std::move(t), std::move(folded)});
    }
    return out;
  });
  const std::string needle = py_lower(*text);
  struct Hit {
    bool inner;  // matched past the start
    const Candidate* c;
  };
  std::vector<Hit> hits;
  for (const auto& c : *candidates) {
    const auto pos = c.folded.find(needle);
    if (pos != std::string::npos) hits.push_back({pos != 0, &c});
  }
  // Prefix matches first, then by folded text, id and text.
  std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
    if (a.inner != b.inner) return !a.inner;
    if (int c = a.c->folded.compare(b.c->folded); c != 0) return c < 0;
    if (int c = compare_cells(&a.c->id, &b.c->id); c != 0) return c < 0;
    return a.c->text < b.c->text;
  });
  const RowFilter f = v.filter(&subset);
  OJson data = OJson::array();
  std::optional<SQLite::Statement> body;
  for (const auto& h : hits) {
    if (data.size() >= kAutocompleteMax) break;
    if (!f.trivial()) {
      if (!body) body.emplace(v.db(), "SELECT body FROM record WHERE resource = ?1 AND id = ?2");
      body->reset();
      body->bind(1, resource);
      if (h.c->id.is_string()) {
        body->bind(2, h.c->id.get<std::string>());
      } else {
        body->bind(2, as_int64(h.c->id).value_or(0));
      }
      if (!body->executeStep() || !f.visible(OJson::parse(body->getColumn(0).getString()))) continue;
    }
    data.push_back(OJson::array({h.c->text, h.c->id}));
  }
  const auto total = data.size();
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started)
          .count();
  return json_response(
      200, OJson{{"data", OJson{{"headers", OJson::array({"text", "id"})},
                                {"data", std::move(data)},
                                {"total", total},
                                {"elapsed", std::llround(static_cast<double>(elapsed) / 1000.0)}}}});
}

HttpResponse delayed_shipments_view(replica::Replica& rep, const LocalSession& session,
                                    const std::map<std::string, std::string>& query,
                                    const std::string& today) {
  if (!session.privileges.allows("Procurement", Access::View)) return not_privileged();
  auto it = query.find("bucket");
  if (it == query.end() || it->second.empty())
    return HttpResponse::knosc_error(400, "Missing required parameter: bucket",
                                     "DelayedShipments.InvalidBucket");
  struct Bucket {
    const char* label;
    long long lo;
    long long hi;  // -1: open-ended
  };
  static const std::vector<Bucket> week = {
      {"0–7 days", 0, 7}, {"8–14 days", 8, 14}, {"15–30 days", 15, 30}, {"30+ days", 31, -1}};
  static const std::vector<Bucket> month = {
      {"0–30 days", 0, 30}, {"31–60 days", 31, 60}, {"61–90 days", 61, 90}, {"90+ days", 91, -1}};
  const std::string& name = it->second;
  if (name != "week" && name != "month")
    return HttpResponse::knosc_error(400, "Invalid bucket " + py_repr(name) + ": use week or month.",
                                     "DelayedShipments.InvalidBucket");
  const auto& buckets = name == "week" ? week : month;
  View v(rep, session);
  // Open lines whose ETA is before today, counted per ETA (SQLite reads them through the ETA index).
  using EtaCounts = std::vector<std::pair<std::string, long long>>;
  auto counts = v.memo().get<EtaCounts>("delayed\x1f" + today + "\x1f" + v.scope_key(), [&] {
    Binds b;
    const auto& lines = v.catalog().at("purchase-order-details");
    const std::string eta = key_sql(lines, "PO Details ETA Date");
    const std::string sql = "SELECT " + eta +
                            ", COUNT(*) FROM record WHERE resource = 'purchase-order-details' AND " + eta +
                            " >= '' AND " + eta + " < " + b.add(today) + " AND " +
                            sql_in(key_sql(lines, "PO Details Document Status"), kOpenPo, b) + " AND " +
                            v.visibility_sql(lines, "record", b) + " GROUP BY 1";
    SQLite::Statement q(v.db(), sql);
    b.bind(q);
    EtaCounts out;
    while (q.executeStep())
      out.emplace_back(q.getColumn(0).getString(), q.getColumn(1).getInt64());
    return out;
  });
  std::vector<long long> n(buckets.size(), 0);
  long long total = 0;
  for (const auto& [eta, count] : *counts) {
    const auto days = days_between(eta, today);
    if (!days || eta.empty()) continue;  // not a date: no delay can be told
    total += count;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      if (*days >= buckets[i].lo && (buckets[i].hi < 0 || *days <= buckets[i].hi)) {
        n[i] += count;
        break;
      }
    }
  }
  OJson out = OJson::array();
  for (std::size_t i = 0; i < buckets.size(); ++i)
    out.push_back(OJson{{"label", buckets[i].label}, {"count", n[i]}});
  return json_response(
      200, OJson{{"data", OJson{{"buckets", std::move(out)}, {"total_delayed", total}, {"bucket", name}}}});
}

namespace {
// Forecast and shipped sales quantity per (item number, warehouse number, month).
struct ForecastMonth {
  OJson item, warehouse;
  std::string month;
  OJson forecast = 0;
  OJson actual = 0;
};
using ForecastMonths = std::vector<ForecastMonth>;

ForecastMonths forecast_months(View& v) {
  ForecastMonths out;
  std::map<std::tuple<std::string, std::string, std::string>, std::size_t> at;
  {
    Binds b;
    const std::string d = "d.value";
    const std::string sql =
        "SELECT " + json_key_sql("Item Number", d) + ", " + json_key_sql("Warehouse Number", d) +
        ", substr(" + json_key_sql("Forecast Details Date", d) + ", 1, 7), SUM(COALESCE(" +
        json_key_sql("Forecast Details Quantity", d) +
        ", 0)) FROM record AS r, json_each(r.nested, '$.details') AS d WHERE r.resource = 'forecast' AND "
        "r.nested IS NOT NULL AND " +
        v.visibility_sql([&](const std::string& k) { return json_key_sql(k, d); }, d, b) +
        " GROUP BY 1, 2, 3";
    SQLite::Statement q(v.db(), sql);
    b.bind(q);
    while (q.executeStep()) {
      ForecastMonth m{column_json(q.getColumn(0)), column_json(q.getColumn(1)), q.getColumn(2).getString(),
                      column_json(q.getColumn(3)), 0};
      at.emplace(std::make_tuple(group_key(m.item), group_key(m.warehouse), m.month), out.size());
      out.push_back(std::move(m));
    }
  }
  if (!out.empty()) {
    // Shipped (not cancelled) sales lines of the forecast items, read through the item-number index.
    OJson items = OJson::array();
    std::set<std::string> seen;
    for (const auto& m : out)
      if (m.item.is_string() && seen.insert(m.item.get<std::string>()).second) items.push_back(m.item);
    Binds b;
    const auto& so = v.catalog().at("sales-order-details");
    const std::string ship = key_sql(so, "SO Details Ship Date");
    const std::string sql =
        "SELECT " + key_sql(so, "Item Number") + ", " + key_sql(so, "Warehouse Number") + ", substr(" + ship +
        ", 1, 7), SUM(COALESCE(" + key_sql(so, "SO Details Quantity") +
        ", 0)) FROM record WHERE resource = 'sales-order-details' AND " + key_sql(so, "Item Number") +
        " IN (SELECT value FROM json_each(" + b.add(items.dump()) + ")) AND " +
        is_text_sql(so, "SO Details Ship Date") + " AND " + ship + " != '' AND " +
        key_sql(so, "SO Details Document Status") + " IS NOT 'Cancelled' AND " +
        v.visibility_sql(so, "record", b) + " GROUP BY 1, 2, 3";
    SQLite::Statement q(v.db(), sql);
    b.bind(q);
    while (q.executeStep()) {
      auto key = std::make_tuple(group_key(column_json(q.getColumn(0))),
                                 group_key(column_json(q.getColumn(1))), q.getColumn(2).getString());
      auto hit = at.find(key);
      if (hit != at.end())
        out[hit->second].actual = add(out[hit->second].actual, column_json(q.getColumn(3)));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const ForecastMonth& a, const ForecastMonth& b) {
    if (int c = compare_cells(&a.item, &b.item); c != 0) return c < 0;
    if (int c = compare_cells(&a.warehouse, &b.warehouse); c != 0) return c < 0;
    return a.month < b.month;
  });
  return out;
}

const OJson& forecast_over_time_headers() {
  static const OJson h =
      OJson::array({header("Item Number", "string-link"), header("Warehouse Number", "string-link"),
                    header("Period", "date"), header("Forecast Quantity", "number"),
                    header("Actual Quantity", "number"), header("Variance", "number")});
  return h;
}
}  // namespace

HttpResponse forecast_over_time_view(replica::Replica& rep, const LocalSession& session,
                                     const std::map<std::string, std::string>& query) {
  if (!session.privileges.allows("Forecast Over Time", Access::View)) return not_privileged();
  View v(rep, session);
  const std::string memo_key = "forecast-over-time-rows\x1f" + v.scope_key();
  auto rows = v.memo().get<std::vector<OJson>>(memo_key, [&] {
    const auto months = forecast_months(v);
    std::vector<OJson> out;
    out.reserve(months.size());
    for (const auto& m : months)
      out.push_back(OJson{{"Item Number", m.item},
                          {"Warehouse Number", m.warehouse},
                          {"Period", m.month + "-01"},
                          {"Forecast Quantity", m.forecast},
                          {"Actual Quantity", m.actual},
                          {"Variance", add(m.actual, negate(m.forecast))}});
    return out;
  });
  auto params = parse_computed_params(query, "Period", false, false);
  if (auto* e = std::get_if<ParamsError>(&params)) return bad_request(*e);
  const auto& p = std::get<ComputedParams>(params);
  return json_response(
      200, envelope(forecast_over_time_headers(), p, page_json(select_page(v, *rows, p, memo_key))));
}

HttpResponse validate_privileges_view(const LocalSession& session,
                                      const std::map<std::string, std::string>& query) {
  // The application's sections and the module each needs (View), API-NOTES §17.4 and knosc-sim's reading.
  static const std::map<std::string, std::string> paths = {
      {"/procurement", "Procurement"},
      {"/demand", "Demand"},
      {"/manufacturing", "Manufacturing"},
      {"/forecast", "Forecast"},
      {"/forecast-over-time", "Forecast Over Time"},
      {"/inventory", "Inventory"},
      {"/inventory-planning", "Inventory Planning"},
      {"/item-master", "Item Master"},
      {"/supplier-master", "Supplier Master"},
      {"/customer-master", "Customer Master"},
      {"/warehouse-master", "Warehouse Master"},
      {"/unit-master", "Unit Master"},
      {"/external-item-master", "External Item Master"},
      {"/bill-of-materials", "Bill of Materials"},
      {"/asn", "ASN"},
      {"/supplier-allocation", "Supplier Allocation"},
      {"/users", "Users"},
      {"/scenario-analysis", "Scenarios"},
      {"/issue-tracker", "Issue Tracker"},
      {"/settings", "General Settings"},
      {"/custom-columns", "Custom Columns"},
      {"/dashboard", "Dashboard"},
  };
  auto it = query.find("path");
  if (it == query.end() || it->second.empty())
    return HttpResponse::knosc_error(400, "Missing required parameter: path", "Privilege.MissingField");
  std::string path = it->second;
  std::string trimmed = path;
  while (!trimmed.empty() && trimmed.back() == '/')
    trimmed.pop_back();
  auto m = paths.find(trimmed.empty() ? path : trimmed);
  if (m == paths.end())
    return HttpResponse::knosc_error(400, "Unknown path " + path + ".", "Privilege.UnknownPath");
  if (!session.privileges.allows(m->second, Access::View)) return not_privileged();
  return json_response(200, OJson{{"access", true}});
}

std::optional<HttpResponse> item_view(replica::Replica& rep, const LocalSession& session,
                                      const std::vector<std::string>& path_segments,
                                      const std::map<std::string, std::string>& query) {
  if (path_segments.empty()) return std::nullopt;
  const std::string& route = path_segments.front();
  const std::vector<std::string> rest(path_segments.begin() + 1, path_segments.end());
  auto item_route = [&](const char* module, auto&& call) -> HttpResponse {
    // Knosc checks the privilege before the shape of the path.
    if (!session.privileges.allows(module, Access::View)) return not_privileged();
    if (rest.empty() || rest.size() > 2) return route_not_found();
    return call(rest[0], rest.size() == 2 ? std::optional<std::string>(rest[1]) : std::nullopt);
  };
  static const std::map<std::string, OrderItemKind> order_items = {
      {"purchase-order-item", OrderItemKind::Purchase},
      {"sales-order-item", OrderItemKind::Sales},
      {"manufacturing-order-item", OrderItemKind::Manufacturing},
      {"forecast-item", OrderItemKind::Forecast},
  };
  if (auto k = order_items.find(route); k != order_items.end()) {
    return item_route(order_item_spec(k->second).module, [&](const std::string& item, const auto& wh) {
      return order_item_view(rep, session, k->second, item, wh, query);
    });
  }
  if (route == "inventory-item") {
    return item_route("Inventory", [&](const std::string& item, const auto& wh) {
      return inventory_item_view(rep, session, item, wh);
    });
  }
  if (route == "sales-prioritized-item-inventory") {
    return item_route("Demand", [&](const std::string& item, const auto& wh) {
      return sales_prioritized_view(rep, session, item, wh);
    });
  }
  if (route == "external-item-master-details") {
    if (rest.size() != 1) return route_not_found();
    return external_item_details_view(rep, session, rest[0]);
  }
  if (route == "supplier-net-allocation" || route == "supplier-net-allocation-table") {
    if (!rest.empty()) return route_not_found();
    return route == "supplier-net-allocation" ? supplier_net_allocation_view(rep, session, query)
                                              : supplier_net_allocation_table_view(rep, session, query);
  }
  if (route == "issue-tracker-tickets" && rest.size() == 2) {
    if (rest[1] == "notes") return ticket_notes_view(rep, session, rest[0]);
    if (rest[1] == "subscribers") return ticket_subscribers_view(rep, session, rest[0]);
    return std::nullopt;
  }
  if (route == "auto-complete") {
    if (!rest.empty()) return route_not_found();
    return auto_complete_view(rep, session, query);
  }
  if (route == "delayed-shipments") {
    if (rest.size() != 1 || rest[0] != "histogram") return route_not_found();
    return delayed_shipments_view(rep, session, query, analytics_today());
  }
  if (route == "forecast-over-time") {
    if (!rest.empty()) return route_not_found();
    return forecast_over_time_view(rep, session, query);
  }
  if (route == "validate-privileges") {
    if (!rest.empty()) return route_not_found();
    return validate_privileges_view(session, query);
  }
  return std::nullopt;
}

}  // namespace knosc::daemon
