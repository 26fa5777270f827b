#pragma once
// Reading one record from Knosc as its get-one shows it, whatever route the resource offers: get-one itself
// ({"data": {...}} or {"data": {"rows": {...}}}), the list filtered by id for resources without get-one
// (warehouses, with both warehouse statuses so an inactive one is found), or, for a line of a flat line
// list, its header's get-one and the line in the header's details.
//
// Threads: the uv loop thread, like the UpstreamSession it calls.

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "schema/catalog.hpp"
#include "sync/retry_policy.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::sync {

struct FetchedRecord {
  Disposition disposition = Disposition::Transient;  // Success, NotFound, or why the read failed
  std::optional<nlohmann::ordered_json> record;      // Success: the record (a line for flat line lists)
  std::optional<nlohmann::ordered_json> parent;      // flat line lists: the header's whole get-one record
  ApiResult result;                                  // the last call's result
};

// `parent_id` is needed for lines of a flat line list (the header to read); ignored otherwise.
void fetch_record(UpstreamSession& upstream, const schema::Catalog& catalog, const schema::Resource& res,
                  const std::string& id, const std::optional<std::string>& parent_id,
                  std::function<void(FetchedRecord)> done);

// Rows of `res` whose keys equal `match` (a Knosc list filter), at most `limit`, with both warehouse
// statuses for warehouse-scoped resources: finding a record by its business key.
void find_records(UpstreamSession& upstream, const schema::Resource& res, const nlohmann::ordered_json& match,
                  int limit,
                  std::function<void(Disposition, std::vector<nlohmann::ordered_json>, ApiResult)> done);

}  // namespace knosc::sync
