// libFuzzer target: the loopback HTTP server's request handling, through a real socket.
//
// One HttpServer on a uv loop run by this thread listens on 127.0.0.1:0 for the whole run. Each input is
// written to a fresh connection, which is then half-closed; the loop runs until the server has closed the
// connection and released it. Whatever the bytes, the server must answer or drop the connection, never
// crash, trip a sanitizer, leak, or hold the connection open (a connection still open after kDeadline is
// reported as a hang by aborting).
//
// The handler answers 200. Requests whose target contains "defer" are answered later, after the loop has
// run again and in the reverse order of their arrival, so the pipeline's reordering is exercised too. It
// aborts when a request reaches it with segments other than its path's (see HttpRequest::segments).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_server.hpp"

namespace {

using knosc::daemon::HttpRequest;
using knosc::daemon::HttpResponse;
using knosc::daemon::HttpServer;
using knosc::daemon::HttpServerLimits;
using knosc::daemon::Responder;

constexpr auto kDeadline = std::chrono::seconds(5);

struct Harness {
  uv_loop_t loop{};
  HttpServer* server = nullptr;
  int port = 0;
  std::vector<std::pair<Responder, HttpResponse>> deferred;

  Harness() {
    // The server logs refused requests; at fuzzing rates that output only slows the run down.
    spdlog::set_level(spdlog::level::off);
    // The server writes to sockets whose peer may be gone; the daemon ignores SIGPIPE the same way.
    std::signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) std::abort();
    HttpServerLimits limits;
    // Small limits so that inputs of a few KiB reach the 413 and 431 paths and timers fire quickly.
    limits.max_header_bytes = 2048;
    limits.max_body_bytes = 4096;
    limits.header_timeout_ms = 200;
    limits.request_timeout_ms = 400;
    limits.min_body_rate = 16 * 1024;
    limits.idle_timeout_ms = 200;
    limits.linger_ms = 20;
    limits.max_pipelined = 4;
    server = new HttpServer(
        &loop, [this](const HttpRequest& req, Responder respond) { handle(req, respond); }, limits);
    if (server->listen("127.0.0.1", 0) != 0) {
      std::fprintf(stderr, "fuzz_http_request: cannot listen on 127.0.0.1\n");
      std::abort();
    }
    port = server->bound_port();
  }

  void handle(const HttpRequest& req, const Responder& respond) {
    // A request reaching a handler has a canonical path: routes split it into the segments the server
    // validated, and they encode back to a path that parses to the same segments.
    if (req.path != "*") {
      if (knosc::daemon::split_path(req.path) != req.segments) std::abort();
      std::vector<std::string> again;
      if (knosc::daemon::parse_target_path(knosc::daemon::encode_path(req.segments), again) ||
          again != req.segments)
        std::abort();
    }
    HttpResponse res;
    // Touch what routes read, so their parsing runs on fuzzed requests too.
    auto params = req.query_params();
    res.body = req.method + " " + req.path + " " + std::to_string(params.size()) + " " +
               std::to_string(req.body.size()) + " " + req.header("content-type").value_or("-");
    res.set_header("Content-Type", "text/plain");
    if (req.target.find("defer") != std::string::npos) {
      deferred.emplace_back(respond, std::move(res));
    } else {
      respond(std::move(res));
    }
  }

  void answer_deferred() {
    auto batch = std::move(deferred);
    deferred.clear();
    std::reverse(batch.begin(), batch.end());
    for (auto& [respond, res] : batch)
      respond(std::move(res));
  }

  int connect_client() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) std::abort();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // A blocking connect completes in the kernel's backlog before the loop accepts. libFuzzer's timers
    // (SIGALRM) can interrupt it; the connection then completes on its own and is waited for.
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      if (err == EINTR) {
        pollfd pfd{fd, POLLOUT, 0};
        while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
        }
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
      if (err != 0) {
        std::fprintf(stderr, "fuzz_http_request: connect failed: %s\n", std::strerror(err));
        std::abort();
      }
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
  }

  void run(const std::uint8_t* data, std::size_t size) {
    const int fd = connect_client();
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    std::size_t sent = 0;
    bool half_closed = false;
    bool peer_done = false;  // the server closed (or reset) its side
    char buf[16384];
    while (true) {
      uv_run(&loop, UV_RUN_NOWAIT);
      answer_deferred();
      if (!half_closed && sent < size) {
        ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<std::size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          sent = size;  // the server already closed: the rest cannot be sent
        }
      }
      if (!half_closed && sent == size) {
        ::shutdown(fd, SHUT_WR);
        half_closed = true;
      }
      while (!peer_done) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;  // responses are read only to keep the server's writes flowing
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) peer_done = true;
        break;
      }
      if (peer_done && server->connections() == 0 && deferred.empty()) break;
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr,
                     "fuzz_http_request: the connection is still open after %lld s (%zu of %zu bytes sent)\n",
                     static_cast<long long>(kDeadline.count()), sent, size);
        std::abort();
      }
      // Sleep until the client socket or the loop has something to do (at most a few ms, for timers).
      pollfd fds[2] = {{fd, POLLIN, 0}, {uv_backend_fd(&loop), POLLIN, 0}};
      int timeout = uv_backend_timeout(&loop);  // -1: no timer pending
      if (timeout < 0 || timeout > 5) timeout = 5;
      if (!half_closed) timeout = 0;
      ::poll(fds, 2, timeout);
    }
    ::close(fd);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Never destroyed: libFuzzer ends the process without unwinding, and a server torn down per input would
  // leave a trail of TIME_WAIT ports instead.
  static Harness* harness = new Harness();
  harness->run(data, size);
  return 0;
}
