#pragma once
// The resource catalog: what knosc-syncd knows about each Knosc list resource, loaded from
// schema/catalog.toml (compiled into the binary). Immutable after loading, so any thread may read it.

#include <map>
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

  std::string route() const { return "/" + name; }
  // Knosc's message for a missing record of this resource, e.g. "PO #42 not found.".
  std::string missing_message(std::string_view id) const;
  bool has_nested() const { return !nested.empty(); }
  bool is_line_list() const { return !parent.empty(); }
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
