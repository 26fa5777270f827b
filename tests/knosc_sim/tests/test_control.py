"""The control port: bearer auth, health, mutate, planner, stats, snapshot, offline/online."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
import uuid

import pytest
import requests

from conftest import login, start_sim

RESOURCES = ["purchase-order", "sales-order", "manufacturing-order", "forecast", "inventory", "item-master",
             "sub-item-master", "customer-master", "ship-to-master", "supplier-master", "ship-from-master",
             "warehouse-master", "unit-master", "external-item-master", "bill-of-materials", "asn",
             "supplier-allocation", "issue-tracker-tickets", "scenario-analysis", "user", "role"]

ROUTES = [("GET", "/_sim/health"), ("POST", "/_sim/mutate"), ("POST", "/_sim/planner"), ("GET", "/_sim/faults"),
          ("POST", "/_sim/faults"), ("DELETE", "/_sim/faults"), ("POST", "/_sim/expire-tokens"),
          ("POST", "/_sim/offline"), ("POST", "/_sim/online"), ("GET", "/_sim/link"), ("POST", "/_sim/link"),
          ("GET", "/_sim/stats"), ("POST", "/_sim/stats/reset"),
          ("GET", "/_sim/snapshot"), ("GET", "/_sim/reset-token"), ("POST", "/_sim/job-tick")]


def new_item() -> dict:
    return {"Item Number": "CTL-" + uuid.uuid4().hex[:10].upper(), "Item Description": "control test item"}


def checksum(records) -> str:
    text = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("method,path", ROUTES)
def test_control_needs_the_bearer_token(sim, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": sim.token},
                    {"Authorization": "Basic " + sim.token}, {"Authorization": "bearer " + sim.token + "x"}):
        r = requests.request(method, sim.control + path, headers=headers, timeout=10)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["Code"] == "Control.Unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert sim.control_get("/_sim/health").json()["online"] is True   # nothing happened


def test_control_routes_are_not_on_the_knosc_port(sim, svc):
    r = requests.get(sim.root + "/_sim/stats", headers={"Authorization": "Bearer " + sim.token})
    assert r.status_code == 404
    assert svc.get("/_sim/health").status_code == 404


def test_health_and_unknown_routes(sim):
    health = sim.control_get("/_sim/health").json()
    assert health["status"] == "ok" and health["online"] is True and health["port"] == sim.port
    assert health["link"] == "normal"
    assert sim.control_get("/_sim/nothing").status_code == 404
    assert sim.control_get("/_sim/mutate").status_code == 405
    assert sim.control_post("/_sim/job-tick").status_code == 200


def test_mutate_item_master(sim, svc):
    before = sim.control_get("/_sim/snapshot", params={"resource": "item-master"}).json()
    r = sim.control_post("/_sim/mutate", json={"resource": "item-master", "create": 3, "update": 2, "delete": 1})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["created"]) == 3 and len(out["updated"]) == 2 and len(out["deleted"]) == 1
    for item_id in out["created"] + out["updated"]:
        assert svc.get("/api/item-master/%s" % item_id).status_code == 200
    r = svc.get("/api/item-master/%s" % out["deleted"][0])
    assert r.status_code == 400 and r.json()["Code"] == "ItemMaster.NotFound"
    after = sim.control_get("/_sim/snapshot", params={"resource": "item-master"}).json()
    assert after["resources"]["item-master"]["count"] == before["resources"]["item-master"]["count"] + 2
    assert after["resources"]["item-master"]["checksum"] != before["resources"]["item-master"]["checksum"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_mutate_every_resource(sim, resource):
    r = sim.control_post("/_sim/mutate", json={"resource": resource, "create": 1, "update": 1, "delete": 1})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) >= {"created", "updated", "deleted"}
    assert len(out["created"]) == 1
    assert all(isinstance(v, list) for v in (out["created"], out["updated"], out["deleted"]))


@pytest.mark.parametrize("body", [
    {"resource": "no-such-resource", "create": 1}, {"create": 1}, {"resource": "item-master", "create": -1},
    {"resource": "item-master", "update": "2"}, [],
])
def test_mutate_rejects_bad_bodies(sim, body):
    r = sim.control_post("/_sim/mutate", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["Code"] == "Control.BadRequest"


def test_planner(sim, svc):
    r = sim.control_post("/_sim/planner")
    assert r.status_code == 200, r.text
    out = r.json()
    for key in ("created", "updated", "deleted"):
        assert isinstance(out[key], list)
    for po_id in out["created"]:
        r = svc.get("/api/purchase-order/%s" % po_id)
        assert r.status_code == 200
        assert r.json()["data"]["rows"]["PO List Document Status"] == "Suggested"


def test_stats_count_requests_and_creates(sim, svc):
    assert sim.control_post("/_sim/stats/reset").status_code == 200
    stats = sim.control_get("/_sim/stats").json()
    assert stats == {"requests": {}, "created": {}}
    first = svc.get("/api/item-master", params={"page_size": 2}).json()["data"]["rows"][0]["id"]
    svc.get("/api/item-master/%s" % first)
    svc.get("/api/item-master/%s" % first)
    r = svc.post("/api/item-master", json=new_item())
    assert r.status_code == 200, r.text
    svc.get("/api/issue-tracker-tickets/TKT-001")
    requests.get(sim.base + "/profile")                       # refused requests count too
    sim.control_post("/_sim/mutate", json={"resource": "item-master", "create": 2})   # not an API create
    stats = sim.control_get("/_sim/stats").json()
    assert stats["requests"] == {"GET /api/item-master": 1, "GET /api/item-master/{id}": 2,
                                 "POST /api/item-master": 1, "GET /api/issue-tracker-tickets/{id}": 1,
                                 "GET /api/profile": 1}
    assert stats["created"] == {"item-master": 1}
    sim.control_post("/_sim/stats/reset")
    assert sim.control_get("/_sim/stats").json() == {"requests": {}, "created": {}}


def test_snapshot(sim):
    snap = sim.control_get("/_sim/snapshot").json()
    assert set(snap["resources"]) >= set(RESOURCES)
    for name in RESOURCES:
        entry = snap["resources"][name]
        assert isinstance(entry["count"], int) and entry["count"] >= 0
        assert len(entry["checksum"]) == 64 and int(entry["checksum"], 16) >= 0
        assert "records" not in entry
    one = sim.control_get("/_sim/snapshot", params={"resource": "item-master", "records": "1"}).json()
    assert list(one["resources"]) == ["item-master"]
    entry = one["resources"]["item-master"]
    assert len(entry["records"]) == entry["count"] == snap["resources"]["item-master"]["count"]
    assert entry["checksum"] == snap["resources"]["item-master"]["checksum"] == checksum(entry["records"])
    assert [r["id"] for r in entry["records"]] == sorted(r["id"] for r in entry["records"])
    users = sim.control_get("/_sim/snapshot", params={"resource": "user", "records": "1"}).json()
    for record in users["resources"]["user"]["records"]:
        assert not any(k.startswith("_") for k in record)
    assert sim.control_get("/_sim/snapshot", params={"resource": "nothing"}).status_code == 400


def test_offline_and_online(sim, svc):
    cookie = "access_token_cookie=" + svc.cookies.get("access_token_cookie", path="/")
    kept = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    kept.request("GET", "/api/profile", headers={"Cookie": cookie})
    assert kept.getresponse().read()
    r = sim.control_post("/_sim/offline")
    assert r.status_code == 200 and r.json() == {"online": False}
    assert sim.control_post("/_sim/offline").status_code == 200           # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=5).close()
    with pytest.raises(requests.ConnectionError):
        svc.get("/api/profile", timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):             # the kept-alive connection was dropped
        kept.request("GET", "/api/profile", headers={"Cookie": cookie})
        kept.getresponse().read()
    kept.close()
    health = sim.control_get("/_sim/health").json()                        # control keeps working
    assert health["online"] is False
    r = sim.control_post("/_sim/online")
    assert r.status_code == 200 and r.json() == {"online": True, "port": sim.port}
    assert sim.control_post("/_sim/online").status_code == 200
    assert svc.get("/api/profile").status_code == 200                     # same port, same sessions
    assert sim.control_get("/_sim/health").json()["online"] is True


def test_offline_drops_hanging_requests(sim, svc):
    assert sim.control_post("/_sim/faults", json={
        "seed": 1, "rules": [{"route": "^/api/profile$", "kind": "hang", "seconds": 30}]}).status_code == 200
    outcome = []

    def call():
        started = time.monotonic()
        try:
            svc.get("/api/profile", timeout=20)
            outcome.append(("response", time.monotonic() - started))
        except requests.RequestException as exc:
            outcome.append((type(exc).__name__, time.monotonic() - started))

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while sim.control_get("/_sim/faults").json()["rules"][0]["fired"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        sim.control_post("/_sim/offline")
        t.join(10)
        assert outcome and outcome[0][0] != "response" and outcome[0][1] < 10
    finally:
        sim.control_delete("/_sim/faults")
        sim.control_post("/_sim/online")
    assert svc.get("/api/profile").status_code == 200


def test_omit_create_id():
    proc = start_sim("--omit-create-id")
    try:
        s = login(proc)
        r = s.post("/api/item-master", json=new_item())
        assert r.status_code == 200, r.text
        assert r.json() == {"message": "Created successfully."}
    finally:
        proc.stop()


def test_create_returns_id_by_default(sim, svc):
    r = svc.post("/api/item-master", json=new_item())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Created successfully." and isinstance(body["id"], int)
