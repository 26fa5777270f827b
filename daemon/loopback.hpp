#pragma once
// The loopback API: Knosc's /api routes served from the replica with Knosc's own auth, online or offline, and
// the daemon's own routes outside /api (health, readiness, status, outbox, conflicts, metrics). The route
// table is one block in loopback.cpp; docs/LOOPBACK_API.md describes every route.
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. Reads run on the
// ReplicaReaders threads and come back through the LoopInbox.

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/analytics_cache.hpp"
#include "daemon/config.hpp"
#include "daemon/http_server.hpp"
#include "daemon/jobs.hpp"
#include "daemon/local_auth.hpp"
#include "daemon/replica_readers.hpp"
#include "replica/writer.hpp"
#include "schema/catalog.hpp"
#include "sync/link_state.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/puller.hpp"
#include "sync/pusher.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::daemon {

struct LoopbackDeps {
  uv_loop_t* loop = nullptr;
  const Config* config = nullptr;
  const schema::Catalog* catalog = nullptr;
  replica::ReplicaWriter* writer = nullptr;
  ReplicaReaders* readers = nullptr;
  sync::LoopInbox* inbox = nullptr;
  LocalAuth* auth = nullptr;
  std::function<std::optional<bool>()> online;                // the link to Knosc (sync::LinkMonitor)
  std::function<sync::LinkReport()> link;                     // the same with since when and why
  std::function<std::vector<sync::PullProgress>()> progress;  // live pass progress
  sync::UpstreamSession* upstream = nullptr;                  // the service account's session, for changes
  std::function<bool(const std::string&)> trigger_pull;       // start a pass of a resource now
  Jobs* jobs = nullptr;                                       // /api/job routes (uploads and their polling)
  AnalyticsCache* analytics = nullptr;                        // dashboards and other cached analytics
  std::function<void(std::int64_t)> outbox_queued;            // a change was queued (outbox seq)
  // A tool waits for a queued change's push (sync::Pusher::watch / unwatch); null: changes are not pushed.
  std::function<void(std::int64_t, sync::PushWatch)> watch_push;
  std::function<void(std::int64_t)> unwatch_push;
  // A person settles a conflict (KeepLocal, KeepRemote, Merged) or a rejected edit (Retry, Drop); the
  // callback gets an empty string or why it was refused (sync::Pusher::resolve).
  std::function<void(std::int64_t, sync::Resolution, std::optional<nlohmann::ordered_json>, std::string,
                     std::function<void(std::string)>)>
      resolve;
  std::function<sync::PushStatus()> push_status;
  // Bearer token of `knosc-syncd resolve` (daemon/cli_conflicts.hpp); accepted on the /syncd settle routes
  // only. Empty: no CLI access.
  std::string cli_token;
  // The replica's change generations (published by the writer); null: answers are not cached.
  const replica::ChangeFeed* changes = nullptr;
};

class LoopbackApi {
 public:
  explicit LoopbackApi(LoopbackDeps deps);
  ~LoopbackApi();
  LoopbackApi(const LoopbackApi&) = delete;
  LoopbackApi& operator=(const LoopbackApi&) = delete;

  // Binds the configured host and port (and, for "localhost", both 127.0.0.1 and ::1). Returns 0 or a
  // negative uv error code.
  int listen();
  int port() const;
  std::string base_url() const;  // e.g. http://127.0.0.1:8470/api
  // Stops accepting; answers what is in flight; `done` runs when every handle is closed.
  void shutdown(std::function<void()> done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace knosc::daemon
