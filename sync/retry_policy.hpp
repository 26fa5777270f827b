#pragma once
// What to do after an upstream call, and how long to wait before trying again. Pure functions, table-tested
// in tests/unit/test_retry_policy.cpp; the puller (and later the pusher) only carry out their answers.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "sync/upstream_session.hpp"

namespace knosc::sync {

enum class Disposition {
  Success,    // 2xx
  NotFound,   // the record does not exist upstream (Knosc answers 400 <Entity>.NotFound)
  Forbidden,  // 403: the account lacks the privilege; retrying will not help until roles change
  Rejected,   // other 4xx: the request itself is wrong; retrying unchanged will not help
  Transient,  // network failure, 5xx, 429, 401/422 after the session's own recovery: retry with backoff
  Paused,     // logins are paused (lockout or refused credentials): wait, do not send
};

std::string_view to_string(Disposition d);

// `not_found_code` is the resource's code for a missing record (e.g. "PurchaseOrderList.NotFound"); when
// empty, any "<Entity>.NotFound" code counts.
Disposition classify(ApiResult::Kind kind, long status, std::string_view code,
                     std::string_view not_found_code);

struct BackoffConfig {
  std::chrono::milliseconds base{1000};       // first retry waits about this long
  std::chrono::milliseconds cap{5 * 60'000};  // never wait longer than this between tries
  double jitter = 0.5;                        // fraction of the delay that is randomised
};

// Delay before try number `attempt` + 1 (attempt >= 1 failed tries so far): capped exponential growth with
// "equal jitter" (delay in [d * (1 - jitter), d]), and never less than the server's Retry-After.
// `unit_random` is a number in [0, 1) supplied by the caller so the function stays pure.
std::chrono::milliseconds backoff_delay(int attempt, double unit_random, const BackoffConfig& config,
                                        std::optional<std::chrono::seconds> retry_after = std::nullopt);

}  // namespace knosc::sync
