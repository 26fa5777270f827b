"""The offline horizon: while the link is down, `knosc-syncd status`, GET /syncd/status and /metrics say how long
it has been down, how old the oldest change waiting for Knosc is, when offline login stops working for each
cached user and who cannot log in offline at all; the log warns once per user when 80 % of their offline login
period has passed."""

from __future__ import annotations

import re
import subprocess
import time

import pyotp
import pytest
import requests

from harness import DAEMON_EXE, Daemon, Sim, wait_until
from test_login_bound import set_loopback_keys
from harness import login

TTL = 20  # offline_login_ttl_seconds: 80 % of it passes 16 s after a login
TOTP_SECRET = "JBSWY3DPEHPK3PXP"  # knosc-sim's twofa@acme.example


@pytest.fixture(scope="module")
def env():
    sim = Sim(scale=1)
    d = Daemon(sim, sync={"interval_seconds": 5})
    set_loopback_keys(d, offline_login_ttl_seconds=TTL)
    d.start()
    wait_until(d.synced, 120, "the first sync")
    base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
    yield sim, d, base
    d.stop()
    sim.stop()


def metric(text: str, name: str, labels: str = "") -> float | None:
    m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_the_horizon_while_the_link_is_down(env):
    sim, d, base = env
    syncd = base.replace("/api", "/syncd")
    viewer, r = login(base, "viewer@acme.example", "viewer-password")
    assert r.status_code == 200
    logged_in_at = time.time()
    # A two-factor user, logged in through the loopback: cached, but never usable offline.
    twofa, r = login(base, "twofa@acme.example", "twofa-password")
    assert r.json() == {"requires_2fa": True}
    r = twofa.post(base + "/verify-2fa", json={"username": "twofa@acme.example",
                                               "totp_code": pyotp.TOTP(TOTP_SECRET).now()})
    assert r.status_code == 200, r.text

    # Online: nothing is down, nothing waits.
    horizon = wait_until(lambda: (d.status().get("offline_horizon") or {}).get("offline_logins") and
                         d.status()["offline_horizon"], 30, "the horizon in the status")
    assert horizon["link_down_seconds"] is None and horizon["outbox_oldest_pending_seconds"] is None
    metrics = requests.get(syncd.replace("/syncd", "/metrics"), timeout=10).text
    assert metric(metrics, "knosc_syncd_link_down_seconds") == 0

    # An editor logged in while online, to make a change during the outage.
    editor, r = login(base, "admin@acme.example", "admin-password")
    assert r.status_code == 200
    supplier = editor.get(base + "/supplier-master", params={"page_size": 1}).json()["data"]["rows"][0]

    sim.post("/_sim/offline")
    try:
        wait_until(lambda: d.status()["online"] is False, 30, "the daemon to notice the outage")
        # Never logged in here: cannot be checked offline.
        _, r = login(base, "wh1@acme.example", "wh1-password")
        assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline"

        changed_at = time.time()
        r = editor.put(f"{base}/supplier-master/{supplier['id']}", json={"Supplier Name": "Renamed in the outage"})
        assert r.status_code == 200 and r.headers.get("X-Knosc-Syncd-Pending") == "true", r.text

        def status_horizon():
            h = d.status()["offline_horizon"]
            return h if h["outbox_oldest_pending_seconds"] is not None else None

        h = wait_until(status_horizon, 30, "the pending change in the horizon")
        assert h["link_down_seconds"] >= 0 and h["link_down_since"]
        assert h["outbox_oldest_pending_seconds"] <= time.time() - changed_at + 15
        users = {u["user"]: u for u in h["offline_logins"]}
        assert users["viewer@acme.example"]["offline_login_until"] is not None
        assert users["viewer@acme.example"]["offline_login_seconds_left"] <= TTL
        assert users["twofa@acme.example"]["offline_login"] is False
        assert [c["user"] for c in h["cannot_log_in_offline"]] == ["twofa@acme.example"]

        # The same through the loopback and /metrics, live.
        live = viewer.get(syncd + "/status").json()["offline_horizon"]
        assert live["link_down_seconds"] is not None and live["outbox_oldest_pending_seconds"] is not None
        metrics = requests.get(syncd.replace("/syncd", "/metrics"), timeout=10).text
        assert 'knosc_syncd_upstream_online 0' in metrics
        # The time down counts up while the link stays down.
        metrics_url = syncd.replace("/syncd", "/metrics")
        wait_until(lambda: metric(requests.get(metrics_url, timeout=10).text, "knosc_syncd_link_down_seconds") >= 2,
                   15, "the time down to count up")
        assert metric(metrics, "knosc_syncd_outbox_oldest_pending_seconds") >= 0
        # /metrics needs no session, so it names no user: counts and the soonest expiry.
        assert metric(metrics, "knosc_syncd_offline_login_users", '{state="two_factor"}') == 1
        assert metric(metrics, "knosc_syncd_offline_login_users", '{state="valid"}') >= 1
        left = metric(metrics, "knosc_syncd_offline_login_next_expiry_seconds")
        assert left is not None and 0 < left <= TTL
        assert "acme.example" not in metrics

        text = subprocess.run([DAEMON_EXE, "status", "--config", d.config_path], capture_output=True, text=True,
                              timeout=30).stdout
        assert "offline horizon: link down for" in text
        assert "twofa@acme.example: cannot log in offline (two-factor authentication)" in text

        # 80 % of the viewer's offline login period: one warning in the log, and one only.
        warning = "offline horizon: offline login of 'viewer@acme.example' stop"
        wait_until(lambda: warning in d.log(), TTL + 15, "the warning before offline login stops working")
        wait_until(lambda: time.time() > logged_in_at + TTL + 11, TTL + 15, "the next checks")
        assert d.log().count(warning) == 1
        assert "viewer-password" not in d.log()
    finally:
        sim.post("/_sim/online")
        wait_until(lambda: d.status()["online"] is True, 30, "the link to come back")
