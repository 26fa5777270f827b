"""List semantics (CONTRACT §2) over HTTP: paging, filter/search/sort forms, clamps, bad parameters, the
inactive-warehouse rule, granular filters and the envelope."""

from __future__ import annotations

import json

import pytest

from conftest import login

LISTS = ["purchase-order", "purchase-order-details", "sales-order", "sales-order-details", "manufacturing-order",
         "manufacturing-order-details", "forecast", "forecast-details", "inventory", "item-master", "sub-item-master",
         "customer-master", "ship-to-master", "supplier-master", "ship-from-master", "warehouse-master",
         "unit-master", "external-item-master", "bill-of-materials", "asn", "supplier-allocation",
         "issue-tracker-tickets", "scenario-analysis", "user", "role"]


def get(s, route, **params):
    for k in ("filter", "sort", "search"):
        if k in params and not isinstance(params[k], str):
            params[k] = json.dumps(params[k])
    return s.get("/api/" + route, params=params)


def rows(s, route, **params):
    params.setdefault("page_size", 1000)
    r = get(s, route, **params)
    assert r.status_code == 200, r.text
    return r.json()["data"]["rows"]


def all_pages(s, route, page_size, **params):
    out, page = [], 1
    while True:
        chunk = rows(s, route, page=page, page_size=page_size, **params)
        out.extend(chunk)
        if len(chunk) < page_size:
            return out
        page += 1


@pytest.fixture(scope="module")
def wh1(sim):
    s = login(sim, "wh1@acme.example", "wh1-password")
    yield s
    s.close()


@pytest.mark.parametrize("route", LISTS)
def test_envelope(svc, route):
    r = get(svc, route)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data", "tags", "extra"} and body["tags"] == {}
    data = body["data"]
    assert set(data) == {"headers", "sort", "rows"}
    assert data["sort"]["type"] in ("Ascending", "Descending") and isinstance(data["sort"]["key"], str)
    for h in data["headers"]:
        assert isinstance(h["key"], str) and h["format"] in ("string-link", "string", "date", "number", "boolean",
                                                             "currency")
        for f in h.get("filters", ()):
            assert set(f) == {"category", "alias"}
    assert 0 < len(data["rows"]) <= 50
    assert all("id" in row for row in data["rows"])
    if route == "user":
        assert set(body["extra"]) == {"page", "page_size", "total"}
    else:
        assert body["extra"] == {}     # no totals: a short page is the end of a list


def test_default_sorts(svc):
    assert get(svc, "purchase-order").json()["data"]["sort"] == {"key": "PO List Order Date", "type": "Ascending"}
    assert get(svc, "item-master").json()["data"]["sort"] == {"key": "id", "type": "Ascending"}
    po = rows(svc, "purchase-order")
    keys = [(p["PO List Order Date"] or "", p["id"]) for p in po]
    assert keys == sorted(keys)
    items = rows(svc, "item-master")
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)


@pytest.mark.parametrize("route", ["sales-order-details", "purchase-order", "item-master", "issue-tracker-tickets"])
def test_paging_is_stable_and_complete(svc, route):
    whole = rows(svc, route)
    for size in (1, 7, 50):
        paged = all_pages(svc, route, size)
        assert [r["id"] for r in paged] == [r["id"] for r in whole]
    # past the end: an empty page
    assert rows(svc, route, page=10_000, page_size=50) == []


def test_page_size_clamp_and_defaults(svc):
    r = get(svc, "user", page_size=5000).json()
    assert r["extra"]["page_size"] == 1000 and r["extra"]["total"] == len(r["data"]["rows"])
    big = rows(svc, "purchase-order-details", page_size=5000)
    assert len(big) == len(rows(svc, "purchase-order-details", page_size=1000)) <= 1000
    assert len(get(svc, "purchase-order-details").json()["data"]["rows"]) == 50


@pytest.mark.parametrize("params", [{"page": "0"}, {"page": "x"}, {"page_size": "0"}, {"page_size": "-5"},
                                    {"page_size": "ten"}])
def test_bad_paging_values(svc, params):
    r = get(svc, "item-master", **params)
    assert r.status_code == 400
    body = r.json()
    assert body["Code"] == "JSON.Invalid" and ("page" in body["Message"])


@pytest.mark.parametrize("params", [{"filter": "{bad"}, {"sort": "not json"}, {"search": "{"}])
def test_malformed_json_params(svc, params):
    r = get(svc, "item-master", **params)
    assert r.status_code == 400 and r.json() == {"Message": "Bad Request Format", "Code": "JSON.Invalid"}


@pytest.mark.parametrize("params", [{"filter": "[1,2]"}, {"sort": json.dumps({"key": "id", "type": "Sideways"})},
                                    {"sort": json.dumps(["id"])}, {"filter": json.dumps({"id": {"below": 3}})},
                                    {"search": json.dumps({"include": {}})}])
def test_wrong_shaped_params(svc, params):
    r = get(svc, "item-master", **params)
    assert r.status_code == 400 and r.json()["Code"] == "JSON.Invalid"


def test_filter_forms(svc):
    everything = rows(svc, "purchase-order-details")
    open_rows = rows(svc, "purchase-order-details", filter={"PO Details Document Status": "Open"})
    assert open_rows and all(r["PO Details Document Status"] == "Open" for r in open_rows)
    assert len(open_rows) == sum(1 for r in everything if r["PO Details Document Status"] == "Open")
    two = rows(svc, "purchase-order-details", filter={"PO Details Document Status": ["Open", "Received"]})
    assert len(two) == sum(1 for r in everything if r["PO Details Document Status"] in ("Open", "Received"))
    # AND across keys
    both = rows(svc, "purchase-order-details", filter={"PO Details Document Status": "Open", "Warehouse Number": "WH-01"})
    assert len(both) == sum(1 for r in everything if r["PO Details Document Status"] == "Open"
                            and r["Warehouse Number"] == "WH-01")
    # numbers match exactly
    q = everything[0]["PO Details Quantity"]
    assert all(r["PO Details Quantity"] == q for r in rows(svc, "purchase-order-details",
                                                           filter={"PO Details Quantity": q}))
    # inclusive date range, either end optional
    dates = sorted({r["PO Details ETA Date"] for r in everything if r["PO Details ETA Date"]})
    lo, hi = dates[len(dates) // 4], dates[len(dates) // 2]
    ranged = rows(svc, "purchase-order-details", filter={"PO Details ETA Date": {"from": lo, "to": hi}})
    want = [r["id"] for r in everything if r["PO Details ETA Date"] and lo <= r["PO Details ETA Date"] <= hi]
    assert [r["id"] for r in ranged] == want
    assert any(r["PO Details ETA Date"] == lo for r in ranged) and any(r["PO Details ETA Date"] == hi for r in ranged)
    after = rows(svc, "purchase-order-details", filter={"PO Details ETA Date": {"from": hi}})
    assert len(after) == sum(1 for r in everything if (r["PO Details ETA Date"] or "") >= hi)
    # a key no row has matches nothing
    assert rows(svc, "purchase-order-details", filter={"No Such Column": "x"}) == []
    assert rows(svc, "item-master", filter={"Warehouse Number": "WH-01"}) == []
    # null matches rows whose value is null
    nulls = rows(svc, "purchase-order-details", filter={"Sub Item Number": None})
    assert len(nulls) == sum(1 for r in everything if r["Sub Item Number"] is None)


def test_timestamp_range(svc):
    tickets = rows(svc, "issue-tracker-tickets")
    day = sorted(t["Created At"] for t in tickets)[len(tickets) // 2][:10]
    got = rows(svc, "issue-tracker-tickets", filter={"Created At": {"from": day, "to": day}})
    assert got and all(t["Created At"][:10] == day for t in got)
    assert len(got) == sum(1 for t in tickets if t["Created At"][:10] == day)


def test_search_form(svc):
    everything = rows(svc, "purchase-order")
    inc = rows(svc, "purchase-order", search={"filters": {"include": {"PO List Document Status": ["Open", "Shipped"]},
                                                          "exclude": {}}})
    assert len(inc) == sum(1 for r in everything if r["PO List Document Status"] in ("Open", "Shipped"))
    exc = rows(svc, "purchase-order", search={"filters": {"exclude": {"PO List Document Status": ["Received"]}}})
    assert len(exc) == sum(1 for r in everything if r["PO List Document Status"] != "Received")
    mixed = rows(svc, "purchase-order", search={"filters": {"include": {"PO List Document Status": ["Open"]},
                                                            "exclude": {"Warehouse Number": ["WH-01"]}}})
    assert all(r["PO List Document Status"] == "Open" and r["Warehouse Number"] != "WH-01" for r in mixed)


@pytest.mark.parametrize("stype", ["Ascending", "Descending"])
def test_sort_ties_break_by_id(svc, stype):
    got = rows(svc, "purchase-order-details", sort={"key": "Warehouse Number", "type": stype})
    keys = [r["Warehouse Number"] for r in got]
    assert keys == sorted(keys, reverse=stype == "Descending")
    for a, b in zip(got, got[1:]):
        if a["Warehouse Number"] == b["Warehouse Number"]:
            assert a["id"] < b["id"]
    r = get(svc, "purchase-order-details", sort={"key": "Warehouse Number", "type": stype}).json()
    assert r["data"]["sort"] == {"key": "Warehouse Number", "type": stype}
    # pages of a sorted list concatenate to the whole list
    paged = all_pages(svc, "purchase-order-details", 13, sort={"key": "PO Details Quantity", "type": stype})
    whole = rows(svc, "purchase-order-details", sort={"key": "PO Details Quantity", "type": stype})
    assert [x["id"] for x in paged] == [x["id"] for x in whole]


def test_sort_with_nulls_and_unknown_key(svc):
    got = rows(svc, "purchase-order-details", sort={"key": "Sub Item Number", "type": "Ascending"})
    firsts = [r for r in got if r["Sub Item Number"] is None]
    assert got[:len(firsts)] == firsts       # nulls first when ascending
    assert [r["id"] for r in rows(svc, "item-master", sort={"key": "Nope"})] == \
        [r["id"] for r in rows(svc, "item-master")]


def test_inactive_warehouse_hidden_unless_filtered(svc, sim):
    snap = sim.control_get("/_sim/snapshot", params={"records": "1", "resource": "warehouse-master"}).json()
    inactive = [w["Warehouse Number"] for w in snap["resources"]["warehouse-master"]["records"]
                if w["Warehouse Status"] == "Inactive"]
    assert inactive
    for route in ("purchase-order", "purchase-order-details", "sales-order-details", "inventory", "warehouse-master"):
        default = rows(svc, route)
        assert not any(r.get("Warehouse Number") in inactive for r in default), route
        hidden = rows(svc, route, filter={"Warehouse Status": "Inactive"})
        assert hidden and all(r["Warehouse Number"] in inactive for r in hidden), route
        both = rows(svc, route, filter={"Warehouse Status": ["Active", "Inactive"]})
        assert len(both) == len(default) + len(hidden)
    # the get-one of a record in an inactive warehouse still works
    rec = rows(svc, "inventory", filter={"Warehouse Status": "Inactive"})[0]
    assert svc.get("/api/inventory/%d" % rec["id"]).status_code == 200
    # rows without a warehouse are not affected
    assert len(rows(svc, "item-master")) == sim.control_get("/_sim/snapshot").json()["resources"]["item-master"]["count"]


def test_inactive_after_status_change(svc):
    whs = rows(svc, "warehouse-master")
    wh = next(w for w in whs if w["Warehouse Number"] == "WH-09")
    before = rows(svc, "inventory", filter={"Warehouse Number": "WH-09"})
    assert before
    assert svc.put("/api/warehouse-master/%d" % wh["id"], json={"Warehouse Status": "Inactive"}).status_code == 200
    try:
        assert rows(svc, "inventory", filter={"Warehouse Number": "WH-09"}) == []
        assert len(rows(svc, "inventory", filter={"Warehouse Number": "WH-09", "Warehouse Status": "Inactive"})) == \
            len(before)
    finally:
        svc.put("/api/warehouse-master/%d" % wh["id"], json={"Warehouse Status": "Active"})
    assert len(rows(svc, "inventory", filter={"Warehouse Number": "WH-09"})) == len(before)


def test_granular_filter(svc, wh1):
    for route in ("purchase-order", "purchase-order-details", "inventory", "sales-order", "manufacturing-order",
                  "asn", "warehouse-master", "forecast-details"):
        got = rows(wh1, route)
        assert got, route
        assert {r["Warehouse Number"] for r in got} == {"WH-01"}, route
        assert len(got) == len(rows(svc, route, filter={"Warehouse Number": "WH-01"}))
    # rows without the column are not restricted
    assert len(rows(wh1, "item-master")) == len(rows(svc, "item-master"))
    # a filter cannot widen the restriction
    assert rows(wh1, "purchase-order", filter={"Warehouse Number": "WH-02"}) == []
    other = rows(svc, "purchase-order", filter={"Warehouse Number": "WH-02"})[0]
    r = wh1.get("/api/purchase-order/%d" % other["id"])
    assert r.status_code == 400 and r.json()["Code"] == "PurchaseOrderList.NotFound"
    mine = rows(wh1, "purchase-order", page_size=1)[0]
    assert wh1.get("/api/purchase-order/%d" % mine["id"]).status_code == 200
    # and writes outside it are refused
    po = wh1.get("/api/purchase-order/%d" % mine["id"]).json()["data"]["rows"]
    body = {"PO List Number": "PO-WH1-X", "PO List Document Status": "Open", "Supplier Number": po["Supplier Number"],
            "details": [{"Item Number": po["details"][0]["Item Number"], "Warehouse Number": "WH-02",
                         "PO Details Quantity": 1}]}
    r = wh1.post("/api/purchase-order", json=body)
    assert r.status_code == 403 and r.json()["Code"] == "User.NotPrivileged"


def test_rows_match_get_one(svc):
    for route, unwrap in (("purchase-order", True), ("sales-order", True), ("manufacturing-order", True),
                          ("forecast", True), ("inventory", False), ("asn", False), ("bill-of-materials", False),
                          ("customer-master", False), ("issue-tracker-tickets", False), ("user", False),
                          ("role", False), ("warehouse-master", False)):
        row = rows(svc, route, page_size=3)[1]
        data = svc.get("/api/%s/%s" % (route, row["id"])).json()["data"]
        rec = data["rows"] if unwrap else data
        assert {k: rec[k] for k in row} == row, route
        extra = set(rec) - set(row)
        assert extra <= {"details", "Ship To Locations", "Notes", "Subscribers", "Role Description", "Privileges",
                         "Granular Filters"}, (route, extra)


def test_flat_lines_carry_parent_keys(svc):
    for route, parent, num in (("purchase-order-details", "Purchase Order Id", "PO List Number"),
                               ("sales-order-details", "Sales Order Id", "SO List Number")):
        for r in rows(svc, route, page_size=20):
            assert isinstance(r["id"], int) and isinstance(r[parent], int) and r[num]
