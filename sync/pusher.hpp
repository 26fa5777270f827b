#pragma once
// The pusher: sends the outbox's local edits to Knosc when the link is up, exactly once and in order per
// record (see docs/CONFLICTS.md and docs/SYNC_PROTOCOL.md).
//
// For each entry that may go (conflict::push_order decides): an update or delete first reads the record
// upstream and plans with conflict::plan_update / plan_delete against the entry's base; a create whose last
// attempt may have landed looks the record up by its business key before posting again. Success makes the
// replica hold upstream's version again (a local id becomes the server id everywhere); a permanent refusal
// parks the entry as rejected with Knosc's error and restores upstream's version; a collision a person must
// settle parks it as a conflict; anything transient is retried with capped exponential backoff and jitter,
// forever. A watchdog flags a queue that stops moving.
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. Replica work goes to
// the ReplicaWriter and comes back through the LoopInbox.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "replica/writer.hpp"
#include "schema/catalog.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/retry_policy.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::sync {

struct PushOptions {
  int max_parallel = 4;  // entries of different records in flight at once
  BackoffConfig backoff;
  std::chrono::seconds stall_after{600};  // no entry settled for this long while some wait: stalled
  std::string account_email;              // the service account (Knosc records it as a ticket's reporter)
  // Raise a Knosc issue-tracker ticket for each conflict that needs a person, so people who work in Knosc
  // see it too (config [push] conflict_tickets).
  bool conflict_tickets = false;
};

struct PushStatus {
  std::int64_t queued = 0;                       // entries waiting to be sent (retries included)
  std::int64_t in_flight = 0;                    // being sent now
  std::int64_t conflicts = 0;                    // waiting on a person
  std::int64_t rejected = 0;                     // refused by Knosc, kept for a person to correct or drop
  std::int64_t pushed = 0;                       // landed since the daemon started
  std::optional<std::int64_t> last_progress_at;  // unix time an entry last settled
  bool stalled = false;
  std::string last_error;
  std::map<std::string, std::int64_t> held;  // why waiting entries are not being sent, by reason
};

// What became of a change a tool waits for (Pusher::watch).
struct PushVerdict {
  enum class Kind {
    Landed,   // Knosc took the change
    Refused,  // Knosc refused it for good (400, 403, ...): the local change is undone and the entry closed
    Held,     // it waits for a person (a conflict); the tool gets the pending answer
  };
  Kind kind = Kind::Held;
  // Knosc's own answer to the request that decided it; none when nothing had to be sent (the record already
  // was as the change wanted) or a create was found to have landed by a lost answer.
  std::optional<HttpResponse> answer;
  std::optional<std::string> server_id;     // a landed create's id
  std::optional<std::int64_t> conflict_id;  // Held: the conflict that waits
};

// A tool waiting for one outbox entry. `verdict` runs once Knosc has decided (before the replica records
// it); `settled` runs once the replica holds the outcome (the entry closed, the record as Knosc has it).
// Either may never run: the waiter gives up on its own clock and calls Pusher::unwatch.
struct PushWatch {
  std::function<void(const PushVerdict&)> verdict;
  std::function<void()> settled;
};

// How a person settles a conflict or a rejected edit (loopback /syncd routes and the CLI).
enum class Resolution {
  KeepLocal,   // send the local edit over Knosc's changes
  KeepRemote,  // drop the local edit; the replica takes Knosc's version
  Merged,      // send the given body instead
  Retry,       // a rejected edit: send again (with a corrected body when one is given)
  Drop,        // a rejected edit: give it up
};

class Pusher {
 public:
  using OnlineFn = std::function<std::optional<bool>()>;
  // Starts a pass of a resource now (or right after the one running); false when it has no pass.
  using TriggerPullFn = std::function<bool(const std::string&)>;

  Pusher(uv_loop_t* loop, UpstreamSession& session, replica::ReplicaWriter& writer, LoopInbox& inbox,
         const schema::Catalog& catalog, PushOptions options, OnlineFn online, TriggerPullFn trigger_pull);
  ~Pusher();
  Pusher(const Pusher&) = delete;
  Pusher& operator=(const Pusher&) = delete;

  void start();
  // Starts nothing new; `done` runs when every entry in flight has come back and been recorded.
  void stop(std::function<void()> done);
  // Something changed: an entry was queued (its seq), the link came back, a person settled a conflict.
  void queued(std::int64_t seq);
  void kick();
  // The link came back (LinkMonitor::on_link_back): entries that back off after failures are tried now.
  void link_returned();
  // A tool waits for entry `seq` (just queued): it is loaded and sent at once, and `w` hears its verdict. A
  // refusal heard by a waiter closes the entry as refused (the tool has Knosc's error; nobody else has to act
  // on it); without one it is kept as rejected for a person.
  void watch(std::int64_t seq, PushWatch w);
  // The waiter stopped waiting (it answered the tool with the pending answer).
  void unwatch(std::int64_t seq);
  PushStatus status() const;

  // Settles conflict `conflict_id` (KeepLocal, KeepRemote, Merged with `body`) or rejected entry `seq`
  // (Retry with an optional corrected `body`, Drop). `done` gets an empty string or why it was refused.
  void resolve(std::int64_t id, Resolution how, std::optional<nlohmann::ordered_json> body, std::string user,
               std::function<void(std::string)> done);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace knosc::sync
