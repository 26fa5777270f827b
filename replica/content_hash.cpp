#include "replica/content_hash.hpp"

#include <algorithm>
#include <limits>

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

void fnv1a_each(std::span<const std::string_view> streams, std::span<std::uint64_t> out) {
  constexpr std::size_t kLanes = 4;
  constexpr std::uint64_t kPrime = Fnv1a::kPrime;
  std::size_t i = 0;
  for (; i + kLanes <= streams.size(); i += kLanes) {
    const unsigned char* p[kLanes];
    std::size_t n[kLanes];
    std::uint64_t h[kLanes];
    std::size_t common = std::numeric_limits<std::size_t>::max();
    for (std::size_t k = 0; k < kLanes; ++k) {
      p[k] = reinterpret_cast<const unsigned char*>(streams[i + k].data());
      n[k] = streams[i + k].size();
      h[k] = Fnv1a::kOffset;
      common = std::min(common, n[k]);
    }
    // The same steps as Fnv1a::bytes, one byte of each stream per round: the four chains overlap.
    for (std::size_t j = 0; j < common; ++j) {
      h[0] = (h[0] ^ p[0][j]) * kPrime;
      h[1] = (h[1] ^ p[1][j]) * kPrime;
      h[2] = (h[2] ^ p[2][j]) * kPrime;
      h[3] = (h[3] ^ p[3][j]) * kPrime;
    }
    for (std::size_t k = 0; k < kLanes; ++k) {
      for (std::size_t j = common; j < n[k]; ++j)
        h[k] = (h[k] ^ p[k][j]) * kPrime;
      out[i + k] = h[k];
    }
  }
  for (; i < streams.size(); ++i) {
    Fnv1a f;
    f.bytes(streams[i].data(), streams[i].size());
    out[i] = f.value();
  }
}

}  // namespace knosc::replica
