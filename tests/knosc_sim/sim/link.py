"""Link-level faults of the Knosc port: how a plant's link to the cloud really fails.

Per-request faults (faults.py) decide what happens to one request. A link fault acts on the bytes of every
connection of the Knosc port at once, before any request is parsed, the way a broken VPN, firewall, proxy
or slow line does:

- normal     the link works;
- refuse     nothing listens: connects are refused, open connections are closed (the old /_sim/offline);
- blackhole  connects succeed (the kernel completes the handshake), then nothing is read or written: new
             connections are parked without a thread, open ones stop reading and writing mid-request or
             mid-response; the unread input stays in the kernel, whose windows stop the client;
- stall      requests are read and answered, but every response stops after `after_bytes` bytes (or after
             its headers and `body_bytes` bytes of body), never at its end, and the connection stays open;
- bandwidth  each connection sends and receives at most `bytes_per_second`, each direction on its own;
- flap       alternates `down_seconds` of `down_mode` (blackhole, refuse, stall or bandwidth) and
             `online_seconds` of normal, starting with the down phase unless `start` is "online".

When a hold (blackhole, stall) ends, held connections carry on where they stopped ("release": "resume", as
TCP does once a dropped link comes back), or are reset ("release": "reset", as after a VPN that came back
with a new tunnel). The phase of a flap follows the clock from the moment it was set, so what the control
API reports is what the connections meet; a thread per flap only wakes waiters and opens or closes the
listening socket at phase boundaries.

Everything that waits here waits on one condition variable with the transport's `wake` event checked after
every wake-up, so shutting down or going offline (which set `wake` and notify) ends every wait at once.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Callable, Optional

MODES = ("normal", "refuse", "blackhole", "stall", "bandwidth", "flap")
DOWN_MODES = ("blackhole", "refuse", "stall", "bandwidth")
RELEASES = ("resume", "reset")
FIELDS = {"normal": set(), "refuse": set(), "blackhole": {"release"}, "stall": {"after_bytes", "body_bytes", "release"},
          "bandwidth": {"bytes_per_second"}, "flap": {"online_seconds", "down_seconds", "down_mode", "start"}}
DEFAULT_AFTER_BYTES = 64
MIN_PHASE_SECONDS = 0.05
NORMAL_SLICE = 64 * 1024          # bytes per send while the link is normal, so a blackhole stops a big response
CATCH_UP_SECONDS = 0.1            # a paced connection may catch up at most this much lag (no saved-up credit)
RECHECK_SECONDS = 5.0             # waits re-read the state at least this often (a guard against lost wake-ups)

# Which effective modes hold which kind of I/O.
HOLDS_READ = ("blackhole",)
HOLDS_WRITE = ("blackhole",)
HOLDS_STALLED = ("stall", "blackhole")


class LinkAborted(ConnectionAbortedError):
    """The transport is going offline or shutting down: the connection gives up."""


class LinkReset(ConnectionResetError):
    """A hold ended with "release": "reset": the connection is reset (TCP RST)."""


# -- specification ---------------------------------------------------------------------------------------

class LinkSpec:
    """One validated link state, as set through POST /_sim/link; immutable once built."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError('body must be an object such as {"mode": "blackhole"}')
        mode = spec.get("mode")
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % ", ".join(MODES))
        self.mode: str = mode
        self.after_bytes: Optional[int] = None
        self.body_bytes: Optional[int] = None
        self.bytes_per_second: Optional[float] = None
        self.online_seconds: Optional[float] = None
        self.down_seconds: Optional[float] = None
        self.down_mode: Optional[str] = None
        self.start: Optional[str] = None
        self.release: Optional[str] = None
        shape = mode                  # whose fields apply: the mode, or a flap's down mode
        if mode == "flap":
            self.down_mode = spec.get("down_mode", "blackhole")
            if self.down_mode not in DOWN_MODES:
                raise ValueError("down_mode must be one of %s" % ", ".join(DOWN_MODES))
            shape = self.down_mode
        unknown = sorted(set(spec) - {"mode"} - FIELDS[mode] - FIELDS[shape])
        if unknown:
            raise ValueError("unknown field%s for mode %s%s: %s" % (
                "s" if len(unknown) > 1 else "", mode,
                " with down_mode %s" % self.down_mode if mode == "flap" else "", ", ".join(map(str, unknown))))
        if mode == "flap":
            self.online_seconds = _seconds(spec, "online_seconds")
            self.down_seconds = _seconds(spec, "down_seconds")
            self.start = spec.get("start", "down")
            if self.start not in ("down", "online"):
                raise ValueError('start must be "down" or "online"')
        if shape == "stall":
            if "after_bytes" in spec and "body_bytes" in spec:
                raise ValueError("give after_bytes or body_bytes, not both")
            if "body_bytes" in spec:
                self.body_bytes = _integer(spec, "body_bytes", 0)
            else:
                self.after_bytes = _integer(spec, "after_bytes", 1) if "after_bytes" in spec else DEFAULT_AFTER_BYTES
        elif shape == "bandwidth":
            if "bytes_per_second" not in spec:
                raise ValueError("bytes_per_second is required")
            rate = spec["bytes_per_second"]
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate < float("inf"):
                raise ValueError("bytes_per_second must be a number of at least 1")
            self.bytes_per_second = float(rate)
        if shape in ("blackhole", "stall"):
            self.release = spec.get("release", "resume")
            if self.release not in RELEASES:
                raise ValueError('release must be "resume" or "reset"')

    def describe(self) -> dict:
        out: dict = {"mode": self.mode}
        for key in ("online_seconds", "down_seconds", "down_mode", "start", "after_bytes", "body_bytes",
                    "bytes_per_second", "release"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def phase(self, elapsed: float) -> tuple[str, Optional[str], Optional[float], int]:
        """(effective mode, flap phase or None, seconds left in the phase or None, phase changes so far)."""
        if self.mode != "flap":
            return self.mode, None, None, 0
        first, second = ("down", "online") if self.start == "down" else ("online", "down")
        length = {"down": self.down_seconds, "online": self.online_seconds}
        cycle = self.down_seconds + self.online_seconds
        cycles, pos = divmod(max(0.0, elapsed), cycle)
        if pos < length[first]:
            phase, left, changes = first, length[first] - pos, 2 * int(cycles)
        else:
            phase, left, changes = second, cycle - pos, 2 * int(cycles) + 1
        return (self.down_mode if phase == "down" else "normal"), phase, left, changes

    def stall_point(self, data) -> int:
        """How many bytes of this response go out before it stalls: never all of them."""
        if self.body_bytes is not None:
            end = bytes(data[:65536]).find(b"\r\n\r\n")
            point = (end + 4 if end >= 0 else 0) + self.body_bytes
        else:
            point = self.after_bytes or 0
        return max(0, min(point, len(data) - 1))


def _seconds(spec: dict, key: str) -> float:
    if key not in spec:
        raise ValueError("%s is required" % key)
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_PHASE_SECONDS <= value < 1e9:
        raise ValueError("%s must be a number of seconds, at least %g" % (key, MIN_PHASE_SECONDS))
    return float(value)


def _integer(spec: dict, key: str, minimum: int) -> int:
    value = spec[key]
    if type(value) is not int or value < minimum:
        raise ValueError("%s must be an integer of at least %d" % (key, minimum))
    return value


NORMAL = LinkSpec({"mode": "normal"})


# -- the link of the Knosc port --------------------------------------------------------------------------

class Link:
    """The link state of the Knosc port, shared by its listener and every connection; thread-safe."""

    def __init__(self):
        self._cond = threading.Condition()
        self._current: tuple[LinkSpec, float] = (NORMAL, time.monotonic())   # replaced whole: read without lock
        self._generation = 0
        self._closed = False
        self._held = {"connections": 0, "reads": 0, "writes": 0}
        self._listen: Optional[Callable[[bool], Optional[str]]] = None
        self._listen_lock = threading.Lock()

    def attach(self, listen: Callable[[bool], Optional[str]]) -> None:
        """listen(True) opens the listening socket (returns an error text or None), listen(False) closes it."""
        self._listen = listen

    # -- state ---------------------------------------------------------------------------------------------
    def state(self) -> tuple[LinkSpec, str, Optional[float]]:
        """(spec, effective mode now, seconds until the effective mode may change or None)."""
        spec, since = self._current
        if spec.mode != "flap":
            return spec, spec.mode, None
        mode, _phase, left, _changes = spec.phase(time.monotonic() - since)
        return spec, mode, left

    def mode(self) -> str:
        return self.state()[1]

    def set(self, body) -> Optional[str]:
        """Install a new link state from a control body; raises ValueError on a bad body.

        Returns None, or why the listening socket could not be opened again.
        """
        spec = LinkSpec(body)
        with self._cond:
            if self._closed:
                raise ValueError("knosc-sim is shutting down")
            self._current = (spec, time.monotonic())
            self._generation += 1
            generation = self._generation
            self._cond.notify_all()
        if spec.mode == "flap":
            threading.Thread(target=self._drive, args=(generation,), name="link-flap", daemon=True).start()
        return self.reconcile()

    def describe(self) -> dict:
        spec, since = self._current
        elapsed = time.monotonic() - since
        mode, phase, left, changes = spec.phase(elapsed)
        out = spec.describe()
        out["effective"] = mode
        out["since"] = round(elapsed, 3)
        if phase is not None:
            out["phase"] = phase
            out["phase_left"] = round(left, 3)
            out["phase_changes"] = changes
        with self._cond:
            out["held"] = dict(self._held)
        return out

    def reconcile(self) -> Optional[str]:
        """Open or close the listening socket as the effective mode asks (refuse closes it)."""
        with self._listen_lock:
            if self._closed or self._listen is None:
                return None
            return self._listen(self.mode() != "refuse")

    def _drive(self, generation: int) -> None:
        """A flap's clock: at each phase boundary wake the waiters and open or close the listener."""
        while True:
            with self._cond:
                if self._generation != generation or self._closed:
                    return
                left = self.state()[2]
                self._cond.wait((left or 0.0) + 0.002)
                if self._generation != generation or self._closed:
                    return
                self._cond.notify_all()
            if self.reconcile() is not None:
                # The port could not be opened again: try again shortly rather than at the next boundary.
                with self._cond:
                    self._cond.wait(0.2)

    def close(self) -> None:
        """Shutdown: every wait ends, flaps stop, the listener is no longer reopened."""
        with self._cond:
            self._closed = True
            self._generation += 1
            self._cond.notify_all()

    def poke(self) -> None:
        """Wake every waiter so it re-reads the state and its wake event (offline, shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def count_held(self, kind: str, delta: int) -> None:
        with self._cond:
            self._held[kind] += delta

    # -- waiting -------------------------------------------------------------------------------------------
    def hold(self, kind: str, modes: tuple[str, ...], wake: threading.Event) -> str:
        """Block while the effective mode is one of `modes`; return how the hold ends ("resume" or "reset").

        `kind` ("reads" or "writes") is what GET /_sim/link counts as held meanwhile. Raises LinkAborted when
        `wake` is set (offline, shutdown).
        """
        with self._cond:
            self._held[kind] += 1
            try:
                last: Optional[LinkSpec] = None
                while True:
                    if self._closed or wake.is_set():
                        raise LinkAborted("the Knosc port is closing")
                    spec, mode, left = self.state()
                    if mode not in modes:
                        return (last.release if last is not None else None) or "resume"
                    last = spec
                    self._cond.wait(min(left + 0.002, RECHECK_SECONDS) if left is not None else RECHECK_SECONDS)
            finally:
                self._held[kind] -= 1

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        """Wait up to `seconds`, less when the link state changes; raises LinkAborted when `wake` is set."""
        with self._cond:
            if not (self._closed or wake.is_set()):
                self._cond.wait(seconds)
            if self._closed or wake.is_set():
                raise LinkAborted("the Knosc port is closing")


# -- one connection --------------------------------------------------------------------------------------

def _slice(rate: float) -> int:
    """Bytes per paced step: about 20 steps a second."""
    return max(1, min(NORMAL_SLICE, int(rate / 20)))


class LinkConn:
    """The link as one accepted connection meets it: gates before each socket read and write."""

    def __init__(self, link: Link, sock: socket.socket, wake: threading.Event):
        self.link = link
        self.sock = sock
        self.wake = wake
        self.reset = False           # a hold ended with "release": "reset"; the handler resets the socket
        self._poll = select.poll()   # not select(): thousands of connections have descriptors above 1024
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        self._recv_at = 0.0
        self._send_at = 0.0

    def _released(self, how: str) -> None:
        if how == "reset":
            self.reset = True
            raise LinkReset("the link came back with its connections reset")

    def _pace(self, attr: str, want: int, rate: float) -> Optional[int]:
        """How many bytes may move now under the cap, or None after waiting (the caller re-reads the state)."""
        now = time.monotonic()
        at = getattr(self, attr)
        if at < now - CATCH_UP_SECONDS:
            at = now
        if at > now:
            self.link.sleep(at - now, self.wake)
            return None
        n = min(want, _slice(rate))
        setattr(self, attr, at + n / rate)
        return n

    def before_recv(self, want: int) -> int:
        """Wait until this connection may read, then say how many bytes (at least 1, at most `want`).

        Waits for the socket to be readable first, so bytes that arrive during a blackhole stay in the kernel
        (whose receive window then stops the client) instead of in this process.
        """
        timeout = self.sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._poll.poll(None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000.0):
            if deadline is not None and time.monotonic() >= deadline:
                raise socket.timeout("timed out")
        while True:
            if self.wake.is_set():
                raise LinkAborted("the Knosc port is closing")
            spec, mode, _left = self.link.state()
            if mode in HOLDS_READ:
                self._released(self.link.hold("reads", HOLDS_READ, self.wake))
                continue
            if mode == "bandwidth":
                n = self._pace("_recv_at", want, spec.bytes_per_second)
                if n is None:
                    continue
                return n
            return want

    def send(self, data) -> None:
        """Send one response (or interim response) through the link."""
        view = memoryview(data).cast("B")
        total = len(view)
        sent = 0
        stalled = False
        while sent < total:
            if self.wake.is_set():
                raise LinkAborted("the Knosc port is closing")
            spec, mode, _left = self.link.state()
            if mode in HOLDS_WRITE:
                self._released(self.link.hold("writes", HOLDS_WRITE, self.wake))
                continue
            if mode == "stall" and not stalled:
                point = spec.stall_point(view)
                if sent < point:
                    self.sock.sendall(view[sent:point])
                    sent = point
                stalled = True
                self._released(self.link.hold("writes", HOLDS_STALLED, self.wake))
                continue
            n = min(total - sent, NORMAL_SLICE)
            if mode == "bandwidth":
                n = self._pace("_send_at", n, spec.bytes_per_second)
                if n is None:
                    continue
            self.sock.sendall(view[sent:sent + n])
            sent += n
