#pragma once
// A read-through cache of the read-only routes Knosc computes that the daemon does not compute from the
// replica (API-NOTES §14): the dashboards (`/api/dashboard-*`), the navigation bar, the scenario projections
// (`/api/scenario-*-details/{scenario_id}`) and the upload templates (`/api/templates[/{trigger}]`).
//
// Online, each request is answered with upstream's answer when it comes within `upstream_wait`, fetched under
// the service account after the caller's own privilege was checked here, and a 200 is stored in the replica's
// `cached_response` table. Keys used recently are fetched again on a schedule, so their stored copies stay
// recent. When Knosc cannot be reached (or fails transiently), the stored copy answers, with its age in
// `X-Knosc-Syncd-Data-Age`; without one, 503 Sync.Offline.
//
// Whose answer: the service account sees the whole tenant, the caller may not. The key holds the route, its
// query and the caller's scope (see CacheScope). Answers computed over rows (dashboards, scenarios) are only
// given to callers without granular filters, for whom the service account's answer is the right one (the
// service account itself is expected to have none: it mirrors the whole tenant); a caller with granular
// filters gets 501 Sync.ViewUnavailable, since the daemon cannot restrict an aggregate after the fact. The
// navigation bar depends on privileges only: upstream's bar is cut down to the caller's modules and access.
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. Bodies are written
// through the ReplicaWriter and read by ReplicaReaders; answers come back through the LoopInbox.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/http_server.hpp"
#include "daemon/local_auth.hpp"
#include "daemon/replica_readers.hpp"
#include "daemon/upstream_deadline.hpp"
#include "replica/writer.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::daemon {

// --- Pure parts (tests/unit/test_analytics_cache.cpp)
// --------------------------------------------------------

// What besides the route and its query decides upstream's answer.
enum class CacheScope {
  Tenant,      // nothing: the same for every caller the route admits (templates)
  Privileges,  // the caller's modules and access (the navigation bar)
  Granular,    // the rows the caller's granular filters let through (dashboards, scenario projections)
};

struct AnalyticsRoute {
  std::string module;  // "<module> / View" is required; empty: any session
  CacheScope scope = CacheScope::Granular;
  bool valid = true;  // false: a route the cache serves, with a path shape Knosc answers 404
};

// The cached route that `rest` (the path's segments after "api") names, or nullopt when the cache does not
// serve it (the request goes on through the route table).
std::optional<AnalyticsRoute> analytics_route(const std::vector<std::string>& rest);

// The scope part of the cache key for a caller, or nullopt when the service account's answer cannot stand in
// for the caller's (a Granular route and a caller with granular filters).
std::optional<std::string> cache_scope(const AnalyticsRoute& route, const Privileges& privileges);

// The cached_response key: the path, the query with its parameters sorted and re-encoded (so equivalent
// queries share a key), and the scope: "<path>?<query>|<scope>".
std::string cache_key(std::string_view path, const std::map<std::string, std::string>& query,
                      std::string_view scope);

// Upstream's navigation bar ({"data": [{"name", "path", "access"}, ...]}, the service account's) cut down to
// the modules the caller holds, each with the caller's access. Anything else is returned unchanged.
nlohmann::ordered_json navigation_bar_for(const nlohmann::ordered_json& upstream_body,
                                          const Privileges& privileges);

// What to do with upstream's answer to a cached route.
enum class UpstreamOutcome {
  Store,        // 2xx: answer it and store it
  PassThrough,  // Knosc's own refusal (400 NotFound of an entity, 403, other 4xx): answer it, store nothing
  UseCache,  // no answer worth passing (transport failure, 5xx, 429, paused logins): the stored copy answers
};
UpstreamOutcome upstream_outcome(sync::ApiResult::Kind kind, long status, std::string_view code);

struct AnalyticsCacheTuning {
  std::chrono::seconds refresh_after{300};        // a key in use is fetched again once its copy is this old
  std::chrono::seconds recent_use{3600};          // keys used within this long are kept fresh
  std::chrono::milliseconds check_every{30'000};  // how often the schedule looks for keys due
  std::int64_t keep_seconds = 30LL * 24 * 3600;   // copies not fetched for this long are dropped at start
  int max_refreshes_in_flight = 2;                // scheduled fetches at once, so tools' requests go first
};

// Whether a key is fetched again now: used within `recent_use`, and its copy at least `refresh_after` old
// (or never stored).
bool refresh_due(std::optional<std::int64_t> fetched_at, std::int64_t last_used, std::int64_t now,
                 const AnalyticsCacheTuning& tuning);

// Seconds since `fetched_at`, never negative (the clock may have been set back).
std::int64_t cached_age(std::int64_t fetched_at, std::int64_t now);

// --- The cache
// ------------------------------------------------------------------------------------------------

struct AnalyticsCacheDeps {
  uv_loop_t* loop = nullptr;
  replica::ReplicaWriter* writer = nullptr;
  ReplicaReaders* readers = nullptr;
  sync::LoopInbox* inbox = nullptr;
  sync::UpstreamSession* upstream = nullptr;    // the service account's session
  std::function<std::optional<bool>()> online;  // the link to Knosc (sync::LinkMonitor)
  // How long a tool's request waits for Knosc (`[loopback] login_wait_ms`); then the stored copy answers, or
  // 503 Sync.Offline without one. Knosc's late answer is still stored for the next request.
  std::chrono::milliseconds upstream_wait{1500};
};

class AnalyticsCache {
 public:
  explicit AnalyticsCache(AnalyticsCacheDeps deps, AnalyticsCacheTuning tuning = {});
  ~AnalyticsCache();
  AnalyticsCache(const AnalyticsCache&) = delete;
  AnalyticsCache& operator=(const AnalyticsCache&) = delete;

  // Drops copies older than keep_seconds and starts the refresh schedule.
  void start();
  // Starts nothing new; `done` runs once the fetches and stores in flight have come back.
  void stop(std::function<void()> done);

  // Whether the cache answers this request (a GET of one of its routes).
  bool serves(const HttpRequest& request) const;
  // Answers it; the session is authenticated by the caller.
  void handle(const HttpRequest& request, const LocalSession& session, Responder respond);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace knosc::daemon
