#pragma once
// A logged-in conversation with Knosc on top of HttpClient: login (with TOTP when the account has 2FA),
// the CSRF header on writes, refresh on expiry, re-login when refresh fails, and respect for lockouts.
//
// Ownership and threads: owned by the daemon's network side; all calls and callbacks on the uv loop thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/http_client.hpp"

namespace knosc::sync {

struct UpstreamCredentials {
  std::string username;
  std::string password;                    // never logged
  std::optional<std::string> totp_secret;  // base32, for accounts with 2FA; never logged
};

// What one Knosc call came to after the session did what it could (refresh, re-login, one repeat).
struct ApiResult {
  enum class Kind {
    Ok,          // 2xx
    HttpError,   // any other HTTP status (including 400 *.NotFound, 403, 5xx, 429)
    Transport,   // no complete HTTP response (see response.maybe_delivered)
    AuthFailed,  // login refused (bad credentials, 2FA failed); no request was sent
    LockedOut,   // the account is locked upstream, or logins are paused; no request was sent
  };
  Kind kind = Kind::Transport;
  long status = 0;
  std::string
      code;  // Knosc error "Code" when the body had one (also "error" bodies: code empty, message set)
  std::string message;                              // Knosc error "Message" or transport error text
  std::optional<std::chrono::seconds> retry_after;  // from Retry-After on 429/503
  HttpResponse response;                            // the final raw response

  bool ok() const { return kind == Kind::Ok; }
};

class UpstreamSession {
 public:
  // The wall clock used for login pauses and TOTP codes; the default is std::chrono::system_clock::now.
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  // base_url like "http://127.0.0.1:9000/api" (no trailing slash needed).
  UpstreamSession(HttpClient& http, std::string base_url, UpstreamCredentials credentials, Clock clock = {});

  // METHOD base_url + path (path begins with "/", may carry a query). Logs in first when there is no
  // session; on 401 refreshes (or logs in again when refresh fails) once and repeats the call once. A 422
  // CSRF.Invalid (the CSRF cookie no longer matches the session) is recovered the same way, by a new login.
  // Calls made while a login or refresh is in flight wait for it; only one login/refresh runs at a time.
  void call(std::string method, std::string path, std::string json_body, std::function<void(ApiResult)> done);
  // As call(), with a multipart/form-data body holding one file instead of JSON (Knosc's uploads,
  // POST /api/job/{trigger}). The boundary is random and checked not to occur in the file.
  void call_multipart(std::string method, std::string path, MultipartFile file,
                      std::function<void(ApiResult)> done);

  // Called with the raw outcome of every exchange the session makes (calls, logins, refreshes), before the
  // exchange is handled: the link monitor learns from each whether the link carries answers.
  void set_observer(std::function<void(const HttpResponse&)> observer);

  bool logged_in() const;
  // Until this time no login is attempted (Knosc lockout with Retry-After, or backoff after refused logins);
  // calls complete at once with LockedOut.
  std::optional<std::chrono::system_clock::time_point> logins_paused_until() const;
  // Upstream clock minus local clock, from the last response's Date header.
  std::optional<std::chrono::seconds> clock_skew() const;
  std::size_t logins() const;     // successful logins so far (metrics, tests)
  std::size_t refreshes() const;  // successful refreshes so far

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// RFC 6238 TOTP (SHA-1, 30 s step, 6 digits) for the given base32 secret at unix time `t`.
// Throws std::invalid_argument when the secret is not valid base32 or is empty.
std::string totp_code(const std::string& base32_secret, std::int64_t unix_time);

// RFC 4648 base32 (case-insensitive; '=' padding and spaces ignored). nullopt on any other character, or on a
// length that no whole number of bytes encodes (1, 3 or 6 characters past a multiple of 8).
std::optional<std::vector<std::uint8_t>> base32_decode(std::string_view text);

}  // namespace knosc::sync
