#pragma once
// Knosc's answer handed to a loopback caller as it came, for routes the daemon forwards (changes while the
// link is up, password routes, job files, analytics): the tool sees what it would have seen talking to Knosc.

#include <initializer_list>
#include <string_view>

#include "daemon/http_server.hpp"
#include "sync/http_client.hpp"

namespace knosc::daemon {

// Status and body of `r` (the body is moved out), its Content-Type (application/json when it had none, as
// Knosc's API answers JSON), Retry-After when present, and each header named in `also` that it carries.
HttpResponse pass_through(sync::HttpResponse& r, std::initializer_list<std::string_view> also = {});

}  // namespace knosc::daemon
