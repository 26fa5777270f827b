#include "replica/writer.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <stdexcept>
#include <vector>

#include "replica/savepoint.hpp"

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
    items_.push_back(Item{std::move(task), nullptr, nullptr});
  }
  cv_.notify_one();
}

void ReplicaWriter::post_change(ChangeWork work, ChangeDone done) {
  if (!work) throw std::invalid_argument("ReplicaWriter::post_change: no work");
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      spdlog::warn("replica writer: a change arrived after stop and was not run");
      if (done)
        done(std::make_exception_ptr(
            std::runtime_error("the replica writer has stopped; the change was not run")));
      return;
    }
    items_.push_back(Item{nullptr, std::move(work), std::move(done)});
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
  return items_.size();
}

double ReplicaWriter::busy_seconds() const {
  std::lock_guard lock(mu_);
  if (!busy_) return 0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - busy_since_).count();
}

GroupCommitStats ReplicaWriter::group_stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::string ReplicaWriter::describe(const std::exception_ptr& error) {
  if (!error) return {};
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

void ReplicaWriter::run() {
  // Named so that top -H, perf and gdb tell the threads apart.
  pthread_setname_np(pthread_self(), "replica-writer");
  for (;;) {
    std::deque<Item> work;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !items_.empty(); });
      if (items_.empty()) return;  // stopping and drained
      work.push_back(std::move(items_.front()));
      items_.pop_front();
      // A change takes the changes queued right behind it into its group; the first task ends the group, so
      // nothing runs before something posted ahead of it.
      if (work.front().is_change())
        while (!items_.empty() && items_.front().is_change() && work.size() < kMaxGroup) {
          work.push_back(std::move(items_.front()));
          items_.pop_front();
        }
      busy_ = true;
      busy_since_ = std::chrono::steady_clock::now();
    }
    if (work.front().is_change()) {
      run_group(work);
    } else {
      try {
        work.front().task(*replica_);
      } catch (const std::exception& e) {
        spdlog::error("replica writer: task failed: {}", e.what());
      }
      // After the task, so every transaction it made has committed before a cache sees the change.
      if (feed_) feed_->publish();
    }
    std::lock_guard lock(mu_);
    busy_ = false;
  }
}

void ReplicaWriter::run_group(std::deque<Item>& group) {
  auto& db = replica_->db();
  const std::size_t n = group.size();
  std::vector<std::exception_ptr> errors(n);  // null: kept (committed once the group commits)
  std::size_t first = 0;                      // the first change of the transaction now open
  bool failed_commit = false;

  // Every change of the open transaction that was kept is told `error` instead: it is not on disk.
  const auto undo_open = [&](std::size_t end, const std::exception_ptr& error) {
    for (std::size_t j = first; j < end; ++j)
      if (!errors[j]) errors[j] = error;
  };

  for (std::size_t i = 0; i < n; ++i) {
    if (!in_transaction(db)) {
      try {
        db.exec("BEGIN");
      } catch (...) {
        errors[i] = std::current_exception();
        first = i + 1;
        continue;
      }
    }
    try {
      Savepoint sp(db);
      group[i].work(*replica_);
      sp.release();
    } catch (...) {
      errors[i] = std::current_exception();  // the savepoint's destructor undid this change alone
    }
    if (!in_transaction(db)) {
      // SQLite rolled back the whole transaction (disk full, I/O error, out of memory): the changes kept
      // before this one went with it. The rest of the group goes on in a new transaction.
      undo_open(i + 1, std::make_exception_ptr(std::runtime_error(
                           "the replica rolled back the transaction this change was part of: " +
                           (errors[i] ? describe(errors[i]) : std::string("unknown cause")))));
      failed_commit = true;
      first = i + 1;
    }
  }
  if (in_transaction(db)) {
    try {
      db.exec("COMMIT");
    } catch (...) {
      const auto error = std::current_exception();
      spdlog::error("replica writer: committing {} change(s) failed: {}", n - first, describe(error));
      failed_commit = true;
      // A failed COMMIT may leave the transaction open (a deferred constraint, SQLITE_BUSY): end it, so that
      // none of the group is on disk and the next work starts clean.
      if (in_transaction(db)) {
        try {
          db.exec("ROLLBACK");
        } catch (const std::exception& e) {
          spdlog::error("replica writer: rolling back the failed group: {}", e.what());
        }
      }
      undo_open(n, std::make_exception_ptr(
                       std::runtime_error("the replica could not commit the change: " + describe(error))));
    }
  }
  // The WAL hook published at the commit; this is the backstop, and it covers a rolled-back group's marks.
  if (feed_) feed_->publish();
  {
    std::lock_guard lock(mu_);
    ++stats_.groups;
    stats_.changes += n;
    if (failed_commit) ++stats_.failed_commits;
    if (n > stats_.largest) stats_.largest = n;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!group[i].done) continue;
    try {
      group[i].done(errors[i]);
    } catch (const std::exception& e) {
      spdlog::error("replica writer: a change's completion failed: {}", e.what());
    }
  }
}

}  // namespace knosc::replica
