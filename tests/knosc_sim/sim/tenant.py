"""The Knosc tenant: its data, privileges and every /api route that is not an authentication route.

The transport (server.py, auth.py) authenticates the caller and checks CSRF, then calls dispatch().
Every public method takes the tenant lock itself. Writes run inside a store transaction: a rejected
write (or one that fails half-way) leaves the tenant exactly as it was.
"""

from __future__ import annotations

import atexit
import collections
import shutil
import sys
import tempfile
import threading
import time
import traceback
from typing import Optional

from sim import background, extras, routes
from sim import records as R
from sim.catalog import CUSTOM_TABLES, DOCS, RESOURCES
from sim.common import ApiError, json_body, not_privileged, now_iso, route_not_found
from sim.generator import generate
from sim.http_types import Request, Response
from sim.lists import (apply_predicates, envelope, make_getter, parse_params, predicates, sort_records)
from sim.jobs import JobRunner
from sim.store import Store

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CACHE_ENTRIES = 64


def build_store() -> Store:
    st = Store()
    for name, res in RESOURCES.items():
        bkey = res.bkey if res.kind not in ("user",) else ()
        st.add_table(name, bkey, res.parent_field)
    for name in ("custom-columns", "views", "views-shared", "user-notification-settings", "user-settings",
                 "system-settings"):
        st.add_table(name)
    return st


class Tenant:
    def __init__(self, seed: int, scale: float, omit_create_id: bool = False, data_dir: Optional[str] = None):
        self.lock = threading.RLock()
        self.seed = seed
        self.scale = scale
        self.omit_create_id = omit_create_id
        self._data_dir = data_dir
        started = time.monotonic()
        self.store = build_store()
        gen = generate(self.store, seed, scale)
        self.ticket_seq = gen.ticket_seq
        self.privilege_next = gen.privilege_next
        extras.init_settings(self)
        self.created: collections.Counter = collections.Counter()
        self._sel_cache: collections.OrderedDict = collections.OrderedDict()
        self._sort_cache: dict = {}
        self._cc_cache = (None, {}, {})
        self._wh_cache = (None, {})
        self.planner_runs = 0
        self.mutate_runs = 0
        self.suggest_seq = 0
        self.write_log: collections.deque = collections.deque(maxlen=10000)
        self._log_seq = 0
        background.run_planner(self)   # the tenant starts with the planner's current suggestions
        self.jobs = JobRunner(self)
        self.generation_seconds = time.monotonic() - started

    @property
    def data_dir(self) -> str:
        """--data-dir, or a temporary directory made on first use and removed when the process exits."""
        if self._data_dir is None:
            with self.lock:
                if self._data_dir is None:
                    path = tempfile.mkdtemp(prefix="knosc-sim-data-")
                    atexit.register(shutil.rmtree, path, True)
                    self._data_dir = path
        return self._data_dir

    # ========================================================================================================
    # Accounts (auth.py)
    # ========================================================================================================
    def find_user(self, login: str) -> Optional[dict]:
        if not isinstance(login, str):
            return None
        key = login.strip().lower()
        with self.lock:
            for u in self.store["user"].values():
                if (u.get("Username") or "").lower() == key or (u.get("User Email") or "").lower() == key:
                    return u
        return None

    def user_by_id(self, user_id) -> Optional[dict]:
        with self.lock:
            return self.store["user"].get(user_id)

    def _role(self, user: dict) -> dict:
        return self.store["role"].get(user.get("Role Id")) or {}

    def privileges(self, user: dict) -> dict:
        with self.lock:
            role = self._role(user)
            return {p["Privilege Type"]: p["Privilege Access"] for p in role.get("_privileges", ())
                    if p["Privilege Access"] in ("View", "Edit")}

    def granular_filters(self, user: Optional[dict]) -> list:
        if not user:
            return []
        with self.lock:
            return [dict(g, values=list(g.get("values") or ())) for g in self._role(user).get("_granular", ())]

    def profile(self, user: dict) -> dict:
        with self.lock:
            u = self.store["user"].get(user["id"]) or user
            rec = R.get_one(self, "user", u)
            return {"data": rec}

    def update_user_secret(self, user_id: int, **fields) -> None:
        with self.lock:
            u = self.store["user"].get(user_id)
            if u is None:
                return
            u.update(fields)
            self.store["user"].version += 1

    # ========================================================================================================
    # Privileges and helpers for handlers
    # ========================================================================================================
    def can(self, user: Optional[dict], module: str, access: str = "View") -> bool:
        if user is None:
            return False
        a = self.privileges(user).get(module)
        return a == "Edit" or (access == "View" and a == "View")

    def require(self, user: Optional[dict], module: str, access: str = "View") -> None:
        if not self.can(user, module, access):
            raise not_privileged()

    def gf_allows(self, user: Optional[dict], rec: dict) -> bool:
        for g in self.granular_filters(user):
            v = rec.get(g.get("category"))
            if v is None:
                continue
            vals = g.get("values") or ()
            if g.get("type", "include") == "exclude":
                if v in vals:
                    return False
            elif v not in vals:
                return False
        return True

    def wh_status(self) -> dict:
        t = self.store["warehouse-master"]
        if self._wh_cache[0] != t.version:
            self._wh_cache = (t.version, {w["Warehouse Number"]: w["Warehouse Status"] for w in t.values()})
        return self._wh_cache[1]

    def _custom(self):
        t = self.store["custom-columns"]
        if self._cc_cache[0] != t.version:
            defaults, headers = {}, {}
            for c in t.values():
                tname = CUSTOM_TABLES.get(c["table"])
                if tname is None:
                    continue
                defaults.setdefault(tname, {})[c["key"]] = c.get("default_value")
                alias = c.get("alias") or c["key"]
                headers.setdefault(tname, []).append({"key": c["key"], "format": c.get("format") or "string",
                                                      "alias": alias,
                                                      "filters": [{"category": c["key"], "alias": alias}]})
            self._cc_cache = (t.version, defaults, headers)
        return self._cc_cache

    def custom_defaults(self, tname: str) -> dict:
        return self._custom()[1].get(tname) or {}

    def custom_headers(self, tname: str) -> list:
        return self._custom()[2].get(tname) or []

    def headers_of(self, tname: str) -> list:
        return [dict(h) for h in RESOURCES[tname].headers] + self.custom_headers(tname)

    # ========================================================================================================
    # Lists
    # ========================================================================================================
    def _base_records(self, tname: str) -> list:
        table = self.store[tname]
        if tname == "user":
            return [R.user_public(u) for u in table.values()]
        return list(table.values())

    def selection(self, tname: str, p, gf: list) -> list:
        """Records of a table matching the list parameters, in list order (cached per table version)."""
        table = self.store[tname]
        wh = self.wh_status()
        versions = (table.version, self.store["warehouse-master"].version, self.store["custom-columns"].version)
        gfkey = repr([(g.get("category"), g.get("type"), sorted(map(str, g.get("values") or ()))) for g in gf])
        key = (tname, versions, p.cache_key(), gfkey)
        hit = self._sel_cache.get(key)
        if hit is not None:
            self._sel_cache.move_to_end(key)
            return hit
        get = make_getter(wh, self.custom_defaults(tname))
        skey = (tname, p.sort_key, p.sort_type)
        cached = self._sort_cache.get(skey)
        if cached is not None and cached[0] == versions:
            base = cached[1]
        else:
            base = sort_records(self._base_records(tname), p.sort_key, p.sort_type, get)
            self._sort_cache[skey] = (versions, base)
        sel = apply_predicates(base, predicates(p, get, wh, gf))
        self._sel_cache[key] = sel
        while len(self._sel_cache) > CACHE_ENTRIES:
            self._sel_cache.popitem(last=False)
        return sel

    def list_response(self, req: Request, tname: str) -> Response:
        res = RESOURCES[tname]
        p = parse_params(req.query, res.default_sort)
        sel = self.selection(tname, p, self.granular_filters(req.user))
        page = sel[p.offset:p.offset + p.limit]
        rows = [R.row_of(self, tname, r) for r in page] if tname != "user" else [dict(r) for r in page]
        extra = {"page": p.page, "page_size": p.page_size, "total": len(sel)} if tname == "user" else None
        return Response(200, envelope(self.headers_of(tname), p.sort_key, p.sort_type, rows, extra))

    # ========================================================================================================
    # Dispatch
    # ========================================================================================================
    def dispatch(self, req: Request) -> Response:
        path = req.path
        if not path.startswith("/api/"):
            return route_not_found().response()
        parts = [p for p in path[5:].split("/") if p != ""]
        if not parts:
            return route_not_found().response()
        handler = routes.ROUTES.get(parts[0])
        if handler is None:
            handler = routes.prefix_handler(parts[0])
            if handler is None:
                return route_not_found().response()
        if getattr(handler, "self_locking", False):
            # the handler takes the lock only for the part that reads the tenant (export)
            try:
                return handler(self, req, parts[0], parts[1:])
            except ApiError as exc:
                return exc.response()
        write = req.method in WRITE_METHODS
        with self.lock:
            if write:
                self.store.begin()
            try:
                resp = handler(self, req, parts[0], parts[1:])
                if write:
                    self.store.commit()
                    self._log(req, resp)
                return resp
            except ApiError as exc:
                if write:
                    self.store.rollback()
                return exc.response()
            except Exception:
                if write:
                    self.store.rollback()
                traceback.print_exc(file=sys.stderr)
                return Response(500, {"Message": "Internal Server Error", "Code": "Server.InternalError"})

    def _log(self, req: Request, resp: Response) -> None:
        self._log_seq += 1
        self.write_log.append({"id": self._log_seq, "Timestamp": now_iso(req.now or None),
                               "User Email": (req.user or {}).get("User Email"), "Method": req.method,
                               "Path": req.path, "Status": resp.status})

    def created_response(self, name: str, rid, message: str = "Created successfully.") -> Response:
        self.created[name] += 1
        body = {"message": message}
        if not self.omit_create_id:
            body["id"] = rid
        return Response(200, body)

    # ========================================================================================================
    # Control API (control.py)
    # ========================================================================================================
    def mutate(self, resource: str, create: int, update: int, delete: int) -> dict:
        with self.lock:
            try:
                return background.mutate(self, resource, create, update, delete)
            except ApiError as exc:   # the whole call was rolled back; control.py answers 400 for ValueError
                raise ValueError(exc.message) from None

    def run_planner(self) -> dict:
        with self.lock:
            self.store.begin()
            try:
                out = background.run_planner(self)
                self.store.commit()
                return out
            except Exception:
                self.store.rollback()
                raise

    def snapshot(self, records: bool = False, resource: Optional[str] = None) -> dict:
        with self.lock:
            return background.snapshot(self, records, resource)

    def created_counts(self) -> dict:
        with self.lock:
            return dict(self.created)

    def job_tick(self) -> None:
        # jobs run on their own worker threads; nothing to advance here
        return None

    def counts(self) -> dict:
        """Record counts per table (lines included), for tests and the benchmark."""
        with self.lock:
            return {name: len(t) for name, t in self.store.tables.items()}


# ============================================================================================================
# Generic resource handlers (used by routes.py)
# ============================================================================================================
def parse_rid(name: str, raw: str):
    if name == "issue-tracker-tickets":
        return raw
    try:
        return int(raw)
    except ValueError:
        raise R.not_found_id(name, raw)


def fetch(t: Tenant, name: str, rid, user=None) -> dict:
    rec = t.store[name].get(rid)
    if rec is None or (user is not None and not t.gf_allows(user, rec)):
        raise R.not_found_id(name, rid)
    return rec


def check_write_scope(t: Tenant, user, *recs) -> None:
    """Granular filters also bound what a user may write."""
    for rec in recs:
        if rec is not None and not t.gf_allows(user, rec):
            raise not_privileged()


def doc_scope_records(t: Tenant, spec, header: dict) -> list:
    out = [header]
    if spec.lines:
        out.extend(t.store[spec.lines].lines_of(header["id"])[:1])
    return out


def handle_resource(t: Tenant, req: Request, name: str, rest: list) -> Response:
    res = RESOURCES[name]
    user = req.user
    m = req.method
    if res.kind == "user":
        from sim import people
        return people.handle_user(t, req, rest)
    if res.kind == "ticket":
        from sim import people
        return people.handle_ticket(t, req, rest)
    if not rest:
        if m == "GET":
            t.require(user, res.module, "View")
            return t.list_response(req, name)
        if m == "POST" and res.kind in ("master", "doc"):
            t.require(user, res.module, "Edit")
            body = json_body(req)
            if res.kind == "doc":
                spec = DOCS[name]
                h, lines, removed = R.doc_build(t, spec, body, None, req.now)
                check_write_scope(t, user, h, *[ln for ln, _ in lines])
                rec = R.doc_save(t, spec, h, lines, removed, None)
            else:
                rec = R.master_build(t, res, body, None, user, req.now)
                check_write_scope(t, user, rec)
                rec["id"] = None
                rec = t.store[name].insert(rec)
            return t.created_response(name, rec["id"])
        raise route_not_found()
    if len(rest) != 1:
        raise route_not_found()
    rid = parse_rid(name, rest[0])
    if m == "GET":
        t.require(user, res.module, "View")
        rec = fetch(t, name, rid, user)
        return Response(200, R.wrap_one(name, R.get_one(t, name, rec)))
    if res.kind == "role":
        raise route_not_found()
    if m == "PUT":
        t.require(user, res.module, "Edit")
        rec = fetch(t, name, rid, user)
        body = json_body(req)
        if res.kind == "doc":
            spec = DOCS[name]
            h, lines, removed = R.doc_build(t, spec, body, rec, req.now)
            check_write_scope(t, user, h, *[ln for ln, _ in lines])
            R.doc_save(t, spec, h, lines, removed, rec)
        else:
            new = R.master_build(t, res, body, rec, user, req.now)
            check_write_scope(t, user, new)
            if new != rec:
                t.store[name].replace(new)
                R.propagate(t, name, rec, new)
        return Response(200, {"message": "Update successful"})
    if m == "DELETE":
        t.require(user, res.module, "Edit")
        rec = fetch(t, name, rid, user)
        R.delete_record(t, name, rec)
        return Response(200, {"message": "Deleted successfully."})
    raise route_not_found()


def handle_lines(t: Tenant, req: Request, name: str, rest: list) -> Response:
    """Flat line lists: GET list, GET one, DELETE one (last-line rule)."""
    res = RESOURCES[name]
    spec = R.LINE_SPECS[name]
    user = req.user
    if not rest:
        if req.method == "GET":
            t.require(user, res.module, "View")
            return t.list_response(req, name)
        raise route_not_found()
    if len(rest) != 1:
        raise route_not_found()
    rid = parse_rid(name, rest[0])
    if req.method == "GET":
        t.require(user, res.module, "View")
        return Response(200, {"data": R.row_of(t, name, fetch(t, name, rid, user))})
    if req.method == "DELETE":
        t.require(user, res.module, "Edit")
        line = fetch(t, name, rid, user)
        R.line_delete(t, spec, line)
        return Response(200, {"message": "Deleted successfully."})
    raise route_not_found()

