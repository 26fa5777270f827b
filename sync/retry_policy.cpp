#include "sync/retry_policy.hpp"

#include <algorithm>
#include <cmath>

namespace knosc::sync {

std::string_view to_string(Disposition d) {
  switch (d) {
    case Disposition::Success:
      return "success";
    case Disposition::NotFound:
      return "not-found";
    case Disposition::Forbidden:
      return "forbidden";
    case Disposition::Rejected:
      return "rejected";
    case Disposition::Transient:
      return "transient";
    case Disposition::Paused:
      return "paused";
  }
  return "transient";
}

Disposition classify(ApiResult::Kind kind, long status, std::string_view code,
                     std::string_view not_found_code) {
  switch (kind) {
    case ApiResult::Kind::Ok:
      return Disposition::Success;
    case ApiResult::Kind::Transport:
      return Disposition::Transient;
    case ApiResult::Kind::AuthFailed:
    case ApiResult::Kind::LockedOut:
      return Disposition::Paused;
    case ApiResult::Kind::HttpError:
      break;
  }
  const bool is_not_found_code =
      not_found_code.empty()
          ? code.size() > 9 && code.substr(code.size() - 9) == ".NotFound" && code != "Route.NotFound"
          : code == not_found_code;
  if (status >= 200 && status < 300) return Disposition::Success;
  // Knosc reports a missing record as 400 <Entity>.NotFound; its generic table also mentions 404, so a 404
  // carrying the record's code counts too. A 404 for the route itself does not: the record may well exist.
  if ((status == 400 || status == 404) && is_not_found_code) return Disposition::NotFound;
  if (status == 403) return Disposition::Forbidden;
  if (status == 401 || status == 408 || status == 422 || status == 425 || status == 429)
    return Disposition::Transient;
  if (status >= 500) return Disposition::Transient;
  if (status >= 400) return Disposition::Rejected;
  return Disposition::Transient;  // 1xx/3xx that curl did not follow: unexpected, try again later
}

std::chrono::milliseconds backoff_delay(int attempt, double unit_random, const BackoffConfig& config,
                                        std::optional<std::chrono::seconds> retry_after) {
  const int steps = std::clamp(attempt, 1, 62) - 1;
  const double base = static_cast<double>(config.base.count());
  const double cap = static_cast<double>(config.cap.count());
  const double grown = std::min(cap, base * std::pow(2.0, steps));
  const double jitter = std::clamp(config.jitter, 0.0, 1.0);
  const double r = std::clamp(unit_random, 0.0, 1.0);
  auto delay = std::chrono::milliseconds(static_cast<std::int64_t>(grown * (1.0 - jitter + jitter * r)));
  if (retry_after)
    delay = std::max(delay, std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after));
  return delay;
}

}  // namespace knosc::sync
