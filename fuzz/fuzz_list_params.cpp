// libFuzzer target: a list request's query parameters (filter, search, sort, page, page_size, ...) from
// arbitrary bytes, through parse_list_params and, when they parse, the list query on a small replica.
//
// The input is a raw query string, decoded as the loopback server decodes it (HttpRequest::query_params:
// '&'-separated, percent-escapes and '+'), so every byte value can reach every parameter. Malformed
// requests must come back as a ListError naming the problem, never as an exception or a crash; requests
// that parse must run: the SQL built from them is valid, binds what it names, and the page respects its
// size. An exception escaping here is a finding (libFuzzer reports it as a crash).
//
// The replica is in memory and holds a few rows of two resources (one warehouse-scoped, one not), with
// their expression indexes, so the index access paths are chosen and run too. The input's length picks
// the resource and whether a role's granular filter applies, so either can be reached by any content.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/http_server.hpp"
#include "replica/list_query.hpp"
#include "replica/replica.hpp"
#include "schema/catalog.hpp"

namespace {

using knosc::replica::Replica;
using Json = nlohmann::json;

void load(Replica& rep, const knosc::schema::Resource& res, const std::vector<Json>& rows) {
  Json page = Json::array();
  for (const auto& r : rows)
    page.push_back(r);
  auto cursor = rep.resume_or_begin_pass(res, static_cast<int>(rows.size()) + 1, 1000);
  rep.apply_page(res, cursor, page, 1000);
  rep.ensure_indexes(res);
}

struct Fixture {
  const knosc::schema::Catalog& catalog = knosc::schema::Catalog::builtin();
  Replica rep{":memory:", catalog, Replica::Mode::ReadWrite};
  const knosc::schema::Resource* resources[2] = {&catalog.at("purchase-order"), &catalog.at("forecast")};

  Fixture() {
    load(rep, catalog.at("warehouse-master"),
         {Json{{"id", 1}, {"Warehouse Number", "WH-01"}, {"Warehouse Status", "Active"}},
          Json{{"id", 2}, {"Warehouse Number", "WH-02"}, {"Warehouse Status", "Inactive"}}});
    load(
        rep, catalog.at("purchase-order"),
        {Json{{"id", 1},
              {"PO List Number", "PO-1"},
              {"PO List Order Date", "2024-01-05"},
              {"Supplier Number", "S-1"},
              {"Warehouse Number", "WH-01"},
              {"Quantity", 5}},
         Json{{"id", 2},
              {"PO List Number", "PO-2"},
              {"PO List Order Date", "2024-02-01"},
              {"Supplier Number", "S-2"},
              {"Warehouse Number", "WH-02"},
              {"Quantity", 2.5},
              {"Closed", true}},
         Json{{"id", 3}, {"PO List Number", "PO-3"}, {"PO List Order Date", nullptr}, {"Tags", {"a", "b"}}}});
    load(rep, catalog.at("forecast"),
         {Json{{"id", 7}, {"Forecast List Number", "F-7"}, {"Forecast List Date", "2024-03-01"}},
          Json{{"id", 8}, {"Forecast List Number", 8}, {"Forecast List Date", 20240301}}});
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Built once: libFuzzer ends the process without unwinding.
  static Fixture* fixture = new Fixture();

  knosc::daemon::HttpRequest request;
  request.query.assign(reinterpret_cast<const char*>(data), size);
  const auto parsed = knosc::replica::parse_list_params(request.query_params());
  if (!parsed) {
    const auto& e = parsed.error();
    if (e.status != 400 || e.message.empty() || e.code.empty()) std::abort();
    return 0;
  }
  const knosc::replica::ListParams& p = *parsed;
  if (p.page < 1 || p.page_size < 1 || p.page_size > knosc::replica::kMaxPageSize || p.offset() < 0) {
    std::abort();
  }

  const knosc::schema::Resource& res = *fixture->resources[size % 2];
  knosc::replica::ListScope scope;
  if ((size / 2) % 2 == 1) scope.granular.push_back({"Supplier Number", true, {"S-1", 8}});
  const auto page = knosc::replica::run_list(fixture->rep.db(), res, p, scope);
  const auto total = knosc::replica::count_list(fixture->rep.db(), res, p, scope);
  if (static_cast<std::int64_t>(page.rows.size()) > p.page_size || total < 0 ||
      static_cast<std::int64_t>(page.rows.size()) > total) {
    std::fprintf(stderr, "page of %zu rows, page_size %lld, total %lld\n", page.rows.size(),
                 static_cast<long long>(p.page_size), static_cast<long long>(total));
    std::abort();
  }
  return 0;
}
