#pragma once
// Knosc's list semantics (CONTRACT §2) served from the replica: parsing and validating a list request's
// query parameters, then answering it with one SQL query over the `record` table.
//
// Parsing is pure and reports the 400 Knosc would answer as a value. Execution turns the parsed parameters
// into SQL that reads a resource's indexed keys from their key slots (record.k1..k8, replica/key_slots.hpp),
// so equality filters, ranges and sorts on those keys are served by the slot indexes on (resource, kN, id);
// other keys are read from the JSON body (json_key_sql).

#include <SQLiteCpp/Database.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "schema/catalog.hpp"

namespace knosc::replica {

inline constexpr std::int64_t kDefaultPageSize = 50;
inline constexpr std::int64_t kMaxPageSize = 1000;  // larger page sizes are clamped, not refused

// A request Knosc answers with 400; `message` says what is wrong and names the parameter.
struct ListError {
  int status = 400;
  std::string message;
  std::string code = "JSON.Invalid";
};

// Either a value or the ListError to answer: expected failures are values, not exceptions.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor): returned as is
  Result(ListError error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T* operator->() const { return &value(); }
  const T& operator*() const& { return value(); }
  const ListError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ListError> v_;
};

// The row's value is one of `values` (a scalar filter is a one-value list). Values keep their JSON type: a
// number matches numbers only, a string strings only, true/false booleans only, null a stored null.
struct AnyOf {
  std::vector<nlohmann::json> values;
};

// Inclusive range; each end is a string or a number, or absent. String ends compare strings (ISO dates sort
// as text); number ends compare numbers; a value of the other type is outside the range.
struct Range {
  std::optional<nlohmann::json> from;
  std::optional<nlohmann::json> to;
};

// One condition on one column key. Conditions of a request AND together.
struct Condition {
  std::string key;
  std::variant<AnyOf, Range> test;
  bool exclude = false;  // search's "exclude": rows that match are left out; rows without the key stay
};

struct ListParams {
  std::int64_t page = 1;  // 1-based
  std::int64_t page_size = kDefaultPageSize;
  // From `filter`, then `search.filters.include`, then `search.filters.exclude`, in request order.
  std::vector<Condition> conditions;
  std::optional<schema::SortSpec> sort;  // absent: the resource's default sort

  // Whether the filter or search names `key` (the Warehouse Status rule depends on it).
  bool names_key(std::string_view key) const;
  // Rows to skip; saturates instead of overflowing for absurd page numbers (the page is then empty).
  std::int64_t offset() const;
};

// Parses a list request's decoded query parameters (`page`, `page_size`, `filter`, `search`, `sort`; others
// are ignored). Malformed JSON answers Knosc's own {"Message": "Bad Request Format"}; well-formed JSON of
// the wrong shape, a bad page or page_size answer a message naming the parameter.
Result<ListParams> parse_list_params(const std::map<std::string, std::string>& query);

// The sort a list uses: the requested one, else the resource's default. Ties always break by id ascending.
schema::SortSpec effective_sort(const ListParams& p, const schema::Resource& res);

// A role's granular filter: rows that carry `category` (with a non-null value) must have one of `values`
// (include) or none of them (exclude). Rows without the column are not restricted.
struct GranularFilter {
  std::string category;
  bool include = true;
  std::vector<nlohmann::json> values;
};

// What the requesting user may see of every list.
struct ListScope {
  std::vector<GranularFilter> granular;
};

// Where warehouse statuses live: the warehouse-master rows in the same `record` table.
struct WarehouseStatusLookup {
  std::string resource = "warehouse-master";
  std::string number_key = "Warehouse Number";
  std::string status_key = "Warehouse Status";
  std::string inactive = "Inactive";
  // The catalog the replica was opened with, which says in which key slots `resource` keeps the number and
  // the status; null: the built-in catalog.
  const schema::Catalog* catalog = nullptr;
};

struct ListResult {
  std::vector<nlohmann::ordered_json> rows;  // the page, as stored (upstream key order kept)
  schema::SortSpec sort;                     // the sort applied, for the envelope's "sort"
};

// Which index the list query reads the resource through; chosen per request by run_list from the keys with
// a slot and a bounded count of a filter's matches (see list_query.cpp). Empty: SQLite's own choice.
struct AccessPath {
  std::string index;      // read through this slot index (INDEXED BY), e.g. record_k2 (see slot_index)
  bool id_order = false;  // read the primary key in id order, keeping the filters off their indexes
  // The path does not give list order: every match is sorted to find the page (which then reads the matches'
  // row ids only, and the page's bodies afterwards).
  bool sorts = false;
};

// The SQL of a list request and the values to bind to its ?1, ?2, ... in order.
struct ListSql {
  std::string sql;
  std::vector<nlohmann::json> binds;  // strings and numbers only
};

// Builds the SELECT of one page (paged) or of every matching row's body in list order (not paged).
// Throws std::invalid_argument for a key that cannot be named in SQLite's JSON path (parse_list_params
// refuses those in requests; a scope built elsewhere could still carry one).
ListSql build_list_sql(const schema::Resource& res, const ListParams& p, const ListScope& scope,
                       const WarehouseStatusLookup& wh = {}, bool paged = true, const AccessPath& path = {});

// The access path run_list takes for this request (counts through filter indexes when it must choose).
AccessPath choose_list_access_path(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                                   const WarehouseStatusLookup& wh = {});

// The requested page. Throws SQLite::Exception when the replica cannot be read.
ListResult run_list(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                    const ListScope& scope, const WarehouseStatusLookup& wh = {});

// Rows matching the same filters, without paging (for lists that report totals).
std::int64_t count_list(SQLite::Database& db, const schema::Resource& res, const ListParams& p,
                        const ListScope& scope, const WarehouseStatusLookup& wh = {});

// SQLite's EXPLAIN QUERY PLAN of run_list's query, one line per step (diagnostics and tests).
std::vector<std::string> list_query_plan(SQLite::Database& db, const schema::Resource& res,
                                         const ListParams& p, const ListScope& scope,
                                         const WarehouseStatusLookup& wh = {});

// Whether a column key can be named in SQLite's JSON path ($."key" has no escape for '"'; NUL would cut
// the SQL text short).
bool json_key_supported(std::string_view key);

// `json_extract(<column>, '$."<key>"')`: how the list queries read a key that has no key slot. Requires
// json_key_supported(key).
std::string json_key_sql(std::string_view key, std::string_view column = "body");

// `s` as an SQL string literal.
std::string sql_quote(std::string_view s);
// `name` as an SQL identifier: in double quotes (resource names, which some index names hold, have '-'),
// any '"' doubled.
std::string sql_identifier(std::string_view name);

}  // namespace knosc::replica
