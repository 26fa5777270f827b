#pragma once
// The one canonical parse of a loopback request's parts that routes check and then send upstream: record ids,
// JSON bodies, the upstream path, and whether a web page of another site sent it.
//
// What is checked is exactly what is sent: a route checks privileges and granular filters on these parsed
// values, and a change goes to Knosc rebuilt from them (the path from the validated segments, the body
// serialised again from the parsed JSON), never as the raw target or the raw bytes the tool sent. Anything
// that does not parse canonically is refused before any check, so no second reading of the same bytes (by
// libcurl, by Knosc's JSON parser) can see something the checks did not.
//
// Pure functions, no I/O; tested in tests/unit/test_canonical_request.cpp and fuzzed by
// fuzz/fuzz_canonical_request.cpp.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/http_server.hpp"
#include "replica/record_id.hpp"
#include "schema/catalog.hpp"

namespace knosc::daemon {

// A path segment as a record id of the given type, in its one canonical spelling, or nullopt.
// Integer ids: an optional '-' (local creates have negative ids) and decimal digits without a leading zero,
// within int64 ("19"; not "+19", "019", "19 ", " 19", "0x13", "1e1"). String ids (tickets): 1 to 64 of
// [A-Za-z0-9._~-], not "." or "..", so the id needs no escaping anywhere it goes.
std::optional<replica::RecordId> canonical_record_id(schema::IdType type, std::string_view segment);

// JSON bodies nest at most this deep; deeper ones are refused before anything else reads them.
inline constexpr int kMaxJsonDepth = 64;

// Parses a request body as strict JSON (RFC 8259: no NaN, no comments, no trailing commas, valid UTF-8) of at
// most kMaxJsonDepth levels. nullopt when it is not.
std::optional<nlohmann::ordered_json> parse_json_body(std::string_view body);

// Whether a Content-Type value names JSON: application/json, any letter case, parameters allowed.
bool is_json_content_type(std::string_view value);

// The body of a JSON route as the route will check and send it, or Knosc's refusal (400 JSON.Invalid with a
// precise message). An empty body is null when `required` is false (DELETE), refused otherwise. A body must
// come with Content-Type: application/json: a web page can post text/plain across sites without asking, but
// not JSON.
std::variant<nlohmann::ordered_json, HttpResponse> json_body(const HttpRequest& req, bool required);

// A refusal (403 Request.CrossSite) for a request that a web page of another site made the browser send, or
// nullopt. Browsers name the page's origin in Origin on every cross-origin POST and in Sec-Fetch-Site on
// every request; tools send neither or a loopback origin. Checked on every request that can change something,
// logins included (they have no CSRF token to check).
std::optional<HttpResponse> cross_site_refusal(const HttpRequest& req);

// The upstream path of a route, rebuilt from its validated, decoded segments (without the leading "api"):
// {"inventory", "19"} -> "/inventory/19", percent-encoded by encode_path, so no segment can add a separator
// or a dot segment on the way. Throws std::invalid_argument for
// an empty, "." or ".." segment (the HTTP layer refuses such paths before any route runs).
std::string upstream_path(const std::vector<std::string>& segments);

}  // namespace knosc::daemon
