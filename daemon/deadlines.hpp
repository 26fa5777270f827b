#pragma once
// Deadlines on the uv loop: callbacks that run once a delay has passed, all served by one timer. The loopback
// uses it to bound how long a tool waits for Knosc (a change's push, [loopback] write_wait_ms): however many
// tools wait, one handle is armed for the earliest deadline.
//
// Threads: every member runs on the uv loop thread.

#include <uv.h>

#include <chrono>
#include <functional>
#include <map>

namespace knosc::daemon {

class Deadlines {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Deadlines(uv_loop_t* loop);
  ~Deadlines();  // close() must have run, or the loop must no longer run
  Deadlines(const Deadlines&) = delete;
  Deadlines& operator=(const Deadlines&) = delete;

  // Runs `fn` on the loop once `delay` has passed (at once, on the loop's next turn, for zero).
  void after(std::chrono::milliseconds delay, std::function<void()> fn);
  // Runs every callback still waiting now, in deadline order (a stop answers every waiting tool).
  void fire_all();
  // Releases the timer handle; callbacks added afterwards run at once.
  void close();
  std::size_t waiting() const { return due_.size(); }

 private:
  void arm();
  void fire_due(Clock::time_point now);

  uv_loop_t* loop_;
  uv_timer_t* timer_ = nullptr;
  std::multimap<Clock::time_point, std::function<void()>> due_;
};

}  // namespace knosc::daemon
