#pragma once
// The resource catalog: what knosc-syncd knows about each Knosc list resource, loaded from
// schema/catalog.toml (compiled into the binary). Immutable after loading, so any thread may read it.

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace knosc::schema {

enum class IdType { Integer, String };
enum class GetOneShape { None, Data, RowsObject };
enum class DeleteCheck { GetOne, ParentGetOne, FilterByKey };
enum class ConflictPolicy { Merge, ServerWins, ClientWins, Manual };

struct SortSpec {
  std::string key;
  bool descending = false;
};

// A part of get-one that Knosc computes from related records (a customer's "Ship To Locations"): the loopback
// derives it from the mirrored related rows instead of fetching every record.
struct DerivedList {
  std::string key;                  // key in the get-one record
  std::string from;                 // the related resource
  std::string match_key;            // key of the related rows that holds ...
  std::string own_key;              // ... this record's value of this key
  std::vector<std::string> fields;  // keys copied from each related row
};

class Catalog;
struct WriteRules;

struct Resource {
  std::string name;   // route name after /api/, e.g. "purchase-order"
  std::string label;  // the record's name in Knosc's messages, e.g. "PO"
  std::string not_found_message = "{label} #{id} not found.";
  IdType id_type = IdType::Integer;
  std::vector<std::string> business_key;
  std::string module;  // privilege module, e.g. "Procurement"
  SortSpec default_sort;
  GetOneShape get_one = GetOneShape::Data;
  std::string not_found_code;
  DeleteCheck delete_check = DeleteCheck::GetOne;
  bool warehouse_scoped = false;
  std::vector<std::string> nested;  // keys only the get-one record carries
  int nested_refresh_hours = 24;
  std::string parent;      // flat line lists: the header resource
  std::string parent_key;  // flat line lists: key of the header's id in a line row
  std::string lines;       // headers with a flat line list: that list's resource name
  std::vector<std::string> filterable;
  std::vector<std::string> sortable;
  int pull_interval_seconds = 300;
  ConflictPolicy conflict_policy = ConflictPolicy::Merge;
  std::vector<std::string> manual_fields;
  bool mirror = true;
  std::vector<DerivedList> derived;
  std::vector<std::string> export_views;
  // How Knosc validates and applies writes of this resource ([resource.write]); null when the catalog gives
  // no write rules (the loopback then cannot make such a change by itself). Shared, so a Resource stays cheap
  // to copy and the rules' addresses stay put.
  std::shared_ptr<const WriteRules> write;

  std::string route() const { return "/" + name; }
  // Knosc's message for a missing record of this resource, e.g. "PO #42 not found.".
  std::string missing_message(std::string_view id) const;
  bool has_nested() const { return !nested.empty(); }
  bool is_line_list() const { return !parent.empty(); }
};

// ---------------------------------------------------------------------------------------------------------
// Write rules: what Knosc checks and stores on POST/PUT/DELETE of a resource, as data (catalog.toml documents
// every key). replica/local_edit.cpp interprets them.
// ---------------------------------------------------------------------------------------------------------

// The value types Knosc checks on write. String is non-empty text; Email is text with an '@'; Any takes
// anything; Enum takes one of `values`.
enum class FieldType { String, Number, Integer, Date, Boolean, Email, Any, Enum };
enum class UpdateMode { Partial, Full };

// A key a write may set directly.
struct WriteField {
  std::string key;
  FieldType type = FieldType::Any;
  bool nullable = false;            // null is a valid value ("str?", "enum?")
  std::vector<std::string> values;  // Enum: the allowed strings
  bool required = false;            // a create (or a full PUT) without it is refused (<prefix>.MissingField)
  nlohmann::ordered_json default_value;  // what a create stores when the key is not sent (null by default)
};

// A related record named by its business number (or id) in the body and stored as number + id + copied
// display keys, e.g. "Supplier Number" -> "Supplier Id", "Supplier Name".
struct WriteRef {
  std::string field;       // key in the body and in the record
  std::string target;      // catalog resource of the related record
  std::string target_key;  // its key holding the number ("id": the body names the id itself)
  std::string id_field;    // key of this record that stores the related id; empty when none
  std::vector<std::pair<std::string, std::string>> copy;  // this record's key <- related record's key
  bool required = false;
  // Belongs-to rule: the related record's `belongs_target_key` must equal this record's (or, for a line, its
  // header's) `belongs_own_key`, e.g. a ship-from must be one of the order's supplier.
  std::string belongs_target_key;
  std::string belongs_own_key;

  bool by_id() const { return target_key == "id"; }
  bool has_belongs() const { return !belongs_target_key.empty(); }
};

// Records that forbid a delete while they refer to the record (<prefix>.StillInUse).
struct DeleteBlocker {
  std::string resource;        // catalog resource of the referring records
  std::string key;             // their key holding ...
  std::string own_key = "id";  // ... this record's value of this key
  std::string lines;           // non-empty: the reference is in that line set of the referring records
};

// Records deleted together with this one.
struct DeleteCascade {
  std::string resource;  // catalog resource of the children
  std::string key;       // their key holding this record's id
};

// Records that keep existing when this one is deleted but lose their reference to it.
struct DeleteClear {
  std::string resource;
  std::string key;                // their key holding this record's id
  std::vector<std::string> keys;  // keys set to null
  std::string stamp;              // key set to the time of the edit; empty when none
};

// Keys Knosc stamps itself.
struct WriteStamps {
  std::string created_at;  // set on create, kept afterwards
  std::string updated_at;  // set on every write
  std::string created_by;  // the caller's e-mail, set on create
};

// An object of record keys Knosc shows inside each row (an ASN's "From" and "To"); a write may name the
// writable ones inside it instead of at the top level.
struct KeyGroup {
  std::string key;
  std::vector<std::string> keys;
};

// A header key Knosc computes over the lines: their count (empty `sum`) or the sum of a line key.
struct LineAggregate {
  std::string key;
  std::string sum;
};

// A line key that, when left null, takes a key of a related record (a BOM component's unit).
struct RefDefault {
  std::string key;
  std::string ref;         // the WriteRef field naming the related record
  std::string target_key;  // its key to copy
};

// The line set of a document (orders, forecasts, BOMs, ASNs): written inside the header's body under `key`.
struct LineRules {
  std::string key = "details";
  // The lines' resource: a catalog resource for flat line lists (purchase-order-details), else the name Knosc
  // gives the nested line set; `nested_resource` then describes it (local line ids are handed out for it).
  std::string resource;
  std::shared_ptr<const Resource> nested_resource;
  std::string parent_field;  // line key holding the header's id
  std::string id_alias;      // line key repeating the line's id ("PO Details Id"); empty when none
  std::string label;         // the line's name in messages ("PO Detail #5 not found.")
  std::string prefix;        // error-code prefix of the lines
  std::vector<std::string> keys;
  std::vector<WriteField> fields;
  std::vector<WriteRef> refs;
  std::vector<std::pair<std::string, std::string>> copy;  // line key <- header key
  std::vector<LineAggregate> aggregates;
  bool single_warehouse = false;       // every line names the same warehouse (OrderList.MultipleWarehouses)
  bool warehouse_from_header = false;  // the warehouse is a header key copied to the lines
  bool header_warehouse = false;       // the header shows the first line's "Warehouse Number"
  std::vector<std::string> duplicate_keys;  // no two lines may share these values
  std::string duplicate_code;
  std::string duplicate_message;
  // Order date (the line's, else the header's) must not be after the line's ship date.
  std::string date_line_order;
  std::string date_header_order;
  std::string date_line_ship;
  std::string date_code;
  int min_lines = 1;
  std::string no_items_code;
  std::string no_items_message;
  // A line without a status takes the header's.
  std::string status_header;
  std::string status_line;
  std::vector<RefDefault> ref_defaults;
  std::vector<std::string> rules;  // named line rules implemented in code: "asn-po-lines"

  const Resource& lines_resource(const Catalog& catalog) const;
};

struct WriteRules {
  std::vector<std::string> methods;  // POST, PUT, DELETE: the writes Knosc accepts on the route
  bool online_only = false;          // Knosc accepts them, but only Knosc can check them: never made offline
  std::string prefix;                // error-code prefix, e.g. "ItemMaster" (ItemMaster.MissingField)
  std::string number;                // key naming the record in StillInUse messages; empty: its id
  std::string number_prefix;         // text before it ("PO #PO-1 is still in use ...")
  UpdateMode update = UpdateMode::Partial;
  std::vector<std::string> keys;  // the record's keys in Knosc's order; a create starts with all of them null
  std::vector<WriteField> fields;
  std::vector<WriteRef> refs;
  std::vector<std::string> unique;  // keys whose values together identify one record (<prefix>.AlreadyExists)
  std::vector<DeleteBlocker> blockers;
  std::vector<DeleteCascade> cascades;
  std::vector<DeleteClear> clears;
  WriteStamps stamps;
  std::vector<KeyGroup> groups;
  std::vector<std::string> rules;  // named rules implemented in code: "allocation-limits", "ticket"
  std::optional<LineRules> lines;

  bool allows(std::string_view method) const;
  bool has_rule(std::string_view rule) const;
  const WriteField* field(std::string_view key) const;
};

// A catalog that cannot be used; the message names the key and its line.
class CatalogError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Catalog {
 public:
  // The catalog compiled into this binary.
  static const Catalog& builtin();
  // Parses catalog text; `source` names it in error messages. Throws CatalogError.
  static Catalog parse(std::string_view toml_text, std::string_view source);

  const std::vector<Resource>& resources() const { return resources_; }
  const Resource* find(std::string_view name) const;
  // The resource an export-data view is built from, if any.
  const Resource* find_export_view(std::string_view view) const;
  const Resource& at(std::string_view name) const;  // throws CatalogError when unknown

 private:
  std::vector<Resource> resources_;
  std::map<std::string, std::size_t, std::less<>> by_name_;
};

std::string_view to_string(ConflictPolicy p);

}  // namespace knosc::schema
