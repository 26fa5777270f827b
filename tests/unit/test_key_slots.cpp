#include <SQLiteCpp/Database.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include "replica/key_slots.hpp"
#include "replica/list_query.hpp"
#include "replica/replica.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using replica::Json;
using replica::Replica;
using Keys = std::vector<std::string>;

namespace {

// A fresh directory per test, removed afterwards.
using knosc::test::TempDir;

// A one-resource catalog ("thing") with the given sort, filterable and sortable keys (TOML arrays).
schema::Catalog catalog_with(const std::string& default_sort, const std::string& filterable,
                             const std::string& sortable) {
  std::string text = R"(
[[resource]]
name = "thing"
id_type = "integer"
business_key = ["Number"]
module = "Things"
get_one = "data"
not_found_code = "Thing.NotFound"
delete_check = "get-one"
)";
  if (!default_sort.empty())
    text += "default_sort = { key = \"" + default_sort + "\", type = \"Ascending\" }\n";
  text += "filterable = " + filterable + "\nsortable = " + sortable + "\n";
  return schema::Catalog::parse(text, "test.toml");
}

void load(Replica& rep, const schema::Resource& res, const std::vector<Json>& rows, std::int64_t now = 1000) {
  Json page = Json::array();
  for (const auto& r : rows)
    page.push_back(r);
  auto cursor = rep.resume_or_begin_pass(res, static_cast<int>(rows.size()) + 1, now);
  REQUIRE(rep.apply_page(res, cursor, page, now).pass_complete);
}

std::int64_t count(Replica& rep, const std::string& where) {
  return rep.db().execAndGet("SELECT COUNT(*) FROM record WHERE " + where).getInt64();
}

}  // namespace

TEST_CASE("key slots: the default sort key, then filterable, then sortable keys, each once", "[key_slots]") {
  const auto& po = schema::Catalog::builtin().at("purchase-order");
  CHECK(replica::indexed_keys(po) == Keys{"PO List Order Date", "PO List Number", "PO List Document Status",
                                          "Supplier Number", "Supplier Name", "Warehouse Number"});
  CHECK(replica::slot_of(po, "PO List Order Date") == 1);
  CHECK(replica::slot_of(po, "Warehouse Number") == 6);
  CHECK_FALSE(replica::slot_of(po, "PO Total Quantity").has_value());
  CHECK_FALSE(replica::slot_of(po, "id").has_value());

  // A default sort by id takes no slot; neither does "id" anywhere else, nor a key no request can name.
  auto c = catalog_with("", R"(["B", "id", "A", "B"])", R"(["C", "Say \"hi\"", "A"])");
  const auto& thing = c.at("thing");
  CHECK(replica::indexed_keys(thing) == Keys{"B", "A", "C"});
  CHECK(replica::slot_of(thing, "C") == 3);
  CHECK_FALSE(replica::slot_of(thing, "Say \"hi\"").has_value());
  CHECK(replica::indexed_keys(catalog_with("Z", "[]", R"(["Z"])").at("thing")) == Keys{"Z"});
  CHECK(replica::slot_column(3) == "k3");
  CHECK(replica::slot_index_name(3) == "record_k3");
}

TEST_CASE("key slots: every built-in resource's keys fit, Warehouse Number included where filterable",
          "[key_slots]") {
  for (const auto& res : schema::Catalog::builtin().resources()) {
    INFO(res.name);
    std::vector<std::string> wanted;
    if (res.default_sort.key != "id") wanted.push_back(res.default_sort.key);
    wanted.insert(wanted.end(), res.filterable.begin(), res.filterable.end());
    wanted.insert(wanted.end(), res.sortable.begin(), res.sortable.end());
    for (const auto& key : wanted) {
      INFO(key);
      CHECK(replica::slot_of(res, key).has_value());
    }
    CHECK(replica::indexed_keys(res).size() <= static_cast<std::size_t>(replica::kKeySlots));
  }
  // The warehouse lookup of the list queries reads both sides through slots.
  const auto& wm = schema::Catalog::builtin().at("warehouse-master");
  CHECK(replica::slot_of(wm, "Warehouse Number").has_value());
  CHECK(replica::slot_of(wm, "Warehouse Status").has_value());
}

TEST_CASE("key slots: the catalog refuses a resource with more than eight indexed keys", "[key_slots]") {
  CHECK_NOTHROW(catalog_with("S", R"(["A", "B", "C", "D"])", R"(["E", "F", "G", "A", "S", "id"])"));
  try {
    catalog_with("S", R"(["A", "B", "C", "D"])", R"(["E", "F", "G", "H"])");
    FAIL("parsed");
  } catch (const schema::CatalogError& e) {
    CHECK_THAT(e.what(),
               Catch::Matchers::Contains("test.toml:") &&
                   Catch::Matchers::Contains("resource 'thing' has 9 distinct default_sort, filterable "
                                             "and sortable keys ('S', 'A', 'B', 'C', 'D', 'E', 'F', "
                                             "'G', 'H')") &&
                   Catch::Matchers::Contains("at most 8 keys per resource"));
  }
}

TEST_CASE("key slots: values keep the type json_extract gives them", "[key_slots]") {
  TempDir dir;
  const auto c = catalog_with("", R"(["S", "I", "F", "T", "N", "O", "A", "Absent"])", "[]");
  const auto& thing = c.at("thing");
  Replica rep(dir.file("r.db"), c, Replica::Mode::ReadWrite);
  load(rep, thing,
       {Json::parse(R"({"id": 1, "S": "text", "I": 42, "F": 2.5, "T": true, "N": null, "O": {"x": [1, "y"]},
                        "A": [1, 2]})"),
        Json::parse(R"({"id": 2, "S": "", "I": -7, "F": 1.0, "T": false, "N": 0, "O": 18446744073709551615,
                        "A": "a", "Absent": 1})")});
  const std::vector<std::pair<std::string, int>> keys = {{"S", 1}, {"I", 2}, {"F", 3}, {"T", 4},
                                                         {"N", 5}, {"O", 6}, {"A", 7}, {"Absent", 8}};
  for (const auto& [key, slot] : keys) {
    INFO(key);
    const std::string k = replica::slot_column(slot);
    const std::string expr = replica::json_key_sql(key);
    // Same value and same SQL type as json_extract, row by row.
    CHECK(count(rep, "resource = 'thing' AND " + k + " IS " + expr + " AND typeof(" + k + ") = typeof(" +
                         expr + ")") == 2);
  }
  CHECK(rep.db()
            .execAndGet("SELECT typeof(k2) || typeof(k3) || typeof(k4) FROM record WHERE id = 1")
            .getString() == "integerrealinteger");
}

TEST_CASE("key slots: a changed catalog refills the slots at start; an unchanged one touches nothing",
          "[key_slots]") {
  TempDir dir;
  const auto before = catalog_with("", R"(["A"])", "[]");
  const auto after = catalog_with("", R"(["B", "A"])", "[]");
  // More rows than one refill batch holds.
  std::vector<Json> rows;
  for (int i = 1; i <= 4500; ++i)
    rows.push_back(Json{{"id", i}, {"A", "a" + std::to_string(i)}, {"B", i}});
  {
    Replica rep(dir.file("r.db"), before, Replica::Mode::ReadWrite);
    load(rep, before.at("thing"), rows);
    CHECK(count(rep, "k1 = 'a' || id AND k2 IS NULL") == 4500);
  }
  {
    Replica rep(dir.file("r.db"), after, Replica::Mode::ReadWrite);
    CHECK(count(rep, "k1 = id AND k2 = 'a' || id") == 4500);
    CHECK(rep.db()
              .execAndGet("SELECT group_concat(key, '|') FROM key_slot WHERE resource = 'thing'")
              .getString() == "B|A");
    // The list engine reads B through its new slot.
    auto p = replica::parse_list_params({{"filter", R"({"B": 4321})"}});
    REQUIRE(p.ok());
    auto r = replica::run_list(rep.db(), after.at("thing"), *p, {});
    REQUIRE(r.rows.size() == 1);
    CHECK(r.rows[0].at("A") == "a4321");
  }
  Replica rep(dir.file("r.db"), after, Replica::Mode::ReadWrite);
  CHECK(rep.db().getTotalChanges() == 0);
}

TEST_CASE("key slots: each slot index holds only the resources that have the slot, as the catalog says",
          "[key_slots]") {
  // "one" has a slot and nested parts, "three" three slots; a slot nobody has gets no index.
  const auto catalog = [](const std::string& three_filterable) {
    return schema::Catalog::parse(R"(
[[resource]]
name = "one"
id_type = "integer"
business_key = ["A"]
module = "Things"
get_one = "data"
not_found_code = "One.NotFound"
delete_check = "get-one"
nested = ["lines"]
filterable = ["A"]

[[resource]]
name = "three"
id_type = "integer"
business_key = ["A"]
module = "Things"
get_one = "data"
not_found_code = "Three.NotFound"
delete_check = "get-one"
filterable = )" + three_filterable + "\n",
                                  "test.toml");
  };
  const auto index_sql = [](Replica& rep, const std::string& name) {
    SQLite::Statement q(rep.db(), "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1");
    q.bind(1, name);
    return q.executeStep() ? q.getColumn(0).getString() : std::string("(none)");
  };
  const auto plan = [](Replica& rep, const std::string& sql) {
    std::string out;
    SQLite::Statement q(rep.db(), "EXPLAIN QUERY PLAN " + sql);
    while (q.executeStep())
      out += q.getColumn(3).getString() + "\n";
    return out;
  };
  TempDir dir;
  const auto before = catalog(R"(["A", "B", "C"])");
  {
    Replica rep(dir.file("r.db"), before, Replica::Mode::ReadWrite);
    CHECK(index_sql(rep, "record_k1") ==
          "CREATE INDEX record_k1 ON record (resource, k1, id) WHERE slot_count >= 1");
    CHECK(index_sql(rep, "record_k3") ==
          "CREATE INDEX record_k3 ON record (resource, k3, id) WHERE slot_count >= 3");
    CHECK(index_sql(rep, "record_k4") == "(none)");
    CHECK(index_sql(rep, "record_nested_due") ==
          "CREATE INDEX record_nested_due ON record (resource, nested_at) WHERE nested_parts = 1");
    CHECK(replica::resource_terms(before.at("three")) ==
          "resource = 'three' AND slot_count >= 1 AND slot_count >= 2 AND slot_count >= 3");
    CHECK(replica::resource_terms(before.at("one")) ==
          "resource = 'one' AND slot_count >= 1 AND nested_parts = 1");
    load(rep, before.at("three"), {Json{{"id", 1}, {"A", "x"}, {"B", 2}, {"C", "c"}}});
    load(rep, before.at("one"), {Json{{"id", 1}, {"A", "y"}}});
    // Each row holds its resource's layout, so each index holds the rows of the resources that use it.
    CHECK(count(rep, "resource = 'three' AND slot_count = 3 AND nested_parts = 0") == 1);
    CHECK(count(rep, "resource = 'one' AND slot_count = 1 AND nested_parts = 1") == 1);
    CHECK(rep.db()
              .execAndGet("SELECT count(*) FROM record INDEXED BY record_k2 WHERE slot_count >= 2")
              .getInt() == 1);
    CHECK(rep.db()
              .execAndGet("SELECT count(*) FROM record INDEXED BY record_nested_due WHERE nested_parts = 1")
              .getInt() == 1);
    // A query naming the resource's terms reads the partial index; lists and lookups do.
    CHECK_THAT(plan(rep, "SELECT body FROM record WHERE " + replica::resource_terms(before.at("three")) +
                             " AND k3 = 'c'"),
               Catch::Matchers::Contains("USING INDEX record_k3 (resource=? AND k3=?)"));
    auto p = replica::parse_list_params({{"sort", R"({"key": "C"})"}});
    REQUIRE(p.ok());
    CHECK_THAT(
        replica::list_query_plan(rep.db(), before.at("three"), *p, {}),
        Catch::Matchers::VectorContains(std::string("SEARCH record USING INDEX record_k3 (resource=?)")));
    CHECK(replica::run_list(rep.db(), before.at("three"), *p, {}).rows.size() == 1);
  }
  {
    // The same catalog again: no index is made again (DDL would bump the schema cookie).
    Replica rep(dir.file("r.db"), before, Replica::Mode::ReadWrite);
    const int cookie = rep.db().execAndGet("PRAGMA schema_version").getInt();
    Replica again(dir.file("r.db"), before, Replica::Mode::ReadWrite);
    CHECK(again.db().execAndGet("PRAGMA schema_version").getInt() == cookie);
  }
  // "three" loses its third key and gains nothing: record_k3 has nobody left and goes; the rows keep what
  // their slots hold (the refill clears k3) and the list engine no longer names record_k3.
  const auto after = catalog(R"(["A", "B"])");
  Replica rep(dir.file("r.db"), after, Replica::Mode::ReadWrite);
  CHECK(index_sql(rep, "record_k3") == "(none)");
  CHECK(index_sql(rep, "record_k2") ==
        "CREATE INDEX record_k2 ON record (resource, k2, id) WHERE slot_count >= 2");
  CHECK(count(rep, "resource = 'three' AND k3 IS NULL AND k2 = 2 AND slot_count = 2") == 1);
  CHECK(count(rep, "resource = 'one' AND slot_count = 1") == 1);
  auto p = replica::parse_list_params({{"filter", R"({"B": 2})"}});
  REQUIRE(p.ok());
  CHECK(replica::run_list(rep.db(), after.at("three"), *p, {}).rows.size() == 1);
}

TEST_CASE("key slots: flat line lists have slot indexes of their own, which lists and lookups read",
          "[key_slots]") {
  TempDir dir;
  const auto& catalog = schema::Catalog::builtin();
  const auto& lines = catalog.at("purchase-order-details");
  const auto& orders = catalog.at("purchase-order");
  REQUIRE(replica::has_own_slot_indexes(lines));
  REQUIRE_FALSE(replica::has_own_slot_indexes(orders));
  const int eta = replica::slot_of(lines, "PO Details ETA Date").value();
  CHECK(replica::slot_index(lines, eta) == "\"record_k" + std::to_string(eta) + "_purchase-order-details\"");
  CHECK(replica::slot_index(orders, 1) == "record_k1");

  Replica rep(dir.file("r.db"), catalog, Replica::Mode::ReadWrite);
  const auto index_sql = [&](const std::string& name) {
    SQLite::Statement q(rep.db(), "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1");
    q.bind(1, name);
    return q.executeStep() ? q.getColumn(0).getString() : std::string("(none)");
  };
  const std::string k = replica::slot_column(eta);
  CHECK(index_sql("record_k" + std::to_string(eta) + "_purchase-order-details") ==
        "CREATE INDEX \"record_k" + std::to_string(eta) + "_purchase-order-details\" ON record (" + k +
            ", id) WHERE resource = 'purchase-order-details'");
  for (int slot = 1; slot <= replica::kKeySlots; ++slot) {
    INFO(slot);
    CHECK_THAT(index_sql(replica::slot_index_name(slot)),
               !Catch::Matchers::Contains("'purchase-order-details'") &&
                   !Catch::Matchers::Contains("'sales-order-details'"));
  }

  std::vector<Json> rows;
  for (int i = 1; i <= 300; ++i) {
    char date[16];
    std::snprintf(date, sizeof date, "2024-%02d-%02d", 1 + i % 12, 1 + i % 28);
    Json row{
        {"id", i}, {"Purchase Order Id", 1 + i / 3}, {"PO List Number", "PO-" + std::to_string(1 + i / 3)}};
    if (i % 7 != 0) row["PO Details ETA Date"] = date;  // some lines have none: NULL slots sort first
    rows.push_back(row);
  }
  load(rep, lines, rows);
  const auto ids = [&](const std::map<std::string, std::string>& q) {
    auto p = replica::parse_list_params(q);
    REQUIRE(p.ok());
    std::vector<std::int64_t> out;
    for (const auto& row : replica::run_list(rep.db(), lines, *p, {}).rows)
      out.push_back(row.at("id").get<std::int64_t>());
    return out;
  };
  // Sorted by the key through its own index: NULLs first, ties by id; the same as an in-memory sort.
  auto p = replica::parse_list_params({{"sort", R"({"key": "PO Details ETA Date"})"}, {"page_size", "1000"}});
  REQUIRE(p.ok());
  const auto plan = replica::list_query_plan(rep.db(), lines, *p, {});
  std::string joined;
  for (const auto& line : plan)
    joined += line + "\n";
  CHECK_THAT(joined, Catch::Matchers::Contains("USING INDEX record_k" + std::to_string(eta) +
                                               "_purchase-order-details"));
  CHECK_THAT(joined, !Catch::Matchers::Contains("TEMP B-TREE"));
  std::vector<Json> sorted = rows;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Json& a, const Json& b) {
    return a.value("PO Details ETA Date", std::string()) < b.value("PO Details ETA Date", std::string());
  });
  std::vector<std::int64_t> expected;
  for (const auto& r : sorted)
    expected.push_back(r.at("id").get<std::int64_t>());
  CHECK(ids({{"sort", R"({"key": "PO Details ETA Date"})"}, {"page_size", "1000"}}) == expected);
  // Filters and ranges seek it.
  CHECK(ids({{"filter", R"({"PO Details ETA Date": "2024-02-02"})"}}).size() ==
        static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), [](const Json& r) {
          return r.value("PO Details ETA Date", std::string()) == "2024-02-02";
        })));
  CHECK(count(rep, "resource = 'purchase-order-details' AND " + k + " IS NULL") == 42);
}

TEST_CASE("key slots: expression indexes left by older versions are dropped at start", "[key_slots]") {
  TempDir dir;
  { Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite); }
  {
    SQLite::Database db(dir.file("r.db"), SQLite::OPEN_READWRITE);
    db.exec(
        "CREATE INDEX rx_123 ON record (json_extract(body, '$.\"Item Number\"')) "
        "WHERE resource = 'item-master'");
    db.exec("CREATE INDEX rxkeep ON record (updated_at)");
  }
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto index = [&](const char* name) {
    SQLite::Statement q(rep.db(), "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?1");
    q.bind(1, name);
    q.executeStep();
    return q.getColumn(0).getInt();
  };
  CHECK(index("rx_123") == 0);
  CHECK(index("rxkeep") == 1);  // not one of the expression indexes' names
  for (int slot = 1; slot <= replica::kKeySlots; ++slot)
    CHECK(index(replica::slot_index_name(slot).c_str()) == 1);
}

TEST_CASE("key slots: lists answer the same through a slot as through the JSON body", "[key_slots]") {
  TempDir dir;
  // "V" has a slot; "W" holds the same values and has none.
  const auto c = catalog_with("", R"(["V"])", R"(["V"])");
  const auto& thing = c.at("thing");
  REQUIRE(replica::slot_of(thing, "V") == 1);
  REQUIRE_FALSE(replica::slot_of(thing, "W").has_value());
  Replica rep(dir.file("r.db"), c, Replica::Mode::ReadWrite);
  const std::vector<std::string> values = {"true",  "false",      "1",         "0",     "1.0",  "0.0",
                                           "2",     "-3.5",       "null",      "\"1\"", "\"\"", "\"a\"",
                                           "\"b\"", "{\"o\": 1}", "[1, true]", ""};
  std::vector<Json> rows;
  for (std::size_t i = 0; i < values.size(); ++i) {
    Json row = Json{{"id", static_cast<int>(i + 1)}};
    if (!values[i].empty()) {  // the last row has neither key
      row["V"] = Json::parse(values[i]);
      row["W"] = Json::parse(values[i]);
    }
    rows.push_back(row);
  }
  load(rep, thing, rows);

  const auto ids = [&](const std::string& key, const std::string& filter, const std::string& extra) {
    std::map<std::string, std::string> q = {{"page_size", "1000"}};
    if (!filter.empty()) q["filter"] = "{\"" + key + "\": " + filter + "}";
    if (!extra.empty()) q["search"] = "{\"filters\": {\"exclude\": {\"" + key + "\": " + extra + "}}}";
    q["sort"] = "{\"key\": \"" + key + "\"}";
    auto p = replica::parse_list_params(q);
    REQUIRE(p.ok());
    std::vector<std::int64_t> out;
    for (const auto& row : replica::run_list(rep.db(), thing, *p, {}).rows)
      out.push_back(row.at("id").get<std::int64_t>());
    return out;
  };
  const std::vector<std::pair<std::string, std::string>> queries = {
      {"", ""},
      {"true", ""},
      {"false", ""},
      {"1", ""},
      {"0", ""},
      {"[1, true]", ""},
      {"[null]", ""},
      {"\"1\"", ""},
      {"[\"a\", 2, false]", ""},
      {"{\"from\": 0, \"to\": 1}", ""},
      {"{\"from\": -10}", ""},
      {"{\"to\": 1.5}", ""},
      {"{\"from\": \"\"}", ""},
      {"{\"from\": \"a\", \"to\": \"a\"}", ""},
      {"{\"from\": null, \"to\": null}", ""},
      {"", "[1, null]"},
      {"", "[true, \"a\"]"},
  };
  for (const auto& [filter, exclude] : queries) {
    INFO("filter " << filter << ", exclude " << exclude);
    CHECK(ids("V", filter, exclude) == ids("W", filter, exclude));
  }
  CHECK(ids("V", "true", "") == std::vector<std::int64_t>{1});
  CHECK(ids("V", "1", "") == std::vector<std::int64_t>{3, 5});
}

TEST_CASE("key slots: a record stored after a forwarded change gets its slots", "[key_slots]") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& items = schema::Catalog::builtin().at("item-master");
  const std::string number = replica::slot_column(*replica::slot_of(items, "Item Number"));
  const std::string type = replica::slot_column(*replica::slot_of(items, "Item Type"));
  load(rep, items, {Json{{"id", 1}, {"Item Number", "ITEM-1"}, {"Item Type", "Part"}}});
  rep.store_fetched_record(items, Json{{"id", 1}, {"Item Number", "ITEM-1"}, {"Item Type", "Assembly"}},
                           2000);
  rep.store_fetched_record(items, Json{{"id", 2}, {"Item Number", "ITEM-2"}}, 2000);
  CHECK(count(rep, "resource = 'item-master' AND id = 1 AND " + type + " = 'Assembly'") == 1);
  CHECK(count(rep, "resource = 'item-master' AND id = 2 AND " + number + " = 'ITEM-2' AND " + type +
                       " IS NULL") == 1);
}
