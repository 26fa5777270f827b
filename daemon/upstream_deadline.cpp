#include "daemon/upstream_deadline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <utility>

namespace knosc::daemon {

// The timer handle outlives nothing but itself: it holds the deadline while armed (so that the deadline is
// alive when it fires) and is freed in its close callback.
struct UpstreamDeadline::TimerBox {
  uv_timer_t timer{};
  std::shared_ptr<UpstreamDeadline> owner;  // released when the timer is closed
};

std::shared_ptr<UpstreamDeadline> UpstreamDeadline::arm(uv_loop_t* loop, std::chrono::milliseconds wait,
                                                        Responder respond, OnTimeout on_timeout) {
  std::shared_ptr<UpstreamDeadline> d(new UpstreamDeadline());
  d->respond_ = std::move(respond);
  d->on_timeout_ = std::move(on_timeout);
  auto* box = new TimerBox;
  box->owner = d;
  box->timer.data = box;
  uv_timer_init(loop, &box->timer);
  d->timer_ = box;
  const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait.count()));
  uv_timer_start(
      &box->timer,
      [](uv_timer_t* t) {
        auto* b = static_cast<TimerBox*>(t->data);
        // Kept alive across expire(), which closes the timer and drops the box's reference.
        auto self = b->owner;
        if (self) self->expire();
      },
      ms, 0);
  return d;
}

UpstreamDeadline::~UpstreamDeadline() {
  // Only reached once the timer is closed (the box held a reference until then), so nothing to release.
}

void UpstreamDeadline::disarm() {
  if (timer_ == nullptr) return;
  TimerBox* box = timer_;
  timer_ = nullptr;
  uv_timer_stop(&box->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&box->timer), [](uv_handle_t* h) {
    // The last reference may go here; the deadline holds nothing that must die elsewhere than on the loop.
    delete static_cast<TimerBox*>(h->data);
  });
}

void UpstreamDeadline::expire() {
  disarm();
  if (settled_) return;
  settled_ = true;
  auto respond = std::move(respond_);
  respond_ = nullptr;
  auto on_timeout = std::move(on_timeout_);
  on_timeout_ = nullptr;
  try {
    if (on_timeout) {
      on_timeout(std::move(respond));
      return;
    }
  } catch (const std::exception& e) {
    spdlog::error("loopback: answering after the wait for Knosc failed: {}", e.what());
    return;  // the Responder, dropped, answers 500
  }
  if (respond)
    respond(HttpResponse::knosc_error(503, "Knosc did not answer in time; try again.", "Sync.Offline"));
}

std::optional<Responder> UpstreamDeadline::take() {
  if (settled_) return std::nullopt;
  settled_ = true;
  disarm();
  on_timeout_ = nullptr;
  auto respond = std::move(respond_);
  respond_ = nullptr;
  return respond;
}

bool UpstreamDeadline::answer(HttpResponse response) {
  auto respond = take();
  if (!respond) return false;
  if (*respond) (*respond)(std::move(response));
  return true;
}

}  // namespace knosc::daemon
