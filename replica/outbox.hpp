#pragma once
// The outbox: local edits accepted by the loopback API and waiting to be pushed to Knosc, and the records
// they changed. Every function here runs on the replica writer thread (the read-write Replica).
//
// A local edit is atomic: validation against the replica (plan_edit), the local versions of every record it
// changes (record), upstream's versions set aside (pending_record), the local ids it handed out (local_id)
// and the outbox entry, in one savepoint (replica/savepoint.hpp). Called on its own, that savepoint is a
// transaction committed with synchronous=FULL before write_locally returns. Called as a change of the
// writer's group commit (ReplicaWriter::post_change, as the loopback does), it is part of the group's
// transaction, and the edit is on disk, and the tool may be told it was accepted, once the change's
// completion says so. The other functions here that change several rows use a savepoint too, so the pusher's
// bookkeeping can share group commits the same way.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "replica/local_edit.hpp"
#include "replica/replica.hpp"

namespace knosc::replica {

struct LocalWrite {
  std::variant<EditPlan, EditError> outcome;
  std::int64_t seq = 0;  // the outbox entry, when accepted
};

// The email Knosc knows a loopback user by (their cached profile's "User Email"), for the keys Knosc fills
// from the caller (a note's Author Email); empty when the user has no cached profile.
std::string local_user_email(Replica& rep, const std::string& local_user);

// Validates and applies a write made through the loopback while it cannot go to Knosc at once, and queues it.
// A refused edit (EditError) leaves no trace: its savepoint is rolled back, no local id is used. The times
// Knosc stamps (`Updated At`, ...) are `now`, whatever `request.now_iso` says.
LocalWrite write_locally(Replica& rep, const EditRequest& request, const std::string& local_user,
                         std::int64_t now);

// True for ids handed out by allocate_local_id.
bool is_local_id(const RecordId& id);
// The next local id of `res` (see LocalIdAllocator); part of the caller's transaction.
RecordId allocate_local_id(Replica& rep, const schema::Resource& res);

// Where an outbox entry stands. Stored as text in outbox.state (the names below), so a replica reads the same
// whichever build wrote it.
enum class OutboxState {
  Queued,    // waiting or retrying
  Conflict,  // waits for a person (a conflict record names it)
  Rejected,  // Knosc refused it and nobody has seen the refusal yet: the local change was undone, kept for a
             // person
  Refused,   // Knosc refused it and the tool that made it was given the refusal: closed
  Done,      // landed (or Knosc already held its result)
  Dropped,   // a person gave it up
};
std::string_view to_string(OutboxState s);
// The state stored as `text`; nullopt for a name no build writes.
std::optional<OutboxState> outbox_state_from(std::string_view text);

struct OutboxEntry {
  std::int64_t seq = 0;
  std::string resource;
  RecordId record_id;
  std::string op, method, path;
  std::optional<Json> request;
  std::optional<Json> base;
  std::string local_user;
  std::int64_t created_at = 0;
  OutboxState state = OutboxState::Queued;
  int attempts = 0;
  std::optional<std::int64_t> next_attempt_at;
  std::optional<std::string> last_error;
  std::vector<std::int64_t> needs;      // local ids of other records created locally that it names
  std::optional<RecordId> upstream_id;  // a create's server id once known
  std::optional<std::int64_t> conflict_id;
  bool outcome_unknown = false;      // a create's last attempt may have landed
  std::optional<Json> create_guard;  // {"sent_at", "not_ours"}: see guard_create
};

// Entries not finished (queued, conflict, rejected) with seq above `after_seq`, in seq order, at most
// `limit`.
std::vector<OutboxEntry> open_entries(Replica& rep, std::int64_t after_seq, std::size_t limit);
std::optional<OutboxEntry> outbox_entry(Replica& rep, std::int64_t seq);

// Before a create's first attempt: records when it was sent and which rows the replica holds that match it
// already (by business key; tickets: the reporter's), which therefore cannot be what a lost answer created.
Json guard_create(Replica& rep, std::int64_t seq, const std::string& reporter_email, std::int64_t now);

// A failed attempt that will be retried at `next_attempt_at`; `outcome_unknown` when it may have landed.
void retry_entry(Replica& rep, std::int64_t seq, std::int64_t next_attempt_at, const std::string& error,
                 bool outcome_unknown);
// A create whose server id is now known: the local id becomes the server id in the replica (the record, its
// lines' parent ids, the pending mark), in later entries (record ids, paths, needs) and in local_id, in one
// transaction. A tool holding the local id still finds the record through local_id.
void remap_local_id(Replica& rep, const schema::Resource& res, const RecordId& local_id,
                    const RecordId& server_id);
// The entry landed. When it was the last open entry of a record it touched, that record stops being pending;
// its version in the replica is then replaced by the caller (store_fetched_record / remove_record).
// Returns the records that stopped being pending.
std::vector<std::pair<std::string, RecordId>> complete_entry(Replica& rep, std::int64_t seq,
                                                             std::int64_t now);
// Knosc refused the entry for good: it keeps Knosc's error, and the records it touched that have no other
// open entries stop being pending (the caller restores upstream's version). `heard`: the tool that made the
// change was given the refusal, so the entry is closed ("refused"); otherwise it is parked ("rejected") for a
// person to correct or drop.
std::vector<std::pair<std::string, RecordId>> reject_entry(Replica& rep, std::int64_t seq,
                                                           const std::string& error, std::int64_t now,
                                                           bool heard = false);
// A person must decide: the entry waits on a new conflict row holding all three versions.
std::int64_t park_conflict(Replica& rep, std::int64_t seq, const std::string& kind, const Json& base,
                           const Json& local, const Json& remote, const Json& fields, std::int64_t now);

struct ConflictRow {
  std::int64_t id = 0;
  std::int64_t outbox_seq = 0;
  std::string resource;
  RecordId record_id;
  std::string kind;
  Json base, local, remote, fields;
  std::int64_t created_at = 0;
  std::optional<std::int64_t> resolved_at;
  std::optional<std::string> resolution;
  std::optional<std::string> resolved_by;
};
std::optional<ConflictRow> conflict_row(Replica& rep, std::int64_t id);
std::vector<ConflictRow> conflict_rows(Replica& rep, bool include_resolved, std::size_t limit);
// Settles a conflict by sending `request` (by `method` to `path`, as op `op`) with `base` as the entry's new
// base: keep-local and merged resolutions. The record stays pending; the entry is queued again.
void requeue_entry(Replica& rep, std::int64_t seq, const std::string& op, const std::string& method,
                   const std::string& path, const Json& request, const Json& base,
                   const std::string& resolution, const std::string& user, std::int64_t now);
// Gives an entry up (keep-remote, a dropped rejected edit, a rejected edit replaced by a corrected one): its
// conflict, if any, is settled with `resolution`; returns the records that stopped being pending (the caller
// restores upstream's version).
std::vector<std::pair<std::string, RecordId>> drop_entry(Replica& rep, std::int64_t seq,
                                                         const std::string& resolution,
                                                         const std::string& user, std::int64_t now);

// The server id a local id became, if it has landed.
std::optional<RecordId> server_id_of(Replica& rep, const schema::Resource& res, std::int64_t local_id);

}  // namespace knosc::replica
