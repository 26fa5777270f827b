#include "sync/link_state.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

namespace knosc::sync {

using std::chrono::milliseconds;

namespace {

// Whole seconds for people, rounded; a wait of a fraction of a second reads "1 s" rather than "0 s".
std::string seconds_text(milliseconds d) {
  const auto s = std::max<std::int64_t>(1, (d.count() + 500) / 1000);
  return std::to_string(s) + " s";
}

}  // namespace

std::string_view to_string(LinkStatus s) {
  switch (s) {
    case LinkStatus::Online:
      return "online";
    case LinkStatus::Offline:
      return "offline";
    case LinkStatus::Unknown:
      break;
  }
  return "unknown";
}

TransportFailure classify_transport(int curl_code, int os_errno, bool connected,
                                    std::int64_t bytes_received) {
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_ABORTED_BY_CALLBACK:
      return TransportFailure::Cancelled;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return TransportFailure::Resolve;
    case CURLE_COULDNT_CONNECT:
      // curl's message names no errno ("Couldn't connect to server"); the socket's errno does.
      if (os_errno == ECONNREFUSED) return TransportFailure::Refused;
      if (os_errno == ETIMEDOUT) return TransportFailure::ConnectTimeout;
      return TransportFailure::Unreachable;
    case CURLE_OPERATION_TIMEDOUT:
      if (!connected) return TransportFailure::ConnectTimeout;
      return bytes_received > 0 ? TransportFailure::Stalled : TransportFailure::NoAnswer;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
      return TransportFailure::Tls;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return TransportFailure::Reset;
    default:
      return TransportFailure::Other;
  }
}

std::string describe_failure(TransportFailure f, milliseconds silent_for, std::string_view detail) {
  const auto with_detail = [&](std::string text) {
    if (!detail.empty()) text.append(" (").append(detail).append(")");
    return text;
  };
  switch (f) {
    case TransportFailure::Cancelled:
      return "cancelled";
    case TransportFailure::Resolve:
      return with_detail("cannot resolve Knosc's host name");
    case TransportFailure::Refused:
      return "connection refused";
    case TransportFailure::Unreachable:
      return with_detail("cannot connect to Knosc");
    case TransportFailure::ConnectTimeout:
      return "no connection to Knosc; nothing answered for " + seconds_text(silent_for);
    case TransportFailure::Tls:
      return with_detail("TLS error");
    case TransportFailure::NoAnswer:
      return "no answer from Knosc for " + seconds_text(silent_for);
    case TransportFailure::Stalled:
      return "Knosc's answers stop midway; none complete for " + seconds_text(silent_for);
    case TransportFailure::Reset:
      return with_detail("connection reset before Knosc's answer was complete");
    case TransportFailure::Other:
      break;
  }
  return with_detail("transfer failed");
}

LinkState::LinkState(LinkTuning tuning, TimePoint now)
    : tuning_(tuning), since_(now), reason_("Knosc not reached yet") {}

std::optional<LinkState::Change> LinkState::become(LinkStatus to, TimePoint now, std::string reason) {
  if (to == status_) return std::nullopt;
  const Change change{status_, to};
  status_ = to;
  since_ = now;
  reason_ = std::move(reason);
  return change;
}

std::optional<LinkState::Change> LinkState::answered(TimePoint now) {
  last_answer_ = now;
  suspect_ = false;
  if (status_ == LinkStatus::Online) return std::nullopt;
  std::string why = "Knosc answers";
  if (status_ == LinkStatus::Offline)
    why +=
        " again after " + seconds_text(std::chrono::duration_cast<milliseconds>(now - since_)) + " offline";
  return become(LinkStatus::Online, now, std::move(why));
}

void LinkState::request_failed(TimePoint /*now*/, TimePoint started, TransportFailure f) {
  // Unknown and offline are in doubt already; a failure of something older than the last answer says nothing
  // the answer did not (one dead connection among working ones).
  if (f == TransportFailure::Cancelled || status_ != LinkStatus::Online) return;
  if (last_answer_ && *last_answer_ > started) return;
  suspect_ = true;
}

void LinkState::probe_started(TimePoint now) {
  ++probes_in_flight_;
  last_probe_start_ = now;
}

std::optional<LinkState::Change> LinkState::probe_failed(TimePoint now, TimePoint started, TransportFailure f,
                                                         std::string_view detail) {
  probes_in_flight_ = std::max(0, probes_in_flight_ - 1);
  if (f == TransportFailure::Cancelled) return std::nullopt;
  if (last_answer_ && *last_answer_ > started) return std::nullopt;  // the link answered while it waited
  suspect_ = false;
  // An offline link keeps the reason it went offline for, and its since.
  if (status_ == LinkStatus::Offline) return std::nullopt;
  const auto silent = std::chrono::duration_cast<milliseconds>(now - last_answer_.value_or(started));
  return become(LinkStatus::Offline, now, describe_failure(f, silent, detail));
}

std::optional<LinkState::Change> LinkState::probe_answered(TimePoint now) {
  probes_in_flight_ = std::max(0, probes_in_flight_ - 1);
  return answered(now);
}

std::optional<LinkState::TimePoint> LinkState::next_probe() const {
  if (probes_in_flight_ >= kMaxProbesInFlight) return std::nullopt;
  if (!in_doubt()) {
    // All is well: one probe at a time, once nothing has been answered for idle_probe.
    if (probes_in_flight_ > 0) return std::nullopt;
    TimePoint base = last_answer_.value_or(since_);
    if (last_probe_start_) base = std::max(base, *last_probe_start_);
    return base + tuning_.idle_probe;
  }
  if (!last_probe_start_) return TimePoint{};  // never probed: at once
  return *last_probe_start_ + tuning_.probe_interval;
}

milliseconds wait_after_link_return(milliseconds remaining, bool backing_off,
                                    std::optional<milliseconds> server_remaining) {
  remaining = std::max(remaining, milliseconds(0));
  if (!backing_off) return remaining;
  return std::min(remaining, std::max(server_remaining.value_or(milliseconds(0)), milliseconds(0)));
}

namespace {
constexpr const char* kStateKey = "upstream_state";
constexpr const char* kSinceKey = "upstream_since";
constexpr const char* kReasonKey = "upstream_reason";
}  // namespace

std::map<std::string, std::string> link_report_state(const LinkReport& report) {
  return {{kStateKey, std::string(to_string(report.status))},
          {kSinceKey, report.since ? std::to_string(*report.since) : std::string()},
          {kReasonKey, report.reason}};
}

LinkReport link_report_from_state(const std::map<std::string, std::string>& state) {
  LinkReport r;
  if (auto it = state.find(kStateKey); it != state.end()) {
    if (it->second == "online") r.status = LinkStatus::Online;
    if (it->second == "offline") r.status = LinkStatus::Offline;
  }
  if (auto it = state.find(kSinceKey); it != state.end() && !it->second.empty()) {
    try {
      r.since = std::stoll(it->second);
    } catch (const std::exception&) {
      // a mangled value reads as unknown
    }
  }
  if (auto it = state.find(kReasonKey); it != state.end()) r.reason = it->second;
  return r;
}

}  // namespace knosc::sync
