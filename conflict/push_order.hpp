#pragma once
// Which outbox entries the pusher may send now, and whether the queue has stopped moving. Pure: the pusher
// hands in the unfinished entries, what is in flight and the time; it sends what comes back. The rules are
// described in docs/CONFLICTS.md ("Push order").

#include <chrono>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace knosc::conflict {

using TimePoint = std::chrono::system_clock::time_point;

// A record the outbox names: its resource and its id as written in a URL path ("42", "-3" for a local create,
// "TKT-001").
struct RecordKey {
  std::string resource;
  std::string id;
  friend auto operator<=>(const RecordKey&, const RecordKey&) = default;
};

enum class EntryState {
  Queued,    // waiting or being sent
  Done,      // landed (or nothing to send); may be left out of the input
  Rejected,  // parked: Knosc refused it (validation, privileges)
  Conflict,  // parked: waits for a person
};

struct OutboxItem {
  std::int64_t seq = 0;  // outbox order
  RecordKey record;      // the record the entry changes
  std::string op;        // create, update, delete, line-delete, move-lines, ...
  // Records created locally (their create may not have landed) that this entry names, e.g. the supplier a
  // PO create names by a number that exists only locally so far.
  std::vector<RecordKey> local_refs;
  TimePoint not_before{};  // backoff after a transient failure: not sent before this time
  EntryState state = EntryState::Queued;
};

// Which master-data resources a resource's writes may name (by business number), as in Knosc's bulk-import
// order: unit, warehouse, supplier, customer, item masters before the data that names them.
class ReferenceGraph {
 public:
  using Names = std::map<std::string, std::set<std::string, std::less<>>, std::less<>>;
  // For each resource, the master-data resources its writes may name.
  explicit ReferenceGraph(Names names);
  // Knosc's resources (unknown resources may name every master-data resource).
  static const ReferenceGraph& knosc();

  bool is_master(std::string_view resource) const;
  bool may_reference(std::string_view resource, std::string_view master) const;

 private:
  Names names_;
  std::set<std::string, std::less<>> masters_;
};

enum class HoldReason {
  Parked,              // the entry itself was rejected or waits for a person
  InFlight,            // being sent
  BehindEarlier,       // an earlier entry of the same record has not finished
  BehindParked,        // an earlier entry of the same record is parked
  WaitsForCreate,      // names a locally created record whose create has not landed
  WaitsForMasterData,  // an earlier create of master data it may name has not landed
  WaitsForReferrers,   // a master-data delete waits for earlier entries that may still name the record
  Backoff,             // retrying after a transient failure, not before `not_before`
  ParallelLimit,       // ready, but the parallel limit is reached
};

struct Hold {
  std::int64_t seq = 0;
  HoldReason reason = HoldReason::Parked;
  std::int64_t waits_for = 0;  // the entry it waits for (BehindEarlier, BehindParked, WaitsFor*), else 0
};

struct SendChoice {
  std::vector<std::int64_t> send;  // entries to send now, in outbox order
  std::vector<Hold> held;          // every other unfinished entry, with the first rule that holds it
  // The earliest time an entry held only by its backoff becomes ready; nothing new is ready before then
  // unless an entry finishes.
  std::optional<TimePoint> wake_at;
};

// Chooses what to send. `entries` must hold every unfinished entry (done ones may be left out), in any order;
// `in_flight` holds the seqs being sent; at most `parallel_limit` entries are in flight afterwards.
SendChoice choose_sends(const std::vector<OutboxItem>& entries, const std::set<std::int64_t>& in_flight,
                        std::size_t parallel_limit, TimePoint now,
                        const ReferenceGraph& graph = ReferenceGraph::knosc());

// The queue watchdog. One sample per look at the queue: cumulative count of entries finished (landed or
// parked), the unfinished entries that are not parked, and whether Knosc was reachable.
struct QueueSample {
  TimePoint at{};
  std::uint64_t finished = 0;
  std::size_t pending = 0;
  bool online = false;
};

enum class QueueHealth {
  Idle,     // nothing pending
  Offline,  // pending, Knosc unreachable: nothing can move
  Moving,   // pending and finishing entries (or not yet long enough without)
  Stalled,  // online with pending entries and none finished for at least `stall_after`
};

// `history` in time order. Stalled needs evidence covering the whole span: a sample at or before
// now - stall_after and every sample since online, with pending entries and the same finished count.
QueueHealth judge_queue(const std::vector<QueueSample>& history, TimePoint now,
                        std::chrono::seconds stall_after);

std::string_view to_string(HoldReason r);
std::string_view to_string(QueueHealth h);

}  // namespace knosc::conflict
