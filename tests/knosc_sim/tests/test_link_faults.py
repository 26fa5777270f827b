"""Link-level faults (POST /_sim/link): refuse, blackhole, stall, bandwidth and flap, seen from real clients.

Waits poll with deadlines; the only fixed waits are the windows in which a test asserts that nothing
arrives, and the pacing of a measured transfer.
"""

from __future__ import annotations

import http.client
import json
import resource
import signal
import socket
import time

import pytest
import requests

from conftest import login, start_sim


@pytest.fixture(autouse=True)
def normal_link_after(sim):
    yield
    r = sim.control_post("/_sim/link", json={"mode": "normal"})
    assert r.status_code == 200, r.text
    assert sim.control_delete("/_sim/faults").status_code == 200


# -- helpers -----------------------------------------------------------------------------------------------

def set_link(sim, **spec) -> dict:
    started = time.monotonic()
    r = sim.control_post("/_sim/link", json=spec)
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 1.0, "the control port was slow to switch the link"
    state = r.json()
    assert state["mode"] == spec["mode"]
    return state


def link(sim) -> dict:
    r = sim.control_get("/_sim/link")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(0.02)


def held(sim, kind: str) -> int:
    return link(sim)["held"][kind]


def requests_seen(sim, key: str) -> int:
    return sim.control_get("/_sim/stats").json()["requests"].get(key, 0)


def raw_request(svc, method: str, path: str, body: bytes = b"") -> bytes:
    cookie = svc.cookies.get("access_token_cookie", path="/")
    head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: access_token_cookie=%s\r\nX-XSRF-TOKEN: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (method, path, cookie, svc.csrf(), len(body)))
    return head.encode() + body


def connect(sim, timeout: float = 2.0) -> socket.socket:
    started = time.monotonic()
    s = socket.create_connection(("127.0.0.1", sim.port), timeout=timeout)
    assert time.monotonic() - started < timeout
    return s


def received_within(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """Every byte that arrives within `seconds`, and whether the peer closed."""
    end = time.monotonic() + seconds
    got = b""
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return got, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return got, False
        if not chunk:
            return got, True
        got += chunk


def recv_exactly(sock: socket.socket, n: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    got = b""
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, "only %d of %d bytes in %.1f s" % (len(got), n, timeout)
        sock.settimeout(left)
        chunk = sock.recv(n - len(got))
        assert chunk, "closed after %d of %d bytes" % (len(got), n)
        got += chunk
    return got


def read_response(sock: socket.socket, timeout: float, already: bytes = b"") -> tuple[int, dict, bytes]:
    """One whole response (head and Content-Length body) within `timeout`."""
    deadline = time.monotonic() + timeout
    buf = already
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        assert left > 0, "no complete head in %.1f s: %r" % (timeout, buf[:200])
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, "closed before the head ended: %r" % buf[:200]
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        left = deadline - time.monotonic()
        assert left > 0, "body incomplete after %.1f s: %d of %d bytes" % (timeout, len(body), length)
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, "closed after %d of %d body bytes" % (len(body), length)
        body += chunk
    assert len(body) == length
    return int(lines[0].split()[1]), headers, body


def answers_at_once(svc, path: str = "/api/profile") -> None:
    started = time.monotonic()
    r = svc.get(path, timeout=(1.0, 1.0))
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 1.0


def control_answers_at_once(sim) -> None:
    started = time.monotonic()
    r = sim.control_get("/_sim/snapshot", params={"resource": "item-master", "records": "1"}, timeout=2.0)
    assert r.status_code == 200 and len(r.content) > 20000
    assert r.json()["resources"]["item-master"]["count"] > 0
    assert time.monotonic() - started < 1.0, "the control port was slowed by the link"


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


# -- the control API ---------------------------------------------------------------------------------------

def test_link_starts_normal(sim):
    state = link(sim)
    assert state["mode"] == "normal" and state["effective"] == "normal"
    assert state["held"] == {"connections": 0, "reads": 0, "writes": 0}
    assert "phase" not in state
    assert sim.control_get("/_sim/health").json()["link"] == "normal"


def test_link_routes_need_the_control_token(sim):
    for method in ("GET", "POST"):
        r = requests.request(method, sim.control + "/_sim/link", json={"mode": "blackhole"},
                             headers={"Authorization": "Bearer wrong"}, timeout=5)
        assert r.status_code == 401 and r.json()["Code"] == "Control.Unauthorized"
    assert link(sim)["mode"] == "normal"


@pytest.mark.parametrize("body", [
    None, [], {}, {"mode": "down"}, {"mode": "blackhole", "seconds": 3},
    {"mode": "stall", "after_bytes": 0}, {"mode": "stall", "after_bytes": "10"},
    {"mode": "stall", "after_bytes": 10, "body_bytes": 10}, {"mode": "stall", "body_bytes": -1},
    {"mode": "bandwidth"}, {"mode": "bandwidth", "bytes_per_second": 0},
    {"mode": "bandwidth", "bytes_per_second": True},
    {"mode": "bandwidth", "bytes_per_second": 100, "release": "reset"},
    {"mode": "flap", "online_seconds": 3}, {"mode": "flap", "online_seconds": 3, "blackhole_seconds": 3},
    {"mode": "flap", "online_seconds": 0, "down_seconds": 3}, {"mode": "flap", "online_seconds": 1, "down_seconds": 1,
                                                              "down_mode": "flap"},
    {"mode": "flap", "online_seconds": 1, "down_seconds": 1, "down_mode": "bandwidth"},
    {"mode": "flap", "online_seconds": 1, "down_seconds": 1, "start": "up"},
    {"mode": "blackhole", "release": "close"}, {"mode": "refuse", "release": "reset"},
])
def test_invalid_link_bodies_are_refused(sim, svc, body):
    r = sim.control_post("/_sim/link", json=body) if body is not None else \
        sim.control_post("/_sim/link", data=b"{not json")
    assert r.status_code == 400, r.text
    assert r.json()["Code"] == "Control.BadRequest" and r.json()["Message"]
    assert link(sim)["mode"] == "normal"
    answers_at_once(svc)


def test_unknown_fields_are_named(sim):
    r = sim.control_post("/_sim/link", json={"mode": "flap", "online_seconds": 3, "blackhole_seconds": 3})
    assert r.status_code == 400
    assert r.json()["Message"] == "unknown field for mode flap with down_mode blackhole: blackhole_seconds"


def test_answers_describe_the_new_state(sim):
    state = set_link(sim, mode="stall", body_bytes=0)
    assert state == {"mode": "stall", "body_bytes": 0, "release": "resume", "effective": "stall",
                     "since": state["since"], "held": {"connections": 0, "reads": 0, "writes": 0}}
    state = set_link(sim, mode="bandwidth", bytes_per_second=2500)
    assert state["bytes_per_second"] == 2500 and state["effective"] == "bandwidth" and "release" not in state
    state = set_link(sim, mode="flap", online_seconds=2, down_seconds=3)
    assert state["down_mode"] == "blackhole" and state["start"] == "down" and state["release"] == "resume"
    assert state["phase"] == "down" and state["effective"] == "blackhole" and 2.5 < state["phase_left"] <= 3
    assert state["phase_changes"] == 0
    again = link(sim)                                          # GET answers the same shape
    assert set(again) == set(state) and again["phase"] == "down"
    state = set_link(sim, mode="normal")
    assert state["effective"] == "normal" and "phase" not in state


# -- blackhole ---------------------------------------------------------------------------------------------

def test_blackhole_accepts_connections_but_answers_nothing(sim, svc):
    before = requests_seen(sim, "GET /api/profile")
    set_link(sim, mode="blackhole")
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        wait_for(lambda: held(sim, "connections") >= 1, 5, "the connection to be parked")
        got, closed = received_within(s, 2.0)
        assert got == b"" and not closed
        with pytest.raises(requests.ReadTimeout):          # connects, then never answers
            svc.get("/api/profile", timeout=(2.0, 0.5))
        control_answers_at_once(sim)
        assert requests_seen(sim, "GET /api/profile") == before     # nothing was read
        assert sim.control_get("/_sim/health").json()["online"] is True
        set_link(sim, mode="normal")
        answers_at_once(svc)
        status, _headers, body = read_response(s, 5.0)      # the parked request resumes
        assert status == 200 and json.loads(body)["data"]["Username"] == "sync@acme.example"
    wait_for(lambda: held(sim, "connections") == 0, 5, "no parked connection left")


def test_blackhole_stops_open_connections_mid_request(sim, svc):
    cookie = "access_token_cookie=" + svc.cookies.get("access_token_cookie", path="/")
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    conn.request("GET", "/api/profile", headers={"Cookie": cookie})
    assert conn.getresponse().read()
    before = requests_seen(sim, "GET /api/profile")
    set_link(sim, mode="blackhole")
    sock = conn.sock
    sock.sendall(raw_request(svc, "GET", "/api/profile"))
    wait_for(lambda: held(sim, "reads") >= 1, 5, "the kept-alive connection to stop reading")
    got, closed = received_within(sock, 1.5)
    assert got == b"" and not closed
    assert requests_seen(sim, "GET /api/profile") == before
    set_link(sim, mode="normal")
    status, _headers, _body = read_response(sock, 5.0)
    assert status == 200
    assert requests_seen(sim, "GET /api/profile") == before + 1
    conn.close()


def test_blackhole_holds_a_response_in_flight(sim, svc):
    assert sim.control_post("/_sim/faults", json={"seed": 1, "rules": [
        {"route": "^/api/profile$", "kind": "latency", "ms": 500}]}).status_code == 200
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        wait_for(lambda: sim.control_get("/_sim/faults").json()["rules"][0]["fired"] == 1, 5, "the request to arrive")
        set_link(sim, mode="blackhole")
        wait_for(lambda: held(sim, "writes") == 1, 5, "the response to be held")
        got, closed = received_within(s, 1.0)
        assert got == b"" and not closed
        set_link(sim, mode="normal")
        status, _headers, body = read_response(s, 5.0)
        assert status == 200 and json.loads(body)["data"]["Username"] == "sync@acme.example"


def test_blackhole_release_reset(sim, svc):
    cookie = "access_token_cookie=" + svc.cookies.get("access_token_cookie", path="/")
    kept = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    kept.request("GET", "/api/profile", headers={"Cookie": cookie})
    assert kept.getresponse().read()
    set_link(sim, mode="blackhole", release="reset")
    kept.sock.sendall(raw_request(svc, "GET", "/api/profile"))
    with connect(sim) as fresh:
        fresh.sendall(raw_request(svc, "GET", "/api/profile"))
        wait_for(lambda: link(sim)["held"] == {"connections": 1, "reads": 1, "writes": 0}, 5, "both to be held")
        set_link(sim, mode="normal")
        for s in (fresh, kept.sock):
            s.settimeout(5.0)
            with pytest.raises(ConnectionResetError):
                s.recv(65536)
    kept.close()
    answers_at_once(svc)


def test_blackhole_reads_nothing_and_holds_many_connections(sim, svc):
    many = min(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100)
    assert many >= 500
    rss_before = rss_kib(sim.proc.pid)
    before = requests_seen(sim, "GET /api/profile")
    set_link(sim, mode="blackhole")
    socks = []
    try:
        for _ in range(many):
            s = connect(sim)
            s.sendall(raw_request(svc, "GET", "/api/profile"))
            socks.append(s)
        pusher = connect(sim)
        socks.append(pusher)
        declared = 48 * 1024 * 1024                      # under --max-body: an open link would read it all
        pusher.sendall(("POST /api/authenticate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n" % declared).encode())
        pusher.settimeout(1.0)
        pushed = 0
        chunk = b"x" * 65536
        try:
            while pushed < declared:
                pusher.sendall(chunk)
                pushed += len(chunk)
        except socket.timeout:
            pass
        assert pushed < 16 * 1024 * 1024, "the blackhole took %d bytes" % pushed
        wait_for(lambda: held(sim, "connections") == many + 1, 10, "every connection parked")
        control_answers_at_once(sim)
        assert rss_kib(sim.proc.pid) - rss_before < 16 * 1024    # no thread, no buffer per parked connection
        assert requests_seen(sim, "GET /api/profile") == before
        set_link(sim, mode="normal")
        for s in socks[:-1]:
            status, _headers, _body = read_response(s, 30.0)
            assert status == 200
        assert requests_seen(sim, "GET /api/profile") == before + many
    finally:
        for s in socks:
            s.close()
    answers_at_once(svc)


# -- stall -------------------------------------------------------------------------------------------------

def test_stall_sends_the_first_bytes_then_holds(sim, svc):
    expected = svc.get("/api/item-master", params={"page_size": 5}).content
    set_link(sim, mode="stall", after_bytes=20)
    with connect(sim) as s, connect(sim) as other:
        s.sendall(raw_request(svc, "GET", "/api/item-master?page_size=5"))
        other.sendall(raw_request(svc, "GET", "/api/profile"))
        first = recv_exactly(s, 20, 5.0)
        assert first == b"HTTP/1.1 200 OK\r\nSer"
        assert recv_exactly(other, 20, 5.0) == b"HTTP/1.1 200 OK\r\nSer"      # every response stalls
        wait_for(lambda: held(sim, "writes") == 2, 5, "two stalled responses")
        for sock in (s, other):
            got, closed = received_within(sock, 1.0)
            assert got == b"" and not closed                                    # held open, silent
        with pytest.raises(requests.ReadTimeout):
            svc.get("/api/profile", timeout=(2.0, 0.5))
        control_answers_at_once(sim)
        set_link(sim, mode="normal")
        status, headers, body = read_response(s, 5.0, already=first)          # the rest follows
        assert status == 200 and body == expected
        assert read_response(other, 5.0, already=b"HTTP/1.1 200 OK\r\nSer")[0] == 200
    answers_at_once(svc)


def test_stall_after_the_headers(sim, svc):
    set_link(sim, mode="stall", body_bytes=7)
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/item-master?page_size=5"))
        buf = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in buf or len(buf.partition(b"\r\n\r\n")[2]) < 7:
            assert time.monotonic() < deadline, buf
            s.settimeout(deadline - time.monotonic())
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        length = int(dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])["Content-Length"])
        assert body == b'{"data"' and length > 1000
        got, closed = received_within(s, 1.0)
        assert got == b"" and not closed


def test_stall_never_finishes_a_short_response(sim, svc):
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        status, headers, body = read_response(s, 5.0)
        assert status == 200
        full = len(body)
    set_link(sim, mode="stall", after_bytes=1_000_000)
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        got, closed = received_within(s, 1.0)
        head, _, body = got.partition(b"\r\n\r\n")
        raw_len = len(body)
        assert not closed and head.startswith(b"HTTP/1.1 200") and raw_len == full - 1   # all but the last byte


def test_stall_release_reset(sim, svc):
    set_link(sim, mode="stall", after_bytes=12, release="reset")
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        assert recv_exactly(s, 12, 5.0) == b"HTTP/1.1 200"
        wait_for(lambda: held(sim, "writes") == 1, 5, "the stalled response")
        set_link(sim, mode="normal")
        s.settimeout(5.0)
        with pytest.raises(ConnectionResetError):
            s.recv(65536)
    answers_at_once(svc)


# -- bandwidth ---------------------------------------------------------------------------------------------

def test_bandwidth_paces_a_download(sim, svc):
    path = "/api/item-master?page_size=40"
    expected = svc.get(path).content
    assert 8000 < len(expected) < 14000
    rate = 4000
    set_link(sim, mode="bandwidth", bytes_per_second=rate)
    with connect(sim) as s:
        started = time.monotonic()
        s.sendall(raw_request(svc, "GET", path))
        buf = b""
        arrivals = []
        total = None
        s.settimeout(5.0)
        while total is None or len(buf) < total:
            chunk = s.recv(65536)
            assert chunk
            arrivals.append(time.monotonic())
            buf += chunk
            if total is None and b"\r\n\r\n" in buf:
                head = buf.partition(b"\r\n\r\n")[0].decode()
                total = len(head) + 4 + int(dict(l.split(": ", 1) for l in head.split("\r\n")[1:])["Content-Length"])
        elapsed = time.monotonic() - started
    assert buf.partition(b"\r\n\r\n")[2] == expected
    ideal = total / rate
    assert 0.8 * ideal <= elapsed <= 1.3 * ideal + 0.3, (elapsed, ideal)
    gaps = [b - a for a, b in zip([started] + arrivals, arrivals)]
    assert max(gaps) < 0.4, "bytes stopped moving for %.2f s" % max(gaps)
    assert len(arrivals) >= 20                                 # many small pieces, not one late burst


def test_bandwidth_paces_an_upload(sim, svc):
    rate = 4000
    body = json.dumps({"username": "nobody@acme.example", "password": "p" * 8000}).encode()
    set_link(sim, mode="bandwidth", bytes_per_second=rate)
    started = time.monotonic()
    r = requests.post(sim.base + "/authenticate", data=body, headers={"Content-Type": "application/json"},
                      timeout=10)
    elapsed = time.monotonic() - started
    assert r.status_code == 401
    ideal = len(body) / rate
    assert 0.8 * ideal <= elapsed <= 1.3 * ideal + 0.5, (elapsed, ideal)


def test_bandwidth_change_applies_to_a_transfer_under_way(sim, svc):
    path = "/api/item-master?page_size=40"
    expected = svc.get(path).content
    set_link(sim, mode="bandwidth", bytes_per_second=500)
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", path))
        first = recv_exactly(s, 100, 5.0)
        got, closed = received_within(s, 0.5)
        assert not closed and len(got) < 600                    # ~250 bytes in half a second at 500 B/s
        set_link(sim, mode="normal")
        started = time.monotonic()
        status, _headers, body = read_response(s, 5.0, already=first + got)
        assert status == 200 and body == expected
        assert time.monotonic() - started < 0.5


# -- flap --------------------------------------------------------------------------------------------------

def test_flap_alternates_blackhole_and_online(sim, svc):
    state = set_link(sim, mode="flap", online_seconds=1, down_seconds=1)
    set_at = time.monotonic()
    assert state["phase"] == "down" and state["effective"] == "blackhole"
    changes = []
    phase = "down"
    for expected in ("online", "down", "online", "down"):
        seen = wait_for(lambda: link(sim)["phase"] != phase and link(sim), 2.5, "the %s phase" % expected)
        changes.append(time.monotonic())
        assert seen["phase"] == expected and seen["phase_left"] > 0.6
        assert seen["effective"] == ("normal" if expected == "online" else "blackhole")
        assert seen["phase_changes"] == len(changes)
        phase = expected
        if expected == "online":
            answers_at_once(svc)
        else:
            with connect(sim, timeout=0.3) as s:                  # connects, then silence
                s.sendall(raw_request(svc, "GET", "/api/profile"))
                got, closed = received_within(s, 0.3)
                assert got == b"" and not closed
    for i, at in enumerate(changes):                            # seen within a poll of each scheduled change
        assert -0.25 < (at - set_at) - (i + 1) < 0.5, [round(c - set_at, 2) for c in changes]


def test_flap_with_refused_down_phases(sim, svc):
    def probe() -> str:
        try:
            socket.create_connection(("127.0.0.1", sim.port), timeout=1).close()
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"       # in the kernel's accept queue as the listener closed: the next try tells
        return "open"

    set_link(sim, mode="flap", online_seconds=0.6, down_seconds=0.6, down_mode="refuse", start="online")
    for _ in range(2):
        wait_for(lambda: probe() == "refused", 2.0, "connections refused")
        assert link(sim)["effective"] == "refuse"
        wait_for(lambda: probe() == "open", 2.0, "the port to listen again")
        state = link(sim)
        assert state["effective"] == "normal" and state["phase"] == "online"
        if state["phase_left"] > 0.3:
            answers_at_once(svc)


def test_flap_with_stalled_down_phases(sim, svc):
    set_link(sim, mode="flap", online_seconds=5, down_seconds=5, down_mode="stall", after_bytes=9)
    with connect(sim) as s:
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        assert recv_exactly(s, 9, 5.0) == b"HTTP/1.1 "
        got, closed = received_within(s, 0.5)
        assert got == b"" and not closed


# -- refuse, and going back to normal ----------------------------------------------------------------------

def test_refuse_is_offline_under_one_name(sim, svc):
    set_link(sim, mode="refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()
    health = sim.control_get("/_sim/health").json()
    assert health["online"] is False and health["link"] == "refuse"
    assert sim.control_post("/_sim/online").json() == {"online": True, "port": sim.port}
    assert link(sim)["mode"] == "normal"
    answers_at_once(svc)
    assert sim.control_post("/_sim/offline").json() == {"online": False}
    assert link(sim)["mode"] == "refuse"
    with pytest.raises(requests.ConnectionError):
        svc.get("/api/profile", timeout=2)
    set_link(sim, mode="normal")
    answers_at_once(svc)


@pytest.mark.parametrize("spec", [
    {"mode": "refuse"}, {"mode": "blackhole"}, {"mode": "stall"}, {"mode": "bandwidth", "bytes_per_second": 50},
    {"mode": "flap", "online_seconds": 60, "down_seconds": 60},
])
def test_back_to_normal_answers_at_once(sim, svc, spec):
    set_link(sim, **spec)
    with pytest.raises(requests.RequestException):
        svc.get("/api/item-master", params={"page_size": 20}, timeout=(1.0, 1.0))
    set_link(sim, mode="normal")
    answers_at_once(svc)
    answers_at_once(svc, "/api/item-master?page_size=20")


@pytest.mark.parametrize("spec", [
    {"mode": "refuse"}, {"mode": "blackhole"}, {"mode": "stall", "after_bytes": 1},
    {"mode": "bandwidth", "bytes_per_second": 100},
    {"mode": "flap", "online_seconds": 0.2, "down_seconds": 0.2, "down_mode": "refuse"},
])
def test_the_control_port_is_never_affected(sim, svc, spec):
    set_link(sim, **spec)
    for _ in range(5):
        control_answers_at_once(sim)
        assert link(sim)["mode"] == spec["mode"]


# -- link faults act before per-request faults -------------------------------------------------------------

def test_link_faults_act_before_request_faults(sim, svc):
    assert sim.control_post("/_sim/faults", json={"seed": 1, "rules": [
        {"route": "^/api/profile$", "kind": "status", "status": 503},
        {"route": "^/api/item-master$", "kind": "reset_before"}]}).status_code == 200
    set_link(sim, mode="stall", after_bytes=12)
    with connect(sim) as s:                                   # the fault answers, the link stalls it
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        assert recv_exactly(s, 12, 5.0) == b"HTTP/1.1 503"
        got, closed = received_within(s, 0.5)
        assert got == b"" and not closed
    set_link(sim, mode="blackhole")
    with connect(sim) as s:                                   # a blackholed request never meets its fault
        s.sendall(raw_request(svc, "GET", "/api/item-master"))
        wait_for(lambda: held(sim, "connections") == 1, 5, "the parked connection")
        got, closed = received_within(s, 0.5)
        assert got == b"" and not closed
        rules = sim.control_get("/_sim/faults").json()["rules"]
        assert rules[1]["matched"] == 0
        set_link(sim, mode="normal")                          # now it is read, and the fault resets it
        s.settimeout(5.0)
        with pytest.raises(ConnectionResetError):
            s.recv(65536)
    assert sim.control_get("/_sim/faults").json()["rules"][1]["fired"] == 1


# -- shutdown ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("last", ["blackhole", "stall", "bandwidth"])
def test_sigterm_exits_at_once_while_connections_are_held(last):
    proc = start_sim()
    socks = []
    try:
        svc = login(proc)
        cookie = "access_token_cookie=" + svc.cookies.get("access_token_cookie", path="/")
        kept = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
        kept.request("GET", "/api/profile", headers={"Cookie": cookie})
        assert kept.getresponse().read()
        socks.append(kept.sock)
        set_link(proc, mode="stall", after_bytes=5)              # one response stalled mid-way
        s = connect(proc)
        s.sendall(raw_request(svc, "GET", "/api/profile"))
        socks.append(s)
        assert recv_exactly(s, 5, 5.0) == b"HTTP/"
        set_link(proc, mode="blackhole")                         # one read held, many connections parked
        kept.sock.sendall(raw_request(svc, "GET", "/api/profile"))
        for _ in range(100):
            s = connect(proc)
            s.sendall(raw_request(svc, "GET", "/api/profile"))
            socks.append(s)
        wait_for(lambda: link(proc)["held"] == {"connections": 100, "reads": 1, "writes": 1}, 10, "held connections")
        if last == "stall":
            set_link(proc, mode="stall", after_bytes=5)
            wait_for(lambda: held(proc, "writes") >= 2, 10, "more stalled responses")
        elif last == "bandwidth":
            set_link(proc, mode="bandwidth", bytes_per_second=10)
            wait_for(lambda: held(proc, "connections") == 0, 10, "the parked connections to be served slowly")
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.0
    finally:
        for s in socks:
            s.close()
        proc.stop()
