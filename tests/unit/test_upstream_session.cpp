// UpstreamSession against a small fake Knosc that serves HTTP/1.1 from a uv_tcp server on the test's own
// loop: single-threaded, so the fake's state needs no locking and every exchange is deterministic.

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "sync/upstream_session.hpp"

namespace {

using knosc::sync::ApiResult;
using knosc::sync::HttpClient;
using knosc::sync::HttpResponse;
using knosc::sync::HttpTimeouts;
using knosc::sync::TlsOptions;
using knosc::sync::UpstreamCredentials;
using knosc::sync::UpstreamSession;
using Kind = ApiResult::Kind;
using SysClock = std::chrono::system_clock;
using namespace std::chrono_literals;

struct Request {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;

  std::optional<std::string> header(const std::string& name) const {
    auto it = headers.find(name);
    if (it == headers.end()) return std::nullopt;
    return it->second;
  }
  std::map<std::string, std::string> cookies() const {
    std::map<std::string, std::string> out;
    std::string all = header("cookie").value_or("");
    std::size_t pos = 0;
    while (pos < all.size()) {
      auto end = all.find(';', pos);
      if (end == std::string::npos) end = all.size();
      std::string pair = all.substr(pos, end - pos);
      while (!pair.empty() && pair.front() == ' ')
        pair.erase(0, 1);
      const auto eq = pair.find('=');
      if (eq != std::string::npos) out[pair.substr(0, eq)] = pair.substr(eq + 1);
      pos = end + 1;
    }
    return out;
  }
};

struct Response {
  int status = 200;
  std::vector<std::string> headers;
  std::string body;
};

// An HTTP/1.1 server on a uv loop; requests are answered by `handler` as they complete.
class LoopServer {
 public:
  using Handler = std::function<Response(const Request&)>;

  LoopServer(uv_loop_t* loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {
    listener_ = new uv_tcp_t;
    uv_tcp_init(loop_, listener_);
    listener_->data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    REQUIRE(uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 64, &LoopServer::on_connection) == 0);
    int len = sizeof addr;
    uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  LoopServer(const LoopServer&) = delete;
  LoopServer& operator=(const LoopServer&) = delete;
  ~LoopServer() { close(); }

  // Closes the listener and every connection; their memory goes in the close callbacks.
  void close() {
    if (!listener_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
    for (Conn* c : std::vector<Conn*>(conns_.begin(), conns_.end()))
      drop(c);
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_) + "/api"; }

 private:
  struct Conn {
    uv_tcp_t tcp{};
    LoopServer* server = nullptr;
    std::string buffer;
    char chunk[16384];
  };
  struct Write {
    uv_write_t req{};
    std::string data;
  };

  static void on_connection(uv_stream_t* listener, int status) {
    auto* self = static_cast<LoopServer*>(listener->data);
    if (status < 0) return;
    auto* c = new Conn;
    c->server = self;
    uv_tcp_init(self->loop_, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
               [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
      return;
    }
    self->conns_.insert(c);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
          auto* conn = static_cast<Conn*>(h->data);
          *buf = uv_buf_init(conn->chunk, sizeof conn->chunk);
        },
        &LoopServer::on_read);
  }

  static void on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t*) {
    auto* c = static_cast<Conn*>(stream->data);
    if (n < 0) {
      c->server->drop(c);
      return;
    }
    c->buffer.append(c->chunk, static_cast<std::size_t>(n));
    Request rq;
    while (parse(c->buffer, rq)) {
      c->server->answer(c, c->server->handler_(rq));
      rq = Request{};
    }
  }

  static bool parse(std::string& buffer, Request& rq) {
    const auto head_end = buffer.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    const std::string head = buffer.substr(0, head_end);
    std::size_t pos = head.find("\r\n");
    const std::string line = head.substr(0, pos);
    const auto sp1 = line.find(' ');
    const auto sp2 = line.find(' ', sp1 + 1);
    rq.method = line.substr(0, sp1);
    rq.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    while (pos != std::string::npos && pos < head.size()) {
      pos += 2;
      auto next = head.find("\r\n", pos);
      const std::string h = head.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
      const auto colon = h.find(':');
      if (colon != std::string::npos) {
        std::string name = h.substr(0, colon);
        for (auto& ch : name)
          ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::string value = h.substr(colon + 1);
        while (!value.empty() && value.front() == ' ')
          value.erase(0, 1);
        rq.headers[name] = value;
      }
      pos = next;
    }
    const std::size_t length = std::stoul(rq.header("content-length").value_or("0"));
    if (buffer.size() < head_end + 4 + length) return false;
    rq.body = buffer.substr(head_end + 4, length);
    buffer.erase(0, head_end + 4 + length);
    return true;
  }

  void answer(Conn* c, const Response& r) {
    auto* w = new Write;
    w->data = "HTTP/1.1 " + std::to_string(r.status) + " Fake\r\n";
    for (const auto& h : r.headers)
      w->data += h + "\r\n";
    w->data +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n\r\n";
    w->data += r.body;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1,
             [](uv_write_t* req, int) { delete reinterpret_cast<Write*>(req); });
  }

  void drop(Conn* c) {
    if (conns_.erase(c) == 0) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
             [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
  }

  uv_loop_t* loop_;
  Handler handler_;
  uv_tcp_t* listener_ = nullptr;
  std::unordered_set<Conn*> conns_;
  int port_ = 0;
};

std::string http_date(SysClock::time_point t) {
  const std::time_t tt = SysClock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

Response knosc_error(int status, const std::string& message, const std::string& code) {
  return {status, {}, nlohmann::json{{"Message", message}, {"Code", code}}.dump()};
}

// Knosc's auth contract in miniature: cookies, CSRF, expiry, refresh, lockout and 2FA, with switches for the
// failures under test.
struct FakeKnosc {
  std::string username = "sync@acme.example";
  std::string password = "correct horse";
  std::optional<std::string> totp_secret;  // set: the account has 2FA
  std::optional<int> lock_retry_after;     // set: logins answer 429 User.Locked (negative: no Retry-After)
  bool refresh_refuses = false;
  std::chrono::seconds date_offset{0};

  int serial = 0;
  std::set<std::string> live_access, expired_access;
  std::string csrf_access, refresh_token, csrf_refresh;
  std::vector<Request> log;

  std::size_t count(const std::string& target) const {
    return static_cast<std::size_t>(
        std::count_if(log.begin(), log.end(), [&](const Request& r) { return r.target == target; }));
  }
  void expire_sessions() {
    expired_access.insert(live_access.begin(), live_access.end());
    live_access.clear();
  }
  void revoke_sessions() { live_access.clear(); }

  std::vector<std::string> issue(bool with_refresh) {
    ++serial;
    const std::string n = std::to_string(serial);
    live_access.insert("acc-" + n);
    csrf_access = "csrf-a-" + n;
    std::vector<std::string> cookies = {
        "Set-Cookie: access_token_cookie=acc-" + n + "; HttpOnly; SameSite=Lax; Path=/",
        "Set-Cookie: csrf_access_token=" + csrf_access + "; SameSite=Lax; Path=/"};
    if (with_refresh) {
      refresh_token = "ref-" + n;
      csrf_refresh = "csrf-r-" + n;
      cookies.push_back("Set-Cookie: refresh_token_cookie=" + refresh_token +
                        "; HttpOnly; SameSite=Lax; Path=/api/token-refresh");
      cookies.push_back("Set-Cookie: csrf_refresh_token=" + csrf_refresh +
                        "; SameSite=Lax; Path=/api/token-refresh");
    }
    return cookies;
  }

  Response handle(const Request& rq) {
    log.push_back(rq);
    Response r = route(rq);
    r.headers.push_back("Date: " + http_date(SysClock::now() + date_offset));
    return r;
  }

  Response route(const Request& rq) {
    const auto body = nlohmann::json::parse(rq.body.empty() ? "null" : rq.body, nullptr, false);
    const auto cookies = rq.cookies();
    if (rq.method == "POST" && rq.target == "/api/authenticate") {
      if (lock_retry_after) {
        Response r = knosc_error(429, "Account temporarily locked", "User.Locked");
        if (*lock_retry_after >= 0) r.headers.push_back("Retry-After: " + std::to_string(*lock_retry_after));
        return r;
      }
      if (!body.is_object() || body.value("username", "") != username ||
          body.value("password", "") != password) {
        return knosc_error(401, "Invalid username or password.", "User.InvalidCredentials");
      }
      if (totp_secret) return {200, {}, R"({"requires_2fa": true})"};
      return {200, issue(true), R"({"login": true})"};
    }
    if (rq.method == "POST" && rq.target == "/api/verify-2fa") {
      const auto now = SysClock::to_time_t(SysClock::now());
      const std::string code = body.is_object() ? body.value("totp_code", "") : "";
      bool ok = totp_secret && body.is_object() && body.value("username", "") == username;
      ok = ok && (code == knosc::sync::totp_code(*totp_secret, now) ||
                  code == knosc::sync::totp_code(*totp_secret, now - 30) ||
                  code == knosc::sync::totp_code(*totp_secret, now + 30));
      if (!ok) return knosc_error(401, "Invalid or expired TOTP code.", "2FA.InvalidCode");
      return {200, issue(true), R"({"login": true})"};
    }
    if (rq.method == "POST" && rq.target == "/api/token-refresh") {
      const bool ok = !refresh_refuses && cookies.count("refresh_token_cookie") &&
                      cookies.at("refresh_token_cookie") == refresh_token &&
                      rq.header("x-xsrf-token") == csrf_refresh;
      if (!ok) return knosc_error(401, "Invalid token", "Token.Invalid");
      std::vector<std::string> fresh = issue(false);
      return {200, fresh, R"({"refresh": true})"};
    }
    // Every other route needs the session.
    if (!cookies.count("access_token_cookie"))
      return knosc_error(401, "Missing access token", "Token.Missing");
    const std::string& token = cookies.at("access_token_cookie");
    if (expired_access.count(token)) return knosc_error(401, "Token has expired", "Token.Expired");
    if (!live_access.count(token)) return knosc_error(401, "Invalid token", "Token.Invalid");
    if (rq.method != "GET" && rq.header("x-xsrf-token") != csrf_access) {
      return knosc_error(422, "Missing or invalid CSRF token", "CSRF.Invalid");
    }
    if (rq.target == "/api/purchase-order/42")
      return knosc_error(400, "PO #42 not found.", "PurchaseOrderList.NotFound");
    if (rq.target == "/api/purchase-order-details-accept-suggested-orders") {
      return {400, {}, R"({"error": "Missing required field: status"})"};
    }
    if (rq.target == "/api/busy")
      return {429, {"Retry-After: 7"}, R"({"Message": "Slow down", "Code": "Rate.Limited"})"};
    if (rq.target == "/api/always-invalid") return knosc_error(401, "Invalid token", "Token.Invalid");
    return {200, {}, nlohmann::json{{"data", {{"method", rq.method}, {"target", rq.target}}}}.dump()};
  }
};

struct TestLoop {
  uv_loop_t loop{};
  uv_timer_t ticker{};  // keeps UV_RUN_ONCE from blocking forever while waiting for a condition

  TestLoop() {
    uv_loop_init(&loop);
    uv_timer_init(&loop, &ticker);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    uv_timer_start(
        &ticker, [](uv_timer_t*) {}, 5, 5);
    while (!done() && std::chrono::steady_clock::now() < deadline)
      uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&ticker);
    return done();
  }

  int finish() {
    uv_close(reinterpret_cast<uv_handle_t*>(&ticker), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
  }
};

// A test clock the session reads for pauses and TOTP; it starts at the real time and only moves when told.
struct ManualClock {
  SysClock::time_point now = SysClock::now();
  UpstreamSession::Clock fn() {
    return [this] { return now; };
  }
};

struct Harness {
  TestLoop tl;
  FakeKnosc knosc;
  LoopServer server{&tl.loop, [this](const Request& rq) { return knosc.handle(rq); }};
  std::unique_ptr<HttpClient> http = std::make_unique<HttpClient>(&tl.loop, TlsOptions{}, HttpTimeouts{});
  std::unique_ptr<UpstreamSession> session;

  explicit Harness(std::optional<std::string> totp = std::nullopt, UpstreamSession::Clock clock = {}) {
    knosc.totp_secret = totp;
    connect(knosc.password, totp, std::move(clock));
  }

  void connect(std::string password, std::optional<std::string> totp, UpstreamSession::Clock clock = {}) {
    session = std::make_unique<UpstreamSession>(
        *http, server.base() + "/", UpstreamCredentials{knosc.username, std::move(password), std::move(totp)},
        std::move(clock));
  }

  ApiResult call(const std::string& method, const std::string& path, const std::string& body = "") {
    std::optional<ApiResult> got;
    session->call(method, path, body, [&](ApiResult r) { got = std::move(r); });
    REQUIRE(tl.run_until([&] { return got.has_value(); }));
    return std::move(*got);
  }

  ~Harness() {
    session.reset();
    bool closed = false;
    http->close([&] { closed = true; });
    tl.run_until([&] { return closed; });
    http.reset();
    server.close();
    CHECK(tl.finish() == 0);
  }
};

}  // namespace

TEST_CASE("UpstreamSession: logs in once, then calls carry the session cookie", "[session]") {
  Harness h;
  CHECK_FALSE(h.session->logged_in());
  const auto r = h.call("GET", "/purchase-order?page=1");
  REQUIRE(r.ok());
  CHECK(r.status == 200);
  CHECK(nlohmann::json::parse(r.response.body)["data"]["target"] == "/api/purchase-order?page=1");
  CHECK(h.session->logged_in());
  CHECK(h.session->logins() == 1);
  REQUIRE(h.call("GET", "/item-master").ok());
  CHECK(h.session->logins() == 1);

  REQUIRE(h.knosc.log.size() == 3);
  const auto& login = h.knosc.log[0];
  CHECK(login.target == "/api/authenticate");
  CHECK(login.header("content-type") == "application/json");
  const auto creds = nlohmann::json::parse(login.body);
  CHECK(creds["username"] == h.knosc.username);
  CHECK(creds["password"] == h.knosc.password);
  CHECK(h.knosc.log[1].cookies().at("access_token_cookie") == "acc-1");
  CHECK_FALSE(h.knosc.log[1].cookies().count("refresh_token_cookie"));
}

TEST_CASE("UpstreamSession: the observer sees every exchange, logins included", "[session]") {
  Harness h;
  std::vector<std::string> seen;
  h.session->set_observer([&](const HttpResponse& r) { seen.push_back(std::to_string(r.status)); });
  REQUIRE(h.call("GET", "/purchase-order").ok());
  REQUIRE(h.call("GET", "/item-master").ok());
  CHECK(seen.size() == h.knosc.log.size());  // the login, then both calls
  CHECK(seen == std::vector<std::string>{"200", "200", "200"});
}

TEST_CASE("UpstreamSession: the CSRF header goes on writes only", "[session]") {
  Harness h;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  for (std::string method : {"POST", "PUT", "PATCH", "DELETE"}) {
    const auto r =
        h.call(method, "/purchase-order/7", method == "DELETE" ? "" : R"({"PO List Number":"PO-7"})");
    CHECK(r.ok());
    CHECK(h.knosc.log.back().method == method);
    CHECK(h.knosc.log.back().header("x-xsrf-token") == h.knosc.csrf_access);
  }
  CHECK(h.knosc.log[1].method == "GET");
  CHECK_FALSE(h.knosc.log[1].header("x-xsrf-token").has_value());
  CHECK(h.knosc.count("/api/authenticate") == 1);
}

TEST_CASE("UpstreamSession: Token.Expired is refreshed and the call repeated", "[session]") {
  Harness h;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  h.knosc.expire_sessions();
  const auto r = h.call("PUT", "/purchase-order/3", "{}");
  REQUIRE(r.ok());
  CHECK(h.session->refreshes() == 1);
  CHECK(h.session->logins() == 1);
  const auto& log = h.knosc.log;
  REQUIRE(log.size() == 5);
  CHECK(log[2].target == "/api/purchase-order/3");
  CHECK(log[3].target == "/api/token-refresh");
  CHECK(log[3].header("x-xsrf-token") == "csrf-r-1");  // the refresh CSRF token, not the access one
  CHECK(log[3].cookies().at("refresh_token_cookie") == "ref-1");
  CHECK(log[4].target == "/api/purchase-order/3");
  CHECK(log[4].header("x-xsrf-token") == "csrf-a-2");  // the new access CSRF token
}

TEST_CASE("UpstreamSession: a refused refresh falls back to a new login", "[session]") {
  Harness h;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  h.knosc.expire_sessions();
  h.knosc.refresh_refuses = true;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  CHECK(h.session->logins() == 2);
  CHECK(h.session->refreshes() == 0);
  std::vector<std::string> targets;
  for (const auto& rq : h.knosc.log)
    targets.push_back(rq.target);
  CHECK(targets == std::vector<std::string>{"/api/authenticate", "/api/purchase-order", "/api/purchase-order",
                                            "/api/token-refresh", "/api/authenticate",
                                            "/api/purchase-order"});
}

TEST_CASE("UpstreamSession: other 401 codes log in again without refreshing; one repeat only", "[session]") {
  Harness h;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  h.knosc.revoke_sessions();  // Token.Invalid
  REQUIRE(h.call("GET", "/purchase-order").ok());
  CHECK(h.knosc.count("/api/token-refresh") == 0);
  CHECK(h.session->logins() == 2);

  const auto r = h.call("GET", "/always-invalid");
  CHECK(r.kind == Kind::HttpError);
  CHECK(r.status == 401);
  CHECK(r.code == "Token.Invalid");
  CHECK(h.knosc.count("/api/always-invalid") == 2);
  CHECK(h.session->logins() == 3);
}

TEST_CASE("UpstreamSession: a stale CSRF token is recovered like a 401", "[session]") {
  Harness h;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  h.knosc.csrf_access = "rotated-elsewhere";
  REQUIRE(h.call("POST", "/purchase-order", "{}").ok());
  CHECK(h.session->logins() == 2);
}

TEST_CASE("UpstreamSession: concurrent calls share one login and one refresh", "[session]") {
  Harness h;
  constexpr int kCount = 10;
  std::vector<std::optional<ApiResult>> got(kCount);
  auto fire = [&] {
    for (int i = 0; i < kCount; ++i) {
      got[i].reset();
      h.session->call("GET", "/item-master/" + std::to_string(i), "",
                      [&, i](ApiResult r) { got[i] = std::move(r); });
    }
    return h.tl.run_until(
        [&] { return std::all_of(got.begin(), got.end(), [](auto& g) { return g.has_value(); }); });
  };
  REQUIRE(fire());
  for (auto& g : got)
    CHECK(g->ok());
  CHECK(h.knosc.count("/api/authenticate") == 1);

  h.knosc.expire_sessions();
  REQUIRE(fire());
  for (auto& g : got)
    CHECK(g->ok());
  CHECK(h.knosc.count("/api/token-refresh") == 1);
  CHECK(h.knosc.count("/api/authenticate") == 1);
  CHECK(h.session->refreshes() == 1);
}

TEST_CASE("UpstreamSession: a locked account pauses logins until Retry-After", "[session][lockout]") {
  Harness h;
  h.knosc.lock_retry_after = 120;
  const auto before = SysClock::now();
  const auto r = h.call("GET", "/purchase-order");
  CHECK(r.kind == Kind::LockedOut);
  CHECK(r.status == 429);
  CHECK(r.code == "User.Locked");
  REQUIRE(r.retry_after.has_value());
  CHECK(r.retry_after->count() >= 119);
  CHECK(r.retry_after->count() <= 120);
  const auto until = h.session->logins_paused_until();
  REQUIRE(until.has_value());
  CHECK(*until >= before + 119s);
  CHECK(*until <= SysClock::now() + 121s);

  // During the pause calls end at once and Knosc sees no further login.
  std::optional<ApiResult> second;
  h.session->call("GET", "/purchase-order", "", [&](ApiResult a) { second = std::move(a); });
  REQUIRE(second.has_value());
  CHECK(second->kind == Kind::LockedOut);
  CHECK(h.knosc.count("/api/authenticate") == 1);
  CHECK(h.knosc.log.size() == 1);
}

TEST_CASE("UpstreamSession: a lockout without Retry-After pauses 60 s", "[session][lockout]") {
  Harness h;
  h.knosc.lock_retry_after = -1;
  const auto before = SysClock::now();
  CHECK(h.call("GET", "/purchase-order").kind == Kind::LockedOut);
  const auto until = h.session->logins_paused_until();
  REQUIRE(until.has_value());
  CHECK(*until >= before + 59s);
  CHECK(*until <= SysClock::now() + 61s);
}

TEST_CASE("UpstreamSession: refused credentials back off exponentially up to an hour", "[session][lockout]") {
  ManualClock clock;
  Harness h(std::nullopt, clock.fn());
  h.connect("wrong password", std::nullopt, clock.fn());

  auto r = h.call("GET", "/purchase-order");
  CHECK(r.kind == Kind::AuthFailed);
  CHECK(r.status == 401);
  CHECK(r.code == "User.InvalidCredentials");
  REQUIRE(h.session->logins_paused_until() == clock.now + 60s);
  CHECK(h.call("GET", "/purchase-order").kind == Kind::LockedOut);
  CHECK(h.knosc.count("/api/authenticate") == 1);

  std::vector<std::chrono::seconds> pauses;
  for (int i = 0; i < 8; ++i) {
    clock.now = *h.session->logins_paused_until();  // the pause has just run out
    CHECK_FALSE(h.session->logins_paused_until().has_value());
    CHECK(h.call("GET", "/purchase-order").kind == Kind::AuthFailed);
    pauses.push_back(
        std::chrono::duration_cast<std::chrono::seconds>(*h.session->logins_paused_until() - clock.now));
  }
  CHECK(pauses == std::vector<std::chrono::seconds>{120s, 240s, 480s, 960s, 1920s, 3600s, 3600s, 3600s});
  CHECK(h.knosc.count("/api/authenticate") == 9);

  // Once the password is accepted, the login succeeds and the backoff starts over.
  clock.now = *h.session->logins_paused_until();
  h.knosc.password = "wrong password";
  REQUIRE(h.call("GET", "/purchase-order").ok());
  CHECK_FALSE(h.session->logins_paused_until().has_value());
  h.knosc.password = "changed again";
  h.knosc.revoke_sessions();
  CHECK(h.call("GET", "/purchase-order").kind == Kind::AuthFailed);
  CHECK(h.session->logins_paused_until() == clock.now + 60s);
}

TEST_CASE("UpstreamSession: accounts with 2FA log in with a TOTP code", "[session][2fa]") {
  const std::string secret = "JBSWY3DPEHPK3PXP";
  Harness h(secret);
  const auto r = h.call("GET", "/purchase-order");
  REQUIRE(r.ok());
  CHECK(h.session->logins() == 1);
  REQUIRE(h.knosc.log.size() == 3);
  CHECK(h.knosc.log[1].target == "/api/verify-2fa");
  const auto body = nlohmann::json::parse(h.knosc.log[1].body);
  CHECK(body["username"] == h.knosc.username);
  CHECK(body["totp_code"].get<std::string>().size() == 6);
}

TEST_CASE("UpstreamSession: 2FA without a configured secret fails the login", "[session][2fa]") {
  Harness h(std::string("JBSWY3DPEHPK3PXP"));
  h.connect(h.knosc.password, std::nullopt);
  const auto r = h.call("GET", "/purchase-order");
  CHECK(r.kind == Kind::AuthFailed);
  CHECK_FALSE(r.message.empty());
  CHECK(h.knosc.count("/api/verify-2fa") == 0);
  CHECK_FALSE(h.session->logged_in());
}

TEST_CASE("UpstreamSession: a wrong TOTP secret is refused and backs off", "[session][2fa]") {
  Harness h(std::string("JBSWY3DPEHPK3PXP"));
  h.connect(h.knosc.password, std::string("GEZDGNBVGY3TQOJQ"));
  const auto r = h.call("GET", "/purchase-order");
  CHECK(r.kind == Kind::AuthFailed);
  CHECK(r.code == "2FA.InvalidCode");
  CHECK(h.session->logins_paused_until().has_value());
}

TEST_CASE("UpstreamSession: Knosc error bodies and Retry-After are reported", "[session]") {
  Harness h;
  auto r = h.call("GET", "/purchase-order/42");
  CHECK(r.kind == Kind::HttpError);
  CHECK(r.status == 400);
  CHECK(r.code == "PurchaseOrderList.NotFound");
  CHECK(r.message == "PO #42 not found.");

  r = h.call("PUT", "/purchase-order-details-accept-suggested-orders", "{}");
  CHECK(r.kind == Kind::HttpError);
  CHECK(r.code.empty());
  CHECK(r.message == "Missing required field: status");

  r = h.call("GET", "/busy");
  CHECK(r.kind == Kind::HttpError);
  CHECK(r.status == 429);
  CHECK(r.retry_after == std::chrono::seconds(7));
  CHECK(h.session->logged_in());  // a rate limit on a call is not a login problem
}

TEST_CASE("UpstreamSession: clock skew comes from the Date header", "[session]") {
  Harness h;
  h.knosc.date_offset = 300s;
  REQUIRE(h.call("GET", "/purchase-order").ok());
  REQUIRE(h.session->clock_skew().has_value());
  CHECK(h.session->clock_skew()->count() >= 298);
  CHECK(h.session->clock_skew()->count() <= 302);
}

TEST_CASE("UpstreamSession: an unreachable upstream is a transport failure", "[session]") {
  TestLoop tl;
  auto http = std::make_unique<HttpClient>(&tl.loop, TlsOptions{}, HttpTimeouts{});
  std::uint16_t port = 0;
  uv_tcp_t probe;  // bound, never listening: connections to its port are refused
  {
    uv_tcp_init(&tl.loop, &probe);
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(&probe, reinterpret_cast<const sockaddr*>(&addr), 0);
    int len = sizeof addr;
    uv_tcp_getsockname(&probe, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    uv_close(reinterpret_cast<uv_handle_t*>(&probe), nullptr);
  }
  {
    UpstreamSession session(*http, "http://127.0.0.1:" + std::to_string(port) + "/api",
                            {"u", "p", std::nullopt});
    std::optional<ApiResult> got;
    session.call("POST", "/purchase-order", "{}", [&](ApiResult r) { got = std::move(r); });
    REQUIRE(tl.run_until([&] { return got.has_value(); }));
    CHECK(got->kind == Kind::Transport);
    CHECK_FALSE(got->response.maybe_delivered);
    CHECK_FALSE(session.logged_in());
    CHECK_FALSE(session.logins_paused_until().has_value());
  }
  bool closed = false;
  http->close([&] { closed = true; });
  REQUIRE(tl.run_until([&] { return closed; }));
  http.reset();
  CHECK(tl.finish() == 0);
}

TEST_CASE("UpstreamSession: calls waiting on a login get an answer when the client closes", "[session]") {
  Harness h;
  int answered = 0;
  for (int i = 0; i < 3; ++i) {
    h.session->call("GET", "/purchase-order", "", [&](ApiResult r) {
      ++answered;
      CHECK(r.kind == Kind::Transport);
    });
  }
  bool closed = false;
  h.http->close([&] { closed = true; });
  CHECK(answered == 3);
  REQUIRE(h.tl.run_until([&] { return closed; }));
}
