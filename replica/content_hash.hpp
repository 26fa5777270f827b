#pragma once
// A 64-bit content hash of a JSON value that depends only on its content (types, keys, values, key order),
// never on formatting, library version or platform. A pass compares it with the stored hash to write only
// rows that changed.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

namespace knosc::replica {

std::uint64_t content_hash(const nlohmann::ordered_json& value);
std::uint64_t content_hash(std::string_view bytes);

}  // namespace knosc::replica
