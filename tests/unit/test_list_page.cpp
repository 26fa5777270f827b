// List pages read from the response text (replica/list_page.hpp) must give exactly what the DOM gives:
// stored texts as Json::dump writes them, content hashes, ids and key slot values.

#include <SQLiteCpp/Database.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <random>

#include "replica/content_hash.hpp"
#include "replica/list_page.hpp"
#include "replica/replica.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using replica::Json;
using replica::ListPage;
using replica::PageRow;
using replica::Replica;

namespace {

std::string page_of(const std::string& rows_text) {
  return R"({"data":{"headers":[{"key":"id"}],"sort":{"key":"id","type":"Ascending"},"rows":)" + rows_text +
         R"(},"tags":{},"extra":{}})";
}

std::string text_of(const PageRow& row) {
  return row.dom ? row.dom->dump() : std::string(row.text);
}

// Checks every row of `body` against the DOM's reading of the same body.
void check_like_dom(const std::string& body) {
  INFO(body);
  const ListPage page{std::string(body)};
  const Json doc = Json::parse(body);
  const Json& rows = doc.at("data").at("rows");
  REQUIRE(page.rows().size() == rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const PageRow& row = page.rows()[i];
    CHECK(text_of(row) == rows[i].dump());
    CHECK(row.hash == replica::content_hash(rows[i]));
    CHECK(row.object == rows[i].is_object());
    if (rows[i].is_object()) {
      auto id = rows[i].find("id");
      CHECK(page.record_id(row, "id") ==
            (id == rows[i].end() ? std::nullopt : replica::record_id_from_json(*id)));
    }
  }
}

// Random JSON text: Knosc's compact form, or (when `varied`) the same values spelled in the other ways JSON
// allows: whitespace, escape sequences, other number formats, repeated keys.
class Writer {
 public:
  explicit Writer(std::uint64_t seed, bool varied) : rng_(seed), varied_(varied) {}

  std::string row() {
    std::string out;
    object(out, 0, true);
    return out;
  }

 private:
  bool chance(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  void ws(std::string& out) {
    if (varied_ && chance(10)) out += std::string(" \n\t\r").substr(static_cast<std::size_t>(pick(4)), 1);
  }

  void string(std::string& out) {
    static const std::vector<std::string> plain = {
        "",     "a",           "ITEM-0001",   "Widget 5\" blue", "path/to",
        "x\\y", "tab\there",   "Caf\xc3\xa9", "\xe2\x80\x94",    "\xf0\x9f\x98\x80",
        "\x7f", "line\nbreak", "\x01"};
    const std::string& s = plain[static_cast<std::size_t>(pick(static_cast<int>(plain.size())))];
    if (!varied_ || chance(50)) {
      out += Json(s).dump();
      return;
    }
    // The same string with other escapes: \/ and \u for any character.
    out += '"';
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c == '/') {
        out += "\\/";
      } else if (c == 0xc3 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xa9) {
        out += "\\u00E9";
        ++i;
      } else if (c == 0xf0) {
        out += "\\ud83d\\ude00";
        i += 3;
      } else if (c < 0x20 || c == '"' || c == '\\') {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    }
    out += '"';
  }

  void number(std::string& out) {
    static const std::vector<std::string> compact = {"0",
                                                     "7",
                                                     "-42",
                                                     "9223372036854775807",
                                                     "-9223372036854775808",
                                                     "18446744073709551615",
                                                     "1.5",
                                                     "-0.0",
                                                     "0.1",
                                                     "1e+300",
                                                     "2.5e-08",
                                                     "123456789.125",
                                                     "1.0",
                                                     "1e-300",
                                                     "-2.75"};
    static const std::vector<std::string> other = {"-0",
                                                   "1.50",
                                                   "1E5",
                                                   "1e5",
                                                   "18446744073709551616",
                                                   "1e-400",
                                                   "0.10",
                                                   "5e-1",
                                                   "-9223372036854775809",
                                                   "1.0e0"};
    if (varied_ && chance(30)) {
      out += other[static_cast<std::size_t>(pick(static_cast<int>(other.size())))];
    } else {
      out += compact[static_cast<std::size_t>(pick(static_cast<int>(compact.size())))];
    }
  }

  void value(std::string& out, int depth) {
    const int k = depth > 2 ? pick(5) : pick(7);
    switch (k) {
      case 0:
        out += "null";
        break;
      case 1:
        out += chance(50) ? "true" : "false";
        break;
      case 2:
      case 3:
        string(out);
        break;
      case 4:
        number(out);
        break;
      case 5: {
        out += '[';
        ws(out);
        const int n = pick(4);
        for (int i = 0; i < n; ++i) {
          if (i) {
            out += ',';
            ws(out);
          }
          value(out, depth + 1);
          ws(out);
        }
        out += ']';
        break;
      }
      default:
        object(out, depth + 1, false);
    }
  }

  void object(std::string& out, int depth, bool top) {
    static const std::vector<std::string> keys = {"Item Number", "Qty", "Status",    "Notes",
                                                  "a",           "b",   "k\xc3\xa9y"};
    out += '{';
    ws(out);
    std::vector<std::string> names;
    if (top) names.push_back("id");
    const int n = pick(6);
    for (int i = 0; i < n; ++i)
      names.push_back(keys[static_cast<std::size_t>(pick(static_cast<int>(keys.size())))]);
    if (!varied_) {  // compact rows have each key once
      std::vector<std::string> unique;
      for (const auto& name : names)
        if (std::find(unique.begin(), unique.end(), name) == unique.end()) unique.push_back(name);
      names = unique;
    }
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (i) {
        out += ',';
        ws(out);
      }
      out += Json(names[i]).dump();
      ws(out);
      out += ':';
      ws(out);
      if (top && names[i] == "id") {
        out += chance(80) ? std::to_string(pick(100000)) : "\"TKT-" + std::to_string(pick(1000)) + "\"";
      } else {
        value(out, depth);
      }
      ws(out);
    }
    out += '}';
  }

  std::mt19937_64 rng_;
  bool varied_;
};

const schema::Catalog& thing_catalog() {
  static const schema::Catalog catalog = schema::Catalog::parse(R"(
[[resource]]
name = "thing"
id_type = "integer"
business_key = ["Item Number"]
module = "Things"
get_one = "data"
not_found_code = "Thing.NotFound"
delete_check = "get-one"
default_sort = { key = "Item Number", type = "Ascending" }
filterable = ["Qty", "Status", "Notes", "a", "b", "k\u00e9y"]
sortable = []
)",
                                                                "test.toml");
  return catalog;
}

// The stored rows with their hashes and key slots, as text, for comparing two replicas.
std::vector<std::string> stored(Replica& rep) {
  std::vector<std::string> out;
  SQLite::Statement q(rep.db(),
                      "SELECT id, body, body_hash, quote(k1), quote(k2), quote(k3), quote(k4), quote(k5), "
                      "quote(k6), quote(k7), quote(k8) FROM record ORDER BY resource, id");
  while (q.executeStep()) {
    std::string line;
    for (int c = 0; c < q.getColumnCount(); ++c)
      line += q.getColumn(c).getString() + "|";
    out.push_back(line);
  }
  return out;
}

}  // namespace

TEST_CASE("list page: compact rows are kept as upstream sent them, equal to what the DOM gives") {
  const std::string rows =
      R"([{"id":1,"Item Number":"ITEM-1","Qty":5,"Price":1.5,"On":true,"Off":false,"Note":null,)"
      R"("Lines":[{"a":1},[],{}],"Caf\u00e9":"x","Name":"Caf)"
      "\xc3\xa9"
      R"( \u2014"},{"id":"TKT-002","big":18446744073709551615,"neg":-9223372036854775808,"f":-0.0},7,)"
      R"("s",null,{"noid":1},{"id":""},{"id":1.5}])";
  check_like_dom(page_of(rows));
  const ListPage page{page_of(R"([{"id":1,"a":"b"},{"id":2,"c":[1,2]}])")};
  CHECK(page.dom_rows() == 0);
  CHECK(page.rows()[1].text == R"({"id":2,"c":[1,2]})");
  CHECK(page.headers() == Json::parse(R"([{"key":"id"}])"));
}

TEST_CASE("list page: rows dump would write otherwise are read through the DOM, with the same results") {
  for (const char* rows : {
           R"([{"id":1,"s":"q\"b\\s\/\b\f\n\r\t\u0001\u00e9\ud83d\ude00"}])",  // escapes
           R"([{"id":1,"n":-0},{"id":2,"n":1.50},{"id":3,"n":1E5},{"id":4,"n":18446744073709551616}])",
           R"([{"id":1,"n":1e-400},{"id":2,"n":-9223372036854775809}])",
           R"([{"id":1,"a":1,"a":2},{"id":2,"o":{"x":1,"x":[2]}}])",  // repeated keys: the last value wins
           R"([{"id":1,"a":1,"id":2}])",
       }) {
    check_like_dom(page_of(rows));
  }
  const ListPage page{page_of(R"([{"id":1,"a":1,"a":2},{"id":2}])")};
  CHECK(page.dom_rows() == 1);
}

TEST_CASE("list page: whitespace between tokens is dropped from the stored text") {
  check_like_dom(
      " { \"data\" : { \"rows\" : [ { \"id\" : 1 , \"a\" : [ 1 , { \"b\" : \"c d\" } ] } ,\n\t{ } ] } } ");
  const ListPage page{page_of("[ {\"id\": 1, \"s\": \" x \"} ]")};
  CHECK(page.dom_rows() == 0);
  CHECK(page.rows()[0].text == R"({"id":1,"s":" x "})");
}

TEST_CASE("list page: bodies that are not a list are refused as before") {
  const auto same_error = [](const std::string& body) {
    INFO(body);
    std::string expected;
    try {
      const Json parsed = Json::parse(body);
      FAIL("parsed: " << parsed.dump());
    } catch (const Json::exception& e) {
      expected = e.what();
    }
    REQUIRE_FALSE(expected.empty());
    try {
      ListPage page{std::string(body)};
      FAIL("accepted");
    } catch (const Json::exception& e) {
      CHECK(std::string(e.what()) == expected);
    }
  };
  same_error("");
  same_error(R"({"data":{"rows":[{"id":1,}]}})");
  same_error(R"({"data":{"rows":[{"id":01}]}})");
  same_error(R"({"data":{"rows":[{"id":1}]}} x)");
  same_error(R"({"data":{"rows":[{"id":"\ud800"}]}})");
  same_error(R"({"data":{"rows":[{"id":")"
             "\xc3\x28"
             R"("}]}})");
  same_error("{\"data\":{\"rows\":[{\"id\":\"a\x01\"}]}}");
  same_error(R"({"data":{"rows":[]},"other":[1,2,]})");
  same_error(R"({"data":{"rows":[{"id":1,"n":1e400}]}})");  // beyond double: Json::parse refuses it

  for (const char* body : {R"({"data":{"rows":{}}})", R"({"data":[]})", R"([1])", R"({"rows":[]})",
                           R"({"data":{"rows":[{"id":1}]},"data":{}})"}) {
    INFO(body);
    CHECK_THROWS_WITH(ListPage{std::string(body)}, "the list response has no data.rows array");
  }
}

TEST_CASE("list page: where the DOM's rules decide which rows count, the DOM reads the page") {
  // The last "data" counts; an escaped key may spell "rows".
  check_like_dom(R"({"data":{"rows":[{"id":1}]},"data":{"rows":[{"id":2}]}})");
  check_like_dom(R"({"data":{"r\u006fws":[{"id":3}],"rows":[{"id":4}]}})");
  check_like_dom(R"({"data":{"rows":[{"id":1}],"rows":[{"id":5}]}})");
  std::string deep = "[{\"id\":1,\"x\":" + std::string(300, '[') + std::string(300, ']') + "}]";
  check_like_dom(page_of(deep));
}

TEST_CASE("list page: random rows agree with the DOM, compact and otherwise") {
  for (const bool varied : {false, true}) {
    for (std::uint64_t seed = 1; seed <= 300; ++seed) {
      Writer w(seed, varied);
      std::string rows = "[";
      for (int i = 0; i < 5; ++i) {
        if (i) rows += ",";
        rows += w.row();
      }
      rows += "]";
      check_like_dom(page_of(rows));
    }
  }
}

TEST_CASE("list page: strings are read right wherever a byte that needs a look falls") {
  // Strings are read eight bytes at a time until a quote, a backslash, a control character or a byte of a
  // multi-byte character comes; put each of those at every place of strings up to 40 bytes long.
  const std::vector<std::string> specials = {
      "\\\"", "\\\\", "\\n", "\\u0001", "\xc3\xa9", "\xe2\x80\x94", "\xf0\x9f\x98\x80", "\x7f", "~", " "};
  for (const auto& special : specials) {
    std::string rows = "[";
    for (std::size_t len = 0; len <= 40; ++len) {
      for (std::size_t at = 0; at <= len; ++at) {
        std::string text(len, 'x');
        text.insert(at, special);
        if (rows.size() > 1) rows += ",";
        rows +=
            "{\"id\":" + std::to_string(rows.size()) + ",\"k" + std::to_string(len) + "\":\"" + text + "\"}";
      }
    }
    rows += "]";
    check_like_dom(page_of(rows));
  }
  // Bytes JSON refuses inside a string send the page to the DOM's parser, which refuses it, at any place.
  for (std::size_t at = 0; at < 20; ++at) {
    std::string text(19, 'y');
    text.insert(at, std::string(1, '\x01'));
    CHECK_THROWS(ListPage(page_of("[{\"id\":1,\"s\":\"" + text + "\"}]")));
    std::string bad(19, 'y');
    bad.insert(at, "\xc3");  // a lead byte without its continuation
    CHECK_THROWS(ListPage(page_of("[{\"id\":1,\"s\":\"" + bad + "\"}]")));
  }
}

TEST_CASE("list page: hashes are the DOM's for every number of rows, text rows and DOM rows mixed") {
  // Text rows are hashed four at a time; a page may end at any point of a group, and rows read through
  // the DOM (here: with an escape) fall between them.
  for (int n = 0; n <= 13; ++n) {
    for (const int dom_every : {0, 2, 3, 5}) {
      std::string rows = "[";
      for (int i = 1; i <= n; ++i) {
        if (i > 1) rows += ",";
        const bool dom = dom_every != 0 && i % dom_every == 0;
        rows += "{\"id\":" + std::to_string(i) + ",\"Item Number\":\"ITEM-" +
                std::string(static_cast<std::size_t>(i * 7), 'z') + (dom ? "\\u0041" : "") +
                "\",\"Qty\":" + std::to_string(i * 3) + ".5}";
      }
      rows += "]";
      check_like_dom(page_of(rows));
    }
  }
}

TEST_CASE("list page: repeated keys are found among many, and keys that merely look alike are not") {
  // Keys of one length that end in the same byte share a signature and are compared in full.
  check_like_dom(page_of(R"([{"id":1,"ab":1,"cb":2,"eb":3,"xy":4}])"));
  check_like_dom(page_of(R"([{"id":1,"ab":1,"cb":2,"ab":3}])"));
  check_like_dom(page_of(R"([{"id":1,"a":{"ab":1,"ab":2},"ab":3}])"));
  std::string many = "[{\"id\":1";
  for (int i = 0; i < 60; ++i)
    many += ",\"key" + std::to_string(i) + "\":" + std::to_string(i);
  check_like_dom(page_of(many + "}]"));
  check_like_dom(page_of(many + ",\"key17\":0}]"));
  const ListPage dup{page_of(R"([{"id":1,"ab":1,"cb":2,"ab":3}])")};
  CHECK(dup.dom_rows() == 1);
  const ListPage alike{page_of(R"([{"id":1,"ab":1,"cb":2,"eb":3}])")};
  CHECK(alike.dom_rows() == 0);
}

TEST_CASE("list page: a pass stores the same bodies, hashes and key slots from text as from a DOM") {
  const auto& res = thing_catalog().at("thing");
  knosc::test::TempDir dir;
  Replica from_text(dir.file("text.db"), thing_catalog(), Replica::Mode::ReadWrite);
  Replica from_dom(dir.file("dom.db"), thing_catalog(), Replica::Mode::ReadWrite);
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    Writer w(seed, seed % 2 == 0);
    std::string rows = "[";
    for (int i = 0; i < 20; ++i) {
      if (i) rows += ",";
      rows += w.row();
    }
    rows += "]";
    const std::string body = page_of(rows);
    const Json doc = Json::parse(body);
    // A page listing one id twice fails as a whole, either way.
    auto c1 = from_text.resume_or_begin_pass(res, 1000, 1000);
    auto c2 = from_dom.resume_or_begin_pass(res, 1000, 1000);
    const ListPage page{std::string(body)};
    bool text_failed = false;
    bool dom_failed = false;
    try {
      from_text.apply_page(res, c1, page, 1000);
    } catch (const SQLite::Exception&) {
      text_failed = true;
    }
    try {
      from_dom.apply_page(res, c2, doc.at("data").at("rows"), 1000);
    } catch (const SQLite::Exception&) {
      dom_failed = true;
    }
    CHECK(text_failed == dom_failed);
    CHECK(stored(from_text) == stored(from_dom));
  }
  CHECK(from_text.count(res) > 0);
}

TEST_CASE("nested parts read from a get-one body equal the DOM's") {
  const std::vector<std::string> keys = {"details", "Notes", "absent", "details"};
  const auto dom_parts = [&](const Json& record) {
    Json nested = Json::object();
    for (const auto& key : keys) {
      auto it = record.find(key);
      nested[key] = it == record.end() ? Json() : *it;
    }
    return nested;
  };
  const std::string record =
      R"({"id":1,"Notes":"n","details":[{"id":3,"Qty":1.5,"x":null,"y":[true,false]}],"z":{"a":1}})";
  for (const bool rows_object : {false, true}) {
    const std::string body =
        rows_object ? R"({"data":{"rows":)" + record + R"(},"extra":{}})" : R"({"data":)" + record + "}";
    const auto parts = replica::read_nested_parts(body, rows_object, keys);
    REQUIRE(parts);
    const Json expected = dom_parts(Json::parse(record));
    CHECK(parts->text == expected.dump());
    CHECK(parts->hash == replica::content_hash(expected));
  }
  // Left to the DOM: escapes, whitespace, repeated keys, a missing or mis-shaped record, invalid JSON.
  for (const char* body : {R"({"data":{"id":1,"Notes":"a\nb"}})", R"({"data":{"id":1, "Notes":"a"}})",
                           R"({"data":{"id":1,"Notes":"a","Notes":"b"}})", R"({"data":[]})", R"({"x":1})",
                           R"({"data":{"id":1},"data":{"id":2}})", R"({"data":{"id":1})"}) {
    INFO(body);
    CHECK_FALSE(replica::read_nested_parts(body, false, keys).has_value());
  }
}
