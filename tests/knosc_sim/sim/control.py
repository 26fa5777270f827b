"""The control port (/_sim/*): how tests drive the simulated world around the Knosc port.

It lives on its own port so it keeps answering while the Knosc port is offline or faulty, and it takes only
`Authorization: Bearer <control token>`, so a client of the Knosc port can never reach it by accident.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
import traceback
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from sim.http_types import Response
from sim.server import BaseHandler, KnoscTransport, _Server


def _err(status: int, message: str, code: str) -> Response:
    return Response(status, {"Message": message, "Code": code})


def _flag(value: Optional[str]) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


class ControlHandler(BaseHandler):
    server: _Server

    def serve(self) -> None:
        started = time.monotonic()
        body = self.read_body()
        if body is None:
            return
        control: Control = self.server.transport
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        method = "GET" if self.command == "HEAD" else self.command.upper()
        given = self.headers.get("Authorization") or ""
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   ("Bearer " + control.token).encode("utf-8")):
            resp = _err(401, "Control token required", "Control.Unauthorized")
            resp.headers["WWW-Authenticate"] = "Bearer"
        else:
            try:
                resp = control.route(method, path, query, body)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                resp = _err(500, "Internal Server Error", "Server.InternalError")
        self.send_response_obj(resp, head_only=self.command == "HEAD")
        self.log_line(started, "control")


class Control:
    """Routes of the control API, over the tenant, the Knosc transport, auth and faults."""

    def __init__(self, tenant, transport: KnoscTransport, auth, token: str, host: str = "127.0.0.1",
                 port: int = 0, quiet: bool = True):
        self.tenant = tenant
        self.transport = transport
        self.auth = auth
        self.token = token
        self.host = host
        self.port = port
        self._handler = type("Handler", (ControlHandler,), {"quiet": quiet})
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.started_at = time.time()
        self._routes: dict[tuple[str, str], Callable] = {
            ("GET", "/_sim/health"): self._health,
            ("POST", "/_sim/mutate"): self._mutate,
            ("POST", "/_sim/planner"): self._planner,
            ("GET", "/_sim/faults"): self._faults_get,
            ("POST", "/_sim/faults"): self._faults_post,
            ("DELETE", "/_sim/faults"): self._faults_delete,
            ("POST", "/_sim/expire-tokens"): self._expire_tokens,
            ("POST", "/_sim/offline"): self._offline,
            ("POST", "/_sim/online"): self._online,
            ("GET", "/_sim/link"): self._link_get,
            ("POST", "/_sim/link"): self._link_post,
            ("GET", "/_sim/stats"): self._stats,
            ("POST", "/_sim/stats/reset"): self._stats_reset,
            ("GET", "/_sim/snapshot"): self._snapshot,
            ("GET", "/_sim/reset-token"): self._reset_token,
            ("POST", "/_sim/job-tick"): self._job_tick,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> int:
        # _Server hands itself to handlers as .transport; for the control port that is this object.
        self._server = _Server((self.host, self.port), self._handler, self)  # type: ignore[arg-type]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="control-port", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- routing -----------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, body: bytes) -> Response:
        handler = self._routes.get((method, path))
        if handler is None:
            if any(p == path for (_m, p) in self._routes):
                return _err(405, "Method Not Allowed", "Route.MethodNotAllowed")
            return _err(404, "Not Found", "Route.NotFound")
        return handler(query, body)

    @staticmethod
    def _json(body: bytes, default=None):
        if not body:
            return default
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise _BadRequest("body is not valid JSON") from None

    # -- routes ------------------------------------------------------------------------------------------
    def _health(self, query, body) -> Response:
        return Response(200, {"status": "ok", "online": self.transport.online, "port": self.transport.port,
                              "link": self.transport.link.mode(), "uptime": round(time.time() - self.started_at, 3)})

    def _mutate(self, query, body) -> Response:
        try:
            spec = self._json(body, {})
            if not isinstance(spec, dict) or not isinstance(spec.get("resource"), str):
                raise _BadRequest('body must be {"resource": NAME, "create": N, "update": N, "delete": N}')
            counts = {}
            for key in ("create", "update", "delete"):
                value = spec.get(key, 0)
                if type(value) is not int or value < 0:
                    raise _BadRequest("%s must be a non-negative integer" % key)
                counts[key] = value
        except _BadRequest as exc:
            return _err(400, str(exc), "Control.BadRequest")
        try:
            result = self.tenant.mutate(spec["resource"], counts["create"], counts["update"], counts["delete"])
        except (KeyError, ValueError) as exc:
            return _err(400, "cannot mutate %s: %s" % (spec["resource"], exc), "Control.BadRequest")
        return Response(200, result)

    def _planner(self, query, body) -> Response:
        return Response(200, self.tenant.run_planner())

    def _faults_get(self, query, body) -> Response:
        return Response(200, self.transport.faults.describe())

    def _faults_post(self, query, body) -> Response:
        try:
            n = self.transport.faults.install(self._json(body))
        except (_BadRequest, ValueError) as exc:
            return _err(400, str(exc), "Control.BadRequest")
        return Response(200, {"installed": n})

    def _faults_delete(self, query, body) -> Response:
        self.transport.faults.clear()
        return Response(200, {"installed": 0})

    def _expire_tokens(self, query, body) -> Response:
        self.auth.expire_all()
        return Response(200, {"expired": True})

    # /_sim/offline and /_sim/online are the link modes "refuse" and "normal" under their older names.
    def _offline(self, query, body) -> Response:
        self.transport.link.set({"mode": "refuse"})
        return Response(200, {"online": False})

    def _online(self, query, body) -> Response:
        problem = self.transport.link.set({"mode": "normal"})
        if problem is not None:
            return _err(503, problem, "Control.PortBusy")
        return Response(200, {"online": True, "port": self.transport.port})

    def _link_get(self, query, body) -> Response:
        return Response(200, self.transport.link.describe())

    def _link_post(self, query, body) -> Response:
        try:
            problem = self.transport.link.set(self._json(body))
        except (_BadRequest, ValueError) as exc:
            return _err(400, str(exc), "Control.BadRequest")
        if problem is not None:
            return _err(503, problem, "Control.PortBusy")
        return Response(200, self.transport.link.describe())

    def _created(self) -> dict:
        return dict(self.tenant.created_counts())

    def _stats(self, query, body) -> Response:
        stats = self.transport.stats
        return Response(200, {"requests": stats.requests(), "created": stats.created(self._created())})

    def _stats_reset(self, query, body) -> Response:
        self.transport.stats.reset(self._created())
        return Response(200, {"reset": True})

    def _snapshot(self, query, body) -> Response:
        resource = query.get("resource") or None
        try:
            snap = self.tenant.snapshot(records=_flag(query.get("records")), resource=resource)
        except (KeyError, ValueError) as exc:
            return _err(400, "unknown resource %s: %s" % (resource, exc), "Control.BadRequest")
        return Response(200, snap)

    def _reset_token(self, query, body) -> Response:
        token = self.auth.reset_token_for(query.get("email") or "")
        if token is None:
            return _err(404, "no pending reset token for that e-mail", "Control.NotFound")
        return Response(200, {"token": token})

    def _job_tick(self, query, body) -> Response:
        tick = getattr(self.tenant, "job_tick", None)
        if tick is not None:
            tick()
        return Response(200, {"ticked": True})


class _BadRequest(Exception):
    pass
