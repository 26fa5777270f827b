"""The two values that cross from the HTTP transport (server.py) into the tenant (tenant.py).

The transport owns sockets, faults, authentication cookies and CSRF; the tenant owns data, privileges and
every /api route that is not an authentication route. Keeping the boundary this small lets each side be
tested alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional


class Headers(dict):
    """Case-insensitive request headers (keys are stored lower-case)."""

    def __init__(self, items=()):
        super().__init__()
        for k, v in (items.items() if isinstance(items, dict) else items):
            self[k] = v

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default=None):  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclasses.dataclass
class Request:
    method: str                      # "GET", "POST", ...
    path: str                        # decoded path, e.g. "/api/purchase-order/42"
    query: dict[str, str]            # decoded query parameters, first value of each
    headers: Headers
    body: bytes
    user: Optional[dict] = None      # the authenticated user record (with its internal "_" keys), None on public routes
    now: float = 0.0                 # time.time() when the request arrived

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not valid JSON."""
        import json

        if not self.body:
            raise ValueError("empty body")
        return json.loads(self.body.decode("utf-8"))


@dataclasses.dataclass
class Response:
    status: int = 200
    body: Any = None                 # JSON-serialisable value, or bytes sent as they are
    content_type: str = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # extra headers, e.g. Set-Cookie is handled by cookies
    cookies: list[str] = dataclasses.field(default_factory=list)       # full Set-Cookie values


def error(status: int, message: str, code: str) -> Response:
    """A Knosc error body: {"Message": ..., "Code": ...}."""
    return Response(status=status, body={"Message": message, "Code": code})
