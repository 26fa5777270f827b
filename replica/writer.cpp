#include "replica/writer.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

namespace knosc::replica {

ReplicaWriter::ReplicaWriter(std::unique_ptr<Replica> replica, std::shared_ptr<ChangeFeed> feed)
    : feed_(std::move(feed)), replica_(std::move(replica)) {
  if (feed_) feed_->watch(replica_->db());
  thread_ = std::thread([this] { run(); });
}

ReplicaWriter::~ReplicaWriter() {
  stop();
}

void ReplicaWriter::post(Task task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      spdlog::warn("replica writer: a task arrived after stop and was not run");
      return;
    }
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ReplicaWriter::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::size_t ReplicaWriter::queued() const {
  std::lock_guard lock(mu_);
  return tasks_.size();
}

double ReplicaWriter::busy_seconds() const {
  std::lock_guard lock(mu_);
  if (!busy_) return 0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - busy_since_).count();
}

void ReplicaWriter::run() {
  // Named so that top -H, perf and gdb tell the threads apart.
  pthread_setname_np(pthread_self(), "replica-writer");
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
      busy_ = true;
      busy_since_ = std::chrono::steady_clock::now();
    }
    try {
      task(*replica_);
    } catch (const std::exception& e) {
      spdlog::error("replica writer: task failed: {}", e.what());
    }
    // After the task, so every transaction it made has committed before a cache sees the change.
    if (feed_) feed_->publish();
    std::lock_guard lock(mu_);
    busy_ = false;
  }
}

}  // namespace knosc::replica
