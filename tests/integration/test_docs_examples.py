"""The Knosc documentation's client examples work unchanged against the target: only the base URL differs.

Replayed, as separate programs, against the reference (knosc-sim) and the target (KNOSC_PARITY_TARGET, see
parity.py), and their outputs compared step by step:

- curl with a cookie jar (Knosc docs "Quick Start" and "Authentication", API-NOTES §2, §5.1): log in with
  `-c jar`, list purchase orders and read one with `-b jar`, create a purchase order with the
  csrf_access_token value taken from the jar into X-XSRF-TOKEN, and the documented raw request that sends
  only `Cookie: access_token_cookie=...` plus X-XSRF-TOKEN;
- Python requests (same pages, and the vendor's `search` example of API-NOTES §5.2): a Session that logs in,
  lists with page/page_size, reads one record, writes with the CSRF header, and lists forecasts with the
  older `search={"filters": {"include", "exclude"}}` parameter.

The documentation's placeholders (account, supplier, item, warehouse and ship-from numbers) are replaced by
the seeded tenant's own values, the same for both sides; per side only the base URL changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import pytest

import parity

pytest_plugins = ["parity"]

DOCS_BASE = "https://acme.knosc.com/api"
PYTHON = "/usr/bin/python3"
CURL = "/usr/bin/curl"

CURL_EXAMPLE = r"""
set -eu
BASE=https://acme.knosc.com/api

# Step 1: authenticate; -c keeps the session cookies (access, refresh and CSRF tokens) in a jar.
curl -sS -c cookies.txt -X POST "$BASE/authenticate" \
     -H "Content-Type: application/json" \
     -d "{\"username\": \"$KNOSC_USER\", \"password\": \"$KNOSC_PASSWORD\"}" -w '\n@@status %{http_code}\n'

# Step 2: list purchase orders (reads send the cookies only).
curl -sS -b cookies.txt "$BASE/purchase-order" -w '\n@@status %{http_code}\n'

# Step 3: one purchase order by id.
curl -sS -b cookies.txt "$BASE/purchase-order/$PO_ID" -w '\n@@status %{http_code}\n'

# Step 4: create a purchase order; writes need X-XSRF-TOKEN = the csrf_access_token cookie.
CSRF=$(grep csrf_access_token cookies.txt | awk '{print $NF}')
curl -sS -b cookies.txt -X POST "$BASE/purchase-order" \
     -H "Content-Type: application/json" \
     -H "X-XSRF-TOKEN: $CSRF" \
     -d "$NEW_PO" -w '\n@@status %{http_code}\n'

# The raw write of the authentication page: only the access cookie, and the CSRF header.
ACCESS=$(grep access_token_cookie cookies.txt | awk '{print $NF}')
curl -sS -X POST "$BASE/item-master" \
     -H "Cookie: access_token_cookie=$ACCESS" \
     -H "X-XSRF-TOKEN: $CSRF" \
     -H "Content-Type: application/json" \
     -d "$NEW_ITEM" -w '\n@@status %{http_code}\n'
"""

PYTHON_EXAMPLE = r"""
import json
import os

import requests

BASE = "https://acme.knosc.com/api"


def show(step, r):  # (added for the comparison) one JSON line per response
    print(json.dumps({"step": step, "status": r.status_code, "body": r.json()}))


session = requests.Session()

# Log in: the session keeps the cookies the server sets.
r = session.post(f"{BASE}/authenticate",
                 json={"username": os.environ["KNOSC_USER"], "password": os.environ["KNOSC_PASSWORD"]})
show("login", r)

# List purchase orders, one page.
r = session.get(f"{BASE}/purchase-order", params={"page": 1, "page_size": 50})
show("list", r)

# One purchase order with its lines.
po_id = r.json()["data"]["rows"][0]["id"]
r = session.get(f"{BASE}/purchase-order/{po_id}")
show("get", r)

# Writes carry the csrf_access_token cookie's value in X-XSRF-TOKEN.
headers = {"X-XSRF-TOKEN": session.cookies.get("csrf_access_token")}
r = session.post(f"{BASE}/purchase-order", json=json.loads(os.environ["NEW_PO"]), headers=headers)
show("create", r)

# The vendor's search form (include/exclude lists per column).
params = {"search": json.dumps({"filters": {
    "include": {"Forecast List Document Status": ["Active"]},
    "exclude": {"Forecast List Document Status": ["Archived"]}}})}
r = session.get(f"{BASE}/forecast", params=params)
show("search", r)
"""


@pytest.fixture(scope="module")
def pair():
    p = parity.start_pair()
    yield p
    p.close()


@pytest.fixture(scope="module")
def tenant(pair):
    """The seeded tenant's own values for the documentation's placeholders (read from the reference)."""
    picks = parity.Picks(pair, {
        "ship_from": ("/ship-from-master", {"filter": {"Ship From Status": "Active"}}),
        "item": ("/item-master", {"filter": {"Item Status": "Active"}}),
        "po": ("/purchase-order", {"page": 1, "page_size": 50}),
    })

    def po(number):
        return {"PO List Number": number, "PO List Document Status": "Open", "PO List Order Date": "2024-03-15",
                "Supplier Number": picks.lookup("@ship_from.Supplier Number"), "Purchase Order Id": None,
                "details": [{"Item Number": picks.lookup("@item.Item Number"), "Warehouse Number": "WH-01",
                             "Ship From Number": picks.lookup("@ship_from.Ship From Number"),
                             "PO Details Quantity": 100, "PO Details Document Status": "Open",
                             "PO Details Order Date": "2024-03-15", "PO Details Ship Date": "2024-03-22",
                             "PO Details ETA Date": "2024-03-28"}]}

    user, password = parity.USERS["sync"]
    return {"KNOSC_USER": user, "KNOSC_PASSWORD": password, "PO_ID": str(picks.lookup("@po.id")),
            "po": po}


def with_base(example: str, pattern: str, base: str) -> str:
    """The example with its base URL line changed, and nothing else."""
    changed, n = re.subn(pattern, lambda m: m.group(0).replace(DOCS_BASE, base), example)
    assert n == 1, "the example has no single base URL line"
    return changed


def run_curl(base: str, env: dict) -> list:
    script = with_base(CURL_EXAMPLE, r"(?m)^BASE=.*$", base)
    with tempfile.TemporaryDirectory(prefix="knosc-docs-curl-") as cwd:
        out = subprocess.run(["/bin/bash", "-c", script], cwd=cwd, env=dict(os.environ, **env), capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 0, "curl example failed (%d): %s" % (out.returncode, out.stderr)
    steps = []
    parts = re.split(r"\n@@status (\d{3})\n", out.stdout)
    bodies, statuses = parts[0:-1:2], parts[1::2]
    for name, body, status in zip(("login", "list", "get", "create", "access-cookie-write"), bodies, statuses):
        steps.append({"step": name, "status": int(status), "body": json.loads(body)})
    assert len(steps) == 5, "curl example printed %d answers, not 5:\n%s" % (len(steps), out.stdout[-2000:])
    return steps


def run_python(base: str, env: dict) -> list:
    script = with_base(PYTHON_EXAMPLE, r'(?m)^BASE = ".*"$', base)
    out = subprocess.run([PYTHON, "-c", script], env=dict(os.environ, **env), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, "Python example failed (%d): %s" % (out.returncode, out.stderr[-3000:])
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def compare_runs(pair: parity.Pair, ref_steps: list, tgt_steps: list, paths: dict) -> None:
    """Step by step: the reference answered 200, and the target the same status and body."""
    assert [s["step"] for s in ref_steps] == [s["step"] for s in tgt_steps], (ref_steps, tgt_steps)
    problems = []
    for ref, tgt in zip(ref_steps, tgt_steps):
        assert ref["status"] == 200, "the reference answered %s to the example's %s: %s" % (
            ref["status"], ref["step"], ref["body"])
        if ref["step"] in ("create", "access-cookie-write") and isinstance(tgt["body"], dict) and "id" in tgt["body"]:
            pair.new_ids.add(ref["body"]["id"], tgt["body"]["id"])
        rules = parity.rules_for(paths[ref["step"]], new_ids=pair.new_ids)
        if ref["status"] != tgt["status"]:
            problems.append("%s: status: reference %d, target %d" % (ref["step"], ref["status"], tgt["status"]))
        for line in parity.diff(parity.normalise(ref["body"], rules, "reference"),
                                parity.normalise(tgt["body"], rules, "target")):
            problems.append("%s: %s" % (ref["step"], line))
    assert not problems, "the example's answers differ between %s and %s:\n  %s" % (
        pair.reference.name, pair.target.name, "\n  ".join(problems))


@pytest.mark.skipif(not os.access(CURL, os.X_OK), reason="curl is not installed")
def test_curl_example_with_a_cookie_jar(pair, tenant):
    env = {k: v for k, v in tenant.items() if isinstance(v, str)}
    env["NEW_PO"] = json.dumps(tenant["po"]("PO-DOCS-CURL-1"))
    env["NEW_ITEM"] = json.dumps({"Item Number": "ITEM-DOCS-CURL-1", "Item Description": "Made by curl"})
    ref = run_curl(pair.reference.base_url, env)
    tgt = run_curl(pair.target.base_url, env)
    paths = {"login": "/authenticate", "list": "/purchase-order", "get": "/purchase-order/" + env["PO_ID"],
             "create": "/purchase-order", "access-cookie-write": "/item-master"}
    compare_runs(pair, ref, tgt, paths)
    assert ref[0]["body"] == {"login": True}
    assert ref[2]["body"]["data"]["rows"]["details"], "the purchase order read has lines"


def test_python_requests_example(pair, tenant):
    env = {k: v for k, v in tenant.items() if isinstance(v, str)}
    env["NEW_PO"] = json.dumps(tenant["po"]("PO-DOCS-PY-1"))
    ref = run_python(pair.reference.base_url, env)
    tgt = run_python(pair.target.base_url, env)
    first_po = ref[1]["body"]["data"]["rows"][0]["id"]
    paths = {"login": "/authenticate", "list": "/purchase-order", "get": "/purchase-order/%s" % first_po,
             "create": "/purchase-order", "search": "/forecast"}
    compare_runs(pair, ref, tgt, paths)
    assert [s["step"] for s in ref] == ["login", "list", "get", "create", "search"]
    assert ref[4]["body"]["data"]["rows"], "the search example finds forecasts"
