#pragma once
// Threads that answer the loopback API's reads from the replica, each with its own read-only connection, so
// the loop thread never waits on SQLite and reads never wait on the writer (WAL).
//
// Ownership and threads: owned by the daemon; post() may be called from any thread; tasks run on one of the
// reader threads, and report back through whatever they captured (the loop inbox).

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "replica/replica.hpp"

namespace knosc::daemon {

class ReplicaReaders {
 public:
  using Task = std::function<void(replica::Replica&)>;

  // Opens `threads` read-only connections to the replica at `path` (which must exist and be migrated).
  ReplicaReaders(const std::string& path, const schema::Catalog& catalog, int threads);
  ~ReplicaReaders();  // stop()
  ReplicaReaders(const ReplicaReaders&) = delete;
  ReplicaReaders& operator=(const ReplicaReaders&) = delete;

  // Queues a task; the next free reader runs it. A task that throws is logged and must have reported its own
  // failure first (callers wrap their work in try/catch).
  void post(Task task);
  // Runs what is queued, then joins the threads.
  void stop();

 private:
  void run(replica::Replica& rep);

  std::vector<std::unique_ptr<replica::Replica>> connections_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  bool stopping_ = false;
};

}  // namespace knosc::daemon
