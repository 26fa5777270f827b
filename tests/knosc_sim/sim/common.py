"""Small pieces shared by the tenant modules: the API error exception, value checks, dates."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import time
from typing import Any

from sim.http_types import Response

# Business dates of the generated tenant are laid out around this day, and analytics that need "today"
# (delayed shipments, planning) use it too, so the same seed always yields the same answers.
SIM_TODAY = _dt.date(2025, 3, 3)
SIM_TODAY_S = SIM_TODAY.isoformat()

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ApiError(Exception):
    """An error answer; raised anywhere inside a handler, turned into a Response by dispatch."""

    def __init__(self, status: int, message: str, code: str, body: Any = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.body = body  # a non-standard body (accept-suggested-orders uses {"error": ...})

    def response(self) -> Response:
        if self.body is not None:
            return Response(self.status, self.body)
        return Response(self.status, {"Message": self.message, "Code": self.code})


def bad_json() -> ApiError:
    return ApiError(400, "Bad Request Format", "JSON.Invalid")


def not_privileged() -> ApiError:
    return ApiError(403, "Not Privileged for this action", "User.NotPrivileged")


def route_not_found() -> ApiError:
    return ApiError(404, "Not Found", "Route.NotFound")


def json_body(req) -> dict:
    """The request body as a JSON object, else 400 JSON.Invalid."""
    try:
        body = req.json()
    except (ValueError, UnicodeDecodeError):
        raise bad_json()
    if not isinstance(body, dict):
        raise bad_json()
    return body


def parse_json_param(text: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        raise bad_json()


def now_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with Z, second precision, as tickets and scenarios show it."""
    if ts is None:
        ts = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        return False
    try:
        _dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def date_add(day: str, n: int) -> str:
    return (_dt.date.fromisoformat(day) + _dt.timedelta(days=n)).isoformat()


def days_between(a: str, b: str) -> int:
    """b - a in days."""
    return (_dt.date.fromisoformat(b) - _dt.date.fromisoformat(a)).days


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not (isinstance(value, float) and (math.isnan(value) or math.isinf(value))))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def money(value: float) -> float:
    return round(float(value), 2)


# Field types used by the write validators: "str" (non-empty string), "str?" (string or null), "num",
# "num?", "int", "int?", "date", "date?", "bool", "any", or a tuple of allowed strings (an enumeration;
# a trailing None in the tuple allows null).
def check_value(field: str, value: Any, ftype, prefix: str, where: str = "") -> Any:
    """Returns the value (normalised) or raises 400 <prefix>.InvalidField with a precise message."""
    loc = "%s%s" % (field, where)
    nullable = False
    t = ftype
    if isinstance(t, str) and t.endswith("?"):
        nullable, t = True, t[:-1]
    if isinstance(t, tuple):
        if value is None and None in t:
            return None
        if not isinstance(value, str) or value not in t:
            allowed = ", ".join(x for x in t if x is not None)
            raise ApiError(400, "Field '%s' must be one of: %s." % (loc, allowed), prefix + ".InvalidField")
        return value
    if value is None:
        if nullable or t == "any":
            return None
        raise ApiError(400, "Field '%s' must not be null." % loc, prefix + ".InvalidField")
    if t == "str":
        if not isinstance(value, str):
            raise ApiError(400, "Field '%s' must be a string." % loc, prefix + ".InvalidField")
        if not nullable and not value.strip():
            raise ApiError(400, "Field '%s' must not be empty." % loc, prefix + ".InvalidField")
        return value
    if t == "num":
        if not is_number(value):
            raise ApiError(400, "Field '%s' must be a number." % loc, prefix + ".InvalidField")
        return value
    if t == "int":
        if not is_int(value):
            raise ApiError(400, "Field '%s' must be an integer." % loc, prefix + ".InvalidField")
        return value
    if t == "date":
        if not is_date(value):
            raise ApiError(400, "Field '%s' must be a date (YYYY-MM-DD)." % loc, prefix + ".InvalidField")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise ApiError(400, "Field '%s' must be a boolean." % loc, prefix + ".InvalidField")
        return value
    if t == "email":
        if not isinstance(value, str) or "@" not in value:
            raise ApiError(400, "Field '%s' must be an e-mail address." % loc, prefix + ".InvalidField")
        return value
    return value


def missing(field: str, prefix: str, where: str = "") -> ApiError:
    return ApiError(400, "Missing required field: %s%s" % (field, where), prefix + ".MissingField")
