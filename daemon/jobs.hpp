#pragma once
// Knosc's upload jobs on the loopback (API-NOTES §15.1, CONTRACT §6), online or offline.
//
// POST /api/job/{trigger} stores the upload durably in the replica's `job` table (committed before the tool
// gets its answer) and answers as Knosc does: a job id of Knosc's shape and status "queued". A forwarder
// sends stored uploads upstream under the service account when Knosc can be reached, in the bulk-import
// guide's dependency order (master data before the transactions that name it) and in upload order within a
// trigger, then polls upstream for each job's status until it completes or fails; a completed job starts
// passes of the lists it changed. GET /api/job?jobs=[...] answers with the local view of each job ("queued"
// until it has been forwarded, then upstream's last known status, errors included), and GET
// /api/job/{trigger} downloads the last file uploaded for that trigger.
//
// Knosc sees only the service account, so the daemon keeps users apart itself. An upload from a role with
// granular filters is read row by row first (daemon/upload_rows.hpp); rows outside the filters fail the job
// here with those rows as its errors, and it is never sent. A user polls and downloads only their own jobs
// and files; administrators see everyone's (docs/LOOPBACK_API.md, "Jobs").
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. The table is written
// through the ReplicaWriter and read by ReplicaReaders; answers come back through the LoopInbox. The jobs'
// metadata (not their files) are also held in memory, so polling never waits for the database.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/http_server.hpp"
#include "daemon/local_auth.hpp"
#include "daemon/replica_readers.hpp"
#include "replica/writer.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/retry_policy.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::daemon {

// --- Pure parts (tests/unit/test_jobs.cpp) -----------------------------------------------------------------

// One of Knosc's job triggers.
struct JobTrigger {
  std::string_view name;    // the path segment, e.g. "item-master"
  std::string_view module;  // privilege module: Edit to upload, View to poll and download
  bool takes_file = true;   // false for the computation trigger, inventory-planning
  // Mirrored lists a completed job may have changed; passes of them start when it completes.
  std::vector<std::string_view> resources;
};

// Every trigger, in the bulk-import guide's dependency order: units, warehouses, suppliers, customers, items
// and external items first (everything else names them), then BOMs and allocations (they name items and
// suppliers), then forecasts, purchase, sales and manufacturing orders and inventory, and the inventory
// planning computation last (it reads all of the above).
const std::vector<JobTrigger>& job_triggers();
const JobTrigger* find_job_trigger(std::string_view name);
// The trigger's position in that order (0 first); triggers not in the table go last.
int import_rank(std::string_view trigger);

enum class JobState {
  Queued,     // stored here, not yet accepted upstream
  Forwarded,  // accepted upstream (queued or running there); polled
  Completed,  // upstream said completed
  Failed,     // upstream said failed, or refused the upload
};
std::string_view to_string(JobState s);
std::optional<JobState> job_state_from(std::string_view text);

// What the forwarder needs to know of a job to choose the next one.
struct JobSlot {
  std::string job_id;
  std::string trigger;
  std::int64_t seq = 0;  // upload order
  JobState state = JobState::Queued;
};

// The job to send upstream next, or nullopt when none may go now: the queued job first in import order (then
// upload order); it waits while a job of an earlier trigger is still running upstream, because its rows may
// name records that job creates. Jobs of its own trigger do not hold it back: Knosc runs one trigger's jobs
// one at a time in the order they arrive.
std::optional<std::string> next_job_to_forward(const std::vector<JobSlot>& jobs);

// A job id of Knosc's shape: "<trigger>-upload-<8 hex digits>" for uploads, "<trigger>-run-<...>" for the
// computation trigger.
std::string new_job_id(std::string_view trigger, bool upload, std::uint32_t random);

// The stored name and type of an upload, as Knosc keeps them for the download: the file name without any
// directory part ("upload.csv"/"upload.xlsx" when none was sent), and XLSX when the name ends in .xlsx or the
// data is a ZIP container, CSV otherwise.
std::string upload_content_type(std::string_view filename, std::string_view data);
std::string upload_file_name(std::string_view filename, std::string_view content_type);

// How long to wait before polling a forwarded job again: every second at first, then less often for long
// jobs (a tenth of the time it has been upstream, at most every 30 s).
std::chrono::milliseconds poll_delay(std::chrono::seconds since_forwarded);

// A job as the loopback knows it.
struct JobRecord {
  std::string job_id;  // the id the tool was given
  std::string trigger;
  std::int64_t seq = 0;
  JobState state = JobState::Queued;
  std::string local_user;
  std::int64_t created_at = 0;
  std::optional<std::string> upstream_job_id;
  nlohmann::ordered_json upstream_status;  // upstream's last word on the job (its poll object); null before
  int attempts = 0;                        // failed tries to send it
  std::string last_error;
  std::optional<std::int64_t> forwarded_at;
};

// Whether a user may poll a job: their own (usernames compare without regard to ASCII case, as local_user
// does), or any job for administrators.
bool same_local_user(std::string_view a, std::string_view b);
bool may_see_job(const LocalSession& session, const JobRecord& job);

// The job's object in GET /api/job's answer, in Knosc's shape ({"trigger", "job_id", "status",
// "rows_processed", "errors", "completed_at"}): "queued" with no errors until forwarded, then upstream's
// last known object under the local job id.
nlohmann::ordered_json job_view(const JobRecord& job);

// --- The routes and the forwarder -----------------------------------------------------------------------

struct JobsDeps {
  uv_loop_t* loop = nullptr;
  replica::ReplicaWriter* writer = nullptr;
  ReplicaReaders* readers = nullptr;
  sync::LoopInbox* inbox = nullptr;
  sync::UpstreamSession* upstream = nullptr;             // the service account's session
  std::function<std::optional<bool>()> online;           // the link to Knosc as the puller sees it
  std::function<bool(const std::string&)> trigger_pull;  // start a pass of a resource now
  sync::BackoffConfig backoff;                           // waits between tries of a transient failure
};

class Jobs {
 public:
  explicit Jobs(JobsDeps deps);
  ~Jobs();
  Jobs(const Jobs&) = delete;
  Jobs& operator=(const Jobs&) = delete;

  // Loads the stored jobs (requests wait until they are in memory) and starts forwarding.
  void start();
  // Sends nothing new; `done` runs once the send or polls in flight have come back and their results are
  // committed (an upload Knosc accepted is recorded as forwarded, so it is never sent twice by a restart).
  void stop(std::function<void()> done);
  // The link came back (sync::LinkMonitor::on_link_back): an upload waiting after a transport failure goes
  // now, and forwarded jobs are polled now.
  void link_returned();

  // GET /api/job, GET and POST /api/job/{trigger}. The session is authenticated and, for POST, its CSRF
  // header checked by the caller.
  void handle(const HttpRequest& request, const LocalSession& session, Responder respond);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace knosc::daemon
