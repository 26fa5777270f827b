"""What every Knosc resource looks like: keys, headers, business keys, privilege module, write rules.

Everything here is data; store.py, lists.py and records.py interpret it. Key spellings follow API-NOTES
(spaces and all); where the documentation is silent the choices follow CONTRACT.md and the same style.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

MODULES = [
    "Procurement", "Demand", "Manufacturing", "Forecast", "Forecast Over Time", "Inventory",
    "Inventory Planning", "Item Master", "Supplier Master", "Customer Master", "Warehouse Master",
    "Unit Master", "External Item Master", "Bill of Materials", "ASN", "Supplier Allocation", "Issue Tracker",
    "Scenarios", "Users", "Custom Columns", "General Settings", "Integrations Settings", "Dashboard",
    "Sales Analytics", "Procurement Analytics", "Revenue Analytics", "Spend Analytics",
]

MODULE_DESCRIPTIONS = {
    "Procurement": "Purchase order management", "Demand": "Sales order visibility",
    "Manufacturing": "Manufacturing order management", "Forecast": "Forecast management",
    "Forecast Over Time": "Forecast accuracy over time", "Inventory": "Inventory visibility",
    "Inventory Planning": "Inventory planning", "Item Master": "Item and sub-item master data",
    "Supplier Master": "Supplier and ship-from master data", "Customer Master": "Customer and ship-to master data",
    "Warehouse Master": "Warehouse master data", "Unit Master": "Unit master data",
    "External Item Master": "External item mappings", "Bill of Materials": "Bills of materials",
    "ASN": "Advanced shipment notices", "Supplier Allocation": "Supplier allocation",
    "Issue Tracker": "Issue tracker tickets", "Scenarios": "Scenario analysis", "Users": "Users and roles",
    "Custom Columns": "Custom column definitions", "General Settings": "General settings",
    "Integrations Settings": "Integration settings", "Dashboard": "Dashboards",
    "Sales Analytics": "Sales analytics", "Procurement Analytics": "Procurement analytics",
    "Revenue Analytics": "Revenue analytics", "Spend Analytics": "Spend analytics",
}

WAREHOUSE_STATUS = "Warehouse Status"   # the virtual filter column of CONTRACT §2


def H(key: str, fmt: str = "string", alias: Optional[str] = None) -> dict:
    """A list header; every documented header is filterable on its own key."""
    h = {"key": key, "format": fmt}
    if alias:
        h["alias"] = alias
    h["filters"] = [{"category": key, "alias": alias or key}]
    return h


@dataclasses.dataclass
class Ref:
    """A reference written by business number and stored as number + id (+ copied display fields)."""
    field: str                       # key in the body and the record, e.g. "Supplier Number"
    target: str                      # table of the referenced record
    id_field: Optional[str]          # where the referenced id is stored, e.g. "Supplier Id"
    copy: dict                       # record key -> key of the referenced record (denormalised names)
    required: bool = False
    target_key: Optional[str] = None  # key of the referenced record holding the number (default: field)
    belongs: Optional[tuple] = None   # (key in referenced record, key in this record) that must be equal

    @property
    def tkey(self) -> str:
        return self.target_key or self.field


@dataclasses.dataclass
class Res:
    name: str                        # route name after /api/
    module: str                      # privilege module
    prefix: str                      # error code prefix, e.g. "ItemMaster"
    label: str                       # name used in messages, e.g. "Item"
    keys: list                       # record keys in display order
    headers: list
    default_sort: tuple = ("id", "Ascending")
    bkey: tuple = ()                 # unique business key
    number: Optional[str] = None     # the business number shown in messages
    kind: str = "master"             # master | doc | lines | ticket | user | role | note
    fields: list = dataclasses.field(default_factory=list)   # writable (key, type, required, default)
    refs: list = dataclasses.field(default_factory=list)
    custom_table: Optional[str] = None
    parent_field: Optional[str] = None   # lines: key holding the parent id
    mutable_keys: tuple = ()        # keys a background writer changes (mutate)


# ----------------------------------------------------------------------------------------------------------
# Master data
# ----------------------------------------------------------------------------------------------------------
ACTIVE = ("Active", "Inactive")
ITEM_TYPES = ("Finished Good", "Component", "Raw Material")

ITEM_REF = Ref("Item Number", "item-master", "Item Id", {"Item Description": "Item Description"}, True)
ITEM_REF_PLAIN = Ref("Item Number", "item-master", "Item Id", {}, True)
SUB_REF = Ref("Sub Item Number", "sub-item-master", "Sub Item Id", {}, False, belongs=("Item Id", "Item Id"))
WH_REF = Ref("Warehouse Number", "warehouse-master", "Warehouse Id", {"Warehouse Name": "Warehouse Name"}, True)
SUP_REF = Ref("Supplier Number", "supplier-master", "Supplier Id", {"Supplier Name": "Supplier Name"}, True)
SUP_REF_PLAIN = Ref("Supplier Number", "supplier-master", "Supplier Id", {}, True)
CUST_REF = Ref("Customer Number", "customer-master", "Customer Id", {"Customer Name": "Customer Name"}, True)
CUST_REF_PLAIN = Ref("Customer Number", "customer-master", "Customer Id", {}, True)

RESOURCES: dict[str, Res] = {}


def _add(res: Res) -> Res:
    RESOURCES[res.name] = res
    return res


_add(Res(
    "item-master", "Item Master", "ItemMaster", "Item",
    ["id", "Item Number", "Item Description", "Item Type", "Item Unit", "Item Status", "Item Servicenow Id",
     "Item Weight", "Item Weight Unit"],
    [H("Item Number", "string-link", "Item #"), H("Item Description", alias="Description"),
     H("Item Type", alias="Type"), H("Item Unit", alias="Unit"), H("Item Status", alias="Status"),
     H("Item Weight", "number", "Weight"), H("Item Weight Unit", alias="Weight Unit")],
    bkey=("Item Number",), number="Item Number",
    fields=[("Item Number", "str", True, None), ("Item Description", "str?", False, None),
            ("Item Type", ITEM_TYPES + (None,), False, "Finished Good"), ("Item Status", ACTIVE, False, "Active"),
            ("Item Servicenow Id", "str?", False, None), ("Item Weight", "num?", False, None),
            ("Item Weight Unit", "str?", False, None)],
    refs=[Ref("Item Unit", "unit-master", None, {}, False, target_key="Unit Code")],
    custom_table="ItemMaster", mutable_keys=("Item Description", "Item Status", "Item Weight")))

_add(Res(
    "sub-item-master", "Item Master", "SubItemMaster", "Sub Item",
    ["id", "Sub Item Number", "Sub Item Description", "Sub Item Status", "Item Id", "Item Number",
     "Sub Item Servicenow Id"],
    [H("Sub Item Number", "string-link", "Sub Item #"), H("Sub Item Description", alias="Description"),
     H("Item Number", "string-link", "Item #"), H("Sub Item Status", alias="Status")],
    bkey=("Sub Item Number",), number="Sub Item Number",
    fields=[("Sub Item Number", "str", True, None), ("Sub Item Description", "str?", False, None),
            ("Sub Item Status", ACTIVE, False, "Active"), ("Sub Item Servicenow Id", "str?", False, None)],
    refs=[ITEM_REF_PLAIN], mutable_keys=("Sub Item Description", "Sub Item Status")))

_add(Res(
    "customer-master", "Customer Master", "CustomerMaster", "Customer",
    ["id", "Customer Number", "Customer Name", "Customer Email", "Customer Phone", "Customer Status",
     "Customer Servicenow Id"],
    [H("Customer Number", "string-link", "Customer #"), H("Customer Name", alias="Name"),
     H("Customer Email", alias="Email"), H("Customer Phone", alias="Phone"), H("Customer Status", alias="Status")],
    bkey=("Customer Number",), number="Customer Number",
    fields=[("Customer Number", "str", True, None), ("Customer Name", "str", True, None),
            ("Customer Email", "str?", False, None), ("Customer Phone", "str?", False, None),
            ("Customer Status", ACTIVE, False, "Active"), ("Customer Servicenow Id", "str?", False, None)],
    mutable_keys=("Customer Name", "Customer Phone", "Customer Email")))

_add(Res(
    "ship-to-master", "Customer Master", "ShipToMaster", "Ship To",
    ["id", "Ship To Number", "Ship To Name", "Ship To Address", "Ship To Status", "Customer Id",
     "Customer Number", "Ship To Servicenow Id"],
    [H("Ship To Number", "string-link", "Ship To #"), H("Ship To Name", alias="Name"),
     H("Ship To Address", alias="Address"), H("Customer Number", "string-link", "Customer #"),
     H("Ship To Status", alias="Status")],
    bkey=("Ship To Number",), number="Ship To Number",
    fields=[("Ship To Number", "str", True, None), ("Ship To Name", "str", True, None),
            ("Ship To Address", "str?", False, None), ("Ship To Status", ACTIVE, False, "Active"),
            ("Ship To Servicenow Id", "str?", False, None)],
    refs=[CUST_REF_PLAIN], mutable_keys=("Ship To Name", "Ship To Address")))

_add(Res(
    "supplier-master", "Supplier Master", "SupplierMaster", "Supplier",
    ["id", "Supplier Number", "Supplier Name", "Supplier Email", "Supplier Phone", "Supplier Status",
     "Supplier Servicenow Id"],
    [H("Supplier Number", "string-link", "Supplier #"), H("Supplier Name", alias="Name"),
     H("Supplier Email", alias="Email"), H("Supplier Phone", alias="Phone"), H("Supplier Status", alias="Status")],
    bkey=("Supplier Number",), number="Supplier Number",
    fields=[("Supplier Number", "str", True, None), ("Supplier Name", "str", True, None),
            ("Supplier Email", "str?", False, None), ("Supplier Phone", "str?", False, None),
            ("Supplier Status", ACTIVE, False, "Active"), ("Supplier Servicenow Id", "str?", False, None)],
    mutable_keys=("Supplier Name", "Supplier Phone", "Supplier Email")))

_add(Res(
    "ship-from-master", "Supplier Master", "ShipFromMaster", "Ship From",
    ["id", "Ship From Number", "Ship From Name", "Ship From Address", "Ship From Status", "Supplier Id",
     "Supplier Number", "Ship From Servicenow Id"],
    [H("Ship From Number", "string-link", "Ship From #"), H("Ship From Name", alias="Name"),
     H("Ship From Address", alias="Address"), H("Supplier Number", "string-link", "Supplier #"),
     H("Ship From Status", alias="Status")],
    bkey=("Ship From Number",), number="Ship From Number",
    fields=[("Ship From Number", "str", True, None), ("Ship From Name", "str", True, None),
            ("Ship From Address", "str?", False, None), ("Ship From Status", ACTIVE, False, "Active"),
            ("Ship From Servicenow Id", "str?", False, None)],
    refs=[SUP_REF_PLAIN], mutable_keys=("Ship From Name", "Ship From Address")))

_add(Res(
    "warehouse-master", "Warehouse Master", "WarehouseMaster", "Warehouse",
    ["id", "Warehouse Number", "Warehouse Name", "Warehouse Address", "Warehouse Status",
     "Warehouse Servicenow Id"],
    [H("Warehouse Number", "string-link", "Warehouse #"), H("Warehouse Name", alias="Name"),
     H("Warehouse Address", alias="Address"), H("Warehouse Status", alias="Status")],
    bkey=("Warehouse Number",), number="Warehouse Number",
    fields=[("Warehouse Number", "str", True, None), ("Warehouse Name", "str", True, None),
            ("Warehouse Address", "str?", False, None), ("Warehouse Status", ACTIVE, False, "Active"),
            ("Warehouse Servicenow Id", "str?", False, None)],
    mutable_keys=("Warehouse Name", "Warehouse Address")))

_add(Res(
    "unit-master", "Unit Master", "UnitMaster", "Unit",
    ["id", "Unit Code", "Unit Name", "Unit Type"],
    [H("Unit Code", "string-link", "Code"), H("Unit Name", alias="Name"), H("Unit Type", alias="Type")],
    bkey=("Unit Code",), number="Unit Code",
    fields=[("Unit Code", "str", True, None), ("Unit Name", "str?", False, None), ("Unit Type", "str?", False, None)],
    mutable_keys=("Unit Name",)))

_add(Res(
    "external-item-master", "External Item Master", "ExternalItemMaster", "External Item",
    ["id", "Item Id", "Item Number", "External Item Number", "External System", "External Description", "Status"],
    [H("External Item Number", "string-link", "External Item #"), H("External System", alias="System"),
     H("External Description", alias="Description"), H("Item Number", "string-link", "Item #"),
     H("Status")],
    bkey=("External Item Number", "External System"), number="External Item Number",
    fields=[("External Item Number", "str", True, None), ("External System", "str", True, None),
            ("External Description", "str?", False, None), ("Status", ACTIVE, False, "Active")],
    refs=[ITEM_REF_PLAIN], mutable_keys=("External Description", "Status")))

_add(Res(
    "inventory", "Inventory", "Inventory", "Inventory record",
    ["id", "Item Id", "Item Number", "Item Description", "Sub Item Id", "Sub Item Number", "Warehouse Id",
     "Warehouse Number", "Warehouse Name", "Inventory Quantity", "Inventory Date", "Inventory Unique Id"],
    [H("Item Number", "string-link", "Item #"), H("Item Description", alias="Description"),
     H("Sub Item Number", alias="Sub Item #"), H("Warehouse Number", "string-link", "Warehouse #"),
     H("Warehouse Name"), H("Inventory Quantity", "number", "Quantity"), H("Inventory Date", "date", "Date")],
    bkey=("Item Number", "Sub Item Number", "Warehouse Number"), number="Item Number",
    fields=[("Inventory Quantity", "num", True, None), ("Inventory Date", "date?", False, None),
            ("Inventory Unique Id", "str?", False, None)],
    refs=[ITEM_REF, SUB_REF, WH_REF], custom_table="Inventory",
    mutable_keys=("Inventory Quantity", "Inventory Date")))

_add(Res(
    "supplier-allocation", "Supplier Allocation", "SupplierAllocation", "Supplier Allocation",
    ["id", "Item Id", "Item Number", "Item Description", "Supplier Id", "Supplier Number", "Supplier Name",
     "Allocation Percentage", "Priority", "Status"],
    [H("Item Number", "string-link", "Item #"), H("Item Description", alias="Description"),
     H("Supplier Number", "string-link", "Supplier #"), H("Supplier Name"),
     H("Allocation Percentage", "number", "Allocation %"), H("Priority", "number"), H("Status")],
    bkey=("Item Number", "Supplier Number"), number="Item Number",
    fields=[("Allocation Percentage", "num", True, None), ("Priority", "int", False, 1),
            ("Status", ACTIVE, False, "Active")],
    refs=[ITEM_REF, SUP_REF], mutable_keys=("Priority", "Status")))

_add(Res(
    "scenario-analysis", "Scenarios", "ScenarioAnalysis", "Scenario",
    ["id", "Scenario Name", "Scenario Description", "Scenario Status", "Scenario Demand Change Percentage",
     "Created At", "Updated At", "Created By"],
    [H("Scenario Name", "string-link", "Name"), H("Scenario Description", alias="Description"),
     H("Scenario Status", alias="Status"), H("Created By"), H("Created At", "date"), H("Updated At", "date")],
    number="Scenario Name",
    fields=[("Scenario Name", "str", True, None), ("Scenario Description", "str?", False, None),
            ("Scenario Status", ("Active", "Draft", "Archived"), False, "Draft"),
            ("Scenario Demand Change Percentage", "num", False, 0)],
    mutable_keys=("Scenario Description", "Scenario Status")))

# ----------------------------------------------------------------------------------------------------------
# Documents with line sets: orders, forecasts, BOM, ASN
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DocSpec:
    name: str
    lines: str                       # table of the lines
    parent_field: str                # key in a line holding the parent id
    number: str                      # header business number
    line_prefix: str
    line_label: str
    line_id_alias: Optional[str]     # e.g. "PO Details Id" (mirrors the line id)
    header_fields: list
    header_refs: list
    line_fields: list
    line_refs: list
    header_keys: list
    line_keys: list
    line_copy: dict                  # line key -> header key copied down (e.g. "PO List Number")
    aggregates: list                 # (header key, None for count | line key to sum)
    single_wh: bool = False
    wh_from_header: bool = False     # MO/ASN: the warehouse is a header field copied to lines
    header_wh: bool = True           # header carries "Warehouse Number" of its lines
    dup_key: Optional[tuple] = None
    dup_code: str = "OrderDetails.DuplicateRows"
    dup_message: str = "Duplicate entries found in order details"
    date_rule: Optional[tuple] = None  # (line order date, header order date, line ship date, code)
    noitems_code: str = "OrderList.NoItems"
    noitems_message: str = "Purchase order must contain at least one item"
    status_pair: Optional[tuple] = None  # (header status key, line status key): line default = header's
    full_put: bool = True
    min_lines: int = 1


PO_STATUSES = ("Suggested", "Planned", "Open", "Shipped", "Partially Received", "Received", "Closed", "Cancelled")
SO_STATUSES = ("Open", "Partially Shipped", "Shipped", "Closed", "Cancelled")
MO_STATUSES = ("Planned", "Open", "In Progress", "Completed", "Closed", "Cancelled")
FC_STATUSES = ("Active", "Archived")

DOCS: dict[str, DocSpec] = {}

DOCS["purchase-order"] = DocSpec(
    "purchase-order", "purchase-order-details", "Purchase Order Id", "PO List Number",
    "PurchaseOrderDetails", "PO Detail", "PO Details Id",
    header_fields=[("PO List Number", "str", True, None), ("PO List Document Status", PO_STATUSES, True, None),
                   ("PO List Order Date", "date?", False, None), ("PO List Servicenow Id", "str?", False, None)],
    header_refs=[SUP_REF],
    line_fields=[("PO Details Price", "num?", False, None), ("PO Details Quantity", "num", True, None),
                 ("PO Details Document Status", PO_STATUSES, False, None), ("PO Details Tracking", "str?", False, None),
                 ("PO Details Order Date", "date?", False, None), ("PO Details Ship Date", "date?", False, None),
                 ("PO Details ETA Date", "date?", False, None), ("PO Details First Promise Date", "date?", False, None),
                 ("PO Details Request Date", "date?", False, None),
                 ("PO Details Actual Ship Date", "date?", False, None),
                 ("PO Details Actual Delivery Date", "date?", False, None),
                 ("PO Details Unique Id", "str?", False, None), ("PO Details Local", "any", False, None)],
    line_refs=[ITEM_REF, SUB_REF, WH_REF,
               Ref("Ship From Number", "ship-from-master", "Ship From Id", {"Ship From Name": "Ship From Name"},
                   False, belongs=("Supplier Id", "Supplier Id"))],
    header_keys=["id", "PO List Number", "PO List Order Date", "Supplier Id", "Supplier Number", "Supplier Name",
                 "PO Total Items", "PO List Quantity", "PO List Document Status", "PO List Servicenow Id",
                 "Warehouse Number"],
    line_keys=["id", "PO Details Id", "Purchase Order Id", "PO List Number", "Item Id", "Item Number",
               "Item Description", "Sub Item Id", "Sub Item Number", "Warehouse Id", "Warehouse Number",
               "Warehouse Name", "Ship From Id", "Ship From Number", "Ship From Name", "PO Details Price",
               "PO Details Quantity", "PO Details Document Status", "PO Details Tracking", "PO Details Order Date",
               "PO Details Ship Date", "PO Details ETA Date", "PO Details First Promise Date",
               "PO Details Request Date", "PO Details Actual Ship Date", "PO Details Actual Delivery Date",
               "PO Details Unique Id", "PO Details Local"],
    line_copy={"PO List Number": "PO List Number"},
    aggregates=[("PO Total Items", None), ("PO List Quantity", "PO Details Quantity")],
    single_wh=True, dup_key=("Item Number", "Sub Item Number"),
    date_rule=("PO Details Order Date", "PO List Order Date", "PO Details Ship Date",
               "PurchaseOrderDetails.OrderDateAfterShip"),
    status_pair=("PO List Document Status", "PO Details Document Status"))

DOCS["sales-order"] = DocSpec(
    "sales-order", "sales-order-details", "Sales Order Id", "SO List Number",
    "SalesOrderDetails", "SO Detail", "SO Details Id",
    header_fields=[("SO List Number", "str", True, None), ("SO List Document Status", SO_STATUSES, True, None),
                   ("SO List Order Date", "date?", False, None), ("SO List Servicenow Id", "str?", False, None)],
    header_refs=[CUST_REF, Ref("Ship To Number", "ship-to-master", "Ship To Id", {"Ship To Name": "Ship To Name"},
                               False, belongs=("Customer Id", "Customer Id"))],
    line_fields=[("SO Details Price", "num?", False, None), ("SO Details Quantity", "num", True, None),
                 ("SO Details Document Status", SO_STATUSES, False, None),
                 ("SO Details Order Date", "date?", False, None), ("SO Details Ship Date", "date?", False, None),
                 ("SO Details Request Date", "date?", False, None), ("SO Details Unique Id", "str?", False, None)],
    line_refs=[ITEM_REF, SUB_REF, WH_REF],
    header_keys=["id", "SO List Number", "SO List Order Date", "Customer Id", "Customer Number", "Customer Name",
                 "Ship To Id", "Ship To Number", "Ship To Name", "SO Total Items", "SO List Quantity",
                 "SO List Document Status", "SO List Servicenow Id", "Warehouse Number"],
    line_keys=["id", "SO Details Id", "Sales Order Id", "SO List Number", "Item Id", "Item Number",
               "Item Description", "Sub Item Id", "Sub Item Number", "Warehouse Id", "Warehouse Number",
               "Warehouse Name", "SO Details Price", "SO Details Quantity", "SO Details Document Status",
               "SO Details Order Date", "SO Details Ship Date", "SO Details Request Date", "SO Details Unique Id"],
    line_copy={"SO List Number": "SO List Number"},
    aggregates=[("SO Total Items", None), ("SO List Quantity", "SO Details Quantity")],
    single_wh=True, dup_key=("Item Number", "Sub Item Number"),
    date_rule=("SO Details Order Date", "SO List Order Date", "SO Details Ship Date",
               "SalesOrderDetails.OrderDateAfterShip"),
    noitems_message="Sales order must contain at least one item",
    status_pair=("SO List Document Status", "SO Details Document Status"))

DOCS["manufacturing-order"] = DocSpec(
    "manufacturing-order", "manufacturing-order-details", "Manufacturing Order Id", "MO List Number",
    "ManufacturingOrderDetails", "MO Detail", "MO Details Id",
    header_fields=[("MO List Number", "str", True, None), ("MO List Document Status", MO_STATUSES, True, None),
                   ("MO List Order Date", "date?", False, None)],
    header_refs=[WH_REF],
    line_fields=[("MO Details Quantity", "num", True, None), ("MO Details Order Date", "date?", False, None),
                 ("MO Details Start Date", "date?", False, None), ("MO Details End Date", "date?", False, None),
                 ("MO Details Document Status", MO_STATUSES, False, None),
                 ("MO Details Unique Id", "str?", False, None)],
    line_refs=[ITEM_REF, SUB_REF],
    header_keys=["id", "MO List Number", "MO List Order Date", "MO List Document Status", "Warehouse Id",
                 "Warehouse Number", "Warehouse Name", "MO Total Items", "MO List Quantity"],
    line_keys=["id", "MO Details Id", "Manufacturing Order Id", "MO List Number", "Item Id", "Item Number",
               "Item Description", "Sub Item Id", "Sub Item Number", "Warehouse Id", "Warehouse Number",
               "Warehouse Name", "MO Details Quantity", "MO Details Order Date", "MO Details Start Date",
               "MO Details End Date", "MO Details Document Status", "MO Details Unique Id"],
    line_copy={"MO List Number": "MO List Number", "Warehouse Id": "Warehouse Id",
               "Warehouse Number": "Warehouse Number", "Warehouse Name": "Warehouse Name"},
    aggregates=[("MO Total Items", None), ("MO List Quantity", "MO Details Quantity")],
    single_wh=True, wh_from_header=True, header_wh=False, dup_key=("Item Number", "Sub Item Number"),
    date_rule=("MO Details Order Date", "MO List Order Date", "MO Details Start Date",
               "ManufacturingOrderDetails.OrderDateAfterShip"),
    noitems_message="Manufacturing order must contain at least one item",
    status_pair=("MO List Document Status", "MO Details Document Status"))

DOCS["forecast"] = DocSpec(
    "forecast", "forecast-details", "Forecast Id", "Forecast List Number",
    "ForecastDetails", "Forecast Detail", "Forecast Details Id",
    header_fields=[("Forecast List Number", "str", True, None),
                   ("Forecast List Document Status", FC_STATUSES, False, "Active"),
                   ("Forecast List Date", "date?", False, None)],
    header_refs=[],
    line_fields=[("Forecast Details Quantity", "num", True, None), ("Forecast Details Date", "date", True, None),
                 ("Forecast Details Document Status", FC_STATUSES, False, None),
                 ("Forecast Details Unique Id", "str?", False, None)],
    line_refs=[ITEM_REF, WH_REF],
    header_keys=["id", "Forecast List Number", "Forecast List Date", "Forecast List Document Status",
                 "Warehouse Number", "Forecast Total Items", "Forecast List Quantity"],
    line_keys=["id", "Forecast Details Id", "Forecast Id", "Forecast List Number", "Item Id", "Item Number",
               "Item Description", "Warehouse Id", "Warehouse Number", "Warehouse Name",
               "Forecast Details Quantity", "Forecast Details Date", "Forecast Details Document Status",
               "Forecast Details Unique Id"],
    line_copy={"Forecast List Number": "Forecast List Number"},
    aggregates=[("Forecast Total Items", None), ("Forecast List Quantity", "Forecast Details Quantity")],
    single_wh=True, dup_key=("Item Number", "Forecast Details Date"),
    noitems_message="Forecast must contain at least one line",
    status_pair=("Forecast List Document Status", "Forecast Details Document Status"))

DOCS["bill-of-materials"] = DocSpec(
    "bill-of-materials", "bill-of-materials-details", "BOM Id", "BOM Number",
    "BillOfMaterialsDetails", "BOM Component", None,
    header_fields=[("BOM Number", "str", True, None), ("BOM Status", ACTIVE, False, "Active")],
    header_refs=[ITEM_REF],
    line_fields=[("Component Quantity", "num", True, None), ("Component Unit", "str?", False, None)],
    line_refs=[Ref("Component Item Number", "item-master", "Component Item Id",
                   {"Component Description": "Item Description"}, True, target_key="Item Number")],
    header_keys=["id", "BOM Number", "Item Id", "Item Number", "Item Description", "BOM Status",
                 "BOM Total Components"],
    line_keys=["id", "BOM Id", "BOM Number", "Component Item Id", "Component Item Number",
               "Component Description", "Component Quantity", "Component Unit"],
    line_copy={"BOM Number": "BOM Number"},
    aggregates=[("BOM Total Components", None)],
    header_wh=False, dup_key=("Component Item Number",), dup_code="BillOfMaterials.DuplicateRows",
    dup_message="Duplicate components found in bill of materials", noitems_code="BillOfMaterials.NoItems",
    noitems_message="Bill of materials must contain at least one component")

DOCS["asn"] = DocSpec(
    "asn", "asn-details", "ASN Id", "ASN Number",
    "ASNDetails", "ASN Detail", None,
    header_fields=[("ASN Number", "str", True, None), ("BOL", "str?", False, None), ("ETA", "date?", False, None),
                   ("Ship Date", "date?", False, None), ("ASN Status", ("Not Sent", "Sent"), False, "Not Sent")],
    header_refs=[SUP_REF, Ref("Ship From Number", "ship-from-master", "Ship From Id",
                              {"Ship From Name": "Ship From Name"}, True, belongs=("Supplier Id", "Supplier Id")),
                 WH_REF],
    line_fields=[("ASN Details Quantity", "num", True, None), ("ASN Details ETA", "date?", False, None),
                 ("ASN Details Ship Date", "date?", False, None)],
    line_refs=[ITEM_REF, SUB_REF,
               Ref("PO Details Id", "purchase-order-details", None,
                   {"Purchase Order Id": "Purchase Order Id", "PO List Number": "PO List Number"}, False,
                   target_key="id")],
    header_keys=["id", "ASN Number", "BOL", "ETA", "Ship Date", "Timestamp", "ASN Status", "Supplier Id",
                 "Supplier Number", "Supplier Name", "Ship From Id", "Ship From Number", "Ship From Name",
                 "Warehouse Id", "Warehouse Number", "Warehouse Name", "ASN Total Items", "ASN Total Quantity"],
    line_keys=["id", "ASN Id", "ASN Number", "Item Id", "Item Number", "Item Description", "Sub Item Id",
               "Sub Item Number", "ASN Details Quantity", "ASN Details ETA", "ASN Details Ship Date",
               "Purchase Order Id", "PO List Number", "PO Details Id"],
    line_copy={"ASN Number": "ASN Number"},
    aggregates=[("ASN Total Items", None), ("ASN Total Quantity", "ASN Details Quantity")],
    header_wh=False, noitems_code="ASN.NoItems", noitems_message="ASN must contain at least one line",
    full_put=False)

_DOC_RES = {
    "purchase-order": ("Procurement", "PurchaseOrderList", "PO", "PurchaseOrderList",
                       [H("PO List Number", "string-link", "PO #"), H("Supplier Name", "string-link"),
                        H("PO List Document Status", alias="Status"), H("PO List Order Date", "date", "Order Date"),
                        H("PO Total Items", "number", "Total Items"), H("PO List Quantity", "number", "Quantity")],
                       ("PO List Order Date", "Ascending")),
    "sales-order": ("Demand", "SalesOrderList", "SO", "SalesOrderList",
                    [H("SO List Number", "string-link", "SO #"), H("Customer Name", "string-link"),
                     H("Ship To Number", alias="Ship To #"), H("SO List Document Status", alias="Status"),
                     H("SO List Order Date", "date", "Order Date"), H("SO Total Items", "number", "Total Items"),
                     H("SO List Quantity", "number", "Quantity")],
                    ("SO List Order Date", "Ascending")),
    "manufacturing-order": ("Manufacturing", "ManufacturingOrderList", "MO", "ManufacturingOrderList",
                            [H("MO List Number", "string-link", "MO #"),
                             H("Warehouse Number", "string-link", "Warehouse #"),
                             H("MO List Document Status", alias="Status"),
                             H("MO List Order Date", "date", "Order Date"),
                             H("MO Total Items", "number", "Total Items"),
                             H("MO List Quantity", "number", "Quantity")],
                            ("MO List Order Date", "Ascending")),
    "forecast": ("Forecast", "ForecastList", "Forecast", "ForecastList",
                 [H("Forecast List Number", "string-link", "Forecast #"), H("Forecast List Date", "date", "Date"),
                  H("Forecast List Document Status", alias="Status"),
                  H("Warehouse Number", "string-link", "Warehouse #"),
                  H("Forecast Total Items", "number", "Total Items"),
                  H("Forecast List Quantity", "number", "Quantity")],
                 ("Forecast List Date", "Ascending")),
    "bill-of-materials": ("Bill of Materials", "BillOfMaterials", "BOM", None,
                          [H("BOM Number", "string-link", "BOM #"), H("Item Number", "string-link", "Item #"),
                           H("Item Description", alias="Description"), H("BOM Status", alias="Status"),
                           H("BOM Total Components", "number", "Components")],
                          ("id", "Ascending")),
    "asn": ("ASN", "ASN", "ASN", None,
            [H("ASN Number", "string-link", "ASN #"), H("Supplier Name"), H("Ship From Name"),
             H("Warehouse Number", "string-link", "Warehouse #"), H("BOL"), H("Ship Date", "date"),
             H("ETA", "date"), H("ASN Status", alias="Status"), H("Timestamp", "date")],
            ("id", "Ascending")),
}

_LINE_RES = {
    "purchase-order-details": ("PO", [H("PO List Number", "string-link", "PO #"),
                                      H("Item Number", "string-link", "Item #"), H("Item Description"),
                                      H("Warehouse Number", "string-link", "Warehouse #"),
                                      H("Ship From Number", alias="Ship From #"),
                                      H("PO Details Quantity", "number", "Quantity"),
                                      H("PO Details Price", "number", "Price"),
                                      H("PO Details Document Status", alias="Status"),
                                      H("PO Details Order Date", "date", "Order Date"),
                                      H("PO Details Ship Date", "date", "Ship Date"),
                                      H("PO Details ETA Date", "date", "ETA")], "PurchaseOrderDetails"),
    "sales-order-details": ("SO", [H("SO List Number", "string-link", "SO #"),
                                   H("Item Number", "string-link", "Item #"), H("Item Description"),
                                   H("Warehouse Number", "string-link", "Warehouse #"),
                                   H("SO Details Quantity", "number", "Quantity"),
                                   H("SO Details Price", "number", "Price"),
                                   H("SO Details Document Status", alias="Status"),
                                   H("SO Details Ship Date", "date", "Ship Date")], "SalesOrderDetails"),
    "manufacturing-order-details": ("MO", [H("MO List Number", "string-link", "MO #"),
                                           H("Item Number", "string-link", "Item #"), H("Item Description"),
                                           H("Warehouse Number", "string-link", "Warehouse #"),
                                           H("MO Details Quantity", "number", "Quantity"),
                                           H("MO Details Document Status", alias="Status"),
                                           H("MO Details Start Date", "date", "Start Date"),
                                           H("MO Details End Date", "date", "End Date")], None),
    "forecast-details": ("Forecast", [H("Forecast List Number", "string-link", "Forecast #"),
                                      H("Item Number", "string-link", "Item #"),
                                      H("Warehouse Number", "string-link", "Warehouse #"),
                                      H("Forecast Details Date", "date", "Date"),
                                      H("Forecast Details Quantity", "number", "Quantity"),
                                      H("Forecast Details Document Status", alias="Status")], None),
}

for _name, (_mod, _prefix, _label, _ctab, _headers, _sort) in _DOC_RES.items():
    _spec = DOCS[_name]
    _add(Res(_name, _mod, _prefix, _label, _spec.header_keys, _headers, _sort, bkey=(_spec.number,),
             number=_spec.number, kind="doc", custom_table=_ctab))

for _doc in DOCS.values():
    _parent = RESOURCES[_doc.name]
    if _doc.lines in _LINE_RES:
        _label, _headers, _ctab = _LINE_RES[_doc.lines]
        _hdrs = _headers
    else:
        _hdrs, _ctab = [], None
    _add(Res(_doc.lines, _parent.module, _doc.line_prefix, _doc.line_label, _doc.line_keys, _hdrs,
             kind="lines", custom_table=_ctab, parent_field=_doc.parent_field))

# ----------------------------------------------------------------------------------------------------------
# Tickets, notes, users, roles
# ----------------------------------------------------------------------------------------------------------
TICKET_STATUSES = ("Open", "In Progress", "Resolved", "Closed")
TICKET_PRIORITIES = ("Low", "Medium", "High", "Critical")
TICKET_CATEGORIES = ("Procurement", "Demand", "Inventory", "Manufacturing", "Master Data", "Other")

_add(Res(
    "issue-tracker-tickets", "Issue Tracker", "IssueTrackerTickets", "Ticket",
    ["id", "Title", "Description", "Status", "Priority", "Category", "Assignee Email", "Reporter Email",
     "Created At", "Updated At", "Due Date", "Linked PO Id", "Linked PO Number"],
    [H("id", "string-link", "Ticket #"), H("Title"), H("Status"), H("Priority"), H("Category"),
     H("Assignee Email", alias="Assignee"), H("Reporter Email", alias="Reporter"), H("Due Date", "date"),
     H("Created At", "date"), H("Updated At", "date"), H("Linked PO Number", alias="PO #")],
    kind="ticket",
    fields=[("Title", "str", True, None), ("Description", "str?", False, None),
            ("Status", TICKET_STATUSES, False, "Open"), ("Priority", TICKET_PRIORITIES, False, "Medium"),
            ("Category", "str?", False, None), ("Assignee Email", "str?", False, None),
            ("Due Date", "date?", False, None)],
    mutable_keys=("Status", "Priority")))

_add(Res(
    "issue-tracker-notes", "Issue Tracker", "IssueTrackerNotes", "Note",
    ["id", "Ticket Id", "Note", "Author Email", "Created At"],
    [H("Ticket Id"), H("Note"), H("Author Email"), H("Created At", "date")], kind="note"))

_add(Res(
    "issue-tracker-subscribers", "Issue Tracker", "IssueTrackerSubscribers", "Subscriber",
    ["id", "Ticket Id", "email"], [], kind="note"))

_add(Res(
    "user", "Users", "User", "User",
    ["id", "User Fullname", "Username", "User Email", "User Phone", "Role Id", "Role Name", "User Status",
     "2FA Enabled", "First Signin", "Password Expiration"],
    [H("User Fullname", "string-link", "Full Name"), H("Username"), H("User Email", alias="Email"),
     H("Role Name", alias="Role"), H("User Status", alias="Status"), H("2FA Enabled", "boolean", "2FA")],
    bkey=("Username",), number="Username", kind="user"))

_add(Res(
    "role", "Users", "Role", "Role",
    ["id", "Role Name", "Role Description", "Number of Privileges", "Has Granular Privileges"],
    [H("Role Name", "string-link", "Role"), H("Role Description", alias="Description"),
     H("Number of Privileges", "number", "Privileges"), H("Has Granular Privileges", "boolean", "Granular")],
    bkey=("Role Name",), number="Role Name", kind="role"))

# Resources of /_sim/mutate, /_sim/snapshot and the "created" statistics (lines belong to their parent).
SNAPSHOT_RESOURCES = [
    "purchase-order", "sales-order", "manufacturing-order", "forecast", "inventory", "item-master",
    "sub-item-master", "customer-master", "ship-to-master", "supplier-master", "ship-from-master",
    "warehouse-master", "unit-master", "external-item-master", "bill-of-materials", "asn", "supplier-allocation",
    "issue-tracker-tickets", "scenario-analysis", "user", "role",
]

# ----------------------------------------------------------------------------------------------------------
# Referential rules
# ----------------------------------------------------------------------------------------------------------
# Denormalised copies: when a record of the source table changes, records of the target table whose
# `match` key equals the source's `src` value get `copy` (target key -> source key) refreshed.
DENORM: dict[str, list] = {
    "item-master": [
        (t, "Item Id", "id", {"Item Number": "Item Number", "Item Description": "Item Description"})
        for t in ("purchase-order-details", "sales-order-details", "manufacturing-order-details",
                  "forecast-details", "inventory", "bill-of-materials", "asn-details", "supplier-allocation")
    ] + [
        ("sub-item-master", "Item Id", "id", {"Item Number": "Item Number"}),
        ("external-item-master", "Item Id", "id", {"Item Number": "Item Number"}),
        ("bill-of-materials-details", "Component Item Id", "id",
         {"Component Item Number": "Item Number", "Component Description": "Item Description"}),
    ],
    "sub-item-master": [
        (t, "Sub Item Id", "id", {"Sub Item Number": "Sub Item Number"})
        for t in ("purchase-order-details", "sales-order-details", "manufacturing-order-details", "inventory",
                  "asn-details")
    ],
    "supplier-master": [
        ("purchase-order", "Supplier Id", "id", {"Supplier Number": "Supplier Number", "Supplier Name": "Supplier Name"}),
        ("asn", "Supplier Id", "id", {"Supplier Number": "Supplier Number", "Supplier Name": "Supplier Name"}),
        ("supplier-allocation", "Supplier Id", "id",
         {"Supplier Number": "Supplier Number", "Supplier Name": "Supplier Name"}),
        ("ship-from-master", "Supplier Id", "id", {"Supplier Number": "Supplier Number"}),
    ],
    "ship-from-master": [
        ("purchase-order-details", "Ship From Id", "id",
         {"Ship From Number": "Ship From Number", "Ship From Name": "Ship From Name"}),
        ("asn", "Ship From Id", "id", {"Ship From Number": "Ship From Number", "Ship From Name": "Ship From Name"}),
    ],
    "customer-master": [
        ("sales-order", "Customer Id", "id", {"Customer Number": "Customer Number", "Customer Name": "Customer Name"}),
        ("ship-to-master", "Customer Id", "id", {"Customer Number": "Customer Number"}),
    ],
    "ship-to-master": [
        ("sales-order", "Ship To Id", "id", {"Ship To Number": "Ship To Number", "Ship To Name": "Ship To Name"}),
    ],
    "warehouse-master": [
        (t, "Warehouse Id", "id", {"Warehouse Number": "Warehouse Number", "Warehouse Name": "Warehouse Name"})
        for t in ("purchase-order-details", "sales-order-details", "manufacturing-order",
                  "manufacturing-order-details", "forecast-details", "inventory", "asn")
    ],
    "unit-master": [
        ("item-master", "Item Unit", "Unit Code", {"Item Unit": "Unit Code"}),
        ("bill-of-materials-details", "Component Unit", "Unit Code", {"Component Unit": "Unit Code"}),
    ],
    "purchase-order": [
        ("purchase-order-details", "Purchase Order Id", "id", {"PO List Number": "PO List Number"}),
        ("asn-details", "Purchase Order Id", "id", {"PO List Number": "PO List Number"}),
        ("issue-tracker-tickets", "Linked PO Id", "id", {"Linked PO Number": "PO List Number"}),
    ],
    "purchase-order-details": [
        ("asn-details", "PO Details Id", "id", {"Purchase Order Id": "Purchase Order Id",
                                                "PO List Number": "PO List Number"}),
    ],
    "sales-order": [("sales-order-details", "Sales Order Id", "id", {"SO List Number": "SO List Number"})],
    "manufacturing-order": [("manufacturing-order-details", "Manufacturing Order Id", "id",
                             {"MO List Number": "MO List Number"})],
    "forecast": [("forecast-details", "Forecast Id", "id", {"Forecast List Number": "Forecast List Number"})],
    "bill-of-materials": [("bill-of-materials-details", "BOM Id", "id", {"BOM Number": "BOM Number"})],
    "asn": [("asn-details", "ASN Id", "id", {"ASN Number": "ASN Number"})],
    "role": [("user", "Role Id", "id", {"Role Name": "Role Name"})],
}

# References that forbid a delete (<Entity>.StillInUse): (table, match key, source key).
BLOCKERS: dict[str, list] = {
    "item-master": [(t, "Item Id", "id") for t in (
        "purchase-order-details", "sales-order-details", "manufacturing-order-details", "forecast-details",
        "inventory", "bill-of-materials", "asn-details", "supplier-allocation", "sub-item-master",
        "external-item-master")] + [("bill-of-materials-details", "Component Item Id", "id")],
    "sub-item-master": [(t, "Sub Item Id", "id") for t in (
        "purchase-order-details", "sales-order-details", "manufacturing-order-details", "inventory", "asn-details")],
    "supplier-master": [("purchase-order", "Supplier Id", "id"), ("asn", "Supplier Id", "id"),
                        ("supplier-allocation", "Supplier Id", "id")],
    "ship-from-master": [("purchase-order-details", "Ship From Id", "id"), ("asn", "Ship From Id", "id")],
    "customer-master": [("sales-order", "Customer Id", "id")],
    "ship-to-master": [("sales-order", "Ship To Id", "id")],
    "warehouse-master": [(t, "Warehouse Id", "id") for t in (
        "purchase-order-details", "sales-order-details", "manufacturing-order", "forecast-details", "inventory",
        "asn")],
    "unit-master": [("item-master", "Item Unit", "Unit Code")],
    "purchase-order": [("asn-details", "Purchase Order Id", "id")],
    "purchase-order-details": [("asn-details", "PO Details Id", "id")],
    "role": [("user", "Role Id", "id")],
}

# Children deleted with their parent: (child table, key holding the parent's id).
CASCADES: dict[str, list] = {
    "customer-master": [("ship-to-master", "Customer Id")],
    "supplier-master": [("ship-from-master", "Supplier Id")],
    "issue-tracker-tickets": [("issue-tracker-notes", "Ticket Id"), ("issue-tracker-subscribers", "Ticket Id")],
}
for _doc in DOCS.values():
    CASCADES[_doc.name] = [(_doc.lines, _doc.parent_field)]

# Custom-column tables (API-NOTES §17.3) -> the table whose rows carry the values.
CUSTOM_TABLES = {
    "PurchaseOrderList": "purchase-order", "PurchaseOrderDetails": "purchase-order-details",
    "SalesOrderList": "sales-order", "SalesOrderDetails": "sales-order-details",
    "ManufacturingOrderList": "manufacturing-order", "ForecastList": "forecast", "Inventory": "inventory",
    "InventoryList": "inventory", "ItemMaster": "item-master",
}
CUSTOM_FORMATS = ("string", "number", "date", "boolean", "currency")

# Paths of GET /api/validate-privileges (API-NOTES §17.4).
VALIDATE_PATHS = {
    "/procurement": "Procurement", "/demand": "Demand", "/manufacturing": "Manufacturing", "/forecast": "Forecast",
    "/forecast-over-time": "Forecast Over Time", "/inventory": "Inventory",
    "/inventory-planning": "Inventory Planning", "/item-master": "Item Master",
    "/supplier-master": "Supplier Master", "/customer-master": "Customer Master",
    "/warehouse-master": "Warehouse Master", "/unit-master": "Unit Master",
    "/external-item-master": "External Item Master", "/bill-of-materials": "Bill of Materials", "/asn": "ASN",
    "/supplier-allocation": "Supplier Allocation", "/users": "Users", "/scenario-analysis": "Scenarios",
    "/issue-tracker": "Issue Tracker", "/settings": "General Settings", "/custom-columns": "Custom Columns",
    "/dashboard": "Dashboard",
}

# Job triggers (API-NOTES §15.1): trigger -> (resource, privilege module).
JOB_TRIGGERS = {
    "forecast": ("forecast", "Forecast"), "procurement": ("purchase-order", "Procurement"),
    "demand": ("sales-order", "Demand"), "manufacturing": ("manufacturing-order", "Manufacturing"),
    "inventory": ("inventory", "Inventory"), "bill-of-materials": ("bill-of-materials", "Bill of Materials"),
    "item-master": ("item-master", "Item Master"), "customer-master": ("customer-master", "Customer Master"),
    "supplier-master": ("supplier-master", "Supplier Master"),
    "warehouse-master": ("warehouse-master", "Warehouse Master"), "unit-master": ("unit-master", "Unit Master"),
    "external-item-master": ("external-item-master", "External Item Master"),
    "supplier-allocation": ("supplier-allocation", "Supplier Allocation"),
    "inventory-planning": (None, "Inventory Planning"),
}

# Line statuses that still count as open quantities in analytics.
OPEN_PO = frozenset(("Open", "Planned", "Shipped", "Partially Received"))
OPEN_SO = frozenset(("Open", "Partially Shipped"))
OPEN_MO = frozenset(("Planned", "Open", "In Progress"))
