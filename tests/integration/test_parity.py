"""Parity with Knosc, black-box: every request below goes to knosc-sim (the reference) and to the target
(KNOSC_PARITY_TARGET: "sim" = a second knosc-sim with the same seed and scale, "daemon" = knosc-syncd's
loopback API), and both must answer with the same status, envelope and body (parity.py says what may
differ). Reads first, then errors and authentication; the writes run last, step by step against both
targets in the same order, each followed by the reads that show its effect.

Select with markers: `-m auth`, `-m writes`, `-m "not writes"`.
"""

from __future__ import annotations

import pytest

import parity
from parity import LOGIN_COOKIES, LOGOUT_COOKIES, REFRESH_COOKIES, marked

pytest_plugins = ["parity"]

# Every resource the daemon mirrors, with a column to sort on (other than the list's default).
LIST_RESOURCES = {
    "purchase-order": "PO List Number",
    "purchase-order-details": "PO Details ETA Date",
    "sales-order": "SO List Number",
    "sales-order-details": "SO Details Ship Date",
    "manufacturing-order": "MO List Number",
    "forecast": "Forecast List Number",
    "inventory": "Inventory Quantity",
    "item-master": "Item Description",
    "sub-item-master": "Sub Item Number",
    "customer-master": "Customer Name",
    "ship-to-master": "Ship To Name",
    "supplier-master": "Supplier Name",
    "ship-from-master": "Ship From Name",
    "warehouse-master": "Warehouse Name",
    "unit-master": "Unit Name",
    "external-item-master": "External Item Number",
    "bill-of-materials": "BOM Number",
    "asn": "ETA",
    "supplier-allocation": "Allocation Percentage",
    "issue-tracker-tickets": "Due Date",
    "scenario-analysis": "Scenario Name",
    "user": "User Fullname",
    "role": "Role Name",
}
# The error-code prefix of each resource's missing-record answer (400 <prefix>.NotFound, CONTRACT §3).
NOT_FOUND = {
    "purchase-order": "PurchaseOrderList", "purchase-order-details": "PurchaseOrderDetails",
    "sales-order": "SalesOrderList", "sales-order-details": "SalesOrderDetails",
    "manufacturing-order": "ManufacturingOrderList", "forecast": "ForecastList", "inventory": "Inventory",
    "item-master": "ItemMaster", "sub-item-master": "SubItemMaster", "customer-master": "CustomerMaster",
    "ship-to-master": "ShipToMaster", "supplier-master": "SupplierMaster", "ship-from-master": "ShipFromMaster",
    "warehouse-master": "WarehouseMaster", "unit-master": "UnitMaster", "external-item-master": "ExternalItemMaster",
    "bill-of-materials": "BillOfMaterials", "asn": "ASN", "supplier-allocation": "SupplierAllocation",
    "issue-tracker-tickets": "IssueTrackerTickets", "scenario-analysis": "ScenarioAnalysis", "user": "User",
    "role": "Role",
}
INACTIVE_WH = "WH-10"   # knosc-sim's inactive warehouse

# Lists read from the reference before the cases run; cases name records as {@pick#i.Key}.
PICKS = {name: ("/" + name, {}) for name in LIST_RESOURCES}
PICKS.update({
    "po_wh01": ("/purchase-order", {"filter": {"Warehouse Number": "WH-01"}}),
    "po_wh02": ("/purchase-order", {"filter": {"Warehouse Number": "WH-02"}}),
    "po_inactive": ("/purchase-order", {"filter": {"Warehouse Status": "Inactive"}}),
    "pod_wh01": ("/purchase-order-details", {"filter": {"Warehouse Number": "WH-01"}}),
    "sod_open": ("/sales-order-details", {"filter": {"SO Details Document Status": "Open"}}),
    "inv_wh01": ("/inventory", {"filter": {"Warehouse Number": "WH-01"}}),
})


def _rows(body):
    return body["data"]["rows"]


def no_rows_of(key, value):
    return ("no row has %s = %s" % (key, value), lambda b: all(r.get(key) != value for r in _rows(b)))


def all_rows_have(key, value):
    return ("every row has %s = %s" % (key, value), lambda b: _rows(b) and all(r.get(key) == value for r in _rows(b)))


def some_row_has(key, value):
    return ("some row has %s = %s" % (key, value), lambda b: any(r.get(key) == value for r in _rows(b)))


def C(id, path, **kw):
    """A case: see parity.py for the keys."""
    kw["id"] = id
    kw["path"] = path
    return kw


# ============================================================================================================
# Reads: lists
# ============================================================================================================
LIST_CASES = []
for _name, _key in LIST_RESOURCES.items():
    LIST_CASES += [
        C("%s:default" % _name, "/" + _name, expect=200, rows="some"),
        C("%s:page-2-of-2" % _name, "/" + _name, params={"page": 2, "page_size": 2}, expect=200, rows="some"),
        C("%s:sort-asc" % _name, "/" + _name, params={"sort": {"key": _key, "type": "Ascending"}, "page_size": 20},
          expect=200, rows="some"),
        C("%s:sort-desc" % _name, "/" + _name, params={"sort": {"key": _key, "type": "Descending"}, "page_size": 20},
          expect=200, rows="some"),
    ]

FILTER_CASES = [
    # scalar: exact match
    C("po:scalar-status", "/purchase-order", params={"filter": {"PO List Document Status": "Open"}}, rows="some",
      check=all_rows_have("PO List Document Status", "Open")),
    C("pod:scalar-item", "/purchase-order-details",
      params={"filter": {"Item Number": "{@purchase-order-details#0.Item Number}"}}, rows="some"),
    C("so:scalar-status", "/sales-order", params={"filter": {"SO List Document Status": "Open"}}, rows="some"),
    C("mo:scalar-warehouse", "/manufacturing-order", params={"filter": {"Warehouse Number": "WH-02"}}, rows="some"),
    C("item:scalar-type", "/item-master", params={"filter": {"Item Type": "Component"}}, rows="some"),
    C("item:scalar-inactive", "/item-master", params={"filter": {"Item Status": "Inactive"}}, rows="some"),
    C("customer:scalar-status", "/customer-master", params={"filter": {"Customer Status": "Inactive"}}, rows="some"),
    C("ship-to:scalar-customer", "/ship-to-master",
      params={"filter": {"Customer Number": "{@ship-to-master#0.Customer Number}"}}, rows="some"),
    C("ship-from:scalar-supplier", "/ship-from-master",
      params={"filter": {"Supplier Number": "{@ship-from-master#0.Supplier Number}"}}, rows="some"),
    C("sub-item:scalar-item", "/sub-item-master",
      params={"filter": {"Item Number": "{@sub-item-master#0.Item Number}"}}, rows="some"),
    C("external:scalar-system", "/external-item-master",
      params={"filter": {"External System": "{@external-item-master#0.External System}"}}, rows="some"),
    C("bom:scalar-status", "/bill-of-materials", params={"filter": {"BOM Status": "Active"}}, rows="some"),
    C("asn:scalar-status", "/asn", params={"filter": {"ASN Status": "Sent"}}, rows="some"),
    C("allocation:scalar-supplier", "/supplier-allocation",
      params={"filter": {"Supplier Number": "{@supplier-allocation#0.Supplier Number}"}}, rows="some"),
    C("ticket:scalar-priority", "/issue-tracker-tickets", params={"filter": {"Priority": "High"}}, rows="some"),
    C("scenario:scalar-status", "/scenario-analysis",
      params={"filter": {"Scenario Status": "{@scenario-analysis#0.Scenario Status}"}}, rows="some"),
    C("user:scalar-role", "/user", params={"filter": {"Role Name": "Viewer"}}, rows="some"),
    C("role:scalar-granular", "/role", params={"filter": {"Has Granular Privileges": True}}, rows="some"),
    C("po:scalar-number", "/purchase-order", params={"filter": {"PO Total Items": 2}}, rows="some",
      notes="a number matches a number column"),
    C("po:scalar-id", "/purchase-order", params={"filter": {"id": "{@purchase-order#3.id}"}}, rows="some"),
    C("po:unknown-column", "/purchase-order", params={"filter": {"No Such Column": "x"}}, rows="none",
      notes="CONTRACT §2: a key that no row has matches nothing"),
    C("po:null-value", "/purchase-order", params={"filter": {"PO List Servicenow Id": None}}, rows="some"),
    # array: any of the values
    C("po:array-status", "/purchase-order", params={"filter": {"PO List Document Status": ["Open", "Shipped"]}},
      rows="some"),
    C("pod:array-warehouse", "/purchase-order-details", params={"filter": {"Warehouse Number": ["WH-01", "WH-03"]},
                                                              "page_size": 200}, rows="some"),
    C("inventory:array-warehouse", "/inventory", params={"filter": {"Warehouse Number": ["WH-02", "WH-04"]}},
      rows="some"),
    C("ticket:array-status", "/issue-tracker-tickets", params={"filter": {"Status": ["Open", "In Progress"]}},
      rows="some"),
    C("item:array-empty", "/item-master", params={"filter": {"Item Type": []}}, rows="none"),
    C("po:array-ids", "/purchase-order",
      params={"filter": {"id": ["{@purchase-order#0.id}", "{@purchase-order#5.id}", 999999]}}, rows="some"),
    # date range: inclusive, either end optional
    C("po:range-order-date", "/purchase-order",
      params={"filter": {"PO List Order Date": {"from": "2025-01-01", "to": "2025-02-28"}}}, rows="some"),
    C("po:range-from-only", "/purchase-order", params={"filter": {"PO List Order Date": {"from": "2025-03-01"}}},
      rows="some"),
    C("po:range-to-only", "/purchase-order", params={"filter": {"PO List Order Date": {"to": "2024-12-31"}}},
      rows="some"),
    C("po:range-single-day", "/purchase-order",
      params={"filter": {"PO List Order Date": {"from": "{@purchase-order#0.PO List Order Date}",
                                                "to": "{@purchase-order#0.PO List Order Date}"}}}, rows="some"),
    C("pod:range-eta", "/purchase-order-details",
      params={"filter": {"PO Details ETA Date": {"from": "2025-03-01", "to": "2025-04-30"}}}, rows="some"),
    C("so:range-order-date", "/sales-order", params={"filter": {"SO List Order Date": {"from": "2025-01-01"}}},
      rows="some"),
    C("sod:range-ship-date", "/sales-order-details",
      params={"filter": {"SO Details Ship Date": {"from": "2025-02-01", "to": "2025-03-31"}}}, rows="some"),
    C("mo:range-order-date", "/manufacturing-order", params={"filter": {"MO List Order Date": {"to": "2025-03-03"}}},
      rows="some"),
    C("forecast:range-date", "/forecast", params={"filter": {"Forecast List Date": {"from": "2025-01-01"}}},
      rows="some"),
    C("inventory:range-quantity", "/inventory", params={"filter": {"Inventory Quantity": {"from": 100, "to": 500}}},
      rows="some", notes="a numeric range"),
    C("ticket:range-created", "/issue-tracker-tickets",
      params={"filter": {"Created At": {"from": "2025-02-01", "to": "2025-02-28"}}}, rows="some",
      notes="'to' is inclusive at its own precision: timestamps on that day are inside"),
    C("asn:range-eta", "/asn", params={"filter": {"ETA": {"from": "2024-01-01"}}}, rows="some"),
    # several keys AND together, with sort and paging
    C("pod:and-sort-page", "/purchase-order-details",
      params={"filter": {"PO Details Document Status": ["Open", "Shipped"], "Warehouse Number": "WH-02"},
              "sort": {"key": "PO Details Quantity", "type": "Descending"}, "page": 2, "page_size": 3}),
    # the older search form (API-NOTES §5.2): include / exclude
    C("po:search-include", "/purchase-order",
      params={"search": {"filters": {"include": {"PO List Document Status": ["Open", "Shipped"]}, "exclude": {}}}},
      rows="some"),
    C("po:search-exclude", "/purchase-order",
      params={"search": {"filters": {"include": {}, "exclude": {"PO List Document Status": ["Closed", "Received"]}}}},
      rows="some", check=no_rows_of("PO List Document Status", "Closed")),
    C("po:search-include-exclude", "/purchase-order",
      params={"search": {"filters": {"include": {"PO List Document Status": ["Open"]},
                                     "exclude": {"Warehouse Number": ["WH-01"]}}}},
      rows="some", check=no_rows_of("Warehouse Number", "WH-01")),
    C("item:search-and-filter", "/item-master",
      params={"search": {"filters": {"include": {"Item Type": ["Component", "Raw Material"]}}},
              "filter": {"Item Status": "Active"}}, rows="some"),
    C("forecast:search-vendor-keys", "/forecast",
      params={"search": {"filters": {"include": {"FO List Document Status": ["Open"]}, "exclude": {}}}}, rows="none",
      notes="the vendor's FO List keys are not v1.41 keys: nothing matches"),
    # sort ties break by id in both directions; query encodings
    C("po:sort-ties-desc", "/purchase-order",
      params={"sort": {"key": "PO List Document Status", "type": "Descending"}, "page": 2, "page_size": 7}),
    C("item:sort-ties-asc", "/item-master", params={"sort": {"key": "Item Type"}, "page": 3, "page_size": 11},
      notes="a sort without type is Ascending"),
    C("item:sort-by-id-desc", "/item-master", params={"sort": {"key": "id", "type": "Descending"}, "page_size": 5}),
    C("po:sort-unknown-column", "/purchase-order", params={"sort": {"key": "No Such Column", "type": "Descending"},
                                                           "page_size": 5}),
    C("po:sort-custom-column", "/purchase-order", params={"sort": {"key": "Buyer Code", "type": "Descending"},
                                                          "page_size": 5}),
    C("po:percent-encoded-query", "/purchase-order",
      query="filter=%7B%22PO%20List%20Document%20Status%22%3A%20%22Open%22%7D&page_size=3", rows="some",
      notes="%20 for spaces, as curl --data-urlencode sends it"),
    C("po:empty-params", "/purchase-order", query="page=&page_size=&filter=&sort=", rows="some",
      notes="empty values mean the defaults"),
    # page sizes and pages
    C("pod:page-size-above-1000", "/purchase-order-details", params={"page_size": 5000}, rows="some",
      check=("clamped to 1000 rows at most", lambda b: len(_rows(b)) <= 1000)),
    C("item:page-size-1001", "/item-master", params={"page_size": 1001}, rows="some"),
    C("inventory:page-size-huge", "/inventory", params={"page_size": 100000, "page": 1}, rows="some"),
    C("po:page-past-end", "/purchase-order", params={"page": 1000}, rows="none"),
    C("item:page-past-end", "/item-master", params={"page": 50, "page_size": 50}, rows="none"),
    C("user:page-past-end", "/user", params={"page": 99, "page_size": 5}, rows="none",
      notes="extra.total still counts every user"),
    C("user:page-size-3", "/user", params={"page": 2, "page_size": 3}, rows="some"),
    C("ticket:last-partial-page", "/issue-tracker-tickets", params={"page": 3, "page_size": 8}, rows="some"),
    C("po:page-size-1", "/purchase-order", params={"page": 7, "page_size": 1}, rows="some"),
]

INACTIVE_CASES = [
    C("po:inactive-hidden", "/purchase-order", params={"page_size": 1000}, rows="some",
      check=no_rows_of("Warehouse Number", INACTIVE_WH)),
    C("po:inactive-shown", "/purchase-order", params={"filter": {"Warehouse Status": "Inactive"}}, rows="some",
      check=all_rows_have("Warehouse Number", INACTIVE_WH)),
    C("po:all-statuses", "/purchase-order",
      params={"filter": {"Warehouse Status": ["Active", "Inactive"]}, "page_size": 1000}, rows="some",
      check=some_row_has("Warehouse Number", INACTIVE_WH)),
    C("po:inactive-by-number-only", "/purchase-order", params={"filter": {"Warehouse Number": INACTIVE_WH}},
      rows="none", notes="naming the warehouse is not naming Warehouse Status"),
    C("po:inactive-search", "/purchase-order",
      params={"search": {"filters": {"include": {"Warehouse Status": ["Inactive"]}}}}, rows="some"),
    C("pod:inactive-hidden", "/purchase-order-details", params={"page_size": 1000}, rows="some",
      check=no_rows_of("Warehouse Number", INACTIVE_WH)),
    C("pod:inactive-shown", "/purchase-order-details", params={"filter": {"Warehouse Status": "Inactive"}},
      rows="some"),
    C("sod:inactive-shown", "/sales-order-details", params={"filter": {"Warehouse Status": "Inactive"}}),
    C("inventory:inactive-hidden", "/inventory", params={"page_size": 1000}, rows="some",
      check=no_rows_of("Warehouse Number", INACTIVE_WH)),
    C("inventory:inactive-shown", "/inventory", params={"filter": {"Warehouse Status": "Inactive"}}, rows="some"),
    C("mo:inactive-shown", "/manufacturing-order", params={"filter": {"Warehouse Status": ["Inactive"]}}),
    C("forecast:inactive-shown", "/forecast", params={"filter": {"Warehouse Status": "Inactive"}}),
    C("asn:inactive-shown", "/asn", params={"filter": {"Warehouse Status": "Inactive"}}),
    C("warehouse:inactive-hidden", "/warehouse-master", params={"page_size": 100}, rows="some",
      check=no_rows_of("Warehouse Number", INACTIVE_WH)),
    C("warehouse:inactive-shown", "/warehouse-master", params={"filter": {"Warehouse Status": "Inactive"}},
      rows="some", check=all_rows_have("Warehouse Number", INACTIVE_WH)),
    C("warehouse:active-only", "/warehouse-master", params={"filter": {"Warehouse Status": "Active"}}, rows="some"),
    C("item:unaffected", "/item-master", params={"filter": {"Warehouse Status": "Inactive"}}, rows="none",
      notes="rows without a warehouse have no Warehouse Status"),
]

# ============================================================================================================
# Reads: records and helpers
# ============================================================================================================
GET_ONE_CASES = []
for _name in LIST_RESOURCES:
    for _i in range(3):
        GET_ONE_CASES.append(C("%s#%d" % (_name, _i), "/%s/{@%s#%d.id}" % (_name, _name, _i), expect=200))
    _missing = "TKT-999" if _name == "issue-tracker-tickets" else "999999"
    GET_ONE_CASES.append(C("%s:missing" % _name, "/%s/%s" % (_name, _missing),
                           expect=(400, NOT_FOUND[_name] + ".NotFound")))
GET_ONE_CASES += [
    C("po:inactive-warehouse-record", "/purchase-order/{@po_inactive#0.id}", expect=200,
      notes="hidden from lists, still readable by id"),
    C("po:deep-page-record", "/purchase-order/{@purchase-order#49.id}", expect=200),
    C("item:non-numeric-id", "/item-master/abc", expect=(400, "ItemMaster.NotFound")),
    C("po:non-numeric-id", "/purchase-order/PO-0000001", expect=(400, "PurchaseOrderList.NotFound")),
    C("profile:sync", "/profile", expect=200),
]

HELPER_CASES = [
    C("po-item", "/purchase-order-item/{@purchase-order-details#0.Item Id}", expect=200, rows="some"),
    C("po-item-warehouse", "/purchase-order-item/{@purchase-order-details#0.Item Id}/"
      "{@purchase-order-details#0.Warehouse Id}", expect=200, rows="some"),
    C("po-item-paged", "/purchase-order-item/{@purchase-order-details#1.Item Id}", params={"page": 1, "page_size": 2},
      expect=200),
    C("po-item-sorted", "/purchase-order-item/{@purchase-order-details#2.Item Id}",
      params={"sort": {"key": "PO Details Quantity", "type": "Ascending"}}, expect=200),
    C("po-item-filtered", "/purchase-order-item/{@purchase-order-details#0.Item Id}",
      params={"filter": {"PO Details Document Status": "Open"}}, expect=200),
    C("po-item-missing-item", "/purchase-order-item/999999", expect=(400, "ItemMaster.NotFound")),
    C("po-item-missing-warehouse", "/purchase-order-item/{@purchase-order-details#0.Item Id}/999999",
      expect=(400, "WarehouseMaster.NotFound")),
    C("so-item", "/sales-order-item/{@sales-order-details#0.Item Id}", expect=200, rows="some"),
    C("so-item-warehouse", "/sales-order-item/{@sales-order-details#0.Item Id}/{@sales-order-details#0.Warehouse Id}",
      expect=200, rows="some"),
    C("inventory-item", "/inventory-item/{@inventory#0.Item Id}", expect=200),
    C("inventory-item-warehouse", "/inventory-item/{@inventory#0.Item Id}/{@inventory#0.Warehouse Id}", expect=200),
    C("inventory-item-other", "/inventory-item/{@purchase-order-details#0.Item Id}", expect=200),
    C("inventory-item-missing", "/inventory-item/999999", expect=(400, "ItemMaster.NotFound")),
    C("sales-prioritized", "/sales-prioritized-item-inventory/{@sod_open#0.Item Id}", expect=200, rows="some"),
    C("sales-prioritized-warehouse", "/sales-prioritized-item-inventory/{@sod_open#0.Item Id}/"
      "{@sod_open#0.Warehouse Id}", expect=200, rows="some"),
    C("sales-prioritized-missing", "/sales-prioritized-item-inventory/999999", expect=(400, "ItemMaster.NotFound")),
    C("net-allocation", "/supplier-net-allocation", expect=200, rows="some"),
    C("net-allocation-paged", "/supplier-net-allocation", params={"page": 2, "page_size": 10}, expect=200),
    C("net-allocation-filtered", "/supplier-net-allocation",
      params={"filter": {"Supplier Number": "{@supplier-allocation#0.Supplier Number}"}}, expect=200, rows="some"),
    C("auto-complete-item", "/auto-complete", params={"category": "Item Number", "text": "ITEM-00001"}, expect=200),
    C("auto-complete-supplier-name", "/auto-complete", params={"category": "Supplier Name", "text": "an"}, expect=200),
    C("auto-complete-warehouse", "/auto-complete", params={"category": "Warehouse Number", "text": "WH"}, expect=200,
      notes="inactive warehouses are left out"),
    C("auto-complete-subset", "/auto-complete",
      params={"category": "PO List Number", "text": "PO-", "subset_filters": {"PO List Document Status": "Open"}},
      expect=200),
    C("auto-complete-no-hit", "/auto-complete", params={"category": "Customer Name", "text": "zzzz-no-such"},
      expect=200),
    C("auto-complete-missing-text", "/auto-complete", params={"category": "Item Number"}, expect=400),
    C("auto-complete-bad-category", "/auto-complete", params={"category": "Colour", "text": "a"}, expect=400),
    C("ticket-notes", "/issue-tracker-tickets/{@issue-tracker-tickets#0.id}/notes", expect=200),
    C("ticket-notes-2", "/issue-tracker-tickets/{@issue-tracker-tickets#1.id}/notes", expect=200),
    C("ticket-subscribers", "/issue-tracker-tickets/{@issue-tracker-tickets#0.id}/subscribers", expect=200),
    C("ticket-subscribers-2", "/issue-tracker-tickets/{@issue-tracker-tickets#2.id}/subscribers", expect=200),
    C("ticket-notes-missing", "/issue-tracker-tickets/TKT-999/notes", expect=(400, "IssueTrackerTickets.NotFound")),
    C("external-details", "/external-item-master-details/{@external-item-master#0.id}", expect=200),
    C("external-details-2", "/external-item-master-details/{@external-item-master#1.id}", expect=200),
    C("external-details-missing", "/external-item-master-details/999999", expect=(400, "ExternalItemMaster.NotFound")),
]

# ============================================================================================================
# Reads as the view-only user and as the granular (WH-01) user
# ============================================================================================================
ROLE_CASES = [
    C("viewer:profile", "/profile", user="viewer", expect=200),
    C("viewer:po-list", "/purchase-order", user="viewer", expect=200, rows="some"),
    C("viewer:pod-list", "/purchase-order-details", user="viewer", params={"page": 3}, expect=200, rows="some"),
    C("viewer:inventory-list", "/inventory", user="viewer", expect=200, rows="some"),
    C("viewer:item-list", "/item-master", user="viewer", params={"filter": {"Item Type": "Component"}}, expect=200),
    C("viewer:user-list", "/user", user="viewer", expect=200, rows="some"),
    C("viewer:role-list", "/role", user="viewer", expect=200, rows="some"),
    C("viewer:po-get", "/purchase-order/{@purchase-order#0.id}", user="viewer", expect=200),
    C("viewer:user-get", "/user/{@user#2.id}", user="viewer", expect=200),
    C("viewer:role-get", "/role/{@role#3.id}", user="viewer", expect=200),
    C("viewer:po-item", "/purchase-order-item/{@purchase-order-details#0.Item Id}", user="viewer", expect=200),
    C("viewer:auto-complete", "/auto-complete", user="viewer", params={"category": "Item Number", "text": "ITEM-0001"},
      expect=200),
    C("wh1:profile", "/profile", user="wh1", expect=200),
    C("wh1:po-list", "/purchase-order", user="wh1", params={"page_size": 1000}, expect=200, rows="some",
      check=all_rows_have("Warehouse Number", "WH-01")),
    C("wh1:pod-list", "/purchase-order-details", user="wh1", params={"page_size": 1000}, expect=200, rows="some",
      check=all_rows_have("Warehouse Number", "WH-01")),
    C("wh1:so-list", "/sales-order", user="wh1", expect=200, rows="some"),
    C("wh1:sod-list", "/sales-order-details", user="wh1", expect=200, rows="some"),
    C("wh1:mo-list", "/manufacturing-order", user="wh1", expect=200),
    C("wh1:forecast-list", "/forecast", user="wh1", expect=200),
    C("wh1:inventory-list", "/inventory", user="wh1", params={"page_size": 1000}, expect=200, rows="some",
      check=all_rows_have("Warehouse Number", "WH-01")),
    C("wh1:warehouse-list", "/warehouse-master", user="wh1", expect=200, rows="some",
      check=all_rows_have("Warehouse Number", "WH-01")),
    C("wh1:asn-list", "/asn", user="wh1", expect=200),
    C("wh1:item-list", "/item-master", user="wh1", params={"page": 2}, expect=200, rows="some",
      notes="records without a warehouse are all visible"),
    C("wh1:filter-other-warehouse", "/purchase-order", user="wh1", params={"filter": {"Warehouse Number": "WH-02"}},
      expect=200, rows="none"),
    C("wh1:inactive-shown", "/purchase-order", user="wh1", params={"filter": {"Warehouse Status": "Inactive"}},
      expect=200, rows="none"),
    C("wh1:po-get-own", "/purchase-order/{@po_wh01#0.id}", user="wh1", expect=200),
    C("wh1:po-get-other", "/purchase-order/{@po_wh02#0.id}", user="wh1", expect=(400, "PurchaseOrderList.NotFound")),
    C("wh1:pod-get-own", "/purchase-order-details/{@pod_wh01#0.id}", user="wh1", expect=200),
    C("wh1:po-item", "/purchase-order-item/{@pod_wh01#0.Item Id}", user="wh1", expect=200, rows="some",
      check=all_rows_have("Warehouse Number", "WH-01")),
    C("wh1:inventory-item", "/inventory-item/{@inv_wh01#0.Item Id}", user="wh1", expect=200),
    C("wh1:net-allocation", "/supplier-net-allocation", user="wh1", expect=200),
    C("wh1:auto-complete-warehouse", "/auto-complete", user="wh1", params={"category": "Warehouse Number", "text": "WH"},
      expect=200),
]

# ============================================================================================================
# Errors
# ============================================================================================================
_ITEM_BODY = {"Item Number": "ITEM-PARITY-REFUSED", "Item Description": "must never be created"}
ERROR_CASES = [
    C("filter:malformed-json", "/purchase-order", query="filter=%7B%22PO%20List%20Number%22%3A", expect=(400, "JSON.Invalid")),
    C("filter:not-an-object", "/purchase-order", params={"filter": [1, 2]}, expect=(400, "JSON.Invalid")),
    C("filter:bad-range", "/purchase-order", params={"filter": {"PO List Order Date": {"since": "2025-01-01"}}},
      expect=(400, "JSON.Invalid")),
    C("filter:nested-array", "/purchase-order", params={"filter": {"PO List Number": [["a"]]}},
      expect=(400, "JSON.Invalid")),
    C("sort:malformed-json", "/purchase-order", query="sort=%7Bkey", expect=(400, "JSON.Invalid")),
    C("sort:bad-type", "/purchase-order", params={"sort": {"key": "id", "type": "Sideways"}}, expect=(400, "JSON.Invalid")),
    C("sort:no-key", "/item-master", params={"sort": {"type": "Ascending"}}, expect=(400, "JSON.Invalid")),
    C("search:malformed", "/purchase-order", params={"search": {"filters": {"include": {"PO List Number": "x"}}}},
      expect=(400, "JSON.Invalid")),
    C("search:not-json", "/purchase-order", query="search=nope", expect=(400, "JSON.Invalid")),
    C("page:zero", "/purchase-order", params={"page": 0}, expect=(400, "JSON.Invalid")),
    C("page:negative", "/purchase-order", params={"page": -1}, expect=(400, "JSON.Invalid")),
    C("page:not-a-number", "/purchase-order", params={"page": "abc"}, expect=(400, "JSON.Invalid")),
    C("page_size:zero", "/item-master", params={"page_size": 0}, expect=(400, "JSON.Invalid")),
    C("page_size:not-a-number", "/item-master", params={"page_size": "many"}, expect=(400, "JSON.Invalid")),
    C("route:unknown", "/no-such-route", expect=(404, "Route.NotFound")),
    C("route:too-deep", "/item-master/{@item-master#0.id}/extra", expect=(404, "Route.NotFound")),
    C("route:helper-without-item", "/purchase-order-item", expect=(404, "Route.NotFound")),
    C("method:patch-record", "/item-master/{@item-master#0.id}", method="PATCH", json={"Item Description": "x"},
      expect=(404, "Route.NotFound")),
    C("method:delete-collection", "/item-master", method="DELETE", expect=(404, "Route.NotFound")),
    C("method:post-role", "/role", method="POST", json={"Role Name": "x"}, expect=(404, "Route.NotFound")),
    C("method:put-line", "/purchase-order-details/{@purchase-order-details#0.id}", method="PUT", json={},
      expect=(404, "Route.NotFound")),
    C("method:get-authenticate", "/authenticate", expect=(405, "Route.MethodNotAllowed")),
    C("method:get-logout", "/logout", expect=(405, "Route.MethodNotAllowed")),
    C("session:none", "/purchase-order", user=None, expect=(401, "Token.Missing")),
    C("session:none-unknown-route", "/no-such-route", user=None, expect=(401, "Token.Missing")),
    C("session:none-write", "/item-master", method="POST", user=None, json=_ITEM_BODY, expect=(401, "Token.Missing")),
    C("session:garbage-token", "/purchase-order", user=None, headers={"Cookie": "access_token_cookie=not-a-token"},
      expect=(401, "Token.Invalid")),
    C("csrf:missing-on-post", "/item-master", method="POST", json=_ITEM_BODY, csrf=None, expect=(422, "CSRF.Invalid")),
    C("csrf:wrong-on-post", "/item-master", method="POST", json=_ITEM_BODY, csrf="wrong", expect=(422, "CSRF.Invalid")),
    C("csrf:missing-on-put", "/item-master/{@item-master#0.id}", method="PUT", json={"Item Description": "x"},
      csrf=None, expect=(422, "CSRF.Invalid")),
    C("csrf:missing-on-delete", "/item-master/{@item-master#0.id}", method="DELETE", csrf=None,
      expect=(422, "CSRF.Invalid")),
    C("csrf:refresh-token-on-post", "/item-master", method="POST", json=_ITEM_BODY, csrf="refresh",
      expect=(422, "CSRF.Invalid"), notes="the refresh CSRF value is not the access one"),
    C("csrf:not-needed-on-get", "/unit-master", headers={"X-XSRF-TOKEN": "whatever"}, expect=200),
    C("viewer:create", "/item-master", method="POST", user="viewer", json=_ITEM_BODY,
      expect=(403, "User.NotPrivileged")),
    C("viewer:update", "/item-master/{@item-master#0.id}", method="PUT", user="viewer",
      json={"Item Description": "x"}, expect=(403, "User.NotPrivileged")),
    C("viewer:delete", "/purchase-order/{@purchase-order#0.id}", method="DELETE", user="viewer",
      expect=(403, "User.NotPrivileged")),
    C("viewer:delete-line", "/purchase-order-details/{@purchase-order-details#0.id}", method="DELETE", user="viewer",
      expect=(403, "User.NotPrivileged")),
    C("viewer:delete-missing", "/item-master/999999", method="DELETE", user="viewer",
      expect=(403, "User.NotPrivileged"), notes="the privilege is checked before the record"),
    C("viewer:ticket-note", "/issue-tracker-notes", method="POST", user="viewer",
      json={"Ticket Id": "{@issue-tracker-tickets#0.id}", "Note": "x"}, expect=(403, "User.NotPrivileged")),
    C("wh1:create-other-warehouse", "/purchase-order", method="POST", user="wh1",
      json={"PO List Number": "PO-PARITY-REFUSED", "PO List Document Status": "Open",
            "Supplier Number": "{@supplier-master#0.Supplier Number}",
            "details": [{"Item Number": "{@item-master#0.Item Number}", "Warehouse Number": "WH-02",
                         "PO Details Quantity": 5}]},
      expect=(403, "User.NotPrivileged")),
    C("wh1:update-other-warehouse", "/purchase-order/{@po_wh02#0.id}", method="PUT", user="wh1",
      json={"PO List Document Status": "Open"}, expect=(400, "PurchaseOrderList.NotFound")),
    C("body:not-json", "/item-master", method="POST", data="{not json", expect=(400, "JSON.Invalid")),
    C("body:array", "/item-master", method="POST", json=[_ITEM_BODY], expect=(400, "JSON.Invalid")),
]

# ============================================================================================================
# Authentication
# ============================================================================================================
AUTH_CASES = [
    C("login:%s" % u, "/authenticate", method="POST", user="@fresh", json={"username": name, "password": pw},
      expect=200, cookies=LOGIN_COOKIES, check=("body is {login: true}", lambda b: b == {"login": True}))
    for u, (name, pw) in parity.USERS.items()
] + [
    C("login:2fa-account", "/authenticate", method="POST", user="@fresh",
      json={"username": "twofa@acme.example", "password": "twofa-password"}, expect=200, cookies=[],
      check=("requires_2fa", lambda b: b == {"requires_2fa": True})),
    C("login:first-signin-account", "/authenticate", method="POST", user="@fresh",
      json={"username": "newbie@acme.example", "password": "newbie-password"}, expect=200, cookies=[],
      check=("first_signin", lambda b: b.get("first_signin") is True and isinstance(b.get("session_token"), str))),
    C("login:bad-password", "/authenticate", method="POST", user="@fresh",
      json={"username": "admin@acme.example", "password": "not-the-password"},
      expect=(401, "User.InvalidCredentials"), cookies=[]),
    C("login:unknown-user", "/authenticate", method="POST", user="@fresh",
      json={"username": "nobody@acme.example", "password": "whatever-password"},
      expect=(401, "User.InvalidCredentials"), cookies=[]),
    C("login:missing-password", "/authenticate", method="POST", user="@fresh",
      json={"username": "sync@acme.example"}, expect=(400, "JSON.Invalid")),
    C("login:not-json", "/authenticate", method="POST", user="@fresh", data="username=sync",
      expect=(400, "JSON.Invalid")),
    C("refresh:without-cookie", "/token-refresh", method="POST", user="@fresh", csrf="wrong",
      expect=(401, "Token.Missing")),
    C("profile:no-session", "/profile", user=None, expect=(401, "Token.Missing")),
]


def _login(session: str, user: str = "sync"):
    name, pw = parity.USERS[user]
    return C("login", "/authenticate", method="POST", user=session, json={"username": name, "password": pw},
             expect=200, cookies=LOGIN_COOKIES)


AUTH_STORIES = {
    "logout": [
        _login("@s"),
        C("profile", "/profile", user="@s", expect=200),
        C("logout-without-csrf", "/logout", method="POST", user="@s", csrf=None, expect=(422, "CSRF.Invalid")),
        C("logout", "/logout", method="POST", user="@s", expect=200, cookies=LOGOUT_COOKIES),
        C("profile-after-logout", "/profile", user="@s", expect=(401, "Token.Invalid"),
          notes="the documented logout cookies carry no Path; the session must be revoked server-side"),
        C("logout-again", "/logout", method="POST", user="@s", expect=(401, "Token.Invalid")),
    ],
    "refresh": [
        _login("@s", "viewer"),
        C("refresh-with-access-csrf", "/token-refresh", method="POST", user="@s", csrf="access",
          expect=(422, "CSRF.Invalid")),
        C("refresh-without-csrf", "/token-refresh", method="POST", user="@s", csrf=None, expect=(422, "CSRF.Invalid")),
        C("refresh", "/token-refresh", method="POST", user="@s", csrf="refresh", expect=200, cookies=REFRESH_COOKIES),
        C("profile-after-refresh", "/profile", user="@s", expect=200),
        C("write-with-new-csrf", "/item-master", method="POST", user="@s", json=_ITEM_BODY,
          expect=(403, "User.NotPrivileged"), notes="the new csrf_access_token passes CSRF; the viewer may not write"),
    ],
    "lockout": [
        C("failure-1", "/authenticate", method="POST", user="@s",
          json={"username": "newbie@acme.example", "password": "wrong-1"}, expect=(401, "User.InvalidCredentials")),
        C("failure-2", "/authenticate", method="POST", user="@s",
          json={"username": "newbie@acme.example", "password": "wrong-2"}, expect=(401, "User.InvalidCredentials")),
        C("failure-3", "/authenticate", method="POST", user="@s",
          json={"username": "newbie@acme.example", "password": "wrong-3"}, expect=(401, "User.InvalidCredentials")),
        C("locked", "/authenticate", method="POST", user="@s",
          json={"username": "newbie@acme.example", "password": "newbie-password"}, expect=(429, "User.Locked"),
          headers_present=("Retry-After",), notes="CONTRACT §1: locked after 3 failures, even for the right password"),
    ],
}

# ============================================================================================================
# Writes: stories run in order against both targets, each write followed by the reads that show it
# ============================================================================================================
def _create(name, path, body, var, **kw):
    return C(name, path, method="POST", json=body, expect=200, capture={var: "id"}, **kw)


def _get(name, path, **kw):
    kw.setdefault("expect", 200)
    return C(name, path, **kw)


WRITE_STORIES = {
    "master-data": [
        _create("item-create", "/item-master",
                {"Item Number": "ITEM-PARITY-M1", "Item Description": "Parity widget", "Item Type": "Component",
                 "Item Unit": "EA", "Item Status": "Active", "Item Weight": 1.25, "Item Weight Unit": "KG"}, "$item"),
        _get("item-get", "/item-master/{$item}"),
        _get("item-list", "/item-master", params={"filter": {"Item Number": "ITEM-PARITY-M1"}}, rows="some"),
        _get("item-list-last-page", "/item-master", params={"sort": {"key": "id", "type": "Descending"},
                                                           "page_size": 3}),
        _create("supplier-create", "/supplier-master",
                {"Supplier Number": "SUP-PARITY-M1", "Supplier Name": "Parity Supplies", "Supplier Email":
                 "orders@parity.example", "Supplier Status": "Active"}, "$supplier"),
        _get("supplier-get", "/supplier-master/{$supplier}"),
        _create("warehouse-create", "/warehouse-master",
                {"Warehouse Number": "WH-PARITY-M1", "Warehouse Name": "Parity DC", "Warehouse Status": "Active"},
                "$warehouse"),
        _get("warehouse-get", "/warehouse-master/{$warehouse}"),
        _get("warehouse-list", "/warehouse-master", params={"page_size": 100}, rows="some"),
        _create("unit-create", "/unit-master", {"Unit Code": "PAR", "Unit Name": "Parity pack", "Unit Type": "Count"},
                "$unit"),
        _get("unit-get", "/unit-master/{$unit}"),
        _get("unit-list", "/unit-master"),
        # duplicate business keys
        C("item-duplicate", "/item-master", method="POST", json={"Item Number": "ITEM-PARITY-M1"},
          expect=(400, "ItemMaster.AlreadyExists")),
        C("supplier-duplicate", "/supplier-master", method="POST",
          json={"Supplier Number": "SUP-PARITY-M1", "Supplier Name": "Again"}, expect=(400, "SupplierMaster.AlreadyExists")),
        C("warehouse-duplicate", "/warehouse-master", method="POST",
          json={"Warehouse Number": "WH-01", "Warehouse Name": "Again"}, expect=(400, "WarehouseMaster.AlreadyExists")),
        C("unit-duplicate", "/unit-master", method="POST", json={"Unit Code": "EA"}, expect=(400, "UnitMaster.AlreadyExists")),
        # unknown referenced numbers, missing and invalid fields
        C("sub-item-unknown-item", "/sub-item-master", method="POST",
          json={"Sub Item Number": "SUB-PARITY-M1", "Item Number": "ITEM-NO-SUCH"}, expect=(400, "ItemMaster.NotFound")),
        C("ship-from-unknown-supplier", "/ship-from-master", method="POST",
          json={"Ship From Number": "SF-PARITY-X", "Ship From Name": "x", "Supplier Number": "SUP-NO-SUCH"},
          expect=(400, "SupplierMaster.NotFound")),
        C("item-unknown-unit", "/item-master", method="POST", json={"Item Number": "ITEM-PARITY-M2", "Item Unit": "NOPE"},
          expect=(400, "UnitMaster.NotFound")),
        C("supplier-missing-name", "/supplier-master", method="POST", json={"Supplier Number": "SUP-PARITY-M2"},
          expect=(400, "SupplierMaster.MissingField")),
        C("item-invalid-type", "/item-master", method="POST", json={"Item Number": "ITEM-PARITY-M3", "Item Type": "Gadget"},
          expect=(400, "ItemMaster.InvalidField")),
        _get("nothing-created", "/item-master", params={"filter": {"Item Number": ["ITEM-PARITY-M2", "ITEM-PARITY-M3"]}},
             rows="none"),
        # partial PUTs: only the keys sent change
        C("item-put-partial", "/item-master/{$item}", method="PUT",
          json={"Item Description": "Parity widget, revised", "Item Unit": "PAR"}, expect=200),
        _get("item-get-after-put", "/item-master/{$item}",
             check=("other keys unchanged", lambda b: b["data"]["Item Weight"] == 1.25
                    and b["data"]["Item Type"] == "Component" and b["data"]["Item Unit"] == "PAR")),
        C("warehouse-put-partial", "/warehouse-master/{$warehouse}", method="PUT", json={"Warehouse Name": "Parity DC North"},
          expect=200),
        _get("warehouse-get-after-put", "/warehouse-master/{$warehouse}"),
        C("supplier-put-partial", "/supplier-master/{$supplier}", method="PUT", json={"Supplier Phone": "+1 555 000 1234"},
          expect=200),
        _get("supplier-get-after-put", "/supplier-master/{$supplier}"),
        C("item-put-missing", "/item-master/999999", method="PUT", json={"Item Description": "x"},
          expect=(400, "ItemMaster.NotFound")),
        # deletes refused while the record is in use
        C("unit-delete-in-use", "/unit-master/{$unit}", method="DELETE", expect=(400, "UnitMaster.StillInUse")),
        C("warehouse-delete-in-use", "/warehouse-master/{@warehouse-master#0.id}", method="DELETE",
          expect=(400, "WarehouseMaster.StillInUse")),
        C("supplier-delete-in-use", "/supplier-master/{@purchase-order#0.Supplier Id}", method="DELETE",
          expect=(400, "SupplierMaster.StillInUse")),
        C("item-delete-in-use", "/item-master/{@purchase-order-details#0.Item Id}", method="DELETE",
          expect=(400, "ItemMaster.StillInUse")),
        # a supplier delete takes its ship-from locations along
        _create("ship-from-create", "/ship-from-master",
                {"Ship From Number": "SF-PARITY-M1", "Ship From Name": "Parity Plant", "Supplier Number": "SUP-PARITY-M1"},
                "$ship_from"),
        _get("supplier-get-with-ship-from", "/supplier-master/{$supplier}"),
        C("supplier-delete", "/supplier-master/{$supplier}", method="DELETE", expect=200),
        _get("ship-from-gone", "/ship-from-master/{$ship_from}", expect=(400, "ShipFromMaster.NotFound")),
        _get("supplier-gone", "/supplier-master/{$supplier}", expect=(400, "SupplierMaster.NotFound")),
        C("item-delete", "/item-master/{$item}", method="DELETE", expect=200),
        _get("item-gone", "/item-master/{$item}", expect=(400, "ItemMaster.NotFound")),
        C("unit-delete-now-free", "/unit-master/{$unit}", method="DELETE", expect=200),
        C("warehouse-delete", "/warehouse-master/{$warehouse}", method="DELETE", expect=200),
        _get("warehouse-list-after", "/warehouse-master", params={"page_size": 100}),
        C("item-delete-missing", "/item-master/999999", method="DELETE", expect=(400, "ItemMaster.NotFound")),
    ],
}

_PO_LINE = {"Warehouse Number": "WH-PARITY-P1", "Ship From Number": "SF-PARITY-P1", "PO Details Price": 12.5,
            "PO Details Quantity": 100, "PO Details Document Status": "Open", "PO Details Order Date": "2025-03-01",
            "PO Details Ship Date": "2025-03-10", "PO Details ETA Date": "2025-03-17"}


def _po(number, lines, **header):
    body = {"PO List Number": number, "PO List Document Status": "Open", "PO List Order Date": "2025-03-01",
            "Supplier Number": "SUP-PARITY-P1", "Purchase Order Id": None,
            "details": [dict(_PO_LINE, **ln) for ln in lines]}
    body.update(header)
    return body


_P1 = {"id": None, "Item Number": "ITEM-PARITY-P1", "PO Details Unique Id": "PARITY-L1"}
_P2 = {"id": None, "Item Number": "ITEM-PARITY-P2", "PO Details Quantity": 50, "PO Details Unique Id": "PARITY-L2"}
_P3 = {"id": None, "Item Number": "ITEM-PARITY-P3", "PO Details Price": 5.0, "PO Details Quantity": 40}

WRITE_STORIES["purchase-order"] = [
    _create("item-1", "/item-master", {"Item Number": "ITEM-PARITY-P1", "Item Description": "Parity part 1"}, "$i1"),
    _create("item-2", "/item-master", {"Item Number": "ITEM-PARITY-P2", "Item Description": "Parity part 2"}, "$i2"),
    _create("item-3", "/item-master", {"Item Number": "ITEM-PARITY-P3", "Item Description": "Parity part 3"}, "$i3"),
    _create("supplier", "/supplier-master", {"Supplier Number": "SUP-PARITY-P1", "Supplier Name": "Parity Parts"}, "$sup"),
    _create("ship-from", "/ship-from-master", {"Ship From Number": "SF-PARITY-P1", "Ship From Name": "Parity Works",
                                              "Supplier Number": "SUP-PARITY-P1"}, "$sf"),
    _create("warehouse", "/warehouse-master", {"Warehouse Number": "WH-PARITY-P1", "Warehouse Name": "Parity Store"},
            "$wh"),
    # a PO with two lines
    _create("po-create", "/purchase-order", _po("PO-PARITY-P1", [_P1, _P2]), "$po"),
    _get("po-get", "/purchase-order/{$po}",
         capture={"$l1": "data.rows.details[Item Number=ITEM-PARITY-P1].id",
                  "$l2": "data.rows.details[Item Number=ITEM-PARITY-P2].id"},
         check=("two lines, totals", lambda b: len(b["data"]["rows"]["details"]) == 2
                and b["data"]["rows"]["PO List Quantity"] == 150)),
    _get("po-list", "/purchase-order", params={"filter": {"Supplier Number": "SUP-PARITY-P1"}}, rows="some"),
    _get("po-lines", "/purchase-order-details", params={"filter": {"PO List Number": "PO-PARITY-P1"}}, rows="some"),
    _get("po-line-get", "/purchase-order-details/{$l1}"),
    _get("po-item-helper", "/purchase-order-item/{$i1}", rows="some"),
    _get("po-item-helper-warehouse", "/purchase-order-item/{$i2}/{$wh}", rows="some"),
    _get("inventory-item-helper", "/inventory-item/{$i1}"),
    # each PO rule
    C("rule-no-items", "/purchase-order", method="POST", json=_po("PO-PARITY-P2", []), expect=(400, "OrderList.NoItems")),
    C("rule-no-details-key", "/purchase-order", method="POST",
      json={k: v for k, v in _po("PO-PARITY-P2", []).items() if k != "details"}, expect=(400, "OrderList.NoItems")),
    C("rule-multiple-warehouses", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [_P1, dict(_P2, **{"Warehouse Number": "WH-01"})]),
      expect=(400, "OrderList.MultipleWarehouses")),
    C("rule-duplicate-rows", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [_P1, dict(_P1, **{"PO Details Unique Id": "PARITY-L9"})]),
      expect=(400, "OrderDetails.DuplicateRows")),
    C("rule-order-after-ship", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [dict(_P1, **{"PO Details Order Date": "2025-03-12", "PO Details Ship Date": "2025-03-05"})]),
      expect=(400, "PurchaseOrderDetails.OrderDateAfterShip")),
    C("rule-header-order-after-ship", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [dict(_P1, **{"PO Details Order Date": None, "PO Details Ship Date": "2025-02-20"})]),
      expect=(400, "PurchaseOrderDetails.OrderDateAfterShip"), notes="the header's order date stands in for the line's"),
    C("unknown-supplier", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [_P1], **{"Supplier Number": "SUP-NO-SUCH"}), expect=(400, "SupplierMaster.NotFound")),
    C("unknown-item", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [dict(_P1, **{"Item Number": "ITEM-NO-SUCH"})]), expect=(400, "ItemMaster.NotFound")),
    C("unknown-warehouse", "/purchase-order", method="POST",
      json=_po("PO-PARITY-P2", [dict(_P1, **{"Warehouse Number": "WH-NO-SUCH"})]),
      expect=(400, "WarehouseMaster.NotFound")),
    C("duplicate-number", "/purchase-order", method="POST", json=_po("PO-PARITY-P1", [_P3]),
      expect=(400, "PurchaseOrderList.AlreadyExists")),
    _get("nothing-written", "/purchase-order", params={"filter": {"PO List Number": "PO-PARITY-P2"}}, rows="none"),
    C("put-no-items", "/purchase-order/{$po}", method="PUT", json=_po("PO-PARITY-P1", []),
      expect=(400, "OrderList.NoItems")),
    _get("po-unchanged", "/purchase-order/{$po}"),
    # PUT replaces the line set: keep line 1 (changed), drop line 2, add a line for item 3
    C("po-put-replace-lines", "/purchase-order/{$po}", method="PUT",
      json=_po("PO-PARITY-P1", [dict(_P1, **{"id": "{$l1}", "PO Details Id": "{$l1}", "PO Details Quantity": 120,
                                            "PO Details Document Status": "Shipped", "PO Details Tracking": "BOL-PARITY-1",
                                            "PO Details Actual Ship Date": "2025-03-09"}), _P3],
               **{"Purchase Order Id": "{$po}", "PO List Document Status": "Shipped"}),
      expect=200),
    _get("po-get-after-put", "/purchase-order/{$po}",
         capture={"$l3": "data.rows.details[Item Number=ITEM-PARITY-P3].id"},
         check=("lines 1 and 3", lambda b: sorted(d["Item Number"] for d in b["data"]["rows"]["details"])
                == ["ITEM-PARITY-P1", "ITEM-PARITY-P3"])),
    _get("dropped-line-gone", "/purchase-order-details/{$l2}", expect=(400, "PurchaseOrderDetails.NotFound")),
    _get("po-lines-after-put", "/purchase-order-details", params={"filter": {"PO List Number": "PO-PARITY-P1"}}),
    C("put-unknown-line", "/purchase-order/{$po}", method="PUT",
      json=_po("PO-PARITY-P1", [dict(_P1, **{"id": 999999})]), expect=(400, "PurchaseOrderDetails.NotFound")),
    # deletes refused while in use
    C("item-in-use", "/item-master/{$i1}", method="DELETE", expect=(400, "ItemMaster.StillInUse")),
    C("supplier-in-use", "/supplier-master/{$sup}", method="DELETE", expect=(400, "SupplierMaster.StillInUse")),
    C("ship-from-in-use", "/ship-from-master/{$sf}", method="DELETE", expect=(400, "ShipFromMaster.StillInUse")),
    C("warehouse-in-use", "/warehouse-master/{$wh}", method="DELETE", expect=(400, "WarehouseMaster.StillInUse")),
    # line deletes; the last line takes its PO along
    C("line-delete", "/purchase-order-details/{$l1}", method="DELETE", expect=200),
    _get("po-one-line-left", "/purchase-order/{$po}",
         check=("one line left, totals", lambda b: len(b["data"]["rows"]["details"]) == 1
                and b["data"]["rows"]["PO Total Items"] == 1)),
    C("last-line-delete", "/purchase-order-details/{$l3}", method="DELETE", expect=200),
    _get("po-gone-with-last-line", "/purchase-order/{$po}", expect=(400, "PurchaseOrderList.NotFound")),
    C("line-delete-again", "/purchase-order-details/{$l3}", method="DELETE",
      expect=(400, "PurchaseOrderDetails.NotFound")),
    _get("po-lines-gone", "/purchase-order-details", params={"filter": {"PO List Number": "PO-PARITY-P1"}}, rows="none"),
    # a PO delete cascades to its lines
    _create("po-3-create", "/purchase-order", _po("PO-PARITY-P3", [_P2, _P3]), "$po3"),
    _get("po-3-get", "/purchase-order/{$po3}"),
    C("po-3-delete", "/purchase-order/{$po3}", method="DELETE", expect=200),
    _get("po-3-gone", "/purchase-order/{$po3}", expect=(400, "PurchaseOrderList.NotFound")),
    _get("po-3-lines-gone", "/purchase-order-details", params={"filter": {"PO List Number": "PO-PARITY-P3"}},
         rows="none"),
    C("po-delete-missing", "/purchase-order/999999", method="DELETE", expect=(400, "PurchaseOrderList.NotFound")),
    # free again
    C("item-delete", "/item-master/{$i1}", method="DELETE", expect=200),
    C("supplier-delete", "/supplier-master/{$sup}", method="DELETE", expect=200),
    C("warehouse-delete", "/warehouse-master/{$wh}", method="DELETE", expect=200),
    _get("po-list-after", "/purchase-order", params={"sort": {"key": "id", "type": "Descending"}, "page_size": 5}),
]

WRITE_STORIES["ticket"] = [
    _create("ticket-create", "/issue-tracker-tickets",
            {"Title": "Parity: delayed shipment", "Description": "ETA moved by a week.", "Priority": "High",
             "Category": "Procurement", "Assignee Email": "admin@acme.example", "Due Date": "2025-03-20",
             "Linked PO Number": "{@purchase-order#0.PO List Number}"}, "$ticket"),
    _create("note-create", "/issue-tracker-notes", {"Ticket Id": "{$ticket}", "Note": "Supplier confirmed the new date."},
            "$note"),
    _get("ticket-get", "/issue-tracker-tickets/{$ticket}",
         check=("one note", lambda b: len(b["data"]["Notes"]) == 1)),
    _get("ticket-notes", "/issue-tracker-tickets/{$ticket}/notes"),
    _get("ticket-subscribers", "/issue-tracker-tickets/{$ticket}/subscribers"),
    C("subscriber-add", "/issue-tracker-tickets/{$ticket}/subscribers", method="POST",
      json={"email": "viewer@acme.example"}, expect=200),
    C("subscriber-remove", "/issue-tracker-tickets/{$ticket}/subscribers", method="DELETE",
      json={"email": "admin@acme.example"}, expect=200),
    _get("ticket-subscribers-after", "/issue-tracker-tickets/{$ticket}/subscribers"),
    C("ticket-put-partial", "/issue-tracker-tickets/{$ticket}", method="PUT", json={"Status": "In Progress"},
      expect=200),
    _get("ticket-get-after-put", "/issue-tracker-tickets/{$ticket}",
         check=("status changed, title kept", lambda b: b["data"]["Status"] == "In Progress"
                and b["data"]["Title"] == "Parity: delayed shipment")),
    _get("ticket-list", "/issue-tracker-tickets", params={"filter": {"Title": "Parity: delayed shipment"}}, rows="some"),
    _get("ticket-list-last", "/issue-tracker-tickets", params={"sort": {"key": "id", "type": "Descending"},
                                                               "page_size": 3}),
    C("note-unknown-ticket", "/issue-tracker-notes", method="POST", json={"Ticket Id": "TKT-999", "Note": "x"},
      expect=(400, "IssueTrackerTickets.NotFound")),
    C("ticket-missing-title", "/issue-tracker-tickets", method="POST", json={"Priority": "Low"},
      expect=(400, "IssueTrackerTickets.MissingField")),
    C("ticket-unknown-po", "/issue-tracker-tickets", method="POST",
      json={"Title": "x", "Linked PO Number": "PO-NO-SUCH"}, expect=(400, "PurchaseOrderList.NotFound")),
    C("ticket-delete", "/issue-tracker-tickets/{$ticket}", method="DELETE", expect=200),
    _get("ticket-gone", "/issue-tracker-tickets/{$ticket}", expect=(400, "IssueTrackerTickets.NotFound")),
    _get("ticket-notes-gone", "/issue-tracker-tickets/{$ticket}/notes", expect=(400, "IssueTrackerTickets.NotFound")),
]


# ============================================================================================================
# Fixtures and tests
# ============================================================================================================
@pytest.fixture(scope="module")
def pair():
    p = parity.start_pair()
    yield p
    p.close()


@pytest.fixture(scope="module")
def picks(pair):
    return parity.Picks(pair, PICKS)


@pytest.mark.parametrize("case", LIST_CASES, ids=parity.case_id)
def test_list(pair, picks, case):
    parity.check_case(pair, picks, case)


@pytest.mark.parametrize("case", FILTER_CASES, ids=parity.case_id)
def test_list_filter_sort_page(pair, picks, case):
    parity.check_case(pair, picks, case)


@pytest.mark.parametrize("case", INACTIVE_CASES, ids=parity.case_id)
def test_list_inactive_warehouse(pair, picks, case):
    parity.check_case(pair, picks, case)


@pytest.mark.parametrize("case", GET_ONE_CASES, ids=parity.case_id)
def test_get_one(pair, picks, case):
    parity.check_case(pair, picks, case)


@pytest.mark.parametrize("case", HELPER_CASES, ids=parity.case_id)
def test_helper(pair, picks, case):
    parity.check_case(pair, picks, case)


@pytest.mark.parametrize("case", ROLE_CASES, ids=parity.case_id)
def test_viewer_and_granular_user(pair, picks, case):
    parity.check_case(pair, picks, case)


@pytest.mark.parametrize("case", ERROR_CASES, ids=parity.case_id)
def test_error(pair, picks, case):
    parity.check_case(pair, picks, case)


@marked("auth")
@pytest.mark.parametrize("case", AUTH_CASES, ids=parity.case_id)
def test_auth(pair, picks, case):
    parity.check_case(pair, picks, case)


@marked("auth")
@pytest.mark.parametrize("story", list(AUTH_STORIES), ids=str)
def test_auth_flow(pair, picks, story):
    parity.run_story(pair, picks, AUTH_STORIES[story])


@marked("writes")
@pytest.mark.parametrize("story", list(WRITE_STORIES), ids=str)
def test_writes(pair, picks, story):
    parity.run_story(pair, picks, WRITE_STORIES[story])
