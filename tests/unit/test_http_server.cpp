// The loopback HttpServer on a uv loop run by the test thread, against clients on their own threads: plain
// blocking sockets (to send exactly the bytes a case needs, pipelined or malformed) and libcurl easy.
// Client threads never use Catch2 macros (Catch2 is not thread-safe); they record what they saw and the test
// thread checks it after joining them.

#include <arpa/inet.h>
#include <curl/curl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/http_server.hpp"

namespace {

using knosc::daemon::HttpRequest;
using knosc::daemon::HttpResponse;
using knosc::daemon::HttpServer;
using knosc::daemon::HttpServerLimits;
using knosc::daemon::is_loopback_host;
using knosc::daemon::Responder;
using knosc::daemon::TargetRefusal;
using namespace std::chrono_literals;

// ---- the loop -------------------------------------------------------------------------------------------

// Owns the loop the server runs on. A repeating 5 ms tick keeps UV_RUN_ONCE from blocking longer than that,
// so run_until can check its predicate and deadline without sleeping.
class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 5, 5);
  }
  ~TestLoop() {
    if (!closed_) close();
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }

  // Closes the tick, lets every pending close callback run, and reports uv_loop_close's verdict.
  int close() {
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    return uv_loop_close(&loop_);
  }

 private:
  uv_loop_t loop_{};
  uv_timer_t tick_{};
  bool closed_ = false;
};

// Calls `fn` on the loop after `ms`, through a timer freed in its close callback.
void after(uv_loop_t* loop, std::uint64_t ms, std::function<void()> fn) {
  struct Delayed {
    uv_timer_t timer;
    std::function<void()> fn;
  };
  auto* d = new Delayed{{}, std::move(fn)};
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  uv_timer_start(
      &d->timer,
      [](uv_timer_t* t) {
        auto* self = static_cast<Delayed*>(t->data);
        self->fn();
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete static_cast<Delayed*>(h->data); });
      },
      ms, 0);
}

void shut_down(TestLoop& loop, HttpServer& server) {
  bool done = false;
  server.shutdown([&] { done = true; });
  REQUIRE(loop.run_until([&] { return done; }));
  CHECK(server.connections() == 0);
}

// ---- blocking clients -----------------------------------------------------------------------------------

// Runs a client on its own thread while the test thread runs the loop; joined on every path so a failed
// REQUIRE cannot leave a joinable thread behind. Client sockets time out on their own, so the join ends.
class ClientThread {
 public:
  explicit ClientThread(std::function<void()> body)
      : thread_([this, body = std::move(body)] {
          body();
          done_ = true;
        }) {}
  ~ClientThread() {
    if (thread_.joinable()) thread_.join();
  }
  ClientThread(const ClientThread&) = delete;
  ClientThread& operator=(const ClientThread&) = delete;

  bool done() const { return done_; }
  void finish(TestLoop& loop, std::chrono::milliseconds timeout = 10s) {
    bool finished = loop.run_until([&] { return done_.load(); }, timeout);
    thread_.join();
    REQUIRE(finished);
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

struct Reply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  std::optional<std::string> header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return std::nullopt;
  }
  std::size_t header_count(const std::string& name) const {
    std::size_t n = 0;
    for (const auto& [k, v] : headers)
      n += k == name ? 1 : 0;
    return n;
  }
  // X-Content-Type-Options: nosniff, exactly once.
  bool nosniff() const {
    return header_count("x-content-type-options") == 1 && header("x-content-type-options") == "nosniff";
  }
};

// A blocking TCP connection with a response reader built on http-parser in response mode.
class Socket {
 public:
  Socket(const std::string& host, int port, std::chrono::milliseconds timeout = 5s) {
    bool v6 = host.find(':') != std::string::npos;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(static_cast<uint16_t>(port));
      inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port));
      inet_pton(AF_INET, host.c_str(), &a.sin_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    connected_ = rc == 0;
    http_parser_init(&parser_, HTTP_RESPONSE);
    parser_.data = this;
  }
  ~Socket() { close(); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // The next complete response; nullopt on EOF, error or timeout. `head` says it answers a HEAD request,
  // which the framing of a response cannot tell by itself.
  std::optional<Reply> read_response(bool head = false) {
    head_ = head;
    current_ = Reply{};
    while (true) {
      if (!pending_.empty()) {
        std::size_t n = http_parser_execute(&parser_, &settings(), pending_.data(), pending_.size());
        pending_.erase(0, n);
        if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) {
          http_parser_pause(&parser_, 0);
          return std::move(current_);
        }
        if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK) return std::nullopt;
      }
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }

  // True when a response (or the close) can be read within `timeout`, or already has been in part.
  bool wait_readable(std::chrono::milliseconds timeout) {
    if (!pending_.empty()) return true;
    pollfd pfd{fd_, POLLIN, 0};
    return ::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0;
  }

  // True when the server closes the connection (EOF or reset) before the timeout.
  bool wait_closed() {
    char buf[4096];
    while (true) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  static const http_parser_settings& settings() {
    static const http_parser_settings s = [] {
      http_parser_settings st;
      http_parser_settings_init(&st);
      st.on_header_field = [](http_parser* p, const char* at, std::size_t len) {
        auto* self = static_cast<Socket*>(p->data);
        if (self->last_was_value_ || self->current_.headers.empty()) self->current_.headers.emplace_back();
        self->last_was_value_ = false;
        for (std::size_t i = 0; i < len; ++i)
          self->current_.headers.back().first.push_back(
              static_cast<char>(std::tolower(static_cast<unsigned char>(at[i]))));
        return 0;
      };
      st.on_header_value = [](http_parser* p, const char* at, std::size_t len) {
        auto* self = static_cast<Socket*>(p->data);
        self->last_was_value_ = true;
        self->current_.headers.back().second.append(at, len);
        return 0;
      };
      st.on_headers_complete = [](http_parser* p) {
        auto* self = static_cast<Socket*>(p->data);
        self->current_.status = static_cast<int>(p->status_code);
        return self->head_ ? 1 : 0;  // 1: no body follows
      };
      st.on_body = [](http_parser* p, const char* at, std::size_t len) {
        static_cast<Socket*>(p->data)->current_.body.append(at, len);
        return 0;
      };
      st.on_message_complete = [](http_parser* p) {
        auto* self = static_cast<Socket*>(p->data);
        self->last_was_value_ = false;
        http_parser_pause(p, 1);
        return 0;
      };
      return st;
    }();
    return s;
  }

  int fd_ = -1;
  bool connected_ = false;
  http_parser parser_{};
  std::string pending_;
  Reply current_;
  bool head_ = false;
  bool last_was_value_ = false;
};

std::string get(const std::string& target, const std::string& host = "127.0.0.1") {
  return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
}

nlohmann::json json_of(const Reply& r) {
  return nlohmann::json::parse(r.body, nullptr, false);
}

// ---- libcurl --------------------------------------------------------------------------------------------

struct CurlResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::vector<std::string> header_lines;
  long connects = -1;  // new connections this transfer opened (0 = reused)

  bool has_header_prefix(const std::string& prefix) const {
    for (const auto& h : header_lines) {
      if (h.size() >= prefix.size() && strncasecmp(h.c_str(), prefix.c_str(), prefix.size()) == 0)
        return true;
    }
    return false;
  }
};

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One transfer on `curl` (so callers can reuse a handle and its connection).
CurlResult curl_perform(CURL* curl, const std::string& url, const std::string& method = "GET",
                        const std::optional<std::string>& body = std::nullopt,
                        const std::vector<std::string>& headers = {}) {
  CurlResult r;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");  // never route the loopback test through an environment proxy
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method == "GET" ? nullptr : method.c_str());
  if (body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  } else if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  }
  curl_slist* list = nullptr;
  for (const auto& h : headers)
    list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* ptr, std::size_t size, std::size_t n, void* ud) {
        static_cast<std::string*>(ud)->append(ptr, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(
      curl, CURLOPT_HEADERFUNCTION, +[](char* ptr, std::size_t size, std::size_t n, void* ud) {
        static_cast<std::vector<std::string>*>(ud)->emplace_back(ptr, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.header_lines);
  r.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &r.connects);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(list);
  return r;
}

CurlResult curl_once(const std::string& url, const std::string& method = "GET",
                     const std::optional<std::string>& body = std::nullopt,
                     const std::vector<std::string>& headers = {}) {
  curl_init_once();
  CURL* curl = curl_easy_init();
  CurlResult r = curl_perform(curl, url, method, body, headers);
  curl_easy_cleanup(curl);
  return r;
}

// A handler that answers "<METHOD> <path>" at once and remembers every request it saw.
struct EchoHandler {
  std::vector<HttpRequest> seen;
  knosc::daemon::Handler handler() {
    return [this](const HttpRequest& req, Responder respond) {
      seen.push_back(req);
      HttpResponse r;
      r.body = req.method + " " + req.path + (req.body.empty() ? "" : " " + req.body);
      r.set_header("Content-Type", "text/plain");
      respond(std::move(r));
    };
  }
};

HttpServerLimits fast_limits() {
  HttpServerLimits l;
  l.linger_ms = 200;
  return l;
}

}  // namespace

// ---- tests ----------------------------------------------------------------------------------------------

TEST_CASE("is_loopback_host accepts loopback names only", "[http_server]") {
  struct Case {
    const char* host;
    bool loopback;
  };
  const Case cases[] = {
      {"localhost", true},
      {"LOCALHOST", true},
      {"localhost:8470", true},
      {"LocalHost:1", true},
      {"127.0.0.1", true},
      {"127.0.0.1:8470", true},
      {"127.1.2.3", true},
      {"127.255.255.254:65535", true},
      {"[::1]", true},
      {"[::1]:8470", true},
      {"[0:0:0:0:0:0:0:1]:80", true},
      {"[::ffff:127.0.0.1]", true},
      {" localhost ", true},
      {"", false},
      {"evil.example.com", false},
      {"localhost.evil.example.com", false},
      {"evil.localhost", false},
      {"localhost:", false},
      {"localhost:abc", false},
      {"localhost:99999", false},
      {"localhost:80:80", false},
      {"128.0.0.1", false},
      {"10.0.0.1", false},
      {"0.0.0.0", false},
      {"127.1", false},
      {"0177.0.0.1", false},
      {"127.0.0.1.nip.io", false},
      {"::1", false},
      {"[::1", false},
      {"[::2]", false},
      {"[::]", false},
      {"[::1]x", false},
      {"[::ffff:10.0.0.1]", false},
      {"[fe80::1]", false},
  };
  for (const auto& c : cases) {
    INFO("Host: '" << c.host << "'");
    CHECK(is_loopback_host(c.host) == c.loopback);
  }
}

TEST_CASE("request helpers decode the query and find headers", "[http_server]") {
  HttpRequest req;
  req.query = "a=1&b=two+words&a=2&c=%2Fx%20y&flag&bad=%zz&=empty";
  req.headers = {{"content-type", "application/json"}, {"x-twice", "first"}, {"x-twice", "second"}};
  auto q = req.query_params();
  CHECK(q.at("a") == "1");
  CHECK(q.at("b") == "two words");
  CHECK(q.at("c") == "/x y");
  CHECK(q.at("flag").empty());
  CHECK(q.at("bad") == "%zz");
  CHECK(req.header("Content-Type") == std::optional<std::string>("application/json"));
  CHECK(req.header("x-twice") == std::optional<std::string>("first"));
  CHECK_FALSE(req.header("missing").has_value());

  HttpResponse r = HttpResponse::knosc_error(404, "No route \"x\"", "Route.NotFound");
  CHECK(r.status == 404);
  CHECK(nlohmann::json::parse(r.body) ==
        nlohmann::json{{"Message", "No route \"x\""}, {"Code", "Route.NotFound"}});
  r.set_header("content-type", "text/plain");
  r.set_json_content_type();
  REQUIRE(r.headers.size() == 1);
  CHECK(r.headers[0].second == "application/json");
}

TEST_CASE("GET and POST reach the handler with method, path, query, headers and body", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(server.bound_port());

  CurlResult got, posted;
  {
    ClientThread client([&] {
      got = curl_once(base + "/api/purchase%20order?page=2&sort=id+asc&page=3");
      posted = curl_once(base + "/api/purchase-order", "POST", std::string(R"({"PO List Number":"PO-1"})"),
                         {"Content-Type: application/json", "X-Custom: Mixed Case"});
    });
    client.finish(loop);
  }
  CHECK(got.code == CURLE_OK);
  CHECK(got.status == 200);
  CHECK(got.body == "GET /api/purchase order");
  CHECK(got.has_header_prefix("Content-Length: 23"));
  CHECK(got.has_header_prefix("Date: "));
  CHECK(got.has_header_prefix("Content-Type: text/plain"));
  CHECK(got.has_header_prefix("X-Content-Type-Options: nosniff"));
  CHECK(posted.status == 200);
  CHECK(posted.body == R"(POST /api/purchase-order {"PO List Number":"PO-1"})");

  REQUIRE(echo.seen.size() == 2);
  const auto& g = echo.seen[0];
  CHECK(g.method == "GET");
  CHECK(g.target == "/api/purchase%20order?page=2&sort=id+asc&page=3");
  CHECK(g.path == "/api/purchase order");
  CHECK(g.segments == std::vector<std::string>{"api", "purchase order"});
  CHECK(g.query == "page=2&sort=id+asc&page=3");
  CHECK(g.query_params().at("page") == "2");
  CHECK(g.query_params().at("sort") == "id asc");
  CHECK(g.remote_address == "127.0.0.1");
  CHECK(g.remote_port > 0);
  CHECK(g.body.empty());
  const auto& p = echo.seen[1];
  CHECK(p.method == "POST");
  CHECK(p.body == R"({"PO List Number":"PO-1"})");
  CHECK(p.header("content-type") == std::optional<std::string>("application/json"));
  CHECK(p.header("x-custom") == std::optional<std::string>("Mixed Case"));
  for (const auto& [name, value] : p.headers) {
    for (char ch : name)
      CHECK_FALSE((ch >= 'A' && ch <= 'Z'));
  }

  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("keep-alive connections are reused", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  SECTION("by a raw client") {
    std::optional<Reply> first, second;
    std::atomic<bool> first_read{false};
    std::atomic<bool> may_continue{false};
    ClientThread client([&] {
      Socket s("127.0.0.1", port);
      s.send(get("/one"));
      first = s.read_response();
      first_read = true;
      while (!may_continue)
        std::this_thread::yield();
      s.send(get("/two"));
      second = s.read_response();
    });
    REQUIRE(loop.run_until([&] { return first_read.load(); }));
    CHECK(server.connections() == 1);
    may_continue = true;
    client.finish(loop);
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first->header("connection") == std::optional<std::string>("keep-alive"));
    CHECK(second->body == "GET /two");
    REQUIRE(echo.seen.size() == 2);
    CHECK(echo.seen[0].remote_port == echo.seen[1].remote_port);
  }

  SECTION("by libcurl") {
    CurlResult a, b;
    ClientThread client([&] {
      curl_init_once();
      CURL* curl = curl_easy_init();
      a = curl_perform(curl, "http://127.0.0.1:" + std::to_string(port) + "/a");
      b = curl_perform(curl, "http://127.0.0.1:" + std::to_string(port) + "/b");
      curl_easy_cleanup(curl);
    });
    client.finish(loop);
    CHECK(a.status == 200);
    CHECK(b.status == 200);
    CHECK(a.connects == 1);
    CHECK(b.connects == 0);  // the second transfer reused the first one's connection
  }

  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("pipelined requests are answered in arrival order whatever order the handler answers in",
          "[http_server]") {
  TestLoop loop;
  std::vector<std::pair<std::string, Responder>> held;
  HttpServer server(
      loop.get(),
      [&](const HttpRequest& req, Responder respond) { held.emplace_back(req.path, std::move(respond)); },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::vector<std::optional<Reply>> replies;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/1") + get("/2") + get("/3"));  // one write: the three requests arrive together
    for (int i = 0; i < 3; ++i)
      replies.push_back(s.read_response());
  });
  REQUIRE(loop.run_until([&] { return held.size() == 3; }));
  auto answer = [&](std::size_t i) {
    HttpResponse r;
    r.body = "answer to " + held[i].first;
    held[i].second(std::move(r));
  };
  answer(2);  // the third first, synchronously
  answer(1);
  after(loop.get(), 30, [&] { answer(0); });  // the first last, from a timer
  client.finish(loop);

  REQUIRE(replies.size() == 3);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(replies[static_cast<std::size_t>(i)]);
    CHECK(replies[static_cast<std::size_t>(i)]->body == "answer to /" + std::to_string(i + 1));
  }
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("a handler may answer later, after other loop work", "[http_server]") {
  TestLoop loop;
  int handled = 0;
  HttpServer server(
      loop.get(),
      [&](const HttpRequest& req, Responder respond) {
        ++handled;
        // As a route would after a round trip to the replica writer thread.
        after(loop.get(), 50, [respond, path = req.path] {
          respond(HttpResponse::json(200, R"({"data": {"path": ")" + path + R"("}})"));
        });
      },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);

  CurlResult r;
  ClientThread client(
      [&] { r = curl_once("http://127.0.0.1:" + std::to_string(server.bound_port()) + "/api/x"); });
  client.finish(loop);
  CHECK(handled == 1);
  CHECK(r.status == 200);
  CHECK(r.has_header_prefix("Content-Type: application/json"));
  CHECK(nlohmann::json::parse(r.body)["data"]["path"] == "/api/x");
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("chunked request bodies are decoded", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> reply;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(
        "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    std::this_thread::yield();
    s.send("6\r\n world\r\n0\r\n\r\n");
    reply = s.read_response();
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->body == "POST /api/upload hello world");
  REQUIRE(echo.seen.size() == 1);
  CHECK(echo.seen[0].body == "hello world");

  // libcurl streams an upload of unknown size with chunked encoding.
  CurlResult r;
  ClientThread curl_client([&] {
    curl_init_once();
    CURL* curl = curl_easy_init();
    std::string payload(100'000, 'x');
    std::size_t sent = 0;
    struct Source {
      std::string* data;
      std::size_t* sent;
    } src{&payload, &sent};
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "POST");
    curl_easy_setopt(
        curl, CURLOPT_READFUNCTION, +[](char* buf, std::size_t size, std::size_t n, void* ud) {
          auto* s = static_cast<Source*>(ud);
          std::size_t len = std::min(size * n, std::min<std::size_t>(7000, s->data->size() - *s->sent));
          std::memcpy(buf, s->data->data() + *s->sent, len);
          *s->sent += len;
          return len;
        });
    curl_easy_setopt(curl, CURLOPT_READDATA, &src);
    r = curl_perform(curl, "http://127.0.0.1:" + std::to_string(port) + "/chunked", "POST", std::nullopt,
                     {"Transfer-Encoding: chunked"});
    curl_easy_cleanup(curl);
  });
  curl_client.finish(loop);
  CHECK(r.code == CURLE_OK);
  CHECK(r.status == 200);
  REQUIRE(echo.seen.size() == 2);
  CHECK(echo.seen[1].header("transfer-encoding") == std::optional<std::string>("chunked"));
  CHECK(echo.seen[1].body == std::string(100'000, 'x'));

  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("a body over the limit is refused with 413 and never reaches the handler", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  std::string expected_message = "Request body is larger than 16777216 bytes";
  std::string request;

  SECTION("announced by Content-Length, refused before the body is read") {
    request = "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 16777217\r\n\r\n" +
              std::string(1000, 'x');
  }
  SECTION("announced by Content-Length with Expect: 100-continue") {
    request =
        "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: "
        "16777217\r\n\r\n";
  }
  SECTION("chunked, refused once the chunks pass the limit") {
    limits.max_body_bytes = 1024;
    expected_message = "Request body is larger than 1024 bytes";
    request = "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i)
      request += "200\r\n" + std::string(512, 'y') + "\r\n";
  }

  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();
  std::optional<Reply> reply;
  bool closed = false;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(request);
    reply = s.read_response();
    closed = s.wait_closed();
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 413);
  CHECK(reply->header("content-type") == std::optional<std::string>("application/json"));
  CHECK(reply->header("connection") == std::optional<std::string>("close"));
  CHECK(json_of(*reply) == nlohmann::json{{"Message", expected_message}, {"Code", "Request.TooLarge"}});
  CHECK(reply->nosniff());
  CHECK(closed);
  CHECK(echo.seen.empty());
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("a client still sending an oversized body reads the 413", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.max_body_bytes = 1024 * 1024;
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.bound_port()) + "/api/upload";

  std::vector<std::string> extra_headers;
  SECTION("libcurl waiting for 100-continue") {
    extra_headers = {"Expect: 100-continue"};
  }
  SECTION("libcurl sending the body at once") {
    extra_headers = {"Expect:"};
  }

  CurlResult r;
  ClientThread client([&] { r = curl_once(url, "POST", std::string(8 * 1024 * 1024, 'z'), extra_headers); });
  client.finish(loop);
  CHECK(r.status == 413);
  CHECK(nlohmann::json::parse(r.body, nullptr, false)["Code"] == "Request.TooLarge");
  CHECK(echo.seen.empty());
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("headers over the limit are refused with 431", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.max_header_bytes = 1024;
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::string request;
  SECTION("one large header") {
    request = "GET / HTTP/1.1\r\nHost: localhost\r\nCookie: " + std::string(2000, 'c') + "\r\n\r\n";
  }
  SECTION("many small headers") {
    request = "GET / HTTP/1.1\r\nHost: localhost\r\n";
    for (int i = 0; i < 200; ++i)
      request += "X-" + std::to_string(i) + ": v\r\n";
    request += "\r\n";
  }
  SECTION("a long request target") {
    request = get("/" + std::string(2000, 'p'));
  }

  std::optional<Reply> reply;
  bool closed = false;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(request);
    reply = s.read_response();
    closed = s.wait_closed();
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 431);
  CHECK(json_of(*reply)["Code"] == "Request.HeadersTooLarge");
  CHECK(reply->nosniff());
  CHECK(closed);
  CHECK(echo.seen.empty());

  // A request just under the limit is served.
  std::optional<Reply> ok;
  ClientThread second([&] {
    Socket s("127.0.0.1", port);
    s.send("GET / HTTP/1.1\r\nHost: localhost\r\nCookie: " + std::string(800, 'c') + "\r\n\r\n");
    ok = s.read_response();
  });
  second.finish(loop);
  REQUIRE(ok);
  CHECK(ok->status == 200);

  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("malformed requests are answered 400 and the connection closed", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::string request;
  std::string message = "Malformed HTTP request";
  SECTION("not HTTP at all") {
    request = "HELLO THERE\r\n\r\n";
  }
  SECTION("a header line without a colon") {
    request = "GET / HTTP/1.1\r\nHost: localhost\r\nBroken\r\n\r\n";
    message = "Malformed HTTP request: header line without a colon";
  }
  SECTION("both Content-Length and chunked (request smuggling)") {
    request =
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: "
        "chunked\r\n\r\n0\r\n\r\n";
  }
  SECTION("a bad chunk size") {
    request = "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n";
  }

  std::optional<Reply> reply;
  bool closed = false;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(request);
    reply = s.read_response();
    closed = s.wait_closed();
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 400);
  CHECK(json_of(*reply) == nlohmann::json{{"Message", message}, {"Code", "Request.Malformed"}});
  CHECK(reply->nosniff());
  CHECK(closed);
  CHECK(echo.seen.empty());
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("a client that does not finish its headers in time is answered 408 and closed", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.header_timeout_ms = 100;
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::string partial;
  SECTION("silent after connecting") {}
  SECTION("stuck in the headers") {
    partial = "GET /api/x HTTP/1.1\r\nHost: local";
  }
  SECTION("stuck in the body") {
    partial = "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc";
  }

  std::optional<Reply> reply;
  bool closed = false;
  std::chrono::milliseconds took{};
  ClientThread client([&] {
    auto start = std::chrono::steady_clock::now();
    Socket s("127.0.0.1", port);
    if (!partial.empty()) s.send(partial);
    reply = s.read_response();
    closed = s.wait_closed();
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 408);
  CHECK(json_of(*reply)["Code"] == "Request.Timeout");
  CHECK(reply->nosniff());
  CHECK(closed);
  CHECK(took >= 90ms);
  CHECK(echo.seen.empty());
  REQUIRE(loop.run_until([&] { return server.connections() == 0; }));
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("an idle keep-alive connection is closed after the idle timeout", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.idle_timeout_ms = 100;
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> reply;
  bool closed = false;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/"));
    reply = s.read_response();
    closed = s.wait_closed();
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("connection") == std::optional<std::string>("keep-alive"));
  CHECK(closed);
  REQUIRE(loop.run_until([&] { return server.connections() == 0; }));
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("requests must name a loopback Host", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  bool expect_forbidden = true;
  std::string request;

  SECTION("a foreign name, as after DNS rebinding") {
    request = get("/api/x", "attacker.example.com");
  }
  SECTION("a foreign name with a port") {
    request = get("/api/x", "attacker.example.com:8470");
  }
  SECTION("a LAN address") {
    request = get("/api/x", "192.168.1.10:8470");
  }
  SECTION("no Host at all") {
    request = "GET /api/x HTTP/1.0\r\n\r\n";
  }
  SECTION("two Host headers") {
    request = "GET /api/x HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example.com\r\n\r\n";
  }
  SECTION("a foreign absolute-form target") {
    request = "GET http://attacker.example.com/api/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
  }
  SECTION("localhost") {
    expect_forbidden = false;
    request = get("/api/x", "localhost");
  }
  SECTION("LOCALHOST with a port") {
    expect_forbidden = false;
    request = get("/api/x", "LOCALHOST:8470");
  }
  SECTION("127.0.0.1 with a port") {
    expect_forbidden = false;
    request = get("/api/x", "127.0.0.1:8470");
  }
  SECTION("[::1] with a port") {
    expect_forbidden = false;
    request = get("/api/x", "[::1]:8470");
  }
  SECTION("a loopback absolute-form target") {
    expect_forbidden = false;
    request = "GET http://127.0.0.1:8470/api/x HTTP/1.1\r\nHost: 127.0.0.1:8470\r\n\r\n";
  }
  SECTION("a foreign name when the check is off") {
    limits.require_loopback_host = false;
    expect_forbidden = false;
    request = get("/api/x", "attacker.example.com");
  }

  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();
  std::optional<Reply> reply;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(request);
    reply = s.read_response();
  });
  client.finish(loop);
  REQUIRE(reply);
  if (expect_forbidden) {
    CHECK(reply->status == 403);
    CHECK(reply->header("content-type") == std::optional<std::string>("application/json"));
    CHECK(json_of(*reply) == nlohmann::json{{"Message", "Host header must name a loopback address"},
                                            {"Code", "Request.ForbiddenHost"}});
    CHECK(reply->nosniff());
    CHECK(echo.seen.empty());
  } else {
    CHECK(reply->status == 200);
    REQUIRE(echo.seen.size() == 1);
    CHECK(echo.seen[0].path == "/api/x");
    CHECK(echo.seen[0].segments == std::vector<std::string>{"api", "x"});
  }
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("connections past max_connections are answered 503 and closed", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.max_connections = 2;
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> a, b, refused, later;
  bool refused_closed = false;
  std::atomic<bool> first_closed{false};
  std::atomic<bool> saw_close{false};
  ClientThread client([&] {
    Socket s1("127.0.0.1", port);
    s1.send(get("/1"));
    a = s1.read_response();
    Socket s2("127.0.0.1", port);
    s2.send(get("/2"));
    b = s2.read_response();
    {
      Socket s3("127.0.0.1", port);
      s3.send(get("/3"));
      refused = s3.read_response();
      refused_closed = s3.wait_closed();
    }
    s1.close();
    first_closed = true;
    while (!saw_close)
      std::this_thread::yield();
    Socket s4("127.0.0.1", port);
    s4.send(get("/4"));
    later = s4.read_response();
  });
  REQUIRE(loop.run_until([&] { return first_closed && server.connections() == 1; }));
  saw_close = true;
  client.finish(loop);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->status == 200);
  CHECK(b->status == 200);
  REQUIRE(refused);
  CHECK(refused->status == 503);
  CHECK(json_of(*refused)["Code"] == "Server.Busy");
  CHECK(refused->nosniff());
  CHECK(refused->header("connection") == std::optional<std::string>("close"));
  CHECK(refused_closed);
  REQUIRE(later);
  CHECK(later->status == 200);
  CHECK(echo.seen.size() == 3);
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("shutdown answers requests in flight, closes idle connections, then every handle",
          "[http_server]") {
  TestLoop loop;
  std::optional<Responder> slow;
  HttpServer server(
      loop.get(),
      [&](const HttpRequest& req, Responder respond) {
        if (req.path == "/slow") {
          slow = std::move(respond);
        } else {
          respond(HttpResponse::json(200, "{}"));
        }
      },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> slow_reply, idle_reply;
  bool slow_closed = false;
  bool idle_closed = false;
  std::atomic<bool> idle_ready{false};
  ClientThread busy([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/slow"));
    slow_reply = s.read_response();
    slow_closed = s.wait_closed();
  });
  ClientThread idle([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/quick"));
    idle_reply = s.read_response();
    idle_ready = true;
    idle_closed = s.wait_closed();
  });
  REQUIRE(loop.run_until([&] { return slow.has_value() && idle_ready.load(); }));
  CHECK(server.connections() == 2);

  bool done = false;
  server.shutdown([&] { done = true; });
  // The listener is closed at once: a new client is refused.
  {
    Socket late("127.0.0.1", port);
    CHECK_FALSE(late.connected());
  }
  idle.finish(loop);
  CHECK(idle_closed);
  REQUIRE(loop.run_until([&] { return server.connections() == 1; }));
  CHECK_FALSE(done);

  after(loop.get(), 30, [&] { (*slow)(HttpResponse::json(200, R"({"late": true})")); });
  busy.finish(loop);
  REQUIRE(slow_reply);
  CHECK(slow_reply->status == 200);
  CHECK(slow_reply->body == R"({"late": true})");
  CHECK(slow_reply->header("connection") == std::optional<std::string>("close"));
  CHECK(slow_closed);
  REQUIRE(loop.run_until([&] { return done; }));
  CHECK(server.connections() == 0);
  slow.reset();
  CHECK(loop.close() == 0);
}

TEST_CASE("shutdown cuts requests still unanswered after the grace period", "[http_server]") {
  TestLoop loop;
  std::optional<Responder> held;
  HttpServerLimits limits = fast_limits();
  limits.shutdown_grace_ms = 100;
  HttpServer server(
      loop.get(), [&](const HttpRequest&, Responder respond) { held = std::move(respond); }, limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> reply;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/never"));
    reply = s.read_response();
  });
  REQUIRE(loop.run_until([&] { return held.has_value(); }));
  shut_down(loop, server);
  client.finish(loop);
  CHECK_FALSE(reply);
  (*held)(HttpResponse::json(200, "{}"));  // the connection is gone: dropped, harmlessly
  held.reset();
  CHECK(loop.close() == 0);
}

TEST_CASE("the server listens on 127.0.0.1 and ::1 on one port", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();
  REQUIRE(server.listen("::1", port) == 0);
  CHECK(server.bound_port() == port);
  CHECK(server.listen("127.0.0.1", port) == UV_EADDRINUSE);
  CHECK(server.listen("localhost", 0) == UV_EINVAL);  // numeric addresses only: no resolver in the way

  CurlResult v4, v6;
  ClientThread client([&] {
    v4 = curl_once("http://127.0.0.1:" + std::to_string(port) + "/v4");
    v6 = curl_once("http://[::1]:" + std::to_string(port) + "/v6");
  });
  client.finish(loop);
  CHECK(v4.status == 200);
  CHECK(v6.status == 200);
  REQUIRE(echo.seen.size() == 2);
  CHECK(echo.seen[0].remote_address == "127.0.0.1");
  CHECK(echo.seen[1].remote_address == "::1");
  CHECK(echo.seen[1].header("host") == std::optional<std::string>("[::1]:" + std::to_string(port)));

  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("HEAD is answered with a GET's headers and no body", "[http_server]") {
  TestLoop loop;
  HttpServer server(
      loop.get(),
      [&](const HttpRequest&, Responder respond) { respond(HttpResponse::json(200, R"({"a":1})")); },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> head, after_head;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    // Pipelined behind the HEAD: a stray body after the HEAD response would be read as the GET's response.
    s.send("HEAD /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n" + get("/api/x"));
    head = s.read_response(true);
    after_head = s.read_response();
  });
  client.finish(loop);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->header("content-length") == std::optional<std::string>("7"));
  CHECK(head->body.empty());
  REQUIRE(after_head);
  CHECK(after_head->body == R"({"a":1})");
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("HTTP/1.0 closes unless keep-alive is asked for", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> plain, kept, second;
  bool plain_closed = false;
  ClientThread client([&] {
    {
      Socket s("127.0.0.1", port);
      s.send("GET /a HTTP/1.0\r\nHost: localhost\r\n\r\n");
      plain = s.read_response();
      plain_closed = s.wait_closed();
    }
    Socket s("127.0.0.1", port);
    s.send("GET /b HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    kept = s.read_response();
    s.send("GET /c HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    second = s.read_response();
  });
  client.finish(loop);
  REQUIRE(plain);
  CHECK(plain->header("connection") == std::optional<std::string>("close"));
  CHECK(plain_closed);
  REQUIRE(kept);
  CHECK(kept->header("connection") == std::optional<std::string>("keep-alive"));
  REQUIRE(second);
  CHECK(second->body == "GET /c");
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("an Upgrade request is answered as HTTP/1.1 and the connection closed", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> reply;
  bool closed = false;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        "\x81\x05hello");
    reply = s.read_response();
    closed = s.wait_closed();
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("connection") == std::optional<std::string>("close"));
  CHECK(closed);
  CHECK(echo.seen.size() == 1);
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("Expect: 100-continue is answered before the body is sent", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> interim, final_reply;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send("PUT /api/x HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    interim = s.read_response();
    s.send("hello");
    final_reply = s.read_response();
  });
  client.finish(loop);
  REQUIRE(interim);
  CHECK(interim->status == 100);
  REQUIRE(final_reply);
  CHECK(final_reply->status == 200);
  CHECK(final_reply->body == "PUT /api/x hello");
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("a connection stops being read while max_pipelined requests await answers", "[http_server]") {
  TestLoop loop;
  std::vector<std::pair<std::string, Responder>> held;
  HttpServerLimits limits = fast_limits();
  limits.max_pipelined = 2;
  HttpServer server(
      loop.get(),
      [&](const HttpRequest& req, Responder respond) { held.emplace_back(req.path, std::move(respond)); },
      limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::vector<std::optional<Reply>> replies;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    std::string burst;
    for (int i = 1; i <= 5; ++i)
      burst += get("/" + std::to_string(i));
    s.send(burst);
    for (int i = 0; i < 5; ++i)
      replies.push_back(s.read_response());
  });
  REQUIRE(loop.run_until([&] { return held.size() == 2; }));
  // Give the server every chance to (wrongly) dispatch more.
  int ticks = 0;
  loop.run_until([&] { return ++ticks > 10; });
  CHECK(held.size() == 2);

  std::size_t answered = 0;
  REQUIRE(loop.run_until([&] {
    while (answered < held.size()) {
      HttpResponse r;
      r.body = held[answered].first;
      held[answered++].second(std::move(r));
    }
    return answered == 5;
  }));
  client.finish(loop);
  REQUIRE(replies.size() == 5);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(replies[static_cast<std::size_t>(i)]);
    CHECK(replies[static_cast<std::size_t>(i)]->body == "/" + std::to_string(i + 1));
  }
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("handler mistakes do not stall or crash the connection", "[http_server]") {
  TestLoop loop;
  std::optional<Responder> kept;
  HttpServer server(
      loop.get(),
      [&](const HttpRequest& req, Responder respond) {
        if (req.path == "/throws") throw std::runtime_error("route bug");
        if (req.path == "/forgets") return;  // drops every copy of the responder
        if (req.path == "/twice") {
          respond(HttpResponse::json(200, R"({"n":1})"));
          respond(HttpResponse::json(200, R"({"n":2})"));
          return;
        }
        if (req.path == "/bad-status") {
          HttpResponse r;
          r.status = 101;
          respond(std::move(r));
          return;
        }
        if (req.path == "/splitting") {
          HttpResponse r;
          r.headers = {{"X-Evil", "a\r\nSet-Cookie: x=1"}, {"Content-Length", "999"}, {"X-Fine", "ok"}};
          r.body = "abc";
          respond(std::move(r));
          return;
        }
        kept = std::move(respond);  // "/abandoned": answered after the client left
      },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::vector<std::optional<Reply>> replies;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/throws") + get("/forgets") + get("/twice") + get("/bad-status") + get("/splitting"));
    for (int i = 0; i < 5; ++i)
      replies.push_back(s.read_response());
    Socket gone("127.0.0.1", port);
    gone.send(get("/abandoned"));
  });
  client.finish(loop);
  REQUIRE(replies.size() == 5);
  for (auto& r : replies)
    REQUIRE(r);
  CHECK(replies[0]->status == 500);
  CHECK(json_of(*replies[0])["Code"] == "Server.Internal");
  CHECK(replies[1]->status == 500);
  CHECK(replies[1]->nosniff());
  CHECK(replies[2]->status == 200);
  CHECK(replies[2]->body == R"({"n":1})");
  CHECK(replies[3]->status == 500);
  CHECK(replies[4]->status == 200);
  CHECK(replies[4]->body == "abc");
  CHECK(replies[4]->header("content-length") == std::optional<std::string>("3"));
  CHECK_FALSE(replies[4]->header("x-evil").has_value());
  CHECK_FALSE(replies[4]->header("set-cookie").has_value());
  CHECK(replies[4]->header("x-fine") == std::optional<std::string>("ok"));

  // The client left without reading; its request is still answered (a half-closed client could still read),
  // after which the connection closes.
  REQUIRE(loop.run_until([&] { return kept.has_value(); }));
  (*kept)(HttpResponse::json(200, "{}"));
  kept.reset();
  REQUIRE(loop.run_until([&] { return server.connections() == 0; }));
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("destroying the server without shutdown still lets the loop close", "[http_server]") {
  TestLoop loop;
  std::optional<Responder> held;
  auto server = std::make_unique<HttpServer>(
      loop.get(), [&](const HttpRequest&, Responder respond) { held = std::move(respond); }, fast_limits());
  REQUIRE(server->listen("127.0.0.1", 0) == 0);
  const int port = server->bound_port();

  std::optional<Reply> reply;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/x"));
    reply = s.read_response();
  });
  REQUIRE(loop.run_until([&] { return held.has_value(); }));
  server.reset();
  client.finish(loop);
  CHECK_FALSE(reply);
  (*held)(HttpResponse::json(200, "{}"));
  held.reset();
  CHECK(loop.close() == 0);
}

TEST_CASE("a shared body is sent whole to every request, small or large, and HEAD gets none",
          "[http_server]") {
  TestLoop loop;
  std::string large_text(200 * 1024, 'x');
  for (std::size_t i = 0; i < large_text.size(); i += 997)
    large_text[i] = static_cast<char>('a' + (i / 997) % 26);  // a copy cut or shifted anywhere shows
  const auto large = std::make_shared<const std::string>(large_text);
  const auto small = std::make_shared<const std::string>(R"({"small":true})");
  HttpServer server(
      loop.get(),
      [&](const HttpRequest& req, Responder respond) {
        HttpResponse r;
        r.set_json_content_type();
        r.body = "ignored: shared_body wins";
        r.shared_body = req.path == "/small" ? small : large;
        respond(std::move(r));
      },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::vector<std::optional<Reply>> replies(4);
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    // Pipelined: each answer's framing must end exactly where the next begins.
    s.send(get("/large") + get("/small") + "HEAD /large HTTP/1.1\r\nHost: localhost\r\n\r\n" + get("/large"));
    replies[0] = s.read_response();
    replies[1] = s.read_response();
    replies[2] = s.read_response(true);
    replies[3] = s.read_response();
  });
  client.finish(loop);
  for (const auto& r : replies)
    REQUIRE(r);
  CHECK(replies[0]->body == large_text);
  CHECK(replies[0]->header("content-length") ==
        std::optional<std::string>(std::to_string(large_text.size())));
  CHECK(replies[1]->body == *small);
  CHECK(replies[2]->header("content-length") ==
        std::optional<std::string>(std::to_string(large_text.size())));
  CHECK(replies[2]->body.empty());
  CHECK(replies[3]->body == large_text);
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

// ---- hardening against local clients --------------------------------------------------------------------

namespace {

// One request per connection, in order, from one client thread; what each got back.
struct Exchanged {
  std::optional<Reply> reply;
  bool closed = false;
};

std::vector<Exchanged> exchange_each(TestLoop& loop, int port, const std::vector<std::string>& requests) {
  std::vector<Exchanged> out(requests.size());
  ClientThread client([&] {
    for (std::size_t i = 0; i < requests.size(); ++i) {
      Socket s("127.0.0.1", port);
      s.send(requests[i]);
      out[i].reply = s.read_response();
      if (out[i].reply && out[i].reply->header("connection") == std::optional<std::string>("close"))
        out[i].closed = s.wait_closed();
    }
  });
  client.finish(loop, 30s);
  return out;
}

}  // namespace

TEST_CASE("request heads are read strictly where http-parser is lenient: 400 and close", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  const std::string not_crlf = "Malformed HTTP request: lines must end in CRLF (bare LF or CR)";
  const std::string control_line = "Malformed HTTP request: control character in the request line";
  const std::string folded = "Malformed HTTP request: header line starting with whitespace (obs-fold)";
  const std::string space_name = "Malformed HTTP request: whitespace in a header name or before its colon";
  const std::string bad_name = "Malformed HTTP request: invalid character in a header name";
  const std::string no_colon = "Malformed HTTP request: header line without a colon";
  const std::string control_value = "Malformed HTTP request: control character in a header value";
  const std::string version = "Malformed HTTP request: HTTP version must be 1.1 or 1.0";
  struct Case {
    const char* what;
    std::string request;
    std::string message;  // empty: accepted
  };
  const std::string host = "Host: localhost\r\n";
  const std::vector<Case> cases = {
      {"bare LF after the request line", "GET /a HTTP/1.1\n" + host + "\r\n", not_crlf},
      {"bare LF after a header line", "GET /a HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", not_crlf},
      {"bare LF ending the head", "GET /a HTTP/1.1\r\n" + host + "\n", not_crlf},
      {"bare LF everywhere", "GET /a HTTP/1.1\nHost: localhost\n\n", not_crlf},
      {"bare LF before the request line", "\nGET /a HTTP/1.1\r\n" + host + "\r\n", not_crlf},
      {"CR not followed by LF", "GET /a HTTP/1.1\r\nHost: localhost\rX-A: b\r\n\r\n", not_crlf},
      {"CR CR LF ending the head", "GET /a HTTP/1.1\r\n" + host + "\r\r\n", not_crlf},
      {"a space in a header name", "GET /a HTTP/1.1\r\n" + host + "X Y: z\r\n\r\n", space_name},
      {"a space before the colon", "GET /a HTTP/1.1\r\nHost : localhost\r\n\r\n", space_name},
      {"a tab before the colon", "GET /a HTTP/1.1\r\nHost\t: localhost\r\n\r\n", space_name},
      {"a parenthesis in a header name", "GET /a HTTP/1.1\r\n" + host + "X(Y): z\r\n\r\n", bad_name},
      {"a non-ASCII byte in a header name", "GET /a HTTP/1.1\r\n" + host + "X\xc3\xa9: z\r\n\r\n", bad_name},
      {"an empty header name", "GET /a HTTP/1.1\r\n" + host + ": z\r\n\r\n", bad_name},
      {"a header line without a colon", "GET /a HTTP/1.1\r\n" + host + "Broken\r\n\r\n", no_colon},
      {"obs-fold with a space", "GET /a HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\r\n", folded},
      {"obs-fold with a tab", "GET /a HTTP/1.1\r\n" + host + "X-A: a\r\n\tb\r\n\r\n", folded},
      {"whitespace before the first header", "GET /a HTTP/1.1\r\n Host: localhost\r\n\r\n", folded},
      {"a tab in the target", "GET /a\tb HTTP/1.1\r\n" + host + "\r\n", control_line},
      {"a form feed in the target", "GET /a\fb HTTP/1.1\r\n" + host + "\r\n", control_line},
      {"DEL in a header value", "GET /a HTTP/1.1\r\n" + host + "X-A: a\x7f\r\n\r\n", control_value},
      {"NUL in a header value", "GET /a HTTP/1.1\r\n" + host + std::string("X-A: a\0b\r\n\r\n", 12),
       control_value},
      {"HTTP/1.2", "GET /a HTTP/1.2\r\n" + host + "\r\n", version},
      {"HTTP/2.0", "GET /a HTTP/2.0\r\n" + host + "\r\n", version},
      {"HTTP/9.9", "GET /a HTTP/9.9\r\n" + host + "\r\n", version},
      {"no version (HTTP/0.9)", "GET /a\r\n" + host + "\r\n", version},
      // Still served:
      {"HTTP/1.0", "GET /a HTTP/1.0\r\n" + host + "\r\n", ""},
      {"an empty line before the request line", "\r\n\r\nGET /a HTTP/1.1\r\n" + host + "\r\n", ""},
      {"a tab and obs-text in a header value", "GET /a HTTP/1.1\r\n" + host + "X-A: a\tcaf\xc3\xa9 \r\n\r\n",
       ""},
      {"token punctuation in a header name", "GET /a HTTP/1.1\r\n" + host + "X-!#$%&'*+.^_`|~: v\r\n\r\n",
       ""},
      {"a header with an empty value", "GET /a HTTP/1.1\r\n" + host + "X-A:\r\n\r\n", ""},
  };
  std::vector<std::string> requests;
  for (const auto& c : cases)
    requests.push_back(c.request);
  const auto got = exchange_each(loop, port, requests);

  std::size_t accepted = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO(cases[i].what);
    REQUIRE(got[i].reply);
    const Reply& r = *got[i].reply;
    CHECK(r.nosniff());
    if (cases[i].message.empty()) {
      ++accepted;
      CHECK(r.status == 200);
      CHECK(r.body == "GET /a");
    } else {
      CHECK(r.status == 400);
      CHECK(json_of(r) == nlohmann::json{{"Message", cases[i].message}, {"Code", "Request.Malformed"}});
      CHECK(got[i].closed);
    }
  }
  CHECK(echo.seen.size() == accepted);
  REQUIRE(echo.seen.size() >= 3);
  // The folded value never reached a handler; the valid ones arrive as sent.
  CHECK(echo.seen[2].header("x-a") == std::optional<std::string>("a\tcaf\xc3\xa9"));

  // Pipelined: the scanner follows http-parser from one request to the next and never reads a body, whose
  // bytes may be anything (here bare LFs); a bad head after good requests is refused after their answers.
  std::vector<std::optional<Reply>> replies;
  bool closed = false;
  ClientThread client([&] {
    Socket s("127.0.0.1", port);
    s.send("POST /a HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\na\nb\n\n" + get("/b") +
           "GET /c HTTP/1.1\n" + host + "\r\n");
    for (int i = 0; i < 3; ++i)
      replies.push_back(s.read_response());
    closed = s.wait_closed();
  });
  client.finish(loop);
  REQUIRE(replies.size() == 3);
  for (const auto& r : replies)
    REQUIRE(r);
  CHECK(replies[0]->status == 200);
  CHECK(replies[0]->body == "POST /a a\nb\n\n");
  CHECK(replies[1]->status == 200);
  CHECK(replies[1]->body == "GET /b");
  CHECK(replies[2]->status == 400);
  CHECK(json_of(*replies[2])["Message"] == not_crlf);
  CHECK(closed);

  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("request targets must be canonical: each refusal and what is still accepted", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServer server(loop.get(), echo.handler(), fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  const std::string path_code = "Request.InvalidPath";
  const std::string query_code = "Request.InvalidQuery";
  const std::string dot = "Request path has a '.' or '..' segment";
  const std::string separator = "Request path has an encoded '/' or '\\' (%2F, %5C)";
  const std::string backslash = "Request path has a '\\'";
  const std::string empty = "Request path has an empty segment ('//')";
  const std::string control = "Request path has a control character (raw or percent-encoded)";
  const std::string escape = "Request path has a '%' not followed by two hex digits";
  const std::string utf8 = "Request path is not valid UTF-8 once percent-decoded";
  const std::string query_escape = "Query string has a '%' not followed by two hex digits";
  const std::string query_utf8 = "Query string is not valid UTF-8 once percent-decoded";
  struct Case {
    const char* what;
    std::string target;
    std::string code;  // empty: accepted
    std::string message;
    std::vector<std::string> segments;  // when accepted
  };
  using S = std::vector<std::string>;
  const std::vector<Case> cases = {
      {"a '..' segment", "/api/issue-tracker-notes/../user/3", path_code, dot, {}},
      {"a '.' segment", "/api/./item-master", path_code, dot, {}},
      {"a final '..'", "/api/item-master/..", path_code, dot, {}},
      {"a final '..' and '/'", "/api/item-master/../", path_code, dot, {}},
      {"'%2e%2e'", "/api/%2e%2e/user", path_code, dot, {}},
      {"'%2E%2E'", "/api/%2E%2E/user", path_code, dot, {}},
      {"'.%2e'", "/api/.%2e/user", path_code, dot, {}},
      {"'%2e'", "/api/%2e/user", path_code, dot, {}},
      {"'..' in an absolute-form target", "http://127.0.0.1/api/x/../user", path_code, dot, {}},
      {"'%2F'", "/api/item-master/a%2Fb", path_code, separator, {}},
      {"'%2f'", "/api/item-master/a%2fb", path_code, separator, {}},
      {"'%5C'", "/api/item-master/a%5Cb", path_code, separator, {}},
      {"'%5c'", "/api/item-master/a%5cb", path_code, separator, {}},
      {"a raw backslash", "/api/item-master/a\\b", path_code, backslash, {}},
      {"'//' in the middle", "/api//item-master", path_code, empty, {}},
      {"'//' at the start", "//api/item-master", path_code, empty, {}},
      {"'//' at the end", "/api/item-master//", path_code, empty, {}},
      {"'%00'", "/api/a%00b", path_code, control, {}},
      {"'%0A'", "/api/a%0Ab", path_code, control, {}},
      {"'%0d'", "/api/a%0db", path_code, control, {}},
      {"'%09'", "/api/a%09b", path_code, control, {}},
      {"'%1F'", "/api/a%1Fb", path_code, control, {}},
      {"'%7F'", "/api/a%7Fb", path_code, control, {}},
      {"'%zz'", "/api/%zz", path_code, escape, {}},
      {"'%' at the end", "/api/100%", path_code, escape, {}},
      {"'%2' at the end", "/api/a%2", path_code, escape, {}},
      {"'%2' before '/'", "/api/a%2/b", path_code, escape, {}},
      {"'%G0'", "/api/a%G0", path_code, escape, {}},
      {"'%FF'", "/api/item-master/%FF", path_code, utf8, {}},
      {"a raw 0xFF byte", "/api/item-master/\xff", path_code, utf8, {}},
      {"a truncated sequence", "/api/caf%C3", path_code, utf8, {}},
      {"an overlong '.' (C0 AE)", "/api/%C0%AE%C0%AE/user", path_code, utf8, {}},
      {"an overlong '/' (E0 80 AF)", "/api/a%E0%80%AFb", path_code, utf8, {}},
      {"a surrogate (ED A0 80)", "/api/%ED%A0%80", path_code, utf8, {}},
      {"past U+10FFFF (F4 90 80 80)", "/api/%F4%90%80%80", path_code, utf8, {}},
      {"a query '%zz'", "/api/x?page=%zz", query_code, query_escape, {}},
      {"a query ending in '%'", "/api/x?search=100%", query_code, query_escape, {}},
      {"a query '%FF'", "/api/x?search=%FF", query_code, query_utf8, {}},
      {"a query with a raw 0xFF byte", "/api/x?search=\xff", query_code, query_utf8, {}},
      {"a query truncated sequence", "/api/x?search=caf%C3&page=2", query_code, query_utf8, {}},
      // Accepted, with the segments routes see:
      {"a plain path", "/api/item-master/7", "", "", S{"api", "item-master", "7"}},
      {"the root", "/", "", "", S{}},
      {"a final '/'", "/api/item-master/", "", "", S{"api", "item-master"}},
      {"an encoded space", "/api/purchase%20order", "", "", S{"api", "purchase order"}},
      {"an encoded '.' inside a segment", "/api/a%2Eb", "", "", S{"api", "a.b"}},
      {"'...' and '.hidden'", "/api/.../.hidden", "", "", S{"api", "...", ".hidden"}},
      {"encoded UTF-8", "/api/caf%C3%A9", "", "", S{"api", "caf\xc3\xa9"}},
      {"raw UTF-8", "/api/caf\xc3\xa9", "", "", S{"api", "caf\xc3\xa9"}},
      {"a 4-byte character", "/api/%F0%9F%93%A6", "", "", S{"api", "\xf0\x9f\x93\xa6"}},
      {"sub-delims and '+'", "/api/a+b;c=d,e", "", "", S{"api", "a+b;c=d,e"}},
      {"an encoded query", "/api/x?filter=%5B%22a%22%5D&search=caf%C3%A9+x", "", "", S{"api", "x"}},
      {"a query with an encoded control character", "/api/x?search=a%09b%00", "", "", S{"api", "x"}},
      {"a query with '..' and '//'", "/api/x?next=/a/../b//c", "", "", S{"api", "x"}},
      {"an absolute-form target", "http://127.0.0.1:8470/api/x?y=1", "", "", S{"api", "x"}},
      {"an absolute-form target without a path", "http://127.0.0.1:8470", "", "", S{}},
      {"OPTIONS *", "*", "", "", S{}},
  };
  std::vector<std::string> requests;
  for (const auto& c : cases)
    requests.push_back((c.target == "*" ? "OPTIONS " : "GET ") + c.target +
                       " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  const auto got = exchange_each(loop, port, requests);

  std::size_t seen = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO(c.what << ": " << c.target);
    REQUIRE(got[i].reply);
    const Reply& r = *got[i].reply;
    CHECK(r.nosniff());
    if (!c.code.empty()) {
      CHECK(r.status == 400);
      CHECK(json_of(r) == nlohmann::json{{"Message", c.message}, {"Code", c.code}});
      CHECK(got[i].closed);
      continue;
    }
    CHECK(r.status == 200);
    REQUIRE(seen < echo.seen.size());
    const HttpRequest& req = echo.seen[seen++];
    CHECK(req.target == c.target);
    CHECK(req.segments == c.segments);
    if (c.target != "*") {
      // What the loopback's routes split is what was validated.
      CHECK(knosc::daemon::split_path(req.path) == req.segments);
      std::vector<std::string> again;
      CHECK_FALSE(knosc::daemon::parse_target_path(knosc::daemon::encode_path(req.segments), again));
      CHECK(again == req.segments);
    }
  }
  CHECK(seen == echo.seen.size());
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("encode_path re-encodes segments so that parsing gives them back", "[http_server]") {
  using knosc::daemon::check_target_query;
  using knosc::daemon::encode_path;
  using knosc::daemon::parse_target_path;
  const std::string separator = "Request path has an encoded '/' or '\\' (%2F, %5C)";
  const std::string control = "Request path has a control character (raw or percent-encoded)";
  struct Case {
    std::vector<std::string> segments;
    std::string path;
    std::string refused;  // encodable, but a path the server itself refuses, and why
  };
  const std::vector<Case> cases = {
      {{}, "/", ""},
      {{"api", "item-master", "7"}, "/api/item-master/7", ""},
      {{"api", "purchase order"}, "/api/purchase%20order", ""},
      {{"50%"}, "/50%25", ""},
      {{"a+b;c"}, "/a%2Bb%3Bc", ""},
      {{"-._~!$&'()*,=:@"}, "/-._~!$&'()*,=:@", ""},
      {{"?#[]\"<>`{}|^ "}, "/%3F%23%5B%5D%22%3C%3E%60%7B%7D%7C%5E%20", ""},
      {{"caf\xc3\xa9"}, "/caf%C3%A9", ""},
      {{"...", ".a"}, "/.../.a", ""},
      {{"a/b", "c\\d"}, "/a%2Fb/c%5Cd", separator},
      {{std::string("\x00\x1f\x7f", 3)}, "/%00%1F%7F", control},
  };
  for (const auto& c : cases) {
    INFO(c.path);
    CHECK(encode_path(c.segments) == c.path);
    std::vector<std::string> back;
    const auto refusal = parse_target_path(c.path, back);
    if (c.refused.empty()) {
      CHECK_FALSE(refusal);
      CHECK(back == c.segments);
    } else {
      CHECK(refusal == TargetRefusal{"Request.InvalidPath", c.refused});
    }
  }
  // Dot segments a caller passes stay segments: written plainly, libcurl would remove them before sending.
  CHECK(encode_path({"api", ".", ".."}) == "/api/%2E/%2E%2E");

  std::vector<std::string> segments{"stale"};
  CHECK(
      parse_target_path("api/x", segments) ==
      std::optional<TargetRefusal>(TargetRefusal{"Request.InvalidPath", "Request path must begin with '/'"}));
  CHECK(segments.empty());
  CHECK(parse_target_path("", segments));
  CHECK_FALSE(check_target_query(""));
  CHECK_FALSE(check_target_query("a=1&b=%E2%82%AC+x&c"));
  CHECK(check_target_query("a=\tb") == std::optional<TargetRefusal>(TargetRefusal{
                                           "Request.InvalidQuery", "Query string has a control character"}));
}

TEST_CASE("trickled header bytes do not extend the header clock", "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.header_timeout_ms = 300;
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> reply;
  std::chrono::milliseconds took{};
  std::size_t sent = 0;
  ClientThread client([&] {
    const auto start = std::chrono::steady_clock::now();
    Socket s("127.0.0.1", port);
    bool ok = s.send("GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    // A byte every 20 ms (pacing, not waiting): each read is long before any pause limit.
    while (ok && !s.wait_readable(20ms) && std::chrono::steady_clock::now() - start < 5s) {
      ok = s.send("x");
      sent += ok ? 1 : 0;
    }
    reply = s.read_response();
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(reply->status == 408);
  CHECK(json_of(*reply) ==
        nlohmann::json{{"Message", "Request was not received in time"}, {"Code", "Request.Timeout"}});
  CHECK(took >= 290ms);
  CHECK(took < 2000ms);
  CHECK(sent > 3);
  CHECK(echo.seen.empty());
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("a body earns time at min_body_rate: a steady upload is not cut, a slower one is",
          "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.header_timeout_ms = 1000;  // far longer than any pause below
  limits.request_timeout_ms = 500;
  limits.min_body_rate = 32 * 1024;
  std::size_t piece = 0;
  std::size_t total = 0;
  std::chrono::milliseconds every{};
  bool expect_cut = false;
  SECTION("128 KiB/s, four times the minimum: 96 KiB in at least 750 ms") {
    piece = 4096;
    every = 31ms;
    total = 96 * 1024;
  }
  SECTION("8 KiB/s, a quarter of the minimum: cut after about 670 ms") {
    piece = 1024;
    every = 125ms;
    total = 64 * 1024;
    expect_cut = true;
  }
  HttpServer server(loop.get(), echo.handler(), limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();

  std::optional<Reply> reply;
  std::chrono::milliseconds took{};
  std::size_t sent = 0;
  ClientThread client([&] {
    const auto start = std::chrono::steady_clock::now();
    Socket s("127.0.0.1", port);
    bool ok =
        s.send("POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + std::to_string(total) +
               "\r\n\r\n");
    // Paced: a piece, then up to `every` of watching for an early answer.
    while (ok && sent < total && !s.wait_readable(every)) {
      ok = s.send(std::string(piece, 'u'));
      sent += ok ? piece : 0;
    }
    reply = s.read_response();
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  });
  client.finish(loop);
  REQUIRE(reply);
  CHECK(took >= 500ms);  // both outlive request_timeout_ms: only the rate decides
  if (expect_cut) {
    CHECK(reply->status == 408);
    CHECK(json_of(*reply)["Code"] == "Request.Timeout");
    CHECK(sent < total);
    CHECK(took < 3000ms);
    CHECK(echo.seen.empty());
  } else {
    CHECK(reply->status == 200);
    REQUIRE(echo.seen.size() == 1);
    CHECK(echo.seen[0].body == std::string(total, 'u'));
  }
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("slow bodies holding every slot are cut at the request deadline; priority requests use the reserve",
          "[http_server]") {
  TestLoop loop;
  EchoHandler echo;
  HttpServerLimits limits = fast_limits();
  limits.max_connections = 4;
  limits.reserve_connections = 2;
  limits.header_timeout_ms = 1000;  // far longer than the slow clients' pauses
  limits.request_timeout_ms = 2500;
  limits.reserve_timeout_ms = 400;
  HttpServer server(loop.get(), echo.handler(), limits,
                    [](const HttpRequest& req) { return req.method == "GET" && req.path == "/health"; });
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const int port = server.bound_port();
  using Clock = std::chrono::steady_clock;
  const auto since = [](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t);
  };

  // Four clients each announce a 100,000-byte body and send a byte every 50 ms: they would hold every slot
  // for more than an hour, and no pause of theirs comes near header_timeout_ms.
  struct Slow {
    std::optional<Reply> reply;
    bool closed = false;
    std::chrono::milliseconds took{};
    std::size_t sent = 0;
  };
  constexpr std::size_t kSlow = 4;
  std::vector<Slow> slow(kSlow);
  std::atomic<std::size_t> slow_started{0};
  std::atomic<std::size_t> slow_answered{0};
  std::vector<std::unique_ptr<ClientThread>> slow_clients;
  for (std::size_t i = 0; i < kSlow; ++i) {
    slow_clients.push_back(std::make_unique<ClientThread>([&, i] {
      Slow& me = slow[i];
      const auto start = Clock::now();
      Socket s("127.0.0.1", port, 10s);
      bool ok = s.send("POST /api/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n");
      ++slow_started;
      while (ok && !s.wait_readable(50ms) && Clock::now() - start < 8s) {
        ok = s.send("x");
        me.sent += ok ? 1 : 0;
      }
      me.reply = s.read_response();
      me.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      ++slow_answered;
      me.closed = s.wait_closed();
    }));
  }
  REQUIRE(loop.run_until([&] { return slow_started == kSlow && server.connections() == kSlow; }));

  std::optional<Reply> not_priority, health, over, idle_1, idle_2;
  bool not_priority_closed = false;
  bool health_closed = false;
  std::chrono::milliseconds health_took{}, over_took{}, idle_took{};
  std::atomic<bool> first_phase_done{false};
  std::atomic<bool> reserve_free{false};
  ClientThread busy([&] {
    {
      Socket s("127.0.0.1", port);
      s.send(get("/api/x"));
      not_priority = s.read_response();
      not_priority_closed = s.wait_closed();
    }
    {
      const auto start = Clock::now();
      Socket s("127.0.0.1", port);
      s.send("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
      health = s.read_response();
      health_took = since(start);
      health_closed = s.wait_closed();
    }
    first_phase_done = true;
    const auto wait_from = Clock::now();
    while (!reserve_free && Clock::now() - wait_from < 10s)
      std::this_thread::yield();
    // Two connections take the reserve and send nothing; a third finds it full.
    const auto start = Clock::now();
    Socket r1("127.0.0.1", port);
    Socket r2("127.0.0.1", port);
    Socket r3("127.0.0.1", port);
    over = r3.read_response();
    over_took = since(start);
    idle_1 = r1.read_response();
    idle_took = since(start);
    idle_2 = r2.read_response();
  });
  // The reserve connections of the first phase are closed before the second takes the whole reserve.
  REQUIRE(loop.run_until([&] { return first_phase_done && server.connections() == kSlow; }));
  reserve_free = true;
  busy.finish(loop);
  const std::size_t cut_before_busy_finished = slow_answered;

  for (auto& c : slow_clients)
    c->finish(loop);
  REQUIRE(loop.run_until([&] { return server.connections() == 0; }));
  std::optional<Reply> after;
  ClientThread late([&] {
    Socket s("127.0.0.1", port);
    s.send(get("/api/after"));
    after = s.read_response();
  });
  late.finish(loop);

  // All of it happened while the slow clients held every slot.
  CHECK(cut_before_busy_finished == 0);
  REQUIRE(not_priority);
  CHECK(not_priority->status == 503);
  CHECK(json_of(*not_priority) ==
        nlohmann::json{{"Message", "Too many connections to knosc-syncd"}, {"Code", "Server.Busy"}});
  CHECK(not_priority->nosniff());
  CHECK(not_priority_closed);
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body == "GET /health");
  CHECK(health_took < 1000ms);
  CHECK(health->header("connection") == std::optional<std::string>("close"));  // one request per reserve
  CHECK(health_closed);
  REQUIRE(over);
  CHECK(over->status == 503);
  CHECK(over_took < 300ms);  // at once, not after a timeout
  for (const auto* idle : {&idle_1, &idle_2}) {
    REQUIRE(*idle);
    CHECK((*idle)->status == 408);
    CHECK((*idle)->nosniff());
  }
  CHECK(idle_took >= 350ms);
  CHECK(idle_took < 2000ms);

  for (std::size_t i = 0; i < kSlow; ++i) {
    INFO("slow client " << i);
    REQUIRE(slow[i].reply);
    CHECK(slow[i].reply->status == 408);
    CHECK(json_of(*slow[i].reply)["Code"] == "Request.Timeout");
    CHECK(slow[i].reply->nosniff());
    CHECK(slow[i].closed);
    CHECK(slow[i].took >= 2450ms);
    CHECK(slow[i].took < 6000ms);
    CHECK(slow[i].sent > 20);
  }
  REQUIRE(after);
  CHECK(after->status == 200);
  REQUIRE(echo.seen.size() == 2);
  CHECK(echo.seen[0].path == "/health");
  CHECK(echo.seen[1].path == "/api/after");
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}

TEST_CASE("X-Content-Type-Options: nosniff is the server's, once, on every answer", "[http_server]") {
  TestLoop loop;
  HttpServer server(
      loop.get(),
      [](const HttpRequest& req, Responder respond) {
        HttpResponse r;
        r.body = "<html>";
        if (req.path == "/sniff") r.headers = {{"X-Content-Type-Options", "sniff"}};
        respond(std::move(r));
      },
      fast_limits());
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  const auto got = exchange_each(loop, server.bound_port(), {get("/plain"), get("/sniff")});
  for (const auto& g : got) {
    REQUIRE(g.reply);
    CHECK(g.reply->status == 200);
    CHECK(g.reply->nosniff());
  }
  shut_down(loop, server);
  CHECK(loop.close() == 0);
}
