#include "replica/content_hash.hpp"

namespace knosc::replica {
namespace {

// FNV-1a (ContentHasher): small, fast and good enough to detect changes between two versions of one row (a
// collision would need the same row to change into another whose hash matches by chance: about 2^-64 per
// change).
void walk(ContentHasher& f, const nlohmann::ordered_json& v) {
  using T = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case T::null:
      f.null();
      break;
    case T::boolean:
      f.boolean(v.get<bool>());
      break;
    case T::number_integer:
    case T::number_unsigned:
      // 5 and 5.0 are the same quantity upstream; hash integers through double when exact so that a server
      // switching number formatting does not rewrite every row.
      f.number(v.get<double>());
      break;
    case T::number_float:
      f.number(v.get<double>());
      break;
    case T::string:
      f.string(v.get_ref<const std::string&>());
      break;
    case T::array:
      f.begin_array();
      for (const auto& e : v)
        walk(f, e);
      f.end_array();
      break;
    case T::object:
      f.begin_object();
      for (const auto& [k, e] : v.items()) {
        f.key(k);
        walk(f, e);
      }
      f.end_object();
      break;
    case T::binary:
    case T::discarded: {
      constexpr char unknown = '?';
      f.bytes(&unknown, 1);
      break;
    }
  }
}

}  // namespace

std::uint64_t content_hash(const nlohmann::ordered_json& value) {
  ContentHasher f;
  walk(f, value);
  return f.value();
}

std::uint64_t content_hash(std::string_view bytes) {
  ContentHasher f;
  f.bytes(bytes.data(), bytes.size());
  return f.value();
}

}  // namespace knosc::replica
