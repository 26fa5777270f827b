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

#include "daemon/config.hpp"
#include "daemon/http_server.hpp"
#include "daemon/local_auth.hpp"
#include "daemon/replica_readers.hpp"
#include "replica/writer.hpp"
#include "schema/catalog.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/puller.hpp"
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
  std::function<std::optional<bool>()> online;                // the link to Knosc as the puller sees it
  std::function<std::vector<sync::PullProgress>()> progress;  // live pass progress
  sync::UpstreamSession* upstream = nullptr;                  // the service account's session, for changes
  std::function<void(const std::string&)> trigger_pull;       // start a pass of a resource now
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
