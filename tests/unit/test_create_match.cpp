#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "conflict/create_match.hpp"

using namespace knosc::conflict;
using std::chrono::seconds;

namespace {

Json J(const char* text) {
  return Json::parse(text);
}

std::vector<Json> rows(const char* array) {
  std::vector<Json> out;
  for (const auto& r : J(array))
    out.push_back(r);
  return out;
}

// 2024-03-10T09:00:00Z, when the ticket POST below was sent.
const TimePoint kSent = TimePoint{} + seconds(1710061200);

}  // namespace

TEST_CASE("match_create: by business key", "[conflict][create_match]") {
  const Json po =
      J(R"({"PO List Number": "PO-100", "PO List Document Status": "Open", "Supplier Number": "SUP-1",
                        "PO List Order Date": "2024-03-15", "Purchase Order Id": null,
                        "details": [{"id": null, "Item Number": "ITEM-A", "PO Details Quantity": 200}]})");
  const Json inventory =
      J(R"({"Item Number": "ITEM-A", "Warehouse Number": "WH-01", "Inventory Quantity": 200})");
  const std::vector<std::string> po_key{"PO List Number"};
  const std::vector<std::string> inv_key{"Item Number", "Sub Item Number", "Warehouse Number"};
  struct Case {
    const char* name;
    Json body;
    std::vector<std::string> key;
    std::vector<Json> not_ours;
    const char* rows;
    CreateOutcome outcome;
    Json id;
    std::vector<std::string> differing = {};
    std::set<std::string> ignored = {};
  };
  const Case cases[] = {
      {"nothing listed: retry", po, po_key, {}, "[]", CreateOutcome::NotLanded, nullptr},
      {"only other numbers listed: retry",
       po,
       po_key,
       {},
       R"([{"id": 7, "PO List Number": "PO-099"}])",
       CreateOutcome::NotLanded,
       nullptr},
      {"a new row with the number and the values sent: landed",
       po,
       po_key,
       {1},
       R"([{"id": 77, "PO List Number": "PO-100", "PO List Document Status": "Open", "Supplier Number": "SUP-1",
            "PO List Order Date": "2024-03-15", "Supplier Name": "Acme", "PO Total Items": 1}])",
       CreateOutcome::Landed,
       77},
      {"keys a list row does not show (lines, write-only keys) are not compared",
       po,
       po_key,
       {},
       R"([{"id": 77, "PO List Number": "PO-100"}])",
       CreateOutcome::Landed,
       77},
      {"the number was taken before the POST: not this create",
       po,
       po_key,
       {77},
       R"([{"id": 77, "PO List Number": "PO-100", "Supplier Number": "SUP-1"}])",
       CreateOutcome::Taken,
       77},
      {"the number holds other values: a person decides",
       po,
       po_key,
       {},
       R"([{"id": 78, "PO List Number": "PO-100", "Supplier Number": "SUP-2", "PO List Document Status": "Open"}])",
       CreateOutcome::Taken,
       78,
       {"Supplier Number"}},
      {"ignored keys may differ",
       po,
       po_key,
       {},
       R"([{"id": 78, "PO List Number": "PO-100", "PO List Document Status": "Received"}])",
       CreateOutcome::Landed,
       78,
       {},
       {"PO List Document Status"}},
      {"a unique number listed twice is ambiguous",
       po,
       po_key,
       {},
       R"([{"id": 78, "PO List Number": "PO-100"}, {"id": 79, "PO List Number": "PO-100"}])",
       CreateOutcome::Ambiguous,
       nullptr},
      {"a key part the body leaves out matches null",
       inventory,
       inv_key,
       {},
       R"([{"id": 601, "Item Number": "ITEM-A", "Sub Item Number": null, "Warehouse Number": "WH-01",
            "Inventory Quantity": 200.0}])",
       CreateOutcome::Landed,
       601},
      {"a key part the body leaves out does not match a value",
       inventory,
       inv_key,
       {},
       R"([{"id": 602, "Item Number": "ITEM-A", "Sub Item Number": "SUB-1", "Warehouse Number": "WH-01"}])",
       CreateOutcome::NotLanded,
       nullptr},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CreateAttempt a;
    a.body = c.body;
    a.business_key = c.key;
    a.not_ours = c.not_ours;
    const auto m = match_create(a, rows(c.rows), {}, c.ignored);
    CHECK(to_string(m.outcome) == to_string(c.outcome));
    CHECK(m.id == c.id);
    CHECK(m.differing_keys == c.differing);
  }
}

TEST_CASE("match_create: tickets by title, reporter and time window", "[conflict][create_match]") {
  const Json body = J(R"({"Title": "Delayed shipment from Acme", "Description": "ETA pushed by 5 days.",
                          "Priority": "High", "Category": "Procurement", "Reporter Email": "john@acme.com",
                          "Subscribers": ["jane@acme.com"]})");
  Json no_reporter = body;
  no_reporter.erase("Reporter Email");
  struct Case {
    const char* name;
    Json body;
    std::vector<Json> not_ours;
    const char* rows;
    CreateOutcome outcome;
    Json id;
    std::vector<Json> candidates = {};
  };
  const Case cases[] = {
      {"nothing listed: retry", body, {}, "[]", CreateOutcome::NotLanded, nullptr},
      {"same title and reporter, created during the attempt: landed",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Description": "ETA pushed by 5 days.", "Priority": "High", "Status": "Open",
            "Created At": "2024-03-10T09:00:02Z"}])",
       CreateOutcome::Landed,
       "TKT-041"},
      {"created long before the attempt: not this create",
       body,
       {},
       R"([{"id": "TKT-012", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T08:30:00Z"}])",
       CreateOutcome::NotLanded,
       nullptr},
      {"a ticket the replica held before the POST is not this create",
       body,
       {"TKT-041"},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T09:00:02Z"}])",
       CreateOutcome::NotLanded,
       nullptr},
      {"another reporter's ticket with the same title is not this create",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "ann@acme.com",
            "Created At": "2024-03-10T09:00:02Z"}])",
       CreateOutcome::NotLanded,
       nullptr},
      {"a different description makes it another ticket",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Description": "Something else.", "Created At": "2024-03-10T09:00:02Z"}])",
       CreateOutcome::NotLanded,
       nullptr},
      {"two identical tickets by the same reporter inside the window: a person decides",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T09:00:02Z"},
           {"id": "TKT-042", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T09:00:40Z"}])",
       CreateOutcome::Ambiguous,
       nullptr,
       {"TKT-041", "TKT-042"}},
      {"no reporter in the body: Knosc recorded the caller",
       no_reporter,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "svc-syncd@acme.com",
            "Created At": "2024-03-10T09:00:02Z"}])",
       CreateOutcome::Landed,
       "TKT-041"},
      {"a row that cannot be placed in time is ambiguous",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "yesterday"}])",
       CreateOutcome::Ambiguous,
       nullptr,
       {"TKT-041"}},
      {"inside the slack after the attempt gave up",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T09:02:29Z"}])",
       CreateOutcome::Landed,
       "TKT-041"},
      {"beyond the slack after the attempt gave up",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T09:02:31Z"}])",
       CreateOutcome::NotLanded,
       nullptr},
      {"a timestamp with an offset is read as the same instant",
       body,
       {},
       R"([{"id": "TKT-041", "Title": "Delayed shipment from Acme", "Reporter Email": "john@acme.com",
            "Created At": "2024-03-10T10:00:05+01:00"}])",
       CreateOutcome::Landed,
       "TKT-041"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CreateAttempt a;
    a.body = c.body;
    a.not_ours = c.not_ours;
    a.sent_at = kSent;
    a.gave_up_at = kSent + seconds(30);
    a.caller_email = "svc-syncd@acme.com";
    const auto m = match_create(a, rows(c.rows));
    CHECK(to_string(m.outcome) == to_string(c.outcome));
    CHECK(m.id == c.id);
    CHECK(m.candidates == c.candidates);
  }
}

TEST_CASE("parse_knosc_timestamp", "[conflict][create_match]") {
  struct Case {
    const char* text;
    std::optional<long long> epoch_ms;
  };
  const Case cases[] = {
      {"2024-03-10T09:00:00Z", 1710061200000LL},      {"1970-01-01T00:00:00Z", 0LL},
      {"2024-02-29T23:59:59Z", 1709251199000LL},      {"2024-03-10T09:00:00.250Z", 1710061200250LL},
      {"2024-03-10T10:30:00+01:30", 1710061200000LL}, {"2024-03-10T04:00:00-05:00", 1710061200000LL},
      {"2024-03-10 09:00:00Z", 1710061200000LL},      {"2024-03-10T09:00:00", std::nullopt},  // no zone
      {"2023-02-29T00:00:00Z", std::nullopt},         {"2024-03-10T24:00:00Z", std::nullopt},
      {"2024-03-10T09:00:00.Z", std::nullopt},        {"2024-03-10T09:00:00Zjunk", std::nullopt},
      {"2024-3-10T09:00:00Z", std::nullopt},          {"", std::nullopt},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    const auto t = parse_knosc_timestamp(c.text);
    REQUIRE(t.has_value() == c.epoch_ms.has_value());
    if (t)
      CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count() ==
            *c.epoch_ms);
  }
}
