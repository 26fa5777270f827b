#include "daemon/status_report.hpp"

#include <ctime>
#include <sstream>

namespace knosc::daemon {
namespace {

nlohmann::ordered_json optional_time(const std::optional<std::int64_t>& t) {
  return t ? nlohmann::ordered_json(iso8601_utc(*t)) : nlohmann::ordered_json();
}

std::string ago(std::int64_t now, std::int64_t then) {
  const std::int64_t s = std::max<std::int64_t>(0, now - then);
  if (s < 120) return std::to_string(s) + " s ago";
  if (s < 7200) return std::to_string(s / 60) + " min ago";
  if (s < 172800) return std::to_string(s / 3600) + " h ago";
  return std::to_string(s / 86400) + " days ago";
}

// What a report says of the link: a stopped daemon cannot vouch for it, whatever it last recorded.
sync::LinkReport link_of(const replica::ReplicaStatus& status, bool running) {
  if (!running) return {sync::LinkStatus::Unknown, std::nullopt, "knosc-syncd is not running"};
  return sync::link_report_from_state(status.state);
}

}  // namespace

std::string iso8601_utc(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::ordered_json status_json(const replica::ReplicaStatus& status, bool running) {
  nlohmann::ordered_json out;
  const auto link = link_of(status, running);
  out["online"] = link.status == sync::LinkStatus::Online;
  out["upstream"] = upstream_json(link);
  out["running"] = running;
  auto loopback = status.state.find("loopback_base");
  out["loopback_base"] = running && loopback != status.state.end() ? nlohmann::ordered_json(loopback->second)
                                                                   : nlohmann::ordered_json();
  out["schema_version"] = status.schema_version;
  auto skew = status.state.find("clock_skew_seconds");
  out["clock_skew_seconds"] = skew == status.state.end() ? nlohmann::ordered_json()
                                                         : nlohmann::ordered_json(std::stoll(skew->second));
  nlohmann::ordered_json resources = nlohmann::ordered_json::object();
  for (const auto& r : status.resources) {
    nlohmann::ordered_json j;
    j["rows"] = r.rows;
    j["last_complete_pass_at"] = optional_time(r.last_complete_at);
    nlohmann::ordered_json progress;
    progress["in_progress"] = r.in_progress;
    progress["pass"] = r.generation;
    progress["next_page"] = r.in_progress ? nlohmann::ordered_json(r.next_page) : nlohmann::ordered_json();
    progress["pages_done"] = r.pages_done;
    progress["rows_seen"] = r.rows_seen;
    progress["rows_written"] = r.rows_written;
    progress["started_at"] = optional_time(r.started_at);
    progress["pending_deletion_checks"] = r.pending_deletion_checks;
    progress["nested_fetches_due"] = r.nested_due;
    j["pass_progress"] = progress;
    j["last_pass_seconds"] =
        r.last_pass_seconds ? nlohmann::ordered_json(*r.last_pass_seconds) : nlohmann::ordered_json();
    j["access"] = r.access;
    if (r.last_error) {
      j["last_error"] = {{"message", *r.last_error}, {"at", optional_time(r.last_error_at)}};
    } else {
      j["last_error"] = nullptr;
    }
    resources[r.name] = j;
  }
  out["resources"] = resources;
  return out;
}

std::string status_text(const replica::ReplicaStatus& status, bool running, std::int64_t now) {
  std::ostringstream o;
  o << "knosc-syncd: " << (running ? "running" : "not running");
  if (running) {
    const auto link = link_of(status, running);
    o << ", upstream "
      << (link.status == sync::LinkStatus::Offline ? "OFFLINE" : std::string(sync::to_string(link.status)));
    if (link.since) o << " since " << iso8601_utc(*link.since) << " (" << ago(now, *link.since) << ")";
    if (!link.reason.empty()) o << ": " << link.reason;
  }
  o << "\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %9s  %-22s %s\n", "RESOURCE", "ROWS", "LAST COMPLETE PASS",
                "STATE");
  o << line;
  for (const auto& r : status.resources) {
    std::string last = r.last_complete_at ? ago(now, *r.last_complete_at) : "never";
    std::string state;
    if (r.access == "forbidden") {
      state = "not readable by the service account (403)";
    } else if (r.in_progress) {
      state = "pass " + std::to_string(r.generation) + ": page " + std::to_string(r.next_page) + ", " +
              std::to_string(r.rows_seen) + " rows listed";
    } else {
      state = "idle";
    }
    if (r.pending_deletion_checks > 0)
      state += ", " + std::to_string(r.pending_deletion_checks) + " deletion checks";
    if (r.last_error) state += "; last error: " + *r.last_error;
    std::snprintf(line, sizeof line, "%-24s %9lld  %-22s ", r.name.c_str(), static_cast<long long>(r.rows),
                  last.c_str());
    o << line << state << "\n";
  }
  return o.str();
}

nlohmann::ordered_json upstream_json(const sync::LinkReport& link) {
  nlohmann::ordered_json out;
  out["state"] = std::string(sync::to_string(link.status));
  out["since"] = optional_time(link.since);
  out["reason"] = link.reason;
  return out;
}

std::string upstream_metrics(const sync::LinkReport& link) {
  std::ostringstream o;
  o << "# HELP knosc_syncd_upstream_online Whether the link to Knosc is up (1) or not (0: down, or not known "
       "yet).\n"
    << "# TYPE knosc_syncd_upstream_online gauge\n"
    << "knosc_syncd_upstream_online " << (link.status == sync::LinkStatus::Online ? 1 : 0) << "\n";
  if (link.since)
    o << "# HELP knosc_syncd_upstream_state_since_timestamp_seconds When the link to Knosc last changed "
         "state.\n"
      << "# TYPE knosc_syncd_upstream_state_since_timestamp_seconds gauge\n"
      << "knosc_syncd_upstream_state_since_timestamp_seconds " << *link.since << "\n";
  return o.str();
}

}  // namespace knosc::daemon
