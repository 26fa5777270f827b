"""The mirror, black-box: the real knosc-syncd against a real knosc-sim over loopback TCP."""

from __future__ import annotations

import time

import pytest

from harness import Daemon, Sim, wait_until
from mirror_check import differences

SYNC_TIMEOUT = 120


@pytest.fixture
def sim():
    s = Sim(scale=1)
    yield s
    s.stop()


def started(sim: Sim, **kw) -> Daemon:
    return Daemon(sim, **kw).start()


def pass_generation(d: Daemon, resource: str) -> int:
    return d.status()["resources"][resource]["pass_progress"]["pass"]


def wait_new_complete_pass(d: Daemon, resources: list[str], after: dict[str, int], timeout: float = SYNC_TIMEOUT):
    def done():
        st = d.status()["resources"]
        for r in resources:
            p = st[r]["pass_progress"]
            if p["pass"] <= after[r] or p["in_progress"] or p["pending_deletion_checks"] or p["nested_fetches_due"]:
                return False
        return True

    wait_until(done, timeout, f"a new complete pass of {resources}")


def test_first_sync_equals_the_snapshot_and_a_second_pass_writes_nothing(sim):
    d = started(sim, sync={"interval_seconds": 2})
    try:
        wait_until(d.synced, SYNC_TIMEOUT, "the first sync")
        assert differences(sim, d) == []
        st = d.status()
        assert st["online"] is True and st["running"] is True
        for name, r in st["resources"].items():
            assert r["last_error"] is None, (name, r["last_error"])
            assert r["access"] == "ok", name
        # The next passes over the unchanged tenant write no row.
        before = {n: r["pass_progress"]["pass"] for n, r in st["resources"].items()}
        wait_new_complete_pass(d, list(before), before)
        for name, r in d.status()["resources"].items():
            assert r["pass_progress"]["rows_written"] == 0, name
    finally:
        assert d.stop() == 0
    # Stopped: status still answers from the replica, and says the daemon is not running.
    st = d.status()
    assert st["running"] is False and st["online"] is False


def test_other_writers_changes_appear_after_the_next_pass(sim):
    # Knosc gives no sign when only the lines of a BOM or manufacturing order change, or when a renamed item's
    # description changes inside them: nested parts are fetched again every nested_refresh_seconds.
    d = started(sim, sync={"interval_seconds": 1, "nested_refresh_seconds": 1})
    try:
        wait_until(d.synced, SYNC_TIMEOUT, "the first sync")
        names = ["item-master", "purchase-order", "manufacturing-order", "issue-tracker-tickets", "bill-of-materials"]
        before = {n: pass_generation(d, n) for n in names + ["purchase-order-details"]}
        changes = {n: sim.post("/_sim/mutate", {"resource": n, "create": 3, "update": 4, "delete": 2}) for n in names}
        assert all(c["created"] and c["updated"] and c["deleted"] for c in changes.values()), changes
        wait_new_complete_pass(d, list(before), before)
        wait_until(lambda: differences(sim, d) == [], SYNC_TIMEOUT, "the replica to equal the snapshot")
        replica_items = d.rows("item-master")
        for rid in changes["item-master"]["deleted"]:
            assert rid not in replica_items
        for rid in changes["item-master"]["created"]:
            assert rid in replica_items
    finally:
        d.stop()


def test_kill9_mid_pass_resumes_without_rereading_finished_pages(sim):
    # Slow list pages and small pages make a pass long enough to interrupt.
    sim.post("/_sim/faults", {"seed": 1, "rules": [
        {"route": "^/api/purchase-order$", "method": "GET", "kind": "latency", "ms": 150}]})
    d = started(sim, sync={"page_size": 10, "interval_seconds": 3600})
    try:
        wait_until(lambda: d.status()["resources"]["purchase-order"]["pass_progress"]["pages_done"] >= 4, 60,
                   "four pages of purchase-order")
        d.kill9()
        st = d.status()["resources"]["purchase-order"]
        assert st["pass_progress"]["in_progress"]
        done_pages = st["pass_progress"]["pages_done"]
        generation = st["pass_progress"]["pass"]
        d.start()
        wait_until(lambda: d.status()["resources"]["purchase-order"]["last_complete_pass_at"] is not None, 120,
                   "the resumed pass to complete")
        st = d.status()["resources"]["purchase-order"]
        assert st["pass_progress"]["pass"] == generation, "the interrupted pass was resumed, not restarted"
        upstream = sim.snapshot(resource="purchase-order")["purchase-order"]["count"]
        pages = upstream // 10 + 1
        listed = sim.requests_matching("GET /api/purchase-order")
        # Every page once, plus at most the one page that was in flight when the process died.
        assert listed <= pages + 1, (listed, pages, done_pages)
        assert "resuming pass" in d.log()
        sim.delete("/_sim/faults")
        wait_until(d.synced, SYNC_TIMEOUT, "the rest of the sync")
        assert differences(sim, d, ["purchase-order"]) == []
    finally:
        d.stop()


def test_rows_shifting_between_pages_never_delete_a_live_row(sim):
    d = started(sim, sync={"page_size": 10, "interval_seconds": 1})
    try:
        wait_until(d.synced, SYNC_TIMEOUT, "the first sync")
        # Slow pages, then delete early rows while a pass is on its way: later rows shift into pages already read.
        sim.post("/_sim/faults", {"seed": 2, "rules": [
            {"route": "^/api/item-master$", "method": "GET", "kind": "latency", "ms": 200}]})
        gen = pass_generation(d, "item-master")
        wait_until(lambda: d.status()["resources"]["item-master"]["pass_progress"]["pages_done"] >= 3
                   and d.status()["resources"]["item-master"]["pass_progress"]["pass"] > gen, 60, "a pass under way")
        checks_before = sim.requests_matching("GET /api/item-master/{id}")
        deleted = sim.post("/_sim/mutate", {"resource": "item-master", "create": 0, "update": 0, "delete": 5})["deleted"]
        assert len(deleted) == 5
        sim.delete("/_sim/faults")
        after = {"item-master": pass_generation(d, "item-master")}
        wait_new_complete_pass(d, ["item-master"], after)
        assert differences(sim, d, ["item-master"]) == []
        # Shifted rows were asked about before anything was deleted.
        assert sim.requests_matching("GET /api/item-master/{id}") > checks_before
    finally:
        d.stop()


def test_upstream_going_offline_is_survived_and_sync_resumes(sim):
    d = started(sim, sync={"interval_seconds": 1})
    try:
        wait_until(d.synced, SYNC_TIMEOUT, "the first sync")
        sim.post("/_sim/offline")
        wait_until(lambda: d.status()["online"] is False, 30, "the daemon to notice the outage")
        changed = sim.post("/_sim/mutate", {"resource": "supplier-master", "create": 2, "update": 2, "delete": 0})
        assert d.alive()
        sim.post("/_sim/online")
        wait_until(lambda: d.status()["online"] is True, 30, "the daemon to notice the link is back")
        wait_until(lambda: differences(sim, d, ["supplier-master"]) == [], SYNC_TIMEOUT, "the changes made offline")
        assert set(changed["created"]) <= set(d.rows("supplier-master"))
    finally:
        d.stop()


def test_tokens_expiring_mid_pass_recover():
    sim = Sim("--access-ttl", "1", scale=1)
    try:
        # Slow responses stretch every pass past the one-second token lifetime.
        sim.post("/_sim/faults", {"seed": 3, "rules": [{"route": "^/api/", "method": "GET", "kind": "latency", "ms": 30}]})
        d = started(sim, sync={"page_size": 50, "interval_seconds": 1})
        try:
            wait_until(d.synced, SYNC_TIMEOUT, "a sync longer than the token lifetime")
            wait_until(lambda: sim.requests_matching("POST /api/token-refresh") >= 3, 60, "several token refreshes")
            sim.post("/_sim/expire-tokens")
            changed = sim.post("/_sim/mutate", {"resource": "unit-master", "create": 2, "update": 1, "delete": 0})
            wait_until(lambda: set(changed["created"]) <= set(d.rows("unit-master")), 60, "changes made after the expiry")
            sim.delete("/_sim/faults")
            wait_until(lambda: differences(sim, d, ["unit-master", "item-master", "purchase-order"]) == [], 60,
                       "the replica to equal the snapshot")
            # Expired tokens were refreshed or replaced by a new login, never surfaced as pass errors.
            for name, r in d.status()["resources"].items():
                assert r["last_error"] is None or "401" not in r["last_error"]["message"], (name, r["last_error"])
        finally:
            d.stop()
    finally:
        sim.stop()


def test_a_wrong_password_does_not_hammer_the_account(sim):
    d = started(sim, password="not-the-password")
    try:
        wait_until(lambda: sim.requests_matching("POST /api/authenticate") >= 1, 30, "a login attempt")
        wait_until(lambda: "login refused" in d.log(), 30, "the refusal in the log")
        time.sleep(3)  # a window in which a hammering client would have retried many times
        assert sim.requests_matching("POST /api/authenticate") == 1
        assert "not-the-password" not in d.log()
        errors = [r["last_error"] for r in d.status()["resources"].values() if r["last_error"]]
        assert errors and all("login" in e["message"] for e in errors)
    finally:
        d.stop()


def test_a_locked_account_is_left_alone_until_the_lock_ends():
    sim = Sim("--lockout-base", "4", scale=1)
    try:
        import requests

        for _ in range(3):
            requests.post(sim.base + "/authenticate", json={"username": "sync@acme.example", "password": "wrong"}, timeout=10)
        logins_before = sim.requests_matching("POST /api/authenticate")
        d = started(sim)
        try:
            wait_until(lambda: "locked" in d.log(), 30, "the lockout to be noticed")
            # Only the first attempt hits the lock; the next one waits for Retry-After and then succeeds.
            wait_until(d.synced, SYNC_TIMEOUT, "the sync after the lock ends")
            assert sim.requests_matching("POST /api/authenticate") - logins_before == 2
        finally:
            d.stop()
    finally:
        sim.stop()
