#pragma once
// Work handed to the libuv loop thread from other threads (the replica writer's results).
//
// uv_async_send coalesces wake-ups, so each wake-up drains the whole queue. Any thread may post; the
// closures run on the loop thread in the order posted.

#include <uv.h>

#include <deque>
#include <functional>
#include <mutex>

namespace knosc::sync {

class LoopInbox {
 public:
  explicit LoopInbox(uv_loop_t* loop);
  ~LoopInbox();
  LoopInbox(const LoopInbox&) = delete;
  LoopInbox& operator=(const LoopInbox&) = delete;

  void post(std::function<void()> fn);  // any thread
  // Closes the async handle (loop thread). Closures still queued run first; later posts are dropped.
  void close();

 private:
  static void on_async(uv_async_t* handle);
  void drain();

  uv_async_t* async_;  // freed in its close callback, as libuv requires
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
  bool closed_ = false;
};

}  // namespace knosc::sync
