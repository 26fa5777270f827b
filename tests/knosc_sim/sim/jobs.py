"""Upload jobs (API-NOTES §15.1, CONTRACT §6).

POST /api/job/{trigger} stores the file and queues a job. Jobs of one trigger run one at a time on a
worker thread; a job validates and applies every row inside one store transaction and rolls all of it back
when any row fails, reporting the bad rows by their row number in the file (header = row 1).
"""

from __future__ import annotations

import csv
import datetime as _dt
import email.parser
import email.policy
import io
import json
import os
import re
import secrets
import threading
import time
from collections import deque
from typing import Optional

from sim import records as R
from sim.catalog import DOCS, JOB_TRIGGERS, RESOURCES, CUSTOM_TABLES
from sim.common import ApiError, now_iso, parse_json_param, route_not_found
from sim.http_types import Response

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv"
ACTIONS = ("REFRESH", "ADD", "UPDATE", "DELETE")
_LINE_RE = re.compile(r" \(line (\d+)\)")


# ------------------------------------------------------------------------------------------------------------
# Columns
# ------------------------------------------------------------------------------------------------------------
def _field_types(trigger: str) -> dict:
    """Writable columns of a trigger's file -> field type."""
    res_name = JOB_TRIGGERS[trigger][0]
    out = {}
    if res_name in DOCS:
        spec = DOCS[res_name]
        for k, ftype, _, _ in spec.header_fields:
            out[k] = ftype
        for ref in spec.header_refs:
            out[ref.field] = "ref"
        for ref in spec.line_refs:
            out[ref.field] = "int" if ref.tkey == "id" else "ref"
        for k, ftype, _, _ in spec.line_fields:
            out[k] = ftype
        if spec.wh_from_header:
            out["Warehouse Number"] = "ref"
    else:
        res = RESOURCES[res_name]
        for ref in res.refs:
            out[ref.field] = "ref"
        for k, ftype, _, _ in res.fields:
            out[k] = ftype
    return out


def template_columns(t, trigger: str) -> list:
    cols = list(_field_types(trigger))
    res_name = JOB_TRIGGERS[trigger][0]
    tables = [res_name] + ([DOCS[res_name].lines] if res_name in DOCS else [])
    for tname in tables:
        cols.extend(k for k in t.custom_defaults(tname) if k not in cols)
    return cols


def _readonly_columns(res_name: str) -> set:
    keys = set(RESOURCES[res_name].keys)
    if res_name in DOCS:
        keys |= set(RESOURCES[DOCS[res_name].lines].keys)
    return keys | {"id", "From", "To", "Warehouse Status"}


# ------------------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------------------
def parse_multipart(req) -> Optional[tuple]:
    ctype = req.headers.get("content-type") or ""
    if "multipart/form-data" not in ctype.lower():
        return None
    raw = b"Content-Type: " + ctype.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + (req.body or b"")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not msg.is_multipart():
        return None
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_filename() or "upload", part.get_payload(decode=True) or b"", part.get_content_type()
    return None


def _cell(v):
    if isinstance(v, _dt.datetime):
        return v.date().isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        v = v.strip()
        return v if v != "" else None
    return v


def read_table(data: bytes, filename: str) -> tuple[list, list]:
    """Header keys and [(row number, [values])] of a CSV or XLSX file."""
    if filename.lower().endswith(".xlsx") or data[:4] == b"PK\x03\x04":
        from openpyxl import load_workbook
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        ws = wb.worksheets[0]
        raw_rows = [[_cell(v) for v in row] for row in ws.iter_rows(values_only=True)]
        wb.close()
    else:
        text = data.decode("utf-8-sig")
        raw_rows = [[_cell(v) for v in row] for row in csv.reader(io.StringIO(text))]
    if not raw_rows:
        raise ApiError(400, "The file is empty.", "Job.InvalidFile")
    header = list(raw_rows[0])
    while header and header[-1] is None:
        header.pop()
    if not header or any(h is None for h in header):
        raise ApiError(400, "The header row has empty column names.", "Job.InvalidFile")
    rows = []
    for n, row in enumerate(raw_rows[1:], 2):
        if all(v is None for v in row):
            continue
        rows.append((n, list(row[:len(header)]) + [None] * (len(header) - len(row))))
    return [str(h) for h in header], rows


def _convert(key: str, value, ftype):
    if value is None:
        return None
    if ftype in ("num", "num?", "int", "int?"):
        if isinstance(value, bool):
            raise ApiError(400, "Column '%s' must be a number, got %r." % (key, value), "Job.InvalidValue")
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise ApiError(400, "Column '%s' must be a number, got %r." % (key, value), "Job.InvalidValue")
            return int(f) if f.is_integer() else f
        return value
    if ftype == "bool" or ftype == "boolean":
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("true", "1", "yes", "y"):
            return True
        if s in ("false", "0", "no", "n"):
            return False
        raise ApiError(400, "Column '%s' must be true or false, got %r." % (key, value), "Job.InvalidValue")
    if ftype == "ref" and not isinstance(value, str):
        return str(value)
    if ftype in ("str", "str?", "date", "date?") and not isinstance(value, str):
        return str(value)
    return value


# ------------------------------------------------------------------------------------------------------------
# Applying a file
# ------------------------------------------------------------------------------------------------------------
def _row_error(errors: list, row: int, exc: ApiError, group_rows: Optional[list] = None) -> None:
    msg = exc.message if not exc.body else exc.body.get("error", exc.message)
    if group_rows:
        line = getattr(exc, "line", None)
        if line is None:
            m = _LINE_RE.search(msg)
            line = int(m.group(1)) if m else None
        if line is not None and 1 <= line <= len(group_rows):
            row = group_rows[line - 1]
    errors.append({"row": row, "message": msg})


def apply_file(t, trigger: str, header: list, rows: list, user) -> tuple[int, list]:
    """Returns (rows applied, errors); the caller holds the tenant lock and the store transaction."""
    res_name = JOB_TRIGGERS[trigger][0]
    types = _field_types(trigger)
    tables = [res_name] + ([DOCS[res_name].lines] if res_name in DOCS else [])
    custom = {}
    for tname in tables:
        for c in t.store["custom-columns"].values():
            if CUSTOM_TABLES.get(c["table"]) == tname:
                custom[c["key"]] = (tname, c)
    known = set(types) | _readonly_columns(res_name) | set(custom) | {"Action"}
    spec = DOCS.get(res_name)
    if spec is not None and spec.line_id_alias:
        known.add(spec.line_id_alias)
    errors = []
    for h in header:
        if h not in known:
            errors.append({"row": 1, "message": "Unknown column '%s'." % h})
    if len(set(header)) != len(header):
        errors.append({"row": 1, "message": "The header row names a column twice."})
    if errors:
        return 0, errors
    parsed = []
    for n, values in rows:
        row = dict(zip(header, values))
        try:
            action = (row.pop("Action", None) or "REFRESH")
            action = str(action).strip().upper()
            if action not in ACTIONS:
                raise ApiError(400, "Action must be one of %s, got %r." % (", ".join(ACTIONS), action), "Job.InvalidValue")
            body, cvals = {}, {}
            for k, v in row.items():
                if k in types:
                    v = _convert(k, v, types[k])
                    if v is not None:
                        body[k] = v
                elif k in custom:
                    c = custom[k][1]
                    v = _convert(k, v, c.get("format"))
                    if v is not None:
                        from sim.extras import check_custom_value
                        cvals[k] = check_custom_value(c, v)
                elif k in ("id",) or (spec is not None and k == spec.line_id_alias):
                    v = _convert(k, v, "int")
                    if v is not None:
                        body["id"] = v
            parsed.append((n, action, body, cvals))
        except ApiError as exc:
            _row_error(errors, n, exc)
    actions = {a for _, a, _, _ in parsed}
    if "REFRESH" in actions and len(actions) > 1:
        # API-NOTES §15.1: REFRESH cannot be mixed with other actions in one file
        first = next(n for n, a, _, _ in parsed if a != "REFRESH")
        errors.append({"row": first, "message": "REFRESH cannot be mixed with other actions in one file."})
    # rows with bad values are left out, the others are still applied so that every bad row gets reported;
    # any error rolls the whole job back
    st = t.store
    applied = 0
    if spec is None:
        res = RESOURCES[res_name]
        table = st[res_name]
        for n, action, body, cvals in parsed:
            sp = st.savepoint()
            try:
                for k in table.bkey:
                    if body.get(k) is None and k not in ("Sub Item Number",):
                        raise ApiError(400, "Missing required field: %s" % k, res.prefix + ".MissingField")
                key = table.key_of(body)
                existing = table.by_key(key)
                if action == "DELETE":
                    if existing is None:
                        raise ApiError(400, "%s %s not found." % (res.label, key if not isinstance(key, tuple)
                                                                   else " / ".join(str(x) for x in key if x)),
                                       res.prefix + ".NotFound")
                    R.delete_record(t, res_name, existing)
                else:
                    if action == "ADD" and existing is not None:
                        R.check_unique(t, res_name, dict(body, id=None))
                    if action == "UPDATE" and existing is None:
                        raise ApiError(400, "%s %s not found." % (res.label, key), res.prefix + ".NotFound")
                    body.pop("id", None)
                    if existing is None:
                        rec = R.master_create(t, res, body, user)
                    else:
                        rec = R.master_update(t, res, existing, body, user)
                    _set_custom(t, res_name, rec, cvals)
                applied += 1
            except ApiError as exc:
                st.rollback_to(sp)
                _row_error(errors, n, exc)
        errors.sort(key=lambda e: e["row"])
        return applied, errors
    # documents: rows grouped by the document number, in order of first appearance
    groups = {}
    for n, action, body, cvals in parsed:
        num = body.get(spec.number)
        groups.setdefault(num, []).append((n, action, body, cvals))
    table = st[res_name]
    hkeys = {k for k, _, _, _ in spec.header_fields} | {r.field for r in spec.header_refs}
    for num, group in groups.items():
        rownums = [g[0] for g in group]
        sp = st.savepoint()
        try:
            if num is None:
                raise ApiError(400, "Missing required field: %s" % spec.number, RESOURCES[res_name].prefix + ".MissingField")
            acts = {g[1] for g in group}
            if len(acts) > 1:
                raise ApiError(400, "Rows of %s use different actions." % num, "Job.InvalidValue")
            action = group[0][1]
            existing = table.by_key(num)
            if action == "DELETE":
                if existing is None:
                    raise R.not_found_number(res_name, num)
                R.delete_record(t, res_name, existing)
                applied += len(group)
                continue
            if action == "ADD" and existing is not None:
                raise ApiError(400, "%s %s already exists." % (RESOURCES[res_name].label, num),
                               RESOURCES[res_name].prefix + ".AlreadyExists")
            if action == "UPDATE" and existing is None:
                raise R.not_found_number(res_name, num)
            if existing is not None:
                doc = R.doc_body_of(t, spec, existing)
                old_lines = doc["details"]
            else:
                doc, old_lines = {}, []
            for k in hkeys:
                for _, _, body, _ in group:
                    if body.get(k) is not None:
                        doc[k] = body[k]
                        break
            details = []
            for _, _, body, _ in group:
                lb = None
                lid = body.get("id")
                if lid is not None:
                    lb = next((dict(ol) for ol in old_lines if ol["id"] == lid), None)
                    if lb is None:
                        raise ApiError(400, "%s #%s not found." % (spec.line_label, lid), spec.line_prefix + ".NotFound")
                elif spec.dup_key:
                    key = tuple(body.get(k) for k in spec.dup_key)
                    lb = next((dict(ol) for ol in old_lines if tuple(ol.get(k) for k in spec.dup_key) == key
                               and ol["id"] not in {d.get("id") for d in details}), None)
                lb = lb or {"id": None}
                for k, v in body.items():
                    if k not in hkeys or k in ("Warehouse Number",):
                        lb[k] = v
                lb["id"] = lb.get("id")
                details.append(lb)
            doc["details"] = details
            if existing is None:
                rec = R.doc_create(t, spec, doc)
            else:
                rec = R.doc_update(t, spec, existing, doc)
            cvals = {}
            for _, _, _, cv in group:
                for k, v in cv.items():
                    if custom[k][0] == res_name:
                        cvals.setdefault(k, v)
            _set_custom(t, res_name, rec, cvals)
            # new lines got ascending ids in file order; kept lines keep theirs
            kept = {d["id"] for d in details if d.get("id") is not None}
            fresh = iter(sorted(ln["id"] for ln in st[spec.lines].lines_of(rec["id"]) if ln["id"] not in kept))
            for (_, _, _, cv), d in zip(group, details):
                lid = d["id"] if d.get("id") is not None else next(fresh, None)
                line_vals = {k: v for k, v in cv.items() if custom[k][0] == spec.lines}
                if lid is not None and line_vals:
                    _set_custom(t, spec.lines, st[spec.lines].get(lid), line_vals)
            applied += len(group)
        except ApiError as exc:
            st.rollback_to(sp)
            _row_error(errors, rownums[0], exc, rownums)
    errors.sort(key=lambda e: e["row"])
    return applied, errors


def _set_custom(t, tname: str, rec: dict, values: dict) -> None:
    if not values:
        return
    cur = t.store[tname].get(rec["id"])
    new = dict(cur)
    new.update(values)
    if new != cur:
        t.store[tname].replace(new)


# ------------------------------------------------------------------------------------------------------------
# Runner
# ------------------------------------------------------------------------------------------------------------
class JobRunner:
    def __init__(self, t):
        self.t = t
        self.lock = threading.Lock()
        self.jobs: dict = {}
        self.queues: dict = {}
        self.active: set = set()
        # a job stays "running" at least this long, so a second upload of the same trigger is seen queued
        self.min_seconds = float(os.environ.get("KNOSC_SIM_JOB_SECONDS", "0.3"))

    @property
    def dir(self) -> str:
        return os.path.join(self.t.data_dir, "jobs")

    def _file_dir(self, trigger: str) -> str:
        d = os.path.join(self.dir, trigger)
        os.makedirs(d, exist_ok=True)
        return d

    def submit(self, trigger: str, filename: Optional[str], data: Optional[bytes], ctype: Optional[str], user) -> dict:
        kind = "run" if data is None else "upload"
        job_id = "%s-%s-%s" % (trigger, kind, secrets.token_hex(4))
        path = None
        if data is not None:
            ext = ".xlsx" if (filename or "").lower().endswith(".xlsx") or data[:4] == b"PK\x03\x04" else ".csv"
            d = self._file_dir(trigger)
            path = os.path.join(d, job_id + ext)
            with open(path, "wb") as fh:
                fh.write(data)
            ctype = XLSX_TYPE if ext == ".xlsx" else CSV_TYPE
            with open(os.path.join(d, "last.json"), "w", encoding="utf-8") as fh:
                json.dump({"path": path, "filename": os.path.basename(filename or "upload" + ext),
                           "content_type": ctype}, fh)
        job = {"trigger": trigger, "job_id": job_id, "status": "queued", "rows_processed": 0, "errors": [],
               "completed_at": None, "_path": path, "_filename": filename or "", "_user": user}
        with self.lock:
            self.jobs[job_id] = job
            self.queues.setdefault(trigger, deque()).append(job)
            if trigger not in self.active:
                self.active.add(trigger)
                threading.Thread(target=self._worker, args=(trigger,), name="job-" + trigger, daemon=True).start()
        return job

    def public(self, job: dict) -> dict:
        with self.lock:
            return {k: (list(v) if isinstance(v, list) else v) for k, v in job.items() if not k.startswith("_")}

    def _worker(self, trigger: str) -> None:
        while True:
            with self.lock:
                q = self.queues.get(trigger)
                if not q:
                    self.active.discard(trigger)
                    return
                job = q.popleft()
                job["status"] = "running"
            started = time.monotonic()
            try:
                applied, errors = self._process(job)
            except ApiError as exc:
                applied, errors = 0, [{"row": 0, "message": exc.message}]
            except Exception as exc:  # a broken file must fail its job, never the worker
                applied, errors = 0, [{"row": 0, "message": "Cannot process the file: %s" % exc}]
            left = self.min_seconds - (time.monotonic() - started)
            if left > 0:
                time.sleep(left)
            with self.lock:
                job["rows_processed"] = applied
                job["errors"] = errors
                job["status"] = "failed" if errors else "completed"
                job["completed_at"] = now_iso()

    def _process(self, job: dict) -> tuple[int, list]:
        t = self.t
        trigger = job["trigger"]
        if JOB_TRIGGERS[trigger][0] is None:
            from sim.analytics import planning_rows
            with t.lock:
                return len(planning_rows(t, None)), []
        with open(job["_path"], "rb") as fh:
            data = fh.read()
        header, rows = read_table(data, job["_filename"] or job["_path"])
        with t.lock:
            t.store.begin()
            try:
                applied, errors = apply_file(t, trigger, header, rows, job["_user"])
            except BaseException:
                t.store.rollback()
                raise
            if errors:
                t.store.rollback()
                return 0, errors
            t.store.commit()
            return applied, errors

    def last_file(self, trigger: str) -> Optional[dict]:
        if self.t._data_dir is None:
            return None
        p = os.path.join(self.dir, trigger, "last.json")
        try:
            with open(p, encoding="utf-8") as fh:
                info = json.load(fh)
            with open(info["path"], "rb") as fh:
                info["data"] = fh.read()
            return info
        except (OSError, ValueError, KeyError):
            return None


# ------------------------------------------------------------------------------------------------------------
# Routes
# ------------------------------------------------------------------------------------------------------------
def job_route(t, req, name: str, rest: list) -> Response:
    runner = t.jobs
    if not rest:
        if req.method != "GET":
            raise route_not_found()
        raw = req.query.get("jobs")
        if not raw:
            raise ApiError(400, "Missing required parameter: jobs", "JSON.Invalid")
        wanted = parse_json_param(raw)
        if not isinstance(wanted, list) or not all(isinstance(w, dict) and isinstance(w.get("job_id"), str)
                                                   for w in wanted):
            raise ApiError(400, "'jobs' must be a JSON array of {\"trigger\", \"job_id\"}.", "JSON.Invalid")
        out = []
        for w in wanted:
            job = runner.jobs.get(w["job_id"])
            if job is None or (w.get("trigger") is not None and w.get("trigger") != job["trigger"]):
                raise ApiError(400, "Job %s not found." % w["job_id"], "Job.NotFound")
            t.require(req.user, JOB_TRIGGERS[job["trigger"]][1], "View")
            out.append(runner.public(job))
        return Response(200, {"jobs": out})
    if len(rest) != 1:
        raise route_not_found()
    trigger = rest[0]
    if trigger not in JOB_TRIGGERS:
        raise ApiError(400, "Unknown job trigger '%s'." % trigger, "Job.UnknownTrigger")
    res_name, module = JOB_TRIGGERS[trigger]
    if req.method == "GET":
        t.require(req.user, module, "View")
        info = runner.last_file(trigger)
        if info is None:
            raise ApiError(400, "No file has been uploaded for %s." % trigger, "Job.NotFound")
        return Response(200, info["data"], content_type=info["content_type"],
                        headers={"Content-Disposition": 'attachment; filename="%s"' % info["filename"]})
    if req.method != "POST":
        raise route_not_found()
    t.require(req.user, module, "Edit")
    if res_name is None:
        job = runner.submit(trigger, None, None, None, req.user)
        return Response(200, {"message": "Job started.", "job_id": job["job_id"], "status": "queued"})
    part = parse_multipart(req)
    if part is None:
        raise ApiError(400, "Expected multipart/form-data with a 'file' field.", "Job.MissingFile")
    filename, data, ctype = part
    if not data:
        raise ApiError(400, "The uploaded file is empty.", "Job.MissingFile")
    job = runner.submit(trigger, filename, data, ctype, req.user)
    return Response(200, {"message": "File uploaded. Processing started.", "job_id": job["job_id"], "status": "queued"})


