"""POST /api/export-data: a real XLSX of a named view with list semantics (API-NOTES §15.2, CONTRACT §6)."""

from __future__ import annotations

import io

from sim import records as R
from sim.catalog import RESOURCES
from sim.common import ApiError, json_body, missing, route_not_found
from sim.http_types import Response
from sim.lists import parse_export, select_rows

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# view name -> (table name or "@computed", privilege module)
VIEWS = {
    "purchase_order_list": ("purchase-order", "Procurement"),
    "purchase_order_details": ("purchase-order-details", "Procurement"),
    "purchase_order_item": ("purchase-order-details", "Procurement"),
    "sales_order_list": ("sales-order", "Demand"),
    "sales_order_details": ("sales-order-details", "Demand"),
    "sales_order_item": ("sales-order-details", "Demand"),
    "manufacturing_order_list": ("manufacturing-order", "Manufacturing"),
    "manufacturing_order_details": ("manufacturing-order-details", "Manufacturing"),
    "manufacturing_order_item": ("manufacturing-order-details", "Manufacturing"),
    "forecast_list": ("forecast", "Forecast"),
    "forecast_details": ("forecast-details", "Forecast"),
    "forecast_item": ("forecast-details", "Forecast"),
    "forecast_over_time": ("@forecast_over_time", "Forecast Over Time"),
    "forecast_vs_sales": ("@forecast_over_time", "Forecast"),
    "inventory_list": ("inventory", "Inventory"),
    "inventory_item": ("inventory", "Inventory"),
    "inventory_planning": ("@planning", "Inventory Planning"),
    "inventory_analysis": ("@planning", "Inventory"),
    "item_master": ("item-master", "Item Master"),
    "sub_item_master": ("sub-item-master", "Item Master"),
    "customer_master": ("customer-master", "Customer Master"),
    "ship_to_master": ("ship-to-master", "Customer Master"),
    "supplier_master": ("supplier-master", "Supplier Master"),
    "ship_from_master": ("ship-from-master", "Supplier Master"),
    "warehouse_master": ("warehouse-master", "Warehouse Master"),
    "unit_master": ("unit-master", "Unit Master"),
    "external_item_master": ("external-item-master", "External Item Master"),
    "bill_of_materials": ("bill-of-materials", "Bill of Materials"),
    "asn_list": ("asn", "ASN"),
    "supplier_allocation": ("supplier-allocation", "Supplier Allocation"),
    "issue_tracker_tickets": ("issue-tracker-tickets", "Issue Tracker"),
    "scenario_analysis": ("scenario-analysis", "Scenarios"),
    "user_list": ("user", "Users"),
    "log_list": ("@log", "Users"),
    "dashboard_statistics": ("@statistics", "Dashboard"),
    "dashboard_revenue_by_customer": ("@revenue_by_customer", "Revenue Analytics"),
    "dashboard_spend_by_supplier": ("@spend_by_supplier", "Spend Analytics"),
}


# columns of computed views that may have no rows at all
EMPTY_COLUMNS = {"@log": ("id", "Timestamp", "User Email", "Method", "Path", "Status")}


def _computed(t, source: str, user) -> tuple[list, tuple]:
    from sim import analytics as A
    if source == "@forecast_over_time":
        return A.forecast_over_time_rows(t, user), ("Period", "Ascending")
    if source == "@planning":
        return A.planning_rows(t, user), ("Item Number", "Ascending")
    if source == "@statistics":
        return [{"Metric": k, "Value": v} for k, v in A.dash_statistics_data(t, user).items()], (None, "Ascending")
    if source == "@revenue_by_customer":
        return A.revenue_by_customer_rows(t, user), ("Total Revenue", "Descending")
    if source == "@spend_by_supplier":
        return A.spend_by_supplier_rows(t, user), ("Total Spend", "Descending")
    if source == "@log":
        return [dict(r) for r in t.write_log], ("id", "Ascending")
    raise ApiError(400, "Unknown view.", "ExportData.UnknownView")


def _columns(rows: list, base: list) -> list:
    cols = list(base)
    seen = set(cols)
    for r in rows:
        for k, v in r.items():
            if k not in seen and not isinstance(v, (dict, list)):
                seen.add(k)
                cols.append(k)
    return cols


def collect(t, req, body: dict) -> tuple[list, list]:
    """Column keys and row values of an export (runs under the tenant lock)."""
    view = body.get("view_name")
    if view is None:
        raise missing("view_name", "ExportData")
    if not isinstance(view, str) or view not in VIEWS:
        raise ApiError(400, "Unknown view_name %r." % (view,), "ExportData.UnknownView")
    source, module = VIEWS[view]
    t.require(req.user, module, "View")
    gf = t.granular_filters(req.user)
    if source.startswith("@"):
        rows, default_sort = _computed(t, source, req.user)
        p = parse_export(body, default_sort)
        if p.sort_key is None:
            p.sort_key = "Metric"
            page, _ = select_rows(rows, p, t.wh_status(), gf)
        else:
            page, _ = select_rows(rows, p, t.wh_status(), gf)
        base = list(rows[0].keys()) if rows else list(EMPTY_COLUMNS.get(source, ()))
        cols = _columns(page, base)
    else:
        res = RESOURCES[source]
        p = parse_export(body, res.default_sort)
        sel = t.selection(source, p, gf)
        page = [R.row_of(t, source, r) for r in sel[p.offset:p.offset + p.limit]]
        base = [k for k in res.keys] + list(t.custom_defaults(source))
        cols = _columns(page, base)
    return cols, [[r.get(c) for c in cols] for r in page]


def export_data(t, req, name: str, rest: list) -> Response:
    if rest or req.method != "POST":
        raise route_not_found()
    body = json_body(req)
    with t.lock:
        cols, values = collect(t, req, body)
    # the workbook is built outside the lock: big exports must not stall other requests
    from openpyxl import Workbook
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("export")
    ws.append(cols)
    for row in values:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return Response(200, buf.getvalue(), content_type=XLSX_TYPE,
                    headers={"Content-Disposition": 'attachment; filename="export.xlsx"'})


export_data.self_locking = True
