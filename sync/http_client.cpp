#include "sync/http_client.hpp"

#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace knosc::sync {

std::optional<std::string> HttpResponse::header(std::string_view lower_name) const {
  for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
    if (it->first == lower_name) return it->second;
  }
  return std::nullopt;
}

std::string multipart_form_body(const MultipartFile& file, std::string_view boundary) {
  const auto quoted = [](std::string_view v) {
    std::string out;
    for (char c : v) {
      if (c == '"') {
        out += "%22";
      } else if (c == '\r') {
        out += "%0D";
      } else if (c == '\n') {
        out += "%0A";
      } else {
        out += c;
      }
    }
    return out;
  };
  std::string body;
  body.reserve(file.data.size() + 256);
  body.append("--").append(boundary).append("\r\n");
  body.append("Content-Disposition: form-data; name=\"")
      .append(quoted(file.field))
      .append("\"; filename=\"")
      .append(quoted(file.filename))
      .append("\"\r\n");
  std::string type = file.content_type;
  std::erase_if(type, [](char c) { return c == '\r' || c == '\n'; });
  body.append("Content-Type: ").append(type).append("\r\n\r\n");
  body.append(file.data);
  body.append("\r\n--").append(boundary).append("--\r\n");
  return body;
}

namespace {

constexpr const char* kCancelledMessage = "request cancelled: HTTP client closed";

void global_init_once() {
  // curl_global_init is not thread-safe in every libcurl build; doing it once here keeps every HttpClient
  // (and every test) from having to remember it.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Counts uv handles whose close has been requested but whose close callback has not yet run. It lives apart
// from the client (shared by every handle wrapper) because close callbacks run after close() returned and
// possibly after the HttpClient itself is gone; they must never touch the client.
struct CloseTracker {
  std::size_t closing = 0;
  bool client_closing = false;
  bool finished = false;
  std::vector<std::function<void()>> on_closed;

  void handle_closed() {
    --closing;
    maybe_finish();
  }
  void maybe_finish() {
    if (!client_closing || closing != 0 || finished) return;
    finished = true;
    auto callbacks = std::move(on_closed);
    on_closed.clear();
    for (auto& cb : callbacks) {
      if (cb) cb();
    }
  }
};

template <typename Wrapper>
void on_wrapper_closed(uv_handle_t* handle) {
  auto* wrapper = static_cast<Wrapper*>(handle->data);
  // The tracker outlives the wrapper for the duration of this call: handle_closed() may run on_closed, which
  // is allowed to destroy the HttpClient.
  auto tracker = std::move(wrapper->tracker);
  delete wrapper;
  tracker->handle_closed();
}

template <typename Wrapper>
void close_wrapper(Wrapper* wrapper, uv_handle_t* handle) {
  ++wrapper->tracker->closing;
  uv_close(handle, on_wrapper_closed<Wrapper>);
}

struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  HttpRequest request;
  HttpResponse response;
  std::function<void(HttpResponse)> done;
  char error_buffer[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    if (headers) curl_slist_free_all(headers);
    if (easy) curl_easy_cleanup(easy);
  }
};

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  std::string& body = t->response.body;
  if (body.empty()) {
    // A list page is about a megabyte; growing the string by doubling would copy it about twice over.
    // Content-Length (of the encoded body, when curl decodes gzip: a lower bound then) sizes it at once.
    constexpr curl_off_t kMaxReserve = 64 << 20;
    curl_off_t length = -1;
    if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK && length > 0)
      body.reserve(static_cast<std::size_t>(std::min(length, kMaxReserve)));
  }
  body.append(data, size * count);
  return size * count;
}

std::size_t on_header_line(char* data, std::size_t size, std::size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const std::size_t n = size * count;
  std::string_view line = trim(std::string_view(data, n));
  if (line.starts_with("HTTP/")) {
    // A status line starts a new response (after a 1xx interim one, for instance); only the final
    // response's headers are meaningful.
    t->response.headers.clear();
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return n;
  t->response.headers.emplace_back(to_lower(trim(line.substr(0, colon))),
                                   std::string(trim(line.substr(colon + 1))));
  return n;
}

bool is_https(const std::string& url) {
  return to_lower(std::string_view(url).substr(0, 8)) == "https://";
}

// Whether the transfer's connection was set up: TCP connected and, for https, the TLS handshake done.
bool connection_ready(CURL* easy, const std::string& url) {
  curl_off_t connect_us = 0;
  curl_off_t appconnect_us = 0;
  curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
  curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &appconnect_us);
  if (connect_us <= 0) return false;
  return !is_https(url) || appconnect_us > 0;
}

// Whether the request may have reached the server. A write whose fate is unknown must not be blindly
// repeated (or considered failed) by the caller, so everything not provably pre-send answers true.
bool maybe_delivered(CURL* easy, CURLcode code, const std::string& url) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
      return false;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_ABORTED_BY_CALLBACK: {
      // A timeout (or cancellation) may have struck before the connection existed. curl counts the request
      // bytes only once it has written the request head; before the TCP connect (or, for https, before the
      // TLS handshake) finished, nothing can have been sent.
      long request_size = 0;
      curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
      return request_size > 0 || connection_ready(easy, url);
    }
    default:
      return true;
  }
}

}  // namespace

struct HttpClient::Impl {
  // Each uv handle lives in its own heap block, freed by its close callback (libuv still owns the memory
  // until then).
  struct TimerHandle {
    uv_timer_t timer{};
    std::shared_ptr<CloseTracker> tracker;
    Impl* impl = nullptr;
  };
  // The poll handle of one socket curl polls. For a connection socket (opened through open_socket) it lives
  // until close_socket: a kept-alive connection serves one transfer after another, and curl withdraws the
  // socket (CURL_POLL_REMOVE) after each; closing the handle then and making a new one for the next transfer
  // cost libuv an ioctl and three epoll_ctl calls per request; kept, it usually costs none.
  // Any other socket curl polls (the threaded resolver's wake-up pair) is closed by curl without
  // close_socket, possibly before its removal is announced: its watch goes at the removal, so that no
  // watch is left on a descriptor number the loop may give to something else.
  struct SocketWatch {
    uv_poll_t poll{};
    curl_socket_t fd = CURL_SOCKET_BAD;
    int events = 0;       // what uv polls for now; 0 while stopped
    bool in_use = false;  // a transfer is using the socket (curl has not withdrawn it)
    std::shared_ptr<CloseTracker> tracker;
    Impl* impl = nullptr;
  };

  uv_loop_t* loop;
  TlsOptions tls;
  HttpTimeouts timeouts;
  CURLM* multi = nullptr;
  CURLSH* share = nullptr;
  CURL* jar = nullptr;  // never performed: the handle through which the shared cookie jar is read and cleared
  TimerHandle* timer = nullptr;
  std::unordered_map<curl_socket_t, SocketWatch*> watches;  // by socket
  std::unordered_set<curl_socket_t> connections;  // sockets open_socket made and curl has not closed
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> transfers;
  static constexpr std::size_t kMaxIdleEasy = 16;
  std::vector<CURL*> idle_easy;  // see take_easy
  std::shared_ptr<CloseTracker> tracker = std::make_shared<CloseTracker>();
  // Completion callbacks may destroy the client; drain() notices through a weak reference to this.
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  bool closing = false;

  Impl(uv_loop_t* l, TlsOptions t, HttpTimeouts to) : loop(l), tls(std::move(t)), timeouts(to) {
    global_init_once();
    share = curl_share_init();
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    jar = curl_easy_init();
    curl_easy_setopt(jar, CURLOPT_SHARE, share);
    curl_easy_setopt(jar, CURLOPT_COOKIEFILE, "");

    timer = new TimerHandle;
    timer->tracker = tracker;
    timer->impl = this;
    uv_timer_init(loop, &timer->timer);
    timer->timer.data = timer;

    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::on_curl_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  }

  ~Impl() {
    // Destroyed without close(): release everything, but the callbacks of unfinished transfers are dropped
    // rather than called, since their owners are most likely being torn down too.
    if (!closing) teardown(false);
  }

  // --- libcurl → libuv ---

  static int on_socket(CURL* /*easy*/, curl_socket_t fd, int what, void* userp, void* /*socketp*/) {
    auto* self = static_cast<Impl*>(userp);
    auto found = self->watches.find(fd);
    if (what == CURL_POLL_REMOVE) {
      // The transfer is done with the socket. A connection's watch stays for the next transfer until curl
      // closes the connection (close_socket); any other socket may already be closed (see SocketWatch), so
      // its watch goes now.
      if (found == self->watches.end()) return 0;
      SocketWatch* watch = found->second;
      if (self->connections.contains(fd)) {
        // While the connection idles, input can only mean that the server closed it, so the watch keeps
        // waiting for that alone (on_poll then stops it): the next transfer then finds it polled already.
        watch->in_use = false;
        if (watch->events != UV_READABLE) self->set_events(*watch, 0);
      } else {
        self->release_watch(fd);
      }
      return 0;
    }
    SocketWatch* watch = nullptr;
    if (found != self->watches.end()) {
      watch = found->second;
    } else {
      watch = new SocketWatch;
      watch->fd = fd;
      watch->impl = self;
      watch->tracker = self->tracker;
      if (uv_poll_init_socket(self->loop, &watch->poll, fd) != 0) {
        delete watch;
        return -1;
      }
      watch->poll.data = watch;
      self->watches.emplace(fd, watch);
    }
    watch->in_use = true;
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    return self->set_events(*watch, events) ? 0 : -1;
  }

  // Polls `watch` for `events` (0: stops it), touching libuv only when they change: uv_poll_start and
  // uv_poll_stop each take the descriptor out of epoll, and a start puts it back on the next loop turn.
  bool set_events(SocketWatch& watch, int events) {
    if (events == watch.events) return true;
    const int rc =
        events == 0 ? uv_poll_stop(&watch.poll) : uv_poll_start(&watch.poll, events, &Impl::on_poll);
    watch.events = rc == 0 ? events : 0;
    return rc == 0;
  }

  // Sockets go through these two so that a watch lives exactly as long as its socket: it is released before
  // the descriptor is closed (uv must stop polling a descriptor before it goes), and a new socket never
  // finds a watch left behind under its number.
  static curl_socket_t open_socket(void* clientp, curlsocktype /*purpose*/, curl_sockaddr* address) {
    auto* self = static_cast<Impl*>(clientp);
    const curl_socket_t fd = ::socket(address->family, address->socktype, address->protocol);
    if (fd != CURL_SOCKET_BAD) {
      self->release_watch(fd);
      self->connections.insert(fd);
    }
    return fd;
  }

  static int close_socket(void* clientp, curl_socket_t fd) {
    auto* self = static_cast<Impl*>(clientp);
    self->release_watch(fd);
    self->connections.erase(fd);
    return ::close(fd);
  }

  static int on_curl_timer(CURLM* /*multi*/, long timeout_ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    if (!self->timer) return 0;
    if (timeout_ms < 0 || self->closing) {
      uv_timer_stop(&self->timer->timer);
    } else {
      // Even a 0 ms timeout goes through the loop: curl forbids calling back into socket_action from inside
      // this callback.
      uv_timer_start(&self->timer->timer, &Impl::on_uv_timer, static_cast<std::uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static void on_uv_timer(uv_timer_t* handle) {
    auto* self = static_cast<TimerHandle*>(handle->data)->impl;
    int running = 0;
    curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    self->drain();
  }

  static void on_poll(uv_poll_t* handle, int status, int events) {
    auto* watch = static_cast<SocketWatch*>(handle->data);
    Impl* self = watch->impl;
    if (!watch->in_use) {
      // Input on an idle kept-alive connection: the server closed it. curl finds that out itself when it
      // next considers the connection, and closes it; until then there is nothing to wait for.
      self->set_events(*watch, 0);
      return;
    }
    const curl_socket_t fd = watch->fd;
    int flags = 0;
    if (status < 0) {
      flags = CURL_CSELECT_ERR;
    } else {
      if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
      if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    curl_multi_socket_action(self->multi, fd, flags, &running);
    self->drain();
  }

  void release_watch(curl_socket_t fd) {
    auto found = watches.find(fd);
    if (found == watches.end()) return;
    SocketWatch* watch = found->second;
    watches.erase(found);
    uv_poll_stop(&watch->poll);
    close_wrapper(watch, reinterpret_cast<uv_handle_t*>(&watch->poll));
  }

  // --- transfers ---

  // Options every transfer shares, set once per easy handle (handles are kept for later transfers).
  bool configure_handle(CURL* e) {
    bool ok = true;
    auto set = [&](CURLoption opt, auto value) { ok = ok && curl_easy_setopt(e, opt, value) == CURLE_OK; };
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_NOSIGNAL, 1L);  // no SIGALRM-based resolver timeouts: the daemon has other threads
    set(CURLOPT_CONNECTTIMEOUT_MS, timeouts.connect_ms);
    if (timeouts.no_progress_seconds > 0) {
      set(CURLOPT_LOW_SPEED_LIMIT, 1L);
      set(CURLOPT_LOW_SPEED_TIME, timeouts.no_progress_seconds);
    }
    set(CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
    set(CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
    if (!tls.ca_file.empty()) set(CURLOPT_CAINFO, tls.ca_file.c_str());
    set(CURLOPT_ACCEPT_ENCODING, "");  // every encoding this libcurl can decode (gzip at least)
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_SHARE, share);
    set(CURLOPT_COOKIEFILE, "");  // enables the in-memory cookie engine; the jar itself is the shared one
    set(CURLOPT_WRITEFUNCTION, &on_body);
    set(CURLOPT_HEADERFUNCTION, &on_header_line);
    // A connection keeps the socket functions of the transfer that opened it, so they name the client.
    set(CURLOPT_OPENSOCKETFUNCTION, &Impl::open_socket);
    set(CURLOPT_OPENSOCKETDATA, static_cast<void*>(this));
    set(CURLOPT_CLOSESOCKETFUNCTION, &Impl::close_socket);
    set(CURLOPT_CLOSESOCKETDATA, static_cast<void*>(this));
    return ok;
  }

  // The options of one request. Every one of them is set for every request, its default included, since
  // the handle may have served another request before.
  bool configure(Transfer& t) {
    CURL* e = t.easy;
    const HttpRequest& rq = t.request;
    bool ok = true;
    auto set = [&](CURLoption opt, auto value) { ok = ok && curl_easy_setopt(e, opt, value) == CURLE_OK; };
    set(CURLOPT_URL, rq.url.c_str());
    set(CURLOPT_TIMEOUT_MS, rq.timeout_ms > 0 ? rq.timeout_ms : timeouts.transfer_ms);
    set(CURLOPT_ERRORBUFFER, t.error_buffer);
    set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
    set(CURLOPT_HEADERDATA, static_cast<void*>(&t));

    for (const auto& h : rq.headers)
      t.headers = curl_slist_append(t.headers, h.c_str());
    // Without this, libcurl holds larger bodies back for up to a second waiting for "100 Continue", which
    // Knosc never sends.
    t.headers = curl_slist_append(t.headers, "Expect:");
    set(CURLOPT_HTTPHEADER, t.headers);

    // Back to a plain GET first (HTTPGET also ends a POST and NOBODY), then the method's own options.
    set(CURLOPT_HTTPGET, 1L);
    set(CURLOPT_CUSTOMREQUEST, static_cast<const char*>(nullptr));
    const bool sends_body =
        !rq.body.empty() || rq.method == "POST" || rq.method == "PUT" || rq.method == "PATCH";
    if (sends_body) {
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
      set(CURLOPT_POSTFIELDS, rq.body.c_str());  // t.request outlives the transfer
      if (rq.method != "POST") set(CURLOPT_CUSTOMREQUEST, rq.method.c_str());
    } else if (rq.method == "GET" || rq.method.empty()) {
      // the plain GET set above
    } else if (rq.method == "HEAD") {
      set(CURLOPT_NOBODY, 1L);
    } else {
      set(CURLOPT_CUSTOMREQUEST, rq.method.c_str());
    }
    // libcurl sends a request again by itself when a reused connection turns out dead before any byte of the
    // answer arrived, even a POST whose body it had written and Knosc may have applied. A change must reach
    // Knosc at most once per attempt (the pusher decides about repeats, after looking upstream), so changes
    // go on a connection of their own, which libcurl never retries.
    const bool read_only = rq.method == "GET" || rq.method == "HEAD" || rq.method.empty();
    set(CURLOPT_FRESH_CONNECT, read_only ? 0L : 1L);
    return ok;
  }

  // Easy handles of finished transfers, kept for the next ones with their shared options still set: making
  // and configuring a handle per request (a first sync makes thousands) cost about as much as the rest of
  // curl's work on a small answer. Null when a new handle cannot be set up.
  CURL* take_easy() {
    if (!idle_easy.empty()) {
      CURL* easy = idle_easy.back();
      idle_easy.pop_back();
      return easy;
    }
    CURL* easy = curl_easy_init();
    if (easy && !configure_handle(easy)) {
      curl_easy_cleanup(easy);
      return nullptr;
    }
    return easy;
  }

  void recycle(CURL* easy) {
    if (closing || idle_easy.size() >= kMaxIdleEasy) {
      curl_easy_cleanup(easy);
      return;
    }
    // Nothing of the finished transfer stays pointed at (its Transfer goes now); the next configure sets
    // these again.
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, static_cast<void*>(nullptr));
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, static_cast<void*>(nullptr));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, static_cast<const char*>(nullptr));
    idle_easy.push_back(easy);
  }

  static HttpResponse local_failure(CURLcode code, std::string message) {
    HttpResponse r;
    r.curl_code = code;
    r.transport_error = std::move(message);
    r.maybe_delivered = false;
    return r;
  }

  void send(HttpRequest request, std::function<void(HttpResponse)> done) {
    if (closing) {
      done(local_failure(CURLE_ABORTED_BY_CALLBACK, kCancelledMessage));
      return;
    }
    auto t = std::make_unique<Transfer>();
    t->request = std::move(request);
    t->done = std::move(done);
    t->easy = take_easy();
    if (!t->easy || !configure(*t)) {
      auto cb = std::move(t->done);
      t.reset();
      cb(local_failure(CURLE_FAILED_INIT, "could not set up the HTTP transfer"));
      return;
    }
    CURL* easy = t->easy;
    transfers.emplace(easy, std::move(t));
    // The multi handle immediately asks for a 0 ms timeout through on_curl_timer; the transfer starts on the
    // next loop iteration.
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
      auto node = transfers.extract(easy);
      auto cb = std::move(node.mapped()->done);
      node.mapped().reset();
      cb(local_failure(CURLE_FAILED_INIT, "could not start the HTTP transfer"));
    }
  }

  void finish(Transfer& t, CURLcode code) {
    HttpResponse& r = t.response;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &r.status);
    curl_off_t total_us = 0;
    curl_easy_getinfo(t.easy, CURLINFO_TOTAL_TIME_T, &total_us);
    r.total_seconds = static_cast<double>(total_us) / 1e6;
    r.curl_code = static_cast<int>(code);
    if (code != CURLE_OK) {
      r.transport_error = t.error_buffer[0] != '\0' ? std::string(t.error_buffer) : curl_easy_strerror(code);
      r.maybe_delivered = maybe_delivered(t.easy, code, t.request.url);
      long os_errno = 0;
      curl_easy_getinfo(t.easy, CURLINFO_OS_ERRNO, &os_errno);
      r.os_errno = static_cast<int>(os_errno);
      r.connected = connection_ready(t.easy, t.request.url);
      long header_bytes = 0;
      curl_off_t body_bytes = 0;
      curl_easy_getinfo(t.easy, CURLINFO_HEADER_SIZE, &header_bytes);
      curl_easy_getinfo(t.easy, CURLINFO_SIZE_DOWNLOAD_T, &body_bytes);
      r.bytes_received = static_cast<std::int64_t>(header_bytes) + static_cast<std::int64_t>(body_bytes);
    } else {
      r.maybe_delivered = true;
    }
  }

  // Hands finished transfers to their callbacks. Stops early when a callback closed or destroyed the client.
  void drain() {
    std::weak_ptr<int> still_alive = alive;
    while (!closing && multi) {
      int queued = 0;
      CURLMsg* msg = curl_multi_info_read(multi, &queued);
      if (!msg) break;
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode code = msg->data.result;  // msg is invalid once the handle is removed
      auto node = transfers.extract(easy);
      curl_multi_remove_handle(multi, easy);
      if (node.empty()) continue;
      std::unique_ptr<Transfer> t = std::move(node.mapped());
      finish(*t, code);
      auto cb = std::move(t->done);
      HttpResponse response = std::move(t->response);
      recycle(std::exchange(t->easy, nullptr));
      t.reset();
      cb(std::move(response));
      if (still_alive.expired()) return;
    }
  }

  // Releases curl and closes every uv handle. With `notify`, the unfinished transfers' callbacks are called
  // (after all curl state is gone, so they may safely call send(), which then fails at once).
  void teardown(bool notify) {
    closing = true;
    std::vector<std::unique_ptr<Transfer>> cancelled;
    for (auto& [easy, t] : transfers) {
      curl_multi_remove_handle(multi, easy);
      HttpResponse& r = t->response;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
      r.curl_code = CURLE_ABORTED_BY_CALLBACK;
      r.transport_error = kCancelledMessage;
      r.maybe_delivered = maybe_delivered(easy, CURLE_ABORTED_BY_CALLBACK, t->request.url);
      cancelled.push_back(std::move(t));
    }
    transfers.clear();
    if (multi) {
      // May still report socket removals (kept connections) through on_socket, which is fine: the watches
      // and the timer are still intact here.
      curl_multi_cleanup(multi);
      multi = nullptr;
    }
    std::vector<curl_socket_t> fds;
    for (const auto& [fd, watch] : watches)
      fds.push_back(fd);
    for (const curl_socket_t fd : fds)
      release_watch(fd);
    if (timer) {
      uv_timer_stop(&timer->timer);
      close_wrapper(timer, reinterpret_cast<uv_handle_t*>(&timer->timer));
      timer = nullptr;
    }
    if (jar) {
      curl_easy_cleanup(jar);
      jar = nullptr;
    }
    std::vector<std::function<void(HttpResponse)>> callbacks;
    std::vector<HttpResponse> responses;
    for (auto& t : cancelled) {
      callbacks.push_back(std::move(t->done));
      responses.push_back(std::move(t->response));
    }
    cancelled.clear();  // easy handles go before the share they use
    for (CURL* easy : idle_easy)
      curl_easy_cleanup(easy);
    idle_easy.clear();
    if (share) {
      curl_share_cleanup(share);
      share = nullptr;
    }
    if (notify) {
      std::weak_ptr<int> still_alive = alive;
      for (std::size_t i = 0; i < callbacks.size(); ++i) {
        if (callbacks[i]) callbacks[i](std::move(responses[i]));
        if (still_alive.expired()) return;
      }
    }
  }

  std::optional<std::string> cookie(std::string_view name) const {
    if (!jar) return std::nullopt;
    curl_slist* list = nullptr;
    if (curl_easy_getinfo(jar, CURLINFO_COOKIELIST, &list) != CURLE_OK) return std::nullopt;
    std::optional<std::string> found;
    const auto now = static_cast<long long>(std::time(nullptr));
    // Netscape cookie-file lines: domain, tailmatch, path, secure, expires, name, value (tab-separated).
    for (curl_slist* it = list; it && !found; it = it->next) {
      std::string_view line(it->data);
      std::vector<std::string_view> fields;
      std::size_t start = 0;
      while (fields.size() < 6) {
        const auto tab = line.find('\t', start);
        if (tab == std::string_view::npos) break;
        fields.push_back(line.substr(start, tab - start));
        start = tab + 1;
      }
      if (fields.size() != 6 || fields[5] != name) continue;
      const long long expires = std::atoll(std::string(fields[4]).c_str());
      if (expires != 0 && expires < now) continue;
      found = std::string(line.substr(start));
    }
    curl_slist_free_all(list);
    return found;
  }
};

HttpClient::HttpClient(uv_loop_t* loop, TlsOptions tls, HttpTimeouts timeouts)
    : impl_(std::make_unique<Impl>(loop, std::move(tls), timeouts)) {}

HttpClient::~HttpClient() = default;

void HttpClient::send(HttpRequest request, std::function<void(HttpResponse)> done) {
  impl_->send(std::move(request), std::move(done));
}

std::optional<std::string> HttpClient::cookie(std::string_view name) const {
  return impl_->cookie(name);
}

void HttpClient::clear_cookies() {
  if (impl_->jar) curl_easy_setopt(impl_->jar, CURLOPT_COOKIELIST, "ALL");
}

std::size_t HttpClient::in_flight() const {
  return impl_->transfers.size();
}

void HttpClient::close(std::function<void()> on_closed) {
  auto tracker = impl_->tracker;
  if (tracker->finished) {
    if (on_closed) on_closed();
    return;
  }
  tracker->on_closed.push_back(std::move(on_closed));
  if (impl_->closing) return;
  spdlog::debug("http: closing with {} transfer(s) in flight", impl_->transfers.size());
  impl_->teardown(true);
  // The timer's close is pending at least, so on_closed runs later from the loop, never from inside close().
  tracker->client_closing = true;
  tracker->maybe_finish();
}

}  // namespace knosc::sync
