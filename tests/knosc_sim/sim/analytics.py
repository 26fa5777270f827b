"""Read-only helpers and analytics computed from the tenant's current data.

Every computation sees the same rows a list would: rows of inactive warehouses are left out and the
caller's granular filters apply, so a dashboard always agrees with the lists of the same user.
"""

from __future__ import annotations

import math
import time

from sim import records as R
from sim.catalog import H, OPEN_MO, OPEN_PO, OPEN_SO, MODULES, RESOURCES
from sim.common import SIM_TODAY_S, ApiError, days_between, money, parse_json_param, route_not_found
from sim.http_types import Response
from sim.lists import check_filter, envelope, make_getter, parse_params, predicates, select_rows, ListParams

ALL = 10 ** 9


# ------------------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------------------
def visible(t, user, tname: str, recs=None) -> list:
    """Records of a table a list would show this user without any filter."""
    wh = t.wh_status()
    p = ListParams()
    get = make_getter(wh)
    preds = predicates(p, get, wh, t.granular_filters(user))
    src = t.store[tname].values() if recs is None else recs
    if not preds:
        return list(src)
    return [r for r in src if all(f(r) for f in preds)]


def params_all(query: dict, default_sort: tuple) -> ListParams:
    """List parameters; without page/page_size the whole result is returned (helper routes)."""
    p = parse_params(query, default_sort)
    if "page" not in query and "page_size" not in query:
        p.offset, p.limit = 0, ALL
    return p


def computed_list(t, req, rows: list, headers: list, default_sort: tuple, paged: bool = True) -> Response:
    p = parse_params(req.query, default_sort) if paged else params_all(req.query, default_sort)
    page, _ = select_rows(rows, p, t.wh_status(), t.granular_filters(req.user))
    return Response(200, envelope(headers, p.sort_key, p.sort_type, page))


def _int_id(raw: str, name: str):
    try:
        return int(raw)
    except ValueError:
        raise R.not_found_id(name, raw)


def _get(t, name: str, raw: str) -> dict:
    rid = _int_id(raw, name)
    rec = t.store[name].get(rid)
    if rec is None:
        raise R.not_found_id(name, rid)
    return rec



# ------------------------------------------------------------------------------------------------------------
# /api/<x>-order-item/{item_id}[/{warehouse_id}]
# ------------------------------------------------------------------------------------------------------------
ITEM_HELPERS = {
    "purchase-order-item": ("purchase-order-details", "purchase-order", "Procurement",
                            ("Supplier Name", "Supplier Number"),
                            [H("PO List Number", "string-link", "PO #"), H("Supplier Name"),
                             H("Warehouse Number", "string-link", "Warehouse #"),
                             H("PO Details Document Status", alias="Status"), H("PO Details Quantity", "number", "Quantity"),
                             H("PO Details ETA Date", "date", "ETA"), H("PO Details Ship Date", "date", "Ship Date")],
                            ("PO Details ETA Date", "Descending")),
    "sales-order-item": ("sales-order-details", "sales-order", "Demand", ("Customer Name", "Customer Number"),
                         [H("SO List Number", "string-link", "SO #"), H("Customer Name"),
                          H("Warehouse Number", "string-link", "Warehouse #"),
                          H("SO Details Document Status", alias="Status"), H("SO Details Quantity", "number", "Quantity"),
                          H("SO Details Ship Date", "date", "Ship Date")],
                         ("SO Details Ship Date", "Descending")),
    "manufacturing-order-item": ("manufacturing-order-details", "manufacturing-order", "Manufacturing", (),
                                 [H("MO List Number", "string-link", "MO #"),
                                  H("Warehouse Number", "string-link", "Warehouse #"),
                                  H("MO Details Document Status", alias="Status"),
                                  H("MO Details Quantity", "number", "Quantity"),
                                  H("MO Details Start Date", "date", "Start Date"),
                                  H("MO Details End Date", "date", "End Date")],
                                 ("MO Details End Date", "Descending")),
    "forecast-item": ("forecast-details", "forecast", "Forecast", (),
                      [H("Forecast List Number", "string-link", "Forecast #"),
                       H("Warehouse Number", "string-link", "Warehouse #"),
                       H("Forecast Details Date", "date", "Date"), H("Forecast Details Quantity", "number", "Quantity"),
                       H("Forecast Details Document Status", alias="Status")],
                      ("Forecast Details Date", "Descending")),
}


def _item_and_wh(t, rest: list):
    if len(rest) not in (1, 2):
        raise route_not_found()
    item = _get(t, "item-master", rest[0])
    wh = _get(t, "warehouse-master", rest[1]) if len(rest) == 2 else None
    return item, wh


def item_helper(t, req, name: str, rest: list) -> Response:
    if req.method != "GET":
        raise route_not_found()
    ltab, htab, module, copy, headers, sort = ITEM_HELPERS[name]
    t.require(req.user, module, "View")
    item, wh = _item_and_wh(t, rest)
    lines = t.store[ltab].refs("Item Id", item["id"])
    if wh is not None:
        lines = [ln for ln in lines if ln.get("Warehouse Id") == wh["id"]]
    lines.sort(key=lambda x: x["id"])
    parent_field = RESOURCES[ltab].parent_field
    heads = t.store[htab]
    rows = []
    for ln in lines:
        r = dict(ln)
        if copy:
            h = heads.get(ln[parent_field]) or {}
            for k in copy:
                r[k] = h.get(k)
        rows.append(r)
    return computed_list(t, req, rows, headers, sort)


def inventory_item(t, req, name: str, rest: list) -> Response:
    if req.method != "GET":
        raise route_not_found()
    t.require(req.user, "Inventory", "View")
    item, wh = _item_and_wh(t, rest)
    st = t.store
    by_wh = {}

    def slot(rec):
        num = rec.get("Warehouse Number")
        if num not in by_wh:
            by_wh[num] = {"Warehouse Number": num, "Warehouse Name": rec.get("Warehouse Name"), "Inventory Quantity": 0,
                          "Open PO Quantity": 0, "Open SO Quantity": 0, "Open MO Quantity": 0}
        return by_wh[num]

    def rows_of(tname):
        recs = st[tname].refs("Item Id", item["id"])
        if wh is not None:
            recs = [r for r in recs if r.get("Warehouse Id") == wh["id"]]
        return visible(t, req.user, tname, recs)

    for r in rows_of("inventory"):
        slot(r)["Inventory Quantity"] += r["Inventory Quantity"] or 0
    for tname, key, statuses, col in (("purchase-order-details", "PO Details Quantity", OPEN_PO, "Open PO Quantity"),
                                      ("sales-order-details", "SO Details Quantity", OPEN_SO, "Open SO Quantity"),
                                      ("manufacturing-order-details", "MO Details Quantity", OPEN_MO,
                                       "Open MO Quantity")):
        status_key = key.replace("Quantity", "Document Status")
        for r in rows_of(tname):
            if r.get(status_key) in statuses:
                slot(r)[col] += r.get(key) or 0
    rows = sorted(by_wh.values(), key=lambda r: r["Warehouse Number"] or "")
    for r in rows:
        # API-NOTES §8.3: net available = inventory + inbound - outbound (the documented example leaves
        # manufacturing out: 850 + 200 - 300 = 750)
        r["Net Available"] = r["Inventory Quantity"] + r["Open PO Quantity"] - r["Open SO Quantity"]
    headers = [{"key": "Warehouse Number", "format": "string-link"}, {"key": "Inventory Quantity", "format": "number"},
               {"key": "Open PO Quantity", "format": "number"}, {"key": "Open SO Quantity", "format": "number"},
               {"key": "Open MO Quantity", "format": "number"}]
    return Response(200, {"data": {
        "item": {"Item Number": item["Item Number"], "Item Description": item["Item Description"],
                 "Item Type": item["Item Type"], "Total Quantity": sum(r["Inventory Quantity"] for r in rows),
                 "Total Warehouses": sum(1 for r in rows if r["Inventory Quantity"] > 0)},
        "orders": {"headers": headers, "rows": rows}}})


def sales_prioritized(t, req, name: str, rest: list) -> Response:
    if req.method != "GET":
        raise route_not_found()
    t.require(req.user, "Demand", "View")
    item, wh = _item_and_wh(t, rest)
    st = t.store

    def rows_of(tname):
        recs = st[tname].refs("Item Id", item["id"])
        if wh is not None:
            recs = [r for r in recs if r.get("Warehouse Id") == wh["id"]]
        return visible(t, req.user, tname, recs)

    stock = {}
    for r in rows_of("inventory"):
        stock[r["Warehouse Number"]] = stock.get(r["Warehouse Number"], 0) + (r["Inventory Quantity"] or 0)
    lines = [ln for ln in rows_of("sales-order-details") if ln.get("SO Details Document Status") in OPEN_SO]
    lines.sort(key=lambda ln: (ln["Warehouse Number"] or "", ln.get("SO Details Ship Date") or "9999-99-99", ln["id"]))
    heads = st["sales-order"]
    rows, rank, last_wh = [], 0, None
    for ln in lines:
        whn = ln["Warehouse Number"]
        if whn != last_wh:
            rank, last_wh = 0, whn
        rank += 1
        avail = stock.get(whn, 0)
        alloc = max(0, min(ln["SO Details Quantity"] or 0, avail))
        stock[whn] = avail - alloc
        h = heads.get(ln["Sales Order Id"]) or {}
        rows.append({"id": ln["id"], "SO List Number": ln["SO List Number"], "Customer Name": h.get("Customer Name"),
                     "SO Details Quantity": ln["SO Details Quantity"], "SO Details Ship Date": ln["SO Details Ship Date"],
                     "SO Details Document Status": ln["SO Details Document Status"], "Warehouse Number": whn,
                     "Priority": rank, "Allocated Quantity": alloc, "Available Inventory": stock[whn]})
    return Response(200, {"data": {"rows": rows}})


def external_item_details(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or len(rest) != 1:
        raise route_not_found()
    t.require(req.user, "External Item Master", "View")
    rec = _get(t, "external-item-master", rest[0])
    item = t.store["item-master"].get(rec["Item Id"]) or {}
    mappings = sorted(t.store["external-item-master"].refs("Item Id", rec["Item Id"]), key=lambda r: r["id"])
    out = dict(rec)
    out["Item"] = {k: item.get(k) for k in ("id", "Item Number", "Item Description", "Item Type", "Item Unit")}
    out["Number of Mappings"] = len(mappings)
    out["Mappings"] = [dict(m) for m in mappings]
    return Response(200, {"data": out})


# ------------------------------------------------------------------------------------------------------------
# Supplier allocation
# ------------------------------------------------------------------------------------------------------------
def _open_po_by_item_supplier(t, user) -> dict:
    heads = t.store["purchase-order"]
    out = {}
    for ln in visible(t, user, "purchase-order-details"):
        if ln["PO Details Document Status"] in OPEN_PO:
            sup = (heads.get(ln["Purchase Order Id"]) or {}).get("Supplier Id")
            key = (ln["Item Id"], sup)
            out[key] = out.get(key, 0) + (ln["PO Details Quantity"] or 0)
    return out


def net_allocation(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest:
        raise route_not_found()
    t.require(req.user, "Supplier Allocation", "View")
    open_po = _open_po_by_item_supplier(t, req.user)
    per_item = {}
    for (item_id, _), q in open_po.items():
        per_item[item_id] = per_item.get(item_id, 0) + q
    rows = []
    for a in t.store["supplier-allocation"].values():
        total = per_item.get(a["Item Id"], 0)
        net = round(total * a["Allocation Percentage"] / 100.0, 2)
        opened = open_po.get((a["Item Id"], a["Supplier Id"]), 0)
        rows.append({"id": a["id"], "Item Number": a["Item Number"], "Supplier Number": a["Supplier Number"],
                     "Supplier Name": a["Supplier Name"], "Allocation Percentage": a["Allocation Percentage"],
                     "Net Allocated Quantity": net, "Open PO Quantity": opened, "Variance": round(opened - net, 2)})
    p = params_all(req.query, ("id", "Ascending"))
    page, _ = select_rows(rows, p, t.wh_status(), t.granular_filters(req.user))
    return Response(200, {"data": {"rows": page}})


def net_allocation_table(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest:
        raise route_not_found()
    t.require(req.user, "Supplier Allocation", "View")
    allocs = list(t.store["supplier-allocation"].values())
    sups = sorted({(a["Supplier Number"], a["Supplier Name"]) for a in allocs})
    by_item = {}
    for a in allocs:
        row = by_item.setdefault(a["Item Id"], {"id": a["Item Id"], "Item Number": a["Item Number"],
                                                "Item Description": a["Item Description"], "Total Allocation": 0})
        row[a["Supplier Number"]] = a["Allocation Percentage"]
        row["Total Allocation"] += a["Allocation Percentage"]
    rows = sorted(by_item.values(), key=lambda r: r["id"])
    for r in rows:
        for num, _ in sups:
            r.setdefault(num, 0)
    headers = ([H("Item Number", "string-link", "Item #"), H("Item Description")]
               + [H(num, "number", sname) for num, sname in sups] + [H("Total Allocation", "number")])
    return computed_list(t, req, rows, headers, ("Item Number", "Ascending"), paged=False)


# ------------------------------------------------------------------------------------------------------------
# Forecast over time, delayed shipments, scenarios
# ------------------------------------------------------------------------------------------------------------
def forecast_over_time_rows(t, user) -> list:
    buckets = {}
    for ln in visible(t, user, "forecast-details"):
        key = (ln["Item Number"], ln["Warehouse Number"], ln["Forecast Details Date"][:7])
        buckets[key] = buckets.get(key, 0) + (ln["Forecast Details Quantity"] or 0)
    actual = {}
    for ln in visible(t, user, "sales-order-details"):
        sd = ln.get("SO Details Ship Date")
        if sd and ln.get("SO Details Document Status") != "Cancelled":
            key = (ln["Item Number"], ln["Warehouse Number"], sd[:7])
            if key in buckets:
                actual[key] = actual.get(key, 0) + (ln["SO Details Quantity"] or 0)
    rows = []
    for key in sorted(buckets):
        item, whn, month = key
        fq, aq = buckets[key], actual.get(key, 0)
        rows.append({"Item Number": item, "Warehouse Number": whn, "Period": month + "-01", "Forecast Quantity": fq,
                     "Actual Quantity": aq, "Variance": aq - fq})
    return rows


FOT_HEADERS = [H("Item Number", "string-link"), H("Warehouse Number", "string-link"), H("Period", "date"),
               H("Forecast Quantity", "number"), H("Actual Quantity", "number"), H("Variance", "number")]


def forecast_over_time(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest:
        raise route_not_found()
    t.require(req.user, "Forecast Over Time", "View")
    return computed_list(t, req, forecast_over_time_rows(t, req.user), FOT_HEADERS, ("Period", "Ascending"))


def delayed_lines(t, user) -> list:
    out = []
    for ln in visible(t, user, "purchase-order-details"):
        eta = ln.get("PO Details ETA Date")
        if eta and eta < SIM_TODAY_S and ln["PO Details Document Status"] in OPEN_PO:
            out.append((days_between(eta, SIM_TODAY_S), ln))
    return out


BUCKETS = {
    "week": [("0–7 days", 0, 7), ("8–14 days", 8, 14), ("15–30 days", 15, 30), ("30+ days", 31, None)],
    "month": [("0–30 days", 0, 30), ("31–60 days", 31, 60), ("61–90 days", 61, 90), ("90+ days", 91, None)],
}


def delayed_shipments(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest != ["histogram"]:
        raise route_not_found()
    t.require(req.user, "Procurement", "View")
    bucket = req.query.get("bucket")
    if not bucket:
        raise ApiError(400, "Missing required parameter: bucket", "DelayedShipments.InvalidBucket")
    if bucket not in BUCKETS:
        raise ApiError(400, "Invalid bucket %r: use week or month." % bucket, "DelayedShipments.InvalidBucket")
    counts = [0] * len(BUCKETS[bucket])
    delayed = delayed_lines(t, req.user)
    for days, _ in delayed:
        for i, (_, lo, hi) in enumerate(BUCKETS[bucket]):
            if days >= lo and (hi is None or days <= hi):
                counts[i] += 1
                break
    return Response(200, {"data": {"buckets": [{"label": b[0], "count": c} for b, c in zip(BUCKETS[bucket], counts)],
                                   "total_delayed": len(delayed), "bucket": bucket}})


SCENARIO_SOURCES = {
    "scenario-purchase-order-details": ("purchase-order-details", "PO Details Quantity", "Procurement"),
    "scenario-sales-order-details": ("sales-order-details", "SO Details Quantity", "Demand"),
    "scenario-manufacturing-order-details": ("manufacturing-order-details", "MO Details Quantity", "Manufacturing"),
    "scenario-forecast-details": ("forecast-details", "Forecast Details Quantity", "Forecast"),
}


def scenario_projection(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or len(rest) != 1:
        raise route_not_found()
    t.require(req.user, "Scenarios", "View")
    sc = _get(t, "scenario-analysis", rest[0])
    if sc["Scenario Status"] != "Active":
        raise ApiError(400, "Scenario #%s is not active." % sc["id"], "ScenarioAnalysis.NotActive")
    ltab, qkey, _module = SCENARIO_SOURCES[name]
    factor = 1 + (sc.get("Scenario Demand Change Percentage") or 0) / 100.0
    rows = []
    for ln in t.store[ltab].values():
        r = dict(ln)
        r["Scenario Id"] = sc["id"]
        r["Scenario Quantity"] = round((ln.get(qkey) or 0) * factor, 2)
        rows.append(r)
    headers = t.headers_of(ltab) + [H("Scenario Quantity", "number")]
    return computed_list(t, req, rows, headers, ("id", "Ascending"))


# ------------------------------------------------------------------------------------------------------------
# Planning positions (dashboard-inventory-planning and the hourly planner)
# ------------------------------------------------------------------------------------------------------------
def positions(t, user=None, by_warehouse: bool = True) -> dict:
    """(item id, warehouse number or None) -> stock position."""
    pos = {}
    items = t.store["item-master"]

    def slot(rec):
        key = (rec["Item Id"], rec.get("Warehouse Number") if by_warehouse else None)
        p = pos.get(key)
        if p is None:
            it = items.get(rec["Item Id"]) or {}
            p = pos[key] = {"Item Id": rec["Item Id"], "Item Number": it.get("Item Number"),
                            "Item Description": it.get("Item Description"),
                            "Warehouse Number": key[1], "In Stock": 0, "Expected": 0, "Manufacturing": 0, "Demand": 0,
                            "Forecast": 0}
        return p

    for r in visible(t, user, "inventory"):
        slot(r)["In Stock"] += r["Inventory Quantity"] or 0
    for r in visible(t, user, "purchase-order-details"):
        if r["PO Details Document Status"] in OPEN_PO:
            slot(r)["Expected"] += r["PO Details Quantity"] or 0
    for r in visible(t, user, "manufacturing-order-details"):
        if r["MO Details Document Status"] in OPEN_MO:
            slot(r)["Manufacturing"] += r["MO Details Quantity"] or 0
    for r in visible(t, user, "sales-order-details"):
        if r["SO Details Document Status"] in OPEN_SO:
            slot(r)["Demand"] += r["SO Details Quantity"] or 0
    for r in visible(t, user, "forecast-details"):
        if r["Forecast Details Document Status"] == "Active" and r["Forecast Details Date"] >= SIM_TODAY_S:
            slot(r)["Forecast"] += r["Forecast Details Quantity"] or 0
    for p in pos.values():
        need = p["Demand"] + p["Forecast"]
        p["Safety Stock"] = int(math.ceil(0.1 * need))
        p["Reorder Point"] = p["Safety Stock"] + int(math.ceil(0.25 * need))
        p["Projected"] = p["In Stock"] + p["Expected"] + p["Manufacturing"] - p["Demand"]
        short = p["Reorder Point"] + p["Safety Stock"] - p["Projected"]
        p["Reorder Quantity"] = int(math.ceil(short / 10.0) * 10) if short > 0 else 0
        p["Status"] = "Reorder" if p["Projected"] < p["Reorder Point"] else "OK"
    return pos


PLANNING_HEADERS = [H("Item Number", "string-link", "Item #"), H("Item Description"), H("In Stock", "number"),
                    H("Expected", "number"), H("Manufacturing", "number"), H("Demand", "number"),
                    H("Forecast", "number"), H("Projected", "number"), H("Safety Stock", "number"),
                    H("Reorder Point", "number"), H("Reorder Quantity", "number"), H("Status")]


def planning_rows(t, user) -> list:
    rows = []
    for (item_id, _), p in sorted(positions(t, user, by_warehouse=False).items(), key=lambda kv: kv[0][0]):
        r = {"id": item_id}
        r.update({k: v for k, v in p.items() if k not in ("Item Id", "Warehouse Number")})
        rows.append(r)
    return rows


# ------------------------------------------------------------------------------------------------------------
# Dashboards
# ------------------------------------------------------------------------------------------------------------
def _value(ln, qkey, pkey):
    return (ln.get(qkey) or 0) * (ln.get(pkey) or 0)


def _spend_lines(t, user):
    return [ln for ln in visible(t, user, "purchase-order-details") if ln["PO Details Document Status"] != "Cancelled"]


def _revenue_lines(t, user):
    return [ln for ln in visible(t, user, "sales-order-details") if ln["SO Details Document Status"] != "Cancelled"]


def dash_statistics_data(t, user) -> dict:
    heads_open = lambda tname, key, statuses: sum(  # noqa: E731
        1 for r in visible(t, user, tname) if r.get(key) in statuses)
    inv = visible(t, user, "inventory")
    return {
        "Open Purchase Orders": heads_open("purchase-order", "PO List Document Status", OPEN_PO),
        "Open Sales Orders": heads_open("sales-order", "SO List Document Status", OPEN_SO),
        "Open Manufacturing Orders": heads_open("manufacturing-order", "MO List Document Status", OPEN_MO),
        "Suggested Purchase Orders": heads_open("purchase-order", "PO List Document Status", ("Suggested",)),
        "Delayed Shipments": len(delayed_lines(t, user)),
        "Active Items": sum(1 for r in t.store["item-master"].values() if r["Item Status"] == "Active"),
        "Active Suppliers": sum(1 for r in t.store["supplier-master"].values() if r["Supplier Status"] == "Active"),
        "Active Customers": sum(1 for r in t.store["customer-master"].values() if r["Customer Status"] == "Active"),
        "Total Inventory Quantity": sum(r["Inventory Quantity"] or 0 for r in inv),
        "Open Tickets": sum(1 for r in t.store["issue-tracker-tickets"].values() if r["Status"] in ("Open", "In Progress")),
    }


def dash_total_data(t, user) -> dict:
    spend = _spend_lines(t, user)
    rev = _revenue_lines(t, user)
    return {
        "Total Spend": money(sum(_value(ln, "PO Details Quantity", "PO Details Price") for ln in spend)),
        "Open PO Value": money(sum(_value(ln, "PO Details Quantity", "PO Details Price") for ln in spend
                                   if ln["PO Details Document Status"] in OPEN_PO)),
        "Total Revenue": money(sum(_value(ln, "SO Details Quantity", "SO Details Price") for ln in rev)),
        "Open SO Value": money(sum(_value(ln, "SO Details Quantity", "SO Details Price") for ln in rev
                                   if ln["SO Details Document Status"] in OPEN_SO)),
        "Total Inventory Quantity": sum(r["Inventory Quantity"] or 0 for r in visible(t, user, "inventory")),
        "Currency": "USD",
    }


def _group(lines, key_fn, qkey, pkey, parent_field=None):
    out = {}
    for ln in lines:
        k = key_fn(ln)
        g = out.get(k)
        if g is None:
            g = out[k] = {"value": 0.0, "quantity": 0, "lines": 0, "orders": set()}
        g["value"] += _value(ln, qkey, pkey)
        g["quantity"] += ln.get(qkey) or 0
        g["lines"] += 1
        if parent_field:
            g["orders"].add(ln[parent_field])
    return out


def spend_by_supplier_rows(t, user, supplier_id=None) -> list:
    heads = t.store["purchase-order"]
    lines = _spend_lines(t, user)
    if supplier_id is None:
        groups = _group(lines, lambda ln: (heads.get(ln["Purchase Order Id"]) or {}).get("Supplier Id"),
                        "PO Details Quantity", "PO Details Price", "Purchase Order Id")
        sups = t.store["supplier-master"]
        rows = []
        for sid, g in groups.items():
            s = sups.get(sid) or {}
            rows.append({"id": sid, "Supplier Number": s.get("Supplier Number"), "Supplier Name": s.get("Supplier Name"),
                         "Total Spend": money(g["value"]), "PO Count": len(g["orders"]), "Line Count": g["lines"],
                         "Quantity": g["quantity"]})
        return sorted(rows, key=lambda r: r["id"] or 0)
    lines = [ln for ln in lines if (heads.get(ln["Purchase Order Id"]) or {}).get("Supplier Id") == supplier_id]
    groups = _group(lines, lambda ln: ln["Item Id"], "PO Details Quantity", "PO Details Price", "Purchase Order Id")
    items = t.store["item-master"]
    return sorted(({"id": iid, "Item Number": (items.get(iid) or {}).get("Item Number"),
                    "Item Description": (items.get(iid) or {}).get("Item Description"),
                    "Total Spend": money(g["value"]), "Quantity": g["quantity"], "Line Count": g["lines"]}
                   for iid, g in groups.items()), key=lambda r: r["id"])


def revenue_by_customer_rows(t, user, customer_id=None) -> list:
    heads = t.store["sales-order"]
    lines = _revenue_lines(t, user)
    if customer_id is None:
        groups = _group(lines, lambda ln: (heads.get(ln["Sales Order Id"]) or {}).get("Customer Id"),
                        "SO Details Quantity", "SO Details Price", "Sales Order Id")
        custs = t.store["customer-master"]
        rows = []
        for cid, g in groups.items():
            c = custs.get(cid) or {}
            rows.append({"id": cid, "Customer Number": c.get("Customer Number"), "Customer Name": c.get("Customer Name"),
                         "Total Revenue": money(g["value"]), "SO Count": len(g["orders"]), "Line Count": g["lines"],
                         "Quantity": g["quantity"]})
        return sorted(rows, key=lambda r: r["id"] or 0)
    lines = [ln for ln in lines if (heads.get(ln["Sales Order Id"]) or {}).get("Customer Id") == customer_id]
    groups = _group(lines, lambda ln: ln["Item Id"], "SO Details Quantity", "SO Details Price", "Sales Order Id")
    items = t.store["item-master"]
    return sorted(({"id": iid, "Item Number": (items.get(iid) or {}).get("Item Number"),
                    "Item Description": (items.get(iid) or {}).get("Item Description"),
                    "Total Revenue": money(g["value"]), "Quantity": g["quantity"], "Line Count": g["lines"]}
                   for iid, g in groups.items()), key=lambda r: r["id"])


def by_item_rows(t, user, kind: str, item_id=None) -> list:
    if kind == "spend":
        lines, qk, pk, hname, party = _spend_lines(t, user), "PO Details Quantity", "PO Details Price", "purchase-order", "Supplier"
        pf, label = "Purchase Order Id", "Total Spend"
    else:
        lines, qk, pk, hname, party = _revenue_lines(t, user), "SO Details Quantity", "SO Details Price", "sales-order", "Customer"
        pf, label = "Sales Order Id", "Total Revenue"
    heads = t.store[hname]
    if item_id is None:
        groups = _group(lines, lambda ln: ln["Item Id"], qk, pk, pf)
        items = t.store["item-master"]
        return sorted(({"id": iid, "Item Number": (items.get(iid) or {}).get("Item Number"),
                        "Item Description": (items.get(iid) or {}).get("Item Description"), label: money(g["value"]),
                        "Quantity": g["quantity"], "Line Count": g["lines"]} for iid, g in groups.items()),
                      key=lambda r: r["id"])
    lines = [ln for ln in lines if ln["Item Id"] == item_id]
    groups = _group(lines, lambda ln: (heads.get(ln[pf]) or {}).get(party + " Id"), qk, pk, pf)
    ptab = t.store["supplier-master" if party == "Supplier" else "customer-master"]
    return sorted(({"id": pid, party + " Number": (ptab.get(pid) or {}).get(party + " Number"),
                    party + " Name": (ptab.get(pid) or {}).get(party + " Name"), label: money(g["value"]),
                    "Quantity": g["quantity"], "Line Count": g["lines"]} for pid, g in groups.items()),
                  key=lambda r: r["id"] or 0)


def inventory_distribution_rows(t, user) -> list:
    by = {}
    for r in visible(t, user, "inventory"):
        g = by.setdefault(r["Warehouse Number"], {"id": r["Warehouse Id"], "Warehouse Number": r["Warehouse Number"],
                                                  "Warehouse Name": r["Warehouse Name"], "Inventory Quantity": 0,
                                                  "Item Count": 0})
        g["Inventory Quantity"] += r["Inventory Quantity"] or 0
        g["Item Count"] += 1
    total = sum(g["Inventory Quantity"] for g in by.values()) or 1
    rows = sorted(by.values(), key=lambda g: g["Warehouse Number"])
    for g in rows:
        g["Share"] = round(100.0 * g["Inventory Quantity"] / total, 2)
    return rows


def inventory_by_item_wh_rows(t, user) -> list:
    by = {}
    for r in visible(t, user, "inventory"):
        key = (r["Item Id"], r["Warehouse Number"])
        g = by.setdefault(key, {"Item Number": r["Item Number"], "Item Description": r["Item Description"],
                                "Warehouse Number": r["Warehouse Number"], "Inventory Quantity": 0})
        g["Inventory Quantity"] += r["Inventory Quantity"] or 0
    return [by[k] for k in sorted(by, key=lambda k: (k[0], k[1] or ""))]


def _analytics_orders(t, user, kind: str) -> dict:
    if kind == "po":
        heads, lines, sk, dk, qk, pk, pf = ("purchase-order", "purchase-order-details", "PO List Document Status",
                                            "PO List Order Date", "PO Details Quantity", "PO Details Price",
                                            "Purchase Order Id")
    else:
        heads, lines, sk, dk, qk, pk, pf = ("sales-order", "sales-order-details", "SO List Document Status",
                                            "SO List Order Date", "SO Details Quantity", "SO Details Price",
                                            "Sales Order Id")
    hs = visible(t, user, heads)
    by_status, by_month = {}, {}
    value_of = {}
    for ln in visible(t, user, lines):
        value_of[ln[pf]] = value_of.get(ln[pf], 0) + _value(ln, qk, pk)
    for h in hs:
        s = by_status.setdefault(h[sk], {"label": h[sk], "count": 0, "value": 0.0})
        s["count"] += 1
        s["value"] += value_of.get(h["id"], 0)
        month = (h.get(dk) or "")[:7] or None
        if month:
            m = by_month.setdefault(month, {"label": month, "count": 0, "value": 0.0})
            m["count"] += 1
            m["value"] += value_of.get(h["id"], 0)
    for d in list(by_status.values()) + list(by_month.values()):
        d["value"] = money(d["value"])
    return {"total": len(hs), "by_status": [by_status[k] for k in sorted(by_status)],
            "by_month": [by_month[k] for k in sorted(by_month)]}


def world_map_rows(t, user) -> list:
    pos = positions(t, user)
    by = {}
    for (item_id, whn), p in pos.items():
        g = by.setdefault(whn, {"Open PO Quantity": 0, "Open SO Quantity": 0, "Inventory Quantity": 0})
        g["Open PO Quantity"] += p["Expected"]
        g["Open SO Quantity"] += p["Demand"]
        g["Inventory Quantity"] += p["In Stock"]
    rows = []
    for w in visible(t, user, "warehouse-master"):
        addr = (w.get("Warehouse Address") or "").split(", ")
        g = by.get(w["Warehouse Number"], {"Open PO Quantity": 0, "Open SO Quantity": 0, "Inventory Quantity": 0})
        rows.append(dict({"id": w["id"], "Warehouse Number": w["Warehouse Number"], "Warehouse Name": w["Warehouse Name"],
                          "City": addr[1] if len(addr) > 2 else None, "State": addr[-1] if len(addr) > 2 else None}, **g))
    return rows


def _num_headers(rows: list, link: str) -> list:
    if not rows:
        return [H(link, "string-link")]
    out = []
    for k, v in rows[0].items():
        if k == "id":
            continue
        fmt = "string-link" if k == link else ("number" if isinstance(v, (int, float)) and not isinstance(v, bool)
                                               else "string")
        out.append(H(k, fmt))
    return out


def dashboard(t, req, name: str, rest: list) -> Response:
    if req.method != "GET":
        raise route_not_found()
    user = req.user
    kind = name[len("dashboard-"):]
    ent = rest[0] if rest else None
    if len(rest) > 1:
        raise route_not_found()

    def one_level():
        if ent is not None:
            raise route_not_found()

    if kind == "statistics":
        one_level()
        t.require(user, "Dashboard")
        return Response(200, {"data": dash_statistics_data(t, user)})
    if kind == "total":
        one_level()
        t.require(user, "Dashboard")
        return Response(200, {"data": dash_total_data(t, user)})
    if kind == "world-map":
        one_level()
        t.require(user, "Dashboard")
        return computed_list(t, req, world_map_rows(t, user), _num_headers(world_map_rows(t, user)[:1], "Warehouse Number"),
                             ("Warehouse Number", "Ascending"), paged=False)
    if kind == "spend-by-supplier":
        t.require(user, "Spend Analytics")
        sid = _get(t, "supplier-master", ent)["id"] if ent is not None else None
        rows = spend_by_supplier_rows(t, user, sid)
        return computed_list(t, req, rows, _num_headers(rows, "Item Number" if sid else "Supplier Name"),
                             ("Total Spend", "Descending"), paged=False)
    if kind == "spend-by-item":
        t.require(user, "Spend Analytics")
        iid = _get(t, "item-master", ent)["id"] if ent is not None else None
        rows = by_item_rows(t, user, "spend", iid)
        return computed_list(t, req, rows, _num_headers(rows, "Supplier Name" if iid else "Item Number"),
                             ("Total Spend", "Descending"), paged=False)
    if kind == "revenue-by-customer":
        t.require(user, "Revenue Analytics")
        cid = _get(t, "customer-master", ent)["id"] if ent is not None else None
        rows = revenue_by_customer_rows(t, user, cid)
        return computed_list(t, req, rows, _num_headers(rows, "Item Number" if cid else "Customer Name"),
                             ("Total Revenue", "Descending"), paged=False)
    if kind == "revenue-by-item":
        t.require(user, "Revenue Analytics")
        iid = _get(t, "item-master", ent)["id"] if ent is not None else None
        rows = by_item_rows(t, user, "revenue", iid)
        return computed_list(t, req, rows, _num_headers(rows, "Customer Name" if iid else "Item Number"),
                             ("Total Revenue", "Descending"), paged=False)
    if kind == "inventory-distribution":
        one_level()
        t.require(user, "Inventory")
        rows = inventory_distribution_rows(t, user)
        return computed_list(t, req, rows, _num_headers(rows, "Warehouse Number"), ("Warehouse Number", "Ascending"),
                             paged=False)
    if kind == "inventory-by-item-and-warehouse":
        one_level()
        t.require(user, "Inventory")
        rows = inventory_by_item_wh_rows(t, user)
        return computed_list(t, req, rows, _num_headers(rows, "Item Number"), ("Item Number", "Ascending"))
    if kind == "inventory-planning":
        one_level()
        t.require(user, "Inventory Planning")
        return computed_list(t, req, planning_rows(t, user), PLANNING_HEADERS, ("Item Number", "Ascending"))
    if kind == "analytics-purchase-orders":
        one_level()
        t.require(user, "Procurement Analytics")
        return Response(200, {"data": _analytics_orders(t, user, "po")})
    if kind == "analytics-sales-orders":
        one_level()
        t.require(user, "Sales Analytics")
        return Response(200, {"data": _analytics_orders(t, user, "so")})
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# Navigation bar, auto-complete
# ------------------------------------------------------------------------------------------------------------
def navigation_bar(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest:
        raise route_not_found()
    privs = t.privileges(req.user) if req.user else {}
    out = []
    for m in MODULES:
        if m in privs:
            out.append({"name": m, "path": "/" + m.lower().replace(" ", "-"), "access": privs[m]})
    return Response(200, {"data": out})


AUTOCOMPLETE = {
    "Item Number": "item-master", "Item Description": "item-master", "Supplier Number": "supplier-master",
    "Supplier Name": "supplier-master", "Customer Number": "customer-master", "Customer Name": "customer-master",
    "Warehouse Number": "warehouse-master", "Warehouse Name": "warehouse-master",
    "Ship From Number": "ship-from-master", "Ship To Number": "ship-to-master", "User Email": "user",
    "PO List Number": "purchase-order", "SO List Number": "sales-order", "MO List Number": "manufacturing-order",
}
AUTOCOMPLETE_MAX = 50


def auto_complete(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest:
        raise route_not_found()
    started = time.perf_counter()
    cat = req.query.get("category")
    text = req.query.get("text")
    if not cat:
        raise ApiError(400, "Missing required parameter: category", "AutoComplete.MissingField")
    if text is None:
        raise ApiError(400, "Missing required parameter: text", "AutoComplete.MissingField")
    tname = AUTOCOMPLETE.get(cat)
    if tname is None:
        raise ApiError(400, "Unknown category %r; use one of: %s." % (cat, ", ".join(AUTOCOMPLETE)),
                       "AutoComplete.InvalidCategory")
    p = ListParams()
    subset = req.query.get("subset_filters")
    if subset:
        p.filter = check_filter(parse_json_param(subset), "subset_filters")
    wh = t.wh_status()
    get = make_getter(wh)
    preds = predicates(p, get, wh, t.granular_filters(req.user))
    base = t.store[tname].values() if tname != "user" else [R.user_public(u) for u in t.store["user"].values()]
    needle = text.lower()
    hits = []
    for r in base:
        v = r.get(cat)
        if not isinstance(v, str):
            continue
        lv = v.lower()
        pos = lv.find(needle)
        if pos < 0:
            continue
        if preds and not all(f(r) for f in preds):
            continue
        hits.append((0 if pos == 0 else 1, lv, r["id"], v))
    hits.sort()
    data = [[h[3], h[2]] for h in hits[:AUTOCOMPLETE_MAX]]
    elapsed = int(round((time.perf_counter() - started) * 1000))
    return Response(200, {"data": {"headers": ["text", "id"], "data": data, "total": len(data), "elapsed": elapsed}})
