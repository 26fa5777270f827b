#pragma once
// `knosc-syncd status`: what the replica says about each resource, as text for people or JSON for tools.

#include <nlohmann/json.hpp>
#include <string>

#include "replica/replica.hpp"
#include "sync/link_state.hpp"

namespace knosc::daemon {

std::string iso8601_utc(std::int64_t unix_seconds);

// `running` says whether a daemon holds the state directory's lock right now.
nlohmann::ordered_json status_json(const replica::ReplicaStatus& status, bool running);
std::string status_text(const replica::ReplicaStatus& status, bool running, std::int64_t now);

// The link to Knosc as every report shows it: {"state": "online"|"offline"|"unknown", "since": ISO 8601 UTC
// or null, "reason"}.
nlohmann::ordered_json upstream_json(const sync::LinkReport& link);
// Its lines of /metrics (Prometheus text format).
std::string upstream_metrics(const sync::LinkReport& link);

}  // namespace knosc::daemon
