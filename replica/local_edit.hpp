#pragma once
// Local edits: what a write through the loopback does to the records it names, decided from the replica
// alone, with the validation Knosc does wherever the replica can check it (required keys, value types,
// referenced business numbers exist, business keys unique, the purchase-order rules, records still in use)
// and Knosc's own error bodies. The write rules of each resource are data in schema/catalog.toml.
//
// Pure with respect to storage: the replica is read through RecordLookup and local ids come from the
// caller, so the planner is table-tested without SQLite and the daemon applies a plan (replica change and
// outbox entry) in one transaction on the writer thread.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "replica/record_id.hpp"
#include "replica/replica.hpp"
#include "schema/catalog.hpp"

namespace knosc::replica {

// Knosc's error for a refused write: {"Message": message, "Code": code} with this status, or `body` when
// Knosc answers that route with a body of another shape (accept-suggested-orders: {"error": message}).
struct EditError {
  int status = 400;
  std::string message;
  std::string code;
  std::optional<Json> body;
};

// What the planner reads. The replica implements it (ReplicaLookup in record_lookup.hpp); tests use maps.
class RecordLookup {
 public:
  virtual ~RecordLookup() = default;
  // The record as get-one shows it (compose_record), or nullopt when there is none.
  virtual std::optional<Json> get(const schema::Resource& res, const RecordId& id) = 0;
  // List rows of `res` whose `key` equals `value` exactly, in id order, at most `limit`.
  virtual std::vector<Json> find(const schema::Resource& res, const std::string& key, const Json& value,
                                 std::size_t limit) = 0;
  // Records of `res` (as get() shows them) with a line in their line set `lines_key` ("details", a flat line
  // list's lines included, or a nested list such as a ticket's "Notes") whose `key` equals `value` exactly,
  // in id order, at most `limit`. Deletes use it for references held by lines (an ASN line naming a PO line).
  virtual std::vector<Json> find_in_lines(const schema::Resource& res, const std::string& lines_key,
                                          const std::string& key, const Json& value, std::size_t limit) = 0;
};

// Hands out the id of a record created locally: a negative integer (-1, -2, ...) for integer ids, so tools
// keep their id type; for string ids (tickets) a string no Knosc id can take.
using LocalIdAllocator = std::function<RecordId(const schema::Resource&)>;
// Local string ids are this prefix and a number ("local-7"); Knosc's ticket ids look like "TKT-001".
inline constexpr const char* kLocalStringIdPrefix = "local-";

// One record the edit changes, as get-one will show it afterwards.
struct RecordAfter {
  const schema::Resource* res = nullptr;
  RecordId id;
  std::optional<Json> record;  // nullopt: the edit deletes it
};

// The outbox op of each kind of write:
//   create, update, delete    POST /<resource>, PUT and DELETE /<resource>/{id}
//   line-delete               DELETE /purchase-order-details/{id} (and sales-order-details): the last line
//                             takes its order with it
//   note-create, note-update, note-delete     /issue-tracker-notes[/{id}]
//   subscriber-add, subscriber-remove         POST and DELETE /issue-tracker-tickets/{id}/subscribers
//   line-move                 PUT /purchase-order-details-move-lines
//   accept-suggested          PUT /purchase-order-details-accept-suggested-orders
struct EditPlan {
  std::string op;
  // The resource whose record the route names, and that record (its new local id for creates). Notes are kept
  // inside their ticket in the replica: for note ops `res` is note_resource() and `id` the note's id, while
  // `records` holds the ticket. Line moves name the source order, accepted suggestions the first order.
  const schema::Resource* res = nullptr;
  RecordId id;
  // Every record the edit changes, as get-one shows it afterwards, the named one first (for note ops, the
  // ticket). An order's changed lines follow it as records of its flat line list, deleted ones as nullopt.
  // Records whose get-one only derives from the changed ones (a customer's "Ship To Locations") are not
  // listed: the replica derives them on read.
  std::vector<RecordAfter> records;
  Json response;  // Knosc's success body for the tool (with local ids)
};

struct EditRequest {
  std::string method;             // POST, PUT, PATCH, DELETE
  std::vector<std::string> path;  // the segments after /api, e.g. {"purchase-order", "42"}
  const Json* body = nullptr;     // the parsed JSON body; nullptr when the request had none
  std::string now_iso;            // the time of the edit, for keys Knosc stamps (ticket Created At, ...);
                                  // write_locally sets it from the time of its commit
  std::string user_email;         // the local user, for keys Knosc fills from the caller (note Author Email)
};

// Issue-tracker notes as a resource of their own for local ids and the outbox; they are not a catalog
// resource (the replica keeps them inside their ticket, under "Notes").
const schema::Resource& note_resource();

// Decides what a write does, or why Knosc would refuse it. Never throws for bad input; throws only when the
// lookup itself fails.
std::variant<EditPlan, EditError> plan_edit(const schema::Catalog& catalog, RecordLookup& lookup,
                                            const EditRequest& request, const LocalIdAllocator& next_id);

}  // namespace knosc::replica
