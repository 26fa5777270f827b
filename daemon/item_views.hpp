#pragma once
// Knosc's read-only helper and analytics routes, computed from the replica so tools get the same answers
// offline: the per-item order views (purchase-order-item, sales-order-item, manufacturing-order-item,
// forecast-item), inventory-item, sales-prioritized-item-inventory, external-item-master-details, supplier
// net allocation (list and cross-tab), a ticket's notes and subscribers, auto-complete, the delayed-shipments
// histogram, forecast-over-time and validate-privileges.
//
// Knosc computes these on the server from its own rows; each function here computes the same answer from the
// mirrored rows: the same rows are visible (rows of inactive warehouses hidden, the caller's granular filters
// applied), the same numbers come out, and the same status codes and error bodies answer bad requests. Where
// the documentation is silent, knosc-sim (the reference upstream of our tests) decides.
//
// Speed: per-item views read a handful of rows through the replica's indexes (the key slot of "Item Number",
// the record key). Aggregates over whole resources (open purchase quantities, delays, forecast months, the
// allocation cross-tab, auto-complete's candidate texts, which orders hold lines of which item) are computed
// by SQLite once and kept per reader connection until the replica changes (SQLite's data_version), so
// repeated requests cost a few milliseconds on the largest tenants.
//
// Ownership and threads: every function runs on a loopback reader thread with that thread's read-only
// Replica; it only reads SQLite. The memo of aggregates is thread-local and keyed by the connection.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "daemon/http_server.hpp"
#include "daemon/local_auth.hpp"
#include "replica/python_text.hpp"
#include "replica/replica.hpp"

namespace knosc::daemon {

// The four per-item order views: one line per row, with the order's number (and, for purchase and sales
// orders, the supplier's or customer's name).
enum class OrderItemKind { Purchase, Sales, Manufacturing, Forecast };

// The day analytics count from (delayed shipments are those whose ETA is before it), as YYYY-MM-DD. It is
// today's date in UTC, as Knosc's servers keep it, unless the environment variable KNOSC_SYNCD_TODAY holds a
// valid YYYY-MM-DD: tests pin it to the day knosc-sim lays its generated tenant around (2025-03-03), and an
// operator can pin it to reproduce an answer of another day.
std::string analytics_today();

// GET /api/<kind>-item/{item_id}[/{warehouse_id}]: the lines of one item (in one warehouse), as a list with
// Knosc's list parameters (page, page_size, filter, search, sort) applied to the computed rows.
HttpResponse order_item_view(replica::Replica& rep, const LocalSession& session, OrderItemKind kind,
                             const std::string& item_id, const std::optional<std::string>& warehouse_id,
                             const std::map<std::string, std::string>& query);

// GET /api/inventory-item/{item_id}[/{warehouse_id}]: stock and open order quantities per warehouse.
HttpResponse inventory_item_view(replica::Replica& rep, const LocalSession& session,
                                 const std::string& item_id, const std::optional<std::string>& warehouse_id);

// GET /api/sales-prioritized-item-inventory/{item_id}[/{warehouse_id}]: open sales lines in ship-date order
// per warehouse, each allocated what stock is left.
HttpResponse sales_prioritized_view(replica::Replica& rep, const LocalSession& session,
                                    const std::string& item_id,
                                    const std::optional<std::string>& warehouse_id);

// GET /api/external-item-master-details/{id}: the mapping with its internal item and every mapping of it.
HttpResponse external_item_details_view(replica::Replica& rep, const LocalSession& session,
                                        const std::string& id);

// GET /api/supplier-net-allocation: each allocation against the item's open purchase quantity.
HttpResponse supplier_net_allocation_view(replica::Replica& rep, const LocalSession& session,
                                          const std::map<std::string, std::string>& query);

// GET /api/supplier-net-allocation-table: items x suppliers cross-tab of allocation percentages.
HttpResponse supplier_net_allocation_table_view(replica::Replica& rep, const LocalSession& session,
                                                const std::map<std::string, std::string>& query);

// GET /api/issue-tracker-tickets/{id}/notes and .../subscribers.
HttpResponse ticket_notes_view(replica::Replica& rep, const LocalSession& session,
                               const std::string& ticket_id);
HttpResponse ticket_subscribers_view(replica::Replica& rep, const LocalSession& session,
                                     const std::string& ticket_id);

// GET /api/auto-complete?category=&text=[&subset_filters=]: up to 50 [text, id] pairs, prefix matches first.
HttpResponse auto_complete_view(replica::Replica& rep, const LocalSession& session,
                                const std::map<std::string, std::string>& query);

// GET /api/delayed-shipments/histogram?bucket=week|month: open purchase lines whose ETA has passed, by delay.
HttpResponse delayed_shipments_view(replica::Replica& rep, const LocalSession& session,
                                    const std::map<std::string, std::string>& query,
                                    const std::string& today);

// GET /api/forecast-over-time: forecast against shipped sales quantity per item, warehouse and month.
HttpResponse forecast_over_time_view(replica::Replica& rep, const LocalSession& session,
                                     const std::map<std::string, std::string>& query);

// GET /api/validate-privileges?path=/procurement: whether the caller may open that part of the application.
HttpResponse validate_privileges_view(const LocalSession& session,
                                      const std::map<std::string, std::string>& query);

// Routes a GET under /api to one of the views above. `path_segments` are the path's non-empty segments after
// "api"; nullopt when the path is none of these routes (the caller goes on with its own routes).
std::optional<HttpResponse> item_view(replica::Replica& rep, const LocalSession& session,
                                      const std::vector<std::string>& path_segments,
                                      const std::map<std::string, std::string>& query);

// --- Pure parts (unit-tested) ------------------------------------------------------------------------------
// Knosc's messages and computed numbers follow its Python implementation's conventions; these reproduce them.
namespace item_views_detail {

// A string as Python's repr() writes it (quotes chosen as Python does; control characters escaped).
std::string py_repr(std::string_view s);
// A JSON value as Python's repr() of the decoded value writes it ('x', 5, 1.5, True, None, [..], {..}).
std::string py_repr_json(const nlohmann::ordered_json& v);
// A float as Python's repr() writes it (replica/python_text.hpp).
using replica::py_float_repr;
// Python's round(v, 2): the exact binary value rounded half-to-even at two decimals.
double round2(double v);
// Python's int() of a query parameter (blanks around, a sign, digits with single underscores between them).
// nullopt when it is not an integer; the value saturates at the int64 range.
std::optional<long long> py_int(std::string_view s);
// Lower-case as Python's str.lower() does for the characters tenants use (simple Unicode case mapping).
std::string py_lower(std::string_view s);
// Days from civil date `a` to `b` (both YYYY-MM-DD); nullopt when either is not such a date.
std::optional<long long> days_between(std::string_view a, std::string_view b);

// Knosc's list parameters as its computed lists read them (page, page_size, filter, search, sort), with the
// 400 to answer when they are malformed.
struct ComputedParams {
  long long offset = 0;
  long long limit = 50;
  std::optional<nlohmann::ordered_json> filter;  // {"key": value | [values] | {"from", "to"}}
  std::optional<nlohmann::ordered_json> search;  // {"filters": {"include": {...}, "exclude": {...}}}
  std::string sort_key;
  bool descending = false;
  bool names_key(const std::string& key) const;
};
struct ParamsError {
  std::string message;
  std::string code = "JSON.Invalid";
};
// `whole_by_default`: without page and page_size every row is returned (the helper routes that are not
// paged).
std::variant<ComputedParams, ParamsError> parse_computed_params(
    const std::map<std::string, std::string>& query, const std::string& default_sort_key,
    bool default_descending, bool whole_by_default);
// Validates a filter object ("filter" or "subset_filters"); nullopt when it is well-formed.
std::optional<ParamsError> check_filter(const nlohmann::ordered_json& filter, const std::string& name);

// Warehouse number -> status, in the warehouse-master's id order.
using WarehouseStatus = std::vector<std::pair<nlohmann::ordered_json, nlohmann::ordered_json>>;

// Values of columns a row does not carry (a cross-tab's empty cells read as 0).
using ColumnDefaults = std::unordered_map<std::string, nlohmann::ordered_json>;

// Which rows a user sees of a computed list: rows of inactive warehouses are hidden unless the filter names
// "Warehouse Status" (a virtual column: the status of the row's warehouse), granular filters restrict rows
// that carry their column, then the filter and search conditions apply.
class RowFilter {
 public:
  RowFilter(WarehouseStatus warehouse_status, const std::vector<replica::GranularFilter>& granular,
            const ComputedParams* params, const ColumnDefaults* defaults = nullptr);
  bool visible(const nlohmann::ordered_json& row) const;
  // No row can be hidden (nothing to read of a row before showing it).
  bool trivial() const;
  // The rows' positions in list order by `key`: a stable sort (ties keep the given order); "id" keeps (or
  // reverses) the given order, which callers give in id order.
  std::vector<std::size_t> order(const std::vector<nlohmann::ordered_json>& rows, const std::string& key,
                                 bool descending) const;

 private:
  struct Granular {
    std::string category;
    bool include = true;
    std::vector<nlohmann::ordered_json> values;
  };
  struct Condition {
    std::string key;
    bool range = false;
    bool exclude = false;
    std::optional<nlohmann::ordered_json> from, to;
    std::vector<nlohmann::ordered_json> values;
  };
  // The row's value of `key`, or null when the row has no such column.
  const nlohmann::ordered_json* get(const nlohmann::ordered_json& row, const std::string& key) const;

  WarehouseStatus status_;
  std::vector<nlohmann::ordered_json> inactive_;
  std::vector<Granular> granular_;
  std::vector<Condition> conditions_;
  const ComputedParams* params_;
  const ColumnDefaults* defaults_;
  bool hide_inactive_ = false;
};

}  // namespace item_views_detail

}  // namespace knosc::daemon
