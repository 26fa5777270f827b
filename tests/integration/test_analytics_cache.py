"""Dashboards and other analytics Knosc computes, through the loopback's read-through cache: upstream's answers
while Knosc can be reached, the stored copy with its age while it cannot, 503 Sync.Offline for a view never
fetched, and the caller's own privileges throughout."""

from __future__ import annotations

import json

import pytest
import requests

from harness import Daemon, Sim, wait_until
from harness import logged_in as login


@pytest.fixture(scope="module")
def env():
    sim = Sim(scale=1)
    d = Daemon(sim, sync={"interval_seconds": 2}).start()
    wait_until(d.synced, 120, "the first sync")
    base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
    yield sim, d, base
    d.stop()
    sim.stop()


DASHBOARDS = ["/dashboard-total", "/dashboard-statistics", "/dashboard-world-map",
              "/dashboard-spend-by-supplier", "/dashboard-inventory-planning?page_size=5",
              "/dashboard-analytics-sales-orders", "/templates"]


def test_online_answers_are_knoscs_and_follow_the_callers_privileges(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    upstream_admin = login(sim.base, "admin@acme.example", "admin-password")
    for route in DASHBOARDS:
        r = admin.get(base + route)
        assert r.status_code == 200, (route, r.text)
        assert r.json() == upstream_admin.get(sim.base + route).json(), route
        assert r.headers["X-Knosc-Syncd-Data-Age"] == "0" and r.headers["X-Knosc-Syncd-Upstream"] == "online"
    # An entity the dashboard does not know: Knosc's own answer, passed through.
    r = admin.get(base + "/dashboard-spend-by-supplier/999999")
    direct = upstream_admin.get(sim.base + "/dashboard-spend-by-supplier/999999")
    assert (r.status_code, r.json()) == (direct.status_code, direct.json()) and r.status_code == 400

    # The navigation bar is the caller's, not the service account's.
    for user, password in (("viewer@acme.example", "viewer-password"), ("john.smith@acme.example", "john-password"),
                           ("wh1@acme.example", "wh1-password")):
        mine = login(base, user, password).get(base + "/navigation-bar")
        assert mine.status_code == 200
        assert mine.json() == login(sim.base, user, password).get(sim.base + "/navigation-bar").json(), user

    # Privileges as Knosc checks them.
    demand = login(base, "john.smith@acme.example", "john-password")
    r = demand.get(base + "/dashboard-spend-by-supplier")
    assert r.status_code == 403 and r.json() == {"Message": "Not Privileged for this action",
                                                 "Code": "User.NotPrivileged"}
    assert demand.get(base + "/dashboard-analytics-sales-orders").status_code == 200
    # A role with granular filters would see the service account's (wider) aggregate: refused, not leaked.
    r = login(base, "wh1@acme.example", "wh1-password").get(base + "/dashboard-total")
    assert r.status_code == 501 and r.json()["Code"] == "Sync.ViewUnavailable"
    # Paths Knosc does not serve.
    assert admin.get(base + "/dashboard-total/1").status_code == 404
    assert admin.get(base + "/dashboard-nothing").status_code == 404
    assert requests.get(base + "/dashboard-total", timeout=10).status_code == 401

    with d.db() as con:
        keys = {k for (k,) in con.execute("SELECT cache_key FROM cached_response")}
    assert "/api/dashboard-total|granular:none" in keys
    assert "/api/dashboard-inventory-planning?page_size=5|granular:none" in keys
    assert not any("999999" in k for k in keys)  # refusals are not stored


def test_offline_the_stored_copy_answers_with_its_age(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    viewer = login(base, "viewer@acme.example", "viewer-password")
    online = {route: admin.get(base + route).json() for route in DASHBOARDS}
    viewer_bar = viewer.get(base + "/navigation-bar").json()
    sim.post("/_sim/offline")
    try:
        # Served from the copy even before the daemon has noticed the outage (the fetch fails, the copy answers).
        for route in DASHBOARDS:
            r = admin.get(base + route)
            assert r.status_code == 200 and r.json() == online[route], route
            assert int(r.headers["X-Knosc-Syncd-Data-Age"]) >= 0
        wait_until(lambda: d.status()["online"] is False, 30, "the daemon to notice the outage")
        r = admin.get(base + "/dashboard-total")
        assert r.json() == online["/dashboard-total"] and r.headers["X-Knosc-Syncd-Upstream"] == "offline"
        aged = wait_until(lambda: (lambda h: h if int(h) >= 1 else None)(
            admin.get(base + "/dashboard-total").headers["X-Knosc-Syncd-Data-Age"]), 10, "the copy to age")
        assert int(aged) >= 1
        assert viewer.get(base + "/navigation-bar").json() == viewer_bar
        r = admin.get(base + "/templates")
        assert r.status_code == 200 and r.json() == online["/templates"]
        # Never fetched (with this query): nothing to answer with.
        r = admin.get(base + "/dashboard-world-map", params={"sort": json.dumps({"key": "City", "type": "Ascending"})})
        assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline"
        r = admin.get(base + "/dashboard-revenue-by-customer")
        assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline"
        # The caller's privileges still apply to stored copies.
        demand = login(base, "john.smith@acme.example", "john-password")
        assert demand.get(base + "/dashboard-total").status_code == 200
        assert demand.get(base + "/dashboard-spend-by-supplier").status_code == 403
    finally:
        sim.post("/_sim/online")
    wait_until(lambda: d.status()["online"] is True, 30, "the link to come back")
    r = admin.get(base + "/dashboard-revenue-by-customer")
    assert r.status_code == 200 and r.headers["X-Knosc-Syncd-Data-Age"] == "0"
