"""Every fault kind of the control API, observed from a real client (requests) and from raw sockets."""

from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
import requests

from conftest import login


@pytest.fixture(autouse=True)
def no_faults_after(sim):
    yield
    assert sim.control_delete("/_sim/faults").status_code == 200


def install(sim, *rules, seed=1):
    r = sim.control_post("/_sim/faults", json={"seed": seed, "rules": list(rules)})
    assert r.status_code == 200, r.text
    assert r.json() == {"installed": len(rules)}


def new_item() -> dict:
    return {"Item Number": "FAULT-" + uuid.uuid4().hex[:10].upper(), "Item Description": "fault test item"}


def item_count(sim) -> int:
    return sim.control_get("/_sim/snapshot", params={"resource": "item-master"}).json()["resources"]["item-master"]["count"]


def request_count(sim, key: str) -> int:
    return sim.control_get("/_sim/stats").json()["requests"].get(key, 0)


def raw_request(sim, svc, method: str, path: str, body: bytes = b"") -> bytes:
    cookie = "access_token_cookie=" + svc.cookies.get("access_token_cookie", path="/")
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: %s\r\nX-XSRF-TOKEN: %s\r\nContent-Type: application/json\r\n" \
           "Content-Length: %d\r\n\r\n" % (method, path, cookie, svc.csrf(), len(body))
    return head.encode() + body


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# ---------------------------------------------------------------------------------------------------------

def test_latency(sim, svc):
    install(sim, {"route": "^/api/profile$", "method": "GET", "kind": "latency", "ms": 400})
    started = time.monotonic()
    r = svc.get("/api/profile")
    assert r.status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert svc.get("/api/item-master", params={"page_size": 1}).status_code == 200
    assert time.monotonic() - started < 0.4


@pytest.mark.parametrize("status,code", [(500, "Server.InternalError"), (502, "Server.BadGateway"),
                                         (503, "Server.Unavailable")])
def test_status(sim, svc, status, code):
    install(sim, {"route": "/api/item-master", "method": "POST", "kind": "status", "status": status})
    before = item_count(sim)
    r = svc.post("/api/item-master", json=new_item())
    assert r.status_code == status
    assert r.json()["Code"] == code and r.json()["Message"]
    assert r.headers["Content-Type"] == "application/json" and r.headers["Date"]
    assert item_count(sim) == before            # the request never reached the tenant
    assert svc.get("/api/item-master", params={"page_size": 1}).status_code == 200   # GET unaffected


def test_rate_limit(sim, svc):
    install(sim, {"route": "^/api/item-master$", "kind": "rate_limit", "retry_after": 7})
    r = svc.get("/api/item-master")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert r.json() == {"Message": "Too Many Requests", "Code": "Request.RateLimited"}


def test_reset_before_with_requests(sim, svc):
    install(sim, {"route": "^/api/item-master$", "method": "POST", "kind": "reset_before"})
    before_count = item_count(sim)
    before_reqs = request_count(sim, "POST /api/item-master")
    with pytest.raises(requests.ConnectionError):
        svc.post("/api/item-master", json=new_item())
    assert item_count(sim) == before_count                                      # nothing written
    assert request_count(sim, "POST /api/item-master") == before_reqs + 1       # but counted


def test_reset_before_is_a_real_rst(sim, svc):
    install(sim, {"route": "^/api/profile$", "kind": "reset_before"})
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        s.sendall(raw_request(sim, svc, "GET", "/api/profile"))
        with pytest.raises(ConnectionResetError):
            read_all(s)


def test_reset_after_with_requests(sim, svc):
    install(sim, {"route": "^/api/item-master$", "method": "POST", "kind": "reset_after"})
    item = new_item()
    before = item_count(sim)
    with pytest.raises(requests.ConnectionError):
        svc.post("/api/item-master", json=item)
    assert item_count(sim) == before + 1          # the write happened, only the response was lost
    sim.control_delete("/_sim/faults")
    r = svc.get("/api/item-master", params={"filter": json.dumps({"Item Number": item["Item Number"]})})
    assert [row["Item Number"] for row in r.json()["data"]["rows"]] == [item["Item Number"]]


def test_reset_after_is_a_real_rst(sim, svc):
    install(sim, {"route": "^/api/item-master$", "method": "POST", "kind": "reset_after"})
    before = item_count(sim)
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        s.sendall(raw_request(sim, svc, "POST", "/api/item-master", json.dumps(new_item()).encode()))
        with pytest.raises(ConnectionResetError):
            read_all(s)
    assert item_count(sim) == before + 1


def test_hang_with_requests(sim, svc):
    install(sim, {"route": "^/api/profile$", "kind": "hang", "seconds": 2})
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        svc.get("/api/profile", timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 2.0


def test_hang_then_close_on_raw_socket(sim, svc):
    install(sim, {"route": "^/api/profile$", "kind": "hang", "seconds": 1})
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        started = time.monotonic()
        s.sendall(raw_request(sim, svc, "GET", "/api/profile"))
        data = read_all(s)
        elapsed = time.monotonic() - started
    assert data == b""                     # closed without a single byte of response
    assert 0.9 <= elapsed < 5


def test_truncate_with_requests(sim, svc):
    install(sim, {"route": "^/api/item-master$", "method": "GET", "kind": "truncate"})
    try:
        r = svc.get("/api/item-master", params={"page_size": 50})
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
        return
    assert len(r.content) < int(r.headers["Content-Length"])
    with pytest.raises(ValueError):
        r.json()


def test_truncate_on_raw_socket(sim, svc):
    install(sim, {"route": "^/api/item-master$", "method": "GET", "kind": "truncate"})
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        s.sendall(raw_request(sim, svc, "GET", "/api/item-master?page_size=50"))
        data = read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    assert length > 100
    assert len(body) == length // 2


def test_probability_is_deterministic_per_seed(sim, svc):
    def run(seed):
        install(sim, {"route": "^/api/profile$", "kind": "status", "status": 503, "probability": 0.5}, seed=seed)
        return [svc.get("/api/profile").status_code for _ in range(40)]

    first = run(42)
    assert set(first) == {200, 503}
    assert 8 <= first.count(503) <= 32
    assert run(42) == first
    assert run(43) != first


def test_count_limits_firing_and_faults_are_listed(sim, svc):
    install(sim, {"route": "^/api/profile$", "method": "get", "kind": "status", "status": 500, "count": 2},
            {"route": "^/api/profile$", "kind": "latency", "ms": 1, "probability": 0.0})
    codes = [svc.get("/api/profile").status_code for _ in range(5)]
    assert codes == [500, 500, 200, 200, 200]
    listed = sim.control_get("/_sim/faults").json()
    assert listed["seed"] == 1
    first, second = listed["rules"]
    assert first["kind"] == "status" and first["method"] == "GET" and first["count"] == 2
    assert first["fired"] == 2
    assert second["fired"] == 0 and second["matched"] == 3


def test_method_and_route_filters(sim, svc):
    install(sim, {"route": "^/api/item-master$", "method": "POST", "kind": "status", "status": 503})
    assert svc.get("/api/item-master", params={"page_size": 1}).status_code == 200
    assert svc.get("/api/profile").status_code == 200
    assert svc.post("/api/item-master", json=new_item()).status_code == 503


def test_latency_adds_to_a_later_fault(sim, svc):
    install(sim, {"route": "profile", "kind": "latency", "ms": 300},
            {"route": "profile", "kind": "status", "status": 502})
    started = time.monotonic()
    assert svc.get("/api/profile").status_code == 502
    assert time.monotonic() - started >= 0.3


def test_faults_apply_to_auth_routes(sim):
    install(sim, {"route": "^/api/authenticate$", "kind": "status", "status": 503, "count": 1})
    r = requests.post(sim.base + "/authenticate", json={"username": "sync@acme.example", "password": "sync-password"})
    assert r.status_code == 503
    login(sim)


def test_delete_clears(sim, svc):
    install(sim, {"route": ".*", "kind": "status", "status": 500})
    assert svc.get("/api/profile").status_code == 500
    assert sim.control_delete("/_sim/faults").json() == {"installed": 0}
    assert svc.get("/api/profile").status_code == 200
    assert sim.control_get("/_sim/faults").json()["rules"] == []


@pytest.mark.parametrize("spec", [
    None, [], {"rules": "x"}, {"rules": [{"kind": "explode"}]}, {"rules": [{"kind": "status", "route": "("}]},
    {"rules": [{"kind": "status", "probability": 2}]}, {"rules": [{"kind": "status", "status": 200}]},
    {"rules": [{"kind": "latency", "ms": "slow"}]}, {"rules": [{"kind": "hang", "count": -1}]},
    {"rules": [{"kind": "rate_limit", "retry_after": 1.5}]},
])
def test_invalid_rules_are_refused(sim, spec):
    r = sim.control_post("/_sim/faults", json=spec) if spec is not None else \
        sim.control_post("/_sim/faults", data=b"{not json")
    assert r.status_code == 400
    assert r.json()["Code"] == "Control.BadRequest"


def test_keep_alive_connection_survives_faults_elsewhere(sim, svc):
    install(sim, {"route": "^/api/item-master$", "kind": "reset_before"})
    for _ in range(3):
        assert svc.get("/api/profile").status_code == 200
        with pytest.raises(requests.ConnectionError):
            svc.get("/api/item-master")
    assert svc.get("/api/profile").status_code == 200


@pytest.mark.parametrize("rule,status", [
    ({"kind": "status", "status": 502}, 502),
    ({"kind": "rate_limit", "retry_after": 3}, 429),
    ({"kind": "latency", "ms": 200}, 200),
])
def test_answering_faults_on_raw_socket(sim, svc, rule, status):
    install(sim, dict(rule, route="^/api/profile$"))
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        started = time.monotonic()
        s.sendall(raw_request(sim, svc, "GET", "/api/profile"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
        elapsed = time.monotonic() - started
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        while len(body) < int(headers["content-length"]):
            body += s.recv(65536)
    assert lines[0].startswith("HTTP/1.1 %d " % status)
    assert headers["date"] and headers["content-type"] == "application/json"
    assert "connection" not in headers                     # the connection stays usable
    if rule["kind"] == "rate_limit":
        assert headers["retry-after"] == "3"
    if rule["kind"] == "latency":
        assert elapsed >= 0.2
        assert json.loads(body)["data"]["Username"] == "sync@acme.example"
    else:
        assert set(json.loads(body)) == {"Message", "Code"}
