"""knosc-sim command line: build the tenant, open the Knosc and control ports, run until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Callable, Optional

from sim.auth import Auth
from sim.control import Control
from sim.faults import Faults
from sim.server import DEFAULT_MAX_BODY, KnoscTransport, Stats

JOB_TICK_SECONDS = 0.05


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="knosc-sim",
        description="A standalone emulation of the Knosc v1.41 REST API (cookie JWT auth, every resource, "
                    "jobs, export, analytics) with a control port for faults and background changes.")
    p.add_argument("--host", default="127.0.0.1", help="address of both ports (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="Knosc port; 0 picks a free port (default 0)")
    p.add_argument("--control-port", type=int, default=0, help="control port; 0 picks a free port (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated tenant (default 1)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="tenant size: 1 is about 2,000 records, 100 about 200,000 (default 1)")
    p.add_argument("--control-token", required=True, help="bearer token the control port requires")
    p.add_argument("--access-ttl", type=float, default=900.0, help="access token lifetime, seconds (default 900)")
    p.add_argument("--refresh-ttl", type=float, default=2592000.0,
                   help="refresh token lifetime, seconds (default 2592000 = 30 days)")
    p.add_argument("--lockout-base", type=float, default=30.0,
                   help="first lockout after 3 failed logins, seconds; doubles per further failure (default 30)")
    p.add_argument("--omit-create-id", action="store_true", help="leave `id` out of create responses")
    p.add_argument("--data-dir", default=None, help="directory for uploaded job files and other tenant data")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY,
                   help="largest accepted request body in bytes; larger ones get 413 (default 64 MiB)")
    p.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
    args = p.parse_args(argv)
    if not args.control_token:
        p.error("--control-token must not be empty")
    for name in ("access_ttl", "refresh_ttl"):
        if getattr(args, name) <= 0:
            p.error("--%s must be positive" % name.replace("_", "-"))
    if args.scale <= 0:
        p.error("--scale must be positive")
    return args


class Simulator:
    """Both ports over one tenant; usable in-process as well as from the command line."""

    def __init__(self, args: argparse.Namespace, tenant):
        self.args = args
        self.tenant = tenant
        self.auth = Auth(tenant, access_ttl=args.access_ttl, refresh_ttl=args.refresh_ttl,
                         lockout_base=args.lockout_base)
        self.faults = Faults()
        self.stats = Stats()
        self.transport = KnoscTransport(tenant, self.auth, host=args.host, port=args.port, faults=self.faults,
                                        stats=self.stats, quiet=args.quiet, max_body=args.max_body)
        self.control = Control(tenant, self.transport, self.auth, args.control_token, host=args.host,
                               port=args.control_port, quiet=args.quiet)
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None

    def start(self) -> None:
        self.transport.start()
        self.control.start()
        if callable(getattr(self.tenant, "job_tick", None)):
            self._ticker = threading.Thread(target=self._tick, name="job-tick", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        # Jobs advance in the background, so a client that only polls sees them finish.
        while not self._stop.wait(JOB_TICK_SECONDS):
            try:
                self.tenant.job_tick()
            except Exception:  # a broken job must not stop the ticker
                import traceback
                traceback.print_exc(file=sys.stderr)

    def urls(self) -> tuple[str, str]:
        host = self.args.host
        shown = "[%s]" % host if ":" in host else host
        return ("http://%s:%d" % (shown, self.transport.port), "http://%s:%d" % (shown, self.control.port))

    def stop(self) -> None:
        self._stop.set()
        self.control.stop()
        self.transport.close()


def raise_open_file_limit(cap: int = 65536) -> None:
    """Let a blackhole hold thousands of connections: raise the soft descriptor limit toward the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None, tenant_factory: Optional[Callable] = None) -> int:
    args = parse_args(argv)
    raise_open_file_limit()

    def stop_early(signum, frame):
        # Generating a large tenant takes a while; a stop request then ends the process at once.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_early)
    signal.signal(signal.SIGINT, stop_early)
    if args.data_dir:
        os.makedirs(args.data_dir, exist_ok=True)
    if tenant_factory is None:
        from sim.tenant import Tenant as tenant_factory  # noqa: N813 - the real tenant, imported late
    tenant = tenant_factory(seed=args.seed, scale=args.scale, omit_create_id=args.omit_create_id,
                            data_dir=args.data_dir)
    sim = Simulator(args, tenant)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sim.start()
    except OSError as exc:
        sys.stderr.write("knosc-sim: cannot listen: %s\n" % exc)
        return 2
    knosc_url, control_url = sim.urls()
    sys.stdout.write("knosc-sim listening on %s\n" % knosc_url)
    sys.stdout.write("knosc-sim control on %s\n" % control_url)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    sim.stop()
    return 0
