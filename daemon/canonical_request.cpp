#include "daemon/canonical_request.hpp"

#include <charconv>
#include <memory>
#include <stdexcept>

namespace knosc::daemon {
namespace {

using OJson = nlohmann::ordered_json;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// Thrown from the parser's callback to stop at the first level past the limit, before the rest is read.
struct TooDeep {};

HttpResponse invalid_json(std::string_view message) {
  return HttpResponse::knosc_error(400, message, "JSON.Invalid");
}

}  // namespace

std::optional<replica::RecordId> canonical_record_id(schema::IdType type, std::string_view s) {
  if (type == schema::IdType::String) {
    if (s.empty() || s.size() > 64 || s == "." || s == "..") return std::nullopt;
    for (char c : s)
      if (!id_char(c)) return std::nullopt;
    return replica::RecordId{std::string(s)};
  }
  std::string_view digits = s;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (digits.empty() || digits.front() == '0') return std::nullopt;  // also refuses "0" and "-0"
  for (char c : digits)
    if (c < '0' || c > '9') return std::nullopt;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;  // out of int64's range
  return replica::RecordId{v};
}

std::optional<OJson> parse_json_body(std::string_view body) {
  // nlohmann's parser keeps its own stack, but a value nested 100,000 levels deep is still work for every
  // reader after it (and for Knosc): the callback sees each level open and stops the parse past the limit.
  const OJson::parser_callback_t limit = [](int depth, OJson::parse_event_t event, OJson&) {
    if ((event == OJson::parse_event_t::object_start || event == OJson::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth)
      throw TooDeep{};
    return true;
  };
  try {
    OJson v = OJson::parse(body.begin(), body.end(), limit, /*allow_exceptions=*/false);
    if (v.is_discarded()) return std::nullopt;
    return v;
  } catch (const TooDeep&) {
    return std::nullopt;
  }
}

bool is_json_content_type(std::string_view value) {
  const auto semicolon = value.find(';');
  return iequal(trim(value.substr(0, semicolon)), "application/json");
}

std::variant<OJson, HttpResponse> json_body(const HttpRequest& req, bool required) {
  if (req.body.empty()) {
    if (required) return invalid_json("Bad Request Format");
    return OJson();
  }
  const auto type = req.header("content-type");
  if (!type || !is_json_content_type(*type))
    return invalid_json(
        "Bad Request Format: the body must be JSON sent with Content-Type: application/json.");
  auto parsed = parse_json_body(req.body);
  if (!parsed) return invalid_json("Bad Request Format");
  return std::move(*parsed);
}

std::optional<HttpResponse> cross_site_refusal(const HttpRequest& req) {
  const auto refuse = [] {
    return HttpResponse::knosc_error(403, "Requests from web pages of other sites are not accepted.",
                                     "Request.CrossSite");
  };
  if (const auto site = req.header("sec-fetch-site"); site && iequal(trim(*site), "cross-site"))
    return refuse();
  if (const auto origin = req.header("origin")) {
    // "scheme://host[:port]"; "null" (a sandboxed frame, a file) names no site, so it is no loopback tool.
    const std::string_view o = trim(*origin);
    const auto scheme_end = o.find("://");
    if (scheme_end == std::string_view::npos) return refuse();
    const std::string_view scheme = o.substr(0, scheme_end);
    if (!iequal(scheme, "http") && !iequal(scheme, "https")) return refuse();
    const std::string_view authority = o.substr(scheme_end + 3);
    if (authority.find('/') != std::string_view::npos || !is_loopback_host(authority)) return refuse();
  }
  return std::nullopt;
}

std::string upstream_path(const std::vector<std::string>& segments) {
  for (const auto& s : segments)
    // Callers pass segments the HTTP layer validated; one that could still be read as a dot segment or an
    // empty one is a bug here, never something to send.
    if (s.empty() || s == "." || s == "..") throw std::invalid_argument("not a path segment: '" + s + "'");
  return encode_path(segments);
}

}  // namespace knosc::daemon
