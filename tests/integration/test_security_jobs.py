"""Jobs keep users apart although Knosc only ever sees the daemon's service account (which sees every row).

An attacker with a local session is knosc-sim's wh1 (Edit on every module, a granular filter limiting rows to
warehouse WH-01) or the view-only viewer. Each test is one attack on the jobs routes: an upload whose rows name
another warehouse, a download of another user's last file, a poll of another user's job."""

from __future__ import annotations

import io
import json
import tempfile

import pytest
from openpyxl import Workbook

from harness import Daemon, Sim, wait_until
from test_jobs import csv_bytes, finished, login, poll, upload

INVENTORY = ["Item Number", "Warehouse Number", "Inventory Quantity"]


def xlsx_bytes(header, rows) -> bytes:
    """A workbook as openpyxl writes it: strings in the shared-string table."""
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(list(r))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def env():
    sim = Sim("--data-dir", tempfile.mkdtemp(prefix="knosc-sim-data-"), scale=1)
    d = Daemon(sim, sync={"interval_seconds": 2}).start()
    try:
        wait_until(d.synced, 120, "the first sync")
        base = wait_until(lambda: d.status().get("loopback_base"), 30, "the loopback address")
        yield sim, d, base
    finally:
        d.stop()
        sim.stop()


def knosc_inventory(sim: Sim, warehouse_is_wh01: bool) -> dict:
    """An inventory row straight from Knosc (not through the daemon), in WH-01 or in another warehouse."""
    admin = login(sim.base, "admin@acme.example", "admin-password")
    r = admin.get(sim.base + "/inventory", params={"page_size": 200, "sort": json.dumps({"key": "id", "type": "Ascending"})})
    assert r.status_code == 200, r.text
    for row in r.json()["data"]["rows"]:
        if (row["Warehouse Number"] == "WH-01") == warehouse_is_wh01 and not row.get("Sub Item Number"):
            return row
    raise AssertionError("no inventory row in the generated tenant fits")


def knosc_quantity(sim: Sim, row: dict):
    admin = login(sim.base, "admin@acme.example", "admin-password")
    r = admin.get(f"{sim.base}/inventory/{row['id']}")
    assert r.status_code == 200, r.text
    return r.json()["data"]["Inventory Quantity"]


def uploads_received(sim: Sim, trigger: str) -> int:
    return sim.requests_matching(f"POST /api/job/{trigger}")


def test_rows_outside_the_uploaders_granular_filter_fail_the_job_and_never_reach_knosc(env):
    sim, d, base = env
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    own = knosc_inventory(sim, warehouse_is_wh01=True)
    other = knosc_inventory(sim, warehouse_is_wh01=False)
    before = uploads_received(sim, "inventory")
    other_quantity = knosc_quantity(sim, other)

    # CSV: the second data row names another warehouse (spelt with blanks Knosc strips).
    data = csv_bytes(INVENTORY, [(own["Item Number"], "WH-01", own["Inventory Quantity"]),
                                 (other["Item Number"], f" {other['Warehouse Number']} ", 987654)])
    job = upload(wh1, base, "inventory", data, "inventory.csv")
    result = finished(wh1, base, "inventory", job)
    assert result["status"] == "failed" and result["rows_processed"] == 0, result
    assert [e["row"] for e in result["errors"]] == [3]
    assert other["Warehouse Number"] in result["errors"][0]["message"]
    assert result["errors"][0]["message"].startswith("Not Privileged for this action")

    # XLSX (shared strings, as openpyxl and Excel write them): the same rows, refused the same way.
    data = xlsx_bytes(INVENTORY, [(other["Item Number"], other["Warehouse Number"], 987654),
                                  (own["Item Number"], "WH-01", own["Inventory Quantity"])])
    job_x = upload(wh1, base, "inventory", data, "inventory.xlsx")
    result = finished(wh1, base, "inventory", job_x)
    assert result["status"] == "failed" and [e["row"] for e in result["errors"]] == [2], result

    # Neither file was sent, and the other warehouse's row is as it was.
    assert uploads_received(sim, "inventory") == before
    assert knosc_quantity(sim, other) == other_quantity
    with d.db() as con:
        stored = dict(con.execute("SELECT job_id, file IS NULL AND upstream_job_id IS NULL FROM job WHERE job_id IN (?, ?)",
                                  (job, job_x)).fetchall())
    assert stored == {job: 1, job_x: 1}  # kept as failed jobs, without the refused files


def test_a_row_naming_another_warehouses_record_fails_the_job_whatever_warehouse_it_names(env):
    sim, d, base = env
    admin = login(sim.base, "admin@acme.example", "admin-password")
    r = admin.get(sim.base + "/purchase-order", params={"page_size": 200})
    assert r.status_code == 200, r.text
    po = next(p for p in r.json()["data"]["rows"] if p["Warehouse Number"] != "WH-01")
    stored = admin.get(f"{sim.base}/purchase-order/{po['id']}").json()
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    before = uploads_received(sim, "procurement")
    # No warehouse at all (Knosc's REFRESH would rewrite the stored order), or wh1's own (moving it to WH-01).
    for header, row in ((["PO List Number", "PO List Document Status"], (po["PO List Number"], "Cancelled")),
                        (["PO List Number", "Warehouse Number"], (po["PO List Number"], "WH-01"))):
        job = upload(wh1, base, "procurement", csv_bytes(header, [row]), "po.csv")
        result = finished(wh1, base, "procurement", job)
        assert result["status"] == "failed" and [e["row"] for e in result["errors"]] == [2], result
        assert "names a record outside the rows your role may change" in result["errors"][0]["message"]
    assert uploads_received(sim, "procurement") == before
    assert admin.get(f"{sim.base}/purchase-order/{po['id']}").json() == stored


def test_rows_inside_the_filter_still_go_to_knosc(env):
    sim, d, base = env
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    own = knosc_inventory(sim, warehouse_is_wh01=True)
    for n, (data, name) in enumerate(((csv_bytes, "own.csv"), (xlsx_bytes, "own.xlsx")), 1):
        job = upload(wh1, base, "inventory", data(INVENTORY, [(own["Item Number"], "WH-01", 4000 + n)]), name)
        assert finished(wh1, base, "inventory", job)["status"] == "completed"
        assert knosc_quantity(sim, own) == 4000 + n


def test_an_upload_a_filtered_role_sends_that_cannot_be_read_is_refused(env):
    sim, d, base = env
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    before = uploads_received(sim, "inventory")
    for data, name in ((b"PK\x03\x04 not really a workbook", "inventory.xlsx"),
                       (b"Warehouse Number\nWH-\xff\n", "inventory.csv")):
        job = upload(wh1, base, "inventory", data, name)
        result = finished(wh1, base, "inventory", job)
        assert result["status"] == "failed" and len(result["errors"]) == 1, result
        assert result["errors"][0]["row"] == 0 and "cannot be read" in result["errors"][0]["message"]
    assert uploads_received(sim, "inventory") == before


def test_a_role_without_granular_filters_uploads_as_before(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    other = knosc_inventory(sim, warehouse_is_wh01=False)
    before = uploads_received(sim, "inventory")
    job = upload(admin, base, "inventory", csv_bytes(INVENTORY, [(other["Item Number"], other["Warehouse Number"], 777)]),
                 "admin.csv")
    assert finished(admin, base, "inventory", job)["status"] == "completed"
    assert uploads_received(sim, "inventory") == before + 1
    assert knosc_quantity(sim, other) == 777


def test_a_download_hands_each_user_only_their_own_last_file(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    viewer = login(base, "viewer@acme.example", "viewer-password")
    header = ["Forecast Number", "Warehouse Number", "Item Number"]
    admins_file = csv_bytes(header, [("FC-SEC-A", "WH-02", "X")])
    job = upload(admin, base, "forecast", admins_file, "admin-forecast.csv")
    finished(admin, base, "forecast", job)

    def download(tool):
        return tool.get(base + "/job/forecast")

    # Another user's file (rows of WH-02) is not theirs to read: not wh1's, not the viewer's.
    for tool in (wh1, viewer):
        r = download(tool)
        assert r.status_code == 400 and r.json() == {"Message": "No file has been uploaded for forecast.",
                                                     "Code": "Job.NotFound"}, r.content[:200]
    assert download(admin).content == admins_file

    # wh1's own upload is theirs; the administrator gets the last file of anyone.
    wh1s_file = csv_bytes(header, [("FC-SEC-B", "WH-01", "X")])
    finished(wh1, base, "forecast", upload(wh1, base, "forecast", wh1s_file, "wh1-forecast.csv"))
    assert download(wh1).content == wh1s_file
    assert download(admin).content == wh1s_file
    admins_second = csv_bytes(header, [("FC-SEC-C", "WH-03", "X")])
    finished(admin, base, "forecast", upload(admin, base, "forecast", admins_second, "admin-2.csv"))
    assert download(wh1).content == wh1s_file  # still their own, although a later upload exists
    assert download(admin).content == admins_second
    assert download(viewer).status_code == 400


def test_knoscs_last_file_is_handed_to_administrators_only(env):
    sim, d, base = env
    # A file uploaded to Knosc by another client, never through the daemon.
    direct = login(sim.base, "admin@acme.example", "admin-password")
    knoscs_file = csv_bytes(["Item Number", "Supplier Number", "Allocation Percentage"], [("X", "Y", 1)])
    r = direct.post(sim.base + "/job/supplier-allocation", files={"file": ("direct.csv", knoscs_file)})
    assert r.status_code == 200, r.text
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    viewer = login(base, "viewer@acme.example", "viewer-password")
    admin = login(base, "admin@acme.example", "admin-password")
    for tool in (wh1, viewer):
        r = tool.get(base + "/job/supplier-allocation")
        assert r.status_code == 400 and r.json()["Code"] == "Job.NotFound"
    r = admin.get(base + "/job/supplier-allocation")
    assert r.status_code == 200 and r.content == knoscs_file


def test_a_poll_answers_only_for_the_users_own_jobs(env):
    sim, d, base = env
    admin = login(base, "admin@acme.example", "admin-password")
    wh1 = login(base, "wh1@acme.example", "wh1-password")
    viewer = login(base, "viewer@acme.example", "viewer-password")
    units = ["Unit Code", "Unit Name"]
    admins_job = upload(admin, base, "unit-master", csv_bytes(units, [("SECU", "Security unit")]), "u.csv")
    wh1s_job = upload(wh1, base, "unit-master", csv_bytes(units, [("SECW", "wh1's unit")]), "w.csv")
    finished(admin, base, "unit-master", admins_job)
    finished(wh1, base, "unit-master", wh1s_job)

    def ask(tool, *ids):
        return tool.get(base + "/job", params={"jobs": json.dumps([{"trigger": "unit-master", "job_id": i} for i in ids])})

    for tool, job in ((wh1, admins_job), (viewer, admins_job), (viewer, wh1s_job)):
        r = ask(tool, job)
        assert r.status_code == 400 and r.json() == {"Message": f"Job {job} not found.", "Code": "Job.NotFound"}, r.text
    r = ask(wh1, wh1s_job, admins_job)  # one foreign id among the user's own: as an unknown one
    assert r.status_code == 400 and r.json()["Code"] == "Job.NotFound"
    # Knosc's own id of the job is no way around it.
    with d.db() as con:
        upstream_id = con.execute("SELECT upstream_job_id FROM job WHERE job_id = ?", (admins_job,)).fetchone()[0]
    assert upstream_id
    assert ask(wh1, upstream_id).status_code == 400

    assert poll(wh1, base, "unit-master", wh1s_job)["status"] == "completed"
    assert poll(admin, base, "unit-master", wh1s_job)["status"] == "completed"  # administrators see all
    assert poll(admin, base, "unit-master", admins_job)["status"] == "completed"
