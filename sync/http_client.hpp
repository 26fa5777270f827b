#pragma once
// HTTP exchanges over libcurl's multi interface, driven by the libuv loop that owns all network I/O.
//
// Ownership and threads: an HttpClient belongs to one uv loop and every member function, and every completion
// callback, runs on that loop's thread. Cookies live in curl's in-memory cookie engine, shared by all
// transfers of this client, so Knosc's session cookies (and their paths, e.g. the refresh cookie's
// /api/token-refresh) are handled by libcurl rather than by hand.

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace knosc::sync {

struct TlsOptions {
  bool verify = true;   // peer and host verification; only an explicit config option turns it off
  std::string ca_file;  // extra CA bundle (PEM); empty = system default
};

// A link that hangs is the common outage, and a transfer on it never ends by itself. What ends it is bytes
// not moving, never the time the whole exchange takes, so that a large page on a slow link is not cut off.
struct HttpTimeouts {
  long connect_ms = 5'000;  // TCP + TLS handshake
  // Fewer than one byte a second, either way, for this long ends the transfer (libcurl's low-speed limit,
  // whose speed is averaged over up to 5 s: a transfer that stops after moving bytes ends 10-15 s after its
  // last byte, one that never gets a byte after 10 s). 0: never.
  long no_progress_seconds = 10;
  long transfer_ms = 0;  // a cap on the whole exchange; 0: none
};

struct HttpRequest {
  std::string method;                // GET, POST, PUT, PATCH, DELETE
  std::string url;                   // absolute URL
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent when non-empty or when the method is POST/PUT/PATCH
  long timeout_ms = 0;               // this request's cap on the whole exchange; 0: the client's transfer_ms
};

struct HttpResponse {
  int curl_code = 0;            // CURLE_OK when an HTTP response arrived complete
  std::string transport_error;  // curl's message when curl_code != CURLE_OK
  // True when curl may have delivered the request to the server before the transport failed: for a write
  // this means the outcome is unknown (the server may have applied it). False only when the failure is known
  // to precede sending (DNS, connect refused, TLS handshake).
  bool maybe_delivered = false;
  // What the link did for a failed transfer (sync/link_state.hpp reads it): the errno of the last socket
  // error, whether the connection (and its TLS) was set up, and how many bytes of answer arrived.
  int os_errno = 0;
  bool connected = false;
  std::int64_t bytes_received = 0;
  long status = 0;                                           // HTTP status, 0 when no response
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in arrival order
  std::string body;
  double total_seconds = 0;

  bool transport_ok() const { return curl_code == 0; }
  std::optional<std::string> header(std::string_view lower_name) const;  // last occurrence
};

// One file field of a multipart/form-data body (RFC 7578), as Knosc's uploads take it (`file=`).
struct MultipartFile {
  std::string field = "file";
  std::string filename;                                   // sent as the part's filename parameter
  std::string content_type = "application/octet-stream";  // the part's Content-Type
  std::string data;                                       // the file's bytes, sent unchanged
};

// The multipart/form-data body holding `file` between `boundary` delimiters; the request's Content-Type is
// then "multipart/form-data; boundary=" + boundary. The boundary must not occur in the data (the caller
// picks it). Quotes, CR and LF in the field and file names are percent-encoded, as browsers do (HTML's
// multipart/form-data encoding), so a name can never break out of its header.
std::string multipart_form_body(const MultipartFile& file, std::string_view boundary);

class HttpClient {
 public:
  HttpClient(uv_loop_t* loop, TlsOptions tls, HttpTimeouts timeouts);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts the exchange; `done` is called exactly once on the loop thread (also when close() cancels it).
  void send(HttpRequest request, std::function<void(HttpResponse)> done);

  // A cookie's current value from the jar (any path), e.g. "csrf_access_token".
  std::optional<std::string> cookie(std::string_view name) const;
  void clear_cookies();
  std::size_t in_flight() const;

  // Cancels all transfers (their callbacks get a transport error) and closes every uv handle; `on_closed`
  // runs once the last handle's close callback has run, after which the client may be destroyed.
  void close(std::function<void()> on_closed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace knosc::sync
