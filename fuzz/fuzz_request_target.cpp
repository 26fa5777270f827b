// libFuzzer target: the canonical parse of request targets (parse_target_path, check_target_query,
// encode_path), checked against a plain reference of the documented rules.
//
// The input is a request target: the path up to the first '?', the query after it. Both are judged by
// the server's functions and by the reference below (written for obviousness, not speed; strict UTF-8 is
// judged by nlohmann::json, a decoder of its own), and the verdicts and segments must agree. An accepted path
// must keep the promises routes rely on: non-empty segments, none "." or "..", no '/', '\' or control
// character, valid UTF-8; encode_path of its segments parses back to the same segments and is a fixed
// point. Independently, the input split at NUL bytes is a list of arbitrary segments for encode_path, whose
// output must be ASCII with exactly one '/' per segment and no dot segment, whatever the segments hold.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/http_server.hpp"

namespace {

using knosc::daemon::check_target_query;
using knosc::daemon::encode_path;
using knosc::daemon::HttpRequest;
using knosc::daemon::parse_target_path;
using knosc::daemon::split_path;

void check(bool ok) {
  if (!ok) std::abort();
}

bool utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

bool control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `s`; nullopt for a malformed escape. `raw_control` is set when a control byte is sent raw.
std::optional<std::string> decode(std::string_view s, bool& raw_control, bool& raw_backslash) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      raw_control = raw_control || control(static_cast<unsigned char>(s[i]));
      raw_backslash = raw_backslash || s[i] == '\\';
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) return std::nullopt;
    out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
    i += 2;
  }
  return out;
}

std::optional<std::vector<std::string>> reference_path(std::string_view raw) {
  if (raw.empty() || raw.front() != '/') return std::nullopt;
  std::vector<std::string_view> parts;
  std::string_view rest = raw.substr(1);
  while (true) {
    const std::size_t slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  if (parts.back().empty()) parts.pop_back();  // one final '/' (or the path "/")
  std::vector<std::string> out;
  for (std::string_view part : parts) {
    bool raw_control = false;
    bool raw_backslash = false;
    std::optional<std::string> segment = decode(part, raw_control, raw_backslash);
    if (part.empty() || !segment || raw_backslash) return std::nullopt;
    for (char c : *segment) {
      if (control(static_cast<unsigned char>(c)) || c == '/' || c == '\\') return std::nullopt;
    }
    if (*segment == "." || *segment == ".." || !utf8(*segment)) return std::nullopt;
    out.push_back(std::move(*segment));
  }
  return out;
}

bool reference_query(std::string_view raw) {
  bool raw_control = false;
  bool raw_backslash = false;
  std::optional<std::string> decoded = decode(raw, raw_control, raw_backslash);
  return decoded && !raw_control && utf8(*decoded);
}

// What encode_path may write: unreserved characters, the sub-delims it keeps, '/', and '%' with two
// upper-case hex digits.
bool encoded_well(const std::string& path) {
  for (std::size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '%') {
      if (i + 2 >= path.size()) return false;
      for (char h : {path[i + 1], path[i + 2]}) {
        if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'))) return false;
      }
      i += 2;
      continue;
    }
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("-._~!$&'()*,=:@/").find(c) == std::string_view::npos) return false;
  }
  return true;
}

// encode_path's promises for any segments: one '/' per segment, none of them a dot segment.
void check_encoded_shape(const std::vector<std::string>& segments, const std::string& path) {
  check(encoded_well(path));
  check(!path.empty() && path.front() == '/');
  if (segments.empty()) {
    check(path == "/");
    return;
  }
  const std::vector<std::string> parts = split_path(path);
  std::size_t slashes = 0;
  for (char c : path)
    slashes += c == '/' ? 1 : 0;
  check(slashes == segments.size());
  for (const auto& part : parts)
    check(part != "." && part != "..");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t question = input.find('?');
  const std::string_view path = input.substr(0, question);
  const std::optional<std::string_view> query =
      question == std::string_view::npos ? std::nullopt : std::optional(input.substr(question + 1));

  std::vector<std::string> segments{"left over"};
  const auto refusal = parse_target_path(path, segments);
  const auto expected = reference_path(path);
  check(refusal.has_value() != expected.has_value());
  if (refusal) {
    check(segments.empty());
    check(refusal->code == "Request.InvalidPath" && !refusal->message.empty());
  } else {
    check(segments == *expected);
    for (const auto& segment : segments) {
      check(!segment.empty() && segment != "." && segment != "..");
      check(segment.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos);
    }
    // Routes split the decoded path; a validated segment holds no '/', so they get the same segments.
    std::string decoded;
    for (const auto& segment : segments)
      decoded += "/" + segment;
    check(split_path(decoded) == segments);
    const std::string encoded = encode_path(segments);
    check_encoded_shape(segments, encoded);
    std::vector<std::string> again;
    check(!parse_target_path(encoded, again));
    check(again == segments);
    check(encode_path(again) == encoded);
  }

  if (query) {
    const auto query_refusal = check_target_query(*query);
    check(query_refusal.has_value() != reference_query(*query));
    if (query_refusal) {
      check(query_refusal->code == "Request.InvalidQuery" && !query_refusal->message.empty());
    } else {
      HttpRequest request;
      request.query = std::string(*query);
      for (const auto& [name, value] : request.query_params())
        check(utf8(name) && utf8(value));
    }
  }

  // Arbitrary segments for encode_path: the input split at NUL bytes.
  std::vector<std::string> arbitrary;
  std::string_view rest = input;
  while (!rest.empty()) {
    const std::size_t nul = rest.find('\0');
    if (nul != 0) arbitrary.emplace_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest = rest.substr(nul + 1);
  }
  const std::string encoded = encode_path(arbitrary);
  check_encoded_shape(arbitrary, encoded);
  std::vector<std::string> back;
  if (!parse_target_path(encoded, back)) check(back == arbitrary);
  return 0;
}
