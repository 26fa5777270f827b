#pragma once
// `knosc-syncd status`: what the replica says about each resource, as text for people or JSON for tools.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/local_auth.hpp"
#include "replica/clock.hpp"
#include "replica/replica.hpp"
#include "sync/link_state.hpp"

namespace knosc::daemon {

// Knosc's time format, which the status uses too.
using replica::iso8601_utc;

// `running` says whether a daemon holds the state directory's lock right now.
nlohmann::ordered_json status_json(const replica::ReplicaStatus& status, bool running);
std::string status_text(const replica::ReplicaStatus& status, bool running, std::int64_t now);

// The link to Knosc as every report shows it: {"state": "online"|"offline"|"unknown", "since": ISO 8601 UTC
// or null, "reason"}.
nlohmann::ordered_json upstream_json(const sync::LinkReport& link);
// Its lines of /metrics (Prometheus text format).
std::string upstream_metrics(const sync::LinkReport& link);

// --- The offline horizon
// ------------------------------------------------------------------------------------ What runs out while
// the link is down: how long it has been down, how old the oldest local change still waiting for Knosc is,
// and for each cached user when logging in offline stops working (verified_at + offline_login_ttl_seconds),
// or that it never will (two-factor accounts, credentials Knosc refused since). The running daemon reads it
// every few seconds (LocalAuth drives this), keeps it in the replica's daemon state for `knosc-syncd status`
// and /syncd/status, and warns in the log once per item when 80 % of a horizon has passed while the link is
// down. /metrics reads it live.

struct OfflineHorizon {
  std::optional<std::int64_t> outbox_oldest_pending_at;  // created_at of the oldest open outbox entry
  std::vector<CachedLogin> logins;
  std::int64_t offline_login_ttl_seconds = 0;
};

// Reads it from the replica (writer or reader connection).
OfflineHorizon read_offline_horizon(replica::Replica& rep, std::int64_t offline_login_ttl_seconds);
// The daemon_state key and value it is kept under; nullopt when absent or unreadable.
inline constexpr const char* kOfflineHorizonStateKey = "offline_horizon";
std::string offline_horizon_state(const OfflineHorizon& horizon);
std::optional<OfflineHorizon> offline_horizon_from_state(const std::map<std::string, std::string>& state);

// When offline login stops working for a cached user; nullopt when it cannot work at all.
std::optional<std::int64_t> offline_login_expires_at(const CachedLogin& login, std::int64_t ttl_seconds);

// As reports show it: {"link_down_since", "link_down_seconds", "outbox_oldest_pending_at",
// "outbox_oldest_pending_seconds", "offline_logins": [...], "cannot_log_in_offline": [...]}.
nlohmann::ordered_json offline_horizon_json(const OfflineHorizon& horizon, const sync::LinkReport& link,
                                            std::int64_t now);
std::string offline_horizon_text(const OfflineHorizon& horizon, const sync::LinkReport& link,
                                 std::int64_t now);
std::string offline_horizon_metrics(const OfflineHorizon& horizon, const sync::LinkReport& link,
                                    std::int64_t now);

// One thing that runs out: it started at `start` and stops working at `end`.
struct HorizonItem {
  std::string key;   // identifies it across checks (a new login gives a new key)
  std::string what;  // for people, e.g. "offline login of 'ann@acme.example'"
  std::int64_t start = 0;
  std::int64_t end = 0;
};
struct HorizonWarning {
  std::string key;
  std::string message;
};
// The items with a horizon: offline logins that work now (not two-factor, not refused by Knosc).
std::vector<HorizonItem> horizon_items(const OfflineHorizon& horizon);
// The warnings to log now: while the link is down, each item once `fraction` of its span has passed (and once
// only: its key goes into `warned`). Nothing while the link is up. Pure.
std::vector<HorizonWarning> horizon_warnings(const std::vector<HorizonItem>& items, bool link_down,
                                             std::int64_t now, std::set<std::string>& warned,
                                             double fraction = 0.8);

}  // namespace knosc::daemon
