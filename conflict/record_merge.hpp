#pragma once
// How to push one local edit of a record that exists upstream: the three-way merge of the record as the
// loopback showed it when the edit was made (base), the tool's request (local) and the record as Knosc holds
// it now (remote, read just before the PUT), and the resource's conflict policy. Pure: no I/O, no clock; the
// pusher reads upstream, calls plan_update or plan_delete and carries out the decision. The model, the
// decisions and the defaults are described in docs/CONFLICTS.md.

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "conflict/field_merge.hpp"

namespace knosc::conflict {

// What happens to a field both sides changed to different values. The catalog's conflict_policy maps onto
// this one to one; the conflict module keeps its own enum so it depends on nothing but JSON.
enum class Policy {
  Merge,       // a person decides
  ServerWins,  // Knosc's value stays; reported as overridden, no conflict record
  ClientWins,  // the local value is sent; reported as overridden
  Manual,      // like Merge, and a field the request sent unchanged also goes to a person if Knosc changed it
};

// The parts of a resource the merge needs to know.
struct RecordShape {
  // true: PUT replaces the whole record and its line set (orders, forecasts, BOMs), so a header key or line
  // key the request leaves out is cleared by Knosc and counts as set to null. false: PUT changes only the
  // keys it sends (master data, tickets, scenarios, allocations); if such a request carries the line set,
  // that line set is still replaced as a whole.
  bool full_replacement = false;
  std::string id_key = "id";  // the record's id: never compared, never sent in a body
  std::string lines_key;      // the line set ("details"); empty when the record has none
  std::string line_id_key = "id";
  // Keys Knosc computes (names and ids of referenced records, aggregates, aliases, read-only custom columns):
  // never compared, taken from remote in the merged record and left out of merged bodies. A key missing here
  // is compared and sent like any other: a full replacement would then clear it when the request omits it.
  std::set<std::string> ignored;
  std::set<std::string> line_ignored;
  Policy policy = Policy::Merge;
  std::optional<Policy> line_policy;  // the policy of line fields; `policy` when not set
  // Fields whose collisions always go to a person, whatever the policy (they are treated as Manual).
  std::set<std::string> manual_fields;
  std::set<std::string> line_manual_fields;
};

enum class Decision {
  NothingToSend,  // Knosc already holds the result (or, under server-wins, Knosc's version stands): done
  Send,           // Knosc changed nothing the request touches since base: send the tool's request unchanged
  SendMerged,     // send `body`, the local changes merged with Knosc's since base
  NeedsPerson,    // some collision needs a person: park the entry with a conflict record
  EditVsDelete,   // the record was edited locally and deleted upstream: park with a conflict record
  DeleteVsEdit,   // the record was deleted locally and changed upstream since base: park with a conflict
                  // record
};

enum class Settlement {
  Person,      // waits for a person
  TookRemote,  // Knosc's side kept, the local side overridden
  TookLocal,   // the local side sent, Knosc's side overridden
};

// One place where both sides changed the same thing.
struct Collision {
  Json line_id;  // null for a header field; the line's id for a line field or a whole line
  // The field and each side's value. An empty key means a whole line (line_id set) or the whole record: it
  // was removed on one side and changed on the other; the values are then whole lines or records.
  FieldConflict field;
  Settlement settlement = Settlement::Person;
};

struct RecordPlan {
  Decision decision = Decision::NothingToSend;
  // Send: the request unchanged. SendMerged: the merged body (partial: only the keys that change Knosc's
  // record; full replacement: the whole record, with every line to keep). Otherwise null.
  Json body;
  // The record as Knosc will hold it once the decision is carried out: after `body` lands, or Knosc's record
  // as it stands (with Knosc's values where a person must decide); null when the record will not exist.
  Json merged;
  std::vector<Collision> collisions;  // every collision, settled ones included

  bool needs_person() const;
};

// Plans the PUT of `request` (a partial body, or a full record with its lines keyed by line id, id null =
// new line). `remote` is nullopt when Knosc answered NotFound. See docs/CONFLICTS.md for the rules.
RecordPlan plan_update(const Json& base, const Json& request, const std::optional<Json>& remote,
                       const RecordShape& shape);

// Plans the DELETE of a record whose base is `base`: Send when Knosc still holds base (as far as compared
// keys go), NothingToSend when the record is already gone, DeleteVsEdit (or the policy's side) when Knosc
// changed it since base.
RecordPlan plan_delete(const Json& base, const std::optional<Json>& remote, const RecordShape& shape);

// A late echo of this daemon's own request. A request whose transfer was cut after it went out (no answer;
// the pusher sent it again later) may still reach Knosc afterwards: a link that held it (a proxy, a VPN that
// resumes, TCP retransmitting once the route is back) delivers it after later edits of the record landed, and
// Knosc applies the stale body. A record field then holds, upstream, a value this daemon itself sent, which
// three-way merge would take for somebody else's change and put before a person (or, untouched by the edit
// being pushed, leave standing over the later edit).
//
// `late` are the bodies of such cut requests for the record (header keys only). A top-level key whose remote
// value differs from base but equals the value a late body sent for it is this daemon's echo: the returned
// remote holds base's value there (nobody else changed it), and `repaired` lists the keys whose base value
// must be sent again to undo the echo. Line sets and keys the shape ignores are left as they are.
struct EchoCheck {
  Json remote;
  std::vector<std::string> repaired;
};
EchoCheck discount_late_echoes(const Json& base, const Json& remote, const std::vector<Json>& late,
                               const RecordShape& shape);

std::string_view to_string(Policy p);
std::string_view to_string(Decision d);
std::string_view to_string(Settlement s);

}  // namespace knosc::conflict
