// The canonical parse of a change: record ids in their one spelling, strict JSON bodies of bounded depth sent
// as JSON, the upstream path rebuilt from validated segments, and requests a web page of another site made.

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "daemon/canonical_request.hpp"

namespace {

using knosc::daemon::HttpRequest;
using knosc::daemon::HttpResponse;
using knosc::schema::IdType;
using OJson = nlohmann::ordered_json;

HttpRequest post(std::string body, std::optional<std::string> content_type = "application/json") {
  HttpRequest r;
  r.method = "POST";
  r.target = r.path = "/api/inventory";
  r.body = std::move(body);
  if (content_type) r.headers.emplace_back("content-type", *content_type);
  return r;
}

}  // namespace

TEST_CASE("record ids: one canonical spelling per id", "[canonical_request]") {
  using knosc::daemon::canonical_record_id;
  struct Case {
    IdType type;
    std::string text;
    std::optional<knosc::replica::RecordId> id;
  };
  const std::vector<Case> cases = {
      {IdType::Integer, "19", std::int64_t{19}},
      {IdType::Integer, "-7", std::int64_t{-7}},  // a record created offline
      {IdType::Integer, "9223372036854775807", std::int64_t{9223372036854775807}},
      {IdType::Integer, "+19", std::nullopt},
      {IdType::Integer, "019", std::nullopt},
      {IdType::Integer, "0", std::nullopt},
      {IdType::Integer, "-0", std::nullopt},
      {IdType::Integer, "36 ", std::nullopt},
      {IdType::Integer, " 70", std::nullopt},
      {IdType::Integer, "19\t", std::nullopt},
      {IdType::Integer, "0x13", std::nullopt},
      {IdType::Integer, "1e1", std::nullopt},
      {IdType::Integer, "19.0", std::nullopt},
      {IdType::Integer, "--1", std::nullopt},
      {IdType::Integer, "-", std::nullopt},
      {IdType::Integer, "", std::nullopt},
      {IdType::Integer, "9223372036854775808", std::nullopt},  // past int64: never wraps around
      {IdType::Integer, "１９", std::nullopt},                 // full-width digits
      {IdType::String, "TKT-001", std::string("TKT-001")},
      {IdType::String, "local-3", std::string("local-3")},
      {IdType::String, "TKT 001", std::nullopt},
      {IdType::String, "TKT/001", std::nullopt},
      {IdType::String, "TKT%2F001", std::nullopt},
      {IdType::String, "..", std::nullopt},
      {IdType::String, ".", std::nullopt},
      {IdType::String, "", std::nullopt},
      {IdType::String, std::string(65, 'A'), std::nullopt},
      {IdType::String, "TKT-\xc3\xa9", std::nullopt},
      {IdType::String, std::string("TKT\0", 4), std::nullopt},
  };
  for (const auto& c : cases) {
    INFO("id text '" << c.text << "'");
    CHECK(canonical_record_id(c.type, c.text) == c.id);
  }
}

TEST_CASE("JSON bodies: strict JSON of bounded depth, sent as JSON", "[canonical_request]") {
  using knosc::daemon::json_body;
  using knosc::daemon::kMaxJsonDepth;

  const auto ok = [](const HttpRequest& r, bool required = true) {
    auto b = json_body(r, required);
    REQUIRE(std::holds_alternative<OJson>(b));
    return std::get<OJson>(b);
  };
  const auto refused = [](const HttpRequest& r, bool required = true) {
    auto b = json_body(r, required);
    REQUIRE(std::holds_alternative<HttpResponse>(b));
    const auto& resp = std::get<HttpResponse>(b);
    CHECK(resp.status == 400);
    return OJson::parse(resp.body);
  };

  CHECK(ok(post(R"({"Warehouse Number":"WH-01","Inventory Quantity":7})")) ==
        OJson{{"Warehouse Number", "WH-01"}, {"Inventory Quantity", 7}});
  CHECK(ok(post("{}", "Application/JSON; charset=utf-8")) == OJson::object());
  // Duplicate keys: the last one counts, and the parsed body (one key) is what is checked and sent.
  CHECK(ok(post(R"({"Warehouse Number":"WH-02","Warehouse Number":"WH-01"})")) ==
        OJson{{"Warehouse Number", "WH-01"}});
  // A DELETE may come without a body.
  CHECK(ok(post("", std::nullopt), false).is_null());

  for (const std::string bad : {
           R"({"Warehouse Number":"WH-02","zzz":NaN})",
           R"({"a":Infinity})",
           R"({"a":1,})",
           R"({"a":1} trailing)",
           "{\"a\":\"\xff\"}",
           "{\"a\":1 /* comment */}",
           "{'a':1}",
           "",
       }) {
    INFO(bad);
    CHECK(refused(post(bad)) == OJson{{"Message", "Bad Request Format"}, {"Code", "JSON.Invalid"}});
  }

  const std::string deep_ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  CHECK(ok(post(deep_ok)).is_array());
  const std::string too_deep = std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  CHECK(refused(post(too_deep))["Code"] == "JSON.Invalid");
  CHECK(refused(post(std::string(100000, '[')))["Code"] == "JSON.Invalid");

  // A web page may post text/plain (or a form) across sites without asking; never JSON.
  for (const std::optional<std::string>& type :
       {std::optional<std::string>(), std::optional<std::string>("text/plain"),
        std::optional<std::string>("application/x-www-form-urlencoded"),
        std::optional<std::string>("multipart/form-data; boundary=x"),
        std::optional<std::string>("application/jsonx"), std::optional<std::string>("text/json")}) {
    INFO(type.value_or("(none)"));
    const auto body = refused(post(R"({"username":"a","password":"b"})", type));
    CHECK(body["Code"] == "JSON.Invalid");
    CHECK(body["Message"].get<std::string>().find("Content-Type: application/json") != std::string::npos);
  }
}

TEST_CASE("cross-site requests: refused by Origin or Sec-Fetch-Site", "[canonical_request]") {
  using knosc::daemon::cross_site_refusal;
  struct Case {
    std::vector<std::pair<std::string, std::string>> headers;
    bool refused;
  };
  const std::vector<Case> cases = {
      {{}, false},  // a tool: curl, Python, a scheduled script
      {{{"origin", "http://127.0.0.1:8470"}}, false},
      {{{"origin", "http://localhost:3000"}, {"sec-fetch-site", "same-site"}}, false},
      {{{"origin", "http://[::1]:8470"}}, false},
      {{{"sec-fetch-site", "same-origin"}}, false},
      {{{"sec-fetch-site", "none"}}, false},  // typed in the address bar
      {{{"origin", "https://evil.example"}}, true},
      {{{"origin", "http://127.0.0.1.evil.example"}}, true},
      {{{"origin", "null"}}, true},
      {{{"origin", "file://"}}, true},
      {{{"origin", "http://localhost:3000/path"}}, true},
      {{{"sec-fetch-site", "cross-site"}}, true},
      {{{"sec-fetch-site", "Cross-Site"}, {"origin", "http://127.0.0.1:8470"}}, true},
  };
  for (const auto& c : cases) {
    HttpRequest r = post("{}");
    r.headers.insert(r.headers.end(), c.headers.begin(), c.headers.end());
    INFO((c.headers.empty() ? "(no headers)" : c.headers.front().second));
    const auto refusal = cross_site_refusal(r);
    REQUIRE(refusal.has_value() == c.refused);
    if (refusal) {
      CHECK(refusal->status == 403);
      CHECK(OJson::parse(refusal->body)["Code"] == "Request.CrossSite");
    }
  }
}

TEST_CASE("upstream paths are rebuilt from validated segments", "[canonical_request]") {
  using knosc::daemon::upstream_path;
  CHECK(upstream_path({"inventory", "19"}) == "/inventory/19");
  CHECK(upstream_path({"issue-tracker-tickets", "TKT-001", "subscribers"}) ==
        "/issue-tracker-tickets/TKT-001/subscribers");
  // Nothing a segment holds can become a separator, a dot segment, a query or a fragment upstream.
  CHECK(upstream_path({"a/b"}) == "/a%2Fb");
  CHECK(upstream_path({"c?d#e"}) == "/c%3Fd%23e");
  CHECK(upstream_path({"f g"}) == "/f%20g");
  CHECK(upstream_path({"%2F"}) == "/%252F");
  CHECK(upstream_path({"\xc3\xa9"}) == "/%C3%A9");
  // Segments that name no resource are a caller's bug, never sent.
  for (const std::string bad : {"", ".", ".."})
    CHECK_THROWS_AS(upstream_path({"inventory", bad}), std::invalid_argument);
}
