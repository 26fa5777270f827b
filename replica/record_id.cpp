#include "replica/record_id.hpp"

namespace knosc::replica {
namespace {
template <typename J>
std::optional<RecordId> from(const J& v) {
  if (v.is_number_integer()) return RecordId{v.template get<std::int64_t>()};
  if (v.is_string() && !v.template get_ref<const std::string&>().empty())
    return RecordId{v.template get<std::string>()};
  return std::nullopt;
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

nlohmann::json to_json(const RecordId& id) {
  if (const auto* i = std::get_if<std::int64_t>(&id)) return *i;
  return std::get<std::string>(id);
}

}  // namespace knosc::replica
