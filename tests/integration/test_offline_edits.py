"""Changes made through the loopback while Knosc cannot be reached: validated and applied locally, durable
across kill -9, pushed exactly once when the link is back, merged with other writers' changes, and parked for
a person when they collide or Knosc refuses them."""

from __future__ import annotations

import json
import subprocess

import pytest

from harness import DAEMON_EXE, Daemon, Sim, wait_until
from harness import Tool, login


@pytest.fixture()
def env():
    sim = Sim(scale=1)
    d = Daemon(sim, sync={"interval_seconds": 2}, extra_toml="[push]\nconflict_tickets = true").start()
    wait_until(d.synced, 120, "the first sync")
    base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
    tool, r = login(base, "sync@acme.example", "sync-password")
    assert r.status_code == 200
    yield sim, d, base, tool
    d.stop()
    sim.stop()


def offline(sim, d):
    sim.post("/_sim/offline")
    wait_until(lambda: d.status()["online"] is False, 30, "the daemon to notice the outage")


def online(sim, d):
    sim.post("/_sim/online")
    wait_until(lambda: d.status()["online"] is True, 60, "the link to come back")


def syncd(base: str) -> str:
    return base[: -len("/api")] + "/syncd"


def outbox(tool, base) -> list:
    return tool.get(syncd(base) + "/outbox").json()["entries"]


def conflicts(tool, base) -> list:
    return tool.get(syncd(base) + "/conflicts").json()["conflicts"]


def other_writer(sim) -> Tool:
    """Someone changing Knosc directly, not through this daemon."""
    t, r = login(sim.base, "admin@acme.example", "admin-password")
    assert r.status_code == 200
    return t


def upstream_record(sim, resource: str, key: str, value):
    rows = sim.snapshot(records=True, resource=resource)[resource]["records"]
    rows = rows.values() if isinstance(rows, dict) else rows
    return [r for r in rows if r.get(key) == value]


def cli(d, *args, check=True):
    out = subprocess.run([DAEMON_EXE, args[0], "--config", d.config_path, *args[1:]], capture_output=True,
                         text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def find(tool, base, resource, key, value):
    r = tool.get(f"{base}/{resource}", params={"filter": json.dumps({key: value}), "page_size": 50})
    assert r.status_code == 200, r.text
    return r.json()["data"]["rows"]


def test_offline_changes_are_local_at_once_durable_and_pushed_once(env):
    sim, d, base, tool = env
    supplier = tool.get(base + "/supplier-master", params={"page_size": 1}).json()["data"]["rows"][0]
    offline(sim, d)

    r = tool.post(base + "/unit-master", json={"Unit Code": "OFFU", "Unit Name": "made offline"})
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "Created successfully."
    local_id = r.json()["id"]
    assert local_id < 0 and r.headers["X-Knosc-Syncd-Pending"] == "true"
    # The new record is readable at once, by list and by its local id, and says it is pending.
    assert [u["id"] for u in find(tool, base, "unit-master", "Unit Code", "OFFU")] == [local_id]
    one = tool.get(f"{base}/unit-master/{local_id}")
    assert one.status_code == 200 and one.headers["X-Knosc-Syncd-Pending"] == "true"

    r = tool.put(f"{base}/supplier-master/{supplier['id']}", json={"Supplier Name": "Renamed offline"})
    assert r.status_code == 200 and r.json() == {"message": "Update successful"}
    assert tool.get(f"{base}/supplier-master/{supplier['id']}").json()["data"]["Supplier Name"] == "Renamed offline"

    # Knosc's validation, locally: nothing is stored for a refused change.
    r = tool.post(base + "/unit-master", json={"Unit Name": "no code"})
    assert r.status_code == 400 and r.json()["Code"].endswith(".MissingField")
    r = tool.post(base + "/unit-master", json={"Unit Code": "OFFU"})
    assert r.status_code == 400 and r.json()["Code"].endswith(".AlreadyExists")
    r = tool.post(base + "/unit-master", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"Message": "Bad Request Format", "Code": "JSON.Invalid"}
    assert [e["op"] for e in outbox(tool, base)] == ["create", "update"]

    # Acknowledged means on disk: a kill -9 loses nothing.
    d.kill9()
    d.start()
    old_base = base
    base = wait_until(lambda: (d.status().get("loopback_base") or old_base) != old_base
                      and d.status()["loopback_base"], 30, "the restarted loopback")
    tool, _ = login(base, "sync@acme.example", "sync-password")
    assert [e["op"] for e in outbox(tool, base)] == ["create", "update"]
    assert find(tool, base, "unit-master", "Unit Code", "OFFU")

    before = sim.stats()["created"].get("unit-master", 0)
    online(sim, d)
    wait_until(lambda: outbox(tool, base) == [], 120, "the outbox to drain")
    assert sim.stats()["created"].get("unit-master", 0) == before + 1
    assert upstream_record(sim, "supplier-master", "id", supplier["id"])[0]["Supplier Name"] == "Renamed offline"
    created = upstream_record(sim, "unit-master", "Unit Code", "OFFU")
    assert len(created) == 1
    # The replica holds Knosc's record under Knosc's id, and the local id still finds it.
    wait_until(lambda: [u["id"] for u in find(tool, base, "unit-master", "Unit Code", "OFFU")] == [created[0]["id"]],
               30, "the server id in the replica")
    again = tool.get(f"{base}/unit-master/{local_id}")
    assert again.status_code == 200 and again.json()["data"]["id"] == created[0]["id"]
    assert again.headers["X-Knosc-Syncd-Record-Id"] == str(created[0]["id"])
    assert "X-Knosc-Syncd-Pending" not in tool.get(f"{base}/unit-master/{created[0]['id']}").headers


def test_non_overlapping_changes_merge_and_collisions_wait_for_a_person(env):
    sim, d, base, tool = env
    customers = tool.get(base + "/customer-master", params={"page_size": 2}).json()["data"]["rows"]
    a, b = customers[0], customers[1]
    offline(sim, d)
    assert tool.put(f"{base}/customer-master/{a['id']}", json={"Customer Phone": "+1 555 0100"}).status_code == 200
    assert tool.put(f"{base}/customer-master/{b['id']}", json={"Customer Name": "Local name"}).status_code == 200
    # Meanwhile in Knosc, before the daemon sees the link again: another field of A, and the same field of B.
    with d.frozen():
        sim.post("/_sim/online")
        admin = other_writer(sim)
        assert admin.put(f"{sim.base}/customer-master/{a['id']}", json={"Customer Email": "new@a.example"}).ok
        assert admin.put(f"{sim.base}/customer-master/{b['id']}", json={"Customer Name": "Remote name"}).ok
    wait_until(lambda: d.status()["online"] is True, 60, "the link to come back")

    wait_until(lambda: len(conflicts(tool, base)) == 1, 60, "the collision to be parked")
    got = upstream_record(sim, "customer-master", "id", a["id"])[0]
    assert got["Customer Phone"] == "+1 555 0100" and got["Customer Email"] == "new@a.example"
    c = conflicts(tool, base)[0]
    assert c["resource"] == "customer-master" and c["record_id"] == b["id"] and c["kind"] == "fields"
    assert [f["key"] for f in c["fields"]] == ["Customer Name"]
    assert c["local"]["Customer Name"] == "Local name" and c["remote"]["Customer Name"] == "Remote name"
    # People working in Knosc learn of it from a ticket (config [push] conflict_tickets).
    wait_until(lambda: [t for t in sim.snapshot(records=True, resource="issue-tracker-tickets")
                        ["issue-tracker-tickets"]["records"] if f"conflict {c['id']}:" in t["Title"]],
               30, "the conflict's ticket in Knosc")
    # Knosc kept its value; the local edit still shows until a person decides.
    assert upstream_record(sim, "customer-master", "id", b["id"])[0]["Customer Name"] == "Remote name"
    assert tool.get(f"{base}/customer-master/{b['id']}").json()["data"]["Customer Name"] == "Local name"

    # A person keeps the local value: it reaches Knosc.
    r = tool.post(f"{syncd(base)}/conflicts/{c['id']}/resolve", json={"resolution": "keep-local"})
    assert r.status_code == 200, r.text
    wait_until(lambda: upstream_record(sim, "customer-master", "id", b["id"])[0]["Customer Name"] == "Local name",
               60, "the kept local value upstream")
    wait_until(lambda: outbox(tool, base) == [] and conflicts(tool, base) == [], 30, "the queue to settle")


def test_keep_remote_and_rejected_edits(env):
    sim, d, base, tool = env
    item = tool.get(base + "/item-master", params={"page_size": 1}).json()["data"]["rows"][0]
    offline(sim, d)
    assert tool.put(f"{base}/item-master/{item['id']}", json={"Item Description": "local"}).status_code == 200
    assert tool.post(base + "/unit-master", json={"Unit Code": "RACE", "Unit Name": "mine"}).status_code == 200
    with d.frozen():  # the daemon must not see the link back before someone else has written
        sim.post("/_sim/online")
        admin = other_writer(sim)
        assert admin.put(f"{sim.base}/item-master/{item['id']}", json={"Item Description": "remote"}).ok
        # Someone else takes the unit code first: Knosc will refuse the local create.
        assert admin.post(f"{sim.base}/unit-master", json={"Unit Code": "RACE", "Unit Name": "theirs"}).ok
    wait_until(lambda: d.status()["online"] is True, 60, "the link to come back")

    def parked():
        states = sorted(e["state"] for e in outbox(tool, base))
        return states == ["conflict", "rejected"]

    wait_until(parked, 60, "one conflict and one rejection")
    rejected = next(e for e in outbox(tool, base) if e["state"] == "rejected")
    assert rejected["last_error"]["Code"].endswith(".AlreadyExists")
    # The refused create is undone locally: only Knosc's unit remains.
    wait_until(lambda: [u["Unit Name"] for u in find(tool, base, "unit-master", "Unit Code", "RACE")]
               == ["theirs"], 30, "the local create undone")
    r = tool.post(f"{syncd(base)}/outbox/{rejected['seq']}/drop")
    assert r.status_code == 200, r.text

    # The CLI shows the same inbox and settles through the running daemon.
    c = conflicts(tool, base)[0]
    listed = json.loads(cli(d, "conflicts", "--json").stdout)
    assert [x["id"] for x in listed["conflicts"]] == [c["id"]] and listed["rejected"] == []
    assert "Item Description" in cli(d, "conflicts").stdout
    bad = cli(d, "resolve", str(c["id"]), "keep-nothing", check=False)
    assert bad.returncode == 2
    assert cli(d, "resolve", str(c["id"]), "keep-remote").stdout.strip() == "Done."
    wait_until(lambda: tool.get(f"{base}/item-master/{item['id']}").json()["data"]["Item Description"] == "remote",
               30, "Knosc's version in the replica")
    assert outbox(tool, base) == [] and conflicts(tool, base) == []
    assert upstream_record(sim, "item-master", "id", item["id"])[0]["Item Description"] == "remote"
    # Settling needs the CSRF header and the module's Edit privilege, as the edit did.
    viewer, _ = login(base, "viewer@acme.example", "viewer-password")
    r = viewer.post(f"{syncd(base)}/conflicts/{c['id']}/resolve", json={"resolution": "keep-local"})
    assert r.status_code in (403, 404)


def test_a_create_whose_answer_was_lost_is_not_created_twice(env):
    sim, d, base, tool = env
    offline(sim, d)
    assert tool.post(base + "/unit-master", json={"Unit Code": "LOST", "Unit Name": "x"}).status_code == 200
    before = sim.stats()["created"].get("unit-master", 0)
    # Knosc processes the POST, then the connection drops before the answer: twice.
    sim.post("/_sim/faults", {"seed": 3, "rules": [
        {"route": "^/api/unit-master$", "method": "POST", "kind": "reset_after", "count": 2}]})
    try:
        online(sim, d)
        try:
            wait_until(lambda: outbox(tool, base) == [], 120, "the outbox to drain")
        except AssertionError as e:
            log = "\n".join(line for line in d.log().splitlines() if " listed " not in line)
            raise AssertionError(f"{e}\noutbox: {outbox(tool, base)}\ndaemon log:\n{log[-8000:]}") from None
    finally:
        sim.delete("/_sim/faults")
    assert sim.stats()["created"].get("unit-master", 0) == before + 1
    assert len(upstream_record(sim, "unit-master", "Unit Code", "LOST")) == 1


def test_password_routes_pass_through_online_and_say_offline_otherwise(env):
    sim, d, base, tool = env
    body = {"email": "viewer@acme.example"}
    import requests
    direct = requests.post(sim.base + "/forgot-password", json=body, timeout=20)
    through = requests.post(base + "/forgot-password", json=body, timeout=20)
    assert through.status_code == direct.status_code == 200 and through.json() == direct.json()
    bad = requests.post(base + "/reset-password", json={"session_token": "nope", "new_password": "a-Long-enough-passw0rd!"}, timeout=20)
    assert bad.status_code == 400 and bad.json()["Code"] == "User.InvalidResetToken"
    offline(sim, d)
    r = requests.post(base + "/forgot-password", json=body, timeout=20)
    assert r.status_code == 503 and r.json()["Code"] == "Sync.Offline"
