#pragma once
// A loopback answer that waits for Knosc at most a bound (`[loopback] login_wait_ms`): whichever comes first,
// Knosc's answer or the end of the wait, answers the tool; the other is dropped. The Responder is called
// exactly once.
//
// Shared state and a flag rather than ownership by the request: the upstream callback and the timer each
// hold the deadline, so a late answer finds it still alive, sees that the tool was answered, and is dropped.
//
// Threads: loop thread only. The timer keeps the loop alive until it fires or the answer came (at most the
// wait), so a shutdown never leaves a tool without its answer.

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include "daemon/http_server.hpp"

namespace knosc::daemon {

class UpstreamDeadline : public std::enable_shared_from_this<UpstreamDeadline> {
 public:
  // What answers when the wait runs out: it gets the Responder and must call it once (now or later, e.g.
  // after reading a stored copy).
  using OnTimeout = std::function<void(Responder)>;

  // Arms the wait. A wait of 0 ms still goes through the loop once before it answers.
  static std::shared_ptr<UpstreamDeadline> arm(uv_loop_t* loop, std::chrono::milliseconds wait,
                                               Responder respond, OnTimeout on_timeout);
  ~UpstreamDeadline();
  UpstreamDeadline(const UpstreamDeadline&) = delete;
  UpstreamDeadline& operator=(const UpstreamDeadline&) = delete;

  // Knosc's answer: given to the tool when the wait has not run out. Returns false when it came too late
  // and was dropped.
  bool answer(HttpResponse response);
  // Settles the deadline and hands over the Responder (the wait is over), or nullopt when the wait already
  // ran out: for an answer that still needs work before it can be given (a stored copy to read).
  std::optional<Responder> take();
  // Whether the tool has been (or is being) answered, by either side.
  bool settled() const { return settled_; }

 private:
  struct TimerBox;
  UpstreamDeadline() = default;
  void expire();
  void disarm();

  Responder respond_;
  OnTimeout on_timeout_;
  TimerBox* timer_ = nullptr;  // freed in its close callback
  bool settled_ = false;
};

}  // namespace knosc::daemon
