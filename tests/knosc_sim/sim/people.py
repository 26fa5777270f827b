"""Users (API-NOTES §18) and issue-tracker tickets with notes and subscribers (API-NOTES §13.1, CONTRACT §5)."""

from __future__ import annotations

import time

from sim import records as R
from sim.catalog import RESOURCES
from sim.common import (SIM_TODAY_S, ApiError, check_value, date_add, is_int, json_body, missing, not_privileged,
                        now_iso, route_not_found)
from sim.http_types import Response

PROTECTED_ROLES = ("Administrator", "Service Account")
MIN_PASSWORD = 8


# ------------------------------------------------------------------------------------------------------------
# Users
# ------------------------------------------------------------------------------------------------------------
def _is_admin(t, user) -> bool:
    return bool(user) and t._role(user).get("Role Name") == "Administrator"


def _user_id(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "User #%s not found." % raw, "User.NotFound")


def _check_unique_login(t, username: str, email: str, self_id=None) -> None:
    keys = {username.lower(), email.lower()}
    for u in t.store["user"].values():
        if u["id"] == self_id:
            continue
        if (u.get("Username") or "").lower() in keys or (u.get("User Email") or "").lower() in keys:
            raise ApiError(400, "A user with username or e-mail %s already exists." % (
                username if (u.get("Username") or "").lower() in keys else email), "User.AlreadyExists")


def _role_of(t, role_id) -> dict:
    if not is_int(role_id):
        raise ApiError(400, "Field 'Role Id' must be an integer.", "User.InvalidField")
    role = t.store["role"].get(role_id)
    if role is None:
        raise ApiError(400, "Role #%s not found." % role_id, "Role.NotFound")
    return role


def _password(body: dict) -> str:
    pw = body.get("password")
    if not isinstance(pw, str):
        raise ApiError(400, "Field 'password' must be a string.", "User.InvalidField")
    if len(pw) < MIN_PASSWORD:
        raise ApiError(400, "Password must be at least %d characters long." % MIN_PASSWORD, "User.PasswordTooShort")
    return pw


def handle_user(t, req, rest: list) -> Response:
    user, m = req.user, req.method
    table = t.store["user"]
    if not rest:
        if m == "GET":
            t.require(user, "Users", "View")
            return t.list_response(req, "user")
        if m == "POST":
            t.require(user, "Users", "Edit")
            body = json_body(req)
            for key in ("User Fullname", "Username", "User Email", "Role Id", "password"):
                if body.get(key) is None:
                    raise missing(key, "User")
            full = check_value("User Fullname", body["User Fullname"], "str", "User")
            username = check_value("Username", body["Username"], "str", "User")
            email = check_value("User Email", body["User Email"], "email", "User")
            phone = check_value("User Phone", body.get("User Phone"), "str?", "User")
            role = _role_of(t, body["Role Id"])
            if role["Role Name"] in PROTECTED_ROLES and not _is_admin(t, user):
                raise not_privileged()
            pw = _password(body)
            _check_unique_login(t, username, email)
            days = (t.store["system-settings"].get(1) or {}).get("password_expiration_days")
            rec = {"id": None, "User Fullname": full, "Username": username, "User Email": email, "User Phone": phone,
                   "Role Id": role["id"], "Role Name": role["Role Name"], "User Status": "Active",
                   "2FA Enabled": False, "First Signin": True,
                   "Password Expiration": date_add(SIM_TODAY_S, days) if is_int(days) else None,
                   "_password": pw, "_totp_secret": None, "_2fa_enabled": False, "_first_signin": True,
                   "_failed_logins": 0, "_locked_until": 0.0, "_last_modified_at": time.time(), "_reset_token": None}
            table.insert(rec)
            return t.created_response("user", rec["id"], "User created successfully.")
        raise route_not_found()
    if len(rest) != 1:
        raise route_not_found()
    rid = _user_id(rest[0])
    target = table.get(rid)
    if m == "GET":
        t.require(user, "Users", "View")
        if target is None:
            raise ApiError(400, "User #%s not found." % rid, "User.NotFound")
        return Response(200, {"data": R.get_one(t, "user", target)})
    if m not in ("PUT", "DELETE"):
        raise route_not_found()
    t.require(user, "Users", "Edit")
    if target is None:
        raise ApiError(400, "User #%s not found." % rid, "User.NotFound")
    if target.get("Role Name") in PROTECTED_ROLES and not _is_admin(t, user):
        raise not_privileged()
    new = dict(target)
    bump = False
    if m == "DELETE":
        if new.get("User Status") != "Inactive":
            new["User Status"] = "Inactive"
            bump = True
    else:
        body = json_body(req)
        for key, ftype in (("User Fullname", "str"), ("Username", "str"), ("User Email", "email"),
                           ("User Phone", "str?"), ("User Status", ("Active", "Inactive"))):
            if key in body:
                new[key] = check_value(key, body[key], ftype, "User")
        if "Role Id" in body:
            role = _role_of(t, body["Role Id"])
            if role["Role Name"] in PROTECTED_ROLES and not _is_admin(t, user):
                raise not_privileged()
            new["Role Id"], new["Role Name"] = role["id"], role["Role Name"]
        if "password" in body:
            new["_password"] = _password(body)
        if new["Username"] != target["Username"] or new["User Email"] != target["User Email"]:
            _check_unique_login(t, new["Username"], new["User Email"], rid)
        bump = any(new.get(k) != target.get(k) for k in ("Role Id", "User Status", "_password"))
    if bump:
        # API-NOTES §2.3: tokens issued before a password, role or status change stop working
        new["_last_modified_at"] = time.time()
    if new != target:
        table.replace(new)
    return Response(200, {"message": "Deleted successfully." if m == "DELETE" else "Update successful"})


# ------------------------------------------------------------------------------------------------------------
# Tickets
# ------------------------------------------------------------------------------------------------------------
TICKETS = "issue-tracker-tickets"


def _ticket(t, tid, user=None) -> dict:
    rec = t.store[TICKETS].get(tid)
    if rec is None:
        raise ApiError(400, "Ticket %s not found." % tid, "IssueTrackerTickets.NotFound")
    return rec


def _touch(t, tid, now=None) -> None:
    rec = t.store[TICKETS].get(tid)
    if rec is not None:
        new = dict(rec)
        new["Updated At"] = now_iso(now)
        t.store[TICKETS].replace(new)


def _linked_po(t, rec: dict, body: dict) -> None:
    prefix = "IssueTrackerTickets"
    if "Linked PO Number" in body and body["Linked PO Number"] is not None:
        num = check_value("Linked PO Number", body["Linked PO Number"], "str", prefix)
        po = t.store["purchase-order"].by_key(num)
        if po is None:
            raise ApiError(400, "PO %s not found." % num, "PurchaseOrderList.NotFound")
    elif "Linked PO Id" in body and body["Linked PO Id"] is not None:
        pid = check_value("Linked PO Id", body["Linked PO Id"], "int", prefix)
        po = t.store["purchase-order"].get(pid)
        if po is None:
            raise ApiError(400, "PO #%s not found." % pid, "PurchaseOrderList.NotFound")
    elif "Linked PO Number" in body or "Linked PO Id" in body:
        po = None
    else:
        return
    rec["Linked PO Id"] = po["id"] if po else None
    rec["Linked PO Number"] = po["PO List Number"] if po else None


def ticket_create(t, body: dict, user: dict, now=None) -> dict:
    res = RESOURCES[TICKETS]
    rec = {k: None for k in res.keys}
    R._fill_fields(rec, res.fields, body, None, res.prefix)
    rec["Reporter Email"] = check_value("Reporter Email", body.get("Reporter Email") or (user or {}).get("User Email"),
                                        "str?", res.prefix)
    _linked_po(t, rec, body)
    subs = body.get("Subscribers")
    if subs is not None:
        if not isinstance(subs, list) or not all(isinstance(s, str) and s for s in subs):
            raise ApiError(400, "Field 'Subscribers' must be an array of e-mail addresses.", res.prefix + ".InvalidField")
    else:
        subs = [e for e in (rec["Reporter Email"], rec["Assignee Email"]) if e]
    t.ticket_seq += 1
    rec["id"] = "TKT-%03d" % t.ticket_seq
    rec["Created At"] = rec["Updated At"] = now_iso(now)
    t.store[TICKETS].insert(rec)
    sub_t = t.store["issue-tracker-subscribers"]
    for email in dict.fromkeys(subs):
        sub_t.insert({"id": None, "Ticket Id": rec["id"], "email": email})
    return rec


def ticket_update(t, rec: dict, body: dict, now=None) -> dict:
    res = RESOURCES[TICKETS]
    new = dict(rec)
    R._fill_fields(new, res.fields, body, new, res.prefix)
    if "Reporter Email" in body:
        new["Reporter Email"] = check_value("Reporter Email", body["Reporter Email"], "str?", res.prefix)
    _linked_po(t, new, body)
    new["Updated At"] = now_iso(now)
    t.store[TICKETS].replace(new)
    return new


def handle_ticket(t, req, rest: list) -> Response:
    user, m = req.user, req.method
    if not rest:
        if m == "GET":
            t.require(user, "Issue Tracker", "View")
            return t.list_response(req, TICKETS)
        if m == "POST":
            t.require(user, "Issue Tracker", "Edit")
            rec = ticket_create(t, json_body(req), user, req.now)
            return t.created_response(TICKETS, rec["id"])
        raise route_not_found()
    tid = rest[0]
    if len(rest) == 1:
        if m == "GET":
            t.require(user, "Issue Tracker", "View")
            return Response(200, {"data": R.get_one(t, TICKETS, _ticket(t, tid))})
        if m == "PUT":
            t.require(user, "Issue Tracker", "Edit")
            rec = _ticket(t, tid)
            ticket_update(t, rec, json_body(req), req.now)
            return Response(200, {"message": "Update successful"})
        if m == "DELETE":
            t.require(user, "Issue Tracker", "Edit")
            R.delete_record(t, TICKETS, _ticket(t, tid))
            return Response(200, {"message": "Deleted successfully."})
        raise route_not_found()
    if len(rest) == 2 and rest[1] == "notes" and m == "GET":
        t.require(user, "Issue Tracker", "View")
        rec = _ticket(t, tid)
        return Response(200, {"data": R.get_one(t, TICKETS, rec)["Notes"]})
    if len(rest) == 2 and rest[1] == "subscribers":
        subs_t = t.store["issue-tracker-subscribers"]
        if m == "GET":
            t.require(user, "Issue Tracker", "View")
            rec = _ticket(t, tid)
            return Response(200, {"data": R.get_one(t, TICKETS, rec)["Subscribers"]})
        if m in ("POST", "DELETE"):
            t.require(user, "Issue Tracker", "Edit")
            rec = _ticket(t, tid)
            body = json_body(req)
            email = body.get("email")
            if email is None:
                raise missing("email", "IssueTrackerSubscribers")
            email = check_value("email", email, "email", "IssueTrackerSubscribers")
            current = [s for s in subs_t.refs("Ticket Id", tid) if s["email"].lower() == email.lower()]
            if m == "POST":
                if not current:
                    subs_t.insert({"id": None, "Ticket Id": tid, "email": email})
                    _touch(t, tid, req.now)
                return Response(200, {"message": "Subscriber added."})
            if not current:
                raise ApiError(400, "%s is not subscribed to %s." % (email, tid), "IssueTrackerSubscribers.NotFound")
            for s in current:
                subs_t.delete(s["id"])
            _touch(t, tid, req.now)
            return Response(200, {"message": "Subscriber removed."})
    raise route_not_found()


def handle_notes(t, req, name: str, rest: list) -> Response:
    user, m = req.user, req.method
    notes = t.store["issue-tracker-notes"]
    if not rest and m == "POST":
        t.require(user, "Issue Tracker", "Edit")
        body = json_body(req)
        for key in ("Ticket Id", "Note"):
            if body.get(key) is None:
                raise missing(key, "IssueTrackerNotes")
        tid = check_value("Ticket Id", body["Ticket Id"], "str", "IssueTrackerNotes")
        text = check_value("Note", body["Note"], "str", "IssueTrackerNotes")
        _ticket(t, tid)
        rec = notes.insert({"id": None, "Ticket Id": tid, "Note": text, "Author Email": (user or {}).get("User Email"),
                            "Created At": now_iso(req.now)})
        _touch(t, tid, req.now)
        return t.created_response("issue-tracker-notes", rec["id"])
    if len(rest) != 1:
        raise route_not_found()
    try:
        nid = int(rest[0])
    except ValueError:
        nid = rest[0]
    note = notes.get(nid)
    if m == "GET":
        t.require(user, "Issue Tracker", "View")
        if note is None:
            raise ApiError(400, "Note #%s not found." % nid, "IssueTrackerNotes.NotFound")
        return Response(200, {"data": dict(note)})
    if m not in ("PUT", "DELETE"):
        raise route_not_found()
    t.require(user, "Issue Tracker", "Edit")
    if note is None:
        raise ApiError(400, "Note #%s not found." % nid, "IssueTrackerNotes.NotFound")
    if m == "PUT":
        body = json_body(req)
        if "Note" in body:
            new = dict(note)
            new["Note"] = check_value("Note", body["Note"], "str", "IssueTrackerNotes")
            if new != note:
                notes.replace(new)
        _touch(t, note["Ticket Id"], req.now)
        return Response(200, {"message": "Update successful"})
    notes.delete(nid)
    _touch(t, note["Ticket Id"], req.now)
    return Response(200, {"message": "Deleted successfully."})
