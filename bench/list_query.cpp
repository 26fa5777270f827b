// Speed of the loopback's list queries over a large replica: fills a fresh replica with purchase orders
// (default 100,000) across ten warehouses, one of them inactive, as pull passes do, then times typical list
// requests (median and worst of several runs) and prints each query's plan, so a change that stops SQLite
// from using the key slot indexes shows up as numbers.
//
// Usage: bench_list_query [rows] [replica-path]   (the replica file is removed afterwards unless named)

#include "replica/list_query.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "replica/replica.hpp"

using namespace knosc;
using replica::Json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kWarehouses = 10;
const char* const kStatuses[] = {"Open", "Partially Received", "Received", "Closed", "Cancelled"};

std::string warehouse_number(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "WH-%02d", i);
  return buf;
}

void fill(replica::Replica& rep, int rows) {
  const auto& catalog = rep.catalog();
  {
    const auto& wm = catalog.at("warehouse-master");
    Json page = Json::array();
    for (int i = 1; i <= kWarehouses; ++i) {
      page.push_back(Json{{"id", i},
                          {"Warehouse Number", warehouse_number(i)},
                          {"Warehouse Name", "Warehouse " + std::to_string(i)},
                          {"Warehouse Status", i == kWarehouses ? "Inactive" : "Active"}});
    }
    auto cursor = rep.resume_or_begin_pass(wm, 1000, 1);
    rep.apply_page(wm, cursor, page, 1);
  }
  const auto& po = catalog.at("purchase-order");
  std::mt19937 rng(42);
  constexpr int kPage = 1000;
  auto cursor = rep.resume_or_begin_pass(po, kPage, 1);
  for (int first = 1; first <= rows + 1; first += kPage) {
    Json page = Json::array();
    for (int id = first; id < first + kPage && id <= rows; ++id) {
      char date[16];
      std::snprintf(date, sizeof date, "20%02d-%02d-%02d", 22 + static_cast<int>(rng() % 3),
                    1 + static_cast<int>(rng() % 12), 1 + static_cast<int>(rng() % 28));
      const int supplier = 1 + static_cast<int>(rng() % 500);
      page.push_back(Json{{"id", id},
                          {"PO List Number", "PO-" + std::to_string(100000 + id)},
                          {"PO List Document Status", kStatuses[rng() % 5]},
                          {"PO List Order Date", date},
                          {"Supplier Number", "SUP-" + std::to_string(supplier)},
                          {"Supplier Name", "Supplier " + std::to_string(supplier)},
                          {"Warehouse Number", warehouse_number(1 + static_cast<int>(rng() % kWarehouses))},
                          {"PO Total Quantity", static_cast<int>(rng() % 10000)}});
    }
    auto out = rep.apply_page(po, cursor, page, 1);
    cursor = out.next;
    if (out.pass_complete) break;
  }
}

struct Case {
  std::string name;
  std::map<std::string, std::string> query;
  bool count = false;
};

}  // namespace

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 100000;
  const bool keep = argc > 2;
  const std::string path =
      keep ? argv[2] : (std::filesystem::temp_directory_path() / "knosc-bench-list-query.db").string();
  if (!keep) {
    for (const char* suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(path + suffix);
  }

  replica::Replica rep(path, schema::Catalog::builtin(), replica::Replica::Mode::ReadWrite);
  const auto& po = rep.catalog().at("purchase-order");
  if (rep.count(po) < rows) {
    const auto t0 = Clock::now();
    fill(rep, rows);
    std::printf("filled %d purchase orders in %.1f s\n", rows,
                std::chrono::duration<double>(Clock::now() - t0).count());
  }

  const std::vector<Case> cases = {
      {"default sort, page 1", {}},
      {"default sort, page 100", {{"page", "100"}}},
      {"status = Open, sort by date", {{"filter", R"({"PO List Document Status": "Open"})"}}},
      {"status = Open, sort by date desc",
       {{"filter", R"({"PO List Document Status": "Open"})"},
        {"sort", R"({"key": "PO List Order Date", "type": "Descending"})"}}},
      {"status any-of 2, sort by supplier",
       {{"filter", R"({"PO List Document Status": ["Open", "Closed"]})"},
        {"sort", R"({"key": "Supplier Name", "type": "Ascending"})"}}},
      {"supplier number = SUP-7 (about 200 rows)", {{"filter", R"({"Supplier Number": "SUP-7"})"}}},
      {"one PO number", {{"filter", R"({"PO List Number": "PO-150000"})"}}},
      {"date range of a month",
       {{"filter", R"({"PO List Order Date": {"from": "2023-03-01", "to": "2023-03-31"}})"}}},
      {"search include/exclude",
       {{"search", R"({"filters": {"include": {"Warehouse Number": ["WH-01", "WH-02"]},
                                     "exclude": {"PO List Document Status": ["Closed"]}}})"}}},
      {"Warehouse Status = Inactive", {{"filter", R"({"Warehouse Status": "Inactive"})"}}},
      {"page_size 1000", {{"page_size", "1000"}}},
      {"count, status = Open", {{"filter", R"({"PO List Document Status": "Open"})"}}, true},
      {"count, all", {}, true},
  };

  constexpr int kRuns = 15;
  for (const auto& c : cases) {
    auto parsed = replica::parse_list_params(c.query);
    if (!parsed) {
      std::printf("%s: %s\n", c.name.c_str(), parsed.error().message.c_str());
      return 1;
    }
    const replica::ListScope scope;
    std::vector<double> ms;
    std::size_t n = 0;
    for (int i = 0; i < kRuns; ++i) {
      const auto t0 = Clock::now();
      if (c.count) {
        n = static_cast<std::size_t>(replica::count_list(rep.db(), po, *parsed, scope));
      } else {
        n = replica::run_list(rep.db(), po, *parsed, scope).rows.size();
      }
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%-42s %6zu %s  median %7.2f ms  worst %7.2f ms\n", c.name.c_str(), n,
                c.count ? "total" : "rows ", ms[ms.size() / 2], ms.back());
    if (!c.count) {
      for (const auto& step : replica::list_query_plan(rep.db(), po, *parsed, scope))
        std::printf("    %s\n", step.c_str());
    }
  }
  if (!keep) {
    for (const char* suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(path + suffix);
  }
  return 0;
}
