#include "daemon/status_report.hpp"

#include <cmath>
#include <ctime>
#include <limits>
#include <sstream>

#include "replica/outbox.hpp"

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
  if (auto horizon = offline_horizon_from_state(status.state)) {
    out["offline_horizon"] =
        offline_horizon_json(*horizon, link, static_cast<std::int64_t>(std::time(nullptr)));
  } else {
    out["offline_horizon"] = nullptr;
  }
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
  o << "\n";
  if (auto horizon = offline_horizon_from_state(status.state))
    o << offline_horizon_text(*horizon, link_of(status, running), now);
  o << "\n";
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

// --- The offline horizon
// ------------------------------------------------------------------------------------

namespace {

std::optional<std::int64_t> link_down_since(const sync::LinkReport& link) {
  if (link.status != sync::LinkStatus::Offline) return std::nullopt;
  return link.since;
}

std::string duration(std::int64_t s) {
  if (s < 0) s = 0;
  if (s < 120) return std::to_string(s) + " s";
  if (s < 7200) return std::to_string(s / 60) + " min";
  if (s < 172800) return std::to_string(s / 3600) + " h";
  return std::to_string(s / 86400) + " days";
}

}  // namespace

OfflineHorizon read_offline_horizon(replica::Replica& rep, std::int64_t offline_login_ttl_seconds) {
  OfflineHorizon h;
  h.offline_login_ttl_seconds = offline_login_ttl_seconds;
  // Open entries come in seq order, so the first is the oldest change not yet in Knosc.
  const auto oldest = replica::open_entries(rep, 0, 1);
  if (!oldest.empty()) h.outbox_oldest_pending_at = oldest.front().created_at;
  h.logins = cached_logins(rep);
  return h;
}

std::string offline_horizon_state(const OfflineHorizon& horizon) {
  nlohmann::json j;
  j["outbox_oldest_pending_at"] =
      horizon.outbox_oldest_pending_at ? nlohmann::json(*horizon.outbox_oldest_pending_at) : nlohmann::json();
  j["offline_login_ttl_seconds"] = horizon.offline_login_ttl_seconds;
  nlohmann::json logins = nlohmann::json::array();
  for (const auto& l : horizon.logins)
    logins.push_back(
        {{"username", l.username}, {"verified_at", l.verified_at}, {"two_factor", l.two_factor}});
  j["logins"] = std::move(logins);
  return j.dump();
}

std::optional<OfflineHorizon> offline_horizon_from_state(const std::map<std::string, std::string>& state) {
  const auto it = state.find(kOfflineHorizonStateKey);
  if (it == state.end()) return std::nullopt;
  const auto j = nlohmann::json::parse(it->second, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    OfflineHorizon h;
    if (j.contains("outbox_oldest_pending_at") && j["outbox_oldest_pending_at"].is_number_integer())
      h.outbox_oldest_pending_at = j["outbox_oldest_pending_at"].get<std::int64_t>();
    h.offline_login_ttl_seconds = j.value("offline_login_ttl_seconds", std::int64_t{0});
    for (const auto& l : j.value("logins", nlohmann::json::array())) {
      CachedLogin c;
      c.username = l.value("username", std::string());
      c.verified_at = l.value("verified_at", std::int64_t{0});
      c.two_factor = l.value("two_factor", false);
      h.logins.push_back(std::move(c));
    }
    return h;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

std::optional<std::int64_t> offline_login_expires_at(const CachedLogin& login, std::int64_t ttl_seconds) {
  if (login.two_factor || login.verified_at <= 0) return std::nullopt;
  if (login.verified_at > std::numeric_limits<std::int64_t>::max() - ttl_seconds) return std::nullopt;
  return login.verified_at + ttl_seconds;
}

nlohmann::ordered_json offline_horizon_json(const OfflineHorizon& horizon, const sync::LinkReport& link,
                                            std::int64_t now) {
  using OJson = nlohmann::ordered_json;
  OJson out;
  const auto down = link_down_since(link);
  out["link_down_since"] = down ? OJson(iso8601_utc(*down)) : OJson();
  out["link_down_seconds"] = down ? OJson(std::max<std::int64_t>(0, now - *down)) : OJson();
  const auto& oldest = horizon.outbox_oldest_pending_at;
  out["outbox_oldest_pending_at"] = oldest ? OJson(iso8601_utc(*oldest)) : OJson();
  out["outbox_oldest_pending_seconds"] = oldest ? OJson(std::max<std::int64_t>(0, now - *oldest)) : OJson();
  out["offline_login_ttl_seconds"] = horizon.offline_login_ttl_seconds;
  OJson logins = OJson::array();
  OJson cannot = OJson::array();
  for (const auto& l : horizon.logins) {
    const auto expires = offline_login_expires_at(l, horizon.offline_login_ttl_seconds);
    OJson j;
    j["user"] = l.username;
    j["verified_at"] = l.verified_at > 0 ? OJson(iso8601_utc(l.verified_at)) : OJson();
    j["offline_login_until"] = expires ? OJson(iso8601_utc(*expires)) : OJson();
    j["offline_login_seconds_left"] = expires ? OJson(std::max<std::int64_t>(0, *expires - now)) : OJson();
    j["offline_login"] = expires && *expires > now;
    if (!expires) {
      const char* why = l.two_factor ? "two-factor authentication, which only Knosc can check"
                                     : "Knosc refused the cached password since";
      j["why_not"] = why;
      cannot.push_back(OJson{{"user", l.username}, {"why", why}});
    } else if (*expires <= now) {
      j["why_not"] = "the cached credential is older than offline_login_ttl_seconds";
    }
    logins.push_back(std::move(j));
  }
  out["offline_logins"] = std::move(logins);
  out["cannot_log_in_offline"] = std::move(cannot);
  return out;
}

std::string offline_horizon_text(const OfflineHorizon& horizon, const sync::LinkReport& link,
                                 std::int64_t now) {
  std::ostringstream o;
  const auto down = link_down_since(link);
  o << "offline horizon:";
  if (down) o << " link down for " << duration(now - *down) << ";";
  if (horizon.outbox_oldest_pending_at) {
    o << " oldest change waiting for Knosc made " << ago(now, *horizon.outbox_oldest_pending_at) << "\n";
  } else {
    o << " no change waiting for Knosc\n";
  }
  for (const auto& l : horizon.logins) {
    const auto expires = offline_login_expires_at(l, horizon.offline_login_ttl_seconds);
    o << "  " << l.username << ": ";
    if (!expires) {
      o << (l.two_factor ? "cannot log in offline (two-factor authentication)"
                         : "cannot log in offline (Knosc refused the cached password)");
    } else if (*expires <= now) {
      o << "offline login stopped working at " << iso8601_utc(*expires);
    } else {
      o << "offline login works until " << iso8601_utc(*expires) << " (" << duration(*expires - now)
        << " left)";
    }
    o << "\n";
  }
  return o.str();
}

std::string offline_horizon_metrics(const OfflineHorizon& horizon, const sync::LinkReport& link,
                                    std::int64_t now) {
  std::ostringstream o;
  const auto down = link_down_since(link);
  o << "# HELP knosc_syncd_link_down_seconds How long the link to Knosc has been down (0 while it is not).\n"
    << "# TYPE knosc_syncd_link_down_seconds gauge\n"
    << "knosc_syncd_link_down_seconds " << (down ? std::max<std::int64_t>(0, now - *down) : 0) << "\n";
  o << "# HELP knosc_syncd_outbox_oldest_pending_seconds Age of the oldest local change not yet in Knosc (0: "
       "none).\n"
    << "# TYPE knosc_syncd_outbox_oldest_pending_seconds gauge\n"
    << "knosc_syncd_outbox_oldest_pending_seconds "
    << (horizon.outbox_oldest_pending_at ? std::max<std::int64_t>(0, now - *horizon.outbox_oldest_pending_at)
                                         : 0)
    << "\n";
  // /metrics needs no session, so it names no user: counts, and the soonest expiry. Who is which is in
  // /syncd/status and `knosc-syncd status`.
  std::optional<std::int64_t> soonest;
  std::int64_t valid = 0, expired = 0, two_factor = 0, refused = 0;
  for (const auto& l : horizon.logins) {
    if (const auto expires = offline_login_expires_at(l, horizon.offline_login_ttl_seconds)) {
      if (*expires > now) {
        ++valid;
        soonest = soonest ? std::min(*soonest, *expires) : *expires;
      } else {
        ++expired;
      }
    } else if (l.two_factor) {
      ++two_factor;
    } else {
      ++refused;
    }
  }
  o << "# HELP knosc_syncd_offline_login_users Cached users by whether they can log in while Knosc is "
       "unreachable (two_factor and refused_by_knosc: never; expired: not until they log in online again).\n"
    << "# TYPE knosc_syncd_offline_login_users gauge\n"
    << "knosc_syncd_offline_login_users{state=\"valid\"} " << valid << "\n"
    << "knosc_syncd_offline_login_users{state=\"expired\"} " << expired << "\n"
    << "knosc_syncd_offline_login_users{state=\"two_factor\"} " << two_factor << "\n"
    << "knosc_syncd_offline_login_users{state=\"refused_by_knosc\"} " << refused << "\n";
  o << "# HELP knosc_syncd_offline_login_next_expiry_seconds Seconds until the first cached user's offline "
       "login stops working (absent: no user can log in offline).\n"
    << "# TYPE knosc_syncd_offline_login_next_expiry_seconds gauge\n";
  if (soonest) o << "knosc_syncd_offline_login_next_expiry_seconds " << (*soonest - now) << "\n";
  return o.str();
}

std::vector<HorizonItem> horizon_items(const OfflineHorizon& horizon) {
  std::vector<HorizonItem> items;
  for (const auto& l : horizon.logins) {
    const auto expires = offline_login_expires_at(l, horizon.offline_login_ttl_seconds);
    if (!expires) continue;
    items.push_back(HorizonItem{"offline-login:" + l.username + "@" + std::to_string(l.verified_at),
                                "offline login of '" + l.username + "'", l.verified_at, *expires});
  }
  return items;
}

std::vector<HorizonWarning> horizon_warnings(const std::vector<HorizonItem>& items, bool link_down,
                                             std::int64_t now, std::set<std::string>& warned,
                                             double fraction) {
  std::vector<HorizonWarning> out;
  if (!link_down) return out;
  for (const auto& item : items) {
    if (item.end <= item.start || warned.count(item.key)) continue;
    const double span = static_cast<double>(item.end - item.start);
    const auto threshold = item.start + static_cast<std::int64_t>(std::ceil(span * fraction));
    if (now < threshold) continue;
    warned.insert(item.key);
    std::string message;
    if (now >= item.end) {
      message = item.what + " stopped working at " + iso8601_utc(item.end) + " while Knosc is unreachable";
    } else {
      message = item.what + " stops working at " + iso8601_utc(item.end) + " (in " +
                duration(item.end - now) + ") unless Knosc is reachable again by then";
    }
    out.push_back(HorizonWarning{item.key, std::move(message)});
  }
  return out;
}

}  // namespace knosc::daemon
