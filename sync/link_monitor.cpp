#include "sync/link_monitor.hpp"

#include <spdlog/spdlog.h>

#include <ctime>
#include <vector>

#include "replica/clock.hpp"

namespace knosc::sync {

namespace {

using replica::unix_now;

TransportFailure failure_of(const HttpResponse& r) {
  return classify_transport(r.curl_code, r.os_errno, r.connected, r.bytes_received);
}

}  // namespace

void record_link(replica::Replica& rep, const LinkReport& report) {
  for (const auto& [key, value] : link_report_state(report))
    rep.set_state(key, value);
}

struct LinkMonitor::Impl : std::enable_shared_from_this<LinkMonitor::Impl> {
  using Clock = LinkState::Clock;

  uv_loop_t* loop;
  HttpClient& http;
  replica::ReplicaWriter& writer;
  LoopInbox& inbox;
  std::string probe_url;
  LinkTuning tuning;
  LinkState state;
  std::int64_t since_unix = unix_now();  // wall-clock time of the state's last change, for people
  uv_timer_t* timer = nullptr;           // freed in its close callback
  bool started = false;
  bool stopped = false;
  std::vector<std::function<void()>> on_back;

  Impl(uv_loop_t* l, HttpClient& h, replica::ReplicaWriter& w, LoopInbox& i, std::string base, LinkTuning t)
      : loop(l),
        http(h),
        writer(w),
        inbox(i),
        probe_url(std::move(base) + "/profile"),
        tuning(t),
        state(t, Clock::now()) {
    timer = new uv_timer_t;
    uv_timer_init(loop, timer);
    timer->data = this;
  }

  LinkReport report() const { return {state.status(), since_unix, state.reason()}; }

  void record() {
    writer.post([report = report()](replica::Replica& rep) {
      try {
        record_link(rep, report);
      } catch (const std::exception& e) {
        spdlog::error("replica: could not record the link's state: {}", e.what());
      }
    });
  }

  void apply(const std::optional<LinkState::Change>& change) {
    if (!change) return;
    since_unix = unix_now();
    if (change->to == LinkStatus::Online) {
      spdlog::info("upstream is online: {}", state.reason());
    } else {
      spdlog::warn("upstream is offline: {}", state.reason());
    }
    record();
    if (change->from != LinkStatus::Offline || change->to != LinkStatus::Online) return;
    // Subscribers start requests; doing that from inside the upstream callback that brought the answer would
    // re-enter the session and the HTTP client mid-callback, so they run on a loop turn of their own.
    inbox.post([weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self || self->stopped) return;
      for (const auto& fn : self->on_back)
        fn();
    });
  }

  void observe(const HttpResponse& r) {
    const auto now = Clock::now();
    if (r.transport_ok()) {
      apply(state.answered(now));
    } else {
      const auto took =
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(r.total_seconds));
      state.request_failed(now, now - took, failure_of(r));
    }
    reschedule();
  }

  void probe() {
    const auto started_at = Clock::now();
    state.probe_started(started_at);
    HttpRequest rq;
    rq.method = "GET";
    rq.url = probe_url;
    rq.headers.emplace_back("Accept: application/json");
    rq.timeout_ms = static_cast<long>(tuning.probe_timeout.count());
    http.send(std::move(rq), [weak = weak_from_this(), started_at](HttpResponse r) {
      if (auto self = weak.lock()) self->probe_done(started_at, r);
    });
  }

  void probe_done(Clock::time_point started_at, const HttpResponse& r) {
    const auto now = Clock::now();
    if (r.transport_ok()) {
      spdlog::trace("knosc: probe answered {} in {:.3f}s", r.status, r.total_seconds);
      apply(state.probe_answered(now));
    } else {
      spdlog::debug("knosc: probe failed: {} ({:.3f}s)", r.transport_error, r.total_seconds);
      apply(state.probe_failed(now, started_at, failure_of(r), r.transport_error));
    }
    reschedule();
  }

  // Starts the probes that are due and sets the timer for the next one.
  void reschedule() {
    if (!started || stopped || !timer) return;
    for (;;) {
      const auto next = state.next_probe();
      if (!next) {
        uv_timer_stop(timer);  // a probe in flight reschedules when it ends
        return;
      }
      const auto now = Clock::now();
      if (*next <= now) {
        probe();
        if (stopped) return;
        continue;
      }
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
      uv_timer_start(
          timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->reschedule(); },
          static_cast<std::uint64_t>(wait.count()), 0);
      return;
    }
  }
};

LinkMonitor::LinkMonitor(uv_loop_t* loop, HttpClient& http, replica::ReplicaWriter& writer, LoopInbox& inbox,
                         std::string base_url, LinkTuning tuning)
    : impl_(std::make_shared<Impl>(loop, http, writer, inbox, std::move(base_url), tuning)) {}

LinkMonitor::~LinkMonitor() {
  if (impl_->timer) {
    uv_timer_stop(impl_->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(impl_->timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    impl_->timer = nullptr;
  }
}

void LinkMonitor::start() {
  impl_->started = true;
  impl_->record();
  impl_->reschedule();
}

void LinkMonitor::stop() {
  impl_->stopped = true;
  if (impl_->timer) uv_timer_stop(impl_->timer);
}

void LinkMonitor::observe(const HttpResponse& response) {
  impl_->observe(response);
}

std::optional<bool> LinkMonitor::online() const {
  switch (impl_->state.status()) {
    case LinkStatus::Online:
      return true;
    case LinkStatus::Offline:
      return false;
    case LinkStatus::Unknown:
      break;
  }
  return std::nullopt;
}

LinkReport LinkMonitor::report() const {
  return impl_->report();
}

void LinkMonitor::on_link_back(std::function<void()> fn) {
  impl_->on_back.push_back(std::move(fn));
}

}  // namespace knosc::sync
