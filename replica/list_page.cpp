#include "replica/list_page.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "replica/content_hash.hpp"

namespace knosc::replica {
namespace {

using Json = nlohmann::ordered_json;

// Deeper documents go to nlohmann's parser, which keeps its own stack instead of recursing.
constexpr int kMaxDepth = 200;
// Objects with more keys go to the DOM, which bounds the quadratic duplicate-key check.
constexpr std::size_t kMaxKeysChecked = 64;

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Bytes a string holds as they are and Json::dump writes back unchanged: printable ASCII (DEL included)
// except '"' and '\'.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c)
    t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

// Whether all of the eight bytes at `p` are plain (kPlain): none below 0x20, none from 0x80 on, no '"' and
// no '\'. Word-at-a-time tests: x has a byte below n (n <= 0x80) iff (x - n * 0x0101..) & ~x & 0x8080.. is
// not zero, and a byte equal to c iff x ^ c * 0x0101.. has a zero byte.
bool plain8(const char* p) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  const auto zero_byte = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  const std::uint64_t control = (w - kOnes * 0x20) & ~w & kHigh;
  const std::uint64_t quote = zero_byte(w ^ (kOnes * '"'));
  const std::uint64_t backslash = zero_byte(w ^ (kOnes * '\\'));
  return ((w & kHigh) | control | quote | backslash) == 0;
}

// The end of the UTF-8 sequence whose lead byte (>= 0x80) is at `p`, or nullptr when the bytes are not
// well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), which
// Json::parse refuses too.
const char* utf8_sequence(const char* p, const char* end) {
  const auto byte = [p](std::size_t i) { return static_cast<unsigned char>(p[i]); };
  const auto in = [](unsigned char c, unsigned lo, unsigned hi) { return c >= lo && c <= hi; };
  const unsigned char lead = byte(0);
  std::size_t n = 0;  // continuation bytes
  unsigned lo = 0x80;
  unsigned hi = 0xBF;  // range of the first continuation byte
  if (in(lead, 0xC2, 0xDF)) {
    n = 1;
  } else if (lead == 0xE0) {
    n = 2;
    lo = 0xA0;
  } else if (in(lead, 0xE1, 0xEC) || in(lead, 0xEE, 0xEF)) {
    n = 2;
  } else if (lead == 0xED) {
    n = 2;
    hi = 0x9F;
  } else if (lead == 0xF0) {
    n = 3;
    lo = 0x90;
  } else if (in(lead, 0xF1, 0xF3)) {
    n = 3;
  } else if (lead == 0xF4) {
    n = 3;
    hi = 0x8F;
  } else {
    return nullptr;
  }
  if (static_cast<std::size_t>(end - p) <= n) return nullptr;
  if (!in(byte(1), lo, hi)) return nullptr;
  for (std::size_t i = 2; i <= n; ++i)
    if (!in(byte(i), 0x80, 0xBF)) return nullptr;
  return p + n + 1;
}

// Reads JSON text, checking it as strictly as Json::parse does, and tells whether each value's text is what
// Json::dump would write for it. Any `false` (text that is not JSON, or nesting too deep) sends the page to
// Json::parse, which then throws its own error or reads what the scanner would not.
class Scanner {
 public:
  // How a value's text compares with Json::dump's: the same, the same but for whitespace between tokens, or
  // different in content (escape sequences, number formats, duplicate keys: only a DOM gives dump's text).
  enum class Shape : std::uint8_t { Dump, Spaced, Other };

  Scanner(std::string_view text, std::vector<ScannedMember>& members)
      : p_(text.data()), end_(text.data() + text.size()), members_(members) {}

  const char* pos() const { return p_; }
  bool at_end() const { return p_ == end_; }
  char peek() const { return p_ != end_ ? *p_ : '\0'; }
  bool eat(char c) {
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  // Whitespace between values of a container being read, which dump does not write.
  void ws() {
    const char* start = p_;
    while (p_ != end_ && is_ws(*p_))
      ++p_;
    if (p_ != start && shape_ == Shape::Dump) shape_ = Shape::Spaced;
  }
  // Whitespace around the values the page is made of, which is no part of them.
  void skip_ws() {
    while (p_ != end_ && is_ws(*p_))
      ++p_;
  }

  void begin_value() {
    shape_ = Shape::Dump;
    keys_.clear();
  }
  Shape shape() const { return shape_; }

  // The members of the object at p_, for the levels of a response above the data it carries: each key goes
  // to `on_member`, which reads the value. False for text that is not JSON and for an escaped key, which
  // might spell a name the caller looks for.
  template <typename OnMember>
  bool members(OnMember&& on_member) {
    if (!eat('{')) return false;
    skip_ws();
    if (eat('}')) return true;
    for (;;) {
      if (peek() != '"') return false;
      begin_value();
      std::string_view key;
      if (!string(key)) return false;
      if (shape_ == Shape::Other) return false;
      skip_ws();
      if (!eat(':')) return false;
      skip_ws();
      if (!on_member(key)) return false;
      skip_ws();
      if (eat(',')) {
        skip_ws();
        continue;
      }
      return eat('}');
    }
  }

  // Reads one value into `h` (a ContentEvents) and `m` (kind, numbers; `value` is its text, a string's
  // without quotes). With `collect`, an object's members are appended to the member list.
  template <typename H>
  bool value(H& h, int depth, bool collect, ScannedMember& m) {
    if (p_ == end_) return false;
    const char* start = p_;
    switch (*p_) {
      case '{':
        m.kind = ValueKind::Object;
        if (!object(h, depth + 1, collect)) return false;
        break;
      case '[':
        m.kind = ValueKind::Array;
        if (!array(h, depth + 1)) return false;
        break;
      case '"': {
        std::string_view s;
        if (!string(s)) return false;
        h.string(s);
        m.kind = ValueKind::String;
        m.value = s;
        return true;
      }
      case 't':
        if (!literal("true")) return false;
        m.kind = ValueKind::True;
        h.boolean(true);
        break;
      case 'f':
        if (!literal("false")) return false;
        m.kind = ValueKind::False;
        h.boolean(false);
        break;
      case 'n':
        if (!literal("null")) return false;
        m.kind = ValueKind::Null;
        h.null();
        break;
      default:
        if (!number(h, m)) return false;
        break;
    }
    m.value = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  // A string at the opening quote; `content` is the text between the quotes. Escape sequences are checked
  // and make the value Other: its decoded contents differ from its text.
  bool string(std::string_view& content) {
    ++p_;
    const char* start = p_;
    for (;;) {
      // Eight bytes at a time while none of them needs a look (the usual case: ASCII text), then byte by
      // byte up to the one that does.
      while (end_ - p_ >= 8 && plain8(p_))
        p_ += 8;
      while (p_ != end_ && kPlain[static_cast<unsigned char>(*p_)])
        ++p_;
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        content = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\') {
        shape_ = Shape::Other;
        if (!escape()) return false;
        continue;
      }
      if (c < 0x20) return false;  // control characters must be escaped
      const char* next = utf8_sequence(p_, end_);
      if (!next) return false;
      p_ = next;
    }
  }

 private:
  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0)
      return false;
    p_ += word.size();
    return true;
  }

  bool hex4(unsigned& cp) {
    if (end_ - p_ < 4) return false;
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      cp <<= 4;
      if (c >= '0' && c <= '9') {
        cp |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        cp |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        cp |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }

  // An escape sequence at the backslash, with Json::parse's rule for surrogates: a high one must be followed
  // by an escaped low one, and a low one must not stand alone.
  bool escape() {
    ++p_;
    if (p_ == end_) return false;
    switch (*p_++) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        return true;
      case 'u': {
        unsigned cp = 0;
        if (!hex4(cp)) return false;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
          p_ += 2;
          unsigned low = 0;
          return hex4(low) && low >= 0xDC00 && low <= 0xDFFF;
        }
        return cp < 0xDC00 || cp > 0xDFFF;
      }
      default:
        return false;
    }
  }

  // A number, typed as Json::parse types it: an integer token is an int64 when negative and a uint64
  // otherwise, and a float when it fits neither; a token with a fraction or exponent is a double.
  template <typename H>
  bool number(H& h, ScannedMember& m) {
    const char* start = p_;
    const bool negative = eat('-');
    if (p_ == end_) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ != end_ && is_digit(*p_))
        ++p_;
    } else {
      return false;
    }
    bool real = false;
    if (eat('.')) {
      const char* digits = p_;
      while (p_ != end_ && is_digit(*p_))
        ++p_;
      if (p_ == digits) return false;
      real = true;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      const char* digits = p_;
      while (p_ != end_ && is_digit(*p_))
        ++p_;
      if (p_ == digits) return false;
      real = true;
    }
    const std::string_view token(start, static_cast<std::size_t>(p_ - start));
    if (!real) {
      std::uint64_t magnitude = 0;
      const char* digits = start + (negative ? 1 : 0);
      const auto r = std::from_chars(digits, p_, magnitude);
      constexpr std::uint64_t kMinMagnitude = std::uint64_t{1} << 63;  // of INT64_MIN
      if (r.ec == std::errc() && !negative) {
        m.kind = magnitude <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                     ? ValueKind::Integer
                     : ValueKind::Unsigned;
        m.integer = static_cast<std::int64_t>(magnitude);
        h.number(static_cast<double>(magnitude));
        return true;
      }
      if (r.ec == std::errc() && magnitude <= kMinMagnitude) {
        if (magnitude == 0) shape_ = Shape::Other;  // "-0" is the integer 0, which dump writes as 0
        m.kind = ValueKind::Integer;
        m.integer = magnitude == kMinMagnitude ? std::numeric_limits<std::int64_t>::min()
                                               : -static_cast<std::int64_t>(magnitude);
        h.number(static_cast<double>(m.integer));
        return true;
      }
      // Too large for either: a float to Json::parse, which dump writes in its own format.
      shape_ = Shape::Other;
      m.kind = ValueKind::Float;
      return true;
    }
    double d = 0;
    const auto r = std::from_chars(start, p_, d);
    m.kind = ValueKind::Float;
    if (r.ec != std::errc() || r.ptr != p_ || !std::isfinite(d)) {
      shape_ = Shape::Other;  // out of double's range: left to Json::parse and dump
      return true;
    }
    // The token is dump's text for the value only when dump's shortest round-trip form spells it the same.
    std::array<char, 64> buf{};
    const char* e = nlohmann::detail::to_chars(buf.data(), buf.data() + buf.size(), d);
    if (std::string_view(buf.data(), static_cast<std::size_t>(e - buf.data())) != token)
      shape_ = Shape::Other;
    m.real = d;
    h.number(d);
    return true;
  }

  template <typename H>
  bool object(H& h, int depth, bool collect) {
    if (depth > kMaxDepth) return false;
    ++p_;
    h.begin_object();
    const std::size_t base = keys_.size();
    // One bit per key's length and last byte: the keys before are compared with a new one only when its
    // bit was already set, which with the twenty-odd keys of a row is seldom.
    std::uint64_t seen = 0;
    ws();
    if (!eat('}')) {
      for (;;) {
        if (peek() != '"') return false;
        std::string_view key;
        if (!string(key)) return false;
        if (shape_ != Shape::Other) {
          // Json::parse keeps the last value of a repeated key at the first one's place; dump then differs.
          const unsigned last = key.empty() ? 0U : static_cast<unsigned char>(key.back());
          const std::uint64_t bit = std::uint64_t{1} << ((key.size() * 7 + last) & 63U);
          if (keys_.size() - base >= kMaxKeysChecked) {
            shape_ = Shape::Other;
          } else if (seen & bit) {
            for (std::size_t i = base; i < keys_.size(); ++i) {
              if (keys_[i] == key) {
                shape_ = Shape::Other;
                break;
              }
            }
          }
          seen |= bit;
        }
        keys_.push_back(key);
        ws();
        if (!eat(':')) return false;
        ws();
        h.key(key);
        ScannedMember m;
        if (!value(h, depth, false, m)) return false;
        if (collect) {
          m.key = key;
          members_.push_back(m);
        }
        ws();
        if (eat(',')) {
          ws();
          continue;
        }
        if (eat('}')) break;
        return false;
      }
    }
    keys_.resize(base);
    h.end_object();
    return true;
  }

  template <typename H>
  bool array(H& h, int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    h.begin_array();
    ws();
    if (!eat(']')) {
      for (;;) {
        ScannedMember m;
        if (!value(h, depth, false, m)) return false;
        ws();
        if (eat(',')) {
          ws();
          continue;
        }
        if (eat(']')) break;
        return false;
      }
    }
    h.end_array();
    return true;
  }

  const char* p_;
  const char* end_;
  std::vector<ScannedMember>& members_;
  std::vector<std::string_view> keys_;  // keys of the objects being read, innermost last
  Shape shape_ = Shape::Dump;
};

}  // namespace

ListPage::ListPage(std::string body) : body_(std::move(body)) {
  if (!scan()) read_whole_document();
}

ListPage::ListPage(const Json& rows) {
  rows_.reserve(rows.size());
  for (const auto& row : rows) {
    PageRow r;
    r.dom = &row;
    r.hash = content_hash(row);
    r.object = row.is_object();
    rows_.push_back(r);
  }
  dom_rows_ = rows_.size();
}

namespace {
constexpr const char* kNoRows = "the list response has no data.rows array";
}

// The fast way: false when the body needs Json::parse (it is not JSON, it nests too deep, or keys that
// locate the rows are repeated or escaped, where only the DOM's rules tell which one counts).
bool ListPage::scan() {
  Scanner s(body_, members_);
  ContentIgnored ignored;
  ScannedMember skipped;
  // The rows' hash events are recorded as the rows are read and hashed four rows at a time, side by side
  // (fnv1a_each): hashing each byte as it was read took about as long as all the rest of the reading.
  constexpr std::size_t kLanes = 4;
  std::string events;
  std::array<std::size_t, kLanes> lane_row{};
  std::array<std::size_t, kLanes> lane_end{};
  std::size_t lanes = 0;
  const auto hash_lanes = [&] {
    std::array<std::string_view, kLanes> streams;
    std::array<std::uint64_t, kLanes> hashes{};
    std::size_t begin = 0;
    for (std::size_t i = 0; i < lanes; ++i) {
      streams[i] = std::string_view(events.data() + begin, lane_end[i] - begin);
      begin = lane_end[i];
    }
    fnv1a_each(std::span(streams.data(), lanes), std::span(hashes.data(), lanes));
    for (std::size_t i = 0; i < lanes; ++i)
      rows_[lane_row[i]].hash = hashes[i];
    lanes = 0;
    events.clear();
  };
  // About one member per 24 bytes of a row's text; growing the list by doubling would copy it each time.
  members_.reserve(body_.size() / 24);
  bool seen_data = false;
  bool seen_rows = false;
  bool seen_headers = false;
  bool rows_found = false;

  // The rows array: each row is read on its own, into the member list or, when dump's text differs from
  // upstream's in content, into a DOM of its own.
  const auto read_rows = [&]() -> bool {
    s.eat('[');
    s.skip_ws();
    if (s.eat(']')) return true;
    for (;;) {
      const char* start = s.pos();
      s.begin_value();
      const std::size_t events_begin = events.size();
      ContentRecorder h{ByteLog(events)};
      const auto first = members_.size();
      ScannedMember m;
      const bool object = s.peek() == '{';
      if (!s.value(h, 1, object, m)) return false;
      const std::string_view text(start, static_cast<std::size_t>(s.pos() - start));
      PageRow row;
      row.object = object;
      if (s.shape() == Scanner::Shape::Other) {
        members_.resize(first);
        events.resize(events_begin);
        try {
          row.dom = &dom_.emplace_back(Json::parse(text));
        } catch (const Json::exception&) {
          return false;  // the whole body's parse reports it, with the position in the body
        }
        row.hash = content_hash(*row.dom);
        ++dom_rows_;
      } else {
        lane_row[lanes] = rows_.size();
        lane_end[lanes] = events.size();
        ++lanes;
        row.first_member = static_cast<std::uint32_t>(first);
        row.member_count = static_cast<std::uint32_t>(members_.size() - first);
        if (s.shape() == Scanner::Shape::Spaced) {
          auto& compact = stripped_.emplace_back();
          append_without_whitespace(text, compact);
          row.text = compact;
          row.spaced = true;
        } else {
          row.text = text;
        }
      }
      rows_.push_back(row);
      if (lanes == kLanes) hash_lanes();
      s.skip_ws();
      if (s.eat(',')) {
        s.skip_ws();
        continue;
      }
      return s.eat(']');
    }
  };

  const auto skip = [&]() { return s.value(ignored, 1, false, skipped); };

  const auto data_member = [&](std::string_view key) -> bool {
    if (key == "rows") {
      if (seen_rows) return false;
      seen_rows = true;
      if (s.peek() != '[') return skip();
      rows_found = true;
      return read_rows();
    }
    if (key == "headers") {
      if (seen_headers) return false;
      seen_headers = true;
      const char* start = s.pos();
      if (!skip()) return false;
      if (skipped.kind == ValueKind::Array)
        headers_text_ = std::string_view(start, static_cast<std::size_t>(s.pos() - start));
      return true;
    }
    return skip();
  };
  const auto top_member = [&](std::string_view key) -> bool {
    if (key != "data") return skip();
    if (seen_data) return false;
    seen_data = true;
    if (s.peek() != '{') return skip();
    return s.members(data_member);
  };

  s.skip_ws();
  if (s.peek() != '{') return false;
  if (!s.members(top_member)) return false;
  s.skip_ws();
  if (!s.at_end()) return false;
  if (!rows_found) throw std::runtime_error(kNoRows);
  if (lanes > 0) hash_lanes();
  return true;
}

void ListPage::read_whole_document() {
  rows_.clear();
  members_.clear();
  dom_.clear();
  stripped_.clear();
  headers_text_ = {};
  const Json& doc = dom_.emplace_back(Json::parse(body_));
  const Json* rows = nullptr;
  const Json* data = nullptr;
  if (auto d = doc.find("data"); d != doc.end() && d->is_object()) {
    data = &*d;
    if (auto r = data->find("rows"); r != data->end() && r->is_array()) rows = &*r;
  }
  if (!rows) throw std::runtime_error(kNoRows);
  if (auto h = data->find("headers"); h != data->end() && h->is_array()) headers_dom_ = &*h;
  rows_.reserve(rows->size());
  for (const auto& row : *rows) {
    PageRow r;
    r.dom = &row;
    r.hash = content_hash(row);
    r.object = row.is_object();
    rows_.push_back(r);
  }
  dom_rows_ = rows_.size();
}

const ScannedMember* ListPage::member(const PageRow& row, std::string_view key) const {
  for (const auto& m : members(row))
    if (m.key == key) return &m;
  return nullptr;
}

std::optional<RecordId> ListPage::record_id(const PageRow& row, const std::string& key) const {
  if (row.dom) {
    if (!row.dom->is_object()) return std::nullopt;
    auto it = row.dom->find(key);
    if (it == row.dom->end()) return std::nullopt;
    return record_id_from_json(*it);
  }
  const ScannedMember* m = member(row, key);
  if (!m) return std::nullopt;
  switch (m->kind) {
    case ValueKind::Integer:
    case ValueKind::Unsigned:
      return RecordId{m->integer};
    case ValueKind::String:
      if (m->value.empty()) return std::nullopt;
      return RecordId{std::string(m->value)};
    default:
      return std::nullopt;
  }
}

std::optional<Json> ListPage::headers() const {
  if (headers_dom_) return *headers_dom_;
  if (headers_text_.empty()) return std::nullopt;
  return Json::parse(headers_text_);
}

std::optional<NestedParts> read_nested_parts(std::string_view body, bool rows_object,
                                             const std::vector<std::string>& keys) {
  std::vector<ScannedMember> members;
  Scanner s(body, members);
  ContentIgnored ignored;
  ScannedMember skipped;
  const auto skip = [&]() { return s.value(ignored, 1, false, skipped); };
  bool seen_data = false;
  bool seen_rows = false;
  bool found = false;
  // The record object: its members are collected; any text dump would write otherwise leaves it to the DOM.
  const auto record = [&]() -> bool {
    if (s.peek() != '{') return skip();
    s.begin_value();
    ContentIgnored h;  // only the nested parts' hash is kept, taken below
    ScannedMember m;
    if (!s.value(h, 1, true, m) || s.shape() != Scanner::Shape::Dump) return false;
    found = true;
    return true;
  };
  const auto data_member = [&](std::string_view key) -> bool {
    if (key != "rows") return skip();
    if (seen_rows) return false;
    seen_rows = true;
    return record();
  };
  const auto top_member = [&](std::string_view key) -> bool {
    if (key != "data") return skip();
    if (seen_data) return false;
    seen_data = true;
    if (!rows_object) return record();
    if (s.peek() != '{') return skip();
    return s.members(data_member);
  };
  s.skip_ws();
  if (s.peek() != '{' || !s.members(top_member)) return std::nullopt;
  s.skip_ws();
  if (!s.at_end() || !found) return std::nullopt;

  NestedParts out;
  ContentHasher h;
  h.begin_object();
  out.text += '{';
  std::vector<std::string_view> done;
  for (const auto& key : keys) {
    if (std::find(done.begin(), done.end(), key) != done.end()) continue;  // as Json's operator[] does
    done.push_back(key);
    for (const char c : key)
      if (!kPlain[static_cast<unsigned char>(c)]) return std::nullopt;  // dump would escape it
    if (done.size() > 1) out.text += ',';
    out.text += '"';
    out.text += key;
    out.text += "\":";
    h.key(key);
    const auto it = std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.key == key; });
    if (it == members.end()) {
      out.text += "null";
      h.null();
    } else if (it->kind == ValueKind::String) {
      out.text += '"';
      out.text += it->value;
      out.text += '"';
      h.string(it->value);
    } else {
      // The value once more, for its events alone: a hash cannot be cut out of the record's.
      std::vector<ScannedMember> unused;
      Scanner again(it->value, unused);
      ScannedMember m;
      if (!again.value(h, 1, false, m)) return std::nullopt;
      out.text += it->value;
    }
  }
  out.text += '}';
  h.end_object();
  out.hash = h.value();
  return out;
}

void append_without_whitespace(std::string_view text, std::string& out) {
  out.reserve(out.size() + text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (is_ws(c)) continue;
    out += c;
    if (c == '"') in_string = true;
  }
}

}  // namespace knosc::replica
