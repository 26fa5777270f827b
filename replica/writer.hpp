#pragma once
// The replica writer thread: the one thread that owns the read-write Replica. Other threads hand it work as
// closures; it runs them in the order posted. Results travel back through whatever the closure captured (the
// network side captures its loop inbox).
//
// Two kinds of work:
// - a task (post) runs alone and makes its own transactions: a pull page, a stored record, a migration;
// - a change (post_change) is a small edit that must be on disk before anyone is told about it: a local edit
//   made through the loopback, or the pusher's bookkeeping of an outbox entry. Changes go through group
//   commit.
//
// Group commit. With synchronous=FULL each commit waits for an fsync (milliseconds on a good disk, tens on a
// busy one), and one commit per change caps a plant's tools at a few hundred edits per second however many
// of them write at once. So when the writer picks up a change it also takes every change queued right behind
// it (at most kMaxGroup, stopping at the first task so the order of posting is kept), opens one
// transaction, runs each change in a savepoint of its own (replica/savepoint.hpp), commits once, and only
// then reports each change's outcome. Nothing waits for a group to fill: a lone change commits at once, and
// changes group only because they arrived while the previous commit was waiting for the disk, which is when
// waiting for the next commit costs them nothing extra.
//
// What each change is told, and when:
// - its work threw: its savepoint was rolled back, so it left no trace; the others of the group are kept;
// - the commit failed (disk full, I/O error) or SQLite rolled back the whole transaction under a change:
//   every change that was in it is told it failed, and none of them is on disk;
// - otherwise it is on disk (the group's commit returned), and only then is it told so.
// Completions run on the writer thread, in the order the changes were posted, after the change feed has
// published the group's changes (a tool reading right after its acknowledged write sees it). They should be
// quick: post the outcome to another thread.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "replica/change_feed.hpp"
#include "replica/replica.hpp"

namespace knosc::replica {

// What became of a change posted with post_change<T>.
template <typename T>
struct ChangeResult {
  std::optional<T> value;  // the change's result, set only when it is committed (on disk)
  std::string error;       // otherwise why not: its own failure, or its group's failed commit
  bool committed() const { return value.has_value(); }
};

// Counters of the group commits so far (for /metrics, the status and the tests).
struct GroupCommitStats {
  std::uint64_t groups = 0;          // commits of one or more changes
  std::uint64_t changes = 0;         // changes run in them
  std::uint64_t failed_commits = 0;  // groups whose commit failed (all of their changes told so)
  std::uint64_t largest = 0;         // the most changes one commit carried
};

class ReplicaWriter {
 public:
  using Task = std::function<void(Replica&)>;
  // A change's work: runs inside its own savepoint of the group's transaction. It must not begin, commit or
  // roll back the transaction itself (functions that need atomicity use a Savepoint, which nests). Throwing
  // rolls the savepoint back: the change leaves no trace, and the exception reaches its completion.
  using ChangeWork = std::function<void(Replica&)>;
  // A change's completion: called on the writer thread once the group's commit returned (null: the change
  // is on disk) or failed (the reason).
  using ChangeDone = std::function<void(std::exception_ptr)>;

  static constexpr std::size_t kMaxGroup = 256;  // changes per commit: bounds a group's commit latency

  // Starts the thread; the replica is used only on it from now on. With a feed, the replica's changes are
  // watched and published after each commit and each task (replica/change_feed.hpp).
  explicit ReplicaWriter(std::unique_ptr<Replica> replica, std::shared_ptr<ChangeFeed> feed = nullptr);
  ~ReplicaWriter();  // stop()
  ReplicaWriter(const ReplicaWriter&) = delete;
  ReplicaWriter& operator=(const ReplicaWriter&) = delete;

  // Queues a task. An exception escaping a task is logged and does not stop the thread; tasks that must
  // report failure catch their own exceptions.
  void post(Task task);

  // Queues a change (see the group commit above). `done` is called exactly once: on the writer thread after
  // the group's commit, or at once on the calling thread when the writer has stopped (the change did not
  // run).
  void post_change(ChangeWork work, ChangeDone done);

  // The same with a result: `work` returns a T, and `done` gets it once it is committed, or the error.
  template <typename Work, typename Done>
  requires(!std::is_void_v<std::invoke_result_t<Work&, Replica&>>) void post_change(Work work, Done done) {
    using T = std::decay_t<std::invoke_result_t<Work&, Replica&>>;
    auto result = std::make_shared<std::optional<T>>();
    post_change(
        ChangeWork([result, work = std::move(work)](Replica& rep) mutable { result->emplace(work(rep)); }),
        ChangeDone([result, done = std::move(done)](std::exception_ptr error) mutable {
          ChangeResult<T> out;
          if (error) {
            out.error = describe(error);
          } else {
            out.value = std::move(*result);
          }
          done(std::move(out));
        }));
  }

  // Runs every task and change already queued, then ends the thread. Work posted afterwards is dropped with
  // a log line (a change's completion is told so).
  void stop();
  std::size_t queued() const;
  // Seconds since the thread last finished a task or group or went idle, for the watchdog.
  double busy_seconds() const;
  GroupCommitStats group_stats() const;

  // The message of an exception held in `error`.
  static std::string describe(const std::exception_ptr& error);

 private:
  struct Item {
    Task task;        // a task, or
    ChangeWork work;  // a change with
    ChangeDone done;  // its completion
    bool is_change() const { return static_cast<bool>(work); }
  };
  void run();
  void run_group(std::deque<Item>& group);

  std::shared_ptr<ChangeFeed>
      feed_;  // declared first so the connection, whose hook points at it, closes first
  std::unique_ptr<Replica> replica_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;
  bool stopping_ = false;
  bool busy_ = false;
  std::chrono::steady_clock::time_point busy_since_;
  GroupCommitStats stats_;
  std::thread thread_;
};

}  // namespace knosc::replica
