#pragma once
// HTTP exchanges over libcurl's multi interface, driven by the libuv loop that owns all network I/O.
//
// Ownership and threads: an HttpClient belongs to one uv loop and every member function, and every completion
// callback, runs on that loop's thread. Cookies live in curl's in-memory cookie engine, shared by all
// transfers of this client, so Knosc's session cookies (and their paths, e.g. the refresh cookie's
// /api/token-refresh) are handled by libcurl rather than by hand.

#include <uv.h>

#include <cstddef>
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

struct HttpTimeouts {
  long connect_ms = 10'000;    // TCP + TLS handshake
  long transfer_ms = 120'000;  // whole exchange; a hung upstream is cut off after this
};

struct HttpRequest {
  std::string method;                // GET, POST, PUT, PATCH, DELETE
  std::string url;                   // absolute URL
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent when non-empty or when the method is POST/PUT/PATCH
};

struct HttpResponse {
  int curl_code = 0;            // CURLE_OK when an HTTP response arrived complete
  std::string transport_error;  // curl's message when curl_code != CURLE_OK
  // True when curl may have delivered the request to the server before the transport failed: for a write
  // this means the outcome is unknown (the server may have applied it). False only when the failure is known
  // to precede sending (DNS, connect refused, TLS handshake).
  bool maybe_delivered = false;
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
