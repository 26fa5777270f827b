#pragma once
// The id of an upstream record: an integer for most Knosc resources, a string for issue-tracker tickets.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>

namespace knosc::replica {

using RecordId = std::variant<std::int64_t, std::string>;

// The id from a JSON value; nullopt when it is neither an integer nor a non-empty string.
std::optional<RecordId> record_id_from_json(const nlohmann::ordered_json& v);
std::optional<RecordId> record_id_from_json(const nlohmann::json& v);
std::string to_string(const RecordId& id);  // as used in a URL path segment
nlohmann::json to_json(const RecordId& id);

}  // namespace knosc::replica
