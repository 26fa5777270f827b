#include "daemon/multipart.hpp"

#include <cstddef>
#include <cstdint>

namespace knosc::daemon {
namespace {

// A job upload has one part (two or three from some tools); these bounds keep a hostile body of tiny parts
// or header lines from costing far more memory than its own size.
constexpr std::size_t kMaxParts = 256;
constexpr std::size_t kMaxPartHeaders = 32;
constexpr std::size_t kMaxBoundary = 70;  // RFC 2046 §5.1.1

using Error = std::optional<std::string>;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// RFC 9110 tchar.
bool is_tchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// RFC 2046 bcharsnospace; a space is allowed too, except last.
bool is_bchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '\'':
    case '(':
    case ')':
    case '+':
    case '_':
    case ',':
    case '-':
    case '.':
    case '/':
    case ':':
    case '=':
    case '?':
    case ' ':
      return true;
    default:
      return false;
  }
}

// Control characters other than HTAB are not allowed in header values; bytes >= 0x80 are (UTF-8 file
// names are sent raw by browsers).
bool is_header_value_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7F);
}

void skip_blanks(std::string_view s, std::size_t& i) {
  while (i < s.size() && is_blank(s[i]))
    ++i;
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back()))
    s.remove_suffix(1);
  return s;
}

// A `;`-separated parameter list (RFC 9110 §5.6.6): `name=token` or `name="quoted string"`, names
// case-insensitive (returned lower-cased), empty parameters allowed, no blanks around '='.
struct Param {
  std::string name;
  std::string value;
};

Error parse_token(std::string_view s, std::size_t& i, std::string& out) {
  std::size_t start = i;
  while (i < s.size() && is_tchar(s[i]))
    ++i;
  if (i == start) return "a token was expected at offset " + std::to_string(start);
  out.assign(s.substr(start, i - start));
  return std::nullopt;
}

// A quoted-string starting at s[i] == '"'. A backslash escapes only '"' and '\' and is kept literally
// before anything else: browsers and curl send backslashes in file names unescaped (they percent-encode
// '"' instead), while Python's urllib3 doubles them as RFC 9110's quoted-pair asks.
Error parse_quoted(std::string_view s, std::size_t& i, std::string& out) {
  out.clear();
  for (++i; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      ++i;
      return std::nullopt;
    }
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\')) c = s[++i];
    out.push_back(c);
  }
  return std::string("a quoted string is not closed");
}

Error parse_params(std::string_view s, std::size_t i, std::vector<Param>& params) {
  while (true) {
    skip_blanks(s, i);
    if (i == s.size()) return std::nullopt;
    if (s[i] != ';') return "unexpected '" + std::string(1, s[i]) + "' where ';' was expected";
    ++i;
    skip_blanks(s, i);
    if (i == s.size() || s[i] == ';') continue;  // an empty parameter
    Param p;
    if (auto e = parse_token(s, i, p.name)) return "a parameter name is missing: " + *e;
    p.name = lowered(p.name);
    if (i == s.size() || s[i] != '=') return "parameter " + p.name + " has no '=' right after its name";
    ++i;
    if (i < s.size() && s[i] == '"') {
      if (auto e = parse_quoted(s, i, p.value)) return "parameter " + p.name + ": " + *e;
    } else if (auto e = parse_token(s, i, p.value)) {
      return "parameter " + p.name + " has no value (quote values that are not tokens)";
    }
    for (const Param& q : params) {
      if (q.name == p.name) return "parameter " + p.name + " is given twice";
    }
    params.push_back(std::move(p));
  }
}

Error parse_boundary(std::string_view content_type, std::string& boundary) {
  std::string_view ct = trim_blanks(content_type);
  std::size_t semi = ct.find(';');
  std::string_view media = trim_blanks(ct.substr(0, semi));
  if (!iequals(media, "multipart/form-data")) {
    return "the Content-Type is not multipart/form-data";
  }
  std::vector<Param> params;
  if (semi != std::string_view::npos) {
    if (auto e = parse_params(ct, semi, params)) return "the Content-Type header is malformed: " + *e;
  }
  const Param* b = nullptr;
  for (const Param& p : params) {
    if (p.name == "boundary") b = &p;
  }
  if (b == nullptr) return "the Content-Type has no boundary parameter";
  if (b->value.empty() || b->value.size() > kMaxBoundary) {
    return "the multipart boundary must be 1 to " + std::to_string(kMaxBoundary) + " characters long";
  }
  for (char c : b->value) {
    if (!is_bchar(c)) return "the multipart boundary contains a character RFC 2046 does not allow";
  }
  if (b->value.back() == ' ') return "the multipart boundary ends with a space";
  boundary = b->value;
  return std::nullopt;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 8187 ext-value: charset "'" [ language ] "'" percent-encoded value, decoded to UTF-8. Only UTF-8 and
// ISO-8859-1 are defined there.
Error decode_ext_value(std::string_view v, std::string& out) {
  std::size_t q1 = v.find('\'');
  std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) return std::string("it is not charset'language'value");
  std::string_view charset = v.substr(0, q1);
  bool latin1 = iequals(charset, "iso-8859-1");
  if (!latin1 && !iequals(charset, "utf-8")) return "charset " + std::string(charset) + " is not supported";
  out.clear();
  for (std::size_t i = q2 + 1; i < v.size(); ++i) {
    auto byte = static_cast<unsigned char>(v[i]);
    if (v[i] == '%') {
      int hi = i + 2 < v.size() ? hex_value(v[i + 1]) : -1;
      int lo = hi < 0 ? -1 : hex_value(v[i + 2]);
      if (lo < 0) return std::string("a '%' is not followed by two hex digits");
      byte = static_cast<unsigned char>(hi * 16 + lo);
      i += 2;
    } else if (!is_tchar(v[i]) || v[i] == '\'' || v[i] == '*') {  // RFC 8187 attr-char
      return std::string("a character must be percent-encoded");
    }
    if (latin1 && byte >= 0x80) {
      out.push_back(static_cast<char>(0xC0 | (byte >> 6)));
      out.push_back(static_cast<char>(0x80 | (byte & 0x3F)));
    } else {
      out.push_back(static_cast<char>(byte));
    }
  }
  return std::nullopt;
}

Error apply_content_disposition(std::string_view value, MultipartPart& part) {
  std::size_t semi = value.find(';');
  if (!iequals(trim_blanks(value.substr(0, semi)), "form-data")) {
    return std::string("its Content-Disposition is not form-data");
  }
  std::vector<Param> params;
  if (semi != std::string_view::npos) {
    if (auto e = parse_params(value, semi, params)) return "its Content-Disposition is malformed: " + *e;
  }
  bool has_name = false;
  std::optional<std::string> ext_filename;
  for (Param& p : params) {
    if (p.name == "name") {
      part.name = std::move(p.value);
      has_name = true;
    } else if (p.name == "filename") {
      part.filename = std::move(p.value);
    } else if (p.name == "filename*") {
      std::string decoded;
      if (auto e = decode_ext_value(p.value, decoded)) return "its filename* is malformed: " + *e;
      ext_filename = std::move(decoded);
    }
  }
  if (!has_name) return std::string("its Content-Disposition has no name parameter");
  // RFC 7578 §4.2 tells senders not to use filename*; when both come, filename is the one to keep.
  if (!part.filename && ext_filename) part.filename = std::move(ext_filename);
  return std::nullopt;
}

// Reads the part's header lines from body[i] up to and including the empty line, leaving i at the data.
Error parse_part_headers(std::string_view body, std::size_t& i, MultipartPart& part) {
  bool has_disposition = false;
  bool has_type = false;
  while (true) {
    std::size_t eol = body.find("\r\n", i);
    if (eol == std::string_view::npos) return std::string("its headers do not end with an empty line");
    std::string_view line = body.substr(i, eol - i);
    i = eol + 2;
    if (line.empty()) break;
    // Checked before the line is read, so that a folded header is named as such rather than as incomplete.
    if (is_blank(line.front()) || (i < body.size() && is_blank(body[i]))) {
      return std::string("it has a folded header line, which is not accepted");
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return std::string("it has a header line without ':'");
    std::string_view name = line.substr(0, colon);
    if (name.empty()) return std::string("it has a header line without a name");
    for (char c : name) {
      if (!is_tchar(c)) return "its header name \"" + std::string(name) + "\" is not a token";
    }
    std::string_view value = trim_blanks(line.substr(colon + 1));
    for (char c : value) {
      if (!is_header_value_char(c)) return "its " + std::string(name) + " header has a control character";
    }
    if (part.headers.size() == kMaxPartHeaders) {
      return "it has more than " + std::to_string(kMaxPartHeaders) + " headers";
    }
    std::string lname = lowered(name);
    if (lname == "content-disposition") {
      if (has_disposition) return std::string("it has two Content-Disposition headers");
      has_disposition = true;
      if (auto e = apply_content_disposition(value, part)) return e;
    } else if (lname == "content-type") {
      if (has_type) return std::string("it has two Content-Type headers");
      has_type = true;
      part.content_type.assign(value);
    } else if (lname == "content-transfer-encoding") {
      // RFC 7578 §4.7: senders do not encode; decoding base64 or quoted-printable is not offered.
      if (!iequals(value, "binary") && !iequals(value, "8bit") && !iequals(value, "7bit")) {
        return "its Content-Transfer-Encoding " + std::string(value) + " is not supported";
      }
    }
    part.headers.emplace_back(std::move(lname), std::string(value));
  }
  if (!has_disposition) return std::string("it has no Content-Disposition header");
  return std::nullopt;
}

// What follows "--boundary" at body[i]: the close delimiter ("--"), or transport padding and CRLF before
// a part. Anything else means the boundary appeared inside data or the line is broken.
enum class After { kPart, kClose, kBad };

After after_boundary(std::string_view body, std::size_t& i) {
  if (body.substr(i, 2) == "--") {
    i += 2;
    return After::kClose;
  }
  skip_blanks(body, i);
  if (body.substr(i, 2) != "\r\n") return After::kBad;
  i += 2;
  return After::kPart;
}

}  // namespace

const MultipartPart* MultipartForm::find(std::string_view name) const {
  for (const MultipartPart& p : parts) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

MultipartResult parse_multipart(std::string_view content_type_header, std::string_view body) {
  std::string boundary;
  if (auto e = parse_boundary(content_type_header, boundary)) return MultipartError{std::move(*e)};
  const std::string delimiter = "\r\n--" + boundary;
  const std::string_view dash_boundary = std::string_view(delimiter).substr(2);

  // The first boundary opens the body or a line after the preamble.
  std::size_t i = 0;
  if (body.substr(0, dash_boundary.size()) != dash_boundary) {
    i = body.find(delimiter);
    if (i == std::string_view::npos) {
      return MultipartError{"the body does not contain the boundary given in the Content-Type"};
    }
    i += 2;
  }
  i += dash_boundary.size();
  After next = after_boundary(body, i);
  if (next == After::kClose) return MultipartError{"the multipart body has no parts"};
  if (next == After::kBad) return MultipartError{"the first boundary line is followed by unexpected bytes"};

  MultipartForm form;
  while (next == After::kPart) {
    const std::string which = "part " + std::to_string(form.parts.size() + 1);
    if (form.parts.size() == kMaxParts) {
      return MultipartError{"the multipart body has more than " + std::to_string(kMaxParts) + " parts"};
    }
    MultipartPart part;
    if (auto e = parse_part_headers(body, i, part)) return MultipartError{which + " is malformed: " + *e};
    std::size_t end = body.find(delimiter, i);
    if (end == std::string_view::npos) {
      return MultipartError{"the multipart body ends inside " + which + ", without the closing boundary"};
    }
    part.data = body.substr(i, end - i);
    form.parts.push_back(std::move(part));
    i = end + delimiter.size();
    next = after_boundary(body, i);
  }
  if (next == After::kBad && trim_blanks(body.substr(i)).empty()) {
    return MultipartError{"the multipart body ends after part " + std::to_string(form.parts.size()) +
                          " without the closing boundary"};
  }
  if (next == After::kBad) {
    return MultipartError{"a boundary line after part " + std::to_string(form.parts.size()) +
                          " is followed by unexpected bytes (the boundary must not occur inside a part)"};
  }
  // The close delimiter: transport padding, then the end or CRLF and an epilogue that is ignored.
  skip_blanks(body, i);
  if (i != body.size() && body.substr(i, 2) != "\r\n") {
    return MultipartError{"the closing boundary is followed by unexpected bytes"};
  }
  return form;
}

}  // namespace knosc::daemon
