#pragma once
// A 64-bit content hash of a JSON value that depends only on its content (types, keys, values, key order),
// never on formatting, library version or platform. A pass compares it with the stored hash to write only
// rows that changed.

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace knosc::replica {

std::uint64_t content_hash(const nlohmann::ordered_json& value);
std::uint64_t content_hash(std::string_view bytes);

// FNV-1a (see content_hash.cpp for why it is enough), the hash content_hash takes of a value's events.
class Fnv1a {
 public:
  static constexpr std::uint64_t kOffset = 1469598103934665603ULL;
  static constexpr std::uint64_t kPrime = 1099511628211ULL;

  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = h_;
    for (std::size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= kPrime;
    }
    h_ = h;
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = kOffset;
};

// Appends the bytes to a string instead, to be hashed later together with others (fnv1a_each).
class ByteLog {
 public:
  explicit ByteLog(std::string& out) : out_(&out) {}
  void bytes(const void* data, std::size_t n) { out_->append(static_cast<const char*>(data), n); }

 private:
  std::string* out_;
};

// Drops the bytes: for values a reader must walk but whose hash nobody needs.
struct NoBytes {
  void bytes(const void*, std::size_t) {}
};

// The bytes content_hash(value) hashes, fed one event at a time to `Sink`, for readers that walk JSON text
// without building a DOM (replica/list_page.hpp). Events in document order give the same bytes as the DOM
// walk: an object is begin_object, then key and the value's events for each member, then end_object.
template <typename Sink>
class ContentEvents {
 public:
  ContentEvents() = default;
  explicit ContentEvents(Sink sink) : sink_(std::move(sink)) {}

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

  void bytes(const void* data, std::size_t n) { sink_.bytes(data, n); }
  const Sink& sink() const { return sink_; }

 private:
  void tag(char t) { bytes(&t, 1); }
  void str(std::string_view s) {
    const std::uint64_t n = s.size();
    bytes(&n, sizeof n);  // length prefix keeps {"ab":"c"} and {"a":"bc"} apart
    bytes(s.data(), s.size());
  }

  Sink sink_;
};

// content_hash(value), computed as the events come.
class ContentHasher : public ContentEvents<Fnv1a> {
 public:
  std::uint64_t value() const { return sink().value(); }
};

// The events' bytes, appended to a string (ByteLog); fnv1a_each then gives each value's content_hash.
using ContentRecorder = ContentEvents<ByteLog>;
// Events that are walked and forgotten.
using ContentIgnored = ContentEvents<NoBytes>;

// FNV-1a of each of `streams`, into out[i]: what ContentHasher gives for the events recorded in streams[i].
// Four streams are hashed side by side: FNV-1a multiplies once per byte and each multiplication waits for
// the one before, so one stream at a time leaves the processor mostly waiting, and four take about as long
// as one. `out` has streams.size() elements.
void fnv1a_each(std::span<const std::string_view> streams, std::span<std::uint64_t> out);

}  // namespace knosc::replica
