"""Rows that Knosc's lists hide are never mistaken for deletions (docs/SYNC_PROTOCOL.md, "Rows other lists hide")."""

from __future__ import annotations

import requests

from harness import Daemon, Sim, wait_until
from mirror_check import differences

SYNC_TIMEOUT = 120


def admin_session(sim: Sim) -> requests.Session:
    s = requests.Session()
    r = s.post(sim.base + "/authenticate", json={"username": "admin@acme.example", "password": "admin-password"}, timeout=10)
    r.raise_for_status()
    s.headers["X-XSRF-TOKEN"] = s.cookies.get("csrf_access_token")
    return s


def test_a_warehouse_turning_inactive_keeps_its_rows_in_the_replica():
    sim = Sim(scale=1)
    d = Daemon(sim, sync={"interval_seconds": 1}).start()
    try:
        wait_until(d.synced, SYNC_TIMEOUT, "the first sync")
        orders = d.rows("purchase-order")
        counts: dict[str, int] = {}
        for o in orders.values():
            counts[o.get("Warehouse Number")] = counts.get(o.get("Warehouse Number"), 0) + 1
        warehouses = {w["Warehouse Number"]: (wid, w) for wid, w in d.rows("warehouse-master").items()}
        number = max((n for n in counts if n in warehouses and warehouses[n][1]["Warehouse Status"] == "Active"),
                     key=lambda n: counts[n])
        wid = warehouses[number][0]
        admin = admin_session(sim)
        r = admin.put(f"{sim.base}/warehouse-master/{wid}", json={"Warehouse Status": "Inactive"}, timeout=10)
        assert r.status_code == 200, r.text
        # Knosc's own list no longer shows that warehouse's orders...
        plain = admin.get(sim.base + "/purchase-order", params={"page_size": 1000}, timeout=10).json()["data"]["rows"]
        assert all(row.get("Warehouse Number") != number for row in plain)
        # ...but after the next passes the replica still holds them, equal to the tenant.
        gen = d.status()["resources"]["purchase-order"]["pass_progress"]["pass"]
        wait_until(lambda: d.status()["resources"]["purchase-order"]["pass_progress"]["pass"] > gen + 1, 60, "two more passes")
        wait_until(lambda: differences(sim, d) == [], SYNC_TIMEOUT, "the replica to equal the tenant")
        still = [o for o in d.rows("purchase-order").values() if o.get("Warehouse Number") == number]
        assert len(still) == counts[number] > 0
        assert d.rows("warehouse-master")[wid]["Warehouse Status"] == "Inactive"
    finally:
        d.stop()
        sim.stop()


def test_an_account_with_a_granular_filter_mirrors_its_subset_without_errors():
    sim = Sim(scale=1)
    d = Daemon(sim, username="wh1@acme.example", password="wh1-password", sync={"interval_seconds": 1}).start()
    try:
        wait_until(d.synced, SYNC_TIMEOUT, "the first sync")
        orders = d.rows("purchase-order")
        assert orders and all(o.get("Warehouse Number") == "WH-01" for o in orders.values())
        # A second pass over the same visible subset deletes nothing and reports nothing wrong.
        gen = d.status()["resources"]["purchase-order"]["pass_progress"]["pass"]
        wait_until(lambda: d.status()["resources"]["purchase-order"]["pass_progress"]["pass"] > gen + 1, 60, "two more passes")
        wait_until(d.synced, SYNC_TIMEOUT, "the passes to settle")
        assert set(d.rows("purchase-order")) == set(orders)
        for name, r in d.status()["resources"].items():
            assert r["last_error"] is None, (name, r["last_error"])
        # Records of resources without a warehouse are all there.
        assert len(d.rows("item-master")) == sim.snapshot(resource="item-master")["item-master"]["count"]
    finally:
        d.stop()
        sim.stop()
