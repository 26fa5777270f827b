"""Unit tests on Tenant directly (no server): generator determinism and consistency, transactions,
mutate, planner, snapshot, list speed."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import pytest

SIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SIM_DIR not in sys.path:
    sys.path.insert(0, SIM_DIR)

from sim.catalog import DOCS, OPEN_PO, SNAPSHOT_RESOURCES  # noqa: E402
from sim.common import SIM_TODAY_S  # noqa: E402
from sim.http_types import Headers, Request  # noqa: E402
from sim.tenant import Tenant  # noqa: E402


@pytest.fixture(scope="module")
def tenant():
    return Tenant(7, 1)


def call(t, user, method, path, body=None, query=None):
    raw = json.dumps(body).encode() if body is not None else b""
    resp = t.dispatch(Request(method, path, dict(query or {}), Headers({}), raw, user, time.time()))
    return resp.status, resp.body


def checksums(t, exclude=()):
    snap = t.snapshot()["resources"]
    return {k: v["checksum"] for k, v in snap.items() if k not in exclude}


# ----------------------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------------------
def test_same_seed_same_tenant_and_other_seed_differs():
    a, b, c = Tenant(11, 1), Tenant(11, 1), Tenant(12, 1)
    assert checksums(a) == checksums(b)
    ca, cc = checksums(a), checksums(c)
    assert ca["purchase-order"] != cc["purchase-order"]
    assert ca["item-master"] != cc["item-master"]
    assert checksums(Tenant(11, 0.5))["purchase-order"] != ca["purchase-order"]


def test_scale_one_size_and_speed():
    started = time.monotonic()
    t = Tenant(3, 1)
    assert time.monotonic() - started < 1.5
    counts = t.counts()
    total = sum(counts.values())
    assert 1700 <= total <= 2400, counts
    for name in SNAPSHOT_RESOURCES:
        assert counts[name] > 0, name


def test_seeded_accounts(tenant):
    t = tenant
    expect = {"sync@acme.example": ("sync-password", "Service Account"),
              "admin@acme.example": ("admin-password", "Administrator"),
              "viewer@acme.example": ("viewer-password", "Viewer"),
              "wh1@acme.example": ("wh1-password", "WH-01 Planner"),
              "twofa@acme.example": ("twofa-password", "Viewer"),
              "newbie@acme.example": ("newbie-password", "Viewer")}
    for login, (pw, role) in expect.items():
        u = t.find_user(login.upper())
        assert u is not None and u["_password"] == pw and u["Role Name"] == role
        assert u["Username"] == u["User Email"] == login
        assert t.user_by_id(u["id"]) is u
    assert t.find_user("twofa@acme.example")["_totp_secret"] == "JBSWY3DPEHPK3PXP"
    assert t.find_user("twofa@acme.example")["_2fa_enabled"] is True
    assert t.find_user("newbie@acme.example")["_first_signin"] is True
    svc = t.find_user("sync@acme.example")
    privs = t.privileges(svc)
    assert len(privs) == 27 and set(privs.values()) == {"Edit"}
    assert set(t.privileges(t.find_user("viewer@acme.example")).values()) == {"View"}
    wh1 = t.find_user("wh1@acme.example")
    assert t.granular_filters(wh1) == [{"category": "Warehouse Number", "type": "include", "values": ["WH-01"]}]
    assert t.granular_filters(svc) == []
    prof = t.profile(svc)["data"]
    assert prof["Username"] == "sync@acme.example" and prof["Role Name"] == "Service Account"
    assert {"type": "Procurement", "access": "Edit"} in prof["Privileges"]
    assert not any(k.startswith("_") for k in prof)


def test_update_user_secret(tenant):
    u = tenant.find_user("viewer@acme.example")
    before = tenant.snapshot(resource="user")["resources"]["user"]["checksum"]
    tenant.update_user_secret(u["id"], _failed_logins=2)
    assert tenant.user_by_id(u["id"])["_failed_logins"] == 2
    # internal keys never reach the snapshot
    assert tenant.snapshot(resource="user")["resources"]["user"]["checksum"] == before
    tenant.update_user_secret(u["id"], _failed_logins=0)


def _check_integrity(t):
    st = t.store
    items, subs, whs = st["item-master"], st["sub-item-master"], st["warehouse-master"]
    for spec in DOCS.values():
        heads, lines = st[spec.name], st[spec.lines]
        for ln in lines.values():
            assert ln[spec.parent_field] in heads.rows, (spec.lines, ln["id"])
            if spec.line_id_alias:
                assert ln[spec.line_id_alias] == ln["id"]
            for k, v in spec.line_copy.items():
                assert ln[k] == heads.get(ln[spec.parent_field])[v]
        for h in heads.values():
            ls = lines.lines_of(h["id"])
            for key, src in spec.aggregates:
                want = len(ls) if src is None else sum(x[src] or 0 for x in ls)
                assert h[key] == pytest.approx(want), (spec.name, h["id"], key)
            if spec.single_wh:
                assert len({x["Warehouse Number"] for x in ls}) <= 1, (spec.name, h["id"])
            if spec.header_wh and ls:
                assert h["Warehouse Number"] == ls[0]["Warehouse Number"]
            if spec.dup_key:
                keys = [tuple(x.get(k) for k in spec.dup_key) for x in ls]
                assert len(keys) == len(set(keys)), (spec.name, h["id"])
    for tname in ("purchase-order-details", "sales-order-details", "manufacturing-order-details", "inventory",
                  "forecast-details", "asn-details", "supplier-allocation", "bill-of-materials"):
        for r in st[tname].values():
            it = items.get(r["Item Id"])
            assert it is not None and it["Item Number"] == r["Item Number"], (tname, r["id"])
            if "Item Description" in r:
                assert r["Item Description"] == it["Item Description"]
            if r.get("Sub Item Id") is not None:
                sub = subs.get(r["Sub Item Id"])
                assert sub["Item Id"] == r["Item Id"] and sub["Sub Item Number"] == r["Sub Item Number"]
            if "Warehouse Id" in r and r.get("Warehouse Id") is not None:
                assert whs.get(r["Warehouse Id"])["Warehouse Number"] == r["Warehouse Number"]
    for ln in st["purchase-order-details"].values():
        po = st["purchase-order"].get(ln["Purchase Order Id"])
        if ln["Ship From Id"] is not None:
            assert st["ship-from-master"].get(ln["Ship From Id"])["Supplier Id"] == po["Supplier Id"]
        od = ln["PO Details Order Date"] or po["PO List Order Date"]
        if od and ln["PO Details Ship Date"]:
            assert od <= ln["PO Details Ship Date"]
    for so in st["sales-order"].values():
        assert st["customer-master"].get(so["Customer Id"])["Customer Number"] == so["Customer Number"]
        if so["Ship To Id"] is not None:
            assert st["ship-to-master"].get(so["Ship To Id"])["Customer Id"] == so["Customer Id"]
    for a in st["asn-details"].values():
        if a["PO Details Id"] is not None:
            pl = st["purchase-order-details"].get(a["PO Details Id"])
            assert pl is not None and pl["Purchase Order Id"] == a["Purchase Order Id"]
            assert pl["Item Id"] == a["Item Id"]
    for s in st["ship-from-master"].values():
        assert st["supplier-master"].get(s["Supplier Id"])["Supplier Number"] == s["Supplier Number"]
    for s in st["ship-to-master"].values():
        assert st["customer-master"].get(s["Customer Id"])["Customer Number"] == s["Customer Number"]
    per_item = {}
    for a in st["supplier-allocation"].values():
        per_item[a["Item Id"]] = per_item.get(a["Item Id"], 0) + a["Allocation Percentage"]
    assert all(v <= 100 for v in per_item.values())
    keys = [(r["Item Id"], r["Sub Item Id"], r["Warehouse Id"]) for r in st["inventory"].values()]
    assert len(keys) == len(set(keys))
    for name in ("item-master", "supplier-master", "customer-master", "purchase-order", "sales-order"):
        table = st[name]
        assert len(table.bidx) == len(table), name
    codes = {u["Unit Code"] for u in st["unit-master"].values()}
    assert all(i["Item Unit"] in codes for i in items.values())
    for n in st["issue-tracker-notes"].values():
        assert n["Ticket Id"] in st["issue-tracker-tickets"].rows
    for u in st["user"].values():
        assert st["role"].get(u["Role Id"])["Role Name"] == u["Role Name"]


def test_generated_tenant_is_consistent(tenant):
    _check_integrity(tenant)
    t = tenant
    whs = list(t.store["warehouse-master"].values())
    assert [w["Warehouse Number"] for w in whs][:3] == ["WH-01", "WH-02", "WH-03"]
    inactive = [w["Warehouse Number"] for w in whs if w["Warehouse Status"] == "Inactive"]
    assert len(inactive) >= 1
    assert any(r["Warehouse Number"] in inactive for r in t.store["purchase-order-details"].values())
    for ln in t.store["purchase-order-details"].values():
        if ln["PO Details Ship Date"] and ln["PO Details ETA Date"]:
            assert ln["PO Details Ship Date"] <= ln["PO Details ETA Date"]
    ids = list(t.store["issue-tracker-tickets"].rows)
    assert ids[:3] == ["TKT-001", "TKT-002", "TKT-003"]
    assert any(po["PO List Document Status"] == "Suggested" for po in t.store["purchase-order"].values())


def test_scale_100_generation_and_page_speed():
    started = time.monotonic()
    t = Tenant(5, 100)
    gen = time.monotonic() - started
    total = sum(t.counts().values())
    assert 170_000 <= total <= 240_000
    assert gen < 10
    svc = t.find_user("sync@acme.example")
    worst = 0.0
    for page in ("1", "2", "1"):
        s = time.perf_counter()
        status, body = call(t, svc, "GET", "/api/purchase-order-details", query={"page_size": "1000", "page": page})
        json.dumps(body, separators=(",", ":"))
        worst = max(worst, time.perf_counter() - s)
        assert status == 200 and len(body["data"]["rows"]) == 1000
    assert worst < 0.1, worst


# ----------------------------------------------------------------------------------------------------------
# Transactions
# ----------------------------------------------------------------------------------------------------------
def test_rejected_write_changes_nothing():
    t = Tenant(7, 1)
    svc = t.find_user("sync@acme.example")
    before = checksums(t)
    po = t.store["purchase-order"].get(1)
    body = {"PO List Number": po["PO List Number"], "PO List Document Status": "Open",
            "Supplier Number": po["Supplier Number"],
            # the second line references an unknown item: nothing at all may change
            "details": [{"id": None, "Item Number": "ITEM-000002", "Warehouse Number": "WH-01", "PO Details Quantity": 5},
                        {"id": None, "Item Number": "NOPE", "Warehouse Number": "WH-01", "PO Details Quantity": 5}]}
    status, err = call(t, svc, "PUT", "/api/purchase-order/1", body)
    assert status == 400 and err["Code"] == "ItemMaster.NotFound"
    assert checksums(t) == before
    # a failure found while applying (a removed line still referenced by an ASN) rolls back too
    asn_line = next(iter(t.store["asn-details"].values()))
    po = t.store["purchase-order"].get(asn_line["Purchase Order Id"])
    keep = [ln for ln in t.store["purchase-order-details"].lines_of(po["id"]) if ln["id"] != asn_line["PO Details Id"]]
    if keep:
        body = {"PO List Number": po["PO List Number"], "PO List Document Status": po["PO List Document Status"],
                "Supplier Number": po["Supplier Number"],
                "details": [{"id": ln["id"], "Item Number": ln["Item Number"], "Sub Item Number": ln["Sub Item Number"],
                             "Warehouse Number": ln["Warehouse Number"], "PO Details Quantity": 1} for ln in keep]}
        status, err = call(t, svc, "PUT", "/api/purchase-order/%d" % po["id"], body)
        assert status == 400 and err["Code"] == "PurchaseOrderDetails.StillInUse", err
        assert checksums(t) == before


# ----------------------------------------------------------------------------------------------------------
# Control side
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", SNAPSHOT_RESOURCES)
def test_mutate_every_resource(resource):
    t = Tenant(9, 1)
    before = t.snapshot(resource=resource)["resources"][resource]
    out = t.mutate(resource, 2, 2, 2)
    assert set(out) == {"created", "updated", "deleted"}
    assert len(out["created"]) == 2, out
    assert len(out["updated"]) == 2, out
    assert len(out["deleted"]) <= 2
    after = t.snapshot(resource=resource)["resources"][resource]
    assert after["checksum"] != before["checksum"]
    table = t.store[resource]
    for rid in out["created"] + out["updated"]:
        assert table.get(rid) is not None
    for rid in out["deleted"]:
        if resource == "user":
            assert table.get(rid)["User Status"] == "Inactive"
        else:
            assert table.get(rid) is None
    assert t.created_counts().get(resource, 0) == 0   # not API creates
    _check_integrity(t)


def test_mutate_deletes_and_order_lines():
    t = Tenant(9, 1)
    for name in ("item-master", "purchase-order", "sales-order", "bill-of-materials", "ship-from-master",
                 "customer-master"):
        out = t.mutate(name, 3, 10, 3)
        assert len(out["deleted"]) == 3, (name, out)
        assert len(out["updated"]) == 10
    _check_integrity(t)
    with pytest.raises(ValueError):
        t.mutate("nope", 1, 0, 0)


def test_mutate_is_deterministic_for_seed():
    a, b = Tenant(4, 1), Tenant(4, 1)
    for t in (a, b):
        t.mutate("purchase-order", 3, 5, 2)
        t.mutate("item-master", 2, 2, 1)
    skip = ("issue-tracker-tickets", "scenario-analysis", "user", "asn")
    assert checksums(a, skip) == checksums(b, skip)


def test_planner_suggestions_appear_and_disappear():
    t = Tenant(7, 1)
    seen_created, seen_deleted = set(), set()
    for _ in range(4):
        out = t.run_planner()
        seen_created.update(out["created"])
        seen_deleted.update(out["deleted"])
        for rid in out["created"]:
            po = t.store["purchase-order"].get(rid)
            assert po["PO List Document Status"] == "Suggested"
            assert all(ln["PO Details Document Status"] == "Suggested"
                       for ln in t.store["purchase-order-details"].lines_of(rid))
    assert seen_created and seen_deleted
    # an accepted suggestion (lines no longer Suggested) is never touched again
    svc = t.find_user("sync@acme.example")
    sug = [po for po in t.store["purchase-order"].values() if po["PO List Document Status"] == "Suggested"]
    target = sug[0]["id"]
    status, body = call(t, svc, "PUT", "/api/purchase-order-details-accept-suggested-orders",
                        {"status": "Open", "parentIds": [target]})
    assert status == 200 and body["rows_updated"] >= 1
    assert t.store["purchase-order"].get(target)["PO List Document Status"] == "Suggested"
    snap = json.dumps(t.snapshot(records=True, resource="purchase-order")["resources"]["purchase-order"]["records"])
    for _ in range(3):
        out = t.run_planner()
        assert target not in out["deleted"] + out["updated"]
    assert t.store["purchase-order"].get(target) is not None
    assert snap  # the snapshot with records is JSON-serialisable
    _check_integrity(t)


def test_snapshot_format(tenant):
    snap = tenant.snapshot(records=True, resource="issue-tracker-tickets")["resources"]
    assert list(snap) == ["issue-tracker-tickets"]
    entry = snap["issue-tracker-tickets"]
    recs = entry["records"]
    assert entry["count"] == len(recs) == len(tenant.store["issue-tracker-tickets"])
    assert [r["id"] for r in recs] == sorted(r["id"] for r in recs)
    text = json.dumps(recs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entry["checksum"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert "Notes" in recs[0] and "Subscribers" in recs[0]
    po = tenant.snapshot(records=True, resource="purchase-order")["resources"]["purchase-order"]["records"][0]
    assert isinstance(po["details"], list) and po["details"]
    users = tenant.snapshot(records=True, resource="user")["resources"]["user"]["records"]
    assert not any(k.startswith("_") for u in users for k in u)
    full = tenant.snapshot()["resources"]
    assert set(full) == set(SNAPSHOT_RESOURCES) and "records" not in full["item-master"]
    with pytest.raises(ValueError):
        tenant.snapshot(resource="nope")


def test_delayed_lines_use_tenant_today(tenant):
    svc = tenant.find_user("sync@acme.example")
    status, body = call(tenant, svc, "GET", "/api/delayed-shipments/histogram", query={"bucket": "week"})
    assert status == 200
    expected = sum(1 for ln in tenant.store["purchase-order-details"].values()
                   if ln["PO Details ETA Date"] and ln["PO Details ETA Date"] < SIM_TODAY_S
                   and ln["PO Details Document Status"] in OPEN_PO and ln["Warehouse Number"] != "WH-10")
    assert body["data"]["total_delayed"] == expected
    assert sum(b["count"] for b in body["data"]["buckets"]) == expected
