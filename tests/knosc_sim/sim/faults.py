"""Fault rules for the Knosc port, installed through the control API.

A rule names a route (regular expression searched in the request path), a method (or "*"), a kind, a
probability and optionally a count (fire at most that many times). Decisions draw from one
random.Random(seed) in the order requests arrive, so a test that sends the same requests in the same order
sees the same faults.

Rules are tried in the order given. Latency rules add up and let later rules still fire; the first other
rule that fires decides what happens to the request.
"""

from __future__ import annotations

import random
import re
import threading
from typing import Optional

KINDS = ("latency", "status", "reset_before", "reset_after", "hang", "truncate", "rate_limit")

# Bodies in the Knosc error shape for the statuses a faulty upstream (or its proxy) produces.
STATUS_BODIES = {
    429: ("Too Many Requests", "Request.RateLimited"),
    500: ("Internal Server Error", "Server.InternalError"),
    502: ("Bad Gateway", "Server.BadGateway"),
    503: ("Service Unavailable", "Server.Unavailable"),
    504: ("Gateway Timeout", "Server.GatewayTimeout"),
}


def status_body(status: int) -> dict:
    message, code = STATUS_BODIES.get(status, ("Server Error", "Server.Error"))
    return {"Message": message, "Code": code}


class FaultRule:
    def __init__(self, spec: dict):
        if not isinstance(spec, dict):
            raise ValueError("each rule must be an object")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError("kind must be one of %s" % ", ".join(KINDS))
        self.kind: str = kind
        self.route_src = spec.get("route", ".*")
        if not isinstance(self.route_src, str):
            raise ValueError("route must be a string")
        try:
            self.route = re.compile(self.route_src)
        except re.error as exc:
            raise ValueError("route is not a valid regular expression: %s" % exc) from None
        method = spec.get("method", "*")
        if not isinstance(method, str) or not method:
            raise ValueError("method must be a string")
        self.method = method.upper()
        self.probability = _number(spec, "probability", 1.0)
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        count = spec.get("count")
        if count is not None and (type(count) is not int or count < 0):
            raise ValueError("count must be a non-negative integer")
        self.count: Optional[int] = count
        self.ms = _number(spec, "ms", 1000.0)
        self.seconds = _number(spec, "seconds", 30.0)
        self.retry_after = spec.get("retry_after", 1)
        if type(self.retry_after) is not int or self.retry_after < 0:
            raise ValueError("retry_after must be a non-negative integer (seconds)")
        self.status = spec.get("status", 500)
        if type(self.status) is not int or not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (500, 502, 503, ...)")
        if self.ms < 0 or self.seconds < 0:
            raise ValueError("ms and seconds must not be negative")
        self.matched = 0
        self.fired = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method) and self.route.search(path) is not None

    def describe(self) -> dict:
        out = {"route": self.route_src, "method": self.method, "kind": self.kind,
               "probability": self.probability, "count": self.count,
               "matched": self.matched, "fired": self.fired}
        if self.kind == "latency":
            out["ms"] = self.ms
        elif self.kind == "status":
            out["status"] = self.status
        elif self.kind == "hang":
            out["seconds"] = self.seconds
        elif self.kind == "rate_limit":
            out["retry_after"] = self.retry_after
        return out


def _number(spec: dict, key: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s must be a number" % key)
    return float(value)


class Faults:
    """The active rule set; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._seed = 0
        self._rng = random.Random(0)

    def install(self, spec) -> int:
        """Replace the rule set from {"seed": N, "rules": [...]}; raises ValueError on a bad spec."""
        if not isinstance(spec, dict):
            raise ValueError('body must be {"seed": N, "rules": [...]}')
        seed = spec.get("seed", 0)
        if not isinstance(seed, (int, str)) or isinstance(seed, bool):
            raise ValueError("seed must be an integer")
        rules = spec.get("rules")
        if not isinstance(rules, list):
            raise ValueError("rules must be a list")
        parsed = [FaultRule(r) for r in rules]
        with self._lock:
            self._rules = parsed
            self._seed = seed
            self._rng = random.Random(seed)
        return len(parsed)

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def describe(self) -> dict:
        with self._lock:
            return {"seed": self._seed, "rules": [r.describe() for r in self._rules]}

    def decide(self, method: str, path: str) -> tuple[float, Optional[FaultRule]]:
        """(latency in ms to add, the rule that decides the request's fate or None)."""
        if not self._rules:          # the common case costs no lock
            return 0.0, None
        latency = 0.0
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                rule.matched += 1
                # Draw even at probability 1 so the sequence depends only on the requests, not on the rules' values.
                if self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.kind == "latency":
                    latency += rule.ms
                    continue
                return latency, rule
        return latency, None
