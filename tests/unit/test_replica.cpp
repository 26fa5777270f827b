#include <SQLiteCpp/Database.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <random>

#include "replica/clock.hpp"
#include "replica/content_hash.hpp"
#include "replica/key_slots.hpp"
#include "replica/migrations.hpp"
#include "replica/outbox.hpp"
#include "replica/record_view.hpp"
#include "replica/replica.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using replica::Json;
using replica::RecordId;
using replica::Replica;

namespace {

// A fresh directory per test, removed afterwards.
using knosc::test::TempDir;

Json item(std::int64_t id, const std::string& desc = "widget") {
  Json j;
  j["id"] = id;
  j["Item Number"] = "ITEM-" + std::to_string(id);
  j["Item Description"] = desc;
  return j;
}

Json rows_of(std::initializer_list<Json> rows) {
  Json a = Json::array();
  for (const auto& r : rows)
    a.push_back(r);
  return a;
}

const schema::Resource& items() {
  return schema::Catalog::builtin().at("item-master");
}

// Runs a whole pass over `pages` (each a rows array), returning the last outcome.
replica::PageOutcome run_pass(Replica& rep, const schema::Resource& res, const std::vector<Json>& pages,
                              int page_size, std::int64_t now = 1000) {
  auto cursor = rep.resume_or_begin_pass(res, page_size, now);
  replica::PageOutcome out;
  for (const auto& page : pages) {
    out = rep.apply_page(res, cursor, page, now);
    cursor = out.next;
    if (out.pass_complete) break;
  }
  return out;
}

std::vector<std::int64_t> candidate_ids(Replica& rep, const schema::Resource& res) {
  std::vector<std::int64_t> ids;
  for (const auto& c : rep.delete_candidates(res, 1000))
    ids.push_back(std::get<std::int64_t>(c.id));
  return ids;
}

}  // namespace

TEST_CASE("migrations: a new replica reaches the newest version; reopening changes nothing") {
  TempDir dir;
  {
    Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
    CHECK(replica::schema_version(rep.db()) == static_cast<int>(replica::builtin_migrations().size()));
    CHECK(rep.db().execAndGet("PRAGMA journal_mode").getString() == "wal");
  }
  SQLite::Database db(dir.file("r.db"), SQLite::OPEN_READWRITE);
  CHECK(replica::migrate(db, replica::builtin_migrations()) ==
        static_cast<int>(replica::builtin_migrations().size()));
}

TEST_CASE("migrations: each step commits with its version or not at all") {
  TempDir dir;
  SQLite::Database db(dir.file("m.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  std::vector<std::string_view> steps = {"CREATE TABLE a (x INTEGER);",
                                         "CREATE TABLE b (y INTEGER); SELECT * FROM nowhere;"};
  CHECK_THROWS(replica::migrate(db, steps));
  CHECK(replica::schema_version(db) == 1);  // step 1 committed, step 2 rolled back whole
  CHECK(db.tableExists("a"));
  CHECK_FALSE(db.tableExists("b"));
  steps[1] = "CREATE TABLE b (y INTEGER);";
  CHECK(replica::migrate(db, steps) == 1);
  CHECK(replica::schema_version(db) == 2);
}

TEST_CASE("migrations: a replica from a newer knosc-syncd is refused with a clear message") {
  TempDir dir;
  {
    SQLite::Database db(dir.file("new.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 999");
  }
  try {
    Replica rep(dir.file("new.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
    FAIL("opened");
  } catch (const replica::SchemaTooNew& e) {
    CHECK_THAT(e.what(),
               Catch::Matchers::Contains("version 999") && Catch::Matchers::Contains("knows only up to"));
  }
}

TEST_CASE("content hash depends on content only") {
  Json a = Json::parse(R"({"id": 1, "Qty": 5, "Name": "x"})");
  Json b = Json::parse(R"({ "id":1,"Qty":5.0,"Name":"x" })");
  CHECK(replica::content_hash(a) == replica::content_hash(b));  // formatting and 5 vs 5.0 do not matter
  CHECK(replica::content_hash(a) !=
        replica::content_hash(Json::parse(R"({"id": 1, "Qty": 6, "Name": "x"})")));
  CHECK(replica::content_hash(Json::parse(R"({"a":"bc"})")) !=
        replica::content_hash(Json::parse(R"({"ab":"c"})")));
  CHECK(replica::content_hash(Json::parse(R"({"a":null})")) !=
        replica::content_hash(Json::parse(R"({"a":""})")));
  CHECK(replica::content_hash(Json::parse(R"([1,[2]])")) != replica::content_hash(Json::parse(R"([[1],2])")));
}

TEST_CASE("a pass writes new and changed rows only; an unchanged pass writes no row") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& res = items();
  auto out = run_pass(rep, res, {rows_of({item(1), item(2)}), rows_of({item(3)})}, 2);
  CHECK(out.pass_complete);
  CHECK(rep.count(res) == 3);

  const int changes_before = rep.db().getTotalChanges();
  auto cursor = rep.resume_or_begin_pass(res, 2, 2000);
  auto p1 = rep.apply_page(res, cursor, rows_of({item(1), item(2)}), 2000);
  auto p2 = rep.apply_page(res, p1.next, rows_of({item(3)}), 2000);
  CHECK(p1.written + p2.written == 0);
  CHECK(p2.pass_complete);
  // Only the checkpoint row is written: begin, two pages.
  CHECK(rep.db().getTotalChanges() - changes_before == 3);

  out = run_pass(rep, res, {rows_of({item(1), item(2, "changed")}), rows_of({item(3)})}, 2);
  CHECK(rep.row(res, RecordId{std::int64_t{2}})->at("Item Description") == "changed");
  CHECK(rep.status().resources.size() > 0);
}

TEST_CASE("rows kept as upstream sent them, custom columns and key order included") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  Json row = Json::parse(
      R"({"id": 7, "Zeta": 1, "Item Number": "ITEM-7", "My Custom Field": "custom-value-here", "Alpha": null})");
  run_pass(rep, items(), {rows_of({row})}, 10);
  CHECK(rep.row(items(), RecordId{std::int64_t{7}})->dump() == row.dump());
}

TEST_CASE("bodies are stored byte for byte as Json::dump writes them") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  std::vector<Json> rows = {
      Json::parse(R"({"id": 1, "s": "plain", "esc": "q\"b\\s/\b\f\n\r\t\u0001\u001f\u007f", "e": "",
                      "i": -42, "u": 18446744073709551615, "f": [1.0, 0.1, -0.0, 1e300, 2.5e-8, 123456789.125],
                      "t": true, "n": null, "o": {}, "a": [], "deep": {"x": [{"y": [null, false]}]}})"),
      Json::parse(R"({"id": 2, "Item Description": "Caf\u00e9 \u2014 \ud83d\ude00", "k\u00e9y": 1})"),
      Json::parse(
          R"({"id": 3, "Item Number": "ITEM-3", "Item Description": "x", "big": -9223372036854775808})"),
  };
  Json page = Json::array();
  for (const auto& r : rows)
    page.push_back(r);
  run_pass(rep, items(), {page}, 10);
  SQLite::Statement q(rep.db(), "SELECT body FROM record WHERE resource = 'item-master' ORDER BY id");
  for (const auto& r : rows) {
    REQUIRE(q.executeStep());
    CHECK(q.getColumn(0).getString() == r.dump());
  }
}

TEST_CASE("a restart resumes the pass at the next page; a new page size starts over") {
  TempDir dir;
  const auto& res = items();
  {
    Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
    auto c = rep.resume_or_begin_pass(res, 2, 100);
    CHECK_FALSE(c.resumed);
    auto o = rep.apply_page(res, c, rows_of({item(1), item(2)}), 100);
    CHECK_FALSE(o.pass_complete);
  }
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  auto c = rep.resume_or_begin_pass(res, 2, 200);
  CHECK(c.resumed);
  CHECK(c.page == 2);
  CHECK(c.last_id == std::optional<RecordId>(RecordId{std::int64_t{2}}));
  // Applying a page out of turn is refused rather than corrupting the checkpoint.
  auto stale = c;
  stale.page = 5;
  CHECK_THROWS_AS(rep.apply_page(res, stale, rows_of({item(9)}), 200), std::logic_error);

  auto other = rep.resume_or_begin_pass(res, 3, 300);
  CHECK_FALSE(other.resumed);
  CHECK(other.page == 1);
  CHECK(other.generation == c.generation + 1);
}

TEST_CASE("rows a pass misses become deletion candidates, within the range each page covered") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& res = items();
  run_pass(rep, res, {rows_of({item(1), item(2)}), rows_of({item(3), item(4)}), rows_of({item(5)})}, 2);
  REQUIRE(candidate_ids(rep, res).empty());

  SECTION("a row deleted upstream") {
    run_pass(rep, res, {rows_of({item(1), item(2)}), rows_of({item(4), item(5)}), rows_of({})}, 2);
    CHECK(candidate_ids(rep, res) == std::vector<std::int64_t>{3});
  }
  SECTION("rows shifting between pages while someone deletes row 1: row 3 is skipped by the paging") {
    // Page 1 was read before the delete, page 2 after: row 3 moved into page 1's offsets and was never
    // listed.
    run_pass(rep, res, {rows_of({item(1), item(2)}), rows_of({item(4), item(5)}), rows_of({})}, 2);
    auto c = candidate_ids(rep, res);
    CHECK(c == std::vector<std::int64_t>{3});
    // It is only a candidate: the row stays until a GET says NotFound.
    CHECK(rep.count(res) == 5);
    rep.resolve_candidate(res, RecordId{std::int64_t{3}}, false);
    CHECK(rep.count(res) == 5);
    CHECK(candidate_ids(rep, res).empty());
  }
  SECTION("rows at the end of the list") {
    run_pass(rep, res, {rows_of({item(1), item(2)}), rows_of({item(3)})}, 2);
    CHECK(candidate_ids(rep, res) == std::vector<std::int64_t>{4, 5});
    rep.resolve_candidate(res, RecordId{std::int64_t{4}}, true);
    CHECK(rep.count(res) == 4);
    CHECK_FALSE(rep.row(res, RecordId{std::int64_t{4}}).has_value());
  }
  SECTION("an empty list makes every row a candidate, none deleted yet") {
    run_pass(rep, res, {rows_of({})}, 2);
    CHECK(candidate_ids(rep, res).size() == 5);
    CHECK(rep.count(res) == 5);
  }
}

TEST_CASE("deleting a header removes its flat lines with it") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& po = schema::Catalog::builtin().at("purchase-order");
  const auto& lines = schema::Catalog::builtin().at("purchase-order-details");
  run_pass(rep, po, {rows_of({Json::parse(R"({"id": 42, "PO List Number": "PO-1"})")})}, 10);
  run_pass(rep, lines,
           {rows_of({Json::parse(R"({"id": 101, "Purchase Order Id": 42})"),
                     Json::parse(R"({"id": 102, "Purchase Order Id": 42})"),
                     Json::parse(R"({"id": 103, "Purchase Order Id": 43})")})},
           10);
  REQUIRE(rep.count(lines) == 3);
  run_pass(rep, po, {rows_of({})}, 10);
  REQUIRE(rep.delete_candidates(po, 10).size() == 1);
  rep.resolve_candidate(po, RecordId{std::int64_t{42}}, true);
  CHECK(rep.count(po) == 0);
  CHECK(rep.count(lines) == 1);
  auto cands = rep.delete_candidates(lines, 10);
  CHECK(cands.empty());
}

TEST_CASE("nested parts are due for new and changed rows and on their refresh period") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& mo = schema::Catalog::builtin().at("manufacturing-order");
  auto header = [](std::int64_t id, const std::string& status) {
    Json j;
    j["id"] = id;
    j["MO List Number"] = "MO-" + std::to_string(id);
    j["MO List Document Status"] = status;
    return j;
  };
  run_pass(rep, mo, {rows_of({header(1, "Open"), header(2, "Open")})}, 10, 1000);
  CHECK(rep.nested_due(mo, 1000 - 24 * 3600, 10).size() == 2);
  Json rec = header(1, "Open");
  rec["details"] = Json::parse(R"([{"id": 301, "MO Details Quantity": 500}])");
  CHECK(rep.store_nested(mo, RecordId{std::int64_t{1}}, rec, 1000));
  CHECK_FALSE(rep.store_nested(mo, RecordId{std::int64_t{1}}, rec, 1001));  // same content: no change
  rep.defer_nested(mo, RecordId{std::int64_t{2}}, 1000);
  CHECK(rep.nested_due(mo, 1002 - 24 * 3600, 10).empty());
  // A changed header makes its lines due again; so does the refresh period.
  run_pass(rep, mo, {rows_of({header(1, "Closed"), header(2, "Open")})}, 10, 1003);
  auto due = rep.nested_due(mo, 1004 - 24 * 3600, 10);
  REQUIRE(due.size() == 1);
  CHECK(due[0] == RecordId{std::int64_t{1}});
  CHECK(rep.nested_due(mo, 1000 + 3600, 10).size() == 2);
}

TEST_CASE("string ids (issue-tracker tickets) work end to end") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& t = schema::Catalog::builtin().at("issue-tracker-tickets");
  run_pass(rep, t,
           {rows_of({Json::parse(R"({"id": "TKT-001", "Title": "a"})"),
                     Json::parse(R"({"id": "TKT-002", "Title": "b"})")})},
           10);
  run_pass(rep, t, {rows_of({Json::parse(R"({"id": "TKT-001", "Title": "a"})")})}, 10);
  auto c = rep.delete_candidates(t, 10);
  REQUIRE(c.size() == 1);
  CHECK(std::get<std::string>(c[0].id) == "TKT-002");
  CHECK(c[0].body.at("Title") == "b");
}

TEST_CASE("ids compare in Knosc's list order: integers first, strings naturally") {
  using replica::upstream_id_less;
  const auto s = [](const char* v) { return RecordId{std::string(v)}; };
  const auto i = [](std::int64_t v) { return RecordId{v}; };
  CHECK(upstream_id_less(i(-5), i(2)));
  CHECK(upstream_id_less(i(999), s("TKT-001")));
  CHECK_FALSE(upstream_id_less(s("TKT-001"), i(999)));
  CHECK(upstream_id_less(s("TKT-001"), s("TKT-002")));
  CHECK(upstream_id_less(s("TKT-999"), s("TKT-1000")));
  CHECK_FALSE(upstream_id_less(s("TKT-1000"), s("TKT-999")));
  CHECK(upstream_id_less(s("TKT-099"), s("TKT-100")));
  CHECK(upstream_id_less(s("A-10"), s("B-9")));      // the text before the number decides first
  CHECK(upstream_id_less(s("TKT-9"), s("TKT-9a")));  // a prefix comes first
  CHECK(upstream_id_less(s("TKT-01"), s("TKT-1")));  // equal numbers: bytes decide, so the order stays strict
  CHECK_FALSE(upstream_id_less(s("TKT-1"), s("TKT-01")));
  CHECK_FALSE(upstream_id_less(s("TKT-7"), s("TKT-7")));

  // A strict weak order over a mixed set, as std::sort needs: sorting any permutation gives one sequence.
  std::vector<RecordId> ids = {s("TKT-1000"), s("TKT-999"), s("TKT-001"), s("TKT-01"), s("TKT-1"),
                               s("TKT-10"),   s("TKT-2a"),  s("TKT-2"),   s("TKT-"),   s("TKT-x"),
                               s("9"),        s("10"),      s("a"),       i(3),        i(-1)};
  std::sort(ids.begin(), ids.end(), upstream_id_less);
  const std::vector<RecordId> want = {i(-1),        i(3),         s("9"),        s("10"),    s("TKT-"),
                                      s("TKT-001"), s("TKT-01"),  s("TKT-1"),    s("TKT-2"), s("TKT-2a"),
                                      s("TKT-10"),  s("TKT-999"), s("TKT-1000"), s("TKT-x"), s("a")};
  CHECK(ids == want);
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(ids.begin(), ids.end(), rng);
    std::sort(ids.begin(), ids.end(), upstream_id_less);
    CHECK(ids == want);
  }
}

TEST_CASE("a pass over ticket ids past TKT-999 misses nothing and checks nothing") {
  // Knosc lists tickets by id in the order they were numbered: TKT-999 before TKT-1000. In SQLite's bytewise
  // order TKT-1000 sorts before TKT-999, and page ranges taken in that order made every pass record hundreds
  // of listed tickets as deletion candidates, each then fetched upstream for nothing.
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& t = schema::Catalog::builtin().at("issue-tracker-tickets");
  const auto ticket = [](int n) {
    char id[16];
    std::snprintf(id, sizeof id, "TKT-%03d", n);
    return Json{{"id", id}, {"Title", "t" + std::to_string(n)}};
  };
  // Pages of 4 over TKT-995 .. TKT-1006, in Knosc's order; the last page is short.
  const auto pages = [&](int skip) {
    std::vector<Json> out;
    Json page = Json::array();
    for (int n = 995; n <= 1006; ++n) {
      if (n == skip) continue;
      page.push_back(ticket(n));
      if (page.size() == 4) {
        out.push_back(page);
        page = Json::array();
      }
    }
    out.push_back(page);
    return out;
  };
  const auto all = pages(0);
  REQUIRE(all.size() == 4);  // 4 + 4 + 4 + an empty last page

  auto out = run_pass(rep, t, all, 4, 1000);
  CHECK(out.pass_complete);
  CHECK(rep.count(t) == 12);
  CHECK(rep.delete_candidates(t, 100).empty());

  // The same tickets again: nothing written, nothing to check.
  auto cursor = rep.resume_or_begin_pass(t, 4, 2000);
  int written = 0;
  for (const auto& page : all) {
    out = rep.apply_page(t, cursor, page, 2000);
    written += out.written;
    CHECK(out.missed == 0);
    cursor = out.next;
  }
  CHECK(out.pass_complete);
  CHECK(written == 0);
  CHECK(rep.delete_candidates(t, 100).empty());

  // A ticket the pass does not list is the one candidate, whichever page it fell on.
  for (const int gone : {999, 1000, 1006}) {
    INFO(gone);
    run_pass(rep, t, pages(gone), 4, 3000);
    const auto c = rep.delete_candidates(t, 100);
    REQUIRE(c.size() == 1);
    CHECK(std::get<std::string>(c[0].id) == ticket(gone).at("id").get<std::string>());
    rep.resolve_candidate(t, c[0].id, false);
  }
}

TEST_CASE("written rows carry their indexed keys in the key slots; the planner uses the slot indexes") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  Json a = item(1);
  a["Item Type"] = "Component";
  run_pass(rep, items(), {rows_of({a, item(2)})}, 10);
  // item-master: Item Number (default sort), then Item Description, Item Type, Item Status (filterable).
  SQLite::Statement q(rep.db(),
                      "SELECT k1, k2, k3, k4, k5 FROM record WHERE resource = 'item-master' ORDER BY id");
  REQUIRE(q.executeStep());
  CHECK(q.getColumn(0).getString() == "ITEM-1");
  CHECK(q.getColumn(1).getString() == "widget");
  CHECK(q.getColumn(2).getString() == "Component");
  CHECK(q.getColumn(3).isNull());  // absent
  CHECK(q.getColumn(4).isNull());  // unused slot
  REQUIRE(q.executeStep());
  CHECK(q.getColumn(2).isNull());
  q.reset();

  // A changed row gets its new values.
  a["Item Type"] = "Assembly";
  run_pass(rep, items(), {rows_of({a, item(2)})}, 10, 2000);
  CHECK(rep.db().execAndGet("SELECT k3 FROM record WHERE resource = 'item-master' AND id = 1").getString() ==
        "Assembly");

  const int expression_indexes =
      rep.db()
          .execAndGet(
              "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'rx\\_%' ESCAPE '\\'")
          .getInt();
  CHECK(expression_indexes == 0);
  std::string plan;
  SQLite::Statement p(rep.db(), "EXPLAIN QUERY PLAN SELECT body FROM record WHERE " +
                                    replica::resource_terms(schema::Catalog::builtin().at("item-master")) +
                                    " AND k3 = 'Component' ORDER BY id");
  while (p.executeStep())
    plan += p.getColumn(3).getString() + "\n";
  CHECK_THAT(plan, Catch::Matchers::Contains("USING INDEX record_k3 (resource=? AND k3=?)"));
  CHECK_THAT(plan, !Catch::Matchers::Contains("TEMP B-TREE"));
}

TEST_CASE("a replica written by schema version 1 is upgraded in place and keeps its data") {
  TempDir dir;
  const auto copy = dir.file("replica.sqlite3");
  std::filesystem::copy_file(std::string(KNOSC_TEST_DATA_DIR) + "/replica-v1.sqlite3", copy);
  {
    SQLite::Database raw(copy, SQLite::OPEN_READONLY);
    REQUIRE(replica::schema_version(raw) == 1);
  }
  Replica rep(copy, schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  CHECK(replica::schema_version(rep.db()) == static_cast<int>(replica::builtin_migrations().size()));
  const auto& catalog = schema::Catalog::builtin();
  CHECK(rep.count(catalog.at("unit-master")) == 8);
  CHECK(rep.count(catalog.at("warehouse-master")) == 10);
  CHECK(rep.count(catalog.at("bill-of-materials")) == 20);
  for (const char* table :
       {"list_meta", "pending_record", "outbox", "local_user", "local_session", "job", "conflict"})
    CHECK(rep.db().tableExists(table));
  const auto st = rep.status();
  bool found = false;
  for (const auto& r : st.resources) {
    if (r.name != "bill-of-materials") continue;
    found = true;
    CHECK(r.last_complete_at.has_value());
    CHECK(r.nested_due == 0);  // nested parts fetched by version 1 are still there
  }
  CHECK(found);
  // The next pass over the same rows writes nothing: hashes from version 1 are still valid.
  const auto& units = catalog.at("unit-master");
  auto cursor = rep.resume_or_begin_pass(units, 50, 5000);
  Json rows = Json::array();
  SQLite::Statement q(rep.db(), "SELECT body FROM record WHERE resource = 'unit-master' ORDER BY id");
  while (q.executeStep())
    rows.push_back(Json::parse(q.getColumn(0).getString()));
  auto out = rep.apply_page(units, cursor, rows, 5000);
  CHECK(out.written == 0);
  CHECK(out.pass_complete);

  // Version 1's expression indexes are gone, and the rows it wrote have their key slots filled:
  // warehouse-master keeps Warehouse Number in k1, Warehouse Name in k2, Warehouse Status in k3.
  CHECK(rep.db()
            .execAndGet(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'rx\\_%' ESCAPE '\\'")
            .getInt() == 0);
  CHECK(rep.db()
            .execAndGet("SELECT COUNT(*) FROM record WHERE resource = 'warehouse-master' AND "
                        "k1 IS json_extract(body, '$.\"Warehouse Number\"') AND "
                        "k2 IS json_extract(body, '$.\"Warehouse Name\"') AND "
                        "k3 IS json_extract(body, '$.\"Warehouse Status\"') AND k1 IS NOT NULL")
            .getInt() == 10);
  CHECK(rep.db()
            .execAndGet("SELECT COUNT(*) FROM record WHERE resource = 'unit-master' AND "
                        "k1 = json_extract(body, '$.\"Unit Code\"')")
            .getInt() == 8);
  CHECK(rep.db().execAndGet("SELECT COUNT(*) FROM record WHERE k1 IS NULL").getInt() == 0);
  CHECK(rep.db()
            .execAndGet("SELECT group_concat(key, '|') FROM (SELECT key FROM key_slot "
                        "WHERE resource = 'warehouse-master' ORDER BY slot)")
            .getString() == "Warehouse Number|Warehouse Name|Warehouse Status");
  // Every row holds its resource's layout, so the partial indexes hold the rows their resources need.
  for (const char* name : {"warehouse-master", "unit-master", "bill-of-materials"}) {
    INFO(name);
    const auto layout = replica::row_layout(catalog.at(name));
    SQLite::Statement held(
        rep.db(),
        "SELECT COUNT(*) FROM record WHERE resource = ?1 AND slot_count = ?2 AND nested_parts = ?3");
    held.bind(1, name);
    held.bind(2, layout.slot_count);
    held.bind(3, static_cast<int>(layout.nested_parts));
    held.executeStep();
    CHECK(held.getColumn(0).getInt64() == rep.count(catalog.at(name)));
  }
  CHECK(replica::row_layout(catalog.at("bill-of-materials")).nested_parts);
  CHECK(replica::row_layout(catalog.at("warehouse-master")).slot_count == 3);
  CHECK(rep.nested_due(catalog.at("bill-of-materials"), 4'000'000'000, 100).size() == 20);
}

TEST_CASE("list headers are kept per resource and rewritten only when they change") {
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  CHECK_FALSE(rep.list_headers(items()).has_value());
  Json h = Json::parse(R"([{"key": "Item Number", "format": "string-link"}])");
  rep.store_list_headers(items(), h, 10);
  const int before = rep.db().getTotalChanges();
  rep.store_list_headers(items(), h, 20);
  CHECK(rep.db().getTotalChanges() == before);
  h.push_back(Json::parse(R"({"key": "My Custom Field", "format": "string"})"));
  rep.store_list_headers(items(), h, 30);
  CHECK(rep.list_headers(items()) == h);
}

TEST_CASE("a pass keeps local versions of pending records and sets upstream's aside") {
  TempDir dir;
  Replica rep(dir.file("replica.sqlite3"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& res = items();
  run_pass(rep, res, {rows_of({item(1), item(2), item(3)})}, 10);

  // Item 2 edited locally, item -1 created locally: both pending, as the outbox leaves them.
  rep.db().exec(
      "UPDATE record SET body = '{\"id\":2,\"Item Number\":\"ITEM-2\",\"Item Description\":\"local\"}' "
      "WHERE resource = 'item-master' AND id = 2");
  rep.db().exec(
      "INSERT INTO record (resource, id, body, body_hash, updated_at) VALUES ('item-master', -1, "
      "'{\"id\":-1,\"Item Number\":\"NEW-1\"}', 7, 1000)");
  rep.db().exec(
      "INSERT INTO pending_record (resource, id, since) VALUES ('item-master', 2, 1000), "
      "('item-master', -1, 1000)");
  CHECK(rep.is_pending(res, RecordId{std::int64_t{2}}));
  CHECK_FALSE(rep.is_pending(res, RecordId{std::int64_t{1}}));

  SECTION("on a single page") {
    auto out = run_pass(rep, res, {rows_of({item(1), item(2, "upstream"), item(3)})}, 10, 2000);
    CHECK(out.written == 0);
    CHECK(out.missed == 0);
  }
  SECTION("across pages, the local create below every upstream id") {
    auto out = run_pass(rep, res, {rows_of({item(1), item(2, "upstream")}), rows_of({item(3)})}, 2, 2000);
    CHECK(out.missed == 0);
  }
  CHECK(candidate_ids(rep, res).empty());
  CHECK(rep.row(res, RecordId{std::int64_t{2}})->at("Item Description") == "local");
  CHECK(rep.row(res, RecordId{std::int64_t{-1}}).has_value());
  SQLite::Statement q(rep.db(), "SELECT upstream_body, seen_at FROM pending_record WHERE id = 2");
  REQUIRE(q.executeStep());
  CHECK(Json::parse(q.getColumn(0).getString()).at("Item Description") == "upstream");
  CHECK(q.getColumn(1).getInt64() == 2000);
}

TEST_CASE("a deletion check does not remove a record that became pending") {
  TempDir dir;
  Replica rep(dir.file("replica.sqlite3"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& res = items();
  run_pass(rep, res, {rows_of({item(1), item(2)})}, 10);
  run_pass(rep, res, {rows_of({item(1)})}, 10);
  REQUIRE(candidate_ids(rep, res) == std::vector<std::int64_t>{2});
  rep.db().exec("INSERT INTO pending_record (resource, id, since) VALUES ('item-master', 2, 1000)");
  rep.resolve_candidate(res, RecordId{std::int64_t{2}}, true);
  CHECK(rep.row(res, RecordId{std::int64_t{2}}).has_value());
  CHECK(candidate_ids(rep, res).empty());
  rep.clear_pending(res, RecordId{std::int64_t{2}});
  CHECK_FALSE(rep.is_pending(res, RecordId{std::int64_t{2}}));
}

TEST_CASE("a local edit is stamped with the time of its commit and the email of the user who made it") {
  // Pusher::resolve retries a rejected edit as a new local edit, without a tool's request around it: the
  // stamps Knosc would set (`Updated At`, `Created By`) come from the commit's time and the user's cached
  // profile, never from an empty request field.
  TempDir dir;
  Replica rep(dir.file("r.db"), schema::Catalog::builtin(), Replica::Mode::ReadWrite);
  const auto& sc = schema::Catalog::builtin().at("scenario-analysis");
  run_pass(rep, sc, {rows_of({Json::parse(R"({"id": 7, "Scenario Name": "Q2", "Scenario Status": "Draft",
                                     "Created At": "2024-03-01T10:00:00Z", "Updated At": "2024-03-05T14:00:00Z",
                                     "Created By": "jane.doe@acme.com"})")})},
           10);
  {
    SQLite::Statement ins(
        rep.db(),
        "INSERT INTO local_user (username, kdf, iterations, salt, hash, profile, verified_at) "
        "VALUES ('ana@plant.example', 'pbkdf2-sha256', 1, x'00', x'00', ?1, 0)");
    ins.bind(1, R"({"User Email": "ana.lopez@plant.example"})");
    ins.exec();
  }
  CHECK(replica::local_user_email(rep, "ana@plant.example") == "ana.lopez@plant.example");
  CHECK(replica::local_user_email(rep, "nobody@plant.example").empty());

  constexpr std::int64_t kCommit = 1'800'000'000;  // 2027-01-15T08:00:00Z
  const Json update = {{"Scenario Status", "Active"}};
  replica::EditRequest put;
  put.method = "PUT";
  put.path = {"scenario-analysis", "7"};
  put.body = &update;
  put.user_email = replica::local_user_email(rep, "ana@plant.example");
  auto w = replica::write_locally(rep, put, "ana@plant.example", kCommit);
  REQUIRE(std::holds_alternative<replica::EditPlan>(w.outcome));
  auto rec = replica::compose_record(rep, sc, RecordId{std::int64_t{7}});
  REQUIRE(rec);
  CHECK(rec->at("Updated At") == "2027-01-15T08:00:00Z");
  CHECK(rec->at("Created At") == "2024-03-01T10:00:00Z");
  CHECK(rec->at("Created By") == "jane.doe@acme.com");

  const Json create = {{"Scenario Name", "Q3"}, {"Scenario Status", "Draft"}};
  replica::EditRequest post;
  post.method = "POST";
  post.path = {"scenario-analysis"};
  post.body = &create;
  post.user_email = replica::local_user_email(rep, "ana@plant.example");
  auto c = replica::write_locally(rep, post, "ana@plant.example", kCommit + 60);
  const auto* plan = std::get_if<replica::EditPlan>(&c.outcome);
  REQUIRE(plan);
  auto made = replica::compose_record(rep, sc, plan->id);
  REQUIRE(made);
  CHECK(made->at("Created At") == "2027-01-15T08:01:00Z");
  CHECK(made->at("Updated At") == "2027-01-15T08:01:00Z");
  CHECK(made->at("Created By") == "ana.lopez@plant.example");
  CHECK(replica::iso8601_utc(0) == "1970-01-01T00:00:00Z");
}

TEST_CASE("outbox states: stored names round-trip, unknown names are not taken for a state") {
  using replica::OutboxState;
  for (auto s : {OutboxState::Queued, OutboxState::Conflict, OutboxState::Rejected, OutboxState::Refused,
                 OutboxState::Done, OutboxState::Dropped}) {
    INFO(replica::to_string(s));
    CHECK(replica::outbox_state_from(replica::to_string(s)) == s);
  }
  // The names earlier builds wrote, which replicas on disk hold.
  CHECK(replica::outbox_state_from("queued") == OutboxState::Queued);
  CHECK(replica::outbox_state_from("done") == OutboxState::Done);
  CHECK_FALSE(replica::outbox_state_from("sending"));
  CHECK_FALSE(replica::outbox_state_from("Queued"));
}
