#include "daemon/upload_rows.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <utility>

namespace knosc::daemon {
namespace {

using Error = std::optional<std::string>;
using Sink = std::function<void(const UploadRow&)>;

// A workbook's parts are inflated whole; beyond this the file is refused rather than risk a ZIP bomb. Knosc's
// templates are a few MiB at most; this is far above any real upload.
constexpr std::uint64_t kMaxUnpackedBytes = 512ULL << 20;
// Deeper XML than any SpreadsheetML part nests (a rich-text cell is five levels).
constexpr std::size_t kMaxXmlDepth = 64;

// --- Text ------------------------------------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence at s[i], or 0 when the bytes there are not one (overlong forms,
// surrogates and code points above U+10FFFF included): Python's strict decoder refuses the same.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  const unsigned b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b == 0xE0) return cont(i + 1, 0xA0) && cont(i + 2) ? 3 : 0;
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return cont(i + 1) && cont(i + 2) ? 3 : 0;
  if (b == 0xED) return cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : 0;
  if (b == 0xF0) return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (b >= 0xF1 && b <= 0xF3) return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (b == 0xF4) return cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  return 0;
}

// Valid UTF-8 without NUL (which no CSV or XML part of a real upload holds).
bool clean_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = s[i] == '\0' ? 0 : utf8_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

char32_t decode_at(std::string_view s, std::size_t i, std::size_t n) {
  const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  if (n == 1) return b(0);
  if (n == 2) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (n == 3) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Python's str.isspace(): what str.strip() removes. Knosc strips every cell this way, so " WH-02\u00a0" is
// WH-02 to it and must be WH-02 here.
bool python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// `s` without leading and trailing Python blanks; `s` is valid UTF-8.
std::string_view strip(std::string_view s) {
  std::size_t begin = 0;
  while (begin < s.size()) {
    const std::size_t n = utf8_length(s, begin);
    if (n == 0 || !python_space(decode_at(s, begin, n))) break;
    begin += n;
  }
  std::size_t end = begin;  // the end of the last non-blank character
  for (std::size_t i = begin; i < s.size();) {
    const std::size_t n = std::max<std::size_t>(1, utf8_length(s, i));
    if (!python_space(decode_at(s, i, n))) end = i + n;
    i += n;
  }
  return s.substr(begin, end - begin);
}

char lower_ascii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool icontains(std::string_view haystack, std::string_view needle) {
  if (needle.empty() || needle.size() > haystack.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    std::size_t k = 0;
    while (k < needle.size() && lower_ascii(haystack[i + k]) == lower_ascii(needle[k]))
      ++k;
    if (k == needle.size()) return true;
  }
  return false;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower_ascii(a[i]) != lower_ascii(b[i])) return false;
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower_ascii(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// OOXML's ST_Xstring escapes: Excel reads "_x0057_H-02" as "WH-02" (openpyxl does not, another reader may).
std::string decode_xstring(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (i + 7 <= s.size() && s[i] == '_' && (s[i + 1] == 'x' || s[i + 1] == 'X') && s[i + 6] == '_') {
      int v = 0;
      bool hex = true;
      for (std::size_t k = 2; k < 6; ++k) {
        const int d = hex_digit(s[i + k]);
        hex = hex && d >= 0;
        v = v * 16 + std::max(d, 0);
      }
      if (hex && v != 0 && (v < 0xD800 || v > 0xDFFF)) {
        append_utf8(out, static_cast<char32_t>(v));
        i += 7;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

// openpyxl removes "x005F_" from shared strings (its reading of Excel's escaped underscore).
std::string without_x005f(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s.substr(i, 6) == "x005F_") {
      i += 6;
    } else {
      out += s[i++];
    }
  }
  return out;
}

void add_reading(std::vector<std::string>& cell, std::string_view text) {
  const std::string_view t = strip(text);
  if (t.empty() || std::find(cell.begin(), cell.end(), t) != cell.end()) return;
  cell.emplace_back(t);
}

// Every reading of an XLSX text that some reader could make of it.
void add_xlsx_readings(std::vector<std::string>& cell, std::string_view raw) {
  add_reading(cell, raw);
  add_reading(cell, without_x005f(raw));
  add_reading(cell, decode_xstring(raw));
}

bool has_content(const UploadRow& row) {
  return std::any_of(row.cells.begin(), row.cells.end(), [](const auto& c) { return !c.empty(); });
}

// --- CSV -------------------------------------------------------------------------------------------------

// Python's csv.reader (the excel dialect, as Knosc reads uploads) over the text split into lines after each
// '\n', as io.StringIO yields them. Where Python's reader is lenient and another reader could differ (a quote
// inside an unquoted field, text after a closing quote, a quoted field still open at the end), the file is
// refused instead.
class CsvReader {
 public:
  CsvReader(std::string_view text, const Sink& sink) : text_(text), sink_(sink) {}

  Error run() {
    std::size_t pos = 0;
    while (pos < text_.size()) {
      std::size_t end = text_.find('\n', pos);
      end = end == std::string_view::npos ? text_.size() : end + 1;
      for (std::size_t i = pos; i < end; ++i)
        if (auto e = put(text_[i])) return e;
      if (auto e = put_eol()) return e;
      pos = end;
    }
    if (state_ != State::StartRecord) return "a quoted field is not closed at the end of the file";
    if (rows_ == 0) return "the file has no header row";
    return std::nullopt;
  }

 private:
  enum class State { StartRecord, StartField, InField, InQuoted, QuoteInQuoted, EatCrnl };

  Error put(char c) {
    switch (state_) {
      case State::StartRecord:
        if (c == '\n' || c == '\r') {
          state_ = State::EatCrnl;
          return std::nullopt;
        }
        state_ = State::StartField;
        [[fallthrough]];
      case State::StartField:
        if (c == '\n' || c == '\r') {
          save_field();
          state_ = State::EatCrnl;
        } else if (c == '"') {
          state_ = State::InQuoted;
        } else if (c == ',') {
          save_field();
        } else {
          field_ += c;
          state_ = State::InField;
        }
        return std::nullopt;
      case State::InField:
        if (c == '\n' || c == '\r') {
          save_field();
          state_ = State::EatCrnl;
        } else if (c == ',') {
          save_field();
          state_ = State::StartField;
        } else if (c == '"') {
          return at("a quote inside an unquoted field");
        } else {
          field_ += c;
        }
        return std::nullopt;
      case State::InQuoted:
        if (c == '"') {
          state_ = State::QuoteInQuoted;
        } else {
          field_ += c;
        }
        return std::nullopt;
      case State::QuoteInQuoted:
        if (c == '"') {
          field_ += c;
          state_ = State::InQuoted;
        } else if (c == ',') {
          save_field();
          state_ = State::StartField;
        } else if (c == '\n' || c == '\r') {
          save_field();
          state_ = State::EatCrnl;
        } else {
          return at("text after the closing quote of a field");
        }
        return std::nullopt;
      case State::EatCrnl:
        if (c == '\n' || c == '\r') return std::nullopt;
        return at("a line break inside an unquoted field");
    }
    return std::nullopt;
  }

  Error put_eol() {
    switch (state_) {
      case State::StartRecord:
        return end_record();  // an empty line: Python yields [] and Knosc counts it as a row
      case State::StartField:
      case State::InField:
      case State::QuoteInQuoted:
        save_field();
        return end_record();
      case State::InQuoted:
        return std::nullopt;  // the field goes on on the next line
      case State::EatCrnl:
        return end_record();
    }
    return std::nullopt;
  }

  void save_field() {
    row_.cells.emplace_back();
    add_reading(row_.cells.back(), field_);
    field_.clear();
  }

  Error end_record() {
    state_ = State::StartRecord;
    row_.number = ++rows_;
    if (rows_ == 1 && !has_content(row_)) return std::string("the first row is not a header row");
    sink_(row_);
    row_.cells.clear();
    return std::nullopt;
  }

  Error at(std::string_view what) const { return std::string(what) + " in row " + std::to_string(rows_ + 1); }

  std::string_view text_;
  const Sink& sink_;
  State state_ = State::StartRecord;
  std::string field_;
  UploadRow row_;
  std::int64_t rows_ = 0;
};

// --- ZIP -------------------------------------------------------------------------------------------------

std::uint32_t le(std::string_view d, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(d[at + static_cast<std::size_t>(i)]);
  return v;
}

struct ZipEntry {
  std::string name;
  std::uint32_t flags = 0, method = 0, crc = 0, packed = 0, size = 0;
  std::size_t data_at = 0;  // where the entry's packed bytes start
};

// The entries of the central directory. Only what a plain single-disk archive has is accepted: no ZIP64, no
// encryption, no bytes before the first entry, local headers naming the same files, every entry's data
// before the directory.
Error list_zip(std::string_view d, std::vector<ZipEntry>& out) {
  constexpr std::size_t kEocd = 22;
  if (d.size() < kEocd) return "the workbook is not a ZIP archive";
  // The last end-of-directory record, as Python's zipfile finds it (the archive comment may hold anything).
  std::size_t eocd = std::string_view::npos;
  const std::size_t lowest = d.size() > kEocd + 0xFFFF ? d.size() - kEocd - 0xFFFF : 0;
  for (std::size_t p = d.size() - kEocd + 1; p-- > lowest;) {
    if (d.substr(p, 4) == std::string_view("PK\x05\x06", 4)) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::string_view::npos) return "the workbook is not a ZIP archive";
  const std::uint32_t disk = le(d, eocd + 4, 2), cd_disk = le(d, eocd + 6, 2);
  const std::uint32_t here = le(d, eocd + 8, 2), total = le(d, eocd + 10, 2);
  const std::uint32_t cd_size = le(d, eocd + 12, 4), cd_at = le(d, eocd + 16, 4);
  const std::uint32_t comment = le(d, eocd + 20, 2);
  if (eocd + kEocd + comment != d.size()) return "the workbook's ZIP directory is damaged";
  if (disk != 0 || cd_disk != 0 || here != total) return "the workbook spans several ZIP disks";
  if (total == 0xFFFF || cd_size == 0xFFFFFFFF || cd_at == 0xFFFFFFFF ||
      (eocd >= 20 && d.substr(eocd - 20, 4) == std::string_view("PK\x06\x07", 4)))
    return "the workbook is a ZIP64 archive";
  if (static_cast<std::uint64_t>(cd_at) + cd_size != eocd) return "the workbook's ZIP directory is damaged";
  std::uint64_t unpacked = 0;
  std::size_t p = cd_at;
  for (std::uint32_t n = 0; n < total; ++n) {
    if (p + 46 > eocd || d.substr(p, 4) != std::string_view("PK\x01\x02", 4))
      return "the workbook's ZIP directory is damaged";
    ZipEntry e;
    e.flags = le(d, p + 8, 2);
    e.method = le(d, p + 10, 2);
    e.crc = le(d, p + 16, 4);
    e.packed = le(d, p + 20, 4);
    e.size = le(d, p + 24, 4);
    const std::size_t name_len = le(d, p + 28, 2), extra = le(d, p + 30, 2), note = le(d, p + 32, 2);
    const std::uint32_t local = le(d, p + 42, 4);
    if (p + 46 + name_len + extra + note > eocd) return "the workbook's ZIP directory is damaged";
    e.name = std::string(d.substr(p + 46, name_len));
    p += 46 + name_len + extra + note;
    if (e.flags & 0x41) return "the workbook is encrypted";
    if (e.method != 0 && e.method != 8) return "the workbook uses an unknown ZIP compression";
    if (e.packed == 0xFFFFFFFF || e.size == 0xFFFFFFFF || local == 0xFFFFFFFF)
      return "the workbook is a ZIP64 archive";
    if (static_cast<std::uint64_t>(local) + 30 > cd_at ||
        d.substr(local, 4) != std::string_view("PK\x03\x04", 4))
      return "the workbook's ZIP entries are damaged";
    const std::size_t local_name = le(d, local + 26, 2), local_extra = le(d, local + 28, 2);
    if (local_name != name_len || static_cast<std::uint64_t>(local) + 30 + local_name > cd_at ||
        d.substr(local + 30, local_name) != e.name)
      return "the workbook's ZIP entries are damaged";
    e.data_at = local + 30 + local_name + local_extra;
    if (static_cast<std::uint64_t>(e.data_at) + e.packed > cd_at)
      return "the workbook's ZIP entries are damaged";
    unpacked += e.size;
    if (unpacked > kMaxUnpackedBytes) return "the workbook unpacks to more than 512 MiB";
    out.push_back(std::move(e));
  }
  if (p != eocd) return "the workbook's ZIP directory is damaged";
  return std::nullopt;
}

Error unpack(std::string_view d, const ZipEntry& e, std::string& out) {
  const std::string_view packed = d.substr(e.data_at, e.packed);
  if (e.method == 0) {
    if (e.packed != e.size) return "the workbook's ZIP entries are damaged";
    out.assign(packed);
  } else {
    // One byte more than the directory says: a stream that inflates to more than it declares is caught.
    out.assign(static_cast<std::size_t>(e.size) + 1, '\0');
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return "the workbook cannot be unpacked";
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(packed.data()));
    z.avail_in = static_cast<uInt>(packed.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = inflate(&z, Z_FINISH);
    const auto produced = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || produced != e.size) return "the workbook's ZIP entries are damaged";
    out.resize(e.size);
  }
  if (crc32_z(0, reinterpret_cast<const Bytef*>(out.data()), out.size()) != e.crc)
    return "the workbook's ZIP entries are damaged";
  return std::nullopt;
}

// --- XML -------------------------------------------------------------------------------------------------

struct XmlAttr {
  std::string_view name;  // as written, prefix included: "r" is not "x:r", as in namespace-aware readers
  std::string value;      // references decoded
};

// SpreadsheetML's namespace, transitional and strict: the elements openpyxl reads as rows, cells and shared
// strings wherever they are in a part.
constexpr std::string_view kMainNs = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
constexpr std::string_view kStrictNs = "http://purl.oclc.org/ooxml/spreadsheetml/main";

bool main_ns(std::string_view uri) {
  return uri == kMainNs || uri == kStrictNs;
}

std::string_view local_name(std::string_view qname) {
  const auto colon = qname.rfind(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

bool xml_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool name_char(char c) {
  return !xml_space(c) && c != '/' && c != '>' && c != '<' && c != '=' && c != '"' && c != '\'' && c != '&' &&
         c != '?' && c != '!';
}

// Appends `raw` with "\r\n" and lone "\r" read as "\n", as an XML processor reports line ends.
void normalise_line_ends(std::string_view raw, std::string& out) {
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\r') {
      out += raw[i];
    } else {
      out += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    }
  }
}

// Appends `raw` with its character and entity references decoded and its line ends normalised, as an XML
// processor reports text. Only XML's five entities exist (a part with a DTD is refused).
Error decode_text(std::string_view raw, std::string& out) {
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '\r') {
      out += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      continue;
    }
    if (c != '&') {
      out += c;
      continue;
    }
    const auto semi = raw.find(';', i);
    if (semi == std::string_view::npos) return "an unterminated reference";
    const std::string_view ref = raw.substr(i + 1, semi - i - 1);
    i = semi;
    if (ref == "lt") {
      out += '<';
    } else if (ref == "gt") {
      out += '>';
    } else if (ref == "amp") {
      out += '&';
    } else if (ref == "apos") {
      out += '\'';
    } else if (ref == "quot") {
      out += '"';
    } else if (ref.size() >= 2 && ref[0] == '#') {
      const bool hex = ref[1] == 'x';
      const std::string_view digits = ref.substr(hex ? 2 : 1);
      std::uint32_t v = 0;
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, hex ? 16 : 10);
      const bool xml_char = v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) ||
                            (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || !xml_char)
        return "a bad character reference";
      append_utf8(out, static_cast<char32_t>(v));
    } else {
      return "an unknown entity";
    }
  }
  return std::nullopt;
}

// A well-formedness-checking reader of the XML that SpreadsheetML parts are: UTF-8, no DTD, elements,
// attributes, text, CDATA, comments and processing instructions, namespaces. Elements are reported by local
// name and namespace; the handler keeps its own view of nesting. `Handler` has start(name, ns, attrs) ->
// Error, end(name) -> Error and text(std::string_view) -> Error.
template <typename Handler>
Error parse_xml(std::string_view doc, Handler& h) {
  if (doc.substr(0, 3) == "\xEF\xBB\xBF") doc.remove_prefix(3);
  if (!clean_utf8(doc)) return "a part is not UTF-8 text";
  std::size_t p = 0;
  auto fail = [](std::string_view what) { return Error(std::string(what)); };
  auto skip_space = [&] {
    while (p < doc.size() && xml_space(doc[p]))
      ++p;
  };
  auto skip_to = [&](std::string_view end) {
    const auto at = doc.find(end, p);
    if (at == std::string_view::npos) return false;
    p = at + end.size();
    return true;
  };
  if (doc.substr(0, 5) == "<?xml" && doc.size() > 5 && xml_space(doc[5])) {
    const auto end = doc.find("?>");
    if (end == std::string_view::npos) return fail("an unterminated XML declaration");
    const std::string_view decl = doc.substr(0, end);
    const auto enc = decl.find("encoding");
    if (enc != std::string_view::npos) {
      const auto q = decl.find_first_of("\"'", enc);
      const auto q_end = q == std::string_view::npos ? q : decl.find(decl[q], q + 1);
      if (q_end == std::string_view::npos || !(iequals(decl.substr(q + 1, q_end - q - 1), "utf-8") ||
                                               iequals(decl.substr(q + 1, q_end - q - 1), "utf8")))
        return fail("a part is not UTF-8 text");
    }
    p = end + 2;
  }
  std::vector<std::string_view> open;  // qualified names of the open elements
  struct Binding {
    std::string_view prefix;  // empty: the default namespace
    std::string uri;
    std::size_t depth;  // of the element that declares it
  };
  std::vector<Binding> bindings;
  const auto unbind = [&] {
    while (!bindings.empty() && bindings.back().depth > open.size())
      bindings.pop_back();
  };
  bool root_seen = false;
  std::string text;
  std::vector<XmlAttr> attrs;
  while (true) {
    // Text up to the next markup.
    const std::size_t lt = doc.find('<', p);
    const std::string_view raw =
        doc.substr(p, lt == std::string_view::npos ? std::string_view::npos : lt - p);
    if (open.empty()) {
      if (std::any_of(raw.begin(), raw.end(), [](char c) { return !xml_space(c); }))
        return fail("text outside the root element");
    } else if (!raw.empty()) {
      text.clear();
      if (auto e = decode_text(raw, text)) return e;
      if (auto e = h.text(text)) return e;
    }
    if (lt == std::string_view::npos) break;
    p = lt;
    if (doc.substr(p, 4) == "<!--") {
      p += 4;
      if (!skip_to("-->")) return fail("an unterminated comment");
    } else if (doc.substr(p, 9) == "<![CDATA[") {
      if (open.empty()) return fail("CDATA outside the root element");
      const std::size_t from = p + 9;
      if (!skip_to("]]>")) return fail("an unterminated CDATA section");
      text.clear();
      normalise_line_ends(doc.substr(from, p - 3 - from), text);
      if (auto e = h.text(text)) return e;
    } else if (doc.substr(p, 2) == "<?") {
      p += 2;
      if (!skip_to("?>")) return fail("an unterminated processing instruction");
    } else if (doc.substr(p, 2) == "<!") {
      return fail("a DTD or other declaration");
    } else if (doc.substr(p, 2) == "</") {
      p += 2;
      const std::size_t from = p;
      while (p < doc.size() && name_char(doc[p]))
        ++p;
      const std::string_view name = doc.substr(from, p - from);
      skip_space();
      if (p >= doc.size() || doc[p] != '>' || open.empty() || open.back() != name)
        return fail("mismatched tags");
      ++p;
      open.pop_back();
      unbind();
      if (auto e = h.end(local_name(name))) return e;
    } else {
      ++p;
      const std::size_t from = p;
      while (p < doc.size() && name_char(doc[p]))
        ++p;
      const std::string_view name = doc.substr(from, p - from);
      if (name.empty()) return fail("a bad element name");
      if (open.empty() && root_seen) return fail("a second root element");
      attrs.clear();
      std::vector<std::string_view> qnames;
      bool closed = false;
      while (true) {
        const std::size_t before = p;
        skip_space();
        if (p >= doc.size()) return fail("an unterminated tag");
        if (doc[p] == '>') {
          ++p;
          break;
        }
        if (doc.substr(p, 2) == "/>") {
          p += 2;
          closed = true;
          break;
        }
        if (p == before) return fail("attributes without space between them");
        const std::size_t an = p;
        while (p < doc.size() && name_char(doc[p]))
          ++p;
        const std::string_view qname = doc.substr(an, p - an);
        skip_space();
        if (qname.empty() || p >= doc.size() || doc[p] != '=') return fail("a bad attribute");
        ++p;
        skip_space();
        if (p >= doc.size() || (doc[p] != '"' && doc[p] != '\'')) return fail("a bad attribute");
        const char quote = doc[p++];
        const auto vend = doc.find(quote, p);
        if (vend == std::string_view::npos) return fail("an unterminated attribute");
        const std::string_view raw_value = doc.substr(p, vend - p);
        if (raw_value.find('<') != std::string_view::npos) return fail("a bad attribute");
        if (std::find(qnames.begin(), qnames.end(), qname) != qnames.end())
          return fail("a repeated attribute");
        qnames.push_back(qname);
        XmlAttr a{qname, {}};
        if (auto e = decode_text(raw_value, a.value)) return e;
        attrs.push_back(std::move(a));
        p = vend + 1;
      }
      root_seen = true;
      if (open.size() >= kMaxXmlDepth) return fail("elements nested too deeply");
      const std::size_t depth = open.size() + 1;
      for (const auto& a : attrs) {
        if (a.name == "xmlns") bindings.push_back({{}, a.value, depth});
        if (a.name.substr(0, 6) == "xmlns:") bindings.push_back({a.name.substr(6), a.value, depth});
      }
      const auto colon = name.find(':');
      if (colon != std::string_view::npos && name.find(':', colon + 1) != std::string_view::npos)
        return fail("a bad element name");
      const std::string_view prefix =
          colon == std::string_view::npos ? std::string_view() : name.substr(0, colon);
      const Binding* bound = nullptr;
      for (auto b = bindings.rbegin(); b != bindings.rend() && !bound; ++b)
        if (b->prefix == prefix) bound = &*b;
      if (!bound && !prefix.empty()) return fail("an undeclared namespace prefix");
      if (auto e =
              h.start(local_name(name), bound ? std::string_view(bound->uri) : std::string_view(), attrs))
        return e;
      if (closed) {
        unbind();  // the element's own declarations end with it
        if (auto e = h.end(local_name(name))) return e;
      } else {
        open.push_back(name);
      }
    }
  }
  if (!open.empty() || !root_seen) return fail("an incomplete document");
  return std::nullopt;
}

const std::string* attr(const std::vector<XmlAttr>& attrs, std::string_view name) {
  for (const auto& a : attrs)
    if (a.name == name) return &a.value;
  return nullptr;
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Rich text as openpyxl joins it (a shared string's <si> or a cell's <is>): the plain <t> first, then the
// runs' <t> in order; phonetic runs (<rPh>) are not part of the text. More than one plain <t>, or a run with
// more than one, could be read either way and is refused.
class RichText {
 public:
  // Called with the element's depth below the <si>/<is> element (1 for its children) and its parent's name.
  // Markup inside a <t> is refused: readers disagree on whether the text after it belongs to the string.
  Error start(std::string_view name, std::size_t depth, std::string_view parent) {
    if (target_) return std::string("markup inside a string's text");
    if (depth == 1 && name == "t") {
      if (plain_seen_) return std::string("a string with two plain texts");
      plain_seen_ = true;
      target_ = &plain_;
    } else if (depth == 1 && name == "r") {
      runs_.emplace_back();
      run_t_seen_ = false;
    } else if (depth == 2 && name == "t" && parent == "r") {
      if (run_t_seen_) return std::string("a text run with two texts");
      run_t_seen_ = true;
      target_ = &runs_.back();
    }
    return std::nullopt;
  }
  void end() { target_ = nullptr; }
  void text(std::string_view t) {
    if (target_) *target_ += t;
  }
  std::string joined() const {
    std::string out = plain_;
    for (const auto& r : runs_)
      out += r;
    return out;
  }

 private:
  std::string plain_;
  std::vector<std::string> runs_;
  std::string* target_ = nullptr;
  bool plain_seen_ = false;
  bool run_t_seen_ = false;
};

// Finds a part's root element and, for the shared-string table (<sst>), reads its strings.
class PartReader {
 public:
  Error start(std::string_view name, std::string_view ns, const std::vector<XmlAttr>&) {
    const std::string_view parent = path_.empty() ? std::string_view() : path_.back();
    path_.push_back(name);
    if (path_.size() == 1) root_ = std::string(name);
    // openpyxl reads SpreadsheetML rows and strings wherever they are in the part it takes for a sheet or the
    // string table (the workbook's relationships say which): in any other part they are refused, so no part
    // holds rows this check did not read.
    if (main_ns(ns) && root_ != "worksheet" && (name == "sheetData" || name == "row" || name == "c"))
      return std::string("cells outside a worksheet");
    if (main_ns(ns) && root_ != "sst" && name == "si")
      return std::string("a shared string outside the string table");
    if (root_ != "sst") return std::nullopt;
    if (name == "si") {
      if (path_.size() != 2) return std::string("a shared string outside the string table");
      si_ = RichText();
      return std::nullopt;
    }
    if (path_.size() > 2) return si_.start(name, path_.size() - 2, parent);
    return std::nullopt;
  }
  Error end(std::string_view name) {
    if (root_ == "sst") {
      if (name == "si" && path_.size() == 2) strings_.push_back(si_.joined());
      if (path_.size() > 2) si_.end();
    }
    path_.pop_back();
    return std::nullopt;
  }
  Error text(std::string_view t) {
    if (root_ == "sst" && path_.size() > 2) si_.text(t);
    return std::nullopt;
  }

  const std::string& root() const { return root_; }
  std::vector<std::string>& strings() { return strings_; }

 private:
  std::vector<std::string_view> path_;
  std::string root_;
  RichText si_;
  std::vector<std::string> strings_;
};

// Column and row of a cell reference such as "B12" (openpyxl also takes lower case and '$' marks).
bool parse_cell_ref(std::string_view ref, std::int64_t& col, std::int64_t& row) {
  std::size_t i = 0;
  if (i < ref.size() && ref[i] == '$') ++i;
  col = 0;
  const std::size_t letters = i;
  while (i < ref.size() && ((ref[i] >= 'A' && ref[i] <= 'Z') || (ref[i] >= 'a' && ref[i] <= 'z'))) {
    if (i - letters == 3) return false;  // column ZZZ at most, as openpyxl reads references
    col = col * 26 + (lower_ascii(ref[i]) - 'a' + 1);
    ++i;
  }
  if (i == letters) return false;
  if (i < ref.size() && ref[i] == '$') ++i;
  const std::string_view digits = ref.substr(i);
  if (!all_digits(digits)) return false;
  row = std::stoll(std::string(digits));
  return true;
}

// The rows of one worksheet, as openpyxl (read-only, cached values) places them: rows by their `r` number or
// the previous row's plus one, cells by their reference's column or the previous cell's plus one. Rows and
// cells out of order, a cell whose reference names another row, or rows and cells outside <sheetData>, which
// readers place differently, are refused. Its first row must be row 1, the header.
class SheetReader {
 public:
  SheetReader(std::string_view part, const std::vector<std::string>* strings, const Sink& sink)
      : strings_(strings), sink_(sink) {
    row_.sheet = part;
  }

  Error start(std::string_view name, std::string_view ns, const std::vector<XmlAttr>& attrs) {
    const std::string_view parent = path_.empty() ? std::string_view() : path_.back();
    path_.push_back(name);
    const std::size_t depth = path_.size();
    const bool in_data = depth >= 3 && path_[1] == "sheetData";
    // openpyxl reads a SpreadsheetML row or cell at any depth (even one nested in another cell).
    if (main_ns(ns) &&
        ((name == "row" && !(in_data && depth == 3)) || (name == "c" && !(in_data && depth == 4))))
      return std::string("a row or cell outside its place in the sheet data");
    if (!in_data) return std::nullopt;
    if (depth == 3) {
      if (name != "row") return std::string("an unknown element in the sheet data");
      std::int64_t number = last_row_ + 1;
      if (const auto* r = attr(attrs, "r")) {
        if (!all_digits(*r)) return std::string("a bad row number");
        number = std::stoll(*r);
      }
      if (number <= last_row_) return std::string("rows out of order");
      if (last_row_ == 0 && number != 1) return std::string("the first row is not row 1");
      last_row_ = number;
      last_col_ = 0;
      row_.number = number;
      row_.cells.clear();
      return std::nullopt;
    }
    if (depth == 4) {
      if (name != "c") return std::string("an unknown element in a row");
      std::int64_t col = last_col_ + 1;
      if (const auto* r = attr(attrs, "r")) {
        std::int64_t ref_row = 0;
        if (!parse_cell_ref(*r, col, ref_row)) return std::string("a bad cell reference");
        if (ref_row != row_.number) return std::string("a cell outside its row");
      }
      if (col <= last_col_) return std::string("cells out of order");
      last_col_ = col;
      const auto* t = attr(attrs, "t");
      type_ = t ? *t : "n";
      if (type_ != "n" && type_ != "s" && type_ != "str" && type_ != "inlineStr" && type_ != "b" &&
          type_ != "e" && type_ != "d")
        return std::string("an unknown cell type");
      v_.reset();
      is_.reset();
      return std::nullopt;
    }
    if (depth == 5) {
      if (name == "v") {
        if (v_) return std::string("a cell with two values");
        v_.emplace();
      } else if (name == "is") {
        if (is_) return std::string("a cell with two inline strings");
        is_.emplace();
      }
      return std::nullopt;
    }
    if (depth > 5 && path_[4] == "is") return is_->start(name, depth - 5, parent);
    if (depth > 5 && path_[4] == "v") return std::string("markup inside a cell value");
    return std::nullopt;
  }

  Error end(std::string_view) {
    const std::size_t depth = path_.size();
    const bool in_data = depth >= 3 && path_[1] == "sheetData";
    Error e;
    if (in_data && depth == 4) e = finish_cell();
    if (in_data && depth == 3) {
      if (row_.number == 1 && !has_content(row_)) return std::string("the first row is not a header row");
      sink_(row_);
    }
    if (in_data && depth > 5 && path_[4] == "is") is_->end();
    path_.pop_back();
    return e;
  }

  Error text(std::string_view t) {
    const std::size_t depth = path_.size();
    if (depth < 5 || path_[1] != "sheetData") return std::nullopt;
    if (depth == 5 && path_[4] == "v") *v_ += t;
    if (depth > 5 && path_[4] == "is") is_->text(t);
    return std::nullopt;
  }

 private:
  Error finish_cell() {
    std::vector<std::string> cell;
    const std::string v = v_.value_or("");
    if (type_ == "s") {
      if (!v.empty()) {
        if (!all_digits(v)) return std::string("a bad shared string index");
        const auto index = static_cast<std::size_t>(std::stoll(v));
        if (!strings_ || index >= strings_->size()) return std::string("a missing shared string");
        add_xlsx_readings(cell, (*strings_)[index]);
      }
    } else {
      // openpyxl reads <v> (an inline string only when there is no <v>); another reader may prefer <is>.
      add_xlsx_readings(cell, v);
      if (is_) add_xlsx_readings(cell, is_->joined());
    }
    const auto at = static_cast<std::size_t>(last_col_ - 1);
    if (row_.cells.size() <= at) row_.cells.resize(at + 1);
    row_.cells[at] = std::move(cell);
    return std::nullopt;
  }

  const std::vector<std::string>* strings_;
  const Sink& sink_;
  std::vector<std::string_view> path_;
  UploadRow row_;
  std::int64_t last_row_ = 0, last_col_ = 0;
  std::string type_;
  std::optional<std::string> v_;
  std::optional<RichText> is_;
};

// Whether an entry holds XML: it starts (after a UTF-8 byte-order mark and blanks) with '<'. Other text
// encodings are refused, since an XML reader would still read them.
Error looks_like_xml(std::string_view data, bool& xml) {
  xml = false;
  if (data.substr(0, 2) == "\xFE\xFF" || data.substr(0, 2) == "\xFF\xFE" ||
      (data.size() >= 2 && (data[0] == '\0' || data[1] == '\0') &&
       data.substr(0, 4).find('<') != std::string_view::npos))
    return std::string("a part is not UTF-8 text");
  if (data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);
  std::size_t i = 0;
  while (i < data.size() && xml_space(data[i]))
    ++i;
  xml = i < data.size() && data[i] == '<';
  return std::nullopt;
}

}  // namespace

std::optional<std::string> read_csv_upload(std::string_view data, const Sink& sink) {
  if (data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);
  if (!clean_utf8(data)) return "the file is not UTF-8 text";
  // A ZIP directory inside "CSV" text: a reader that looks for one would read another file than this one.
  if (data.find(std::string_view("PK\x05\x06", 4)) != std::string_view::npos)
    return "the file holds a ZIP archive";
  return CsvReader(data, sink).run();
}

std::optional<std::string> read_xlsx_upload(std::string_view data, const Sink& sink) {
  std::vector<ZipEntry> entries;
  if (auto e = list_zip(data, entries)) return e;
  // Every part is read, whatever its name: which part is "the" sheet or string table is the workbook's
  // relationships' say, and a reader that followed them differently must not find rows this check missed.
  std::vector<std::pair<std::string, std::string>> sheets;  // entry name, XML
  std::optional<std::vector<std::string>> strings;
  std::string part;
  for (const auto& entry : entries) {
    if (auto e = unpack(data, entry, part)) return e;
    bool xml = false;
    if (auto e = looks_like_xml(part, xml)) return *e + " (" + entry.name + ")";
    if (!xml) continue;
    PartReader reader;
    if (auto e = parse_xml(part, reader))
      return "the workbook's XML is malformed: " + *e + " (" + entry.name + ")";
    if (reader.root() == "sst") {
      if (strings) return std::string("the workbook has two shared-string tables");
      strings = std::move(reader.strings());
    } else if (reader.root() == "worksheet") {
      sheets.emplace_back(entry.name, std::move(part));
      part.clear();
    }
  }
  if (sheets.empty()) return std::string("the workbook has no worksheet");
  for (const auto& [name, xml] : sheets) {
    SheetReader reader(name, strings ? &*strings : nullptr, sink);
    if (auto e = parse_xml(xml, reader)) return "the worksheet " + name + " cannot be read: " + *e;
  }
  return std::nullopt;
}

namespace {

// Whether `reading` equals a filter value: strings exactly (case folded for exclude filters, so a spelling
// Knosc might match still counts), numbers as numbers, booleans as Knosc's upload reader spells them.
bool matches(const std::string& reading, const nlohmann::json& value, bool fold_case) {
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    return fold_case ? iequals(reading, s) : reading == s;
  }
  if (value.is_number()) {
    double d = 0;
    const auto [end, ec] = std::from_chars(reading.data(), reading.data() + reading.size(), d);
    if (ec != std::errc() || end != reading.data() + reading.size())
      return fold_case;  // unreadable: excluded
    return d == value.get<double>();
  }
  if (value.is_boolean()) {
    std::string l = reading;
    std::transform(l.begin(), l.end(), l.begin(), lower_ascii);
    const bool t = l == "true" || l == "1" || l == "yes" || l == "y";
    const bool f = l == "false" || l == "0" || l == "no" || l == "n";
    return value.get<bool>() ? t : f;
  }
  return false;
}

bool outside(const std::string& reading, const replica::GranularFilter& g) {
  const bool any = std::any_of(g.values.begin(), g.values.end(),
                               [&](const nlohmann::json& v) { return matches(reading, v, !g.include); });
  return g.include ? !any : any;
}

}  // namespace

bool record_within(const std::vector<replica::GranularFilter>& filters, const nlohmann::json& record) {
  for (const auto& g : filters) {
    const auto it = record.find(g.category);
    if (it == record.end() || it->is_null()) continue;
    const bool in = std::find(g.values.begin(), g.values.end(), *it) != g.values.end();
    if (g.include != in) return false;
  }
  return true;
}

std::vector<UploadRowError> upload_rows_outside(std::string_view data, bool xlsx,
                                                const std::vector<replica::GranularFilter>& filters,
                                                const NamedRecords& named) {
  struct Outside {
    std::int64_t row;
    std::string sheet;
    std::string column;
    std::string value;
    bool record;  // the value names a stored record outside the filters
  };
  std::vector<Outside> found;
  std::size_t unlisted = 0, sheets = 0;
  std::string sheet;
  std::vector<std::pair<std::size_t, const replica::GranularFilter*>> checked;  // column, filter
  std::vector<std::pair<std::size_t, const std::string*>> naming;               // column, its key
  std::map<std::pair<std::string, std::string>, bool> named_outside;            // asked already
  std::optional<std::string> odd_heading;
  const auto sink = [&](const UploadRow& row) {
    if (sheets == 0 || row.sheet != sheet) {
      ++sheets;
      sheet = std::string(row.sheet);
      checked.clear();
      naming.clear();
    }
    const auto heads = [&](std::size_t col, std::string_view key) {
      return std::any_of(row.cells[col].begin(), row.cells[col].end(),
                         [&](const std::string& r) { return iequals(r, strip(key)); });
    };
    if (row.number == 1) {  // the header: which columns the filters' categories and the record keys head
      for (std::size_t col = 0; col < row.cells.size(); ++col) {
        for (const auto& g : filters) {
          if (heads(col, g.category)) {
            checked.emplace_back(col, &g);
            continue;
          }
          // "Warehouse Number;Item Number": a file with another separator, which a reader that guesses
          // separators would split into columns this check never saw.
          for (const auto& r : row.cells[col])
            if (icontains(r, strip(g.category)) && !odd_heading)
              odd_heading = "the heading '" + r + "' holds '" + g.category + "' among other text";
        }
        if (named.outside)
          for (const auto& key : named.columns)
            if (heads(col, key)) naming.emplace_back(col, &key);
      }
      return;
    }
    // One error per row, as Knosc lists a bad row once.
    const auto add = [&](Outside o) {
      if (found.size() < kMaxListedRowErrors) {
        found.push_back(std::move(o));
      } else {
        ++unlisted;
      }
    };
    for (const auto& [col, g] : checked) {
      if (col >= row.cells.size()) continue;
      for (const auto& reading : row.cells[col])
        if (outside(reading, *g)) return add({row.number, sheet, g->category, reading, false});
    }
    for (const auto& [col, key] : naming) {
      if (col >= row.cells.size()) continue;
      for (const auto& reading : row.cells[col]) {
        auto [at, fresh] = named_outside.try_emplace({*key, reading}, false);
        if (fresh) at->second = named.outside(*key, reading);
        if (at->second) return add({row.number, sheet, *key, reading, true});
      }
    }
  };
  auto failed = xlsx ? read_xlsx_upload(data, sink) : read_csv_upload(data, sink);
  if (!failed && odd_heading) failed = odd_heading;
  if (failed)
    return {{0, "The file cannot be read (" + *failed +
                    "); knosc-syncd sends a file from a role with granular filters only after checking every "
                    "row, so it was not sent."}};
  std::vector<UploadRowError> errors;
  for (const auto& f : found) {
    // With one sheet the row number says where, as in Knosc's own errors.
    const std::string where = sheets > 1 ? "(worksheet " + f.sheet + ") " : "";
    errors.push_back({f.row, "Not Privileged for this action: " + where + f.column + " '" + f.value +
                                 (f.record ? "' names a record outside the rows your role may change."
                                           : "' is outside the rows your role may change.")});
  }
  if (unlisted)
    errors.push_back({0, std::to_string(unlisted) + " more rows are outside the rows your role may change."});
  return errors;
}

}  // namespace knosc::daemon
