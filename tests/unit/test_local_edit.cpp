#include <catch2/catch.hpp>
#include <map>

#include "replica/local_edit.hpp"
#include "replica/record_lookup.hpp"
#include "replica/record_view.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using replica::EditError;
using replica::EditPlan;
using replica::EditRequest;
using replica::Json;
using replica::RecordId;
using schema::Catalog;
using schema::Resource;

namespace {

Json J(const char* text) {
  return Json::parse(text);
}

// The replica as a map: records as the replica stores them (headers of flat line lists without "details",
// their lines as rows of their own), composed into get-one records the way compose_record does.
class MapLookup final : public replica::RecordLookup {
 public:
  explicit MapLookup(const Catalog& catalog) : catalog_(catalog) {}

  void put(const std::string& resource, Json rec) {
    const Resource& res = catalog_.at(resource);
    if (!res.lines.empty()) rec.erase("details");
    for (const auto& d : res.derived)
      rec.erase(d.key);
    const RecordId id = *replica::record_id_from_json(rec.at("id"));
    data_[resource][id] = std::move(rec);
  }
  void apply(const EditPlan& plan) {
    for (const auto& r : plan.records) {
      if (r.record) {
        put(r.res->name, *r.record);
      } else {
        data_[r.res->name].erase(r.id);
      }
    }
  }
  bool has(const std::string& resource, const RecordId& id) { return data_[resource].count(id) > 0; }

  std::optional<Json> get(const Resource& res, const RecordId& id) override {
    auto& rows = data_[res.name];
    auto it = rows.find(id);
    if (it == rows.end()) return std::nullopt;
    Json rec = it->second;
    if (!res.lines.empty()) {
      const Resource& lines = catalog_.at(res.lines);
      Json details = Json::array();
      for (const auto& [lid, line] : data_[lines.name])
        if (line.value(lines.parent_key, Json()) == rec["id"]) details.push_back(line);
      rec["details"] = std::move(details);
    }
    for (const auto& d : res.derived) {
      Json items = Json::array();
      for (const auto& [rid, row] : data_[d.from])
        if (row.value(d.match_key, Json()) == rec[d.own_key]) {
          Json item = Json::object();
          for (const auto& f : d.fields)
            item[f] = row.value(f, Json());
          items.push_back(std::move(item));
        }
      rec[d.key] = std::move(items);
    }
    return rec;
  }

  std::vector<Json> find(const Resource& res, const std::string& key, const Json& value,
                         std::size_t limit) override {
    ++finds;
    std::vector<Json> out;
    for (const auto& [id, row] : data_[res.name])
      if (out.size() < limit && row.contains(key) && row[key] == value) out.push_back(row);
    return out;
  }

  std::vector<Json> find_in_lines(const Resource& res, const std::string& lines_key, const std::string& key,
                                  const Json& value, std::size_t limit) override {
    std::vector<Json> out;
    for (const auto& [id, row] : data_[res.name]) {
      auto rec = get(res, id);
      for (const auto& line : rec->value(lines_key, Json::array()))
        if (out.size() < limit && line.contains(key) && line[key] == value) {
          out.push_back(*rec);
          break;
        }
    }
    return out;
  }

  int finds = 0;

 private:
  const Catalog& catalog_;
  std::map<std::string, std::map<RecordId, Json>> data_;
};

// A small tenant: master data, orders with flat lines, documents with nested lines, a ticket with a note.
void load_tenant(MapLookup& db) {
  db.put("unit-master", J(R"({"id": 1, "Unit Code": "EA", "Unit Name": "Each", "Unit Type": "Count"})"));
  db.put("unit-master", J(R"({"id": 2, "Unit Code": "KG", "Unit Name": "Kilogram", "Unit Type": "Weight"})"));
  db.put("unit-master", J(R"({"id": 3, "Unit Code": "BOX", "Unit Name": "Box", "Unit Type": "Count"})"));
  for (
      const char* item :
      {R"({"id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "Item Type": "Finished Good", "Item Unit": "EA", "Item Status": "Active"})",
       R"({"id": 56, "Item Number": "ITEM-B", "Item Description": "Widget B", "Item Type": "Component", "Item Unit": "EA", "Item Status": "Active"})",
       R"({"id": 60, "Item Number": "COMP-X", "Item Description": "Component X", "Item Type": "Component", "Item Unit": "KG", "Item Status": "Active"})",
       R"({"id": 61, "Item Number": "COMP-Y", "Item Description": "Component Y", "Item Type": "Raw Material", "Item Unit": "EA", "Item Status": "Active"})",
       R"({"id": 62, "Item Number": "ITEM-FREE", "Item Description": "Unused", "Item Type": "Component", "Item Unit": null, "Item Status": "Active"})"})
    db.put("item-master", J(item));
  db.put(
      "sub-item-master",
      J(R"({"id": 70, "Sub Item Number": "SUB-A1", "Sub Item Description": "A red", "Sub Item Status": "Active", "Item Id": 55, "Item Number": "ITEM-A"})"));
  db.put(
      "sub-item-master",
      J(R"({"id": 71, "Sub Item Number": "SUB-B1", "Sub Item Description": "B blue", "Sub Item Status": "Active", "Item Id": 56, "Item Number": "ITEM-B"})"));
  db.put(
      "warehouse-master",
      J(R"({"id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC", "Warehouse Status": "Active"})"));
  db.put(
      "warehouse-master",
      J(R"({"id": 4, "Warehouse Number": "WH-02", "Warehouse Name": "West DC", "Warehouse Status": "Active"})"));
  db.put(
      "warehouse-master",
      J(R"({"id": 5, "Warehouse Number": "WH-FREE", "Warehouse Name": "Empty", "Warehouse Status": "Active"})"));
  db.put(
      "supplier-master",
      J(R"({"id": 7, "Supplier Number": "SUP-007", "Supplier Name": "Acme", "Supplier Status": "Active"})"));
  db.put(
      "supplier-master",
      J(R"({"id": 12, "Supplier Number": "SUP-012", "Supplier Name": "Global Parts", "Supplier Status": "Active"})"));
  db.put(
      "ship-from-master",
      J(R"({"id": 8, "Ship From Number": "SF-01", "Ship From Name": "Acme East", "Supplier Id": 7, "Supplier Number": "SUP-007"})"));
  db.put(
      "ship-from-master",
      J(R"({"id": 9, "Ship From Number": "SF-12", "Ship From Name": "Global North", "Supplier Id": 12, "Supplier Number": "SUP-012"})"));
  db.put(
      "customer-master",
      J(R"({"id": 4, "Customer Number": "CUST-004", "Customer Name": "Beta", "Customer Status": "Active"})"));
  db.put(
      "customer-master",
      J(R"({"id": 5, "Customer Number": "CUST-005", "Customer Name": "Gamma", "Customer Status": "Active"})"));
  db.put(
      "ship-to-master",
      J(R"({"id": 9, "Ship To Number": "ST-09", "Ship To Name": "Beta East", "Customer Id": 4, "Customer Number": "CUST-004"})"));
  db.put(
      "ship-to-master",
      J(R"({"id": 20, "Ship To Number": "ST-20", "Ship To Name": "Gamma West", "Customer Id": 5, "Customer Number": "CUST-005"})"));

  db.put(
      "purchase-order",
      J(R"({"id": 42, "PO List Number": "PO-2024-001", "PO List Order Date": "2024-03-01", "Supplier Id": 7, "Supplier Number": "SUP-007", "Supplier Name": "Acme", "PO Total Items": 2, "PO List Quantity": 500, "PO List Document Status": "Open", "PO List Servicenow Id": null, "Warehouse Number": "WH-01"})"));
  db.put(
      "purchase-order-details",
      J(R"({"id": 101, "PO Details Id": 101, "Purchase Order Id": 42, "PO List Number": "PO-2024-001", "Item Id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "Sub Item Id": null, "Sub Item Number": null, "Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC", "Ship From Id": 8, "Ship From Number": "SF-01", "Ship From Name": "Acme East", "PO Details Quantity": 200, "PO Details Document Status": "Open", "PO Details Ship Date": "2024-03-08"})"));
  db.put(
      "purchase-order-details",
      J(R"({"id": 102, "PO Details Id": 102, "Purchase Order Id": 42, "PO List Number": "PO-2024-001", "Item Id": 56, "Item Number": "ITEM-B", "Item Description": "Widget B", "Sub Item Id": null, "Sub Item Number": null, "Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC", "Ship From Id": 8, "Ship From Number": "SF-01", "Ship From Name": "Acme East", "PO Details Quantity": 300, "PO Details Document Status": "Open"})"));
  db.put(
      "purchase-order",
      J(R"({"id": 43, "PO List Number": "PO-2024-002", "PO List Order Date": "2024-03-05", "Supplier Id": 12, "Supplier Number": "SUP-012", "Supplier Name": "Global Parts", "PO Total Items": 1, "PO List Quantity": 50, "PO List Document Status": "Shipped", "PO List Servicenow Id": null, "Warehouse Number": "WH-01"})"));
  db.put(
      "purchase-order-details",
      J(R"({"id": 103, "PO Details Id": 103, "Purchase Order Id": 43, "PO List Number": "PO-2024-002", "Item Id": 55, "Item Number": "ITEM-A", "Sub Item Number": null, "Warehouse Id": 3, "Warehouse Number": "WH-01", "PO Details Quantity": 50, "PO Details Document Status": "Shipped"})"));
  db.put(
      "purchase-order",
      J(R"({"id": 44, "PO List Number": "PO-2024-003", "PO List Order Date": null, "Supplier Id": 7, "Supplier Number": "SUP-007", "Supplier Name": "Acme", "PO Total Items": 1, "PO List Quantity": 10, "PO List Document Status": "Suggested", "PO List Servicenow Id": null, "Warehouse Number": "WH-01"})"));
  db.put(
      "purchase-order-details",
      J(R"({"id": 104, "PO Details Id": 104, "Purchase Order Id": 44, "PO List Number": "PO-2024-003", "Item Id": 56, "Item Number": "ITEM-B", "Sub Item Number": null, "Warehouse Id": 3, "Warehouse Number": "WH-01", "PO Details Quantity": 10, "PO Details Document Status": "Suggested"})"));

  db.put(
      "sales-order",
      J(R"({"id": 30, "SO List Number": "SO-1", "Customer Id": 4, "Customer Number": "CUST-004", "Customer Name": "Beta", "Ship To Id": 9, "Ship To Number": "ST-09", "Ship To Name": "Beta East", "SO List Document Status": "Open", "SO Total Items": 1, "SO List Quantity": 5, "Warehouse Number": "WH-01"})"));
  db.put(
      "sales-order-details",
      J(R"({"id": 301, "SO Details Id": 301, "Sales Order Id": 30, "SO List Number": "SO-1", "Item Id": 55, "Item Number": "ITEM-A", "Sub Item Number": null, "Warehouse Id": 3, "Warehouse Number": "WH-01", "SO Details Quantity": 5})"));
  db.put(
      "manufacturing-order",
      J(R"({"id": 55, "MO List Number": "MO-1", "MO List Order Date": "2024-03-01", "MO List Document Status": "Open", "Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC", "MO Total Items": 1, "MO List Quantity": 10,
               "details": [{"id": 501, "MO Details Id": 501, "Manufacturing Order Id": 55, "MO List Number": "MO-1", "Item Id": 55, "Item Number": "ITEM-A", "Sub Item Id": 70, "Sub Item Number": "SUB-A1", "Warehouse Number": "WH-01", "MO Details Quantity": 10, "MO Details Document Status": "Open"}]})"));
  db.put(
      "forecast",
      J(R"({"id": 77, "Forecast List Number": "FC-1", "Forecast List Date": "2024-01-01", "Forecast List Document Status": "Active", "Warehouse Number": "WH-01", "Forecast Total Items": 1, "Forecast List Quantity": 5,
               "details": [{"id": 601, "Forecast Details Id": 601, "Forecast Id": 77, "Forecast List Number": "FC-1", "Item Id": 55, "Item Number": "ITEM-A", "Warehouse Id": 3, "Warehouse Number": "WH-01", "Forecast Details Quantity": 5, "Forecast Details Date": "2024-01-15", "Forecast Details Document Status": "Active"}]})"));
  db.put(
      "bill-of-materials",
      J(R"({"id": 901, "BOM Number": "BOM-A", "Item Id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "BOM Status": "Active", "BOM Total Components": 1,
               "details": [{"id": 951, "BOM Id": 901, "BOM Number": "BOM-A", "Component Item Id": 60, "Component Item Number": "COMP-X", "Component Description": "Component X", "Component Quantity": 2, "Component Unit": "KG"}]})"));
  db.put(
      "asn",
      J(R"({"id": 1001, "ASN Number": "ASN-1", "BOL": null, "ETA": "2024-03-15", "Ship Date": "2024-03-08", "Timestamp": "2024-03-07T14:30:00Z", "ASN Status": "Not Sent", "Supplier Id": 7, "Supplier Number": "SUP-007", "Supplier Name": "Acme", "Ship From Id": 8, "Ship From Number": "SF-01", "Ship From Name": "Acme East", "Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC", "ASN Total Items": 1, "ASN Total Quantity": 200,
               "From": {"Supplier Id": 7, "Supplier Number": "SUP-007", "Ship From Id": 8, "Ship From Number": "SF-01", "Ship From Name": "Acme East"},
               "To": {"Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC"},
               "details": [{"id": 1051, "ASN Id": 1001, "ASN Number": "ASN-1", "Item Id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "Sub Item Id": null, "Sub Item Number": null, "ASN Details Quantity": 200, "ASN Details ETA": null, "ASN Details Ship Date": null, "Purchase Order Id": 42, "PO List Number": "PO-2024-001", "PO Details Id": 101}]})"));
  db.put(
      "inventory",
      J(R"({"id": 601, "Item Id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "Sub Item Id": null, "Sub Item Number": null, "Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC", "Inventory Quantity": 850, "Inventory Date": "2024-03-01", "Inventory Unique Id": null})"));
  db.put(
      "external-item-master",
      J(R"({"id": 801, "Item Id": 55, "Item Number": "ITEM-A", "External Item Number": "EXT-1", "External System": "SAP", "External Description": null, "Status": "Active"})"));
  db.put(
      "supplier-allocation",
      J(R"({"id": 1101, "Item Id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "Supplier Id": 7, "Supplier Number": "SUP-007", "Supplier Name": "Acme", "Allocation Percentage": 70, "Priority": 1, "Status": "Active"})"));
  db.put(
      "issue-tracker-tickets",
      J(R"({"id": "TKT-001", "Title": "Late", "Description": null, "Status": "Open", "Priority": "High", "Category": "Procurement", "Assignee Email": "jane@acme.com", "Reporter Email": "john@acme.com", "Created At": "2024-03-10T09:00:00Z", "Updated At": "2024-03-10T09:00:00Z", "Due Date": null, "Linked PO Id": 43, "Linked PO Number": "PO-2024-002",
               "Notes": [{"id": 5, "Ticket Id": "TKT-001", "Note": "Called them", "Author Email": "john@acme.com", "Created At": "2024-03-10T10:00:00Z"}],
               "Subscribers": ["jane@acme.com", "John@Acme.com"]})"));
  db.put(
      "scenario-analysis",
      J(R"({"id": 7, "Scenario Name": "Q2", "Scenario Description": null, "Scenario Status": "Draft", "Scenario Demand Change Percentage": 0, "Created At": "2024-03-01T10:00:00Z", "Updated At": "2024-03-01T10:00:00Z", "Created By": "jane@acme.com"})"));
}

const char* kNow = "2025-03-03T12:00:00Z";

// Local ids as the daemon hands them out: -1, -2, ... per resource; "local-n" for string ids.
struct Ids {
  std::map<std::string, std::int64_t> next;
  std::vector<std::string> asked;
  RecordId operator()(const Resource& res) {
    asked.push_back(res.name);
    const auto n = ++next[res.name];
    if (res.id_type == schema::IdType::String) return replica::kLocalStringIdPrefix + std::to_string(n);
    return -n;
  }
};

struct Fixture {
  const Catalog& catalog = Catalog::builtin();
  MapLookup db{catalog};
  Ids ids;
  Fixture() { load_tenant(db); }

  std::variant<EditPlan, EditError> run(const std::string& method, std::vector<std::string> path,
                                        const std::optional<Json>& body) {
    EditRequest req;
    req.method = method;
    req.path = std::move(path);
    req.body = body ? &*body : nullptr;
    req.now_iso = kNow;
    req.user_email = "clerk@plant.example";
    replica::LocalIdAllocator next = [this](const Resource& r) { return ids(r); };
    return replica::plan_edit(catalog, db, req, next);
  }
  EditPlan ok(const std::string& method, std::vector<std::string> path,
              const std::optional<Json>& body = {}) {
    auto out = run(method, std::move(path), body);
    if (auto* e = std::get_if<EditError>(&out))
      FAIL("refused: " << e->status << " " << e->code << " " << e->message);
    return std::get<EditPlan>(std::move(out));
  }
};

const Json& record_of(const EditPlan& plan, const std::string& resource, const RecordId& id) {
  for (const auto& r : plan.records)
    if (r.res->name == resource && r.id == id) {
      REQUIRE(r.record);
      return *r.record;
    }
  FAIL("no record " << resource << " " << replica::to_string(id));
  throw std::logic_error("unreachable");
}

bool deletes(const EditPlan& plan, const std::string& resource, const RecordId& id) {
  for (const auto& r : plan.records)
    if (r.res->name == resource && r.id == id) return !r.record;
  return false;
}

std::vector<std::string> keys_of(const Json& rec) {
  std::vector<std::string> out;
  for (const auto& [k, v] : rec.items())
    out.push_back(k);
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------------------------
// Refusals: Knosc's status, code and message for every kind of check, for every kind of resource
// ------------------------------------------------------------------------------------------------------------

TEST_CASE("local edits are refused with Knosc's error for every kind of check", "[local_edit]") {
  struct Case {
    std::string method;
    std::vector<std::string> path;
    std::optional<std::string> body;
    int status;
    std::string code;
    std::string message;
  };
  const char* po_line = R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 5})";
  const std::string po = std::string(
      R"({"PO List Number": "PO-NEW", "PO List Document Status": "Open", "Supplier Number": "SUP-007", "details": [)");
  const auto po_with = [&](const std::string& lines) { return po + lines + "]}"; };
  const std::vector<Case> cases = {
      // Routes and bodies
      {"POST", {"no-such-list"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"PATCH", {"item-master", "55"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"POST", {"item-master", "55"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"PUT", {"item-master"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"POST", {"role"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"PUT", {"purchase-order-details", "101"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"POST", {"purchase-order-details"}, "{}", 404, "Route.NotFound", "Not Found"},
      {"POST", {"item-master"}, std::nullopt, 400, "JSON.Invalid", "Bad Request Format"},
      {"POST", {"item-master"}, "[1, 2]", 400, "JSON.Invalid", "Bad Request Format"},
      {"POST",
       {"user"},
       R"({"Username": "x"})",
       503,
       "Sync.Offline",
       "Changes to User records are made in Knosc and need the link to it; try again when it is back."},
      // Unknown ids: the resource's NotFound
      {"PUT", {"item-master", "999"}, "{}", 400, "ItemMaster.NotFound", "Item #999 not found."},
      {"PUT", {"item-master", "abc"}, "{}", 400, "ItemMaster.NotFound", "Item #abc not found."},
      {"DELETE",
       {"supplier-master", "999"},
       std::nullopt,
       400,
       "SupplierMaster.NotFound",
       "Supplier #999 not found."},
      {"PUT", {"purchase-order", "999"}, "{}", 400, "PurchaseOrderList.NotFound", "PO #999 not found."},
      {"DELETE",
       {"purchase-order-details", "999"},
       std::nullopt,
       400,
       "PurchaseOrderDetails.NotFound",
       "PO Detail #999 not found."},
      {"PUT",
       {"issue-tracker-tickets", "TKT-404"},
       "{}",
       400,
       "IssueTrackerTickets.NotFound",
       "Ticket TKT-404 not found."},
      // Missing required keys
      {"POST",
       {"item-master"},
       R"({"Item Description": "x"})",
       400,
       "ItemMaster.MissingField",
       "Missing required field: Item Number"},
      {"POST",
       {"item-master"},
       R"({"Item Number": null})",
       400,
       "ItemMaster.MissingField",
       "Missing required field: Item Number"},
      {"POST",
       {"customer-master"},
       R"({"Customer Number": "C-9"})",
       400,
       "CustomerMaster.MissingField",
       "Missing required field: Customer Name"},
      {"POST",
       {"ship-to-master"},
       R"({"Ship To Number": "ST-X", "Ship To Name": "x"})",
       400,
       "ShipToMaster.MissingField",
       "Missing required field: Customer Number"},
      {"POST",
       {"issue-tracker-tickets"},
       R"({"Description": "x"})",
       400,
       "IssueTrackerTickets.MissingField",
       "Missing required field: Title"},
      {"POST",
       {"purchase-order"},
       (po_with(R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01"})")),
       400,
       "PurchaseOrderList.MissingField",
       "Missing required field: PO Details Quantity (line 1)"},
      {"POST",
       {"forecast"},
       R"({"Forecast List Number": "FC-9", "details": [{"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "Forecast Details Quantity": 1}]})",
       400,
       "ForecastList.MissingField",
       "Missing required field: Forecast Details Date (line 1)"},
      // Wrong types
      {"POST",
       {"item-master"},
       R"({"Item Number": "I-9", "Item Type": "Gadget"})",
       400,
       "ItemMaster.InvalidField",
       "Field 'Item Type' must be one of: Finished Good, Component, Raw Material."},
      {"POST",
       {"item-master"},
       R"({"Item Number": "I-9", "Item Weight": "heavy"})",
       400,
       "ItemMaster.InvalidField",
       "Field 'Item Weight' must be a number."},
      {"POST",
       {"item-master"},
       R"({"Item Number": " \t"})",
       400,
       "ItemMaster.InvalidField",
       "Field 'Item Number' must not be empty."},
      {"POST",
       {"item-master"},
       R"({"Item Number": 17})",
       400,
       "ItemMaster.InvalidField",
       "Field 'Item Number' must be a string."},
      {"POST",
       {"item-master"},
       R"({"Item Number": "I-9", "Item Status": null})",
       400,
       "ItemMaster.InvalidField",
       "Field 'Item Status' must be one of: Active, Inactive."},
      {"POST",
       {"inventory"},
       R"({"Item Number": "ITEM-B", "Warehouse Number": "WH-01", "Inventory Quantity": 1, "Inventory Date": "2024-02-30"})",
       400,
       "Inventory.InvalidField",
       "Field 'Inventory Date' must be a date (YYYY-MM-DD)."},
      {"POST",
       {"supplier-allocation"},
       R"({"Item Number": "ITEM-B", "Supplier Number": "SUP-007", "Allocation Percentage": 10, "Priority": 1.5})",
       400,
       "SupplierAllocation.InvalidField",
       "Field 'Priority' must be an integer."},
      {"POST",
       {"scenario-analysis"},
       R"({"Scenario Name": "S", "Scenario Status": "Live"})",
       400,
       "ScenarioAnalysis.InvalidField",
       "Field 'Scenario Status' must be one of: Active, Draft, Archived."},
      {"POST",
       {"purchase-order"},
       (po_with(R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": "5"})")),
       400,
       "PurchaseOrderList.InvalidField",
       "Field 'PO Details Quantity (line 1)' must be a number."},
      {"POST",
       {"purchase-order"},
       (po_with(R"({"Item Number": 5, "Warehouse Number": "WH-01", "PO Details Quantity": 5})")),
       400,
       "PurchaseOrderList.InvalidField",
       "Field 'Item Number (line 1)' must be a non-empty string."},
      {"POST",
       {"purchase-order"},
       (po_with("7")),
       400,
       "PurchaseOrderList.InvalidField",
       "Each entry of 'details' must be an object (line 1)."},
      {"POST",
       {"purchase-order"},
       R"({"PO List Number": "PO-NEW", "PO List Document Status": "Pending", "Supplier Number": "SUP-007", "details": []})",
       400,
       "PurchaseOrderList.InvalidField",
       "Field 'PO List Document Status' must be one of: Suggested, Planned, Open, Shipped, Partially "
       "Received, "
       "Received, Closed, Cancelled."},
      {"POST",
       {"purchase-order"},
       R"({"PO List Number": "PO-NEW", "PO List Document Status": "Open", "Supplier Number": "SUP-007", "details": {}})",
       400,
       "PurchaseOrderList.InvalidField",
       "Field 'details' must be an array."},
      {"POST",
       {"manufacturing-order"},
       R"({"MO List Number": "MO-9", "MO List Document Status": "Open", "Warehouse Number": "WH-01", "details": [{"Item Number": "ITEM-A", "MO Details Quantity": 1, "MO Details Document Status": null}]})",
       400,
       "ManufacturingOrderList.InvalidField",
       "Field 'MO Details Document Status (line 1)' must be one of: Planned, Open, In Progress, Completed, "
       "Closed, Cancelled."},
      {"POST",
       {"issue-tracker-tickets"},
       R"({"Title": "t", "Subscribers": "a@b.c"})",
       400,
       "IssueTrackerTickets.InvalidField",
       "Field 'Subscribers' must be an array of e-mail addresses."},
      {"POST",
       {"asn"},
       R"({"ASN Number": "ASN-9", "Supplier Number": "SUP-007", "Ship From Number": "SF-01", "Warehouse Number": "WH-01", "details": [{"Item Number": "ITEM-A", "ASN Details Quantity": 1, "PO Details Id": "101"}]})",
       400,
       "ASN.InvalidField",
       "Field 'PO Details Id (line 1)' must be an integer."},
      // Unknown referenced numbers: the referenced resource's NotFound
      {"POST",
       {"item-master"},
       R"({"Item Number": "I-9", "Item Unit": "PALLET"})",
       400,
       "UnitMaster.NotFound",
       "Unit PALLET not found."},
      {"POST",
       {"sub-item-master"},
       R"({"Sub Item Number": "S-9", "Item Number": "ITEM-Z"})",
       400,
       "ItemMaster.NotFound",
       "Item ITEM-Z not found."},
      {"POST",
       {"purchase-order"},
       R"({"PO List Number": "PO-NEW", "PO List Document Status": "Open", "Supplier Number": "SUP-999", "details": []})",
       400,
       "SupplierMaster.NotFound",
       "Supplier SUP-999 not found."},
      {"POST",
       {"purchase-order"},
       (po_with(std::string(po_line) +
                R"(, {"Item Number": "ITEM-Z", "Warehouse Number": "WH-01", "PO Details Quantity": 5})")),
       400,
       "ItemMaster.NotFound",
       "Item ITEM-Z not found."},
      {"POST",
       {"asn"},
       R"({"ASN Number": "ASN-9", "Supplier Number": "SUP-007", "Ship From Number": "SF-01", "Warehouse Number": "WH-01", "details": [{"Item Number": "ITEM-A", "ASN Details Quantity": 1, "PO Details Id": 999}]})",
       400,
       "PurchaseOrderDetails.NotFound",
       "PO Detail #999 not found."},
      {"POST",
       {"issue-tracker-tickets"},
       R"({"Title": "t", "Linked PO Number": "PO-404"})",
       400,
       "PurchaseOrderList.NotFound",
       "PO PO-404 not found."},
      {"POST",
       {"issue-tracker-tickets"},
       R"({"Title": "t", "Linked PO Id": 999})",
       400,
       "PurchaseOrderList.NotFound",
       "PO #999 not found."},
      {"PUT",
       {"purchase-order", "42"},
       R"({"PO List Number": "PO-2024-001", "PO List Document Status": "Open", "Supplier Number": "SUP-007", "details": [{"id": 999, "Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 1}]})",
       400,
       "PurchaseOrderDetails.NotFound",
       "PO Detail #999 not found."},
      // Belongs-to rules
      {"POST",
       {"inventory"},
       R"({"Item Number": "ITEM-A", "Sub Item Number": "SUB-B1", "Warehouse Number": "WH-02", "Inventory Quantity": 1})",
       400,
       "Inventory.InvalidField",
       "Sub Item SUB-B1 does not belong to Item ITEM-A."},
      {"POST",
       {"purchase-order"},
       (po_with(
           R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "Ship From Number": "SF-12", "PO Details Quantity": 5})")),
       400,
       "PurchaseOrderList.InvalidField",
       "Ship From SF-12 (line 1) does not belong to Supplier SUP-007."},
      {"POST",
       {"sales-order"},
       R"({"SO List Number": "SO-9", "SO List Document Status": "Open", "Customer Number": "CUST-005", "Ship To Number": "ST-09", "details": [{"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "SO Details Quantity": 1}]})",
       400,
       "SalesOrderList.InvalidField",
       "Ship To ST-09 does not belong to Customer CUST-005."},
      {"POST",
       {"asn"},
       R"({"ASN Number": "ASN-9", "Supplier Number": "SUP-007", "Ship From Number": "SF-12", "Warehouse Number": "WH-01", "details": []})",
       400,
       "ASN.InvalidField",
       "Ship From SF-12 does not belong to Supplier SUP-007."},
      {"POST",
       {"asn"},
       R"({"ASN Number": "ASN-9", "Supplier Number": "SUP-007", "Ship From Number": "SF-01", "Warehouse Number": "WH-01", "details": [{"Item Number": "ITEM-A", "ASN Details Quantity": 1, "PO Details Id": 102}]})",
       400,
       "ASN.InvalidField",
       "ASN line (line 1) names item ITEM-A but PO Detail #102 is for item ITEM-B."},
      // Duplicate business keys
      {"POST",
       {"item-master"},
       R"({"Item Number": "ITEM-A"})",
       400,
       "ItemMaster.AlreadyExists",
       "Item ITEM-A already exists."},
      {"PUT",
       {"item-master", "56"},
       R"({"Item Number": "ITEM-A"})",
       400,
       "ItemMaster.AlreadyExists",
       "Item ITEM-A already exists."},
      {"POST",
       {"inventory"},
       R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "Inventory Quantity": 1})",
       400,
       "Inventory.AlreadyExists",
       "Inventory record ITEM-A / WH-01 already exists."},
      {"POST",
       {"external-item-master"},
       R"({"External Item Number": "EXT-1", "External System": "SAP", "Item Number": "ITEM-B"})",
       400,
       "ExternalItemMaster.AlreadyExists",
       "External Item EXT-1 / SAP already exists."},
      {"POST",
       {"purchase-order"},
       R"({"PO List Number": "PO-2024-002", "PO List Document Status": "Open", "Supplier Number": "SUP-007", "details": []})",
       400,
       "PurchaseOrderList.AlreadyExists",
       "PO PO-2024-002 already exists."},
      // Document rules
      {"POST",
       {"purchase-order"},
       (po_with("")),
       400,
       "OrderList.NoItems",
       "Purchase order must contain at least one item"},
      {"POST",
       {"purchase-order"},
       R"({"PO List Number": "PO-NEW", "PO List Document Status": "Open", "Supplier Number": "SUP-007"})",
       400,
       "OrderList.NoItems",
       "Purchase order must contain at least one item"},
      {"POST",
       {"purchase-order"},
       (po_with(std::string(po_line) +
                R"(, {"Item Number": "ITEM-B", "Warehouse Number": "WH-02", "PO Details Quantity": 5})")),
       400,
       "OrderList.MultipleWarehouses",
       "All items must be for the same warehouse"},
      {"POST",
       {"purchase-order"},
       (po_with(std::string(po_line) + ", " + po_line)),
       400,
       "OrderDetails.DuplicateRows",
       "Duplicate entries found in order details"},
      {"POST",
       {"purchase-order"},
       (po_with(
           R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 5, "PO Details Order Date": "2024-03-09", "PO Details Ship Date": "2024-03-08"})")),
       400,
       "PurchaseOrderDetails.OrderDateAfterShip",
       "Order date cannot be after ship date"},
      {"PUT",
       {"purchase-order", "42"},
       R"({"PO List Number": "PO-2024-001", "PO List Document Status": "Open", "Supplier Number": "SUP-007", "details": [{"id": 102, "Item Number": "ITEM-B", "Warehouse Number": "WH-01", "PO Details Quantity": 1}, {"PO Details Id": 102, "Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 1}]})",
       400,
       "PurchaseOrderList.InvalidField",
       "PO Detail #102 appears twice in 'details'."},
      {"POST",
       {"manufacturing-order"},
       R"({"MO List Number": "MO-9", "MO List Document Status": "Open", "Warehouse Number": "WH-01", "details": [{"Item Number": "ITEM-A", "Warehouse Number": "WH-02", "MO Details Quantity": 1}]})",
       400,
       "OrderList.MultipleWarehouses",
       "All items must be for the same warehouse"},
      {"POST",
       {"forecast"},
       R"({"Forecast List Number": "FC-9", "details": [{"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "Forecast Details Quantity": 1, "Forecast Details Date": "2024-01-01"}, {"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "Forecast Details Quantity": 2, "Forecast Details Date": "2024-01-01"}]})",
       400,
       "OrderDetails.DuplicateRows",
       "Duplicate entries found in order details"},
      {"POST",
       {"bill-of-materials"},
       R"({"BOM Number": "BOM-9", "Item Number": "ITEM-B", "details": []})",
       400,
       "BillOfMaterials.NoItems",
       "Bill of materials must contain at least one component"},
      {"POST",
       {"bill-of-materials"},
       R"({"BOM Number": "BOM-9", "Item Number": "ITEM-B", "details": [{"Component Item Number": "COMP-X", "Component Quantity": 1}, {"Component Item Number": "COMP-X", "Component Quantity": 2}]})",
       400,
       "BillOfMaterials.DuplicateRows",
       "Duplicate components found in bill of materials"},
      {"POST",
       {"supplier-allocation"},
       R"({"Item Number": "ITEM-A", "Supplier Number": "SUP-012", "Allocation Percentage": 40})",
       400,
       "SupplierAllocation.ExceedsTotal",
       "Total allocation for item ITEM-A would exceed 100% (70% already allocated)."},
      {"POST",
       {"supplier-allocation"},
       R"({"Item Number": "ITEM-B", "Supplier Number": "SUP-012", "Allocation Percentage": 120})",
       400,
       "SupplierAllocation.InvalidField",
       "Field 'Allocation Percentage' must be between 0 and 100."},
      {"POST",
       {"supplier-allocation"},
       R"({"Item Number": "ITEM-B", "Supplier Number": "SUP-012", "Allocation Percentage": 20, "Priority": 0})",
       400,
       "SupplierAllocation.InvalidField",
       "Field 'Priority' must be 1 or more."},
      // Records still in use
      {"DELETE",
       {"item-master", "55"},
       std::nullopt,
       400,
       "ItemMaster.StillInUse",
       "Item ITEM-A is still in use and cannot be deleted."},
      {"DELETE",
       {"item-master", "60"},
       std::nullopt,
       400,
       "ItemMaster.StillInUse",
       "Item COMP-X is still in use and cannot be deleted."},  // only a BOM component line names it
      {"DELETE",
       {"sub-item-master", "70"},
       std::nullopt,
       400,
       "SubItemMaster.StillInUse",
       "Sub Item SUB-A1 is still in use and cannot be deleted."},  // only an MO line names it
      {"DELETE",
       {"unit-master", "1"},
       std::nullopt,
       400,
       "UnitMaster.StillInUse",
       "Unit EA is still in use and cannot be deleted."},
      {"DELETE",
       {"supplier-master", "7"},
       std::nullopt,
       400,
       "SupplierMaster.StillInUse",
       "Supplier SUP-007 is still in use and cannot be deleted."},
      {"DELETE",
       {"customer-master", "4"},
       std::nullopt,
       400,
       "CustomerMaster.StillInUse",
       "Customer CUST-004 is still in use and cannot be deleted."},
      {"DELETE",
       {"ship-to-master", "9"},
       std::nullopt,
       400,
       "ShipToMaster.StillInUse",
       "Ship To ST-09 is still in use and cannot be deleted."},
      {"DELETE", {"warehouse-master", "4"}, std::nullopt, 200, "", ""},  // unused: allowed (checked below)
      {"DELETE",
       {"warehouse-master", "3"},
       std::nullopt,
       400,
       "WarehouseMaster.StillInUse",
       "Warehouse WH-01 is still in use and cannot be deleted."},
      {"DELETE",
       {"purchase-order", "42"},
       std::nullopt,
       400,
       "PurchaseOrderList.StillInUse",
       "PO #PO-2024-001 is still in use and cannot be deleted."},
      {"DELETE",
       {"purchase-order-details", "101"},
       std::nullopt,
       400,
       "PurchaseOrderDetails.StillInUse",
       "PO Detail #101 is still in use and cannot be deleted."},
      {"PUT",
       {"purchase-order", "42"},
       R"({"PO List Number": "PO-2024-001", "PO List Document Status": "Open", "Supplier Number": "SUP-007", "details": [{"id": 102, "Item Number": "ITEM-B", "Warehouse Number": "WH-01", "PO Details Quantity": 1}]})",
       400,
       "PurchaseOrderDetails.StillInUse",
       "PO Detail #101 is still in use and cannot be deleted."},
      // Notes and subscribers
      {"POST",
       {"issue-tracker-notes"},
       R"({"Ticket Id": "TKT-001"})",
       400,
       "IssueTrackerNotes.MissingField",
       "Missing required field: Note"},
      {"POST",
       {"issue-tracker-notes"},
       R"({"Ticket Id": "TKT-404", "Note": "x"})",
       400,
       "IssueTrackerTickets.NotFound",
       "Ticket TKT-404 not found."},
      {"PUT",
       {"issue-tracker-notes", "999"},
       R"({"Note": "x"})",
       400,
       "IssueTrackerNotes.NotFound",
       "Note #999 not found."},
      {"PUT",
       {"issue-tracker-notes", "5"},
       R"({"Note": ""})",
       400,
       "IssueTrackerNotes.InvalidField",
       "Field 'Note' must not be empty."},
      {"GET", {"issue-tracker-notes", "5"}, std::nullopt, 404, "Route.NotFound", "Not Found"},
      {"POST",
       {"issue-tracker-tickets", "TKT-001", "subscribers"},
       "{}",
       400,
       "IssueTrackerSubscribers.MissingField",
       "Missing required field: email"},
      {"POST",
       {"issue-tracker-tickets", "TKT-001", "subscribers"},
       R"({"email": "nobody"})",
       400,
       "IssueTrackerSubscribers.InvalidField",
       "Field 'email' must be an e-mail address."},
      {"DELETE",
       {"issue-tracker-tickets", "TKT-001", "subscribers"},
       R"({"email": "x@y.com"})",
       400,
       "IssueTrackerSubscribers.NotFound",
       "x@y.com is not subscribed to TKT-001."},
      {"POST",
       {"issue-tracker-tickets", "TKT-404", "subscribers"},
       R"({"email": "x@y.com"})",
       400,
       "IssueTrackerTickets.NotFound",
       "Ticket TKT-404 not found."},
      // Line helpers
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": []})",
       400,
       "PurchaseOrderDetails.InvalidMove",
       "'moves' must be a non-empty list."},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 101, "Old Purchase Order List Id": 42}]})",
       400,
       "PurchaseOrderDetails.InvalidMove",
       "Move 1: give exactly one of 'New Purchase Order List Id' and 'New Purchase Order List Number'."},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 101, "Old Purchase Order List Id": 42, "New Purchase Order List Id": 44}, {"id": 102, "Old Purchase Order List Id": 42, "New Purchase Order List Id": 43}]})",
       400,
       "PurchaseOrderDetails.InvalidMove",
       "All moves must share one target purchase order."},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 103, "Old Purchase Order List Id": 42, "New Purchase Order List Id": 44}]})",
       400,
       "PurchaseOrderDetails.NotFound",
       "PO Detail #103 not found."},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 101, "Old Purchase Order List Id": 42, "New Purchase Order List Id": 42}]})",
       400,
       "PurchaseOrderDetails.InvalidMove",
       "Source and target purchase orders are the same."},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 101, "Old Purchase Order List Id": 42, "New Purchase Order List Number": "PO-2024-002"}]})",
       400,
       "PurchaseOrderList.AlreadyExists",
       "PO PO-2024-002 already exists."},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 101, "Old Purchase Order List Id": 42, "New Purchase Order List Id": 43}]})",
       400,
       "OrderDetails.DuplicateRows",
       "Duplicate entries found in order details"},
      {"PUT",
       {"purchase-order-details-move-lines"},
       R"({"moves": [{"id": 101, "Old Purchase Order List Id": 999, "New Purchase Order List Id": 43}]})",
       400,
       "PurchaseOrderList.NotFound",
       "PO #999 not found."},
  };
  for (const auto& c : cases) {
    Fixture f;
    INFO(c.method << " /" << c.path[0] << (c.path.size() > 1 ? "/" + c.path[1] : "") << " "
                  << c.body.value_or(""));
    std::optional<Json> body;
    if (c.body) body = Json::parse(*c.body);
    auto out = f.run(c.method, c.path, body);
    if (c.status == 200) {
      CHECK(std::holds_alternative<EditPlan>(out));
      continue;
    }
    REQUIRE(std::holds_alternative<EditError>(out));
    const auto& e = std::get<EditError>(out);
    CHECK(e.status == c.status);
    CHECK(e.code == c.code);
    CHECK(e.message == c.message);
    CHECK_FALSE(e.body);
    // A refused write hands out no local id.
    CHECK(f.ids.asked.empty());
  }
}

TEST_CASE("accept-suggested-orders refuses with its own {\"error\": ...} body", "[local_edit]") {
  struct Case {
    const char* body;
    std::string error;
  };
  const std::vector<Case> cases = {
      {R"({"parentIds": [44]})", "Missing required field: status"},
      {R"({"status": "Approved", "parentIds": [44]})",
       "status must be one of: Suggested, Planned, Open, Shipped, Partially Received, Received, Closed, "
       "Cancelled"},
      {R"({"status": "Open", "parentIds": []})", "parentIds must be a non-empty list of integers"},
      {R"({"status": "Open", "parentIds": [44, "45"]})", "parentIds must be a non-empty list of integers"},
      {R"({"status": "Open", "parentIds": [44, 999]})", "Purchase order 999 not found"},
  };
  for (const auto& c : cases) {
    INFO(c.body);
    Fixture f;
    auto out = f.run("PUT", {"purchase-order-details-accept-suggested-orders"}, Json::parse(c.body));
    REQUIRE(std::holds_alternative<EditError>(out));
    const auto& e = std::get<EditError>(out);
    CHECK(e.status == 400);
    REQUIRE(e.body);
    CHECK(*e.body == Json{{"error", c.error}});
  }
}

// ------------------------------------------------------------------------------------------------------------
// Master data (partial updates)
// ------------------------------------------------------------------------------------------------------------

TEST_CASE("master data: create, partial update and delete, with Knosc's bodies", "[local_edit]") {
  Fixture f;
  SECTION("create fills defaults, resolves references and gets a local id") {
    auto plan = f.ok("POST", {"item-master"}, J(R"({"Item Number": "ITEM-NEW", "Item Unit": "BOX"})"));
    CHECK(plan.op == "create");
    CHECK(plan.res->name == "item-master");
    CHECK(plan.id == RecordId(std::int64_t{-1}));
    CHECK(plan.response == J(R"({"message": "Created successfully.", "id": -1})"));
    REQUIRE(plan.records.size() == 1);
    const Json& rec = *plan.records[0].record;
    CHECK(rec ==
          J(R"({"id": -1, "Item Number": "ITEM-NEW", "Item Description": null, "Item Type": "Finished Good",
                       "Item Unit": "BOX", "Item Status": "Active", "Item Servicenow Id": null, "Item Weight": null,
                       "Item Weight Unit": null})"));
    CHECK(keys_of(rec).front() == "id");
  }
  SECTION("a derived list starts empty") {
    auto plan =
        f.ok("POST", {"supplier-master"}, J(R"({"Supplier Number": "SUP-NEW", "Supplier Name": "New"})"));
    CHECK(plan.records[0].record->at("Ship From Locations") == Json::array());
  }
  SECTION("references store number, id and copied names") {
    auto plan = f.ok("POST", {"inventory"},
                     J(R"({"Item Number": "ITEM-A", "Sub Item Number": "SUB-A1", "Warehouse Number": "WH-02",
                           "Inventory Quantity": 12.5})"));
    const Json& rec = *plan.records[0].record;
    CHECK(rec["Item Id"] == 55);
    CHECK(rec["Item Description"] == "Widget A");
    CHECK(rec["Sub Item Id"] == 70);
    CHECK(rec["Warehouse Id"] == 4);
    CHECK(rec["Warehouse Name"] == "West DC");
    CHECK(rec["Inventory Quantity"] == 12.5);
  }
  SECTION("an update changes only the keys sent") {
    auto plan =
        f.ok("PUT", {"item-master", "56"}, J(R"({"Item Description": "Widget B2", "Item Unit": null})"));
    CHECK(plan.op == "update");
    CHECK(plan.response == J(R"({"message": "Update successful"})"));
    const Json& rec = record_of(plan, "item-master", std::int64_t{56});
    CHECK(rec ==
          J(R"({"id": 56, "Item Number": "ITEM-B", "Item Description": "Widget B2", "Item Type": "Component",
                       "Item Unit": null, "Item Status": "Active"})"));
  }
  SECTION("an update re-checks unchanged references against changed ones") {
    auto out = f.run("PUT", {"inventory", "601"}, J(R"({"Sub Item Number": "SUB-B1"})"));
    REQUIRE(std::holds_alternative<EditError>(out));
    CHECK(std::get<EditError>(out).message == "Sub Item SUB-B1 does not belong to Item ITEM-A.");
  }
  SECTION("an allocation may take what is left of the item") {
    auto plan =
        f.ok("POST", {"supplier-allocation"},
             J(R"({"Item Number": "ITEM-A", "Supplier Number": "SUP-012", "Allocation Percentage": 30})"));
    CHECK(plan.records[0].record->at("Priority") == 1);
    CHECK(plan.records[0].record->at("Supplier Name") == "Global Parts");
    // Its own share does not count against itself on update.
    CHECK(std::holds_alternative<EditPlan>(
        f.run("PUT", {"supplier-allocation", "1101"}, J(R"({"Allocation Percentage": 100})"))));
  }
  SECTION("delete of an unused record") {
    auto plan = f.ok("DELETE", {"item-master", "62"});
    CHECK(plan.op == "delete");
    CHECK(plan.response == J(R"({"message": "Deleted successfully."})"));
    REQUIRE(plan.records.size() == 1);
    CHECK(deletes(plan, "item-master", std::int64_t{62}));
  }
  SECTION("delete cascades to children") {
    auto plan = f.ok("DELETE", {"customer-master", "5"});
    REQUIRE(plan.records.size() == 2);
    CHECK(plan.records[0].res->name == "customer-master");
    CHECK(deletes(plan, "customer-master", std::int64_t{5}));
    CHECK(deletes(plan, "ship-to-master", std::int64_t{20}));
  }
  SECTION("a local id in the path names a record created locally") {
    auto created = f.ok("POST", {"unit-master"}, J(R"({"Unit Code": "PAL"})"));
    f.db.apply(created);
    auto plan = f.ok("PUT", {"unit-master", "-1"}, J(R"({"Unit Name": "Pallet"})"));
    CHECK(record_of(plan, "unit-master", std::int64_t{-1})["Unit Name"] == "Pallet");
    CHECK(std::get<EditError>(f.run("POST", {"unit-master"}, J(R"({"Unit Code": "PAL"})"))).code ==
          "UnitMaster.AlreadyExists");
  }
}

TEST_CASE("scenarios and tickets: stamps, reporter, linked order, subscribers", "[local_edit]") {
  Fixture f;
  SECTION("a scenario is stamped with the time and the caller") {
    auto plan = f.ok("POST", {"scenario-analysis"}, J(R"({"Scenario Name": "Q3"})"));
    CHECK(*plan.records[0].record ==
          J(R"({"id": -1, "Scenario Name": "Q3", "Scenario Description": null, "Scenario Status": "Draft",
                "Scenario Demand Change Percentage": 0, "Created At": "2025-03-03T12:00:00Z",
                "Updated At": "2025-03-03T12:00:00Z", "Created By": "clerk@plant.example"})"));
    auto upd = f.ok("PUT", {"scenario-analysis", "7"}, J(R"({"Scenario Status": "Active"})"));
    const Json& rec = *upd.records[0].record;
    CHECK(rec["Created At"] == "2024-03-01T10:00:00Z");
    CHECK(rec["Updated At"] == kNow);
    CHECK(rec["Created By"] == "jane@acme.com");
  }
  SECTION("a ticket gets a string local id, the caller as reporter and default subscribers") {
    auto plan = f.ok("POST", {"issue-tracker-tickets"},
                     J(R"({"Title": "Short shipment", "Assignee Email": "jane@acme.com",
                           "Linked PO Number": "PO-2024-001"})"));
    CHECK(plan.id == RecordId(std::string("local-1")));
    CHECK(plan.response == J(R"({"message": "Created successfully.", "id": "local-1"})"));
    CHECK(*plan.records[0].record ==
          J(R"({"id": "local-1", "Title": "Short shipment", "Description": null, "Status": "Open",
                "Priority": "Medium", "Category": null, "Assignee Email": "jane@acme.com",
                "Reporter Email": "clerk@plant.example", "Created At": "2025-03-03T12:00:00Z",
                "Updated At": "2025-03-03T12:00:00Z", "Due Date": null, "Linked PO Id": 42,
                "Linked PO Number": "PO-2024-001", "Notes": [],
                "Subscribers": ["clerk@plant.example", "jane@acme.com"]})"));
  }
  SECTION("a ticket update is partial and stamps Updated At; a null link clears it") {
    auto plan = f.ok("PUT", {"issue-tracker-tickets", "TKT-001"},
                     J(R"({"Status": "Resolved", "Linked PO Id": null})"));
    const Json& rec = *plan.records[0].record;
    CHECK(rec["Status"] == "Resolved");
    CHECK(rec["Priority"] == "High");
    CHECK(rec["Linked PO Id"].is_null());
    CHECK(rec["Linked PO Number"].is_null());
    CHECK(rec["Updated At"] == kNow);
    CHECK(rec["Notes"].size() == 1);
  }
  SECTION("a ticket delete takes its notes and subscribers with it") {
    auto plan = f.ok("DELETE", {"issue-tracker-tickets", "TKT-001"});
    REQUIRE(plan.records.size() == 1);
    CHECK(deletes(plan, "issue-tracker-tickets", std::string("TKT-001")));
  }
}

TEST_CASE("notes and subscribers change their ticket", "[local_edit]") {
  Fixture f;
  SECTION("a note is created with a local note id and appended to the ticket's notes") {
    auto plan =
        f.ok("POST", {"issue-tracker-notes"}, J(R"({"Ticket Id": "TKT-001", "Note": "Chased again"})"));
    CHECK(plan.op == "note-create");
    CHECK(plan.res == &replica::note_resource());
    CHECK(plan.id == RecordId(std::int64_t{-1}));
    CHECK(f.ids.asked == std::vector<std::string>{"issue-tracker-notes"});
    CHECK(plan.response == J(R"({"message": "Created successfully.", "id": -1})"));
    const Json& t = record_of(plan, "issue-tracker-tickets", std::string("TKT-001"));
    REQUIRE(t["Notes"].size() == 2);
    CHECK(t["Notes"][0]["id"] == 5);
    CHECK(t["Notes"][1] == J(R"({"id": -1, "Ticket Id": "TKT-001", "Note": "Chased again",
                                 "Author Email": "clerk@plant.example", "Created At": "2025-03-03T12:00:00Z"})"));
    CHECK(t["Updated At"] == kNow);
  }
  SECTION("a note is changed and deleted") {
    auto upd = f.ok("PUT", {"issue-tracker-notes", "5"}, J(R"({"Note": "Called twice"})"));
    CHECK(upd.op == "note-update");
    CHECK(upd.response == J(R"({"message": "Update successful"})"));
    CHECK(record_of(upd, "issue-tracker-tickets", std::string("TKT-001"))["Notes"][0]["Note"] ==
          "Called twice");
    auto del = f.ok("DELETE", {"issue-tracker-notes", "5"});
    CHECK(del.op == "note-delete");
    CHECK(del.response == J(R"({"message": "Deleted successfully."})"));
    CHECK(record_of(del, "issue-tracker-tickets", std::string("TKT-001"))["Notes"] == Json::array());
  }
  SECTION("subscribers are added once and removed case-insensitively") {
    auto add =
        f.ok("POST", {"issue-tracker-tickets", "TKT-001", "subscribers"}, J(R"({"email": "boss@acme.com"})"));
    CHECK(add.op == "subscriber-add");
    CHECK(add.response == J(R"({"message": "Subscriber added."})"));
    const Json& t = record_of(add, "issue-tracker-tickets", std::string("TKT-001"));
    CHECK(t["Subscribers"] == J(R"(["jane@acme.com", "John@Acme.com", "boss@acme.com"])"));
    CHECK(t["Updated At"] == kNow);
    auto again =
        f.ok("POST", {"issue-tracker-tickets", "TKT-001", "subscribers"}, J(R"({"email": "JANE@acme.com"})"));
    const Json& same = record_of(again, "issue-tracker-tickets", std::string("TKT-001"));
    CHECK(same["Subscribers"].size() == 2);
    CHECK(same["Updated At"] == "2024-03-10T09:00:00Z");  // nothing changed, nothing stamped
    auto rm = f.ok("DELETE", {"issue-tracker-tickets", "TKT-001", "subscribers"},
                   J(R"({"email": "john@acme.com"})"));
    CHECK(rm.response == J(R"({"message": "Subscriber removed."})"));
    CHECK(record_of(rm, "issue-tracker-tickets", std::string("TKT-001"))["Subscribers"] ==
          J(R"(["jane@acme.com"])"));
  }
}

// ------------------------------------------------------------------------------------------------------------
// Documents (full replacement of line sets)
// ------------------------------------------------------------------------------------------------------------

TEST_CASE("purchase orders: create with lines as records of their own", "[local_edit]") {
  Fixture f;
  auto plan = f.ok(
      "POST", {"purchase-order"},
      J(R"({"PO List Number": "PO-NEW", "PO List Document Status": "Open", "PO List Order Date": "2024-04-01",
                         "Supplier Number": "SUP-007", "Purchase Order Id": null,
                         "details": [{"id": null, "PO Details Id": null, "Item Number": "ITEM-A", "Warehouse Number": "WH-02",
                                      "Ship From Number": "SF-01", "PO Details Quantity": 10, "PO Details Price": 2.5},
                                     {"Item Number": "ITEM-B", "Sub Item Number": "SUB-B1", "Warehouse Number": "WH-02",
                                      "PO Details Quantity": 20, "PO Details Document Status": "Planned"}]})"));
  CHECK(plan.op == "create");
  CHECK(plan.id == RecordId(std::int64_t{-1}));
  CHECK(plan.response == J(R"({"message": "Created successfully.", "id": -1})"));
  // The header first, then each line; the header's id before its lines'.
  CHECK(f.ids.asked ==
        std::vector<std::string>{"purchase-order", "purchase-order-details", "purchase-order-details"});
  REQUIRE(plan.records.size() == 3);
  const Json& h = *plan.records[0].record;
  CHECK(keys_of(h) == std::vector<std::string>{"id", "PO List Number", "PO List Order Date", "Supplier Id",
                                               "Supplier Number", "Supplier Name", "PO Total Items",
                                               "PO List Quantity", "PO List Document Status",
                                               "PO List Servicenow Id", "Warehouse Number", "details"});
  CHECK(h["Supplier Id"] == 7);
  CHECK(h["Supplier Name"] == "Acme");
  CHECK(h["PO Total Items"] == 2);
  CHECK(h["PO List Quantity"] == 30);
  CHECK(h["Warehouse Number"] == "WH-02");
  REQUIRE(h["details"].size() == 2);
  const Json& l1 = h["details"][0];
  CHECK(l1["id"] == -1);
  CHECK(l1["PO Details Id"] == -1);
  CHECK(l1["Purchase Order Id"] == -1);
  CHECK(l1["PO List Number"] == "PO-NEW");
  CHECK(l1["Item Id"] == 55);
  CHECK(l1["Item Description"] == "Widget A");
  CHECK(l1["Warehouse Id"] == 4);
  CHECK(l1["Ship From Id"] == 8);
  CHECK(l1["Ship From Name"] == "Acme East");
  CHECK(l1["PO Details Document Status"] == "Open");  // the header's
  CHECK(h["details"][1]["id"] == -2);
  CHECK(h["details"][1]["PO Details Document Status"] == "Planned");
  CHECK(h["details"][1]["Sub Item Id"] == 71);
  CHECK(plan.records[1].res->name == "purchase-order-details");
  CHECK(*plan.records[1].record == l1);
  CHECK(plan.records[2].id == RecordId(std::int64_t{-2}));
}

TEST_CASE("purchase orders: PUT replaces the line set", "[local_edit]") {
  Fixture f;
  auto plan = f.ok(
      "PUT", {"purchase-order", "42"},
      J(R"({"PO List Number": "PO-2024-001-R", "PO List Document Status": "Shipped", "Supplier Number": "SUP-007",
                         "details": [{"id": 101, "Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 0.1,
                                      "PO Details Tracking": "BOL-789"},
                                     {"id": null, "Item Number": "COMP-Y", "Warehouse Number": "WH-01", "PO Details Quantity": 0.2}]})"));
  CHECK(plan.op == "update");
  CHECK(plan.id == RecordId(std::int64_t{42}));
  CHECK(plan.response == J(R"({"message": "Update successful"})"));
  const Json& h = record_of(plan, "purchase-order", std::int64_t{42});
  CHECK(h["PO List Number"] == "PO-2024-001-R");
  CHECK(h["PO List Order Date"].is_null());  // a full replacement: left out means null
  CHECK(h["PO Total Items"] == 2);
  CHECK(h["PO List Quantity"].get<double>() == 0.3);  // Knosc rounds float sums to 4 places
  REQUIRE(h["details"].size() == 2);
  CHECK(h["details"][0]["id"] == 101);
  CHECK(h["details"][1]["id"] == -1);
  const Json& kept = record_of(plan, "purchase-order-details", std::int64_t{101});
  CHECK(kept["PO Details Tracking"] == "BOL-789");
  CHECK(kept["PO List Number"] == "PO-2024-001-R");  // copied down from the header
  // A full replacement of the line too: keys left out are reset, and a line without a status takes the
  // header's.
  CHECK(kept["PO Details Document Status"] == "Shipped");
  CHECK(kept["Ship From Id"].is_null());
  const Json& added = record_of(plan, "purchase-order-details", std::int64_t{-1});
  CHECK(added["Purchase Order Id"] == 42);
  CHECK(added["Item Id"] == 61);
  CHECK(deletes(plan, "purchase-order-details", std::int64_t{102}));
  CHECK(plan.records.front().res->name == "purchase-order");
}

TEST_CASE("purchase orders: delete, line delete and the last-line rule", "[local_edit]") {
  Fixture f;
  SECTION("delete takes the lines and clears tickets that link the order") {
    auto plan = f.ok("DELETE", {"purchase-order", "43"});
    CHECK(plan.records[0].res->name == "purchase-order");
    CHECK(deletes(plan, "purchase-order", std::int64_t{43}));
    CHECK(deletes(plan, "purchase-order-details", std::int64_t{103}));
    const Json& t = record_of(plan, "issue-tracker-tickets", std::string("TKT-001"));
    CHECK(t["Linked PO Id"].is_null());
    CHECK(t["Linked PO Number"].is_null());
    CHECK(t["Updated At"] == kNow);
    CHECK(plan.records.size() == 3);
  }
  SECTION("deleting a line recomputes its order") {
    auto plan = f.ok("DELETE", {"purchase-order-details", "102"});
    CHECK(plan.op == "line-delete");
    CHECK(plan.response == J(R"({"message": "Deleted successfully."})"));
    CHECK(deletes(plan, "purchase-order-details", std::int64_t{102}));
    const Json& h = record_of(plan, "purchase-order", std::int64_t{42});
    CHECK(h["PO Total Items"] == 1);
    CHECK(h["PO List Quantity"] == 200);
    CHECK(h["details"].size() == 1);
  }
  SECTION("deleting the last line deletes its order") {
    auto plan = f.ok("DELETE", {"purchase-order-details", "103"});
    CHECK(deletes(plan, "purchase-order-details", std::int64_t{103}));
    CHECK(deletes(plan, "purchase-order", std::int64_t{43}));
    CHECK(record_of(plan, "issue-tracker-tickets", std::string("TKT-001"))["Linked PO Id"].is_null());
    CHECK(plan.records.size() == 3);
  }
}

TEST_CASE("documents with nested line sets: MO, forecast, BOM, ASN", "[local_edit]") {
  Fixture f;
  SECTION("a manufacturing order copies its warehouse to the lines, whose ids are the nested set's") {
    auto plan = f.ok(
        "POST", {"manufacturing-order"},
        J(R"({"MO List Number": "MO-NEW", "MO List Document Status": "Planned", "Warehouse Number": "WH-02",
                           "details": [{"Item Number": "ITEM-B", "MO Details Quantity": 4}]})"));
    CHECK(f.ids.asked == std::vector<std::string>{"manufacturing-order", "manufacturing-order-details"});
    REQUIRE(plan.records.size() == 1);  // the lines live inside the header
    const Json& h = *plan.records[0].record;
    CHECK(h["Warehouse Id"] == 4);
    CHECK(h["MO Total Items"] == 1);
    CHECK(h["MO List Quantity"] == 4);
    const Json& l = h["details"][0];
    CHECK(l["id"] == -1);
    CHECK(l["MO Details Id"] == -1);
    CHECK(l["Manufacturing Order Id"] == -1);
    CHECK(l["Warehouse Number"] == "WH-02");
    CHECK(l["Warehouse Name"] == "West DC");
    CHECK(l["MO Details Document Status"] == "Planned");
  }
  SECTION("a forecast PUT keeps, changes and drops lines") {
    auto plan = f.ok("PUT", {"forecast", "77"}, J(R"({"Forecast List Number": "FC-1", "details": [
                           {"Forecast Details Id": 601, "Item Number": "ITEM-A", "Warehouse Number": "WH-01",
                            "Forecast Details Quantity": 7, "Forecast Details Date": "2024-01-15"},
                           {"Item Number": "ITEM-B", "Warehouse Number": "WH-01", "Forecast Details Quantity": 3,
                            "Forecast Details Date": "2024-01-15"}]})"));
    REQUIRE(plan.records.size() == 1);
    const Json& h = *plan.records[0].record;
    CHECK(h["Forecast List Document Status"] == "Active");  // the default, as the body left it out
    CHECK(h["Forecast List Quantity"] == 10);
    CHECK(h["details"][0]["id"] == 601);
    CHECK(h["details"][0]["Forecast Details Quantity"] == 7);
    CHECK(h["details"][1]["id"] == -1);
    CHECK(h["details"][1]["Forecast Id"] == 77);
  }
  SECTION("a BOM component's unit defaults to its item's") {
    auto plan = f.ok("POST", {"bill-of-materials"}, J(R"({"BOM Number": "BOM-NEW", "Item Number": "ITEM-B",
                           "details": [{"Component Item Number": "COMP-Y", "Component Quantity": 3},
                                       {"Component Item Number": "COMP-X", "Component Quantity": 1, "Component Unit": "BOX"}]})"));
    const Json& h = *plan.records[0].record;
    CHECK(h["BOM Status"] == "Active");
    CHECK(h["BOM Total Components"] == 2);
    CHECK(h["details"][0]["Component Unit"] == "EA");
    CHECK(h["details"][0]["Component Description"] == "Component Y");
    CHECK(h["details"][0]["Component Item Id"] == 61);
    CHECK(h["details"][1]["Component Unit"] == "BOX");
  }
  SECTION("an ASN takes From/To, stamps its time and fills a line from the PO line it ships") {
    auto plan = f.ok(
        "POST", {"asn"},
        J(R"({"ASN Number": "ASN-NEW", "From": {"Supplier Number": "SUP-007", "Ship From Number": "SF-01"},
                           "To": {"Warehouse Number": "WH-01"}, "details": [{"PO Details Id": 102, "ASN Details Quantity": 5}]})"));
    const Json& h = *plan.records[0].record;
    CHECK(h["Timestamp"] == kNow);
    CHECK(h["ASN Status"] == "Not Sent");
    CHECK(h["From"] == J(R"({"Supplier Id": 7, "Supplier Number": "SUP-007", "Ship From Id": 8,
                             "Ship From Number": "SF-01", "Ship From Name": "Acme East"})"));
    CHECK(h["To"] == J(R"({"Warehouse Id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC"})"));
    const Json& l = h["details"][0];
    CHECK(l["Item Number"] == "ITEM-B");
    CHECK(l["Item Id"] == 56);
    CHECK(l["Purchase Order Id"] == 42);
    CHECK(l["PO List Number"] == "PO-2024-001");
    CHECK(l["ASN Id"] == -1);
    CHECK(h["ASN Total Quantity"] == 5);
    const auto keys = keys_of(h);
    CHECK(std::vector<std::string>(keys.end() - 3, keys.end()) ==
          std::vector<std::string>{"From", "To", "details"});
  }
  SECTION("an ASN PUT is partial: lines and stamps are kept") {
    auto plan = f.ok("PUT", {"asn", "1001"}, J(R"({"BOL": "BOL-1"})"));
    const Json& h = *plan.records[0].record;
    CHECK(h["BOL"] == "BOL-1");
    CHECK(h["Timestamp"] == "2024-03-07T14:30:00Z");
    CHECK(h["ETA"] == "2024-03-15");
    REQUIRE(h["details"].size() == 1);
    CHECK(h["details"][0]["id"] == 1051);
    CHECK(h["details"][0]["PO Details Id"] == 101);
    CHECK(f.ids.asked.empty());
  }
  SECTION("deleting a document with nested lines changes only the document") {
    auto plan = f.ok("DELETE", {"manufacturing-order", "55"});
    REQUIRE(plan.records.size() == 1);
    CHECK(deletes(plan, "manufacturing-order", std::int64_t{55}));
  }
}

TEST_CASE("purchase-order line helpers: move lines and accept suggestions", "[local_edit]") {
  Fixture f;
  SECTION("moving a line to another supplier's order drops its ship-from") {
    auto plan = f.ok(
        "PUT", {"purchase-order-details-move-lines"},
        J(R"({"moves": [{"id": 102, "Old Purchase Order List Id": 42, "New Purchase Order List Id": 43}]})"));
    CHECK(plan.op == "line-move");
    CHECK(plan.id == RecordId(std::int64_t{42}));
    CHECK(plan.response == J(R"({"message": "Update successful", "rows_updated": 1})"));
    const Json& src = record_of(plan, "purchase-order", std::int64_t{42});
    CHECK(src["PO Total Items"] == 1);
    CHECK(src["PO List Quantity"] == 200);
    const Json& dst = record_of(plan, "purchase-order", std::int64_t{43});
    CHECK(dst["PO Total Items"] == 2);
    CHECK(dst["PO List Quantity"] == 350);
    const Json& line = record_of(plan, "purchase-order-details", std::int64_t{102});
    CHECK(line["Purchase Order Id"] == 43);
    CHECK(line["PO List Number"] == "PO-2024-002");
    CHECK(line["Ship From Id"].is_null());
    CHECK(line["Ship From Name"].is_null());
  }
  SECTION("moving to a new number creates the order from the source's supplier") {
    auto plan = f.ok(
        "PUT", {"purchase-order-details-move-lines"},
        J(R"({"moves": [{"id": 102, "Old Purchase Order List Id": 42, "New Purchase Order List Number": "PO-SPLIT"}]})"));
    CHECK(f.ids.asked == std::vector<std::string>{"purchase-order"});
    const Json& dst = record_of(plan, "purchase-order", std::int64_t{-1});
    CHECK(dst["PO List Number"] == "PO-SPLIT");
    CHECK(dst["Supplier Number"] == "SUP-007");
    CHECK(dst["PO List Document Status"] == "Open");
    CHECK(dst["Warehouse Number"] == "WH-01");
    const Json& line = record_of(plan, "purchase-order-details", std::int64_t{102});
    CHECK(line["Purchase Order Id"] == -1);
    CHECK(line["Ship From Id"] == 8);  // same supplier: kept
  }
  SECTION("accepting suggestions sets the lines' status, not the header's") {
    auto plan = f.ok("PUT", {"purchase-order-details-accept-suggested-orders"},
                     J(R"({"status": "Open", "parentIds": [44, 44]})"));
    CHECK(plan.op == "accept-suggested");
    CHECK(plan.response == J(R"({"message": "Update successful", "rows_updated": 1})"));
    const Json& h = record_of(plan, "purchase-order", std::int64_t{44});
    CHECK(h["PO List Document Status"] == "Suggested");
    CHECK(h["details"][0]["PO Details Document Status"] == "Open");
    CHECK(record_of(plan, "purchase-order-details", std::int64_t{104})["PO Details Document Status"] ==
          "Open");
  }
}

// ------------------------------------------------------------------------------------------------------------
// Against a real replica
// ------------------------------------------------------------------------------------------------------------

TEST_CASE("plan_edit over a replica built on disk (ReplicaLookup)", "[local_edit]") {
  test::TempDir dir;
  const Catalog& catalog = Catalog::builtin();
  replica::Replica rep(dir.file("r.db"), catalog, replica::Replica::Mode::ReadWrite);
  // Rows go into the replica the way passes put them there: list rows, then nested parts per record.
  const auto pass = [&](const std::string& name, std::vector<Json> rows) {
    const Resource& res = catalog.at(name);
    Json page = Json::array();
    std::vector<Json> full;
    for (auto& r : rows) {
      full.push_back(r);
      for (const auto& k : res.nested)
        r.erase(k);
      page.push_back(r);
    }
    auto cursor = rep.resume_or_begin_pass(res, 1000, 100);
    rep.apply_page(res, cursor, page, 100);
    for (const auto& r : full)
      if (res.has_nested()) rep.store_nested(res, *replica::record_id_from_json(r["id"]), r, 100);
  };
  pass("item-master",
       {J(R"({"id": 55, "Item Number": "ITEM-A", "Item Description": "Widget A", "Item Unit": "EA"})"),
        J(R"({"id": 60, "Item Number": "COMP-X", "Item Description": "Component X", "Item Unit": "KG"})")});
  pass("warehouse-master", {J(R"({"id": 3, "Warehouse Number": "WH-01", "Warehouse Name": "Main DC"})")});
  pass("supplier-master", {J(R"({"id": 7, "Supplier Number": "SUP-007", "Supplier Name": "Acme"})")});
  pass("purchase-order",
       {J(R"({"id": 42, "PO List Number": "PO-1", "Supplier Id": 7, "Supplier Number": "SUP-007",
                                "PO List Document Status": "Open", "PO Total Items": 1, "PO List Quantity": 5})")});
  pass(
      "purchase-order-details",
      {J(R"({"id": 101, "PO Details Id": 101, "Purchase Order Id": 42, "PO List Number": "PO-1", "Item Id": 55,
              "Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 5})")});
  pass("bill-of-materials", {J(R"({"id": 901, "BOM Number": "BOM-A", "Item Id": 55, "Item Number": "ITEM-A",
              "details": [{"id": 951, "Component Item Id": 60, "Component Item Number": "COMP-X", "Component Quantity": 2}]})")});

  replica::ReplicaLookup lookup(rep);
  SECTION("find uses key slots and json_extract; find_in_lines searches nested and flat line sets") {
    const auto by_slot = lookup.find(catalog.at("item-master"), "Item Number", "COMP-X", 10);
    REQUIRE(by_slot.size() == 1);
    CHECK(by_slot[0]["id"] == 60);
    const auto by_body = lookup.find(catalog.at("purchase-order-details"), "Item Id", 55, 10);
    REQUIRE(by_body.size() == 1);
    CHECK(by_body[0]["id"] == 101);
    CHECK(lookup.find(catalog.at("item-master"), "Item Number", "NOPE", 10).empty());
    CHECK(lookup.find(catalog.at("purchase-order-details"), "Item Id", true, 10).empty());  // 1 is not true
    const auto boms =
        lookup.find_in_lines(catalog.at("bill-of-materials"), "details", "Component Item Id", 60, 10);
    REQUIRE(boms.size() == 1);
    CHECK(boms[0]["BOM Number"] == "BOM-A");
    const auto pos = lookup.find_in_lines(catalog.at("purchase-order"), "details", "Item Id", 55, 10);
    REQUIRE(pos.size() == 1);
    CHECK(pos[0]["details"][0]["id"] == 101);
    CHECK(lookup.get(catalog.at("purchase-order"), std::int64_t{42})->at("details").size() == 1);
  }
  SECTION("plans read the replica: references resolve, blockers are found, ids are the allocator's") {
    Ids ids;
    replica::LocalIdAllocator next = [&](const Resource& r) { return ids(r); };
    EditRequest req;
    req.now_iso = kNow;
    req.method = "POST";
    req.path = {"purchase-order"};
    const Json body =
        J(R"({"PO List Number": "PO-2", "PO List Document Status": "Open", "Supplier Number": "SUP-007",
                            "details": [{"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 3}]})");
    req.body = &body;
    auto out = replica::plan_edit(catalog, lookup, req, next);
    REQUIRE(std::holds_alternative<EditPlan>(out));
    const auto& plan = std::get<EditPlan>(out);
    CHECK(plan.records[0].record->at("Supplier Name") == "Acme");
    CHECK(plan.records[0].record->at("details")[0]["Warehouse Name"] == "Main DC");

    const Json dup =
        J(R"({"PO List Number": "PO-1", "PO List Document Status": "Open", "Supplier Number": "SUP-007",
                           "details": [{"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "PO Details Quantity": 3}]})");
    req.body = &dup;
    auto refused = replica::plan_edit(catalog, lookup, req, next);
    REQUIRE(std::holds_alternative<EditError>(refused));
    CHECK(std::get<EditError>(refused).code == "PurchaseOrderList.AlreadyExists");

    req.method = "DELETE";
    req.path = {"item-master", "60"};
    req.body = nullptr;
    auto in_use = replica::plan_edit(catalog, lookup, req, next);
    REQUIRE(std::holds_alternative<EditError>(in_use));
    CHECK(std::get<EditError>(in_use).message == "Item COMP-X is still in use and cannot be deleted.");
    CHECK(ids.asked == std::vector<std::string>{"purchase-order", "purchase-order-details"});
  }
}
