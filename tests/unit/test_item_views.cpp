#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "daemon/item_views.hpp"
#include "replica/replica.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using namespace knosc::daemon;
using namespace knosc::daemon::item_views_detail;
using replica::Json;
using replica::Replica;

namespace {

using Query = std::map<std::string, std::string>;

// A fresh directory per test, removed afterwards.
using knosc::test::TempDir;

ComputedParams params(const Query& q, const std::string& sort = "id", bool whole = false) {
  auto p = parse_computed_params(q, sort, false, whole);
  if (auto* e = std::get_if<ParamsError>(&p)) FAIL("unexpected parse error: " << e->message);
  return std::get<ComputedParams>(p);
}

std::string params_error(const Query& q) {
  auto p = parse_computed_params(q, "id", false, false);
  auto* e = std::get_if<ParamsError>(&p);
  REQUIRE(e != nullptr);
  CHECK(e->code == "JSON.Invalid");
  return e->message;
}

WarehouseStatus statuses() {
  return {{"WH-01", "Active"}, {"WH-02", "Active"}, {"WH-10", "Inactive"}};
}

std::vector<std::int64_t> ids_of(const std::vector<Json>& rows, const std::vector<std::size_t>& order) {
  std::vector<std::int64_t> out;
  for (auto i : order)
    out.push_back(rows[i]["id"].get<std::int64_t>());
  return out;
}

// Mirrors `rows` of `resource` as one complete pull pass.
void load(Replica& rep, const char* resource, const std::vector<Json>& rows) {
  const auto& res = rep.catalog().at(resource);
  Json page = Json::array();
  for (const auto& r : rows)
    page.push_back(r);
  auto cursor = rep.resume_or_begin_pass(res, static_cast<int>(rows.size()) + 1, 1000);
  REQUIRE(rep.apply_page(res, cursor, page, 1000).pass_complete);
}

LocalSession session_with(std::map<std::string, Access> modules,
                          std::vector<replica::GranularFilter> granular = {}) {
  LocalSession s;
  s.username = "tester@acme.example";
  s.privileges.modules = std::move(modules);
  s.privileges.granular = std::move(granular);
  return s;
}

Json body(const HttpResponse& r) {
  return Json::parse(r.body);
}

// A small tenant: three warehouses (WH-10 inactive), two items, purchase and sales orders with lines, stock
// and a manufacturing order with nested lines.
void small_tenant(Replica& rep) {
  load(rep, "warehouse-master",
       {Json{{"id", 1},
             {"Warehouse Number", "WH-01"},
             {"Warehouse Name", "North"},
             {"Warehouse Status", "Active"}},
        Json{{"id", 2},
             {"Warehouse Number", "WH-02"},
             {"Warehouse Name", "South"},
             {"Warehouse Status", "Active"}},
        Json{{"id", 10},
             {"Warehouse Number", "WH-10"},
             {"Warehouse Name", "Old"},
             {"Warehouse Status", "Inactive"}}});
  load(rep, "item-master",
       {Json{{"id", 7},
             {"Item Number", "ITEM-7"},
             {"Item Description", "Widget"},
             {"Item Type", "Finished Good"}},
        Json{{"id", 8},
             {"Item Number", "ITEM-8"},
             {"Item Description", "Gadget"},
             {"Item Type", "Component"}}});
  load(rep, "purchase-order",
       {Json{{"id", 40},
             {"PO List Number", "PO-40"},
             {"Supplier Id", 3},
             {"Supplier Name", "Acme"},
             {"Supplier Number", "SUP-3"},
             {"Warehouse Number", "WH-01"}},
        Json{{"id", 41},
             {"PO List Number", "PO-41"},
             {"Supplier Id", 4},
             {"Supplier Name", "Beta"},
             {"Supplier Number", "SUP-4"},
             {"Warehouse Number", "WH-10"}}});
  auto po_line = [](int id, int po, const char* wh, int wh_id, const char* status, int qty, const char* eta) {
    return Json{{"id", id},
                {"Purchase Order Id", po},
                {"PO List Number", "PO-" + std::to_string(po)},
                {"Item Id", 7},
                {"Item Number", "ITEM-7"},
                {"Warehouse Id", wh_id},
                {"Warehouse Number", wh},
                {"PO Details Document Status", status},
                {"PO Details Quantity", qty},
                {"PO Details ETA Date", eta}};
  };
  load(rep, "purchase-order-details",
       {po_line(101, 40, "WH-01", 1, "Open", 200, "2025-02-20"),
        po_line(102, 40, "WH-01", 1, "Received", 50, "2025-01-10"),
        po_line(103, 41, "WH-10", 10, "Open", 70, "2025-01-01")});
  load(rep, "sales-order",
       {Json{{"id", 60},
             {"SO List Number", "SO-60"},
             {"Customer Name", "Gamma"},
             {"Warehouse Number", "WH-01"}}});
  auto so_line = [](int id, const char* status, int qty, Json ship) {
    return Json{{"id", id},
                {"Sales Order Id", 60},
                {"SO List Number", "SO-60"},
                {"Item Id", 7},
                {"Item Number", "ITEM-7"},
                {"Warehouse Id", 1},
                {"Warehouse Number", "WH-01"},
                {"SO Details Document Status", status},
                {"SO Details Quantity", qty},
                {"SO Details Ship Date", ship}};
  };
  load(rep, "sales-order-details",
       {so_line(201, "Open", 300, "2025-03-10"), so_line(202, "Open", 400, "2025-03-05"),
        so_line(203, "Open", 100, nullptr), so_line(204, "Closed", 999, "2025-03-01")});
  load(rep, "inventory",
       {Json{{"id", 1},
             {"Item Id", 7},
             {"Item Number", "ITEM-7"},
             {"Warehouse Id", 1},
             {"Warehouse Number", "WH-01"},
             {"Warehouse Name", "North"},
             {"Inventory Quantity", 500}},
        Json{{"id", 2},
             {"Item Id", 7},
             {"Item Number", "ITEM-7"},
             {"Warehouse Id", 10},
             {"Warehouse Number", "WH-10"},
             {"Warehouse Name", "Old"},
             {"Inventory Quantity", 9}}});
  load(rep, "manufacturing-order",
       {Json{{"id", 55}, {"MO List Number", "MO-55"}, {"Warehouse Id", 2}, {"Warehouse Number", "WH-02"}}});
  rep.store_nested(rep.catalog().at("manufacturing-order"), replica::RecordId{std::int64_t{55}},
                   Json{{"details", Json::array({Json{{"id", 301},
                                                      {"MO List Number", "MO-55"},
                                                      {"Item Id", 7},
                                                      {"Item Number", "ITEM-7"},
                                                      {"Warehouse Id", 2},
                                                      {"Warehouse Number", "WH-02"},
                                                      {"MO Details Quantity", 25},
                                                      {"MO Details Document Status", "Open"},
                                                      {"MO Details End Date", "2025-03-20"}},
                                                 Json{{"id", 302},
                                                      {"Item Id", 8},
                                                      {"Item Number", "ITEM-8"},
                                                      {"Warehouse Number", "WH-02"},
                                                      {"MO Details Quantity", 5}}})}},
                   1000);
}

}  // namespace

TEST_CASE("item views: Python's repr, float repr, round and int as Knosc's messages and numbers use them",
          "[item_views]") {
  CHECK(py_repr("abc") == "'abc'");
  CHECK(py_repr("it's") == "\"it's\"");
  CHECK(py_repr("a\"b'c") == "'a\"b\\'c'");
  CHECK(py_repr("tab\there\n\x01") == "'tab\\there\\n\\x01'");
  CHECK(py_repr("caf\xc3\xa9") == "'caf\xc3\xa9'");
  CHECK(py_repr("no\xc2\xa0"
                "break") == "'no\\xa0break'");
  CHECK(py_repr_json(Json::parse(R"({"a": [1, 2.5, true, null, "x"]})")) ==
        "{'a': [1, 2.5, True, None, 'x']}");

  CHECK(py_float_repr(1.0) == "1.0");
  CHECK(py_float_repr(0.1) == "0.1");
  CHECK(py_float_repr(-2.5) == "-2.5");
  CHECK(py_float_repr(0.0001) == "0.0001");
  CHECK(py_float_repr(0.00001) == "1e-05");
  CHECK(py_float_repr(1e16) == "1e+16");
  CHECK(py_float_repr(9999999999999998.0) == "9999999999999998.0");
  CHECK(py_float_repr(123456789012345678.0) == "1.2345678901234568e+17");
  CHECK(py_float_repr(1e22) == "1e+22");

  // round() rounds the exact binary value, ties to even.
  CHECK(round2(2.675) == 2.67);
  CHECK(round2(0.125) == 0.12);
  CHECK(round2(0.375) == 0.38);
  CHECK(round2(350.0) == 350.0);
  CHECK(round2(10.0 / 3.0) == 3.33);
  CHECK(std::signbit(round2(-0.001)));

  CHECK(py_int(" 12 ") == 12);
  CHECK(py_int("+5") == 5);
  CHECK(py_int("-3") == -3);
  CHECK(py_int("007") == 7);
  CHECK(py_int("1_000") == 1000);
  CHECK_FALSE(py_int("1__0"));
  CHECK_FALSE(py_int("_1"));
  CHECK_FALSE(py_int("1_"));
  CHECK_FALSE(py_int("abc"));
  CHECK_FALSE(py_int(""));
  CHECK_FALSE(py_int("-"));
  CHECK(py_int("99999999999999999999999") == std::numeric_limits<long long>::max());

  CHECK(py_lower("ITEM-Abc") == "item-abc");
  CHECK(days_between("2025-02-28", "2025-03-03") == 3);
  CHECK(days_between("2024-02-28", "2024-03-01") == 2);
  CHECK(days_between("2025-03-03", "2025-03-03") == 0);
  CHECK_FALSE(days_between("2025-02-30", "2025-03-03"));
  CHECK_FALSE(days_between("2025-3-3", "2025-03-03"));
}

TEST_CASE("item views: list parameters of computed lists, and Knosc's message for each malformed one",
          "[item_views]") {
  auto p = params({});
  CHECK(p.offset == 0);
  CHECK(p.limit == 50);
  CHECK(p.sort_key == "id");
  p = params({{"page", "3"}, {"page_size", "5000"}});
  CHECK(p.limit == 1000);
  CHECK(p.offset == 2000);
  CHECK(params({}, "id", true).limit == std::numeric_limits<long long>::max());
  CHECK(params({{"page", ""}}, "id", true).limit == 50);  // naming page at all pages the answer
  p = params({{"sort", R"({"key": "Variance", "type": "Descending"})"}, {"filter", "null"}});
  CHECK(p.sort_key == "Variance");
  CHECK(p.descending);
  CHECK_FALSE(p.filter);

  CHECK(params_error({{"page", "0"}}) == "Invalid value for 'page': must be a positive integer, got 0.");
  CHECK(params_error({{"page_size", "x1"}}) ==
        "Invalid value for 'page_size': 'x1' is not a positive integer.");
  CHECK(params_error({{"filter", "{"}}) == "Bad Request Format");
  CHECK(params_error({{"filter", "[1]"}}) == "'filter' must be a JSON object keyed by column key.");
  CHECK(params_error({{"filter", R"({"a": {"since": 1}})"}}) ==
        "Filter on 'a' must be a value, an array of values or {\"from\": ..., \"to\": ...}.");
  CHECK(params_error({{"filter", R"({"a": {"from": [1]}})"}}) ==
        "Filter range 'from' of 'a' must be a date string or a number.");
  CHECK(params_error({{"filter", R"({"a": [[1]]})"}}) == "Filter values of 'a' must be scalars.");
  CHECK(params_error({{"search", R"({"filters": {"zeta": {}, "alpha": {}}})"}}) ==
        "'search.filters' takes only 'include' and 'exclude', not alpha, zeta.");
  CHECK(params_error({{"search", R"({"filters": {"include": {"a": "b"}}})"}}) ==
        "'search.filters.include.a' must be an array of values.");
  CHECK(params_error({{"sort", R"({"key": ""})"}}) ==
        "'sort' must be {\"key\": \"<column key>\", \"type\": \"Ascending\"|\"Descending\"}.");
  CHECK(params_error({{"sort", R"({"key": "a", "type": null})"}}) ==
        "'sort.type' must be \"Ascending\" or \"Descending\", got None.");
  CHECK(params_error({{"sort", R"({"key": "a", "type": ["Up"]})"}}) ==
        "'sort.type' must be \"Ascending\" or \"Descending\", got ['Up'].");
}

TEST_CASE("item views: row visibility and order follow Knosc's list rules", "[item_views]") {
  const std::vector<Json> rows = {
      Json{{"id", 1}, {"Warehouse Number", "WH-01"}, {"Qty", 5}, {"Code", "5"}, {"Date", "2025-03-05T10:00"}},
      Json{{"id", 2}, {"Warehouse Number", "WH-10"}, {"Qty", 7}, {"Date", "2025-03-06"}},
      Json{{"id", 3}, {"Qty", nullptr}, {"Code", 5}},
      Json{{"id", 4}, {"Warehouse Number", "WH-02"}, {"Qty", 5.0}, {"Date", nullptr}},
  };
  auto visible_ids = [&](const RowFilter& f) {
    std::vector<std::int64_t> out;
    for (const auto& r : rows)
      if (f.visible(r)) out.push_back(r["id"].get<std::int64_t>());
    return out;
  };
  using V = std::vector<std::int64_t>;
  const std::vector<replica::GranularFilter> none;

  SECTION("rows of inactive warehouses are hidden unless the filter names Warehouse Status") {
    CHECK(visible_ids(RowFilter(statuses(), none, nullptr)) == V{1, 3, 4});
    auto p = params({{"filter", R"({"Warehouse Status": "Inactive"})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) == V{2});
    p = params({{"search", R"({"filters": {"exclude": {"Warehouse Status": ["Active"]}}})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) ==
          V{2, 3});  // row 3 has no warehouse: kept by exclude
  }
  SECTION("granular filters restrict only rows that carry the column") {
    const std::vector<replica::GranularFilter> wh1 = {{"Warehouse Number", true, {"WH-01"}}};
    CHECK(visible_ids(RowFilter(statuses(), wh1, nullptr)) == V{1, 3});
    const std::vector<replica::GranularFilter> not_wh1 = {{"Warehouse Number", false, {"WH-01"}}};
    CHECK(visible_ids(RowFilter(statuses(), not_wh1, nullptr)) == V{3, 4});
  }
  SECTION("values match by equality or by their text; ranges by kind, 'to' at its own precision") {
    auto p = params({{"filter", R"({"Code": "5"})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) == V{1, 3});
    p = params({{"filter", R"({"Qty": [5]})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) == V{1, 4});
    p = params({{"filter", R"({"Qty": "5.0"})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) == V{4});
    p = params({{"filter", R"({"Date": {"from": "2025-03-01", "to": "2025-03-05"}})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) == V{1});
    p = params({{"filter", R"({"Qty": {"from": 6}, "Warehouse Status": ["Active", "Inactive"]})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)) == V{2});
  }
  SECTION("sorting is stable, nulls and missing values first, in both directions") {
    const RowFilter f(statuses(), none, nullptr);
    CHECK(ids_of(rows, f.order(rows, "Qty", false)) == V{3, 1, 4, 2});
    CHECK(ids_of(rows, f.order(rows, "Qty", true)) == V{2, 1, 4, 3});
    CHECK(ids_of(rows, f.order(rows, "Date", false)) == V{3, 4, 1, 2});
    CHECK(ids_of(rows, f.order(rows, "id", true)) == V{4, 3, 2, 1});
    CHECK(ids_of(rows, f.order(rows, "Warehouse Status", true)) == V{2, 1, 4, 3});
  }
  SECTION("columns a row lacks can read as a default") {
    const ColumnDefaults zeros = {{"SUP-1", 0}};
    auto p = params({{"filter", R"({"SUP-1": 0})"}});
    CHECK(visible_ids(RowFilter(statuses(), none, &p, &zeros)) == V{1, 3, 4});
    CHECK(visible_ids(RowFilter(statuses(), none, &p)).empty());
  }
}

TEST_CASE("item views: routes computed from a replica", "[item_views]") {
  TempDir dir;
  const auto& catalog = schema::Catalog::builtin();
  Replica writer(dir.file("replica.sqlite3"), catalog, Replica::Mode::ReadWrite);
  small_tenant(writer);
  Replica rep(dir.file("replica.sqlite3"), catalog, Replica::Mode::ReadOnly);
  const auto all = session_with({{"Procurement", Access::View},
                                 {"Demand", Access::View},
                                 {"Manufacturing", Access::View},
                                 {"Inventory", Access::View},
                                 {"Issue Tracker", Access::View}});
  const Query none;

  SECTION("purchase-order-item: the item's lines with the order's supplier, inactive warehouses hidden") {
    auto r = order_item_view(rep, all, OrderItemKind::Purchase, "7", std::nullopt, none);
    REQUIRE(r.status == 200);
    const auto b = body(r);
    CHECK(b["data"]["sort"] == Json{{"key", "PO Details ETA Date"}, {"type", "Descending"}});
    REQUIRE(b["data"]["rows"].size() == 2);
    CHECK(b["data"]["rows"][0]["id"] == 101);  // ETA 2025-02-20 before 2025-01-10, descending
    CHECK(b["data"]["rows"][0]["Supplier Name"] == "Acme");
    CHECK(b["data"]["rows"][0]["Supplier Number"] == "SUP-3");
    CHECK(b["tags"] == Json::object());
    r = order_item_view(rep, all, OrderItemKind::Purchase, "7", std::nullopt,
                        Query{{"filter", R"({"Warehouse Status": "Inactive"})"}});
    REQUIRE(body(r)["data"]["rows"].size() == 1);
    CHECK(body(r)["data"]["rows"][0]["Supplier Name"] == "Beta");
  }
  SECTION("unknown ids are Knosc's 400s, with the id as Knosc parsed it; privileges come first") {
    auto r = order_item_view(rep, all, OrderItemKind::Purchase, "0007", std::string("99"), none);
    CHECK(r.status == 400);
    CHECK(body(r) == Json{{"Message", "Warehouse #99 not found."}, {"Code", "WarehouseMaster.NotFound"}});
    r = order_item_view(rep, all, OrderItemKind::Sales, "abc", std::nullopt, none);
    CHECK(body(r) == Json{{"Message", "Item #abc not found."}, {"Code", "ItemMaster.NotFound"}});
    r = order_item_view(rep, all, OrderItemKind::Sales, "9", std::nullopt, Query{{"page", "0"}});
    CHECK(body(r)["Message"] == "Item #9 not found.");
    r = order_item_view(rep, session_with({{"Demand", Access::Edit}}), OrderItemKind::Purchase, "abc",
                        std::nullopt, none);
    CHECK(r.status == 403);
    CHECK(body(r) == Json{{"Message", "Not Privileged for this action"}, {"Code", "User.NotPrivileged"}});
    auto routed = item_view(rep, session_with({}), {"inventory-item"}, none);
    REQUIRE(routed);
    CHECK(routed->status == 403);
    routed = item_view(rep, all, {"inventory-item"}, none);
    CHECK(routed->status == 404);
    CHECK_FALSE(item_view(rep, all, {"purchase-order", "7"}, none));
    CHECK_FALSE(item_view(rep, all, {"issue-tracker-tickets", "TKT-1", "history"}, none));
  }
  SECTION("manufacturing-order-item reads the lines nested in their orders") {
    auto r = order_item_view(rep, all, OrderItemKind::Manufacturing, "7", std::string("2"), none);
    REQUIRE(r.status == 200);
    REQUIRE(body(r)["data"]["rows"].size() == 1);
    CHECK(body(r)["data"]["rows"][0]["id"] == 301);
  }
  SECTION("inventory-item: stock and open quantities per warehouse; net = stock + inbound - outbound") {
    auto r = inventory_item_view(rep, all, "7", std::nullopt);
    REQUIRE(r.status == 200);
    const auto b = body(r);
    CHECK(b["data"]["item"] == Json{{"Item Number", "ITEM-7"},
                                    {"Item Description", "Widget"},
                                    {"Item Type", "Finished Good"},
                                    {"Total Quantity", 500},
                                    {"Total Warehouses", 1}});
    const auto& rows = b["data"]["orders"]["rows"];
    REQUIRE(rows.size() == 2);
    CHECK(rows[0] == Json{{"Warehouse Number", "WH-01"},
                          {"Warehouse Name", "North"},
                          {"Inventory Quantity", 500},
                          {"Open PO Quantity", 200},
                          {"Open SO Quantity", 800},
                          {"Open MO Quantity", 0},
                          {"Net Available", -100}});
    CHECK(rows[1]["Warehouse Number"] == "WH-02");
    CHECK(rows[1]["Open MO Quantity"] == 25);
  }
  SECTION("sales-prioritized-item-inventory: earliest ship date first, each line allocated what is left") {
    auto r = sales_prioritized_view(rep, all, "7", std::nullopt);
    REQUIRE(r.status == 200);
    const auto rows = body(r)["data"]["rows"];
    REQUIRE(rows.size() == 3);
    CHECK(rows[0]["id"] == 202);
    CHECK(rows[0]["Allocated Quantity"] == 400);
    CHECK(rows[0]["Available Inventory"] == 100);
    CHECK(rows[1]["id"] == 201);
    CHECK(rows[1]["Allocated Quantity"] == 100);
    CHECK(rows[2]["id"] == 203);  // no ship date: last
    CHECK(rows[2]["Priority"] == 3);
    CHECK(rows[2]["Allocated Quantity"] == 0);
    CHECK(rows[2]["Customer Name"] == "Gamma");
  }
  SECTION("granular filters narrow what a user sees") {
    const auto wh2 = session_with({{"Inventory", Access::View}}, {{"Warehouse Number", true, {"WH-02"}}});
    const auto rows = body(inventory_item_view(rep, wh2, "7", std::nullopt))["data"]["orders"]["rows"];
    REQUIRE(rows.size() == 1);
    CHECK(rows[0]["Warehouse Number"] == "WH-02");
  }
  SECTION("delayed shipments count from the given day, and follow the replica as it changes") {
    auto r = delayed_shipments_view(rep, all, Query{{"bucket", "week"}}, "2025-03-03");
    REQUIRE(r.status == 200);
    CHECK(body(r)["data"]["total_delayed"] == 1);  // line 101, 11 days late; 103 is in the inactive warehouse
    CHECK(body(r)["data"]["buckets"][1] == Json{{"label", "8–14 days"}, {"count", 1}});
    CHECK(body(delayed_shipments_view(rep, all, Query{{"bucket", "day"}}, "2025-03-03")) ==
          Json{{"Message", "Invalid bucket 'day': use week or month."},
               {"Code", "DelayedShipments.InvalidBucket"}});
    // Another connection commits: the reader's memo must not serve the old count.
    load(writer, "purchase-order-details",
         {Json{{"id", 101},
               {"Purchase Order Id", 40},
               {"Item Id", 7},
               {"Item Number", "ITEM-7"},
               {"Warehouse Number", "WH-01"},
               {"PO Details Document Status", "Open"},
               {"PO Details Quantity", 1},
               {"PO Details ETA Date", "2025-01-01"}},
          Json{{"id", 104},
               {"Purchase Order Id", 40},
               {"Item Id", 8},
               {"Item Number", "ITEM-8"},
               {"Warehouse Number", "WH-02"},
               {"PO Details Document Status", "Shipped"},
               {"PO Details Quantity", 1},
               {"PO Details ETA Date", "2025-03-02"}}});
    r = delayed_shipments_view(rep, all, Query{{"bucket", "month"}}, "2025-03-03");
    CHECK(body(r)["data"]["total_delayed"] == 2);
    CHECK(body(r)["data"]["buckets"][0]["count"] == 1);  // 104, a day late
    CHECK(body(r)["data"]["buckets"][2]["count"] == 1);  // 101, now 61 days late
  }
  SECTION("a connection that cannot keep its memo still answers") {
    Replica strict(dir.file("replica.sqlite3"), catalog, Replica::Mode::ReadOnly);
    strict.db().exec("PRAGMA query_only = 1");
    for (int i = 0; i < 2; ++i) {
      auto r = delayed_shipments_view(strict, all, Query{{"bucket", "week"}}, "2025-03-03");
      REQUIRE(r.status == 200);
      CHECK(body(r)["data"]["total_delayed"] == 1);
    }
  }
  SECTION("today is pinned by KNOSC_SYNCD_TODAY when it holds a date") {
    ::setenv("KNOSC_SYNCD_TODAY", "2025-03-03", 1);
    CHECK(analytics_today() == "2025-03-03");
    ::setenv("KNOSC_SYNCD_TODAY", "yesterday", 1);
    CHECK(analytics_today().size() == 10);
    CHECK(analytics_today() != "yesterday");
    ::unsetenv("KNOSC_SYNCD_TODAY");
  }
  SECTION("validate-privileges maps a section of the application to its module") {
    CHECK(body(validate_privileges_view(all, Query{{"path", "/procurement/"}})) == Json{{"access", true}});
    CHECK(validate_privileges_view(all, Query{{"path", "/users"}}).status == 403);
    CHECK(body(validate_privileges_view(all, Query{{"path", "/nowhere"}})) ==
          Json{{"Message", "Unknown path /nowhere."}, {"Code", "Privilege.UnknownPath"}});
  }
  SECTION("auto-complete: prefix matches first, case-insensitive, at most 50") {
    auto r = auto_complete_view(rep, all, Query{{"category", "Item Number"}, {"text", "item-"}});
    REQUIRE(r.status == 200);
    const auto b = body(r);
    CHECK(b["data"]["data"] == Json::parse(R"([["ITEM-7", 7], ["ITEM-8", 8]])"));
    CHECK(b["data"]["total"] == 2);
    CHECK(b["data"]["headers"] == Json::parse(R"(["text", "id"])"));
    r = auto_complete_view(rep, all, Query{{"category", "Item Description"}, {"text", "gAd"}});
    CHECK(body(r)["data"]["data"] == Json::parse(R"([["Gadget", 8]])"));
    r = auto_complete_view(rep, all, Query{{"category", "Item Description"}, {"text", "W"}});
    CHECK(body(r)["data"]["data"] == Json::parse(R"([["Widget", 7]])"));
    // Warehouses of inactive status are hidden as in every list.
    r = auto_complete_view(rep, all, Query{{"category", "Warehouse Number"}, {"text", "wh"}});
    CHECK(body(r)["data"]["data"] == Json::parse(R"([["WH-01", 1], ["WH-02", 2]])"));
    r = auto_complete_view(rep, all, Query{{"category", "Colour"}, {"text", "x"}});
    CHECK(body(r)["Code"] == "AutoComplete.InvalidCategory");
  }
}
