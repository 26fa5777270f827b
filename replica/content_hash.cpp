#include "replica/content_hash.hpp"

#include <cstring>

namespace knosc::replica {
namespace {

// FNV-1a: small, fast and good enough to detect changes between two versions of one row (a collision would
// need the same row to change into another whose hash matches by chance: about 2^-64 per change).
constexpr std::uint64_t kOffset = 1469598103934665603ULL;
constexpr std::uint64_t kPrime = 1099511628211ULL;

struct Fnv {
  std::uint64_t h = kOffset;
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= kPrime;
    }
  }
  void tag(char t) { bytes(&t, 1); }
  void str(std::string_view s) {
    const std::uint64_t n = s.size();
    bytes(&n, sizeof n);  // length prefix keeps {"ab":"c"} and {"a":"bc"} apart
    bytes(s.data(), s.size());
  }
};

void walk(Fnv& f, const nlohmann::ordered_json& v) {
  using T = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case T::null:
      f.tag('n');
      break;
    case T::boolean:
      f.tag(v.get<bool>() ? 't' : 'f');
      break;
    case T::number_integer:
    case T::number_unsigned: {
      // 5 and 5.0 are the same quantity upstream; hash integers through double when exact so that a server
      // switching number formatting does not rewrite every row.
      f.tag('#');
      const double d = v.get<double>();
      f.bytes(&d, sizeof d);
      break;
    }
    case T::number_float: {
      f.tag('#');
      const double d = v.get<double>();
      f.bytes(&d, sizeof d);
      break;
    }
    case T::string:
      f.tag('s');
      f.str(v.get_ref<const std::string&>());
      break;
    case T::array:
      f.tag('[');
      for (const auto& e : v)
        walk(f, e);
      f.tag(']');
      break;
    case T::object:
      f.tag('{');
      for (const auto& [k, e] : v.items()) {
        f.str(k);
        walk(f, e);
      }
      f.tag('}');
      break;
    case T::binary:
    case T::discarded:
      f.tag('?');
      break;
  }
}

}  // namespace

std::uint64_t content_hash(const nlohmann::ordered_json& value) {
  Fnv f;
  walk(f, value);
  return f.h;
}

std::uint64_t content_hash(std::string_view bytes) {
  Fnv f;
  f.bytes(bytes.data(), bytes.size());
  return f.h;
}

}  // namespace knosc::replica
