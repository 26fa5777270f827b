#include "conflict/push_order.hpp"

#include <algorithm>

namespace knosc::conflict {
namespace {

bool unfinished(const OutboxItem& e) {
  return e.state != EntryState::Done;
}
bool parked(const OutboxItem& e) {
  return e.state == EntryState::Rejected || e.state == EntryState::Conflict;
}

}  // namespace

ReferenceGraph::ReferenceGraph(Names names) : names_(std::move(names)) {
  for (const auto& [_, targets] : names_)
    masters_.insert(targets.begin(), targets.end());
}

const ReferenceGraph& ReferenceGraph::knosc() {
  // Knosc writes name related records by business number (API-NOTES §6.3, §9, §10, §11, §12); each resource
  // lists the master data its bodies can name. Tickets name POs and ASNs name PO lines, but those are not
  // master data: an entry that names a local PO lists it in local_refs.
  static const ReferenceGraph graph({
      {"unit-master", {}},
      {"warehouse-master", {}},
      {"supplier-master", {}},
      {"customer-master", {}},
      {"item-master", {"unit-master"}},
      {"sub-item-master", {"item-master"}},
      {"ship-from-master", {"supplier-master"}},
      {"ship-to-master", {"customer-master"}},
      {"external-item-master", {"item-master"}},
      {"bill-of-materials", {"item-master", "unit-master"}},
      {"supplier-allocation", {"item-master", "supplier-master"}},
      {"inventory", {"item-master", "sub-item-master", "warehouse-master"}},
      {"purchase-order",
       {"supplier-master", "ship-from-master", "item-master", "sub-item-master", "warehouse-master"}},
      {"sales-order",
       {"customer-master", "ship-to-master", "item-master", "sub-item-master", "warehouse-master"}},
      {"manufacturing-order", {"warehouse-master", "item-master", "sub-item-master"}},
      {"forecast", {"item-master", "warehouse-master"}},
      {"asn", {"supplier-master", "ship-from-master", "warehouse-master", "item-master", "sub-item-master"}},
      {"issue-tracker-tickets", {}},
      {"scenario-analysis", {}},
      {"user", {}},
      {"role", {}},
  });
  return graph;
}

bool ReferenceGraph::is_master(std::string_view resource) const {
  return masters_.count(resource) > 0;
}

bool ReferenceGraph::may_reference(std::string_view resource, std::string_view master) const {
  if (!is_master(master) || resource == master) return false;
  auto it = names_.find(resource);
  // A resource the graph does not know may name anything: waiting is safer than a refused write.
  if (it == names_.end()) return true;
  return it->second.count(master) > 0;
}

SendChoice choose_sends(const std::vector<OutboxItem>& entries, const std::set<std::int64_t>& in_flight,
                        std::size_t parallel_limit, TimePoint now, const ReferenceGraph& graph) {
  std::vector<const OutboxItem*> order;
  for (const auto& e : entries)
    if (unfinished(e)) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const OutboxItem* a, const OutboxItem* b) { return a->seq < b->seq; });

  // The unfinished create of each locally created record.
  std::map<RecordKey, const OutboxItem*> creates;
  for (const OutboxItem* e : order)
    if (e->op == "create") creates.emplace(e->record, e);

  SendChoice out;
  std::size_t busy = in_flight.size();
  std::map<RecordKey, const OutboxItem*> first_of_record;  // the earliest unfinished entry of each record
  // Running state of the walk in outbox order: master-data creates still on their way, and the earliest
  // entry (not parked) of each resource.
  std::vector<const OutboxItem*> master_creates;
  std::map<std::string, const OutboxItem*, std::less<>> earliest_of_resource;
  for (const OutboxItem* e : order) {
    auto hold = [&](HoldReason r, std::int64_t waits_for = 0) { out.held.push_back({e->seq, r, waits_for}); };
    auto [first, is_first] = first_of_record.emplace(e->record, e);
    const OutboxItem* waits = nullptr;
    // Master data before what may name it: an earlier create that is still on its way holds later entries of
    // resources that can name it by number (the name may not be in local_refs: the body names a number, and
    // the record of that number exists only in the create). A parked create no longer holds them.
    for (const OutboxItem* c : master_creates) {
      if (graph.may_reference(e->record.resource, c->record.resource)) {
        waits = c;
        break;
      }
    }
    // The mirror image: deleting master data waits for earlier entries that may still name it (a PO moved to
    // another supplier before the old supplier is deleted), or Knosc would refuse it as StillInUse.
    const OutboxItem* referrer = nullptr;
    if (e->op == "delete" && graph.is_master(e->record.resource))
      for (const auto& [resource, c] : earliest_of_resource)
        if (graph.may_reference(resource, e->record.resource) && (!referrer || c->seq < referrer->seq))
          referrer = c;
    // An entry held behind a parked one of its record moves only when a person settles that: it must not
    // hold entries of other records meanwhile, or one conflict would stall every delete of master data.
    const bool stuck = parked(*e) || (!is_first && parked(*first->second));
    if (!stuck) {
      if (e->op == "create" && graph.is_master(e->record.resource)) master_creates.push_back(e);
      earliest_of_resource.emplace(e->record.resource, e);
    }

    if (parked(*e)) {
      hold(HoldReason::Parked);
      continue;
    }
    if (in_flight.count(e->seq)) {
      hold(HoldReason::InFlight);
      continue;
    }
    // One entry in flight per record, and a record's entries in outbox order; a parked entry holds only the
    // later entries of its own record.
    if (!is_first) {
      hold(parked(*first->second) ? HoldReason::BehindParked : HoldReason::BehindEarlier, first->second->seq);
      continue;
    }
    const OutboxItem* create = nullptr;
    for (const auto& ref : e->local_refs) {
      auto it = creates.find(ref);
      // No unfinished create: it has landed (the pusher rewrites the local id from the id map when sending).
      // A parked create holds its dependants: the record they name does not exist upstream.
      if (it != creates.end() && it->second != e) {
        create = it->second;
        break;
      }
    }
    if (create) {
      hold(HoldReason::WaitsForCreate, create->seq);
      continue;
    }
    if (waits) {
      hold(HoldReason::WaitsForMasterData, waits->seq);
      continue;
    }
    if (referrer) {
      hold(HoldReason::WaitsForReferrers, referrer->seq);
      continue;
    }
    if (e->not_before > now) {
      hold(HoldReason::Backoff);
      if (!out.wake_at || e->not_before < *out.wake_at) out.wake_at = e->not_before;
      continue;
    }
    if (busy >= parallel_limit) {
      hold(HoldReason::ParallelLimit);
      continue;
    }
    out.send.push_back(e->seq);
    ++busy;
  }
  return out;
}

QueueHealth judge_queue(const std::vector<QueueSample>& history, TimePoint now,
                        std::chrono::seconds stall_after) {
  if (history.empty() || history.back().pending == 0) return QueueHealth::Idle;
  if (!history.back().online) return QueueHealth::Offline;
  const TimePoint start = now - stall_after;
  // The state at the start of the span: the last sample taken at or before it.
  std::size_t from = history.size();
  for (std::size_t i = 0; i < history.size() && history[i].at <= start; ++i)
    from = i;
  if (from == history.size()) return QueueHealth::Moving;  // not watched long enough to say
  for (std::size_t i = from; i < history.size(); ++i) {
    const auto& s = history[i];
    // Any change of the count (a restart resets it too) is movement; an offline or empty moment restarts
    // the span, because nothing could or had to move then.
    if (s.finished != history[from].finished || !s.online || s.pending == 0) return QueueHealth::Moving;
  }
  return QueueHealth::Stalled;
}

std::string_view to_string(HoldReason r) {
  switch (r) {
    case HoldReason::Parked:
      return "parked";
    case HoldReason::InFlight:
      return "in-flight";
    case HoldReason::BehindEarlier:
      return "behind-earlier";
    case HoldReason::BehindParked:
      return "behind-parked";
    case HoldReason::WaitsForCreate:
      return "waits-for-create";
    case HoldReason::WaitsForMasterData:
      return "waits-for-master-data";
    case HoldReason::WaitsForReferrers:
      return "waits-for-referrers";
    case HoldReason::Backoff:
      return "backoff";
    case HoldReason::ParallelLimit:
      return "parallel-limit";
  }
  return "?";
}

std::string_view to_string(QueueHealth h) {
  switch (h) {
    case QueueHealth::Idle:
      return "idle";
    case QueueHealth::Offline:
      return "offline";
    case QueueHealth::Moving:
      return "moving";
    case QueueHealth::Stalled:
      return "stalled";
  }
  return "?";
}

}  // namespace knosc::conflict
