"""Compares the daemon's replica with knosc-sim's snapshot, resource by resource."""

from __future__ import annotations

from harness import Daemon, Sim

# Resources whose lines the daemon mirrors from a flat line list (a resource of its own), not as nested parts.
FLAT_LINES = {"purchase-order": ("purchase-order-details", "Purchase Order Id"),
              "sales-order": ("sales-order-details", "Sales Order Id")}
# Parts of get-one records the daemon derives from other mirrored resources instead of fetching per record.
DERIVED = {"customer-master": {"Ship To Locations"}, "supplier-master": {"Ship From Locations"}}


def differences(sim: Sim, daemon: Daemon, resources: list[str] | None = None, limit: int = 20) -> list[str]:
    """Human-readable differences (empty when the replica equals the snapshot)."""
    snap = sim.snapshot(records=True)
    diffs: list[str] = []
    for name, data in sorted(snap.items()):
        if resources and name not in resources:
            continue
        replica = daemon.rows(name)
        records = {r["id"]: r for r in data["records"]}
        if data["count"] != len(replica):
            diffs.append(f"{name}: knosc-sim has {data['count']} records, the replica {len(replica)}")
        for rid in sorted(set(records) - set(replica), key=str)[:limit]:
            diffs.append(f"{name} {rid}: missing from the replica")
        for rid in sorted(set(replica) - set(records), key=str)[:limit]:
            diffs.append(f"{name} {rid}: in the replica but not upstream")
        lines = None
        if name in FLAT_LINES:
            line_resource, parent_key = FLAT_LINES[name]
            lines = {}
            for lid, line in daemon.rows(line_resource).items():
                lines.setdefault(line.get(parent_key), {})[lid] = line
        for rid in sorted(set(records) & set(replica), key=str):
            want = dict(records[rid])
            got = dict(replica[rid])
            for key in DERIVED.get(name, ()):
                want.pop(key, None)
            if lines is not None:
                want_lines = {l["id"]: l for l in want.pop("details", [])}
                got_lines = lines.get(rid, {})
                if set(want_lines) != set(got_lines):
                    diffs.append(f"{name} {rid}: lines {sorted(want_lines)} upstream, {sorted(got_lines)} in the replica")
                for lid in set(want_lines) & set(got_lines):
                    for k, v in want_lines[lid].items():
                        if k in got_lines[lid] and got_lines[lid][k] != v:
                            diffs.append(f"{name} {rid} line {lid}: {k} is {v!r} upstream, {got_lines[lid][k]!r} in the replica")
            if want != got:
                keys = sorted(set(want) | set(got))
                bad = [k for k in keys if want.get(k, "<absent>") != got.get(k, "<absent>")]
                diffs.append(f"{name} {rid}: differs in {bad[:6]}: upstream {[want.get(k, '<absent>') for k in bad[:3]]}, "
                             f"replica {[got.get(k, '<absent>') for k in bad[:3]]}")
            if len(diffs) > limit:
                return diffs
    return diffs
