#pragma once
// The loopback HTTP/1.1 server that serves Knosc's /api routes to the plant's tools.
//
// Ownership and threads: an HttpServer belongs to one uv loop, and every member function, every handler call
// and every Responder call happens on that loop's thread. Requests are parsed by http-parser (never by hand);
// each connection answers its requests strictly in the order they arrived, however the handler orders its
// answers, because HTTP/1.1 pipelining has no other way to pair a response with its request.
//
// Lifetime: call shutdown() and let its `done` run before destroying the server. Destroying it earlier cuts
// every connection at once; the handles then finish closing on their own and the loop can still be closed
// cleanly once it has run their close callbacks.

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace knosc::daemon {

struct HttpRequest {
  std::string method;  // "GET", "POST", ... as http-parser names it
  std::string target;  // the raw request target, e.g. "/api/purchase-order?page=2"
  std::string path;    // percent-decoded path without the query, e.g. "/api/purchase-order"
  // The path's decoded segments as the server validated them (see parse_target_path): what routes should
  // read, and what encode_path turns back into a path to send on. {} for "/", "*" and CONNECT.
  std::vector<std::string> segments;
  std::string query;  // raw query string without the '?', still encoded (escapes and UTF-8 checked)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in arrival order
  std::string body;            // decoded from chunked transfer when it was chunked
  std::string remote_address;  // peer IP, e.g. "127.0.0.1" or "::1"
  int remote_port = 0;

  // First occurrence of a header; `name` is matched case-insensitively.
  std::optional<std::string> header(std::string_view name) const;
  // Decoded query parameters ('+' is a space); when a name repeats, its first value wins.
  std::map<std::string, std::string> query_params() const;
};

struct HttpResponse {
  int status = 200;
  // Content-Length, Date and Connection are the server's to set (any given here are dropped), because they
  // depend on the connection's framing, not on the route. So is X-Content-Type-Options: every answer says
  // "nosniff", so a browser never runs a JSON or text body as a script or page.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // When set, sent instead of `body`: a body shared with a cache of answers, written to the socket from
  // where it is without a copy.
  std::shared_ptr<const std::string> shared_body;

  const std::string& content() const { return shared_body ? *shared_body : body; }

  // Replaces every header of that name (case-insensitive) with one.
  void set_header(std::string_view name, std::string value);
  void set_json_content_type() { set_header("Content-Type", "application/json"); }

  static HttpResponse json(int status, std::string body);
  // Knosc's error body: {"Message": "...", "Code": "Domain.Subtype"}.
  static HttpResponse knosc_error(int status, std::string_view message, std::string_view code);
};

// Why the server refuses a request target (400): a Knosc error code and a fixed message. The message never
// quotes the target, whose bytes need not even be UTF-8.
struct TargetRefusal {
  std::string_view code;  // "Request.InvalidPath" or "Request.InvalidQuery"
  std::string_view message;
  bool operator==(const TargetRefusal&) const = default;
};

// Checks the path of a request target (as sent: percent-encoded, starting with '/', without '?query') and
// gives its decoded segments in `segments`; returns why it is refused, or nullopt when it is accepted.
// Refused: a path not starting with '/'; an empty segment other than after a final '/' ("//");
// a '.' or '..' segment, raw or percent-encoded ("%2e", "%2E%2E"); an encoded separator ("%2F", "%5C"); a raw
// '\'; a '%' not followed by two hex digits; a control character (0x00-0x1F, 0x7F), raw or encoded; a segment
// that is not valid UTF-8 once decoded (overlong forms and surrogates included). So a route sees exactly
// what every later hop (libcurl, Knosc) would see: nobody can collapse, split or truncate these segments.
std::optional<TargetRefusal> parse_target_path(std::string_view raw_path, std::vector<std::string>& segments);
// Checks a raw query string (without the '?'): every '%' is followed by two hex digits, no raw control
// character, and the decoded text is valid UTF-8. nullopt when it is accepted.
std::optional<TargetRefusal> check_target_query(std::string_view raw_query);
// The path made of `segments` (as HttpRequest::segments holds them: decoded, non-empty), each one
// percent-encoded except for RFC 3986 unreserved characters and the sub-delims no server reads specially
// ("!$&'()*,=:@"), e.g. {"api", "a b/c"} -> "/api/a%20b%2Fc"; {} -> "/". parse_target_path of the result
// gives `segments` back.
std::string encode_path(const std::vector<std::string>& segments);

// Answers one request. Call it exactly once, on the loop thread, now or later (after a database round trip);
// a second call is ignored. Calling it after the client went away is safe: the response is dropped. Dropping
// every copy without calling it answers 500, so a forgotten path cannot stall the connection's pipeline; that
// last copy must then also be destroyed on the loop thread.
using Responder = std::function<void(HttpResponse)>;
using Handler = std::function<void(const HttpRequest&, Responder)>;
// Whether a request may use a connection held in reserve (HttpServerLimits::reserve_connections). Asked once
// its headers are in, before its body is read (HttpRequest::body is still empty); must not throw.
using PriorityPredicate = std::function<bool(const HttpRequest&)>;

struct HttpServerLimits {
  // Request line plus header lines. http-parser refuses more than 80 KiB on its own, so larger values are
  // capped there (still answered 431).
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_body_bytes = 16 * 1024 * 1024;  // uploads (bulk-import files) are the largest bodies
  // From connecting, or from a request's first byte, to the end of its headers; also the longest pause
  // allowed inside a body. Closes slow or stuck clients (slowloris) without holding a slot for them. Bytes
  // trickling in do not extend it.
  std::uint64_t header_timeout_ms = 10'000;
  // The whole request, headers and body, from its first byte (or from connecting), must arrive within
  // request_timeout_ms plus one second for every min_body_rate bytes of body received so far (Apache
  // mod_reqtimeout's MinRate), else 408 and close. A client sending a byte now and then (within
  // header_timeout_ms of each other) is thus cut after about request_timeout_ms, while an upload keeping up
  // min_body_rate is never cut: 16 MiB at 64 KiB/s takes 256 s and has until 286 s. Loopback clients send far
  // faster; 64 KiB/s still leaves room for a client on a loaded machine. 0: bodies earn no extra time.
  std::uint64_t request_timeout_ms = 30'000;
  std::uint64_t min_body_rate = 64 * 1024;  // bytes per second
  std::uint64_t idle_timeout_ms = 60'000;   // keep-alive connection with nothing in flight
  std::size_t max_connections = 256;        // beyond this, 503 and close (or a reserve connection)
  // Connections accepted beyond max_connections for requests the server's PriorityPredicate accepts (health
  // and readiness probes), so they are answered while slow or hostile clients hold every other slot. Only
  // with a predicate. A reserve connection carries one request and closes after its answer; a request that
  // is not a priority one is answered 503 Server.Busy once its headers are in. Its request, headers and
  // body, must arrive within reserve_timeout_ms, so slow clients cannot keep the reserve either.
  std::size_t reserve_connections = 16;
  std::uint64_t reserve_timeout_ms = 2'000;
  // Requests parsed ahead of their answers on one connection; past it the server stops reading that
  // connection until answers go out, so one client cannot queue unbounded work.
  std::size_t max_pipelined = 32;
  // After the last response on a closing connection, how long unread request bytes are drained before
  // the socket is closed; closing with unread input would reset the connection and could destroy the
  // response (e.g. a 413) before the client reads it.
  std::uint64_t linger_ms = 2'000;
  // How long shutdown() waits for in-flight requests before cutting their connections.
  std::uint64_t shutdown_grace_ms = 30'000;
  // DNS-rebinding defence: a web page whose host name an attacker re-points at 127.0.0.1 still sends its own
  // name in Host, so requests not naming a loopback host are refused (403) before the handler sees them.
  bool require_loopback_host = true;
};

// Whether a Host header value names this machine's loopback: "localhost", an IPv4 address in 127.0.0.0/8,
// "[::1]" (or an IPv4-mapped 127.x address), each with an optional ":port"; case-insensitive.
bool is_loopback_host(std::string_view host_header);

class HttpServer {
 public:
  // `priority` (optional) picks the requests that may use the reserve connections.
  HttpServer(uv_loop_t* loop, Handler handler, HttpServerLimits limits = {}, PriorityPredicate priority = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds exactly `host` (a numeric IPv4 or IPv6 address; IPv6 may be bracketed) and starts accepting.
  // Port 0 picks a free port. May be called again for further addresses (127.0.0.1 and ::1 on one port).
  // Returns 0 or a negative uv error code (e.g. UV_EADDRINUSE, UV_EINVAL).
  int listen(const std::string& host, int port);
  // Port of the most recent successful listen(); 0 before one.
  int bound_port() const;

  // Stops accepting, closes idle keep-alive connections, answers requests already received (their
  // connections close after the last answer), cuts whatever is left after shutdown_grace_ms, and runs `done`
  // after the last handle's close callback. Calling it again only adds another `done`.
  void shutdown(std::function<void()> done);

  // Accepted connections whose handles are not yet closed.
  std::size_t connections() const;

 private:
  struct Impl;
  Impl* impl_;  // not a unique_ptr: it frees itself when it outlives the server with close callbacks pending
};

// The non-empty segments of a request path: "/api/item-master/7" -> {"api", "item-master", "7"}. For a
// request the server accepted, split_path(path) == segments: a validated segment holds no '/'.
std::vector<std::string> split_path(const std::string& path);

}  // namespace knosc::daemon
