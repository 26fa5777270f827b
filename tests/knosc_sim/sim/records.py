"""Building, validating, storing and deleting records: master data, documents with line sets, tickets,
users. Every function here runs under the tenant lock inside a store transaction; it validates first and
raises ApiError, and the caller rolls the journal back if anything fails half-way.
"""

from __future__ import annotations

from typing import Optional

from sim.catalog import (BLOCKERS, CASCADES, DENORM, DOCS, RESOURCES, DocSpec, Ref, Res)
from sim.common import ApiError, check_value, is_int, missing, now_iso

LINE_SPECS = {d.lines: d for d in DOCS.values()}
ASN_FROM = ("Supplier Id", "Supplier Number", "Ship From Id", "Ship From Number", "Ship From Name")
ASN_TO = ("Warehouse Id", "Warehouse Number", "Warehouse Name")
USER_PUBLIC = ("id", "User Fullname", "Username", "User Email", "User Phone", "Role Id", "Role Name",
               "User Status", "2FA Enabled", "First Signin", "Password Expiration")


# ------------------------------------------------------------------------------------------------------------
# Read views
# ------------------------------------------------------------------------------------------------------------
def user_public(u: dict) -> dict:
    r = {k: u.get(k) for k in USER_PUBLIC}
    r["2FA Enabled"] = bool(u.get("_2fa_enabled"))
    r["First Signin"] = bool(u.get("_first_signin"))
    return r


def row_of(t, tname: str, rec: dict) -> dict:
    """The list-row view of a stored record (the same header-level keys as its get-one record)."""
    if tname == "user":
        return user_public(rec)
    if tname == "role":
        return {k: v for k, v in rec.items() if not k.startswith("_")}
    defaults = t.custom_defaults(tname)
    if tname == "asn":
        r = dict(rec)
        r["From"] = {k: rec.get(k) for k in ASN_FROM}
        r["To"] = {k: rec.get(k) for k in ASN_TO}
    elif defaults:
        r = None
    else:
        return rec
    if defaults:
        for k, v in defaults.items():
            if k not in rec:
                if r is None:
                    r = dict(rec)
                r[k] = v
    return rec if r is None else r


def get_one(t, name: str, rec: dict) -> dict:
    """The full get-one record (without the {"data": ...} wrapper)."""
    st = t.store
    r = dict(row_of(t, name, rec))
    spec = DOCS.get(name)
    if spec is not None:
        r["details"] = [row_of(t, spec.lines, ln) for ln in st[spec.lines].lines_of(rec["id"])]
    elif name == "customer-master":
        r["Ship To Locations"] = [{"id": s["id"], "Ship To Number": s["Ship To Number"], "Ship To Name": s["Ship To Name"]}
                                  for s in sorted(st["ship-to-master"].refs("Customer Id", rec["id"]),
                                                  key=lambda x: x["id"])]
    elif name == "supplier-master":
        r["Ship From Locations"] = [{"id": s["id"], "Ship From Number": s["Ship From Number"],
                                     "Ship From Name": s["Ship From Name"]}
                                    for s in sorted(st["ship-from-master"].refs("Supplier Id", rec["id"]),
                                                    key=lambda x: x["id"])]
    elif name == "issue-tracker-tickets":
        r["Notes"] = [dict(n) for n in sorted(st["issue-tracker-notes"].refs("Ticket Id", rec["id"]),
                                              key=lambda x: x["id"])]
        r["Subscribers"] = [s["email"] for s in sorted(st["issue-tracker-subscribers"].refs("Ticket Id", rec["id"]),
                                                         key=lambda x: x["id"])]
    elif name == "user":
        role = st["role"].get(rec.get("Role Id")) or {}
        r["Role Description"] = role.get("Role Description")
        r["Privileges"] = [{"type": p["Privilege Type"], "access": p["Privilege Access"]}
                           for p in role.get("_privileges", ()) if p["Privilege Access"] != "None"]
        r["Granular Filters"] = [dict(g) for g in role.get("_granular", ())]
    elif name == "role":
        r["Privileges"] = [dict(p) for p in rec.get("_privileges", ())]
        r["Granular Filters"] = [dict(g) for g in rec.get("_granular", ())]
    return r


def wrap_one(name: str, rec: dict) -> dict:
    if name in ("purchase-order", "sales-order", "manufacturing-order", "forecast"):
        return {"data": {"rows": rec}}
    return {"data": rec}


# ------------------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------------------
def not_found_number(target: str, value) -> ApiError:
    res = RESOURCES[target]
    if isinstance(value, int):
        return ApiError(400, "%s #%s not found." % (res.label, value), res.prefix + ".NotFound")
    return ApiError(400, "%s %s not found." % (res.label, value), res.prefix + ".NotFound")


def not_found_id(name: str, rid) -> ApiError:
    res = RESOURCES[name]
    return ApiError(400, "%s #%s not found." % (res.label, rid), res.prefix + ".NotFound")


def resolve(t, ref: Ref, value, prefix: str, where: str = "") -> dict:
    table = t.store[ref.target]
    if ref.tkey == "id":
        if not is_int(value):
            raise ApiError(400, "Field '%s%s' must be an integer." % (ref.field, where), prefix + ".InvalidField")
        target = table.get(value)
    else:
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, "Field '%s%s' must be a non-empty string." % (ref.field, where),
                           prefix + ".InvalidField")
        target = table.by_key(value)
    if target is None:
        raise not_found_number(ref.target, value)
    return target


def apply_ref(rec: dict, ref: Ref, target: Optional[dict], value) -> None:
    rec[ref.field] = value if target is not None else None
    if ref.id_field:
        rec[ref.id_field] = target["id"] if target is not None else None
    for dst, src in ref.copy.items():
        rec[dst] = target.get(src) if target is not None else None


def check_belongs(rec: dict, ref: Ref, target: dict, prefix: str, where: str = "", outer=None) -> None:
    tkey, mine = ref.belongs
    src = rec if mine in rec or outer is None else outer   # a line's ship-from belongs to its header's supplier
    if target.get(tkey) != src.get(mine):
        owner_key = mine[:-3] + " Number" if mine.endswith(" Id") else mine
        raise ApiError(400, "%s %s%s does not belong to %s %s." % (
            RESOURCES[ref.target].label, rec.get(ref.field), where, owner_key.replace(" Number", ""),
            src.get(owner_key)), prefix + ".InvalidField")


def _fill_refs(t, rec: dict, refs: list, body: dict, base: Optional[dict], prefix: str, where: str = "",
               outer: Optional[dict] = None) -> dict:
    """Resolves the references named in body (all of them on create); returns {field: target}."""
    targets = {}
    for ref in refs:
        if ref.field in body:
            value = body[ref.field]
            if value is None:
                if ref.required:
                    raise missing(ref.field, prefix, where)
                apply_ref(rec, ref, None, None)
            else:
                target = resolve(t, ref, value, prefix, where)
                apply_ref(rec, ref, target, value)
                targets[ref.field] = target
        elif base is None:
            if ref.required:
                raise missing(ref.field, prefix, where)
            apply_ref(rec, ref, None, None)
        else:
            value = rec.get(ref.field)
            if value is not None:
                tgt = t.store[ref.target].get(rec[ref.id_field]) if ref.id_field else None
                if tgt is not None:
                    targets[ref.field] = tgt
    for ref in refs:
        if ref.belongs and ref.field in targets:
            check_belongs(rec, ref, targets[ref.field], prefix, where, outer)
    return targets


def _fill_fields(rec: dict, fields: list, body: dict, base: Optional[dict], prefix: str, where: str = "") -> None:
    for key, ftype, required, default in fields:
        if key in body:
            value = body[key]
            if value is None and required:
                raise missing(key, prefix, where)
            rec[key] = check_value(key, value, ftype, prefix, where)
        elif base is None:
            if required:
                raise missing(key, prefix, where)
            rec[key] = default


def check_unique(t, tname: str, rec: dict) -> None:
    table = t.store[tname]
    if not table.bkey:
        return
    other = table.bidx.get(table.key_of(rec))
    if other is not None and other != rec.get("id"):
        res = RESOURCES[tname]
        shown = " / ".join(str(rec.get(k)) for k in table.bkey if rec.get(k) is not None)
        raise ApiError(400, "%s %s already exists." % (res.label, shown), res.prefix + ".AlreadyExists")


# ------------------------------------------------------------------------------------------------------------
# Propagation of denormalised values, header aggregates
# ------------------------------------------------------------------------------------------------------------
def propagate(t, tname: str, old: dict, new: dict) -> None:
    rules = DENORM.get(tname)
    if not rules:
        return
    for ttab, match, src, copy in rules:
        if old.get(src) == new.get(src) and all(old.get(s) == new.get(s) for s in copy.values()):
            continue
        table = t.store[ttab]
        touched_parents = set()
        spec = LINE_SPECS.get(ttab)
        for r in list(table.refs(match, old.get(src))):
            nr = dict(r)
            for dst, s in copy.items():
                nr[dst] = new.get(s)
            if nr != r:
                if ttab == "issue-tracker-tickets":
                    nr["Updated At"] = now_iso()
                table.replace(nr)
                propagate(t, ttab, r, nr)
                if spec is not None:
                    touched_parents.add(nr[spec.parent_field])
        for pid in touched_parents:
            recompute_header(t, spec, pid)


def recompute_header(t, spec: DocSpec, hid) -> None:
    htab = t.store[spec.name]
    h = htab.get(hid)
    if h is None:
        return
    lines = t.store[spec.lines].lines_of(hid)
    nh = dict(h)
    for key, src in spec.aggregates:
        if src is None:
            nh[key] = len(lines)
        else:
            total = 0
            for ln in lines:
                total += ln.get(src) or 0
            nh[key] = round(total, 4) if isinstance(total, float) else total
    if spec.header_wh:
        nh["Warehouse Number"] = lines[0].get("Warehouse Number") if lines else None
    if nh != h:
        htab.replace(nh)


# ------------------------------------------------------------------------------------------------------------
# Master data (and the flat resources built the same way: inventory, allocations, scenarios)
# ------------------------------------------------------------------------------------------------------------
def master_build(t, res: Res, body: dict, base: Optional[dict] = None, user: Optional[dict] = None,
                 now: Optional[float] = None) -> dict:
    if base is None:
        rec = {k: None for k in res.keys}
    else:
        rec = dict(base)
    _fill_fields(rec, res.fields, body, base, res.prefix)
    _fill_refs(t, rec, res.refs, body, base, res.prefix)
    if res.name == "supplier-allocation":
        pct = rec["Allocation Percentage"]
        if pct < 0 or pct > 100:
            raise ApiError(400, "Field 'Allocation Percentage' must be between 0 and 100.",
                           res.prefix + ".InvalidField")
        if rec["Priority"] < 1:
            raise ApiError(400, "Field 'Priority' must be 1 or more.", res.prefix + ".InvalidField")
        others = sum(a["Allocation Percentage"] for a in t.store["supplier-allocation"].refs("Item Id", rec["Item Id"])
                     if a["id"] != rec.get("id"))
        if others + pct > 100 + 1e-9:
            raise ApiError(400, "Total allocation for item %s would exceed 100%% (%s%% already allocated)."
                           % (rec["Item Number"], others), res.prefix + ".ExceedsTotal")
    if res.name == "scenario-analysis":
        stamp = now_iso(now)
        if base is None:
            rec["Created At"] = stamp
            rec["Created By"] = (user or {}).get("User Email")
        rec["Updated At"] = stamp
    check_unique(t, res.name, rec)
    return rec


def master_create(t, res: Res, body: dict, user=None, now=None) -> dict:
    rec = master_build(t, res, body, None, user, now)
    rec["id"] = None
    return t.store[res.name].insert(rec)


def master_update(t, res: Res, rec: dict, body: dict, user=None, now=None) -> dict:
    new = master_build(t, res, body, rec, user, now)
    if new == rec:
        return rec
    t.store[res.name].replace(new)
    propagate(t, res.name, rec, new)
    return new


def delete_record(t, tname: str, rec: dict, root: Optional[str] = None) -> None:
    """Delete with StillInUse checks and cascades (children first)."""
    root = root or tname
    st = t.store
    for btab, match, src in BLOCKERS.get(tname, ()):
        if st[btab].has_ref(match, rec.get(src)):
            res = RESOURCES[tname]
            shown = rec.get(res.number) if res.number and tname not in LINE_SPECS else rec["id"]
            if tname in LINE_SPECS or res.kind == "doc":
                shown = "#%s" % shown
            raise ApiError(400, "%s %s is still in use and cannot be deleted." % (res.label, shown),
                           RESOURCES[root].prefix + ".StillInUse")
    for ctab, key in CASCADES.get(tname, ()):
        for child in list(st[ctab].refs(key, rec["id"])):
            delete_record(t, ctab, child, root if ctab not in LINE_SPECS else ctab)
    if tname == "purchase-order":
        for tk in list(st["issue-tracker-tickets"].refs("Linked PO Id", rec["id"])):
            nt = dict(tk)
            nt["Linked PO Id"] = None
            nt["Linked PO Number"] = None
            nt["Updated At"] = now_iso()
            st["issue-tracker-tickets"].replace(nt)
    st[tname].delete(rec["id"])


# ------------------------------------------------------------------------------------------------------------
# Documents with line sets
# ------------------------------------------------------------------------------------------------------------
def doc_body_of(t, spec: DocSpec, rec: dict) -> dict:
    """The write body that would recreate a stored document (used for partial PUTs and by mutate)."""
    body = {}
    for key, _, _, _ in spec.header_fields:
        body[key] = rec.get(key)
    for ref in spec.header_refs:
        body[ref.field] = rec.get(ref.field)
    lines = []
    for ln in t.store[spec.lines].lines_of(rec["id"]):
        lb = {"id": ln["id"]}
        for key, _, _, _ in spec.line_fields:
            lb[key] = ln.get(key)
        for ref in spec.line_refs:
            lb[ref.field] = ln.get(ref.field)
        if spec.wh_from_header:
            lb["Warehouse Number"] = ln.get("Warehouse Number")
        lines.append(lb)
    body["details"] = lines
    return body


def _doc_line(t, spec: DocSpec, h: dict, lb, i: int, base, existing: dict, seen_ids: set, prefix: str,
              lprefix: str):
    """Validates and builds line i of a document body; returns (line, previous version or None)."""
    st = t.store
    where = " (line %d)" % i
    if not isinstance(lb, dict):
        raise ApiError(400, "Each entry of 'details' must be an object%s." % where, prefix + ".InvalidField")
    lid = lb.get("id")
    if lid is None and spec.line_id_alias:
        lid = lb.get(spec.line_id_alias)
    prev = None
    if base is not None and lid is not None:
        if not is_int(lid) or lid not in existing:
            raise ApiError(400, "%s #%s not found." % (spec.line_label, lid), lprefix + ".NotFound")
        if lid in seen_ids:
            raise ApiError(400, "%s #%s appears twice in 'details'." % (spec.line_label, lid),
                           prefix + ".InvalidField")
        seen_ids.add(lid)
        prev = existing[lid]
    if spec.name == "asn" and lb.get("Item Number") is None and is_int(lb.get("PO Details Id")):
        pol = st["purchase-order-details"].get(lb["PO Details Id"])
        if pol is not None:
            lb = dict(lb)
            lb["Item Number"] = pol["Item Number"]
            lb.setdefault("Sub Item Number", pol.get("Sub Item Number"))
    ln = {k: None for k in spec.line_keys}
    if prev is not None:
        for k, v in prev.items():
            if k not in ln:
                ln[k] = v
    ln["id"] = prev["id"] if prev is not None else None
    _fill_fields(ln, spec.line_fields, lb, None, prefix, where)
    targets = _fill_refs(t, ln, spec.line_refs, lb, None, prefix, where, h)
    for dst, src in spec.line_copy.items():
        if spec.wh_from_header and dst == "Warehouse Number":
            given = lb.get("Warehouse Number")
            if given is not None and given != h.get("Warehouse Number"):
                raise ApiError(400, "All items must be for the same warehouse", "OrderList.MultipleWarehouses")
        ln[dst] = h.get(src)
    if spec.status_pair and ln.get(spec.status_pair[1]) is None:
        ln[spec.status_pair[1]] = h.get(spec.status_pair[0])
    if spec.name == "bill-of-materials" and ln.get("Component Unit") is None:
        comp = targets.get("Component Item Number")
        ln["Component Unit"] = comp.get("Item Unit") if comp else None
    if spec.name == "asn" and ln.get("PO Details Id") is not None:
        pol = targets.get("PO Details Id")
        if pol is not None and pol.get("Item Id") != ln.get("Item Id"):
            raise ApiError(400, "ASN line%s names item %s but PO Detail #%s is for item %s." % (
                where, ln.get("Item Number"), pol["id"], pol.get("Item Number")), prefix + ".InvalidField")
    if spec.line_id_alias:
        ln[spec.line_id_alias] = ln["id"]
    return ln, prev


def doc_build(t, spec: DocSpec, body: dict, base: Optional[dict], now: Optional[float] = None):
    """Validates a full document body; returns (header, [(line, previous line or None)], removed lines)."""
    res = RESOURCES[spec.name]
    prefix = res.prefix
    st = t.store
    if base is not None and not spec.full_put:
        merged = doc_body_of(t, spec, base)
        merged.update(body)
        body = merged
    if spec.name == "asn":
        body = dict(body)
        for nested, keys in (("From", ("Supplier Number", "Ship From Number")), ("To", ("Warehouse Number",))):
            obj = body.get(nested)
            if isinstance(obj, dict):
                for k in keys:
                    if k not in body and k in obj:
                        body[k] = obj[k]
    h = {k: None for k in spec.header_keys}
    if base is not None:
        h["id"] = base["id"]
        for k, v in base.items():   # custom-column values are kept; they are read-only here
            if k not in h:
                h[k] = v
    _fill_fields(h, spec.header_fields, body, None, prefix)
    _fill_refs(t, h, spec.header_refs, body, None, prefix)
    if spec.name == "asn":
        h["Timestamp"] = base["Timestamp"] if base is not None else now_iso(now)
    check_unique(t, spec.name, h)

    details = body.get("details")
    if details is None:
        details = []
    if not isinstance(details, list):
        raise ApiError(400, "Field 'details' must be an array.", prefix + ".InvalidField")
    if len(details) < spec.min_lines:
        raise ApiError(400, spec.noitems_message, spec.noitems_code)
    ltab = st[spec.lines]
    lprefix = spec.line_prefix
    existing = {ln["id"]: ln for ln in ltab.lines_of(base["id"])} if base is not None else {}
    out = []
    seen_ids = set()
    for i, lb in enumerate(details, 1):
        try:
            out.append(_doc_line(t, spec, h, lb, i, base, existing, seen_ids, prefix, lprefix))
        except ApiError as exc:
            exc.line = getattr(exc, "line", None) or i   # lets a job report the file row of the line
            raise
    if spec.single_wh:
        whs = {ln.get("Warehouse Number") for ln, _ in out}
        if len(whs) > 1:
            raise ApiError(400, "All items must be for the same warehouse", "OrderList.MultipleWarehouses")
    if spec.dup_key:
        seen = set()
        for i, (ln, _) in enumerate(out, 1):
            k = tuple(ln.get(x) for x in spec.dup_key)
            if k in seen:
                exc = ApiError(400, spec.dup_message, spec.dup_code)
                exc.line = i
                raise exc
            seen.add(k)
    if spec.date_rule:
        lod, hod, lsd, code = spec.date_rule
        for i, (ln, _) in enumerate(out, 1):
            od = ln.get(lod) or h.get(hod)
            sd = ln.get(lsd)
            if od and sd and od > sd:
                exc = ApiError(400, "Order date cannot be after ship date", code)
                exc.line = i
                raise exc
    removed = [ln for lid, ln in existing.items() if lid not in seen_ids]
    return h, out, removed


def doc_save(t, spec: DocSpec, h: dict, lines: list, removed: list, base: Optional[dict]) -> dict:
    st = t.store
    htab, ltab = st[spec.name], st[spec.lines]
    for ln in removed:
        delete_record(t, spec.lines, ln)
    if base is None:
        h["id"] = htab.new_id()
        htab.insert(h)
    elif h != base:
        htab.replace(h)
    hid = h["id"]
    for ln, prev in lines:
        ln[spec.parent_field] = hid
        if prev is None:
            ln["id"] = ltab.new_id()
            if spec.line_id_alias:
                ln[spec.line_id_alias] = ln["id"]
            ltab.insert(ln)
        elif ln != prev:
            ltab.replace(ln)
            propagate(t, spec.lines, prev, ln)
    recompute_header(t, spec, hid)
    if base is not None:
        propagate(t, spec.name, base, htab.get(hid))
    return htab.get(hid)


def doc_create(t, spec: DocSpec, body: dict, now=None) -> dict:
    h, lines, removed = doc_build(t, spec, body, None, now)
    return doc_save(t, spec, h, lines, removed, None)


def doc_update(t, spec: DocSpec, base: dict, body: dict, now=None) -> dict:
    h, lines, removed = doc_build(t, spec, body, base, now)
    return doc_save(t, spec, h, lines, removed, base)


def line_delete(t, spec: DocSpec, line: dict) -> None:
    """Deletes one line; the last line takes its parent with it (API-NOTES §6.6)."""
    pid = line[spec.parent_field]
    delete_record(t, spec.lines, line)
    if not t.store[spec.lines].children.get(pid):
        parent = t.store[spec.name].get(pid)
        if parent is not None:
            delete_record(t, spec.name, parent)
    else:
        recompute_header(t, spec, pid)
