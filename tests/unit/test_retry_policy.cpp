#include <catch2/catch.hpp>

#include "sync/retry_policy.hpp"

using namespace knosc::sync;
using Kind = ApiResult::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("classify: what each upstream answer means") {
  struct Case {
    Kind kind;
    long status;
    const char* code;
    const char* not_found_code;
    Disposition expected;
  };
  const Case cases[] = {
      {Kind::Ok, 200, "", "PurchaseOrderList.NotFound", Disposition::Success},
      {Kind::HttpError, 400, "PurchaseOrderList.NotFound", "PurchaseOrderList.NotFound",
       Disposition::NotFound},
      // Another entity's NotFound (e.g. a referenced supplier) is a rejected request, not a missing record.
      {Kind::HttpError, 400, "SupplierMaster.NotFound", "PurchaseOrderList.NotFound", Disposition::Rejected},
      {Kind::HttpError, 404, "PurchaseOrderList.NotFound", "PurchaseOrderList.NotFound",
       Disposition::NotFound},
      {Kind::HttpError, 404, "Route.NotFound", "", Disposition::Rejected},
      {Kind::HttpError, 400, "ItemMaster.NotFound", "", Disposition::NotFound},
      {Kind::HttpError, 400, "JSON.Invalid", "ItemMaster.NotFound", Disposition::Rejected},
      {Kind::HttpError, 403, "User.NotPrivileged", "", Disposition::Forbidden},
      {Kind::HttpError, 401, "Token.Expired", "", Disposition::Transient},
      {Kind::HttpError, 422, "CSRF.Invalid", "", Disposition::Transient},
      {Kind::HttpError, 429, "User.Locked", "", Disposition::Transient},
      {Kind::HttpError, 500, "", "", Disposition::Transient},
      {Kind::HttpError, 502, "", "", Disposition::Transient},
      {Kind::HttpError, 503, "Sync.Offline", "", Disposition::Transient},
      {Kind::HttpError, 409, "", "", Disposition::Rejected},
      {Kind::Transport, 0, "", "", Disposition::Transient},
      {Kind::LockedOut, 0, "", "", Disposition::Paused},
      {Kind::AuthFailed, 401, "User.InvalidCredentials", "", Disposition::Paused},
  };
  for (const auto& c : cases) {
    INFO(c.status << " " << c.code);
    CHECK(classify(c.kind, c.status, c.code, c.not_found_code) == c.expected);
  }
}

TEST_CASE("backoff grows exponentially, is capped, jittered within bounds and honours Retry-After") {
  BackoffConfig cfg{milliseconds(1000), milliseconds(60'000), 0.5};
  struct Case {
    int attempt;
    double random;
    std::optional<seconds> retry_after;
    long long expected_ms;
  };
  const Case cases[] = {
      {1, 0.999999, {}, 999},  // top of the first window (1000 ms * [0.5, 1))
      {1, 0.0, {}, 500},       // bottom of the first window
      {2, 0.0, {}, 1000},      // doubles
      {3, 0.0, {}, 2000},
      {7, 0.0, {}, 30'000},           // 64 s grows past the cap: capped at 60 s, jittered down to half
      {50, 0.0, {}, 30'000},          // huge attempts do not overflow
      {1, 0.0, seconds(20), 20'000},  // Retry-After wins when longer
      {7, 0.999999, seconds(5), 59'999},
      {0, 0.0, {}, 500},  // attempt 0 is treated as the first
  };
  for (const auto& c : cases) {
    INFO("attempt " << c.attempt << " random " << c.random);
    CHECK(backoff_delay(c.attempt, c.random, cfg, c.retry_after).count() == c.expected_ms);
  }
  BackoffConfig no_jitter{milliseconds(100), milliseconds(1000), 0.0};
  CHECK(backoff_delay(3, 0.7, no_jitter).count() == 400);
  CHECK(backoff_delay(30, 0.7, no_jitter).count() == 1000);
}
