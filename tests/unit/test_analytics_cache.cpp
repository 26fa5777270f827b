// The analytics cache's decisions: which routes it serves and with which privilege, whose answer a copy is
// (the key's scope), what upstream's answers lead to, when a key is fetched again, and the navigation bar cut
// down to a caller's privileges.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/analytics_cache.hpp"

namespace {

using knosc::daemon::Access;
using knosc::daemon::AnalyticsRoute;
using knosc::daemon::CacheScope;
using knosc::daemon::Privileges;
using Kind = knosc::sync::ApiResult::Kind;

Privileges privileges(std::map<std::string, Access> modules, bool granular = false) {
  Privileges p;
  p.modules = std::move(modules);
  if (granular)
    p.granular.push_back(knosc::replica::GranularFilter{"Warehouse Number", true, {nlohmann::json("WH-01")}});
  return p;
}

}  // namespace

TEST_CASE("Analytics cache: the routes it serves and the privilege each needs", "[analytics_cache]") {
  using knosc::daemon::analytics_route;
  struct Case {
    std::vector<std::string> rest;
    std::optional<std::string> module;  // nullopt: not served by the cache
    CacheScope scope = CacheScope::Granular;
    bool valid = true;
  };
  const std::vector<Case> cases = {
      {{"dashboard-statistics"}, "Dashboard"},
      {{"dashboard-total"}, "Dashboard"},
      {{"dashboard-world-map"}, "Dashboard"},
      {{"dashboard-spend-by-supplier"}, "Spend Analytics"},
      {{"dashboard-spend-by-supplier", "42"}, "Spend Analytics"},
      {{"dashboard-spend-by-item", "7"}, "Spend Analytics"},
      {{"dashboard-revenue-by-customer", "3"}, "Revenue Analytics"},
      {{"dashboard-revenue-by-item"}, "Revenue Analytics"},
      {{"dashboard-inventory-distribution"}, "Inventory"},
      {{"dashboard-inventory-by-item-and-warehouse"}, "Inventory"},
      {{"dashboard-inventory-planning"}, "Inventory Planning"},
      {{"dashboard-analytics-purchase-orders"}, "Procurement Analytics"},
      {{"dashboard-analytics-sales-orders"}, "Sales Analytics"},
      // Knosc answers 404 for an entity on a dashboard that takes none, and for deeper paths.
      {{"dashboard-total", "1"}, "Dashboard", CacheScope::Granular, false},
      {{"dashboard-spend-by-item", "1", "2"}, "Spend Analytics", CacheScope::Granular, false},
      {{"scenario-purchase-order-details", "5"}, "Scenarios"},
      {{"scenario-forecast-details", "5"}, "Scenarios"},
      {{"scenario-sales-order-details"}, "Scenarios", CacheScope::Granular, false},
      {{"navigation-bar"}, "", CacheScope::Privileges},
      {{"navigation-bar", "x"}, "", CacheScope::Privileges, false},
      {{"templates"}, "", CacheScope::Tenant},
      {{"templates", "item-master"}, "", CacheScope::Tenant},
      {{"templates", "inventory-planning"}, "", CacheScope::Tenant, false},
      {{"templates", "nothing"}, "", CacheScope::Tenant, false},
      // Not the cache's: unknown dashboards (404 further on), and what the daemon computes from the replica.
      {{"dashboard-nothing"}, std::nullopt},
      {{"dashboard"}, std::nullopt},
      {{"forecast-over-time"}, std::nullopt},
      {{"delayed-shipments", "histogram"}, std::nullopt},
      {{"purchase-order"}, std::nullopt},
      {{}, std::nullopt},
  };
  for (const auto& c : cases) {
    INFO((c.rest.empty() ? std::string("(empty)") : c.rest[0]) << " with " << c.rest.size() << " segment(s)");
    const auto r = analytics_route(c.rest);
    REQUIRE(r.has_value() == c.module.has_value());
    if (!r) continue;
    CHECK(r->module == *c.module);
    CHECK(r->scope == c.scope);
    CHECK(r->valid == c.valid);
  }
}

TEST_CASE("Analytics cache: whose answer a copy is", "[analytics_cache]") {
  using knosc::daemon::cache_scope;
  const AnalyticsRoute dashboard{"Dashboard", CacheScope::Granular, true};
  const AnalyticsRoute nav{"", CacheScope::Privileges, true};
  const AnalyticsRoute templates{"", CacheScope::Tenant, true};
  const auto admin = privileges({{"Dashboard", Access::Edit}, {"Procurement", Access::Edit}});
  const auto viewer = privileges({{"Dashboard", Access::View}, {"Procurement", Access::View}});
  const auto planner = privileges({{"Dashboard", Access::Edit}, {"Procurement", Access::Edit}}, true);

  // Rows a caller's granular filters would restrict: only callers without any share the service account's.
  CHECK(cache_scope(dashboard, admin) == std::optional<std::string>("granular:none"));
  CHECK(cache_scope(dashboard, viewer) == cache_scope(dashboard, admin));
  CHECK_FALSE(cache_scope(dashboard, planner).has_value());

  // The navigation bar depends on modules and access, not on granular filters.
  const auto nav_admin = cache_scope(nav, admin);
  REQUIRE(nav_admin);
  CHECK(nav_admin->rfind("privileges:", 0) == 0);
  CHECK(cache_scope(nav, planner) == nav_admin);
  CHECK(cache_scope(nav, viewer) != nav_admin);
  CHECK(cache_scope(nav, privileges({{"Dashboard", Access::Edit},
                                     {"Procurement", Access::Edit},
                                     {"Scenarios", Access::None}})) == nav_admin);

  CHECK(cache_scope(templates, planner) == std::optional<std::string>("tenant"));
}

TEST_CASE("Analytics cache: keys are the same for equivalent queries", "[analytics_cache]") {
  using knosc::daemon::cache_key;
  CHECK(cache_key("/api/dashboard-total", {}, "granular:none") == "/api/dashboard-total|granular:none");
  const auto a = cache_key("/api/dashboard-world-map", {{"sort", R"({"key":"City"})"}, {"page", "2"}}, "s");
  const auto b = cache_key("/api/dashboard-world-map", {{"page", "2"}, {"sort", R"({"key":"City"})"}}, "s");
  CHECK(a == b);
  CHECK(a == "/api/dashboard-world-map?page=2&sort=%7B%22key%22%3A%22City%22%7D|s");
  // Values cannot forge a separator or another scope.
  CHECK(cache_key("/api/x", {{"a", "1|tenant"}}, "s") == "/api/x?a=1%7Ctenant|s");
  CHECK(cache_key("/api/x", {{"a", "1&b=2"}}, "s") != cache_key("/api/x", {{"a", "1"}, {"b", "2"}}, "s"));
  CHECK(cache_key("/api/x", {}, "privileges:1") != cache_key("/api/x", {}, "privileges:2"));
}

TEST_CASE("Analytics cache: what upstream's answers lead to", "[analytics_cache]") {
  using knosc::daemon::upstream_outcome;
  using O = knosc::daemon::UpstreamOutcome;
  CHECK(upstream_outcome(Kind::Ok, 200, "") == O::Store);
  CHECK(upstream_outcome(Kind::HttpError, 400, "SupplierMaster.NotFound") == O::PassThrough);
  CHECK(upstream_outcome(Kind::HttpError, 403, "User.NotPrivileged") == O::PassThrough);
  CHECK(upstream_outcome(Kind::HttpError, 404, "Route.NotFound") == O::PassThrough);
  CHECK(upstream_outcome(Kind::HttpError, 500, "Server.InternalError") == O::UseCache);
  CHECK(upstream_outcome(Kind::HttpError, 503, "") == O::UseCache);
  CHECK(upstream_outcome(Kind::HttpError, 429, "") == O::UseCache);
  CHECK(upstream_outcome(Kind::Transport, 0, "") == O::UseCache);
  CHECK(upstream_outcome(Kind::LockedOut, 0, "") == O::UseCache);
  CHECK(upstream_outcome(Kind::AuthFailed, 401, "User.InvalidCredentials") == O::UseCache);
}

TEST_CASE("Analytics cache: when a key is fetched again, and a copy's age", "[analytics_cache]") {
  using knosc::daemon::cached_age;
  using knosc::daemon::refresh_due;
  knosc::daemon::AnalyticsCacheTuning t;
  t.refresh_after = std::chrono::seconds(300);
  t.recent_use = std::chrono::seconds(3600);
  const std::int64_t now = 1'000'000;
  CHECK(refresh_due(std::nullopt, now, now, t));             // used, never stored
  CHECK_FALSE(refresh_due(now - 299, now - 10, now, t));     // fresh enough
  CHECK(refresh_due(now - 300, now - 10, now, t));           // old enough and in use
  CHECK(refresh_due(now - 5000, now - 3600, now, t));        // used just within the window
  CHECK_FALSE(refresh_due(now - 5000, now - 3601, now, t));  // not used lately: left alone
  CHECK_FALSE(refresh_due(std::nullopt, now - 7200, now, t));

  CHECK(cached_age(now - 42, now) == 42);
  CHECK(cached_age(now + 5, now) == 0);  // the clock was set back
}

TEST_CASE("Analytics cache: the navigation bar a caller sees", "[analytics_cache]") {
  using knosc::daemon::navigation_bar_for;
  const auto upstream = nlohmann::ordered_json::parse(R"({"data": [
    {"name": "Procurement", "path": "/procurement", "access": "Edit"},
    {"name": "Demand", "path": "/demand", "access": "Edit"},
    {"name": "Dashboard", "path": "/dashboard", "access": "Edit"},
    {"name": "Users", "path": "/users", "access": "Edit"}]})");
  const auto viewer = privileges({{"Procurement", Access::View},
                                  {"Dashboard", Access::Edit},
                                  {"Users", Access::None},
                                  {"Scenarios", Access::View}});
  const auto bar = navigation_bar_for(upstream, viewer);
  CHECK(bar.dump() == nlohmann::ordered_json::parse(R"({"data": [
    {"name": "Procurement", "path": "/procurement", "access": "View"},
    {"name": "Dashboard", "path": "/dashboard", "access": "Edit"}]})")
                          .dump());
  // Bodies of another shape pass unchanged.
  const auto odd = nlohmann::ordered_json::parse(R"({"items": [1, 2]})");
  CHECK(navigation_bar_for(odd, viewer) == odd);
}
