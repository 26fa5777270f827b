#include "replica/record_id.hpp"

#include <string_view>

namespace knosc::replica {
namespace {
template <typename J>
std::optional<RecordId> from(const J& v) {
  if (v.is_number_integer()) return RecordId{v.template get<std::int64_t>()};
  if (v.is_string() && !v.template get_ref<const std::string&>().empty())
    return RecordId{v.template get<std::string>()};
  return std::nullopt;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// <0, 0 or >0 as `a` sorts before, with or after `b` in natural order (see upstream_id_less).
int natural_compare(std::string_view a, std::string_view b) {
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (!is_digit(a[i]) || !is_digit(b[j])) {
      // A digit against another byte compares as bytes too: every digit run then sorts on the same side of
      // a given byte, which keeps the order transitive.
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]) ? -1 : 1;
      ++i;
      ++j;
      continue;
    }
    // Two runs of digits: the one with more significant digits is larger, else the first differing digit
    // decides.
    while (i < a.size() && a[i] == '0')
      ++i;
    while (j < b.size() && b[j] == '0')
      ++j;
    std::size_t ea = i;
    std::size_t eb = j;
    while (ea < a.size() && is_digit(a[ea]))
      ++ea;
    while (eb < b.size() && is_digit(b[eb]))
      ++eb;
    if (ea - i != eb - j) return ea - i < eb - j ? -1 : 1;
    if (const int c = a.substr(i, ea - i).compare(b.substr(j, eb - j)); c != 0) return c;
    i = ea;
    j = eb;
  }
  if (i < a.size()) return 1;
  if (j < b.size()) return -1;
  return a.compare(b);  // equal but for leading zeros
}

}  // namespace

std::optional<RecordId> record_id_from_json(const nlohmann::ordered_json& v) {
  return from(v);
}
std::optional<RecordId> record_id_from_json(const nlohmann::json& v) {
  return from(v);
}

std::string to_string(const RecordId& id) {
  if (const auto* i = std::get_if<std::int64_t>(&id)) return std::to_string(*i);
  return std::get<std::string>(id);
}

bool upstream_id_less(const RecordId& a, const RecordId& b) {
  if (a.index() != b.index()) return a.index() < b.index();  // integers first
  if (const auto* i = std::get_if<std::int64_t>(&a)) return *i < std::get<std::int64_t>(b);
  return natural_compare(std::get<std::string>(a), std::get<std::string>(b)) < 0;
}

}  // namespace knosc::replica
