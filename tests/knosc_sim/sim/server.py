"""HTTP transport of the Knosc port: request parsing, faults, session and CSRF checks, stats, responses.

Built on http.server because fault injection needs the socket itself: a reset must be a real RST
(SO_LINGER 0, no FIN first), a truncated body must go out with its full Content-Length, a hang must hold
the connection, and going offline must close the listening socket so connections are refused. Link faults
(link.py) sit under the request parser: every read of a Knosc connection's socket and every write to it
passes through its LinkConn.
"""

from __future__ import annotations

import email.utils
import errno
import io
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

from sim.http_types import Headers, Request, Response, error
from sim.faults import Faults, status_body
from sim.link import Link, LinkConn

DEFAULT_MAX_BODY = 64 * 1024 * 1024
IDLE_TIMEOUT = 300.0                 # an idle keep-alive connection is closed after this many seconds
JOIN_ON_CLOSE = 0.5                  # at shutdown, how long to let woken connection threads finish
_ID_SEGMENT = re.compile(r"^(?:-?\d+|TKT-\d+)$")


def stats_key(method: str, path: str) -> str:
    """"<METHOD> <path>" with integer and ticket-id segments replaced by {id}."""
    return method + " " + "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


class Stats:
    """Request counts per route, and the baseline of the tenant's create counts at the last reset."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self.created_baseline: dict[str, int] = {}

    def count(self, key: str) -> None:
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def requests(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._requests.items()))

    def reset(self, created_now: dict[str, int]) -> None:
        with self._lock:
            self._requests.clear()
            self.created_baseline = dict(created_now)

    def created(self, created_now: dict[str, int]) -> dict[str, int]:
        with self._lock:
            base = self.created_baseline
        return {k: v - base.get(k, 0) for k, v in sorted(created_now.items()) if v - base.get(k, 0)}


def encode_body(resp: Response) -> bytes:
    body = resp.body
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str) and resp.content_type != "application/json":
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, transport: "KnoscTransport"):
        self.transport = transport
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        # A client that vanished mid-request is normal under fault injection; anything else is worth a trace.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        traceback.print_exc(file=sys.stderr)


class _KnoscServer(_Server):
    """The Knosc port's listener: while the link is a blackhole, accepted connections are parked.

    A parked connection has no thread and is never read: the kernel completed its handshake, its request
    waits in the kernel's receive buffer. When the blackhole ends, serve_forever's service_actions (every
    poll interval, 50 ms) hands each parked connection to a thread as if just accepted, or resets it when the
    blackhole said "release": "reset".
    """

    def __init__(self, addr, handler, transport: "KnoscTransport"):
        self._parked: list[socket.socket] = []
        self._parked_release = "resume"
        super().__init__(addr, handler, transport)

    def get_request(self):
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                time.sleep(0.05)   # out of descriptors: the listener stays readable; do not spin on it
            raise

    def process_request(self, request, client_address):
        link = self.transport.link
        spec, mode, _left = link.state()
        if mode == "blackhole":
            self._parked.append(request)
            self._parked_release = spec.release or "resume"
            link.count_held("connections", 1)
            return
        super().process_request(request, client_address)

    def service_actions(self):
        super().service_actions()
        if not self._parked:
            return
        spec, mode, _left = self.transport.link.state()
        if mode == "blackhole":
            self._parked_release = spec.release or "resume"
            return
        parked, self._parked = self._parked, []
        self.transport.link.count_held("connections", -len(parked))
        for sock in parked:
            if self._parked_release == "reset":
                _reset_socket(sock)
                continue
            try:
                peer = sock.getpeername()
            except OSError:
                peer = ("", 0)
            try:
                super().process_request(sock, peer)
            except Exception:
                self.handle_error(sock, peer)
                self.shutdown_request(sock)

    def drop_parked(self) -> None:
        """Offline or shutdown: reset every parked connection (after serve_forever has stopped)."""
        parked, self._parked = self._parked, []
        self.transport.link.count_held("connections", -len(parked))
        for sock in parked:
            _reset_socket(sock)


def _reset_socket(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): what a host that forgot the connection answers."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _LinkSocketIO(socket.SocketIO):
    """The raw reader of a Knosc connection: every socket read first asks the link."""

    def __init__(self, sock: socket.socket, conn: LinkConn):
        super().__init__(sock, "rb")
        self._link_conn = conn

    def readinto(self, b):
        n = self._link_conn.before_recv(len(b))
        if n < len(b):
            b = memoryview(b)[:n]
        return super().readinto(b)


class _LinkWriter(io.BufferedIOBase):
    """The writer of a Knosc connection: each write is one response, sent through the link."""

    def __init__(self, conn: LinkConn):
        self._link_conn = conn

    def writable(self):
        return True

    def write(self, b):
        if self.closed:
            raise ValueError("write to closed file")
        with memoryview(b) as view:
            self._link_conn.send(view)
            return view.nbytes

    def fileno(self):
        return self._link_conn.sock.fileno()


class BaseHandler(BaseHTTPRequestHandler):
    """Shared by the Knosc and control ports: JSON errors, one write per response, quiet logging."""

    protocol_version = "HTTP/1.1"
    server_version = "knosc-sim"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    quiet = True
    max_body = DEFAULT_MAX_BODY

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle_one_request(self):
        """As in BaseHTTPRequestHandler, but every method goes to self.serve()."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.serve()
            try:
                self.wfile.flush()
            except (OSError, ValueError):
                self.close_connection = True
        except (TimeoutError, socket.timeout):
            self.close_connection = True
        except (ConnectionError, BrokenPipeError, ValueError, OSError):
            # ValueError: I/O on a file closed by a reset or by going offline.
            self.close_connection = True

    def serve(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- bodies and responses ----------------------------------------------------------------------------
    def read_body(self) -> Optional[bytes]:
        """The request body, or None after an error response was sent (the connection then closes)."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length.strip())
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.send_response_obj(error(400, "Bad Request Format", "Request.Invalid"))
            self.lingering_close()
            return None
        if n > self.max_body:
            self.close_connection = True
            self.send_response_obj(error(413, "Request body too large", "Request.TooLarge"))
            self.lingering_close()
            return None
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            self.close_connection = True
            return None
        return data

    def _read_chunked(self) -> Optional[bytes]:
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                self.send_response_obj(error(400, "Bad Request Format", "Request.Invalid"))
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > self.max_body:
                self.close_connection = True
                self.send_response_obj(error(413, "Request body too large", "Request.TooLarge"))
                self.lingering_close()
                return None
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                self.close_connection = True
                return None
            parts.append(chunk)
            self.rfile.readline(3)

    def response_bytes(self, resp: Response, head_only: bool = False) -> tuple[bytes, bytes]:
        body = encode_body(resp)
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        lines = ["%s %d %s" % (self.protocol_version, resp.status, reason),
                 "Server: " + self.server_version,
                 "Date: " + email.utils.formatdate(usegmt=True)]
        if body or resp.body is not None:
            lines.append("Content-Type: " + resp.content_type)
        lines.append("Content-Length: %d" % len(body))
        for k, v in resp.headers.items():
            if k.lower() not in ("content-length", "date", "server", "connection"):
                lines.append("%s: %s" % (k, v))
        for c in resp.cookies:
            lines.append("Set-Cookie: " + c)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head, (b"" if head_only else body)

    def send_response_obj(self, resp: Response, head_only: bool = False) -> None:
        head, body = self.response_bytes(resp, head_only)
        self.wfile.write(head + body)
        self._status = resp.status

    def send_error(self, code, message=None, explain=None):
        # http.server calls this for malformed requests; answer in the Knosc error shape and close.
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        codes = {400: "Request.Invalid", 414: "Request.URITooLong", 431: "Request.HeaderTooLarge",
                 505: "Request.VersionNotSupported"}
        try:
            self.send_response_obj(error(int(code), phrase, codes.get(int(code), "Request.Invalid")))
        except (OSError, ValueError):
            pass

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write("%s %s\n" % (self.address_string(), format % args))

    def log_line(self, started: float, note: str = "") -> None:
        if self.quiet:
            return
        sys.stderr.write('%s "%s %s" %s %.1fms%s\n' % (
            self.client_address[0], self.command, self.path, getattr(self, "_status", "-"),
            (time.monotonic() - started) * 1000.0, (" " + note) if note else ""))

    def lingering_close(self, budget: float = 2.0) -> None:
        """After an early error answer, read and drop what the client is still sending before closing.

        Closing a socket with unread input sends a RST, which can destroy the error response before the
        client reads it; half-closing and draining for a moment lets the response arrive.
        """
        sock = self.connection
        try:
            self.wfile.flush()
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + budget
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                if not sock.recv(65536):
                    break
        except (OSError, ValueError):
            pass

    def reset_connection(self) -> None:
        """Abort the connection with a TCP RST and nothing else (no FIN first)."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The file objects hold references to the socket; close them first so close() really closes it.
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            sock.close()
        except OSError:
            pass


class KnoscHandler(BaseHandler):
    server: _Server

    def setup(self):
        super().setup()
        transport = self.server.transport
        # Reads and writes of the Knosc port go through the link (link faults act before anything else).
        self.link_conn = LinkConn(transport.link, self.connection, transport.wake)
        self.rfile.close()
        self.rfile = io.BufferedReader(_LinkSocketIO(self.connection, self.link_conn), io.DEFAULT_BUFFER_SIZE)
        self.wfile = _LinkWriter(self.link_conn)
        transport.track(self.connection, True)

    def finish(self):
        try:
            if self.link_conn.reset:
                self.reset_connection()
            super().finish()
        except (OSError, ValueError):
            pass
        finally:
            self.server.transport.track(self.connection, False)

    def serve(self) -> None:
        transport = self.server.transport
        started = time.monotonic()
        self._status = "-"
        now = time.time()
        split = urlsplit(self.path)
        path = unquote(split.path, errors="replace") or "/"
        method = self.command.upper()
        transport.stats.count(stats_key(method, path))
        body = self.read_body()
        if body is None:
            self.log_line(started)
            return
        latency, rule = transport.faults.decide(method, path)
        wake = transport.wake
        if latency:
            if wake.wait(latency / 1000.0):
                self.reset_connection()
                return
        if rule is not None and rule.kind in ("reset_before", "hang", "status", "rate_limit"):
            if rule.kind == "reset_before":
                self.reset_connection()
                self.log_line(started, "fault reset_before")
                return
            if rule.kind == "hang":
                wake.wait(rule.seconds)
                self.close_connection = True
                self.log_line(started, "fault hang")
                return
            if rule.kind == "status":
                resp = Response(rule.status, status_body(rule.status))
            else:
                resp = Response(429, status_body(429), headers={"Retry-After": str(rule.retry_after)})
            self.send_response_obj(resp, head_only=method == "HEAD")
            self.log_line(started, "fault " + rule.kind)
            return
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        req = Request(method="GET" if method == "HEAD" else method, path=path, query=query,
                      headers=Headers(self.headers.items()), body=body, now=now)
        resp = transport.respond(req)
        if rule is not None and rule.kind == "reset_after":
            self.reset_connection()
            self.log_line(started, "fault reset_after")
            return
        if rule is not None and rule.kind == "truncate":
            head, payload = self.response_bytes(resp)
            self.close_connection = True
            self.wfile.write(head + payload[: len(payload) // 2])
            self._status = resp.status
            self.log_line(started, "fault truncate")
            return
        self.send_response_obj(resp, head_only=method == "HEAD")
        self.log_line(started)


class KnoscTransport:
    """The Knosc port: owns the listening socket so it can go offline and come back on the same port."""

    def __init__(self, tenant, auth, host: str = "127.0.0.1", port: int = 0, faults: Optional[Faults] = None,
                 stats: Optional[Stats] = None, quiet: bool = True, max_body: int = DEFAULT_MAX_BODY,
                 link: Optional[Link] = None):
        self.tenant = tenant
        self.auth = auth
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.stats = stats or Stats()
        self.link = link or Link()
        self.link.attach(self._listen)
        self._handler = type("Handler", (KnoscHandler,), {"quiet": quiet, "max_body": max_body})
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self._server: Optional[_KnoscServer] = None
        self._thread: Optional[threading.Thread] = None
        self.wake = threading.Event()   # set when connections must give up waiting (offline, stop)

    # -- request handling --------------------------------------------------------------------------------
    def respond(self, req: Request) -> Response:
        try:
            if not req.path.startswith("/api/"):
                return error(404, "Not Found", "Route.NotFound")
            if self.auth.owns(req.path):
                return self.auth.handle(req)
            failure = self.auth.check_session(req)
            if failure is not None:
                return failure
            return self.tenant.dispatch(req)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return error(500, "Internal Server Error", "Server.InternalError")

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def online(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        with self._lock:
            if self._server is None:
                self.wake = threading.Event()
                self._server = _KnoscServer((self.host, self.port), self._handler, self)
                self.port = self._server.server_address[1]
                self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                                name="knosc-port", daemon=True)
                self._thread.start()
            return self.port

    def stop(self) -> None:
        """Close the listening socket and drop every open connection (offline, or shutdown)."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            self.wake.set()
            self.link.poke()
            server.shutdown()
            server.server_close()
            server.drop_parked()
            with self._conns_lock:
                conns = list(self._conns)
            for sock in conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Shutdown: end the link's waits and flaps, close everything, give woken threads a moment to end."""
        self.link.close()
        self.stop()
        deadline = time.monotonic() + JOIN_ON_CLOSE
        with self._conns_lock:
            threads = list(self._conns.values())
        for t in threads:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if t is not threading.current_thread():
                t.join(left)

    def _listen(self, want: bool) -> Optional[str]:
        """The link's switch for the listening socket: None, or why it could not listen again."""
        if not want:
            self.stop()
            return None
        try:
            self.start()
        except OSError as exc:
            return "cannot listen on port %d again: %s" % (self.port, exc)
        return None

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns[sock] = threading.current_thread()
            else:
                self._conns.pop(sock, None)
        if add and self._server is None:
            # Accepted just before the listener closed: offline drops it like the others.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
