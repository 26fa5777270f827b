// The offline horizon (daemon/status_report.hpp): which warnings are due, by table, and how reports show it.

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "daemon/status_report.hpp"

namespace {

using knosc::daemon::CachedLogin;
using knosc::daemon::HorizonItem;
using knosc::daemon::OfflineHorizon;

constexpr std::int64_t kDay = 24 * 3600;

}  // namespace

TEST_CASE("horizon_warnings: once per item, from 80 % of its span, only while the link is down",
          "[offline_horizon]") {
  const HorizonItem week{"a", "offline login of 'a'", 1000, 1000 + 7 * kDay};
  const HorizonItem short_one{"b", "offline login of 'b'", 1000, 1100};
  struct Row {
    const char* what;
    std::vector<HorizonItem> items;
    bool link_down;
    std::int64_t now;
    std::set<std::string> warned_before;
    std::vector<std::string> expected;  // keys warned about now
  };
  const std::int64_t at80 = 1000 + (7 * kDay * 8 + 9) / 10;  // ceil(0.8 x span)
  const std::vector<Row> rows = {
      {"before 80 %", {week}, true, at80 - 1, {}, {}},
      {"at 80 %", {week}, true, at80, {}, {"a"}},
      {"past the end, never warned", {week}, true, 1000 + 8 * kDay, {}, {"a"}},
      {"already warned", {week}, true, at80 + 10, {"a"}, {}},
      {"link up: no warning", {week}, false, at80 + 10, {}, {}},
      {"link unknown counts as up", {short_one}, false, 1099, {}, {}},
      {"two items, one due", {week, short_one}, true, 1080, {}, {"b"}},
      {"two items, both due", {week, short_one}, true, at80, {}, {"a", "b"}},
      {"both due, one warned", {week, short_one}, true, at80, {"b"}, {"a"}},
      {"an empty span is never warned", {HorizonItem{"c", "c", 50, 50}}, true, 100, {}, {}},
      {"a span the wrong way round is never warned", {HorizonItem{"d", "d", 60, 50}}, true, 100, {}, {}},
  };
  for (const auto& row : rows) {
    INFO(row.what);
    std::set<std::string> warned = row.warned_before;
    const auto warnings = knosc::daemon::horizon_warnings(row.items, row.link_down, row.now, warned);
    std::vector<std::string> keys;
    for (const auto& w : warnings) {
      keys.push_back(w.key);
      CHECK_FALSE(w.message.empty());
    }
    CHECK(keys == row.expected);
    for (const auto& k : row.expected)
      CHECK(warned.count(k) == 1);
    // Asking again at the same moment warns about nothing more.
    CHECK(knosc::daemon::horizon_warnings(row.items, row.link_down, row.now, warned).empty());
  }
}

TEST_CASE("horizon_warnings says whether the horizon is still ahead or already passed", "[offline_horizon]") {
  const HorizonItem item{"k", "offline login of 'ann@acme.example'", 0, 100};
  std::set<std::string> warned;
  auto ahead = knosc::daemon::horizon_warnings({item}, true, 80, warned);
  REQUIRE(ahead.size() == 1);
  CHECK(ahead[0].message.find("offline login of 'ann@acme.example' stops working at 1970-01-01T00:01:40Z") ==
        0);
  warned.clear();
  auto passed = knosc::daemon::horizon_warnings({item}, true, 100, warned);
  REQUIRE(passed.size() == 1);
  CHECK(passed[0].message.find("stopped working") != std::string::npos);
}

TEST_CASE("horizon_items: usable offline logins only, keyed by the login that cached them",
          "[offline_horizon]") {
  OfflineHorizon h;
  h.offline_login_ttl_seconds = 3600;
  h.logins = {CachedLogin{"ann@acme.example", 1000, false}, CachedLogin{"tfa@acme.example", 1000, true},
              CachedLogin{"gone@acme.example", 0, false}};
  const auto items = knosc::daemon::horizon_items(h);
  REQUIRE(items.size() == 1);
  CHECK(items[0].start == 1000);
  CHECK(items[0].end == 4600);
  // A later login caches afresh: a new item, which can be warned about again.
  h.logins[0].verified_at = 2000;
  CHECK(knosc::daemon::horizon_items(h)[0].key != items[0].key);
}

TEST_CASE("the horizon in status JSON, daemon state and metrics", "[offline_horizon]") {
  OfflineHorizon h;
  h.offline_login_ttl_seconds = 100;
  h.outbox_oldest_pending_at = 950;
  h.logins = {CachedLogin{"ann@acme.example", 920, false}, CachedLogin{"t\"fa@acme.example", 990, true}};
  knosc::sync::LinkReport down{knosc::sync::LinkStatus::Offline, 900, "no answer"};
  const std::int64_t now = 1000;

  const auto j = knosc::daemon::offline_horizon_json(h, down, now);
  CHECK(j["link_down_seconds"] == 100);
  CHECK(j["outbox_oldest_pending_seconds"] == 50);
  CHECK(j["offline_logins"][0]["offline_login_seconds_left"] == 20);
  CHECK(j["offline_logins"][0]["offline_login"] == true);
  CHECK(j["offline_logins"][1]["offline_login"] == false);
  CHECK(j["cannot_log_in_offline"].size() == 1);

  const knosc::sync::LinkReport up{knosc::sync::LinkStatus::Online, 900, ""};
  CHECK(knosc::daemon::offline_horizon_json(h, up, now)["link_down_seconds"].is_null());

  // Kept in the daemon state and read back as it was.
  std::map<std::string, std::string> state{
      {knosc::daemon::kOfflineHorizonStateKey, knosc::daemon::offline_horizon_state(h)}};
  const auto back = knosc::daemon::offline_horizon_from_state(state);
  REQUIRE(back);
  CHECK(back->outbox_oldest_pending_at == h.outbox_oldest_pending_at);
  REQUIRE(back->logins.size() == 2);
  CHECK(back->logins[1].two_factor);
  CHECK_FALSE(knosc::daemon::offline_horizon_from_state({}));
  CHECK_FALSE(knosc::daemon::offline_horizon_from_state({{knosc::daemon::kOfflineHorizonStateKey, "{bad"}}));

  const std::string m = knosc::daemon::offline_horizon_metrics(h, down, now);
  CHECK(m.find("knosc_syncd_link_down_seconds 100\n") != std::string::npos);
  CHECK(m.find("knosc_syncd_outbox_oldest_pending_seconds 50\n") != std::string::npos);
  // /metrics needs no session: it counts users and names none.
  CHECK(m.find("knosc_syncd_offline_login_next_expiry_seconds 20\n") != std::string::npos);
  CHECK(m.find("knosc_syncd_offline_login_users{state=\"valid\"} 1\n") != std::string::npos);
  CHECK(m.find("knosc_syncd_offline_login_users{state=\"two_factor\"} 1\n") != std::string::npos);
  CHECK(m.find("acme.example") == std::string::npos);
  CHECK(knosc::daemon::offline_horizon_metrics(h, up, now).find("knosc_syncd_link_down_seconds 0\n") !=
        std::string::npos);
}
