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
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

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
constexpr std::uint64_t kPurgeIntervalMs = 3600 * 1000;
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
  Responder respond;

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

  std::deque<JobPtr> waiting;
  JobPtr current;  // the one login being checked; the others wait their turn
  bool dispatching = false;

  std::uint64_t next_write_id = 0;
  std::unordered_map<std::uint64_t, std::function<void(bool)>> pending_writes;
  std::size_t pending_hashes = 0;

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
          if (!closing && timer != nullptr) {
            uv_timer_start(
                &timer->timer,
                [](uv_timer_t* t) {
                  if (auto owner = static_cast<TimerBox*>(t->data)->owner.lock()) owner->purge();
                },
                kPurgeIntervalMs, kPurgeIntervalMs);
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
      job->respond(shutting_down());
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
    if (!closing || !http_closed || !timer_closed || pending_hashes != 0 || !pending_writes.empty()) return;
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

  void purge() {
    const std::int64_t now = now_seconds();
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
    if (waiting.size() >= kMaxWaitingLogins) {
      HttpResponse busy = HttpResponse::knosc_error(
          503, "Too many logins are waiting to be checked; try again shortly.", "Sync.Busy");
      busy.set_header("Retry-After", "5");
      job->respond(std::move(busy));
      return;
    }
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

  // Answers the job (once; later calls are ignored) and lets the next one run.
  void finish(const JobPtr& job, HttpResponse response) {
    if (!job->respond) return;
    auto respond = std::move(job->respond);
    job->respond = nullptr;
    wipe(job->password);
    wipe(job->totp_code);
    respond(std::move(response));
    if (current == job) {
      current.reset();
      next_job();
    }
  }

  std::optional<bool> online() const { return upstream_online ? upstream_online() : std::nullopt; }

  void run(const JobPtr& job) {
    if (closing) {
      finish(job, shutting_down());
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
      if (online() == false) {
        finish(job, offline_two_factor());
        return;
      }
      job->password = pending->second.password;
      upstream_second_factor(job);
      return;
    }
    if (online() == false) {
      offline_check(job);
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
        spdlog::warn("local login for '{}': Knosc cannot check it ({}); using the offline cache",
                     job->username, why_unavailable(r));
        http->clear_cookies();
        offline_check(job);
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
          finish(job, pass_through(r));
          return;
        }
        if (json_flag(answer, "first_signin")) {
          // A first sign-in is not completed through the loopback: the session_token is Knosc's, and the new
          // password is chosen against Knosc directly (POST /api/first-signin there). The next login through
          // the loopback then checks and caches the new password as usual.
          spdlog::info("local login for '{}': Knosc asks for a first sign-in", job->username);
          finish(job, pass_through(r));
          return;
        }
        spdlog::warn("local login for '{}': Knosc answered 200 without a login", job->username);
        finish(job, upstream_unexpected());
        return;
      }
      http->clear_cookies();
      spdlog::info("local login for '{}': Knosc refused it (HTTP {})", job->username, r.status);
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
          open_session(job, std::move(u), true, "by Knosc");
        });
  }

  // Commits the user row (all of it when `whole_user`, else only its failure counters) and a new session,
  // then answers 200 with the session's cookies.
  void open_session(const JobPtr& job, CachedUser u, bool whole_user, const char* how) {
    u.failed_logins = 0;
    u.locked_until = 0;
    std::shared_ptr<IssuedSession> session;
    try {
      session = std::make_shared<IssuedSession>(issue(u, now_seconds()));
    } catch (const std::exception& e) {
      spdlog::error("local login for '{}': no session could be issued: {}", u.username, e.what());
      finish(job, internal_error());
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
        [this, job, u, session, how](bool ok) {
          if (!ok) {
            finish(job, internal_error());
            return;
          }
          const std::string key = lower_ascii(u.username);
          users[key] = u;
          refresh_sessions_of(key, u);
          for (const auto& row : session->rows)
            install(row);
          spdlog::info("local login for '{}' accepted {}", u.username, how);
          HttpResponse ok_response = HttpResponse::json(200, Json{{"login", true}}.dump());
          for (auto& c : session->cookies())
            ok_response.headers.emplace_back("Set-Cookie", std::move(c));
          finish(job, std::move(ok_response));
        });
  }

  void offline_check(const JobPtr& job) {
    const std::int64_t now = now_seconds();
    const auto it = users.find(job->key);
    if (it == users.end() || it->second.verified_at <= 0 ||
        now - it->second.verified_at > options.offline_login_ttl_seconds || it->second.kdf != kKdf ||
        it->second.iterations < 1) {
      spdlog::info("local login for '{}' refused offline: no recent cached credential", job->username);
      // The same work and the same answer as a wrong password: neither the body nor the time it takes tells
      // whether the account has logged in here.
      hash_password(job->password, random_bytes(kSaltBytes), options.pbkdf2_iterations,
                    [this, job](std::optional<std::string>) {
                      finish(job, closing ? shutting_down() : offline_invalid_credentials());
                    });
      return;
    }
    if (it->second.locked_until > now) {
      spdlog::info("local login for '{}' refused offline: locked", job->username);
      finish(job, locked_response(it->second.locked_until, now));
      return;
    }
    CachedUser snapshot = it->second;
    hash_password(job->password, snapshot.salt, snapshot.iterations,
                  [this, job, snapshot](std::optional<std::string> hash) mutable {
                    if (closing) {
                      finish(job, shutting_down());
                      return;
                    }
                    if (!hash) {
                      finish(job, internal_error());
                      return;
                    }
                    if (!constant_time_equal(*hash, snapshot.hash)) {
                      offline_failure(job, std::move(snapshot));
                      return;
                    }
                    // The TOTP secret lives in Knosc alone, so a second factor cannot be checked offline;
                    // accepting the password alone would quietly turn a two-factor account into a one-factor
                    // one. Said only to whoever knows the password, so it reveals nothing to a prober.
                    if (snapshot.two_factor()) {
                      spdlog::info("local login for '{}' refused offline: two-factor account", job->username);
                      finish(job, offline_two_factor());
                      return;
                    }
                    open_session(job, std::move(snapshot), false, "offline from the cached credential");
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
            [this, job](bool) { finish(job, offline_invalid_credentials()); });
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
