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

// ------------------------------------------------------------------------------------------------------------
// Write rules ([resource.write])
// ------------------------------------------------------------------------------------------------------------

TEST_CASE("the built-in catalog carries Knosc's write rules", "[catalog][write]") {
  const auto& c = Catalog::builtin();
  const auto& items = c.at("item-master");
  REQUIRE(items.write);
  CHECK(items.write->prefix == "ItemMaster");
  CHECK(items.write->update == knosc::schema::UpdateMode::Partial);
  CHECK(items.write->allows("POST"));
  CHECK(items.write->unique == std::vector<std::string>{"Item Number"});
  const auto* type = items.write->field("Item Type");
  REQUIRE(type);
  CHECK(type->type == knosc::schema::FieldType::Enum);
  CHECK(type->nullable);
  CHECK(type->default_value == "Finished Good");
  // Blockers reach into nested line sets (a BOM's components) as well as flat lists.
  bool component_lines = false;
  for (const auto& b : items.write->blockers)
    component_lines = component_lines || (b.resource == "bill-of-materials" && b.lines == "details" &&
                                          b.key == "Component Item Id");
  CHECK(component_lines);

  const auto& po = c.at("purchase-order");
  REQUIRE(po.write);
  REQUIRE(po.write->lines);
  CHECK(po.write->update == knosc::schema::UpdateMode::Full);
  CHECK(po.write->lines->resource == "purchase-order-details");
  CHECK_FALSE(po.write->lines->nested_resource);  // a flat line list: the catalog's own resource
  CHECK(&po.write->lines->lines_resource(c) == &c.at("purchase-order-details"));
  CHECK(po.write->lines->single_warehouse);
  CHECK(po.write->lines->date_code == "PurchaseOrderDetails.OrderDateAfterShip");
  CHECK(c.at("purchase-order-details").write->methods == std::vector<std::string>{"DELETE"});

  const auto& mo = c.at("manufacturing-order");
  REQUIRE(mo.write->lines->nested_resource);
  const auto& mo_lines = mo.write->lines->lines_resource(c);
  CHECK(mo_lines.name == "manufacturing-order-details");
  CHECK(mo_lines.not_found_code == "ManufacturingOrderDetails.NotFound");
  CHECK_FALSE(mo_lines.mirror);
  CHECK(c.find("manufacturing-order-details") == nullptr);  // not a catalog resource

  CHECK(c.at("asn").write->update == knosc::schema::UpdateMode::Partial);
  CHECK(c.at("asn").write->groups.size() == 2);
  CHECK(c.at("asn").write->stamps.created_at == "Timestamp");
  CHECK(c.at("supplier-allocation").write->has_rule("allocation-limits"));
  CHECK(c.at("user").write->online_only);
  CHECK_FALSE(c.at("role").write);
}

namespace {
// A minimal catalog with a unit list and an item list whose write rules the cases below extend.
std::string with_write(const std::string& unit_write, const std::string& item_write) {
  return std::string(R"([[resource]]
name = "unit-master"
id_type = "integer"
module = "Unit Master"
get_one = "data"
not_found_code = "UnitMaster.NotFound"
delete_check = "get-one"
)") + unit_write +
         R"(
[[resource]]
name = "item-master"
id_type = "integer"
module = "Item Master"
get_one = "data"
not_found_code = "ItemMaster.NotFound"
delete_check = "get-one"
nested = ["details"]
)" + item_write +
         "\n";
}

const char* kItemWrite = R"(
[resource.write]
methods = ["POST", "PUT", "DELETE"]
prefix = "ItemMaster"
keys = ["id", "Item Number", "Item Unit", "Item Weight"]
fields = [{ key = "Item Number", type = "str", required = true }, { key = "Item Weight", type = "num?" }]
refs = [{ field = "Item Unit", target = "unit-master", target_key = "Unit Code" }]
)";
}  // namespace

TEST_CASE("write rules: defaults of a minimal [resource.write]", "[catalog][write]") {
  auto c = Catalog::parse(with_write("", kItemWrite), "test.toml");
  const auto& w = *c.at("item-master").write;
  CHECK(w.update == knosc::schema::UpdateMode::Partial);
  CHECK_FALSE(w.online_only);
  CHECK(w.number.empty());
  CHECK(w.fields.size() == 2);
  CHECK(w.fields[0].required);
  CHECK(w.fields[0].type == knosc::schema::FieldType::String);
  CHECK_FALSE(w.fields[0].nullable);
  CHECK(w.fields[1].nullable);
  CHECK(w.fields[1].default_value.is_null());
  REQUIRE(w.refs.size() == 1);
  CHECK(w.refs[0].target_key == "Unit Code");
  CHECK(w.refs[0].id_field.empty());
  CHECK_FALSE(w.refs[0].required);
  CHECK_FALSE(w.refs[0].has_belongs());
  CHECK_FALSE(w.lines);
  CHECK_FALSE(c.at("unit-master").write);
}

TEST_CASE("write rule mistakes are refused with the key and the line", "[catalog][write]") {
  struct Case {
    std::string text;
    std::string message_part;
  };
  const auto item = [](const std::string& extra) { return with_write("", std::string(kItemWrite) + extra); };
  const std::vector<Case> cases = {
      {item("colour = \"blue\""), "test.toml:24: unknown key 'colour' in [resource.write]"},
      {with_write("", "[resource.write]\nmethods = [\"POST\"]\nkeys = [\"id\"]\n"),
       "test.toml:17: [resource.write] is missing required key 'prefix'"},
      {with_write("", "[resource.write]\nmethods = [\"PATCH\"]\nprefix = \"X\"\n"),
       "test.toml:18: key 'methods' may only hold \"POST\", \"PUT\" and \"DELETE\""},
      {with_write("", "[resource.write]\nprefix = \"X\"\n"), "[resource.write] needs 'methods'"},
      {item("update = \"sometimes\""), "key 'update' must be one of \"partial\", \"full\""},
      {item("update = \"full\""), "update \"full\" replaces a line set, so it needs [resource.write.lines]"},
      {item("rules = [\"make-tea\"]"), "test.toml:24: unknown write rule 'make-tea'"},
      {item("unique = [\"Colour\"]"), "unique key 'Colour' is not one of 'keys'"},
      {with_write("", R"([resource.write]
methods = ["POST"]
prefix = "X"
keys = ["id"]
fields = [{ key = "Item Number", type = "str" }]
)"),
       "field 'Item Number' is not one of 'keys'"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
fields = [{ key = "a", type = "text" }]
)"),
       "test.toml:20: key 'type' of field 'a' must be one of"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
fields = [{ key = "a", type = "enum" }]
)"),
       "field 'a' of type \"enum\" needs 'values'"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
fields = [{ key = "a", type = "enum", values = ["x"], default = "y" }]
)"),
       "test.toml:20: key 'default' of field 'a' is not a valid value of its type"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
fields = [{ key = "a", type = "int", required = true, default = 1 }]
)"),
       "field 'a' is required, so it takes no 'default'"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
fields = [{ key = "a", type = "str", size = 3 }]
)"),
       "unknown key 'size' in [resource.write].fields"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
refs = [{ field = "Unit", target = "no-such-list" }]
)"),
       "test.toml:20: key '[resource.write].refs.target' names unknown resource 'no-such-list'"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
blockers = [{ resource = "unit-master", lines = "details", key = "Item Id" }]
)"),
       "names lines 'details' of 'unit-master', which has no such line set"},
      {with_write("", R"([resource.write]
methods = ["DELETE"]
prefix = "X"
refs = [{ field = "Unit", target = "unit-master", belongs = { target_key = "Item Id" } }]
)"),
       "[resource.write].refs.belongs is missing required key 'own_key'"},
      {with_write(R"([resource.write]
methods = ["POST"]
prefix = "UnitMaster"
keys = ["id"]

[resource.write.lines]
resource = "unit-lines"
parent_field = "Unit Id"
label = "Unit Line"
prefix = "UnitLines"
keys = ["id", "Unit Id"]
no_items = { code = "X.NoItems", message = "none" }
)",
                  ""),
       "the line set 'details' must be one of the resource's 'nested' keys"},
      {with_write("", std::string(kItemWrite) + R"(
[resource.write.lines]
resource = "item-lines"
parent_field = "Item Id"
label = "Item Line"
prefix = "ItemLines"
keys = ["id", "Item Id"]
)"),
       "[resource.write].lines needs 'no_items' (the error for too few lines)"},
      {with_write("", std::string(kItemWrite) + R"(
[resource.write.lines]
resource = "unit-master"
parent_field = "Item Id"
label = "Item Line"
prefix = "ItemLines"
keys = ["id", "Item Id"]
min_lines = 0
)"),
       "names 'unit-master', a catalog resource; a nested line set needs a name of its own"},
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

TEST_CASE("a nested line set gets a resource of its own for local line ids", "[catalog][write]") {
  auto c = Catalog::parse(with_write("", std::string(kItemWrite) + R"(
[resource.write.lines]
resource = "item-lines"
parent_field = "Item Id"
id_alias = "Item Line Id"
label = "Item Line"
prefix = "ItemLines"
keys = ["id", "Item Line Id", "Item Id", "Qty"]
fields = [{ key = "Qty", type = "num", required = true }]
aggregates = [{ key = "Item Weight", sum = "Qty" }]
no_items = { code = "ItemLines.NoItems", message = "An item needs a line" }
)"),
                          "test.toml");
  const auto& lines = *c.at("item-master").write->lines;
  REQUIRE(lines.nested_resource);
  const auto& r = lines.lines_resource(c);
  CHECK(r.name == "item-lines");
  CHECK(r.label == "Item Line");
  CHECK(r.id_type == knosc::schema::IdType::Integer);
  CHECK(r.parent == "item-master");
  CHECK(r.parent_key == "Item Id");
  CHECK(r.not_found_code == "ItemLines.NotFound");
  CHECK(lines.min_lines == 1);
  CHECK(lines.aggregates.size() == 1);
}
