"""Logins and the other loopback calls that need Knosc's own answer never wait longer than
`[loopback] login_wait_ms` for it: past the wait, a cached user is checked against the cache, an account never
seen here gets 503 Sync.Offline, and Knosc's verdict, when it still comes, refreshes the cache or ends the
session the cache opened. Password routes and analytics not cached yet answer 503 within the same bound."""

from __future__ import annotations

import json
import time

import pytest
import requests

from harness import Daemon, Sim, wait_until
from harness import Tool, login

WAIT_MS = 1000
BOUND = (WAIT_MS + 300) / 1000.0  # every answer below must come within the wait plus 300 ms


def set_loopback_keys(d: Daemon, **keys) -> None:
    """Adds keys to the [loopback] table of the daemon's config (before it starts)."""
    with open(d.config_path, encoding="utf-8") as fh:
        text = fh.read()
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    assert 'port = 0\n' in text
    text = text.replace('port = 0\n', 'port = 0\n' + extra, 1)
    with open(d.config_path, "w", encoding="utf-8") as fh:
        fh.write(text)


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def timed_login(base: str, user: str, password: str):
    (tool, r), took = timed(lambda: login(base, user, password))
    return tool, r, took


def link(sim: Sim, mode: str, **fields) -> None:
    sim.post("/_sim/link", {"mode": mode, **fields})


def set_password_upstream(sim: Sim, email: str, new_password: str) -> None:
    """Changes an account's password in Knosc through its own reset flow (as a person would)."""
    assert requests.post(sim.base + "/forgot-password", json={"email": email}, timeout=10).status_code == 200
    token = sim.get("/_sim/reset-token", email=email)["token"]
    r = requests.post(sim.base + "/reset-password", json={"session_token": token, "new_password": new_password},
                      timeout=10)
    assert r.status_code == 200, r.text


def slow_route(sim: Sim, route: str, ms: int, method: str = "*") -> None:
    """Knosc answers `route` only after `ms` (the link itself stays up: the probe still gets its answers)."""
    sim.post("/_sim/faults", {"seed": 1, "rules": [{"route": route, "method": method, "kind": "latency", "ms": ms}]})


def link_state(d: Daemon, base: str, tool: Tool) -> str:
    return tool.get(base.replace("/api", "/syncd/status")).json()["upstream"]["state"]


@pytest.fixture(scope="module")
def env():
    sim = Sim(scale=1)
    d = Daemon(sim, sync={"interval_seconds": 5})
    set_loopback_keys(d, login_wait_ms=WAIT_MS)
    d.start()
    wait_until(d.synced, 120, "the first sync")
    base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
    yield sim, d, base
    d.stop()
    sim.stop()


@pytest.fixture()
def normal_link(env):
    sim, d, base = env
    yield
    sim.delete("/_sim/faults")
    link(sim, "normal")
    viewer, r = login(base, "viewer@acme.example", "viewer-password")
    assert r.status_code == 200, r.text
    wait_until(lambda: link_state(d, base, viewer) == "online", 30, "the link to come back")


def test_a_blackholed_link_answers_logins_within_the_wait(env, normal_link):
    sim, d, base = env
    tool, r = login(base, "viewer@acme.example", "viewer-password")
    assert r.status_code == 200
    link(sim, "blackhole")
    # Straight away, before the daemon can know the link is gone: Knosc is asked and never answers.
    again, r, took = timed_login(base, "viewer@acme.example", "viewer-password")
    assert r.status_code == 200 and r.json() == {"login": True}, r.text
    assert took <= BOUND, took
    profile = again.get(base + "/profile")
    assert profile.status_code == 200 and profile.json()["data"]["Username"] == "viewer@acme.example"
    assert again.get(base + "/customer-master", params={"page_size": 5}).status_code == 200

    # A wrong password of a cached user: refused by the cache within the wait.
    _, wrong, took = timed_login(base, "viewer@acme.example", "not-the-password")
    assert wrong.status_code == 401 and wrong.json()["Code"] == "User.InvalidCredentials"
    assert took <= BOUND, took

    # An account never seen here: Knosc cannot check it, and the loopback says so.
    _, unknown, took = timed_login(base, "wh1@acme.example", "wh1-password")
    assert unknown.status_code == 503, unknown.text
    assert unknown.json()["Code"] == "Sync.Offline"
    assert "has not logged in" in unknown.json()["Message"]
    assert took <= BOUND, took
    # Whatever the password: nothing about it can be checked.
    _, unknown_wrong, took = timed_login(base, "wh1@acme.example", "nonsense-password")
    assert unknown_wrong.status_code == 503 and took <= BOUND

    # Once the daemon knows the link is down, logins do not wait at all.
    wait_until(lambda: link_state(d, base, again) == "offline", 30, "the daemon to notice the blackhole")
    _, r, took = timed_login(base, "viewer@acme.example", "viewer-password")
    assert r.status_code == 200
    assert took < WAIT_MS / 1000.0, took
    _, unknown, took = timed_login(base, "wh1@acme.example", "wh1-password")
    assert unknown.status_code == 503 and took < WAIT_MS / 1000.0, took
    assert "viewer-password" not in d.log() and "wh1-password" not in d.log()


def test_knoscs_late_verdict_ends_the_session_or_refreshes_the_cache(env, normal_link):
    sim, d, base = env
    user, old, new = "admin@acme.example", "admin-password", "admin-password-2"
    _, r = login(base, user, old)
    assert r.status_code == 200
    try:
        # Knosc's password changes; the daemon cannot know until Knosc tells it, and Knosc is slow to.
        set_password_upstream(sim, user, new)
        slow_route(sim, "^/api/authenticate$", 4000, "POST")
        tool, r, took = timed_login(base, user, old)
        assert r.status_code == 200, r.text  # the cache still knows the old password
        assert took <= BOUND, took
        assert tool.get(base + "/profile").status_code == 200
        # Knosc's 401 arrives after the wait: the session the cache opened ends, and so does the cached password.
        ended = wait_until(lambda: (lambda p: p.json() if p.status_code == 401 else None)(tool.get(base + "/profile")),
                           20, "Knosc's late refusal to end the session")
        assert ended["Code"] == "Token.Invalid"
        said = f"local login for '{user}': Knosc no longer accepts the cached password"
        wait_until(lambda: said in d.log(), 10, "the revocation")
        # The cached password no longer works: without Knosc's answer in time, the account is unknown here.
        _, r, took = timed_login(base, user, old)
        assert r.status_code == 503 and took <= BOUND, (r.status_code, took)

        # The new password: the cache cannot vouch for it in time, but Knosc's late yes refreshes the cache...
        accepted = f"local login for '{user}': Knosc accepted it after the wait"
        assert accepted not in d.log()
        _, r, took = timed_login(base, user, new)
        assert r.status_code == 503 and took <= BOUND, (r.status_code, took)
        wait_until(lambda: accepted in d.log(), 20, "Knosc's late acceptance")
        # ...so that with the link down it works at once, from the cache.
        sim.delete("/_sim/faults")
        link(sim, "blackhole")
        fresh, r, took = timed_login(base, user, new)
        assert r.status_code == 200 and took <= BOUND, (r.status_code, took)
        assert fresh.get(base + "/profile").status_code == 200
    finally:
        sim.delete("/_sim/faults")
        link(sim, "normal")
        set_password_upstream(sim, user, old)


def test_password_routes_and_uncached_analytics_answer_within_the_wait(env, normal_link):
    sim, d, base = env
    viewer, r = login(base, "viewer@acme.example", "viewer-password")
    assert r.status_code == 200
    # Knosc slow on these routes only, the link itself up: the bound alone decides.
    slow_route(sim, "^/api/(forgot-password|reset-password|first-signin|dashboard-total)", 5000)
    for route, body in (("/forgot-password", {"email": "viewer@acme.example"}),
                        ("/reset-password", {"session_token": "x" * 20, "new_password": "whatever-123"}),
                        ("/first-signin", {"session_token": "x" * 20, "new_password": "whatever-123"})):
        r, took = timed(lambda: requests.post(base + route, json=body, timeout=20))
        assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline", (route, r.text)
        assert took <= BOUND, (route, took)
    r, took = timed(lambda: viewer.get(base + "/dashboard-total"))
    assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline", r.text
    assert took <= BOUND, took
    # Knosc's late answer to the dashboard is kept: the next request has a stored copy to fall back on.
    sim.delete("/_sim/faults")
    wait_until(lambda: viewer.get(base + "/dashboard-total").status_code == 200, 20, "the dashboard")

    # A blackholed link, before the daemon knows it is down: the same bound.
    link(sim, "blackhole")
    r, took = timed(lambda: requests.post(base + "/forgot-password", json={"email": "viewer@acme.example"},
                                          timeout=20))
    assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline" and took <= BOUND, (r.text, took)
    r, took = timed(lambda: viewer.get(base + "/dashboard-statistics"))
    assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline" and took <= BOUND, (r.text, took)
    # A dashboard fetched before: its stored copy answers within the bound.
    r, took = timed(lambda: viewer.get(base + "/dashboard-total"))
    assert r.status_code == 200 and took <= BOUND, (r.status_code, took)
