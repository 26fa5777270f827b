#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "conflict/push_order.hpp"

using namespace knosc::conflict;
using std::chrono::seconds;

namespace {

const TimePoint kNow = TimePoint{} + seconds(1'000'000);

OutboxItem E(std::int64_t seq, const char* resource, const char* id, const char* op,
             std::vector<RecordKey> refs = {}, EntryState state = EntryState::Queued, int backoff_s = 0) {
  OutboxItem e;
  e.seq = seq;
  e.record = {resource, id};
  e.op = op;
  e.local_refs = std::move(refs);
  e.state = state;
  e.not_before = kNow + seconds(backoff_s);
  return e;
}

OutboxItem backoff(OutboxItem e, int seconds_left) {
  e.not_before = kNow + seconds(seconds_left);
  return e;
}

// "seq:reason" or "seq:reason:waits_for".
std::vector<std::string> describe(const std::vector<Hold>& held) {
  std::vector<std::string> out;
  for (const auto& h : held) {
    std::string s = std::to_string(h.seq) + ":" + std::string(to_string(h.reason));
    if (h.waits_for) s += ":" + std::to_string(h.waits_for);
    out.push_back(s);
  }
  return out;
}

constexpr auto Rejected = EntryState::Rejected;
constexpr auto Conflict = EntryState::Conflict;
constexpr auto Done = EntryState::Done;

}  // namespace

TEST_CASE("choose_sends: which outbox entries may go now", "[conflict][push_order]") {
  struct Case {
    const char* name;
    std::vector<OutboxItem> entries;
    std::set<std::int64_t> in_flight;
    std::size_t limit;
    std::vector<std::int64_t> send;
    std::vector<std::string> held;
  };
  const Case cases[] = {
      {"independent records go in parallel up to the limit",
       {E(1, "purchase-order", "42", "update"), E(2, "purchase-order", "43", "update"),
        E(3, "sales-order", "9", "update")},
       {},
       2,
       {1, 2},
       {"3:parallel-limit"}},
      {"a record's entries go one at a time, in outbox order",
       {E(1, "purchase-order", "42", "update"), E(2, "purchase-order", "42", "update"),
        E(3, "purchase-order", "43", "update")},
       {},
       4,
       {1, 3},
       {"2:behind-earlier:1"}},
      {"one entry in flight per record",
       {E(1, "purchase-order", "42", "update"), E(2, "purchase-order", "42", "delete"),
        E(3, "purchase-order", "43", "update")},
       {1},
       4,
       {3},
       {"1:in-flight", "2:behind-earlier:1"}},
      {"entries in flight count toward the limit",
       {E(1, "item-master", "1", "update"), E(2, "item-master", "2", "update"),
        E(3, "item-master", "3", "update")},
       {1},
       2,
       {2},
       {"1:in-flight", "3:parallel-limit"}},
      {"a rejected entry blocks later entries of its own record only",
       {E(1, "purchase-order", "42", "update", {}, Rejected), E(2, "purchase-order", "42", "update"),
        E(3, "purchase-order", "43", "update")},
       {},
       4,
       {3},
       {"1:parked", "2:behind-parked:1"}},
      {"an entry waiting for a person blocks like a rejected one",
       {E(1, "bill-of-materials", "901", "update", {}, Conflict), E(2, "bill-of-materials", "901", "delete"),
        E(3, "bill-of-materials", "902", "update")},
       {},
       4,
       {3},
       {"1:parked", "2:behind-parked:1"}},
      {"entries in backoff are skipped, the others go",
       {E(1, "purchase-order", "42", "update", {}, EntryState::Queued, 30),
        E(2, "purchase-order", "43", "update")},
       {},
       4,
       {2},
       {"1:backoff"}},
      {"a record in backoff holds its later entries",
       {backoff(E(1, "purchase-order", "42", "update"), 30), E(2, "purchase-order", "42", "update")},
       {},
       4,
       {},
       {"1:backoff", "2:behind-earlier:1"}},
      {"a backoff that has ended is ready",
       {backoff(E(1, "purchase-order", "42", "update"), -1)},
       {},
       4,
       {1},
       {}},
      {"an entry naming a local record waits for that record's create",
       {E(1, "supplier-master", "-1", "create"),
        E(2, "purchase-order", "-2", "create", {{"supplier-master", "-1"}})},
       {},
       4,
       {1},
       {"2:waits-for-create:1"}},
      {"a local record whose create has landed no longer holds anything",
       {E(2, "purchase-order", "-2", "create", {{"supplier-master", "-1"}})},
       {},
       4,
       {2},
       {}},
      {"a rejected create holds the entries that name its record",
       {E(1, "supplier-master", "-1", "create", {}, Rejected),
        E(2, "purchase-order", "-2", "create", {{"supplier-master", "-1"}})},
       {},
       4,
       {},
       {"1:parked", "2:waits-for-create:1"}},
      {"a ticket naming a local PO waits for it",
       {E(1, "purchase-order", "-4", "create"),
        E(2, "issue-tracker-tickets", "local-1", "create", {{"purchase-order", "-4"}})},
       {},
       4,
       {1},
       {"2:waits-for-create:1"}},
      {"later edits of a locally created record wait for its create",
       {E(1, "item-master", "-3", "create"), E(2, "item-master", "-3", "update")},
       {1},
       4,
       {},
       {"1:in-flight", "2:behind-earlier:1"}},
      {"master data before records that may name it, even without named local ids",
       {E(1, "supplier-master", "-1", "create"), E(2, "purchase-order", "-2", "create"),
        E(3, "issue-tracker-tickets", "TKT-001", "update")},
       {},
       4,
       {1, 3},
       {"2:waits-for-master-data:1"}},
      {"a master-data create does not hold resources that cannot name it",
       {E(1, "customer-master", "-1", "create"), E(2, "purchase-order", "42", "update")},
       {},
       4,
       {1, 2},
       {}},
      {"bulk-import order: unit, then item, then the order",
       {E(1, "unit-master", "-1", "create"), E(2, "item-master", "-2", "create"),
        E(3, "purchase-order", "-3", "create")},
       {},
       4,
       {1},
       {"2:waits-for-master-data:1", "3:waits-for-master-data:2"}},
      {"a rejected master-data create stops holding entries that do not name it",
       {E(1, "supplier-master", "-1", "create", {}, Rejected), E(2, "purchase-order", "-2", "create")},
       {},
       4,
       {2},
       {"1:parked"}},
      {"an entry never waits for a later create",
       {E(1, "purchase-order", "42", "update"), E(2, "supplier-master", "-1", "create")},
       {},
       4,
       {1, 2},
       {}},
      {"deleting master data waits for earlier entries that may still name it",
       {E(1, "purchase-order", "42", "update"), E(2, "supplier-master", "7", "delete")},
       {},
       4,
       {1},
       {"2:waits-for-referrers:1"}},
      {"deleting master data does not wait for entries that cannot name it",
       {E(1, "issue-tracker-tickets", "TKT-001", "update"), E(2, "supplier-master", "7", "delete")},
       {},
       4,
       {1, 2},
       {}},
      {"deleting master data does not wait for a rejected referrer",
       {E(1, "purchase-order", "42", "update", {}, Rejected), E(2, "supplier-master", "7", "delete")},
       {},
       4,
       {2},
       {"1:parked"}},
      {"deleting master data does not wait for an entry stuck behind a parked one",
       {E(1, "purchase-order", "42", "update", {}, Conflict), E(2, "purchase-order", "42", "update"),
        E(3, "supplier-master", "7", "delete")},
       {},
       4,
       {3},
       {"1:parked", "2:behind-parked:1"}},
      {"done entries are ignored",
       {E(1, "purchase-order", "42", "update", {}, Done), E(2, "purchase-order", "42", "update")},
       {},
       4,
       {2},
       {}},
      {"the input order does not matter",
       {E(3, "purchase-order", "42", "delete"), E(1, "purchase-order", "42", "update"),
        E(2, "purchase-order", "42", "update")},
       {},
       4,
       {1},
       {"2:behind-earlier:1", "3:behind-earlier:1"}},
      {"a resource the graph does not know waits for any master-data create",
       {E(1, "warehouse-master", "-1", "create"), E(2, "new-resource", "-2", "create")},
       {},
       4,
       {1},
       {"2:waits-for-master-data:1"}},
      {"a limit of zero sends nothing",
       {E(1, "purchase-order", "42", "update")},
       {},
       0,
       {},
       {"1:parallel-limit"}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto choice = choose_sends(c.entries, c.in_flight, c.limit, kNow);
    CHECK(choice.send == c.send);
    CHECK(describe(choice.held) == c.held);
  }
}

TEST_CASE("choose_sends: wake_at is the earliest end of a backoff that alone holds an entry",
          "[conflict][push_order]") {
  const auto choice =
      choose_sends({backoff(E(1, "purchase-order", "42", "update"), 90),
                    backoff(E(2, "purchase-order", "43", "update"), 30),
                    // Held by its record's earlier entry first: its backoff is not what holds it.
                    backoff(E(3, "purchase-order", "42", "update"), 5)},
                   {}, 4, kNow);
  CHECK(choice.send.empty());
  REQUIRE(choice.wake_at);
  CHECK(*choice.wake_at == kNow + seconds(30));

  CHECK_FALSE(choose_sends({E(1, "purchase-order", "42", "update")}, {}, 4, kNow).wake_at);
}

TEST_CASE("choose_sends: a custom reference graph", "[conflict][push_order]") {
  const ReferenceGraph graph(ReferenceGraph::Names{{"order", {"part"}}, {"part", {}}});
  CHECK(graph.is_master("part"));
  CHECK_FALSE(graph.is_master("order"));
  CHECK(graph.may_reference("order", "part"));
  CHECK_FALSE(graph.may_reference("part", "order"));
  CHECK_FALSE(graph.may_reference("part", "part"));
  const auto choice =
      choose_sends({E(1, "part", "-1", "create"), E(2, "order", "-2", "create")}, {}, 4, kNow, graph);
  CHECK(choice.send == std::vector<std::int64_t>{1});
  CHECK(describe(choice.held) == std::vector<std::string>{"2:waits-for-master-data:1"});
}

TEST_CASE("judge_queue: the watchdog notices a queue that stops moving", "[conflict][push_order]") {
  struct S {
    int ago_s;  // seconds before now
    std::uint64_t finished;
    std::size_t pending;
    bool online;
  };
  struct Case {
    const char* name;
    std::vector<S> samples;
    QueueHealth expected;
  };
  const Case cases[] = {
      {"no history", {}, QueueHealth::Idle},
      {"nothing pending", {{900, 5, 3, true}, {0, 8, 0, true}}, QueueHealth::Idle},
      {"offline now", {{900, 5, 3, true}, {0, 5, 3, false}}, QueueHealth::Offline},
      {"not watched long enough to say", {{300, 5, 3, true}, {0, 5, 3, true}}, QueueHealth::Moving},
      {"nothing finished for longer than the limit",
       {{900, 5, 3, true}, {450, 5, 3, true}, {0, 5, 3, true}},
       QueueHealth::Stalled},
      {"the span starting exactly at the limit counts",
       {{600, 5, 3, true}, {0, 5, 3, true}},
       QueueHealth::Stalled},
      {"an entry finished inside the span",
       {{900, 5, 3, true}, {200, 6, 2, true}, {0, 6, 2, true}},
       QueueHealth::Moving},
      {"movement before the span does not count",
       {{1200, 1, 9, true}, {700, 5, 3, true}, {0, 5, 3, true}},
       QueueHealth::Stalled},
      {"an offline moment restarts the span",
       {{900, 5, 3, true}, {300, 5, 3, false}, {0, 5, 3, true}},
       QueueHealth::Moving},
      {"an empty moment restarts the span",
       {{900, 5, 3, true}, {300, 5, 0, true}, {0, 5, 3, true}},
       QueueHealth::Moving},
      {"a counter reset (restart) is movement", {{900, 5, 3, true}, {0, 0, 3, true}}, QueueHealth::Moving},
  };
  const TimePoint now = kNow;
  for (const auto& c : cases) {
    INFO(c.name);
    std::vector<QueueSample> history;
    for (const auto& s : c.samples)
      history.push_back({now - seconds(s.ago_s), s.finished, s.pending, s.online});
    CHECK(to_string(judge_queue(history, now, seconds(600))) == to_string(c.expected));
  }
}
