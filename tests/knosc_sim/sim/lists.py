"""List semantics of CONTRACT §2: page, page_size, filter, search, sort, the Warehouse Status rule,
granular filters and the envelope.

Rows are selected by predicates over records in a base order (id ascending), then sorted with a stable
sort, so ties always stay in id order; Tenant caches the resulting order per query and table version.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

from sim.catalog import WAREHOUSE_STATUS
from sim.common import ApiError, bad_json, is_int

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MISSING = object()
SORT_TYPES = ("Ascending", "Descending")


class ListParams:
    __slots__ = ("page", "page_size", "filter", "search", "sort_key", "sort_type", "offset", "limit")

    def __init__(self):
        self.page = 1
        self.page_size = DEFAULT_PAGE_SIZE
        self.filter: Optional[dict] = None
        self.search: Optional[dict] = None
        self.sort_key: Optional[str] = None
        self.sort_type = "Ascending"
        self.offset = 0
        self.limit = DEFAULT_PAGE_SIZE

    def cache_key(self) -> str:
        return json.dumps([self.filter, self.search, self.sort_key, self.sort_type], sort_keys=True,
                          separators=(",", ":"), default=str)

    def names_key(self, key: str) -> bool:
        if self.filter and key in self.filter:
            return True
        if self.search:
            f = self.search.get("filters") or {}
            for part in ("include", "exclude"):
                if key in (f.get(part) or {}):
                    return True
        return False


def _invalid(msg: str) -> ApiError:
    return ApiError(400, msg, "JSON.Invalid")


def _positive_int(query: dict, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _invalid("Invalid value for '%s': %r is not a positive integer." % (name, raw))
    if value < 1:
        raise _invalid("Invalid value for '%s': must be a positive integer, got %d." % (name, value))
    return value


def check_filter(filt: Any, name: str = "filter") -> dict:
    if not isinstance(filt, dict):
        raise _invalid("'%s' must be a JSON object keyed by column key." % name)
    for key, spec in filt.items():
        if isinstance(spec, dict):
            extra = set(spec) - {"from", "to"}
            if extra or not spec:
                raise _invalid("Filter on '%s' must be a value, an array of values or {\"from\": ..., \"to\": ...}."
                               % key)
            for end in ("from", "to"):
                v = spec.get(end)
                if v is not None and not isinstance(v, (str, int, float)):
                    raise _invalid("Filter range '%s' of '%s' must be a date string or a number." % (end, key))
        elif isinstance(spec, list):
            for v in spec:
                if isinstance(v, (dict, list)):
                    raise _invalid("Filter values of '%s' must be scalars." % key)
    return filt


def check_search(search: Any) -> dict:
    if not isinstance(search, dict) or not isinstance(search.get("filters"), dict):
        raise _invalid("'search' must be {\"filters\": {\"include\": {...}, \"exclude\": {...}}}.")
    f = search["filters"]
    extra = set(f) - {"include", "exclude"}
    if extra:
        raise _invalid("'search.filters' takes only 'include' and 'exclude', not %s." % ", ".join(sorted(extra)))
    for part in ("include", "exclude"):
        sub = f.get(part)
        if sub is None:
            continue
        if not isinstance(sub, dict):
            raise _invalid("'search.filters.%s' must be an object of column key -> array of values." % part)
        for key, values in sub.items():
            if not isinstance(values, list) or any(isinstance(v, (dict, list)) for v in values):
                raise _invalid("'search.filters.%s.%s' must be an array of values." % (part, key))
    return search


def check_sort(sort: Any) -> tuple:
    if not isinstance(sort, dict) or not isinstance(sort.get("key"), str) or not sort["key"]:
        raise _invalid("'sort' must be {\"key\": \"<column key>\", \"type\": \"Ascending\"|\"Descending\"}.")
    stype = sort.get("type", "Ascending")
    if stype not in SORT_TYPES:
        raise _invalid("'sort.type' must be \"Ascending\" or \"Descending\", got %r." % (stype,))
    return sort["key"], stype


def _json_param(query: dict, name: str):
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise bad_json()


def parse_params(query: dict, default_sort: tuple) -> ListParams:
    p = ListParams()
    p.page = _positive_int(query, "page", 1)
    p.page_size = min(_positive_int(query, "page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    filt = _json_param(query, "filter")
    if filt is not None:
        p.filter = check_filter(filt)
    search = _json_param(query, "search")
    if search is not None:
        p.search = check_search(search)
    sort = _json_param(query, "sort")
    if sort is not None:
        p.sort_key, p.sort_type = check_sort(sort)
    else:
        p.sort_key, p.sort_type = default_sort
    p.offset = (p.page - 1) * p.page_size
    p.limit = p.page_size
    return p


def parse_export(body: dict, default_sort: tuple) -> ListParams:
    p = ListParams()
    filt = body.get("filters")
    if filt is not None:
        p.filter = check_filter(filt, "filters") or None
    search = body.get("search")
    if search is not None:
        p.search = check_search(search)
    if body.get("sort") is not None:
        p.sort_key, p.sort_type = check_sort(body["sort"])
    else:
        p.sort_key, p.sort_type = default_sort
    index = body.get("index") or {}
    if not isinstance(index, dict):
        raise _invalid("'index' must be {\"limit\": N, \"offset\": N}.")
    limit = index.get("limit", 10000)
    offset = index.get("offset", 0)
    if not is_int(limit) or limit < 0:
        raise _invalid("'index.limit' must be a non-negative integer.")
    if not is_int(offset) or offset < 0:
        raise _invalid("'index.offset' must be a non-negative integer.")
    p.limit = min(limit, 100000)
    p.offset = offset
    return p


# ------------------------------------------------------------------------------------------------------------
# Predicates
# ------------------------------------------------------------------------------------------------------------
_STR = "\x00s"


def _value_set(values: Iterable) -> set:
    s = set()
    for v in values:
        if isinstance(v, (dict, list)):
            continue
        s.add(v)
        if v is not None:
            s.add((_STR, str(v)))
    return s


def _matches(v, vs: set) -> bool:
    if isinstance(v, (dict, list)):
        return False
    if v in vs:
        return True
    return v is not None and (_STR, str(v)) in vs


def _in_range(v, lo, hi) -> bool:
    if v is None or isinstance(v, bool):
        return False
    if isinstance(v, str):
        if lo is not None:
            if not isinstance(lo, str) or v < lo:
                return False
        if hi is not None:
            # "to" is inclusive at its own precision: a timestamp on the "to" day is inside the range
            if not isinstance(hi, str) or v[:len(hi)] > hi:
                return False
        return True
    if isinstance(v, (int, float)):
        if lo is not None and (isinstance(lo, str) or v < lo):
            return False
        if hi is not None and (isinstance(hi, str) or v > hi):
            return False
        return True
    return False


def make_getter(wh_status: dict, defaults: Optional[dict] = None) -> Callable:
    """Value of a column of a record; MISSING when the record has no such column.

    `Warehouse Status` is virtual (the status of the row's warehouse); custom columns without a stored
    value read as their default.
    """
    defaults = defaults or {}

    def get(rec, key):
        v = rec.get(key, MISSING)
        if v is MISSING:
            if key == WAREHOUSE_STATUS:
                num = rec.get("Warehouse Number")
                if num is not None:
                    return wh_status.get(num, MISSING)
            elif key in defaults:
                return defaults[key]
        return v
    return get


def predicates(p: ListParams, get: Callable, wh_status: dict, granular: list) -> list:
    preds = []
    inactive = {num for num, st in wh_status.items() if st == "Inactive"}
    if inactive and not p.names_key(WAREHOUSE_STATUS):
        def active_wh(rec, _in=inactive):
            return rec.get("Warehouse Number") not in _in
        preds.append(active_wh)
    for gf in granular or ():
        key = gf.get("category")
        vals = set(gf.get("values") or ())
        if gf.get("type", "include") == "exclude":
            def gf_ex(rec, key=key, vals=vals):
                v = get(rec, key)
                return v is MISSING or v is None or v not in vals
            preds.append(gf_ex)
        else:
            def gf_in(rec, key=key, vals=vals):
                v = get(rec, key)
                return v is MISSING or v is None or v in vals
            preds.append(gf_in)
    for key, spec in (p.filter or {}).items():
        if isinstance(spec, dict):
            lo, hi = spec.get("from"), spec.get("to")

            def f_range(rec, key=key, lo=lo, hi=hi):
                v = get(rec, key)
                return v is not MISSING and _in_range(v, lo, hi)
            preds.append(f_range)
        else:
            vs = _value_set(spec if isinstance(spec, list) else [spec])

            def f_in(rec, key=key, vs=vs):
                v = get(rec, key)
                return v is not MISSING and _matches(v, vs)
            preds.append(f_in)
    if p.search:
        f = p.search.get("filters") or {}
        for key, values in (f.get("include") or {}).items():
            vs = _value_set(values)

            def s_in(rec, key=key, vs=vs):
                v = get(rec, key)
                return v is not MISSING and _matches(v, vs)
            preds.append(s_in)
        for key, values in (f.get("exclude") or {}).items():
            vs = _value_set(values)

            def s_ex(rec, key=key, vs=vs):
                v = get(rec, key)
                return v is MISSING or not _matches(v, vs)
            preds.append(s_ex)
    return preds


def apply_predicates(records: Iterable, preds: list) -> list:
    if not preds:
        return list(records)
    if len(preds) == 1:
        p0 = preds[0]
        return [r for r in records if p0(r)]
    return [r for r in records if all(p(r) for p in preds)]


def _sort_value(v):
    if v is MISSING or v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, (int, float)):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, json.dumps(v, sort_keys=True, default=str))


def sort_records(records: list, key: str, stype: str, get: Callable) -> list:
    """Stable sort of records given in id order: ties stay in id order in both directions."""
    desc = stype == "Descending"
    if key == "id":
        return list(reversed(records)) if desc else list(records)
    return sorted(records, key=lambda r: _sort_value(get(r, key)), reverse=desc)


def envelope(headers: list, sort_key: str, sort_type: str, rows: list, extra: Optional[dict] = None) -> dict:
    return {"data": {"headers": headers, "sort": {"key": sort_key, "type": sort_type}, "rows": rows},
            "tags": {}, "extra": extra or {}}


def select_rows(rows: list, p: ListParams, wh_status: dict, granular: list,
                defaults: Optional[dict] = None) -> tuple[list, int]:
    """Filter, sort and page an in-memory row list (analytics, computed lists); returns (page, total)."""
    get = make_getter(wh_status, defaults)
    sel = apply_predicates(rows, predicates(p, get, wh_status, granular))
    sel = sort_records(sel, p.sort_key, p.sort_type, get) if p.sort_key else sel
    return sel[p.offset:p.offset + p.limit], len(sel)
