"""Black-box parity with Knosc: the same requests against two targets must get the same answers.

The reference is a knosc-sim (a faithful Knosc upstream). KNOSC_PARITY_TARGET selects the other side:

- "daemon" (default): knosc-syncd's loopback API. The daemon mirrors a twin of the reference (a knosc-sim with the
  same seed and scale), so that every write can be applied once to each side and the two tenants stay
  equal; its base URL is read from `knosc-syncd status --json` (see daemon_loopback_base).
- "sim": a second knosc-sim with the same seed and scale. Two identical upstreams must agree, so any
  non-determinism of the simulator shows up here.

Compared for every request: the status code, the Content-Type family, whether a Date header is present
and the JSON body, structurally. Differences that are not differences are configured per request
(Rules): values that may differ (ids and timestamps of records created during the run, job ids, the
`elapsed` of auto-complete, a first sign-in's session token) and arrays whose order the contract leaves
free (the lines of a document, a ticket's notes, ...). Authentication requests also compare the
Set-Cookie lines: names, whether a value is set, and every attribute with its value.

This module is also a pytest plugin (`pytest_plugins = ["parity"]` in the test modules): it registers the
markers `writes` and `auth` and puts them on the tests decorated with marked(). It raises AssertionError
itself instead of using assert statements, so pytest need not rewrite it: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Any, Callable, Iterable, Optional

import pytest
import requests

from harness import DAEMON_EXE, Daemon, Sim, wait_until

SEED = int(os.environ.get("KNOSC_PARITY_SEED", "7"))
SCALE = float(os.environ.get("KNOSC_PARITY_SCALE", "1"))
TIMEOUT = 30              # seconds per HTTP request
SYNC_TIMEOUT = 180        # seconds for the daemon's first complete sync
MUTATING = ("POST", "PUT", "PATCH", "DELETE")

# The seeded accounts of knosc-sim, by the short names the request tables use.
USERS = {
    "sync": ("sync@acme.example", "sync-password"),
    "admin": ("admin@acme.example", "admin-password"),
    "viewer": ("viewer@acme.example", "viewer-password"),
    "wh1": ("wh1@acme.example", "wh1-password"),
}

# The Set-Cookie lines of a login as API-NOTES §2.1 documents them: (name, value, sorted attributes).
LOGIN_COOKIES = [
    ("access_token_cookie", "<set>", ("httponly", "path=/", "samesite=lax")),
    ("csrf_access_token", "<set>", ("path=/", "samesite=lax")),
    ("csrf_refresh_token", "<set>", ("path=/api/token-refresh", "samesite=lax")),
    ("refresh_token_cookie", "<set>", ("httponly", "path=/api/token-refresh", "samesite=lax")),
]
# ... of a logout (API-NOTES §2.2) and of a refresh (API-NOTES §2.3).
LOGOUT_COOKIES = [
    ("access_token_cookie", "<empty>", ("expires=Thu, 01 Jan 1970 00:00:00 GMT",)),
    ("refresh_token_cookie", "<empty>", ("expires=Thu, 01 Jan 1970 00:00:00 GMT",)),
]
REFRESH_COOKIES = [
    ("access_token_cookie", "<set>", ("httponly", "path=/", "samesite=lax")),
    ("csrf_access_token", "<set>", ("path=/", "samesite=lax")),
]

# Record keys that hold a server-set time; ignored in records created during the run.
TIMESTAMP_KEYS = frozenset(("Created At", "Updated At", "Timestamp"))

# Values that differ by nature, per route (regular expression on the request path -> ignored JSON paths).
ROUTE_IGNORES = [
    (r"^/auto-complete$", ("data.elapsed",)),
    (r"^/job", ("job_id", "jobs.*.job_id", "jobs.*.completed_at")),
    (r"^/authenticate$", ("session_token",)),
]
# Arrays whose order the contract leaves free, per route (CONTRACT §2 fixes the order of list rows only).
ROUTE_UNORDERED = [
    (r"^/[a-z-]+/[^/]+$", ("data.rows.details", "data.details", "data.Ship To Locations",
                           "data.Ship From Locations", "data.Notes", "data.Subscribers", "data.Privileges",
                           "data.Granular Filters", "data.Mappings")),
    (r"^/profile$", ("data.Privileges", "data.Granular Filters")),
    (r"^/issue-tracker-tickets/[^/]+/(notes|subscribers)$", ("data",)),
]


# ============================================================================================================
# pytest plugin: the markers
# ============================================================================================================
MARKERS = {
    "writes": "requests that change the tenant; run last, in the same order against both targets",
    "auth": "authentication: login bodies, Set-Cookie lines, logout, refresh, lockout",
}


def marked(*names: str) -> Callable:
    """Decorator: the test gets these markers at collection (see pytest_collection_modifyitems)."""
    unknown = set(names) - set(MARKERS)
    if unknown:
        raise ValueError("unknown parity marker(s): %s" % ", ".join(sorted(unknown)))

    def deco(fn):
        fn.parity_markers = tuple(getattr(fn, "parity_markers", ())) + names
        return fn
    return deco


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", "%s: %s" % (name, text))


@pytest.hookimpl(tryfirst=True)   # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        for name in getattr(getattr(item, "obj", None), "parity_markers", ()):
            item.add_marker(name)


# ============================================================================================================
# Targets and sessions
# ============================================================================================================
def cookie_value(jar, name: str, path: Optional[str] = None) -> Optional[str]:
    """The value of a cookie by name (and path), without CookieConflictError when paths differ."""
    for c in jar:
        if c.name == name and (path is None or c.path == path):
            return c.value
    return None


class KnoscSession(requests.Session):
    """A Knosc client session: cookies kept, and on POST/PUT/PATCH/DELETE the csrf_access_token cookie copied
    into X-XSRF-TOKEN (API-NOTES §2). An explicit X-XSRF-TOKEN header wins; {"X-XSRF-TOKEN": None} sends none."""

    def request(self, method, url, *args, **kwargs):
        if method.upper() in MUTATING:
            headers = dict(kwargs.get("headers") or {})
            if "X-XSRF-TOKEN" not in headers:
                token = cookie_value(self.cookies, "csrf_access_token")
                if token is not None:
                    headers["X-XSRF-TOKEN"] = token
            kwargs["headers"] = headers
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, *args, **kwargs)


class Target:
    """One side of the comparison: a Knosc API base URL (…/api)."""

    def __init__(self, name: str, base_url: str):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._sessions: dict[str, KnoscSession] = {}

    def __repr__(self) -> str:
        return "Target(%r, %r)" % (self.name, self.base_url)

    def url(self, path: str) -> str:
        return self.base_url + path

    def session(self) -> KnoscSession:
        """A new session without a login."""
        return KnoscSession()

    def login(self, username: str, password: str) -> KnoscSession:
        """A new signed-in session; AssertionError when the login does not answer 200 {"login": true}."""
        s = self.session()
        r = s.post(self.url("/authenticate"), json={"username": username, "password": password})
        if r.status_code != 200 or _json_or_none(r) != {"login": True}:
            raise AssertionError("%s: login of %s answered %s %s" % (self.name, username, r.status_code, r.text[:300]))
        return s

    def as_user(self, user: str) -> KnoscSession:
        """The signed-in session of a seeded account (short name of USERS), made once per target."""
        if user not in self._sessions:
            self._sessions[user] = self.login(*USERS[user])
        return self._sessions[user]

    def raw(self, method: str, path: str, **kw) -> requests.Response:
        """One request without a session: no cookies and no CSRF header unless given."""
        kw.setdefault("timeout", TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url(path), **kw)

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()


class NewIds:
    """Ids of records created during the run: reference id <-> target id, learnt from create responses and
    follow-up reads. Wherever a key holds an id ("id", "<Entity> Id"), a target id stands for its reference id."""

    def __init__(self):
        self._to_ref: dict = {}
        self._ref: set = set()
        self._tgt: set = set()

    def add(self, ref_value, tgt_value) -> None:
        if not (_is_id_value(ref_value) and _is_id_value(tgt_value)):
            raise AssertionError("not an id: reference %r, target %r" % (ref_value, tgt_value))
        self._to_ref[tgt_value] = ref_value
        self._ref.add(ref_value)
        self._tgt.add(tgt_value)

    def is_new(self, value, side: str) -> bool:
        return _is_id_value(value) and value in (self._ref if side == "reference" else self._tgt)

    def to_reference(self, value):
        if _is_id_value(value):
            return self._to_ref.get(value, value)
        return value


def _is_id_value(v) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def is_id_key(key: str) -> bool:
    return key == "id" or (key.endswith(" Id") and "Unique" not in key and "Servicenow" not in key)


class Pair:
    """The reference and the target, the processes behind them, and the ids both sides created."""

    def __init__(self, reference: Target, target: Target, processes: list, mode: str):
        self.reference = reference
        self.target = target
        self.processes = processes
        self.mode = mode
        self.new_ids = NewIds()

    def close(self) -> None:
        self.reference.close()
        self.target.close()
        stop_all(self.processes)


def stop_all(processes: Iterable) -> None:
    """Stops daemons first, then sims; removes the sims' work directories."""
    procs = list(processes)
    for p in reversed(procs):
        try:
            p.stop()
        except Exception as exc:  # keep stopping the others
            print("stopping %r failed: %s" % (p, exc))
        if isinstance(p, Sim):
            shutil.rmtree(p.workdir, ignore_errors=True)


def daemon_loopback_base(daemon: Daemon) -> str:
    """The base URL of knosc-syncd's loopback Knosc API, e.g. "http://127.0.0.1:8470/api".

    Read from the key "loopback_base" of `knosc-syncd status --json` (a value without the /api suffix gets
    it appended). The key may be null for a moment after the start, until the daemon has stored its bound
    port; it is polled until set. Skips the calling module when the daemon does not report the key at all.
    """
    def ready():
        st = daemon.status()
        return st if "loopback_base" not in st or st["loopback_base"] else None

    status = wait_until(ready, 30, "knosc-syncd to report its loopback base URL in `status --json`")
    base = status.get("loopback_base")
    if not base:
        pytest.skip("knosc-syncd does not report 'loopback_base' in `status --json` yet: its loopback Knosc API "
                    "is not available, so there is nothing to compare with Knosc", allow_module_level=True)
    base = str(base).rstrip("/")
    return base if base.endswith("/api") else base + "/api"


def start_pair() -> Pair:
    """Starts the reference and the target selected by KNOSC_PARITY_TARGET ("sim" or "daemon")."""
    mode = os.environ.get("KNOSC_PARITY_TARGET", "daemon").strip().lower() or "daemon"
    if mode not in ("sim", "daemon"):
        pytest.fail("KNOSC_PARITY_TARGET must be 'sim' or 'daemon', not %r" % mode, pytrace=False)
    processes: list = []
    try:
        reference = Sim(scale=SCALE, seed=SEED)
        processes.append(reference)
        if mode == "sim":
            second = Sim(scale=SCALE, seed=SEED)
            processes.append(second)
            target = Target("second knosc-sim (same seed %d, scale %g)" % (SEED, SCALE), second.base)
        else:
            if not os.access(DAEMON_EXE, os.X_OK):
                pytest.skip("no knosc-syncd binary at %s (build it, or set KNOSC_SYNCD)" % DAEMON_EXE,
                            allow_module_level=True)
            twin = Sim(scale=SCALE, seed=SEED)
            processes.append(twin)
            daemon = Daemon(twin, sync={"interval_seconds": 3600}).start()
            processes.append(daemon)
            base = daemon_loopback_base(daemon)
            wait_until(daemon.synced, SYNC_TIMEOUT, "knosc-syncd's first complete sync")
            target = Target("knosc-syncd loopback", base)
        return Pair(Target("knosc-sim (reference)", reference.base), target, processes, mode)
    except BaseException:   # also pytest's skip and fail outcomes
        stop_all(processes)
        raise


# ============================================================================================================
# Comparison
# ============================================================================================================
@dataclasses.dataclass
class Rules:
    """What may differ between the two bodies of one request."""
    ignore: tuple = ()       # JSON paths ("data.rows.*.id", "**" = any depth) whose values may differ; both
                             # sides must still have them, with the same JSON type
    unordered: tuple = ()    # JSON paths of arrays whose element order is free
    new_ids: Optional[NewIds] = None

    def __post_init__(self):
        self._ignore = [_pattern(p) for p in self.ignore]
        self._unordered = [_pattern(p) for p in self.unordered]

    def ignored(self, path: tuple) -> bool:
        return any(_match(p, path) for p in self._ignore)

    def unordered_at(self, path: tuple) -> bool:
        return any(_match(p, path) for p in self._unordered)


def rules_for(path: str, ignore: Iterable = (), unordered: Iterable = (), new_ids: Optional[NewIds] = None) -> Rules:
    """Rules of one request: the route's own (ROUTE_IGNORES, ROUTE_UNORDERED) plus the given ones."""
    bare = path.split("?", 1)[0]
    ig = list(ignore)
    un = list(unordered)
    for rx, pats in ROUTE_IGNORES:
        if re.search(rx, bare):
            ig.extend(pats)
    for rx, pats in ROUTE_UNORDERED:
        if re.search(rx, bare):
            un.extend(pats)
    return Rules(tuple(ig), tuple(un), new_ids)


def _pattern(text: str) -> tuple:
    """"data.rows.*.id" -> ("data", "rows", "*", "id"); "" is the body itself."""
    return tuple(text.split(".")) if text else ()


def _match(pattern: tuple, path: tuple) -> bool:
    if not pattern:
        return not path
    head = pattern[0]
    if head == "**":
        return any(_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    if head == "*" or head == str(path[0]):
        return _match(pattern[1:], path[1:])
    return False


class _Any:
    """A value that may differ: equal to any value of the same JSON type."""
    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __eq__(self, other):
        return isinstance(other, _Any) and other.kind == self.kind

    def __hash__(self):
        return hash(self.kind)

    def __repr__(self):
        return "<any %s>" % self.kind


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _canon(v) -> str:
    return json.dumps(v, sort_keys=True, default=repr, ensure_ascii=False)


def normalise(value, rules: Rules, side: str, path: tuple = ()):
    """The body as it is compared: ignored values masked, ids of new records on the target side replaced by
    their reference ids, timestamps of new records masked, order-free arrays sorted."""
    if rules.ignored(path):
        return _Any(_kind(value))
    if isinstance(value, dict):
        new = rules.new_ids is not None and rules.new_ids.is_new(value.get("id"), side)
        out = {}
        for k, v in value.items():
            p = path + (k,)
            if new and k in TIMESTAMP_KEYS:
                out[k] = _Any(_kind(v))
                continue
            if side == "target" and rules.new_ids is not None and is_id_key(k):
                v = rules.new_ids.to_reference(v)
            out[k] = normalise(v, rules, side, p)
        return out
    if isinstance(value, list):
        items = [normalise(v, rules, side, path + (i,)) for i, v in enumerate(value)]
        if rules.unordered_at(path):
            return _Unordered(sorted(items, key=_canon))
        return items
    return value


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _ById:
    """A path segment naming an array element by its id (elements paired by id)."""
    __slots__ = ("id",)

    def __init__(self, rid):
        self.id = rid


def fmt_path(path: tuple) -> str:
    out = "$"
    for seg in path:
        if isinstance(seg, _ById):
            out += "[id=%s]" % json.dumps(seg.id, ensure_ascii=False)
        elif isinstance(seg, int):
            out += "[%d]" % seg
        elif _IDENT.match(seg):
            out += "." + seg
        else:
            out += "[%s]" % json.dumps(seg, ensure_ascii=False)
    return out


def _short(v, limit: int = 120) -> str:
    text = repr(v) if isinstance(v, _Any) else json.dumps(v, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[:limit] + "…"


def _same_scalar(a, b) -> bool:
    if isinstance(a, _Any) or isinstance(b, _Any):
        return a == b
    return type(a) is type(b) and a == b


class _Unordered(list):
    """An array whose order is free (sorted canonically by normalise)."""


def diff(a, b, path: tuple = (), out: Optional[list] = None, limit: int = 25) -> list:
    """Readable differences between two normalised JSON values: "<path>: reference <a>, target <b>"."""
    if out is None:
        out = []
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                out.append("%s: only in the reference (%s)" % (fmt_path(path + (k,)), _short(a[k])))
        for k in b:
            if k not in a:
                out.append("%s: only in the target (%s)" % (fmt_path(path + (k,)), _short(b[k])))
        for k in a:
            if k in b:
                diff(a[k], b[k], path + (k,), out, limit)
    elif isinstance(a, list) and isinstance(b, list):
        if _canon(a) == _canon(b):   # not a == b: 1 == 1.0 == True in Python, not in JSON
            return out
        ids_a, ids_b = _ids_of(a), _ids_of(b)
        by_id = bool(ids_a and ids_b and len(set(map(_canon, ids_a))) == len(ids_a)
                     and len(set(map(_canon, ids_b))) == len(ids_b))
        unordered = isinstance(a, _Unordered) or isinstance(b, _Unordered)
        if len(a) != len(b):
            out.append("%s: %d elements in the reference, %d in the target" % (fmt_path(path), len(a), len(b)))
        if by_id:
            if not unordered and sorted(map(_canon, ids_a)) == sorted(map(_canon, ids_b)) and ids_a != ids_b:
                out.append("%s: the same records in another order: reference ids %s, target ids %s" % (
                    fmt_path(path), _short(ids_a, 200), _short(ids_b, 200)))
            _diff_by_id(a, b, path, out, limit)
        else:
            for i in range(min(len(a), len(b))):
                diff(a[i], b[i], path + (i,), out, limit)
    elif not _same_scalar(a, b):
        note = ""
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b:
            note = " (%s vs %s)" % (type(a).__name__, type(b).__name__)
        out.append("%s: reference %s, target %s%s" % (fmt_path(path), _short(a), _short(b), note))
    return out


def _diff_by_id(a: list, b: list, path: tuple, out: list, limit: int) -> None:
    """Records of two arrays paired by id: missing ones reported, pairs compared."""
    in_b = {_canon(x["id"]): x for x in b}
    in_a = {_canon(x["id"]) for x in a}
    only_a = [x["id"] for x in a if _canon(x["id"]) not in in_b]
    only_b = [x["id"] for x in b if _canon(x["id"]) not in in_a]
    if only_a or only_b:
        out.append("%s: ids only in the reference %s, only in the target %s" % (
            fmt_path(path), _short(only_a, 200), _short(only_b, 200)))
    for x in a:
        y = in_b.get(_canon(x["id"]))
        if y is not None:
            diff(x, y, path + (_ById(x["id"]),), out, limit)
            if len(out) >= limit:
                return


def _ids_of(items: list) -> list:
    """The ids of a list of records, or [] when it is not a list of records with ids."""
    if not items or not all(isinstance(x, dict) and "id" in x for x in items):
        return []
    return [x["id"] for x in items]


def media_type(resp: requests.Response) -> str:
    return (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _json_or_none(resp: requests.Response):
    try:
        return resp.json()
    except ValueError:
        return None


def body_of(resp: requests.Response):
    """The parsed JSON body, or the text when it is not JSON."""
    if media_type(resp) == "application/json" or resp.content[:1] in (b"{", b"["):
        try:
            return resp.json()
        except ValueError:
            pass
    return resp.text


def cookie_shapes(resp: requests.Response) -> list:
    """Each Set-Cookie line as (name, "<set>" | "<empty>", sorted attributes with their values), sorted."""
    out = []
    for line in resp.raw.headers.getlist("Set-Cookie"):
        parts = line.split(";")
        name, _, value = parts[0].partition("=")
        attrs = []
        for part in parts[1:]:
            k, sep, v = part.strip().partition("=")
            if not k:
                continue
            k = k.strip().lower()
            v = v.strip()
            if k == "samesite":
                v = v.lower()
            attrs.append("%s=%s" % (k, v) if sep else k)
        out.append((name.strip(), "<empty>" if value.strip() == "" else "<set>", tuple(sorted(attrs))))
    return sorted(out)


def compare(ref: requests.Response, tgt: requests.Response, rules: Rules, cookies: bool = False,
            headers_present: Iterable = ()) -> list:
    """Everything that differs between the reference's and the target's answer to the same request."""
    problems = []
    if ref.status_code != tgt.status_code:
        problems.append("status: reference %d, target %d" % (ref.status_code, tgt.status_code))
    if media_type(ref) != media_type(tgt):
        problems.append("Content-Type: reference %r, target %r" % (media_type(ref), media_type(tgt)))
    for h in ("Date",) + tuple(headers_present):
        if (h in ref.headers) != (h in tgt.headers):
            problems.append("header %s: %s in the reference, %s in the target" % (
                h, "present" if h in ref.headers else "absent", "present" if h in tgt.headers else "absent"))
    a = normalise(body_of(ref), rules, "reference")
    b = normalise(body_of(tgt), rules, "target")
    problems.extend(diff(a, b))
    if cookies:
        ca, cb = cookie_shapes(ref), cookie_shapes(tgt)
        for c in ca:
            if c not in cb:
                problems.append("Set-Cookie only in the reference: %s" % (c,))
        for c in cb:
            if c not in ca:
                problems.append("Set-Cookie only in the target: %s" % (c,))
    return problems


def report(what: str, pair: Pair, problems: list, ref: requests.Response, tgt: requests.Response) -> str:
    lines = ["%s: %s and %s differ:" % (what, pair.reference.name, pair.target.name)]
    lines += ["  " + p for p in problems]
    lines.append("  reference answered %d %s" % (ref.status_code, _clip(ref.text)))
    lines.append("  target answered    %d %s" % (tgt.status_code, _clip(tgt.text)))
    return "\n".join(lines)


def _clip(text: str, limit: int = 400) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


# ============================================================================================================
# Request tables: placeholders, picks, cases and stories
# ============================================================================================================
# A case (or a story step) is a small dict:
#   id        name in reports
#   method    GET unless given
#   path      relative to the base URL (…/api), e.g. "/purchase-order/{@purchase-order#0.id}"
#   params    query parameters; dict and list values are sent as JSON (CONTRACT §2)
#   query     a query string sent exactly as written (instead of params)
#   json      JSON body; data: a raw body
#   headers   extra request headers
#   user      "sync" (default), "viewer", "wh1", "admin"; None = no session; "@name" = a session of the story
#   csrf      on POST/PUT/PATCH/DELETE: "access" (default, the csrf_access_token cookie), "refresh" (the
#             csrf_refresh_token cookie), "wrong", None (no header)
#   expect    status, or (status, Code), the reference must answer: keeps the case testing what it says
#   rows      "some" / "none": the reference's data.rows must (not) be empty
#   check     (text, predicate on the reference's body) that must hold
#   ignore, unordered   more JSON paths for Rules
#   cookies   True: compare Set-Cookie lines; a list: also what the reference must send (e.g. LOGIN_COOKIES)
#   headers_present     headers that must be present on both sides or on neither
#   capture   {"$name": "json.path[Key=value].id"}: per side, a value for later steps ({$name}); captured ids
#             are ids of new records (NewIds)
#   notes     free text
# Placeholders: "{@pick#i.Key}" = field Key of row i of a pick (a list read from the reference before the
# cases run, see Picks); "{$name}" = a value captured earlier in the same story on the same side. A string
# that is exactly one placeholder becomes the value itself (an integer stays an integer).
_PLACEHOLDER = re.compile(r"\{([@$][^{}]*)\}")


def expand(template, lookup: Callable[[str], Any]):
    if isinstance(template, str):
        m = _PLACEHOLDER.fullmatch(template)
        if m:
            return lookup(m.group(1))
        return _PLACEHOLDER.sub(lambda m: str(lookup(m.group(1))), template)
    if isinstance(template, dict):
        return {k: expand(v, lookup) for k, v in template.items()}
    if isinstance(template, list):
        return [expand(v, lookup) for v in template]
    return template


def extract(body, path: str):
    """A value out of a JSON body: "data.rows.details[Item Number=ITEM-1].id", "data.rows.0.id"."""
    cur = body
    for m in re.finditer(r"\[([^=\]]+)=([^\]]*)\]|([^.\[\]]+)", path):
        sel_key, sel_val, key = m.groups()
        if key is not None:
            cur = cur[int(key)] if isinstance(cur, list) else cur[key]
        else:
            found = [x for x in cur if isinstance(x, dict) and str(x.get(sel_key)) == sel_val]
            if len(found) != 1:
                raise LookupError("%d elements with %s=%s" % (len(found), sel_key, sel_val))
            cur = found[0]
    return cur


class Picks:
    """Rows the reference lists before the cases run; cases name records through them ("{@name#i.Key}")."""

    def __init__(self, pair: Pair, queries: dict):
        self.rows: dict[str, list] = {}
        for name, (path, params) in queries.items():
            r = pair.reference.as_user("sync").get(pair.reference.url(path), params=encode_params(params))
            if r.status_code != 200:
                raise AssertionError("pick %s: the reference answered %d %s" % (name, r.status_code, r.text[:300]))
            self.rows[name] = r.json()["data"]["rows"]

    def lookup(self, ref: str):
        m = re.fullmatch(r"@([^#.]+)(?:#(\d+))?\.(.+)", ref)
        if not m:
            raise KeyError("bad pick placeholder {%s}" % ref)
        name, index, key = m.group(1), int(m.group(2) or 0), m.group(3)
        rows = self.rows[name]
        if index >= len(rows):
            raise LookupError("pick %s has %d rows, no row %d" % (name, len(rows), index))
        return rows[index][key]


def encode_params(params: Optional[dict]) -> Optional[dict]:
    if not params:
        return params
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in params.items()}


def case_id(case: dict) -> str:
    return case["id"]


class Story:
    """Per-side state of a sequence of steps: captured values and the story's own sessions."""

    def __init__(self, pair: Pair, picks: Optional[Picks]):
        self.pair = pair
        self.picks = picks
        self.values = {"reference": {}, "target": {}}
        self.sessions = {"reference": {}, "target": {}}

    def lookup(self, side: str):
        def look(ref: str):
            if ref.startswith("$"):
                if ref not in self.values[side]:
                    raise KeyError("{%s} was not captured by an earlier step" % ref)
                return self.values[side][ref]
            if self.picks is None:
                raise KeyError("no picks for {%s}" % ref)
            return self.picks.lookup(ref)
        return look

    def session(self, side: str, target: Target, user) -> Optional[requests.Session]:
        """None for a request without a session (Target.raw)."""
        if user is None:
            return None
        if isinstance(user, str) and user.startswith("@"):
            if user not in self.sessions[side]:
                self.sessions[side][user] = target.session()
            return self.sessions[side][user]
        return target.as_user(user)

    def send(self, side: str, target: Target, step: dict) -> requests.Response:
        look = self.lookup(side)
        method = step.get("method", "GET").upper()
        path = expand(step["path"], look)
        session = self.session(side, target, step.get("user", "sync"))
        headers = dict(expand(step.get("headers") or {}, look))
        if method in MUTATING:
            csrf = step.get("csrf", "access")
            if csrf is None:
                headers["X-XSRF-TOKEN"] = None
            elif csrf == "wrong":
                headers["X-XSRF-TOKEN"] = "not-the-csrf-token"
            elif csrf == "refresh":
                headers["X-XSRF-TOKEN"] = cookie_value(session.cookies, "csrf_refresh_token") if session else None
            elif csrf != "access":
                raise ValueError("csrf must be 'access', 'refresh', 'wrong' or None, not %r" % (csrf,))
        if step.get("query") is not None:
            path += "?" + expand(step["query"], look)
        kw: dict = {"headers": headers}
        if step.get("params") is not None:
            kw["params"] = encode_params(expand(step["params"], look))
        if "json" in step:
            kw["json"] = expand(step["json"], look)
        if "data" in step:
            kw["data"] = step["data"]
            headers.setdefault("Content-Type", "application/json")
        if session is None:
            return target.raw(method, path, **kw)
        return session.request(method, target.url(path), **kw)

    def close(self) -> None:
        for sessions in self.sessions.values():
            for s in sessions.values():
                s.close()

    def run(self, step: dict) -> tuple:
        """Sends a step to the reference, then to the target; checks the reference's expectations, records
        captures and compares the answers. Raises AssertionError with a readable report."""
        what = "%s %s %s" % (step.get("id", "?"), step.get("method", "GET"), step["path"])
        ref = self.send("reference", self.pair.reference, step)
        tgt = self.send("target", self.pair.target, step)
        expectation_problems(what, step, ref)
        captured = {}
        capture_errors = []
        for name, path in (step.get("capture") or {}).items():
            vals = []
            for side, resp in (("reference", ref), ("target", tgt)):
                try:
                    v = extract(resp.json(), path)
                    self.values[side][name] = v
                    vals.append(v)
                except (ValueError, LookupError, KeyError, IndexError, TypeError) as exc:
                    capture_errors.append("%s: %s from %s: %s" % (side, name, path, exc))
            if len(vals) == 2:
                captured[name] = vals
                if _is_id_value(vals[0]) and _is_id_value(vals[1]):
                    self.pair.new_ids.add(vals[0], vals[1])
        rules = rules_for(expand(step["path"], self.lookup("reference")), step.get("ignore", ()),
                          step.get("unordered", ()), self.pair.new_ids)
        cookies = step.get("cookies", False)
        problems = compare(ref, tgt, rules, bool(cookies), step.get("headers_present", ()))
        problems += ["capture " + e for e in capture_errors]
        if problems:
            raise AssertionError(report(what, self.pair, problems, ref, tgt))
        return ref, tgt


def expectation_problems(what: str, step: dict, ref: requests.Response) -> None:
    """The reference must answer as the case says, or the case no longer tests what it claims."""
    problems = []
    expect = step.get("expect")
    body = _json_or_none(ref)
    if expect is not None:
        status, code = (expect, None) if isinstance(expect, int) else expect
        if ref.status_code != status:
            problems.append("status %d, expected %d" % (ref.status_code, status))
        if code is not None and (not isinstance(body, dict) or body.get("Code") != code):
            problems.append("Code %r, expected %r" % (body.get("Code") if isinstance(body, dict) else None, code))
    rows_rule = step.get("rows")
    if rows_rule is not None:
        try:
            rows = body["data"]["rows"]
        except (TypeError, KeyError):
            rows = None
        if not isinstance(rows, list):
            problems.append("no data.rows list")
        elif (rows_rule == "some") != bool(rows):
            problems.append("data.rows has %d rows, expected %s" % (len(rows), rows_rule))
    if step.get("check") is not None:
        text, pred = step["check"]
        try:
            ok = pred(body)
        except Exception as exc:  # a predicate that cannot even look at the body fails the same way
            ok = False
            text += " (%s: %s)" % (type(exc).__name__, exc)
        if not ok:
            problems.append("check failed: " + text)
    if isinstance(step.get("cookies"), list):
        got = cookie_shapes(ref)
        if got != step["cookies"]:
            problems.append("Set-Cookie %s, documented %s" % (got, step["cookies"]))
    if problems:
        raise AssertionError("%s: the reference (knosc-sim) does not answer as the case expects: %s; it answered "
                             "%d %s" % (what, "; ".join(problems), ref.status_code, _clip(ref.text)))


def check_case(pair: Pair, picks: Optional[Picks], case: dict) -> None:
    """One independent request against both targets."""
    story = Story(pair, picks)
    try:
        story.run(case)
    finally:
        story.close()


def run_story(pair: Pair, picks: Optional[Picks], steps: list) -> None:
    """Steps in order, each against the reference then the target; stops at the first difference."""
    story = Story(pair, picks)
    try:
        for i, step in enumerate(steps, 1):
            try:
                story.run(step)
            except AssertionError as exc:
                raise AssertionError("step %d of %d: %s" % (i, len(steps), exc)) from None
    finally:
        story.close()
