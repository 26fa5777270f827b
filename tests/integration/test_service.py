"""knosc-syncd as a service: sd_notify messages, the watchdog, a graceful stop, the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile

from harness import DAEMON_EXE, Daemon, Sim, wait_until


class NotifySocket:
    """A stand-in for systemd's notification socket (AF_UNIX datagrams), collecting what the daemon says."""

    def __init__(self):
        self.path = os.path.join(tempfile.mkdtemp(prefix="knosc-notify-"), "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def said(self, text: str) -> bool:
        return any(text in m for m in self.drain())


def test_ready_watchdog_and_stopping_are_sent_to_systemd():
    sim = Sim(scale=1)
    notify = NotifySocket()
    d = Daemon(sim)
    os.environ["NOTIFY_SOCKET"] = notify.path
    os.environ["WATCHDOG_USEC"] = "400000"
    try:
        d.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
        del os.environ["WATCHDOG_USEC"]
    try:
        wait_until(lambda: notify.said("READY=1"), 30, "READY=1")
        wait_until(lambda: sum("WATCHDOG=1" in m for m in notify.drain()) >= 3, 30, "watchdog pings")
        wait_until(d.synced, 120, "the sync")
    finally:
        assert d.stop() == 0
    assert notify.said("STOPPING=1")
    sim.stop()


def test_sigterm_in_the_middle_of_a_pass_stops_cleanly_and_the_pass_resumes():
    sim = Sim(scale=1)
    sim.post("/_sim/faults", {"seed": 4, "rules": [{"route": "^/api/", "method": "GET", "kind": "latency", "ms": 100}]})
    d = Daemon(sim, sync={"page_size": 10}).start()
    try:
        wait_until(lambda: d.status()["resources"]["purchase-order"]["pass_progress"]["pages_done"] >= 2, 60, "a pass under way")
        assert d.stop(timeout=20) == 0
        st = d.status()["resources"]["purchase-order"]
        assert st["pass_progress"]["in_progress"]
        sim.delete("/_sim/faults")
        d.start()
        wait_until(d.synced, 120, "the resumed sync")
        assert d.status()["resources"]["purchase-order"]["pass_progress"]["pass"] == st["pass_progress"]["pass"]
    finally:
        d.stop()
        sim.stop()


def test_two_daemons_never_share_a_state_directory():
    sim = Sim(scale=1)
    d = Daemon(sim).start()
    try:
        wait_until(lambda: os.path.exists(os.path.join(d.state_dir, "replica.sqlite3")), 30, "the replica")
        second = subprocess.run([DAEMON_EXE, "run", "--config", d.config_path], capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "already running" in second.stderr
    finally:
        d.stop()
        sim.stop()


def test_command_line_errors_are_clear():
    out = subprocess.run([DAEMON_EXE, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("knosc-syncd ")
    out = subprocess.run([DAEMON_EXE, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "status --config FILE" in out.stdout
    out = subprocess.run([DAEMON_EXE, "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown command 'frobnicate'" in out.stderr
    out = subprocess.run([DAEMON_EXE, "run"], capture_output=True, text=True)
    assert out.returncode == 2 and "needs --config FILE" in out.stderr
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "c.toml")
        with open(cfg, "w") as fh:
            fh.write('[upstream]\nbase_url = "http://127.0.0.1:1/api"\nusername = "u"\npassword_file = "%s/pw"\n'
                     '[storage]\nstate_dir = "%s/state"\n' % (tmp, tmp))
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as fh:
            fh.write("secret-value\n")
        os.chmod(pw, 0o644)
        out = subprocess.run([DAEMON_EXE, "run", "--config", cfg], capture_output=True, text=True, timeout=30)
        assert out.returncode == 1
        assert "must be 0600 or stricter" in out.stderr and "secret-value" not in out.stderr
        out = subprocess.run([DAEMON_EXE, "status", "--config", cfg], capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "no replica" in out.stderr
