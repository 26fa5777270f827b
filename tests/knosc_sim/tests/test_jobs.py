"""Upload jobs over HTTP: CSV and XLSX, queueing per trigger, all-or-nothing with row-numbered errors,
polling, download of the last file, the computation trigger."""

from __future__ import annotations

import csv
import io
import json
import time

from openpyxl import Workbook

from conftest import login


def csv_bytes(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode("utf-8")


def xlsx_bytes(header, rows):
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(list(r))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def upload(s, trigger, data, filename):
    r = s.post("/api/job/" + trigger, files={"file": (filename, data)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "File uploaded. Processing started." and body["status"] == "queued"
    assert body["job_id"].startswith(trigger + "-upload-")
    return body["job_id"]


def poll(s, trigger, job_id):
    r = s.get("/api/job", params={"jobs": json.dumps([{"trigger": trigger, "job_id": job_id}])})
    assert r.status_code == 200, r.text
    jobs = r.json()["jobs"]
    assert len(jobs) == 1
    return jobs[0]


def wait(s, trigger, job_id, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        job = poll(s, trigger, job_id)
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job %s did not finish" % job_id)


def rows(s, route, **params):
    for k in ("filter",):
        if k in params:
            params[k] = json.dumps(params[k])
    params.setdefault("page_size", 1000)
    r = s.get("/api/" + route, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]["rows"]


def checksum(sim, resource):
    return sim.control_get("/_sim/snapshot", params={"resource": resource}).json()["resources"][resource]["checksum"]


ITEM_HEADER = ["Item Number", "Item Description", "Item Type", "Item Unit", "Item Status", "Item Weight"]


def test_csv_item_master_upload(svc):
    rows_in = [("ITEM-JOB-1", "Job widget 1", "Component", "EA", "Active", "1.25"),
               ("ITEM-JOB-2", "Job widget 2", "Raw Material", "KG", None, "3"),
               ("ITEM-JOB-3", "Job widget 3", "Finished Good", "EA", "Inactive", None)]
    job_id = upload(svc, "item-master", csv_bytes(ITEM_HEADER, rows_in), "items.csv")
    job = wait(svc, "item-master", job_id)
    assert job == {"trigger": "item-master", "job_id": job_id, "status": "completed", "rows_processed": 3,
                   "errors": [], "completed_at": job["completed_at"]}
    assert job["completed_at"].endswith("Z")
    got = {r["Item Number"]: r for r in rows(svc, "item-master", filter={"Item Number": [r[0] for r in rows_in]})}
    assert got["ITEM-JOB-1"]["Item Weight"] == 1.25 and got["ITEM-JOB-1"]["Item Type"] == "Component"
    assert got["ITEM-JOB-2"]["Item Status"] == "Active" and got["ITEM-JOB-2"]["Item Weight"] == 3
    assert got["ITEM-JOB-3"]["Item Status"] == "Inactive"
    # REFRESH again updates in place (upsert by business key)
    job_id = upload(svc, "item-master", csv_bytes(["Item Number", "Item Description"],
                                                  [("ITEM-JOB-1", "Refreshed")]), "items2.csv")
    assert wait(svc, "item-master", job_id)["status"] == "completed"
    again = rows(svc, "item-master", filter={"Item Number": "ITEM-JOB-1"})[0]
    assert again["id"] == got["ITEM-JOB-1"]["id"] and again["Item Description"] == "Refreshed"
    assert again["Item Weight"] == 1.25
    # explicit actions
    job_id = upload(svc, "item-master", csv_bytes(["Action", "Item Number", "Item Description"],
                                                  [("DELETE", "ITEM-JOB-3", None), ("UPDATE", "ITEM-JOB-2", "Upd"),
                                                   ("ADD", "ITEM-JOB-4", "Added")]), "items3.csv")
    assert wait(svc, "item-master", job_id)["status"] == "completed"
    names = {r["Item Number"]: r["Item Description"]
             for r in rows(svc, "item-master", filter={"Item Number": ["ITEM-JOB-2", "ITEM-JOB-3", "ITEM-JOB-4"]})}
    assert names == {"ITEM-JOB-2": "Upd", "ITEM-JOB-4": "Added"}


def test_xlsx_procurement_upload(svc):
    po = rows(svc, "purchase-order", page_size=1)[0]
    sup = svc.get("/api/supplier-master/%d" % po["Supplier Id"]).json()["data"]
    sf = sup["Ship From Locations"][0]["Ship From Number"]
    items = [i["Item Number"] for i in rows(svc, "item-master", page_size=3)]
    header = ["PO List Number", "PO List Document Status", "PO List Order Date", "Supplier Number", "Item Number",
              "Warehouse Number", "Ship From Number", "PO Details Quantity", "PO Details Price",
              "PO Details Ship Date", "PO Details ETA Date"]
    data = [("PO-JOB-1", "Open", "2025-03-01", sup["Supplier Number"], items[0], "WH-01", sf, 100, 2.5,
             "2025-03-05", "2025-03-10"),
            ("PO-JOB-1", "Open", "2025-03-01", sup["Supplier Number"], items[1], "WH-01", sf, 50, 4,
             "2025-03-05", "2025-03-10"),
            ("PO-JOB-2", "Planned", "2025-03-02", sup["Supplier Number"], items[2], "WH-02", None, 7, None,
             None, None)]
    job_id = upload(svc, "procurement", xlsx_bytes(header, data), "pos.xlsx")
    job = wait(svc, "procurement", job_id)
    assert job["status"] == "completed" and job["rows_processed"] == 3, job
    got = {p["PO List Number"]: p for p in rows(svc, "purchase-order", filter={"PO List Number": ["PO-JOB-1", "PO-JOB-2"]})}
    assert got["PO-JOB-1"]["PO Total Items"] == 2 and got["PO-JOB-1"]["PO List Quantity"] == 150
    assert got["PO-JOB-2"]["Warehouse Number"] == "WH-02" and got["PO-JOB-2"]["PO List Document Status"] == "Planned"
    full = svc.get("/api/purchase-order/%d" % got["PO-JOB-1"]["id"]).json()["data"]["rows"]
    assert [d["PO Details ETA Date"] for d in full["details"]] == ["2025-03-10", "2025-03-10"]
    ids = {d["Item Number"]: d["id"] for d in full["details"]}
    # a REFRESH of one order keeps matching lines (same ids) and drops the ones not in the file
    job_id = upload(svc, "procurement", xlsx_bytes(header, [data[0][:7] + (120, 2.5, "2025-03-05", "2025-03-10")]),
                    "pos2.xlsx")
    assert wait(svc, "procurement", job_id)["status"] == "completed"
    full = svc.get("/api/purchase-order/%d" % got["PO-JOB-1"]["id"]).json()["data"]["rows"]
    assert [(d["id"], d["PO Details Quantity"]) for d in full["details"]] == [(ids[items[0]], 120)]


def test_second_job_is_queued(svc):
    a = upload(svc, "unit-master", csv_bytes(["Unit Code", "Unit Name"], [("JQ1", "Queue one")]), "u1.csv")
    b = upload(svc, "unit-master", csv_bytes(["Unit Code", "Unit Name"], [("JQ2", "Queue two")]), "u2.csv")
    first = poll(svc, "unit-master", a)
    second = poll(svc, "unit-master", b)
    assert first["status"] in ("queued", "running")
    assert second["status"] == "queued"
    ja, jb = wait(svc, "unit-master", a), wait(svc, "unit-master", b)
    assert ja["status"] == jb["status"] == "completed"
    assert ja["completed_at"] <= jb["completed_at"]
    # both at once in one poll
    r = svc.get("/api/job", params={"jobs": json.dumps([{"trigger": "unit-master", "job_id": a},
                                                         {"trigger": "unit-master", "job_id": b}])})
    assert [j["job_id"] for j in r.json()["jobs"]] == [a, b]


def test_failing_job_changes_nothing(svc, sim):
    before = checksum(sim, "item-master")
    data = csv_bytes(ITEM_HEADER, [("ITEM-OK-1", "fine", "Component", "EA", "Active", "1"),
                                   ("ITEM-BAD-1", "bad unit", "Component", "PARSEC", "Active", "1"),
                                   ("ITEM-OK-2", "fine", "Component", "EA", "Active", "1"),
                                   ("ITEM-BAD-2", "bad weight", "Component", "EA", "Active", "heavy")])
    job_id = upload(svc, "item-master", data, "bad.csv")
    job = wait(svc, "item-master", job_id)
    assert job["status"] == "failed" and job["rows_processed"] == 0
    assert [e["row"] for e in job["errors"]] == [3, 5]
    assert all(e["message"] for e in job["errors"])
    assert checksum(sim, "item-master") == before
    assert rows(svc, "item-master", filter={"Item Number": ["ITEM-OK-1", "ITEM-OK-2"]}) == []
    # an unknown column fails on the header row
    job_id = upload(svc, "item-master", csv_bytes(["Item Number", "Colour"], [("ITEM-X", "red")]), "cols.csv")
    job = wait(svc, "item-master", job_id)
    assert job["status"] == "failed" and job["errors"][0]["row"] == 1 and "Colour" in job["errors"][0]["message"]
    # document jobs report the offending line's row
    po = rows(svc, "purchase-order", page_size=1)[0]
    header = ["PO List Number", "PO List Document Status", "Supplier Number", "Item Number", "Warehouse Number",
              "PO Details Quantity"]
    items = [i["Item Number"] for i in rows(svc, "item-master", page_size=2)]
    data = csv_bytes(header, [("PO-JOB-BAD", "Open", po["Supplier Number"], items[0], "WH-01", 5),
                              ("PO-JOB-BAD", "Open", po["Supplier Number"], "NO-SUCH-ITEM", "WH-01", 5)])
    before = checksum(sim, "purchase-order")
    job = wait(svc, "procurement", upload(svc, "procurement", data, "bad-po.csv"))
    assert job["status"] == "failed" and job["errors"] == [{"row": 3, "message": job["errors"][0]["message"]}]
    assert checksum(sim, "purchase-order") == before


def test_download_last_file(svc):
    data = xlsx_bytes(["Unit Code", "Unit Name"], [("DL1", "Download")])
    job_id = upload(svc, "unit-master", data, "download-me.xlsx")
    wait(svc, "unit-master", job_id)
    r = svc.get("/api/job/unit-master")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    assert "download-me.xlsx" in r.headers.get("Content-Disposition", "")
    r = svc.get("/api/job/bill-of-materials")
    assert r.status_code == 400 and r.json()["Code"] == "Job.NotFound"


def test_inventory_planning_and_other_triggers(svc):
    r = svc.post("/api/job/inventory-planning")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    job = wait(svc, "inventory-planning", r.json()["job_id"])
    assert job["status"] == "completed" and job["rows_processed"] > 0
    items = [i["Item Number"] for i in rows(svc, "item-master", page_size=2)]
    sup = rows(svc, "supplier-master", page_size=1)[0]["Supplier Number"]
    item = "ITEM-JOB-ALLOC"
    wait(svc, "item-master", upload(svc, "item-master", csv_bytes(["Item Number"], [(item,)]), "i.csv"))
    job = wait(svc, "supplier-allocation", upload(svc, "supplier-allocation", csv_bytes(
        ["Item Number", "Supplier Number", "Allocation Percentage", "Priority"], [(item, sup, 55, 1)]), "a.csv"))
    assert job["status"] == "completed", job
    assert rows(svc, "supplier-allocation", filter={"Item Number": item})[0]["Allocation Percentage"] == 55
    job = wait(svc, "inventory", upload(svc, "inventory", csv_bytes(
        ["Item Number", "Warehouse Number", "Inventory Quantity"], [(item, "WH-03", 12)]), "inv.csv"))
    assert job["status"] == "completed", job
    assert rows(svc, "inventory", filter={"Item Number": item})[0]["Inventory Quantity"] == 12
    job = wait(svc, "bill-of-materials", upload(svc, "bill-of-materials", csv_bytes(
        ["BOM Number", "Item Number", "Component Item Number", "Component Quantity"],
        [("BOM-JOB-1", item, items[0], 2), ("BOM-JOB-1", item, items[1], 1)]), "bom.csv"))
    assert job["status"] == "completed", job
    assert rows(svc, "bill-of-materials", filter={"BOM Number": "BOM-JOB-1"})[0]["BOM Total Components"] == 2


def test_job_errors_and_privileges(svc, sim):
    r = svc.post("/api/job/no-such-trigger", files={"file": ("x.csv", b"a\n1\n")})
    assert r.status_code == 400 and r.json()["Code"] == "Job.UnknownTrigger"
    r = svc.post("/api/job/item-master", json={"file": "not multipart"})
    assert r.status_code == 400 and r.json()["Code"] == "Job.MissingFile"
    r = svc.get("/api/job", params={"jobs": json.dumps([{"trigger": "item-master", "job_id": "item-master-upload-0"}])})
    assert r.status_code == 400 and r.json()["Code"] == "Job.NotFound"
    r = svc.get("/api/job", params={"jobs": "[not json"})
    assert r.status_code == 400 and r.json() == {"Message": "Bad Request Format", "Code": "JSON.Invalid"}
    viewer = login(sim, "viewer@acme.example", "viewer-password")
    r = viewer.post("/api/job/item-master", files={"file": ("x.csv", b"Item Number\nX\n")})
    assert r.status_code == 403 and r.json()["Code"] == "User.NotPrivileged"
    viewer.close()


def test_templates(svc):
    data = svc.get("/api/templates").json()["data"]
    trig = {d["trigger"]: d for d in data}
    assert "Item Number" in trig["item-master"]["columns"]
    assert {"PO List Number", "Item Number", "PO Details Quantity"} <= set(trig["procurement"]["columns"])
    r = svc.get("/api/templates/procurement")
    assert r.status_code == 200 and r.content[:2] == b"PK"
