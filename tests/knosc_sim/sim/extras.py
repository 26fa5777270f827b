"""Settings, saved views, custom columns, notification settings, privilege checks and templates
(API-NOTES §16, §17, §18)."""

from __future__ import annotations

import copy
import io

from sim.catalog import CUSTOM_FORMATS, CUSTOM_TABLES, RESOURCES, VALIDATE_PATHS, H
from sim.common import (ApiError, check_value, is_date, is_int, is_number, json_body, missing, not_privileged,
                        route_not_found)
from sim.http_types import Response
from sim.lists import envelope

API_KEY_MASK = "***"

DEFAULT_SYSTEM_SETTINGS = {
    "password_expiration_days": 90,
    "integrations": {
        "enabled": ["decision-manager", "google-sheets"],
        "decision_manager": {"enabled": True, "url": "https://dm.internal.acme.example", "api_key": "dm-secret-4f1c9a"},
        "pg_portal": {"enabled": False, "url": None},
        "google_sheets": {"enabled": True, "spreadsheet_id": "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgVE2upms"},
        "sharepoint": {"enabled": False, "site_url": None, "library": None},
    },
    "archive": {"status": "active", "data_source": "primary"},
}

DEFAULT_USER_SETTINGS = {"aggregate_global": False, "indirect_demand": True, "indirect_forecast": True,
                         "settings_show_suggested_orders": True, "settings_ask_when_accepting_suggested": True,
                         "settings_ask_on_edit_suggested": "Ask", "hide_no_data_rows": False}


def init_settings(t) -> None:
    t.store["system-settings"].load({"id": 1, "settings": copy.deepcopy(DEFAULT_SYSTEM_SETTINGS)})
    t.store["system-settings"].next_id = 2


# ------------------------------------------------------------------------------------------------------------
# System settings
# ------------------------------------------------------------------------------------------------------------
def _masked(doc):
    if isinstance(doc, dict):
        return {k: (API_KEY_MASK if k == "api_key" and v is not None else _masked(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_masked(v) for v in doc]
    return doc


def _merge(cur: dict, patch: dict, path: str) -> dict:
    out = dict(cur)
    for k, v in patch.items():
        where = path + k
        if k not in cur:
            raise ApiError(400, "Unknown setting '%s'." % where, "SystemSettings.InvalidField")
        if isinstance(cur[k], dict):
            if not isinstance(v, dict):
                raise ApiError(400, "Setting '%s' must be an object." % where, "SystemSettings.InvalidField")
            out[k] = _merge(cur[k], v, where + ".")
        elif k == "api_key":
            # secrets are write-only: the masked value sent back unchanged keeps the stored secret
            if v != API_KEY_MASK:
                if v is not None and not isinstance(v, str):
                    raise ApiError(400, "Setting '%s' must be a string." % where, "SystemSettings.InvalidField")
                out[k] = v
        elif isinstance(cur[k], bool):
            if not isinstance(v, bool):
                raise ApiError(400, "Setting '%s' must be a boolean." % where, "SystemSettings.InvalidField")
            out[k] = v
        elif isinstance(cur[k], list):
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ApiError(400, "Setting '%s' must be an array of strings." % where, "SystemSettings.InvalidField")
            out[k] = list(v)
        else:
            out[k] = v
    return out


def system_settings(t, req, name: str, rest: list) -> Response:
    if rest:
        raise route_not_found()
    table = t.store["system-settings"]
    rec = table.get(1)
    if req.method == "GET":
        t.require(req.user, "General Settings", "View")
        return Response(200, {"data": _masked(rec["settings"])})
    if req.method == "PUT":
        if not (t.can(req.user, "General Settings", "Edit") or t.can(req.user, "Integrations Settings", "Edit")):
            raise not_privileged()
        body = json_body(req)
        new = _merge(rec["settings"], body, "")
        days = new.get("password_expiration_days")
        if days is not None and (not is_int(days) or days < 1):
            raise ApiError(400, "Setting 'password_expiration_days' must be a positive integer or null.",
                           "SystemSettings.InvalidField")
        if new["archive"].get("status") not in ("active", "inactive"):
            raise ApiError(400, "Setting 'archive.status' must be active or inactive.", "SystemSettings.InvalidField")
        if new != rec["settings"]:
            table.replace({"id": 1, "settings": new})
        return Response(200, {"message": "Settings updated."})
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# User settings (own)
# ------------------------------------------------------------------------------------------------------------
def user_settings(t, req, name: str, rest: list) -> Response:
    if rest or req.user is None:
        raise route_not_found()
    table = t.store["user-settings"]
    uid = req.user["id"]
    rec = table.get(uid)
    cur = dict(DEFAULT_USER_SETTINGS)
    if rec is not None:
        cur.update(rec["settings"])
    if req.method == "GET":
        return Response(200, {"data": cur})
    if req.method == "PATCH":
        body = json_body(req)
        for k, v in body.items():
            if k not in DEFAULT_USER_SETTINGS:
                raise ApiError(400, "Unknown setting '%s'." % k, "UserSettings.InvalidField")
            if k == "settings_ask_on_edit_suggested":
                check_value(k, v, ("Ask", "Always", "Never"), "UserSettings")
            elif not isinstance(v, bool):
                raise ApiError(400, "Setting '%s' must be a boolean." % k, "UserSettings.InvalidField")
            cur[k] = v
        new = {"id": uid, "settings": cur}
        if rec is None:
            table.insert(new)
        elif new != rec:
            table.replace(new)
        return Response(200, {"message": "Settings updated."})
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# Notification settings (per user)
# ------------------------------------------------------------------------------------------------------------
NOTIF_FIELDS = [("type", "str", True, None), ("source", "str", True, None), ("event", "str", True, None),
                ("channel", ("in-app", "email"), True, None), ("enabled", "bool", False, True),
                ("filters", "any", False, None)]


def _notif_public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def _notif_apply(rec: dict, body: dict, create: bool) -> dict:
    for key, ftype, required, default in NOTIF_FIELDS:
        if key in body:
            v = body[key]
            if key == "filters":
                if v is not None and not isinstance(v, dict):
                    raise ApiError(400, "Field 'filters' must be an object or null.",
                                   "UserNotificationSettings.InvalidField")
                rec[key] = v
            else:
                if v is None and required:
                    raise missing(key, "UserNotificationSettings")
                rec[key] = check_value(key, v, ftype, "UserNotificationSettings")
        elif create:
            if required:
                raise missing(key, "UserNotificationSettings")
            rec[key] = default
    return rec


def notification_settings(t, req, name: str, rest: list) -> Response:
    if req.user is None:
        raise route_not_found()
    table = t.store["user-notification-settings"]
    uid = req.user["id"]
    mine = [r for r in table.values() if r["_owner"] == uid]
    m = req.method

    def by_id(raw):
        try:
            rid = int(raw)
        except ValueError:
            rid = None
        rec = table.get(rid)
        if rec is None or rec["_owner"] != uid:
            raise ApiError(400, "Notification setting #%s not found." % raw, "UserNotificationSettings.NotFound")
        return rec

    if not rest:
        if m == "GET":
            return Response(200, {"data": [_notif_public(r) for r in mine]})
        if m == "POST":
            rec = _notif_apply({"id": None, "_owner": uid}, json_body(req), True)
            table.insert(rec)
            return t.created_response("user-notification-settings", rec["id"])
        raise route_not_found()
    if len(rest) == 1:
        rec = by_id(rest[0])
        if m == "GET":
            return Response(200, {"data": _notif_public(rec)})
        if m == "PUT":
            new = _notif_apply(dict(rec), json_body(req), False)
            if new != rec:
                table.replace(new)
            return Response(200, {"message": "Update successful"})
        if m == "DELETE":
            table.delete(rec["id"])
            return Response(200, {"message": "Deleted successfully."})
        raise route_not_found()
    if len(rest) == 2:
        typ, source = rest
        match = [r for r in mine if r["type"] == typ and r["source"] == source]
        if m == "GET":
            return Response(200, {"data": [_notif_public(r) for r in match]})
        if not match:
            raise ApiError(400, "No notification settings for %s / %s." % (typ, source),
                           "UserNotificationSettings.NotFound")
        if m == "PUT":
            body = json_body(req)
            for rec in match:
                new = _notif_apply(dict(rec), body, False)
                if new != rec:
                    table.replace(new)
            return Response(200, {"message": "Update successful"})
        if m == "DELETE":
            for rec in match:
                table.delete(rec["id"])
            return Response(200, {"message": "Deleted successfully."})
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# Saved views (personal and shared)
# ------------------------------------------------------------------------------------------------------------
def views(t, req, name: str, rest: list) -> Response:
    from sim.export import VIEWS
    if req.user is None:
        raise route_not_found()
    shared = name == "views-shared"
    table = t.store[name]
    uid = req.user["id"]
    is_admin = t._role(req.user).get("Role Name") == "Administrator"
    m = req.method
    prefix = "ViewsShared" if shared else "Views"

    def visible_to_me(r):
        if shared:
            view = VIEWS.get(r["view"])
            return view is None or t.can(req.user, view[1], "View")
        return r["_owner"] == uid

    def validate(rec: dict, body: dict, create: bool) -> dict:
        for key, ftype in (("name", "str"), ("view", "str")):
            if key in body:
                rec[key] = check_value(key, body[key], ftype, prefix)
            elif create:
                raise missing(key, prefix)
        if rec["view"] not in VIEWS:
            raise ApiError(400, "Unknown view '%s'." % rec["view"], prefix + ".InvalidView")
        for key, kind in (("headers", list), ("filters", dict), ("sort", dict), ("tags", dict), ("extra", dict)):
            if key in body:
                if body[key] is not None and not isinstance(body[key], kind):
                    raise ApiError(400, "Field '%s' must be %s." % (key, "an array" if kind is list else "an object"),
                                   prefix + ".InvalidField")
                rec[key] = body[key]
            elif create:
                rec[key] = [] if kind is list else ({} if key in ("filters", "tags", "extra") else None)
        for other in table.values():
            if (other["id"] != rec.get("id") and other["name"] == rec["name"] and other["view"] == rec["view"]
                    and (shared or other["_owner"] == uid)):
                raise ApiError(400, "A view named %s already exists for %s." % (rec["name"], rec["view"]),
                               prefix + ".AlreadyExists")
        return rec

    if not rest:
        if m == "GET":
            return Response(200, {"data": [_notif_public(r) for r in table.values() if visible_to_me(r)]})
        if m == "POST":
            rec = validate({"id": None, "_owner": uid}, json_body(req), True)
            table.insert(rec)
            return t.created_response(name, rec["id"])
        raise route_not_found()
    if len(rest) != 1:
        raise route_not_found()
    try:
        rid = int(rest[0])
    except ValueError:
        rid = None
    rec = table.get(rid)
    if rec is None or not visible_to_me(rec):
        raise ApiError(400, "View #%s not found." % rest[0], prefix + ".NotFound")
    if m == "GET":
        return Response(200, {"data": _notif_public(rec)})
    if shared and rec["_owner"] != uid and not is_admin:
        raise not_privileged()
    if m == "PUT":
        new = validate(dict(rec), json_body(req), False)
        if new != rec:
            table.replace(new)
        return Response(200, {"message": "Update successful"})
    if m == "DELETE":
        table.delete(rec["id"])
        return Response(200, {"message": "Deleted successfully."})
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# Custom columns
# ------------------------------------------------------------------------------------------------------------
CC_HEADERS = [H("table", alias="Table"), H("key", "string-link", "Key"), H("format", alias="Format"),
              H("alias", alias="Alias"), H("description", alias="Description"), H("required", "boolean", "Required"),
              H("default_value", alias="Default")]


def check_custom_value(col: dict, value, where: str = ""):
    fmt = col.get("format") or "string"
    key = col["key"]
    if value is None:
        return None
    if fmt in ("number", "currency"):
        if not is_number(value):
            raise ApiError(400, "Custom column '%s'%s must be a number." % (key, where), "CustomColumns.InvalidValue")
    elif fmt == "boolean":
        if not isinstance(value, bool):
            raise ApiError(400, "Custom column '%s'%s must be a boolean." % (key, where), "CustomColumns.InvalidValue")
    elif fmt == "date":
        if not is_date(value):
            raise ApiError(400, "Custom column '%s'%s must be a date (YYYY-MM-DD)." % (key, where),
                           "CustomColumns.InvalidValue")
    elif not isinstance(value, str):
        raise ApiError(400, "Custom column '%s'%s must be a string." % (key, where), "CustomColumns.InvalidValue")
    return value


def _cc_validate(t, rec: dict, body: dict, create: bool) -> dict:
    p = "CustomColumns"
    if create:
        for key in ("table", "key", "format"):
            if body.get(key) is None:
                raise missing(key, p)
        table = check_value("table", body["table"], "str", p)
        if table not in CUSTOM_TABLES:
            raise ApiError(400, "Unknown table '%s'; use one of: %s." % (table, ", ".join(CUSTOM_TABLES)),
                           p + ".InvalidTable")
        rec["table"] = table
        rec["key"] = check_value("key", body["key"], "str", p).strip()
    else:
        for fixed in ("table", "key"):
            if fixed in body and body[fixed] != rec[fixed]:
                raise ApiError(400, "Field '%s' of a custom column cannot be changed." % fixed, p + ".InvalidField")
    if "format" in body:
        rec["format"] = check_value("format", body["format"], CUSTOM_FORMATS, p)
    for key, ftype, default in (("alias", "str?", None), ("description", "str?", None), ("required", "bool", False)):
        if key in body:
            rec[key] = check_value(key, body[key], ftype, p)
        elif create:
            rec[key] = default
    if "default_value" in body:
        rec["default_value"] = body["default_value"]
    elif create:
        rec["default_value"] = None
    check_custom_value(rec, rec["default_value"], " (default_value)")
    tname = CUSTOM_TABLES[rec["table"]]
    if create:
        if rec["key"] in RESOURCES[tname].keys or rec["key"] in ("id", "details"):
            raise ApiError(400, "'%s' is a built-in column of %s." % (rec["key"], rec["table"]), p + ".AlreadyExists")
        for other in t.store["custom-columns"].values():
            if CUSTOM_TABLES[other["table"]] == tname and other["key"] == rec["key"]:
                raise ApiError(400, "Custom column '%s' already exists on %s." % (rec["key"], rec["table"]),
                               p + ".AlreadyExists")
    return rec


def _cc_delete(t, rec: dict) -> None:
    tname = CUSTOM_TABLES[rec["table"]]
    key = rec["key"]
    still = any(CUSTOM_TABLES[c["table"]] == tname and c["key"] == key and c["id"] != rec["id"]
                for c in t.store["custom-columns"].values())
    t.store["custom-columns"].delete(rec["id"])
    if not still:
        table = t.store[tname]
        for r in list(table.values()):
            if key in r:
                new = dict(r)
                del new[key]
                table.replace(new)


def custom_columns(t, req, name: str, rest: list) -> Response:
    table = t.store["custom-columns"]
    m, user = req.method, req.user
    if not rest:
        if m == "GET":
            t.require(user, "Custom Columns", "View")
            rows = [dict(c) for c in table.values()]
            return Response(200, envelope(CC_HEADERS, "id", "Ascending", rows))
        if m == "POST":
            t.require(user, "Custom Columns", "Edit")
            rec = _cc_validate(t, {"id": None}, json_body(req), True)
            table.insert(rec)
            return t.created_response("custom-columns", rec["id"])
        raise route_not_found()
    if len(rest) != 1:
        raise route_not_found()
    seg = rest[0]
    if seg.lstrip("-").isdigit():
        rec = table.get(int(seg))
        if m == "GET":
            t.require(user, "Custom Columns", "View")
        elif m in ("PUT", "DELETE"):
            t.require(user, "Custom Columns", "Edit")
        else:
            raise route_not_found()
        if rec is None:
            raise ApiError(400, "Custom column #%s not found." % seg, "CustomColumns.NotFound")
        if m == "GET":
            return Response(200, {"data": dict(rec)})
        if m == "PUT":
            new = _cc_validate(t, dict(rec), json_body(req), False)
            if new != rec:
                table.replace(new)
            return Response(200, {"message": "Update successful"})
        _cc_delete(t, rec)
        return Response(200, {"message": "Deleted successfully."})
    if seg not in CUSTOM_TABLES:
        raise ApiError(400, "Unknown table '%s'." % seg, "CustomColumns.InvalidTable")
    if m == "GET":
        t.require(user, "Custom Columns", "View")
        return Response(200, {"data": [dict(c) for c in table.values() if c["table"] == seg]})
    if m == "PUT":
        # bulk: entries with an id update that column, entries without one add a column to this table
        t.require(user, "Custom Columns", "Edit")
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        cols = body.get("columns") if isinstance(body, dict) else body
        if not isinstance(cols, list):
            raise ApiError(400, "Body must be an array of columns or {\"columns\": [...]}.", "CustomColumns.InvalidField")
        changed = 0
        for c in cols:
            if not isinstance(c, dict):
                raise ApiError(400, "Each column must be an object.", "CustomColumns.InvalidField")
            if c.get("id") is not None:
                rec = table.get(c["id"]) if is_int(c["id"]) else None
                if rec is None or rec["table"] != seg:
                    raise ApiError(400, "Custom column #%s not found." % c["id"], "CustomColumns.NotFound")
                new = _cc_validate(t, dict(rec), c, False)
                if new != rec:
                    table.replace(new)
            else:
                table.insert(_cc_validate(t, {"id": None}, dict(c, table=seg), True))
            changed += 1
        return Response(200, {"message": "Update successful", "rows_updated": changed})
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# Privileges
# ------------------------------------------------------------------------------------------------------------
def validate_privileges(t, req, name: str, rest: list) -> Response:
    if req.method != "GET" or rest:
        raise route_not_found()
    path = req.query.get("path")
    if not path:
        raise ApiError(400, "Missing required parameter: path", "Privilege.MissingField")
    module = VALIDATE_PATHS.get(path.rstrip("/") or path)
    if module is None:
        raise ApiError(400, "Unknown path %s." % path, "Privilege.UnknownPath")
    t.require(req.user, module, "View")
    return Response(200, {"access": True})


def privilege(t, req, name: str, rest: list) -> Response:
    m = req.method
    if not rest and m == "GET":
        privs = t.privileges(req.user) if req.user else {}
        typ = req.query.get("type")
        if typ:
            access = req.query.get("access") or "View"
            if access not in ("View", "Edit"):
                raise ApiError(400, "Parameter 'access' must be View or Edit.", "Privilege.InvalidField")
            return Response(200, {"access": t.can(req.user, typ, access)})
        return Response(200, {"data": [{"type": k, "access": v} for k, v in privs.items()]})
    if len(rest) == 1 and m == "DELETE":
        t.require(req.user, "Users", "Edit")
        try:
            pid = int(rest[0])
        except ValueError:
            pid = None
        roles = t.store["role"]
        for role in list(roles.values()):
            for i, p in enumerate(role.get("_privileges", ())):
                if p["id"] == pid:
                    if role["Role Name"] in ("Administrator", "Service Account") and \
                            t._role(req.user).get("Role Name") != "Administrator":
                        raise not_privileged()
                    new = dict(role)
                    privs = [dict(x) for x in role["_privileges"]]
                    privs[i]["Privilege Access"] = "None"
                    new["_privileges"] = privs
                    new["Number of Privileges"] = sum(1 for x in privs if x["Privilege Access"] != "None")
                    roles.replace(new)
                    return Response(200, {"message": "Privilege removed from role."})
        raise ApiError(400, "Privilege #%s not found." % rest[0], "Privilege.NotFound")
    raise route_not_found()


# ------------------------------------------------------------------------------------------------------------
# Templates
# ------------------------------------------------------------------------------------------------------------
def templates(t, req, name: str, rest: list) -> Response:
    from sim.jobs import template_columns
    from sim.catalog import JOB_TRIGGERS
    if req.method != "GET":
        raise route_not_found()
    if not rest:
        data = []
        for trig, (res, module) in JOB_TRIGGERS.items():
            if res is None:
                continue
            data.append({"trigger": trig, "name": "%s template" % trig, "module": module,
                         "columns": template_columns(t, trig), "url": "/api/templates/%s" % trig})
        return Response(200, {"data": data})
    if len(rest) != 1 or rest[0] not in JOB_TRIGGERS or JOB_TRIGGERS[rest[0]][0] is None:
        raise route_not_found()
    trig = rest[0]
    from openpyxl import Workbook
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(trig)
    ws.append(["Action"] + template_columns(t, trig))
    buf = io.BytesIO()
    wb.save(buf)
    return Response(200, buf.getvalue(),
                    content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": 'attachment; filename="%s-template.xlsx"' % trig})
