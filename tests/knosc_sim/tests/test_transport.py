"""The HTTP transport of the Knosc port: framing, keep-alive, malformed input, limits, stats keys, lifecycle."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import PYTHON, SIM_EXE, login, start_sim
from sim.server import stats_key


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def test_ready_lines_name_both_ports(sim):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.root)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.control)
    assert sim.port != sim.control_port
    assert sim.control_get("/_sim/health").json()["status"] == "ok"


def test_fixed_ports_and_clean_exit_on_sigterm():
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    proc = start_sim("--port", str(ports[0]), "--control-port", str(ports[1]))
    try:
        assert proc.root == "http://127.0.0.1:%d" % ports[0]
        assert proc.control == "http://127.0.0.1:%d" % ports[1]
        assert requests.get(proc.root + "/").status_code == 404
    finally:
        assert proc.stop() == 0


def test_clean_exit_on_sigint():
    proc = start_sim()
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=15) == 0
    proc.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(proc.root + "/", timeout=2)


def test_control_token_is_required():
    r = subprocess.run([PYTHON, SIM_EXE, "--port", "0"], capture_output=True, timeout=60)
    assert r.returncode == 2
    assert b"--control-token" in r.stderr
    assert r.stdout == b""


def test_help_lists_every_option():
    r = subprocess.run([PYTHON, SIM_EXE, "--help"], capture_output=True, timeout=60, text=True)
    assert r.returncode == 0
    for option in ("--host", "--port", "--control-port", "--seed", "--scale", "--control-token", "--access-ttl",
                   "--refresh-ttl", "--lockout-base", "--omit-create-id", "--data-dir", "--quiet"):
        assert option in r.stdout


def test_keep_alive_reuses_the_connection(sim, svc):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    cookie = "access_token_cookie=" + svc.cookies.get("access_token_cookie", path="/")
    conn.request("GET", "/api/profile", headers={"Cookie": cookie})
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    assert first.status == 200 and first.getheader("Connection") is None
    for path in ("/api/profile", "/api/no-such-route", "/nowhere", "/api/profile"):
        conn.request("GET", path, headers={"Cookie": cookie})
        r = conn.getresponse()
        body = r.read()
        assert int(r.getheader("Content-Length")) == len(body)
        assert r.getheader("Date")
        assert conn.sock is sock, "the server closed a keep-alive connection"
    conn.close()


def test_http10_closes(sim):
    status, headers, body = split_response(raw_exchange(sim.port, b"GET /api/profile HTTP/1.0\r\n\r\n"))
    assert status == 401
    assert headers["connection"] == "close"
    assert json.loads(body)["Code"] == "Token.Missing"


@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /api/profile HTTP/9.9\r\n\r\n", 505),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /api/profile HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"POST /api/authenticate HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /api/authenticate HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/authenticate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
])
def test_malformed_requests_get_knosc_errors(sim, data, status):
    got, headers, body = split_response(raw_exchange(sim.port, data))
    assert got == status
    parsed = json.loads(body)
    assert set(parsed) == {"Message", "Code"}
    assert headers["content-type"] == "application/json"
    assert requests.get(sim.root + "/api/profile").status_code == 401   # still serving


def test_body_too_large(sim):
    # The limit is checked on Content-Length before the body is read, so nothing needs to be sent.
    raw = raw_exchange(sim.port, b"POST /api/authenticate HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n")
    status, headers, body = split_response(raw)
    assert status == 413
    assert json.loads(body)["Code"] == "Request.TooLarge"


def test_max_body_option():
    proc = start_sim("--max-body", "100")
    try:
        r = requests.post(proc.base + "/authenticate", json={"username": "x" * 200, "password": "y"})
        assert r.status_code == 413
        r = requests.post(proc.base + "/authenticate", json={"username": "x", "password": "y"})
        assert r.status_code == 401
    finally:
        proc.stop()


def test_client_that_vanishes_mid_body(sim):
    with socket.create_connection(("127.0.0.1", sim.port)) as s:
        s.sendall(b"POST /api/authenticate HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"user")
    assert requests.get(sim.root + "/api/profile").status_code == 401


def test_chunked_request_body(sim):
    def gen():
        yield b'{"username": "sync@acme.example", '
        yield b'"password": "sync-password"}'
    r = requests.post(sim.base + "/authenticate", data=gen(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"login": True}


def test_non_utf8_and_malformed_json_on_tenant_routes(sim, svc):
    for raw in (b"\xff\xfe\xfa", b"{not json", b""):
        r = svc.post("/api/item-master", data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["Code"] == "JSON.Invalid"
    assert svc.get("/api/profile").status_code == 200


def test_unknown_routes(sim, svc):
    r = requests.get(sim.root + "/")
    assert r.status_code == 404 and r.json() == {"Message": "Not Found", "Code": "Route.NotFound"}
    r = svc.get("/api/no-such-route")
    assert r.status_code == 404 and r.json() == {"Message": "Not Found", "Code": "Route.NotFound"}


def test_head_has_headers_only(sim, svc):
    get = svc.get("/api/profile")
    head = svc.head("/api/profile")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content))


def test_json_responses(sim, svc):
    r = svc.get("/api/item-master", params={"page_size": 5})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.json()["data"]["rows"]


def test_concurrent_clients(sim):
    sessions = [login(sim) for _ in range(8)]
    failures = []

    def worker(s):
        for _ in range(15):
            r = s.get("/api/item-master", params={"page_size": 20})
            if r.status_code != 200 or len(r.json()["data"]["rows"]) != 20:
                failures.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


def test_stats_key():
    assert stats_key("GET", "/api/item-master") == "GET /api/item-master"
    assert stats_key("PUT", "/api/purchase-order/42") == "PUT /api/purchase-order/{id}"
    assert stats_key("GET", "/api/purchase-order-item/5/-3") == "GET /api/purchase-order-item/{id}/{id}"
    assert stats_key("GET", "/api/issue-tracker-tickets/TKT-001/notes") == "GET /api/issue-tracker-tickets/{id}/notes"
    assert stats_key("POST", "/api/user/7/reset-2fa") == "POST /api/user/{id}/reset-2fa"
    assert stats_key("GET", "/api/dashboard-spend-by-item") == "GET /api/dashboard-spend-by-item"
    assert stats_key("POST", "/api/job/item-master") == "POST /api/job/item-master"


def test_quiet_off_logs_requests_to_stderr_only():
    proc = start_sim(quiet=False)
    try:
        requests.get(proc.root + "/api/profile")
        deadline = time.monotonic() + 10
        while "GET /api/profile" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"GET /api/profile" 401' in proc.log()
    finally:
        proc.stop()


def test_executable_runs_from_any_directory_and_through_a_symlink(tmp_path):
    link = tmp_path / "knosc-sim"
    link.symlink_to(SIM_EXE)
    r = subprocess.run([str(link), "--help"], capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 0 and b"--control-token" in r.stdout
