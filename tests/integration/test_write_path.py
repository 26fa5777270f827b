"""The one write path: every loopback change is committed locally with its outbox entry, pushed at once, and
answered with Knosc's own answer when the push decides within [loopback] write_wait_ms (landed or refused),
else with the pending answer. Nothing is ever answered "may or may not have been applied"."""

from __future__ import annotations

import time

import pytest

from harness import Daemon, Sim, wait_until
from harness import login
from test_offline_edits import find, other_writer, outbox, syncd, upstream_record

WAIT_MS = 1500
SLACK_S = 0.5  # a loaded 2-core machine


@pytest.fixture(scope="module")
def env():
    sim = Sim(scale=1)
    # Passes far apart: the replica learns of upstream changes only through the pushes under test.
    d = Daemon(sim, sync={"interval_seconds": 600}).start()  # write_wait_ms: its default, WAIT_MS
    wait_until(d.synced, 120, "the first sync")
    base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
    tool, r = login(base, "sync@acme.example", "sync-password")
    assert r.status_code == 200
    yield sim, d, base, tool
    d.stop()
    sim.stop()


def timed(fn):
    start = time.monotonic()
    r = fn()
    return r, time.monotonic() - start


def test_an_online_create_answers_knoscs_answer_with_the_server_id(env):
    sim, d, base, tool = env
    before = sim.stats()["created"].get("unit-master", 0)
    r, took = timed(lambda: tool.post(base + "/unit-master", json={"Unit Code": "WP1", "Unit Name": "write path"}))
    assert r.status_code in (200, 201), r.text
    assert "X-Knosc-Syncd-Pending" not in r.headers
    created = upstream_record(sim, "unit-master", "Unit Code", "WP1")
    assert len(created) == 1
    # Knosc's own answer: its server id, not a local one.
    assert r.json()["id"] == created[0]["id"] and created[0]["id"] > 0
    assert took < WAIT_MS / 1000 + SLACK_S
    assert sim.stats()["created"].get("unit-master", 0) == before + 1
    # The replica already holds Knosc's record: the next read shows it, not pending.
    one = tool.get(f"{base}/unit-master/{created[0]['id']}")
    assert one.status_code == 200 and one.json()["data"]["Unit Name"] == "write path"
    assert "X-Knosc-Syncd-Pending" not in one.headers
    assert [u["id"] for u in find(tool, base, "unit-master", "Unit Code", "WP1")] == [created[0]["id"]]
    assert outbox(tool, base) == []


def test_an_online_update_answers_knoscs_answer_and_the_replica_holds_upstreams_record(env):
    sim, d, base, tool = env
    supplier = tool.get(base + "/supplier-master", params={"page_size": 1}).json()["data"]["rows"][0]
    r = tool.put(f"{base}/supplier-master/{supplier['id']}", json={"Supplier Name": "Renamed on the write path"})
    assert r.status_code == 200 and r.json() == {"message": "Update successful"}, r.text
    assert "X-Knosc-Syncd-Pending" not in r.headers
    assert upstream_record(sim, "supplier-master", "id", supplier["id"])[0]["Supplier Name"] == \
        "Renamed on the write path"
    one = tool.get(f"{base}/supplier-master/{supplier['id']}")
    assert one.json()["data"] == upstream_record(sim, "supplier-master", "id", supplier["id"])[0]
    assert "X-Knosc-Syncd-Pending" not in one.headers


def test_a_change_knosc_refuses_in_time_is_its_error_undone_and_closed(env):
    sim, d, base, tool = env
    # Someone creates the unit in Knosc directly; the replica does not know it yet (passes are far apart), so
    # the change passes the local checks and only Knosc can refuse it.
    other = other_writer(sim)
    r = other.post(sim.base + "/unit-master", json={"Unit Code": "WPDUP", "Unit Name": "made in Knosc"})
    assert r.status_code in (200, 201), r.text
    assert find(tool, base, "unit-master", "Unit Code", "WPDUP") == []
    r = tool.post(base + "/unit-master", json={"Unit Code": "WPDUP", "Unit Name": "made at the plant"})
    assert r.status_code == 400 and r.json()["Code"].endswith(".AlreadyExists"), r.text
    assert "X-Knosc-Syncd-Pending" not in r.headers
    # Undone: the plant's version is nowhere, and the entry is closed, not waiting for a person.
    assert [u["Unit Name"] for u in find(tool, base, "unit-master", "Unit Code", "WPDUP")] in ([], ["made in Knosc"])
    assert outbox(tool, base) == []
    status = tool.get(syncd(base) + "/status").json()
    assert status["push"]["rejected"] == 0
    assert len(upstream_record(sim, "unit-master", "Unit Code", "WPDUP")) == 1


def test_a_silent_link_gives_the_pending_answer_within_the_bound_and_the_change_lands_later(env):
    sim, d, base, tool = env
    supplier = tool.get(base + "/supplier-master", params={"page_size": 2}).json()["data"]["rows"][1]
    sim.post("/_sim/link", {"mode": "blackhole"})
    try:
        r, took = timed(lambda: tool.put(f"{base}/supplier-master/{supplier['id']}",
                                         json={"Supplier Name": "Sent into silence"}))
        assert r.status_code == 200 and r.headers.get("X-Knosc-Syncd-Pending") == "true", r.text
        assert took < WAIT_MS / 1000 + SLACK_S, took
        assert r.json() == {"message": "Update successful"}
        # Committed locally: reads show it at once.
        assert tool.get(f"{base}/supplier-master/{supplier['id']}").json()["data"]["Supplier Name"] == \
            "Sent into silence"
        # Once the link is known down, a change does not wait at all.
        wait_until(lambda: d.status()["online"] is False, 30, "the daemon to report the link down")
        r, took = timed(lambda: tool.post(base + "/unit-master", json={"Unit Code": "WPOFF", "Unit Name": "x"}))
        assert r.status_code == 200 and r.headers.get("X-Knosc-Syncd-Pending") == "true"
        assert r.json()["id"] < 0
        assert took < 0.5, took
    finally:
        sim.post("/_sim/link", {"mode": "normal"})
    wait_until(lambda: outbox(tool, base) == [], 60, "the outbox to drain after the link returned")
    assert upstream_record(sim, "supplier-master", "id", supplier["id"])[0]["Supplier Name"] == "Sent into silence"
    assert len(upstream_record(sim, "unit-master", "Unit Code", "WPOFF")) == 1


def test_a_lost_answer_is_settled_by_the_pusher_never_answered_as_unknown(env):
    sim, d, base, tool = env
    before = sim.stats()["created"].get("unit-master", 0)
    # Knosc applies the create and the answer is lost (the connection reset after the write).
    sim.post("/_sim/faults", {"seed": 1, "rules": [
        {"route": "^/api/unit-master$", "method": "POST", "kind": "reset_after", "count": 1}]})
    try:
        r = tool.post(base + "/unit-master", json={"Unit Code": "WPLOST", "Unit Name": "answer lost"})
        assert r.status_code in (200, 201), r.text
        assert r.json().get("Code") != "Sync.OutcomeUnknown"
    finally:
        sim.delete("/_sim/faults")
    wait_until(lambda: outbox(tool, base) == [], 60, "the pusher to settle the lost answer")
    created = upstream_record(sim, "unit-master", "Unit Code", "WPLOST")
    assert len(created) == 1, "created exactly once"
    assert sim.stats()["created"].get("unit-master", 0) == before + 1
    wait_until(lambda: [u["id"] for u in find(tool, base, "unit-master", "Unit Code", "WPLOST")] ==
               [created[0]["id"]], 30, "the server id in the replica")


def test_a_note_takes_the_same_path(env):
    sim, d, base, tool = env
    # Notes, like every other change, take the same path.
    ticket = tool.get(base + "/issue-tracker-tickets", params={"page_size": 1}).json()["data"]["rows"][0]
    r = tool.post(base + "/issue-tracker-notes", json={"Ticket Id": ticket["id"], "Note": "via the write path"})
    assert r.status_code in (200, 201), r.text
    assert "X-Knosc-Syncd-Pending" not in r.headers
    notes = tool.get(f"{base}/issue-tracker-tickets/{ticket['id']}").json()["data"].get("Notes", [])
    assert any(n.get("Note") == "via the write path" for n in notes), notes
    assert outbox(tool, base) == []


def test_an_online_delete_answers_knoscs_answer_and_the_record_is_gone(env):
    sim, d, base, tool = env
    r = tool.post(base + "/unit-master", json={"Unit Code": "WPDEL", "Unit Name": "to delete"})
    assert r.status_code in (200, 201) and "X-Knosc-Syncd-Pending" not in r.headers, r.text
    uid = r.json()["id"]
    r = tool.delete(f"{base}/unit-master/{uid}")
    assert r.status_code == 200 and "X-Knosc-Syncd-Pending" not in r.headers, r.text
    assert upstream_record(sim, "unit-master", "id", uid) == []
    gone = tool.get(f"{base}/unit-master/{uid}")
    assert gone.status_code in (400, 404) and gone.json()["Code"].endswith("NotFound"), gone.text
    assert find(tool, base, "unit-master", "Unit Code", "WPDEL") == []


def test_a_change_that_meets_a_conflict_answers_pending_at_once_naming_it(env):
    sim, d, base, tool = env
    customer = tool.get(base + "/customer-master", params={"page_size": 1}).json()["data"]["rows"][0]
    # Knosc changes the same field first; the replica has not seen it (passes are far apart).
    other = other_writer(sim)
    assert other.put(f"{sim.base}/customer-master/{customer['id']}", json={"Customer Name": "Named in Knosc"}).ok
    r, took = timed(lambda: tool.put(f"{base}/customer-master/{customer['id']}",
                                     json={"Customer Name": "Named at the plant"}))
    assert r.status_code == 200 and r.headers.get("X-Knosc-Syncd-Pending") == "true", r.text
    conflict_id = r.headers.get("X-Knosc-Syncd-Conflict")
    assert conflict_id, r.headers
    assert took < WAIT_MS / 1000 + SLACK_S
    c = tool.get(f"{syncd(base)}/conflicts").json()["conflicts"]
    assert [x["id"] for x in c] == [int(conflict_id)]
    assert upstream_record(sim, "customer-master", "id", customer["id"])[0]["Customer Name"] == "Named in Knosc"
    r = tool.post(f"{syncd(base)}/conflicts/{conflict_id}/resolve", json={"resolution": "keep-remote"})
    assert r.status_code == 200, r.text
    wait_until(lambda: outbox(tool, base) == [], 30, "the conflict to settle")
    wait_until(lambda: tool.get(f"{base}/customer-master/{customer['id']}").json()["data"]["Customer Name"] ==
               "Named in Knosc", 30, "Knosc's version in the replica")
