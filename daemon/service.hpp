#pragma once
// `knosc-syncd run`: wires the pieces together and runs until SIGTERM/SIGINT.
//
// Threads: the calling thread becomes the libuv loop thread (all network I/O, timers, signals); the replica
// writer thread owns the read-write SQLite connection.

#include <string>

#include "daemon/config.hpp"

namespace knosc::daemon {

// Holds an exclusive lock on the state directory so two daemons never share one replica.
class StateDirLock {
 public:
  explicit StateDirLock(const std::string& lock_path);  // throws ConfigError when another daemon holds it
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;
  // Whether some process holds the lock now (used by `status`).
  static bool held_by_someone(const std::string& lock_path);

 private:
  int fd_ = -1;
};

// Runs the daemon; returns the process exit code.
int run_daemon(const Config& config);

}  // namespace knosc::daemon
