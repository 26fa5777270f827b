#include "daemon/analytics_cache.hpp"

#include <SQLiteCpp/Statement.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "daemon/jobs.hpp"
#include "daemon/upstream_answer.hpp"
#include "replica/clock.hpp"
#include "sync/retry_policy.hpp"

namespace knosc::daemon {

using OJson = nlohmann::ordered_json;

namespace {

using replica::unix_now;

std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string hex_sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) len = 0;
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    char buf[3];
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    out += buf;
  }
  return out;
}

const char* access_name(Access a) {
  return a == Access::Edit ? "Edit" : a == Access::View ? "View" : "None";
}

// The dashboards Knosc lists (API-NOTES §14) with the module each requires, and whether it takes an entity id
// (`/api/dashboard-spend-by-supplier/{supplier_id}`), as knosc-sim serves them.
struct Dashboard {
  std::string_view name;
  std::string_view module;
  bool entity;
};
constexpr Dashboard kDashboards[] = {
    {"statistics", "Dashboard", false},
    {"total", "Dashboard", false},
    {"world-map", "Dashboard", false},
    {"spend-by-supplier", "Spend Analytics", true},
    {"spend-by-item", "Spend Analytics", true},
    {"revenue-by-customer", "Revenue Analytics", true},
    {"revenue-by-item", "Revenue Analytics", true},
    {"inventory-distribution", "Inventory", false},
    {"inventory-by-item-and-warehouse", "Inventory", false},
    {"inventory-planning", "Inventory Planning", false},
    {"analytics-purchase-orders", "Procurement Analytics", false},
    {"analytics-sales-orders", "Sales Analytics", false},
};

constexpr std::string_view kScenarioRoutes[] = {
    "scenario-purchase-order-details",
    "scenario-sales-order-details",
    "scenario-manufacturing-order-details",
    "scenario-forecast-details",
};

}  // namespace

// --- Pure parts
// ----------------------------------------------------------------------------------------------

std::optional<AnalyticsRoute> analytics_route(const std::vector<std::string>& rest) {
  if (rest.empty()) return std::nullopt;
  const std::string& name = rest[0];
  if (name == "navigation-bar") return AnalyticsRoute{"", CacheScope::Privileges, rest.size() == 1};
  if (name == "templates") {
    // The list, or one trigger's template file (computation triggers have none).
    bool valid = rest.size() == 1;
    if (rest.size() == 2)
      if (const auto* t = find_job_trigger(rest[1])) valid = t->takes_file;
    return AnalyticsRoute{"", CacheScope::Tenant, valid};
  }
  for (auto s : kScenarioRoutes)
    if (name == s) return AnalyticsRoute{"Scenarios", CacheScope::Granular, rest.size() == 2};
  constexpr std::string_view prefix = "dashboard-";
  if (name.rfind(prefix, 0) == 0) {
    const std::string_view kind = std::string_view(name).substr(prefix.size());
    for (const auto& d : kDashboards)
      if (d.name == kind)
        return AnalyticsRoute{std::string(d.module), CacheScope::Granular,
                              rest.size() == 1 || (d.entity && rest.size() == 2)};
  }
  return std::nullopt;
}

std::optional<std::string> cache_scope(const AnalyticsRoute& route, const Privileges& privileges) {
  switch (route.scope) {
    case CacheScope::Tenant:
      return std::string("tenant");
    case CacheScope::Granular:
      if (!privileges.granular.empty()) return std::nullopt;
      return std::string("granular:none");
    case CacheScope::Privileges: {
      // Callers with the same modules and access share one copy; the key holds a digest, not the list.
      std::string text;
      for (const auto& [module, access] : privileges.modules)
        if (access != Access::None) text += module + "=" + access_name(access) + "\n";
      return "privileges:" + hex_sha256(text).substr(0, 32);
    }
  }
  return std::nullopt;
}

std::string cache_key(std::string_view path, const std::map<std::string, std::string>& query,
                      std::string_view scope) {
  std::string key(path);
  char sep = '?';
  for (const auto& [k, v] : query) {  // std::map: sorted by name
    key += sep;
    key += percent_encode(k) + "=" + percent_encode(v);
    sep = '&';
  }
  key += '|';
  key += scope;
  return key;
}

OJson navigation_bar_for(const OJson& upstream_body, const Privileges& privileges) {
  OJson out = upstream_body;
  auto data = out.find("data");
  if (!out.is_object() || data == out.end() || !data->is_array()) return out;
  OJson kept = OJson::array();
  for (const auto& entry : *data) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string()) continue;
    const auto module = entry["name"].get<std::string>();
    auto it = privileges.modules.find(module);
    if (it == privileges.modules.end() || it->second == Access::None) continue;
    OJson e = entry;
    e["access"] = access_name(it->second);
    kept.push_back(std::move(e));
  }
  *data = std::move(kept);
  return out;
}

UpstreamOutcome upstream_outcome(sync::ApiResult::Kind kind, long status, std::string_view code) {
  switch (sync::classify(kind, status, code, "")) {
    case sync::Disposition::Success:
      return UpstreamOutcome::Store;
    case sync::Disposition::NotFound:
    case sync::Disposition::Forbidden:
    case sync::Disposition::Rejected:
      return UpstreamOutcome::PassThrough;
    case sync::Disposition::Transient:
    case sync::Disposition::Paused:
      return UpstreamOutcome::UseCache;
  }
  return UpstreamOutcome::UseCache;
}

bool refresh_due(std::optional<std::int64_t> fetched_at, std::int64_t last_used, std::int64_t now,
                 const AnalyticsCacheTuning& tuning) {
  if (now - last_used > tuning.recent_use.count()) return false;
  return !fetched_at || now - *fetched_at >= tuning.refresh_after.count();
}

std::int64_t cached_age(std::int64_t fetched_at, std::int64_t now) {
  return std::max<std::int64_t>(0, now - fetched_at);
}

// --- The cache
// ------------------------------------------------------------------------------------------------

struct AnalyticsCache::Impl {
  // A key used in this run: what is needed to fetch it again on the schedule.
  struct Recent {
    std::string upstream_path;  // path and query as sent upstream, without the /api prefix
    CacheScope scope = CacheScope::Granular;
    Privileges privileges;  // for CacheScope::Privileges: whose bar the stored copy is
    std::int64_t last_used = 0;
    std::optional<std::int64_t> fetched_at;
    bool refreshing = false;
  };

  AnalyticsCacheDeps d;
  AnalyticsCacheTuning tuning;
  std::map<std::string, Recent> recent;  // by cache key
  uv_timer_t* timer = nullptr;           // freed in its close callback
  bool stopping = false;
  int outstanding = 0;  // upstream calls and replica work not yet come back
  int refreshes_in_flight = 0;
  std::function<void()> stop_done;

  Impl(AnalyticsCacheDeps deps, AnalyticsCacheTuning t) : d(std::move(deps)), tuning(t) {}
  ~Impl() {
    if (timer) uv_close(reinterpret_cast<uv_handle_t*>(timer), on_timer_closed);
  }
  static void on_timer_closed(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

  bool link_down() const { return d.online && d.online() == std::optional<bool>(false); }

  void start() {
    const std::int64_t cutoff = unix_now() - tuning.keep_seconds;
    d.writer->post([cutoff](replica::Replica& rep) {
      try {
        SQLite::Statement q(rep.db(), "DELETE FROM cached_response WHERE fetched_at < ?1");
        q.bind(1, cutoff);
        q.exec();
      } catch (const std::exception& e) {
        spdlog::warn("analytics cache: dropping old copies failed: {}", e.what());
      }
    });
    timer = new uv_timer_t;
    uv_timer_init(d.loop, timer);
    timer->data = this;
    const auto every = static_cast<std::uint64_t>(std::max<std::int64_t>(1, tuning.check_every.count()));
    uv_timer_start(
        timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->refresh_due_keys(); }, every, every);
  }

  void stop(std::function<void()> done) {
    stopping = true;
    stop_done = std::move(done);
    if (timer) {
      uv_close(reinterpret_cast<uv_handle_t*>(timer), on_timer_closed);
      timer = nullptr;
    }
    maybe_finish();
  }

  void maybe_finish() {
    if (!stopping || outstanding != 0 || !stop_done) return;
    auto done = std::move(stop_done);
    stop_done = nullptr;
    done();
  }

  void release() {
    --outstanding;
    maybe_finish();
  }

  static std::vector<std::string> rest_of(const HttpRequest& req) {
    auto seg = split_path(req.path);
    if (seg.empty() || seg[0] != "api") return {};
    seg.erase(seg.begin());
    return seg;
  }

  void handle(const HttpRequest& req, const LocalSession& session, Responder respond) {
    const auto route = analytics_route(rest_of(req));
    if (!route || !route->valid)
      return respond(HttpResponse::knosc_error(404, "Not Found", "Route.NotFound"));
    if (!route->module.empty() && !session.privileges.allows(route->module, Access::View))
      return respond(HttpResponse::knosc_error(403, "Not Privileged for this action", "User.NotPrivileged"));
    const auto scope = cache_scope(*route, session.privileges);
    if (!scope)
      return respond(HttpResponse::knosc_error(
          501,
          "This view is computed for your role's granular filters, which knosc-syncd cannot apply to it; "
          "open it in Knosc directly",
          "Sync.ViewUnavailable"));
    const std::string key = cache_key(req.path, req.query_params(), *scope);
    auto& r = recent[key];
    // Sent as the server parsed it: the validated segments re-encoded (without "api") and the checked query.
    r.upstream_path = encode_path(std::vector<std::string>(req.segments.begin() + 1, req.segments.end())) +
                      (req.query.empty() ? std::string() : "?" + req.query);
    r.scope = route->scope;
    r.privileges = session.privileges;
    r.last_used = unix_now();
    if (!d.upstream || link_down())
      return from_copy(key, std::optional<bool>(false), std::make_shared<Responder>(std::move(respond)));
    // Knosc gets `upstream_wait` to answer; then the stored copy answers (or 503 without one), and Knosc's
    // late answer is only stored. The wait counts as outstanding work, so stop() waits for its end.
    ++outstanding;
    auto deadline =
        UpstreamDeadline::arm(d.loop, d.upstream_wait, std::move(respond), [this, key](Responder late) {
          spdlog::info("analytics cache: Knosc did not answer {} within {} ms; the stored copy answers", key,
                       d.upstream_wait.count());
          from_copy(key, std::nullopt, std::make_shared<Responder>(std::move(late)));
          release();
        });
    fetch(key, [this, key, deadline](std::optional<HttpResponse> fresh) {
      auto in_time = deadline->take();
      if (!in_time) return;  // after the wait: a success was stored all the same
      release();
      if (fresh) return (*in_time)(std::move(*fresh));
      from_copy(key, std::nullopt, std::make_shared<Responder>(std::move(*in_time)));
    });
  }

  // Fetches a key upstream; `done` gets the answer to give (nullopt: the stored copy must answer, and says
  // what the link monitor makes of the link: one failed fetch does not decide that).
  void fetch(const std::string& key, std::function<void(std::optional<HttpResponse>)> done) {
    const Recent entry = recent.at(key);
    ++outstanding;
    d.upstream->call("GET", entry.upstream_path, "",
                     [this, key, entry, done = std::move(done)](sync::ApiResult r) {
                       const auto outcome = upstream_outcome(r.kind, r.status, r.code);
                       if (outcome == UpstreamOutcome::UseCache) {
                         spdlog::debug("analytics cache: {} failed upstream ({} {}); the stored copy answers",
                                       entry.upstream_path, r.status, r.message);
                         done(std::nullopt);
                         return release();
                       }
                       const auto type = r.response.header("content-type").value_or("application/json");
                       HttpResponse out = pass_through(r.response);
                       if (outcome == UpstreamOutcome::Store) {
                         if (entry.scope == CacheScope::Privileges) {
                           const auto body = OJson::parse(out.body, nullptr, false);
                           if (!body.is_discarded())
                             out.body = navigation_bar_for(body, entry.privileges).dump();
                         }
                         const std::int64_t now = unix_now();
                         if (auto it = recent.find(key); it != recent.end()) it->second.fetched_at = now;
                         store(key, out.body, type, now);
                         out.set_header("X-Knosc-Syncd-Data-Age", "0");
                         out.set_header("X-Knosc-Syncd-Upstream", "online");
                       }
                       done(std::move(out));
                       release();
                     });
  }

  void store(const std::string& key, const std::string& body, const std::string& type, std::int64_t at) {
    ++outstanding;
    d.writer->post([this, key, body, type, at](replica::Replica& rep) {
      try {
        SQLite::Statement q(
            rep.db(),
            "INSERT INTO cached_response (cache_key, status, body, fetched_at, content_type) "
            "VALUES (?1, 200, ?2, ?3, ?4) ON CONFLICT (cache_key) DO UPDATE SET status = 200, "
            "body = excluded.body, fetched_at = excluded.fetched_at, content_type = "
            "excluded.content_type");
        q.bind(1, key);
        q.bind(2, body.data(), static_cast<int>(body.size()));
        q.bind(3, at);
        q.bind(4, type);
        q.exec();
      } catch (const std::exception& e) {
        spdlog::warn("analytics cache: storing {} failed: {}", key, e.what());
      }
      d.inbox->post([this] { release(); });
    });
  }

  // The stored copy with its age, or 503 Sync.Offline when there is none.
  void from_copy(const std::string& key, std::optional<bool> link, std::shared_ptr<Responder> respond) {
    if (!link) link = d.online ? d.online() : std::nullopt;
    d.readers->post([this, key, link, respond](replica::Replica& rep) {
      std::optional<HttpResponse> out;
      std::optional<std::int64_t> fetched_at;
      try {
        SQLite::Statement q(rep.db(),
                            "SELECT status, body, fetched_at, content_type FROM cached_response WHERE "
                            "cache_key = ?1");
        q.bind(1, key);
        if (q.executeStep()) {
          HttpResponse r;
          r.status = q.getColumn(0).getInt();
          r.body = q.getColumn(1).getString();
          fetched_at = q.getColumn(2).getInt64();
          r.set_header("Content-Type",
                       q.getColumn(3).isNull() ? "application/json" : q.getColumn(3).getString());
          r.set_header("X-Knosc-Syncd-Data-Age", std::to_string(cached_age(*fetched_at, unix_now())));
          r.set_header("X-Knosc-Syncd-Upstream", link ? (*link ? "online" : "offline") : "unknown");
          out = std::move(r);
        }
      } catch (const std::exception& e) {
        spdlog::error("analytics cache: reading {} failed: {}", key, e.what());
      }
      d.inbox->post([this, key, respond, out = std::move(out), fetched_at]() mutable {
        if (auto it = recent.find(key); it != recent.end() && fetched_at && !it->second.fetched_at)
          it->second.fetched_at = fetched_at;
        if (out) return (*respond)(std::move(*out));
        (*respond)(HttpResponse::knosc_error(
            503,
            "Knosc cannot be reached and this view has not been fetched before; try again when the link "
            "is back.",
            "Sync.Offline"));
      });
    });
  }

  // The schedule: keys used recently whose copies are getting old are fetched again; keys not used for a
  // while are forgotten (their copies stay, for offline use, until keep_seconds).
  void refresh_due_keys() {
    if (stopping) return;
    const std::int64_t now = unix_now();
    for (auto it = recent.begin(); it != recent.end();) {
      if (now - it->second.last_used > tuning.recent_use.count() && !it->second.refreshing) {
        it = recent.erase(it);
      } else {
        ++it;
      }
    }
    if (!d.upstream || link_down()) return;
    for (auto& item : recent) {
      auto& entry = item.second;
      if (refreshes_in_flight >= tuning.max_refreshes_in_flight) break;
      if (entry.refreshing || !refresh_due(entry.fetched_at, entry.last_used, now, tuning)) continue;
      entry.refreshing = true;
      ++refreshes_in_flight;
      const std::string key = item.first;
      fetch(key, [this, key](std::optional<HttpResponse>) {
        --refreshes_in_flight;
        if (auto it = recent.find(key); it != recent.end()) it->second.refreshing = false;
      });
    }
  }
};

AnalyticsCache::AnalyticsCache(AnalyticsCacheDeps deps, AnalyticsCacheTuning tuning)
    : impl_(std::make_unique<Impl>(std::move(deps), tuning)) {}
AnalyticsCache::~AnalyticsCache() = default;

void AnalyticsCache::start() {
  impl_->start();
}
void AnalyticsCache::stop(std::function<void()> done) {
  impl_->stop(std::move(done));
}
bool AnalyticsCache::serves(const HttpRequest& request) const {
  return request.method == "GET" && analytics_route(Impl::rest_of(request)).has_value();
}
void AnalyticsCache::handle(const HttpRequest& request, const LocalSession& session, Responder respond) {
  impl_->handle(request, session, std::move(respond));
}

}  // namespace knosc::daemon
