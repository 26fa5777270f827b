#include "daemon/deadlines.hpp"

#include <vector>

namespace knosc::daemon {

Deadlines::Deadlines(uv_loop_t* loop) : loop_(loop) {
  if (!loop_) return;
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

Deadlines::~Deadlines() {
  // The handle outlives this object until libuv calls the close callback, which only frees it.
  close();
}

void Deadlines::close() {
  if (!timer_) return;
  uv_timer_stop(timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  timer_ = nullptr;
}

void Deadlines::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (!timer_) return fn();
  due_.emplace(Clock::now() + delay, std::move(fn));
  arm();
}

void Deadlines::arm() {
  if (!timer_) return;
  if (due_.empty()) {
    uv_timer_stop(timer_);
    return;
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(due_.begin()->first - Clock::now());
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Deadlines*>(t->data);
        self->fire_due(Clock::now());
        self->arm();
      },
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, left.count())), 0);
}

void Deadlines::fire_due(Clock::time_point now) {
  // Taken out before running: a callback may add deadlines of its own.
  std::vector<std::function<void()>> ready;
  while (!due_.empty() && due_.begin()->first <= now) {
    ready.push_back(std::move(due_.begin()->second));
    due_.erase(due_.begin());
  }
  for (auto& fn : ready)
    fn();
}

void Deadlines::fire_all() {
  while (!due_.empty())
    fire_due(Clock::time_point::max());
  arm();
}

}  // namespace knosc::daemon
