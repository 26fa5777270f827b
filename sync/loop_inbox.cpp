#include "sync/loop_inbox.hpp"

namespace knosc::sync {

LoopInbox::LoopInbox(uv_loop_t* loop) : async_(new uv_async_t) {
  uv_async_init(loop, async_, &LoopInbox::on_async);
  async_->data = this;
}

LoopInbox::~LoopInbox() {
  close();
}

void LoopInbox::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    queue_.push_back(std::move(fn));
  }
  uv_async_send(async_);
}

void LoopInbox::on_async(uv_async_t* handle) {
  static_cast<LoopInbox*>(handle->data)->drain();
}

void LoopInbox::drain() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
  }
  for (auto& fn : batch)
    fn();
}

void LoopInbox::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  drain();
  async_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(async_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

}  // namespace knosc::sync
