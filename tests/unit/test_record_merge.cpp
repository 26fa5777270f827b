#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "conflict/record_merge.hpp"

using namespace knosc::conflict;

namespace {

Json J(const char* text) {
  return Json::parse(text);
}

// A purchase-order line as get-one shows it ("Item Description" is computed by Knosc).
Json line(Json id, const char* item, int qty, const char* eta) {
  Json l = Json::object();
  l["id"] = std::move(id);
  l["Item Number"] = item;
  l["Item Description"] = std::string("Widget ") + item;
  l["PO Details Quantity"] = qty;
  l["PO Details ETA Date"] = eta;
  return l;
}

Json L101(int qty = 10, const char* eta = "2024-03-20") {
  return line(101, "A", qty, eta);
}
Json L102(int qty = 5, const char* eta = "2024-03-22") {
  return line(102, "B", qty, eta);
}

// A purchase order as get-one shows it; `patch` sets header keys, and a value "<absent>" removes the key.
Json po(std::vector<Json> lines, const char* patch = "{}") {
  Json h = J(R"({"id": 42, "PO List Number": "PO-1", "PO List Document Status": "Open",
                 "PO List Order Date": "2024-03-01", "Supplier Number": "SUP-1", "Supplier Name": "Acme",
                 "PO Total Items": 2})");
  const Json changes = J(patch);
  for (const auto& [k, v] : changes.items()) {
    if (v == "<absent>") {
      h.erase(k);
    } else {
      h[k] = v;
    }
  }
  h["details"] = Json::array();
  for (auto& l : lines)
    h["details"].push_back(std::move(l));
  return h;
}

Json without(Json obj, const char* key) {
  obj.erase(key);
  return obj;
}

Json with(Json obj, const char* key, Json value) {
  obj[key] = std::move(value);
  return obj;
}

// The catalog's purchase-order settings: merge, status manual; its lines' resource is manual with
// quantities, prices and dates manual.
RecordShape po_shape(Policy line_policy = Policy::Manual) {
  RecordShape s;
  s.full_replacement = true;
  s.lines_key = "details";
  s.ignored = {"Supplier Name", "Supplier Id", "PO Total Items", "PO List Quantity"};
  s.line_ignored = {"Item Description", "Item Id", "PO Details Id"};
  s.policy = Policy::Merge;
  s.line_policy = line_policy;
  s.manual_fields = {"PO List Document Status"};
  s.line_manual_fields = {"PO Details Quantity", "PO Details Price", "PO Details Ship Date"};
  if (line_policy == Policy::Manual) s.line_manual_fields.insert("PO Details ETA Date");
  return s;
}

RecordShape item_shape(Policy p, std::set<std::string> manual = {}) {
  RecordShape s;
  s.policy = p;
  s.manual_fields = std::move(manual);
  return s;
}

Json item(const char* patch = "{}") {
  Json r =
      J(R"({"id": 55, "Item Number": "ITEM-A", "Item Description": "Widget", "Item Type": "Finished Good",
                 "Item Status": "Active", "Item Weight": 0.5})");
  r.update(J(patch));
  return r;
}

// "key=settlement", "<line id>/key=settlement", "*" for a whole line or record.
std::vector<std::string> describe(const std::vector<Collision>& collisions) {
  std::vector<std::string> out;
  for (const auto& c : collisions) {
    std::string s = c.line_id.is_null() ? "" : c.line_id.dump() + "/";
    s += c.field.key.empty() ? "*" : c.field.key;
    s += "=";
    s += to_string(c.settlement);
    out.push_back(s);
  }
  return out;
}

// Every key of `want` is in `got` with a subset value; arrays must have the same length.
bool subset(const Json& want, const Json& got) {
  if (want.is_object()) {
    if (!got.is_object()) return false;
    for (const auto& [k, v] : want.items())
      if (!got.contains(k) || !subset(v, got[k])) return false;
    return true;
  }
  if (want.is_array()) {
    if (!got.is_array() || got.size() != want.size()) return false;
    for (std::size_t i = 0; i < want.size(); ++i)
      if (!subset(want[i], got[i])) return false;
    return true;
  }
  return want == got;
}

struct UpdateCase {
  const char* name;
  RecordShape shape;
  Json base, request;
  std::optional<Json> remote;  // nullopt: Knosc answered NotFound
  Decision decision;
  std::vector<std::string> collisions;
  const char* body = nullptr;  // SendMerged: a subset the body must match (arrays exactly as long)
  std::vector<std::string> body_lacks = {};
};

void check(const UpdateCase& c) {
  INFO(c.name);
  const RecordPlan plan = plan_update(c.base, c.request, c.remote, c.shape);
  CHECK(to_string(plan.decision) == to_string(c.decision));
  CHECK(describe(plan.collisions) == c.collisions);
  CHECK(plan.needs_person() == (c.decision == Decision::NeedsPerson || c.decision == Decision::EditVsDelete));
  if (c.decision == Decision::Send) CHECK(plan.body == c.request);
  if (c.decision == Decision::SendMerged) {
    INFO("body: " << plan.body.dump());
    REQUIRE(c.body != nullptr);
    CHECK(subset(J(c.body), plan.body));
    for (const auto& k : c.body_lacks)
      CHECK_FALSE(plan.body.contains(k));
  }
  if (c.decision != Decision::Send && c.decision != Decision::SendMerged) CHECK(plan.body.is_null());
}

}  // namespace

TEST_CASE("plan_update: full replacement of an order and its lines", "[conflict][record_merge]") {
  const Json base = po({L101(), L102()});
  const UpdateCase cases[] = {
      {"nobody changed anything", po_shape(), base, base, base, Decision::NothingToSend, {}},
      {"local edit, Knosc unchanged: the request goes as is",
       po_shape(),
       base,
       po({L101(12), L102()}),
       base,
       Decision::Send,
       {}},
      {"Knosc changed only computed keys: the request goes as is",
       po_shape(),
       base,
       po({L101(12), L102()}),
       po({L101(), L102()}, R"({"Supplier Name": "Acme Ltd", "PO Total Items": 3})"),
       Decision::Send,
       {}},
      {"a line added upstream survives a local full-replacement PUT",
       po_shape(),
       base,
       po({L101(12), L102()}),
       po({L101(), L102(), line(103, "C", 7, "2024-04-01")}),
       Decision::SendMerged,
       {},
       R"({"details": [{"id": 101, "PO Details Quantity": 12}, {"id": 102, "PO Details Quantity": 5},
                       {"id": 103, "Item Number": "C", "PO Details Quantity": 7}]})"},
      {"a line deleted upstream is not resurrected by a local edit of another line",
       po_shape(),
       base,
       po({L101(12), L102()}),
       po({L101()}),
       Decision::SendMerged,
       {},
       R"({"details": [{"id": 101, "PO Details Quantity": 12}]})"},
      {"a local edit of a line deleted upstream is a conflict",
       po_shape(),
       base,
       po({L101(), L102(9)}),
       po({L101()}),
       Decision::NeedsPerson,
       {"102/*=person"}},
      {"overlapping quantities on an order go to a person",
       po_shape(),
       base,
       po({L101(12), L102()}),
       po({L101(20), L102()}),
       Decision::NeedsPerson,
       {"101/PO Details Quantity=person"}},
      {"both sides set the same quantity: nothing to send",
       po_shape(),
       base,
       po({L101(12), L102()}),
       po({L101(12), L102()}),
       Decision::NothingToSend,
       {}},
      {"a header change and a line change upstream merge",
       po_shape(),
       base,
       po({L101(), L102()}, R"({"PO List Order Date": "2024-03-05"})"),
       po({L101(), L102(5, "2024-04-30")}),
       Decision::SendMerged,
       {},
       R"({"PO List Order Date": "2024-03-05", "PO List Number": "PO-1",
           "details": [{"id": 101}, {"id": 102, "PO Details ETA Date": "2024-04-30"}]})",
       {"id", "Supplier Name", "PO Total Items"}},
      {"different order dates on both sides go to a person",
       po_shape(),
       base,
       po({L101(), L102()}, R"({"PO List Order Date": "2024-03-05"})"),
       po({L101(), L102()}, R"({"PO List Order Date": "2024-03-07"})"),
       Decision::NeedsPerson,
       {"PO List Order Date=person"}},
      {"different statuses (a manual field) go to a person",
       po_shape(),
       base,
       po({L101(), L102()}, R"({"PO List Document Status": "Cancelled"})"),
       po({L101(), L102()}, R"({"PO List Document Status": "Received"})"),
       Decision::NeedsPerson,
       {"PO List Document Status=person"}},
      {"a line the local edit removed, untouched upstream, is dropped",
       po_shape(),
       base,
       po({L101()}),
       base,
       Decision::Send,
       {}},
      {"a line the local edit removed goes to a person when Knosc changed it",
       po_shape(),
       base,
       po({L101()}),
       po({L101(), L102(8)}),
       Decision::NeedsPerson,
       {"102/*=person"}},
      {"a new local line goes with id null next to a line added upstream",
       po_shape(),
       base,
       po({L101(), L102(), line(nullptr, "D", 3, "2024-05-01")}),
       po({L101(), L102(), line(103, "C", 7, "2024-04-01")}),
       Decision::SendMerged,
       {},
       R"({"details": [{"id": 101}, {"id": 102}, {"id": 103},
                       {"id": null, "Item Number": "D", "PO Details Quantity": 3}]})"},
      {"a new local line already added by a send whose answer was lost is not added twice",
       po_shape(),
       base,
       po({L101(), L102(), line(nullptr, "C", 3, "2024-05-01")}),
       po({L101(), L102(), line(103, "C", 3, "2024-05-01")}),
       Decision::NothingToSend,
       {}},
      {"two identical new lines and one such line upstream: the second is still added",
       po_shape(),
       base,
       po({L101(), L102(), line(nullptr, "C", 3, "2024-05-01"), line(nullptr, "C", 3, "2024-05-01")}),
       po({L101(), L102(), line(103, "C", 3, "2024-05-01")}),
       Decision::SendMerged,
       {},
       R"({"details": [{"id": 101}, {"id": 102}, {"id": 103}, {"id": null, "Item Number": "C"}]})"},
      {"a retry after a lost answer finds the whole edit upstream: nothing to send",
       po_shape(),
       base,
       po({L101(12), line(nullptr, "C", 3, "2024-05-01")}, R"({"PO List Order Date": "2024-03-05"})"),
       po({L101(12), line(103, "C", 3, "2024-05-01")}, R"({"PO List Order Date": "2024-03-05"})"),
       Decision::NothingToSend,
       {}},
      {"a key the full request leaves out is cleared, which collides with a change upstream",
       po_shape(),
       base,
       po({L101(), L102()}, R"({"PO List Order Date": "<absent>"})"),
       po({L101(), L102()}, R"({"PO List Order Date": "2024-03-09"})"),
       Decision::NeedsPerson,
       {"PO List Order Date=person"}},
      {"a key the full request leaves out is sent as null in a merged body",
       po_shape(),
       base,
       po({L101(), L102()}, R"({"PO List Order Date": "<absent>"})"),
       po({L101(), L102(5, "2024-04-30")}),
       Decision::SendMerged,
       {},
       R"({"PO List Order Date": null, "details": [{"id": 101}, {"id": 102}]})"},
      {"computed keys in the request are never compared",
       po_shape(),
       base,
       po({L101(12), L102()}, R"({"Supplier Name": "Old name"})"),
       po({L101(), L102(5, "2024-04-30")}, R"({"Supplier Name": "New name"})"),
       Decision::SendMerged,
       {},
       R"({"details": [{"id": 101, "PO Details Quantity": 12}, {"id": 102, "PO Details ETA Date": "2024-04-30"}]})",
       {"Supplier Name"}},
      {"write-only keys are sent but cannot be compared",
       po_shape(),
       base,
       po({L101(12), L102()}, R"({"Purchase Order Id": 42})"),
       po({L101(12), L102()}),
       Decision::NothingToSend,
       {}},
      {"a line id neither base nor Knosc knows goes to a person",
       po_shape(),
       base,
       po({L101(), L102(), line(-7, "E", 1, "2024-06-01")}),
       base,
       Decision::NeedsPerson,
       {"-7/*=person"}},
      {"a full request without its lines keeps them: the body carries every line",
       po_shape(),
       base,
       without(po({}, R"({"PO List Order Date": "2024-03-05"})"), "details"),
       po({L101(), L102(5, "2024-04-30")}),
       Decision::SendMerged,
       {},
       R"({"PO List Order Date": "2024-03-05",
           "details": [{"id": 101}, {"id": 102, "PO Details ETA Date": "2024-04-30"}]})"},
      {"edit vs delete: the order was deleted upstream",
       po_shape(),
       base,
       po({L101(12), L102()}),
       std::nullopt,
       Decision::EditVsDelete,
       {"*=person"}},
      {"edit vs delete: nothing of a no-op edit is lost",
       po_shape(),
       base,
       base,
       std::nullopt,
       Decision::NothingToSend,
       {}},
  };
  for (const auto& c : cases)
    check(c);
}

TEST_CASE("plan_update: line-level policies", "[conflict][record_merge]") {
  const Json base = po({L101(), L102()});
  const UpdateCase cases[] = {
      {"server-wins lines: different ETAs keep Knosc's",
       po_shape(Policy::ServerWins),
       base,
       po({L101(10, "2024-03-25"), L102()}),
       po({L101(10, "2024-03-27"), L102()}),
       Decision::NothingToSend,
       {"101/PO Details ETA Date=took-remote"}},
      {"server-wins lines: quantities are manual and still go to a person",
       po_shape(Policy::ServerWins),
       base,
       po({L101(12), L102()}),
       po({L101(20), L102()}),
       Decision::NeedsPerson,
       {"101/PO Details Quantity=person"}},
      {"server-wins lines: a removed line Knosc changed stays",
       po_shape(Policy::ServerWins),
       base,
       po({L101()}),
       po({L101(), L102(5, "2024-04-30")}),
       Decision::NothingToSend,
       {"102/*=took-remote"}},
      {"server-wins lines: a removed line whose quantity Knosc changed goes to a person",
       po_shape(Policy::ServerWins),
       base,
       po({L101()}),
       po({L101(), L102(8)}),
       Decision::NeedsPerson,
       {"102/*=person"}},
      {"server-wins lines: a local change to a line deleted upstream is dropped",
       po_shape(Policy::ServerWins),
       base,
       po({L101(), L102(5, "2024-04-30")}),
       po({L101()}),
       Decision::NothingToSend,
       {"102/*=took-remote"}},
      {"client-wins lines: different ETAs send the local one",
       po_shape(Policy::ClientWins),
       base,
       po({L101(10, "2024-03-25"), L102()}),
       po({L101(10, "2024-03-27"), L102()}),
       Decision::SendMerged,
       {"101/PO Details ETA Date=took-local"},
       R"({"details": [{"id": 101, "PO Details ETA Date": "2024-03-25"}, {"id": 102}]})"},
      {"client-wins lines: a removed line Knosc changed is removed",
       po_shape(Policy::ClientWins),
       base,
       po({L101()}),
       po({L101(), L102(5, "2024-04-30")}),
       Decision::SendMerged,
       {"102/*=took-local"},
       R"({"details": [{"id": 101}]})"},
      {"client-wins lines: a local change to a line deleted upstream still needs a person",
       po_shape(Policy::ClientWins),
       base,
       po({L101(), L102(5, "2024-04-30")}),
       po({L101()}),
       Decision::NeedsPerson,
       {"102/*=person"}},
  };
  for (const auto& c : cases)
    check(c);
}

TEST_CASE("plan_update: partial updates under each policy", "[conflict][record_merge]") {
  const Json base = item();
  const UpdateCase cases[] = {
      {"a change upstream to a key the request does not send does not matter",
       item_shape(Policy::Merge),
       base,
       J(R"({"Item Description": "New"})"),
       item(R"({"Item Weight": 0.7})"),
       Decision::Send,
       {}},
      {"Knosc already holds the requested values: nothing to send",
       item_shape(Policy::Merge),
       base,
       J(R"({"Item Description": "New"})"),
       item(R"({"Item Description": "New", "Item Weight": 0.7})"),
       Decision::NothingToSend,
       {}},
      {"merge: overlapping changes go to a person",
       item_shape(Policy::Merge),
       base,
       J(R"({"Item Description": "Local"})"),
       item(R"({"Item Description": "Remote"})"),
       Decision::NeedsPerson,
       {"Item Description=person"}},
      {"merge: a key sent unchanged keeps Knosc's change; only the real change is sent",
       item_shape(Policy::Merge),
       base,
       J(R"({"Item Description": "Widget", "Item Status": "Inactive"})"),
       item(R"({"Item Description": "Remote"})"),
       Decision::SendMerged,
       {},
       R"({"Item Status": "Inactive"})",
       {"Item Description"}},
      {"server-wins: the overlap keeps Knosc's value, reported",
       item_shape(Policy::ServerWins),
       base,
       J(R"({"Item Description": "Local"})"),
       item(R"({"Item Description": "Remote"})"),
       Decision::NothingToSend,
       {"Item Description=took-remote"}},
      {"server-wins: the rest of the edit is still sent",
       item_shape(Policy::ServerWins),
       base,
       J(R"({"Item Description": "Local", "Item Status": "Inactive"})"),
       item(R"({"Item Description": "Remote"})"),
       Decision::SendMerged,
       {"Item Description=took-remote"},
       R"({"Item Status": "Inactive"})",
       {"Item Description"}},
      {"client-wins: the overlap sends the local value, reported",
       item_shape(Policy::ClientWins),
       base,
       J(R"({"Item Description": "Local"})"),
       item(R"({"Item Description": "Remote"})"),
       Decision::SendMerged,
       {"Item Description=took-local"},
       R"({"Item Description": "Local"})"},
      {"manual: a key the request sent unchanged but Knosc changed goes to a person",
       item_shape(Policy::Manual),
       base,
       J(R"({"Item Description": "Widget", "Item Status": "Inactive"})"),
       item(R"({"Item Description": "Remote"})"),
       Decision::NeedsPerson,
       {"Item Description=person"}},
      {"manual: a change upstream to a key the request does not send does not matter",
       item_shape(Policy::Manual),
       base,
       J(R"({"Item Status": "Inactive"})"),
       item(R"({"Item Weight": 0.9})"),
       Decision::Send,
       {}},
      {"manual field under server-wins goes to a person",
       item_shape(Policy::ServerWins, {"Item Weight"}),
       base,
       J(R"({"Item Weight": 0.6})"),
       item(R"({"Item Weight": 0.7})"),
       Decision::NeedsPerson,
       {"Item Weight=person"}},
      {"manual field under client-wins goes to a person",
       item_shape(Policy::ClientWins, {"Item Weight"}),
       base,
       J(R"({"Item Weight": 0.6})"),
       item(R"({"Item Weight": 0.7})"),
       Decision::NeedsPerson,
       {"Item Weight=person"}},
      {"manual field set to the same value on both sides is no collision",
       item_shape(Policy::ServerWins, {"Item Weight"}),
       base,
       J(R"({"Item Weight": 0.6})"),
       item(R"({"Item Weight": 0.6})"),
       Decision::NothingToSend,
       {}},
      {"edit vs delete under merge goes to a person",
       item_shape(Policy::Merge),
       base,
       J(R"({"Item Description": "Local"})"),
       std::nullopt,
       Decision::EditVsDelete,
       {"*=person"}},
      {"edit vs delete under client-wins goes to a person: a PUT cannot bring a record back",
       item_shape(Policy::ClientWins),
       base,
       J(R"({"Item Description": "Local"})"),
       std::nullopt,
       Decision::EditVsDelete,
       {"*=person"}},
      {"edit vs delete under server-wins drops the local edit, reported",
       item_shape(Policy::ServerWins),
       base,
       J(R"({"Item Description": "Local"})"),
       std::nullopt,
       Decision::NothingToSend,
       {"*=took-remote"}},
      {"edit vs delete under server-wins still asks a person for a manual field",
       item_shape(Policy::ServerWins, {"Item Weight"}),
       base,
       J(R"({"Item Weight": 0.6})"),
       std::nullopt,
       Decision::EditVsDelete,
       {"*=person"}},
      {"edit vs delete: a request that changes nothing loses nothing",
       item_shape(Policy::Merge),
       base,
       J(R"({"Item Description": "Widget"})"),
       std::nullopt,
       Decision::NothingToSend,
       {}},
  };
  for (const auto& c : cases)
    check(c);
}

TEST_CASE("plan_update: bills of materials and partial records with a line set", "[conflict][record_merge]") {
  RecordShape bom;
  bom.full_replacement = true;
  bom.lines_key = "details";
  bom.ignored = {"Item Id", "Item Description", "BOM Total Components"};
  bom.line_ignored = {"Component Item Id", "Component Description"};
  bom.line_manual_fields = {"Component Quantity"};
  const Json bom_base =
      J(R"({"id": 901, "BOM Number": "BOM-1", "Item Number": "ITEM-A", "BOM Status": "Active",
      "details": [{"id": 951, "Component Item Number": "COMP-X", "Component Description": "X",
                   "Component Quantity": 2, "Component Unit": "EA"}]})");
  Json bom_local = bom_base, bom_remote = bom_base;
  bom_local["details"][0]["Component Quantity"] = 3;
  bom_remote["details"][0]["Component Quantity"] = 4;

  RecordShape asn;  // PUT changes the keys sent; a line set sent is replaced as a whole
  asn.lines_key = "details";
  asn.line_ignored = {"Item Description"};
  const Json asn_base = J(R"({"id": 1001, "ASN Number": "ASN-1", "BOL": "B1",
      "details": [{"id": 1051, "Item Number": "ITEM-A", "ASN Details Quantity": 200}]})");
  Json asn_remote = asn_base;
  asn_remote["details"].push_back(J(R"({"id": 1052, "Item Number": "ITEM-B", "ASN Details Quantity": 50})"));
  asn_remote["ETA"] = "2024-03-15";

  const UpdateCase cases[] = {
      {"BOM: both changed a component quantity",
       bom,
       bom_base,
       bom_local,
       bom_remote,
       Decision::NeedsPerson,
       {"951/Component Quantity=person"}},
      {"BOM: a new component goes next to the ones Knosc holds",
       bom,
       bom_base,
       with(
           bom_base, "details",
           J(R"([{"id": 951, "Component Item Number": "COMP-X", "Component Quantity": 2, "Component Unit": "EA"},
                  {"id": null, "Component Item Number": "COMP-Y", "Component Quantity": 1}])")),
       bom_remote,
       Decision::SendMerged,
       {},
       R"({"details": [{"id": 951, "Component Quantity": 4}, {"id": null, "Component Item Number": "COMP-Y"}]})",
       {"Item Description"}},
      {"partial with lines: only the header key is sent when the request has no lines",
       asn,
       asn_base,
       J(R"({"BOL": "B2"})"),
       asn_remote,
       Decision::Send,
       {}},
      {"partial with lines: a sent line set keeps the line added upstream",
       asn,
       asn_base,
       J(R"({"BOL": "B2", "details": [{"id": 1051, "Item Number": "ITEM-A", "ASN Details Quantity": 210}]})"),
       asn_remote,
       Decision::SendMerged,
       {},
       R"({"BOL": "B2", "details": [{"id": 1051, "ASN Details Quantity": 210}, {"id": 1052}]})",
       {"ETA"}},
  };
  for (const auto& c : cases)
    check(c);
}

TEST_CASE("plan_update: a collision keeps each side's values and the line id", "[conflict][record_merge]") {
  const Json base = po({L101(), L102()});
  const auto plan = plan_update(base, po({L101(12), L102()}), po({L101(20), L102()}), po_shape());
  REQUIRE(plan.collisions.size() == 1);
  const auto& c = plan.collisions[0];
  CHECK(c.line_id == 101);
  CHECK(c.field.key == "PO Details Quantity");
  CHECK(c.field.base == 10);
  CHECK(c.field.local == 12);
  CHECK(c.field.remote == 20);
  CHECK((c.field.has_base && c.field.has_local && c.field.has_remote));
  // The merged record shows Knosc's value until a person decides.
  CHECK(plan.merged["details"][0]["PO Details Quantity"] == 20);

  // A line deleted upstream: the whole local line is kept for the person, Knosc's side is absent.
  const auto gone = plan_update(base, po({L101(), L102(9)}), po({L101()}), po_shape());
  REQUIRE(gone.collisions.size() == 1);
  CHECK(gone.collisions[0].line_id == 102);
  CHECK(gone.collisions[0].field.local["PO Details Quantity"] == 9);
  CHECK_FALSE(gone.collisions[0].field.has_remote);
  CHECK(gone.merged["details"].size() == 1);

  // Edit vs delete keeps the local record whole, lines included.
  const auto deleted = plan_update(base, po({L101(12), L102()}), std::nullopt, po_shape());
  REQUIRE(deleted.collisions.size() == 1);
  CHECK(deleted.collisions[0].field.local["details"][0]["PO Details Quantity"] == 12);
  CHECK(deleted.merged.is_null());
}

TEST_CASE("plan_update: a merged full body is the record to keep, without computed keys",
          "[conflict][record_merge]") {
  const Json base = po({L101(), L102()});
  const Json remote = po({L101(), L102(5, "2024-04-30"), line(103, "C", 7, "2024-04-01")},
                         R"({"Supplier Name": "Acme Ltd", "PO Total Items": 3})");
  const auto plan = plan_update(base, po({L101(12), L102()}), remote, po_shape());
  REQUIRE(plan.decision == Decision::SendMerged);
  const Json want = J(R"({"PO List Number": "PO-1", "PO List Document Status": "Open",
      "PO List Order Date": "2024-03-01", "Supplier Number": "SUP-1",
      "details": [{"id": 101, "Item Number": "A", "PO Details Quantity": 12, "PO Details ETA Date": "2024-03-20"},
                  {"id": 102, "Item Number": "B", "PO Details Quantity": 5, "PO Details ETA Date": "2024-04-30"},
                  {"id": 103, "Item Number": "C", "PO Details Quantity": 7, "PO Details ETA Date": "2024-04-01"}]})");
  CHECK(plan.body == want);
  // The merged record still carries what Knosc computes, as Knosc showed it.
  CHECK(plan.merged["Supplier Name"] == "Acme Ltd");
  CHECK(plan.merged["details"][2]["Item Description"] == "Widget C");
}

TEST_CASE("plan_delete: local delete against Knosc's record", "[conflict][record_merge]") {
  struct Case {
    const char* name;
    RecordShape shape;
    Json base;
    std::optional<Json> remote;
    Decision decision;
    std::vector<std::string> collisions;
  };
  const Json order = po({L101(), L102()});
  const Case cases[] = {
      {"already gone upstream", item_shape(Policy::Merge), item(), std::nullopt, Decision::NothingToSend, {}},
      {"unchanged since base", item_shape(Policy::Merge), item(), item(), Decision::Send, {}},
      {"changed since base: delete vs edit under merge",
       item_shape(Policy::Merge),
       item(),
       item(R"({"Item Weight": 0.7})"),
       Decision::DeleteVsEdit,
       {"*=person"}},
      {"changed since base under manual",
       item_shape(Policy::Manual),
       item(),
       item(R"({"Item Weight": 0.7})"),
       Decision::DeleteVsEdit,
       {"*=person"}},
      {"changed since base under server-wins: Knosc's record stays",
       item_shape(Policy::ServerWins),
       item(),
       item(R"({"Item Weight": 0.7})"),
       Decision::NothingToSend,
       {"*=took-remote"}},
      {"changed since base under client-wins: deleted anyway",
       item_shape(Policy::ClientWins),
       item(),
       item(R"({"Item Weight": 0.7})"),
       Decision::Send,
       {"*=took-local"}},
      {"a manual field changed upstream goes to a person even under client-wins",
       item_shape(Policy::ClientWins, {"Item Weight"}),
       item(),
       item(R"({"Item Weight": 0.7})"),
       Decision::DeleteVsEdit,
       {"*=person"}},
      {"only computed keys changed upstream",
       po_shape(),
       order,
       po({L101(), L102()}, R"({"Supplier Name": "Acme Ltd"})"),
       Decision::Send,
       {}},
      {"a line added upstream since base",
       po_shape(),
       order,
       po({L101(), L102(), line(103, "C", 1, "2024-05-01")}),
       Decision::DeleteVsEdit,
       {"*=person"}},
      {"a line's quantity changed upstream: manual even under server-wins lines",
       [] {
         auto s = po_shape(Policy::ServerWins);
         s.policy = Policy::ServerWins;
         return s;
       }(),
       order,
       po({L101(11), L102()}),
       Decision::DeleteVsEdit,
       {"*=person"}},
      {"base without its lines says nothing about them",
       po_shape(),
       without(order, "details"),
       order,
       Decision::Send,
       {}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto plan = plan_delete(c.base, c.remote, c.shape);
    CHECK(to_string(plan.decision) == to_string(c.decision));
    CHECK(describe(plan.collisions) == c.collisions);
    CHECK(plan.body.is_null());
  }
}

TEST_CASE("discount_late_echoes: a late delivery of our own cut request is not somebody else's change",
          "[conflict][record_merge]") {
  RecordShape item;
  item.ignored = {"Unit Name"};
  // Base: what the loopback showed before the edit being pushed (our later edit set "v2").
  const Json base = J(R"({"id": 9, "Item Description": "v2", "Item Status": "Active", "Unit Name": "Each"})");
  struct Row {
    const char* name;
    const char* remote;
    std::vector<Json> late;
    const char* want_remote;
    std::vector<std::string> repaired;
  };
  const std::vector<Row> rows = {
      {"no cut request: remote stands",
       R"({"id": 9, "Item Description": "v1", "Item Status": "Active"})",
       {},
       R"({"id": 9, "Item Description": "v1", "Item Status": "Active"})",
       {}},
      {"remote holds the value a cut request sent: ours, base goes back",
       R"({"id": 9, "Item Description": "v1", "Item Status": "Active"})",
       {J(R"({"Item Description": "v1"})")},
       R"({"id": 9, "Item Description": "v2", "Item Status": "Active"})",
       {"Item Description"}},
      {"remote holds another value: somebody else's change stands",
       R"({"id": 9, "Item Description": "theirs", "Item Status": "Active"})",
       {J(R"({"Item Description": "v1"})")},
       R"({"id": 9, "Item Description": "theirs", "Item Status": "Active"})",
       {}},
      {"remote equals base: nothing to repair",
       R"({"id": 9, "Item Description": "v2", "Item Status": "Active"})",
       {J(R"({"Item Description": "v2"})")},
       R"({"id": 9, "Item Description": "v2", "Item Status": "Active"})",
       {}},
      {"only the keys the cut request sent count",
       R"({"id": 9, "Item Description": "v1", "Item Status": "Inactive"})",
       {J(R"({"Item Description": "v1"})"), J(R"({"Item Description": "v0"})")},
       R"({"id": 9, "Item Description": "v2", "Item Status": "Inactive"})",
       {"Item Description"}},
      {"keys the shape ignores and the id are never repaired",
       R"({"id": 10, "Item Description": "v2", "Item Status": "Active", "Unit Name": "Box"})",
       {J(R"({"id": 10, "Unit Name": "Box"})")},
       R"({"id": 10, "Item Description": "v2", "Item Status": "Active", "Unit Name": "Box"})",
       {}},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    const auto out = discount_late_echoes(base, J(r.remote), r.late, item);
    CHECK(out.remote == J(r.want_remote));
    CHECK(out.repaired == r.repaired);
  }

  // Carried through the merge: the edit being pushed changes another key; the repaired key goes back with it
  // instead of a conflict (without the check, both sides "changed" the description: a person would decide).
  const Json request = J(R"({"Item Description": "v3"})");
  const Json remote =
      J(R"({"id": 9, "Item Description": "v1", "Item Status": "Active", "Unit Name": "Each"})");
  CHECK(plan_update(base, request, remote, item).decision == Decision::NeedsPerson);
  const auto echo = discount_late_echoes(base, remote, {J(R"({"Item Description": "v1"})")}, item);
  CHECK(plan_update(base, request, echo.remote, item).decision == Decision::Send);
}
