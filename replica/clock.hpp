#pragma once
// The wall clock as the replica stores it and Knosc stamps it. One definition for every module: the replica
// records times in unix seconds (passes, outbox entries, sessions), and the times Knosc stamps on records
// (`Created At`, `Updated At`) are ISO 8601 in UTC with whole seconds.

#include <cstdint>
#include <string>

namespace knosc::replica {

// Seconds since the epoch, now.
std::int64_t unix_now();

// A time as Knosc stamps it, e.g. "2024-03-05T14:00:00Z".
std::string iso8601_utc(std::int64_t unix_seconds);

}  // namespace knosc::replica
