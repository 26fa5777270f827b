#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <future>

#include "daemon/response_cache.hpp"
#include "replica/change_feed.hpp"
#include "replica/replica.hpp"
#include "replica/writer.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using daemon::CachedAnswer;
using daemon::HttpResponse;
using daemon::ResponseCache;
using replica::ChangeFeed;
using replica::Replica;

namespace {

const schema::Catalog& catalog() {
  return schema::Catalog::builtin();
}

std::size_t index_of(const ChangeFeed& feed, const char* resource) {
  auto i = feed.index_of(resource);
  REQUIRE(i.has_value());
  return *i;
}

struct Fixture {
  test::TempDir dir;
  Replica rep{dir.file("replica.sqlite3"), catalog(), Replica::Mode::ReadWrite};
  ChangeFeed feed{catalog()};
  Fixture() { feed.watch(rep.db()); }

  std::uint64_t gen(const char* resource) const { return feed.generation(index_of(feed, resource)); }
  void sql(const std::string& text) { rep.db().exec(text); }
};

CachedAnswer answer(const std::string& body, daemon::Generations read_at) {
  return CachedAnswer{HttpResponse::json(200, body), std::nullopt, std::move(read_at)};
}

}  // namespace

TEST_CASE("change feed: a committed row change bumps only its resource, after publish", "[change_feed]") {
  Fixture f;
  const auto items = f.gen("item-master");
  const auto suppliers = f.gen("supplier-master");
  f.sql(
      "INSERT INTO record (resource, id, body, body_hash, updated_at) "
      "VALUES ('item-master', 1, '{\"id\":1}', 1, 0)");
  // Published as the statement's own transaction committed.
  CHECK(f.gen("item-master") == items + 1);
  f.feed.publish();
  CHECK(f.gen("item-master") == items + 1);
  CHECK(f.gen("supplier-master") == suppliers);
  // Nothing changed since: publishing again bumps nothing.
  f.feed.publish();
  CHECK(f.gen("item-master") == items + 1);

  SECTION("updates and deletes count too") {
    f.sql("UPDATE record SET body = '{\"id\":1,\"x\":2}' WHERE resource = 'item-master' AND id = 1");
    f.feed.publish();
    CHECK(f.gen("item-master") == items + 2);
    f.sql("DELETE FROM record WHERE resource = 'item-master'");
    f.feed.publish();
    CHECK(f.gen("item-master") == items + 3);
  }
  SECTION("a statement that changes no row bumps nothing") {
    f.sql("UPDATE record SET body = 'x' WHERE resource = 'supplier-master'");
    f.feed.publish();
    CHECK(f.gen("supplier-master") == suppliers);
  }
}

TEST_CASE("change feed: record rows written under RecordsOf count for the resource it names",
          "[change_feed]") {
  Fixture f;
  const auto items = f.gen("item-master");
  const auto suppliers = f.gen("supplier-master");
  const auto units = f.gen("unit-master");
  {
    const std::string name = "item-master";
    const ChangeFeed::RecordsOf scope(name);
    f.sql(
        "INSERT INTO record (resource, id, body, body_hash, updated_at) "
        "VALUES ('item-master', 1, '{\"id\":1}', 1, 0)");
    // Other tables are still read row by row: an outbox entry names its own resource.
    f.sql(
        "INSERT INTO outbox (resource, record_id, op, method, path, local_user, created_at) "
        "VALUES ('supplier-master', 1, 'update', 'PUT', '/supplier-master/1', 'u', 0)");
    {
      const std::string inner = "unit-master";
      const ChangeFeed::RecordsOf nested(inner);
      f.sql(
          "INSERT INTO record (resource, id, body, body_hash, updated_at) "
          "VALUES ('unit-master', 1, '{\"id\":1}', 1, 0)");
    }
    f.sql("UPDATE record SET body_hash = 2 WHERE resource = 'item-master'");
  }
  CHECK(f.gen("item-master") == items + 2);
  CHECK(f.gen("supplier-master") == suppliers + 1);
  CHECK(f.gen("unit-master") == units + 1);
  // Once the scope is gone, rows are read again.
  f.sql(
      "INSERT INTO record (resource, id, body, body_hash, updated_at) "
      "VALUES ('supplier-master', 1, '{\"id\":1}', 1, 0)");
  CHECK(f.gen("supplier-master") == suppliers + 2);
  CHECK(f.gen("item-master") == items + 2);
}

TEST_CASE("change feed: a transaction is published when it commits, not before", "[change_feed]") {
  Fixture f;
  const auto items = f.gen("item-master");
  {
    SQLite::Transaction tx(f.rep.db());
    f.sql(
        "INSERT INTO record (resource, id, body, body_hash, updated_at) "
        "VALUES ('item-master', 1, '{\"id\":1}', 1, 0)");
    CHECK(f.gen("item-master") == items);
    tx.commit();
  }
  CHECK(f.gen("item-master") == items + 1);
  {
    // Rolled back: nothing to see, but the next commit bumps it (harmless: a cached answer is read again).
    SQLite::Transaction tx(f.rep.db());
    f.sql("DELETE FROM record WHERE resource = 'item-master'");
  }
  CHECK(f.gen("item-master") == items + 1);
}

TEST_CASE("change feed: automatic checkpoints still run under the commit hook", "[change_feed]") {
  test::TempDir dir;
  Replica rep{dir.file("replica.sqlite3"), catalog(), Replica::Mode::ReadWrite};
  const int limit = 50;  // pages of WAL before a checkpoint, as the connection had it before the feed
  rep.db().exec("PRAGMA wal_autocheckpoint = " + std::to_string(limit));
  rep.db().exec("PRAGMA synchronous = OFF");  // the test is about the WAL's size, not durability
  ChangeFeed feed{catalog()};
  feed.watch(rep.db());
  // Commits of large rows passing the limit many times over; without checkpoints the WAL keeps every frame.
  const std::string body(16000, 'x');
  SQLite::Statement ins(rep.db(),
                        "INSERT INTO record (resource, id, body, body_hash, updated_at) "
                        "VALUES ('item-master', ?1, ?2, 1, 0)");
  const auto page = static_cast<std::uintmax_t>(rep.db().execAndGet("PRAGMA page_size").getInt());
  const int rows = static_cast<int>(limit * 10 * page / body.size());
  for (int i = 0; i < rows; ++i) {
    ins.bind(1, i);
    ins.bind(2, body);
    ins.exec();
    ins.reset();
  }
  // A checkpoint lets the WAL be written from its start again, so it never grows far past the limit.
  const auto wal = std::filesystem::file_size(dir.file("replica.sqlite3") + "-wal");
  CHECK(wal < static_cast<std::uintmax_t>(limit) * (page + 24) * 3);
  CHECK(feed.generation(index_of(feed, "item-master")) == static_cast<std::uint64_t>(rows));
}

TEST_CASE("change feed: local tables without rowids are watched", "[change_feed]") {
  Fixture f;
  const auto before = f.gen("purchase-order");
  f.sql(
      "INSERT INTO pending_record (resource, id, upstream_body, since) "
      "VALUES ('purchase-order', 5, '{}', 0)");
  f.feed.publish();
  CHECK(f.gen("purchase-order") == before + 1);
  f.sql("INSERT INTO list_meta (resource, headers, fetched_at) VALUES ('purchase-order', '[]', 0)");
  f.feed.publish();
  CHECK(f.gen("purchase-order") == before + 2);
}

TEST_CASE("change feed: pass checkpoints do not count, a completed pass does", "[change_feed]") {
  Fixture f;
  f.sql("INSERT OR IGNORE INTO pull_pass (resource) VALUES ('customer-master')");
  f.feed.publish();
  const auto start = f.gen("customer-master");
  f.sql("UPDATE pull_pass SET next_page = 7, pages_done = pages_done + 1 WHERE resource = 'customer-master'");
  f.feed.publish();
  CHECK(f.gen("customer-master") == start);
  f.sql("UPDATE pull_pass SET last_complete_at = 1234 WHERE resource = 'customer-master'");
  f.feed.publish();
  CHECK(f.gen("customer-master") == start + 1);
  // The same time written again (a checkpoint rewriting the row) is no change.
  f.sql("UPDATE pull_pass SET last_complete_at = 1234, next_page = 2 WHERE resource = 'customer-master'");
  f.feed.publish();
  CHECK(f.gen("customer-master") == start + 1);
}

TEST_CASE("change feed: the writer publishes after each task", "[change_feed]") {
  test::TempDir dir;
  auto feed = std::make_shared<ChangeFeed>(catalog());
  replica::ReplicaWriter writer(
      std::make_unique<Replica>(dir.file("replica.sqlite3"), catalog(), Replica::Mode::ReadWrite), feed);
  const auto i = index_of(*feed, "unit-master");
  const auto before = feed->generation(i);
  std::promise<std::uint64_t> during;
  writer.post([&](Replica& rep) {
    rep.db().exec(
        "INSERT INTO record (resource, id, body, body_hash, updated_at) "
        "VALUES ('unit-master', 1, '{}', 1, 0)");
    // Committed: published before the task goes on to answer anyone.
    during.set_value(feed->generation(i));
  });
  std::promise<void> done;
  writer.post([&](Replica&) { done.set_value(); });
  done.get_future().get();
  CHECK(during.get_future().get() == before + 1);
  CHECK(feed->generation(i) == before + 1);
}

TEST_CASE("response cache: hits while the sources are unchanged, retires on a change", "[response_cache]") {
  Fixture f;
  ResponseCache cache(1 << 20, &f.feed);
  const std::vector<std::size_t> sources{index_of(f.feed, "purchase-order"),
                                         index_of(f.feed, "purchase-order-details")};
  cache.store(" /api/purchase-order/1", answer("{\"data\":1}", cache.snapshot(sources)));
  const auto* hit = cache.find(" /api/purchase-order/1");
  REQUIRE(hit);
  CHECK(hit->response.body == "{\"data\":1}");
  CHECK_FALSE(cache.find("other-scope /api/purchase-order/1"));

  // A line of the order changes: the record's answer is retired.
  f.sql(
      "INSERT INTO record (resource, id, parent_id, body, body_hash, updated_at) "
      "VALUES ('purchase-order-details', 9, 1, '{}', 1, 0)");
  f.feed.publish();
  CHECK_FALSE(cache.find(" /api/purchase-order/1"));
  const auto st = cache.stats();
  CHECK(st.hits == 1);
  CHECK(st.stale == 1);
  CHECK(st.misses == 2);
  CHECK(st.entries == 0);
  CHECK(st.bytes == 0);

  SECTION("an answer read before a change that is already published is not kept") {
    auto old = cache.snapshot(sources);
    f.sql("DELETE FROM record WHERE resource = 'purchase-order-details'");
    f.feed.publish();
    cache.store("k", answer("{}", std::move(old)));
    CHECK_FALSE(cache.find("k"));
    CHECK(cache.stats().entries == 0);
  }
  SECTION("a change to an unrelated resource keeps the answer") {
    cache.store("k", answer("{}", cache.snapshot(sources)));
    f.sql(
        "INSERT INTO record (resource, id, body, body_hash, updated_at) "
        "VALUES ('item-master', 3, '{}', 1, 0)");
    f.feed.publish();
    CHECK(cache.find("k"));
  }
}

TEST_CASE("response cache: least recently used answers go first beyond the budget", "[response_cache]") {
  Fixture f;
  ResponseCache cache(64 * 1024, &f.feed);
  const std::vector<std::size_t> sources{index_of(f.feed, "item-master")};
  const std::string body(4000, 'x');
  for (int i = 0; i < 10; ++i)
    cache.store("k" + std::to_string(i), answer(body, cache.snapshot(sources)));
  CHECK(cache.find("k0"));  // now the most recently used
  for (int i = 10; i < 20; ++i)
    cache.store("k" + std::to_string(i), answer(body, cache.snapshot(sources)));
  const auto st = cache.stats();
  CHECK(st.bytes <= 64 * 1024);
  CHECK(st.entries < 20);
  CHECK(cache.find("k0"));
  CHECK(cache.find("k19"));
  CHECK_FALSE(cache.find("k1"));

  SECTION("an answer larger than an eighth of the budget is not kept") {
    cache.store("huge", answer(std::string(9000, 'y'), cache.snapshot(sources)));
    CHECK_FALSE(cache.find("huge"));
  }
  SECTION("storing a key again replaces its answer") {
    cache.store("k19", answer("new", cache.snapshot(sources)));
    REQUIRE(cache.find("k19"));
    CHECK(cache.find("k19")->response.body == "new");
  }
}

TEST_CASE("response cache: a zero budget keeps nothing", "[response_cache]") {
  Fixture f;
  ResponseCache cache(0, &f.feed);
  CHECK_FALSE(cache.enabled());
  cache.store("k", answer("{}", cache.snapshot({index_of(f.feed, "item-master")})));
  CHECK_FALSE(cache.find("k"));
}
