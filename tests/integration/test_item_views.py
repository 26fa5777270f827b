"""Knosc's read-only helpers and analytics on the loopback (daemon/item_views.cpp) answer exactly as Knosc does.

One knosc-sim is the reference: for many item, warehouse, mapping and ticket ids, every query-parameter shape
(good and bad) and several roles (full access, read-only, granular to one or two warehouses, roles without
some modules), the loopback's answer must equal knosc-sim's: the status code and the parsed JSON body, only
auto-complete's `elapsed` (a timing) set aside. With the upstream offline the loopback must still give the
same answers.

knosc-sim counts delays from a fixed day (sim/common.py SIM_TODAY); the daemon is pinned to the same day with
KNOSC_SYNCD_TODAY.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Optional

import pytest
import requests

from harness import Daemon, Sim, wait_until

SIM_TODAY = "2025-03-03"
# A larger tenant finds rarer cases (ties, empty cells, many suppliers); the default keeps the suite quick.
SCALE = float(os.environ.get("KNOSC_ITEM_VIEWS_SCALE", "1"))
INACTIVE_WAREHOUSE_ID = 10  # WH-10, knosc-sim's inactive warehouse

USERS = {
    "sync": ("sync@acme.example", "sync-password"),  # Edit on every module
    "viewer": ("viewer@acme.example", "viewer-password"),  # View on every module
    "wh1": ("wh1@acme.example", "wh1-password"),  # granular: Warehouse Number include WH-01
    "jane": ("jane.doe@acme.example", "jane-password"),  # some modules; granular WH-01, WH-02
    "john": ("john.smith@acme.example", "john-password"),  # Demand, Forecast, Inventory; no Procurement
}


class Client(requests.Session):
    """A tool's session: cookies kept, X-XSRF-TOKEN from csrf_access_token on writes."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def request(self, method, url, **kw):
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE") and "csrf_access_token" in self.cookies:
            kw.setdefault("headers", {})
            kw["headers"].setdefault("X-XSRF-TOKEN", self.cookies.get("csrf_access_token"))
        return super().request(method, url, timeout=kw.pop("timeout", 60), **kw)


def login(base: str, user: str) -> Client:
    username, password = USERS[user]
    c = Client(base)
    r = c.post(base + "/authenticate", json={"username": username, "password": password})
    assert r.status_code == 200 and r.json() == {"login": True}, (user, r.status_code, r.text)
    return c


def answer(client: Client, path: str, params: Optional[dict] = None) -> tuple[int, Any]:
    r = client.get(client.base + path, params=params)
    try:
        body = r.json()
    except ValueError:
        body = "<not JSON> " + r.text[:200]
    if path.startswith("/auto-complete") and isinstance(body, dict) and isinstance(body.get("data"), dict):
        body["data"].pop("elapsed", None)
    return r.status_code, body


class Env:
    def __init__(self, sim: Sim, daemon: Daemon, base: str):
        self.sim, self.daemon, self.base = sim, daemon, base
        self.upstream = {u: login(sim.base, u) for u in USERS}
        self.loopback = {u: login(base, u) for u in USERS}

    def compare(self, requests_: list, users: tuple = tuple(USERS)) -> dict:
        """Asks both sides every (path, params) as every user; returns the reference answers and fails on the
        first differences."""
        reference, diffs = {}, []
        for user in users:
            for path, params in requests_:
                want = answer(self.upstream[user], path, params)
                got = answer(self.loopback[user], path, params)
                reference[(user, path, json.dumps(params, sort_keys=True))] = want
                if got != want:
                    diffs.append((user, path, params, want, got))
        assert not diffs, "%d of %d answers differ; first ones:\n%s" % (
            len(diffs), len(requests_) * len(users), "\n".join(describe(d) for d in diffs[:5]))
        return reference


def first_difference(want: Any, got: Any, where: str = "") -> str:
    """The JSON path of the first place two answers differ, with both values there."""
    if isinstance(want, dict) and isinstance(got, dict):
        for k in list(want) + [k for k in got if k not in want]:
            if k not in got or k not in want:
                return f"{where}.{k}: knosc-sim {json.dumps(want.get(k))[:300]} / loopback {json.dumps(got.get(k))[:300]}"
            if want[k] != got[k]:
                return first_difference(want[k], got[k], f"{where}.{k}")
    if isinstance(want, list) and isinstance(got, list):
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                return first_difference(a, b, f"{where}[{i}]")
        if len(want) != len(got):
            return f"{where}: knosc-sim has {len(want)} items, loopback {len(got)}"
    return f"{where}: knosc-sim {json.dumps(want)[:300]} / loopback {json.dumps(got)[:300]}"


def describe(diff) -> str:
    user, path, params, want, got = diff
    return f"  {user} GET {path} {params}\n    {first_difference(list(want), list(got))}"


@pytest.fixture(scope="module")
def env():
    sim = Sim(scale=SCALE)
    previous = os.environ.get("KNOSC_SYNCD_TODAY")
    os.environ["KNOSC_SYNCD_TODAY"] = SIM_TODAY
    try:
        daemon = Daemon(sim, sync={"interval_seconds": 5}).start()
    finally:
        if previous is None:
            os.environ.pop("KNOSC_SYNCD_TODAY", None)
        else:
            os.environ["KNOSC_SYNCD_TODAY"] = previous
    try:
        wait_until(daemon.synced, 180 + 10 * SCALE, "the first sync")
        base = wait_until(lambda: daemon.status().get("loopback_base"), 30, "the loopback address")
        yield Env(sim, daemon, base)
    finally:
        daemon.stop()
        sim.stop()


# ------------------------------------------------------------------------------------------------------------
# Which ids to ask about: chosen from the mirrored tenant so that every kind of case is covered
# ------------------------------------------------------------------------------------------------------------
def item_ids(daemon: Daemon) -> list:
    """Items with lines of every kind, with stock in the inactive warehouse, with nothing at all, and a sample."""
    rng = random.Random(11)
    chosen: list = []

    def take(ids, n):
        ids = sorted(set(ids) - set(chosen))
        chosen.extend(rng.sample(ids, min(n, len(ids))))

    po, so = daemon.rows("purchase-order-details"), daemon.rows("sales-order-details")
    inv, items = daemon.rows("inventory"), daemon.rows("item-master")
    mo_lines = [ln for mo in daemon.rows("manufacturing-order").values() for ln in mo.get("details") or []]
    fc_lines = [ln for fc in daemon.rows("forecast").values() for ln in fc.get("details") or []]
    take([r["Item Id"] for r in po.values()], 6)
    take([r["Item Id"] for r in so.values() if r.get("SO Details Document Status") in ("Open", "Partially Shipped")], 6)
    take([r["Item Id"] for r in mo_lines], 4)
    take([r["Item Id"] for r in fc_lines], 4)
    take([r["Item Id"] for r in inv.values() if r.get("Warehouse Number") == "WH-10"], 3)
    take([r["Item Id"] for r in inv.values() if r.get("Warehouse Number") == "WH-01"], 3)
    used = {r["Item Id"] for r in list(po.values()) + list(so.values()) + list(inv.values())}
    take([i for i in items if i not in used], 2)
    take(list(items), 4)
    return chosen


def warehouses_of(daemon: Daemon, item_id: int) -> list:
    """A warehouse where the item has sales lines or stock (if any), plus the inactive one."""
    out = []
    for resource in ("sales-order-details", "inventory", "purchase-order-details"):
        for r in daemon.rows(resource).values():
            if r.get("Item Id") == item_id and r.get("Warehouse Id") not in out:
                out.append(r["Warehouse Id"])
                break
    if INACTIVE_WAREHOUSE_ID not in out:
        out.append(INACTIVE_WAREHOUSE_ID)
    return out[:3]


ITEM_ROUTES = ["purchase-order-item", "sales-order-item", "manufacturing-order-item", "forecast-item",
               "inventory-item", "sales-prioritized-item-inventory"]
ORDER_ITEM_ROUTES = ITEM_ROUTES[:4]


def j(v) -> str:
    return json.dumps(v)


# List parameters of the per-item order views: paging, sorting, filters, the older search form, the virtual
# Warehouse Status column, and malformed values of each.
LIST_PARAMS = [
    {"page": "2", "page_size": "2"},
    {"page_size": "5000"},
    {"page": "9999"},
    {"sort": j({"key": "Warehouse Number", "type": "Ascending"})},
    {"sort": j({"key": "id", "type": "Descending"})},
    {"sort": j({"key": "Supplier Name"})},
    {"filter": j({"Warehouse Status": "Inactive"})},
    {"filter": j({"Warehouse Status": ["Active", "Inactive"]}), "sort": j({"key": "Warehouse Status"})},
    {"filter": j({"PO Details Document Status": ["Open", "Shipped"], "SO Details Document Status": ["Open"]})},
    {"filter": j({"PO Details ETA Date": {"from": "2025-01-01", "to": "2025-03"}})},
    {"filter": j({"SO Details Ship Date": {"from": "2025-02-01"}, "MO Details End Date": {"to": "2025-04-01"}})},
    {"filter": j({"PO Details Quantity": {"from": 100, "to": 500}, "Forecast Details Quantity": {"from": 50}})},
    {"filter": j({"Warehouse Id": "1"})},
    {"filter": j({"Nothing": "x"})},
    {"search": j({"filters": {"include": {"Warehouse Number": ["WH-01", "WH-02"]}, "exclude": {"Item Number": []}}})},
    {"search": j({"filters": {"exclude": {"Warehouse Number": ["WH-01"]}}})},
    {"filter": "null", "sort": "", "page": ""},
    # malformed
    {"filter": "{not json"},
    {"filter": j([1, 2])},
    {"filter": j({"a": {"from": [1]}})},
    {"filter": j({"a": {"since": 1}})},
    {"filter": j({"a": [{"b": 1}]})},
    {"search": j({"filters": {"include": {"a": "b"}}})},
    {"search": j({"filters": {"other": {}}})},
    {"search": j({"include": {}})},
    {"sort": j({"key": ""})},
    {"sort": j({"key": "x", "type": "Upwards"})},
    {"sort": j({"key": "x", "type": None})},
    {"sort": j(["x"])},
    {"page": "0"},
    {"page": "abc"},
    {"page_size": "-5"},
    {"page": " 1_0 "},
]

BAD_ITEM_IDS = ["0", "99999", "abc", "007", "-3"]
BAD_WAREHOUSE_IDS = ["999", "x", "0"]


def statuses(reference: dict) -> set:
    return {status for status, _ in reference.values()}


def rows_seen(reference: dict) -> int:
    """Rows in the reference answers: the comparisons must not be of empty lists only."""
    n = 0
    for status, body in reference.values():
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict):
            rows = data.get("rows") or (data.get("orders") or {}).get("rows") or data.get("data") or []
            n += len(rows) if isinstance(rows, list) else 0
    return n


def item_requests(daemon: Daemon, items: list, with_params: int) -> list:
    reqs = []
    for n, item in enumerate(items):
        for route in ITEM_ROUTES:
            reqs.append((f"/{route}/{item}", None))
            for wh in warehouses_of(daemon, item):
                reqs.append((f"/{route}/{item}/{wh}", None))
        if n < with_params:
            for route in ORDER_ITEM_ROUTES:
                for params in LIST_PARAMS:
                    reqs.append((f"/{route}/{item}", params))
    for route in ITEM_ROUTES:
        for bad in BAD_ITEM_IDS:
            reqs.append((f"/{route}/{bad}", None))
            reqs.append((f"/{route}/{bad}/999", None))
        for bad in BAD_WAREHOUSE_IDS:
            reqs.append((f"/{route}/{items[0]}/{bad}", None))
        reqs.append((f"/{route}", None))
        reqs.append((f"/{route}/{items[0]}/1/2", None))
        # the item is looked up before the list parameters are read
        reqs.append((f"/{route}/abc", {"page": "0"}))
    return reqs


def test_per_item_views_equal_knosc(env):
    items = item_ids(env.daemon)
    assert len(items) >= 20
    full = env.compare(item_requests(env.daemon, items, with_params=6), users=("sync",))
    assert statuses(full) == {200, 400, 404} and rows_seen(full) > 500
    # Other roles: read-only, granular to one warehouse or two, and roles without some of these modules.
    others = env.compare(item_requests(env.daemon, items[:12], with_params=2),
                         users=("viewer", "wh1", "jane", "john"))
    assert statuses(others) == {200, 400, 403, 404}
    # The granular roles see less than the read-only one.
    narrowed = [key for key, want in others.items() if key[0] == "wh1"
                and want != others[("viewer",) + key[1:]]]
    assert len(narrowed) > 20


def test_external_item_details_equal_knosc(env):
    ids = sorted(env.daemon.rows("external-item-master"))
    reqs = [(f"/external-item-master-details/{i}", None) for i in ids]
    reqs += [(f"/external-item-master-details/{bad}", None) for bad in ("0", "99999", "abc", "01")]
    reqs += [("/external-item-master-details", None), (f"/external-item-master-details/{ids[0]}/x", None)]
    env.compare(reqs, users=("sync",))
    env.compare(reqs[:10] + reqs[-6:], users=("wh1", "jane", "john"))


def test_supplier_net_allocation_equal_knosc(env):
    reqs = []
    for route in ("/supplier-net-allocation", "/supplier-net-allocation-table"):
        reqs += [
            (route, None),
            (route, {"page_size": "7"}),
            (route, {"page": "3"}),
            (route, {"sort": j({"key": "Variance", "type": "Descending"})}),
            (route, {"sort": j({"key": "Open PO Quantity", "type": "Ascending"}), "page_size": "20"}),
            (route, {"sort": j({"key": "Total Allocation", "type": "Descending"})}),
            (route, {"filter": j({"Supplier Number": ["SUP-0001", "SUP-0002"]})}),
            (route, {"filter": j({"Allocation Percentage": {"from": 50}})}),
            (route, {"filter": j({"Total Allocation": {"from": 101}})}),
            (route, {"search": j({"filters": {"exclude": {"Allocation Percentage": [100]}}})}),
            (route, {"filter": j({"Net Allocated Quantity": "0.0"})}),
            (route, {"filter": "[1"}),
            (route, {"sort": j({"key": 5})}),
            (route, {"page_size": "0"}),
            (route + "/x", None),
        ]
    if SCALE > 10:
        # Unpaged, a large tenant's cross-tab has millions of cells: too slow for knosc-sim to answer here.
        reqs = [(path, params) for path, params in reqs
                if not (path.endswith("-table") and not {"page", "page_size"} & set(params or {}))]
    env.compare(reqs, users=("sync", "viewer", "wh1", "jane", "john"))


def test_ticket_notes_and_subscribers_equal_knosc(env):
    ids = sorted(env.daemon.rows("issue-tracker-tickets"))
    reqs = []
    for t in ids + ["TKT-999", "nope"]:
        reqs += [(f"/issue-tracker-tickets/{t}/notes", None), (f"/issue-tracker-tickets/{t}/subscribers", None)]
    env.compare(reqs, users=("sync", "wh1", "jane"))


AUTOCOMPLETE = [
    ("Item Number", "ITEM-0001"), ("Item Number", "item-00012"), ("Item Number", "9"), ("Item Description", "sensor"),
    ("Item Description", ""), ("Item Description", "TYPE A"), ("Supplier Number", "sup"), ("Supplier Name", "a"),
    ("Customer Number", "CUST-00"), ("Customer Name", "co"), ("Warehouse Number", "WH"), ("Warehouse Name", "d"),
    ("Ship From Number", "SF"), ("Ship To Number", "st-"), ("User Email", "acme"), ("User Email", "SYNC"),
    ("PO List Number", "PO-00001"), ("PO List Number", "0"), ("SO List Number", "SO"), ("MO List Number", "MO-"),
    ("Item Number", "no such thing"),
]


def test_auto_complete_equal_knosc(env):
    reqs = [("/auto-complete", {"category": c, "text": t}) for c, t in AUTOCOMPLETE]
    reqs += [
        ("/auto-complete", {"category": "PO List Number", "text": "PO", "subset_filters": j({"Warehouse Status": "Inactive"})}),
        ("/auto-complete", {"category": "Warehouse Number", "text": "", "subset_filters": j({"Warehouse Status": ["Active", "Inactive"]})}),
        ("/auto-complete", {"category": "Item Description", "text": "e", "subset_filters": j({"Item Type": "Component"})}),
        ("/auto-complete", {"category": "SO List Number", "text": "1", "subset_filters": j({"Customer Number": {"from": "CUST-0005"}})}),
        ("/auto-complete", {"category": "Item Number", "text": "1", "subset_filters": ""}),
        # malformed
        ("/auto-complete", {"text": "x"}),
        ("/auto-complete", {"category": "", "text": "x"}),
        ("/auto-complete", {"category": "Item Number"}),
        ("/auto-complete", {"category": "Colour", "text": "x"}),
        ("/auto-complete", {"category": "Item Number", "text": "x", "subset_filters": "{bad"}),
        ("/auto-complete", {"category": "Item Number", "text": "x", "subset_filters": "null"}),
        ("/auto-complete", {"category": "Item Number", "text": "x", "subset_filters": j({"a": {"from": {}}})}),
        ("/auto-complete/x", {"category": "Item Number", "text": "x"}),
    ]
    env.compare(reqs, users=("sync", "viewer", "wh1", "jane", "john"))


def test_delayed_shipments_and_forecast_over_time_equal_knosc(env):
    reqs = [
        ("/delayed-shipments/histogram", {"bucket": "week"}),
        ("/delayed-shipments/histogram", {"bucket": "month"}),
        ("/delayed-shipments/histogram", {"bucket": "day"}),
        ("/delayed-shipments/histogram", {"bucket": ""}),
        ("/delayed-shipments/histogram", None),
        ("/delayed-shipments/other", {"bucket": "week"}),
        ("/delayed-shipments", {"bucket": "week"}),
        ("/forecast-over-time", None),
        ("/forecast-over-time", {"page_size": "1000"}),
        ("/forecast-over-time", {"page": "2", "page_size": "13"}),
        ("/forecast-over-time", {"sort": j({"key": "Variance", "type": "Descending"}), "page_size": "100"}),
        ("/forecast-over-time", {"sort": j({"key": "id", "type": "Descending"})}),
        ("/forecast-over-time", {"filter": j({"Warehouse Number": ["WH-01", "WH-03"]}), "page_size": "1000"}),
        ("/forecast-over-time", {"filter": j({"Actual Quantity": {"from": 1}}), "page_size": "1000"}),
        ("/forecast-over-time", {"filter": j({"Warehouse Status": "Inactive"}), "page_size": "1000"}),
        ("/forecast-over-time", {"filter": "{"}),
        ("/forecast-over-time/x", None),
    ]
    env.compare(reqs, users=("sync", "viewer", "wh1", "jane", "john"))


def test_validate_privileges_equal_knosc(env):
    paths = ["/procurement", "/demand", "/manufacturing", "/forecast", "/forecast-over-time", "/inventory",
             "/inventory-planning", "/item-master", "/supplier-master", "/customer-master", "/warehouse-master",
             "/unit-master", "/external-item-master", "/bill-of-materials", "/asn", "/supplier-allocation", "/users",
             "/scenario-analysis", "/issue-tracker", "/settings", "/custom-columns", "/dashboard", "/procurement/",
             "/", "/nowhere", "procurement", ""]
    reqs = [("/validate-privileges", {"path": p}) for p in paths]
    reqs += [("/validate-privileges", None), ("/validate-privileges/x", {"path": "/demand"})]
    env.compare(reqs, users=("sync", "viewer", "jane", "john"))


def test_answers_stay_the_same_offline(env):
    items = item_ids(env.daemon)[:8]
    reqs = item_requests(env.daemon, items, with_params=1)
    reqs += [("/supplier-net-allocation", None), ("/supplier-net-allocation-table", None),
             ("/delayed-shipments/histogram", {"bucket": "week"}), ("/forecast-over-time", {"page_size": "1000"}),
             ("/auto-complete", {"category": "Item Description", "text": "a"}),
             ("/validate-privileges", {"path": "/procurement"})]
    tickets = sorted(env.daemon.rows("issue-tracker-tickets"))[:3]
    reqs += [(f"/issue-tracker-tickets/{t}/notes", None) for t in tickets]
    reqs += [(f"/external-item-master-details/{i}", None) for i in sorted(env.daemon.rows("external-item-master"))[:3]]
    users = ("sync", "wh1", "jane")
    reference = env.compare(reqs, users=users)
    env.sim.post("/_sim/offline")
    try:
        wait_until(lambda: env.daemon.status()["online"] is False, 30, "the daemon to notice the outage")
        with pytest.raises(requests.ConnectionError):
            requests.get(env.sim.base + "/auto-complete", timeout=5)
        diffs = []
        for user in users:
            for path, params in reqs:
                got = answer(env.loopback[user], path, params)
                want = reference[(user, path, json.dumps(params, sort_keys=True))]
                if got != want:
                    diffs.append((user, path, params, want, got))
        assert not diffs, "offline answers differ:\n" + "\n".join(describe(d) for d in diffs[:5])
    finally:
        env.sim.post("/_sim/online")
        wait_until(lambda: env.daemon.status()["online"] is True, 30, "the link to come back")
