"""Processes for black-box tests: a real knosc-sim and the real knosc-syncd binary, over loopback TCP.

Tests poll with deadlines (wait_until) instead of sleeping for fixed times.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import tempfile
import time
from typing import Any, Callable, Optional

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SIM_EXE = os.path.join(ROOT, "tests", "knosc_sim", "knosc-sim")
DAEMON_EXE = os.environ.get("KNOSC_SYNCD") or os.path.join(ROOT, "build", "daemon", "knosc-syncd")
PYTHON = "/usr/bin/python3"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Calls predicate until it returns something truthy (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (requests.RequestException, OSError, ValueError, sqlite3.Error) as exc:  # not up yet, retry
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


class Tool(requests.Session):
    """A client as Knosc's docs show one: cookies kept, X-XSRF-TOKEN from csrf_access_token on writes."""

    def request(self, method, url, **kw):
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE") and "csrf_access_token" in self.cookies:
            kw.setdefault("headers", {})
            kw["headers"].setdefault("X-XSRF-TOKEN", self.cookies.get("csrf_access_token"))
        return super().request(method, url, timeout=kw.pop("timeout", 20), **kw)


def login(base: str, username: str, password: str) -> tuple[Tool, requests.Response]:
    """Logs in through the loopback at `base` (…/api); the tool and the login's answer, whatever it was."""
    t = Tool()
    r = t.post(base + "/authenticate", json={"username": username, "password": password})
    return t, r


def logged_in(base: str, username: str, password: str) -> Tool:
    """A tool logged in through the loopback; the login must succeed."""
    t, r = login(base, username, password)
    assert r.status_code == 200, r.text
    return t


class Sim:
    """A knosc-sim process with its Knosc URL and control API."""

    def __init__(self, *extra: str, scale: float = 1, seed: int = 7, workdir: Optional[str] = None):
        self.token = secrets.token_hex(16)
        self.workdir = workdir or tempfile.mkdtemp(prefix="knosc-sim-")
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = os.path.join(self.workdir, "knosc-sim.log")
        self._log = open(self.log_path, "w", encoding="utf-8")
        args = [PYTHON, SIM_EXE, "--host", "127.0.0.1", "--port", "0", "--control-port", "0", "--seed", str(seed),
                "--scale", str(scale), "--control-token", self.token, "--quiet", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.root = self.control = ""
        deadline = time.monotonic() + 60
        while not (self.root and self.control):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("knosc-sim exited before it was ready:\n" + self.log())
            if line.startswith("knosc-sim listening on "):
                self.root = line.split()[-1].strip()
            elif line.startswith("knosc-sim control on "):
                self.control = line.split()[-1].strip()
            if time.monotonic() > deadline:
                raise RuntimeError("knosc-sim was not ready within 60 s")
        self.base = self.root + "/api"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def _h(self) -> dict:
        return {"Authorization": "Bearer " + self.token}

    def get(self, path: str, **params) -> Any:
        r = requests.get(self.control + path, headers=self._h(), params=params, timeout=60)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any = None) -> Any:
        r = requests.post(self.control + path, headers=self._h(), json=body, timeout=60)
        r.raise_for_status()
        return r.json() if r.content else None

    def delete(self, path: str) -> None:
        requests.delete(self.control + path, headers=self._h(), timeout=60).raise_for_status()

    def snapshot(self, records: bool = False, resource: Optional[str] = None) -> dict:
        params = {}
        if records:
            params["records"] = "1"
        if resource:
            params["resource"] = resource
        return self.get("/_sim/snapshot", **params)["resources"]

    def stats(self) -> dict:
        return self.get("/_sim/stats")

    def requests_matching(self, key: str) -> int:
        return int(self.stats()["requests"].get(key, 0))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Daemon:
    """knosc-syncd run --config, with its own state directory and config file."""

    def __init__(self, sim: Sim, workdir: Optional[str] = None, password: str = "sync-password",
                 username: str = "sync@acme.example", sync: Optional[dict] = None, extra_toml: str = "",
                 upstream: Optional[dict] = None):
        self.sim = sim
        self.workdir = workdir or tempfile.mkdtemp(prefix="knosc-syncd-")
        os.makedirs(self.workdir, exist_ok=True)
        self.state_dir = os.path.join(self.workdir, "state")
        self.config_path = os.path.join(self.workdir, "knosc-syncd.toml")
        self.password_path = os.path.join(self.workdir, "password")
        self.log_path = os.path.join(self.workdir, "daemon.log")
        fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        settings = {"interval_seconds": 3600, "page_size": 200, "backoff_base_ms": 200, "backoff_cap_ms": 2000}
        settings.update(sync or {})
        timeouts = {"connect_timeout_seconds": 2, "transfer_timeout_seconds": 20}
        timeouts.update(upstream or {})
        lines = ["[upstream]", f'base_url = "{sim.base}"', f'username = "{username}"',
                 f'password_file = "{self.password_path}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in timeouts.items()]
        lines += ["", "[storage]", f'state_dir = "{self.state_dir}"', "",
                  "[loopback]", 'host = "127.0.0.1"', "port = 0", "", "[sync]"]
        for k, v in settings.items():
            lines.append(f"{k} = {json.dumps(v)}")
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n" + extra_toml + "\n")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Daemon":
        self._log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen([DAEMON_EXE, "run", "--config", self.config_path], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def loopback_bases(self) -> list:
        """Every loopback base this daemon's log announced, oldest first (each start picks a new port)."""
        return re.findall(r"loopback API on (\S+)", self.log())

    def restart(self, kill: bool = False, timeout: float = 30) -> str:
        """Stops the daemon (SIGTERM, or SIGKILL with kill=True), starts it again and returns the new loopback
        base once the log has announced it."""
        before = len(self.loopback_bases())
        if kill:
            self.kill9()
        else:
            self.stop(timeout=timeout)
        self.start()
        wait_until(lambda: len(self.loopback_bases()) > before, timeout, "the restarted loopback", interval=0.05)
        return self.loopback_bases()[-1]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        self._log.close()

    @contextlib.contextmanager
    def frozen(self):
        """The daemon stopped in its tracks (SIGSTOP) for the block: what others do meanwhile, it cannot see or
        race. A daemon that notices a returning link within seconds would otherwise push before a test's
        "meanwhile, someone else changes Knosc" has happened."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("knosc-syncd did not stop within %d s of SIGTERM:\n%s" % (timeout, self.log()[-4000:]))
        self._log.close()
        return self.proc.returncode

    def status(self) -> dict:
        out = subprocess.run([DAEMON_EXE, "status", "--config", self.config_path, "--json"], capture_output=True,
                             text=True, timeout=30)
        if out.returncode != 0:
            raise ValueError(out.stderr)
        return json.loads(out.stdout)

    def db(self) -> sqlite3.Connection:
        uri = "file:" + os.path.join(self.state_dir, "replica.sqlite3") + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=30)

    # -- replica contents ----------------------------------------------------------------------------------
    def rows(self, resource: str) -> dict:
        """id -> the record as the replica holds it (list row with its nested parts merged in)."""
        out = {}
        with self.db() as con:
            for rid, body, nested in con.execute("SELECT id, body, nested FROM record WHERE resource = ?", (resource,)):
                rec = json.loads(body)
                if nested:
                    rec.update(json.loads(nested))
                out[rid] = rec
        return out

    def synced(self, resources: Optional[list] = None) -> bool:
        """Every (named) resource had a complete pass and nothing is left to check or fetch."""
        st = self.status()
        for name, r in st["resources"].items():
            if resources and name not in resources:
                continue
            if r["last_complete_pass_at"] is None or r["pass_progress"]["in_progress"]:
                return False
            if r["pass_progress"]["pending_deletion_checks"] or r["pass_progress"]["nested_fetches_due"]:
                return False
        return True
