// LocalAuth: the pure helpers by table, then the whole login/session life cycle against a scripted fake Knosc
// that serves HTTP/1.1 from a uv_tcp server on the test's own loop, over a real temporary replica.

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <unordered_set>

#include "daemon/local_auth.hpp"
#include "replica/replica.hpp"
#include "replica/writer.hpp"
#include "schema/catalog.hpp"
#include "sync/loop_inbox.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using knosc::daemon::Access;
using knosc::daemon::HttpRequest;
using knosc::daemon::HttpResponse;
using knosc::daemon::LocalAuth;
using knosc::daemon::LocalAuthOptions;
using knosc::daemon::LocalSession;
using knosc::daemon::Privileges;
using Json = nlohmann::json;
using namespace std::chrono_literals;

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0x0f]);
  }
  return out;
}

bool is_lower_hex(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

// --- Pure helpers ------------------------------------------------------------------------------------------

TEST_CASE("login and logout cookies are exactly Knosc's", "[local_auth]") {
  CHECK(knosc::daemon::login_cookies("A1", "R2", "CA3", "CR4") ==
        std::vector<std::string>{
            "access_token_cookie=A1; HttpOnly; SameSite=Lax; Path=/",
            "refresh_token_cookie=R2; HttpOnly; SameSite=Lax; Path=/api/token-refresh",
            "csrf_access_token=CA3; SameSite=Lax; Path=/",
            "csrf_refresh_token=CR4; SameSite=Lax; Path=/api/token-refresh",
        });
  CHECK(knosc::daemon::logout_cookies() == std::vector<std::string>{
                                               "access_token_cookie=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                                               "refresh_token_cookie=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                                           });
}

TEST_CASE("cookie_value reads one cookie from a Cookie header", "[local_auth]") {
  struct Case {
    std::string header;
    std::optional<std::string> expected;
  };
  const std::string name = "access_token_cookie";
  const std::vector<Case> cases = {
      {"access_token_cookie=abc", "abc"},
      {"a=1; access_token_cookie=abc; b=2", "abc"},
      {"csrf_access_token=x;access_token_cookie=y", "y"},
      {"  access_token_cookie = abc  ; b=2", "abc"},
      {"access_token_cookie=\"quoted\"", "quoted"},
      {"access_token_cookie=first; access_token_cookie=second", "first"},
      {"access_token_cookie=v=w", "v=w"},
      {"access_token_cookie=", ""},
      {"garbage; access_token_cookie=ok", "ok"},
      {"xaccess_token_cookie=abc", std::nullopt},
      {"ACCESS_TOKEN_COOKIE=abc", std::nullopt},
      {"access_token_cookie", std::nullopt},
      {"", std::nullopt},
      {";;;", std::nullopt},
  };
  for (const auto& c : cases) {
    INFO("Cookie: " << c.header);
    CHECK(knosc::daemon::cookie_value(c.header, name) == c.expected);
  }
}

TEST_CASE("lockout_until: three failures lock, each further one doubles the lock", "[local_auth]") {
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  struct Case {
    int failures;
    std::int64_t now;
    std::int64_t base;
    std::int64_t expected;
  };
  const std::vector<Case> cases = {
      {0, 1000, 30, 0},
      {1, 1000, 30, 0},
      {2, 1000, 30, 0},
      {3, 1000, 30, 1030},
      {4, 1000, 30, 1060},
      {5, 1000, 30, 1120},
      {6, 1000, 30, 1240},
      {3, 1000, 0, 0},                                       // no base, no lockout
      {100, 1000, 30, 1000 + 30 * (std::int64_t{1} << 20)},  // the doubling stops at 2^20
      {60, 0, kMax / 2, kMax},                               // saturates instead of overflowing
      {3, kMax - 5, 30, kMax},
  };
  for (const auto& c : cases) {
    INFO("failures=" << c.failures << " now=" << c.now << " base=" << c.base);
    CHECK(knosc::daemon::lockout_until(c.failures, c.now, c.base) == c.expected);
  }
}

TEST_CASE("pbkdf2_sha256 matches the published PBKDF2-HMAC-SHA256 vectors", "[local_auth]") {
  struct Case {
    std::string password;
    std::string salt;
    int iterations;
    std::string expected_hex;
  };
  using namespace std::string_literals;
  const std::vector<Case> cases = {
      {"password", "salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"},
      {"password", "salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"},
      {"password", "salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"},
      {"passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096,
       "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1"},
      {"pass\0word"s, "sa\0lt"s, 4096, "89b69d0516f829893c696226650a86878c029ac13ee276509d5ae58b6466a724"},
  };
  for (const auto& c : cases) {
    INFO("iterations=" << c.iterations);
    CHECK(hex(knosc::daemon::pbkdf2_sha256(c.password, c.salt, c.iterations)) == c.expected_hex);
  }
  CHECK_THROWS(knosc::daemon::pbkdf2_sha256("password", "salt", 0));
}

TEST_CASE("constant_time_equal compares whole strings", "[local_auth]") {
  using knosc::daemon::constant_time_equal;
  using namespace std::string_literals;
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK(constant_time_equal("a\0b"s, "a\0b"s));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK_FALSE(constant_time_equal("", "a"));
  CHECK_FALSE(constant_time_equal("a\0b"s, "a\0c"s));
}

TEST_CASE("Privileges::from_profile reads Knosc's profile; allows() lets Edit imply View", "[local_auth]") {
  const Json body = Json::parse(R"({"data": {
      "id": 12, "Username": "planner@acme.example", "Role Name": "Procurement Manager",
      "Privileges": [{"type": "Procurement", "access": "Edit"}, {"type": "Demand", "access": "View"},
                     {"type": "Inventory", "access": "Bogus"}, {"type": "Forecast", "access": "None"},
                     {"type": "Item Master", "access": "View"}, {"type": "Item Master", "access": "Edit"},
                     {"access": "Edit"}, "not an object"],
      "Granular Filters": [{"category": "Warehouse Number", "type": "include", "values": ["WH-01", "WH-02"]},
                           {"category": "Supplier Number", "type": "exclude", "values": ["SUP-9"]},
                           {"category": "Customer Number", "type": "surprise", "values": "CUS-1"},
                           {"type": "include", "values": ["no category"]}]}})");

  for (const Json* input : {&body, &body["data"]}) {
    const Privileges p = Privileges::from_profile(*input);
    CHECK(p.role_name == "Procurement Manager");
    CHECK_FALSE(p.is_administrator());
    struct Case {
      std::string module;
      Access needed;
      bool allowed;
    };
    const std::vector<Case> cases = {
        {"Procurement", Access::View, true}, {"Procurement", Access::Edit, true},
        {"Demand", Access::View, true},      {"Demand", Access::Edit, false},
        {"Inventory", Access::View, false},  {"Forecast", Access::View, false},
        {"Item Master", Access::Edit, true}, {"Users", Access::View, false},
        {"Users", Access::None, true},       {"procurement", Access::View, false},
    };
    for (const auto& c : cases) {
      INFO(c.module << " needs " << static_cast<int>(c.needed));
      CHECK(p.allows(c.module, c.needed) == c.allowed);
    }
    REQUIRE(p.granular.size() == 3);
    CHECK(p.granular[0].category == "Warehouse Number");
    CHECK(p.granular[0].include);
    CHECK(p.granular[0].values == std::vector<Json>{"WH-01", "WH-02"});
    CHECK(p.granular[1].category == "Supplier Number");
    CHECK_FALSE(p.granular[1].include);
    CHECK(p.granular[2].include);  // an unknown type restricts rather than widens
    CHECK(p.granular[2].values == std::vector<Json>{"CUS-1"});
  }

  CHECK(Privileges::from_profile(Json::parse(R"({"Role Name": "Administrator"})")).is_administrator());
  CHECK(Privileges::from_profile(Json::parse(R"({"Role Name": "Superuser"})")).is_administrator());
  const Privileges empty = Privileges::from_profile(Json::parse("[1, 2]"));
  CHECK(empty.modules.empty());
  CHECK(empty.granular.empty());
  CHECK(empty.role_name.empty());
}

// --- End to end against a fake Knosc ---------------------------------------------------------------------

namespace {

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
  std::optional<std::string> cookie(const std::string& name) const {
    return knosc::daemon::cookie_value(header("cookie").value_or(""), name);
  }
};

struct Response {
  int status = 200;
  std::vector<std::string> headers;
  std::string body;
};

// An HTTP/1.1 server on a uv loop; `handler` answers each request as it completes, or never (nullopt).
class LoopServer {
 public:
  using Handler = std::function<std::optional<Response>(const Request&)>;

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

  // Closes the listener and every connection; connecting is refused from then on.
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
      if (auto r = c->server->handler_(rq)) c->server->answer(c, *r);
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

Response knosc_error(int status, const std::string& message, const std::string& code) {
  return {status, {}, Json{{"Message", message}, {"Code", code}}.dump()};
}

constexpr const char* kTotp = "908172";

// Knosc's login routes in miniature: users with passwords, 2FA and first sign-in, sessions, the profile.
struct FakeKnosc {
  struct User {
    std::string password;
    Json profile;
    bool two_factor = false;
    bool first_signin = false;
  };
  std::map<std::string, User> users;
  std::optional<int> lock_retry_after;  // set: logins answer 429 User.Locked
  bool logins_fail_503 = false;
  bool hang_logins = false;  // logins are never answered
  int serial = 0;
  std::map<std::string, std::string> live_access;  // token -> username
  std::set<std::string> pending_2fa;
  std::vector<Request> log;

  void add(const std::string& name, const std::string& password, int id, Json extra = Json::object()) {
    Json profile = {
        {"id", id},
        {"Username", name},
        {"User Email", name},
        {"Role Id", 3},
        {"Role Name", "Procurement Manager"},
        {"2FA Enabled", false},
        {"Privileges",
         {{{"type", "Procurement"}, {"access", "Edit"}}, {{"type", "Demand"}, {"access", "View"}}}},
        {"Granular Filters",
         {{{"category", "Warehouse Number"}, {"type", "include"}, {"values", {"WH-01"}}}}}};
    profile.update(extra);
    users[name] = User{password, profile};
  }

  std::size_t count(const std::string& target) const {
    return static_cast<std::size_t>(
        std::count_if(log.begin(), log.end(), [&](const Request& r) { return r.target == target; }));
  }

  std::vector<std::string> issue(const std::string& name) {
    const std::string n = std::to_string(++serial);
    live_access["knosc-acc-" + n] = name;
    return {"Set-Cookie: access_token_cookie=knosc-acc-" + n + "; HttpOnly; SameSite=Lax; Path=/",
            "Set-Cookie: refresh_token_cookie=knosc-ref-" + n +
                "; HttpOnly; SameSite=Lax; Path=/api/token-refresh",
            "Set-Cookie: csrf_access_token=knosc-csrf-a-" + n + "; SameSite=Lax; Path=/",
            "Set-Cookie: csrf_refresh_token=knosc-csrf-r-" + n + "; SameSite=Lax; Path=/api/token-refresh"};
  }

  std::optional<Response> handle(const Request& rq) {
    log.push_back(rq);
    const Json body = Json::parse(rq.body.empty() ? "null" : rq.body, nullptr, false);
    const auto field = [&](const char* key) {
      return body.is_object() && body.contains(key) && body[key].is_string() ? body[key].get<std::string>()
                                                                             : std::string();
    };
    if (rq.method == "POST" && rq.target == "/api/authenticate") {
      if (hang_logins) return std::nullopt;
      if (logins_fail_503) return Response{503, {}, "<html>bad gateway</html>"};
      if (lock_retry_after) {
        Response r = knosc_error(429, "Account temporarily locked", "User.Locked");
        r.headers.push_back("Retry-After: " + std::to_string(*lock_retry_after));
        return r;
      }
      const auto user = users.find(field("username"));
      if (user == users.end() || user->second.password != field("password"))
        return knosc_error(401, "Invalid username or password.", "User.InvalidCredentials");
      if (user->second.first_signin)
        return Response{200, {}, R"({"first_signin": true, "session_token": "knosc-first-signin-token"})"};
      if (user->second.two_factor) {
        pending_2fa.insert(user->first);
        return Response{200, {}, R"({"requires_2fa": true})"};
      }
      return Response{200, issue(user->first), R"({"login": true})"};
    }
    if (rq.method == "POST" && rq.target == "/api/verify-2fa") {
      const std::string name = field("username");
      if (!pending_2fa.count(name) || field("totp_code") != kTotp)
        return knosc_error(401, "Invalid or expired TOTP code.", "2FA.InvalidCode");
      pending_2fa.erase(name);
      auto cookies = issue(name);
      cookies.resize(2);  // API-NOTES §2.4: only the access pair on this path
      cookies[1] =
          "Set-Cookie: csrf_access_token=knosc-csrf-a-" + std::to_string(serial) + "; SameSite=Lax; Path=/";
      return Response{200, cookies, R"({"login": true})"};
    }
    if (rq.method == "GET" && rq.target == "/api/profile") {
      const auto token = rq.cookie("access_token_cookie");
      if (!token) return knosc_error(401, "Missing access token", "Token.Missing");
      const auto live = live_access.find(*token);
      if (live == live_access.end()) return knosc_error(401, "Invalid token", "Token.Invalid");
      return Response{200, {}, Json{{"data", users.at(live->second).profile}}.dump()};
    }
    return knosc_error(404, "Not Found", "Route.NotFound");
  }
};

// Collects every log line, to prove that no secret is ever logged.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    text_.append(msg.payload.data(), msg.payload.size());
    text_ += '\n';
  }
  void flush_() override {}

 private:
  std::string text_;
};

struct LogCapture {
  std::shared_ptr<CaptureSink> sink = std::make_shared<CaptureSink>();
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();

  LogCapture() {
    auto logger = std::make_shared<spdlog::logger>("local-auth-test", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  ~LogCapture() { spdlog::set_default_logger(previous); }
};

using knosc::test::TempDir;

struct TestLoop {
  uv_loop_t loop{};
  uv_timer_t ticker{};  // keeps UV_RUN_ONCE from blocking forever while waiting for a condition

  TestLoop() {
    uv_loop_init(&loop);
    uv_timer_init(&loop, &ticker);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
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

// Set-Cookie headers of a response, and the value of each cookie they set.
std::vector<std::string> set_cookies(const HttpResponse& r) {
  std::vector<std::string> out;
  for (const auto& [name, value] : r.headers) {
    if (name == "Set-Cookie") out.push_back(value);
  }
  return out;
}

std::map<std::string, std::string> cookie_values(const HttpResponse& r) {
  std::map<std::string, std::string> out;
  for (const auto& c : set_cookies(r)) {
    const auto eq = c.find('=');
    const auto semi = c.find(';');
    out[c.substr(0, eq)] = c.substr(eq + 1, semi == std::string::npos ? std::string::npos : semi - eq - 1);
  }
  return out;
}

std::optional<std::string> header_of(const HttpResponse& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return std::nullopt;
}

Json body_of(const HttpResponse& r) {
  return Json::parse(r.body, nullptr, false);
}

Json knosc_body(const std::string& message, const std::string& code) {
  return Json{{"Message", message}, {"Code", code}};
}

HttpRequest request(const std::string& method, const std::string& path, std::string body = "",
                    std::optional<std::string> cookie = std::nullopt,
                    std::optional<std::string> csrf = std::nullopt) {
  HttpRequest rq;
  rq.method = method;
  rq.path = path;
  rq.target = path;
  rq.body = std::move(body);
  rq.remote_address = "127.0.0.1";
  if (cookie) rq.headers.emplace_back("cookie", *cookie);
  if (csrf) rq.headers.emplace_back("x-xsrf-token", *csrf);
  return rq;
}

std::string credentials(const std::string& user, const std::string& password) {
  return Json{{"username", user}, {"password", password}}.dump();
}

// A tool's view of one login: the cookies it got.
struct ToolSession {
  std::string access, refresh, csrf_access, csrf_refresh;

  std::string access_cookie() const {
    return "csrf_access_token=" + csrf_access + "; access_token_cookie=" + access;
  }
  std::string refresh_cookie() const { return "refresh_token_cookie=" + refresh; }
};

const char* kPlanner = "planner@acme.example";
const char* kPlannerPassword = "planner-Pa55word!";
const char* kBuyer = "buyer@acme.example";
const char* kBuyerPassword = "buyer-Pa55word!";
const char* kTwoFactor = "twofa@acme.example";
const char* kTwoFactorPassword = "twofa-Pa55word!";
const char* kNewbie = "newbie@acme.example";
const char* kNewbiePassword = "newbie-Pa55word!";

struct Harness {
  LogCapture logs;  // first in, last out: every thread below logs into it
  TempDir dir;
  TestLoop tl;
  FakeKnosc knosc;
  std::unique_ptr<LoopServer> server;
  std::unique_ptr<knosc::replica::ReplicaWriter> writer;
  std::unique_ptr<knosc::sync::LoopInbox> inbox;
  std::optional<bool> online;  // what LocalAuth hears from upstream_online()
  LocalAuthOptions options;
  std::unique_ptr<LocalAuth> auth;
  std::set<std::string> secrets;  // must never appear in the log

  Harness() : Harness(LocalAuthOptions{}) {}
  explicit Harness(LocalAuthOptions o) : options(std::move(o)) {
    knosc.add(kPlanner, kPlannerPassword, 12);
    knosc.add(kBuyer, kBuyerPassword, 13,
              Json{{"Privileges", {{{"type", "Procurement"}, {"access", "View"}}}},
                   {"Granular Filters", Json::array()}});
    // A 2FA account whose profile does not say so: the daemon must still treat it as one.
    knosc.add(kTwoFactor, kTwoFactorPassword, 14);
    knosc.users[kTwoFactor].two_factor = true;
    knosc.users[kTwoFactor].profile.erase("2FA Enabled");
    knosc.add(kNewbie, kNewbiePassword, 15);
    knosc.users[kNewbie].first_signin = true;
    secrets = {kPlannerPassword, kBuyerPassword, kTwoFactorPassword, kNewbiePassword, kTotp};

    server = std::make_unique<LoopServer>(&tl.loop, [this](const Request& rq) { return knosc.handle(rq); });
    writer = std::make_unique<knosc::replica::ReplicaWriter>(std::make_unique<knosc::replica::Replica>(
        (dir.path / "replica.db").string(), knosc::schema::Catalog::builtin(),
        knosc::replica::Replica::Mode::ReadWrite));
    inbox = std::make_unique<knosc::sync::LoopInbox>(&tl.loop);
    options.upstream_base_url = server->base();
    options.pbkdf2_iterations = 1000;
    options.timeouts.connect_ms = 3000;
    options.timeouts.transfer_ms = 5000;
    start_auth();
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void start_auth() {
    auth = std::make_unique<LocalAuth>(&tl.loop, options, *writer, *inbox, [this] { return online; });
    bool started = false;
    auth->start([&] { started = true; });
    REQUIRE(tl.run_until([&] { return started; }));
  }

  bool stop_auth() {
    bool closed = false;
    auth->close([&] { closed = true; });
    const bool ok = tl.run_until([&] { return closed; });
    auth.reset();
    return ok;
  }

  // A daemon restart: a new LocalAuth over the same replica.
  void restart() {
    REQUIRE(stop_auth());
    start_auth();
  }

  // Knosc unreachable from now on: connecting is refused.
  void upstream_down() { server->close(); }

  using Route = void (LocalAuth::*)(const HttpRequest&, knosc::daemon::Responder);
  HttpResponse call(Route route, const HttpRequest& rq) {
    std::optional<HttpResponse> got;
    (auth.get()->*route)(rq, [&](HttpResponse r) { got = std::move(r); });
    REQUIRE(tl.run_until([&] { return got.has_value(); }));
    return std::move(*got);
  }

  HttpResponse login(const std::string& user, const std::string& password) {
    return call(&LocalAuth::authenticate, request("POST", "/api/authenticate", credentials(user, password)));
  }

  // A login that must succeed; returns the cookies the tool got.
  ToolSession logged_in(const std::string& user, const std::string& password) {
    const HttpResponse r = login(user, password);
    INFO(r.body);
    REQUIRE(r.status == 200);
    return remember(r);
  }

  ToolSession remember(const HttpResponse& r) {
    auto values = cookie_values(r);
    ToolSession s{values["access_token_cookie"], values["refresh_token_cookie"], values["csrf_access_token"],
                  values["csrf_refresh_token"]};
    secrets.insert({s.access, s.refresh, s.csrf_access, s.csrf_refresh});
    secrets.erase("");
    return s;
  }

  HttpResponse refresh(const ToolSession& s, std::optional<std::string> csrf) {
    return call(&LocalAuth::refresh,
                request("POST", "/api/token-refresh", "", s.refresh_cookie(), std::move(csrf)));
  }

  HttpResponse logout(const ToolSession& s, std::optional<std::string> csrf) {
    return call(&LocalAuth::logout, request("POST", "/api/logout", "", s.access_cookie(), std::move(csrf)));
  }

  // The session for a GET carrying this access token, or the 401.
  std::variant<const LocalSession*, HttpResponse> session(const std::string& access) const {
    return auth->session_for(request("GET", "/api/purchase-order", "", "access_token_cookie=" + access));
  }
  const LocalSession* session_ok(const std::string& access) const {
    auto v = session(access);
    if (auto* e = std::get_if<HttpResponse>(&v)) FAIL("no session: " << e->body);
    return std::get<const LocalSession*>(v);
  }
  Json session_error(const std::string& access) const {
    auto v = session(access);
    auto* e = std::get_if<HttpResponse>(&v);
    REQUIRE(e != nullptr);
    CHECK(e->status == 401);
    return body_of(*e);
  }

  // Runs SQL on the replica writer thread and waits for it.
  std::int64_t sql(const std::string& statement) {
    std::atomic<bool> done{false};
    std::int64_t result = 0;
    writer->post([&](knosc::replica::Replica& rep) {
      if (statement.rfind("SELECT", 0) == 0) {
        result = rep.db().execAndGet(statement).getInt64();
      } else {
        result = rep.db().exec(statement);
      }
      done = true;
    });
    REQUIRE(tl.run_until([&] { return done.load(); }));
    return result;
  }

  ~Harness() {
    if (auth) CHECK(stop_auth());
    server->close();
    inbox->close();
    CHECK(tl.finish() == 0);
    writer->stop();
    const std::string text = logs.sink->text();
    for (const auto& secret : secrets) {
      INFO("secret " << secret);
      CHECK(text.find(secret) == std::string::npos);
    }
  }
};

}  // namespace

TEST_CASE("online login: checked upstream, cached, answered with Knosc's cookies", "[local_auth]") {
  Harness h;
  const HttpResponse r = h.login(kPlanner, kPlannerPassword);
  REQUIRE(r.status == 200);
  CHECK(body_of(r) == Json{{"login", true}});
  CHECK(header_of(r, "Content-Type") == "application/json");
  const ToolSession s = h.remember(r);
  for (const auto* value : {&s.access, &s.refresh}) {
    CHECK(value->size() == 64);
    CHECK(is_lower_hex(*value));
  }
  CHECK(is_lower_hex(s.csrf_access));
  CHECK(is_lower_hex(s.csrf_refresh));
  CHECK(s.csrf_access != s.csrf_refresh);
  // Exactly the documented cookies, in the documented order, with the daemon's own tokens (never Knosc's).
  CHECK(set_cookies(r) == knosc::daemon::login_cookies(s.access, s.refresh, s.csrf_access, s.csrf_refresh));
  CHECK(s.access.find("knosc") == std::string::npos);

  // Upstream saw the user's own credentials on a clean jar, then a profile read with that login's cookie.
  REQUIRE(h.knosc.log.size() == 2);
  CHECK(h.knosc.log[0].target == "/api/authenticate");
  CHECK(Json::parse(h.knosc.log[0].body) == Json{{"username", kPlanner}, {"password", kPlannerPassword}});
  CHECK_FALSE(h.knosc.log[0].header("cookie"));
  CHECK(h.knosc.log[1].method == "GET");
  CHECK(h.knosc.log[1].target == "/api/profile");
  CHECK(h.knosc.log[1].cookie("access_token_cookie") == "knosc-acc-1");

  const LocalSession* session = h.session_ok(s.access);
  CHECK(session->username == kPlanner);
  CHECK(session->user_id == 12);
  CHECK(session->csrf == s.csrf_access);
  CHECK(session->privileges.allows("Procurement", Access::Edit));
  CHECK(session->privileges.allows("Demand", Access::View));
  CHECK_FALSE(session->privileges.allows("Demand", Access::Edit));
  REQUIRE(session->privileges.granular.size() == 1);
  CHECK(session->privileges.granular[0].category == "Warehouse Number");
  CHECK(session->profile["Username"] == kPlanner);
  CHECK(h.auth->active_sessions() == 1);

  CHECK(h.session_error("") == knosc_body("Missing access token", "Token.Missing"));
  auto missing = h.auth->session_for(request("GET", "/api/purchase-order", "", "other=1"));
  REQUIRE(std::holds_alternative<HttpResponse>(missing));
  CHECK(body_of(std::get<HttpResponse>(missing)) == knosc_body("Missing access token", "Token.Missing"));
  CHECK(h.session_error(std::string(64, 'a')) == knosc_body("Invalid token", "Token.Invalid"));

  // CSRF: only writes need it, and only the access CSRF value passes.
  const Json csrf_error = knosc_body("Missing or invalid CSRF token", "CSRF.Invalid");
  CHECK_FALSE(h.auth->check_csrf(request("GET", "/api/item-master"), *session));
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
    INFO(method);
    auto none = h.auth->check_csrf(request(method, "/api/item-master"), *session);
    REQUIRE(none);
    CHECK(none->status == 422);
    CHECK(body_of(*none) == csrf_error);
    auto wrong =
        h.auth->check_csrf(request(method, "/api/item-master", "", std::nullopt, s.csrf_refresh), *session);
    REQUIRE(wrong);
    CHECK(wrong->status == 422);
    CHECK_FALSE(
        h.auth->check_csrf(request(method, "/api/item-master", "", std::nullopt, s.csrf_access), *session));
  }

  // Proof that the capture works: the login was logged, by name only.
  CHECK(h.logs.sink->text().find(kPlanner) != std::string::npos);
}

TEST_CASE("malformed login bodies are refused before anything else", "[local_auth]") {
  Harness h;
  const Json bad = knosc_body("Bad Request Format", "JSON.Invalid");
  for (const std::string body :
       {"", "not json", "[1]", R"({"username": "x"})", R"({"password": "y"})",
        R"({"username": 5, "password": "y"})", R"({"username": "x", "password": null})"}) {
    INFO(body);
    const HttpResponse r = h.call(&LocalAuth::authenticate, request("POST", "/api/authenticate", body));
    CHECK(r.status == 400);
    CHECK(body_of(r) == bad);
    const HttpResponse v = h.call(&LocalAuth::verify_2fa, request("POST", "/api/verify-2fa", body));
    CHECK(v.status == 400);
  }
  CHECK(h.knosc.log.empty());
}

TEST_CASE("upstream refusals reach the tool as Knosc sent them", "[local_auth]") {
  Harness h;
  HttpResponse r = h.login(kPlanner, "not-the-password");
  CHECK(r.status == 401);
  CHECK(body_of(r) == knosc_body("Invalid username or password.", "User.InvalidCredentials"));
  CHECK(set_cookies(r).empty());
  CHECK(h.auth->active_sessions() == 0);

  h.knosc.lock_retry_after = 17;
  r = h.login(kPlanner, kPlannerPassword);
  CHECK(r.status == 429);
  CHECK(body_of(r) == knosc_body("Account temporarily locked", "User.Locked"));
  CHECK(header_of(r, "Retry-After") == "17");
  CHECK(set_cookies(r).empty());
  h.knosc.lock_retry_after.reset();

  // First sign-in happens against Knosc itself; the loopback passes the answer on untouched.
  r = h.login(kNewbie, kNewbiePassword);
  CHECK(r.status == 200);
  CHECK(body_of(r) == Json{{"first_signin", true}, {"session_token", "knosc-first-signin-token"}});
  CHECK(set_cookies(r).empty());
  CHECK(h.knosc.count("/api/profile") == 0);
  CHECK(h.auth->active_sessions() == 0);
}

TEST_CASE("offline: the cached hash logs users in, and wrong passwords lock the account", "[local_auth]") {
  Harness h;
  h.logged_in(kPlanner, kPlannerPassword);
  h.upstream_down();
  const std::size_t upstream_requests = h.knosc.log.size();

  // Same password, any letter case in the name (as Knosc, usernames are case-insensitive here).
  const ToolSession offline = h.logged_in("Planner@ACME.example", kPlannerPassword);
  CHECK(h.session_ok(offline.access)->privileges.allows("Procurement", Access::Edit));
  CHECK(h.session_ok(offline.access)->user_id == 12);
  CHECK(h.auth->active_sessions() == 2);

  // Offline, a wrong password of a cached account.
  const Json invalid = knosc_body(
      "Invalid username or password. Knosc cannot be reached: only accounts that logged in here recently can "
      "log in until it is back.",
      "User.InvalidCredentials");
  for (int i = 1; i <= 3; ++i) {
    INFO("failure " << i);
    const HttpResponse r = h.login(kPlanner, "wrong-" + std::to_string(i));
    CHECK(r.status == 401);
    CHECK(body_of(r) == invalid);
  }
  // Locked: even the right password is refused until Retry-After has passed.
  for (const std::string password : {kPlannerPassword, "wrong-4"}) {
    const HttpResponse r = h.login(kPlanner, password);
    CHECK(r.status == 429);
    CHECK(body_of(r) == knosc_body("Account temporarily locked", "User.Locked"));
    const auto retry = header_of(r, "Retry-After");
    REQUIRE(retry);
    CHECK(std::stoi(*retry) >= 1);
    CHECK(std::stoi(*retry) <= 30);
  }
  // The lock is on disk: a restart does not lift it.
  CHECK(h.sql("SELECT failed_logins FROM local_user") == 3);
  h.restart();
  CHECK(h.login(kPlanner, kPlannerPassword).status == 429);

  // An account never seen here cannot be checked: 503 Sync.Offline, not a wrong password's answer (the
  // trade-off is in docs/LOOPBACK_API.md).
  const HttpResponse unknown = h.login(kBuyer, kBuyerPassword);
  CHECK(unknown.status == 503);
  CHECK(body_of(unknown)["Code"] == "Sync.Offline");
  CHECK(h.knosc.log.size() == upstream_requests);
}

TEST_CASE("offline: a known-down link skips upstream; a 5xx counts as down", "[local_auth]") {
  Harness h;
  h.logged_in(kPlanner, kPlannerPassword);
  const std::size_t before = h.knosc.log.size();

  h.online = false;
  h.logged_in(kPlanner, kPlannerPassword);
  CHECK(h.knosc.log.size() == before);

  h.online = true;
  h.knosc.logins_fail_503 = true;
  h.logged_in(kPlanner, kPlannerPassword);
  CHECK(h.knosc.log.size() == before + 1);
  CHECK(h.login(kBuyer, kBuyerPassword).status == 503);
}

TEST_CASE("offline: a cache older than offline_login_ttl_seconds is refused", "[local_auth]") {
  LocalAuthOptions options;
  options.offline_login_ttl_seconds = 7 * 24 * 3600;
  Harness h(options);
  const ToolSession s = h.logged_in(kPlanner, kPlannerPassword);
  h.online = false;
  h.logged_in(kPlanner, kPlannerPassword);

  CHECK(h.sql("UPDATE local_user SET verified_at = verified_at - 8 * 24 * 3600") == 1);
  h.restart();
  const HttpResponse r = h.login(kPlanner, kPlannerPassword);
  CHECK(r.status == 503);
  CHECK(body_of(r)["Code"] == "Sync.Offline");
  // Sessions already open are not affected by the age of the cached password.
  CHECK(h.session_ok(s.access)->username == kPlanner);
}

TEST_CASE("2FA: the password step is remembered and verify-2fa finishes the login", "[local_auth]") {
  Harness h;
  // verify-2fa without a password step through this daemon: refused here, not forwarded.
  HttpResponse r =
      h.call(&LocalAuth::verify_2fa,
             request("POST", "/api/verify-2fa", Json{{"username", kTwoFactor}, {"totp_code", kTotp}}.dump()));
  CHECK(r.status == 401);
  CHECK(body_of(r) == knosc_body("Invalid or expired TOTP code.", "2FA.InvalidCode"));
  CHECK(h.knosc.log.empty());

  r = h.login(kTwoFactor, kTwoFactorPassword);
  CHECK(r.status == 200);
  CHECK(body_of(r) == Json{{"requires_2fa", true}});
  CHECK(set_cookies(r).empty());
  CHECK(h.auth->active_sessions() == 0);

  r = h.call(&LocalAuth::verify_2fa, request("POST", "/api/verify-2fa",
                                             Json{{"username", kTwoFactor}, {"totp_code", "000000"}}.dump()));
  CHECK(r.status == 401);
  CHECK(body_of(r) == knosc_body("Invalid or expired TOTP code.", "2FA.InvalidCode"));

  r = h.call(&LocalAuth::verify_2fa,
             request("POST", "/api/verify-2fa", Json{{"username", kTwoFactor}, {"totp_code", kTotp}}.dump()));
  REQUIRE(r.status == 200);
  CHECK(body_of(r) == Json{{"login", true}});
  const ToolSession s = h.remember(r);
  CHECK(set_cookies(r) == knosc::daemon::login_cookies(s.access, s.refresh, s.csrf_access, s.csrf_refresh));
  const auto& verify = h.knosc.log.at(h.knosc.log.size() - 2);
  CHECK(verify.target == "/api/verify-2fa");
  CHECK(Json::parse(verify.body) == Json{{"username", kTwoFactor}, {"totp_code", kTotp}});
  CHECK(h.knosc.log.back().target == "/api/profile");
  const LocalSession* session = h.session_ok(s.access);
  CHECK(session->user_id == 14);
  CHECK(session->profile["2FA Enabled"] == true);

  // The pending password step was used up.
  r = h.call(&LocalAuth::verify_2fa,
             request("POST", "/api/verify-2fa", Json{{"username", kTwoFactor}, {"totp_code", kTotp}}.dump()));
  CHECK(r.status == 401);

  // Offline, a two-factor account cannot be checked: the right password is not enough. A wrong one gets the
  // answer any wrong password gets, so the refusal tells only whoever knows the password that the account
  // uses a second factor.
  h.upstream_down();
  r = h.login(kTwoFactor, "not-the-password");
  CHECK(r.status == 401);
  CHECK(body_of(r)["Code"] == "User.InvalidCredentials");
  r = h.login(kTwoFactor, kTwoFactorPassword);
  CHECK(r.status == 503);
  CHECK(body_of(r)["Code"] == "Sync.Offline");
  CHECK(body_of(r)["Message"].get<std::string>().find("two-factor") != std::string::npos);
}

TEST_CASE("token refresh takes the refresh cookie and only the refresh CSRF value", "[local_auth]") {
  Harness h;
  const ToolSession s = h.logged_in(kPlanner, kPlannerPassword);

  HttpResponse r = h.refresh(s, s.csrf_access);
  CHECK(r.status == 422);
  CHECK(body_of(r) == knosc_body("Missing or invalid CSRF token", "CSRF.Invalid"));
  r = h.refresh(s, std::nullopt);
  CHECK(r.status == 422);
  r = h.call(&LocalAuth::refresh, request("POST", "/api/token-refresh", "", std::nullopt, s.csrf_refresh));
  CHECK(r.status == 401);
  CHECK(body_of(r) == knosc_body("Missing refresh token", "Token.Missing"));
  r = h.call(&LocalAuth::refresh,
             request("POST", "/api/token-refresh", "", "refresh_token_cookie=" + s.access, s.csrf_refresh));
  CHECK(r.status == 401);
  CHECK(body_of(r) == knosc_body("Invalid token", "Token.Invalid"));

  r = h.refresh(s, s.csrf_refresh);
  REQUIRE(r.status == 200);
  CHECK(body_of(r) == Json{{"refresh", true}});
  auto values = cookie_values(r);
  const std::string access = values["access_token_cookie"];
  const std::string csrf = values["csrf_access_token"];
  h.secrets.insert({access, csrf});
  CHECK(set_cookies(r) ==
        std::vector<std::string>{"access_token_cookie=" + access + "; HttpOnly; SameSite=Lax; Path=/",
                                 "csrf_access_token=" + csrf + "; SameSite=Lax; Path=/"});
  CHECK(access != s.access);
  CHECK(csrf != s.csrf_access);

  const LocalSession* fresh = h.session_ok(access);
  CHECK(fresh->username == kPlanner);
  CHECK(fresh->csrf == csrf);
  CHECK_FALSE(h.auth->check_csrf(request("POST", "/api/item-master", "", std::nullopt, csrf), *fresh));
  CHECK(h.auth->check_csrf(request("POST", "/api/item-master", "", std::nullopt, s.csrf_access), *fresh));
  // The earlier access token lives on until it expires, as a JWT would.
  CHECK(h.session_ok(s.access)->csrf == s.csrf_access);
  CHECK(h.auth->active_sessions() == 1);
  CHECK(h.knosc.log.size() == 2);  // refresh never goes upstream
}

TEST_CASE("logout needs CSRF, ends the whole session and nothing else", "[local_auth]") {
  Harness h;
  const ToolSession s = h.logged_in(kPlanner, kPlannerPassword);
  const ToolSession other = h.logged_in(kPlanner, kPlannerPassword);
  const HttpResponse refreshed = h.refresh(s, s.csrf_refresh);
  REQUIRE(refreshed.status == 200);
  const std::string refreshed_access = cookie_values(refreshed)["access_token_cookie"];
  h.secrets.insert(refreshed_access);
  h.secrets.insert(cookie_values(refreshed)["csrf_access_token"]);
  CHECK(h.auth->active_sessions() == 2);

  HttpResponse r = h.logout(s, std::nullopt);
  CHECK(r.status == 422);
  CHECK(body_of(r) == knosc_body("Missing or invalid CSRF token", "CSRF.Invalid"));
  CHECK(h.session_ok(s.access));
  r = h.call(&LocalAuth::logout, request("POST", "/api/logout", "", std::nullopt, s.csrf_access));
  CHECK(r.status == 401);
  CHECK(body_of(r) == knosc_body("Missing access token", "Token.Missing"));

  r = h.logout(s, s.csrf_access);
  REQUIRE(r.status == 200);
  CHECK(body_of(r) == Json{{"logout", true}});
  CHECK(set_cookies(r) == knosc::daemon::logout_cookies());

  // Every token of that login is gone: both access tokens and the refresh token.
  CHECK(h.session_error(s.access) == knosc_body("Invalid token", "Token.Invalid"));
  CHECK(h.session_error(refreshed_access) == knosc_body("Invalid token", "Token.Invalid"));
  r = h.refresh(s, s.csrf_refresh);
  CHECK(r.status == 401);
  CHECK(body_of(r)["Code"] == "Token.Invalid");
  CHECK(h.logout(s, s.csrf_access).status == 401);
  // The user's other login is untouched.
  CHECK(h.session_ok(other.access)->username == kPlanner);
  CHECK(h.auth->active_sessions() == 1);

  h.restart();
  CHECK(h.session_error(s.access)["Code"] == "Token.Invalid");
  CHECK(h.session_ok(other.access));
  CHECK(h.sql("SELECT count(*) FROM local_session") == 2);  // the other login's access and refresh
}

TEST_CASE("sessions survive a restart, and only their hashes are stored", "[local_auth]") {
  Harness h;
  const ToolSession s = h.logged_in(kPlanner, kPlannerPassword);
  const HttpResponse refreshed = h.refresh(s, s.csrf_refresh);
  REQUIRE(refreshed.status == 200);
  const std::string newer = cookie_values(refreshed)["access_token_cookie"];
  h.secrets.insert(newer);
  h.secrets.insert(cookie_values(refreshed)["csrf_access_token"]);

  h.restart();
  CHECK(h.auth->active_sessions() == 1);
  const LocalSession* session = h.session_ok(s.access);
  CHECK(session->username == kPlanner);
  CHECK(session->user_id == 12);
  CHECK(session->privileges.allows("Procurement", Access::Edit));
  CHECK(session->csrf == s.csrf_access);
  CHECK(h.session_ok(newer));
  CHECK(h.refresh(s, s.csrf_refresh).status == 200);

  CHECK(h.sql("SELECT count(*) FROM local_session WHERE length(token_hash) = 32") == 4);
  CHECK(h.sql("SELECT count(*) FROM local_session WHERE hex(token_hash) = upper('" + s.access + "')") == 0);
  CHECK(h.sql("SELECT count(*) FROM local_user WHERE kdf = 'pbkdf2-sha256' AND iterations = 1000 AND "
              "length(salt) = 16 AND length(hash) = 32 AND instr(profile, 'Procurement') > 0") == 1);
  CHECK(h.sql("SELECT count(*) FROM local_user WHERE instr(hash, CAST('" + std::string(kPlannerPassword) +
              "' AS BLOB)) > 0 OR instr(profile, '" + kPlannerPassword + "') > 0") == 0);
}

TEST_CASE("an expired access token answers Token.Expired; expired sessions are purged", "[local_auth]") {
  LocalAuthOptions options;
  options.access_ttl_seconds = 0;  // every access token is born expired
  Harness h(options);
  const ToolSession s = h.logged_in(kPlanner, kPlannerPassword);
  CHECK(h.session_error(s.access) == knosc_body("Token has expired", "Token.Expired"));
  // The login happened "a minute ago", so the refreshed token below is unambiguously the newer one.
  CHECK(h.sql("UPDATE local_session SET created_at = created_at - 60") == 2);
  const HttpResponse refreshed = h.refresh(s, s.csrf_refresh);
  REQUIRE(refreshed.status == 200);
  const std::string access = cookie_values(refreshed)["access_token_cookie"];
  h.secrets.insert({access, cookie_values(refreshed)["csrf_access_token"]});
  CHECK(h.session_error(access)["Code"] == "Token.Expired");
  CHECK(h.auth->active_sessions() == 1);  // the refresh token still lives

  // After a restart the purge keeps only the newest expired access token of a refreshable session, so the
  // tool still hears Token.Expired (and refreshes) rather than Token.Invalid.
  h.restart();
  CHECK(h.session_error(access)["Code"] == "Token.Expired");
  CHECK(h.session_error(s.access)["Code"] == "Token.Invalid");
  CHECK(h.sql("SELECT count(*) FROM local_session") == 2);

  // Once the refresh token has expired too, nothing of the session is kept.
  CHECK(h.sql("UPDATE local_session SET expires_at = 0 WHERE kind = 'refresh'") == 1);
  h.restart();
  CHECK(h.auth->active_sessions() == 0);
  CHECK(h.session_error(access)["Code"] == "Token.Invalid");
  CHECK(h.sql("SELECT count(*) FROM local_session") == 0);
  CHECK(h.sql("SELECT count(*) FROM local_user") == 1);  // still fresh enough for offline logins
}

TEST_CASE("Knosc refusing the cached password revokes the cache and the user's sessions", "[local_auth]") {
  Harness h;
  const ToolSession s = h.logged_in(kPlanner, kPlannerPassword);
  const ToolSession buyer = h.logged_in(kBuyer, kBuyerPassword);
  h.knosc.users[kPlanner].password = "changed-in-knosc";
  h.secrets.insert("changed-in-knosc");

  // A mistyped password changes nothing.
  CHECK(h.login(kPlanner, "typo").status == 401);
  CHECK(h.session_ok(s.access));

  const HttpResponse r = h.login(kPlanner, kPlannerPassword);
  CHECK(r.status == 401);
  CHECK(body_of(r)["Code"] == "User.InvalidCredentials");
  CHECK(h.session_error(s.access)["Code"] == "Token.Invalid");
  CHECK(h.session_ok(buyer.access));

  // Offline, the revoked credential no longer works: refused as any credential that cannot be checked here.
  h.online = false;
  CHECK(h.login(kPlanner, kPlannerPassword).status == 503);
  h.online = true;
  h.logged_in(kPlanner, "changed-in-knosc");
  h.online = false;
  h.logged_in(kPlanner, "changed-in-knosc");
}

TEST_CASE("logins are checked upstream one at a time, each on a clean cookie jar", "[local_auth]") {
  Harness h;
  std::optional<HttpResponse> first, second;
  h.auth->authenticate(request("POST", "/api/authenticate", credentials(kPlanner, kPlannerPassword)),
                       [&](HttpResponse r) { first = std::move(r); });
  h.auth->authenticate(request("POST", "/api/authenticate", credentials(kBuyer, kBuyerPassword)),
                       [&](HttpResponse r) { second = std::move(r); });
  REQUIRE(h.tl.run_until([&] { return first && second; }));
  REQUIRE(first->status == 200);
  REQUIRE(second->status == 200);
  const ToolSession a = h.remember(*first);
  const ToolSession b = h.remember(*second);

  REQUIRE(h.knosc.log.size() == 4);
  CHECK(h.knosc.log[0].target == "/api/authenticate");
  CHECK(h.knosc.log[1].target == "/api/profile");
  CHECK(h.knosc.log[2].target == "/api/authenticate");
  CHECK_FALSE(h.knosc.log[2].header("cookie"));
  CHECK(h.knosc.log[3].target == "/api/profile");
  CHECK(h.knosc.log[3].header("cookie").value_or("").find("knosc-acc-1") == std::string::npos);
  CHECK(h.session_ok(a.access)->username == kPlanner);
  CHECK(h.session_ok(b.access)->username == kBuyer);
  CHECK_FALSE(h.session_ok(b.access)->privileges.allows("Procurement", Access::Edit));
}

TEST_CASE("close() answers logins in flight and waiting, and releases every handle", "[local_auth]") {
  Harness h;
  h.knosc.hang_logins = true;
  std::vector<HttpResponse> answers;
  for (const char* user : {kPlanner, kBuyer}) {
    h.auth->authenticate(request("POST", "/api/authenticate", credentials(user, "whatever-password")),
                         [&](HttpResponse r) { answers.push_back(std::move(r)); });
  }
  h.secrets.insert("whatever-password");
  REQUIRE(h.tl.run_until([&] { return h.knosc.count("/api/authenticate") == 1; }));
  CHECK(answers.empty());
  REQUIRE(h.stop_auth());
  REQUIRE(answers.size() == 2);
  for (const auto& r : answers) {
    CHECK(r.status == 503);
    CHECK(body_of(r)["Code"] == "Server.ShuttingDown");
  }
}

TEST_CASE("a login waits for Knosc at most login_wait; then the cache answers", "[local_auth]") {
  LocalAuthOptions options;
  options.login_wait = 300ms;
  Harness h(options);
  h.logged_in(kPlanner, kPlannerPassword);
  h.knosc.hang_logins = true;  // Knosc accepts the connection and never answers

  const auto timed = [&](const std::string& user, const std::string& password) {
    const auto t0 = std::chrono::steady_clock::now();
    HttpResponse r = h.login(user, password);
    return std::make_pair(std::move(r), std::chrono::steady_clock::now() - t0);
  };
  // A cached user: a session from the cache, after the wait and not much later.
  auto [ok, took] = timed(kPlanner, kPlannerPassword);
  REQUIRE(ok.status == 200);
  CHECK(took >= 300ms);
  CHECK(took < 2000ms);
  const ToolSession s = h.remember(ok);
  CHECK(h.session_ok(s.access)->username == kPlanner);
  // Logins queue behind the check that hangs; each still gets its answer within its own wait.
  auto [wrong, took_wrong] = timed(kPlanner, "wrong-password");
  CHECK(wrong.status == 401);
  CHECK(body_of(wrong)["Code"] == "User.InvalidCredentials");
  CHECK(took_wrong < 2000ms);
  auto [unknown, took_unknown] = timed(kBuyer, kBuyerPassword);
  CHECK(unknown.status == 503);
  CHECK(body_of(unknown)["Code"] == "Sync.Offline");
  CHECK(took_unknown < 2000ms);
  auto [tfa, took_tfa] = timed(kTwoFactor, kTwoFactorPassword);
  CHECK(tfa.status == 503);
  CHECK(took_tfa < 2000ms);
  REQUIRE(h.stop_auth());
}
