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

// content_hash(value) fed one event at a time, for readers that walk JSON text without building a DOM
// (replica/list_page.hpp). Events in document order give the same hash as the DOM walk: an object is
// begin_object, then key and the value's events for each member, then end_object.
class ContentHasher {
 public:
  void null() { tag('n'); }
  void boolean(bool b) { tag(b ? 't' : 'f'); }
  // Integers are hashed through double, so 5 and 5.0 hash alike (see content_hash.cpp).
  void number(double d) {
    tag('#');
    bytes(&d, sizeof d);
  }
  void string(std::string_view s) {
    tag('s');
    str(s);
  }
  void begin_array() { tag('['); }
  void end_array() { tag(']'); }
  void begin_object() { tag('{'); }
  void key(std::string_view k) { str(k); }
  void end_object() { tag('}'); }

  std::uint64_t value() const { return h_; }

  // FNV-1a (see content_hash.cpp for why it is enough).
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = h_;
    for (std::size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= kPrime;
    }
    h_ = h;
  }

 private:
  static constexpr std::uint64_t kOffset = 1469598103934665603ULL;
  static constexpr std::uint64_t kPrime = 1099511628211ULL;

  void tag(char t) { bytes(&t, 1); }
  void str(std::string_view s) {
    const std::uint64_t n = s.size();
    bytes(&n, sizeof n);  // length prefix keeps {"ab":"c"} and {"a":"bc"} apart
    bytes(s.data(), s.size());
  }

  std::uint64_t h_ = kOffset;
};

}  // namespace knosc::replica
