"""Route table of Tenant.dispatch: first path segment after /api/ -> handler(tenant, req, name, rest)."""

from __future__ import annotations

from sim import analytics as A
from sim import extras as X
from sim import people as P
from sim import procurement as PR
from sim.catalog import RESOURCES
from sim.export import export_data
from sim.jobs import job_route


def _resource(t, req, name, rest):
    from sim.tenant import handle_resource
    return handle_resource(t, req, name, rest)


def _lines(t, req, name, rest):
    from sim.tenant import handle_lines
    return handle_lines(t, req, name, rest)


ROUTES = {}
for _name, _res in RESOURCES.items():
    if _res.kind in ("master", "doc", "user", "ticket", "role"):
        ROUTES[_name] = _resource
for _name in ("purchase-order-details", "sales-order-details", "manufacturing-order-details", "forecast-details"):
    ROUTES[_name] = _lines

ROUTES.update({
    "issue-tracker-notes": P.handle_notes,
    "purchase-order-details-move-lines": PR.move_lines,
    "purchase-order-details-accept-suggested-orders": PR.accept_suggested,
    "inventory-item": A.inventory_item,
    "sales-prioritized-item-inventory": A.sales_prioritized,
    "external-item-master-details": A.external_item_details,
    "supplier-net-allocation": A.net_allocation,
    "supplier-net-allocation-table": A.net_allocation_table,
    "forecast-over-time": A.forecast_over_time,
    "delayed-shipments": A.delayed_shipments,
    "navigation-bar": A.navigation_bar,
    "auto-complete": A.auto_complete,
    "validate-privileges": X.validate_privileges,
    "privilege": X.privilege,
    "system-settings": X.system_settings,
    "user-settings": X.user_settings,
    "user-notification-settings": X.notification_settings,
    "views": X.views,
    "views-shared": X.views,
    "custom-columns": X.custom_columns,
    "templates": X.templates,
    "job": job_route,
    "export-data": export_data,
})
for _name in A.ITEM_HELPERS:
    ROUTES[_name] = A.item_helper
for _name in A.SCENARIO_SOURCES:
    ROUTES[_name] = A.scenario_projection


def prefix_handler(segment: str):
    if segment.startswith("dashboard-"):
        return A.dashboard
    return None
