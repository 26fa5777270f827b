#pragma once
// The link to Knosc, decided in one place: whether it is up, since when and why, when to probe it, and what
// a backoff becomes when the link comes back. Pure: LinkMonitor (sync/link_monitor.hpp) feeds it the outcome
// of every upstream exchange with the time, and carries out what it answers. Table-tested in
// tests/unit/test_link_state.cpp.
//
// Why a probe decides: a link that hangs (sockets open, nothing answered) is the common outage. The requests
// the daemon happens to have in flight then end only by their own timeouts, and an idle daemon sends nothing
// at all. So any HTTP answer to anything says the link is up, a request that gets none only puts the link in
// doubt, and a probe (a cheap GET with a short timeout of its own) settles the doubt: no answer to a probe
// is offline. Probes run when nothing has been answered for a while, at once when a request failed, and
// every few seconds while the link is down, so that a hang is reported within
// idle_probe + probe_timeout and a return within probe_interval (plus one round trip).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace knosc::sync {

enum class LinkStatus { Unknown, Online, Offline };
std::string_view to_string(LinkStatus s);  // "unknown", "online", "offline"

// What a transfer that got no complete HTTP answer says about the link.
enum class TransportFailure {
  Cancelled,       // the daemon cancelled it (stopping): says nothing about the link
  Resolve,         // Knosc's host name did not resolve
  Refused,         // the connection was refused
  Unreachable,     // no route to the host or network, or another connect error
  ConnectTimeout,  // no connection within the timeout
  Tls,             // the TLS handshake or the certificate failed
  NoAnswer,        // connected, then not one byte of answer before the timeout
  Stalled,         // the answer began, then stopped moving before its end
  Reset,           // the connection was reset or closed before the answer was complete
  Other,
};

// Reads libcurl's result of a failed transfer: its CURLcode, the errno of the last socket error
// (CURLINFO_OS_ERRNO), whether the connection (and TLS) was set up, and how many bytes of answer arrived.
TransportFailure classify_transport(int curl_code, int os_errno, bool connected, std::int64_t bytes_received);

// The reason people read in the status, e.g. "connection refused" or "no answer from Knosc for 8 s".
// `silent_for`: how long nothing has been answered; `detail`: curl's message, for failures it names.
std::string describe_failure(TransportFailure f, std::chrono::milliseconds silent_for,
                             std::string_view detail);

struct LinkTuning {
  std::chrono::milliseconds idle_probe{5000};      // online: probe when nothing was answered for this long
  std::chrono::milliseconds probe_interval{2000};  // in doubt or offline: a probe starts this often
  std::chrono::milliseconds probe_timeout{3000};   // a probe with no complete answer by then has failed
};

class LinkState {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  struct Change {
    LinkStatus from;
    LinkStatus to;
  };

  LinkState(LinkTuning tuning, TimePoint now);

  // An HTTP answer (any status) to a request or a probe: bytes went both ways, the link is up.
  std::optional<Change> answered(TimePoint now);
  // A request (not a probe) that began at `started` got no complete answer. Unless something was answered
  // since it began, the link is in doubt and a probe is due.
  void request_failed(TimePoint now, TimePoint started, TransportFailure f);
  void probe_started(TimePoint now);
  // A probe that began at `started` ended without an answer: offline, unless something else was answered
  // while it waited. `detail`: curl's message.
  std::optional<Change> probe_failed(TimePoint now, TimePoint started, TransportFailure f,
                                     std::string_view detail);
  // A probe's answer: the probe ends, and the answer counts as any other.
  std::optional<Change> probe_answered(TimePoint now);

  // When the next probe should start (a time not after now: at once); nullopt while none may start until a
  // probe in flight ends.
  std::optional<TimePoint> next_probe() const;

  LinkStatus status() const { return status_; }
  TimePoint since() const { return since_; }
  const std::string& reason() const { return reason_; }
  int probes_in_flight() const { return probes_in_flight_; }

  // Probes in flight at once while the link is in doubt: a second one starts while the first still waits,
  // so that a link coming back is seen within probe_interval even when the first probe went out on a
  // connection the outage left hanging.
  static constexpr int kMaxProbesInFlight = 2;

 private:
  std::optional<Change> become(LinkStatus to, TimePoint now, std::string reason);
  bool in_doubt() const { return status_ != LinkStatus::Online || suspect_; }

  LinkTuning tuning_;
  LinkStatus status_ = LinkStatus::Unknown;
  TimePoint since_;
  std::string reason_;
  std::optional<TimePoint> last_answer_;
  std::optional<TimePoint> last_probe_start_;
  bool suspect_ = false;  // online, but a request failed since the last answer
  int probes_in_flight_ = 0;
};

// How long a wait that is `remaining` lasts once the link is back. A backoff after failures is cut short, as
// they came from the outage (its count of failures is kept, so a Knosc that goes on failing still backs
// off): the try runs at once, but never before a Retry-After that Knosc itself named (`server_remaining`).
// A wait that is no backoff (the normal schedule) is kept.
std::chrono::milliseconds wait_after_link_return(std::chrono::milliseconds remaining, bool backing_off,
                                                 std::optional<std::chrono::milliseconds> server_remaining);

// The link as it is reported: status, `knosc-syncd status`, /syncd/status, /metrics.
struct LinkReport {
  LinkStatus status = LinkStatus::Unknown;
  std::optional<std::int64_t> since;  // unix time of the last change
  std::string reason;
};

// The daemon_state keys a LinkReport is kept under in the replica (written by the running daemon, read by
// `knosc-syncd status`).
std::map<std::string, std::string> link_report_state(const LinkReport& report);
LinkReport link_report_from_state(const std::map<std::string, std::string>& state);

}  // namespace knosc::sync
