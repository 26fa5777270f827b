#include "sync/puller.hpp"

#include <SQLiteCpp/Transaction.h>
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "replica/clock.hpp"
#include "replica/list_page.hpp"
#include "sync/link_state.hpp"

namespace knosc::sync {
namespace {

using replica::unix_now;

std::string url_encode(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

// The record inside a get-one response, per the resource's documented shape.
const replica::Json* get_one_record(const replica::Json& body, schema::GetOneShape shape) {
  auto data = body.find("data");
  if (data == body.end() || !data->is_object()) return nullptr;
  if (shape == schema::GetOneShape::RowsObject) {
    auto rows = data->find("rows");
    if (rows == data->end() || !rows->is_object()) return nullptr;
    return &*rows;
  }
  return &*data;
}

std::string describe(const ApiResult& r) {
  if (r.kind == ApiResult::Kind::Transport) return "network: " + r.message;
  if (r.kind == ApiResult::Kind::LockedOut) return "logins paused: " + r.message;
  if (r.kind == ApiResult::Kind::AuthFailed) return "login refused: " + r.message;
  std::string s = "HTTP " + std::to_string(r.status);
  if (!r.code.empty()) s += " " + r.code;
  if (!r.message.empty()) s += ": " + r.message;
  return s;
}

}  // namespace

enum class Phase { Idle, Listing, Checking, Nested };

struct Puller::Task {
  const schema::Resource* res = nullptr;
  int interval_seconds = 300;
  int page_size = 500;
  std::int64_t nested_refresh_seconds = 24 * 3600;
  std::optional<std::int64_t> nested_cutoff;  // set while the nested phase of a pass runs
  struct NestedResult {
    replica::RecordId id;
    bool found = false;
    std::string body;
  };
  std::vector<NestedResult> nested_results;  // get-one answers of the batch in flight
  Phase phase = Phase::Idle;
  Clock::time_point due{};
  bool again = false;  // triggered while running: pass again at once
  int failures = 0;
  std::optional<Clock::time_point> server_not_before;  // a Retry-After Knosc named for the last failure
  replica::PassCursor cursor;
  bool first_pass_done = false;
  int pages = 0;
  std::int64_t rows = 0;
  std::int64_t written = 0;
  std::string last_error;
  // A batch of deletion checks or nested fetches in flight.
  int batch_pending = 0;
  bool batch_failed = false;
  Disposition batch_disposition = Disposition::Success;
  std::string batch_message;
  std::optional<std::chrono::seconds> batch_retry_after;
};

Puller::Puller(uv_loop_t* loop, UpstreamSession& session, replica::ReplicaWriter& writer, LoopInbox& inbox,
               const schema::Catalog& catalog, PullOptions options)
    : loop_(loop),
      session_(session),
      writer_(writer),
      inbox_(inbox),
      catalog_(catalog),
      options_(std::move(options)),
      rng_(std::random_device{}()),
      alive_(std::make_shared<bool>(true)) {
  options_.page_size = std::clamp(options_.page_size, 1, 1000);
  options_.max_concurrent_requests = std::max(1, options_.max_concurrent_requests);
  for (const auto& res : catalog_.resources()) {
    if (!res.mirror) continue;
    auto settings = options_.resources.find(res.name);
    if (settings != options_.resources.end() && !settings->second.enabled) continue;
    auto t = std::make_unique<Task>();
    t->res = &res;
    t->interval_seconds = options_.interval_seconds.value_or(res.pull_interval_seconds);
    t->page_size = options_.page_size;
    t->nested_refresh_seconds = options_.nested_refresh_seconds.value_or(res.nested_refresh_hours * 3600);
    if (settings != options_.resources.end()) {
      if (settings->second.interval_seconds) t->interval_seconds = *settings->second.interval_seconds;
      if (settings->second.page_size) t->page_size = std::clamp(*settings->second.page_size, 1, 1000);
      if (settings->second.nested_refresh_seconds)
        t->nested_refresh_seconds = *settings->second.nested_refresh_seconds;
    }
    tasks_.push_back(std::move(t));
  }
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

Puller::~Puller() {
  *alive_ = false;
  if (timer_) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void Puller::start() {
  // Every resource is due at once on start: a restart resumes interrupted passes and catches up.
  for (auto& t : tasks_)
    t->due = Clock::now();
  kick();
}

void Puller::link_returned() {
  if (stopping_) return;
  const auto now = Clock::now();
  for (auto& t : tasks_) {
    if (t->phase != Phase::Idle) continue;
    std::optional<std::chrono::milliseconds> server_left;
    if (t->server_not_before)
      server_left = std::chrono::ceil<std::chrono::milliseconds>(*t->server_not_before - now);
    // failures > 0: the wait is a backoff; otherwise it is the normal schedule (also after a 403).
    t->due = now + wait_after_link_return(std::chrono::ceil<std::chrono::milliseconds>(t->due - now),
                                          t->failures > 0, server_left);
  }
  kick();
}

bool Puller::trigger(const std::string& resource) {
  for (auto& t : tasks_) {
    if (t->res->name != resource) continue;
    if (t->phase == Phase::Idle) {
      t->due = Clock::now();
      kick();
    } else {
      // The pass under way may have read its pages before the change that asks for this one: another
      // starts as soon as it ends.
      t->again = true;
    }
    return true;
  }
  return false;
}

void Puller::stop(std::function<void()> done) {
  stopping_ = true;
  on_stopped_ = std::move(done);
  uv_timer_stop(timer_);
  // Waiting requests will never get a slot; their tasks simply end here.
  waiting_.clear();
  maybe_stopped();
}

void Puller::maybe_stopped() {
  if (!stopping_ || in_flight_ > 0 || writer_pending_ > 0 || !on_stopped_) return;
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

std::vector<PullProgress> Puller::progress() const {
  std::vector<PullProgress> out;
  for (const auto& t : tasks_) {
    PullProgress p;
    p.resource = t->res->name;
    p.running = t->phase != Phase::Idle;
    p.first_pass_done = t->first_pass_done;
    p.pages_this_pass = t->pages;
    p.rows_this_pass = t->rows;
    p.written_this_pass = t->written;
    p.failures_in_a_row = t->failures;
    p.last_error = t->last_error;
    out.push_back(std::move(p));
  }
  return out;
}

bool Puller::all_first_passes_done() const {
  return std::all_of(tasks_.begin(), tasks_.end(), [](const auto& t) { return t->first_pass_done; });
}

// Scheduling
// --------------------------------------------------------------------------------------------------

void Puller::kick() {
  if (stopping_) return;
  Clock::time_point next = Clock::time_point::max();
  for (const auto& t : tasks_)
    if (t->phase == Phase::Idle) next = std::min(next, t->due);
  uv_timer_stop(timer_);
  if (next == Clock::time_point::max()) return;
  const auto wait = std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count());
  uv_timer_start(timer_, &Puller::on_timer, static_cast<std::uint64_t>(wait), 0);
}

void Puller::on_timer(uv_timer_t* t) {
  static_cast<Puller*>(t->data)->run_due();
}

void Puller::run_due() {
  if (stopping_) return;
  const auto now = Clock::now();
  for (auto& t : tasks_)
    if (t->phase == Phase::Idle && t->due <= now) start_pass(*t);
  kick();
}

// Request slots and replica hand-offs ---------------------------------------------------------------------

void Puller::with_slot(std::function<void()> fn) {
  if (stopping_) return;
  if (in_flight_ < options_.max_concurrent_requests) {
    ++in_flight_;
    fn();
  } else {
    waiting_.push_back(std::move(fn));
  }
}

void Puller::release_slot() {
  --in_flight_;
  if (!stopping_ && !waiting_.empty()) {
    auto fn = std::move(waiting_.front());
    waiting_.pop_front();
    ++in_flight_;
    fn();
  }
  maybe_stopped();
}

void Puller::to_writer(std::function<void(replica::Replica&)> work) {
  ++writer_pending_;
  writer_.post(std::move(work));
}

void Puller::writer_done() {
  --writer_pending_;
  maybe_stopped();
}

// One pass ------------------------------------------------------------------------------------------------

void Puller::start_pass(Task& t) {
  t.phase = Phase::Listing;
  t.nested_cutoff.reset();
  t.pages = 0;
  t.rows = 0;
  t.written = 0;
  const auto* res = t.res;
  const int page_size = t.page_size;
  to_writer([this, &t, res, page_size](replica::Replica& rep) {
    try {
      auto cursor = rep.resume_or_begin_pass(*res, page_size, unix_now());
      inbox_.post([this, &t, cursor] {
        writer_done();
        if (stopping_) return;
        t.cursor = cursor;
        if (cursor.resumed)
          spdlog::info("{}: resuming pass {} at page {}", t.res->name, cursor.generation, cursor.page);
        fetch_page(t);
      });
    } catch (const std::exception& e) {
      std::string msg = std::string("replica: ") + e.what();
      inbox_.post([this, &t, msg] {
        writer_done();
        fail(t, Disposition::Transient, msg, std::nullopt);
      });
    }
  });
}

std::string Puller::list_path(const Task& t, int page, int page_size) const {
  std::string path = t.res->route() + "?page=" + std::to_string(page) +
                     "&page_size=" + std::to_string(page_size) +
                     "&sort=" + url_encode(R"({"key":"id","type":"Ascending"})");
  if (t.res->warehouse_scoped) path += "&filter=" + url_encode(filter_for(*t.res, {}));
  return path;
}

std::string Puller::filter_for(const schema::Resource& res,
                               const std::map<std::string, replica::Json>& keys) const {
  // Knosc leaves rows of inactive warehouses out of every list unless the filter names "Warehouse Status";
  // naming both statuses mirrors all rows, so a warehouse turning inactive never looks like mass deletion.
  replica::Json filter = replica::Json::object();
  for (const auto& [k, v] : keys)
    filter[k] = v;
  if (res.warehouse_scoped) filter["Warehouse Status"] = replica::Json::array({"Active", "Inactive"});
  return filter.dump();
}

void Puller::fetch_page(Task& t) {
  with_slot([this, &t] {
    const auto path = list_path(t, t.cursor.page, t.cursor.page_size);
    auto alive = alive_;
    session_.call("GET", path, "", [this, &t, alive](ApiResult r) {
      if (!*alive) return;
      release_slot();
      if (stopping_) return;
      const auto d = classify(r.kind, r.status, r.code, t.res->not_found_code);
      if (d != Disposition::Success) {
        if (d == Disposition::Forbidden) {
          const auto* res = t.res;
          to_writer([this, res](replica::Replica& rep) {
            try {
              rep.set_access(*res, "forbidden", unix_now());
            } catch (const std::exception& e) {
              spdlog::error("replica: {}", e.what());
            }
            inbox_.post([this] { writer_done(); });
          });
        }
        fail(t, d, "listing page " + std::to_string(t.cursor.page) + ": " + describe(r), r.retry_after);
        return;
      }
      apply_page(t, std::move(r.response.body));
    });
  });
}

void Puller::apply_page(Task& t, std::string body) {
  const auto* res = t.res;
  const auto cursor = t.cursor;
  // Parsing, hashing and writing happen on the writer thread so the loop stays free for network I/O.
  to_writer([this, &t, res, cursor, body = std::move(body)](replica::Replica& rep) mutable {
    try {
      // The page keeps the body and reads its rows in place: no DOM, and the stored row texts are the
      // response's own bytes.
      const replica::ListPage page(std::move(body));
      if (cursor.page == 1)
        if (auto headers = page.headers()) rep.store_list_headers(*res, *headers, unix_now());
      auto outcome = rep.apply_page(*res, cursor, page, unix_now());
      inbox_.post([this, &t, outcome] {
        writer_done();
        if (stopping_) return;
        t.pages += 1;
        t.rows += outcome.rows;
        t.written += outcome.written;
        if (outcome.without_id > 0)
          spdlog::warn("{}: page {} had {} rows without an id; they are not mirrored", t.res->name,
                       t.cursor.page, outcome.without_id);
        if (!outcome.pass_complete) {
          t.cursor = outcome.next;
          fetch_page(t);
          return;
        }
        spdlog::info("{}: pass {} listed {} rows in {} pages, wrote {}", t.res->name, t.cursor.generation,
                     t.rows, t.pages, t.written);
        check_deletions(t);
      });
    } catch (const std::exception& e) {
      std::string msg = "page " + std::to_string(cursor.page) + ": " + e.what();
      inbox_.post([this, &t, msg] {
        writer_done();
        fail(t, Disposition::Transient, msg, std::nullopt);
      });
    }
  });
}

// Deletion checks: a row a complete pass did not list is deleted only when upstream says it does not exist.
void Puller::check_deletions(Task& t) {
  t.phase = Phase::Checking;
  const auto* res = t.res;
  const std::size_t batch = options_.batch;
  to_writer([this, &t, res, batch](replica::Replica& rep) {
    try {
      auto candidates = rep.delete_candidates(*res, batch);
      inbox_.post([this, &t, candidates = std::move(candidates)]() mutable {
        writer_done();
        if (stopping_) return;
        if (candidates.empty()) {
          fetch_nested(t);
          return;
        }
        t.batch_pending = static_cast<int>(candidates.size());
        t.batch_failed = false;
        for (auto& c : candidates) {
          with_slot([this, &t, c] {
            const auto* r = t.res;
            std::string path;
            std::string not_found = r->not_found_code;
            const schema::Resource* parent = nullptr;
            switch (r->delete_check) {
              case schema::DeleteCheck::GetOne:
                path = r->route() + "/" + replica::to_string(c.id);
                break;
              case schema::DeleteCheck::ParentGetOne:
                parent = catalog_.find(r->parent);
                if (!c.parent_id || !parent) {
                  path.clear();
                } else {
                  path = parent->route() + "/" + replica::to_string(*c.parent_id);
                  not_found = parent->not_found_code;
                }
                break;
              case schema::DeleteCheck::FilterByKey: {
                std::map<std::string, replica::Json> keys;
                for (const auto& k : r->business_key)
                  if (auto it = c.body.find(k); it != c.body.end()) keys[k] = *it;
                path = r->route() + "?page=1&page_size=50&filter=" + url_encode(filter_for(*r, keys));
                break;
              }
            }
            auto settle = [this, &t, c](std::optional<bool> deleted, const ApiResult* failed) {
              if (deleted) {
                const auto* res2 = t.res;
                const bool gone = *deleted;
                if (gone) spdlog::info("{}: {} was deleted upstream", res2->name, replica::to_string(c.id));
                to_writer([this, res2, c, gone](replica::Replica& writer_rep) {
                  try {
                    // Knosc's answer can be asked for again: no need to wait for the disk.
                    const replica::Replica::RefetchableWrites relaxed(writer_rep);
                    writer_rep.resolve_candidate(*res2, c.id, gone);
                  } catch (const std::exception& e) {
                    spdlog::error("replica: {}", e.what());
                  }
                  inbox_.post([this] { writer_done(); });
                });
              } else if (failed) {
                t.batch_failed = true;
                t.batch_disposition = classify(failed->kind, failed->status, failed->code, "");
                t.batch_message = "checking " + replica::to_string(c.id) + ": " + describe(*failed);
                t.batch_retry_after = failed->retry_after;
              }
              if (--t.batch_pending == 0) {
                if (stopping_) return;
                if (t.batch_failed) {
                  fail(t, t.batch_disposition, t.batch_message, t.batch_retry_after);
                } else {
                  check_deletions(t);
                }
              }
            };
            if (path.empty()) {
              // A line without a parent id cannot be checked through its parent; the next pass decides.
              release_slot();
              settle(false, nullptr);
              return;
            }
            auto alive = alive_;
            session_.call("GET", path, "", [this, &t, c, alive, not_found, parent, settle](ApiResult reply) {
              if (!*alive) return;
              release_slot();
              const auto d = classify(reply.kind, reply.status, reply.code, not_found);
              if (d == Disposition::NotFound) {
                settle(true, nullptr);
                return;
              }
              if (d != Disposition::Success) {
                settle(std::nullopt, &reply);
                return;
              }
              bool present = true;
              try {
                auto doc = replica::Json::parse(reply.response.body);
                if (t.res->delete_check == schema::DeleteCheck::ParentGetOne && parent) {
                  present = false;
                  const auto* rec = get_one_record(doc, parent->get_one);
                  if (rec)
                    if (auto d2 = rec->find("details"); d2 != rec->end() && d2->is_array())
                      for (const auto& line : *d2)
                        if (auto id = line.find("id");
                            id != line.end() && replica::record_id_from_json(*id) == c.id)
                          present = true;
                  if (!rec) present = true;  // unexpected shape: never delete on a guess
                } else if (t.res->delete_check == schema::DeleteCheck::FilterByKey) {
                  present = false;
                  const auto& rows = doc.at("data").at("rows");
                  for (const auto& row : rows)
                    if (auto id = row.find("id");
                        id != row.end() && replica::record_id_from_json(*id) == c.id)
                      present = true;
                }
              } catch (const std::exception&) {
                present = true;  // an unreadable answer proves nothing; keep the row
              }
              settle(!present ? std::optional<bool>(true) : std::optional<bool>(false), nullptr);
            });
          });
        }
      });
    } catch (const std::exception& e) {
      std::string msg = std::string("replica: ") + e.what();
      inbox_.post([this, &t, msg] {
        writer_done();
        fail(t, Disposition::Transient, msg, std::nullopt);
      });
    }
  });
}

// Nested parts: get-one of every row that is new, changed since its last fetch, or due for a refresh.
void Puller::fetch_nested(Task& t) {
  t.phase = Phase::Nested;
  if (!t.res->has_nested()) {
    finish(t);
    return;
  }
  const auto* res = t.res;
  const std::size_t batch = options_.batch;
  // The cut-off is fixed when the phase starts, so parts fetched during it are not due again in the same pass
  // however short the refresh period.
  if (!t.nested_cutoff) t.nested_cutoff = unix_now() - t.nested_refresh_seconds;
  const std::int64_t cutoff = *t.nested_cutoff;
  to_writer([this, &t, res, batch, cutoff](replica::Replica& rep) {
    try {
      auto ids = rep.nested_due(*res, cutoff, batch);
      inbox_.post([this, &t, ids = std::move(ids)] {
        writer_done();
        if (stopping_) return;
        if (ids.empty()) {
          finish(t);
          return;
        }
        t.batch_pending = static_cast<int>(ids.size());
        t.batch_failed = false;
        for (const auto& id : ids) {
          with_slot([this, &t, id] {
            auto alive = alive_;
            session_.call(
                "GET", t.res->route() + "/" + replica::to_string(id), "", [this, &t, id, alive](ApiResult r) {
                  if (!*alive) return;
                  release_slot();
                  const auto d = classify(r.kind, r.status, r.code, t.res->not_found_code);
                  if (d == Disposition::Success || d == Disposition::NotFound) {
                    t.nested_results.push_back({id, d == Disposition::Success, std::move(r.response.body)});
                  } else {
                    t.batch_failed = true;
                    t.batch_disposition = d;
                    t.batch_message = "fetching " + replica::to_string(id) + ": " + describe(r);
                    t.batch_retry_after = r.retry_after;
                  }
                  if (--t.batch_pending == 0) store_nested_batch(t);
                });
          });
        }
      });
    } catch (const std::exception& e) {
      std::string msg = std::string("replica: ") + e.what();
      inbox_.post([this, &t, msg] {
        writer_done();
        fail(t, Disposition::Transient, msg, std::nullopt);
      });
    }
  });
}

// Stores a batch of get-one answers in one transaction: one commit (and fsync) per batch instead of per
// record.
void Puller::store_nested_batch(Task& t) {
  auto results = std::move(t.nested_results);
  t.nested_results.clear();
  const auto* res = t.res;
  to_writer([this, &t, res, results = std::move(results)](replica::Replica& rep) {
    try {
      const replica::Replica::RefetchableWrites relaxed(rep);
      SQLite::Transaction tx(rep.db());
      const auto now = unix_now();
      for (const auto& r : results) {
        try {
          if (r.found) {
            // Read in place when the record is compact JSON, as Knosc sends it; else through a DOM.
            if (auto parts = replica::read_nested_parts(
                    r.body, res->get_one == schema::GetOneShape::RowsObject, res->nested)) {
              rep.store_nested(*res, r.id, *parts, now);
              continue;
            }
            auto doc = replica::Json::parse(r.body);
            const auto* rec = get_one_record(doc, res->get_one);
            if (!rec) throw std::runtime_error("unexpected get-one shape");
            rep.store_nested(*res, r.id, *rec, now);
          } else {
            // Gone upstream: the next pass will miss it and confirm the deletion.
            rep.defer_nested(*res, r.id, now);
          }
        } catch (const std::exception& e) {
          // One unreadable answer must not hold the others back; it is tried again on the next refresh.
          spdlog::warn("{}: nested parts of {}: {}", res->name, replica::to_string(r.id), e.what());
          rep.defer_nested(*res, r.id, now);
        }
      }
      tx.commit();
    } catch (const std::exception& e) {
      spdlog::error("replica: storing nested parts of {}: {}", res->name, e.what());
    }
    inbox_.post([this, &t] {
      writer_done();
      if (stopping_) return;
      if (t.batch_failed) {
        fail(t, t.batch_disposition, t.batch_message, t.batch_retry_after);
      } else {
        fetch_nested(t);
      }
    });
  });
}

void Puller::finish(Task& t) {
  if (auto skew = session_.clock_skew(); skew && skew->count() != recorded_skew_) {
    // Knosc's clock as its Date headers tell it; `status` shows it so a drifting plant clock is visible.
    recorded_skew_ = skew->count();
    const std::string value = std::to_string(skew->count());
    to_writer([this, value](replica::Replica& rep) {
      try {
        rep.set_state("clock_skew_seconds", value);
      } catch (const std::exception& e) {
        spdlog::error("replica: {}", e.what());
      }
      inbox_.post([this] { writer_done(); });
    });
  }
  t.phase = Phase::Idle;
  t.failures = 0;
  t.last_error.clear();
  t.first_pass_done = true;
  t.due = t.again ? Clock::now() : Clock::now() + std::chrono::seconds(t.interval_seconds);
  t.again = false;
  kick();
}

void Puller::fail(Task& t, Disposition d, const std::string& message,
                  std::optional<std::chrono::seconds> retry_after) {
  t.phase = Phase::Idle;
  t.again = false;  // the next pass starts after whatever asked for another
  t.last_error = message;
  if (stopping_) return;
  std::chrono::milliseconds wait;
  if (d == Disposition::Forbidden) {
    // Not the link's fault: try again on the normal schedule, in case the role changes.
    t.failures = 0;
    wait = std::chrono::seconds(t.interval_seconds);
    spdlog::warn("{}: {} (the service account may not read it; other resources go on)", t.res->name, message);
  } else {
    t.failures += 1;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    wait = backoff_delay(t.failures, unit(rng_), options_.backoff, retry_after);
    t.server_not_before.reset();
    if (retry_after) t.server_not_before = Clock::now() + *retry_after;
    spdlog::warn("{}: {} ({}; try {} again in {} ms)", t.res->name, message, to_string(d), t.failures + 1,
                 wait.count());
  }
  const auto* res = t.res;
  to_writer([this, res, message](replica::Replica& rep) {
    try {
      rep.record_pass_error(*res, message, unix_now());
    } catch (const std::exception& e) {
      spdlog::error("replica: {}", e.what());
    }
    inbox_.post([this] { writer_done(); });
  });
  t.due = Clock::now() + wait;
  kick();
}

}  // namespace knosc::sync
