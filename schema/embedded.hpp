#pragma once
// Text compiled into the binary from schema/catalog.toml and schema/migrations/*.sql (see
// schema/embed.cmake).
#include <string_view>
#include <vector>

namespace knosc::schema::embedded {
extern const std::string_view kCatalog;
// Migration N (1-based) is kMigrations[N - 1]; the replica's PRAGMA user_version is the last applied N.
extern const std::vector<std::string_view> kMigrations;
}  // namespace knosc::schema::embedded
