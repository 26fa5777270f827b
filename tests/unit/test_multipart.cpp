// parse_multipart over bodies real clients send (captured from curl 7.88 -F and Python requests 2.28 with
// urllib3 1.26, byte for byte), the corners RFC 2046 and RFC 7578 allow, and every way a body is refused.

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/multipart.hpp"

namespace {

using knosc::daemon::MultipartPart;
using knosc::daemon::parse_multipart;
using namespace std::string_literals;

struct ExpectedPart {
  std::string name;
  std::optional<std::string> filename;
  std::string content_type;
  std::string data;
};

struct OkCase {
  const char* what;
  std::string content_type;
  std::string body;
  std::vector<ExpectedPart> parts;
};

struct ErrorCase {
  const char* what;
  std::string content_type;
  std::string body;
  std::string message;  // a substring of the error
};

const std::string kCurlBoundary = "------------------------47d8acd389aa4ee8";

const std::vector<OkCase> kOkCases = {
    {"curl -F file=@book.xlsx -F note=hello (binary data with CR, LF, NUL and a dash line inside)",
     "multipart/form-data; boundary=------------------------47d8acd389aa4ee8",
     "--------------------------47d8acd389aa4ee8\r\n"
     "Content-Disposition: form-data; name=\"file\"; filename=\"book.xlsx\"\r\n"
     "Content-Type: application/octet-stream\r\n"
     "\r\n"
     "PK\x03\x04\r\n--x\r\n\x00\xff\r"
     "\r\n--------------------------47d8acd389aa4ee8\r\n"
     "Content-Disposition: form-data; name=\"note\"\r\n"
     "\r\n"
     "hello\r\n"
     "--------------------------47d8acd389aa4ee8--\r\n"s,
     {{"file", "book.xlsx", "application/octet-stream", "PK\x03\x04\r\n--x\r\n\x00\xff\r"s},
      {"note", std::nullopt, "", "hello"}}},
    {"curl -F 'file=@items.csv;filename=dir\\a \"b\".csv;type=text/csv' (curl percent-encodes '\"', keeps "
     "'\\')",
     "multipart/form-data; boundary=------------------------1d0412045a135f97",
     "--------------------------1d0412045a135f97\r\n"
     "Content-Disposition: form-data; name=\"file\"; filename=\"dir\\a %22b%22.csv\"\r\n"
     "Content-Type: text/csv\r\n"
     "\r\n"
     "Item Number,Quantity\r\nA-1,5\n"
     "\r\n--------------------------1d0412045a135f97--\r\n",
     {{"file", "dir\\a %22b%22.csv", "text/csv", "Item Number,Quantity\r\nA-1,5\n"}}},
    {"Python requests: files={'file': open('items.csv','rb')}, data={'action': 'REFRESH'} (no part "
     "Content-Type)",
     "multipart/form-data; boundary=b7cf5e33fb994f0138faf71953915718",
     "--b7cf5e33fb994f0138faf71953915718\r\n"
     "Content-Disposition: form-data; name=\"action\"\r\n"
     "\r\n"
     "REFRESH\r\n"
     "--b7cf5e33fb994f0138faf71953915718\r\n"
     "Content-Disposition: form-data; name=\"file\"; filename=\"items.csv\"\r\n"
     "\r\n"
     "Item Number,Quantity\r\nA-1,5\n"
     "\r\n--b7cf5e33fb994f0138faf71953915718--\r\n",
     {{"action", std::nullopt, "", "REFRESH"}, {"file", "items.csv", "", "Item Number,Quantity\r\nA-1,5\n"}}},
    {"Python requests: a UTF-8 file name with quotes (urllib3 percent-encodes '\"') and an explicit type",
     "multipart/form-data; boundary=e0bcc1360c70e835af10f4a03442ebbb",
     "--e0bcc1360c70e835af10f4a03442ebbb\r\n"
     "Content-Disposition: form-data; name=\"file\"; filename=\"St\xc3\xbc"
     "ck %221%22.xlsx\"\r\n"
     "Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n"
     "\r\n"
     "PK\x03\x04"
     "\r\n--e0bcc1360c70e835af10f4a03442ebbb--\r\n",
     {{"file", "Stück %221%22.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
       "PK\x03\x04"}}},
    {"a browser's body (WebKit boundary, one file)",
     "multipart/form-data; boundary=----WebKitFormBoundaryx7Yz",
     "------WebKitFormBoundaryx7Yz\r\n"
     "Content-Disposition: form-data; name=\"file\"; filename=\"forecast.csv\"\r\n"
     "Content-Type: text/csv\r\n"
     "\r\n"
     "a,b\r\n1,2\r\n"
     "\r\n------WebKitFormBoundaryx7Yz--\r\n",
     {{"file", "forecast.csv", "text/csv", "a,b\r\n1,2\r\n"}}},
    {"quoted boundary with characters a token cannot hold, other parameters, preamble and epilogue ignored",
     "multipart/form-data; charset=utf-8 ;boundary=\"simple boundary:=?\"",
     "This is the preamble.  It is to be ignored.\r\n"
     "--simple boundary:=?\r\n"
     "Content-Disposition: form-data; name=\"a\"\r\n"
     "\r\n"
     "one\r\n"
     "--simple boundary:=?--\r\n"
     "This is the epilogue.  It is also to be ignored.\r\n--simple boundary:=?\r\ngarbage",
     {{"a", std::nullopt, "", "one"}}},
    {"names are case-insensitive, tokens unquoted, transport padding after boundaries",
     "Multipart/Form-Data;BOUNDARY=abc",
     "--abc \t\r\n"
     "content-disposition: Form-Data; NAME=file; FileName=x.csv\r\n"
     "CONTENT-TYPE:text/csv\r\n"
     "X-Extra:  kept  \r\n"
     "Content-Transfer-Encoding: BINARY\r\n"
     "\r\n"
     "x\r\n"
     "--abc  \r\n"
     "Content-Disposition: form-data; name=second\r\n"
     "\r\n"
     "y\r\n"
     "--abc--",
     {{"file", "x.csv", "text/csv", "x"}, {"second", std::nullopt, "", "y"}}},
    {"empty data, data that is one CRLF, data ending in CR, near-boundaries inside data",
     "multipart/form-data; boundary=abc",
     "--abc\r\n"
     "Content-Disposition: form-data; name=\"empty\"\r\n"
     "\r\n"
     "\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"crlf\"\r\n"
     "\r\n"
     "\r\n"
     "\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"cr\"\r\n"
     "\r\n"
     "x\r"
     "\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"near\"\r\n"
     "\r\n"
     "--abc at the start of data\r\n--ab\r\n-abc\r\nx--abc--"
     "\r\n--abc--",
     {{"empty", std::nullopt, "", ""},
      {"crlf", std::nullopt, "", "\r\n"},
      {"cr", std::nullopt, "", "x\r"},
      {"near", std::nullopt, "", "--abc at the start of data\r\n--ab\r\n-abc\r\nx--abc--"}}},
    {"filename* alone is decoded (UTF-8 and ISO-8859-1); with filename, filename is kept",
     "multipart/form-data; boundary=abc",
     "--abc\r\n"
     "Content-Disposition: form-data; name=\"u\"; filename*=UTF-8''St%C3%BCck%20%E2%82%AC.csv\r\n"
     "\r\n"
     "1\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"l\"; filename*=iso-8859-1'de'St%FCck.csv\r\n"
     "\r\n"
     "2\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"both\"; filename*=UTF-8''ext.csv; filename=\"plain.csv\"\r\n"
     "\r\n"
     "3\r\n--abc--\r\n",
     {{"u", "Stück €.csv", "", "1"}, {"l", "Stück.csv", "", "2"}, {"both", "plain.csv", "", "3"}}},
    {"backslash escapes only '\"' and '\\' (urllib3 style); before anything else it is literal (curl, "
     "browsers)",
     "multipart/form-data; boundary=abc",
     "--abc\r\n"
     "Content-Disposition: form-data; name=\"a\\\"b\"; filename=\"x\\\\y\\\"z.csv\"\r\n"
     "\r\n"
     "1\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"f\"; filename=\"C:\\dir\\x.csv\"\r\n"
     "\r\n"
     "2\r\n--abc\r\n"
     "Content-Disposition: form-data; name=\"\"; filename=\"\"\r\n"
     "\r\n"
     "3\r\n--abc--\r\n",
     {{"a\"b", "x\\y\"z.csv", "", "1"}, {"f", "C:\\dir\\x.csv", "", "2"}, {"", "", "", "3"}}},
    {"a name may repeat",
     "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nfirst\r\n"
     "--abc\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nsecond\r\n--abc--",
     {{"file", std::nullopt, "", "first"}, {"file", std::nullopt, "", "second"}}},
};

std::string many_parts(int n) {
  std::string body;
  for (int i = 0; i < n; ++i)
    body += "--b\r\nContent-Disposition: form-data; name=p\r\n\r\n\r\n";
  return body + "--b--";
}

std::string many_headers(int n) {
  std::string body = "--b\r\nContent-Disposition: form-data; name=p\r\n";
  for (int i = 1; i < n; ++i)
    body += "X-H: v\r\n";
  return body + "\r\nx\r\n--b--";
}

const std::string kPart = "Content-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n";

const std::vector<ErrorCase> kErrorCases = {
    {"not multipart/form-data", "application/json", "{}", "not multipart/form-data"},
    {"another multipart type", "multipart/mixed; boundary=abc", "--abc\r\n" + kPart + "--abc--",
     "not multipart/form-data"},
    {"empty Content-Type", "", "", "not multipart/form-data"},
    {"no boundary", "multipart/form-data", "--abc\r\n" + kPart + "--abc--", "no boundary parameter"},
    {"no boundary among other parameters", "multipart/form-data; charset=utf-8", "", "no boundary parameter"},
    {"empty quoted boundary", "multipart/form-data; boundary=\"\"", "", "1 to 70 characters"},
    {"boundary without a value", "multipart/form-data; boundary=", "", "parameter boundary has no value"},
    {"boundary longer than 70", "multipart/form-data; boundary=" + std::string(71, 'b'), "",
     "1 to 70 characters"},
    {"boundary with a character outside RFC 2046's set", "multipart/form-data; boundary=\"a@b\"", "",
     "character RFC 2046 does not allow"},
    {"boundary ending in a space", "multipart/form-data; boundary=\"abc \"", "", "ends with a space"},
    {"boundary given twice", "multipart/form-data; boundary=a; boundary=b", "", "boundary is given twice"},
    {"parameter without '='", "multipart/form-data; boundary", "", "has no '='"},
    {"blank around '='", "multipart/form-data; boundary = abc", "", "has no '='"},
    {"unclosed quoted boundary", "multipart/form-data; boundary=\"abc", "", "not closed"},
    {"junk after a parameter", "multipart/form-data; boundary=abc def", "", "where ';' was expected"},
    {"body without the boundary", "multipart/form-data; boundary=abc", "--xyz\r\n" + kPart + "--xyz--",
     "does not contain the boundary"},
    {"empty body", "multipart/form-data; boundary=abc", "", "does not contain the boundary"},
    {"only the close delimiter", "multipart/form-data; boundary=abc", "--abc--\r\n", "has no parts"},
    {"first boundary line continues", "multipart/form-data; boundary=abc", "--abcdef\r\n" + kPart + "--abc--",
     "first boundary line is followed by unexpected bytes"},
    {"LF line endings", "multipart/form-data; boundary=abc",
     "--abc\nContent-Disposition: form-data; name=\"a\"\n\nx\n--abc--\n", "followed by unexpected bytes"},
    {"LF inside the part headers", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"a\"\nContent-Type: text/plain\r\n\r\nx\r\n--abc--",
     "control character"},
    {"truncated: no closing delimiter", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz", "without the closing boundary"},
    {"truncated after a part's delimiter", "multipart/form-data; boundary=abc", "--abc\r\n" + kPart + "--abc",
     "ends after part 1 without the closing boundary"},
    {"truncated inside the part headers", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"a\"", "headers do not end with an empty line"},
    {"a header line without ':'", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition form-data; name=\"a\"\r\n\r\nx\r\n--abc--", "header line without ':'"},
    {"a header line without a name", "multipart/form-data; boundary=abc",
     "--abc\r\n: x\r\n" + kPart + "--abc--", "header line without a name"},
    {"blank before ':'", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition : form-data; name=\"a\"\r\n\r\nx\r\n--abc--", "is not a token"},
    {"a folded header line", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nx\r\n--abc--", "folded header line"},
    {"a control character in a header value", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"a\x01\"\r\n\r\nx\r\n--abc--", "control character"},
    {"a part without Content-Disposition", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Type: text/csv\r\n\r\nx\r\n--abc--",
     "part 1 is malformed: it has no Content-Disposition"},
    {"a part without any header", "multipart/form-data; boundary=abc", "--abc\r\n\r\nx\r\n--abc--",
     "no Content-Disposition"},
    {"the second part without Content-Disposition", "multipart/form-data; boundary=abc",
     "--abc\r\n" + kPart + "--abc\r\n\r\nx\r\n--abc--", "part 2 is malformed"},
    {"Content-Disposition that is not form-data", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--abc--", "not form-data"},
    {"Content-Disposition without name", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; filename=\"a.csv\"\r\n\r\nx\r\n--abc--", "no name parameter"},
    {"Content-Disposition without parameters", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data\r\n\r\nx\r\n--abc--", "no name parameter"},
    {"name given twice", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--abc--", "name is given twice"},
    {"an unclosed quoted name", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--abc--", "not closed"},
    {"two Content-Disposition headers", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=a\r\n" + kPart + "--abc--", "two Content-Disposition"},
    {"two Content-Type headers", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Type: a/b\r\ncontent-type: c/d\r\n" + kPart + "--abc--", "two Content-Type"},
    {"filename* with an unknown charset", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=a; filename*=koi8-r''x\r\n\r\nx\r\n--abc--",
     "filename* is malformed: charset koi8-r"},
    {"filename* without charset quotes", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=a; filename*=x.csv\r\n\r\nx\r\n--abc--",
     "filename* is malformed"},
    {"filename* with a bad percent escape", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''a%4\r\n\r\nx\r\n--abc--",
     "two hex digits"},
    {"base64 transfer encoding", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Transfer-Encoding: base64\r\n" + kPart + "--abc--",
     "Content-Transfer-Encoding base64"},
    {"the boundary inside part data", "multipart/form-data; boundary=abc",
     "--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--abcdef\r\n--abc--",
     "boundary line after part 1 is followed by unexpected bytes"},
    {"junk after the close delimiter", "multipart/form-data; boundary=abc",
     "--abc\r\n" + kPart + "--abc--junk", "closing boundary is followed by unexpected bytes"},
    {"too many parts", "multipart/form-data; boundary=b", many_parts(257), "more than 256 parts"},
    {"too many headers in a part", "multipart/form-data; boundary=b", many_headers(33),
     "more than 32 headers"},
};

}  // namespace

TEST_CASE("multipart: bodies from real clients and RFC corners parse to their parts", "[multipart]") {
  for (const OkCase& c : kOkCases) {
    INFO(c.what);
    auto r = parse_multipart(c.content_type, c.body);
    REQUIRE(r.ok());
    REQUIRE(r->parts.size() == c.parts.size());
    for (std::size_t i = 0; i < c.parts.size(); ++i) {
      INFO("part " << i + 1);
      const MultipartPart& got = r->parts[i];
      const ExpectedPart& want = c.parts[i];
      CHECK(got.name == want.name);
      CHECK(got.filename == want.filename);
      CHECK(got.content_type == want.content_type);
      CHECK(std::string(got.data) == want.data);
      // data is a view into the body, not a copy
      CHECK(got.data.data() >= c.body.data());
      CHECK(got.data.data() + got.data.size() <= c.body.data() + c.body.size());
    }
  }
}

TEST_CASE("multipart: every malformed body or Content-Type is refused with a message saying why",
          "[multipart]") {
  for (const ErrorCase& c : kErrorCases) {
    INFO(c.what);
    auto r = parse_multipart(c.content_type, c.body);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains(c.message));
  }
}

TEST_CASE("multipart: the limits themselves are accepted", "[multipart]") {
  CHECK(parse_multipart("multipart/form-data; boundary=b", many_parts(256)).ok());
  CHECK(parse_multipart("multipart/form-data; boundary=b", many_headers(32)).ok());
  const std::string b70(70, 'b');
  CHECK(
      parse_multipart("multipart/form-data; boundary=" + b70, "--" + b70 + "\r\n" + kPart + "--" + b70 + "--")
          .ok());
}

TEST_CASE("multipart: headers are kept in order with lower-cased names; find() returns the first part",
          "[multipart]") {
  const std::string body =
      "--abc\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
      "--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type:  text/csv "
      "\r\n"
      "X-Custom: 1\r\n\r\nA,B\r\n"
      "--abc\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nlater\r\n--abc--";
  auto r = parse_multipart("multipart/form-data; boundary=abc", body);
  REQUIRE(r.ok());
  const MultipartPart* file = r->find("file");
  REQUIRE(file != nullptr);
  CHECK(file->data == "A,B");
  using Headers = std::vector<std::pair<std::string, std::string>>;
  CHECK(file->headers == Headers{{"content-disposition", "form-data; name=\"file\"; filename=\"a.csv\""},
                                 {"content-type", "text/csv"},
                                 {"x-custom", "1"}});
  CHECK(r->find("missing") == nullptr);
}
