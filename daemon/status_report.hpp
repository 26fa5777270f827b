#pragma once
// `knosc-syncd status`: what the replica says about each resource, as text for people or JSON for tools.

#include <nlohmann/json.hpp>
#include <string>

#include "replica/replica.hpp"

namespace knosc::daemon {

std::string iso8601_utc(std::int64_t unix_seconds);

// `running` says whether a daemon holds the state directory's lock right now.
nlohmann::ordered_json status_json(const replica::ReplicaStatus& status, bool running);
std::string status_text(const replica::ReplicaStatus& status, bool running, std::int64_t now);

}  // namespace knosc::daemon
