#include "daemon/jobs.hpp"

#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>
#include <random>
#include <set>

#include "daemon/multipart.hpp"
#include "daemon/status_report.hpp"
#include "daemon/upload_rows.hpp"
#include "daemon/upstream_answer.hpp"
#include "replica/clock.hpp"
#include "replica/record_lookup.hpp"

namespace knosc::daemon {

using OJson = nlohmann::ordered_json;

namespace {

constexpr std::string_view kXlsxType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
constexpr std::string_view kCsvType = "text/csv";

// How often the forwarder looks at its jobs while any is unfinished: polls and retries fall due on this tick.
constexpr std::uint64_t kTickMs = 500;
// Finished jobs stay answerable to polls (and their rows in the table) this long.
constexpr std::int64_t kKeepFinishedSeconds = 90LL * 24 * 3600;

using replica::unix_now;

bool iends_with(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(
      suffix.begin(), suffix.end(), s.end() - static_cast<std::ptrdiff_t>(suffix.size()), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
      });
}

HttpResponse not_privileged() {
  return HttpResponse::knosc_error(403, "Not Privileged for this action", "User.NotPrivileged");
}
HttpResponse route_not_found() {
  return HttpResponse::knosc_error(404, "Not Found", "Route.NotFound");
}

// A job that will not run upstream, in the shape of upstream's failed jobs (the errors say why).
OJson failed_status(const std::string& message) {
  return OJson{{"status", "failed"},
               {"rows_processed", 0},
               {"errors", OJson::array({OJson{{"row", 0}, {"message", message}}})},
               {"completed_at", iso8601_utc(unix_now())}};
}

// An upload refused here because rows lie outside the uploader's granular filters (or the file cannot be
// checked), in the shape of upstream's failed jobs: Knosc fails a job with bad rows the same way.
OJson refused_status(const std::vector<UploadRowError>& errors) {
  OJson list = OJson::array();
  for (const auto& e : errors)
    list.push_back(OJson{{"row", e.row}, {"message", e.message}});
  return OJson{{"status", "failed"},
               {"rows_processed", 0},
               {"errors", std::move(list)},
               {"completed_at", iso8601_utc(unix_now())}};
}

// A file name inside a quoted Content-Disposition parameter.
std::string quoted_file_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '"' || c == '\\') out += '\\';
    if (c != '\r' && c != '\n') out += c;
  }
  return out;
}

}  // namespace

// --- Pure parts
// ----------------------------------------------------------------------------------------------

const std::vector<JobTrigger>& job_triggers() {
  static const std::vector<JobTrigger> triggers = {
      {"unit-master", "Unit Master", true, {"unit-master"}},
      {"warehouse-master", "Warehouse Master", true, {"warehouse-master"}},
      // Suppliers and customers carry their ship-from and ship-to locations (and cascade to them).
      {"supplier-master", "Supplier Master", true, {"supplier-master", "ship-from-master"}},
      {"customer-master", "Customer Master", true, {"customer-master", "ship-to-master"}},
      {"item-master", "Item Master", true, {"item-master", "sub-item-master"}},
      {"external-item-master", "External Item Master", true, {"external-item-master"}},
      {"bill-of-materials", "Bill of Materials", true, {"bill-of-materials"}},
      {"supplier-allocation", "Supplier Allocation", true, {"supplier-allocation"}},
      {"forecast", "Forecast", true, {"forecast"}},
      {"procurement", "Procurement", true, {"purchase-order", "purchase-order-details"}},
      {"demand", "Demand", true, {"sales-order", "sales-order-details"}},
      {"manufacturing", "Manufacturing", true, {"manufacturing-order"}},
      {"inventory", "Inventory", true, {"inventory"}},
      // The planning run may turn its reorder proposals into suggested purchase orders.
      {"inventory-planning", "Inventory Planning", false, {"purchase-order", "purchase-order-details"}},
  };
  return triggers;
}

const JobTrigger* find_job_trigger(std::string_view name) {
  for (const auto& t : job_triggers())
    if (t.name == name) return &t;
  return nullptr;
}

int import_rank(std::string_view trigger) {
  const auto& all = job_triggers();
  for (std::size_t i = 0; i < all.size(); ++i)
    if (all[i].name == trigger) return static_cast<int>(i);
  return static_cast<int>(all.size());
}

std::string_view to_string(JobState s) {
  switch (s) {
    case JobState::Queued:
      return "queued";
    case JobState::Forwarded:
      return "forwarded";
    case JobState::Completed:
      return "completed";
    case JobState::Failed:
      return "failed";
  }
  return "queued";
}

std::optional<JobState> job_state_from(std::string_view text) {
  for (auto s : {JobState::Queued, JobState::Forwarded, JobState::Completed, JobState::Failed})
    if (to_string(s) == text) return s;
  return std::nullopt;
}

std::optional<std::string> next_job_to_forward(const std::vector<JobSlot>& jobs) {
  const JobSlot* first = nullptr;
  for (const auto& j : jobs) {
    if (j.state != JobState::Queued) continue;
    const auto key = std::pair(import_rank(j.trigger), j.seq);
    if (!first || key < std::pair(import_rank(first->trigger), first->seq)) first = &j;
  }
  if (!first) return std::nullopt;
  const int rank = import_rank(first->trigger);
  for (const auto& j : jobs)
    if (j.state == JobState::Forwarded && import_rank(j.trigger) < rank) return std::nullopt;
  return first->job_id;
}

std::string new_job_id(std::string_view trigger, bool upload, std::uint32_t random) {
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", random);
  return std::string(trigger) + (upload ? "-upload-" : "-run-") + hex;
}

std::string upload_content_type(std::string_view filename, std::string_view data) {
  if (iends_with(filename, ".xlsx") || data.substr(0, 4) == std::string_view("PK\x03\x04", 4))
    return std::string(kXlsxType);
  return std::string(kCsvType);
}

std::string upload_file_name(std::string_view filename, std::string_view content_type) {
  // Tools on Windows send "C:\\path\\file.csv"; only the last component names the file.
  const auto cut = filename.find_last_of("/\\");
  if (cut != std::string_view::npos) filename.remove_prefix(cut + 1);
  if (!filename.empty()) return std::string(filename);
  return content_type == kXlsxType ? "upload.xlsx" : "upload.csv";
}

std::chrono::milliseconds poll_delay(std::chrono::seconds since_forwarded) {
  const auto tenth = std::chrono::duration_cast<std::chrono::milliseconds>(since_forwarded) / 10;
  return std::clamp<std::chrono::milliseconds>(tenth, std::chrono::seconds(1), std::chrono::seconds(30));
}

bool same_local_user(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool may_see_job(const LocalSession& session, const JobRecord& job) {
  return session.privileges.is_administrator() || same_local_user(session.username, job.local_user);
}

OJson job_view(const JobRecord& job) {
  OJson out{{"trigger", job.trigger}, {"job_id", job.job_id},     {"status", "queued"},
            {"rows_processed", 0},    {"errors", OJson::array()}, {"completed_at", OJson()}};
  if (job.state != JobState::Queued && job.upstream_status.is_object()) {
    for (const auto& [k, v] : job.upstream_status.items())
      out[k] = v;
    // Upstream knows the job by its own id; the tool knows it by the id it was given here.
    out["trigger"] = job.trigger;
    out["job_id"] = job.job_id;
  }
  return out;
}

// --- The routes and the forwarder
// ----------------------------------------------------------------------------

struct Jobs::Impl {
  using Clock = std::chrono::steady_clock;

  JobsDeps d;
  std::map<std::string, JobRecord> jobs;
  bool loaded = false;
  bool stopping = false;
  std::vector<std::function<void()>> deferred;  // requests that arrived before the jobs were loaded
  uv_timer_t* timer = nullptr;                  // freed in its close callback
  bool sending = false;                         // one upload goes upstream at a time
  std::set<std::string> polling;
  std::map<std::string, Clock::time_point> next_poll;
  Clock::time_point next_send_at{};
  // After a transport failure the next try waits for its backoff, or for the link to come back, whichever is
  // first: the puller notices a returning link sooner than a long backoff would.
  bool retry_waits_for_link = false;
  bool link_seen_down = false;
  int outstanding = 0;  // upstream calls and replica work of the forwarder not yet come back
  std::function<void()> stop_done;
  std::mt19937 rng{std::random_device{}()};

  explicit Impl(JobsDeps deps) : d(std::move(deps)) {}

  ~Impl() {
    if (timer) uv_close(reinterpret_cast<uv_handle_t*>(timer), on_timer_closed);
  }

  static void on_timer_closed(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

  bool link_down() const { return d.online && d.online() == std::optional<bool>(false); }

  // --- lifecycle ---

  void start() {
    timer = new uv_timer_t;
    uv_timer_init(d.loop, timer);
    timer->data = this;
    ++outstanding;
    d.writer->post([this](replica::Replica& rep) {
      std::vector<JobRecord> rows;
      try {
        SQLite::Statement prune(rep.db(),
                                "DELETE FROM job WHERE state IN ('completed', 'failed') AND updated_at < ?1");
        prune.bind(1, unix_now() - kKeepFinishedSeconds);
        prune.exec();
        SQLite::Statement q(rep.db(),
                            "SELECT job_id, trigger, seq, state, local_user, created_at, upstream_job_id, "
                            "upstream_status, attempts, last_error, forwarded_at FROM job ORDER BY seq");
        while (q.executeStep()) {
          JobRecord j;
          j.job_id = q.getColumn(0).getString();
          j.trigger = q.getColumn(1).getString();
          j.seq = q.getColumn(2).getInt64();
          j.state = job_state_from(q.getColumn(3).getString()).value_or(JobState::Queued);
          j.local_user = q.getColumn(4).getString();
          j.created_at = q.getColumn(5).getInt64();
          if (!q.getColumn(6).isNull()) j.upstream_job_id = q.getColumn(6).getString();
          if (!q.getColumn(7).isNull()) {
            j.upstream_status = OJson::parse(q.getColumn(7).getString(), nullptr, false);
            if (j.upstream_status.is_discarded()) j.upstream_status = nullptr;
          }
          j.attempts = q.getColumn(8).getInt();
          if (!q.getColumn(9).isNull()) j.last_error = q.getColumn(9).getString();
          if (!q.getColumn(10).isNull()) j.forwarded_at = q.getColumn(10).getInt64();
          rows.push_back(std::move(j));
        }
      } catch (const std::exception& e) {
        spdlog::error("jobs: loading the stored jobs failed: {}", e.what());
      }
      d.inbox->post([this, rows = std::move(rows)]() mutable {
        std::size_t waiting = 0;
        for (auto& j : rows) {
          waiting += j.state == JobState::Queued || j.state == JobState::Forwarded ? 1 : 0;
          jobs[j.job_id] = std::move(j);
        }
        if (waiting) spdlog::info("jobs: {} stored upload(s) not yet finished upstream", waiting);
        loaded = true;
        auto queued = std::move(deferred);
        deferred.clear();
        for (auto& fn : queued)
          fn();
        --outstanding;
        kick();
        maybe_finish();
      });
    });
  }

  void stop(std::function<void()> done) {
    stopping = true;
    stop_done = std::move(done);
    if (timer) {
      uv_close(reinterpret_cast<uv_handle_t*>(timer), on_timer_closed);
      timer = nullptr;
    }
    maybe_finish();
  }

  void maybe_finish() {
    if (!stopping || outstanding != 0 || !stop_done) return;
    auto done = std::move(stop_done);
    stop_done = nullptr;
    done();
  }

  // Looks at the jobs on the next loop iteration (never from inside an upstream callback, which may run
  // synchronously), then every tick while any is unfinished.
  void kick() {
    if (timer && !stopping) uv_timer_start(timer, on_tick, 0, kTickMs);
  }

  static void on_tick(uv_timer_t* t) { static_cast<Impl*>(t->data)->pump(); }

  // --- routes ---

  void handle(const HttpRequest& req, const LocalSession& session, Responder respond) {
    if (!loaded) {
      deferred.push_back([this, req, session, respond = std::move(respond)]() mutable {
        route(req, session, std::move(respond));
      });
      return;
    }
    route(req, session, std::move(respond));
  }

  void route(const HttpRequest& req, const LocalSession& session, Responder respond) {
    const auto seg = split_path(req.path);  // "api", "job", ...
    if (seg.size() == 2) {
      if (req.method != "GET") return respond(route_not_found());
      return respond(poll_answer(req, session));
    }
    if (seg.size() != 3) return respond(route_not_found());
    const JobTrigger* trigger = find_job_trigger(seg[2]);
    if (!trigger)
      return respond(
          HttpResponse::knosc_error(400, "Unknown job trigger '" + seg[2] + "'.", "Job.UnknownTrigger"));
    const std::string module(trigger->module);
    if (req.method == "GET") {
      if (!session.privileges.allows(module, Access::View)) return respond(not_privileged());
      return download(*trigger, session, std::move(respond));
    }
    if (req.method != "POST") return respond(route_not_found());
    if (!session.privileges.allows(module, Access::Edit)) return respond(not_privileged());
    return upload(req, session, *trigger, std::move(respond));
  }

  // GET /api/job?jobs=[{"trigger", "job_id"}, ...]
  HttpResponse poll_answer(const HttpRequest& req, const LocalSession& session) const {
    const auto q = req.query_params();
    const auto raw = q.find("jobs");
    if (raw == q.end() || raw->second.empty())
      return HttpResponse::knosc_error(400, "Missing required parameter: jobs", "JSON.Invalid");
    const auto wanted = nlohmann::json::parse(raw->second, nullptr, false);
    if (wanted.is_discarded()) return HttpResponse::knosc_error(400, "Bad Request Format", "JSON.Invalid");
    const bool shaped = wanted.is_array() && std::all_of(wanted.begin(), wanted.end(), [](const auto& w) {
                          return w.is_object() && w.contains("job_id") && w["job_id"].is_string();
                        });
    if (!shaped)
      return HttpResponse::knosc_error(400, "'jobs' must be a JSON array of {\"trigger\", \"job_id\"}.",
                                       "JSON.Invalid");
    OJson out = OJson::array();
    for (const auto& w : wanted) {
      const auto id = w["job_id"].get<std::string>();
      const JobRecord* job = find(id);
      const auto trig = w.find("trigger");
      // Another user's job does not exist for this one, as Knosc answers for records a role cannot see.
      if (!job || !may_see_job(session, *job) ||
          (trig != w.end() && !trig->is_null() && *trig != nlohmann::json(job->trigger)))
        return HttpResponse::knosc_error(400, "Job " + id + " not found.", "Job.NotFound");
      const JobTrigger* t = find_job_trigger(job->trigger);
      if (!t || !session.privileges.allows(std::string(t->module), Access::View)) return not_privileged();
      out.push_back(job_view(*job));
    }
    return HttpResponse::json(200, OJson{{"jobs", out}}.dump());
  }

  // A job by the id the tool was given, or by upstream's id (a tool may have learnt that one elsewhere).
  const JobRecord* find(const std::string& id) const {
    if (auto it = jobs.find(id); it != jobs.end()) return &it->second;
    for (const auto& [_, j] : jobs)
      if (j.upstream_job_id == id) return &j;
    return nullptr;
  }

  // POST /api/job/{trigger}: stored and committed before the answer.
  void upload(const HttpRequest& req, const LocalSession& session, const JobTrigger& trigger,
              Responder respond) {
    auto file = std::make_shared<std::string>();
    std::string file_name, content_type;
    if (trigger.takes_file) {
      const std::string ctype = req.header("content-type").value_or("");
      std::string lower = ctype;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      const std::string expected = "Expected multipart/form-data with a 'file' field.";
      if (lower.find("multipart/form-data") == std::string::npos)
        return respond(HttpResponse::knosc_error(400, expected, "Job.MissingFile"));
      const auto form = parse_multipart(ctype, req.body);
      if (!form)
        return respond(
            HttpResponse::knosc_error(400, expected + " " + form.error().message, "Job.MissingFile"));
      const MultipartPart* part = form->find("file");
      if (!part) return respond(HttpResponse::knosc_error(400, expected, "Job.MissingFile"));
      if (part->data.empty())
        return respond(HttpResponse::knosc_error(400, "The uploaded file is empty.", "Job.MissingFile"));
      file->assign(part->data);
      content_type = upload_content_type(part->filename.value_or(""), *file);
      file_name = upload_file_name(part->filename.value_or(""), content_type);
    }
    JobRecord rec;
    do {
      rec.job_id = new_job_id(trigger.name, trigger.takes_file, static_cast<std::uint32_t>(rng()));
    } while (jobs.count(rec.job_id));
    rec.trigger = std::string(trigger.name);
    rec.local_user = session.username;
    rec.created_at = unix_now();
    auto shared = std::make_shared<Responder>(std::move(respond));
    if (!trigger.takes_file || session.privileges.granular.empty())
      return store(std::move(rec), file, std::move(file_name), std::move(content_type), {}, shared);
    // The service account sends the file and sees every row, so a role's granular filters are applied here,
    // to every row, before anything is stored. A reader thread does it: reading a large workbook takes a
    // while (the loop keeps serving), and the records the rows name are looked up in the replica.
    const bool xlsx = content_type == kXlsxType;
    d.readers->post([this, rec = std::move(rec), file, file_name = std::move(file_name),
                     content_type = std::move(content_type), shared, xlsx,
                     filters = session.privileges.granular](replica::Replica& rep) mutable {
      std::vector<UploadRowError> outside;
      try {
        // The trigger's lists whose records one column names (PO List Number, Forecast List Number, ...).
        std::vector<const schema::Resource*> keyed;
        NamedRecords named;
        for (auto name : find_job_trigger(rec.trigger)->resources) {
          const schema::Resource* res = rep.catalog().find(name);
          if (!res || res->business_key.size() != 1) continue;
          keyed.push_back(res);
          named.columns.push_back(res->business_key.front());
        }
        replica::ReplicaLookup lookup(rep);
        named.outside = [&](const std::string& column, const std::string& value) {
          for (const auto* res : keyed) {
            if (res->business_key.front() != column) continue;
            for (const auto& record : lookup.find(*res, column, nlohmann::json(value), 16))
              if (!record_within(filters, record)) return true;
          }
          return false;
        };
        outside = upload_rows_outside(*file, xlsx, filters, named);
      } catch (const std::exception& e) {
        spdlog::error("jobs: checking an upload of {} failed: {}", rec.trigger, e.what());
        outside = {{0, "The file could not be checked against your role's granular filters."}};
      }
      d.inbox->post([this, rec = std::move(rec), file, file_name = std::move(file_name),
                     content_type = std::move(content_type), shared, outside = std::move(outside)]() mutable {
        store(std::move(rec), file, std::move(file_name), std::move(content_type), std::move(outside),
              shared);
      });
    });
  }

  // Commits an upload, then answers as Knosc does. An upload with rows outside the uploader's granular
  // filters is recorded as a job that failed here, with those rows as its errors, and without its file: it is
  // never sent, and the tool learns which rows to fix by polling, as it would from Knosc.
  void store(JobRecord rec, std::shared_ptr<std::string> file, std::string file_name,
             std::string content_type, std::vector<UploadRowError> outside,
             std::shared_ptr<Responder> shared) {
    if (!outside.empty()) {
      rec.state = JobState::Failed;
      rec.upstream_status = refused_status(outside);
      spdlog::warn(
          "jobs: {} uploaded {} with {} row(s) outside their granular filters (first: row {}: {}); "
          "not sent",
          rec.local_user, rec.trigger, outside.size(), outside.front().row, outside.front().message);
      file->clear();
    }
    d.writer->post([this, rec, file, file_name, content_type, shared](replica::Replica& rep) mutable {
      std::optional<std::int64_t> seq;
      try {
        SQLite::Transaction tx(rep.db());
        const std::int64_t next = rep.db().execAndGet("SELECT COALESCE(MAX(seq), 0) + 1 FROM job").getInt64();
        SQLite::Statement ins(
            rep.db(),
            "INSERT INTO job (job_id, trigger, file_name, content_type, file, local_user, "
            "created_at, state, updated_at, seq, upstream_status) VALUES (?1, ?2, ?3, ?4, ?5, "
            "?6, ?7, ?9, ?7, ?8, ?10)");
        ins.bind(1, rec.job_id);
        ins.bind(2, rec.trigger);
        if (file->empty()) {
          ins.bind(3);
          ins.bind(4);
          ins.bind(5);
        } else {
          ins.bind(3, file_name);
          ins.bind(4, content_type);
          ins.bind(5, file->data(), static_cast<int>(file->size()));
        }
        ins.bind(6, rec.local_user);
        ins.bind(7, rec.created_at);
        ins.bind(8, next);
        ins.bind(9, std::string(to_string(rec.state)));
        if (rec.upstream_status.is_null()) {
          ins.bind(10);
        } else {
          ins.bind(10, rec.upstream_status.dump());
        }
        ins.exec();
        if (!file->empty()) {
          // Only a user's last upload of a trigger can be downloaded (by that user); earlier ones already
          // sent need no file.
          SQLite::Statement clear(
              rep.db(),
              "UPDATE job SET file = NULL WHERE trigger = ?1 AND job_id != ?2 AND "
              "local_user = ?3 COLLATE NOCASE AND state != 'queued' AND file IS NOT NULL");
          clear.bind(1, rec.trigger);
          clear.bind(2, rec.job_id);
          clear.bind(3, rec.local_user);
          clear.exec();
        }
        tx.commit();
        seq = next;
      } catch (const std::exception& e) {
        spdlog::error("jobs: storing an upload of {} failed: {}", rec.trigger, e.what());
      }
      const std::size_t bytes = file->size();
      d.inbox->post([this, rec, seq, shared, bytes]() mutable {
        if (!seq)
          return (*shared)(HttpResponse::knosc_error(500, "Internal Server Error", "Server.InternalError"));
        rec.seq = *seq;
        spdlog::info("jobs: {} uploaded {} ({} bytes) as {}", rec.local_user, rec.trigger, bytes, rec.job_id);
        const bool upload = find_job_trigger(rec.trigger)->takes_file;
        // Knosc's answer, also for an upload refused here: Knosc too answers "queued" and fails the job
        // later.
        OJson body{{"message", upload ? "File uploaded. Processing started." : "Job started."},
                   {"job_id", rec.job_id},
                   {"status", "queued"}};
        jobs[rec.job_id] = std::move(rec);
        (*shared)(HttpResponse::json(200, body.dump()));
        kick();
      });
    });
  }

  // GET /api/job/{trigger}: the caller's own last upload of the trigger (an administrator's: anyone's), never
  // another user's file, whose rows may lie outside the caller's granular filters. Without one stored here,
  // an administrator gets Knosc's last file (any client's upload); other users get Job.NotFound, since
  // Knosc's file may be anyone's.
  void download(const JobTrigger& trigger, const LocalSession& session, Responder respond) {
    auto shared = std::make_shared<Responder>(std::move(respond));
    const std::string name(trigger.name);
    const bool admin = session.privileges.is_administrator();
    const std::string user = session.username;
    d.readers->post([this, shared, name, admin, user](replica::Replica& rep) {
      std::optional<HttpResponse> found;
      bool failed = false;
      try {
        SQLite::Statement q(
            rep.db(),
            "SELECT file, file_name, content_type FROM job WHERE trigger = ?1 AND file IS NOT "
            "NULL AND (?2 OR local_user = ?3 COLLATE NOCASE) ORDER BY seq DESC LIMIT 1");
        q.bind(1, name);
        q.bind(2, admin ? 1 : 0);
        q.bind(3, user);
        if (q.executeStep()) {
          HttpResponse r;
          r.status = 200;
          r.body = q.getColumn(0).getString();
          r.set_header("Content-Type", q.getColumn(2).getString());
          r.set_header("Content-Disposition",
                       "attachment; filename=\"" + quoted_file_name(q.getColumn(1).getString()) + "\"");
          found = std::move(r);
        }
      } catch (const std::exception& e) {
        spdlog::error("jobs: reading the last file of {} failed: {}", name, e.what());
        failed = true;
      }
      d.inbox->post([this, shared, name, admin, found = std::move(found), failed]() mutable {
        if (failed)
          return (*shared)(HttpResponse::knosc_error(500, "Internal Server Error", "Server.InternalError"));
        if (found) return (*shared)(std::move(*found));
        auto none =
            HttpResponse::knosc_error(400, "No file has been uploaded for " + name + ".", "Job.NotFound");
        if (!admin || !d.upstream || link_down()) return (*shared)(std::move(none));
        d.upstream->call("GET", "/job/" + name, "", [shared, none](sync::ApiResult r) mutable {
          if (r.kind != sync::ApiResult::Kind::Ok && r.kind != sync::ApiResult::Kind::HttpError)
            return (*shared)(std::move(none));
          (*shared)(pass_through(r.response, {"content-disposition"}));
        });
      });
    });
  }

  // --- the forwarder ---

  void pump() {
    if (!loaded || stopping) return;
    const auto now = Clock::now();
    bool unfinished = false;
    std::vector<JobSlot> slots;
    std::vector<std::string> due;
    for (const auto& [id, j] : jobs) {
      if (j.state == JobState::Queued || j.state == JobState::Forwarded) {
        unfinished = true;
        slots.push_back(JobSlot{id, j.trigger, j.seq, j.state});
      }
      if (j.state == JobState::Forwarded && !polling.count(id)) {
        auto np = next_poll.find(id);
        if (np == next_poll.end() || now >= np->second) due.push_back(id);
      }
    }
    for (const auto& id : due)
      poll(id);
    if (!sending) {
      if (link_down()) link_seen_down = true;
      const bool link_back =
          retry_waits_for_link && link_seen_down && d.online && d.online() == std::optional<bool>(true);
      if (now >= next_send_at || link_back)
        if (auto next = next_job_to_forward(slots)) send(*next);
    }
    if (!unfinished && timer) uv_timer_stop(timer);
  }

  void send(const std::string& id) {
    if (!d.upstream) return;
    const JobRecord& job = jobs.at(id);
    const JobTrigger* trigger = find_job_trigger(job.trigger);
    sending = true;
    ++outstanding;
    const std::string path = "/job/" + job.trigger;
    spdlog::info("jobs: sending {} ({}) to Knosc", id, job.trigger);
    if (trigger && !trigger->takes_file) {
      d.upstream->call("POST", path, "", [this, id](sync::ApiResult r) { on_sent(id, std::move(r)); });
      return;
    }
    d.readers->post([this, id, path](replica::Replica& rep) {
      std::optional<sync::MultipartFile> file;
      try {
        SQLite::Statement q(rep.db(), "SELECT file, file_name, content_type FROM job WHERE job_id = ?1");
        q.bind(1, id);
        if (q.executeStep() && !q.getColumn(0).isNull()) {
          sync::MultipartFile f;
          f.data = q.getColumn(0).getString();
          f.filename = q.getColumn(1).getString();
          f.content_type = q.getColumn(2).getString();
          file = std::move(f);
        }
      } catch (const std::exception& e) {
        spdlog::error("jobs: reading the file of {} failed: {}", id, e.what());
      }
      d.inbox->post([this, id, path, file = std::move(file)]() mutable {
        if (stopping) return sent_done();  // still queued; the next start sends it
        if (!file) {
          JobRecord rec = jobs.at(id);
          rec.state = JobState::Failed;
          rec.upstream_status = failed_status("The uploaded file is no longer stored; upload it again.");
          return persist(std::move(rec), [this] { sent_done(); });
        }
        d.upstream->call_multipart("POST", path, std::move(*file),
                                   [this, id](sync::ApiResult r) { on_sent(id, std::move(r)); });
      });
    });
  }

  void sent_done() {
    sending = false;
    --outstanding;
    kick();
    maybe_finish();
  }

  void on_sent(const std::string& id, sync::ApiResult r) {
    JobRecord rec = jobs.at(id);
    const auto disposition = sync::classify(r.kind, r.status, r.code, "");
    if (disposition == sync::Disposition::Success) {
      const auto body = nlohmann::json::parse(r.response.body, nullptr, false);
      const auto upstream_id = body.is_object() ? body.find("job_id") : body.end();
      if (upstream_id == body.end() || !upstream_id->is_string()) {
        rec.state = JobState::Failed;
        rec.upstream_status =
            failed_status("Knosc accepted the upload but named no job; its outcome is unknown.");
        return persist(std::move(rec), [this] { sent_done(); });
      }
      rec.state = JobState::Forwarded;
      rec.upstream_job_id = upstream_id->get<std::string>();
      rec.upstream_status = OJson{{"status", "queued"}};
      rec.forwarded_at = unix_now();
      spdlog::info("jobs: {} ({}) accepted by Knosc as {}", id, rec.trigger, *rec.upstream_job_id);
      next_poll[id] = Clock::now() + poll_delay(std::chrono::seconds(0));
      return persist(std::move(rec), [this] { sent_done(); });
    }
    if (disposition == sync::Disposition::Transient || disposition == sync::Disposition::Paused) {
      // The upload waits and is tried again; everything after it in import order waits with it. A transport
      // failure after the request went out may mean Knosc has it; sending it again then runs the same file
      // twice, which the default REFRESH action makes harmless.
      auto& live = jobs.at(id);
      ++live.attempts;
      live.last_error = r.message.empty() ? "HTTP " + std::to_string(r.status) : r.message;
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      const auto delay = sync::backoff_delay(live.attempts, unit(rng), d.backoff, r.retry_after);
      next_send_at = Clock::now() + delay;
      retry_waits_for_link = r.kind == sync::ApiResult::Kind::Transport;
      link_seen_down = false;
      spdlog::warn("jobs: sending {} failed ({}); trying again in {} ms", id, live.last_error, delay.count());
      return sent_done();
    }
    // Refused (403: the service account lacks the privilege; other 4xx): the job fails with Knosc's reason.
    const std::string why = r.message.empty() ? "HTTP " + std::to_string(r.status) : r.message;
    spdlog::warn("jobs: Knosc refused {} ({}): {} {}", id, rec.trigger, r.status, why);
    rec.state = JobState::Failed;
    rec.upstream_status =
        failed_status("Knosc refused the upload: " + why + (r.code.empty() ? "" : " (" + r.code + ")"));
    persist(std::move(rec), [this] { sent_done(); });
  }

  void poll(const std::string& id) {
    const JobRecord& job = jobs.at(id);
    if (!d.upstream) return;
    if (!job.upstream_job_id) {
      JobRecord rec = job;
      rec.state = JobState::Failed;
      rec.upstream_status = failed_status("Knosc's id of this job is unknown; its outcome is unknown.");
      return persist(std::move(rec), [] {});
    }
    polling.insert(id);
    ++outstanding;
    const nlohmann::json wanted =
        nlohmann::json::array({{{"trigger", job.trigger}, {"job_id", *job.upstream_job_id}}});
    char* enc = curl_easy_escape(nullptr, wanted.dump().c_str(), 0);
    const std::string path = std::string("/job?jobs=") + (enc ? enc : "");
    curl_free(enc);
    d.upstream->call("GET", path, "", [this, id](sync::ApiResult r) { on_polled(id, std::move(r)); });
  }

  void polled_done(const std::string& id) {
    polling.erase(id);
    --outstanding;
    kick();
    maybe_finish();
  }

  void on_polled(const std::string& id, sync::ApiResult r) {
    JobRecord rec = jobs.at(id);
    const auto since = std::chrono::seconds(unix_now() - rec.forwarded_at.value_or(unix_now()));
    next_poll[id] = Clock::now() + poll_delay(since);
    const auto disposition = sync::classify(r.kind, r.status, r.code, "Job.NotFound");
    if (disposition == sync::Disposition::NotFound) {
      spdlog::warn("jobs: Knosc no longer knows {} (sent as {})", id, *rec.upstream_job_id);
      rec.state = JobState::Failed;
      rec.upstream_status = failed_status("Knosc no longer knows job " + *rec.upstream_job_id +
                                          "; whether its rows were applied is unknown.");
      return persist(std::move(rec), [this, id] { polled_done(id); });
    }
    if (disposition != sync::Disposition::Success) return polled_done(id);  // asked again on the next poll
    const auto body = OJson::parse(r.response.body, nullptr, false);
    const OJson* found = nullptr;
    if (body.is_object() && body.contains("jobs") && body["jobs"].is_array())
      for (const auto& j : body["jobs"])
        if (j.is_object() && j.value("job_id", std::string()) == *rec.upstream_job_id) found = &j;
    if (!found) return polled_done(id);
    const std::string status = found->value("status", std::string());
    const JobState state = status == "completed" ? JobState::Completed
                           : status == "failed"  ? JobState::Failed
                                                 : JobState::Forwarded;
    if (*found == rec.upstream_status && state == rec.state) return polled_done(id);
    rec.upstream_status = *found;
    rec.state = state;
    if (state == JobState::Completed) {
      spdlog::info("jobs: {} ({}) completed upstream, {} rows", id, rec.trigger,
                   found->value("rows_processed", std::int64_t{0}));
    } else if (state == JobState::Failed) {
      spdlog::warn(
          "jobs: {} ({}) failed upstream with {} error(s)", id, rec.trigger,
          found->contains("errors") && (*found)["errors"].is_array() ? (*found)["errors"].size() : 0);
    }
    const std::string trigger = rec.trigger;
    persist(std::move(rec), [this, id, state, trigger] {
      if (state == JobState::Completed && d.trigger_pull)
        if (const JobTrigger* t = find_job_trigger(trigger))
          for (auto res : t->resources)
            d.trigger_pull(std::string(res));
      polled_done(id);
    });
  }

  // Commits a job's new state; `then` runs on the loop thread afterwards. The in-memory state follows even
  // when the commit fails (logged), so this run never sends an accepted upload twice.
  void persist(JobRecord rec, std::function<void()> then) {
    ++outstanding;
    d.writer->post([this, rec, then = std::move(then)](replica::Replica& rep) mutable {
      try {
        SQLite::Transaction tx(rep.db());
        SQLite::Statement st(
            rep.db(),
            "UPDATE job SET state = ?2, upstream_job_id = ?3, upstream_status = ?4, attempts = "
            "?5, last_error = ?6, forwarded_at = ?7, updated_at = ?8 WHERE job_id = ?1");
        st.bind(1, rec.job_id);
        st.bind(2, std::string(to_string(rec.state)));
        if (rec.upstream_job_id) {
          st.bind(3, *rec.upstream_job_id);
        } else {
          st.bind(3);
        }
        if (rec.upstream_status.is_null()) {
          st.bind(4);
        } else {
          st.bind(4, rec.upstream_status.dump());
        }
        st.bind(5, rec.attempts);
        if (rec.last_error.empty()) {
          st.bind(6);
        } else {
          st.bind(6, rec.last_error);
        }
        if (rec.forwarded_at) {
          st.bind(7, *rec.forwarded_at);
        } else {
          st.bind(7);
        }
        st.bind(8, unix_now());
        st.exec();
        // A sent upload keeps its file only while it is its user's last file of the trigger (for the
        // download).
        SQLite::Statement clear(
            rep.db(),
            "UPDATE job SET file = NULL WHERE job_id = ?1 AND state != 'queued' AND EXISTS "
            "(SELECT 1 FROM job AS later WHERE later.trigger = job.trigger AND later.local_user = "
            "job.local_user COLLATE NOCASE AND later.seq > job.seq AND later.file IS NOT NULL)");
        clear.bind(1, rec.job_id);
        clear.exec();
        tx.commit();
      } catch (const std::exception& e) {
        spdlog::error("jobs: recording the state of {} failed: {}", rec.job_id, e.what());
      }
      d.inbox->post([this, rec = std::move(rec), then = std::move(then)]() mutable {
        jobs[rec.job_id] = std::move(rec);
        then();
        --outstanding;
        maybe_finish();
      });
    });
  }
};

Jobs::Jobs(JobsDeps deps) : impl_(std::make_unique<Impl>(std::move(deps))) {}
Jobs::~Jobs() = default;

void Jobs::start() {
  impl_->start();
}
void Jobs::stop(std::function<void()> done) {
  impl_->stop(std::move(done));
}

void Jobs::link_returned() {
  if (impl_->retry_waits_for_link) impl_->next_send_at = Impl::Clock::now();
  impl_->next_poll.clear();
  impl_->kick();
}

void Jobs::handle(const HttpRequest& request, const LocalSession& session, Responder respond) {
  impl_->handle(request, session, std::move(respond));
}

}  // namespace knosc::daemon
