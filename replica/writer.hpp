#pragma once
// The replica writer thread: the one thread that owns the read-write Replica. Other threads hand it work as
// closures; it runs them one at a time in the order posted. Results travel back through whatever the closure
// captured (the network side captures its loop inbox).

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "replica/change_feed.hpp"
#include "replica/replica.hpp"

namespace knosc::replica {

class ReplicaWriter {
 public:
  using Task = std::function<void(Replica&)>;

  // Starts the thread; the replica is used only on it from now on. With a feed, the replica's changes are
  // watched and published after each task (replica/change_feed.hpp).
  explicit ReplicaWriter(std::unique_ptr<Replica> replica, std::shared_ptr<ChangeFeed> feed = nullptr);
  ~ReplicaWriter();  // stop()
  ReplicaWriter(const ReplicaWriter&) = delete;
  ReplicaWriter& operator=(const ReplicaWriter&) = delete;

  // Queues a task. An exception escaping a task is logged and does not stop the thread; tasks that must
  // report failure catch their own exceptions.
  void post(Task task);
  // Runs every task already queued, then ends the thread. Tasks posted afterwards are dropped with a log
  // line.
  void stop();
  std::size_t queued() const;
  // Seconds since the thread last finished a task or went idle, for the watchdog.
  double busy_seconds() const;

 private:
  void run();

  std::shared_ptr<ChangeFeed>
      feed_;  // declared first so the connection, whose hook points at it, closes first
  std::unique_ptr<Replica> replica_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  bool stopping_ = false;
  bool busy_ = false;
  std::chrono::steady_clock::time_point busy_since_;
  std::thread thread_;
};

}  // namespace knosc::replica
