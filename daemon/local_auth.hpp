#pragma once
// Authentication on the loopback API, exactly as Knosc does it (same routes, cookies, paths, CSRF rules), for
// the plant's tools and their people.
//
// Online, a login is checked upstream with the user's own credentials (never the service account's), and
// upstream's profile (privileges, granular filters) is fetched; the password is then kept as a salted slow
// hash (PBKDF2-HMAC-SHA256) with that profile. Offline, logins are checked against that cache until it is
// older than `offline_login_ttl_seconds`. Sessions are random tokens; only their hashes are stored.
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. Persistent state lives
// in the replica (tables local_user and local_session) and is written through the ReplicaWriter; sessions and
// users are also held in memory so checking a request never waits for the database.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/http_server.hpp"
#include "replica/list_query.hpp"
#include "replica/writer.hpp"
#include "sync/http_client.hpp"
#include "sync/loop_inbox.hpp"

namespace knosc::daemon {

enum class Access { None = 0, View = 1, Edit = 2 };

// What a user may do, as upstream's profile says: "<Module> / View|Edit" and granular row filters.
struct Privileges {
  std::map<std::string, Access> modules;  // module name -> access (absent = None)
  std::vector<replica::GranularFilter> granular;
  std::string role_name;

  // Edit implies View.
  bool allows(const std::string& module, Access needed) const;
  bool is_administrator() const { return role_name == "Administrator" || role_name == "Superuser"; }
  // From upstream's GET /api/profile body ({"data": {"Privileges": [{"type","access"}], "Granular Filters":
  // [...], "Role Name": ...}}). Unknown access values count as None.
  static Privileges from_profile(const nlohmann::json& profile_data);
};

struct LocalSession {
  std::string username;
  std::int64_t user_id = 0;
  Privileges privileges;
  nlohmann::json profile;  // upstream's profile "data", served by GET /api/profile
  std::string csrf;        // value the tool must echo in X-XSRF-TOKEN on writes
  std::int64_t expires_at = 0;
};

struct LocalAuthOptions {
  std::string upstream_base_url;  // e.g. http://127.0.0.1:9000/api
  sync::TlsOptions tls;
  sync::HttpTimeouts timeouts;
  std::int64_t access_ttl_seconds = 15 * 60;
  std::int64_t refresh_ttl_seconds = 30 * 24 * 3600;
  std::int64_t offline_login_ttl_seconds =
      7 * 24 * 3600;                       // cached credentials older than this are refused offline
  std::int64_t lockout_base_seconds = 30;  // offline lockout: 3 failures, then 2^(n-3) x this
  int pbkdf2_iterations = 210'000;         // OWASP's 2023 figure for PBKDF2-HMAC-SHA256
  // The longest a login waits for Knosc's verdict; then the cached credential decides (and Knosc's verdict,
  // when it comes, still refreshes the cache or ends the session opened from it).
  std::chrono::milliseconds login_wait{1500};
};

class LocalAuth {
 public:
  // `upstream_online` tells whether the link to Knosc is believed up (the puller's view); when it is not,
  // logins go straight to the cache instead of waiting for a connect timeout.
  LocalAuth(uv_loop_t* loop, LocalAuthOptions options, replica::ReplicaWriter& writer, sync::LoopInbox& inbox,
            std::function<std::optional<bool>()> upstream_online);
  ~LocalAuth();
  LocalAuth(const LocalAuth&) = delete;
  LocalAuth& operator=(const LocalAuth&) = delete;

  // Loads stored users and unexpired sessions; `done` runs on the loop thread when they are in memory.
  void start(std::function<void()> done);
  // Cancels upstream checks in flight and closes handles; `done` runs when all are closed.
  void close(std::function<void()> done);

  // The auth routes (bodies, cookies and status codes as Knosc's).
  void authenticate(const HttpRequest& request, Responder respond);  // POST /api/authenticate
  void verify_2fa(const HttpRequest& request, Responder respond);    // POST /api/verify-2fa
  void refresh(const HttpRequest& request, Responder respond);       // POST /api/token-refresh
  void logout(const HttpRequest& request, Responder respond);  // POST /api/logout (needs session + CSRF)

  // The session a request's access cookie belongs to, or the Knosc 401 to answer (Token.Missing,
  // Token.Expired, Token.Invalid). The pointer is valid until control returns to the loop (a logout or the
  // purge of expired sessions may remove it then); copy what must outlive the current callback.
  std::variant<const LocalSession*, HttpResponse> session_for(const HttpRequest& request) const;
  // For POST/PUT/PATCH/DELETE: the 422 CSRF.Invalid answer when X-XSRF-TOKEN is not the session's value.
  std::optional<HttpResponse> check_csrf(const HttpRequest& request, const LocalSession& session) const;

  std::size_t active_sessions() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A cached credential as the offline horizon shows it (daemon/status_report.hpp).
struct CachedLogin {
  std::string username;
  std::int64_t verified_at = 0;  // 0: Knosc refused the cached password since; never usable offline
  bool two_factor = false;       // never usable offline
};
// Every cached credential in the replica's local_user table, by username (any connection, any thread).
std::vector<CachedLogin> cached_logins(replica::Replica& rep);

// --- Pure helpers (table-tested) ---------------------------------------------------------------------------

// Set-Cookie values exactly as Knosc sends them (API notes §2.1, §2.2).
std::vector<std::string> login_cookies(const std::string& access, const std::string& refresh,
                                       const std::string& csrf_access, const std::string& csrf_refresh);
std::vector<std::string> logout_cookies();
// A cookie's value from a Cookie request header.
std::optional<std::string> cookie_value(std::string_view cookie_header, std::string_view name);

// The offline lockout rule, as Knosc's: after 3 consecutive failures the account is locked for
// 2^(failures-3) x base seconds. Returns the lock's end (0 = not locked) after `failures` failures at `now`.
std::int64_t lockout_until(int failures, std::int64_t now, std::int64_t base_seconds);

// PBKDF2-HMAC-SHA256 and a constant-time comparison.
std::string pbkdf2_sha256(const std::string& password, const std::string& salt, int iterations);
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace knosc::daemon
