#include "daemon/replica_readers.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

namespace knosc::daemon {

ReplicaReaders::ReplicaReaders(const std::string& path, const schema::Catalog& catalog, int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    auto rep = std::make_unique<replica::Replica>(path, catalog, replica::Replica::Mode::ReadOnly);
    // Reads through a memory map skip copying every page into SQLite's own cache (the largest cost of a
    // get-one under load); the mapped pages are the file's, shared with the kernel's page cache.
    rep->db().exec("PRAGMA mmap_size = 1073741824");
    connections_.push_back(std::move(rep));
  }
  for (auto& c : connections_) {
    threads_.emplace_back([this, rep = c.get()] {
      pthread_setname_np(pthread_self(), "replica-reader");
      run(*rep);
    });
  }
}

ReplicaReaders::~ReplicaReaders() {
  stop();
}

void ReplicaReaders::post(Task task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ReplicaReaders::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void ReplicaReaders::run(replica::Replica& rep) {
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      task(rep);
    } catch (const std::exception& e) {
      spdlog::error("replica reader: task failed: {}", e.what());
    }
  }
}

}  // namespace knosc::daemon
