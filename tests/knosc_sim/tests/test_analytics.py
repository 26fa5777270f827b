"""Read-only helpers, analytics and dashboards agree with the tenant's lists; mutate, planner and snapshot
through the control port."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import login

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sim.catalog import OPEN_MO, OPEN_PO, OPEN_SO  # noqa: E402
from sim.common import SIM_TODAY_S, days_between  # noqa: E402


def rows(s, route, **params):
    for k in ("filter", "sort"):
        if k in params:
            params[k] = json.dumps(params[k])
    params.setdefault("page_size", 1000)
    r = s.get("/api/" + route, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]["rows"]


def data(s, path, **params):
    r = s.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.fixture(scope="module")
def busy_item(svc):
    """The item with the most purchase-order lines."""
    lines = rows(svc, "purchase-order-details")
    counts = {}
    for ln in lines:
        counts[ln["Item Id"]] = counts.get(ln["Item Id"], 0) + 1
    return max(counts, key=lambda k: (counts[k], -k))


def test_purchase_order_item(svc, busy_item):
    got = data(svc, "/api/purchase-order-item/%d" % busy_item)
    assert got["sort"] == {"key": "PO Details ETA Date", "type": "Descending"}
    lines = rows(svc, "purchase-order-details", filter={"Item Id": busy_item})
    assert sorted(r["id"] for r in got["rows"]) == sorted(r["id"] for r in lines)
    etas = [r["PO Details ETA Date"] or "" for r in got["rows"]]
    assert etas == sorted(etas, reverse=True)
    heads = {p["id"]: p for p in rows(svc, "purchase-order")}
    for r in got["rows"]:
        assert r["Supplier Name"] == heads[r["Purchase Order Id"]]["Supplier Name"]
        assert r["Warehouse Name"] and r["PO List Number"]
    wh = got["rows"][0]["Warehouse Id"]
    one_wh = data(svc, "/api/purchase-order-item/%d/%d" % (busy_item, wh))
    assert {r["Warehouse Id"] for r in one_wh["rows"]} == {wh}
    r = svc.get("/api/purchase-order-item/99999")
    assert r.status_code == 400 and r.json()["Code"] == "ItemMaster.NotFound"
    r = svc.get("/api/purchase-order-item/%d/99999" % busy_item)
    assert r.status_code == 400 and r.json()["Code"] == "WarehouseMaster.NotFound"
    for helper in ("sales-order-item", "manufacturing-order-item", "forecast-item"):
        assert svc.get("/api/%s/%d" % (helper, busy_item)).status_code == 200


def test_inventory_item(svc, busy_item):
    got = data(svc, "/api/inventory-item/%d" % busy_item)
    inv = rows(svc, "inventory", filter={"Item Id": busy_item})
    po = rows(svc, "purchase-order-details", filter={"Item Id": busy_item})
    so = rows(svc, "sales-order-details", filter={"Item Id": busy_item})
    assert got["item"]["Total Quantity"] == sum(r["Inventory Quantity"] for r in inv)
    assert got["item"]["Total Warehouses"] == len({r["Warehouse Number"] for r in inv if r["Inventory Quantity"] > 0})
    by_wh = {r["Warehouse Number"]: r for r in got["orders"]["rows"]}
    for whn, r in by_wh.items():
        assert r["Inventory Quantity"] == sum(x["Inventory Quantity"] for x in inv if x["Warehouse Number"] == whn)
        assert r["Open PO Quantity"] == sum(x["PO Details Quantity"] for x in po if x["Warehouse Number"] == whn
                                            and x["PO Details Document Status"] in OPEN_PO)
        assert r["Open SO Quantity"] == sum(x["SO Details Quantity"] for x in so if x["Warehouse Number"] == whn
                                            and x["SO Details Document Status"] in OPEN_SO)
        assert r["Net Available"] == r["Inventory Quantity"] + r["Open PO Quantity"] - r["Open SO Quantity"]
    assert [h["key"] for h in got["orders"]["headers"]] == ["Warehouse Number", "Inventory Quantity",
                                                             "Open PO Quantity", "Open SO Quantity", "Open MO Quantity"]


def test_sales_prioritized(svc):
    so = rows(svc, "sales-order-details", filter={"SO Details Document Status": "Open"})
    item = so[0]["Item Id"]
    got = data(svc, "/api/sales-prioritized-item-inventory/%d" % item)["rows"]
    assert got
    for whn in {r["Warehouse Number"] for r in got}:
        mine = [r for r in got if r["Warehouse Number"] == whn]
        assert [r["Priority"] for r in mine] == list(range(1, len(mine) + 1))
        for r in mine:
            assert 0 <= r["Allocated Quantity"] <= r["SO Details Quantity"] and r["Available Inventory"] >= 0


def test_delayed_shipments(svc):
    lines = rows(svc, "purchase-order-details")
    late = [days_between(ln["PO Details ETA Date"], SIM_TODAY_S) for ln in lines
            if ln["PO Details ETA Date"] and ln["PO Details ETA Date"] < SIM_TODAY_S
            and ln["PO Details Document Status"] in OPEN_PO]
    week = data(svc, "/api/delayed-shipments/histogram", bucket="week")
    assert week["bucket"] == "week" and week["total_delayed"] == len(late)
    assert [b["label"] for b in week["buckets"]] == ["0–7 days", "8–14 days", "15–30 days", "30+ days"]
    assert [b["count"] for b in week["buckets"]] == [sum(1 for d in late if d <= 7),
                                                     sum(1 for d in late if 8 <= d <= 14),
                                                     sum(1 for d in late if 15 <= d <= 30),
                                                     sum(1 for d in late if d > 30)]
    month = data(svc, "/api/delayed-shipments/histogram", bucket="month")
    assert sum(b["count"] for b in month["buckets"]) == len(late)
    r = svc.get("/api/delayed-shipments/histogram")
    assert r.status_code == 400 and r.json()["Code"] == "DelayedShipments.InvalidBucket"
    assert svc.get("/api/delayed-shipments/other", params={"bucket": "week"}).status_code == 404


def test_supplier_net_allocation(svc):
    got = data(svc, "/api/supplier-net-allocation")["rows"]
    allocs = rows(svc, "supplier-allocation")
    assert len(got) == len(allocs)
    lines = rows(svc, "purchase-order-details")
    heads = {p["id"]: p for p in rows(svc, "purchase-order")}
    for r in got[:20]:
        item_lines = [ln for ln in lines if ln["Item Number"] == r["Item Number"]
                      and ln["PO Details Document Status"] in OPEN_PO]
        total = sum(ln["PO Details Quantity"] for ln in item_lines)
        mine = sum(ln["PO Details Quantity"] for ln in item_lines
                   if heads[ln["Purchase Order Id"]]["Supplier Number"] == r["Supplier Number"])
        assert r["Net Allocated Quantity"] == pytest.approx(total * r["Allocation Percentage"] / 100.0)
        assert r["Open PO Quantity"] == mine
        assert r["Variance"] == pytest.approx(mine - r["Net Allocated Quantity"])
    table = data(svc, "/api/supplier-net-allocation-table")
    assert table["rows"] and table["headers"][0]["key"] == "Item Number"
    for row in table["rows"]:
        assert row["Total Allocation"] <= 100


def test_forecast_over_time(svc):
    got = rows(svc, "forecast-over-time")
    fl = rows(svc, "forecast-details")
    assert sum(r["Forecast Quantity"] for r in got) == sum(ln["Forecast Details Quantity"] for ln in fl)
    for r in got:
        assert r["Variance"] == r["Actual Quantity"] - r["Forecast Quantity"]
        assert r["Period"].endswith("-01") and "id" not in r
    periods = [r["Period"] for r in got]
    assert periods == sorted(periods)


def test_dashboards(svc):
    stats = data(svc, "/api/dashboard-statistics")
    heads = rows(svc, "purchase-order")
    assert stats["Open Purchase Orders"] == sum(1 for p in heads if p["PO List Document Status"] in OPEN_PO)
    assert stats["Open Sales Orders"] == sum(1 for p in rows(svc, "sales-order") if p["SO List Document Status"] in OPEN_SO)
    assert stats["Open Manufacturing Orders"] == sum(1 for p in rows(svc, "manufacturing-order")
                                                     if p["MO List Document Status"] in OPEN_MO)
    assert stats["Total Inventory Quantity"] == sum(r["Inventory Quantity"] for r in rows(svc, "inventory"))
    assert stats["Delayed Shipments"] == data(svc, "/api/delayed-shipments/histogram", bucket="week")["total_delayed"]
    lines = [ln for ln in rows(svc, "purchase-order-details") if ln["PO Details Document Status"] != "Cancelled"]
    spend = sum((ln["PO Details Quantity"] or 0) * (ln["PO Details Price"] or 0) for ln in lines)
    total = data(svc, "/api/dashboard-total")
    assert total["Total Spend"] == pytest.approx(spend, abs=0.05)
    by_sup = data(svc, "/api/dashboard-spend-by-supplier")
    assert by_sup["sort"] == {"key": "Total Spend", "type": "Descending"}
    assert sum(r["Total Spend"] for r in by_sup["rows"]) == pytest.approx(spend, abs=1.0)
    top = by_sup["rows"][0]
    detail = data(svc, "/api/dashboard-spend-by-supplier/%d" % top["id"])
    assert sum(r["Total Spend"] for r in detail["rows"]) == pytest.approx(top["Total Spend"], abs=0.5)
    r = svc.get("/api/dashboard-spend-by-supplier/999999")
    assert r.status_code == 400 and r.json()["Code"] == "SupplierMaster.NotFound"
    rev = data(svc, "/api/dashboard-revenue-by-customer")
    so_lines = [ln for ln in rows(svc, "sales-order-details") if ln["SO Details Document Status"] != "Cancelled"]
    assert sum(r["Total Revenue"] for r in rev["rows"]) == pytest.approx(
        sum(ln["SO Details Quantity"] * (ln["SO Details Price"] or 0) for ln in so_lines), abs=1.0)
    dist = data(svc, "/api/dashboard-inventory-distribution")
    assert sum(r["Inventory Quantity"] for r in dist["rows"]) == stats["Total Inventory Quantity"]
    apo = data(svc, "/api/dashboard-analytics-purchase-orders")
    assert apo["total"] == len(heads) and sum(s["count"] for s in apo["by_status"]) == len(heads)
    plan = data(svc, "/api/dashboard-inventory-planning")
    assert plan["rows"] and {"Item Number", "In Stock", "Reorder Point", "Projected"} <= set(plan["rows"][0])
    for route in ("dashboard-world-map", "dashboard-analytics-sales-orders", "dashboard-spend-by-item",
                  "dashboard-revenue-by-item", "dashboard-inventory-by-item-and-warehouse"):
        assert svc.get("/api/" + route).status_code == 200, route
    assert svc.get("/api/dashboard-nope").status_code == 404


def test_dashboards_follow_granular_filters(sim):
    wh1 = login(sim, "wh1@acme.example", "wh1-password")
    dist = data(wh1, "/api/dashboard-inventory-distribution")
    assert [r["Warehouse Number"] for r in dist["rows"]] == ["WH-01"]
    stats = data(wh1, "/api/dashboard-statistics")
    assert stats["Total Inventory Quantity"] == sum(r["Inventory Quantity"] for r in rows(wh1, "inventory"))
    wh1.close()


def test_dashboard_privileges(sim):
    john = login(sim, "john.smith@acme.example", "john-password")   # Demand Planner
    assert john.get("/api/dashboard-analytics-sales-orders").status_code == 200
    r = john.get("/api/dashboard-spend-by-supplier")
    assert r.status_code == 403 and r.json()["Code"] == "User.NotPrivileged"
    nav = data(john, "/api/navigation-bar")
    assert {n["name"] for n in nav} == {"Demand", "Forecast", "Forecast Over Time", "Inventory", "Item Master",
                                         "Customer Master", "Sales Analytics", "Dashboard"}
    john.close()


def test_auto_complete(svc, sim):
    got = data(svc, "/api/auto-complete", category="Item Number", text="ITEM-0000")
    assert got["headers"] == ["text", "id"] and len(got["data"]) == 50 == got["total"]
    assert isinstance(got["elapsed"], int)
    assert all(t.startswith("ITEM-0000") for t, _ in got["data"])
    items = {r["Item Number"]: r["id"] for r in rows(svc, "item-master")}
    assert all(items[t] == i for t, i in got["data"])
    one = data(svc, "/api/auto-complete", category="Item Number", text="item-000001")
    assert one["data"][0] == ["ITEM-000001", items["ITEM-000001"]]
    whs = data(svc, "/api/auto-complete", category="Warehouse Number", text="WH")
    assert "WH-10" not in [t for t, _ in whs["data"]]             # inactive warehouse
    wh1 = login(sim, "wh1@acme.example", "wh1-password")
    assert [t for t, _ in data(wh1, "/api/auto-complete", category="Warehouse Number", text="WH")["data"]] == ["WH-01"]
    pos = data(wh1, "/api/auto-complete", category="PO List Number", text="PO")["data"]
    mine = {p["PO List Number"] for p in rows(wh1, "purchase-order")}
    assert pos and all(t in mine for t, _ in pos)
    wh1.close()
    sub = data(svc, "/api/auto-complete", category="PO List Number", text="PO",
               subset_filters=json.dumps({"Warehouse Number": "WH-02"}))
    wh2 = {p["PO List Number"] for p in rows(svc, "purchase-order", filter={"Warehouse Number": "WH-02"})}
    assert sub["data"] and all(t in wh2 for t, _ in sub["data"])
    r = svc.get("/api/auto-complete", params={"category": "Colour", "text": "x"})
    assert r.status_code == 400 and r.json()["Code"] == "AutoComplete.InvalidCategory"
    r = svc.get("/api/auto-complete", params={"text": "x"})
    assert r.status_code == 400


def test_scenario_projections(svc):
    sc = svc.post("/api/scenario-analysis", json={"Scenario Name": "Projection test", "Scenario Status": "Active",
                                                  "Scenario Demand Change Percentage": 30}).json()["id"]
    got = data(svc, "/api/scenario-sales-order-details/%d" % sc, page_size=1000)
    so = {r["id"]: r for r in rows(svc, "sales-order-details")}
    for r in got["rows"][:50]:
        assert r["Scenario Quantity"] == pytest.approx(so[r["id"]]["SO Details Quantity"] * 1.3)
    for route in ("scenario-purchase-order-details", "scenario-manufacturing-order-details", "scenario-forecast-details"):
        assert svc.get("/api/%s/%d" % (route, sc)).status_code == 200
    svc.put("/api/scenario-analysis/%d" % sc, json={"Scenario Status": "Draft"})
    r = svc.get("/api/scenario-sales-order-details/%d" % sc)
    assert r.status_code == 400 and r.json()["Code"] == "ScenarioAnalysis.NotActive"


def test_external_item_details(svc):
    ext = rows(svc, "external-item-master", page_size=1)[0]
    got = data(svc, "/api/external-item-master-details/%d" % ext["id"])
    assert got["Item"]["Item Number"] == ext["Item Number"]
    assert ext["id"] in [m["id"] for m in got["Mappings"]] and got["Number of Mappings"] == len(got["Mappings"])


# ----------------------------------------------------------------------------------------------------------
# control side: mutate, planner, snapshot (last: they change the tenant)
# ----------------------------------------------------------------------------------------------------------
def test_snapshot_matches_lists(svc, sim):
    snap = sim.control_get("/_sim/snapshot", params={"records": "1", "resource": "item-master"}).json()
    recs = snap["resources"]["item-master"]["records"]
    assert snap["resources"]["item-master"]["count"] == len(recs) == len(rows(svc, "item-master"))
    listed = {r["id"]: r for r in rows(svc, "item-master")}
    for rec in recs:
        assert listed[rec["id"]] == rec


def test_mutate_shows_up_in_lists(svc, sim):
    before = {r["id"]: r for r in rows(svc, "purchase-order", filter={"Warehouse Status": ["Active", "Inactive"]})}
    out = sim.control_post("/_sim/mutate", json={"resource": "purchase-order", "create": 3, "update": 4,
                                                 "delete": 2}).json()
    after = {r["id"]: r for r in rows(svc, "purchase-order", filter={"Warehouse Status": ["Active", "Inactive"]})}
    assert set(out["created"]) <= set(after) and not set(out["created"]) & set(before)
    assert not set(out["deleted"]) & set(after)
    assert len(out["updated"]) == 4
    for pid in out["created"]:
        po = svc.get("/api/purchase-order/%d" % pid).json()["data"]["rows"]
        assert po["details"] and po["PO Total Items"] == len(po["details"])
    created = sim.control_get("/_sim/stats").json()["created"]
    assert created.get("purchase-order", 0) == 0 or created["purchase-order"] < 3 + len(before)
    out = sim.control_post("/_sim/mutate", json={"resource": "item-master", "create": 1, "update": 1,
                                                 "delete": 1}).json()
    assert len(out["created"]) == 1 and len(out["deleted"]) == 1
    r = svc.get("/api/item-master/%d" % out["deleted"][0])
    assert r.status_code == 400 and r.json()["Code"] == "ItemMaster.NotFound"


def test_planner_via_control(svc, sim):
    seen = set()
    for _ in range(3):
        out = sim.control_post("/_sim/planner").json()
        assert set(out) == {"created", "updated", "deleted"}
        seen.update(out["created"])
        sug = {p["id"] for p in rows(svc, "purchase-order", filter={"PO List Document Status": "Suggested",
                                                                     "Warehouse Status": ["Active", "Inactive"]})}
        assert set(out["created"]) <= sug and not set(out["deleted"]) & sug
    assert seen
