"""What happens upstream without the daemon asking: the hourly planner, other writers (mutate), and the
snapshot that tests compare against. All of it goes through the same record functions as the API, so the
same rules hold (references, one warehouse per order, cascades, StillInUse)."""

from __future__ import annotations

import hashlib
import json
import random
import time

from sim import records as R
from sim.catalog import DOCS, MODULES, MODULE_DESCRIPTIONS, RESOURCES, SNAPSHOT_RESOURCES, BLOCKERS, CASCADES
from sim.common import SIM_TODAY_S, ApiError, date_add
from sim.generator import ADJ, COLORS, NOUNS, QTYS, SEEDED_USERS, UNIT_BY_TYPE

# the documented accounts and their roles stay as the README describes them
SEEDED_LOGINS = {u[0] for u in SEEDED_USERS[:6]}
SEEDED_ROLES = {u[3] for u in SEEDED_USERS[:6]}


# ------------------------------------------------------------------------------------------------------------
# Planner
# ------------------------------------------------------------------------------------------------------------
def _unaccepted_suggested(t) -> list:
    out = []
    lines = t.store["purchase-order-details"]
    for po in t.store["purchase-order"].values():
        if po["PO List Document Status"] != "Suggested":
            continue
        ls = lines.lines_of(po["id"])
        # accepting changes the lines' status only (API-NOTES §6.7); such orders are no longer the planner's
        if ls and all(ln["PO Details Document Status"] == "Suggested" for ln in ls):
            out.append((po, ls))
    return out


def _supplier_for(t, item_id):
    best = None
    for a in t.store["supplier-allocation"].refs("Item Id", item_id):
        if a["Status"] == "Active" and (best is None or (a["Priority"], a["id"]) < (best["Priority"], best["id"])):
            best = a
    if best is not None:
        return t.store["supplier-master"].get(best["Supplier Id"])
    latest = None
    for ln in t.store["purchase-order-details"].refs("Item Id", item_id):
        if latest is None or ln["id"] > latest["id"]:
            latest = ln
    if latest is not None:
        po = t.store["purchase-order"].get(latest["Purchase Order Id"])
        if po is not None:
            return t.store["supplier-master"].get(po["Supplier Id"])
    return None


def _last_price(t, item_id):
    latest = None
    for ln in t.store["purchase-order-details"].refs("Item Id", item_id):
        if ln.get("PO Details Price") is not None and (latest is None or ln["id"] > latest["id"]):
            latest = ln
    return latest["PO Details Price"] if latest else None


def _fresh_number(t, tname: str, pattern: str, start: int) -> str:
    table = t.store[tname]
    n = max(start, 1)
    while True:
        num = pattern % n
        if table.by_key(num) is None:
            return num
        n += 1


def run_planner(t) -> dict:
    """Recompute Suggested purchase orders: unaccepted ones not in the new plan go, changed ones are
    rewritten, new ones appear. Demand noise per run makes successive runs differ, like the hourly job."""
    from sim.analytics import positions
    t.planner_runs += 1
    rng = random.Random("%s:planner:%d" % (t.seed, t.planner_runs))
    wh = t.wh_status()
    pos = positions(t, None, by_warehouse=True)
    cands = sorted((k for k, p in pos.items() if p["Projected"] < p["Reorder Point"] and wh.get(k[1]) == "Active"),
                   key=lambda k: (k[0], k[1]))
    cap = max(3, len(t.store["item-master"]) // 25)
    picked = [k for k in cands if rng.random() < 0.6][:cap]
    plan = {}
    items = t.store["item-master"]
    for item_id, whn in picked:
        sup = _supplier_for(t, item_id)
        if sup is None or not t.store["ship-from-master"].refs("Supplier Id", sup["id"]):
            continue
        p = pos[(item_id, whn)]
        qty = max(10, int(round(p["Reorder Quantity"] * rng.choice((0.8, 1.0, 1.0, 1.2)) / 10.0)) * 10)
        plan.setdefault((sup["id"], whn), []).append((items.get(item_id), qty))
    spec = DOCS["purchase-order"]
    created, updated, deleted = [], [], []
    seen_keys = set()
    for po, lines in _unaccepted_suggested(t):
        key = (po["Supplier Id"], lines[0]["Warehouse Number"])
        if key in plan and key not in seen_keys:
            seen_keys.add(key)
            body = _suggested_body(t, po["PO List Number"], key, plan[key], lines)
            before = R.get_one(t, "purchase-order", po)
            R.doc_update(t, spec, po, body)
            if R.get_one(t, "purchase-order", t.store["purchase-order"].get(po["id"])) != before:
                updated.append(po["id"])
        else:
            try:
                R.delete_record(t, "purchase-order", po)
                deleted.append(po["id"])
            except ApiError:
                pass
    for key in sorted(plan, key=lambda k: (k[0], k[1])):
        if key in seen_keys:
            continue
        t.suggest_seq = getattr(t, "suggest_seq", 0) + 1
        num = _fresh_number(t, "purchase-order", "PO-SUG-%06d", t.suggest_seq)
        t.suggest_seq = int(num.rsplit("-", 1)[1])
        rec = R.doc_create(t, spec, _suggested_body(t, num, key, plan[key], []))
        created.append(rec["id"])
    return {"created": created, "updated": updated, "deleted": deleted}


def _suggested_body(t, number: str, key, entries, old_lines) -> dict:
    sup = t.store["supplier-master"].get(key[0])
    sf = sorted(t.store["ship-from-master"].refs("Supplier Id", sup["id"]), key=lambda r: r["id"])[0]
    keep = {ln["Item Id"]: ln["id"] for ln in old_lines}
    details = []
    for item, qty in entries:
        details.append({"id": keep.get(item["id"]), "Item Number": item["Item Number"], "Warehouse Number": key[1],
                        "Ship From Number": sf["Ship From Number"], "PO Details Price": _last_price(t, item["id"]),
                        "PO Details Quantity": qty, "PO Details Document Status": "Suggested",
                        "PO Details Order Date": SIM_TODAY_S, "PO Details Ship Date": date_add(SIM_TODAY_S, 7),
                        "PO Details ETA Date": date_add(SIM_TODAY_S, 14)})
    return {"PO List Number": number, "PO List Document Status": "Suggested", "PO List Order Date": SIM_TODAY_S,
            "Supplier Number": sup["Supplier Number"], "details": details}


# ------------------------------------------------------------------------------------------------------------
# Snapshot
# ------------------------------------------------------------------------------------------------------------
def _snapshot_deps() -> dict:
    deps = {}
    for name in SNAPSHOT_RESOURCES:
        d = [name, "custom-columns"]
        if name in DOCS:
            d.append(DOCS[name].lines)
        d.extend(child for child, _ in CASCADES.get(name, ()))
        if name == "user":
            d.append("role")
        deps[name] = tuple(dict.fromkeys(d))
    return deps


_SNAP_DEPS = _snapshot_deps()


def snapshot(t, records: bool = False, resource=None) -> dict:
    names = SNAPSHOT_RESOURCES
    if resource is not None:
        if resource not in SNAPSHOT_RESOURCES:
            raise ValueError("unknown resource %r" % resource)
        names = [resource]
    cache = getattr(t, "_snap_cache", None)
    if cache is None:
        cache = t._snap_cache = {}
    out = {}
    for name in names:
        # a resource's get-one records depend only on these tables, so unchanged resources are not recomputed
        versions = t.store.versions(_SNAP_DEPS[name])
        entry = cache.get(name)
        if entry is None or entry[3] != versions:
            recs = [R.get_one(t, name, r) for r in t.store[name].values()]
            if name == "issue-tracker-tickets":
                recs.sort(key=lambda r: str(r["id"]))
            else:
                recs.sort(key=lambda r: r["id"])
            text = json.dumps(recs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            entry = (len(recs), hashlib.sha256(text.encode("utf-8")).hexdigest(), recs, versions)
            cache[name] = entry
        item = {"count": entry[0], "checksum": entry[1]}
        if records:
            item["records"] = entry[2]
        out[name] = item
    return {"resources": out}


# ------------------------------------------------------------------------------------------------------------
# Mutate: other writers upstream
# ------------------------------------------------------------------------------------------------------------
class Mutator:
    def __init__(self, t, resource: str):
        self.t = t
        self.st = t.store
        self.name = resource
        t.mutate_runs += 1
        self.rng = random.Random("%s:mutate:%d:%s" % (t.seed, t.mutate_runs, resource))
        self.now = time.time()

    def pick(self, tname, pred=None):
        rows = list(self.st[tname].values())
        if pred is not None:
            rows = [r for r in rows if pred(r)]
        return self.rng.choice(rows) if rows else None

    def active_wh(self):
        return self.pick("warehouse-master", lambda w: w["Warehouse Status"] == "Active")

    def fresh(self, tname, pattern):
        return _fresh_number(self.t, tname, pattern, self.st[tname].next_id)

    # -- creates -------------------------------------------------------------------------------------------
    def create(self):
        n, rng = self.name, self.rng
        if n in DOCS:
            return R.doc_create(self.t, DOCS[n], self.doc_body(), self.now)["id"]
        if n == "issue-tracker-tickets":
            from sim.people import ticket_create
            po = self.pick("purchase-order")
            body = {"Title": "Follow up on %s" % (po["PO List Number"] if po else "open items"),
                    "Description": "Raised by another Knosc user.", "Priority": rng.choice(("Low", "Medium", "High")),
                    "Category": "Procurement", "Assignee Email": "jane.doe@acme.example",
                    "Linked PO Number": po["PO List Number"] if po else None}
            return ticket_create(self.t, body, {"User Email": "maria.garcia@acme.example"}, self.now)["id"]
        if n == "user":
            k = self.st["user"].next_id
            login = "user%d@acme.example" % k
            role = self.st["role"].by_key("Viewer")
            rec = {"id": None, "User Fullname": "User %d" % k, "Username": login, "User Email": login,
                   "User Phone": None, "Role Id": role["id"], "Role Name": role["Role Name"], "User Status": "Active",
                   "2FA Enabled": False, "First Signin": True, "Password Expiration": date_add(SIM_TODAY_S, 90),
                   "_password": "user%d-password" % k, "_totp_secret": None, "_2fa_enabled": False,
                   "_first_signin": True, "_failed_logins": 0, "_locked_until": 0.0, "_last_modified_at": self.now,
                   "_reset_token": None}
            return self.st["user"].insert(rec)["id"]
        if n == "role":
            k = self.st["role"].next_id
            privs = []
            for m in MODULES:
                self.t.privilege_next += 1
                privs.append({"id": self.t.privilege_next, "Privilege Type": m,
                              "Privilege Description": MODULE_DESCRIPTIONS[m],
                              "Privilege Access": rng.choice(("None", "View", "View", "Edit"))})
            rec = {"id": None, "Role Name": "Custom Role %d" % k, "Role Description": "Created by another admin",
                   "Number of Privileges": sum(1 for p in privs if p["Privilege Access"] != "None"),
                   "Has Granular Privileges": False, "_privileges": privs, "_granular": []}
            return self.st["role"].insert(rec)["id"]
        res = RESOURCES[n]
        body = self.master_body()
        if body is None:
            return None
        return R.master_create(self.t, res, body, {"User Email": "maria.garcia@acme.example"}, self.now)["id"]

    def master_body(self):
        n, rng = self.name, self.rng
        if n == "item-master":
            typ = rng.choice(("Finished Good", "Component", "Raw Material"))
            return {"Item Number": self.fresh(n, "ITEM-%06d"), "Item Type": typ, "Item Status": "Active",
                    "Item Description": "%s %s" % (rng.choice(ADJ), rng.choice(NOUNS[typ])),
                    "Item Unit": rng.choice(UNIT_BY_TYPE[typ]), "Item Weight": round(rng.uniform(0.1, 20), 2),
                    "Item Weight Unit": "KG"}
        if n == "sub-item-master":
            item = self.pick("item-master")
            return {"Sub Item Number": self.fresh(n, "SUB-%06d"), "Item Number": item["Item Number"],
                    "Sub Item Description": "%s - %s" % (item["Item Description"], rng.choice(COLORS))}
        if n == "customer-master":
            return {"Customer Number": self.fresh(n, "CUST-%05d"), "Customer Name": "New Customer %d" % rng.randrange(10000),
                    "Customer Email": "buyer%d@new-customer.example" % rng.randrange(10000)}
        if n == "supplier-master":
            return {"Supplier Number": self.fresh(n, "SUP-%05d"), "Supplier Name": "New Supplier %d" % rng.randrange(10000),
                    "Supplier Email": "sales%d@new-supplier.example" % rng.randrange(10000)}
        if n == "ship-to-master":
            c = self.pick("customer-master")
            return {"Ship To Number": self.fresh(n, "ST-%05d"), "Ship To Name": "%s New DC" % c["Customer Name"].split()[0],
                    "Customer Number": c["Customer Number"], "Ship To Address": "1 New Rd, Reno, NV"}
        if n == "ship-from-master":
            s = self.pick("supplier-master")
            return {"Ship From Number": self.fresh(n, "SF-%05d"), "Ship From Name": "%s New Plant" % s["Supplier Name"].split()[0],
                    "Supplier Number": s["Supplier Number"], "Ship From Address": "2 New Rd, Boise, ID"}
        if n == "warehouse-master":
            return {"Warehouse Number": self.fresh(n, "WH-%02d"), "Warehouse Name": "Overflow DC %d" % rng.randrange(100),
                    "Warehouse Address": "3 New Rd, Omaha, NE"}
        if n == "unit-master":
            return {"Unit Code": self.fresh(n, "U%03d"), "Unit Name": "Custom unit", "Unit Type": "Count"}
        if n == "external-item-master":
            item = self.pick("item-master")
            sysname = rng.choice(("SAP", "Oracle", "NetSuite", "Dynamics"))
            return {"External Item Number": self.fresh(n, "EXT-NEW-%06d"), "External System": sysname,
                    "Item Number": item["Item Number"], "External Description": "%s (%s)" % (item["Item Description"], sysname)}
        if n == "inventory":
            inv = self.st["inventory"]
            for _ in range(200):
                item, wh = self.pick("item-master"), self.active_wh()
                if inv.by_key((item["Item Number"], None, wh["Warehouse Number"])) is None:
                    return {"Item Number": item["Item Number"], "Warehouse Number": wh["Warehouse Number"],
                            "Inventory Quantity": rng.randrange(0, 1500), "Inventory Date": SIM_TODAY_S,
                            "Inventory Unique Id": "ERP-INV-N%07d" % inv.next_id}
            return None
        if n == "supplier-allocation":
            alloc = self.st["supplier-allocation"]
            for _ in range(200):
                item, sup = self.pick("item-master"), self.pick("supplier-master")
                used = sum(a["Allocation Percentage"] for a in alloc.refs("Item Id", item["id"]))
                if used < 100 and alloc.by_key((item["Item Number"], sup["Supplier Number"])) is None:
                    return {"Item Number": item["Item Number"], "Supplier Number": sup["Supplier Number"],
                            "Allocation Percentage": min(100 - used, rng.choice((10, 20, 30))),
                            "Priority": 1 + len(alloc.refs("Item Id", item["id"]))}
            return None
        if n == "scenario-analysis":
            return {"Scenario Name": "What-if %d" % rng.randrange(100000), "Scenario Status": "Draft",
                    "Scenario Description": "Created by another planner",
                    "Scenario Demand Change Percentage": rng.choice((-10, 10, 25))}
        raise ValueError("cannot create %s" % n)

    def doc_body(self):
        n, rng, st = self.name, self.rng, self.st
        items = list(st["item-master"].values())
        k = min(len(items), rng.choice((1, 2, 2, 3)))
        chosen = rng.sample(items, k)
        od = date_add(SIM_TODAY_S, -rng.randrange(0, 30))
        if n == "purchase-order":
            sup = self.pick("supplier-master", lambda s: bool(st["ship-from-master"].refs("Supplier Id", s["id"])))
            sf = st["ship-from-master"].refs("Supplier Id", sup["id"])[0]
            wh = self.active_wh()
            return {"PO List Number": self.fresh(n, "PO-%07d"), "PO List Document Status": "Open",
                    "PO List Order Date": od, "Supplier Number": sup["Supplier Number"],
                    "details": [{"Item Number": it["Item Number"], "Warehouse Number": wh["Warehouse Number"],
                                 "Ship From Number": sf["Ship From Number"], "PO Details Quantity": rng.choice(QTYS),
                                 "PO Details Price": round(rng.uniform(2, 90), 2), "PO Details Order Date": od,
                                 "PO Details Ship Date": date_add(od, 7), "PO Details ETA Date": date_add(od, 14),
                                 "PO Details Unique Id": "ERP-PO-N%07d" % rng.randrange(10 ** 7)} for it in chosen]}
        if n == "sales-order":
            cust = self.pick("customer-master", lambda c: bool(st["ship-to-master"].refs("Customer Id", c["id"])))
            shipto = st["ship-to-master"].refs("Customer Id", cust["id"])[0]
            wh = self.active_wh()
            return {"SO List Number": self.fresh(n, "SO-%07d"), "SO List Document Status": "Open",
                    "SO List Order Date": od, "Customer Number": cust["Customer Number"],
                    "Ship To Number": shipto["Ship To Number"],
                    "details": [{"Item Number": it["Item Number"], "Warehouse Number": wh["Warehouse Number"],
                                 "SO Details Quantity": rng.choice(QTYS[:10]),
                                 "SO Details Price": round(rng.uniform(5, 150), 2), "SO Details Order Date": od,
                                 "SO Details Ship Date": date_add(od, 10)} for it in chosen]}
        if n == "manufacturing-order":
            wh = self.active_wh()
            return {"MO List Number": self.fresh(n, "MO-%07d"), "MO List Document Status": "Planned",
                    "MO List Order Date": od, "Warehouse Number": wh["Warehouse Number"],
                    "details": [{"Item Number": it["Item Number"], "MO Details Quantity": rng.choice(QTYS[:12]),
                                 "MO Details Order Date": od, "MO Details Start Date": date_add(od, 3),
                                 "MO Details End Date": date_add(od, 12)} for it in chosen]}
        if n == "forecast":
            wh = self.active_wh()
            month = date_add(SIM_TODAY_S, 31)[:8] + "01"
            return {"Forecast List Number": self.fresh(n, "FC-%07d"), "Forecast List Date": month,
                    "Forecast List Document Status": "Active",
                    "details": [{"Item Number": it["Item Number"], "Warehouse Number": wh["Warehouse Number"],
                                 "Forecast Details Quantity": rng.choice(QTYS[:12]), "Forecast Details Date": month}
                                for it in chosen]}
        if n == "bill-of-materials":
            product = self.pick("item-master")
            comps = [it for it in chosen if it["id"] != product["id"]] or [self.pick("item-master", lambda i: i["id"] != product["id"])]
            return {"BOM Number": self.fresh(n, "BOM-%06d"), "Item Number": product["Item Number"], "BOM Status": "Active",
                    "details": [{"Component Item Number": c["Item Number"], "Component Quantity": rng.choice((1, 2, 3))}
                                for c in comps]}
        if n == "asn":
            lines_t = st["purchase-order-details"]
            asn_lines = st["asn-details"]
            for _ in range(200):
                po = self.pick("purchase-order", lambda p: p["PO List Document Status"] in ("Open", "Shipped"))
                if po is None:
                    break
                ls = [ln for ln in lines_t.lines_of(po["id"]) if not asn_lines.refs("PO Details Id", ln["id"])
                      and ln.get("Ship From Id") is not None]
                if not ls:
                    continue
                sf = st["ship-from-master"].get(ls[0]["Ship From Id"])
                ls = [ln for ln in ls if ln["Ship From Id"] == sf["id"]]
                return {"ASN Number": self.fresh(n, "ASN-%07d"), "BOL": "BOL-N%06d" % rng.randrange(10 ** 6),
                        "Ship Date": SIM_TODAY_S, "ETA": date_add(SIM_TODAY_S, 5), "Supplier Number": po["Supplier Number"],
                        "Ship From Number": sf["Ship From Number"], "Warehouse Number": ls[0]["Warehouse Number"],
                        "details": [{"PO Details Id": ln["id"], "Item Number": ln["Item Number"],
                                     "Sub Item Number": ln["Sub Item Number"],
                                     "ASN Details Quantity": ln["PO Details Quantity"],
                                     "ASN Details Ship Date": SIM_TODAY_S, "ASN Details ETA": date_add(SIM_TODAY_S, 5)}
                                    for ln in ls]}
            raise ValueError("no purchase order lines left to ship")
        raise ValueError("cannot create %s" % n)

    # -- updates -------------------------------------------------------------------------------------------
    def update(self, rec) -> bool:
        n, rng, t = self.name, self.rng, self.t
        if n in DOCS:
            return self.update_doc(rec)
        if n == "issue-tracker-tickets":
            from sim.people import ticket_update
            ticket_update(t, rec, {"Status": rng.choice(("Open", "In Progress", "Resolved")),
                                   "Priority": rng.choice(("Low", "Medium", "High", "Critical"))}, self.now)
            return True
        if n == "user":
            new = dict(rec)
            new["User Phone"] = "+1 555 020 %04d" % rng.randrange(10000)
            self.st["user"].replace(new)
            return True
        if n == "role":
            new = dict(rec)
            new["Role Description"] = "%s (revised %d)" % (rec["Role Description"].split(" (revised")[0], rng.randrange(1000))
            self.st["role"].replace(new)
            R.propagate(t, "role", rec, new)
            return True
        res = RESOURCES[n]
        body = {}
        for key in res.mutable_keys:
            cur = rec.get(key)
            if key.endswith("Status") and key != "Scenario Status":
                body[key] = "Active" if cur != "Active" or rng.random() < 0.5 else "Inactive"
            elif key == "Scenario Status":
                body[key] = rng.choice(("Active", "Draft", "Archived"))
            elif key == "Priority":
                body[key] = 1 + rng.randrange(3)
            elif key in ("Inventory Quantity",):
                body[key] = max(0, (cur or 0) + rng.randrange(-100, 200))
            elif key == "Inventory Date":
                body[key] = SIM_TODAY_S
            elif key == "Item Weight":
                body[key] = round(rng.uniform(0.1, 20), 2)
            else:
                base = (cur or key).split(" (rev ")[0]
                body[key] = "%s (rev %d)" % (base, rng.randrange(1, 1000))
        if n == "item-master":
            body.pop("Item Status", None)
        R.master_update(t, res, rec, body, {"User Email": "maria.garcia@acme.example"}, self.now)
        return True

    def update_doc(self, rec) -> bool:
        rng, t = self.rng, self.t
        spec = DOCS[self.name]
        body = R.doc_body_of(t, spec, rec)
        lines = body["details"]
        op = rng.random()
        qty_key = next(k for k, _, req, _ in spec.line_fields if req and k.endswith("Quantity"))
        if op < 0.25 and len(lines) > 1:
            # drop a line nobody references
            removable = [ln for ln in lines if not any(self.st[bt].has_ref(m, ln["id"])
                                                        for bt, m, _ in BLOCKERS.get(spec.lines, ()))]
            if removable:
                lines.remove(rng.choice(removable))
                return self._save(spec, rec, body)
        if op < 0.5 and spec.name != "asn":
            add = self._new_line(spec, rec, lines)
            if add is not None:
                lines.append(add)
                return self._save(spec, rec, body)
        ln = rng.choice(lines)
        ln[qty_key] = max(1, (ln.get(qty_key) or 0) + rng.choice((-10, 10, 25, 50)))
        for k, _, _, _ in spec.line_fields:
            if k.endswith("ETA Date") or k.endswith("End Date") or k == "ASN Details ETA":
                if ln.get(k):
                    ln[k] = date_add(ln[k], rng.randrange(1, 6))
        if spec.name == "asn":
            body["BOL"] = "BOL-R%06d" % rng.randrange(10 ** 6)
        return self._save(spec, rec, body)

    def _new_line(self, spec, rec, lines):
        rng = self.rng
        used = {ln.get("Item Number") for ln in lines}
        item = self.pick("item-master", lambda i: i["Item Number"] not in used)
        if item is None:
            return None
        first = lines[0]
        if spec.name == "bill-of-materials":
            if item["id"] == rec["Item Id"]:
                return None
            return {"id": None, "Component Item Number": item["Item Number"], "Component Quantity": rng.choice((1, 2))}
        ln = {"id": None, "Item Number": item["Item Number"]}
        for k, _, _, _ in spec.line_fields:
            ln[k] = first.get(k)
        for ref in spec.line_refs:
            if ref.field not in ("Item Number", "Sub Item Number"):
                ln[ref.field] = first.get(ref.field)
        if spec.wh_from_header:
            ln["Warehouse Number"] = rec.get("Warehouse Number")
        if spec.dup_key and "Forecast Details Date" in spec.dup_key:
            ln["Forecast Details Date"] = first.get("Forecast Details Date")
        for k in ln:
            if k.endswith("Unique Id"):
                ln[k] = None
        return ln

    def _save(self, spec, rec, body) -> bool:
        R.doc_update(self.t, spec, rec, body, self.now)
        return True

    # -- deletes -------------------------------------------------------------------------------------------
    def deletable(self, tname, rec) -> bool:
        st = self.st
        for btab, match, src in BLOCKERS.get(tname, ()):
            if st[btab].has_ref(match, rec.get(src)):
                return False
        for ctab, key in CASCADES.get(tname, ()):
            for child in st[ctab].refs(key, rec["id"]):
                if not self.deletable(ctab, child):
                    return False
        return True


def mutate(t, resource: str, create: int, update: int, delete: int) -> dict:
    if resource not in SNAPSHOT_RESOURCES:
        raise ValueError("unknown resource %r; use one of: %s" % (resource, ", ".join(SNAPSHOT_RESOURCES)))
    for v in (create, update, delete):
        if not isinstance(v, int) or v < 0:
            raise ValueError("counts must be non-negative integers")
    m = Mutator(t, resource)
    st = t.store
    table = st[resource]
    created, updated, deleted = [], [], []
    st.begin()
    try:
        for _ in range(create):
            rid = m.create()
            if rid is not None:
                created.append(rid)
        protected = set()
        if resource == "user":
            protected = {u["id"] for u in table.values() if u["Username"] in SEEDED_LOGINS}
        if resource == "role":
            protected = {r["id"] for r in table.values() if r["Role Name"] in SEEDED_ROLES}
        if update:
            pool = [rid for rid in table.rows if rid not in protected and rid not in created]
            if resource == "user":
                pool = [rid for rid in pool if table.get(rid)["User Status"] == "Active"]
            for rid in m.rng.sample(pool, min(update, len(pool))):
                if m.update(table.get(rid)):
                    updated.append(rid)
        if delete:
            skip = protected | set(created) | set(updated)
            pool = [rid for rid in table.rows if rid not in skip]
            m.rng.shuffle(pool)
            for rid in pool:
                if len(deleted) >= delete:
                    break
                rec = table.get(rid)
                if rec is None:
                    continue
                if resource == "user":
                    if rec["User Status"] != "Inactive":
                        new = dict(rec)
                        new["User Status"] = "Inactive"
                        new["_last_modified_at"] = time.time()
                        table.replace(new)
                        deleted.append(rid)
                    continue
                if not m.deletable(resource, rec):
                    continue
                R.delete_record(t, resource, rec)
                deleted.append(rid)
        st.commit()
    except Exception:
        st.rollback()
        raise
    return {"created": created, "updated": updated, "deleted": deleted}
