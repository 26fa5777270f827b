"""The link state within seconds. For each shape of outage knosc-sim's link faults make (connections refused,
a blackhole that accepts and never answers, answers that stall midway, a 2 kB/s link), measure when the loopback
reports the link offline and online again, and that what backed off during the outage (passes and a push)
runs again as soon as the link is back. The measured times are printed (pytest -s shows them).

Backoffs are long here (90 s at least): a pass or a push that runs again within seconds of the return can only
have been woken by the return."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest

from harness import Daemon, Sim, wait_until
from harness import login
from test_offline_edits import outbox, syncd, upstream_record

OFFLINE_WITHIN = 10.0  # a hang is reported offline this soon after it begins
ONLINE_WITHIN = 5.0  # a return is reported online this soon
RETRY_WITHIN = 5.0  # what backed off runs again this soon after the return
NO_PROGRESS = 10  # the daemon's default no-progress timeout, which a slow page must outlast

FAULTS = {
    "refuse": {"mode": "refuse"},
    "blackhole": {"mode": "blackhole"},
    "stall": {"mode": "stall", "after_bytes": 64},
}


@pytest.fixture()
def env():
    sim = Sim(scale=1)
    # The daemon's own defaults for the link (probe, no-progress timeout, no cap on a whole exchange); passes
    # start every 2 s so that some are always running into an outage.
    d = Daemon(sim, sync={"interval_seconds": 2, "backoff_base_ms": 180_000, "backoff_cap_ms": 360_000},
               upstream={"connect_timeout_seconds": 5, "transfer_timeout_seconds": 0},
               extra_toml='[log]\nlevel = "debug"').start()
    try:
        wait_until(d.synced, 180, "the first sync")
        base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
        tool, r = login(base, "sync@acme.example", "sync-password")
        assert r.status_code == 200
        yield sim, d, base, tool
    finally:
        d.stop()
        sim.stop()


def upstream_header(tool, base) -> str:
    r = tool.get(base + "/unit-master", params={"page_size": 1}, timeout=5)
    assert r.status_code == 200, r.text
    return r.headers["X-Knosc-Syncd-Upstream"]


def until_header(tool, base, state: str, limit: float) -> None:
    """Until the loopback's X-Knosc-Syncd-Upstream says `state` (polled every 50 ms)."""
    wait_until(lambda: upstream_header(tool, base) == state, limit, f"the loopback to report the link {state}",
               interval=0.05)


def reported(tool, base, d, state: str) -> dict:
    """What /syncd/status, /metrics and `knosc-syncd status` say of the link, once all three say `state`."""
    root = base[: -len("/api")]
    online = 1 if state == "online" else 0

    def agree():
        live = tool.get(syncd(base) + "/status").json()
        metrics = tool.get(root + "/metrics").text
        cli = d.status()
        ok = (live["upstream"]["state"] == state and live["online"] is bool(online)
              and cli["upstream"]["state"] == state and cli["online"] is bool(online)
              and f"knosc_syncd_upstream_online {online}\n" in metrics)
        return ok and (live, metrics)

    live, metrics = wait_until(agree, 5, f"every report to say the link is {state}")
    assert live["upstream"]["reason"] and live["upstream"]["since"]
    assert "knosc_syncd_upstream_state_since_timestamp_seconds " in metrics
    return live["upstream"]


def iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def passes_failed_since(d, since: str) -> list:
    return [name for name, r in d.status()["resources"].items()
            if r["last_error"] and r["last_error"]["at"] >= since]


def list_requests(sim, resources) -> dict:
    counts = sim.stats()["requests"]
    return {r: counts.get(f"GET /api/{r}", 0) for r in resources}


def a_push_backing_off(sim, tool, base, supplier) -> dict:
    """An outbox entry whose last attempt failed on the link and that now waits out its long backoff."""
    sim.post("/_sim/link", {"mode": "refuse"})
    until_header(tool, base, "offline", 30)
    r = tool.put(f"{base}/supplier-master/{supplier['id']}", json={"Supplier Name": "Renamed across outages"})
    assert r.status_code == 200 and r.headers.get("X-Knosc-Syncd-Pending") == "true", r.text
    # Knosc comes back but resets every PUT of a supplier before reading it: the push fails on the link.
    sim.post("/_sim/faults", {"seed": 1, "rules": [
        {"route": "^/api/supplier-master/", "method": "PUT", "kind": "reset_before"}]})
    sim.post("/_sim/link", {"mode": "normal"})
    entries = wait_until(lambda: [e for e in outbox(tool, base) if e["attempts"] >= 1 and e["next_attempt_at"]],
                         60, "the push to fail and back off")
    sim.delete("/_sim/faults")
    return entries[0]


def seconds_left(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - time.time()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_outage_is_reported_within_seconds_and_what_backed_off_runs_at_once(env, fault):
    sim, d, base, tool = env
    supplier = tool.get(base + "/supplier-master", params={"page_size": 1}).json()["data"]["rows"][0]
    entry = a_push_backing_off(sim, tool, base, supplier)

    since = iso_now()
    t_fault = time.monotonic()
    sim.post("/_sim/link", FAULTS[fault])
    until_header(tool, base, "offline", 3 * OFFLINE_WITHIN)
    offline_after = time.monotonic() - t_fault
    down = reported(tool, base, d, "offline")
    # Passes run into the outage (a hang ends by the no-progress timeout) and back off for 90 s or more.
    failed = wait_until(lambda: passes_failed_since(d, since), 60, "a pass to fail during the outage")
    before = list_requests(sim, failed)
    waiting = [e for e in outbox(tool, base) if e["seq"] == entry["seq"]]
    assert waiting and seconds_left(waiting[0]["next_attempt_at"]) > 20, waiting

    t_back = time.monotonic()
    sim.post("/_sim/link", {"mode": "normal"})
    until_header(tool, base, "online", 3 * ONLINE_WITHIN)
    online_after = time.monotonic() - t_back
    up = reported(tool, base, d, "online")
    wait_until(lambda: all(n > before[r] for r, n in list_requests(sim, failed).items()), 60,
               "the passes that backed off to run again", interval=0.05)
    passes_after = time.monotonic() - t_back
    wait_until(lambda: all(e["seq"] != entry["seq"] for e in outbox(tool, base)), 60, "the push to land",
               interval=0.05)
    push_after = time.monotonic() - t_back

    print(f"\n[link {fault}] offline reported {offline_after:.2f} s after the fault began ({down['reason']}); "
          f"online {online_after:.2f} s after it ended ({up['reason']}); {len(failed)} passes that backed off "
          f"ran again after {passes_after:.2f} s, the push landed after {push_after:.2f} s")
    assert offline_after <= OFFLINE_WITHIN
    assert online_after <= ONLINE_WITHIN
    assert passes_after <= RETRY_WITHIN
    assert push_after <= RETRY_WITHIN
    assert upstream_record(sim, "supplier-master", "id", supplier["id"])[0]["Supplier Name"] == "Renamed across outages"


PAGE_LINE = re.compile(r"knosc GET /([\w-]+)\?page=\S+ -> 200 in ([\d.]+)s")


def test_a_slow_link_whose_bytes_keep_moving_stays_online(env):
    sim, d, base, tool = env
    log_from = len(d.log())
    since = iso_now()
    sim.post("/_sim/link", {"mode": "bandwidth", "bytes_per_second": 2000})
    start = time.monotonic()
    states = set()
    try:
        # Until a list page has taken longer than the no-progress timeout at 2 kB/s and arrived whole, the link
        # is sampled: bytes keep moving, so it is online all along.
        def slow_page():
            states.add(upstream_header(tool, base))
            pages = [(name, float(s)) for name, s in PAGE_LINE.findall(d.log()[log_from:])]
            return [p for p in pages if p[1] > NO_PROGRESS + 2]

        slow = wait_until(slow_page, 180, "a list page slower than the no-progress timeout", interval=0.1)
        window = time.monotonic() - start
    finally:
        sim.post("/_sim/link", {"mode": "normal"})
    print(f"\n[link bandwidth 2000 B/s] reported {sorted(states)} for {window:.1f} s while list pages took "
          + ", ".join(f"{name} {secs:.1f} s" for name, secs in slow))
    assert states == {"online"}
    assert reported(tool, base, d, "online")["state"] == "online"
    # Nothing was cut: no pass failed while the link was slow.
    assert passes_failed_since(d, since) == []
    assert "too slow" not in d.log()[log_from:]
