"""Every resource's list/get/create/update/delete over HTTP, the documented error codes, the purchase-order
rules, cascades, move-lines and accept-suggested-orders."""

from __future__ import annotations

import json
import time

import pytest

from conftest import login, start_sim


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def rows(s, route, **params):
    for k in ("filter", "sort", "search"):
        if k in params and not isinstance(params[k], str):
            params[k] = json.dumps(params[k])
    params.setdefault("page_size", 1000)
    r = s.get("/api/" + route, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]["rows"]


def one(s, route, rid):
    r = s.get("/api/%s/%s" % (route, rid))
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return data["rows"] if isinstance(data.get("rows"), dict) else data


def create(s, route, body):
    r = s.post("/api/" + route, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["message"] in ("Created successfully.", "User created successfully.")
    return out["id"]


def expect_error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["Code"] == code, body
    assert isinstance(body["Message"], str) and body["Message"]
    return body


def find(s, route, key, value):
    found = rows(s, route, filter={key: value})
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def viewer(sim):
    s = login(sim, "viewer@acme.example", "viewer-password")
    yield s
    s.close()


@pytest.fixture(scope="module")
def master(svc):
    """Numbers of existing master data usable by the tests."""
    po = rows(svc, "purchase-order", page_size=1)[0]
    po_full = one(svc, "purchase-order", po["id"])
    sup = one(svc, "supplier-master", po["Supplier Id"])
    cust = rows(svc, "customer-master", page_size=1)[0]
    cust_full = one(svc, "customer-master", cust["id"])
    return {"supplier": sup["Supplier Number"], "ship_from": sup["Ship From Locations"][0]["Ship From Number"],
            "customer": cust["Customer Number"], "ship_to": cust_full["Ship To Locations"][0]["Ship To Number"],
            "items": [i["Item Number"] for i in rows(svc, "item-master", page_size=6)],
            "po": po_full}


_seq = [0]


def uniq(prefix):
    _seq[0] += 1
    return "%s-T%d-%d" % (prefix, int(time.time()) % 100000, _seq[0])


def new_item(s):
    num = uniq("ITEM")
    create(s, "item-master", {"Item Number": num, "Item Description": "Test " + num, "Item Type": "Component",
                              "Item Unit": "EA"})
    return num


# ----------------------------------------------------------------------------------------------------------
# master data and the flat resources: full CRUD cycle
# ----------------------------------------------------------------------------------------------------------
MASTER_CASES = {
    "item-master": (lambda s, m: {"Item Number": uniq("ITEM"), "Item Description": "Gadget", "Item Type": "Component",
                                  "Item Unit": "EA", "Item Weight": 1.5},
                    {"Item Description": "Gadget v2", "Item Status": "Inactive"}, "ItemMaster", "Item Number"),
    "sub-item-master": (lambda s, m: {"Sub Item Number": uniq("SUB"), "Sub Item Description": "Blue",
                                      "Item Number": m["items"][0]},
                        {"Sub Item Description": "Red"}, "SubItemMaster", "Sub Item Number"),
    "customer-master": (lambda s, m: {"Customer Number": uniq("CUST"), "Customer Name": "Gamma Corp",
                                      "Customer Status": "Active"},
                        {"Customer Phone": "+1 555 999 0000"}, "CustomerMaster", "Customer Number"),
    "ship-to-master": (lambda s, m: {"Ship To Number": uniq("ST"), "Ship To Name": "Gamma DC",
                                     "Customer Number": m["customer"]},
                       {"Ship To Address": "1 Main St, Reno, NV"}, "ShipToMaster", "Ship To Number"),
    "supplier-master": (lambda s, m: {"Supplier Number": uniq("SUP"), "Supplier Name": "New Supplier Inc.",
                                      "Supplier Email": "contact@newsupplier.example"},
                        {"Supplier Name": "Renamed Supplier"}, "SupplierMaster", "Supplier Number"),
    "ship-from-master": (lambda s, m: {"Ship From Number": uniq("SF"), "Ship From Name": "West Plant",
                                       "Supplier Number": m["supplier"]},
                         {"Ship From Status": "Inactive"}, "ShipFromMaster", "Ship From Number"),
    "warehouse-master": (lambda s, m: {"Warehouse Number": uniq("WH"), "Warehouse Name": "West Coast DC",
                                       "Warehouse Status": "Active"},
                         {"Warehouse Name": "Main DC - Chicago"}, "WarehouseMaster", "Warehouse Number"),
    "unit-master": (lambda s, m: {"Unit Code": uniq("U"), "Unit Name": "Box", "Unit Type": "Count"},
                    {"Unit Name": "Crate"}, "UnitMaster", "Unit Code"),
    "external-item-master": (lambda s, m: {"External Item Number": uniq("EXT"), "External System": "SAP",
                                           "Item Number": m["items"][1], "External Description": "Mapped"},
                             {"External Description": "Remapped"}, "ExternalItemMaster", "External Item Number"),
    "inventory": (lambda s, m: {"Item Number": new_item(s), "Warehouse Number": "WH-01", "Inventory Quantity": 850,
                                "Inventory Date": "2025-03-01", "Inventory Unique Id": uniq("ERP-INV")},
                  {"Inventory Quantity": 900}, "Inventory", "Inventory Unique Id"),
    "supplier-allocation": (lambda s, m: {"Item Number": new_item(s), "Supplier Number": m["supplier"],
                                          "Allocation Percentage": 70, "Priority": 1, "Status": "Active"},
                            {"Allocation Percentage": 60}, "SupplierAllocation", "Item Number"),
    "scenario-analysis": (lambda s, m: {"Scenario Name": uniq("Scenario"), "Scenario Description": "Surge",
                                        "Scenario Status": "Draft"},
                          {"Scenario Status": "Active"}, "ScenarioAnalysis", "Scenario Name"),
}


@pytest.mark.parametrize("route", sorted(MASTER_CASES))
def test_master_crud(svc, master, route):
    make, update, prefix, key = MASTER_CASES[route]
    body = make(svc, master)
    rid = create(svc, route, body)
    rec = one(svc, route, rid)
    for k, v in body.items():
        assert rec[k] == v, (k, rec)
    assert rec["id"] == rid
    # the list row carries the same header-level keys and values as the get-one record
    listed = find(svc, route, key, body[key])
    assert {k: v for k, v in rec.items() if k in listed} == listed
    assert set(listed) - {"Ship To Locations", "Ship From Locations"} == set(rec) - {"Ship To Locations",
                                                                                     "Ship From Locations"}
    r = svc.put("/api/%s/%d" % (route, rid), json=update)
    assert r.status_code == 200 and r.json()["message"] == "Update successful", r.text
    after = one(svc, route, rid)
    for k, v in update.items():
        assert after[k] == v
    # partial PUT: what was not sent stays as it was
    for k, v in rec.items():
        if k not in update and k not in ("Updated At",):
            assert after[k] == v, k
    r = svc.delete("/api/%s/%d" % (route, rid))
    assert r.status_code == 200 and r.json()["message"] == "Deleted successfully."
    expect_error(svc.get("/api/%s/%d" % (route, rid)), 400, prefix + ".NotFound")
    expect_error(svc.delete("/api/%s/%d" % (route, rid)), 400, prefix + ".NotFound")
    expect_error(svc.put("/api/%s/%d" % (route, rid), json=update), 400, prefix + ".NotFound")


def test_master_errors(svc, master):
    num = new_item(svc)
    expect_error(svc.post("/api/item-master", json={"Item Number": num}), 400, "ItemMaster.AlreadyExists")
    expect_error(svc.post("/api/item-master", json={"Item Description": "no number"}), 400, "ItemMaster.MissingField")
    expect_error(svc.post("/api/item-master", json={"Item Number": 5}), 400, "ItemMaster.InvalidField")
    expect_error(svc.post("/api/item-master", json={"Item Number": uniq("I"), "Item Type": "Gizmo"}), 400,
                 "ItemMaster.InvalidField")
    expect_error(svc.post("/api/item-master", json={"Item Number": uniq("I"), "Item Unit": "PARSEC"}), 400,
                 "UnitMaster.NotFound")
    expect_error(svc.post("/api/sub-item-master", json={"Sub Item Number": uniq("S"), "Item Number": "NO-SUCH"}), 400,
                 "ItemMaster.NotFound")
    expect_error(svc.post("/api/ship-to-master", json={"Ship To Number": uniq("S"), "Ship To Name": "x",
                                                       "Customer Number": "NO-SUCH"}), 400, "CustomerMaster.NotFound")
    r = svc.post("/api/item-master", data=b"{not json", headers={"Content-Type": "application/json"})
    body = expect_error(r, 400, "JSON.Invalid")
    assert body["Message"] == "Bad Request Format"
    expect_error(svc.post("/api/item-master", json=[1, 2]), 400, "JSON.Invalid")
    # StillInUse: items used by orders, suppliers by purchase orders, warehouses by stock
    used_item = master["po"]["details"][0]["Item Id"]
    expect_error(svc.delete("/api/item-master/%d" % used_item), 400, "ItemMaster.StillInUse")
    expect_error(svc.delete("/api/supplier-master/%d" % master["po"]["Supplier Id"]), 400, "SupplierMaster.StillInUse")
    wh = find(svc, "warehouse-master", "Warehouse Number", "WH-01")
    expect_error(svc.delete("/api/warehouse-master/%d" % wh["id"]), 400, "WarehouseMaster.StillInUse")
    expect_error(svc.get("/api/item-master/abc"), 400, "ItemMaster.NotFound")
    # supplier allocation: at most 100% per item
    item = new_item(svc)
    create(svc, "supplier-allocation", {"Item Number": item, "Supplier Number": master["supplier"],
                                        "Allocation Percentage": 70})
    sups = [s["Supplier Number"] for s in rows(svc, "supplier-master", page_size=5)]
    other = next(x for x in sups if x != master["supplier"])
    expect_error(svc.post("/api/supplier-allocation", json={"Item Number": item, "Supplier Number": other,
                                                            "Allocation Percentage": 40}), 400,
                 "SupplierAllocation.ExceedsTotal")
    expect_error(svc.post("/api/supplier-allocation", json={"Item Number": item, "Supplier Number": master["supplier"],
                                                            "Allocation Percentage": 10}), 400,
                 "SupplierAllocation.AlreadyExists")


def test_renames_reach_denormalised_copies(svc, master):
    po = master["po"]
    item_id = po["details"][0]["Item Id"]
    new_desc = "Renamed " + uniq("D")
    assert svc.put("/api/item-master/%d" % item_id, json={"Item Description": new_desc}).status_code == 200
    lines = rows(svc, "purchase-order-details", filter={"Item Id": item_id})
    assert lines and all(ln["Item Description"] == new_desc for ln in lines)
    new_name = "Renamed Supplier " + uniq("N")
    assert svc.put("/api/supplier-master/%d" % po["Supplier Id"], json={"Supplier Name": new_name}).status_code == 200
    assert one(svc, "purchase-order", po["id"])["Supplier Name"] == new_name


def test_cascades_customer_and_supplier(svc):
    cust = uniq("CUST")
    cid = create(svc, "customer-master", {"Customer Number": cust, "Customer Name": "Cascade Corp"})
    st1 = create(svc, "ship-to-master", {"Ship To Number": uniq("ST"), "Ship To Name": "A", "Customer Number": cust})
    st2 = create(svc, "ship-to-master", {"Ship To Number": uniq("ST"), "Ship To Name": "B", "Customer Number": cust})
    locs = one(svc, "customer-master", cid)["Ship To Locations"]
    assert [x["id"] for x in locs] == [st1, st2]
    assert svc.delete("/api/customer-master/%d" % cid).status_code == 200
    for sid in (st1, st2):
        expect_error(svc.get("/api/ship-to-master/%d" % sid), 400, "ShipToMaster.NotFound")
    sup = uniq("SUP")
    sid = create(svc, "supplier-master", {"Supplier Number": sup, "Supplier Name": "Cascade Supply"})
    sf = create(svc, "ship-from-master", {"Ship From Number": uniq("SF"), "Ship From Name": "P", "Supplier Number": sup})
    assert one(svc, "supplier-master", sid)["Ship From Locations"][0]["id"] == sf
    assert svc.delete("/api/supplier-master/%d" % sid).status_code == 200
    expect_error(svc.get("/api/ship-from-master/%d" % sf), 400, "ShipFromMaster.NotFound")


# ----------------------------------------------------------------------------------------------------------
# purchase orders
# ----------------------------------------------------------------------------------------------------------
def po_body(master, number=None, wh="WH-01", items=None, **extra):
    items = items or master["items"][:2]
    body = {"PO List Number": number or uniq("PO"), "PO List Document Status": "Open",
            "PO List Order Date": "2025-03-15", "Supplier Number": master["supplier"], "Purchase Order Id": None,
            "details": [{"id": None, "PO Details Id": None, "Item Number": it, "Sub Item Number": None,
                         "Warehouse Number": wh, "Ship From Number": master["ship_from"], "PO Details Price": 12.50,
                         "PO Details Quantity": 200 + i, "PO Details Document Status": "Open",
                         "PO Details Tracking": None, "PO Details Order Date": "2025-03-15",
                         "PO Details Ship Date": "2025-03-22", "PO Details ETA Date": "2025-03-28",
                         "PO Details Unique Id": "ERP-LINE-%d" % i} for i, it in enumerate(items)]}
    body.update(extra)
    return body


def test_purchase_order_crud(svc, master):
    body = po_body(master)
    pid = create(svc, "purchase-order", body)
    po = one(svc, "purchase-order", pid)
    assert po["PO List Number"] == body["PO List Number"]
    assert po["Supplier Name"] and po["Supplier Number"] == master["supplier"]
    assert po["PO Total Items"] == 2 and po["PO List Quantity"] == 401
    assert po["Warehouse Number"] == "WH-01"
    lines = po["details"]
    assert [ln["Item Number"] for ln in lines] == master["items"][:2]
    assert all(isinstance(ln["id"], int) and ln["PO Details Id"] == ln["id"] for ln in lines)
    assert all(ln["Purchase Order Id"] == pid for ln in lines)
    listed = find(svc, "purchase-order", "PO List Number", body["PO List Number"])
    assert {k: po[k] for k in listed} == listed
    flat = rows(svc, "purchase-order-details", filter={"Purchase Order Id": pid})
    assert [x["id"] for x in flat] == [x["id"] for x in lines]
    assert svc.get("/api/purchase-order-details/%d" % lines[0]["id"]).json()["data"] == lines[0]
    # PUT replaces the line set: line 1 kept and changed, line 2 dropped, a new line added
    keep = dict(lines[0], **{"PO Details Quantity": 999, "PO Details Document Status": "Shipped",
                             "PO Details Tracking": "BOL-789456"})
    new_line = dict(body["details"][1], **{"Item Number": master["items"][2], "PO Details Quantity": 50})
    upd = dict(body, **{"Purchase Order Id": pid, "details": [keep, new_line]})
    r = svc.put("/api/purchase-order/%d" % pid, json=upd)
    assert r.status_code == 200 and r.json()["message"] == "Update successful", r.text
    po2 = one(svc, "purchase-order", pid)
    got = {ln["Item Number"]: ln for ln in po2["details"]}
    assert set(got) == {master["items"][0], master["items"][2]}
    assert got[master["items"][0]]["id"] == lines[0]["id"]
    assert got[master["items"][0]]["PO Details Quantity"] == 999
    assert got[master["items"][0]]["PO Details Tracking"] == "BOL-789456"
    assert got[master["items"][2]]["id"] not in (lines[0]["id"], lines[1]["id"])
    assert po2["PO List Quantity"] == 1049 and po2["PO Total Items"] == 2
    expect_error(svc.get("/api/purchase-order-details/%d" % lines[1]["id"]), 400, "PurchaseOrderDetails.NotFound")
    # a line id of another order is refused
    other = rows(svc, "purchase-order-details", page_size=1)[0]
    bad = dict(upd, details=[dict(keep, id=other["id"])])
    expect_error(svc.put("/api/purchase-order/%d" % pid, json=bad), 400, "PurchaseOrderDetails.NotFound")
    assert svc.delete("/api/purchase-order/%d" % pid).status_code == 200
    expect_error(svc.get("/api/purchase-order/%d" % pid), 400, "PurchaseOrderList.NotFound")
    for ln in po2["details"]:
        expect_error(svc.get("/api/purchase-order-details/%d" % ln["id"]), 400, "PurchaseOrderDetails.NotFound")
    body = expect_error(svc.delete("/api/purchase-order/%d" % pid), 400, "PurchaseOrderList.NotFound")
    assert body["Message"] == "PO #%d not found." % pid


def test_purchase_order_rules(svc, master):
    expect_error(svc.post("/api/purchase-order", json=po_body(master, details=[])), 400, "OrderList.NoItems")
    b = po_body(master)
    b["details"][1]["Warehouse Number"] = "WH-02"
    expect_error(svc.post("/api/purchase-order", json=b), 400, "OrderList.MultipleWarehouses")
    b = po_body(master, items=[master["items"][0], master["items"][0]])
    expect_error(svc.post("/api/purchase-order", json=b), 400, "OrderDetails.DuplicateRows")
    b = po_body(master)
    b["details"][0]["PO Details Order Date"] = "2025-04-01"
    expect_error(svc.post("/api/purchase-order", json=b), 400, "PurchaseOrderDetails.OrderDateAfterShip")
    b = po_body(master)
    b["details"][0]["PO Details Order Date"] = None
    b["PO List Order Date"] = "2025-05-01"    # the header's order date applies to lines without one
    expect_error(svc.post("/api/purchase-order", json=b), 400, "PurchaseOrderDetails.OrderDateAfterShip")
    expect_error(svc.post("/api/purchase-order", json=po_body(master, **{"Supplier Number": "NOPE"})), 400,
                 "SupplierMaster.NotFound")
    b = po_body(master)
    b["details"][0]["Item Number"] = "NOPE"
    expect_error(svc.post("/api/purchase-order", json=b), 400, "ItemMaster.NotFound")
    b = po_body(master)
    b["details"][0]["Warehouse Number"] = "WH-99"
    b["details"][1]["Warehouse Number"] = "WH-99"
    expect_error(svc.post("/api/purchase-order", json=b), 400, "WarehouseMaster.NotFound")
    b = po_body(master)
    b["details"][0]["Sub Item Number"] = "NOPE"
    expect_error(svc.post("/api/purchase-order", json=b), 400, "SubItemMaster.NotFound")
    b = po_body(master)
    b["details"][0]["PO Details Quantity"] = "lots"
    body = expect_error(svc.post("/api/purchase-order", json=b), 400, "PurchaseOrderList.InvalidField")
    assert "PO Details Quantity" in body["Message"] and "line 1" in body["Message"]
    b = po_body(master)
    b["details"][0]["PO Details ETA Date"] = "28/03/2025"
    expect_error(svc.post("/api/purchase-order", json=b), 400, "PurchaseOrderList.InvalidField")
    b = po_body(master)
    del b["PO List Document Status"]
    expect_error(svc.post("/api/purchase-order", json=b), 400, "PurchaseOrderList.MissingField")
    number = uniq("PO")
    create(svc, "purchase-order", po_body(master, number))
    expect_error(svc.post("/api/purchase-order", json=po_body(master, number)), 400, "PurchaseOrderList.AlreadyExists")
    # the same rules guard PUT
    pid = find(svc, "purchase-order", "PO List Number", number)["id"]
    expect_error(svc.put("/api/purchase-order/%d" % pid, json=po_body(master, number, details=[])), 400,
                 "OrderList.NoItems")


def test_line_delete_and_last_line_rule(svc, master):
    pid = create(svc, "purchase-order", po_body(master))
    lines = one(svc, "purchase-order", pid)["details"]
    r = svc.delete("/api/purchase-order-details/%d" % lines[0]["id"])
    assert r.status_code == 200
    po = one(svc, "purchase-order", pid)
    assert [ln["id"] for ln in po["details"]] == [lines[1]["id"]] and po["PO Total Items"] == 1
    assert svc.delete("/api/purchase-order-details/%d" % lines[1]["id"]).status_code == 200
    expect_error(svc.get("/api/purchase-order/%d" % pid), 400, "PurchaseOrderList.NotFound")
    expect_error(svc.delete("/api/purchase-order-details/%d" % lines[1]["id"]), 400, "PurchaseOrderDetails.NotFound")


def test_still_in_use_by_asn(svc):
    asn = rows(svc, "asn", page_size=1)[0]
    full = one(svc, "asn", asn["id"])
    line = full["details"][0]
    body = expect_error(svc.delete("/api/purchase-order/%d" % line["Purchase Order Id"]), 400,
                        "PurchaseOrderList.StillInUse")
    assert body["Message"] == "PO #%s is still in use and cannot be deleted." % line["PO List Number"]
    body = expect_error(svc.delete("/api/purchase-order-details/%d" % line["PO Details Id"]), 400,
                        "PurchaseOrderDetails.StillInUse")
    assert body["Message"] == "PO Detail #%d is still in use and cannot be deleted." % line["PO Details Id"]


def test_move_lines(svc, master):
    src = create(svc, "purchase-order", po_body(master, items=master["items"][:3]))
    dst = create(svc, "purchase-order", po_body(master, items=[master["items"][4]]))
    lines = one(svc, "purchase-order", src)["details"]
    moves = [{"id": ln["id"], "Old Purchase Order List Id": src, "New Purchase Order List Id": dst} for ln in lines[:2]]
    r = svc.put("/api/purchase-order-details-move-lines", json={"moves": moves})
    assert r.status_code == 200 and r.json() == {"message": "Update successful", "rows_updated": 2}, r.text
    a, b = one(svc, "purchase-order", src), one(svc, "purchase-order", dst)
    assert [ln["id"] for ln in a["details"]] == [lines[2]["id"]]
    assert {ln["id"] for ln in b["details"]} >= {lines[0]["id"], lines[1]["id"]}
    assert all(ln["PO List Number"] == b["PO List Number"] for ln in b["details"])
    assert a["PO Total Items"] == 1 and b["PO Total Items"] == 3
    # the source may be emptied; it is kept
    new_num = uniq("PO")
    r = svc.put("/api/purchase-order-details-move-lines", json={"moves": [
        {"id": lines[2]["id"], "Old Purchase Order List Id": src, "New Purchase Order List Number": new_num}]})
    assert r.status_code == 200, r.text
    assert one(svc, "purchase-order", src)["details"] == []
    created = find(svc, "purchase-order", "PO List Number", new_num)
    assert created["PO Total Items"] == 1 and created["Supplier Number"] == master["supplier"]
    # errors
    expect_error(svc.put("/api/purchase-order-details-move-lines", json={"moves": []}), 400,
                 "PurchaseOrderDetails.InvalidMove")
    two_targets = [{"id": lines[0]["id"], "Old Purchase Order List Id": dst, "New Purchase Order List Id": src},
                   {"id": lines[1]["id"], "Old Purchase Order List Id": dst, "New Purchase Order List Id": created["id"]}]
    expect_error(svc.put("/api/purchase-order-details-move-lines", json={"moves": two_targets}), 400,
                 "PurchaseOrderDetails.InvalidMove")
    expect_error(svc.put("/api/purchase-order-details-move-lines", json={"moves": [
        {"id": lines[0]["id"], "Old Purchase Order List Id": src, "New Purchase Order List Id": dst}]}), 400,
        "PurchaseOrderDetails.NotFound")
    other_wh = create(svc, "purchase-order", po_body(master, wh="WH-02", items=[master["items"][5]]))
    expect_error(svc.put("/api/purchase-order-details-move-lines", json={"moves": [
        {"id": lines[0]["id"], "Old Purchase Order List Id": dst, "New Purchase Order List Id": other_wh}]}), 400,
        "OrderList.MultipleWarehouses")
    expect_error(svc.put("/api/purchase-order-details-move-lines", json={"moves": [
        {"id": lines[0]["id"], "Old Purchase Order List Id": 999999, "New Purchase Order List Id": dst}]}), 400,
        "PurchaseOrderList.NotFound")


def test_accept_suggested_orders(svc, sim):
    sug = rows(svc, "purchase-order", filter={"PO List Document Status": "Suggested"})
    if not sug:
        sim.control_post("/_sim/planner")
        sug = rows(svc, "purchase-order", filter={"PO List Document Status": "Suggested"})
    ids = [p["id"] for p in sug[:2]]
    n_lines = sum(p["PO Total Items"] for p in sug[:2])
    r = svc.put("/api/purchase-order-details-accept-suggested-orders", json={"status": "Open", "parentIds": ids})
    assert r.status_code == 200 and r.json() == {"message": "Update successful", "rows_updated": n_lines}
    for pid in ids:
        po = one(svc, "purchase-order", pid)
        assert po["PO List Document Status"] == "Suggested"        # the header is not changed
        assert {ln["PO Details Document Status"] for ln in po["details"]} == {"Open"}
    for body, msg in (({"parentIds": ids}, "Missing required field: status"),
                      ({"status": "Open", "parentIds": []}, "parentIds must be a non-empty list of integers"),
                      ({"status": "Open", "parentIds": ["x"]}, "parentIds must be a non-empty list of integers")):
        r = svc.put("/api/purchase-order-details-accept-suggested-orders", json=body)
        assert r.status_code == 400 and r.json() == {"error": msg}
    r = svc.put("/api/purchase-order-details-accept-suggested-orders", json={"status": "Open", "parentIds": [ids[0], 999999]})
    assert r.status_code == 400 and "error" in r.json()


# ----------------------------------------------------------------------------------------------------------
# sales, manufacturing, forecasts, BOM, ASN
# ----------------------------------------------------------------------------------------------------------
def test_sales_order_crud(svc, master):
    num = uniq("SO")
    body = {"SO List Number": num, "SO List Document Status": "Open", "SO List Order Date": "2025-03-01",
            "Customer Number": master["customer"], "Ship To Number": master["ship_to"],
            "details": [{"id": None, "Item Number": it, "Warehouse Number": "WH-03", "SO Details Quantity": 10 * (i + 1),
                         "SO Details Price": 19.99, "SO Details Ship Date": "2025-03-10",
                         "SO Details Unique Id": "ERP-SO-%d" % i} for i, it in enumerate(master["items"][:2])]}
    sid = create(svc, "sales-order", body)
    so = one(svc, "sales-order", sid)
    assert so["SO Total Items"] == 2 and so["SO List Quantity"] == 30 and so["Customer Name"]
    assert so["Warehouse Number"] == "WH-03"
    assert all(ln["Sales Order Id"] == sid and ln["SO Details Document Status"] == "Open" for ln in so["details"])
    flat = rows(svc, "sales-order-details", filter={"SO List Number": num})
    assert [x["id"] for x in flat] == [x["id"] for x in so["details"]]
    upd = dict(body, details=[dict(so["details"][0], **{"SO Details Quantity": 77})])
    assert svc.put("/api/sales-order/%d" % sid, json=upd).status_code == 200
    so2 = one(svc, "sales-order", sid)
    assert len(so2["details"]) == 1 and so2["details"][0]["SO Details Quantity"] == 77
    bad = dict(body, **{"SO List Number": uniq("SO")})
    bad["details"] = [dict(bad["details"][0], **{"SO Details Ship Date": "2025-02-01"})]
    expect_error(svc.post("/api/sales-order", json=bad), 400, "SalesOrderDetails.OrderDateAfterShip")
    other_cust = [c for c in rows(svc, "ship-to-master") if c["Customer Number"] != master["customer"]][0]
    bad = dict(body, **{"SO List Number": uniq("SO"), "Ship To Number": other_cust["Ship To Number"]})
    expect_error(svc.post("/api/sales-order", json=bad), 400, "SalesOrderList.InvalidField")
    # deleting the last line deletes the order
    assert svc.delete("/api/sales-order-details/%d" % so2["details"][0]["id"]).status_code == 200
    expect_error(svc.get("/api/sales-order/%d" % sid), 400, "SalesOrderList.NotFound")


def test_manufacturing_order_crud(svc, master):
    body = {"MO List Number": uniq("MO"), "MO List Order Date": "2025-03-01", "MO List Document Status": "Open",
            "Warehouse Number": "WH-01",
            "details": [{"id": None, "Item Number": master["items"][0], "MO Details Quantity": 500,
                         "MO Details Order Date": "2025-03-01", "MO Details Start Date": "2025-03-05",
                         "MO Details End Date": "2025-03-12"}]}
    mid = create(svc, "manufacturing-order", body)
    mo = one(svc, "manufacturing-order", mid)
    assert mo["Warehouse Number"] == "WH-01" and mo["Warehouse Name"] and mo["Warehouse Id"]
    assert mo["details"][0]["Item Description"] and mo["details"][0]["Warehouse Number"] == "WH-01"
    upd = dict(body, **{"MO List Document Status": "In Progress"})
    upd["details"] = [dict(mo["details"][0], **{"MO Details End Date": "2025-03-20"})]
    assert svc.put("/api/manufacturing-order/%d" % mid, json=upd).status_code == 200
    mo2 = one(svc, "manufacturing-order", mid)
    assert mo2["MO List Document Status"] == "In Progress" and mo2["details"][0]["id"] == mo["details"][0]["id"]
    bad = dict(body, **{"MO List Number": uniq("MO")})
    bad["details"] = [dict(body["details"][0], **{"Warehouse Number": "WH-02"})]
    expect_error(svc.post("/api/manufacturing-order", json=bad), 400, "OrderList.MultipleWarehouses")
    assert svc.delete("/api/manufacturing-order/%d" % mid).status_code == 200
    expect_error(svc.get("/api/manufacturing-order/%d" % mid), 400, "ManufacturingOrderList.NotFound")


def test_forecast_crud(svc, master):
    body = {"Forecast List Number": uniq("FC"), "Forecast List Date": "2025-04-01",
            "Forecast List Document Status": "Active",
            "details": [{"id": None, "Item Number": master["items"][0], "Warehouse Number": "WH-01",
                         "Forecast Details Quantity": q, "Forecast Details Date": d}
                        for q, d in ((500, "2025-04-01"), (450, "2025-05-01"))]}
    fid = create(svc, "forecast", body)
    fc = one(svc, "forecast", fid)
    assert fc["Forecast Total Items"] == 2 and fc["Forecast List Quantity"] == 950
    assert all(ln["Forecast Details Document Status"] == "Active" for ln in fc["details"])
    upd = dict(body, details=[fc["details"][1]])
    assert svc.put("/api/forecast/%d" % fid, json=upd).status_code == 200
    assert [ln["id"] for ln in one(svc, "forecast", fid)["details"]] == [fc["details"][1]["id"]]
    dup = dict(body, **{"Forecast List Number": uniq("FC")})
    dup["details"] = [body["details"][0], body["details"][0]]
    expect_error(svc.post("/api/forecast", json=dup), 400, "OrderDetails.DuplicateRows")
    assert svc.delete("/api/forecast/%d" % fid).status_code == 200
    expect_error(svc.get("/api/forecast/%d" % fid), 400, "ForecastList.NotFound")


def test_bill_of_materials_crud(svc, master):
    product = new_item(svc)
    comps = master["items"][:2]
    body = {"BOM Number": uniq("BOM"), "Item Number": product, "BOM Status": "Active",
            "details": [{"Component Item Number": comps[0], "Component Quantity": 2},
                        {"Component Item Number": comps[1], "Component Quantity": 0.5}]}
    bid = create(svc, "bill-of-materials", body)
    bom = one(svc, "bill-of-materials", bid)
    assert bom["Item Number"] == product and bom["BOM Total Components"] == 2
    assert [d["Component Item Number"] for d in bom["details"]] == comps
    assert all(d["Component Description"] and d["Component Unit"] for d in bom["details"])
    upd = dict(body, details=[dict(bom["details"][1], **{"Component Quantity": 3})])
    assert svc.put("/api/bill-of-materials/%d" % bid, json=upd).status_code == 200
    bom2 = one(svc, "bill-of-materials", bid)
    assert [(d["id"], d["Component Quantity"]) for d in bom2["details"]] == [(bom["details"][1]["id"], 3)]
    bad = dict(body, **{"BOM Number": uniq("BOM")})
    bad["details"] = [{"Component Item Number": "NOPE", "Component Quantity": 1}]
    expect_error(svc.post("/api/bill-of-materials", json=bad), 400, "ItemMaster.NotFound")
    bad["details"] = []
    expect_error(svc.post("/api/bill-of-materials", json=bad), 400, "BillOfMaterials.NoItems")
    bad["details"] = body["details"][:1] * 2
    expect_error(svc.post("/api/bill-of-materials", json=bad), 400, "BillOfMaterials.DuplicateRows")
    expect_error(svc.post("/api/bill-of-materials", json=body), 400, "BillOfMaterials.AlreadyExists")
    # a component in a BOM cannot be deleted
    comp_id = bom["details"][0]["Component Item Id"]
    expect_error(svc.delete("/api/item-master/%d" % comp_id), 400, "ItemMaster.StillInUse")
    assert svc.delete("/api/bill-of-materials/%d" % bid).status_code == 200
    expect_error(svc.get("/api/bill-of-materials/%d" % bid), 400, "BillOfMaterials.NotFound")


def test_asn_crud(svc, master):
    pid = create(svc, "purchase-order", po_body(master))
    po = one(svc, "purchase-order", pid)
    body = {"ASN Number": uniq("ASN"), "BOL": "BOL-1", "ETA": "2025-03-28", "Ship Date": "2025-03-22",
            "From": {"Supplier Number": master["supplier"], "Ship From Number": master["ship_from"]},
            "To": {"Warehouse Number": "WH-01"},
            "details": [{"PO Details Id": ln["id"], "ASN Details Quantity": ln["PO Details Quantity"]}
                        for ln in po["details"]]}
    aid = create(svc, "asn", body)
    asn = one(svc, "asn", aid)
    assert asn["From"]["Supplier Number"] == master["supplier"] and asn["To"]["Warehouse Number"] == "WH-01"
    assert asn["Timestamp"].endswith("Z") and asn["ASN Status"] == "Not Sent"
    assert [d["Item Number"] for d in asn["details"]] == [ln["Item Number"] for ln in po["details"]]
    assert all(d["Purchase Order Id"] == pid and d["PO List Number"] == po["PO List Number"] for d in asn["details"])
    listed = find(svc, "asn", "ASN Number", body["ASN Number"])
    assert listed["Warehouse Number"] == "WH-01"
    # partial PUT: header fields only, the lines stay
    assert svc.put("/api/asn/%d" % aid, json={"ASN Status": "Sent", "BOL": "BOL-2"}).status_code == 200
    asn2 = one(svc, "asn", aid)
    assert asn2["ASN Status"] == "Sent" and asn2["BOL"] == "BOL-2" and asn2["details"] == asn["details"]
    expect_error(svc.delete("/api/purchase-order/%d" % pid), 400, "PurchaseOrderList.StillInUse")
    bad = dict(body, **{"ASN Number": uniq("ASN")})
    bad["details"] = [{"PO Details Id": 99999999, "Item Number": master["items"][0], "ASN Details Quantity": 1}]
    expect_error(svc.post("/api/asn", json=bad), 400, "PurchaseOrderDetails.NotFound")
    assert svc.delete("/api/asn/%d" % aid).status_code == 200
    expect_error(svc.get("/api/asn/%d" % aid), 400, "ASN.NotFound")
    assert svc.delete("/api/purchase-order/%d" % pid).status_code == 200


# ----------------------------------------------------------------------------------------------------------
# tickets, users, roles
# ----------------------------------------------------------------------------------------------------------
def test_ticket_crud_notes_subscribers(svc, master):
    body = {"Title": "Delayed shipment", "Description": "ETA pushed", "Priority": "High", "Category": "Procurement",
            "Assignee Email": "jane.doe@acme.example", "Due Date": "2025-03-20",
            "Linked PO Number": master["po"]["PO List Number"]}
    tid = create(svc, "issue-tracker-tickets", body)
    assert isinstance(tid, str) and tid.startswith("TKT-")
    all_ids = [t["id"] for t in rows(svc, "issue-tracker-tickets")]
    nums = [int(x.split("-")[1]) for x in all_ids]
    assert int(tid.split("-")[1]) == max(nums)
    tk = one(svc, "issue-tracker-tickets", tid)
    assert tk["Status"] == "Open" and tk["Linked PO Id"] == master["po"]["id"]
    assert tk["Reporter Email"] == "sync@acme.example" and tk["Notes"] == []
    assert set(tk["Subscribers"]) == {"sync@acme.example", "jane.doe@acme.example"}
    assert tk["Created At"] == tk["Updated At"] and tk["Created At"].endswith("Z")
    listed = find(svc, "issue-tracker-tickets", "id", tid)
    assert "Notes" not in listed and {k: tk[k] for k in listed} == listed
    r = svc.post("/api/issue-tracker-notes", json={"Ticket Id": tid, "Note": "Called the supplier"})
    assert r.status_code == 200, r.text
    nid = r.json()["id"]
    notes = svc.get("/api/issue-tracker-tickets/%s/notes" % tid).json()["data"]
    assert notes == [{"id": nid, "Ticket Id": tid, "Note": "Called the supplier", "Author Email": "sync@acme.example",
                      "Created At": notes[0]["Created At"]}]
    assert svc.put("/api/issue-tracker-notes/%d" % nid, json={"Note": "Edited"}).status_code == 200
    assert svc.get("/api/issue-tracker-tickets/%s/notes" % tid).json()["data"][0]["Note"] == "Edited"
    assert svc.post("/api/issue-tracker-tickets/%s/subscribers" % tid, json={"email": "wei.chen@acme.example"}).status_code == 200
    subs = svc.get("/api/issue-tracker-tickets/%s/subscribers" % tid).json()["data"]
    assert "wei.chen@acme.example" in subs
    assert svc.delete("/api/issue-tracker-tickets/%s/subscribers" % tid, json={"email": "wei.chen@acme.example"}).status_code == 200
    assert "wei.chen@acme.example" not in svc.get("/api/issue-tracker-tickets/%s/subscribers" % tid).json()["data"]
    expect_error(svc.delete("/api/issue-tracker-tickets/%s/subscribers" % tid, json={"email": "nobody@x.example"}),
                 400, "IssueTrackerSubscribers.NotFound")
    assert svc.put("/api/issue-tracker-tickets/%s" % tid, json={"Status": "In Progress"}).status_code == 200
    tk2 = one(svc, "issue-tracker-tickets", tid)
    assert tk2["Status"] == "In Progress" and tk2["Title"] == body["Title"] and tk2["Updated At"] >= tk["Updated At"]
    expect_error(svc.put("/api/issue-tracker-tickets/%s" % tid, json={"Status": "Sleeping"}), 400,
                 "IssueTrackerTickets.InvalidField")
    assert svc.delete("/api/issue-tracker-notes/%d" % nid).status_code == 200
    assert svc.delete("/api/issue-tracker-tickets/%s" % tid).status_code == 200
    expect_error(svc.get("/api/issue-tracker-tickets/%s" % tid), 400, "IssueTrackerTickets.NotFound")
    expect_error(svc.post("/api/issue-tracker-tickets", json={"Description": "no title"}), 400,
                 "IssueTrackerTickets.MissingField")
    expect_error(svc.post("/api/issue-tracker-notes", json={"Ticket Id": "TKT-99999", "Note": "x"}), 400,
                 "IssueTrackerTickets.NotFound")


def test_ticket_updated_at_moves_on_note(svc):
    old = rows(svc, "issue-tracker-tickets", page_size=1)[0]
    svc.post("/api/issue-tracker-notes", json={"Ticket Id": old["id"], "Note": "bump"})
    assert one(svc, "issue-tracker-tickets", old["id"])["Updated At"] > old["Updated At"]


def test_users(svc, sim):
    admin = login(sim, "admin@acme.example", "admin-password")
    r = svc.get("/api/user")
    assert r.status_code == 200
    extra = r.json()["extra"]
    assert extra["page"] == 1 and extra["page_size"] == 50 and extra["total"] == len(r.json()["data"]["rows"])
    roles = rows(svc, "role")
    viewer_role = next(x for x in roles if x["Role Name"] == "Viewer")
    admin_role = next(x for x in roles if x["Role Name"] == "Administrator")
    login_name = uniq("new.user").lower() + "@acme.example"
    body = {"User Fullname": "John Smith", "Username": login_name, "User Email": login_name,
            "User Phone": "+1 555 111 2222", "Role Id": viewer_role["id"], "password": "initial-password-123"}
    r = svc.post("/api/user", json=body)
    assert r.status_code == 200 and r.json()["message"] == "User created successfully.", r.text
    uid = r.json()["id"]
    u = svc.get("/api/user/%d" % uid).json()["data"]
    assert u["Role Name"] == "Viewer" and u["User Status"] == "Active" and u["First Signin"] is True
    assert u["Privileges"] and all(p["access"] == "View" for p in u["Privileges"])
    assert not any(k.startswith("_") or k == "password" for k in u)
    expect_error(svc.post("/api/user", json=body), 400, "User.AlreadyExists")
    expect_error(svc.post("/api/user", json=dict(body, Username="x" + login_name, **{"User Email": "x" + login_name,
                                                                                        "password": "short"})),
                 400, "User.PasswordTooShort")
    expect_error(svc.post("/api/user", json=dict(body, Username="y" + login_name, **{"User Email": "y" + login_name,
                                                                                        "Role Id": 999})),
                 400, "Role.NotFound")
    # only an administrator may create or change administrators and service accounts
    r = svc.post("/api/user", json=dict(body, Username="z" + login_name, **{"User Email": "z" + login_name,
                                                                               "Role Id": admin_role["id"]}))
    expect_error(r, 403, "User.NotPrivileged")
    admin_id = next(x["id"] for x in rows(svc, "user") if x["Username"] == "admin@acme.example")
    expect_error(svc.put("/api/user/%d" % admin_id, json={"User Phone": "1"}), 403, "User.NotPrivileged")
    assert svc.put("/api/user/%d" % uid, json={"User Fullname": "Johnny Smith"}).status_code == 200
    assert svc.get("/api/user/%d" % uid).json()["data"]["User Fullname"] == "Johnny Smith"
    assert svc.delete("/api/user/%d" % uid).status_code == 200
    assert svc.get("/api/user/%d" % uid).json()["data"]["User Status"] == "Inactive"   # soft delete
    expect_error(svc.get("/api/user/999999"), 400, "User.NotFound")
    assert admin.put("/api/user/%d" % admin_id, json={"User Phone": "+1 555 000 0001"}).status_code == 200
    admin.close()


def test_roles_and_privileges(svc, viewer):
    roles = rows(svc, "role")
    names = {r["Role Name"] for r in roles}
    assert {"Administrator", "Service Account", "Viewer", "WH-01 Planner"} <= names
    wh = next(r for r in roles if r["Role Name"] == "WH-01 Planner")
    assert wh["Has Granular Privileges"] is True
    full = one(svc, "role", wh["id"])
    assert full["Granular Filters"] == [{"category": "Warehouse Number", "type": "include", "values": ["WH-01"]}]
    assert {p["Privilege Type"] for p in full["Privileges"]} >= {"Procurement", "Users"}
    expect_error(svc.post("/api/role", json={"Role Name": "x"}), 404, "Route.NotFound")
    assert svc.get("/api/privilege", params={"type": "Procurement", "access": "Edit"}).json() == {"access": True}
    assert viewer.get("/api/privilege", params={"type": "Procurement", "access": "Edit"}).json() == {"access": False}
    assert svc.get("/api/validate-privileges", params={"path": "/procurement"}).json() == {"access": True}
    expect_error(viewer.delete("/api/privilege/1"), 403, "User.NotPrivileged")


# ----------------------------------------------------------------------------------------------------------
# privileges, unknown routes
# ----------------------------------------------------------------------------------------------------------
def test_viewer_reads_but_cannot_write(viewer, master):
    assert viewer.get("/api/item-master").status_code == 200
    for method, path, body in (("POST", "/api/item-master", {"Item Number": uniq("I")}),
                               ("PUT", "/api/item-master/1", {"Item Description": "x"}),
                               ("DELETE", "/api/item-master/1", None),
                               ("POST", "/api/purchase-order", po_body(master)),
                               ("PUT", "/api/purchase-order-details-move-lines", {"moves": []}),
                               ("POST", "/api/user", {}), ("PUT", "/api/system-settings", {})):
        r = viewer.request(method, path, json=body)
        body = expect_error(r, 403, "User.NotPrivileged")
        assert body["Message"] == "Not Privileged for this action"


def test_module_privileges(sim):
    jane = login(sim, "jane.doe@acme.example", "jane-password")     # Procurement Manager
    assert jane.get("/api/purchase-order").status_code == 200
    expect_error(jane.get("/api/manufacturing-order"), 403, "User.NotPrivileged")
    expect_error(jane.get("/api/user"), 403, "User.NotPrivileged")
    expect_error(jane.post("/api/item-master", json={"Item Number": uniq("I")}), 403, "User.NotPrivileged")
    expect_error(jane.get("/api/validate-privileges", params={"path": "/manufacturing"}), 403, "User.NotPrivileged")
    jane.close()


def test_unknown_routes(svc):
    expect_error(svc.get("/api/no-such-thing"), 404, "Route.NotFound")
    expect_error(svc.patch("/api/item-master/1", json={}), 404, "Route.NotFound")
    expect_error(svc.get("/api/item-master/1/extra"), 404, "Route.NotFound")


def test_settings_views_custom_columns(svc, viewer):
    s = svc.get("/api/system-settings").json()["data"]
    assert s["integrations"]["decision_manager"]["api_key"] == "***"
    assert svc.put("/api/system-settings", json={"password_expiration_days": 60,
                                                 "integrations": {"decision_manager": {"api_key": "***"}}}).json() == \
        {"message": "Settings updated."}
    s2 = svc.get("/api/system-settings").json()["data"]
    assert s2["password_expiration_days"] == 60 and s2["integrations"]["decision_manager"]["api_key"] == "***"
    expect_error(svc.put("/api/system-settings", json={"bogus": 1}), 400, "SystemSettings.InvalidField")
    assert svc.patch("/api/user-settings", json={"settings_show_suggested_orders": False}).status_code == 200
    assert svc.get("/api/user-settings").json()["data"]["settings_show_suggested_orders"] is False
    assert viewer.get("/api/user-settings").json()["data"]["settings_show_suggested_orders"] is True
    expect_error(svc.patch("/api/user-settings", json={"settings_ask_on_edit_suggested": "Maybe"}), 400,
                 "UserSettings.InvalidField")
    # saved views
    vid = create(svc, "views", {"name": uniq("My Open POs"), "view": "purchase_order_list",
                                "filters": {"PO List Document Status": "Open"},
                                "sort": {"key": "PO List Order Date", "type": "Descending"}})
    v = svc.get("/api/views/%d" % vid).json()["data"]
    assert v["filters"] == {"PO List Document Status": "Open"}
    assert svc.put("/api/views/%d" % vid, json={"filters": {"PO List Document Status": "Shipped"}}).status_code == 200
    assert svc.get("/api/views/%d" % vid).json()["data"]["filters"] == {"PO List Document Status": "Shipped"}
    expect_error(viewer.get("/api/views/%d" % vid), 400, "Views.NotFound")   # personal views are private
    expect_error(svc.post("/api/views", json={"name": v["name"], "view": "purchase_order_list"}), 400,
                 "Views.AlreadyExists")
    assert svc.delete("/api/views/%d" % vid).status_code == 200
    assert viewer.get("/api/views-shared").json()["data"]
    # notification settings
    nid = create(svc, "user-notification-settings", {"type": "Procurement", "source": "PurchaseOrderList",
                                                     "event": "StatusChange", "channel": "email", "enabled": True})
    assert svc.get("/api/user-notification-settings/Procurement/PurchaseOrderList").json()["data"][0]["id"] == nid
    assert svc.put("/api/user-notification-settings/%d" % nid, json={"enabled": False}).status_code == 200
    assert svc.get("/api/user-notification-settings/%d" % nid).json()["data"]["enabled"] is False
    assert svc.delete("/api/user-notification-settings/Procurement/PurchaseOrderList").status_code == 200
    expect_error(svc.get("/api/user-notification-settings/%d" % nid), 400, "UserNotificationSettings.NotFound")
    # custom columns show up as extra keys in rows and headers
    cid = create(svc, "custom-columns", {"table": "ItemMaster", "key": "Shelf Life Days", "format": "number",
                                         "alias": "Shelf life", "default_value": 30})
    r = svc.get("/api/item-master", params={"page_size": 2}).json()["data"]
    assert "Shelf Life Days" in [h["key"] for h in r["headers"]]
    assert all(row["Shelf Life Days"] == 30 for row in r["rows"])
    assert one(svc, "item-master", r["rows"][0]["id"])["Shelf Life Days"] == 30
    expect_error(svc.post("/api/custom-columns", json={"table": "ItemMaster", "key": "Shelf Life Days",
                                                       "format": "number"}), 400, "CustomColumns.AlreadyExists")
    expect_error(svc.post("/api/custom-columns", json={"table": "ItemMaster", "key": "Item Number",
                                                       "format": "string"}), 400, "CustomColumns.AlreadyExists")
    expect_error(svc.post("/api/custom-columns", json={"table": "Nope", "key": "X", "format": "string"}), 400,
                 "CustomColumns.InvalidTable")
    assert [c["key"] for c in svc.get("/api/custom-columns/ItemMaster").json()["data"]] == ["Shelf Life Days"]
    assert svc.delete("/api/custom-columns/%d" % cid).status_code == 200
    assert "Shelf Life Days" not in svc.get("/api/item-master", params={"page_size": 1}).json()["data"]["rows"][0]
    expect_error(viewer.post("/api/custom-columns", json={"table": "ItemMaster", "key": "Y", "format": "string"}),
                 403, "User.NotPrivileged")
    po_headers = [h["key"] for h in svc.get("/api/purchase-order", params={"page_size": 1}).json()["data"]["headers"]]
    assert "Buyer Code" in po_headers     # the tenant ships with one custom column


def test_omit_create_id():
    sim = start_sim("--omit-create-id")
    try:
        s = login(sim)
        r = s.post("/api/item-master", json={"Item Number": "ITEM-NOID", "Item Description": "x"})
        assert r.status_code == 200 and r.json() == {"message": "Created successfully."}
        assert find(s, "item-master", "Item Number", "ITEM-NOID")["Item Description"] == "x"
        s.close()
    finally:
        sim.stop()


def test_created_counts_reach_stats(svc, sim):
    before = sim.control_get("/_sim/stats").json()["created"].get("scenario-analysis", 0)
    create(svc, "scenario-analysis", {"Scenario Name": uniq("Stats")})
    svc.post("/api/scenario-analysis", json={"Scenario Status": "Draft"})     # rejected: not counted
    after = sim.control_get("/_sim/stats").json()["created"]["scenario-analysis"]
    assert after == before + 1
