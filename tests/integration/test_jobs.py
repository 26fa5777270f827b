"""Upload jobs through the loopback (POST /api/job/{trigger}, GET /api/job?jobs=, GET /api/job/{trigger}): kept
durably while Knosc cannot be reached, forwarded in the bulk-import guide's order when it can, followed until
upstream finishes them, and their rows mirrored afterwards."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from harness import Daemon, Sim, Tool, wait_until
from harness import logged_in as login


def csv_bytes(header, rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode("utf-8")


def upload(tool: Tool, base: str, trigger: str, data: bytes, filename: str) -> str:
    r = tool.post(f"{base}/job/{trigger}", files={"file": (filename, data)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["message", "job_id", "status"]
    assert body["message"] == "File uploaded. Processing started." and body["status"] == "queued"
    assert re.fullmatch(re.escape(trigger) + r"-upload-[0-9a-f]{8}", body["job_id"])
    return body["job_id"]


def poll(tool: Tool, base: str, trigger: str, job_id: str) -> dict:
    r = tool.get(base + "/job", params={"jobs": json.dumps([{"trigger": trigger, "job_id": job_id}])})
    assert r.status_code == 200, r.text
    jobs = r.json()["jobs"]
    assert len(jobs) == 1 and jobs[0]["job_id"] == job_id
    assert set(jobs[0]) == {"trigger", "job_id", "status", "rows_processed", "errors", "completed_at"}
    return jobs[0]


def finished(tool: Tool, base: str, trigger: str, job_id: str, timeout: float = 60) -> dict:
    return wait_until(lambda: (lambda j: j if j["status"] in ("completed", "failed") else None)(
        poll(tool, base, trigger, job_id)), timeout, f"job {job_id} to finish")


def loopback_bases(d: Daemon) -> list:
    return re.findall(r"loopback API on (\S+)", d.log())


def rows(tool: Tool, base: str, route: str, flt: dict) -> list:
    r = tool.get(f"{base}/{route}", params={"filter": json.dumps(flt), "page_size": 100})
    assert r.status_code == 200, r.text
    return r.json()["data"]["rows"]


class Env:
    """The sim, the daemon and its loopback base (which a restart moves: the port is picked at start)."""

    def __init__(self, sim: Sim, d: Daemon, base: str):
        self.sim, self.d, self.base = sim, d, base

    def __iter__(self):
        return iter((self.sim, self.d, self.base))


@pytest.fixture(scope="module")
def env():
    sim = Sim(scale=1)
    d = Daemon(sim, sync={"interval_seconds": 2}).start()
    wait_until(d.synced, 120, "the first sync")
    base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
    yield Env(sim, d, base)
    d.stop()
    sim.stop()


ITEM_HEADER = ["Item Number", "Item Description", "Item Type", "Item Unit", "Item Status"]


def test_uploads_made_offline_survive_a_restart_and_go_upstream_in_import_order(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    # The item names a unit that only the unit upload creates: sent in upload order, the item job would fail.
    items = csv_bytes(ITEM_HEADER, [("ITEM-OFFLINE-1", "Made offline", "Component", "JOBU", "Active")])
    units_v1 = csv_bytes(["Unit Code", "Unit Name"], [("JOBU", "Job unit, first file")])
    units_v2 = csv_bytes(["Unit Code", "Unit Name"], [("JOBU", "Job unit, second file")])
    sim.post("/_sim/offline")
    try:
        wait_until(lambda: d.status()["online"] is False, 30, "the daemon to notice the outage")
        item_job = upload(admin, base, "item-master", items, "items.csv")
        unit_job_1 = upload(admin, base, "unit-master", units_v1, "units-1.csv")
        unit_job_2 = upload(admin, base, "unit-master", units_v2, "units-2.csv")
        for trigger, job in (("item-master", item_job), ("unit-master", unit_job_1), ("unit-master", unit_job_2)):
            assert poll(admin, base, trigger, job) == {"trigger": trigger, "job_id": job, "status": "queued",
                                                       "rows_processed": 0, "errors": [], "completed_at": None}
        # The last file of a trigger downloads from the replica, offline too.
        r = admin.get(base + "/job/unit-master")
        assert r.status_code == 200 and r.content == units_v2
        assert r.headers["Content-Type"] == "text/csv" and 'filename="units-2.csv"' in r.headers["Content-Disposition"]

        # Durable: a restart (still offline) keeps every upload, queued, with its file.
        assert d.stop() == 0
        before = len(loopback_bases(d))
        d.start()
        wait_until(lambda: len(loopback_bases(d)) > before, 30, "the restarted loopback")
        base = env.base = loopback_bases(d)[-1]
        with d.db() as con:
            stored = dict(con.execute("SELECT job_id, state FROM job WHERE job_id IN (?, ?, ?)",
                                      (item_job, unit_job_1, unit_job_2)).fetchall())
        assert stored == {item_job: "queued", unit_job_1: "queued", unit_job_2: "queued"}
        assert poll(admin, base, "item-master", item_job)["status"] == "queued"
        assert sim.requests_matching("POST /api/job/item-master") == 0
    finally:
        sim.post("/_sim/online")

    jobs = {j: finished(admin, base, t, j) for t, j in
            (("item-master", item_job), ("unit-master", unit_job_1), ("unit-master", unit_job_2))}
    assert all(j["status"] == "completed" for j in jobs.values()), jobs
    assert jobs[item_job]["rows_processed"] == 1 and jobs[item_job]["errors"] == []
    # Units went first, in upload order; the item only after the units had completed upstream.
    with d.db() as con:
        sent = dict(con.execute("SELECT job_id, forwarded_at FROM job WHERE job_id IN (?, ?, ?)",
                                (item_job, unit_job_1, unit_job_2)).fetchall())
    assert sent[unit_job_1] <= sent[unit_job_2] <= sent[item_job]
    assert jobs[unit_job_1]["completed_at"] <= jobs[unit_job_2]["completed_at"] <= jobs[item_job]["completed_at"]
    assert sim.requests_matching("POST /api/job/unit-master") == 2
    assert sim.requests_matching("POST /api/job/item-master") == 1

    # The completed jobs start passes of what they changed: the rows appear in the loopback's lists.
    item = wait_until(lambda: rows(admin, base, "item-master", {"Item Number": "ITEM-OFFLINE-1"}), 60,
                      "the uploaded item in the loopback list")
    assert item[0]["Item Unit"] == "JOBU" and item[0]["Item Description"] == "Made offline"
    unit = wait_until(lambda: rows(admin, base, "unit-master", {"Unit Code": "JOBU"}), 60, "the uploaded unit")
    assert unit[0]["Unit Name"] == "Job unit, second file"

    # The download is still the last upload of the trigger.
    r = admin.get(base + "/job/item-master")
    assert r.status_code == 200 and r.content == items


def test_a_failed_job_keeps_its_errors(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    job = upload(admin, base, "item-master", csv_bytes(["Item Number", "Colour"], [("ITEM-X", "red")]), "cols.csv")
    result = finished(admin, base, "item-master", job)
    assert result["status"] == "failed" and result["rows_processed"] == 0
    assert result["errors"][0]["row"] == 1 and "Colour" in result["errors"][0]["message"]
    # Polled again later, the errors are still there.
    assert poll(admin, base, "item-master", job)["errors"] == result["errors"]


def test_the_planning_run_takes_no_file(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    r = admin.post(base + "/job/inventory-planning")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Job started." and body["status"] == "queued"
    assert re.fullmatch(r"inventory-planning-run-[0-9a-f]{8}", body["job_id"])
    assert finished(admin, base, "inventory-planning", body["job_id"])["status"] == "completed"


def test_privileges_and_bad_requests_answer_as_knosc(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    viewer = login(base, "viewer@acme.example", "viewer-password")
    buyer = login(base, "jane.doe@acme.example", "jane-password")  # no Unit Master privilege at all
    units = csv_bytes(["Unit Code", "Unit Name"], [("JOBP", "Privileges")])
    r = viewer.post(base + "/job/unit-master", files={"file": ("u.csv", units)})
    assert r.status_code == 403 and r.json() == {"Message": "Not Privileged for this action",
                                                 "Code": "User.NotPrivileged"}
    job = upload(admin, base, "unit-master", units, "u.csv")
    # Only the uploader (and administrators) may poll a job; to anyone else it does not exist
    # (test_security_jobs.py).
    r = viewer.get(base + "/job", params={"jobs": json.dumps([{"trigger": "unit-master", "job_id": job}])})
    assert r.status_code == 400 and r.json() == {"Message": f"Job {job} not found.", "Code": "Job.NotFound"}
    r = buyer.get(base + "/job", params={"jobs": json.dumps([{"trigger": "unit-master", "job_id": job}])})
    assert r.status_code == 400 and r.json()["Code"] == "Job.NotFound"
    assert buyer.get(base + "/job/unit-master").status_code == 403

    r = admin.post(base + "/job/purchase-order", files={"file": ("x.csv", units)})
    assert r.status_code == 400 and r.json() == {"Message": "Unknown job trigger 'purchase-order'.",
                                                 "Code": "Job.UnknownTrigger"}
    r = admin.post(base + "/job/unit-master", data=b"Unit Code\nX\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 400 and r.json()["Code"] == "Job.MissingFile"
    r = admin.post(base + "/job/unit-master", files={"file": ("empty.csv", b"")})
    assert r.status_code == 400 and r.json() == {"Message": "The uploaded file is empty.", "Code": "Job.MissingFile"}
    r = admin.get(base + "/job")
    assert r.status_code == 400 and r.json()["Code"] == "JSON.Invalid"
    r = admin.get(base + "/job", params={"jobs": "[not json"})
    assert r.status_code == 400 and r.json() == {"Message": "Bad Request Format", "Code": "JSON.Invalid"}
    r = admin.get(base + "/job", params={"jobs": json.dumps([{"trigger": "unit-master", "job_id": "nope"}])})
    assert r.status_code == 400 and r.json() == {"Message": "Job nope not found.", "Code": "Job.NotFound"}
    r = admin.get(base + "/job", params={"jobs": json.dumps([{"trigger": "item-master", "job_id": job}])})
    assert r.status_code == 400 and r.json()["Code"] == "Job.NotFound"
    r = admin.get(base + "/job/bill-of-materials")
    assert r.status_code == 400 and r.json() == {"Message": "No file has been uploaded for bill-of-materials.",
                                                 "Code": "Job.NotFound"}
    assert admin.put(base + "/job/unit-master").status_code == 404
    assert finished(admin, base, "unit-master", job)["status"] == "completed"
