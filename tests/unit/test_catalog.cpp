#include <catch2/catch.hpp>

#include "schema/catalog.hpp"

using knosc::schema::Catalog;
using knosc::schema::CatalogError;

namespace {
const char* kMinimal = R"(
[[resource]]
name = "item-master"
id_type = "integer"
business_key = ["Item Number"]
module = "Item Master"
get_one = "data"
not_found_code = "ItemMaster.NotFound"
delete_check = "get-one"
)";

std::string with(const std::string& extra) {
  return std::string(kMinimal) + extra + "\n";
}
}  // namespace

TEST_CASE("the built-in catalog loads and describes every mirrored Knosc list resource") {
  const auto& c = Catalog::builtin();
  for (const char* name : {"purchase-order",
                           "purchase-order-details",
                           "sales-order",
                           "sales-order-details",
                           "manufacturing-order",
                           "forecast",
                           "inventory",
                           "item-master",
                           "sub-item-master",
                           "customer-master",
                           "ship-to-master",
                           "supplier-master",
                           "ship-from-master",
                           "warehouse-master",
                           "unit-master",
                           "external-item-master",
                           "bill-of-materials",
                           "asn",
                           "supplier-allocation",
                           "issue-tracker-tickets",
                           "scenario-analysis",
                           "user",
                           "role"}) {
    INFO(name);
    REQUIRE(c.find(name) != nullptr);
  }
  const auto& po = c.at("purchase-order");
  CHECK(po.lines == "purchase-order-details");
  CHECK(po.default_sort.key == "PO List Order Date");
  CHECK_FALSE(po.default_sort.descending);
  CHECK(po.module == "Procurement");
  const auto& lines = c.at("purchase-order-details");
  CHECK(lines.parent == "purchase-order");
  CHECK(lines.parent_key == "Purchase Order Id");
  CHECK(lines.delete_check == knosc::schema::DeleteCheck::ParentGetOne);
  CHECK(c.at("issue-tracker-tickets").id_type == knosc::schema::IdType::String);
  CHECK(c.at("warehouse-master").delete_check == knosc::schema::DeleteCheck::FilterByKey);
  CHECK(c.at("manufacturing-order").get_one == knosc::schema::GetOneShape::RowsObject);
  // Ship-to uses Customer Master privileges, sub-items Item Master, sales orders Demand (API notes §4).
  CHECK(c.at("ship-to-master").module == "Customer Master");
  CHECK(c.at("sub-item-master").module == "Item Master");
  CHECK(c.at("sales-order").module == "Demand");
  CHECK_THROWS_AS(c.at("no-such-thing"), CatalogError);
}

TEST_CASE("a minimal resource gets the documented defaults") {
  auto c = Catalog::parse(kMinimal, "test.toml");
  const auto& r = c.at("item-master");
  CHECK(r.default_sort.key == "id");
  CHECK(r.pull_interval_seconds == 300);
  CHECK(r.conflict_policy == knosc::schema::ConflictPolicy::Merge);
  CHECK(r.mirror);
  CHECK(r.route() == "/item-master");
}

TEST_CASE("catalog mistakes are refused with the key and the line") {
  struct Case {
    std::string text;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {with("colour = \"blue\""), "test.toml:10: unknown key 'colour'"},
      {with("pull_interval_seconds = -5"), "must be a positive integer"},
      {with("conflict_policy = \"whoever\""),
       "must be one of \"merge\", \"server-wins\", \"client-wins\", \"manual\""},
      {with("default_sort = { key = \"x\", type = \"Sideways\" }"),
       "must be \"Ascending\" or \"Descending\""},
      {with("parent = \"item-master\""), "'parent' and 'parent_key' go together"},
      {with("nested = \"details\""), "must be an array of strings"},
      {std::string(kMinimal) + kMinimal, "resource 'item-master' is listed twice"},
      {"[[resource]]\nname = \"x\"\n", "missing required key 'id_type'"},
      {"resource = 3\n", "no [[resource]] entries"},
      {"[[resource]\n", "test.toml:1:"},
      {with("lines = \"nothing\""), "names lines 'nothing'"},
      {R"([[resource]]
name = "w"
id_type = "integer"
module = "Warehouse Master"
get_one = "none"
not_found_code = "W.NotFound"
delete_check = "get-one"
)",
       "delete_check \"get-one\" needs a get_one shape"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    try {
      (void)Catalog::parse(c.text, "test.toml");
      FAIL("accepted");
    } catch (const CatalogError& e) {
      CHECK_THAT(e.what(), Catch::Matchers::Contains(c.message_part));
    }
  }
}
