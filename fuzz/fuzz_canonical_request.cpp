// libFuzzer target: the canonical parse of a change (daemon/canonical_request.hpp) from arbitrary bytes.
//
// The first byte picks what the rest is: a record id of either type, a JSON body with or without its content
// type, an Origin header, or path segments for upstream_path. The properties checked are the ones the
// loopback's checks rely on, so a violation aborts (libFuzzer reports it):
// - an accepted id has one spelling: printing it back gives the input, and it holds no byte that would need
//   escaping in a path;
// - an accepted body is strict JSON within the depth limit, and what is sent (its dump) parses back to the
//   same value, so Knosc reads what was checked; a refused one is a 400 JSON.Invalid;
// - upstream_path never yields a separator, dot segment, query or fragment that the segments did not name.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/canonical_request.hpp"
#include "replica/record_id.hpp"

namespace {

using knosc::daemon::HttpRequest;
using knosc::daemon::HttpResponse;
using OJson = nlohmann::ordered_json;

void require(bool ok) {
  if (!ok) std::abort();
}

int depth_of(const OJson& v) {
  int d = 0;
  if (v.is_structured())
    for (const auto& child : v)
      d = std::max(d, depth_of(child));
  return v.is_structured() ? d + 1 : 0;
}

void check_id(knosc::schema::IdType type, std::string_view text) {
  const auto id = knosc::daemon::canonical_record_id(type, text);
  if (!id) return;
  require(knosc::replica::to_string(*id) == text);
  for (char c : text)
    require((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' ||
            c == '.' || c == '_' || c == '~');
}

void check_body(std::string_view text, bool json_type) {
  HttpRequest req;
  req.method = "POST";
  req.body = std::string(text);
  if (json_type) req.headers.emplace_back("content-type", "application/json");
  const auto parsed = knosc::daemon::json_body(req, true);
  if (const auto* refusal = std::get_if<HttpResponse>(&parsed)) {
    require(refusal->status == 400);
    require(OJson::parse(refusal->body).at("Code") == "JSON.Invalid");
    return;
  }
  require(json_type);
  const OJson& v = std::get<OJson>(parsed);
  require(depth_of(v) <= knosc::daemon::kMaxJsonDepth);
  const auto again = knosc::daemon::parse_json_body(v.dump());
  require(again.has_value() && *again == v);
}

void check_path(std::string_view text) {
  std::vector<std::string> segments;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      segments.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  segments.push_back(cur);
  bool valid = true;
  for (const auto& s : segments)
    valid = valid && !s.empty() && s != "." && s != "..";
  std::string path;
  try {
    path = knosc::daemon::upstream_path(segments);
  } catch (const std::invalid_argument&) {
    require(!valid);
    return;
  }
  require(valid);
  std::size_t slashes = 0;
  for (char c : path) {
    slashes += c == '/';
    require(c != '?' && c != '#' && c != '\\' && static_cast<unsigned char>(c) > 0x20 &&
            static_cast<unsigned char>(c) < 0x7f);
  }
  require(slashes == segments.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      check_id(knosc::schema::IdType::Integer, rest);
      break;
    case 1:
      check_id(knosc::schema::IdType::String, rest);
      break;
    case 2:
      check_body(rest, true);
      break;
    case 3:
      check_body(rest, false);
      break;
    case 4: {
      HttpRequest req;
      req.headers.emplace_back("origin", std::string(rest));
      if (const auto refusal = knosc::daemon::cross_site_refusal(req)) require(refusal->status == 403);
      break;
    }
    default:
      check_path(rest);
  }
  return 0;
}
