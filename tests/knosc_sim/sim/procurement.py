"""PUT /api/purchase-order-details-move-lines and PUT /api/purchase-order-details-accept-suggested-orders
(API-NOTES §6.7)."""

from __future__ import annotations

from sim import records as R
from sim.catalog import DOCS, PO_STATUSES
from sim.common import ApiError, bad_json, is_int, json_body, route_not_found
from sim.http_types import Response

PO = DOCS["purchase-order"]
NEW_ID = "New Purchase Order List Id"
NEW_NUM = "New Purchase Order List Number"
OLD_ID = "Old Purchase Order List Id"


def _bad_move(msg: str) -> ApiError:
    return ApiError(400, msg, "PurchaseOrderDetails.InvalidMove")


def move_lines(t, req, name: str, rest: list) -> Response:
    if rest or req.method != "PUT":
        raise route_not_found()
    t.require(req.user, "Procurement", "Edit")
    body = json_body(req)
    moves = body.get("moves")
    if not isinstance(moves, list) or not moves:
        raise _bad_move("'moves' must be a non-empty list.")
    sources, targets, line_ids = set(), set(), []
    for i, mv in enumerate(moves, 1):
        if not isinstance(mv, dict):
            raise _bad_move("Move %d must be an object." % i)
        if not is_int(mv.get("id")):
            raise _bad_move("Move %d: 'id' must be an integer line id." % i)
        if not is_int(mv.get(OLD_ID)):
            raise _bad_move("Move %d: '%s' must be an integer." % (i, OLD_ID))
        has_id, has_num = mv.get(NEW_ID) is not None, mv.get(NEW_NUM) is not None
        if has_id == has_num:
            raise _bad_move("Move %d: give exactly one of '%s' and '%s'." % (i, NEW_ID, NEW_NUM))
        if has_id and not is_int(mv[NEW_ID]):
            raise _bad_move("Move %d: '%s' must be an integer." % (i, NEW_ID))
        if has_num and (not isinstance(mv[NEW_NUM], str) or not mv[NEW_NUM].strip()):
            raise _bad_move("Move %d: '%s' must be a non-empty string." % (i, NEW_NUM))
        sources.add(mv[OLD_ID])
        targets.add(("id", mv[NEW_ID]) if has_id else ("number", mv[NEW_NUM]))
        line_ids.append(mv["id"])
    if len(sources) > 1:
        raise _bad_move("All moves must share one source purchase order.")
    if len(targets) > 1:
        raise _bad_move("All moves must share one target purchase order.")
    if len(set(line_ids)) != len(line_ids):
        raise _bad_move("A line appears more than once in 'moves'.")
    st = t.store
    pos, lines_t = st["purchase-order"], st["purchase-order-details"]
    src = pos.get(sources.pop())
    if src is None or not t.gf_allows(req.user, src):
        raise R.not_found_id("purchase-order", moves[0][OLD_ID])
    lines = []
    for lid in line_ids:
        ln = lines_t.get(lid)
        if ln is None or ln["Purchase Order Id"] != src["id"]:
            raise ApiError(400, "PO Detail #%s not found." % lid, "PurchaseOrderDetails.NotFound")
        lines.append(ln)
    kind, value = targets.pop()
    if kind == "id":
        dst = pos.get(value)
        if dst is None or not t.gf_allows(req.user, dst):
            raise R.not_found_id("purchase-order", value)
        if dst["id"] == src["id"]:
            raise _bad_move("Source and target purchase orders are the same.")
    else:
        if pos.by_key(value) is not None:
            raise ApiError(400, "PO %s already exists." % value, "PurchaseOrderList.AlreadyExists")
        dst = None
    dst_lines = lines_t.lines_of(dst["id"]) if dst is not None else []
    whs = {ln["Warehouse Number"] for ln in lines + dst_lines}
    if len(whs) > 1:
        raise ApiError(400, "All items must be for the same warehouse", "OrderList.MultipleWarehouses")
    keys = [(ln["Item Number"], ln["Sub Item Number"]) for ln in lines + dst_lines]
    if len(set(keys)) != len(keys):
        raise ApiError(400, "Duplicate entries found in order details", "OrderDetails.DuplicateRows")
    if dst is None:
        dst = {k: None for k in PO.header_keys}
        for k in ("PO List Order Date", "Supplier Id", "Supplier Number", "Supplier Name", "PO List Document Status"):
            dst[k] = src[k]
        dst["PO List Number"] = value
        dst["id"] = pos.new_id()
        pos.insert(dst)
    for ln in lines:
        new = dict(ln)
        new["Purchase Order Id"] = dst["id"]
        new["PO List Number"] = dst["PO List Number"]
        if new.get("Ship From Id") is not None:
            sf = st["ship-from-master"].get(new["Ship From Id"])
            if sf is None or sf["Supplier Id"] != dst["Supplier Id"]:
                # a ship-from belongs to one supplier; a line moved to another supplier's PO loses it
                new["Ship From Id"] = new["Ship From Number"] = new["Ship From Name"] = None
        lines_t.replace(new)
        R.propagate(t, "purchase-order-details", ln, new)
    # an emptied source PO is kept (API-NOTES §6.7)
    R.recompute_header(t, PO, src["id"])
    R.recompute_header(t, PO, dst["id"])
    return Response(200, {"message": "Update successful", "rows_updated": len(lines)})


def _err(msg: str) -> ApiError:
    return ApiError(400, msg, "", body={"error": msg})


def accept_suggested(t, req, name: str, rest: list) -> Response:
    if rest or req.method != "PUT":
        raise route_not_found()
    t.require(req.user, "Procurement", "Edit")
    try:
        body = req.json()
    except (ValueError, UnicodeDecodeError):
        raise bad_json()
    if not isinstance(body, dict):
        raise bad_json()
    if body.get("status") is None:
        raise _err("Missing required field: status")
    status = body["status"]
    if not isinstance(status, str) or status not in PO_STATUSES:
        raise _err("status must be one of: %s" % ", ".join(PO_STATUSES))
    ids = body.get("parentIds")
    if not isinstance(ids, list) or not ids or not all(is_int(i) for i in ids):
        raise _err("parentIds must be a non-empty list of integers")
    pos, lines_t = t.store["purchase-order"], t.store["purchase-order-details"]
    for pid in ids:
        po = pos.get(pid)
        if po is None or not t.gf_allows(req.user, po):
            raise _err("Purchase order %d not found" % pid)
    updated = 0
    for pid in dict.fromkeys(ids):
        for ln in lines_t.lines_of(pid):
            updated += 1
            if ln["PO Details Document Status"] != status:
                new = dict(ln)
                new["PO Details Document Status"] = status
                lines_t.replace(new)
    # the header status is deliberately left alone (API-NOTES §6.7)
    return Response(200, {"message": "Update successful", "rows_updated": updated})

