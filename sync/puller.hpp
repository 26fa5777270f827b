#pragma once
// The puller: keeps every catalog resource's replica rows equal to upstream by full passes over Knosc's list
// endpoints (see docs/SYNC_PROTOCOL.md).
//
// For each resource, on its schedule: page through the list sorted by id, hand each page to the replica
// writer (one transaction per page, checkpointed), then confirm the rows the pass missed by asking for each
// one (only a NotFound deletes), then fetch nested parts (lines, notes) of new, changed or stale records.
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. Replica work goes to
// the ReplicaWriter and comes back through the LoopInbox.

#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "replica/writer.hpp"
#include "schema/catalog.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/retry_policy.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::sync {

struct ResourcePullSettings {
  bool enabled = true;
  std::optional<int> interval_seconds;        // overrides the catalog's pull_interval_seconds
  std::optional<int> page_size;               // overrides PullOptions::page_size
  std::optional<int> nested_refresh_seconds;  // overrides the catalog's nested_refresh_hours
};

struct PullOptions {
  int page_size = 500;                  // rows per list page; Knosc caps pages at 1000
  int max_concurrent_requests = 4;      // upstream requests in flight at once, across all resources
  std::optional<int> interval_seconds;  // overrides every resource's catalog interval (config [sync])
  std::map<std::string, ResourcePullSettings> resources;
  BackoffConfig backoff;
  std::optional<int> nested_refresh_seconds;  // overrides every resource's catalog nested_refresh_hours
  // Deletion checks / nested fetches taken from the replica at a time. Each batch of nested parts is stored
  // in one transaction, and the requests of a batch must all end before the next batch starts; 1000 keeps
  // the answers of a batch in memory (a few megabytes) and makes a first sync's nested parts cost a fifth of
  // the commits and pauses that batches of 200 did.
  std::size_t batch = 1000;
};

// What the progress display and the status command show about a resource while the daemon runs.
struct PullProgress {
  std::string resource;
  bool running = false;
  bool first_pass_done = false;
  int pages_this_pass = 0;
  std::int64_t rows_this_pass = 0;
  std::int64_t written_this_pass = 0;
  int failures_in_a_row = 0;
  std::string last_error;
};

class Puller {
 public:
  Puller(uv_loop_t* loop, UpstreamSession& session, replica::ReplicaWriter& writer, LoopInbox& inbox,
         const schema::Catalog& catalog, PullOptions options);
  ~Puller();
  Puller(const Puller&) = delete;
  Puller& operator=(const Puller&) = delete;

  void start();
  // Starts no more requests or replica work; `done` runs once everything in flight has come back (a page
  // being written finishes its transaction, so the checkpoint stays exact).
  void stop(std::function<void()> done);
  // Starts a pass of `resource` now if it is idle, or again as soon as the running one ends (false when
  // unknown or disabled).
  bool trigger(const std::string& resource);

  // The link came back (LinkMonitor::on_link_back): passes that back off after failures start now.
  void link_returned();

  std::vector<PullProgress> progress() const;
  bool all_first_passes_done() const;

 private:
  struct Task;
  using Clock = std::chrono::steady_clock;

  void kick();
  static void on_timer(uv_timer_t* t);
  void run_due();
  void start_pass(Task& t);
  void fetch_page(Task& t);
  void apply_page(Task& t, std::string body);
  void check_deletions(Task& t);
  void fetch_nested(Task& t);
  void store_nested_batch(Task& t);
  void finish(Task& t);
  void fail(Task& t, Disposition d, const std::string& message,
            std::optional<std::chrono::seconds> retry_after);

  void with_slot(std::function<void()> fn);
  void release_slot();
  void to_writer(std::function<void(replica::Replica&)> work);
  void writer_done();
  void maybe_stopped();

  std::string list_path(const Task& t, int page, int page_size) const;
  std::string filter_for(const schema::Resource& res, const std::map<std::string, replica::Json>& keys) const;

  uv_loop_t* loop_;
  UpstreamSession& session_;
  replica::ReplicaWriter& writer_;
  LoopInbox& inbox_;
  const schema::Catalog& catalog_;
  PullOptions options_;
  std::vector<std::unique_ptr<Task>> tasks_;
  uv_timer_t* timer_ = nullptr;
  int in_flight_ = 0;
  int writer_pending_ = 0;
  std::deque<std::function<void()>> waiting_;  // requests waiting for a slot, oldest first
  bool stopping_ = false;
  std::function<void()> on_stopped_;
  std::optional<std::int64_t> recorded_skew_;
  std::mt19937_64 rng_;
  std::shared_ptr<bool> alive_;  // lets callbacks that outlive the puller notice it is gone
};

}  // namespace knosc::sync
