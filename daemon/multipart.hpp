#pragma once
// multipart/form-data request bodies (RFC 7578 over RFC 2046 §5.1), as POST /api/job/{trigger} receives
// its upload in the form field `file` (API-NOTES §15.1, CONTRACT §6).
//
// The parser is strict: a body it cannot read exactly is refused with a message (answered as 400), rather
// than guessed at, because a misread boundary would hand a job a truncated or padded file. It accepts what
// RFC 2046 allows (a preamble and an epilogue, which are ignored; transport padding after a boundary) and
// nothing more: every line of the multipart structure ends with CRLF, every part names itself in a
// `Content-Disposition: form-data; name=...` header, and the body ends with the close delimiter.
//
// Parts' data are views into the body; the body must outlive the result.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace knosc::daemon {

struct MultipartPart {
  std::string name;                     // the form field, e.g. "file"
  std::optional<std::string> filename;  // the `filename` parameter (else a decoded `filename*`), as sent
  // The part's Content-Type as sent, empty when absent (RFC 7578 says text/plain then; Python requests sends
  // none for files, curl sends application/octet-stream for unknown extensions).
  std::string content_type;
  // Every header of the part in arrival order, names lower-cased, values without surrounding blanks.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view data;  // the part's bytes, exactly as sent (no transfer decoding)
};

struct MultipartForm {
  std::vector<MultipartPart> parts;  // in body order; a name may repeat

  // The first part named `name`, or nullptr.
  const MultipartPart* find(std::string_view name) const;
};

// The reason a body is refused, worded for the client.
struct MultipartError {
  std::string message;
};

class MultipartResult {
 public:
  MultipartResult(MultipartForm form) : v_(std::move(form)) {}     // NOLINT(google-explicit-constructor)
  MultipartResult(MultipartError error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const MultipartForm& value() const { return std::get<0>(v_); }
  const MultipartForm* operator->() const { return &value(); }
  const MultipartError& error() const { return std::get<1>(v_); }

 private:
  std::variant<MultipartForm, MultipartError> v_;
};

// Parses `body` as the request's Content-Type header value says: it must be multipart/form-data with a valid
// boundary parameter (1 to 70 characters of RFC 2046's set, quoted or not). Never throws for any input
// (only std::bad_alloc).
MultipartResult parse_multipart(std::string_view content_type_header, std::string_view body);

}  // namespace knosc::daemon
