// libFuzzer target: parse_multipart on a fuzzed Content-Type header and body.
//
// Input layout: the Content-Type header value, a '\n', then the body (no '\n': the whole input is the
// body under a fixed multipart/form-data Content-Type, so that mutations spend their time in the body).
// Besides never crashing or throwing, a parsed form must keep its promises: every part's data is a view
// inside the body, parts do not overlap and come in body order, and every header name is lower-case.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/multipart.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view content_type = "multipart/form-data; boundary=b";
  std::string_view body = input;
  if (std::size_t nl = input.find('\n'); nl != std::string_view::npos) {
    content_type = input.substr(0, nl);
    body = input.substr(nl + 1);
  }
  const auto result = knosc::daemon::parse_multipart(content_type, body);
  if (!result.ok()) {
    if (result.error().message.empty()) std::abort();  // a refusal always says why
    return 0;
  }
  if (result->parts.empty()) std::abort();  // RFC 2046: a body has at least one part
  const char* previous_end = body.data();
  for (const auto& part : result->parts) {
    if (part.data.data() < previous_end || part.data.data() + part.data.size() > body.data() + body.size()) {
      std::abort();
    }
    previous_end = part.data.data() + part.data.size();
    for (const auto& [name, value] : part.headers) {
      for (char c : name) {
        if (c >= 'A' && c <= 'Z') std::abort();
      }
    }
    if (result->find(part.name) == nullptr) std::abort();
  }
  return 0;
}
