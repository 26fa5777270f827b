// Group commit in the replica writer (replica/writer.hpp): local changes posted together share one
// transaction and one commit, each in its own savepoint, on a real on-disk replica.

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "replica/outbox.hpp"
#include "replica/replica.hpp"
#include "replica/savepoint.hpp"
#include "replica/writer.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace knosc;
using replica::ChangeResult;
using replica::Json;
using replica::LocalWrite;
using replica::Replica;
using replica::ReplicaWriter;

namespace {

const schema::Catalog& catalog() {
  return schema::Catalog::builtin();
}

Json item(std::int64_t id, const std::string& desc = "widget") {
  Json j;
  j["id"] = id;
  j["Item Number"] = "ITEM-" + std::to_string(id);
  j["Item Description"] = desc;
  return j;
}

// A replica on disk with item masters 1..n mirrored, and a writer owning it.
struct Fixture {
  test::TempDir dir;
  std::string path = dir.file("replica.sqlite3");
  std::unique_ptr<ReplicaWriter> writer;

  explicit Fixture(int items = 20) {
    {
      Replica rep(path, catalog(), Replica::Mode::ReadWrite);
      const auto& res = catalog().at("item-master");
      Json rows = Json::array();
      for (int i = 1; i <= items; ++i)
        rows.push_back(item(i));
      auto cursor = rep.resume_or_begin_pass(res, 1000, 100);
      rep.apply_page(res, cursor, rows, 100);
      rep.db().exec("CREATE TABLE gc_log (n INTEGER NOT NULL)");
      rep.db().exec("CREATE TABLE gc_parent (id INTEGER PRIMARY KEY)");
      rep.db().exec(
          "CREATE TABLE gc_child (parent INTEGER REFERENCES gc_parent (id) DEFERRABLE INITIALLY DEFERRED)");
    }
    writer =
        std::make_unique<ReplicaWriter>(std::make_unique<Replica>(path, catalog(), Replica::Mode::ReadWrite));
  }

  // Another connection, as a loopback reader or the status command opens one: it sees committed data only.
  std::vector<std::int64_t> committed_log() const {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    std::vector<std::int64_t> out;
    SQLite::Statement q(db, "SELECT n FROM gc_log ORDER BY rowid");
    while (q.executeStep())
      out.push_back(q.getColumn(0).getInt64());
    return out;
  }
  std::int64_t committed_count(const std::string& sql) const {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    return db.execAndGet(sql).getInt64();
  }

  // Holds the writer on a task until the returned promise is set, so that what is posted meanwhile queues up
  // behind it (as changes do while a commit waits for the disk).
  std::promise<void> hold() {
    std::promise<void> release;
    auto gate = release.get_future().share();
    auto holding = std::make_shared<std::promise<void>>();
    auto started = holding->get_future();
    writer->post([gate, holding](Replica&) {
      holding->set_value();
      gate.wait();
    });
    started.wait();
    return release;
  }

  // Waits for everything posted so far.
  void drain() {
    std::promise<void> done;
    auto f = done.get_future();
    writer->post([&done](Replica&) { done.set_value(); });
    f.wait();
  }
};

void log_n(Replica& rep, std::int64_t n) {
  SQLite::Statement ins(rep.db(), "INSERT INTO gc_log (n) VALUES (?1)");
  ins.bind(1, n);
  ins.exec();
}

replica::EditRequest put_item(std::int64_t id, const Json& body) {
  replica::EditRequest req;
  req.method = "PUT";
  req.path = {"item-master", std::to_string(id)};
  req.body = &body;
  req.now_iso = "2026-12-07T12:00:00";
  return req;
}

}  // namespace

TEST_CASE("group commit: changes queued together share one commit; a failing one leaves no trace",
          "[group_commit]") {
  Fixture f;
  constexpr int kChanges = 6;
  std::vector<Json> bodies;
  for (int i = 0; i < kChanges; ++i)
    bodies.push_back(Json{{"Item Description", "edited " + std::to_string(i + 1)}});
  std::vector<ChangeResult<LocalWrite>> results(kChanges);
  std::atomic<int> completed{0};

  auto release = f.hold();
  for (int i = 0; i < kChanges; ++i) {
    f.writer->post_change(
        [&, i](Replica& rep) {
          auto w =
              replica::write_locally(rep, put_item(i + 1, bodies[static_cast<std::size_t>(i)]), "alice", 500);
          // The third change is stored like the others and then fails, in its savepoint.
          if (i == 2) throw std::runtime_error("refused after writing");
          return w;
        },
        [&, i](ChangeResult<LocalWrite> r) {
          results[static_cast<std::size_t>(i)] = std::move(r);
          ++completed;
        });
  }
  release.set_value();
  f.drain();
  REQUIRE(completed == kChanges);

  const auto stats = f.writer->group_stats();
  CHECK(stats.groups == 1);
  CHECK(stats.largest == kChanges);
  CHECK(stats.failed_commits == 0);

  for (int i = 0; i < kChanges; ++i) {
    INFO("change " << i + 1);
    const auto& r = results[static_cast<std::size_t>(i)];
    if (i == 2) {
      CHECK_FALSE(r.committed());
      CHECK(r.error == "refused after writing");
    } else {
      REQUIRE(r.committed());
      CHECK(r.error.empty());
      CHECK(std::holds_alternative<replica::EditPlan>(r.value->outcome));
      CHECK(r.value->seq > 0);
    }
  }
  // On disk, seen from another connection: five outbox entries, five pending records, the third item as it
  // was; the outbox sequence has no gap that the failed change took.
  CHECK(f.committed_count("SELECT COUNT(*) FROM outbox") == kChanges - 1);
  CHECK(f.committed_count("SELECT COUNT(*) FROM outbox_touch") == kChanges - 1);
  CHECK(f.committed_count("SELECT COUNT(*) FROM pending_record") == kChanges - 1);
  CHECK(f.committed_count("SELECT COUNT(*) FROM pending_record WHERE resource = 'item-master' AND id = 3") ==
        0);
  CHECK(f.committed_count("SELECT COUNT(*) FROM record WHERE resource = 'item-master' AND id = 3 AND "
                          "json_extract(body, '$.\"Item Description\"') = 'widget'") == 1);
  CHECK(f.committed_count("SELECT COUNT(*) FROM record WHERE resource = 'item-master' AND "
                          "json_extract(body, '$.\"Item Description\"') LIKE 'edited %'") == kChanges - 1);
  std::vector<std::int64_t> seqs;
  for (const auto& r : results)
    if (r.committed()) seqs.push_back(r.value->seq);
  CHECK(seqs == std::vector<std::int64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("group commit: a refused edit in a group changes nothing and the others stay", "[group_commit]") {
  Fixture f(3);
  const Json body{{"Item Description", "x"}};
  std::vector<ChangeResult<LocalWrite>> results(3);
  auto release = f.hold();
  for (int i = 0; i < 3; ++i) {
    const std::int64_t id = i == 1 ? 999 : i + 1;  // no item 999: Knosc would answer NotFound
    f.writer->post_change(
        [&, id](Replica& rep) { return replica::write_locally(rep, put_item(id, body), "bob", 1); },
        [&, i](ChangeResult<LocalWrite> r) { results[static_cast<std::size_t>(i)] = std::move(r); });
  }
  release.set_value();
  f.drain();
  REQUIRE(results[0].committed());
  REQUIRE(results[1].committed());  // the change ran; its outcome is Knosc's refusal
  REQUIRE(results[2].committed());
  CHECK(std::holds_alternative<replica::EditError>(results[1].value->outcome));
  CHECK(f.committed_count("SELECT COUNT(*) FROM outbox") == 2);
  CHECK(f.writer->group_stats().largest == 3);
}

TEST_CASE("group commit: completions run only after the commit, in posting order", "[group_commit]") {
  Fixture f;
  std::mutex mu;
  std::vector<std::string> events;
  const auto note = [&](std::string e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
  };

  auto release = f.hold();
  for (int i = 1; i <= 5; ++i) {
    if (i == 3) {
      // A task between changes ends the group before it: nothing runs ahead of what was posted before it.
      f.writer->post([&, i](Replica& rep) {
        SQLite::Transaction tx(rep.db());
        log_n(rep, i);
        tx.commit();
        note("task " + std::to_string(i));
      });
      continue;
    }
    f.writer->post_change(
        [&, i](Replica& rep) {
          log_n(rep, i);
          // Not visible to other connections yet: it is part of an open transaction.
          const auto seen = f.committed_log();
          note("work " + std::to_string(i) + " sees " + std::to_string(seen.size()));
          return i;
        },
        [&, i](ChangeResult<int> r) {
          // Already on disk when the change is told so.
          const auto seen = f.committed_log();
          const bool on_disk = std::find(seen.begin(), seen.end(), i) != seen.end();
          note("done " + std::to_string(i) + (r.committed() && *r.value == i ? " ok" : " failed") +
               (on_disk ? " on disk" : " not on disk"));
        });
  }
  release.set_value();
  f.drain();
  CHECK(events == std::vector<std::string>{"work 1 sees 0", "work 2 sees 0", "done 1 ok on disk",
                                           "done 2 ok on disk", "task 3", "work 4 sees 3", "work 5 sees 3",
                                           "done 4 ok on disk", "done 5 ok on disk"});
  CHECK(f.committed_log() == std::vector<std::int64_t>{1, 2, 3, 4, 5});
  const auto stats = f.writer->group_stats();
  CHECK(stats.groups == 2);
  CHECK(stats.changes == 4);
}

TEST_CASE("group commit: a failed commit tells every change of the group, and none is on disk",
          "[group_commit]") {
  Fixture f;
  std::vector<ChangeResult<int>> results(4);
  auto release = f.hold();
  for (int i = 0; i < 4; ++i) {
    f.writer->post_change(
        [i](Replica& rep) {
          log_n(rep, i);
          // A row naming a parent that does not exist: the deferred constraint passes the savepoint and
          // fails the COMMIT, as a disk-full or I/O error would.
          if (i == 1) rep.db().exec("INSERT INTO gc_child (parent) VALUES (42)");
          return i;
        },
        [&, i](ChangeResult<int> r) { results[static_cast<std::size_t>(i)] = std::move(r); });
  }
  release.set_value();
  f.drain();
  for (const auto& r : results) {
    CHECK_FALSE(r.committed());
    CHECK(r.error.find("could not commit") != std::string::npos);
  }
  CHECK(f.committed_log().empty());
  CHECK(f.committed_count("SELECT COUNT(*) FROM gc_child") == 0);
  CHECK(f.writer->group_stats().failed_commits == 1);

  // The writer goes on: the next change starts a clean transaction and commits.
  std::promise<ChangeResult<int>> next;
  f.writer->post_change(
      [](Replica& rep) {
        log_n(rep, 7);
        return 7;
      },
      [&](ChangeResult<int> r) { next.set_value(std::move(r)); });
  CHECK(next.get_future().get().committed());
  CHECK(f.committed_log() == std::vector<std::int64_t>{7});
}

TEST_CASE("group commit: a lone change commits at once, without waiting for company", "[group_commit]") {
  Fixture f;
  for (int round = 0; round < 3; ++round) {
    std::promise<ChangeResult<int>> done;
    const auto t0 = std::chrono::steady_clock::now();
    f.writer->post_change(
        [round](Replica& rep) {
          log_n(rep, round);
          return round;
        },
        [&](ChangeResult<int> r) { done.set_value(std::move(r)); });
    auto fut = done.get_future();
    // One fsync, even on a busy machine; a writer that waited to fill a group would take its timer.
    REQUIRE(fut.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    CHECK(fut.get().committed());
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  }
  const auto stats = f.writer->group_stats();
  CHECK(stats.groups == 3);
  CHECK(stats.largest == 1);
  CHECK(f.committed_log() == std::vector<std::int64_t>{0, 1, 2});
}

TEST_CASE("group commit: at most kMaxGroup changes share a commit", "[group_commit]") {
  Fixture f;
  const int n = static_cast<int>(ReplicaWriter::kMaxGroup) + 10;
  std::atomic<int> ok{0};
  auto release = f.hold();
  for (int i = 0; i < n; ++i)
    f.writer->post_change(
        [i](Replica& rep) {
          log_n(rep, i);
          return i;
        },
        [&](ChangeResult<int> r) { ok += r.committed() ? 1 : 0; });
  release.set_value();
  f.drain();
  CHECK(ok == n);
  const auto stats = f.writer->group_stats();
  CHECK(stats.groups == 2);
  CHECK(stats.largest == ReplicaWriter::kMaxGroup);
  CHECK(f.committed_log().size() == static_cast<std::size_t>(n));
}

TEST_CASE("group commit: changes posted after stop are told they did not run", "[group_commit]") {
  Fixture f;
  f.writer->stop();
  std::optional<ChangeResult<int>> got;
  f.writer->post_change([](Replica&) { return 1; }, [&](ChangeResult<int> r) { got = std::move(r); });
  REQUIRE(got);
  CHECK_FALSE(got->committed());
}

TEST_CASE("savepoint: commits on its own, nests inside a transaction, and undoes only its part",
          "[group_commit]") {
  test::TempDir dir;
  SQLite::Database db(dir.file("s.sqlite3"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec("CREATE TABLE t (n INTEGER)");
  {
    replica::Savepoint sp(db);  // outermost: a transaction of its own
    CHECK(replica::in_transaction(db));
    db.exec("INSERT INTO t VALUES (1)");
    sp.release();
  }
  CHECK_FALSE(replica::in_transaction(db));
  {
    replica::Savepoint outer(db);
    db.exec("INSERT INTO t VALUES (2)");
    {
      replica::Savepoint inner(db);
      db.exec("INSERT INTO t VALUES (3)");
    }  // not released: undone
    {
      replica::Savepoint inner(db);
      db.exec("INSERT INTO t VALUES (4)");
      inner.release();
    }
    outer.release();
  }
  {
    replica::Savepoint sp(db);
    db.exec("INSERT INTO t VALUES (5)");
  }  // not released: the transaction it opened rolls back
  CHECK_FALSE(replica::in_transaction(db));
  CHECK(db.execAndGet("SELECT group_concat(n) FROM t").getString() == "1,2,4");
}

TEST_CASE("group commit: the change feed publishes a group's changes before its changes are acknowledged",
          "[group_commit]") {
  test::TempDir dir;
  {
    Replica seed(dir.file("replica.sqlite3"), catalog(), Replica::Mode::ReadWrite);
    const auto& res = catalog().at("item-master");
    auto cursor = seed.resume_or_begin_pass(res, 1000, 100);
    seed.apply_page(res, cursor, Json::array({item(1), item(2)}), 100);
  }
  auto feed = std::make_shared<replica::ChangeFeed>(catalog());
  ReplicaWriter writer(
      std::make_unique<Replica>(dir.file("replica.sqlite3"), catalog(), Replica::Mode::ReadWrite), feed);
  const auto i = *feed->index_of("item-master");
  const auto before = feed->generation(i);
  const Json body{{"Item Description", "changed"}};
  std::promise<void> release;
  auto gate = release.get_future().share();
  writer.post([gate](Replica&) { gate.wait(); });
  std::vector<std::uint64_t> seen(2);
  std::promise<void> both;
  std::atomic<int> left{2};
  for (int k = 0; k < 2; ++k)
    writer.post_change(
        [&, k](Replica& rep) { return replica::write_locally(rep, put_item(k + 1, body), "carol", 1); },
        [&, k](ChangeResult<LocalWrite> r) {
          CHECK(r.committed());
          // A tool told its edit is stored and reading right away must not get a cached answer from before.
          seen[static_cast<std::size_t>(k)] = feed->generation(i);
          if (--left == 0) both.set_value();
        });
  release.set_value();
  both.get_future().wait();
  CHECK(seen[0] > before);
  CHECK(seen[1] > before);
  CHECK(writer.group_stats().largest == 2);
}
