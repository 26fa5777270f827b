#include "daemon/local_auth.hpp"

#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "daemon/status_report.hpp"
#include "daemon/upstream_answer.hpp"

namespace knosc::daemon {

namespace {

using Json = nlohmann::json;

constexpr const char* kAccessCookie = "access_token_cookie";
constexpr const char* kRefreshCookie = "refresh_token_cookie";
constexpr const char* kCsrfAccessCookie = "csrf_access_token";
constexpr const char* kCsrfRefreshCookie = "csrf_refresh_token";
constexpr const char* kRefreshPath = "/api/token-refresh";
constexpr const char* kExpiredAttribute = "Expires=Thu, 01 Jan 1970 00:00:00 GMT";

constexpr const char* kKdf = "pbkdf2-sha256";
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kSaltBytes = 16;
// Every CSRF value starts with the hex id of the session it belongs to (16 bytes, 32 hex characters),
// followed by 16 random bytes. local_session has no session column, and a logout must also delete the refresh
// token (and every access token a refresh issued) of the same session; the shared prefix is what ties those
// rows together, in memory and on disk. The id is no secret: the random half is what a forger would have to
// guess.
constexpr std::size_t kSessionIdBytes = 16;
constexpr std::size_t kSessionIdHexLength = 2 * kSessionIdBytes;
constexpr std::size_t kCsrfRandomBytes = 16;

// As knosc-sim: a correct password lets verify-2fa finish the login for five minutes.
constexpr std::int64_t kPendingSecondFactorSeconds = 300;
// Expired sessions and unusable cached credentials are swept this often; nothing depends on the exact time.
constexpr std::int64_t kPurgeIntervalSeconds = 3600;
// The offline horizon (daemon/status_report.hpp) is read, kept for `knosc-syncd status` and checked for
// warnings this often.
constexpr std::uint64_t kHorizonIntervalMs = 10'000;
// Logins are checked upstream one at a time; more than this many waiting is a runaway tool, not a plant
// shift.
constexpr std::size_t kMaxWaitingLogins = 64;
constexpr int kLockAfterFailures = 3;
constexpr int kMaxLockDoublings = 20;  // 2^20 x 30 s is a year; the cap only keeps the arithmetic bounded

// Offline, an account never seen here (or not recently) and a wrong password get this one answer, so that the
// loopback does not tell a local prober which accounts have logged in on this machine.
constexpr const char* kOfflineInvalidMessage =
    "Invalid username or password. Knosc cannot be reached: only accounts that logged in here recently can "
    "log in until it is back.";
// Offline (or when Knosc does not answer within the login wait), an account without a usable cached
// credential gets 503: the loopback cannot check its password, and saying "wrong password" would send people
// looking for a typo. This tells someone on the plant machine that the address has not logged in here
// recently (docs/LOOPBACK_API.md, security); the same hashing work is spent as for a cached account, so the
// time taken says nothing more.
constexpr const char* kOfflineUnknownMessage =
    "Knosc cannot be reached, and this account has not logged in through knosc-syncd on this machine before "
    "(or not recently enough): its password can be checked only when the link to Knosc is back.";
constexpr const char* kOfflineTwoFactorMessage =
    "Knosc cannot be reached, and this account uses two-factor authentication, which only Knosc can check. "
    "Log in again when the link to Knosc is back.";

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0x0f]);
  }
  return out;
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("the system random generator failed");
  }
  return out;
}

std::string random_hex(std::size_t n) {
  return to_hex(random_bytes(n));
}

// Tokens are stored and looked up by their SHA-256 only, so a copy of the replica file cannot be replayed as
// a session. Plain SHA-256 is enough here (unlike for passwords): a token has 256 random bits.
std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string lower_ascii(std::string s) {
  // ASCII only, the same folding as SQLite's NOCASE on local_user.username.
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// Best effort at not leaving secrets in freed memory.
void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

bool json_flag(const Json& object, const char* key) {
  if (!object.is_object()) return false;
  const auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

std::optional<std::string> json_string(const Json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::string access_cookie(const std::string& token) {
  return std::string(kAccessCookie) + "=" + token + "; HttpOnly; SameSite=Lax; Path=/";
}
std::string csrf_access_cookie(const std::string& csrf) {
  return std::string(kCsrfAccessCookie) + "=" + csrf + "; SameSite=Lax; Path=/";
}

HttpResponse bad_request() {
  return HttpResponse::knosc_error(400, "Bad Request Format", "JSON.Invalid");
}
HttpResponse token_missing() {
  return HttpResponse::knosc_error(401, "Missing access token", "Token.Missing");
}
HttpResponse token_expired() {
  return HttpResponse::knosc_error(401, "Token has expired", "Token.Expired");
}
HttpResponse token_invalid() {
  return HttpResponse::knosc_error(401, "Invalid token", "Token.Invalid");
}
HttpResponse csrf_invalid() {
  return HttpResponse::knosc_error(422, "Missing or invalid CSRF token", "CSRF.Invalid");
}
HttpResponse invalid_totp() {
  return HttpResponse::knosc_error(401, "Invalid or expired TOTP code.", "2FA.InvalidCode");
}
HttpResponse offline_invalid_credentials() {
  return HttpResponse::knosc_error(401, kOfflineInvalidMessage, "User.InvalidCredentials");
}
HttpResponse offline_unknown_user() {
  return HttpResponse::knosc_error(503, kOfflineUnknownMessage, "Sync.Offline");
}
HttpResponse offline_two_factor() {
  return HttpResponse::knosc_error(503, kOfflineTwoFactorMessage, "Sync.Offline");
}
HttpResponse shutting_down() {
  return HttpResponse::knosc_error(503, "knosc-syncd is shutting down; try again shortly.",
                                   "Server.ShuttingDown");
}
HttpResponse internal_error() {
  return HttpResponse::knosc_error(500, "Internal server error", "Server.Internal");
}
HttpResponse upstream_unexpected() {
  return HttpResponse::knosc_error(502, "Knosc gave an unexpected answer to the login; try again.",
                                   "Sync.UpstreamError");
}

// The Cookie request header(s); HTTP/1.1 clients send one, but nothing forbids more.
std::optional<std::string> request_cookie(const HttpRequest& request, std::string_view name) {
  for (const auto& [header, value] : request.headers) {
    if (header != "cookie") continue;
    if (auto v = cookie_value(value, name)) return v;
  }
  return std::nullopt;
}

bool is_mutating(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

// A password kept with the profile upstream sent at the user's last online login.
struct CachedUser {
  std::string username;  // as the user typed it at that login (the local_user key, case-insensitive)
  std::int64_t user_id = 0;
  std::string kdf = kKdf;
  int iterations = 0;
  std::string salt;
  std::string hash;
  Json profile = Json::object();  // upstream's profile "data"
  Privileges privileges;
  std::int64_t verified_at = 0;  // 0: upstream refused this password since; never usable offline
  int failed_logins = 0;
  std::int64_t locked_until = 0;

  // Upstream's profile flag, or set by us when the user came in through verify-2fa.
  bool two_factor() const { return json_flag(profile, "2FA Enabled"); }
};

// One row of local_session.
struct StoredToken {
  std::string hash;  // SHA-256 of the token
  std::string kind;  // "access" or "refresh"
  std::string username;
  std::string csrf;
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;

  std::string session_id() const { return csrf.substr(0, kSessionIdHexLength); }
};

struct AccessEntry {
  std::string session_id;
  std::string user_key;
  LocalSession session;
};

struct RefreshEntry {
  std::string session_id;
  std::string user_key;
  std::string csrf;
  std::int64_t expires_at = 0;
};

// The tokens of one login: its refresh token and every access token issued under it.
struct SessionGroup {
  std::string user_key;
  std::unordered_set<std::string> access;  // token hashes
  std::string refresh;                     // token hash, empty once gone
  std::string latest_access;               // the hash of the newest access token
  std::int64_t latest_created_at = std::numeric_limits<std::int64_t>::min();
};

// A freshly issued session: the plain values go into the cookies only, the rows into local_session.
struct IssuedSession {
  std::string access, refresh, csrf_access, csrf_refresh;
  std::vector<StoredToken> rows;

  std::vector<std::string> cookies() const {
    return login_cookies(access, refresh, csrf_access, csrf_refresh);
  }
  ~IssuedSession() {
    wipe(access);
    wipe(refresh);
  }
};

// A login waiting for, or going through, its check.
struct LoginJob {
  bool second_factor = false;
  std::string username;  // as the tool sent it
  std::string key;       // lower-cased
  std::string password;  // the password step's; for a second factor, the remembered one (filled when it runs)
  std::string totp_code;
  Responder respond;  // null once the tool has its answer

  // The bound on the wait for Knosc (LocalAuthOptions::login_wait), and the check against the cache made
  // meanwhile, so that when the wait runs out the cached credential answers at once.
  enum class Local { NotStarted, Pending, Match, Mismatch, NoCredential, Failed };
  Local local = Local::NotStarted;
  CachedUser snapshot;         // the cached user the password was checked against (Match, Mismatch)
  bool wait_over = false;      // the cache decides: the wait ran out, or Knosc cannot answer
  bool upstream_done = false;  // Knosc's part is over, or was never started
  std::string opened_sid;      // the session the cache opened; Knosc's refusal, arriving later, ends it

  bool answered() const { return !respond; }

  LoginJob() = default;
  LoginJob(const LoginJob&) = delete;
  LoginJob& operator=(const LoginJob&) = delete;
  ~LoginJob() {
    wipe(password);
    wipe(totp_code);
  }
};
using JobPtr = std::shared_ptr<LoginJob>;

struct PendingSecondFactor {
  std::string password;
  std::int64_t expires_at = 0;
};

// --- replica statements (writer thread) -----------------------------------------------------------------

void bind_blob(SQLite::Statement& st, int index, const std::string& bytes) {
  st.bind(index, bytes.data(), static_cast<int>(bytes.size()));
}

void upsert_user(replica::Replica& rep, const CachedUser& u) {
  SQLite::Statement st(rep.db(),
                       "INSERT INTO local_user (username, user_id, kdf, iterations, salt, hash, profile, "
                       "verified_at, failed_logins, locked_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (username) DO UPDATE SET username = excluded.username, "
                       "user_id = excluded.user_id, kdf = excluded.kdf, iterations = excluded.iterations, "
                       "salt = excluded.salt, hash = excluded.hash, profile = excluded.profile, "
                       "verified_at = excluded.verified_at, failed_logins = excluded.failed_logins, "
                       "locked_until = excluded.locked_until");
  st.bind(1, u.username);
  if (u.user_id != 0) {
    st.bind(2, u.user_id);
  } else {
    st.bind(2);
  }
  st.bind(3, u.kdf);
  st.bind(4, u.iterations);
  bind_blob(st, 5, u.salt);
  bind_blob(st, 6, u.hash);
  st.bind(7, u.profile.dump());
  st.bind(8, u.verified_at);
  st.bind(9, u.failed_logins);
  st.bind(10, u.locked_until);
  st.exec();
}

void store_failures(replica::Replica& rep, const std::string& username, int failures,
                    std::int64_t locked_until) {
  SQLite::Statement st(rep.db(),
                       "UPDATE local_user SET failed_logins = ?, locked_until = ? WHERE username = ?");
  st.bind(1, failures);
  st.bind(2, locked_until);
  st.bind(3, username);
  st.exec();
}

void insert_tokens(replica::Replica& rep, const std::vector<StoredToken>& rows) {
  SQLite::Statement st(rep.db(),
                       "INSERT INTO local_session (token_hash, kind, username, csrf, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)");
  for (const auto& row : rows) {
    bind_blob(st, 1, row.hash);
    st.bind(2, row.kind);
    st.bind(3, row.username);
    st.bind(4, row.csrf);
    st.bind(5, row.created_at);
    st.bind(6, row.expires_at);
    st.exec();
    st.reset();
  }
}

void delete_tokens(replica::Replica& rep, const std::vector<std::string>& hashes) {
  SQLite::Statement st(rep.db(), "DELETE FROM local_session WHERE token_hash = ?");
  for (const auto& h : hashes) {
    bind_blob(st, 1, h);
    st.exec();
    st.reset();
  }
}

struct LoadedState {
  std::vector<CachedUser> users;
  std::vector<StoredToken> tokens;
};

LoadedState load_state(replica::Replica& rep) {
  LoadedState out;
  SQLite::Statement users(rep.db(),
                          "SELECT username, user_id, kdf, iterations, salt, hash, profile, verified_at, "
                          "failed_logins, locked_until FROM local_user");
  while (users.executeStep()) {
    CachedUser u;
    u.username = users.getColumn(0).getString();
    u.user_id = users.getColumn(1).isNull() ? 0 : users.getColumn(1).getInt64();
    u.kdf = users.getColumn(2).getString();
    u.iterations = users.getColumn(3).getInt();
    u.salt = users.getColumn(4).getString();
    u.hash = users.getColumn(5).getString();
    u.profile = Json::parse(users.getColumn(6).getString(), nullptr, false);
    u.verified_at = users.getColumn(7).getInt64();
    u.failed_logins = users.getColumn(8).getInt();
    u.locked_until = users.getColumn(9).getInt64();
    if (!u.profile.is_object()) {
      spdlog::warn("local auth: the cached profile of '{}' is unreadable; that user must log in online again",
                   u.username);
      continue;
    }
    out.users.push_back(std::move(u));
  }
  SQLite::Statement tokens(
      rep.db(), "SELECT token_hash, kind, username, csrf, created_at, expires_at FROM local_session");
  while (tokens.executeStep()) {
    StoredToken t;
    t.hash = tokens.getColumn(0).getString();
    t.kind = tokens.getColumn(1).getString();
    t.username = tokens.getColumn(2).getString();
    t.csrf = tokens.getColumn(3).getString();
    t.created_at = tokens.getColumn(4).getInt64();
    t.expires_at = tokens.getColumn(5).getInt64();
    out.tokens.push_back(std::move(t));
  }
  return out;
}

}  // namespace

// --- Privileges -----------------------------------------------------------------------------------------

bool Privileges::allows(const std::string& module, Access needed) const {
  if (needed == Access::None) return true;
  const auto it = modules.find(module);
  if (it == modules.end()) return false;
  return static_cast<int>(it->second) >= static_cast<int>(needed);
}

Privileges Privileges::from_profile(const nlohmann::json& profile_data) {
  // Accept the whole GET /api/profile body as well as its "data" object.
  const Json* data = &profile_data;
  if (data->is_object() && !data->contains("Privileges") && data->contains("data") &&
      data->at("data").is_object()) {
    data = &data->at("data");
  }
  Privileges p;
  if (!data->is_object()) return p;
  if (auto role = json_string(*data, "Role Name")) p.role_name = std::move(*role);

  const auto privileges = data->find("Privileges");
  if (privileges != data->end() && privileges->is_array()) {
    for (const auto& entry : *privileges) {
      // The profile says {"type", "access"}; a role record says {"Privilege Type", "Privilege Access"}.
      auto module = json_string(entry, "type");
      if (!module) module = json_string(entry, "Privilege Type");
      auto access = json_string(entry, "access");
      if (!access) access = json_string(entry, "Privilege Access");
      if (!module) continue;
      Access level = Access::None;
      if (access == "Edit") {
        level = Access::Edit;
      } else if (access == "View") {
        level = Access::View;
      }
      // A module listed twice gets the larger access, as a union of grants would.
      auto& slot = p.modules[*module];
      if (static_cast<int>(level) > static_cast<int>(slot)) slot = level;
    }
    std::erase_if(p.modules, [](const auto& m) { return m.second == Access::None; });
  }

  const auto filters = data->find("Granular Filters");
  if (filters != data->end() && filters->is_array()) {
    for (const auto& entry : *filters) {
      auto category = json_string(entry, "category");
      if (!category) continue;
      replica::GranularFilter f;
      f.category = std::move(*category);
      // Anything but an explicit "exclude" restricts to the listed values: of the two readings of an
      // unknown type, that one shows less.
      f.include = json_string(entry, "type") != "exclude";
      const auto values = entry.find("values");
      if (values != entry.end()) {
        if (values->is_array()) {
          for (const auto& v : *values)
            f.values.push_back(v);
        } else if (!values->is_null()) {
          f.values.push_back(*values);
        }
      }
      p.granular.push_back(std::move(f));
    }
  }
  return p;
}

std::vector<CachedLogin> cached_logins(replica::Replica& rep) {
  std::vector<CachedLogin> out;
  SQLite::Statement q(rep.db(), "SELECT username, verified_at, profile FROM local_user ORDER BY username");
  while (q.executeStep()) {
    CachedLogin c;
    c.username = q.getColumn(0).getString();
    c.verified_at = q.getColumn(1).getInt64();
    const Json profile = Json::parse(q.getColumn(2).getString(), nullptr, false);
    c.two_factor = json_flag(profile, "2FA Enabled");
    out.push_back(std::move(c));
  }
  return out;
}

// --- Pure helpers ---------------------------------------------------------------------------------------

std::vector<std::string> login_cookies(const std::string& access, const std::string& refresh,
                                       const std::string& csrf_access, const std::string& csrf_refresh) {
  return {
      access_cookie(access),
      std::string(kRefreshCookie) + "=" + refresh + "; HttpOnly; SameSite=Lax; Path=" + kRefreshPath,
      csrf_access_cookie(csrf_access),
      std::string(kCsrfRefreshCookie) + "=" + csrf_refresh + "; SameSite=Lax; Path=" + kRefreshPath,
  };
}

std::vector<std::string> logout_cookies() {
  return {std::string(kAccessCookie) + "=; " + kExpiredAttribute,
          std::string(kRefreshCookie) + "=; " + kExpiredAttribute};
}

std::optional<std::string> cookie_value(std::string_view cookie_header, std::string_view name) {
  const auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
      s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
      s.remove_suffix(1);
    return s;
  };
  while (!cookie_header.empty()) {
    const auto end = cookie_header.find(';');
    std::string_view pair = trim(cookie_header.substr(0, end));
    cookie_header = end == std::string_view::npos ? std::string_view{} : cookie_header.substr(end + 1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    // Names are case-sensitive (RFC 6265); the first occurrence wins, since clients send the cookie with the
    // most specific path first.
    if (trim(pair.substr(0, eq)) != name) continue;
    std::string_view value = trim(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    return std::string(value);
  }
  return std::nullopt;
}

std::int64_t lockout_until(int failures, std::int64_t now, std::int64_t base_seconds) {
  if (failures < kLockAfterFailures || base_seconds <= 0) return 0;
  const int doublings = std::min(failures - kLockAfterFailures, kMaxLockDoublings);
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t length = base_seconds;
  for (int i = 0; i < doublings; ++i) {
    if (length > kMax / 2) {
      length = kMax;
      break;
    }
    length *= 2;
  }
  return now > kMax - length ? kMax : now + length;
}

std::string pbkdf2_sha256(const std::string& password, const std::string& salt, int iterations) {
  if (iterations < 1) throw std::invalid_argument("PBKDF2 needs at least one iteration");
  std::string out(32, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        iterations, EVP_sha256(), static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    throw std::runtime_error("PBKDF2 failed");
  }
  return out;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  // The length is not secret (hashes and tokens have fixed sizes); only the contents are compared in
  // constant time.
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// --- LocalAuth ------------------------------------------------------------------------------------------

struct LocalAuth::Impl : std::enable_shared_from_this<Impl> {
  // The purge timer's handle; freed in its close callback, which may run after the Impl is gone.
  struct TimerBox {
    uv_timer_t timer{};
    std::weak_ptr<Impl> owner;
  };
  // One PBKDF2 computation on libuv's thread pool.
  struct HashWork {
    uv_work_t req{};
    std::string password;
    std::string salt;
    int iterations = 0;
    std::optional<std::string> hash;
    std::weak_ptr<Impl> owner;
    std::function<void(std::optional<std::string>)> then;  // loop thread only
    ~HashWork() { wipe(password); }
  };

  uv_loop_t* loop;
  LocalAuthOptions options;
  replica::ReplicaWriter& writer;
  sync::LoopInbox& inbox;
  std::function<std::optional<bool>()> upstream_online;
  std::string base;
  // Logins are checked upstream with this client only, never with the service account's: its cookie jar then
  // holds nothing but the Knosc session of the login being checked, and it is emptied around each check.
  std::unique_ptr<sync::HttpClient> http;
  TimerBox* timer = nullptr;

  std::unordered_map<std::string, CachedUser> users;  // by lower-cased username
  std::unordered_map<std::string, AccessEntry> access;
  std::unordered_map<std::string, RefreshEntry> refresh;
  std::unordered_map<std::string, SessionGroup> groups;  // by session id
  std::unordered_map<std::string, PendingSecondFactor> pending_second_factor;

  // The login wait's timer of one job; freed in its close callback, which may run after the Impl is gone.
  struct JobTimer {
    uv_timer_t timer{};
    std::weak_ptr<Impl> owner;
    std::weak_ptr<LoginJob> job;
  };
  struct Armed {
    JobPtr job;
    JobTimer* timer = nullptr;
  };
  std::unordered_map<const LoginJob*, Armed> armed;  // jobs whose wait runs
  std::size_t open_job_timers = 0;

  std::deque<JobPtr> waiting;
  JobPtr current;  // the one login being checked; the others wait their turn
  bool dispatching = false;

  std::uint64_t next_write_id = 0;
  std::unordered_map<std::uint64_t, std::function<void(bool)>> pending_writes;
  std::size_t pending_hashes = 0;

  std::int64_t last_purge = 0;
  bool horizon_in_flight = false;
  std::set<std::string> horizon_warned;  // offline horizon items already warned about

  bool closing = false;
  bool http_closed = false;
  bool timer_closed = false;
  std::vector<std::function<void()>> on_closed;

  Impl(uv_loop_t* l, LocalAuthOptions o, replica::ReplicaWriter& w, sync::LoopInbox& i,
       std::function<std::optional<bool>()> online)
      : loop(l), options(std::move(o)), writer(w), inbox(i), upstream_online(std::move(online)) {
    options.pbkdf2_iterations = std::max(1, options.pbkdf2_iterations);
    base = options.upstream_base_url;
    while (!base.empty() && base.back() == '/')
      base.pop_back();
    http = std::make_unique<sync::HttpClient>(loop, options.tls, options.timeouts);
  }

  ~Impl() {
    // Destroyed without close(): the client drops its callbacks, and the timer's close callback only frees
    // it.
    wipe_pending_second_factors();
    for (auto& [key, a] : armed) {
      uv_timer_stop(&a.timer->timer);
      uv_close(reinterpret_cast<uv_handle_t*>(&a.timer->timer), &Impl::on_job_timer_closed);
    }
    armed.clear();
    if (timer != nullptr && !closing) {
      uv_timer_stop(&timer->timer);
      uv_close(reinterpret_cast<uv_handle_t*>(&timer->timer), &Impl::on_timer_closed);
    }
  }

  void init() {
    timer = new TimerBox;
    timer->owner = weak_from_this();
    uv_timer_init(loop, &timer->timer);
    timer->timer.data = timer;
  }

  static void on_timer_closed(uv_handle_t* handle) {
    auto* box = static_cast<TimerBox*>(handle->data);
    auto owner = box->owner.lock();
    delete box;
    if (owner) {
      owner->timer = nullptr;
      owner->timer_closed = true;
      owner->maybe_closed();
    }
  }

  static void on_job_timer_closed(uv_handle_t* handle) {
    auto* box = static_cast<JobTimer*>(handle->data);
    auto owner = box->owner.lock();
    delete box;
    if (owner) {
      --owner->open_job_timers;
      owner->maybe_closed();
    }
  }

  // Starts the job's wait for Knosc; when it runs out first, the cached credential decides.
  void arm_wait(const JobPtr& job) {
    auto* box = new JobTimer;
    box->owner = weak_from_this();
    box->job = job;
    box->timer.data = box;
    uv_timer_init(loop, &box->timer);
    ++open_job_timers;
    armed[job.get()] = Armed{job, box};
    const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(0, options.login_wait.count()));
    uv_timer_start(
        &box->timer,
        [](uv_timer_t* t) {
          auto* b = static_cast<JobTimer*>(t->data);
          auto owner = b->owner.lock();
          auto waiting_job = b->job.lock();
          if (owner && waiting_job) owner->wait_ran_out(waiting_job);
        },
        ms, 0);
  }

  void disarm(const JobPtr& job) {
    const auto it = armed.find(job.get());
    if (it == armed.end()) return;
    JobTimer* box = it->second.timer;
    armed.erase(it);
    uv_timer_stop(&box->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&box->timer), &Impl::on_job_timer_closed);
  }

  void wipe_pending_second_factors() {
    for (auto& [key, pending] : pending_second_factor)
      wipe(pending.password);
    pending_second_factor.clear();
  }

  // --- start and close ---------------------------------------------------------------------------------

  void start(std::function<void()> done) {
    auto loaded = std::make_shared<LoadedState>();
    persist(
        [loaded](replica::Replica& rep) { *loaded = load_state(rep); },
        [this, loaded, done = std::move(done)](bool ok) {
          if (!ok)
            spdlog::error("local auth: stored users and sessions could not be read; starting without them");
          for (auto& u : loaded->users) {
            u.privileges = Privileges::from_profile(u.profile);
            std::string key = lower_ascii(u.username);
            users[key] = std::move(u);
          }
          std::vector<std::string> unusable;
          for (const auto& t : loaded->tokens) {
            if (!install(t)) unusable.push_back(t.hash);
          }
          if (!unusable.empty()) {
            // Sessions whose user is no longer cached (or rows this version cannot read) can never be served.
            spdlog::warn("local auth: dropping {} stored token(s) without a usable cached user",
                         unusable.size());
            persist([unusable](replica::Replica& rep) { delete_tokens(rep, unusable); }, nullptr);
          }
          spdlog::info("local auth: {} cached user(s), {} session(s) loaded", users.size(), groups.size());
          purge();
          check_horizon();
          if (!closing && timer != nullptr) {
            uv_timer_start(
                &timer->timer,
                [](uv_timer_t* t) {
                  if (auto owner = static_cast<TimerBox*>(t->data)->owner.lock()) owner->tick();
                },
                kHorizonIntervalMs, kHorizonIntervalMs);
          }
          if (done) done();
        });
  }

  void close(std::function<void()> done) {
    if (done) on_closed.push_back(std::move(done));
    if (closing) {
      maybe_closed();
      return;
    }
    closing = true;
    wipe_pending_second_factors();
    auto queued = std::move(waiting);
    waiting.clear();
    for (auto& job : queued)
      answer(job, shutting_down());
    std::vector<JobPtr> still_armed;
    for (auto& [key, a] : armed)
      still_armed.push_back(a.job);
    for (auto& job : still_armed)
      disarm(job);
    if (timer != nullptr) {
      uv_timer_stop(&timer->timer);
      uv_close(reinterpret_cast<uv_handle_t*>(&timer->timer), &Impl::on_timer_closed);
    } else {
      timer_closed = true;
    }
    // Cancelling the check in flight calls its callback with a transport error; `closing` makes that answer
    // "shutting down" rather than fall back to the offline check.
    std::weak_ptr<Impl> weak = weak_from_this();
    http->close([weak] {
      if (auto self = weak.lock()) {
        self->http_closed = true;
        self->maybe_closed();
      }
    });
  }

  // Done once no handle, hash or replica write of ours is outstanding, so nothing of ours runs afterwards.
  void maybe_closed() {
    if (!closing || !http_closed || !timer_closed || pending_hashes != 0 || !pending_writes.empty() ||
        open_job_timers != 0)
      return;
    auto callbacks = std::move(on_closed);
    on_closed.clear();
    for (auto& cb : callbacks)
      cb();
  }

  // --- work on other threads -----------------------------------------------------------------------------

  // Runs `work` on the replica writer, then `then(committed)` on the loop. `then` is kept here rather than
  // sent along, because it holds Responders, which must be destroyed on the loop thread.
  void persist(std::function<void(replica::Replica&)> work, std::function<void(bool)> then) {
    const std::uint64_t id = ++next_write_id;
    pending_writes.emplace(id, std::move(then));
    std::weak_ptr<Impl> weak = weak_from_this();
    sync::LoopInbox* back = &inbox;
    writer.post([work = std::move(work), weak, back, id](replica::Replica& rep) {
      bool ok = true;
      try {
        SQLite::Transaction tx(rep.db());
        work(rep);
        tx.commit();
      } catch (const std::exception& e) {
        ok = false;
        spdlog::error("local auth: replica write failed: {}", e.what());
      }
      back->post([weak, id, ok] {
        if (auto self = weak.lock()) self->write_done(id, ok);
      });
    });
  }

  void write_done(std::uint64_t id, bool ok) {
    auto it = pending_writes.find(id);
    if (it == pending_writes.end()) return;
    auto then = std::move(it->second);
    pending_writes.erase(it);
    if (then) then(ok);
    maybe_closed();
  }

  // PBKDF2 is slow on purpose (a tenth of a second or more at the default count), so it runs on libuv's
  // thread pool: neither the loop (every tool's requests) nor the replica writer (every commit) waits for it.
  void hash_password(std::string password, std::string salt, int iterations,
                     std::function<void(std::optional<std::string>)> then) {
    auto* w = new HashWork;
    w->password = std::move(password);
    w->salt = std::move(salt);
    w->iterations = iterations;
    w->owner = weak_from_this();
    w->then = std::move(then);
    w->req.data = w;
    ++pending_hashes;
    const int rc = uv_queue_work(
        loop, &w->req,
        [](uv_work_t* req) {
          auto* work = static_cast<HashWork*>(req->data);
          try {
            work->hash = pbkdf2_sha256(work->password, work->salt, work->iterations);
          } catch (const std::exception&) {
            work->hash.reset();
          }
          wipe(work->password);
        },
        [](uv_work_t* req, int) {
          std::unique_ptr<HashWork> work(static_cast<HashWork*>(req->data));
          auto owner = work->owner.lock();
          if (!owner) return;
          --owner->pending_hashes;
          try {
            if (work->then) work->then(std::move(work->hash));
          } catch (const std::exception& e) {
            // The steps after a hash answer their login on failure themselves; this is only a last resort.
            spdlog::error("local auth: a login step failed: {}", e.what());
          }
          owner->maybe_closed();
        });
    if (rc != 0) {
      --pending_hashes;
      std::unique_ptr<HashWork> work(w);
      spdlog::error("local auth: could not queue a password hash: {}", uv_strerror(rc));
      if (work->then) work->then(std::nullopt);
    }
  }

  // --- sessions in memory --------------------------------------------------------------------------------

  LocalSession session_of(const CachedUser& u, const std::string& csrf, std::int64_t expires_at) const {
    LocalSession s;
    s.username = u.username;
    s.user_id = u.user_id;
    s.privileges = u.privileges;
    s.profile = u.profile;
    s.csrf = csrf;
    s.expires_at = expires_at;
    return s;
  }

  // Adds a committed local_session row to memory. Rows of users no longer cached cannot be served (their
  // profile is gone) and are left for the purge.
  bool install(const StoredToken& t) {
    const std::string key = lower_ascii(t.username);
    const auto user = users.find(key);
    if (user == users.end() || t.csrf.size() <= kSessionIdHexLength) return false;
    const std::string sid = t.session_id();
    auto& group = groups[sid];
    group.user_key = key;
    if (t.kind == "access") {
      access[t.hash] = AccessEntry{sid, key, session_of(user->second, t.csrf, t.expires_at)};
      group.access.insert(t.hash);
      if (t.created_at >= group.latest_created_at) {
        group.latest_created_at = t.created_at;
        group.latest_access = t.hash;
      }
    } else if (t.kind == "refresh") {
      refresh[t.hash] = RefreshEntry{sid, key, t.csrf, t.expires_at};
      group.refresh = t.hash;
    } else {
      if (group.access.empty() && group.refresh.empty()) groups.erase(sid);
      return false;
    }
    return true;
  }

  // Forgets every token of a session; returns their hashes.
  std::vector<std::string> forget_group(const std::string& sid) {
    std::vector<std::string> hashes;
    const auto it = groups.find(sid);
    if (it == groups.end()) return hashes;
    for (const auto& h : it->second.access) {
      access.erase(h);
      hashes.push_back(h);
    }
    if (!it->second.refresh.empty()) {
      refresh.erase(it->second.refresh);
      hashes.push_back(it->second.refresh);
    }
    groups.erase(it);
    return hashes;
  }

  IssuedSession issue(const CachedUser& u, std::int64_t now) const {
    IssuedSession s;
    const std::string sid = random_hex(kSessionIdBytes);
    s.access = random_hex(kTokenBytes);
    s.refresh = random_hex(kTokenBytes);
    s.csrf_access = sid + random_hex(kCsrfRandomBytes);
    s.csrf_refresh = sid + random_hex(kCsrfRandomBytes);
    s.rows.push_back(StoredToken{sha256(s.access), "access", u.username, s.csrf_access, now,
                                 now + options.access_ttl_seconds});
    s.rows.push_back(StoredToken{sha256(s.refresh), "refresh", u.username, s.csrf_refresh, now,
                                 now + options.refresh_ttl_seconds});
    return s;
  }

  // Sessions carry their user's profile; a fresh one from upstream applies to the live sessions at once.
  void refresh_sessions_of(const std::string& key, const CachedUser& u) {
    for (auto& [hash, entry] : access) {
      if (entry.user_key != key) continue;
      entry.session.privileges = u.privileges;
      entry.session.profile = u.profile;
      entry.session.user_id = u.user_id;
    }
  }

  void tick() {
    if (now_seconds() - last_purge >= kPurgeIntervalSeconds) purge();
    check_horizon();
  }

  // Reads the offline horizon, keeps it in the daemon state when it changed, and warns once per cached user
  // when 80 % of their offline login period has passed while the link is down.
  void check_horizon() {
    if (closing || horizon_in_flight) return;
    horizon_in_flight = true;
    auto result = std::make_shared<std::optional<OfflineHorizon>>();
    const std::int64_t ttl = options.offline_login_ttl_seconds;
    persist(
        [result, ttl](replica::Replica& rep) {
          OfflineHorizon h = read_offline_horizon(rep, ttl);
          const std::string value = offline_horizon_state(h);
          if (rep.state(kOfflineHorizonStateKey) != value) rep.set_state(kOfflineHorizonStateKey, value);
          *result = std::move(h);
        },
        [this, result](bool ok) {
          horizon_in_flight = false;
          if (!ok || !*result) return;
          for (const auto& w :
               horizon_warnings(horizon_items(**result), online() == false, now_seconds(), horizon_warned))
            spdlog::warn("offline horizon: {}", w.message);
        });
  }

  void purge() {
    const std::int64_t now = now_seconds();
    last_purge = now;
    std::vector<std::string> dead_tokens;
    std::vector<std::string> dead_users;
    for (auto g = groups.begin(); g != groups.end();) {
      auto& group = g->second;
      bool refresh_live = false;
      if (!group.refresh.empty()) {
        const auto r = refresh.find(group.refresh);
        refresh_live = r != refresh.end() && r->second.expires_at > now;
        if (!refresh_live) {
          refresh.erase(group.refresh);
          dead_tokens.push_back(group.refresh);
          group.refresh.clear();
        }
      }
      // An expired access token is kept while its session can still be refreshed, and only the newest one:
      // a tool presenting it then hears Token.Expired (and refreshes, as it would with Knosc) rather than
      // Token.Invalid (which sends it back to a password login).
      for (auto a = group.access.begin(); a != group.access.end();) {
        const auto e = access.find(*a);
        const bool expired = e == access.end() || e->second.session.expires_at <= now;
        if (expired && (!refresh_live || *a != group.latest_access)) {
          access.erase(*a);
          dead_tokens.push_back(*a);
          a = group.access.erase(a);
        } else {
          ++a;
        }
      }
      if (group.access.empty() && group.refresh.empty()) {
        g = groups.erase(g);
      } else {
        ++g;
      }
    }
    // A credential that can no longer be used offline and backs no session is only a liability; the next
    // online login caches it afresh.
    std::unordered_set<std::string> in_use;
    for (const auto& [sid, group] : groups)
      in_use.insert(group.user_key);
    for (auto u = users.begin(); u != users.end();) {
      const bool stale =
          u->second.verified_at <= 0 || now - u->second.verified_at > options.offline_login_ttl_seconds;
      if (stale && !in_use.count(u->first) && !(current && current->key == u->first)) {
        dead_users.push_back(u->second.username);
        wipe(u->second.hash);
        u = users.erase(u);
      } else {
        ++u;
      }
    }
    for (auto p = pending_second_factor.begin(); p != pending_second_factor.end();) {
      if (p->second.expires_at <= now) {
        wipe(p->second.password);
        p = pending_second_factor.erase(p);
      } else {
        ++p;
      }
    }
    if (dead_tokens.empty() && dead_users.empty()) return;
    spdlog::info("local auth: purged {} expired token(s) and {} stale cached user(s)", dead_tokens.size(),
                 dead_users.size());
    persist(
        [dead_tokens, dead_users](replica::Replica& rep) {
          delete_tokens(rep, dead_tokens);
          SQLite::Statement st(rep.db(), "DELETE FROM local_user WHERE username = ?");
          for (const auto& u : dead_users) {
            st.bind(1, u);
            st.exec();
            st.reset();
          }
        },
        nullptr);
  }

  // --- checking requests ---------------------------------------------------------------------------------

  std::variant<const LocalSession*, HttpResponse> session_for(const HttpRequest& request) const {
    const auto token = request_cookie(request, kAccessCookie);
    if (!token || token->empty()) return token_missing();
    std::string hash;
    try {
      hash = sha256(*token);
    } catch (const std::exception&) {
      return token_invalid();
    }
    const auto it = access.find(hash);
    if (it == access.end()) return token_invalid();
    if (it->second.session.expires_at <= now_seconds()) return token_expired();
    return &it->second.session;
  }

  std::size_t active_sessions() const {
    const std::int64_t now = now_seconds();
    std::size_t n = 0;
    for (const auto& [sid, group] : groups) {
      bool live = false;
      if (!group.refresh.empty()) {
        const auto r = refresh.find(group.refresh);
        live = r != refresh.end() && r->second.expires_at > now;
      }
      for (auto a = group.access.begin(); !live && a != group.access.end(); ++a) {
        const auto e = access.find(*a);
        live = e != access.end() && e->second.session.expires_at > now;
      }
      if (live) ++n;
    }
    return n;
  }

  // --- the login queue -----------------------------------------------------------------------------------

  void enqueue(JobPtr job) {
    if (closing) {
      job->respond(shutting_down());
      return;
    }
    if (online() == false) {
      // The link is known to be down: no wait at all, and no queue (a check in flight may still hang).
      run_offline(job);
      return;
    }
    if (waiting.size() >= kMaxWaitingLogins) {
      HttpResponse busy = HttpResponse::knosc_error(
          503, "Too many logins are waiting to be checked; try again shortly.", "Sync.Busy");
      busy.set_header("Retry-After", "5");
      job->respond(std::move(busy));
      return;
    }
    // The wait starts now, not when the job's turn comes: logins queue behind a check that hangs.
    arm_wait(job);
    if (!job->second_factor) local_precheck(job);
    waiting.push_back(std::move(job));
    if (!current) next_job();
  }

  void next_job() {
    // A job may finish synchronously inside run() (an offline refusal needs no I/O); the loop below then
    // picks up the next one instead of recursing.
    if (dispatching) return;
    dispatching = true;
    while (!current && !waiting.empty()) {
      current = std::move(waiting.front());
      waiting.pop_front();
      JobPtr job = current;
      try {
        run(job);
      } catch (const std::exception& e) {
        spdlog::error("local login for '{}' failed: {}", job->username, e.what());
        finish(job, internal_error());
      }
    }
    dispatching = false;
  }

  // Answers the tool, once: later calls are ignored (the wait ran out and the cache answered, or Knosc's
  // verdict came first).
  void answer(const JobPtr& job, HttpResponse response) {
    disarm(job);
    if (!job->respond) return;
    auto respond = std::move(job->respond);
    job->respond = nullptr;
    respond(std::move(response));
  }

  // Knosc's part of the job is over: its secrets go, and the next login may use the upstream client.
  void done_upstream(const JobPtr& job) {
    job->upstream_done = true;
    wipe(job->password);
    wipe(job->totp_code);
    if (current == job) {
      current.reset();
      next_job();
    }
  }

  // Knosc's verdict (or the end of the job on Knosc's side): answers the tool unless it was answered already,
  // and lets the next login run.
  void finish(const JobPtr& job, HttpResponse response) {
    answer(job, std::move(response));
    done_upstream(job);
  }

  // An answer decided by the cache; Knosc's part, if still running, goes on and may still change the cache.
  void local_answer(const JobPtr& job, HttpResponse response) {
    answer(job, std::move(response));
    if (job->upstream_done) done_upstream(job);
  }

  // Checks the password against the cached credential on the thread pool while Knosc is asked, so that the
  // cache can answer the moment the wait runs out. An account without a usable credential costs the same
  // hashing work (with a throwaway salt), so the time taken does not tell whether it has logged in here.
  void local_precheck(const JobPtr& job) {
    job->local = LoginJob::Local::Pending;
    const auto it = users.find(job->key);
    const bool usable = it != users.end() && usable_offline(it->second, now_seconds());
    std::string salt;
    int iterations = options.pbkdf2_iterations;
    if (usable) {
      job->snapshot = it->second;
      salt = job->snapshot.salt;
      iterations = job->snapshot.iterations;
    } else {
      salt = random_bytes(kSaltBytes);
    }
    hash_password(job->password, salt, iterations, [this, job, usable](std::optional<std::string> hash) {
      if (!hash) {
        job->local = LoginJob::Local::Failed;
      } else if (!usable) {
        job->local = LoginJob::Local::NoCredential;
      } else {
        job->local = constant_time_equal(*hash, job->snapshot.hash) ? LoginJob::Local::Match
                                                                    : LoginJob::Local::Mismatch;
      }
      if (job->wait_over) apply_local(job);
    });
  }

  bool usable_offline(const CachedUser& u, std::int64_t now) const {
    return u.verified_at > 0 && now - u.verified_at <= options.offline_login_ttl_seconds && u.kdf == kKdf &&
           u.iterations >= 1;
  }

  // The wait for Knosc ran out before its verdict: the cache answers (Knosc's verdict, when it comes, can
  // still refresh the cache or end the session opened here).
  void wait_ran_out(const JobPtr& job) {
    disarm(job);
    if (job->answered() || job->wait_over) return;
    job->wait_over = true;
    if (closing) {
      local_answer(job, shutting_down());
      return;
    }
    spdlog::info("local login for '{}': Knosc did not answer within {} ms; the cached credential decides",
                 job->username, options.login_wait.count());
    if (job->second_factor) {
      local_answer(job, offline_two_factor());
      return;
    }
    if (job->local != LoginJob::Local::Pending) apply_local(job);
  }

  // Knosc cannot take part (the link is known down, or it failed to answer): the cache decides now, or as
  // soon as its check is done.
  void give_up_upstream(const JobPtr& job) {
    const bool decide = !job->answered() && !job->wait_over;
    job->wait_over = true;
    disarm(job);
    // Started before the password is wiped (every password login has one under way already).
    if (decide && !job->second_factor && job->local == LoginJob::Local::NotStarted) local_precheck(job);
    done_upstream(job);
    if (!decide) return;
    if (job->second_factor) {
      local_answer(job, offline_two_factor());
      return;
    }
    if (job->local != LoginJob::Local::Pending) apply_local(job);
  }

  // The link is known to be down when the login arrives: answered from the cache at once.
  void run_offline(const JobPtr& job) {
    job->upstream_done = true;
    job->wait_over = true;
    if (job->second_factor) {
      auto pending = pending_second_factor.find(job->key);
      const bool recent =
          pending != pending_second_factor.end() && pending->second.expires_at > now_seconds();
      finish(job, recent ? offline_two_factor() : invalid_totp());
      return;
    }
    local_precheck(job);
  }

  // The cache's answer, once the wait is over and the password was checked against it.
  void apply_local(const JobPtr& job) {
    if (job->answered()) {
      if (job->upstream_done) done_upstream(job);
      return;
    }
    if (closing) {
      local_answer(job, shutting_down());
      return;
    }
    const std::int64_t now = now_seconds();
    if (job->local == LoginJob::Local::Failed) {
      local_answer(job, internal_error());
      return;
    }
    const auto it = users.find(job->key);
    if (job->local == LoginJob::Local::NoCredential || it == users.end() ||
        !usable_offline(it->second, now)) {
      spdlog::info(
          "local login for '{}' refused: Knosc cannot check it and there is no recent cached credential",
          job->username);
      local_answer(job, offline_unknown_user());
      return;
    }
    if (it->second.locked_until > now) {
      spdlog::info("local login for '{}' refused offline: locked", job->username);
      local_answer(job, locked_response(it->second.locked_until, now));
      return;
    }
    if (job->local == LoginJob::Local::Mismatch) {
      offline_failure(job, it->second);
      return;
    }
    // The TOTP secret lives in Knosc alone, so a second factor cannot be checked offline; accepting the
    // password alone would quietly turn a two-factor account into a one-factor one. Said only to whoever
    // knows the password, so it reveals nothing to a prober.
    if (job->snapshot.two_factor() || it->second.two_factor()) {
      spdlog::info("local login for '{}' refused offline: two-factor account", job->username);
      local_answer(job, offline_two_factor());
      return;
    }
    open_session(job, it->second, false, "from the cached credential", true);
  }

  // Ends the session the cache opened for this login (Knosc refused the login after the wait).
  void end_opened_session(const JobPtr& job, const std::string& why) {
    if (job->opened_sid.empty()) return;
    const std::string sid = std::exchange(job->opened_sid, std::string());
    if (!groups.count(sid)) return;  // logged out meanwhile
    forget_group(sid);
    spdlog::warn(
        "local login for '{}': Knosc refused it after the wait ({}); the session the cached credential "
        "opened "
        "is ended",
        job->username, why);
    persist(
        [sid](replica::Replica& rep) {
          SQLite::Statement st(rep.db(), "DELETE FROM local_session WHERE substr(csrf, 1, ?) = ?");
          st.bind(1, static_cast<int>(kSessionIdHexLength));
          st.bind(2, sid);
          st.exec();
        },
        nullptr);
  }

  std::optional<bool> online() const { return upstream_online ? upstream_online() : std::nullopt; }

  void run(const JobPtr& job) {
    if (closing) {
      finish(job, shutting_down());
      return;
    }
    if (online() == false) {
      // The link went down while this login waited its turn.
      give_up_upstream(job);
      return;
    }
    if (job->second_factor) {
      auto pending = pending_second_factor.find(job->key);
      if (pending != pending_second_factor.end() && pending->second.expires_at <= now_seconds()) {
        wipe(pending->second.password);
        pending_second_factor.erase(pending);
        pending = pending_second_factor.end();
      }
      if (pending == pending_second_factor.end()) {
        // The password step did not go through this daemon (or too long ago): the password to cache is
        // unknown.
        finish(job, invalid_totp());
        return;
      }
      job->password = pending->second.password;
      upstream_second_factor(job);
      return;
    }
    upstream_password(job);
  }

  sync::HttpRequest upstream_request(const std::string& method, const std::string& path,
                                     std::string body) const {
    sync::HttpRequest rq;
    rq.method = method;
    rq.url = base + path;
    rq.body = std::move(body);
    rq.headers.emplace_back("Accept: application/json");
    if (!rq.body.empty()) rq.headers.emplace_back("Content-Type: application/json");
    return rq;
  }

  template <typename Handler>
  void send(sync::HttpRequest rq, const JobPtr& job, Handler handler) {
    std::weak_ptr<Impl> weak = weak_from_this();
    http->send(std::move(rq), [weak, job, handler = std::move(handler)](sync::HttpResponse r) mutable {
      auto self = weak.lock();
      if (!self) return;
      if (self->closing) {
        self->http->clear_cookies();
        self->finish(job, shutting_down());
        return;
      }
      try {
        handler(std::move(r));
      } catch (const std::exception& e) {
        spdlog::error("local login for '{}' failed: {}", job->username, e.what());
        self->http->clear_cookies();
        self->finish(job, internal_error());
      }
    });
  }

  static bool upstream_unavailable(const sync::HttpResponse& r) {
    return !r.transport_ok() || r.status >= 500;
  }

  static std::string why_unavailable(const sync::HttpResponse& r) {
    return r.transport_ok() ? "HTTP " + std::to_string(r.status) : r.transport_error;
  }

  void upstream_password(const JobPtr& job) {
    http->clear_cookies();
    const std::string body = Json{{"username", job->username}, {"password", job->password}}.dump();
    send(upstream_request("POST", "/authenticate", body), job, [this, job](sync::HttpResponse r) {
      if (upstream_unavailable(r)) {
        // A 5xx is treated like no answer: Knosc (or the proxy in front of it) cannot check the password now,
        // and the cached hash was checked by Knosc itself not long ago.
        http->clear_cookies();
        if (job->answered() || job->wait_over) {
          done_upstream(job);  // the cache has answered (or is answering) already
          return;
        }
        spdlog::warn("local login for '{}': Knosc cannot check it ({}); using the offline cache",
                     job->username, why_unavailable(r));
        give_up_upstream(job);
        return;
      }
      if (r.status == 200) {
        const Json answer = Json::parse(r.body, nullptr, false);
        if (json_flag(answer, "login")) {
          fetch_profile(job, false);
          return;
        }
        http->clear_cookies();
        if (json_flag(answer, "requires_2fa")) {
          // Knosc checked the password; remember it for verify-2fa, which finishes the login and caches it.
          auto& pending = pending_second_factor[job->key];
          wipe(pending.password);
          pending.password = job->password;
          pending.expires_at = now_seconds() + kPendingSecondFactorSeconds;
          spdlog::info("local login for '{}': Knosc asks for the second factor", job->username);
          end_opened_session(job, "it asks for a second factor");
          finish(job, pass_through(r));
          return;
        }
        if (json_flag(answer, "first_signin")) {
          // A first sign-in is not completed through the loopback: the session_token is Knosc's, and the new
          // password is chosen against Knosc directly (POST /api/first-signin there). The next login through
          // the loopback then checks and caches the new password as usual.
          spdlog::info("local login for '{}': Knosc asks for a first sign-in", job->username);
          end_opened_session(job, "it asks for a first sign-in");
          finish(job, pass_through(r));
          return;
        }
        spdlog::warn("local login for '{}': Knosc answered 200 without a login", job->username);
        finish(job, upstream_unexpected());
        return;
      }
      http->clear_cookies();
      spdlog::info("local login for '{}': Knosc refused it (HTTP {})", job->username, r.status);
      // Wrong password, account gone, disabled or locked in Knosc: a session the cache opened meanwhile ends.
      if (r.status >= 400 && r.status < 500) end_opened_session(job, "HTTP " + std::to_string(r.status));
      if (r.status == 401) {
        refused_by_upstream(job, pass_through(r));
        return;
      }
      finish(job, pass_through(r));
    });
  }

  void upstream_second_factor(const JobPtr& job) {
    http->clear_cookies();
    const std::string body = Json{{"username", job->username}, {"totp_code", job->totp_code}}.dump();
    send(upstream_request("POST", "/verify-2fa", body), job, [this, job](sync::HttpResponse r) {
      if (upstream_unavailable(r)) {
        spdlog::warn("local login for '{}': Knosc cannot check the second factor ({})", job->username,
                     why_unavailable(r));
        http->clear_cookies();
        finish(job, offline_two_factor());
        return;
      }
      if (r.status == 200 && json_flag(Json::parse(r.body, nullptr, false), "login")) {
        const auto pending = pending_second_factor.find(job->key);
        if (pending != pending_second_factor.end()) {
          wipe(pending->second.password);
          pending_second_factor.erase(pending);
        }
        fetch_profile(job, true);
        return;
      }
      http->clear_cookies();
      if (r.status == 200) {
        finish(job, upstream_unexpected());
        return;
      }
      spdlog::info("local login for '{}': Knosc refused the second factor (HTTP {})", job->username,
                   r.status);
      finish(job, pass_through(r));
    });
  }

  void fetch_profile(const JobPtr& job, bool two_factor) {
    send(upstream_request("GET", "/profile", ""), job, [this, job, two_factor](sync::HttpResponse r) {
      // The user's Knosc session has served its purpose: the daemon never acts upstream as that user.
      http->clear_cookies();
      Json body = r.transport_ok() && r.status == 200 ? Json::parse(r.body, nullptr, false) : Json();
      if (!body.is_object() || !body.contains("data") || !body["data"].is_object()) {
        spdlog::warn("local login for '{}': Knosc accepted it but its profile could not be read ({})",
                     job->username,
                     r.transport_ok() ? "HTTP " + std::to_string(r.status) : r.transport_error);
        finish(job, HttpResponse::knosc_error(502,
                                              "Knosc accepted the login but the profile could not be read; "
                                              "try again.",
                                              "Sync.UpstreamError"));
        return;
      }
      Json profile = std::move(body["data"]);
      // A user who just passed verify-2fa has two-factor authentication whatever the profile says, and must
      // never be let in offline with the password alone.
      if (two_factor) profile["2FA Enabled"] = true;
      // The session opened here carries all four cookies even after verify-2fa, where Knosc documents only
      // the access pair: tools that ignore the refresh pair lose nothing, and the others can refresh while
      // the link is down, when a two-factor user could not log in again.
      cache_and_issue(job, std::move(profile));
    });
  }

  // Knosc accepted a login after the wait, when the cache had answered already: the cached credential and
  // profile are refreshed (and the failure count reset); the session the cache opened, if any, stays.
  void refresh_cache(const JobPtr& job, CachedUser u) {
    u.failed_logins = 0;
    u.locked_until = 0;
    persist([u](replica::Replica& rep) { upsert_user(rep, u); },
            [this, job, u](bool ok) {
              if (ok) {
                const std::string key = lower_ascii(u.username);
                users[key] = u;
                refresh_sessions_of(key, u);
                spdlog::info(
                    "local login for '{}': Knosc accepted it after the wait; the cached credential is "
                    "refreshed",
                    u.username);
              }
              done_upstream(job);
            });
  }

  // Online login accepted: cache the password with the fresh profile and open a local session.
  void cache_and_issue(const JobPtr& job, Json profile) {
    std::string salt = random_bytes(kSaltBytes);
    const int iterations = options.pbkdf2_iterations;
    hash_password(
        job->password, salt, iterations,
        [this, job, salt, iterations, profile = std::move(profile)](std::optional<std::string> hash) {
          if (closing) {
            finish(job, shutting_down());
            return;
          }
          if (!hash) {
            spdlog::error("local login for '{}': the password could not be hashed", job->username);
            finish(job, internal_error());
            return;
          }
          CachedUser u;
          u.username = job->username;
          const auto id = profile.find("id");
          if (id != profile.end() && id->is_number_integer()) u.user_id = id->get<std::int64_t>();
          u.iterations = iterations;
          u.salt = salt;
          u.hash = std::move(*hash);
          u.profile = profile;
          u.privileges = Privileges::from_profile(profile);
          u.verified_at = now_seconds();
          if (job->answered()) {
            refresh_cache(job, std::move(u));
            return;
          }
          open_session(job, std::move(u), true, "by Knosc");
        });
  }

  // Commits the user row (all of it when `whole_user`, else only its failure counters) and a new session,
  // then answers 200 with the session's cookies. `local`: decided by the cache, while Knosc's verdict may
  // still come.
  void open_session(const JobPtr& job, CachedUser u, bool whole_user, const char* how, bool local = false) {
    u.failed_logins = 0;
    u.locked_until = 0;
    const auto fail = [this, job, local](HttpResponse r) {
      if (local) {
        local_answer(job, std::move(r));
      } else {
        finish(job, std::move(r));
      }
    };
    std::shared_ptr<IssuedSession> session;
    try {
      session = std::make_shared<IssuedSession>(issue(u, now_seconds()));
    } catch (const std::exception& e) {
      spdlog::error("local login for '{}': no session could be issued: {}", u.username, e.what());
      fail(internal_error());
      return;
    }
    persist(
        [u, rows = session->rows, whole_user](replica::Replica& rep) {
          if (whole_user) {
            upsert_user(rep, u);
          } else {
            store_failures(rep, u.username, 0, 0);
          }
          insert_tokens(rep, rows);
        },
        [this, job, u, session, how, local, whole_user, fail](bool ok) {
          if (!ok) {
            fail(internal_error());
            return;
          }
          const std::string key = lower_ascii(u.username);
          if (whole_user || users.count(key)) {
            users[key] = u;
            refresh_sessions_of(key, u);
          }
          if (job->answered()) {
            // The tool got its answer while this session was being stored (Knosc's verdict and the cache's
            // raced): it was never handed out, so it goes.
            std::vector<std::string> hashes;
            for (const auto& row : session->rows)
              hashes.push_back(row.hash);
            persist([hashes](replica::Replica& rep) { delete_tokens(rep, hashes); }, nullptr);
            if (!local) done_upstream(job);
            return;
          }
          for (const auto& row : session->rows)
            install(row);
          spdlog::info("local login for '{}' accepted {}", u.username, how);
          HttpResponse ok_response = HttpResponse::json(200, Json{{"login", true}}.dump());
          for (auto& c : session->cookies())
            ok_response.headers.emplace_back("Set-Cookie", std::move(c));
          if (local) {
            if (!session->rows.empty()) job->opened_sid = session->rows.front().session_id();
            local_answer(job, std::move(ok_response));
          } else {
            finish(job, std::move(ok_response));
          }
        });
  }

  static HttpResponse locked_response(std::int64_t locked_until, std::int64_t now) {
    HttpResponse r = HttpResponse::knosc_error(429, "Account temporarily locked", "User.Locked");
    r.set_header("Retry-After", std::to_string(std::max<std::int64_t>(1, locked_until - now)));
    return r;
  }

  void offline_failure(const JobPtr& job, CachedUser u) {
    const std::int64_t now = now_seconds();
    u.failed_logins += 1;
    u.locked_until = lockout_until(u.failed_logins, now, options.lockout_base_seconds);
    spdlog::warn("local login for '{}' refused offline: wrong password ({} failure(s) in a row{})",
                 u.username, u.failed_logins, u.locked_until > 0 ? ", account locked" : "");
    const std::string key = lower_ascii(u.username);
    if (auto it = users.find(key); it != users.end()) {
      it->second.failed_logins = u.failed_logins;
      it->second.locked_until = u.locked_until;
    }
    // Answered once the count is on disk, so restarting the daemon does not reset a lockout.
    persist([username = u.username, failures = u.failed_logins, until = u.locked_until](
                replica::Replica& rep) { store_failures(rep, username, failures, until); },
            [this, job](bool) { local_answer(job, offline_invalid_credentials()); });
  }

  // Upstream refused a password. When that is the very password cached here, the account's password was
  // changed or the account disabled in Knosc: the cached credential must stop working offline, and the local
  // sessions end as Knosc's own tokens do after such a change.
  void refused_by_upstream(const JobPtr& job, HttpResponse answer) {
    const auto it = users.find(job->key);
    if (it == users.end() || it->second.verified_at <= 0 || it->second.kdf != kKdf ||
        it->second.iterations < 1) {
      finish(job, std::move(answer));
      return;
    }
    const CachedUser snapshot = it->second;
    hash_password(
        job->password, snapshot.salt, snapshot.iterations,
        [this, job, snapshot, answer = std::move(answer)](std::optional<std::string> hash) mutable {
          if (!hash || !constant_time_equal(*hash, snapshot.hash)) {
            finish(job, std::move(answer));
            return;
          }
          const std::string key = lower_ascii(snapshot.username);
          if (auto u = users.find(key); u != users.end()) u->second.verified_at = 0;
          std::vector<std::string> sids;
          for (const auto& [sid, group] : groups) {
            if (group.user_key == key) sids.push_back(sid);
          }
          for (const auto& sid : sids)
            forget_group(sid);
          spdlog::warn(
              "local login for '{}': Knosc no longer accepts the cached password; the cached credential "
              "and {} local session(s) are revoked",
              snapshot.username, sids.size());
          persist(
              [username = snapshot.username](replica::Replica& rep) {
                SQLite::Statement user(rep.db(), "UPDATE local_user SET verified_at = 0 WHERE username = ?");
                user.bind(1, username);
                user.exec();
                SQLite::Statement sessions(rep.db(), "DELETE FROM local_session WHERE username = ?");
                sessions.bind(1, username);
                sessions.exec();
              },
              [this, job, answer = std::move(answer)](bool) mutable { finish(job, std::move(answer)); });
        });
  }

  // --- routes ----------------------------------------------------------------------------------------------

  void authenticate(const HttpRequest& request, Responder respond) {
    Json body = Json::parse(request.body, nullptr, false);
    auto username = json_string(body, "username");
    auto password = json_string(body, "password");
    if (body.is_object() && body.contains("password") && body["password"].is_string())
      wipe(body["password"].get_ref<std::string&>());
    if (!username || !password) {
      if (password) wipe(*password);
      respond(bad_request());
      return;
    }
    auto job = std::make_shared<LoginJob>();
    job->username = std::move(*username);
    job->key = lower_ascii(job->username);
    job->password = std::move(*password);
    job->respond = std::move(respond);
    enqueue(std::move(job));
  }

  void verify_2fa(const HttpRequest& request, Responder respond) {
    Json body = Json::parse(request.body, nullptr, false);
    auto username = json_string(body, "username");
    auto code = json_string(body, "totp_code");
    if (body.is_object() && body.contains("totp_code") && body["totp_code"].is_string())
      wipe(body["totp_code"].get_ref<std::string&>());
    if (!username || !code) {
      respond(bad_request());
      return;
    }
    auto job = std::make_shared<LoginJob>();
    job->second_factor = true;
    job->username = std::move(*username);
    job->key = lower_ascii(job->username);
    job->totp_code = std::move(*code);
    job->respond = std::move(respond);
    enqueue(std::move(job));
  }

  void refresh_route(const HttpRequest& request, Responder respond) {
    if (closing) {
      respond(shutting_down());
      return;
    }
    const auto token = request_cookie(request, kRefreshCookie);
    if (!token || token->empty()) {
      respond(HttpResponse::knosc_error(401, "Missing refresh token", "Token.Missing"));
      return;
    }
    const std::int64_t now = now_seconds();
    const auto it = refresh.find(sha256(*token));
    if (it == refresh.end()) {
      respond(token_invalid());
      return;
    }
    if (it->second.expires_at <= now) {
      respond(token_expired());
      return;
    }
    // Only the refresh CSRF value is accepted here, as Knosc does.
    const auto header = request.header("X-XSRF-TOKEN");
    if (!header || !constant_time_equal(*header, it->second.csrf)) {
      respond(csrf_invalid());
      return;
    }
    const auto user = users.find(it->second.user_key);
    if (user == users.end()) {
      respond(token_invalid());
      return;
    }
    const std::string sid = it->second.session_id;
    std::string new_access = random_hex(kTokenBytes);
    const std::string new_csrf = sid + random_hex(kCsrfRandomBytes);
    StoredToken row{sha256(new_access), "access", user->second.username,
                    new_csrf,           now,      now + options.access_ttl_seconds};
    persist(
        [row](replica::Replica& rep) { insert_tokens(rep, {row}); },
        [this, row, sid, new_access = std::move(new_access), respond = std::move(respond)](bool ok) mutable {
          if (!ok) {
            wipe(new_access);
            respond(internal_error());
            return;
          }
          if (!groups.count(sid)) {
            // Logged out while the new token was being stored.
            persist([hash = row.hash](replica::Replica& rep) { delete_tokens(rep, {hash}); }, nullptr);
            wipe(new_access);
            respond(token_invalid());
            return;
          }
          install(row);
          HttpResponse out = HttpResponse::json(200, Json{{"refresh", true}}.dump());
          out.headers.emplace_back("Set-Cookie", access_cookie(new_access));
          out.headers.emplace_back("Set-Cookie", csrf_access_cookie(row.csrf));
          wipe(new_access);
          respond(std::move(out));
        });
  }

  void logout(const HttpRequest& request, Responder respond) {
    if (closing) {
      // Refused rather than done in memory only: the stored session would come back at the next start.
      respond(shutting_down());
      return;
    }
    auto found = session_for(request);
    if (auto* error = std::get_if<HttpResponse>(&found)) {
      respond(std::move(*error));
      return;
    }
    const LocalSession* session = std::get<const LocalSession*>(found);
    if (auto refused = check_csrf(request, *session)) {
      respond(std::move(*refused));
      return;
    }
    const std::string username = session->username;
    const std::string sid = session->csrf.substr(0, kSessionIdHexLength);
    // Gone from memory at once, so the session stops working before the disk agrees.
    forget_group(sid);
    persist(
        [sid](replica::Replica& rep) {
          SQLite::Statement st(rep.db(), "DELETE FROM local_session WHERE substr(csrf, 1, ?) = ?");
          st.bind(1, static_cast<int>(kSessionIdHexLength));
          st.bind(2, sid);
          st.exec();
        },
        [username, respond = std::move(respond)](bool ok) {
          if (!ok) {
            respond(internal_error());
            return;
          }
          spdlog::info("local logout of '{}'", username);
          HttpResponse out = HttpResponse::json(200, Json{{"logout", true}}.dump());
          for (auto& c : logout_cookies())
            out.headers.emplace_back("Set-Cookie", std::move(c));
          respond(std::move(out));
        });
  }

  std::optional<HttpResponse> check_csrf(const HttpRequest& request, const LocalSession& session) const {
    if (!is_mutating(request.method)) return std::nullopt;
    const auto header = request.header("X-XSRF-TOKEN");
    if (!header || session.csrf.empty() || !constant_time_equal(*header, session.csrf)) return csrf_invalid();
    return std::nullopt;
  }
};

LocalAuth::LocalAuth(uv_loop_t* loop, LocalAuthOptions options, replica::ReplicaWriter& writer,
                     sync::LoopInbox& inbox, std::function<std::optional<bool>()> upstream_online)
    : impl_(std::make_shared<Impl>(loop, std::move(options), writer, inbox, std::move(upstream_online))) {
  impl_->init();
}

LocalAuth::~LocalAuth() = default;

void LocalAuth::start(std::function<void()> done) {
  impl_->start(std::move(done));
}

void LocalAuth::close(std::function<void()> done) {
  impl_->close(std::move(done));
}

void LocalAuth::authenticate(const HttpRequest& request, Responder respond) {
  impl_->authenticate(request, std::move(respond));
}

void LocalAuth::verify_2fa(const HttpRequest& request, Responder respond) {
  impl_->verify_2fa(request, std::move(respond));
}

void LocalAuth::refresh(const HttpRequest& request, Responder respond) {
  try {
    impl_->refresh_route(request, respond);
  } catch (const std::exception& e) {
    spdlog::error("local token refresh failed: {}", e.what());
    respond(internal_error());
  }
}

void LocalAuth::logout(const HttpRequest& request, Responder respond) {
  impl_->logout(request, std::move(respond));
}

std::variant<const LocalSession*, HttpResponse> LocalAuth::session_for(const HttpRequest& request) const {
  return impl_->session_for(request);
}

std::optional<HttpResponse> LocalAuth::check_csrf(const HttpRequest& request,
                                                  const LocalSession& session) const {
  return impl_->check_csrf(request, session);
}

std::size_t LocalAuth::active_sessions() const {
  return impl_->active_sessions();
}

}  // namespace knosc::daemon
