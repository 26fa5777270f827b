#include <SQLiteCpp/Database.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>

#include "replica/key_slots.hpp"
#include "replica/list_query.hpp"
#include "replica/replica.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using replica::Json;
using replica::Replica;

namespace {

using Query = std::map<std::string, std::string>;

// A fresh directory per test, removed afterwards.
using knosc::test::TempDir;

const schema::Resource& resource(const char* name) {
  return schema::Catalog::builtin().at(name);
}

// Mirrors `rows` as one complete pull pass, as the puller would.
void load(Replica& rep, const schema::Resource& res, const std::vector<Json>& rows, std::int64_t now = 1000) {
  Json page = Json::array();
  for (const auto& r : rows)
    page.push_back(r);
  auto cursor = rep.resume_or_begin_pass(res, static_cast<int>(rows.size()) + 1, now);
  REQUIRE(rep.apply_page(res, cursor, page, now).pass_complete);
}

replica::ListParams params(const Query& q) {
  auto p = replica::parse_list_params(q);
  if (!p) FAIL("unexpected parse error: " << p.error().message);
  return p.value();
}

// Warehouses WH-01 and WH-02 are active, WH-03 is inactive.
std::vector<Json> warehouses(const char* wh03_status = "Inactive") {
  return {
      Json{{"id", 1},
           {"Warehouse Number", "WH-01"},
           {"Warehouse Name", "North"},
           {"Warehouse Status", "Active"}},
      Json{{"id", 2},
           {"Warehouse Number", "WH-02"},
           {"Warehouse Name", "South"},
           {"Warehouse Status", "Active"}},
      Json{{"id", 3},
           {"Warehouse Number", "WH-03"},
           {"Warehouse Name", "Old"},
           {"Warehouse Status", wh03_status}},
  };
}

// Purchase orders shaped to exercise every rule. Row 3 is in the inactive warehouse; row 5 has a null order
// date and row 6 none; row 8 has neither supplier nor warehouse; quantities mix integers, a float and a
// numeric string; "Rush" mixes a boolean and the number 1.
std::vector<Json> purchase_orders() {
  return {
      Json::parse(R"({"id": 1, "PO List Number": "PO-1", "PO List Document Status": "Open",
          "PO List Order Date": "2024-01-05", "Supplier Number": "S1", "Warehouse Number": "WH-01",
          "PO Total Quantity": 10, "Rush": true})"),
      Json::parse(R"({"id": 2, "PO List Number": "PO-2", "PO List Document Status": "Closed",
          "PO List Order Date": "2024-01-05", "Supplier Number": "S2", "Warehouse Number": "WH-02",
          "PO Total Quantity": 20, "Rush": 1})"),
      Json::parse(R"({"id": 3, "PO List Number": "PO-3", "PO List Document Status": "Open",
          "PO List Order Date": "2024-02-10", "Supplier Number": "S1", "Warehouse Number": "WH-03",
          "PO Total Quantity": 30})"),
      Json::parse(R"({"id": 4, "PO List Number": "PO-4", "PO List Document Status": "Received",
          "PO List Order Date": "2024-03-01", "Supplier Number": "S3", "Warehouse Number": "WH-01",
          "PO Total Quantity": "40"})"),
      Json::parse(R"({"id": 5, "PO List Number": "PO-5", "PO List Document Status": "Open",
          "PO List Order Date": null, "Supplier Number": "S2", "Warehouse Number": "WH-02",
          "PO Total Quantity": 5})"),
      Json::parse(R"({"id": 6, "PO List Number": "PO-6", "PO List Document Status": "Open",
          "Supplier Number": "S3", "Warehouse Number": "WH-01", "PO Total Quantity": 1.0})"),
      Json::parse(R"({"id": 7, "PO List Number": "PO-7", "PO List Document Status": "Closed",
          "PO List Order Date": "2024-03-01T10:00:00", "Supplier Number": "S1", "Warehouse Number": "WH-02",
          "PO Total Quantity": 7})"),
      Json::parse(R"({"id": 8, "PO List Number": "PO-8", "PO List Document Status": "Open",
          "PO List Order Date": "2024-01-05", "PO Total Quantity": 8})"),
  };
}

struct ListFixture {
  TempDir dir;
  Replica rep{dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite};
  const schema::Resource& po = resource("purchase-order");
  const schema::Resource& wm = resource("warehouse-master");

  ListFixture() {
    load(rep, wm, warehouses());
    load(rep, po, purchase_orders());
  }

  std::vector<std::int64_t> ids(const schema::Resource& res, const Query& q,
                                const replica::ListScope& scope = {}) {
    std::vector<std::int64_t> out;
    for (const auto& row : replica::run_list(rep.db(), res, params(q), scope).rows)
      out.push_back(row.at("id").get<std::int64_t>());
    return out;
  }
  std::vector<std::int64_t> ids(const Query& q, const replica::ListScope& scope = {}) {
    return ids(po, q, scope);
  }
  std::int64_t count(const Query& q, const replica::ListScope& scope = {}) {
    return replica::count_list(rep.db(), po, params(q), scope);
  }
};

using Ids = std::vector<std::int64_t>;

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------------

TEST_CASE("list query: parameters and their defaults", "[list_query]") {
  auto p = params({});
  CHECK(p.page == 1);
  CHECK(p.page_size == 50);
  CHECK(p.offset() == 0);
  CHECK(p.conditions.empty());
  CHECK_FALSE(p.sort.has_value());

  p = params({{"page", " 3 "}, {"page_size", "+20"}, {"unrelated", "x"}});
  CHECK(p.page == 3);
  CHECK(p.page_size == 20);
  CHECK(p.offset() == 40);

  CHECK(params({{"page", ""}, {"page_size", ""}}).page_size == 50);  // empty means not given
  CHECK(params({{"page_size", "1000"}}).page_size == 1000);
  CHECK(params({{"page_size", "5000"}}).page_size == 1000);  // clamped, not refused
  CHECK(params({{"page", "007"}}).page == 7);

  // Absurd pages are valid and empty; the offset saturates instead of overflowing.
  p = params({{"page", "99999999999999999999999"}, {"page_size", "99999999999999999999"}});
  CHECK(p.page == std::numeric_limits<std::int64_t>::max());
  CHECK(p.page_size == 1000);
  CHECK(p.offset() == std::numeric_limits<std::int64_t>::max());

  // JSON null is the same as not giving the parameter.
  CHECK(params({{"filter", "null"}, {"search", "null"}, {"sort", "null"}}).conditions.empty());
}

TEST_CASE("list query: filter, search and sort keep values and their JSON types", "[list_query]") {
  auto p =
      params({{"filter", R"({"Status": "Open", "Qty": 5, "Flag": true, "Gone": null,
                                  "Any": ["a", 1, 2.5], "Date": {"from": "2024-01-01"}, "N": {"from": 1, "to": 9}})"},
              {"search", R"({"filters": {"include": {"Wh": ["WH-01"]}, "exclude": {"Type": ["X", 3]}}})"},
              {"sort", R"({"key": "Date", "type": "Descending"})"}});
  REQUIRE(p.conditions.size() == 9);
  // Filter keys keep the request's order; search's include, then exclude, follow.
  CHECK(p.conditions[0].key == "Status");
  const auto& status = std::get<replica::AnyOf>(p.conditions[0].test).values;
  REQUIRE(status.size() == 1);
  CHECK(status[0].is_string());
  CHECK(std::get<replica::AnyOf>(p.conditions[1].test).values[0].is_number_integer());
  CHECK(std::get<replica::AnyOf>(p.conditions[2].test).values[0].is_boolean());
  CHECK(std::get<replica::AnyOf>(p.conditions[3].test).values[0].is_null());
  const auto& any = std::get<replica::AnyOf>(p.conditions[4].test).values;
  REQUIRE(any.size() == 3);
  CHECK(any[0] == "a");
  CHECK(any[1].is_number_integer());
  CHECK(any[2].is_number_float());
  const auto& date = std::get<replica::Range>(p.conditions[5].test);
  CHECK(date.from == nlohmann::json("2024-01-01"));
  CHECK_FALSE(date.to.has_value());
  const auto& n = std::get<replica::Range>(p.conditions[6].test);
  CHECK(n.from == nlohmann::json(1));
  CHECK(n.to == nlohmann::json(9));
  CHECK(p.conditions[7].key == "Wh");
  CHECK_FALSE(p.conditions[7].exclude);
  CHECK(p.conditions[8].key == "Type");
  CHECK(p.conditions[8].exclude);
  REQUIRE(p.sort.has_value());
  CHECK(p.sort->key == "Date");
  CHECK(p.sort->descending);
  CHECK(p.names_key("Wh"));
  CHECK(p.names_key("Type"));
  CHECK_FALSE(p.names_key("Warehouse Status"));

  CHECK_FALSE(params({{"sort", R"({"key": "K"})"}}).sort->descending);  // type defaults to Ascending
  CHECK(params({{"filter", R"({"K": {"from": null, "to": "2024"}})"}}).conditions.size() == 1);
  CHECK(params({{"filter", R"({"Key with spaces & 'quotes' [0].x": 1})"}}).conditions[0].key ==
        "Key with spaces & 'quotes' [0].x");
  CHECK(params({{"search", R"({"filters": {}})"}}).conditions.empty());
}

TEST_CASE("list query: every malformed request is a 400 JSON.Invalid naming what is wrong", "[list_query]") {
  const std::vector<std::pair<Query, std::string>> cases = {
      {{{"page", "abc"}}, "Invalid value for 'page': 'abc' is not a positive integer."},
      {{{"page", "1.5"}}, "Invalid value for 'page': '1.5' is not a positive integer."},
      {{{"page", "-"}}, "Invalid value for 'page': '-' is not a positive integer."},
      {{{"page", "0"}}, "Invalid value for 'page': must be a positive integer, got 0."},
      {{{"page", "-2"}}, "Invalid value for 'page': must be a positive integer, got -2."},
      {{{"page", "-0"}}, "Invalid value for 'page': must be a positive integer, got 0."},
      {{{"page_size", "ten"}}, "Invalid value for 'page_size': 'ten' is not a positive integer."},
      {{{"page_size", "0"}}, "Invalid value for 'page_size': must be a positive integer, got 0."},
      {{{"page_size", "-50"}}, "Invalid value for 'page_size': must be a positive integer, got -50."},
      {{{"filter", "{\"a\": "}}, "Bad Request Format"},
      {{{"filter", "{'a': 1}"}}, "Bad Request Format"},
      {{{"filter", "[1]"}}, "'filter' must be a JSON object keyed by column key."},
      {{{"filter", "\"Open\""}}, "'filter' must be a JSON object keyed by column key."},
      {{{"filter", R"({"D": {}})"}},
       R"(Filter on 'D' must be a value, an array of values or {"from": ..., "to": ...}.)"},
      {{{"filter", R"({"D": {"from": "a", "until": "b"}})"}},
       R"(Filter on 'D' must be a value, an array of values or {"from": ..., "to": ...}.)"},
      {{{"filter", R"({"D": {"from": true}})"}},
       "Filter range 'from' of 'D' must be a date string or a number."},
      {{{"filter", R"({"D": {"to": ["2024"]}})"}},
       "Filter range 'to' of 'D' must be a date string or a number."},
      {{{"filter", R"({"K": [1, [2]]})"}}, "Filter values of 'K' must be scalars."},
      {{{"filter", R"({"K": [{"a": 1}]})"}}, "Filter values of 'K' must be scalars."},
      {{{"filter", R"({"a\"b": 1})"}},
       R"(Filter key 'a"b' is not supported: column keys cannot contain '"'.)"},
      {{{"search", "{filters}"}}, "Bad Request Format"},
      {{{"search", "[]"}}, R"('search' must be {"filters": {"include": {...}, "exclude": {...}}}.)"},
      {{{"search", R"({"filters": 1})"}},
       R"('search' must be {"filters": {"include": {...}, "exclude": {...}}}.)"},
      {{{"search", R"({"include": {}})"}},
       R"('search' must be {"filters": {"include": {...}, "exclude": {...}}}.)"},
      {{{"search", R"({"filters": {"include": {}, "other": {}, "abc": 1}})"}},
       "'search.filters' takes only 'include' and 'exclude', not abc, other."},
      {{{"search", R"({"filters": {"include": []}})"}},
       "'search.filters.include' must be an object of column key -> array of values."},
      {{{"search", R"({"filters": {"exclude": {"K": "v"}}})"}},
       "'search.filters.exclude.K' must be an array of values."},
      {{{"search", R"({"filters": {"include": {"K": [{}]}}})"}},
       "'search.filters.include.K' must be an array of values."},
      {{{"search", R"({"filters": {"include": {"a\"b": ["v"]}}})"}},
       R"(Search key 'a"b' is not supported: column keys cannot contain '"'.)"},
      {{{"sort", "{"}}, "Bad Request Format"},
      {{{"sort", R"({"type": "Ascending"})"}},
       R"('sort' must be {"key": "<column key>", "type": "Ascending"|"Descending"}.)"},
      {{{"sort", R"({"key": ""})"}},
       R"('sort' must be {"key": "<column key>", "type": "Ascending"|"Descending"}.)"},
      {{{"sort", R"({"key": 5})"}},
       R"('sort' must be {"key": "<column key>", "type": "Ascending"|"Descending"}.)"},
      {{{"sort", R"(["K", "Ascending"])"}},
       R"('sort' must be {"key": "<column key>", "type": "Ascending"|"Descending"}.)"},
      {{{"sort", R"({"key": "K", "type": "asc"})"}},
       R"('sort.type' must be "Ascending" or "Descending", got 'asc'.)"},
      {{{"sort", R"({"key": "K", "type": null})"}},
       R"('sort.type' must be "Ascending" or "Descending", got null.)"},
      {{{"sort", R"({"key": "a\"b"})"}},
       R"(Sort key 'a"b' is not supported: column keys cannot contain '"'.)"},
      // The first bad parameter answers, in the order page, page_size, filter, search, sort.
      {{{"page", "x"}, {"filter", "{"}}, "Invalid value for 'page': 'x' is not a positive integer."},
      {{{"filter", "[]"}, {"sort", "{"}}, "'filter' must be a JSON object keyed by column key."},
  };
  for (const auto& [query, message] : cases) {
    INFO(query.begin()->first << "=" << query.begin()->second);
    auto r = replica::parse_list_params(query);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().status == 400);
    CHECK(r.error().code == "JSON.Invalid");
    CHECK(r.error().message == message);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running lists
// ---------------------------------------------------------------------------------------------------------

TEST_CASE("list query: default sort, nulls first ascending and last descending, ties by id", "[list_query]") {
  ListFixture f;
  // PO List Order Date ascending: null (5) and absent (6) first, the 2024-01-05 tie in id order, row 3 of
  // the inactive warehouse left out.
  CHECK(f.ids({}) == Ids{5, 6, 1, 2, 8, 4, 7});
  CHECK(f.ids({{"sort", R"({"key": "PO List Order Date", "type": "Descending"})"}}) ==
        Ids{7, 4, 1, 2, 8, 5, 6});
  CHECK(f.ids({{"sort", R"({"key": "id", "type": "Descending"})"}}) == Ids{8, 7, 6, 5, 4, 2, 1});
  CHECK(f.ids({{"sort", R"({"key": "id", "type": "Ascending"})"}}) == Ids{1, 2, 4, 5, 6, 7, 8});
  // Ties keep id order in both directions; the row without a supplier is last when descending.
  CHECK(f.ids({{"sort", R"({"key": "Supplier Number", "type": "Descending"})"}}) == Ids{4, 6, 2, 5, 1, 7, 8});
  CHECK(f.ids({{"sort", R"({"key": "Supplier Number"})"}}) == Ids{8, 1, 7, 2, 5, 4, 6});
  // Numbers (1.0 among integers) sort before strings.
  CHECK(f.ids({{"sort", R"({"key": "PO Total Quantity"})"}}) == Ids{6, 5, 7, 8, 1, 2, 4});
  // A key no row has: every row ties, so the order is by id either way.
  CHECK(f.ids({{"sort", R"({"key": "Nope", "type": "Descending"})"}}) == Ids{1, 2, 4, 5, 6, 7, 8});

  auto r = replica::run_list(f.rep.db(), f.po, params({}), {});
  CHECK(r.sort.key == "PO List Order Date");
  CHECK_FALSE(r.sort.descending);
}

TEST_CASE("list query: rows come back as stored, upstream key order kept", "[list_query]") {
  ListFixture f;
  auto r = replica::run_list(f.rep.db(), f.po, params({{"filter", R"({"PO List Number": "PO-6"})"}}), {});
  REQUIRE(r.rows.size() == 1);
  CHECK(r.rows[0].dump() == purchase_orders()[5].dump());
  CHECK(r.rows[0].begin().key() == "id");
}

TEST_CASE("list query: paging is stable and page_size is clamped", "[list_query]") {
  ListFixture f;
  const Ids all = f.ids({});
  Ids paged;
  for (int page = 1; page <= 4; ++page) {
    auto ids = f.ids({{"page", std::to_string(page)}, {"page_size", "3"}});
    CHECK(ids.size() == (page < 3 ? 3u : page == 3 ? 1u : 0u));
    paged.insert(paged.end(), ids.begin(), ids.end());
  }
  CHECK(paged == all);
  // Descending pages too.
  Ids desc;
  for (int page = 1; page <= 3; ++page) {
    auto ids = f.ids({{"page", std::to_string(page)},
                      {"page_size", "2"},
                      {"sort", R"({"key": "PO List Order Date", "type": "Descending"})"}});
    desc.insert(desc.end(), ids.begin(), ids.end());
  }
  CHECK(desc == Ids{7, 4, 1, 2, 8, 5});
  CHECK(f.ids({{"page_size", "100000"}}) == all);
  CHECK(f.ids({{"page", "99999999999999999999"}}).empty());
}

TEST_CASE("list query: filter forms, ANDed across keys", "[list_query]") {
  ListFixture f;
  SECTION("scalar") {
    CHECK(f.ids({{"filter", R"({"PO List Document Status": "Open"})"}}) == Ids{5, 6, 1, 8});
    CHECK(f.ids({{"filter", R"({"PO List Document Status": "open"})"}}).empty());  // exact, case included
  }
  SECTION("array: any of") {
    CHECK(f.ids({{"filter", R"({"PO List Document Status": ["Closed", "Received"]})"}}) == Ids{2, 4, 7});
    CHECK(f.ids({{"filter", R"({"PO List Document Status": []})"}}).empty());
  }
  SECTION("date range, both ends inclusive, either end optional") {
    CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": "2024-01-05", "to": "2024-02-28"}})"}}) ==
          Ids{1, 2, 8});
    CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": "2024-03-01"}})"}}) == Ids{4, 7});
    // "to" covers its whole day: the timestamp of 2024-03-01 is inside.
    CHECK(f.ids({{"filter", R"({"PO List Order Date": {"to": "2024-03-01"}})"}}) == Ids{1, 2, 8, 4, 7});
    CHECK(f.ids({{"filter", R"({"PO List Order Date": {"to": "2024-02-29"}})"}}) == Ids{1, 2, 8});
    CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": "2025-01-01"}})"}}).empty());
    CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": null, "to": null}})"}}) == Ids{1, 2, 8, 4, 7});
  }
  SECTION("number range: numbers only") {
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": {"from": 5, "to": 20}})"}}) == Ids{5, 1, 2, 8, 7});
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": {"from": 9.5}})"}}) == Ids{1, 2});  // "40" is a string
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": {"to": 1}})"}}) == Ids{6});
    CHECK(f.ids({{"filter", R"({"Rush": {"from": 0, "to": 1}})"}}) == Ids{2});  // true is not a number
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": {"from": 1, "to": "2024"}})"}}).empty());
  }
  SECTION("numbers match numbers, strings strings, booleans booleans") {
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": 10})"}}) == Ids{1});
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": 10.0})"}}) == Ids{1});
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": 1})"}}) == Ids{6});  // stored as 1.0
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": "40"})"}}) == Ids{4});
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": 40})"}}).empty());
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": "10"})"}}).empty());
    CHECK(f.ids({{"filter", R"({"PO List Number": 1})"}}).empty());
    CHECK(f.ids({{"filter", R"({"Rush": true})"}}) == Ids{1});
    CHECK(f.ids({{"filter", R"({"Rush": 1})"}}) == Ids{2});
    CHECK(f.ids({{"filter", R"({"Rush": [true, 1]})"}}) == Ids{1, 2});
    CHECK(f.ids({{"filter", R"({"Rush": false})"}}).empty());
    CHECK(f.ids({{"filter", R"({"PO Total Quantity": ["40", 5, 7]})"}}) == Ids{5, 4, 7});
    CHECK(f.ids({{"filter", R"({"id": 4})"}}) == Ids{4});
    CHECK(f.ids({{"filter", R"({"id": "4"})"}}).empty());
  }
  SECTION("null matches a stored null, not a missing key") {
    CHECK(f.ids({{"filter", R"({"PO List Order Date": [null]})"}}) == Ids{5});
  }
  SECTION("keys AND together") {
    CHECK(f.ids({{"filter", R"({"PO List Document Status": "Open", "Supplier Number": "S2"})"}}) == Ids{5});
    CHECK(f.ids({{"filter", R"({"PO List Document Status": "Open", "Supplier Number": "S9"})"}}).empty());
  }
  SECTION("a key no row has matches nothing") {
    CHECK(f.ids({{"filter", R"({"Nope": "x"})"}}).empty());
    CHECK(f.ids({{"filter", R"({"Nope": {"from": "2024-01-01"}})"}}).empty());
    CHECK(f.count({{"filter", R"({"Nope": ["x", 1, null, true]})"}}) == 0);
  }
}

TEST_CASE("list query: search include and exclude", "[list_query]") {
  ListFixture f;
  const auto search = [&](const char* json) { return f.ids({{"search", json}}); };
  CHECK(search(R"({"filters": {"include": {"Supplier Number": ["S1"]}}})") == Ids{1, 7});
  CHECK(search(R"({"filters": {"include": {"Supplier Number": ["S1", "S3"]}}})") == Ids{6, 1, 4, 7});
  // Rows without the key stay when excluding.
  CHECK(search(R"({"filters": {"exclude": {"Supplier Number": ["S1", "S2"]}}})") == Ids{6, 8, 4});
  CHECK(search(R"({"filters": {"exclude": {"PO List Document Status": ["Open"]}}})") == Ids{2, 4, 7});
  CHECK(search(R"({"filters": {"exclude": {"Nope": ["x"]}}})") == f.ids({}));
  CHECK(search(R"({"filters": {"exclude": {"PO List Order Date": [null]}}})") == Ids{6, 1, 2, 8, 4, 7});
  CHECK(search(R"({"filters": {"include": {"PO List Document Status": ["Open", "Closed"]},
                                 "exclude": {"Supplier Number": ["S2"]}}})") == Ids{6, 1, 8, 7});
  // Filter and search AND together.
  CHECK(f.ids({{"filter", R"({"PO List Document Status": "Open"})"},
               {"search", R"({"filters": {"exclude": {"Supplier Number": ["S3"]}}})"}}) == Ids{5, 1, 8});
  CHECK(search(R"({"filters": {"include": {"Supplier Number": []}}})").empty());
}

TEST_CASE("list query: inactive warehouses are hidden unless the request names Warehouse Status",
          "[list_query]") {
  ListFixture f;
  CHECK(f.count({}) == 7);
  CHECK(f.ids({{"filter", R"({"Warehouse Status": "Inactive"})"}}) == Ids{3});
  CHECK(f.count({{"filter", R"({"Warehouse Status": "Inactive"})"}}) == 1);
  // Naming it shows every row whose warehouse has one of the statuses; row 8 has no warehouse.
  CHECK(f.ids({{"filter", R"({"Warehouse Status": ["Active", "Inactive"]})"}}) == Ids{5, 6, 1, 2, 3, 4, 7});
  CHECK(f.ids({{"search", R"({"filters": {"include": {"Warehouse Status": ["Inactive", "Active"]}}})"}})
            .size() == 7);
  CHECK(f.ids({{"search", R"({"filters": {"exclude": {"Warehouse Status": ["Active"]}}})"}}) == Ids{8, 3});
  CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": "2024-02-01", "to": "2024-02-28"}})"}}).empty());
  CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": "2024-02-01", "to": "2024-02-28"},
                               "Warehouse Status": ["Active", "Inactive"]})"}}) == Ids{3});
  // Sorting by the virtual column: Inactive above Active when descending; ties by id.
  CHECK(f.ids({{"filter", R"({"Warehouse Status": ["Active", "Inactive"]})"},
               {"sort", R"({"key": "Warehouse Status", "type": "Descending"})"}}) ==
        Ids{3, 1, 2, 4, 5, 6, 7});

  SECTION("the warehouse-master list applies its own status") {
    auto wh_ids = [&](const Query& q) { return f.ids(f.wm, q); };
    CHECK(wh_ids({}) == Ids{1, 2});
    CHECK(wh_ids({{"filter", R"({"Warehouse Status": "Inactive"})"}}) == Ids{3});
    CHECK(wh_ids({{"search", R"({"filters": {"exclude": {"Warehouse Status": ["Active"]}}})"}}) == Ids{3});
  }
  SECTION("a warehouse made active again shows its rows") {
    load(f.rep, f.wm, warehouses("Active"), 2000);
    CHECK(f.ids({}) == Ids{5, 6, 1, 2, 8, 3, 4, 7});
  }
  SECTION("lists that are not warehouse scoped are not affected") {
    const auto& asn = resource("asn");
    load(f.rep, asn,
         {Json{{"id", 1}, {"ASN Number", "ASN-1"}, {"Warehouse Number", "WH-03"}},
          Json{{"id", 2}, {"ASN Number", "ASN-2"}, {"Warehouse Number", "WH-01"}}});
    CHECK(f.ids(asn, {}) == Ids{1, 2});
  }
}

TEST_CASE("list query: granular filters restrict rows that have the column", "[list_query]") {
  ListFixture f;
  replica::ListScope scope;
  SECTION("include") {
    scope.granular.push_back({"Supplier Number", true, {"S1", "S2"}});
    // Rows 4 and 6 (S3) are out; row 8 has no supplier and is not restricted.
    CHECK(f.ids({}, scope) == Ids{5, 1, 2, 8, 7});
    CHECK(f.count({}, scope) == 5);
    CHECK(f.ids({{"filter", R"({"PO List Document Status": "Open"})"}}, scope) == Ids{5, 1, 8});
  }
  SECTION("exclude") {
    scope.granular.push_back({"PO List Document Status", false, {"Closed"}});
    CHECK(f.ids({}, scope) == Ids{5, 6, 1, 8, 4});
  }
  SECTION("several filters all apply") {
    scope.granular.push_back({"Supplier Number", true, {"S1", "S2"}});
    scope.granular.push_back({"PO List Document Status", false, {"Closed"}});
    CHECK(f.ids({}, scope) == Ids{5, 1, 8});
  }
  SECTION("typed values; a null value is not restricted") {
    scope.granular.push_back({"PO Total Quantity", true, {10, "40"}});
    CHECK(f.ids({}, scope) == Ids{1, 4});
    scope.granular = {{"PO List Order Date", true, {"2024-03-01"}}};
    CHECK(f.ids({}, scope) == Ids{5, 6, 4});
  }
  SECTION("a column no row has restricts nothing") {
    scope.granular.push_back({"Region", true, {"EU"}});
    CHECK(f.ids({}, scope) == f.ids({}));
  }
  SECTION("an empty include list leaves only rows without the column") {
    scope.granular.push_back({"Supplier Number", true, {}});
    CHECK(f.ids({}, scope) == Ids{8});
  }
  SECTION("a column that cannot be named is refused, not ignored") {
    scope.granular.push_back({"a\"b", true, {"x"}});
    CHECK_THROWS_AS(replica::build_list_sql(f.po, params({}), scope), std::invalid_argument);
  }
}

TEST_CASE("list query: count_list counts what the pages list", "[list_query]") {
  ListFixture f;
  const std::vector<Query> queries = {
      {},
      {{"filter", R"({"PO List Document Status": "Open"})"}},
      {{"filter", R"({"Warehouse Status": "Inactive"})"}},
      {{"search", R"({"filters": {"exclude": {"Supplier Number": ["S1"]}}})"}},
      {{"filter", R"({"Nope": 1})"}},
  };
  for (const auto& q : queries) {
    Query all = q;
    all["page_size"] = "1000";
    CHECK(f.count(q) == static_cast<std::int64_t>(f.ids(all).size()));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Indexes
// ---------------------------------------------------------------------------------------------------------

namespace {

bool plan_has(const std::vector<std::string>& plan, const std::string& text) {
  return std::any_of(plan.begin(), plan.end(),
                     [&](const std::string& s) { return s.find(text) != std::string::npos; });
}

std::string joined(const std::vector<std::string>& plan) {
  std::string out;
  for (const auto& s : plan)
    out += s + "\n";
  return out;
}

}  // namespace

namespace {

// The slot index of `key` of `resource` in the built-in catalog.
std::string slot_index(const char* resource, const char* key) {
  const auto& res = schema::Catalog::builtin().at(resource);
  const auto slot = replica::slot_of(res, key);
  REQUIRE(slot.has_value());
  return replica::slot_index(res, *slot);
}

std::string slot_column(const char* resource, const char* key) {
  return replica::slot_column(*replica::slot_of(schema::Catalog::builtin().at(resource), key));
}

}  // namespace

TEST_CASE("list query: equality filters and sorts use the key slot indexes", "[list_query]") {
  ListFixture f;
  const std::string supplier_ix = slot_index("purchase-order", "Supplier Number");
  const std::string supplier_k = slot_column("purchase-order", "Supplier Number");
  const std::string date_ix = slot_index("purchase-order", "PO List Order Date");
  const std::string date_k = slot_column("purchase-order", "PO List Order Date");
  const auto supplier = params({{"filter", R"({"Supplier Number": "S1"})"}});

  auto plan = replica::list_query_plan(f.rep.db(), f.po, supplier, {});
  INFO(joined(plan));
  CHECK(
      plan_has(plan, "SEARCH record USING INDEX " + supplier_ix + " (resource=? AND " + supplier_k + "=?)"));
  CHECK(f.ids({{"filter", R"({"Supplier Number": "S1"})"}}) == Ids{1, 7});

  // An unfiltered page reads the sort key's index in order instead of sorting the whole resource.
  auto sorted = replica::list_query_plan(f.rep.db(), f.po, params({}), {});
  INFO(joined(sorted));
  CHECK(plan_has(sorted, "SEARCH record USING INDEX " + date_ix + " (resource=?)"));
  CHECK_FALSE(plan_has(sorted, "TEMP B-TREE"));
  // The inactive warehouses are found through the warehouse-master status slot's index, once per query.
  CHECK(plan_has(sorted, "LIST SUBQUERY"));
  CHECK(plan_has(sorted, "SEARCH w USING INDEX " + slot_index("warehouse-master", "Warehouse Status") +
                             " (resource=? AND " + slot_column("warehouse-master", "Warehouse Status") +
                             "=?)"));

  // A date range on the sort key is a range of that index.
  auto range = replica::list_query_plan(
      f.rep.db(), f.po,
      params({{"filter", R"({"PO List Order Date": {"from": "2024-01-01", "to": "2024-01-31"}})"}}), {});
  INFO(joined(range));
  CHECK(plan_has(range, "SEARCH record USING INDEX " + date_ix + " (resource=? AND " + date_k + ">? AND " +
                            date_k + "<?)"));

  // Results are the same whichever path is taken.
  CHECK(f.ids({}) == Ids{5, 6, 1, 2, 8, 4, 7});
  CHECK(f.ids({{"filter", R"({"PO List Order Date": {"from": "2024-01-01", "to": "2024-01-31"}})"}}) ==
        Ids{1, 2, 8});
}

TEST_CASE(
    "list query: (resource, slot, id) indexes serve a filter with its id order and a sort with its ties",
    "[list_query]") {
  ListFixture f;
  const std::string supplier_ix = slot_index("purchase-order", "Supplier Number");
  const std::string supplier_k = slot_column("purchase-order", "Supplier Number");
  const std::string name_ix = slot_index("purchase-order", "Supplier Name");

  // Equality on an indexed key, sorted by id: one seek, rows already in id order.
  const Query by_id = {{"filter", R"({"Supplier Number": "S1"})"}, {"sort", R"({"key": "id"})"}};
  auto plan = replica::list_query_plan(f.rep.db(), f.po, params(by_id), {});
  INFO(joined(plan));
  CHECK(
      plan_has(plan, "SEARCH record USING INDEX " + supplier_ix + " (resource=? AND " + supplier_k + "=?)"));
  CHECK_FALSE(plan_has(plan, "TEMP B-TREE"));
  CHECK(f.ids(by_id) == Ids{1, 7});

  // Sorted by an indexed key: a walk of its index, ties by id included.
  const Query by_name = {{"sort", R"({"key": "Supplier Name"})"}};
  plan = replica::list_query_plan(f.rep.db(), f.po, params(by_name), {});
  INFO(joined(plan));
  CHECK(plan_has(plan, "SEARCH record USING INDEX " + name_ix + " (resource=?)"));
  CHECK_FALSE(plan_has(plan, "TEMP B-TREE"));
  CHECK(f.ids(by_name) == Ids{1, 2, 4, 5, 6, 7, 8});  // no row has a supplier name: all tie, by id

  // Filtered and sorted on the same indexed key: a seek that is already in list order.
  const Query both = {{"filter", R"({"Supplier Number": ["S1", "S3"]})"},
                      {"sort", R"({"key": "Supplier Number"})"}};
  plan = replica::list_query_plan(f.rep.db(), f.po, params(both), {});
  INFO(joined(plan));
  CHECK(
      plan_has(plan, "SEARCH record USING INDEX " + supplier_ix + " (resource=? AND " + supplier_k + "=?)"));
  CHECK(f.ids(both) == Ids{1, 7, 4, 6});

  // Descending: the index walked backwards; only ties need ordering by id ascending.
  const Query desc = {{"sort", R"({"key": "Supplier Number", "type": "Descending"})"}};
  plan = replica::list_query_plan(f.rep.db(), f.po, params(desc), {});
  INFO(joined(plan));
  CHECK(plan_has(plan, "SEARCH record USING INDEX " + supplier_ix + " (resource=?)"));
  CHECK_FALSE(plan_has(plan, "USE TEMP B-TREE FOR ORDER BY"));
  CHECK(f.ids(desc) == Ids{4, 6, 2, 5, 1, 7, 8});

  // The virtual Warehouse Status looks each row's warehouse up through the warehouse-master number slot.
  const Query status = {{"filter", R"({"Warehouse Status": ["Active", "Inactive"]})"},
                        {"sort", R"({"key": "Warehouse Status", "type": "Descending"})"}};
  plan = replica::list_query_plan(f.rep.db(), f.po, params(status), {});
  INFO(joined(plan));
  CHECK(plan_has(plan, "SEARCH w USING INDEX " + slot_index("warehouse-master", "Warehouse Number") +
                           " (resource=? AND " + slot_column("warehouse-master", "Warehouse Number") +
                           "=?)"));
  CHECK(f.ids(status) == Ids{3, 1, 2, 4, 5, 6, 7});
}

TEST_CASE("list query: a selective filter's index or the sort key's index, whichever reads fewer rows",
          "[list_query]") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& po = resource("purchase-order");
  const auto& lines = resource("purchase-order-details");
  load(rep, resource("warehouse-master"), warehouses());
  // 4,000 orders: all Open but one; dates cycle so the sort key has many distinct values; every fifth order
  // is in the inactive warehouse.
  std::vector<Json> orders, details;
  for (int i = 1; i <= 4000; ++i) {
    char date[16];
    std::snprintf(date, sizeof date, "2024-%02d-%02d", 1 + i % 12, 1 + i % 28);
    orders.push_back(Json{{"id", i},
                          {"PO List Number", "PO-" + std::to_string(i)},
                          {"PO List Document Status", i == 1234 ? "Closed" : "Open"},
                          {"PO List Order Date", date},
                          {"Warehouse Number", i % 5 == 0 ? "WH-03" : "WH-01"}});
    details.push_back(Json{{"id", i},
                           {"Purchase Order Id", i},
                           {"PO Details Document Status", i == 1234 ? "Closed" : "Open"},
                           {"Warehouse Number", "WH-01"}});
  }
  load(rep, po, orders);
  load(rep, lines, details);
  const std::string status_ix = slot_index("purchase-order", "PO List Document Status");
  const std::string date_ix = slot_index("purchase-order", "PO List Order Date");

  const auto open = params({{"filter", R"({"PO List Document Status": "Open"})"}});
  CHECK(replica::choose_list_access_path(rep.db(), po, open).index == date_ix);
  auto rows = replica::run_list(rep.db(), po, open, {}).rows;
  REQUIRE(rows.size() == 50);
  CHECK(rows.front().at("PO List Order Date") == "2024-01-01");

  const auto closed = params({{"filter", R"({"PO List Document Status": "Closed"})"}});
  CHECK(replica::choose_list_access_path(rep.db(), po, closed).index == status_ix);
  rows = replica::run_list(rep.db(), po, closed, {}).rows;
  REQUIRE(rows.size() == 1);
  CHECK(rows.front().at("id") == 1234);

  // A line list sorted by id reads its primary key in order when the filter matches most rows.
  const auto open_lines = params({{"filter", R"({"PO Details Document Status": "Open"})"}});
  const auto path = replica::choose_list_access_path(rep.db(), lines, open_lines);
  CHECK(path.id_order);
  auto plan = replica::list_query_plan(rep.db(), lines, open_lines, {});
  INFO(joined(plan));
  // Rows are read in id order through the (resource, id) key, so no sort step is needed.
  CHECK((plan_has(plan, "USING PRIMARY KEY") || plan_has(plan, "USING INDEX record_key")));
  CHECK_FALSE(plan_has(plan, "TEMP B-TREE"));
  rows = replica::run_list(rep.db(), lines, open_lines, {}).rows;
  REQUIRE(rows.size() == 50);
  CHECK(rows.front().at("id") == 1);
  CHECK(rows.back().at("id") == 50);

  // Whatever the path, every page agrees with a plain in-memory evaluation.
  std::vector<std::int64_t> expected;
  for (const auto& o : orders)
    if (o.at("PO List Document Status") == "Open" && o.at("Warehouse Number") != "WH-03")
      expected.push_back(o.at("id").get<std::int64_t>());
  std::stable_sort(expected.begin(), expected.end(), [&](std::int64_t a, std::int64_t b) {
    return orders[static_cast<std::size_t>(a - 1)].at("PO List Order Date").get<std::string>() >
           orders[static_cast<std::size_t>(b - 1)].at("PO List Order Date").get<std::string>();
  });
  std::vector<std::int64_t> listed;
  for (int page = 1;; ++page) {
    auto p = params({{"filter", R"({"PO List Document Status": "Open"})"},
                     {"sort", R"({"key": "PO List Order Date", "type": "Descending"})"},
                     {"page", std::to_string(page)},
                     {"page_size", "1000"}});
    auto r = replica::run_list(rep.db(), po, p, {}).rows;
    for (const auto& row : r)
      listed.push_back(row.at("id").get<std::int64_t>());
    if (r.size() < 1000) break;
  }
  CHECK(listed == expected);

  // Those pages sort every match: the sort carries row ids only, and just the page's bodies are read by id.
  const auto deep = params({{"filter", R"({"PO List Document Status": "Open"})"},
                            {"sort", R"({"key": "PO List Order Date", "type": "Descending"})"},
                            {"page", "2"},
                            {"page_size", "1000"}});
  const auto sorting = replica::choose_list_access_path(rep.db(), po, deep);
  CHECK(sorting.index == status_ix);
  CHECK(sorting.sorts);
  plan = replica::list_query_plan(rep.db(), po, deep, {});
  INFO(joined(plan));
  CHECK(plan_has(plan, "SEARCH record USING INTEGER PRIMARY KEY (rowid=?)"));
  CHECK(plan_has(plan, "SEARCH record USING INDEX " + status_ix));
  // Paths in list order sort nothing.
  CHECK_FALSE(replica::choose_list_access_path(rep.db(), po, open).sorts);
  CHECK_FALSE(path.sorts);
}
