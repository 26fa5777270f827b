#include "daemon/http_server.hpp"

#include <arpa/inet.h>
#include <http_parser.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <deque>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_set>

namespace knosc::daemon {

namespace {

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// nullopt when a '%' is not followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// RFC 9110 tchar: what a header name (a token) is made of.
bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
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

// Strict UTF-8 (RFC 3629): overlong forms (e.g. C0 AE for '.'), surrogates and code points past U+10FFFF
// are refused, since a lenient decoder further on could read them as something the checks let through.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80;  // range of the second byte (Unicode Table 3-7)
    unsigned char hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    const auto second = static_cast<unsigned char>(s[i + 1]);
    if (second < lo || second > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < 0x80 || b > 0xbf) return false;
    }
    i += len;
  }
  return true;
}

// Refusals of a request head's bytes; all answered 400 Request.Malformed.
constexpr std::string_view kNotCrlf = "Malformed HTTP request: lines must end in CRLF (bare LF or CR)";
constexpr std::string_view kControlInRequestLine =
    "Malformed HTTP request: control character in the request line";
constexpr std::string_view kFoldedHeader =
    "Malformed HTTP request: header line starting with whitespace (obs-fold)";
constexpr std::string_view kSpaceInHeaderName =
    "Malformed HTTP request: whitespace in a header name or before its colon";
constexpr std::string_view kBadHeaderName = "Malformed HTTP request: invalid character in a header name";
constexpr std::string_view kHeaderWithoutColon = "Malformed HTTP request: header line without a colon";
constexpr std::string_view kControlInHeaderValue =
    "Malformed HTTP request: control character in a header value";
constexpr std::string_view kBadVersion = "Malformed HTTP request: HTTP version must be 1.1 or 1.0";

// Checks the bytes of a request head (request line, header lines, empty line) where http-parser is lenient.
// Debian builds it without HTTP_PARSER_STRICT, and then it takes a bare LF (or CR then anything) for a line
// end, spaces inside and after header names ("Host : x" names "host "), folded header lines, whitespace
// before the first header, tabs and form feeds in the target and DEL in header values. Any other reader of
// the same bytes (a proxy, a log tool) may split them differently, which is how requests are smuggled past
// checks, so these are refused instead. It only looks at bytes, one switch per byte of the head: http-parser
// still does all the parsing, and whatever it refuses on its own is left to it.
class HeadScanner {
 public:
  // Scans the next bytes of the stream until the head ends (done()) or a byte is refused (returns false and
  // error() says why). Bytes after the head are not looked at.
  bool scan(std::string_view data) {
    for (char ch : data) {
      const auto c = static_cast<unsigned char>(ch);
      switch (state_) {
        case State::Start:  // empty lines before a request line are allowed (RFC 9112 §2.2)
          if (c == '\r') {
            state_ = State::StartCR;
          } else if (c == '\n') {
            return fail(kNotCrlf);
          } else if (is_control(c)) {
            return fail(kControlInRequestLine);
          } else {
            state_ = State::RequestLine;
          }
          break;
        case State::StartCR:
          if (c != '\n') return fail(kNotCrlf);
          state_ = State::Start;
          break;
        case State::RequestLine:
          if (c == '\r') {
            state_ = State::LineCR;
          } else if (c == '\n') {
            return fail(kNotCrlf);
          } else if (is_control(c)) {
            return fail(kControlInRequestLine);
          }
          break;
        case State::LineCR:
          if (c != '\n') return fail(kNotCrlf);
          state_ = State::LineStart;
          break;
        case State::LineStart:
          if (c == '\r') {
            state_ = State::EndCR;
          } else if (c == '\n') {
            return fail(kNotCrlf);
          } else if (c == ' ' || c == '\t') {
            return fail(kFoldedHeader);
          } else if (is_tchar(c)) {
            state_ = State::Name;
          } else {
            return fail(kBadHeaderName);
          }
          break;
        case State::Name:
          if (c == ':') {
            state_ = State::Value;
          } else if (c == ' ' || c == '\t') {
            return fail(kSpaceInHeaderName);
          } else if (c == '\r' || c == '\n') {
            return fail(kHeaderWithoutColon);
          } else if (!is_tchar(c)) {
            return fail(kBadHeaderName);
          }
          break;
        case State::Value:
          if (c == '\r') {
            state_ = State::LineCR;
          } else if (c == '\n') {
            return fail(kNotCrlf);
          } else if (c != '\t' && is_control(c)) {
            return fail(kControlInHeaderValue);
          }
          break;
        case State::EndCR:
          if (c != '\n') return fail(kNotCrlf);
          state_ = State::Done;
          return true;
        case State::Done:
          return true;
      }
    }
    return true;
  }
  bool done() const { return state_ == State::Done; }
  std::string_view error() const { return error_; }
  // For the next request, once http-parser has completed this one.
  void reset() { state_ = State::Start; }

 private:
  enum class State : std::uint8_t {
    Start,
    StartCR,
    RequestLine,
    LineCR,
    LineStart,
    Name,
    Value,
    EndCR,
    Done
  };
  bool fail(std::string_view why) {
    error_ = why;
    return false;
  }
  State state_ = State::Start;
  std::string_view error_;
};

// Time arithmetic that saturates: a limit set very large means "never", not a deadline in the past.
std::uint64_t add_ms(std::uint64_t a, std::uint64_t b) {
  return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

bool valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

// IMF-fixdate (RFC 9110 §5.6.7), built by hand because strftime's day and month names follow the locale.
std::string http_date(std::time_t now) {
  static constexpr std::array<const char*, 7> kDays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                kDays[static_cast<std::size_t>(tm.tm_wday)], tm.tm_mday,
                kMonths[static_cast<std::size_t>(tm.tm_mon)], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

// A header that could split the response (CR, LF) or break its framing is dropped rather than sent.
bool header_is_sendable(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= ' ' || c == ':' || c == 0x7f) return false;
  }
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool server_owned_header(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "connection") || iequals(name, "date") ||
         iequals(name, "transfer-encoding") || iequals(name, "x-content-type-options");
}

// The Date header's text, made again only when the second changes (the loop thread answers many requests a
// second; formatting the date for each showed in profiles).
const std::string& current_http_date() {
  thread_local std::time_t formatted_at = -1;
  thread_local std::string text;
  const std::time_t now = std::time(nullptr);
  if (now != formatted_at) {
    text = http_date(now);
    formatted_at = now;
  }
  return text;
}

// The status line and headers; the body goes with them when it is small or not shared, else after them in a
// second buffer (`tail`) so a cached body is never copied.
struct SerializedResponse {
  std::string head;
  std::shared_ptr<const std::string> tail;
};

SerializedResponse serialize_response(HttpResponse& response, bool head, bool close) {
  if (response.status < 200 || response.status > 599) {
    // Interim (1xx) or invented codes would break the client's framing of every later response.
    spdlog::error("loopback handler answered with HTTP status {}; sending 500 instead", response.status);
    response = HttpResponse::knosc_error(500, "Internal server error", "Server.Internal");
  }
  const char* reason = http_status_str(static_cast<http_status>(response.status));
  if (reason == nullptr || reason[0] == '<') reason = "Unknown";
  const std::string& body = response.content();
  SerializedResponse out;
  std::string& h = out.head;
  h.reserve(256 + (response.shared_body ? 0 : body.size()));
  h += "HTTP/1.1 ";
  h += std::to_string(response.status);
  h += ' ';
  h += reason;
  h += "\r\n";
  for (const auto& [name, value] : response.headers) {
    if (server_owned_header(name)) continue;
    if (!header_is_sendable(name, value)) {
      spdlog::warn("loopback response header '{}' dropped: not a valid header line", name);
      continue;
    }
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  h += "Date: ";
  h += current_http_date();
  h += "\r\n";
  // Every answer, the server's own errors included: a browser must never sniff a body into HTML or script.
  h += "X-Content-Type-Options: nosniff\r\n";
  // 204 and 304 carry no body and, per RFC 9110, no Content-Length describing one.
  const bool bodiless_status = response.status == 204 || response.status == 304;
  if (!bodiless_status) {
    h += "Content-Length: ";
    h += std::to_string(body.size());
    h += "\r\n";
  }
  h += close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  // HEAD gets the headers a GET would (including its Content-Length) and no body.
  if (head || bodiless_status) return out;
  if (response.shared_body && body.size() > 4096) {
    out.tail = response.shared_body;
  } else {
    h += body;
  }
  return out;
}

constexpr std::size_t kReadBufferSize = 64 * 1024;
// The request line's method, spaces and version, and each header line's ": " and CRLF, which http-parser does
// not hand to the callbacks; counted so the header limit tracks the bytes actually sent.
constexpr std::size_t kRequestLineOverhead = 16;
constexpr std::size_t kHeaderLineOverhead = 4;

}  // namespace

// ---- request / response helpers -------------------------------------------------------------------------

std::optional<std::string> HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return std::nullopt;
}

std::map<std::string, std::string> HttpRequest::query_params() const {
  std::map<std::string, std::string> out;
  std::string_view rest = query;
  while (!rest.empty()) {
    std::size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string_view raw_name = pair.substr(0, eq);
    std::string_view raw_value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    // A malformed escape is kept literally: a query parameter is data for a route to judge, not framing.
    std::string name = percent_decode(raw_name, true).value_or(std::string(raw_name));
    std::string value = percent_decode(raw_value, true).value_or(std::string(raw_value));
    out.emplace(std::move(name), std::move(value));  // emplace keeps the first value of a repeated name
  }
  return out;
}

void HttpResponse::set_header(std::string_view name, std::string value) {
  std::erase_if(headers, [&](const auto& h) { return iequals(h.first, name); });
  headers.emplace_back(std::string(name), std::move(value));
}

HttpResponse HttpResponse::json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.set_json_content_type();
  return r;
}

HttpResponse HttpResponse::knosc_error(int status, std::string_view message, std::string_view code) {
  nlohmann::ordered_json body;
  body["Message"] = message;
  body["Code"] = code;
  return json(status, body.dump());
}

bool is_loopback_host(std::string_view host_header) {
  std::string_view h = trim_ows(host_header);
  if (h.empty()) return false;
  if (h.front() == '[') {
    std::size_t close = h.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view rest = h.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !valid_port(rest.substr(1)))) return false;
    std::string literal(h.substr(1, close - 1));
    std::array<unsigned char, 16> a{};
    if (inet_pton(AF_INET6, literal.c_str(), a.data()) != 1) return false;
    bool leading_zero = std::all_of(a.begin(), a.begin() + 10, [](unsigned char b) { return b == 0; });
    bool loopback = leading_zero &&
                    std::all_of(a.begin() + 10, a.begin() + 15, [](unsigned char b) { return b == 0; }) &&
                    a[15] == 1;
    bool mapped_v4_loopback = leading_zero && a[10] == 0xff && a[11] == 0xff && a[12] == 127;
    return loopback || mapped_v4_loopback;
  }
  std::string_view name = h;
  std::size_t colon = h.find(':');
  if (colon != std::string_view::npos) {
    // An unbracketed IPv6 literal is not a valid Host; only one ':' (before the port) is.
    if (h.find(':', colon + 1) != std::string_view::npos) return false;
    if (!valid_port(h.substr(colon + 1))) return false;
    name = h.substr(0, colon);
  }
  if (iequals(name, "localhost")) return true;
  // inet_pton takes only the four-part dotted decimal form, so "127.1", octal or hex spellings that some
  // resolvers would still map somewhere are refused.
  std::string literal(name);
  std::array<unsigned char, 4> a{};
  if (inet_pton(AF_INET, literal.c_str(), a.data()) != 1) return false;
  return a[0] == 127;
}

// ---- request target -------------------------------------------------------------------------------------

namespace {

constexpr std::string_view kInvalidPath = "Request.InvalidPath";
constexpr std::string_view kInvalidQuery = "Request.InvalidQuery";

// The percent-decoded byte at s[i] ('%' and two hex digits, which must lie before `end`), advancing i past
// the escape; or the raw byte. nullopt for a malformed escape.
std::optional<unsigned char> next_byte(std::string_view s, std::size_t& i, std::size_t end, bool& encoded) {
  encoded = s[i] == '%';
  if (!encoded) return static_cast<unsigned char>(s[i++]);
  if (end - i < 3) return std::nullopt;
  const int hi = hex_value(s[i + 1]);
  const int lo = hex_value(s[i + 2]);
  if (hi < 0 || lo < 0) return std::nullopt;
  i += 3;
  return static_cast<unsigned char>(hi * 16 + lo);
}

// What encode_path leaves as it is: RFC 3986 unreserved characters, ':' and '@', and the sub-delims no server
// reads specially in a path. ';' (path parameters to Tomcat and Spring) and '+' (a space to form decoders)
// are encoded: %3B and %2B mean the same byte to any server and cannot be misread.
bool kept_in_path(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case ',':
    case '=':
    case ':':
    case '@':
      return true;
    default:
      return false;
  }
}

}  // namespace

std::optional<TargetRefusal> parse_target_path(std::string_view raw_path,
                                               std::vector<std::string>& segments) {
  segments.clear();
  auto refuse = [&](std::string_view message) {
    segments.clear();
    return std::optional<TargetRefusal>(TargetRefusal{kInvalidPath, message});
  };
  if (raw_path.empty() || raw_path.front() != '/') return refuse("Request path must begin with '/'");
  // Only raw '/' separates segments; a final '/' ends the path without adding an empty segment.
  std::size_t pos = 1;
  while (pos < raw_path.size()) {
    std::size_t end = raw_path.find('/', pos);
    if (end == std::string_view::npos) end = raw_path.size();
    if (end == pos) return refuse("Request path has an empty segment ('//')");
    std::string segment;
    segment.reserve(end - pos);
    std::size_t i = pos;
    while (i < end) {
      bool encoded = false;
      const std::optional<unsigned char> c = next_byte(raw_path, i, end, encoded);
      if (!c) return refuse("Request path has a '%' not followed by two hex digits");
      // An encoded NUL or line break would end or split the path wherever it meets a C string or a log line.
      if (is_control(*c)) return refuse("Request path has a control character (raw or percent-encoded)");
      // A separator inside a segment would be one segment here and two to a server that decodes first.
      if (*c == '/' || (*c == '\\' && encoded))
        return refuse("Request path has an encoded '/' or '\\' (%2F, %5C)");
      // Some servers and file APIs take '\\' for '/'.
      if (*c == '\\') return refuse("Request path has a '\\'");
      segment.push_back(static_cast<char>(*c));
    }
    // libcurl and Knosc remove dot segments (RFC 3986 §5.2.4), so the route checked here would not be the
    // resource reached there. Encoded ones count: a server decoding first removes them too.
    if (segment == "." || segment == "..") return refuse("Request path has a '.' or '..' segment");
    if (!valid_utf8(segment)) return refuse("Request path is not valid UTF-8 once percent-decoded");
    segments.push_back(std::move(segment));
    pos = end + 1;
  }
  return std::nullopt;
}

std::optional<TargetRefusal> check_target_query(std::string_view raw_query) {
  std::string decoded;
  decoded.reserve(raw_query.size());
  std::size_t i = 0;
  while (i < raw_query.size()) {
    bool encoded = false;
    const std::optional<unsigned char> c = next_byte(raw_query, i, raw_query.size(), encoded);
    if (!c) return TargetRefusal{kInvalidQuery, "Query string has a '%' not followed by two hex digits"};
    // Encoded control characters are data (a search text may hold a tab); raw ones are not URI syntax.
    if (!encoded && is_control(*c))
      return TargetRefusal{kInvalidQuery, "Query string has a control character"};
    decoded.push_back(static_cast<char>(*c));
  }
  if (!valid_utf8(decoded))
    return TargetRefusal{kInvalidQuery, "Query string is not valid UTF-8 once percent-decoded"};
  return std::nullopt;
}

std::string encode_path(const std::vector<std::string>& segments) {
  if (segments.empty()) return "/";
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  for (const auto& segment : segments) {
    out += '/';
    // Validated segments are never "." or "..", but a caller may pass other values (a business number).
    // Written plainly, libcurl would remove them (RFC 3986 §5.2.4) and reach another resource; encoded, they
    // reach the server as the segment they are.
    const bool dots = segment == "." || segment == "..";
    for (char ch : segment) {
      const auto c = static_cast<unsigned char>(ch);
      if (!dots && kept_in_path(c)) {
        out += ch;
      } else {
        out += '%';
        out += kHex[c >> 4];
        out += kHex[c & 0x0f];
      }
    }
  }
  return out;
}

// ---- server
// -------------------------------------------------------------------------------------------------

struct HttpServer::Impl {
  struct Connection;

  // One request on its way to an answer. Shared by the connection's pipeline and the Responder, so a late
  // answer finds out (conn == nullptr) that its connection is gone instead of touching freed memory.
  struct Exchange {
    Connection* conn = nullptr;
    bool head = false;
    bool keep_alive = true;
    bool answered = false;
    std::optional<HttpResponse> response;
    std::string what;  // "METHOD target", for logs
  };

  // Lives inside the Responder; its destructor notices a request whose every Responder copy was dropped.
  struct ResponderState {
    std::shared_ptr<Exchange> exchange;
    explicit ResponderState(std::shared_ptr<Exchange> e) : exchange(std::move(e)) {}
    ~ResponderState();
    ResponderState(const ResponderState&) = delete;
    ResponderState& operator=(const ResponderState&) = delete;
  };

  // Request: the clock of a request being received (headers, then body; see request_deadline).
  enum class TimerMode { None, Request, Idle, Linger };

  // One accepted TCP connection. Both handles live inside it, so it is freed in the second close callback.
  struct Connection {
    Impl* server;
    uv_tcp_t tcp{};
    uv_timer_t timer{};
    int open_handles = 0;
    http_parser parser{};
    std::string remote_address;
    int remote_port = 0;

    std::string inbuf;  // bytes read but not yet parsed (the pipeline was full)
    HttpRequest current;
    std::string current_authority;  // host of an absolute-form target, checked like Host
    bool in_message = false;        // a request has begun and not yet completed
    bool headers_done = false;      // ... and its headers are complete
    bool last_was_value = false;
    std::size_t header_bytes = 0;
    int parse_error_status = 0;  // set by a callback that refused the request (413, 431, 400, 503)
    // With parse_error_status, when the refusal has words of its own rather than the status's default.
    std::string_view parse_error_message;
    std::string_view parse_error_code;
    HeadScanner head_scan;  // the current request's head, checked before http-parser reads it
    // The current request's clock (uv_now milliseconds): when it started, when its last bytes were read, and
    // how much body has arrived (which earns it time at min_body_rate).
    std::uint64_t request_started = 0;
    std::uint64_t last_read_at = 0;
    std::uint64_t body_received = 0;
    bool pending_continue = false;
    bool completed_keep_alive = true;

    std::deque<std::shared_ptr<Exchange>> pipeline;  // requests received, in arrival order, not yet written
    bool in_process = false;
    bool reading = false;
    bool served_any = false;
    bool counted = false;                // counts toward max_connections
    bool reserve = false;                // holds one of the reserve_connections: one priority request
    bool stop_parsing = false;           // no further request is read from this connection
    bool finish_after_pipeline = false;  // close once the requests already received are answered
    bool peer_closed = false;
    bool shutting_write = false;  // uv_shutdown issued: lingering until EOF or the linger timer
    bool closing = false;         // uv_close issued
    TimerMode timer_mode = TimerMode::None;

    explicit Connection(Impl* s) : server(s) {}

    void start();
    void process_input();
    void dispatch();
    void fail_parse(http_errno err);
    void refuse_request(int status, std::string_view message, std::string_view code);
    void queue_server_error(int status, std::string_view message, std::string_view code);
    void flush();
    // Writes `data`, then `tail` when given (kept alive until the write completes).
    void write_raw(std::string data, std::shared_ptr<const std::string> tail = nullptr);
    void begin_close();
    void close_now();
    void drain_for_shutdown();
    void check_finished();
    void update_reading();
    void update_timer();
    void set_timer(TimerMode mode, std::uint64_t ms);
    std::uint64_t request_deadline() const;
    void start_request_clock();
    void arm_request_timer();
    void on_timeout();

    static void on_alloc(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buf);
    static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
    static void on_handle_closed(uv_handle_t* handle);

    static int on_message_begin(http_parser* p);
    static int on_url(http_parser* p, const char* at, std::size_t len);
    static int on_header_field(http_parser* p, const char* at, std::size_t len);
    static int on_header_value(http_parser* p, const char* at, std::size_t len);
    static int on_headers_complete(http_parser* p);
    static int on_body(http_parser* p, const char* at, std::size_t len);
    static int on_message_complete(http_parser* p);
    bool count_header_bytes(std::size_t n);
  };

  uv_loop_t* loop;
  Handler handler;
  HttpServerLimits limits;
  PriorityPredicate priority;
  std::vector<uv_tcp_t*> listeners;
  std::unordered_set<Connection*> conns;
  std::size_t counted_connections = 0;
  std::size_t reserve_in_use = 0;
  std::size_t open_handles = 0;  // every handle of this server whose close callback has not run
  int bound_port = 0;
  std::vector<char> read_buffer = std::vector<char>(kReadBufferSize);

  bool shutting_down = false;
  uv_timer_t* grace_timer = nullptr;
  bool grace_timer_closing = false;
  std::vector<std::function<void()>> done_callbacks;
  bool running_done = false;
  bool owner_gone = false;

  Impl(uv_loop_t* l, Handler h, HttpServerLimits lim, PriorityPredicate p)
      : loop(l), handler(std::move(h)), limits(lim), priority(std::move(p)) {
    // With no room for even one request, a connection would never be read.
    limits.max_pipelined = std::max<std::size_t>(limits.max_pipelined, 1);
  }

  bool is_priority(const HttpRequest& request) const {
    try {
      return priority && priority(request);
    } catch (const std::exception& e) {
      spdlog::error("loopback priority predicate threw for {} {}: {}", request.method, request.target,
                    e.what());
      return false;
    }
  }

  static const http_parser_settings& parser_settings();
  static void deliver(const std::shared_ptr<Exchange>& exchange, HttpResponse response);
  static void on_connection(uv_stream_t* listener, int status);
  void begin_shutdown();
  void cut_all_connections();
  void handle_closed();
  void maybe_finish();
};

// ---- responder --------------------------------------------------------------------------------------------

HttpServer::Impl::ResponderState::~ResponderState() {
  if (exchange->answered || exchange->conn == nullptr) return;
  spdlog::error("loopback request {} was never answered by its handler; sending 500", exchange->what);
  try {
    deliver(exchange, HttpResponse::knosc_error(500, "Internal server error", "Server.Internal"));
  } catch (const std::exception& e) {
    spdlog::error("loopback: could not send 500 for {}: {}", exchange->what, e.what());
  }
}

void HttpServer::Impl::deliver(const std::shared_ptr<Exchange>& exchange, HttpResponse response) {
  if (exchange->answered) {
    spdlog::warn("loopback request {} answered twice; the second answer is dropped", exchange->what);
    return;
  }
  exchange->answered = true;
  auto* conn = exchange->conn;
  if (conn == nullptr) return;  // the client went away while the handler was working
  exchange->response = std::move(response);
  conn->flush();
}

// ---- parser callbacks -------------------------------------------------------------------------------------

const http_parser_settings& HttpServer::Impl::parser_settings() {
  static const http_parser_settings settings = [] {
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_message_begin = &Connection::on_message_begin;
    s.on_url = &Connection::on_url;
    s.on_header_field = &Connection::on_header_field;
    s.on_header_value = &Connection::on_header_value;
    s.on_headers_complete = &Connection::on_headers_complete;
    s.on_body = &Connection::on_body;
    s.on_message_complete = &Connection::on_message_complete;
    return s;
  }();
  return settings;
}

bool HttpServer::Impl::Connection::count_header_bytes(std::size_t n) {
  header_bytes += n;
  if (header_bytes <= server->limits.max_header_bytes) return true;
  parse_error_status = 431;
  return false;
}

int HttpServer::Impl::Connection::on_message_begin(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->current = HttpRequest{};
  c->current.remote_address = c->remote_address;
  c->current.remote_port = c->remote_port;
  c->current_authority.clear();
  c->in_message = true;
  c->headers_done = false;
  c->last_was_value = false;
  c->header_bytes = kRequestLineOverhead;
  // A fresh connection is already on the clock from accept; otherwise the request's clock starts now.
  if (c->timer_mode != TimerMode::Request) c->start_request_clock();
  return 0;
}

int HttpServer::Impl::Connection::on_url(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->count_header_bytes(len)) return -1;
  c->current.target.append(at, len);
  return 0;
}

int HttpServer::Impl::Connection::on_header_field(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  std::size_t overhead = 0;
  if (c->last_was_value || c->current.headers.empty()) {
    c->current.headers.emplace_back();
    c->last_was_value = false;
    overhead = kHeaderLineOverhead;
  }
  if (!c->count_header_bytes(len + overhead)) return -1;
  auto& name = c->current.headers.back().first;
  for (std::size_t i = 0; i < len; ++i)
    name.push_back(ascii_lower(at[i]));
  return 0;
}

int HttpServer::Impl::Connection::on_header_value(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->count_header_bytes(len)) return -1;
  c->last_was_value = true;
  c->current.headers.back().second.append(at, len);
  return 0;
}

int HttpServer::Impl::Connection::on_headers_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  auto& req = c->current;
  const auto& limits = c->server->limits;
  c->headers_done = true;
  for (auto& [name, value] : req.headers)
    value = std::string(trim_ows(value));
  req.method = http_method_str(static_cast<http_method>(p->method));
  // http-parser takes any digit for either part (HTTP/2.0, HTTP/1.7) and a request line without a version
  // as HTTP/0.9; only the two versions this server speaks are read on.
  if (p->http_major != 1 || p->http_minor > 1) {
    c->parse_error_status = 400;
    c->parse_error_message = kBadVersion;
    c->parse_error_code = "Request.Malformed";
    return -1;
  }

  if (req.target == "*") {
    req.path = "*";  // OPTIONS * names the server, not a resource
  } else {
    http_parser_url url;
    http_parser_url_init(&url);
    if (http_parser_parse_url(req.target.data(), req.target.size(),
                              static_cast<http_method>(p->method) == HTTP_CONNECT, &url) != 0) {
      c->parse_error_status = 400;
      return -1;
    }
    auto field = [&](http_parser_url_fields f) -> std::string_view {
      if (!(url.field_set & (1U << f))) return {};
      return std::string_view(req.target).substr(url.field_data[f].off, url.field_data[f].len);
    };
    // A CONNECT target names only host and port; any other request has a path, "/" when none is given.
    std::string_view raw_path = field(UF_PATH);
    if (raw_path.empty() && static_cast<http_method>(p->method) != HTTP_CONNECT) raw_path = "/";
    std::optional<TargetRefusal> refusal;
    if (!raw_path.empty()) refusal = parse_target_path(raw_path, req.segments);
    if (!refusal) refusal = check_target_query(field(UF_QUERY));
    if (refusal) {
      c->parse_error_status = 400;
      c->parse_error_message = refusal->message;
      c->parse_error_code = refusal->code;
      return -1;
    }
    // Well formed by now: parse_target_path accepted every escape.
    req.path = percent_decode(raw_path, false).value_or(std::string());
    req.query = std::string(field(UF_QUERY));
    if (url.field_set & (1U << UF_HOST)) {
      // parse_url strips the brackets of an IPv6 literal; they are put back so it reads like a Host value.
      std::string host(field(UF_HOST));
      c->current_authority = host.find(':') != std::string::npos ? "[" + host + "]" : host;
      if (url.field_set & (1U << UF_PORT)) c->current_authority += ":" + std::string(field(UF_PORT));
    }
  }

  // Decided before the body is read, so a refused request costs the reserve nothing more.
  if (c->reserve && !c->server->is_priority(req)) {
    c->parse_error_status = 503;
    c->parse_error_message = "Too many connections to knosc-syncd";
    c->parse_error_code = "Server.Busy";
    return -1;
  }

  // Decided from Content-Length before any of the body is read, so an oversized upload is refused at once.
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > limits.max_body_bytes) {
    c->parse_error_status = 413;
    return -1;
  }
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > 0) req.body.reserve(p->content_length);

  // A client that asked to wait (curl does for large uploads) is told to go ahead, but only once every
  // earlier response on the connection is out: a 100 between them would be taken for one of their answers.
  auto expect = req.header("expect");
  if (expect && iequals(*expect, "100-continue") && p->http_major == 1 && p->http_minor >= 1) {
    if (c->pipeline.empty()) {
      c->write_raw("HTTP/1.1 100 Continue\r\n\r\n");
    } else {
      c->pending_continue = true;
    }
  }
  // The request's clock goes on through the body (request_deadline).
  return 0;
}

int HttpServer::Impl::Connection::on_body(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  // Chunked bodies announce no length, so their limit can only be enforced as they arrive.
  if (c->current.body.size() + len > c->server->limits.max_body_bytes) {
    c->parse_error_status = 413;
    return -1;
  }
  c->current.body.append(at, len);
  c->body_received += len;
  return 0;
}

int HttpServer::Impl::Connection::on_message_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->in_message = false;
  c->headers_done = false;
  c->pending_continue = false;
  c->served_any = true;
  c->head_scan.reset();
  // The next request gets its own clock from its first byte.
  if (c->timer_mode != TimerMode::None) {
    uv_timer_stop(&c->timer);
    c->timer_mode = TimerMode::None;
  }
  // An upgrade (or CONNECT) request switches protocols after its headers; the server speaks none but
  // HTTP/1.1, so it answers and closes instead of reading the other protocol as HTTP. A reserve connection
  // carries one request, so that it is back in the reserve as soon as it is answered.
  c->completed_keep_alive = http_should_keep_alive(p) != 0 && p->upgrade == 0 && !c->reserve;
  if (!c->completed_keep_alive || c->finish_after_pipeline) c->stop_parsing = true;
  // Pausing hands control back to process_input, which dispatches this request before parsing the next
  // pipelined one; the handler thus never runs inside http_parser_execute.
  http_parser_pause(p, 1);
  return 0;
}

// ---- connection -------------------------------------------------------------------------------------------

void HttpServer::Impl::Connection::start() {
  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = this;
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&tcp, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    char ip[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
      uv_ip6_name(a, ip, sizeof ip);
      remote_port = ntohs(a->sin6_port);
    } else {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
      uv_ip4_name(a, ip, sizeof ip);
      remote_port = ntohs(a->sin_port);
    }
    remote_address = ip;
  }
  // Small request/response exchanges: Nagle's delay would only add latency.
  uv_tcp_nodelay(&tcp, 1);
  start_request_clock();
  update_reading();
}

void HttpServer::Impl::Connection::on_alloc(uv_handle_t* handle, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(handle->data);
  // One buffer for the whole server: the loop thread reads one connection at a time and on_read consumes
  // the bytes before the next allocation.
  buf->base = c->server->read_buffer.data();
  buf->len = c->server->read_buffer.size();
}

void HttpServer::Impl::Connection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  if (c->closing) return;
  if (nread > 0) {
    if (c->shutting_write || c->stop_parsing) return;  // draining before close: input is discarded
    c->last_read_at = uv_now(c->server->loop);
    c->inbuf.append(buf->base, static_cast<std::size_t>(nread));
    c->process_input();
    return;
  }
  if (nread == 0) return;  // EAGAIN
  if (nread != UV_EOF || c->shutting_write) {
    c->close_now();
    return;
  }
  // The client half-closed. Requests it already sent are still answered (a client may send its request and
  // shut down its side); a request it had only partly sent can never complete.
  c->peer_closed = true;
  c->stop_parsing = true;
  c->in_message = false;
  c->headers_done = false;
  c->finish_after_pipeline = true;
  c->update_reading();
  c->check_finished();
}

void HttpServer::Impl::Connection::process_input() {
  // flush() may call back in here from a handler that answered synchronously; the outer loop carries on.
  if (in_process) return;
  in_process = true;
  std::size_t offset = 0;
  const auto& settings = parser_settings();
  while (!closing && !stop_parsing && offset < inbuf.size() &&
         pipeline.size() < server->limits.max_pipelined) {
    // The scanner runs just ahead of http-parser over the current request's head only: http-parser consumes
    // every byte given unless it pauses at a message's end (after the head) or fails, so no byte is scanned
    // twice and none of a body is scanned at all.
    if (!head_scan.done() &&
        !head_scan.scan(std::string_view(inbuf.data() + offset, inbuf.size() - offset))) {
      refuse_request(400, head_scan.error(), "Request.Malformed");
      break;
    }
    std::size_t n = http_parser_execute(&parser, &settings, inbuf.data() + offset, inbuf.size() - offset);
    offset += n;
    http_errno err = HTTP_PARSER_ERRNO(&parser);
    if (err == HPE_PAUSED) {
      http_parser_pause(&parser, 0);
      dispatch();
      continue;
    }
    if (err != HPE_OK) {
      fail_parse(err);
      break;
    }
  }
  if (!closing) inbuf.erase(0, std::min(offset, inbuf.size()));
  if (stop_parsing) inbuf.clear();
  // A large upload leaves a large buffer behind; an idle keep-alive connection should not keep it.
  if (inbuf.empty() && inbuf.capacity() > kReadBufferSize * 4) std::string().swap(inbuf);
  in_process = false;
  if (closing) return;
  update_reading();
  update_timer();
  check_finished();
}

void HttpServer::Impl::Connection::dispatch() {
  HttpRequest request = std::move(current);
  current = HttpRequest{};
  auto exchange = std::make_shared<Exchange>();
  exchange->conn = this;
  exchange->head = request.method == "HEAD";
  exchange->keep_alive = completed_keep_alive;
  exchange->what = request.method + " " + request.target;
  pipeline.push_back(exchange);

  if (server->limits.require_loopback_host) {
    std::optional<std::string> host;
    std::size_t host_count = 0;
    for (const auto& [name, value] : request.headers) {
      if (name == "host" && host_count++ == 0) host = value;
    }
    bool ok = host_count == 1 && is_loopback_host(*host) &&
              (current_authority.empty() || is_loopback_host(current_authority));
    if (!ok) {
      if (host_count == 1) {
        spdlog::warn("loopback request {} from {} refused: Host '{}' is not a loopback name", exchange->what,
                     request.remote_address, *host);
      } else {
        spdlog::warn("loopback request {} from {} refused: {} Host headers", exchange->what,
                     request.remote_address, host_count);
      }
      deliver(exchange, HttpResponse::knosc_error(403, "Host header must name a loopback address",
                                                  "Request.ForbiddenHost"));
      return;
    }
  }

  auto state = std::make_shared<ResponderState>(exchange);
  try {
    server->handler(request,
                    [state](HttpResponse response) { deliver(state->exchange, std::move(response)); });
  } catch (const std::exception& e) {
    spdlog::error("loopback handler for {} threw: {}", exchange->what, e.what());
    // Unwinding may already have answered 500 through the dropped Responder.
    if (!exchange->answered) {
      deliver(exchange, HttpResponse::knosc_error(500, "Internal server error", "Server.Internal"));
    }
  }
}

void HttpServer::Impl::Connection::fail_parse(http_errno err) {
  const int status = parse_error_status != 0 ? parse_error_status : (err == HPE_HEADER_OVERFLOW ? 431 : 400);
  if (!parse_error_message.empty()) {
    refuse_request(status, parse_error_message, parse_error_code);
    return;
  }
  switch (status) {
    case 413:
      refuse_request(
          413, "Request body is larger than " + std::to_string(server->limits.max_body_bytes) + " bytes",
          "Request.TooLarge");
      break;
    case 431:
      refuse_request(
          431,
          "Request headers are larger than " + std::to_string(server->limits.max_header_bytes) + " bytes",
          "Request.HeadersTooLarge");
      break;
    default:
      spdlog::debug("loopback client {}:{}: malformed request ({})", remote_address, remote_port,
                    http_errno_description(err));
      refuse_request(400, "Malformed HTTP request", "Request.Malformed");
      break;
  }
}

void HttpServer::Impl::Connection::refuse_request(int status, std::string_view message,
                                                  std::string_view code) {
  spdlog::debug("loopback client {}:{}: request refused with {}: {}", remote_address, remote_port, status,
                message);
  stop_parsing = true;
  in_message = false;
  headers_done = false;
  pending_continue = false;
  // The parser cannot resynchronise after an error, so the connection closes after this answer.
  queue_server_error(status, message, code);
}

void HttpServer::Impl::Connection::queue_server_error(int status, std::string_view message,
                                                      std::string_view code) {
  // Appended behind any request still being worked on, so earlier answers keep their order; the connection
  // closes after it.
  auto exchange = std::make_shared<Exchange>();
  exchange->conn = this;
  exchange->keep_alive = false;
  exchange->what = "(" + std::to_string(status) + ")";
  pipeline.push_back(exchange);
  deliver(exchange, HttpResponse::knosc_error(status, message, code));
}

void HttpServer::Impl::Connection::flush() {
  if (closing || shutting_write) return;
  while (!pipeline.empty() && pipeline.front()->answered) {
    std::shared_ptr<Exchange> exchange = std::move(pipeline.front());
    pipeline.pop_front();
    exchange->conn = nullptr;
    // The last answer before a planned close says so; an earlier one must not, or the client would drop
    // the answers that follow it.
    bool close =
        !exchange->keep_alive || (finish_after_pipeline && pipeline.empty() && !(in_message && headers_done));
    auto serialized = serialize_response(*exchange->response, exchange->head, close);
    write_raw(std::move(serialized.head), std::move(serialized.tail));
    if (close) {
      begin_close();
      return;
    }
  }
  if (pipeline.empty() && pending_continue && in_message && headers_done) {
    pending_continue = false;
    // The client may have waited for this before sending its body, while the earlier requests were ours to
    // answer: its clock starts again now (the timer, armed for an earlier deadline, moves on when it fires).
    request_started = last_read_at = uv_now(server->loop);
    write_raw("HTTP/1.1 100 Continue\r\n\r\n");
  }
  if (in_process) return;  // process_input finishes the bookkeeping
  // Room in the pipeline again: parse what was held back and read more.
  if (!inbuf.empty()) {
    process_input();
    return;
  }
  update_reading();
  update_timer();
  check_finished();
}

void HttpServer::Impl::Connection::write_raw(std::string data, std::shared_ptr<const std::string> tail) {
  struct WriteRequest {
    uv_write_t req;
    std::string data;
    std::shared_ptr<const std::string> tail;
  };
  auto* w = new WriteRequest{{}, std::move(data), std::move(tail)};
  w->req.data = this;
  uv_buf_t bufs[2];
  unsigned n = 0;
  bufs[n++] = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  // libuv only reads the buffers it is given; the cast drops the const its signature lacks.
  if (w->tail && !w->tail->empty())
    bufs[n++] = uv_buf_init(const_cast<char*>(w->tail->data()), static_cast<unsigned>(w->tail->size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), bufs, n, [](uv_write_t* req, int status) {
    // Runs before the handle's close callback even when the write is cancelled, so the connection is alive.
    auto* conn = static_cast<Connection*>(req->data);
    delete reinterpret_cast<WriteRequest*>(req);
    if (status < 0 && !conn->closing) {
      spdlog::debug("loopback client {}:{}: write failed: {}", conn->remote_address, conn->remote_port,
                    uv_strerror(status));
      conn->close_now();
    }
  });
  if (rc != 0) {
    delete w;
    close_now();
  }
}

void HttpServer::Impl::Connection::begin_close() {
  if (closing || shutting_write) return;
  shutting_write = true;
  stop_parsing = true;
  inbuf.clear();
  if (timer_mode != TimerMode::None) {
    uv_timer_stop(&timer);
    timer_mode = TimerMode::None;
  }
  auto* req = new uv_shutdown_t{};
  req->data = this;
  // uv_shutdown waits for queued writes, so the last response is fully sent before the FIN.
  int rc = uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp), [](uv_shutdown_t* r, int status) {
    auto* conn = static_cast<Connection*>(r->data);
    delete r;
    if (conn->closing) return;
    if (status < 0 || conn->peer_closed) {
      conn->close_now();
      return;
    }
    conn->set_timer(TimerMode::Linger, conn->server->limits.linger_ms);
    conn->update_reading();
  });
  if (rc != 0) {
    delete req;
    close_now();
  }
}

void HttpServer::Impl::Connection::close_now() {
  if (closing) return;
  closing = true;
  for (auto& exchange : pipeline)
    exchange->conn = nullptr;
  pipeline.clear();
  inbuf.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp), &Connection::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), &Connection::on_handle_closed);
}

void HttpServer::Impl::Connection::on_handle_closed(uv_handle_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  Impl* server = c->server;
  if (--c->open_handles == 0) {
    server->conns.erase(c);
    if (c->counted) --server->counted_connections;
    if (c->reserve) --server->reserve_in_use;
    delete c;
  }
  server->handle_closed();
}

void HttpServer::Impl::Connection::drain_for_shutdown() {
  finish_after_pipeline = true;
  if (closing || shutting_write) return;
  if (!(in_message && headers_done)) {
    // Requests not yet begun, or whose headers are still arriving, are not in flight: they are not read.
    stop_parsing = true;
    in_message = false;
    inbuf.clear();
  }
  if (pipeline.empty() && !in_message) {
    close_now();  // an idle keep-alive connection: nothing to say to it
    return;
  }
  update_reading();
  check_finished();
}

void HttpServer::Impl::Connection::check_finished() {
  if (closing || shutting_write) return;
  if (finish_after_pipeline && pipeline.empty() && !(in_message && headers_done)) begin_close();
}

void HttpServer::Impl::Connection::update_reading() {
  if (closing) return;
  // While lingering, input is read only to be discarded; otherwise reading pauses when the pipeline is full
  // so that a client cannot queue more work than max_pipelined.
  bool want =
      !peer_closed && (shutting_write || (!stop_parsing && pipeline.size() < server->limits.max_pipelined));
  if (want && !reading) {
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp), &Connection::on_alloc, &Connection::on_read) ==
        0) {
      reading = true;
    }
  } else if (!want && reading) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
    reading = false;
  }
}

void HttpServer::Impl::Connection::update_timer() {
  if (closing || shutting_write || in_message) return;  // a request in progress keeps its header clock
  if (!pipeline.empty()) {
    // Waiting for handlers: they are ours, and shutdown has its own deadline.
    if (timer_mode != TimerMode::None) {
      uv_timer_stop(&timer);
      timer_mode = TimerMode::None;
    }
    return;
  }
  // Until its first request a connection is on a request's clock; afterwards it is an idle keep-alive.
  if (!served_any) {
    if (timer_mode != TimerMode::Request) start_request_clock();
  } else if (timer_mode != TimerMode::Idle) {
    set_timer(TimerMode::Idle, server->limits.idle_timeout_ms);
  }
}

void HttpServer::Impl::Connection::set_timer(TimerMode mode, std::uint64_t ms) {
  timer_mode = mode;
  uv_timer_start(
      &timer, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->on_timeout(); }, ms, 0);
}

// Headers must be in within header_timeout_ms of the request's start; a body may pause at most
// header_timeout_ms between reads; and the whole request must be in within request_timeout_ms plus the time
// its body has earned at min_body_rate. Each bound only moves later as bytes arrive, never earlier, so a
// timer armed for an earlier deadline is simply armed again when it fires (on_timeout) instead of on every
// read.
std::uint64_t HttpServer::Impl::Connection::request_deadline() const {
  const HttpServerLimits& bounds = server->limits;
  const std::uint64_t earned = bounds.min_body_rate > 0 ? body_received * 1000 / bounds.min_body_rate : 0;
  const std::uint64_t whole = add_ms(add_ms(request_started, bounds.request_timeout_ms), earned);
  const std::uint64_t phase = add_ms(headers_done ? last_read_at : request_started, bounds.header_timeout_ms);
  std::uint64_t deadline = std::min(whole, phase);
  // Earns nothing: priority requests are small, and slow clients must not keep the reserve.
  if (reserve) deadline = std::min(deadline, add_ms(request_started, bounds.reserve_timeout_ms));
  return deadline;
}

void HttpServer::Impl::Connection::start_request_clock() {
  request_started = last_read_at = uv_now(server->loop);
  body_received = 0;
  arm_request_timer();
}

void HttpServer::Impl::Connection::arm_request_timer() {
  const std::uint64_t now = uv_now(server->loop);
  const std::uint64_t deadline = request_deadline();
  set_timer(TimerMode::Request, deadline > now ? deadline - now : 0);
}

void HttpServer::Impl::Connection::on_timeout() {
  TimerMode mode = timer_mode;
  timer_mode = TimerMode::None;
  if (closing) return;
  switch (mode) {
    case TimerMode::Request:
      if (request_deadline() > uv_now(server->loop)) {
        arm_request_timer();  // bytes arrived since it was armed and moved the deadline on
        break;
      }
      spdlog::debug("loopback client {}:{}: request not received in time", remote_address, remote_port);
      stop_parsing = true;
      in_message = false;
      headers_done = false;
      pending_continue = false;
      inbuf.clear();
      queue_server_error(408, "Request was not received in time", "Request.Timeout");
      update_reading();
      break;
    case TimerMode::Idle:
    case TimerMode::Linger:
      close_now();
      break;
    case TimerMode::None:
      break;
  }
}

// ---- server -----------------------------------------------------------------------------------------------

void HttpServer::Impl::on_connection(uv_stream_t* listener, int status) {
  auto* server = static_cast<Impl*>(listener->data);
  if (status < 0) {
    spdlog::warn("loopback server: accept failed: {}", uv_strerror(status));
    return;
  }
  auto* c = new Connection(server);
  uv_tcp_init(server->loop, &c->tcp);
  uv_timer_init(server->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  server->open_handles += 2;
  server->conns.insert(c);
  if (int rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)); rc != 0) {
    spdlog::warn("loopback server: accept failed: {}", uv_strerror(rc));
    c->close_now();
    return;
  }
  if (server->shutting_down) {
    c->close_now();
    return;
  }
  if (server->counted_connections < server->limits.max_connections) {
    c->counted = true;
    ++server->counted_connections;
  } else if (server->priority && server->reserve_in_use < server->limits.reserve_connections) {
    // Its request decides (on_headers_complete) whether it may stay: only a priority one does.
    c->reserve = true;
    ++server->reserve_in_use;
  }
  c->start();
  if (!c->counted && !c->reserve) {
    // Accepted only to be told why: a refused connect would look like the daemon being down.
    spdlog::warn("loopback server: {} connections open; refusing {}:{}",
                 server->counted_connections + server->reserve_in_use, c->remote_address, c->remote_port);
    c->stop_parsing = true;
    c->queue_server_error(503, "Too many connections to knosc-syncd", "Server.Busy");
  }
}

void HttpServer::Impl::begin_shutdown() {
  shutting_down = true;
  for (auto* listener : listeners) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener), [](uv_handle_t* h) {
      auto* server = static_cast<Impl*>(h->data);
      delete reinterpret_cast<uv_tcp_t*>(h);
      server->handle_closed();
    });
  }
  listeners.clear();
  grace_timer = new uv_timer_t{};
  uv_timer_init(loop, grace_timer);
  grace_timer->data = this;
  ++open_handles;
  uv_timer_start(
      grace_timer,
      [](uv_timer_t* t) {
        auto* server = static_cast<Impl*>(t->data);
        if (!server->conns.empty()) {
          spdlog::warn(
              "loopback server: {} connections still busy after the shutdown grace period; closing them",
              server->conns.size());
        }
        server->cut_all_connections();
        server->maybe_finish();
      },
      limits.shutdown_grace_ms, 0);
  std::vector<Connection*> snapshot(conns.begin(), conns.end());
  for (auto* c : snapshot)
    c->drain_for_shutdown();
}

void HttpServer::Impl::cut_all_connections() {
  std::vector<Connection*> snapshot(conns.begin(), conns.end());
  for (auto* c : snapshot)
    c->close_now();
}

void HttpServer::Impl::handle_closed() {
  --open_handles;
  maybe_finish();
}

void HttpServer::Impl::maybe_finish() {
  if (!shutting_down) return;
  if (conns.empty() && grace_timer != nullptr && !grace_timer_closing) {
    grace_timer_closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(grace_timer), [](uv_handle_t* h) {
      auto* server = static_cast<Impl*>(h->data);
      delete reinterpret_cast<uv_timer_t*>(h);
      server->handle_closed();
    });
    return;
  }
  if (open_handles != 0 || running_done) return;
  if (owner_gone) {
    delete this;
    return;
  }
  // `done` may destroy the HttpServer; ~HttpServer sees running_done and leaves the freeing to us.
  running_done = true;
  auto callbacks = std::move(done_callbacks);
  done_callbacks.clear();
  for (auto& cb : callbacks) {
    if (cb) cb();
  }
  running_done = false;
  if (owner_gone) delete this;
}

HttpServer::HttpServer(uv_loop_t* loop, Handler handler, HttpServerLimits limits, PriorityPredicate priority)
    : impl_(new Impl(loop, std::move(handler), limits, std::move(priority))) {}

HttpServer::~HttpServer() {
  Impl* impl = impl_;
  impl->owner_gone = true;
  impl->done_callbacks.clear();
  if (impl->running_done) return;  // maybe_finish frees it once the callbacks return
  if (impl->open_handles == 0) {
    delete impl;
    return;
  }
  if (!impl->shutting_down) impl->begin_shutdown();
  impl->cut_all_connections();
  if (impl->open_handles == 0) {
    delete impl;
    return;
  }
  impl->maybe_finish();  // closes the grace timer when no connection is left; the last close frees impl
}

int HttpServer::listen(const std::string& host, int port) {
  Impl* impl = impl_;
  if (impl->shutting_down || port < 0 || port > 65535) return UV_EINVAL;
  std::string address = host;
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']')
    address = address.substr(1, address.size() - 2);
  sockaddr_storage storage{};
  const bool v6 = address.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(&storage))
              : uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(&storage));
  if (rc != 0) return rc;

  auto* listener = new uv_tcp_t{};
  uv_tcp_init(impl->loop, listener);
  listener->data = impl;
  ++impl->open_handles;
  auto discard = [&](int error) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener), [](uv_handle_t* h) {
      auto* server = static_cast<Impl*>(h->data);
      delete reinterpret_cast<uv_tcp_t*>(h);
      server->handle_closed();
    });
    return error;
  };
  // IPV6ONLY keeps "::1" from also claiming IPv4, so the daemon binds exactly the addresses configured.
  rc = uv_tcp_bind(listener, reinterpret_cast<const sockaddr*>(&storage), v6 ? UV_TCP_IPV6ONLY : 0);
  if (rc != 0) return discard(rc);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener), SOMAXCONN, &Impl::on_connection);
  if (rc != 0) return discard(rc);
  sockaddr_storage bound{};
  int len = sizeof bound;
  rc = uv_tcp_getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
  if (rc != 0) return discard(rc);
  impl->bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                       : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  impl->listeners.push_back(listener);
  return 0;
}

int HttpServer::bound_port() const {
  return impl_->bound_port;
}

void HttpServer::shutdown(std::function<void()> done) {
  Impl* impl = impl_;
  impl->done_callbacks.push_back(std::move(done));
  if (!impl->shutting_down) impl->begin_shutdown();
  impl->maybe_finish();
}

std::size_t HttpServer::connections() const {
  return impl_->conns.size();
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/')
      ++i;
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace knosc::daemon
