"""Fixtures shared by every knosc-sim test module.

Each test module starts one knosc-sim process (module scope) at scale 1 and talks to it over real HTTP,
the way the daemon will. Tests that need special options (short token lifetimes, --omit-create-id, ...)
call start_sim() themselves and stop the process when done.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

import pytest
import requests

SIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# KNOSC_SIM_EXE runs the same tests against another build of the simulator.
SIM_EXE = os.environ.get("KNOSC_SIM_EXE") or os.path.join(SIM_DIR, "knosc-sim")
PYTHON = "/usr/bin/python3"
DEFAULT_TIMEOUT = 30.0
MUTATING = ("POST", "PUT", "PATCH", "DELETE")

# Unit tests import sim.* directly.
if SIM_DIR not in sys.path:
    sys.path.insert(0, SIM_DIR)


class SimProcess:
    """A running knosc-sim: its two base URLs, the control token and the process."""

    def __init__(self, proc: subprocess.Popen, root: str, control: str, token: str, log_path: str,
                 data_dir: Optional[str] = None):
        self.proc = proc
        self.data_dir = data_dir
        self.root = root
        self.base = root + "/api"
        self.control = control
        self.token = token
        self.log_path = log_path
        self.port = int(root.rsplit(":", 1)[1])
        self.control_port = int(control.rsplit(":", 1)[1])

    # -- control API -------------------------------------------------------------------------------------
    def _auth(self, kw: dict) -> dict:
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Authorization", "Bearer " + self.token)
        kw["headers"] = headers
        kw.setdefault("timeout", DEFAULT_TIMEOUT)
        return kw

    def control_get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.control + path, **self._auth(kw))

    def control_post(self, path: str, json=None, **kw) -> requests.Response:
        return requests.post(self.control + path, json=json, **self._auth(kw))

    def control_delete(self, path: str, **kw) -> requests.Response:
        return requests.delete(self.control + path, **self._auth(kw))

    # -- lifecycle ---------------------------------------------------------------------------------------
    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self) -> int:
        """Stop with SIGTERM (the sim exits 0 on it); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc.stdout:
            self.proc.stdout.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self) -> "SimProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_sim(*extra_args: str, scale: float = 1, seed: int = 7, timeout: float = 120.0,
              quiet: bool = True) -> SimProcess:
    """Start knosc-sim on free ports and wait for its two ready lines."""
    token = "ctl-" + secrets.token_hex(12)
    fd, log_path = tempfile.mkstemp(prefix="knosc-sim-", suffix=".log")
    args = [PYTHON, SIM_EXE, "--host", "127.0.0.1", "--port", "0", "--control-port", "0",
            "--seed", str(seed), "--scale", str(scale), "--control-token", token]
    if quiet:
        args.append("--quiet")
    args.extend(str(a) for a in extra_args)
    data_dir = None
    if not any(a == "--data-dir" or a.startswith("--data-dir=") for a in args):
        # A data directory per process, removed at stop(), so test runs leave nothing behind.
        data_dir = tempfile.mkdtemp(prefix="knosc-sim-test-data-")
        args.extend(["--data-dir", data_dir])
    # stderr goes to a file: a pipe nobody reads would fill and stall the server.
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    root = control = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while root is None or control is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("knosc-sim not ready in %.0f s" % timeout)
            if not sel.select(timeout=min(left, 0.5)):
                if proc.poll() is not None:
                    raise RuntimeError("knosc-sim exited with %s" % proc.returncode)
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                raise RuntimeError("knosc-sim exited with %s" % proc.returncode)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").strip()
                if text.startswith("knosc-sim listening on "):
                    root = text[len("knosc-sim listening on "):]
                elif text.startswith("knosc-sim control on "):
                    control = text[len("knosc-sim control on "):]
    except Exception as exc:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            err = fh.read()
        os.unlink(log_path)
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise RuntimeError("%s; stderr:\n%s" % (exc, err[-4000:])) from None
    finally:
        sel.close()
    return SimProcess(proc, root, control, token, log_path, data_dir)


class KnoscSession(requests.Session):
    """A requests session that behaves like a Knosc browser client.

    On POST/PUT/PATCH/DELETE it copies the csrf_access_token cookie into X-XSRF-TOKEN unless the caller
    passed that header. URLs starting with "/" are relative to the sim's root.
    """

    def __init__(self, sim: Optional[SimProcess] = None):
        super().__init__()
        self.sim = sim

    def csrf(self, name: str = "csrf_access_token") -> Optional[str]:
        for cookie in self.cookies:
            if cookie.name == name:
                return cookie.value
        return None

    def request(self, method, url, *args, **kw):  # type: ignore[override]
        if self.sim is not None and isinstance(url, str) and url.startswith("/"):
            url = self.sim.root + url
        kw.setdefault("timeout", DEFAULT_TIMEOUT)
        if method.upper() in MUTATING:
            headers = dict(kw.pop("headers", None) or {})
            if not any(k.lower() == "x-xsrf-token" for k in headers):
                token = self.csrf()
                if token is not None:
                    headers["X-XSRF-TOKEN"] = token
            kw["headers"] = headers
        return super().request(method, url, *args, **kw)

    def refresh(self) -> requests.Response:
        """POST /api/token-refresh with the refresh CSRF token, as the contract asks."""
        return self.post("/api/token-refresh", headers={"X-XSRF-TOKEN": self.csrf("csrf_refresh_token") or ""})


def login(sim: SimProcess, username: str = "sync@acme.example", password: str = "sync-password") -> KnoscSession:
    """A signed-in session; raises AssertionError when the sim refuses the login."""
    s = KnoscSession(sim)
    r = s.post("/api/authenticate", json={"username": username, "password": password})
    assert r.status_code == 200 and r.json().get("login") is True, (r.status_code, r.text)
    return s


@pytest.fixture(scope="module")
def sim():
    proc = start_sim()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def svc(sim):
    s = login(sim)
    yield s
    s.close()
