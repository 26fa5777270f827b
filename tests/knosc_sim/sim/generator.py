"""Deterministic tenant generator: the same (seed, scale) always yields the same tenant.

Scale 1 is about 2,000 records (order lines included), scale 100 about 200,000. Records are written
straight into the tables (no journal, no validation) but follow every rule the write routes enforce:
references exist, one warehouse per order, no duplicate items per order, order date <= ship date <= ETA,
sub-items belong to their item, ship-froms to their supplier, ship-tos to their customer.
"""

from __future__ import annotations

import datetime as _dt
import random

from sim.catalog import MODULE_DESCRIPTIONS, MODULES
from sim.common import SIM_TODAY

_SPAN = 800
_DATES = [(SIM_TODAY + _dt.timedelta(days=d)).isoformat() for d in range(-_SPAN, _SPAN + 1)]


def day(offset: int) -> str:
    """The date `offset` days from the tenant's today."""
    return _DATES[offset + _SPAN]


UNITS = [("EA", "Each", "Count"), ("BOX", "Box", "Count"), ("SET", "Set", "Count"), ("PC", "Piece", "Count"),
         ("KG", "Kilogram", "Weight"), ("LB", "Pound", "Weight"), ("M", "Meter", "Length"), ("L", "Liter", "Volume")]

WAREHOUSES = [
    ("Main Distribution Center", "789 Logistics Ave, Chicago, IL"),
    ("East Coast DC", "12 Harbor Rd, Newark, NJ"),
    ("West Coast DC", "4500 Port Blvd, Oakland, CA"),
    ("Southeast Hub", "210 Peachtree Ind Blvd, Atlanta, GA"),
    ("Texas Fulfillment", "8800 Freeport Pkwy, Dallas, TX"),
    ("Mountain Depot", "77 Quarry St, Denver, CO"),
    ("Northwest Warehouse", "1500 Marginal Way, Seattle, WA"),
    ("Midwest Plant Store", "3 Foundry Ln, Columbus, OH"),
    ("Florida Cross-Dock", "640 Cargo Rd, Miami, FL"),
    ("Legacy Overflow (closed)", "1 Old Mill Rd, Gary, IN"),
]
INACTIVE_WAREHOUSE = "WH-10"

ADJ = ["Heavy-Duty", "Compact", "Precision", "Industrial", "Standard", "High-Flow", "Low-Profile", "Reinforced",
       "Modular", "Sealed", "Stainless", "Galvanized", "Insulated", "Flexible", "Threaded", "Anodized"]
NOUNS = {
    "Finished Good": ["Widget Assembly", "Pump Unit", "Control Panel", "Motor Drive", "Valve Assembly",
                      "Sensor Module", "Gearbox", "Conveyor Section", "Filter Housing", "Power Supply"],
    "Component": ["Bearing", "Bracket", "Gasket", "Circuit Board", "Cable Harness", "Fastener Kit", "Shaft",
                  "Seal Ring", "Impeller", "Relay"],
    "Raw Material": ["Steel Sheet", "Aluminum Bar", "Copper Wire", "Nylon Pellets", "Brass Rod", "Epoxy Resin",
                     "Rubber Compound", "Glass Fiber"],
}
UNIT_BY_TYPE = {"Finished Good": ("EA", "EA", "SET", "BOX"), "Component": ("EA", "PC", "PC", "BOX"),
                "Raw Material": ("KG", "KG", "LB", "M", "L")}
COLORS = ["Blue", "Red", "Black", "White", "Green", "Grey", "Yellow", "Orange"]
CO_A = ["Acme", "Global", "Summit", "Pioneer", "Apex", "Northern", "Coastal", "Vertex", "Keystone", "Atlas",
        "Beacon", "Cobalt", "Delta", "Evergreen", "Frontier", "Granite", "Harbor", "Ironwood", "Juniper", "Lakeside"]
CO_B = ["Components", "Industrial", "Parts", "Metals", "Plastics", "Electronics", "Supply", "Manufacturing",
        "Distributors", "Trading", "Logistics", "Materials"]
CO_C = ["Ltd.", "Inc.", "GmbH", "Co.", "LLC", "Corp."]
CITIES = [("Newark", "NJ"), ("Philadelphia", "PA"), ("Cleveland", "OH"), ("Houston", "TX"), ("Phoenix", "AZ"),
          ("Portland", "OR"), ("Nashville", "TN"), ("Milwaukee", "WI"), ("Charlotte", "NC"), ("Reno", "NV"),
          ("Boise", "ID"), ("Omaha", "NE"), ("Tulsa", "OK"), ("Richmond", "VA"), ("Detroit", "MI")]
STREETS = ["Industrial Blvd", "Commerce Dr", "Enterprise Way", "Market St", "Factory Rd", "Trade Center Pkwy",
           "Harbor Ave", "Mill St"]

FIRST = ["Jane", "John", "Maria", "Wei", "Amit", "Olga", "Luis", "Fatima", "Kenji", "Sara", "Tom", "Ines"]
LAST = ["Doe", "Smith", "Garcia", "Chen", "Patel", "Ivanova", "Lopez", "Khan", "Sato", "Berg", "Miller", "Costa"]

# Status mixes by order age: old orders are mostly done, recent ones mostly open, some run late.
PO_STATUS_OLD = ["Received"] * 60 + ["Closed"] * 20 + ["Cancelled"] * 5 + ["Open"] * 8 + ["Partially Received"] * 7
PO_STATUS_MID = (["Received"] * 30 + ["Shipped"] * 20 + ["Partially Received"] * 15 + ["Open"] * 30
                 + ["Cancelled"] * 5)
PO_STATUS_NEW = ["Open"] * 60 + ["Shipped"] * 15 + ["Planned"] * 20 + ["Cancelled"] * 5
SO_STATUS_OLD = ["Closed"] * 55 + ["Shipped"] * 30 + ["Cancelled"] * 5 + ["Open"] * 5 + ["Partially Shipped"] * 5
SO_STATUS_NEW = ["Open"] * 65 + ["Partially Shipped"] * 15 + ["Shipped"] * 15 + ["Cancelled"] * 5


def _po_status(od: int, r: float) -> str:
    mix = PO_STATUS_OLD if od < -60 else (PO_STATUS_MID if od < -15 else PO_STATUS_NEW)
    return mix[int(r * len(mix))]


def _so_status(od: int, r: float) -> str:
    mix = SO_STATUS_OLD if od < -45 else SO_STATUS_NEW
    return mix[int(r * len(mix))]
MO_STATUS = ["Planned"] * 20 + ["Open"] * 35 + ["In Progress"] * 25 + ["Completed"] * 20
QTYS = [10, 20, 25, 40, 50, 60, 75, 100, 120, 150, 200, 250, 300, 400, 500, 750, 1000]

# Roles: name, description, access for every module (None = per-module dict), granular filters
ROLES = [
    ("Administrator", "Full system access", "Edit", []),
    ("Service Account", "Integration account with full read/write access", "Edit", []),
    ("Viewer", "Read-only access to every module", "View", []),
    ("WH-01 Planner", "Full access restricted to warehouse WH-01", "Edit",
     [{"category": "Warehouse Number", "type": "include", "values": ["WH-01"]}]),
    ("Procurement Manager", "Full procurement read/write, demand read",
     {"Procurement": "Edit", "Demand": "View", "Inventory": "View", "Item Master": "View",
      "Supplier Master": "View", "Procurement Analytics": "View", "Spend Analytics": "View", "Dashboard": "View"},
     [{"category": "Warehouse Number", "type": "include", "values": ["WH-01", "WH-02"]}]),
    ("Demand Planner", "Sales orders and forecasts",
     {"Demand": "Edit", "Forecast": "Edit", "Forecast Over Time": "View", "Inventory": "View",
      "Item Master": "View", "Customer Master": "View", "Sales Analytics": "View", "Dashboard": "View"}, []),
]

# Username, password, full name, role, flags
SEEDED_USERS = [
    ("sync@acme.example", "sync-password", "Knosc Sync Service", "Service Account", {}),
    ("admin@acme.example", "admin-password", "Alex Admin", "Administrator", {}),
    ("viewer@acme.example", "viewer-password", "Vera Viewer", "Viewer", {}),
    ("wh1@acme.example", "wh1-password", "Walter Warehouse", "WH-01 Planner", {}),
    ("twofa@acme.example", "twofa-password", "Tina Twofactor", "Viewer", {"2fa": "JBSWY3DPEHPK3PXP"}),
    ("newbie@acme.example", "newbie-password", "Ned Newbie", "Viewer", {"first": True}),
    ("jane.doe@acme.example", "jane-password", "Jane Doe", "Procurement Manager", {}),
    ("john.smith@acme.example", "john-password", "John Smith", "Demand Planner", {}),
    ("maria.garcia@acme.example", "maria-password", "Maria Garcia", "Procurement Manager", {}),
    ("wei.chen@acme.example", "wei-password", "Wei Chen", "Viewer", {}),
    ("former.employee@acme.example", "former-password", "Fran Former", "Viewer", {"inactive": True}),
]


def _n(base: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(base * scale)))


class Generator:
    def __init__(self, store, seed: int, scale: float):
        self.st = store
        self.rng = random.Random(seed)
        self.s = scale
        self.price = {}       # item id -> base price (not a record field)

    def run(self) -> None:
        self.units()
        self.warehouses()
        self.items()
        self.sub_items()
        self.suppliers()
        self.customers()
        self.external_items()
        self.allocations()
        self.boms()
        self.purchase_orders()
        self.asns()
        self.sales_orders()
        self.manufacturing_orders()
        self.forecasts()
        self.inventory()
        self.roles_users()
        self.tickets()
        self.scenarios()
        self.settings()

    # -- master data -------------------------------------------------------------------------------------
    def units(self):
        t = self.st["unit-master"]
        for i, (code, name, typ) in enumerate(UNITS, 1):
            t.load({"id": i, "Unit Code": code, "Unit Name": name, "Unit Type": typ})
        t.next_id = len(UNITS) + 1

    def warehouses(self):
        t = self.st["warehouse-master"]
        self.wh = []
        for i, (name, addr) in enumerate(WAREHOUSES, 1):
            num = "WH-%02d" % i
            rec = {"id": i, "Warehouse Number": num, "Warehouse Name": name, "Warehouse Address": addr,
                   "Warehouse Status": "Inactive" if num == INACTIVE_WAREHOUSE else "Active",
                   "Warehouse Servicenow Id": "SN-WH-%03d" % i if i % 3 == 0 else None}
            t.load(rec)
            self.wh.append(rec)
        t.next_id = len(self.wh) + 1
        # the inactive warehouse still holds some records (they must stay hidden from lists by default)
        self.wh_weights = [10 if w["Warehouse Status"] == "Active" else 3 for w in self.wh]

    def pick_wh(self):
        return self.rng.choices(self.wh, self.wh_weights)[0]

    def items(self):
        rng, t = self.rng, self.st["item-master"]
        n = _n(180, self.s, 20)
        self.items_all, self.items_by_type = [], {"Finished Good": [], "Component": [], "Raw Material": []}
        rand = rng.random
        for i in range(1, n + 1):
            r = rand()
            typ = "Finished Good" if r < 0.55 else ("Component" if r < 0.85 else "Raw Material")
            desc = "%s %s - Type %s%d" % (rng.choice(ADJ), rng.choice(NOUNS[typ]), "ABCDEFGH"[i % 8], i % 97)
            rec = {"id": i, "Item Number": "ITEM-%06d" % i, "Item Description": desc, "Item Type": typ,
                   "Item Unit": rng.choice(UNIT_BY_TYPE[typ]),
                   "Item Status": "Active" if rand() < 0.95 else "Inactive",
                   "Item Servicenow Id": "SN-IT-%06d" % i if rand() < 0.3 else None,
                   "Item Weight": round(0.05 + rand() * 25, 2), "Item Weight Unit": "KG"}
            t.load(rec)
            self.items_all.append(rec)
            self.items_by_type[typ].append(rec)
            base = {"Finished Good": 40, "Component": 8, "Raw Material": 3}[typ]
            self.price[i] = round(base * (0.3 + rand() * 3), 2)
        t.next_id = n + 1
        # the newest tenth of the catalogue is not used by anything yet, so it can be deleted
        spare = {r["id"] for r in self.items_all[n - max(2, n // 10):]}
        self.items_all = [r for r in self.items_all if r["id"] not in spare]
        for typ in self.items_by_type:
            self.items_by_type[typ] = [r for r in self.items_by_type[typ] if r["id"] not in spare]
        if not self.items_by_type["Component"]:
            self.items_by_type["Component"] = self.items_all[:5]

    def sub_items(self):
        rng, t = self.rng, self.st["sub-item-master"]
        n = _n(40, self.s, 5)
        self.subs_of = {}
        fg = self.items_by_type["Finished Good"] or self.items_all
        for i in range(1, n + 1):
            item = rng.choice(fg)
            color = COLORS[(i + item["id"]) % len(COLORS)]
            rec = {"id": i, "Sub Item Number": "SUB-%06d" % i,
                   "Sub Item Description": "%s - %s" % (item["Item Description"], color),
                   "Sub Item Status": "Active", "Item Id": item["id"], "Item Number": item["Item Number"],
                   "Sub Item Servicenow Id": None}
            t.load(rec)
            self.subs_of.setdefault(item["id"], []).append(rec)
        t.next_id = n + 1

    def _company(self, i: int) -> str:
        rng = self.rng
        return "%s %s %s" % (CO_A[(i * 7 + rng.randrange(len(CO_A))) % len(CO_A)], rng.choice(CO_B), rng.choice(CO_C))

    def _address(self) -> str:
        rng = self.rng
        city, state = rng.choice(CITIES)
        return "%d %s, %s, %s" % (rng.randrange(1, 9999), rng.choice(STREETS), city, state)

    def suppliers(self):
        rng = self.rng
        ts, tf = self.st["supplier-master"], self.st["ship-from-master"]
        n = _n(30, self.s, 5)
        self.suppliers_all, self.sf_of = [], {}
        sf_id = 0
        for i in range(1, n + 1):
            name = self._company(i)
            slug = name.split()[0].lower()
            rec = {"id": i, "Supplier Number": "SUP-%05d" % i, "Supplier Name": name,
                   "Supplier Email": "orders%d@%s-supply.example" % (i, slug),
                   "Supplier Phone": "+1 555 2%02d %04d" % (i % 100, rng.randrange(10000)),
                   "Supplier Status": "Active" if rng.random() < 0.95 else "Inactive",
                   "Supplier Servicenow Id": "SN-SUP-%05d" % i if rng.random() < 0.25 else None}
            ts.load(rec)
            self.suppliers_all.append(rec)
            for k in range(1 if rng.random() < 0.4 else 2):
                sf_id += 1
                city, state = rng.choice(CITIES)
                sf = {"id": sf_id, "Ship From Number": "SF-%05d" % sf_id,
                      "Ship From Name": "%s %s Plant" % (name.split()[0], city),
                      "Ship From Address": "%d %s, %s, %s" % (rng.randrange(1, 9999), rng.choice(STREETS), city, state),
                      "Ship From Status": "Active", "Supplier Id": i, "Supplier Number": rec["Supplier Number"],
                      "Ship From Servicenow Id": None}
                tf.load(sf)
                self.sf_of.setdefault(i, []).append(sf)
        ts.next_id = n + 1
        tf.next_id = sf_id + 1
        # a few suppliers have no orders yet (deletable)
        self.suppliers_all = self.suppliers_all[:n - max(1, n // 10)]

    def customers(self):
        rng = self.rng
        tc, tt = self.st["customer-master"], self.st["ship-to-master"]
        n = _n(35, self.s, 5)
        self.customers_all, self.st_of = [], {}
        st_id = 0
        for i in range(1, n + 1):
            name = self._company(i + 1000)
            slug = name.split()[0].lower()
            rec = {"id": i, "Customer Number": "CUST-%05d" % i, "Customer Name": name,
                   "Customer Email": "purchasing%d@%s-buyer.example" % (i, slug),
                   "Customer Phone": "+1 555 3%02d %04d" % (i % 100, rng.randrange(10000)),
                   "Customer Status": "Active" if rng.random() < 0.95 else "Inactive",
                   "Customer Servicenow Id": "SN-CUS-%05d" % i if rng.random() < 0.25 else None}
            tc.load(rec)
            self.customers_all.append(rec)
            for k in range(rng.choice((1, 1, 2, 2, 3))):
                st_id += 1
                city, state = rng.choice(CITIES)
                s = {"id": st_id, "Ship To Number": "ST-%05d" % st_id,
                     "Ship To Name": "%s %s DC" % (name.split()[0], city),
                     "Ship To Address": "%d %s, %s, %s" % (rng.randrange(1, 9999), rng.choice(STREETS), city, state),
                     "Ship To Status": "Active", "Customer Id": i, "Customer Number": rec["Customer Number"],
                     "Ship To Servicenow Id": None}
                tt.load(s)
                self.st_of.setdefault(i, []).append(s)
        tc.next_id = n + 1
        tt.next_id = st_id + 1
        self.customers_all = self.customers_all[:n - max(1, n // 10)]

    def external_items(self):
        rng, t = self.rng, self.st["external-item-master"]
        n = _n(50, self.s, 5)
        systems = ("SAP", "Oracle", "NetSuite", "Dynamics")
        for i in range(1, n + 1):
            item = rng.choice(self.items_all)
            sysname = systems[i % len(systems)]
            t.load({"id": i, "Item Id": item["id"], "Item Number": item["Item Number"],
                    "External Item Number": "EXT-%s-%06d" % (sysname[:3].upper(), i), "External System": sysname,
                    "External Description": "%s (%s)" % (item["Item Description"], sysname),
                    "Status": "Active" if rng.random() < 0.9 else "Inactive"})
        t.next_id = n + 1

    def allocations(self):
        rng, t = self.rng, self.st["supplier-allocation"]
        target = _n(70, self.s, 5)
        self.pref_supplier = {}
        splits = ([100], [70, 30], [60, 40], [50, 30, 20])
        rid = 0
        candidates = list(self.items_all)
        rng.shuffle(candidates)
        for item in candidates:
            if rid >= target:
                break
            split = rng.choice(splits)
            sups = rng.sample(self.suppliers_all, min(len(split), len(self.suppliers_all)))
            for prio, (sup, pct) in enumerate(zip(sups, split), 1):
                rid += 1
                t.load({"id": rid, "Item Id": item["id"], "Item Number": item["Item Number"],
                        "Item Description": item["Item Description"], "Supplier Id": sup["id"],
                        "Supplier Number": sup["Supplier Number"], "Supplier Name": sup["Supplier Name"],
                        "Allocation Percentage": pct, "Priority": prio, "Status": "Active"})
                if prio == 1:
                    self.pref_supplier[item["id"]] = sup
        t.next_id = rid + 1

    def boms(self):
        rng = self.rng
        th, tl = self.st["bill-of-materials"], self.st["bill-of-materials-details"]
        fg = list(self.items_by_type["Finished Good"] or self.items_all)
        comps = self.items_by_type["Component"] + self.items_by_type["Raw Material"]
        n = min(_n(20, self.s, 3), len(fg))
        products = rng.sample(fg, n)
        lid = 0
        for i, item in enumerate(products, 1):
            k = min(len(comps), rng.choice((2, 3, 3, 4)))
            parts = rng.sample(comps, k)
            num = "BOM-%06d" % i
            for c in parts:
                lid += 1
                tl.load({"id": lid, "BOM Id": i, "BOM Number": num, "Component Item Id": c["id"],
                         "Component Item Number": c["Item Number"], "Component Description": c["Item Description"],
                         "Component Quantity": rng.choice((1, 1, 2, 2, 3, 4, 0.5, 0.25)),
                         "Component Unit": c["Item Unit"]})
            th.load({"id": i, "BOM Number": num, "Item Id": item["id"], "Item Number": item["Item Number"],
                     "Item Description": item["Item Description"],
                     "BOM Status": "Active" if rng.random() < 0.9 else "Inactive", "BOM Total Components": k})
        th.next_id = n + 1
        tl.next_id = lid + 1

    # -- transactions ------------------------------------------------------------------------------------
    def _distinct_items(self, k: int, pool: list) -> list:
        rng = self.rng
        if k >= len(pool):
            return list(pool)
        seen, out = set(), []
        while len(out) < k:
            it = pool[int(rng.random() * len(pool))]
            if it["id"] not in seen:
                seen.add(it["id"])
                out.append(it)
        return out

    def purchase_orders(self):
        rng = self.rng
        rand, randrange = rng.random, rng.randrange
        th, tl = self.st["purchase-order"], self.st["purchase-order-details"]
        n = _n(115, self.s, 10)
        lid = 0
        self.po_shipped = []
        price = self.price
        for i in range(1, n + 1):
            sup = self.suppliers_all[int(rand() * len(self.suppliers_all))]
            sf = self.sf_of[sup["id"]][0 if rand() < 0.7 else -1]
            wh = self.pick_wh()
            od = randrange(-180, 21)
            status = _po_status(od, rand())
            num = "PO-%07d" % i
            k = 1 + int(rand() * rand() * 7)
            items = self._distinct_items(k, self.items_all)
            total_qty = 0
            shipped_lines = []
            for item in items:
                lid += 1
                ls = status
                if status == "Partially Received":
                    ls = "Received" if rand() < 0.5 else "Open"
                sd = od + 3 + randrange(18)
                eta = sd + 2 + randrange(14)
                qty = QTYS[int(rand() * len(QTYS))]
                total_qty += qty
                shipped = ls in ("Shipped", "Received", "Closed")
                sub = None
                subs = self.subs_of.get(item["id"])
                if subs and rand() < 0.3:
                    sub = subs[int(rand() * len(subs))]
                line = {
                    "id": lid, "PO Details Id": lid, "Purchase Order Id": i, "PO List Number": num,
                    "Item Id": item["id"], "Item Number": item["Item Number"],
                    "Item Description": item["Item Description"],
                    "Sub Item Id": sub["id"] if sub else None, "Sub Item Number": sub["Sub Item Number"] if sub else None,
                    "Warehouse Id": wh["id"], "Warehouse Number": wh["Warehouse Number"],
                    "Warehouse Name": wh["Warehouse Name"],
                    "Ship From Id": sf["id"], "Ship From Number": sf["Ship From Number"],
                    "Ship From Name": sf["Ship From Name"],
                    "PO Details Price": round(price[item["id"]] * (0.9 + rand() * 0.2), 2),
                    "PO Details Quantity": qty, "PO Details Document Status": ls,
                    "PO Details Tracking": "BOL-%06d" % (lid * 7 % 999983) if shipped else None,
                    "PO Details Order Date": day(od), "PO Details Ship Date": day(sd), "PO Details ETA Date": day(eta),
                    "PO Details First Promise Date": day(eta) if rand() < 0.6 else None,
                    "PO Details Request Date": day(eta - randrange(4)) if rand() < 0.5 else None,
                    "PO Details Actual Ship Date": day(sd + randrange(-1, 3)) if shipped else None,
                    "PO Details Actual Delivery Date": day(eta + randrange(-2, 6)) if ls in ("Received", "Closed") else None,
                    "PO Details Unique Id": "ERP-PO-%08d" % lid if rand() < 0.8 else None,
                    "PO Details Local": None,
                }
                tl.load(line)
                if ls == "Shipped":
                    shipped_lines.append(line)
            rec = {"id": i, "PO List Number": num, "PO List Order Date": day(od), "Supplier Id": sup["id"],
                   "Supplier Number": sup["Supplier Number"], "Supplier Name": sup["Supplier Name"],
                   "PO Total Items": len(items), "PO List Quantity": total_qty, "PO List Document Status": status,
                   "PO List Servicenow Id": "SN-PO-%07d" % i if rand() < 0.2 else None,
                   "Warehouse Number": wh["Warehouse Number"],
                   "Buyer Code": "BYR-%02d" % (1 + i % 12) if rand() < 0.5 else None}
            th.load(rec)
            if shipped_lines:
                self.po_shipped.append((rec, sf, wh, shipped_lines))
        th.next_id = n + 1
        tl.next_id = lid + 1

    def asns(self):
        rng = self.rng
        th, tl = self.st["asn"], self.st["asn-details"]
        n = min(_n(20, self.s, 3), len(self.po_shipped))
        picks = rng.sample(self.po_shipped, n)
        picks.sort(key=lambda x: x[0]["id"])
        lid = 0
        for i, (po, sf, wh, lines) in enumerate(picks, 1):
            num = "ASN-%07d" % i
            qty = 0
            for pl in lines:
                lid += 1
                qty += pl["PO Details Quantity"]
                tl.load({"id": lid, "ASN Id": i, "ASN Number": num, "Item Id": pl["Item Id"],
                         "Item Number": pl["Item Number"], "Item Description": pl["Item Description"],
                         "Sub Item Id": pl["Sub Item Id"], "Sub Item Number": pl["Sub Item Number"],
                         "ASN Details Quantity": pl["PO Details Quantity"], "ASN Details ETA": pl["PO Details ETA Date"],
                         "ASN Details Ship Date": pl["PO Details Ship Date"], "Purchase Order Id": po["id"],
                         "PO List Number": po["PO List Number"], "PO Details Id": pl["id"]})
            first = lines[0]
            th.load({"id": i, "ASN Number": num, "BOL": first["PO Details Tracking"],
                     "ETA": first["PO Details ETA Date"], "Ship Date": first["PO Details Ship Date"],
                     "Timestamp": "%sT%02d:%02d:00Z" % (first["PO Details Ship Date"], rng.randrange(6, 20),
                                                         rng.randrange(60)),
                     "ASN Status": "Sent" if rng.random() < 0.6 else "Not Sent",
                     "Supplier Id": po["Supplier Id"], "Supplier Number": po["Supplier Number"],
                     "Supplier Name": po["Supplier Name"], "Ship From Id": sf["id"],
                     "Ship From Number": sf["Ship From Number"], "Ship From Name": sf["Ship From Name"],
                     "Warehouse Id": wh["id"], "Warehouse Number": wh["Warehouse Number"],
                     "Warehouse Name": wh["Warehouse Name"], "ASN Total Items": len(lines), "ASN Total Quantity": qty})
        th.next_id = n + 1
        tl.next_id = lid + 1

    def sales_orders(self):
        rng = self.rng
        rand, randrange = rng.random, rng.randrange
        th, tl = self.st["sales-order"], self.st["sales-order-details"]
        n = _n(115, self.s, 10)
        lid = 0
        price = self.price
        for i in range(1, n + 1):
            cust = self.customers_all[int(rand() * len(self.customers_all))]
            sts = self.st_of[cust["id"]]
            shipto = sts[int(rand() * len(sts))]
            wh = self.pick_wh()
            od = randrange(-150, 15)
            status = _so_status(od, rand())
            num = "SO-%07d" % i
            k = 1 + int(rand() * rand() * 7)
            items = self._distinct_items(k, self.items_by_type["Finished Good"] or self.items_all)
            total = 0
            for item in items:
                lid += 1
                ls = status
                if status == "Partially Shipped":
                    ls = "Shipped" if rand() < 0.5 else "Open"
                qty = QTYS[int(rand() * 10)]
                total += qty
                sd = od + 2 + randrange(30)
                sub = None
                subs = self.subs_of.get(item["id"])
                if subs and rand() < 0.3:
                    sub = subs[int(rand() * len(subs))]
                tl.load({
                    "id": lid, "SO Details Id": lid, "Sales Order Id": i, "SO List Number": num,
                    "Item Id": item["id"], "Item Number": item["Item Number"],
                    "Item Description": item["Item Description"],
                    "Sub Item Id": sub["id"] if sub else None, "Sub Item Number": sub["Sub Item Number"] if sub else None,
                    "Warehouse Id": wh["id"], "Warehouse Number": wh["Warehouse Number"],
                    "Warehouse Name": wh["Warehouse Name"],
                    "SO Details Price": round(price[item["id"]] * (1.3 + rand() * 0.3), 2),
                    "SO Details Quantity": qty, "SO Details Document Status": ls,
                    "SO Details Order Date": day(od), "SO Details Ship Date": day(sd),
                    "SO Details Request Date": day(sd - randrange(3)) if rand() < 0.5 else None,
                    "SO Details Unique Id": "ERP-SO-%08d" % lid if rand() < 0.8 else None,
                })
            th.load({"id": i, "SO List Number": num, "SO List Order Date": day(od), "Customer Id": cust["id"],
                     "Customer Number": cust["Customer Number"], "Customer Name": cust["Customer Name"],
                     "Ship To Id": shipto["id"], "Ship To Number": shipto["Ship To Number"],
                     "Ship To Name": shipto["Ship To Name"], "SO Total Items": len(items), "SO List Quantity": total,
                     "SO List Document Status": status,
                     "SO List Servicenow Id": "SN-SO-%07d" % i if rand() < 0.2 else None,
                     "Warehouse Number": wh["Warehouse Number"]})
        th.next_id = n + 1
        tl.next_id = lid + 1

    def manufacturing_orders(self):
        rng = self.rng
        rand, randrange = rng.random, rng.randrange
        th, tl = self.st["manufacturing-order"], self.st["manufacturing-order-details"]
        n = _n(40, self.s, 5)
        lid = 0
        fg = self.items_by_type["Finished Good"] or self.items_all
        for i in range(1, n + 1):
            wh = self.pick_wh()
            od = randrange(-90, 30)
            status = "Completed" if od < -40 and rand() < 0.8 else MO_STATUS[int(rand() * len(MO_STATUS))]
            num = "MO-%07d" % i
            items = self._distinct_items(rng.choice((1, 1, 2, 2, 3)), fg)
            total = 0
            for item in items:
                lid += 1
                qty = QTYS[int(rand() * 12)]
                total += qty
                start = od + randrange(10)
                tl.load({"id": lid, "MO Details Id": lid, "Manufacturing Order Id": i, "MO List Number": num,
                         "Item Id": item["id"], "Item Number": item["Item Number"],
                         "Item Description": item["Item Description"], "Sub Item Id": None, "Sub Item Number": None,
                         "Warehouse Id": wh["id"], "Warehouse Number": wh["Warehouse Number"],
                         "Warehouse Name": wh["Warehouse Name"], "MO Details Quantity": qty,
                         "MO Details Order Date": day(od), "MO Details Start Date": day(start),
                         "MO Details End Date": day(start + 2 + randrange(18)), "MO Details Document Status": status,
                         "MO Details Unique Id": "ERP-MO-%08d" % lid if rand() < 0.5 else None})
            th.load({"id": i, "MO List Number": num, "MO List Order Date": day(od), "MO List Document Status": status,
                     "Warehouse Id": wh["id"], "Warehouse Number": wh["Warehouse Number"],
                     "Warehouse Name": wh["Warehouse Name"], "MO Total Items": len(items), "MO List Quantity": total})
        th.next_id = n + 1
        tl.next_id = lid + 1

    def forecasts(self):
        rng = self.rng
        rand = rng.random
        th, tl = self.st["forecast"], self.st["forecast-details"]
        n = _n(22, self.s, 3)
        lid = 0
        fg = self.items_by_type["Finished Good"] or self.items_all
        first_of_month = [d for d in range(-120, 200) if day(d).endswith("-01")]
        for i in range(1, n + 1):
            wh = self.pick_wh()
            m0 = rng.randrange(len(first_of_month) - 3)
            months = first_of_month[m0:m0 + 3]
            status = "Active" if rand() < 0.85 else "Archived"
            num = "FC-%07d" % i
            items = self._distinct_items(2, fg)
            total = 0
            count = 0
            for item in items:
                for m in months:
                    lid += 1
                    qty = QTYS[int(rand() * 12)]
                    total += qty
                    count += 1
                    tl.load({"id": lid, "Forecast Details Id": lid, "Forecast Id": i, "Forecast List Number": num,
                             "Item Id": item["id"], "Item Number": item["Item Number"],
                             "Item Description": item["Item Description"], "Warehouse Id": wh["id"],
                             "Warehouse Number": wh["Warehouse Number"], "Warehouse Name": wh["Warehouse Name"],
                             "Forecast Details Quantity": qty, "Forecast Details Date": day(m),
                             "Forecast Details Document Status": status,
                             "Forecast Details Unique Id": "SA-%06d-%02d" % (i, count)})
            th.load({"id": i, "Forecast List Number": num, "Forecast List Date": day(months[0]),
                     "Forecast List Document Status": status, "Warehouse Number": wh["Warehouse Number"],
                     "Forecast Total Items": count, "Forecast List Quantity": total})
        th.next_id = n + 1
        tl.next_id = lid + 1

    def inventory(self):
        rng = self.rng
        rand = rng.random
        t = self.st["inventory"]
        n = min(_n(200, self.s, 20), len(self.items_all) * len(self.wh))
        seen = set()
        rid = 0
        items = self.items_all
        while rid < n:
            item = items[int(rand() * len(items))]
            wh = self.pick_wh()
            sub = None
            subs = self.subs_of.get(item["id"])
            if subs and rand() < 0.3:
                sub = subs[int(rand() * len(subs))]
            key = (item["id"], sub["id"] if sub else None, wh["id"])
            if key in seen:
                continue
            seen.add(key)
            rid += 1
            t.load({"id": rid, "Item Id": item["id"], "Item Number": item["Item Number"],
                    "Item Description": item["Item Description"], "Sub Item Id": sub["id"] if sub else None,
                    "Sub Item Number": sub["Sub Item Number"] if sub else None, "Warehouse Id": wh["id"],
                    "Warehouse Number": wh["Warehouse Number"], "Warehouse Name": wh["Warehouse Name"],
                    "Inventory Quantity": int(rand() * rand() * 2500), "Inventory Date": day(-int(rand() * 7)),
                    "Inventory Unique Id": "ERP-INV-%08d" % rid})
        t.next_id = rid + 1

    # -- people ------------------------------------------------------------------------------------------
    def roles_users(self):
        tr, tu = self.st["role"], self.st["user"]
        pid = 0
        role_id = {}
        for i, (name, desc, access, granular) in enumerate(ROLES, 1):
            privs = []
            for m in MODULES:
                acc = access if isinstance(access, str) else access.get(m, "None")
                pid += 1
                privs.append({"id": pid, "Privilege Type": m, "Privilege Description": MODULE_DESCRIPTIONS[m],
                              "Privilege Access": acc})
            tr.load({"id": i, "Role Name": name, "Role Description": desc,
                     "Number of Privileges": sum(1 for p in privs if p["Privilege Access"] != "None"),
                     "Has Granular Privileges": bool(granular), "_privileges": privs,
                     "_granular": [dict(g) for g in granular]})
            role_id[name] = i
        tr.next_id = len(ROLES) + 1
        self.privilege_next = pid + 1
        self.user_emails = []
        for i, (login, password, full, role, flags) in enumerate(SEEDED_USERS, 1):
            tu.load({"id": i, "User Fullname": full, "Username": login, "User Email": login,
                     "User Phone": "+1 555 010 %04d" % i, "Role Id": role_id[role], "Role Name": role,
                     "User Status": "Inactive" if flags.get("inactive") else "Active",
                     "2FA Enabled": bool(flags.get("2fa")), "First Signin": bool(flags.get("first")),
                     "Password Expiration": day(365) if role != "Service Account" else None,
                     "_password": password, "_totp_secret": flags.get("2fa"), "_2fa_enabled": bool(flags.get("2fa")),
                     "_first_signin": bool(flags.get("first")), "_failed_logins": 0, "_locked_until": 0.0,
                     "_last_modified_at": 0.0, "_reset_token": None})
            if not flags.get("inactive"):
                self.user_emails.append(login)
        tu.next_id = len(SEEDED_USERS) + 1

    def tickets(self):
        rng = self.rng
        tt, tn, ts = self.st["issue-tracker-tickets"], self.st["issue-tracker-notes"], self.st["issue-tracker-subscribers"]
        n = _n(20, self.s, 5)
        pos = self.st["purchase-order"]
        npo = len(pos)
        nid = sid = 0
        people = [e for e in self.user_emails if e not in ("sync@acme.example", "newbie@acme.example")]
        for i in range(1, n + 1):
            tid = "TKT-%03d" % i
            kind = rng.randrange(5)
            po = pos.get(1 + rng.randrange(npo)) if kind in (0, 1, 2) else None
            if kind == 0:
                title, cat = "Delayed shipment from %s" % po["Supplier Name"], "Procurement"
                desc = "%s ETA pushed by %d days." % (po["PO List Number"], rng.randrange(2, 15))
            elif kind == 1:
                title, cat = "Quantity mismatch on %s" % po["PO List Number"], "Procurement"
                desc = "Received quantity differs from the ordered quantity."
            elif kind == 2:
                title, cat = "Missing ASN for %s" % po["PO List Number"], "Procurement"
                desc = "Supplier shipped without sending an ASN."
            elif kind == 3:
                item = rng.choice(self.items_all)
                title, cat = "Forecast review for %s" % item["Item Number"], "Demand"
                desc = "Forecast for %s looks too high for next quarter." % item["Item Description"]
            else:
                wh = rng.choice(self.wh)
                title, cat = "Inventory discrepancy at %s" % wh["Warehouse Number"], "Inventory"
                desc = "Cycle count does not match the system quantity."
            created_day = -rng.randrange(1, 90)
            created = "%sT%02d:%02d:00Z" % (day(created_day), rng.randrange(7, 18), rng.randrange(60))
            upd_day = min(0, created_day + rng.randrange(0, 10))
            updated = max(created, "%sT%02d:%02d:00Z" % (day(upd_day), rng.randrange(7, 18), rng.randrange(60)))
            assignee = rng.choice(people) if rng.random() < 0.8 else None
            reporter = rng.choice(people)
            tt.load({"id": tid, "Title": title, "Description": desc,
                     "Status": rng.choice(("Open", "Open", "In Progress", "Resolved", "Closed")),
                     "Priority": rng.choice(("Low", "Medium", "Medium", "High", "Critical")), "Category": cat,
                     "Assignee Email": assignee, "Reporter Email": reporter, "Created At": created,
                     "Updated At": updated, "Due Date": day(created_day + rng.randrange(5, 30)),
                     "Linked PO Id": po["id"] if po else None, "Linked PO Number": po["PO List Number"] if po else None})
            for k in range(rng.choice((0, 1, 1, 2, 3))):
                nid += 1
                tn.load({"id": nid, "Ticket Id": tid,
                         "Note": rng.choice(("Contacted the supplier, waiting for an answer.",
                                             "Escalated to the category manager.", "Checked in the ERP, confirmed.",
                                             "Customer informed about the new date.", "Recount scheduled.")),
                         "Author Email": rng.choice(people), "Created At": updated if k == 0 else created})
            subs = {reporter}
            if assignee:
                subs.add(assignee)
            for email in sorted(subs):
                sid += 1
                ts.load({"id": sid, "Ticket Id": tid, "email": email})
        tn.next_id = nid + 1
        ts.next_id = sid + 1
        self.ticket_seq = n

    def scenarios(self):
        rng = self.rng
        t = self.st["scenario-analysis"]
        n = _n(5, self.s, 3)
        names = ("Q2 Demand Surge", "Supplier Disruption", "Price Increase", "New Market Entry", "Warehouse Closure",
                 "Peak Season", "Lead Time Extension")
        for i in range(1, n + 1):
            base = names[(i - 1) % len(names)]
            pct = rng.choice((-20, -10, 10, 20, 30, 50))
            created_day = -rng.randrange(10, 120)
            created = "%sT10:00:00Z" % day(created_day)
            t.load({"id": i, "Scenario Name": base if i <= len(names) else "%s %d" % (base, i),
                    "Scenario Description": "Model a %+d%% change in demand." % pct,
                    "Scenario Status": rng.choice(("Active", "Active", "Draft", "Archived")),
                    "Scenario Demand Change Percentage": pct, "Created At": created,
                    "Updated At": "%sT14:00:00Z" % day(created_day + rng.randrange(0, 9)),
                    "Created By": rng.choice(self.user_emails)})
        t.next_id = n + 1

    def settings(self):
        self.st["custom-columns"].load({
            "id": 1, "table": "PurchaseOrderList", "key": "Buyer Code", "format": "string", "alias": "Buyer",
            "description": "Buyer responsible for the order", "required": False, "default_value": None})
        self.st["custom-columns"].next_id = 2
        self.st["views-shared"].load({
            "id": 1, "name": "Open POs", "view": "purchase_order_list",
            "headers": ["PO List Number", "Supplier Name", "PO List Document Status"],
            "filters": {"PO List Document Status": "Open"}, "sort": {"key": "PO List Order Date", "type": "Descending"},
            "tags": {}, "extra": {}, "_owner": 2})
        self.st["views-shared"].next_id = 2


def generate(store, seed: int, scale: float) -> Generator:
    g = Generator(store, seed, scale)
    g.run()
    return g
