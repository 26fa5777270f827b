#include "sync/upstream_session.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

namespace knosc::sync {

// ---------------------------------------------------------------------------------------------------------
// TOTP

std::optional<std::vector<std::uint8_t>> base32_decode(std::string_view text) {
  std::vector<std::uint8_t> out;
  std::uint32_t buffer = 0;
  int bits = 0;
  std::size_t symbols = 0;
  for (char raw : text) {
    if (raw == '=' || raw == ' ') continue;
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(raw)));
    std::uint32_t value = 0;
    if (c >= 'A' && c <= 'Z') {
      value = static_cast<std::uint32_t>(c - 'A');
    } else if (c >= '2' && c <= '7') {
      value = static_cast<std::uint32_t>(c - '2' + 26);
    } else {
      return std::nullopt;
    }
    ++symbols;
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((buffer >> bits) & 0xFFu));
    }
  }
  // 8 symbols carry 5 bytes; a final group of 1, 3 or 6 symbols leaves a partial byte no encoder produces.
  const std::size_t tail = symbols % 8;
  if (tail == 1 || tail == 3 || tail == 6) return std::nullopt;
  return out;
}

std::string totp_code(const std::string& base32_secret, std::int64_t unix_time) {
  const auto key = base32_decode(base32_secret);
  if (!key || key->empty()) throw std::invalid_argument("TOTP secret is not valid base32");
  // Floor division keeps the step monotonic for (theoretical) times before the epoch.
  std::int64_t step = unix_time / 30;
  if (unix_time < 0 && unix_time % 30 != 0) --step;
  const auto counter = static_cast<std::uint64_t>(step);
  unsigned char message[8];
  for (int i = 7; i >= 0; --i)
    message[i] = static_cast<unsigned char>((counter >> (8 * (7 - i))) & 0xFFu);

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (!HMAC(EVP_sha1(), key->data(), static_cast<int>(key->size()), message, sizeof message, digest,
            &digest_len) ||
      digest_len < 20) {
    throw std::runtime_error("HMAC-SHA1 failed");
  }
  // RFC 4226 dynamic truncation.
  const unsigned offset = digest[digest_len - 1] & 0x0Fu;
  const std::uint32_t binary = (static_cast<std::uint32_t>(digest[offset] & 0x7Fu) << 24) |
                               (static_cast<std::uint32_t>(digest[offset + 1]) << 16) |
                               (static_cast<std::uint32_t>(digest[offset + 2]) << 8) |
                               static_cast<std::uint32_t>(digest[offset + 3]);
  std::string code = std::to_string(binary % 1'000'000u);
  code.insert(0, 6 - code.size(), '0');
  return code;
}

// ---------------------------------------------------------------------------------------------------------
// Session

namespace {

using SysClock = std::chrono::system_clock;
using std::chrono::seconds;

constexpr seconds kDefaultLockout{60};
constexpr seconds kFirstBackoff{60};
constexpr seconds kMaxBackoff{3600};

bool is_write(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

struct ErrorBody {
  std::string code;
  std::string message;
};

// Knosc answers errors as {"Message", "Code"}, and a few routes as {"error": "..."}.
ErrorBody parse_error(const std::string& body) {
  ErrorBody e;
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return e;
  if (auto it = j.find("Code"); it != j.end() && it->is_string()) e.code = it->get<std::string>();
  if (auto it = j.find("Message"); it != j.end() && it->is_string()) {
    e.message = it->get<std::string>();
  } else if (auto err = j.find("error"); err != j.end() && err->is_string()) {
    e.message = err->get<std::string>();
  }
  return e;
}

std::optional<std::time_t> http_date(const std::optional<std::string>& value) {
  if (!value) return std::nullopt;
  const std::time_t t = curl_getdate(value->c_str(), nullptr);
  if (t == -1) return std::nullopt;
  return t;
}

// Retry-After is either delta-seconds or an HTTP-date; a date is measured against the response's own Date
// so that clock skew does not distort it.
std::optional<seconds> retry_after(const HttpResponse& r, SysClock::time_point now) {
  const auto value = r.header("retry-after");
  if (!value || value->empty()) return std::nullopt;
  if (std::all_of(value->begin(), value->end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
    if (value->size() > 9) return kMaxBackoff * 24;  // absurd values are clamped rather than overflowing
    return seconds(std::stoll(*value));
  }
  const auto at = http_date(value);
  if (!at) return std::nullopt;
  const auto base = http_date(r.header("date")).value_or(SysClock::to_time_t(now));
  return seconds(std::max<std::time_t>(0, *at - base));
}

}  // namespace

struct UpstreamSession::Impl : std::enable_shared_from_this<UpstreamSession::Impl> {
  struct Call {
    std::string method;
    std::string path;
    std::string body;
    std::string content_type = "application/json";
    std::function<void(ApiResult)> done;
    bool recovered = false;        // the one refresh/re-login this call may trigger has been spent
    std::uint64_t generation = 0;  // session generation the call was last sent under
  };
  using CallPtr = std::shared_ptr<Call>;
  enum class Auth { None, Login, Verify2fa, Refresh };

  HttpClient& http;
  std::string base;
  UpstreamCredentials creds;
  Clock clock;

  bool logged_in = false;
  Auth auth = Auth::None;
  std::deque<CallPtr> waiting;  // calls held until the login/refresh in flight ends
  // Bumped on every successful login or refresh: a 401 for a call sent under an older generation is answered
  // by simply sending it again.
  std::uint64_t generation = 0;
  std::optional<SysClock::time_point> paused_until;
  seconds next_backoff = kFirstBackoff;
  std::optional<seconds> skew;
  std::string last_date;                      // the last Date header observe() parsed
  std::optional<std::time_t> last_date_time;  // and its time
  std::size_t logins = 0;
  std::size_t refreshes = 0;
  std::function<void(const HttpResponse&)> observer;

  Impl(HttpClient& h, std::string b, UpstreamCredentials c, Clock k)
      : http(h), base(std::move(b)), creds(std::move(c)), clock(std::move(k)) {
    while (!base.empty() && base.back() == '/')
      base.pop_back();
    if (!clock) clock = [] { return SysClock::now(); };
  }

  std::string url(const std::string& path) const {
    if (!path.empty() && path.front() == '/') return base + path;
    return base + "/" + path;
  }

  bool paused(SysClock::time_point now) const { return paused_until && now < *paused_until; }

  // --- results ---

  ApiResult result_from(HttpResponse r) const {
    ApiResult a;
    a.status = r.status;
    if (!r.transport_ok()) {
      a.kind = ApiResult::Kind::Transport;
      a.message = r.transport_error;
    } else {
      a.kind = (r.status >= 200 && r.status < 300) ? ApiResult::Kind::Ok : ApiResult::Kind::HttpError;
      if (a.kind != ApiResult::Kind::Ok) {
        auto e = parse_error(r.body);
        a.code = std::move(e.code);
        a.message = std::move(e.message);
      }
      if (r.status == 429 || r.status == 503) a.retry_after = retry_after(r, clock());
    }
    a.response = std::move(r);
    return a;
  }

  static void complete(const CallPtr& c, ApiResult result) {
    auto done = std::move(c->done);
    c->done = nullptr;
    if (done) done(std::move(result));
  }

  void fail_waiting(const ApiResult& result) {
    auto batch = std::move(waiting);
    waiting.clear();
    for (auto& c : batch)
      complete(c, result);
  }

  void locked_out_result(ApiResult& a) const {
    a.kind = ApiResult::Kind::LockedOut;
    if (a.message.empty()) a.message = "logins to Knosc are paused";
    if (paused_until) {
      const auto left = std::chrono::ceil<seconds>(*paused_until - clock());
      a.retry_after = std::max(seconds(0), left);
    }
  }

  void fail_waiting_locked_out() {
    ApiResult a;
    locked_out_result(a);
    fail_waiting(a);
  }

  // --- responses in general ---

  void observe(const std::string& method, const std::string& path, const HttpResponse& r) {
    if (r.transport_ok()) {
      spdlog::debug("knosc {} {} -> {} in {:.3f}s", method, path, r.status, r.total_seconds);
    } else {
      spdlog::debug("knosc {} {} -> transport error {} ({}) in {:.3f}s", method, path, r.curl_code,
                    r.transport_error, r.total_seconds);
    }
    if (const auto* date = date_header(r)) {
      // Answers come many a second, and parsing an HTTP date (curl_getdate) cost more than the rest of this
      // bookkeeping: the last one parsed is kept.
      if (*date != last_date) {
        last_date = *date;
        last_date_time = http_date(last_date);
      }
      if (last_date_time) skew = seconds(*last_date_time - SysClock::to_time_t(clock()));
    }
    if (observer) observer(r);
  }

  static const std::string* date_header(const HttpResponse& r) {
    for (auto it = r.headers.rbegin(); it != r.headers.rend(); ++it)
      if (it->first == "date") return &it->second;
    return nullptr;
  }

  HttpRequest request(const std::string& method, const std::string& path, std::string body,
                      std::optional<std::string> csrf, const std::string& content_type) const {
    HttpRequest rq;
    rq.method = method;
    rq.url = url(path);
    rq.body = std::move(body);
    rq.headers.emplace_back("Accept: application/json");
    rq.headers.push_back("Content-Type: " + content_type);
    if (csrf) rq.headers.push_back("X-XSRF-TOKEN: " + *csrf);
    return rq;
  }

  template <typename Handler>
  void send(const std::string& method, const std::string& path, std::string body,
            std::optional<std::string> csrf, Handler handler,
            const std::string& content_type = "application/json") {
    std::weak_ptr<Impl> weak = weak_from_this();
    http.send(request(method, path, std::move(body), std::move(csrf), content_type),
              [weak, method, path, handler = std::move(handler)](HttpResponse r) mutable {
                auto self = weak.lock();
                if (!self) return;  // the session is gone; nobody is waiting for this answer
                self->observe(method, path, r);
                handler(*self, std::move(r));
              });
  }

  // --- calls ---

  void submit(const CallPtr& c) {
    if (auth != Auth::None) {
      waiting.push_back(c);
      return;
    }
    if (!logged_in) {
      waiting.push_back(c);
      begin_login();
      return;
    }
    dispatch(c);
  }

  void dispatch(const CallPtr& c) {
    c->generation = generation;
    std::optional<std::string> csrf;
    if (is_write(c->method)) csrf = http.cookie("csrf_access_token");
    std::string body = c->body;
    send(
        c->method, c->path, std::move(body), std::move(csrf),
        [c](Impl& self, HttpResponse r) { self.on_call_response(c, std::move(r)); }, c->content_type);
  }

  static bool session_rejected(const HttpResponse& r, const std::string& code) {
    // 401: the access token is missing, expired or invalid. 422 CSRF.Invalid: the CSRF cookie no longer
    // matches the session. Both are refused before the request is acted upon, so one repeat is safe.
    return r.status == 401 || (r.status == 422 && code == "CSRF.Invalid");
  }

  void on_call_response(const CallPtr& c, HttpResponse r) {
    // Only 401 and 422 can be session rejections; parsing every body (list pages are large) would double the
    // cost of a pull for nothing.
    if (r.transport_ok() && !c->recovered && (r.status == 401 || r.status == 422)) {
      const std::string code = parse_error(r.body).code;
      if (session_rejected(r, code)) {
        c->recovered = true;
        if (auth != Auth::None) {
          waiting.push_back(c);
        } else if (c->generation != generation) {
          dispatch(c);  // someone renewed the session after this call went out
        } else {
          waiting.push_back(c);
          const bool can_refresh = code == "Token.Expired" &&
                                   http.cookie("refresh_token_cookie").has_value() &&
                                   http.cookie("csrf_refresh_token").has_value();
          if (can_refresh) {
            begin_refresh();
          } else {
            spdlog::info("knosc: {} {} answered {} {}; logging in again", c->method, c->path, r.status, code);
            begin_login();
          }
        }
        return;
      }
    }
    complete(c, result_from(std::move(r)));
  }

  void start(std::string method, std::string path, std::string body, std::function<void(ApiResult)> done,
             std::string content_type = "application/json") {
    auto c = std::make_shared<Call>();
    c->content_type = std::move(content_type);
    c->method = std::move(method);
    std::transform(c->method.begin(), c->method.end(), c->method.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
    c->path = std::move(path);
    c->body = std::move(body);
    c->done = std::move(done);
    if (!logged_in && auth == Auth::None && paused(clock())) {
      ApiResult a;
      locked_out_result(a);
      complete(c, std::move(a));
      return;
    }
    submit(c);
  }

  // --- login, 2FA, refresh ---

  void begin_login() {
    if (paused(clock())) {
      logged_in = false;
      fail_waiting_locked_out();
      return;
    }
    auth = Auth::Login;
    logged_in = false;
    // A fresh login replaces all four cookies; stale ones (e.g. a refresh cookie that verify-2fa does not
    // reissue) must not linger and be tried later.
    http.clear_cookies();
    nlohmann::json body = {{"username", creds.username}, {"password", creds.password}};
    spdlog::info("knosc: logging in");
    send("POST", "/authenticate", body.dump(), std::nullopt,
         [](Impl& self, HttpResponse r) { self.on_login_response(std::move(r), false); });
  }

  void begin_verify_2fa() {
    std::string code;
    try {
      const auto now = clock() + skew.value_or(seconds(0));  // the code must match Knosc's clock
      code = totp_code(*creds.totp_secret, SysClock::to_time_t(now));
    } catch (const std::exception&) {
      login_failed(ApiResult::Kind::AuthFailed, {}, "the configured TOTP secret is not valid base32", false);
      return;
    }
    auth = Auth::Verify2fa;
    nlohmann::json body = {{"username", creds.username}, {"totp_code", code}};
    send("POST", "/verify-2fa", body.dump(), std::nullopt,
         [](Impl& self, HttpResponse r) { self.on_login_response(std::move(r), true); });
  }

  void login_failed(ApiResult::Kind kind, const HttpResponse& r, std::string message, bool backoff) {
    auth = Auth::None;
    logged_in = false;
    ApiResult a = result_from(r);
    a.kind = kind;
    if (!message.empty()) a.message = std::move(message);
    if (backoff) {
      // Each refused login counts towards Knosc's lockout; waiting longer after every refusal keeps a wrong
      // password in the configuration from locking the account.
      paused_until = clock() + next_backoff;
      spdlog::warn("knosc: login refused ({} {}); no login for {}s", r.status, a.code, next_backoff.count());
      next_backoff = std::min(next_backoff * 2, kMaxBackoff);
    } else {
      spdlog::warn("knosc: login failed: {}", a.message);
    }
    fail_waiting(a);
  }

  void on_login_response(HttpResponse r, bool verifying) {
    if (!r.transport_ok()) {
      auth = Auth::None;
      fail_waiting(result_from(r));
      return;
    }
    if (r.status == 429) {
      auth = Auth::None;
      logged_in = false;
      ApiResult a = result_from(r);
      const seconds wait = a.retry_after.value_or(kDefaultLockout);
      paused_until = clock() + wait;
      spdlog::warn("knosc: account locked ({}); no login for {}s", a.code, wait.count());
      locked_out_result(a);
      fail_waiting(a);
      return;
    }
    if (r.status == 401) {
      login_failed(ApiResult::Kind::AuthFailed, r, {}, true);
      return;
    }
    if (r.status < 200 || r.status >= 300) {
      login_failed(ApiResult::Kind::HttpError, r, {}, false);
      return;
    }
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    const auto flag = [&](const char* key) {
      if (!j.is_object()) return false;
      const auto it = j.find(key);
      return it != j.end() && it->is_boolean() && it->get<bool>();
    };
    if (flag("requires_2fa")) {
      if (verifying) {
        login_failed(ApiResult::Kind::AuthFailed, r, "verify-2fa did not complete the login", true);
      } else if (!creds.totp_secret || creds.totp_secret->empty()) {
        login_failed(ApiResult::Kind::AuthFailed, r,
                     "the account requires 2FA but no TOTP secret is configured", false);
      } else {
        begin_verify_2fa();
      }
      return;
    }
    if (flag("first_signin")) {
      login_failed(ApiResult::Kind::AuthFailed, r, "the account must complete its first sign-in in Knosc",
                   false);
      return;
    }
    auth = Auth::None;
    logged_in = true;
    ++logins;
    ++generation;
    paused_until.reset();
    next_backoff = kFirstBackoff;
    spdlog::info("knosc: logged in");
    flush_waiting();
  }

  void begin_refresh() {
    auth = Auth::Refresh;
    send("POST", "/token-refresh", "{}", http.cookie("csrf_refresh_token"),
         [](Impl& self, HttpResponse r) { self.on_refresh_response(std::move(r)); });
  }

  void on_refresh_response(HttpResponse r) {
    auth = Auth::None;
    if (!r.transport_ok()) {
      // The session may well still be refreshable; the next call's 401 tries again.
      fail_waiting(result_from(r));
      return;
    }
    if (r.status >= 200 && r.status < 300) {
      ++refreshes;
      ++generation;
      logged_in = true;
      spdlog::debug("knosc: session refreshed");
      flush_waiting();
      return;
    }
    spdlog::info("knosc: refresh refused ({}); logging in again", r.status);
    begin_login();
  }

  void flush_waiting() {
    auto batch = std::move(waiting);
    waiting.clear();
    for (auto& c : batch)
      submit(c);
  }
};

UpstreamSession::UpstreamSession(HttpClient& http, std::string base_url, UpstreamCredentials credentials,
                                 Clock clock)
    : impl_(std::make_shared<Impl>(http, std::move(base_url), std::move(credentials), std::move(clock))) {}

void UpstreamSession::call(std::string method, std::string path, std::string json_body,
                           std::function<void(ApiResult)> done) {
  // Keeps the state alive for the duration even if a synchronously completed callback destroys the session.
  auto impl = impl_;
  impl->start(std::move(method), std::move(path), std::move(json_body), std::move(done));
}

void UpstreamSession::call_multipart(std::string method, std::string path, MultipartFile file,
                                     std::function<void(ApiResult)> done) {
  // 128 random bits make a collision with the file's bytes unlikely; the check makes it impossible.
  std::random_device rd;
  std::string boundary;
  do {
    char hex[33];
    std::snprintf(hex, sizeof hex, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
    boundary = std::string("knosc-syncd-") + hex;
  } while (file.data.find(boundary) != std::string::npos);
  std::string body = multipart_form_body(file, boundary);
  auto impl = impl_;
  impl->start(std::move(method), std::move(path), std::move(body), std::move(done),
              "multipart/form-data; boundary=" + boundary);
}

void UpstreamSession::set_observer(std::function<void(const HttpResponse&)> observer) {
  impl_->observer = std::move(observer);
}

bool UpstreamSession::logged_in() const {
  return impl_->logged_in;
}

std::optional<std::chrono::system_clock::time_point> UpstreamSession::logins_paused_until() const {
  if (impl_->paused(impl_->clock())) return impl_->paused_until;
  return std::nullopt;
}

std::optional<std::chrono::seconds> UpstreamSession::clock_skew() const {
  return impl_->skew;
}

std::size_t UpstreamSession::logins() const {
  return impl_->logins;
}

std::size_t UpstreamSession::refreshes() const {
  return impl_->refreshes;
}

}  // namespace knosc::sync
