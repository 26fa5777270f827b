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

// The order of Knosc's lists sorted by id, which pull passes page through: integers numerically, before
// strings; strings in natural order, where a run of digits compares by its numeric value and any other byte
// as a byte, so "TKT-999" comes before "TKT-1000" (Knosc numbers tickets in sequence and lists them in that
// order). Strings that differ only in leading zeros compare bytewise, so the order stays strict. SQLite's
// own order (text bytewise) agrees for integers only.
bool upstream_id_less(const RecordId& a, const RecordId& b);

}  // namespace knosc::replica
