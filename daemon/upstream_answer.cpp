#include "daemon/upstream_answer.hpp"

#include <string>

namespace knosc::daemon {

HttpResponse pass_through(sync::HttpResponse& r, std::initializer_list<std::string_view> also) {
  HttpResponse out;
  out.status = static_cast<int>(r.status);
  out.body = std::move(r.body);
  out.set_header("Content-Type", r.header("content-type").value_or("application/json"));
  if (const auto retry = r.header("retry-after")) out.set_header("Retry-After", *retry);
  for (const auto name : also)
    if (const auto v = r.header(name)) out.set_header(name, *v);
  return out;
}

}  // namespace knosc::daemon
