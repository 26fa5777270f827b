#include <curl/curl.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "sync/link_state.hpp"

using namespace knosc::sync;
using std::chrono::milliseconds;
using F = TransportFailure;
using S = LinkStatus;

namespace {

using TimePoint = LinkState::TimePoint;
const TimePoint t0 = TimePoint{} + std::chrono::hours(1);

TimePoint at(int ms) {
  return t0 + milliseconds(ms);
}

enum class Ev { Look, Answer, RequestFailed, ProbeStart, ProbeAnswer, ProbeFailed };
constexpr int kNow = -1;   // next probe: at once (never probed)
constexpr int kNone = -2;  // next probe: none until one in flight ends

struct Step {
  int at;  // ms after the state was made
  Ev ev;
  int started;  // RequestFailed, ProbeFailed: when it began
  F failure;
  S status;            // after the event
  int next;            // the next probe, ms after t0 (or kNow, kNone)
  const char* change;  // "" or "from>to"
  const char* reason;  // a part of the reason after the event, or nullptr
  const char* detail;  // curl's message of a failure
};

std::string change_text(const std::optional<LinkState::Change>& c) {
  if (!c) return "";
  return std::string(to_string(c->from)) + ">" + std::string(to_string(c->to));
}

void run(const std::vector<Step>& steps) {
  // The defaults: a probe after 5 s of silence, every 2 s in doubt, 3 s each.
  LinkState link(LinkTuning{}, t0);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    INFO("step " << i << " at " << s.at << " ms");
    std::optional<LinkState::Change> change;
    const std::string detail = s.detail ? s.detail : "";
    switch (s.ev) {
      case Ev::Look:
        break;
      case Ev::Answer:
        change = link.answered(at(s.at));
        break;
      case Ev::RequestFailed:
        link.request_failed(at(s.at), at(s.started), s.failure);
        break;
      case Ev::ProbeStart:
        link.probe_started(at(s.at));
        break;
      case Ev::ProbeAnswer:
        change = link.probe_answered(at(s.at));
        break;
      case Ev::ProbeFailed:
        change = link.probe_failed(at(s.at), at(s.started), s.failure, detail);
        break;
    }
    CHECK(link.status() == s.status);
    CHECK(change_text(change) == s.change);
    if (!std::string(s.change).empty()) CHECK(link.since() == at(s.at));
    if (s.reason) CHECK_THAT(link.reason(), Catch::Matchers::Contains(s.reason));
    const auto next = link.next_probe();
    if (s.next == kNone) {
      CHECK_FALSE(next.has_value());
    } else if (s.next == kNow) {
      REQUIRE(next.has_value());
      CHECK(*next <= at(s.at));
    } else {
      REQUIRE(next.has_value());
      CHECK(std::chrono::duration_cast<milliseconds>(*next - t0).count() == s.next);
    }
  }
}

}  // namespace

TEST_CASE("link state: an idle link is probed, and a hang is offline within idle + probe timeout", "[link]") {
  run({
      {0, Ev::Look, 0, F::Other, S::Unknown, kNow, "", "not reached yet", nullptr},
      // In doubt a second probe may start after the interval even while the first waits.
      {0, Ev::ProbeStart, 0, F::Other, S::Unknown, 2000, "", nullptr, nullptr},
      {40, Ev::ProbeAnswer, 0, F::Other, S::Online, 5040, "unknown>online", "Knosc answers", nullptr},
      // Any answer pushes the next probe back: a busy link needs none.
      {1000, Ev::Answer, 0, F::Other, S::Online, 6000, "", nullptr, nullptr},
      // All well: one probe at a time.
      {6000, Ev::ProbeStart, 0, F::Other, S::Online, kNone, "", nullptr, nullptr},
      {6030, Ev::ProbeAnswer, 0, F::Other, S::Online, 11030, "", nullptr, nullptr},
      // The link hangs just after 6.03 s: the next idle probe gets nothing for its 3 s.
      {11030, Ev::ProbeStart, 0, F::Other, S::Online, kNone, "", nullptr, nullptr},
      {14030, Ev::ProbeFailed, 11030, F::NoAnswer, S::Offline, 13030, "online>offline",
       "no answer from Knosc for 8 s", "Operation timed out after 3000 milliseconds with 0 bytes received"},
  });
}

TEST_CASE("link state: offline, probes go every interval, two at most, and any answer is a return",
          "[link]") {
  run({
      {0, Ev::ProbeStart, 0, F::Other, S::Unknown, 2000, "", nullptr, nullptr},
      {1, Ev::ProbeFailed, 0, F::Refused, S::Offline, 2000, "unknown>offline", "connection refused", nullptr},
      {2000, Ev::ProbeStart, 0, F::Other, S::Offline, 4000, "", nullptr, nullptr},
      {4000, Ev::ProbeStart, 0, F::Other, S::Offline, kNone, "", nullptr, nullptr},
      // Offline keeps why and since it went offline.
      {5000, Ev::ProbeFailed, 2000, F::NoAnswer, S::Offline, 6000, "", "connection refused", nullptr},
      {6000, Ev::ProbeStart, 0, F::Other, S::Offline, kNone, "", nullptr, nullptr},
      {6500, Ev::ProbeAnswer, 0, F::Other, S::Online, kNone, "offline>online",
       "Knosc answers again after 6 s offline", nullptr},
      // The probe still waiting from before the return fails: something answered since it began.
      {7000, Ev::ProbeFailed, 4000, F::NoAnswer, S::Online, 11500, "", nullptr, nullptr},
  });
}

TEST_CASE("link state: a failed request puts an online link in doubt, and a probe decides", "[link]") {
  run({
      {0, Ev::Answer, 0, F::Other, S::Online, 5000, "unknown>online", nullptr, nullptr},
      {3000, Ev::RequestFailed, 2500, F::Reset, S::Online, kNow, "", nullptr, nullptr},
      {3000, Ev::ProbeStart, 0, F::Other, S::Online, 5000, "", nullptr, nullptr},
      {3010, Ev::ProbeAnswer, 0, F::Other, S::Online, 8010, "", nullptr, nullptr},
      // Failures keep coming: probes go no more often than every interval.
      {4000, Ev::RequestFailed, 3500, F::Reset, S::Online, 5000, "", nullptr, nullptr},
      {5000, Ev::ProbeStart, 0, F::Other, S::Online, 7000, "", nullptr, nullptr},
      {5005, Ev::ProbeFailed, 5000, F::Refused, S::Offline, 7000, "online>offline", "connection refused",
       nullptr},
      // Offline, a failed request changes nothing.
      {5500, Ev::RequestFailed, 5400, F::Refused, S::Offline, 7000, "", "connection refused", nullptr},
  });
}

TEST_CASE("link state: failures older than the last answer, and cancelled ones, say nothing", "[link]") {
  run({
      {0, Ev::Answer, 0, F::Other, S::Online, 5000, "unknown>online", nullptr, nullptr},
      {1000, Ev::RequestFailed, -500, F::Reset, S::Online, 5000, "", nullptr, nullptr},
      {1000, Ev::RequestFailed, 900, F::Cancelled, S::Online, 5000, "", nullptr, nullptr},
      {5000, Ev::ProbeStart, 0, F::Other, S::Online, kNone, "", nullptr, nullptr},
      {5100, Ev::ProbeFailed, 5000, F::Cancelled, S::Online, 10000, "", nullptr, nullptr},
  });
}

TEST_CASE("link state: a slow answer that completes while a probe waits keeps the link up", "[link]") {
  run({
      {0, Ev::Answer, 0, F::Other, S::Online, 5000, "unknown>online", nullptr, nullptr},
      {5000, Ev::ProbeStart, 0, F::Other, S::Online, kNone, "", nullptr, nullptr},
      {6000, Ev::Answer, 0, F::Other, S::Online, kNone, "", nullptr, nullptr},
      {8000, Ev::ProbeFailed, 5000, F::Stalled, S::Online, 11000, "", nullptr, nullptr},
      {11000, Ev::ProbeStart, 0, F::Other, S::Online, kNone, "", nullptr, nullptr},
      {14000, Ev::ProbeFailed, 11000, F::Stalled, S::Offline, 13000, "online>offline",
       "Knosc's answers stop midway; none complete for 8 s", nullptr},
  });
}

TEST_CASE("link state: at start a failed request does not decide; the probe does", "[link]") {
  run({
      {0, Ev::RequestFailed, 0, F::Refused, S::Unknown, kNow, "", nullptr, nullptr},
      {0, Ev::ProbeStart, 0, F::Other, S::Unknown, 2000, "", nullptr, nullptr},
      {10, Ev::ProbeFailed, 0, F::Resolve, S::Offline, 2000, "unknown>offline",
       "cannot resolve Knosc's host name (Could not resolve host: knosc.example)",
       "Could not resolve host: knosc.example"},
  });
}

TEST_CASE("classify_transport: what a failed transfer says about the link", "[link]") {
  struct Case {
    int code;
    int os_errno;
    bool connected;
    std::int64_t bytes;
    F expected;
  };
  const Case cases[] = {
      {CURLE_COULDNT_CONNECT, ECONNREFUSED, false, 0, F::Refused},
      {CURLE_COULDNT_CONNECT, EHOSTUNREACH, false, 0, F::Unreachable},
      {CURLE_COULDNT_CONNECT, ENETUNREACH, false, 0, F::Unreachable},
      {CURLE_COULDNT_CONNECT, ETIMEDOUT, false, 0, F::ConnectTimeout},
      {CURLE_OPERATION_TIMEDOUT, 0, false, 0, F::ConnectTimeout},
      {CURLE_OPERATION_TIMEDOUT, 0, true, 0, F::NoAnswer},  // a blackhole: connected, then silence
      {CURLE_OPERATION_TIMEDOUT, 0, true, 64, F::Stalled},  // a stall: the answer began, then stopped
      {CURLE_COULDNT_RESOLVE_HOST, 0, false, 0, F::Resolve},
      {CURLE_PEER_FAILED_VERIFICATION, 0, true, 0, F::Tls},
      {CURLE_SSL_CONNECT_ERROR, 0, false, 0, F::Tls},
      {CURLE_RECV_ERROR, ECONNRESET, true, 0, F::Reset},
      {CURLE_GOT_NOTHING, 0, true, 0, F::Reset},
      {CURLE_PARTIAL_FILE, 0, true, 500, F::Reset},
      {CURLE_ABORTED_BY_CALLBACK, 0, true, 10, F::Cancelled},
      {CURLE_WRITE_ERROR, 0, true, 10, F::Other},
  };
  for (const auto& c : cases) {
    INFO("curl code " << c.code << ", errno " << c.os_errno);
    CHECK(classify_transport(c.code, c.os_errno, c.connected, c.bytes) == c.expected);
  }
}

TEST_CASE("describe_failure: the reasons people read", "[link]") {
  struct Case {
    F failure;
    int silent_ms;
    const char* detail;
    const char* expected;
  };
  const Case cases[] = {
      {F::Refused, 3, "Failed to connect", "connection refused"},
      {F::NoAnswer, 10'400, "", "no answer from Knosc for 10 s"},
      {F::NoAnswer, 300, "", "no answer from Knosc for 1 s"},
      {F::Stalled, 8000, "", "Knosc's answers stop midway; none complete for 8 s"},
      {F::ConnectTimeout, 5000, "", "no connection to Knosc; nothing answered for 5 s"},
      {F::Tls, 0, "SSL certificate problem: unable to get local issuer certificate",
       "TLS error (SSL certificate problem: unable to get local issuer certificate)"},
      {F::Unreachable, 0, "Failed to connect to knosc port 443",
       "cannot connect to Knosc (Failed to connect "
       "to knosc port 443)"},
      {F::Reset, 0, "", "connection reset before Knosc's answer was complete"},
      {F::Other, 0, "Failure writing output", "transfer failed (Failure writing output)"},
  };
  for (const auto& c : cases)
    CHECK(describe_failure(c.failure, milliseconds(c.silent_ms), c.detail) == c.expected);
}

TEST_CASE("wait_after_link_return: backoffs are cut short, Knosc's own Retry-After and schedules are kept",
          "[link]") {
  struct Case {
    int remaining_ms;
    bool backing_off;
    std::optional<int> server_ms;
    int expected_ms;
  };
  const Case cases[] = {
      {30'000, true, std::nullopt, 0},        // a backoff after failures: at once
      {30'000, false, std::nullopt, 30'000},  // the normal schedule (or a 403's): kept
      {30'000, true, 10'000, 10'000},         // Knosc said Retry-After: not before that
      {5000, true, 10'000, 5000},             // never later than the wait itself
      {30'000, true, -2000, 0},               // a Retry-After already past
      {-100, true, std::nullopt, 0},          // already due
      {-100, false, std::nullopt, 0},
  };
  for (const auto& c : cases) {
    INFO(c.remaining_ms << " ms, backing off " << c.backing_off);
    std::optional<milliseconds> server;
    if (c.server_ms) server = milliseconds(*c.server_ms);
    CHECK(wait_after_link_return(milliseconds(c.remaining_ms), c.backing_off, server).count() ==
          c.expected_ms);
  }
}

TEST_CASE("link report: kept in the daemon state and read back", "[link]") {
  const LinkReport offline{S::Offline, 1'700'000'000, "no answer from Knosc for 8 s"};
  const auto state = link_report_state(offline);
  CHECK(state.at("upstream_state") == "offline");
  const auto back = link_report_from_state(state);
  CHECK(back.status == S::Offline);
  CHECK(back.since == std::optional<std::int64_t>(1'700'000'000));
  CHECK(back.reason == offline.reason);

  // What a replica from before the link state, or a mangled one, holds reads as unknown.
  const auto old = link_report_from_state({{"online", "true"}, {"upstream_since", "soon"}});
  CHECK(old.status == S::Unknown);
  CHECK_FALSE(old.since.has_value());
  CHECK(link_report_from_state(link_report_state(LinkReport{})).status == S::Unknown);
}
