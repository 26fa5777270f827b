#include "sync/pusher.hpp"

#include <spdlog/spdlog.h>

#include <deque>
#include <map>
#include <random>
#include <set>

#include "conflict/create_match.hpp"
#include "conflict/push_order.hpp"
#include "conflict/record_merge.hpp"
#include "replica/clock.hpp"
#include "replica/outbox.hpp"
#include "replica/record_view.hpp"
#include "sync/link_state.hpp"
#include "sync/push_shape.hpp"
#include "sync/record_fetch.hpp"

namespace knosc::sync {
namespace {

using Json = nlohmann::ordered_json;
using replica::OutboxEntry;
using replica::RecordId;
using Released = std::vector<std::pair<std::string, RecordId>>;

using replica::unix_now;

conflict::TimePoint from_unix(std::int64_t t) {
  return conflict::TimePoint(std::chrono::seconds(t));
}

// Knosc's refusal as kept with a rejected entry and shown to a person.
std::string error_text(const ApiResult& r) {
  Json e = Json::object();
  e["status"] = r.status;
  if (!r.code.empty()) e["Code"] = r.code;
  e["Message"] = r.message.empty() ? r.response.body.substr(0, 500) : r.message;
  return e.dump();
}

// The id after the resource in an outbox path ("/purchase-order/42" -> "42"), if the path names a record.
std::optional<std::string> path_id(const std::string& path, const std::string& resource) {
  const std::string prefix = "/" + resource + "/";
  if (path.rfind(prefix, 0) != 0) return std::nullopt;
  auto rest = path.substr(prefix.size());
  if (rest.empty() || rest.find('/') != std::string::npos) return std::nullopt;
  return rest;
}

std::optional<std::string> id_text(const Json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_string() && !v.get<std::string>().empty()) return v.get<std::string>();
  return std::nullopt;
}

// A body for a create made from a local record: without the ids Knosc hands out (the record's and its
// lines').
Json without_ids(Json record, const std::string& lines_key) {
  if (!record.is_object()) return record;
  record.erase("id");
  if (!lines_key.empty())
    if (auto l = record.find(lines_key); l != record.end() && l->is_array())
      for (auto& line : *l)
        if (line.is_object()) line["id"] = nullptr;
  return record;
}

Json collisions_json(const std::vector<conflict::Collision>& collisions) {
  Json out = Json::array();
  for (const auto& c : collisions) {
    Json j = Json::object();
    j["key"] = c.field.key;
    if (!c.line_id.is_null()) j["line_id"] = c.line_id;
    j["base"] = c.field.has_base ? c.field.base : Json();
    j["local"] = c.field.has_local ? c.field.local : Json();
    j["remote"] = c.field.has_remote ? c.field.remote : Json();
    j["settlement"] = std::string(conflict::to_string(c.settlement));
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

struct Pusher::Impl : std::enable_shared_from_this<Pusher::Impl> {
  uv_loop_t* loop;
  UpstreamSession& upstream;
  replica::ReplicaWriter& writer;
  LoopInbox& inbox;
  const schema::Catalog& catalog;
  PushOptions options;
  OnlineFn online;
  TriggerPullFn trigger_pull;

  uv_timer_t* timer = nullptr;
  std::mt19937_64 rng{std::random_device{}()};
  // Every unfinished entry (queued, conflict, rejected), by seq; loaded in chunks above `loaded_through`.
  std::map<std::int64_t, OutboxEntry> entries;
  std::int64_t loaded_through = 0;
  bool all_loaded = false;
  bool loading = false;
  bool started = false;
  bool stopping = false;
  std::function<void()> on_stopped;
  std::set<std::int64_t> in_flight;
  std::set<std::int64_t> recording;  // in flight, Knosc has answered, the replica is recording the outcome
  std::int64_t pushed = 0;
  std::uint64_t finished = 0;  // landed or parked, for the watchdog
  std::optional<std::int64_t> last_progress_at;
  std::deque<conflict::QueueSample> samples;
  bool stalled = false;
  std::string last_error;
  // The unix time before which Knosc asked (Retry-After) not to be sent an entry again; a link coming back
  // cuts every backoff short but this.
  std::map<std::int64_t, std::int64_t> server_not_before;
  static constexpr std::size_t kChunk = 2000;
  // An entry was queued while a load was under way: load again when it ends, or the entry waits unseen.
  bool reload_wanted = false;
  // Tools waiting for an entry's verdict (Pusher::watch), and what Knosc answered entries that landed.
  struct Waiter {
    PushWatch watch;
    bool decided = false;
  };
  std::map<std::int64_t, Waiter> waiters;
  struct Answer {
    std::optional<HttpResponse> response;
    std::optional<std::string> server_id;
  };
  std::map<std::int64_t, Answer> answers;
  // A landed change may change what other rows show (a supplier's name in its orders, a header's totals):
  // its resource gets a pass, but at most one every kPullAfterPushEvery, so draining thousands of edits of
  // one list starts a few passes rather than one per edit (a record a tool waits for is also read back at
  // once; the others come with that pass).
  static constexpr std::chrono::seconds kPullAfterPushEvery{10};
  std::map<std::string, std::chrono::steady_clock::time_point> last_pull_after_push;
  // Bodies of PUTs whose transfer was cut after they went out, by record, for an hour: a link may deliver
  // them late, after later edits landed (conflict::discount_late_echoes). In memory: a restart forgets them.
  static constexpr std::chrono::hours kLateEchoFor{1};
  static constexpr std::size_t kLateEchoesPerRecord = 8;
  struct Late {
    std::chrono::steady_clock::time_point at;
    Json body;
  };
  std::map<std::pair<std::string, std::string>, std::deque<Late>> late_bodies;

  void remember_cut(const OutboxEntry& e, const std::string& body) {
    auto parsed = Json::parse(body, nullptr, false);
    if (!parsed.is_object()) return;
    auto& list = late_bodies[{e.resource, replica::to_string(e.record_id)}];
    list.push_back({std::chrono::steady_clock::now(), std::move(parsed)});
    while (list.size() > kLateEchoesPerRecord)
      list.pop_front();
  }

  std::vector<Json> late_for(const OutboxEntry& e) {
    const auto now = std::chrono::steady_clock::now();
    for (auto it = late_bodies.begin(); it != late_bodies.end();) {
      std::erase_if(it->second, [&](const Late& l) { return now - l.at > kLateEchoFor; });
      it = it->second.empty() ? late_bodies.erase(it) : std::next(it);
    }
    std::vector<Json> out;
    if (auto it = late_bodies.find({e.resource, replica::to_string(e.record_id)}); it != late_bodies.end())
      for (const auto& l : it->second)
        out.push_back(l.body);
    return out;
  }
  std::set<std::string> pulls_wanted;

  Impl(uv_loop_t* l, UpstreamSession& s, replica::ReplicaWriter& w, LoopInbox& i, const schema::Catalog& c,
       PushOptions o, OnlineFn on, TriggerPullFn tp)
      : loop(l),
        upstream(s),
        writer(w),
        inbox(i),
        catalog(c),
        options(std::move(o)),
        online(std::move(on)),
        trigger_pull(std::move(tp)) {}

  // Runs `work` on the writer thread and `then` with its result back on the loop thread, once it is on disk.
  // Push steps are changes of the writer's group commit (replica/writer.hpp): each in a savepoint of its own,
  // sharing one commit with the steps and local edits queued with it, so that settling an entry does not cost
  // an fsync of its own. A failure (`work` threw, its savepoint undone; or the group's commit failed) is
  // logged and reported as nullopt, so an entry in flight always comes back.
  template <typename T>
  void on_writer(std::function<T(replica::Replica&)> work, std::function<void(std::optional<T>)> then) {
    auto self = shared_from_this();
    writer.post_change([work = std::move(work)](replica::Replica& rep) { return work(rep); },
                       [self, then = std::move(then)](replica::ChangeResult<T> r) mutable {
                         if (!r.committed())
                           spdlog::error("push: the replica could not record a push step: {}", r.error);
                         self->inbox.post([then = std::move(then), out = std::move(r.value)]() mutable {
                           then(std::move(out));
                         });
                       });
  }

  // Loading ---------------------------------------------------------------------------------------------
  void load_more() {
    if (loading) reload_wanted = true;
    if (loading || all_loaded || stopping) return;
    loading = true;
    const auto after = loaded_through;
    on_writer<std::vector<OutboxEntry>>(
        [after](replica::Replica& rep) { return replica::open_entries(rep, after, kChunk); },
        [this](std::optional<std::vector<OutboxEntry>> got) {
          loading = false;
          if (!got) return arm(5000);
          for (auto& e : *got) {
            loaded_through = std::max(loaded_through, e.seq);
            entries[e.seq] = std::move(e);
          }
          all_loaded = got->size() < kChunk && !reload_wanted;
          if (reload_wanted) {
            reload_wanted = false;
            load_more();
          }
          schedule();
        });
  }

  // Scheduling ------------------------------------------------------------------------------------------
  void arm(std::uint64_t ms) {
    if (stopping || !timer) return;
    uv_timer_start(
        timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->schedule(); }, ms, 0);
  }

  std::size_t waiting() const {
    std::size_t n = 0;
    for (const auto& [seq, e] : entries)
      if (e.state == replica::OutboxState::Queued) ++n;
    return n;
  }

  void sample_queue(bool is_online) {
    const auto now = std::chrono::system_clock::now();
    // At most about one sample a second (the last one takes the newest values): schedule() runs on every
    // settle, and a long drain would otherwise keep tens of thousands of samples to judge each time.
    const conflict::QueueSample sample{now, finished, waiting(), is_online};
    if (samples.size() >= 2 && now - samples[samples.size() - 2].at < std::chrono::seconds(1)) {
      samples.back() = sample;
    } else {
      samples.push_back(sample);
    }
    while (samples.size() > 2 && samples[1].at < now - options.stall_after - std::chrono::seconds(60))
      samples.pop_front();
    const bool was = stalled;
    stalled = conflict::judge_queue({samples.begin(), samples.end()}, now, options.stall_after) ==
              conflict::QueueHealth::Stalled;
    if (stalled && !was)
      spdlog::warn(
          "push: the outbox has not moved for {} s while Knosc is reachable ({} entries waiting; last "
          "error: {})",
          options.stall_after.count(), waiting(), last_error.empty() ? "none" : last_error);
    if (!stalled && was) spdlog::info("push: the outbox moves again");
  }

  void schedule() {
    if (stopping || !started) return;
    const bool is_online = online ? online().value_or(true) : true;
    sample_queue(is_online);
    if (!all_loaded && entries.size() < kChunk / 2) load_more();
    // link_returned() wakes the pusher the moment the link is back; until then the watchdog's samples go on.
    if (!is_online) return arm(5000);

    const auto choice = choose(false);
    for (auto seq : choice.send) {
      in_flight.insert(seq);
      push(entries.at(seq));
    }
    std::uint64_t wait_ms = 30'000;  // a periodic look: the watchdog, and entries loaded late
    if (choice.wake_at) {
      const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(*choice.wake_at -
                                                                           std::chrono::system_clock::now());
      wait_ms = static_cast<std::uint64_t>(std::clamp<std::int64_t>(d.count() + 1, 1, 30'000));
    }
    if (const auto pull_in = start_wanted_pulls())
      wait_ms = std::min<std::uint64_t>(wait_ms, static_cast<std::uint64_t>(pull_in->count()) + 1);
    arm(wait_ms);
  }

  // What to send now (conflict::choose_sends). Each entry's fate depends only on the entries before it, so
  // the choice is made on a prefix of the outbox that doubles until the request slots are full or every entry
  // has been seen: with thousands of entries waiting, a free slot costs a look at a few dozen of them, not at
  // all (which made a long drain spend its time choosing). `whole` looks at every entry, for the status's
  // hold reasons.
  conflict::SendChoice choose(bool whole) const {
    // Entries recording their outcome are still in flight (their records stay busy) but no longer hold a
    // request to Knosc, so they do not count against the parallelism: a commit never idles the link.
    const auto limit = static_cast<std::size_t>(options.max_parallel) + recording.size();
    const auto now = std::chrono::system_clock::now();
    std::vector<conflict::OutboxItem> items;
    std::map<std::string, conflict::RecordKey> creates;  // local id -> the record its create makes
    auto next = entries.begin();
    std::size_t prefix = whole ? entries.size() : 4 * limit + 16;
    for (;;) {
      for (; next != entries.end() && items.size() < prefix; ++next) {
        const auto& e = next->second;
        conflict::OutboxItem it;
        it.seq = next->first;
        it.record = {e.resource, replica::to_string(e.record_id)};
        it.op = e.op;
        // A record is created before anything names it, so its create lies in the prefix already.
        if (e.op == "create") creates[it.record.id] = it.record;
        for (auto need : e.needs)
          if (auto c = creates.find(std::to_string(need)); c != creates.end())
            it.local_refs.push_back(c->second);
        it.not_before = from_unix(e.next_attempt_at.value_or(0));
        it.state = e.state == replica::OutboxState::Queued     ? conflict::EntryState::Queued
                   : e.state == replica::OutboxState::Conflict ? conflict::EntryState::Conflict
                                                               : conflict::EntryState::Rejected;
        items.push_back(std::move(it));
      }
      auto choice = conflict::choose_sends(items, in_flight, limit, now);
      // Every slot taken: entries further on could only wait for one (and a settle looks again).
      if (next == entries.end() || in_flight.size() + choice.send.size() >= limit) return choice;
      prefix *= 2;
    }
  }

  // One entry ----------------------------------------------------------------------------------------------
  const schema::Resource* resource_of(const OutboxEntry& e) { return catalog.find(e.resource); }

  void push(const OutboxEntry& e) {
    const auto* res = resource_of(e);
    auto id = path_id(e.path, e.resource);
    if (e.op == "create" && res && e.method == "POST") return push_create(e, *res);
    if (res && id && (e.method == "PUT" || e.method == "PATCH")) return push_update(e, *res, *id);
    if (res && id && e.method == "DELETE") return push_delete(e, *res, *id);
    if (e.op == "note-create") return push_note_create(e);
    push_plain(e);
  }

  // Before a create's first attempt: records what already matches it upstream (and when it was sent), so a
  // later lookup after a lost answer cannot mistake an existing record for ours; then goes on with `next`.
  void guard_then(const OutboxEntry& e, std::string email, const char* what,
                  std::function<void(const OutboxEntry&)> next) {
    const auto seq = e.seq;
    on_writer<Json>([seq, email = std::move(email)](
                        replica::Replica& rep) { return replica::guard_create(rep, seq, email, unix_now()); },
                    [this, seq, what, next = std::move(next)](std::optional<Json> guard) {
                      auto it = entries.find(seq);
                      if (it == entries.end()) return settle(seq);
                      if (!guard) {
                        ApiResult failed;
                        failed.message = std::string("the replica could not record the ") + what + "'s guard";
                        return retry(it->second, failed, false);
                      }
                      it->second.create_guard = std::move(*guard);
                      next(it->second);
                    });
  }

  // A note has no business key: before its first attempt the ticket's notes with the same text are recorded,
  // and after an attempt whose answer was lost the ticket's notes are listed: a note with that text that was
  // not there before is ours.
  void push_note_create(const OutboxEntry& e) {
    const auto seq = e.seq;
    if (!e.create_guard) return guard_then(e, "", "note", [this](const OutboxEntry& g) { post_note(g); });
    // With a guard, an earlier attempt may have reached Knosc: look before posting again.
    const Json request = e.request.value_or(Json::object());
    const auto ticket = request.contains("Ticket Id") ? id_text(request["Ticket Id"]) : std::nullopt;
    if (!ticket) return post_note(e);
    upstream.call("GET", "/issue-tracker-tickets/" + *ticket + "/notes", "",
                  [this, self = shared_from_this(), seq, request](ApiResult r) {
                    auto it = entries.find(seq);
                    if (it == entries.end()) return settle(seq);
                    if (!r.ok()) return handle_failure(it->second, r, true);
                    auto doc = Json::parse(r.response.body, nullptr, false);
                    const Json guard = it->second.create_guard.value_or(Json::object());
                    const Json not_ours = guard.value("not_ours", Json::array());
                    if (doc.is_object() && doc.contains("data") && doc["data"].is_array())
                      for (const auto& n : doc["data"])
                        if (n.is_object() && n.value("Note", Json()) == request.value("Note", Json()) &&
                            n.contains("id") &&
                            std::find(not_ours.begin(), not_ours.end(), n["id"]) == not_ours.end())
                          if (auto id = id_text(n["id"]))
                            return landed(it->second, replica::note_resource(), *id);
                    post_note(it->second);
                  });
  }

  void post_note(const OutboxEntry& e) {
    const auto seq = e.seq;
    upstream.call("POST", e.path, e.request ? e.request->dump() : "{}", [this, seq](ApiResult r) {
      auto it = entries.find(seq);
      if (it == entries.end()) return settle(seq);
      if (r.ok()) {
        answers[seq].response = r.response;
        auto body = Json::parse(r.response.body, nullptr, false);
        if (body.is_object() && body.contains("id"))
          if (auto id = id_text(body["id"])) return landed(it->second, replica::note_resource(), *id);
        return finish_landed(it->second);
      }
      handle_failure(it->second, r, true);
    });
  }

  std::optional<std::string> parent_of(const OutboxEntry& e, const schema::Resource& res) {
    if (!res.is_line_list() || !e.base) return std::nullopt;
    auto p = e.base->find(res.parent_key);
    if (p == e.base->end()) return std::nullopt;
    return id_text(*p);
  }

  // A create: when the last attempt may have landed, look for the record by its business key first.
  void push_create(const OutboxEntry& e, const schema::Resource& res) {
    // The guard is written just before the first attempt: with one, an earlier attempt may have reached Knosc
    // (its answer lost, or the daemon stopped or crashed while waiting), so look before posting again.
    if (e.outcome_unknown || e.create_guard) {
      const auto seq = e.seq;
      return look_for_create(e, res, [this, seq, &res](std::optional<std::string> found) {
        auto it = entries.find(seq);
        if (it == entries.end()) return settle(seq);
        if (found) {
          spdlog::info("push: the create of outbox entry {} had landed as {} {}", seq, res.name, *found);
          return landed(it->second, res, *found);
        }
        post_create(it->second, res);
      });
    }
    post_create(e, res);
  }

  // Finds a create's record upstream by its business key (tickets: by reporter, then title and time; see
  // conflict/create_match.hpp). `done` gets the server id, or nullopt when the create did not land; a failed
  // lookup retries the entry, and a row that cannot be told apart parks it for a person.
  void look_for_create(const OutboxEntry& e, const schema::Resource& res,
                       std::function<void(std::optional<std::string>)> done) {
    const auto seq = e.seq;
    const Json request = e.request.value_or(Json::object());
    Json filter = Json::object();
    if (!res.business_key.empty()) {
      for (const auto& k : res.business_key)
        filter[k] = request.contains(k) ? request[k] : Json();
    } else {
      filter["Reporter Email"] = request.value("Reporter Email", Json(options.account_email));
    }
    find_records(upstream, res, filter, 1000,
                 [this, self = shared_from_this(), seq, request, &res, done = std::move(done)](
                     Disposition d, std::vector<Json> rows, ApiResult r) {
                   auto it = entries.find(seq);
                   if (it == entries.end()) return settle(seq);
                   if (d != Disposition::Success) return retry(it->second, r, true);
                   const auto& entry = it->second;
                   const Json guard = entry.create_guard.value_or(Json::object());
                   const auto skew = upstream.clock_skew().value_or(std::chrono::seconds(0));
                   conflict::CreateAttempt attempt;
                   attempt.body = request;
                   attempt.business_key = res.business_key;
                   if (guard.contains("not_ours") && guard["not_ours"].is_array())
                     attempt.not_ours.assign(guard["not_ours"].begin(), guard["not_ours"].end());
                   attempt.sent_at = from_unix(guard.value("sent_at", entry.created_at)) + skew;
                   attempt.gave_up_at = std::chrono::system_clock::now() + skew;
                   attempt.caller_email = options.account_email;
                   const auto match = conflict::match_create(attempt, rows);
                   switch (match.outcome) {
                     case conflict::CreateOutcome::NotLanded:
                       return done(std::nullopt);
                     case conflict::CreateOutcome::Landed:
                       return done(id_text(match.id));
                     case conflict::CreateOutcome::Taken:
                     case conflict::CreateOutcome::Ambiguous:
                       break;
                   }
                   Json seen = Json::array();
                   for (auto& row : rows)
                     seen.push_back(std::move(row));
                   park(entry, "create-unknown", Json(), request, seen, Json::array());
                 });
  }

  void post_create(const OutboxEntry& e, const schema::Resource& res) {
    const auto seq = e.seq;
    if (!e.create_guard)
      return guard_then(e, options.account_email, "create",
                        [this, &res](const OutboxEntry& g) { post_create(g, res); });
    upstream.call("POST", e.path, e.request ? e.request->dump() : "{}", [this, seq, &res](ApiResult r) {
      auto it = entries.find(seq);
      if (it == entries.end()) return settle(seq);
      auto& entry = it->second;
      if (r.ok()) {
        answers[seq].response = r.response;
        auto body = Json::parse(r.response.body, nullptr, false);
        std::optional<std::string> id;
        if (body.is_object() && body.contains("id")) id = id_text(body["id"]);
        if (id) return landed(entry, res, *id);
        // Knosc did not say which id it gave: find the record by its business key.
        return look_for_create(entry, res, [this, seq, &res](std::optional<std::string> found) {
          auto it2 = entries.find(seq);
          if (it2 == entries.end()) return settle(seq);
          if (!found) {
            ApiResult miss;
            miss.message = "Knosc accepted the create but the record was not found by its business key";
            return retry(it2->second, miss, true);
          }
          landed(it2->second, res, *found);
        });
      }
      handle_failure(entry, r, /*creates=*/true);
    });
  }

  // The create landed as `server_id`: the local id becomes the server id everywhere, then the entry is done.
  void landed(OutboxEntry& e, const schema::Resource& res, const std::string& server_text) {
    const auto seq = e.seq;
    answers[seq].server_id = server_text;
    decide_landed(seq);
    recorded_next(seq);
    RecordId server =
        res.id_type == schema::IdType::Integer ? RecordId{std::stoll(server_text)} : RecordId{server_text};
    const RecordId local = e.record_id;
    on_writer<Released>(
        [&res, local, server, seq](replica::Replica& rep) {
          if (!(local == server)) replica::remap_local_id(rep, res, local, server);
          return replica::complete_entry(rep, seq, unix_now());
        },
        [this, seq, &res, local, server](std::optional<Released> released) {
          if (!released) return settle(seq);
          // Later entries of the record, and entries waiting for this create, name the server id now.
          const auto local_text = replica::to_string(local);
          for (auto& [s, other] : entries) {
            if (other.resource == res.name && other.record_id == local) {
              other.record_id = server;
              if (path_id(other.path, res.name) == local_text)
                other.path = res.route() + "/" + replica::to_string(server);
            }
            if (const auto* n = std::get_if<std::int64_t>(&local))
              other.needs.erase(std::remove(other.needs.begin(), other.needs.end(), *n), other.needs.end());
          }
          done(seq, std::move(*released));
        });
  }

  void push_update(const OutboxEntry& e, const schema::Resource& res, const std::string& id) {
    const auto seq = e.seq;
    fetch_record(upstream, catalog, res, id, parent_of(e, res), [this, seq, &res, id](FetchedRecord f) {
      auto it = entries.find(seq);
      if (it == entries.end()) return settle(seq);
      auto& entry = it->second;
      if (f.disposition != Disposition::Success && f.disposition != Disposition::NotFound)
        return handle_failure(entry, f.result, false);
      const auto shape = push_shape(catalog, res);
      const Json base = entry.base.value_or(Json::object());
      Json request = entry.request.value_or(Json::object());
      std::optional<Json> remote;
      if (f.disposition == Disposition::Success) remote = std::move(f.record);
      // A late delivery of one of our own cut requests is not somebody else's change: base's value, which a
      // later edit of ours had set, goes back.
      if (remote && request.is_object())
        if (const auto late = late_for(entry); !late.empty()) {
          auto echo = conflict::discount_late_echoes(base, *remote, late, shape);
          for (const auto& key : echo.repaired) {
            spdlog::warn(
                "push: {} {} holds a value this daemon sent earlier for \"{}\" in a request that reached "
                "Knosc late; the later value is sent again",
                res.name, id, key);
            if (!request.contains(key)) request[key] = base[key];
          }
          remote = std::move(echo.remote);
        }
      auto plan = conflict::plan_update(base, request, remote, shape);
      switch (plan.decision) {
        case conflict::Decision::NothingToSend:
          return finish_landed(entry);
        case conflict::Decision::Send:
        case conflict::Decision::SendMerged: {
          const Json body = plan.decision == conflict::Decision::Send ? request : plan.body;
          return send(entry, "PUT", entry.path, body.dump());
        }
        case conflict::Decision::NeedsPerson:
          return park(entry, "fields", base, request, remote.value_or(Json()),
                      collisions_json(plan.collisions));
        case conflict::Decision::EditVsDelete:
          return park(entry, "deleted-upstream", base, request, Json(), collisions_json(plan.collisions));
        case conflict::Decision::DeleteVsEdit:
          break;
      }
      park(entry, "fields", base, request, remote.value_or(Json()), collisions_json(plan.collisions));
    });
  }

  void push_delete(const OutboxEntry& e, const schema::Resource& res, const std::string& id) {
    const auto seq = e.seq;
    fetch_record(upstream, catalog, res, id, parent_of(e, res), [this, seq, &res](FetchedRecord f) {
      auto it = entries.find(seq);
      if (it == entries.end()) return settle(seq);
      auto& entry = it->second;
      if (f.disposition != Disposition::Success && f.disposition != Disposition::NotFound)
        return handle_failure(entry, f.result, false);
      const Json base = entry.base.value_or(Json::object());
      std::optional<Json> remote;
      if (f.disposition == Disposition::Success) remote = std::move(f.record);
      auto plan = conflict::plan_delete(base, remote, push_shape(catalog, res));
      switch (plan.decision) {
        case conflict::Decision::NothingToSend:
          return finish_landed(entry);
        case conflict::Decision::Send:
        case conflict::Decision::SendMerged:
          return send(entry, "DELETE", entry.path, entry.request ? entry.request->dump() : "");
        default:
          return park(entry, "changed-upstream", base, Json(), remote.value_or(Json()),
                      collisions_json(plan.collisions));
      }
    });
  }

  // Line moves, accepted suggestions, notes, subscribers: sent as they were made.
  void push_plain(const OutboxEntry& e) { send(e, e.method, e.path, e.request ? e.request->dump() : ""); }

  void send(const OutboxEntry& e, const std::string& method, const std::string& path,
            const std::string& body) {
    const auto seq = e.seq;
    upstream.call(method, path, body, [this, seq, method, body](ApiResult r) {
      auto it = entries.find(seq);
      if (it == entries.end()) return settle(seq);
      if (r.ok()) {
        answers[seq].response = r.response;
        return finish_landed(it->second);
      }
      // A DELETE answered NotFound: someone else deleted it first, which is what the edit wanted. A tool
      // waiting for it hears Knosc's own answer.
      const auto* res = resource_of(it->second);
      if (method == "PUT" && r.kind == ApiResult::Kind::Transport && r.response.maybe_delivered)
        remember_cut(it->second, body);
      if (it->second.method == "DELETE" && res &&
          classify(r.kind, r.status, r.code, res->not_found_code) == Disposition::NotFound) {
        answers[seq].response = r.response;
        return finish_landed(it->second);
      }
      handle_failure(it->second, r, false);
    });
  }

  void handle_failure(OutboxEntry& e, const ApiResult& r, bool creates) {
    const auto* res = resource_of(e);
    const auto d = classify(r.kind, r.status, r.code, res ? res->not_found_code : "");
    if (d == Disposition::Transient || d == Disposition::Paused)
      return retry(e, r, creates && r.kind == ApiResult::Kind::Transport && r.response.maybe_delivered);
    reject(e, r);
  }

  // Outcomes -----------------------------------------------------------------------------------------------
  void finish_landed(OutboxEntry& e) {
    const auto seq = e.seq;
    decide_landed(seq);
    recorded_next(seq);
    on_writer<Released>(
        [seq](replica::Replica& rep) { return replica::complete_entry(rep, seq, unix_now()); },
        [this, seq](std::optional<Released> released) {
          if (!released) return settle(seq);
          done(seq, std::move(*released));
        });
  }

  void done(std::int64_t seq, Released released) {
    auto it = entries.find(seq);
    std::string resource;
    if (it != entries.end()) {
      resource = it->second.resource;
      entries.erase(it);
    }
    answers.erase(seq);
    ++pushed;
    ++finished;
    last_progress_at = unix_now();
    last_error.clear();
    // With a tool waiting, the record is read back now so its answer and the replica agree with Knosc. Nobody
    // waiting (a drain after an outage): the pass after the push brings the record with its whole list, so
    // a drain costs Knosc its reads and writes only, not a third request per edit.
    const bool read_back = waiters.contains(seq) || resource.empty() || !pull_after_push(resource);
    restore(
        std::move(released), [this, seq] { settled_for_waiter(seq); }, read_back ? nullptr : &resource);
    settle(seq);
  }

  // Returns whether `resource` has a pass that will run (now or once the interval has passed).
  bool pull_after_push(const std::string& resource) {
    if (!trigger_pull) return false;
    const auto* res = catalog.find(resource);
    if (!res || res->is_line_list()) {
      trigger_pull(resource);
      return false;  // a line's record is its header, which the line list's pass does not store
    }
    const auto now = std::chrono::steady_clock::now();
    auto last = last_pull_after_push.find(resource);
    if (last != last_pull_after_push.end() && now - last->second < kPullAfterPushEvery) {
      pulls_wanted.insert(resource);  // started by schedule() once the interval has passed
      return true;
    }
    last_pull_after_push[resource] = now;
    pulls_wanted.erase(resource);
    return trigger_pull(resource);
  }

  // Starts the passes that waited out kPullAfterPushEvery; returns how long until the next one is due.
  std::optional<std::chrono::milliseconds> start_wanted_pulls() {
    std::optional<std::chrono::milliseconds> next;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = pulls_wanted.begin(); it != pulls_wanted.end();) {
      const auto due = last_pull_after_push[*it] + kPullAfterPushEvery;
      if (due <= now) {
        last_pull_after_push[*it] = now;
        if (trigger_pull) trigger_pull(*it);
        it = pulls_wanted.erase(it);
        continue;
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - now);
      next = next ? std::min(*next, left) : left;
      ++it;
    }
    return next;
  }

  // Waiters ------------------------------------------------------------------------------------------------
  // Knosc has decided entry `seq`: a waiting tool hears it now, before the replica records it, so the answer
  // it gets on its own deadline is the verdict, never the pending answer.
  void decide(std::int64_t seq, PushVerdict v) {
    auto w = waiters.find(seq);
    if (w == waiters.end() || w->second.decided) return;
    w->second.decided = true;
    if (w->second.watch.verdict) w->second.watch.verdict(v);
  }

  void decide_landed(std::int64_t seq) {
    if (!waiters.contains(seq)) return;
    PushVerdict v;
    v.kind = PushVerdict::Kind::Landed;
    if (auto a = answers.find(seq); a != answers.end()) {
      v.answer = a->second.response;
      v.server_id = a->second.server_id;
    }
    decide(seq, std::move(v));
  }

  // The replica holds entry `seq`'s outcome: its waiter, if still there, may answer.
  void settled_for_waiter(std::int64_t seq) {
    auto w = waiters.find(seq);
    if (w == waiters.end()) return;
    auto settled = std::move(w->second.watch.settled);
    waiters.erase(w);
    if (settled) settled();
  }

  void retry(OutboxEntry& e, const ApiResult& r, bool outcome_unknown) {
    const auto seq = e.seq;
    answers.erase(seq);
    const int attempts = e.attempts + 1;
    const auto delay = backoff_delay(attempts, std::uniform_real_distribution<double>(0, 1)(rng),
                                     options.backoff, r.retry_after);
    const auto next = unix_now() + std::max<std::int64_t>(
                                       1, std::chrono::duration_cast<std::chrono::seconds>(delay).count());
    const bool unknown = outcome_unknown || e.outcome_unknown;
    server_not_before.erase(seq);
    if (r.retry_after) server_not_before[seq] = unix_now() + r.retry_after->count();
    last_error = r.message.empty() ? ("HTTP " + std::to_string(r.status)) : r.message;
    spdlog::warn("push: outbox entry {} ({} {}) failed ({}); try {} in {} ms", seq, e.method, e.path,
                 last_error, attempts + 1, delay.count());
    const auto error = error_text(r);
    recorded_next(seq);
    on_writer<bool>(
        [seq, next, error, unknown](replica::Replica& rep) {
          replica::retry_entry(rep, seq, next, error, unknown);
          return true;
        },
        [this, seq, next, attempts, unknown](std::optional<bool>) {
          if (auto it = entries.find(seq); it != entries.end()) {
            it->second.attempts = attempts;
            it->second.next_attempt_at = next;
            it->second.outcome_unknown = unknown;
          }
          settle(seq);
        });
  }

  void reject(OutboxEntry& e, const ApiResult& r) {
    const auto seq = e.seq;
    const auto error = error_text(r);
    answers.erase(seq);
    // A tool waiting for the change hears Knosc's refusal and so owns it: the entry is closed as refused.
    // Without one, nobody has seen the error yet, and the entry is kept for a person.
    const bool heard = waiters.contains(seq);
    if (heard) {
      PushVerdict v;
      v.kind = PushVerdict::Kind::Refused;
      v.answer = r.response;
      decide(seq, std::move(v));
    }
    spdlog::warn("push: Knosc refused outbox entry {} ({} {}): {}; the local change is undone and {}", seq,
                 e.method, e.path, error,
                 heard ? "the tool that made it was given the error" : "the entry kept for a person");
    recorded_next(seq);
    on_writer<Released>(
        [seq, error, heard](replica::Replica& rep) {
          return replica::reject_entry(rep, seq, error, unix_now(), heard);
        },
        [this, seq, error, heard](std::optional<Released> released) {
          if (auto it = entries.find(seq); it != entries.end()) {
            if (heard && released) {
              entries.erase(it);
            } else {
              it->second.state = replica::OutboxState::Rejected;
              it->second.last_error = error;
            }
          }
          ++finished;
          last_progress_at = unix_now();
          restore(released.value_or(Released{}), [this, seq] { settled_for_waiter(seq); });
          settle(seq);
        });
  }

  void park(const OutboxEntry& e, const std::string& kind, const Json& base, const Json& local,
            const Json& remote, const Json& fields) {
    const auto seq = e.seq;
    answers.erase(seq);
    spdlog::warn("push: outbox entry {} ({} {}) waits for a person: {}", seq, e.method, e.path, kind);
    recorded_next(seq);
    on_writer<std::int64_t>(
        [seq, kind, base, local, remote, fields](replica::Replica& rep) {
          return replica::park_conflict(rep, seq, kind, base, local, remote, fields, unix_now());
        },
        [this, seq, kind, fields, resource = e.resource, record = replica::to_string(e.record_id),
         user = e.local_user](std::optional<std::int64_t> id) {
          if (auto it = entries.find(seq); it != entries.end() && id) {
            it->second.state = replica::OutboxState::Conflict;
            it->second.conflict_id = *id;
          }
          // A waiting tool gets the pending answer at once, naming the conflict.
          PushVerdict v;
          v.kind = PushVerdict::Kind::Held;
          v.conflict_id = id;
          decide(seq, std::move(v));
          settled_for_waiter(seq);
          ++finished;
          last_progress_at = unix_now();
          if (id && options.conflict_tickets) raise_ticket(*id, kind, resource, record, user, fields);
          settle(seq);
        });
  }

  // A Knosc ticket saying a local edit waits for a person. Best effort: the conflict itself is safe in the
  // replica whether or not the ticket gets through, and a failure is logged.
  void raise_ticket(std::int64_t conflict_id, const std::string& kind, const std::string& resource,
                    const std::string& record, const std::string& user, const Json& fields) {
    std::string keys;
    if (fields.is_array())
      for (const auto& f : fields)
        if (f.is_object() && f.contains("key") && f["key"].is_string())
          keys += (keys.empty() ? "" : ", ") + f["key"].get<std::string>();
    Json body = Json::object();
    body["Title"] = "knosc-syncd conflict " + std::to_string(conflict_id) + ": " + resource + " " + record;
    body["Description"] = "A change made at the plant by " + user +
                          " while Knosc could not be reached collides "
                          "with a change made in Knosc meanwhile (" +
                          kind + (keys.empty() ? std::string() : ": " + keys) +
                          "). Settle it with 'knosc-syncd resolve' or POST /syncd/conflicts/" +
                          std::to_string(conflict_id) + "/resolve on the plant's knosc-syncd.";
    body["Priority"] = "Medium";
    upstream.call("POST", "/issue-tracker-tickets", body.dump(), [conflict_id](ApiResult r) {
      if (r.ok()) {
        spdlog::info("push: raised a Knosc ticket for conflict {}", conflict_id);
      } else {
        spdlog::warn("push: the Knosc ticket for conflict {} could not be raised: {}", conflict_id,
                     r.message.empty() ? "HTTP " + std::to_string(r.status) : r.message);
      }
    });
  }

  // Knosc's part of entry `seq` is over; what is left is the replica's. Its request slot goes to the next
  // entry at once.
  void recorded_next(std::int64_t seq) {
    if (!in_flight.contains(seq) || !recording.insert(seq).second) return;
    schedule();
  }

  // The entry is no longer in flight: look for what may go next.
  void settle(std::int64_t seq) {
    in_flight.erase(seq);
    recording.erase(seq);
    if (stopping) {
      if (in_flight.empty() && on_stopped) {
        auto cb = std::move(on_stopped);
        on_stopped = nullptr;
        cb();
      }
      return;
    }
    schedule();
  }

  // Records whose local edits are all settled take upstream's version again: fetched now (the next pass would
  // bring them too, but the tool should not see its undone or merged edit for minutes). Lines are fetched
  // through their header. `then` runs once every record is stored (or could not be fetched). Records of
  // `left_to_pass` are not fetched: a pass of that resource is on its way.
  void restore(Released released, std::function<void()> then = nullptr,
               const std::string* left_to_pass = nullptr) {
    if (left_to_pass) {
      std::erase_if(released, [&](const auto& r) {
        return r.first == *left_to_pass && !replica::is_local_id(r.second);
      });
    }
    if (released.empty()) {
      if (then) then();
      return;
    }
    on_writer<std::vector<std::pair<std::string, std::string>>>(
        [released](replica::Replica& rep) {
          std::set<std::pair<std::string, std::string>> out;
          for (const auto& [name, id] : released) {
            const auto* res = rep.catalog().find(name);
            if (!res) continue;
            if (replica::is_local_id(id)) {
              rep.remove_record(*res, id);  // a refused create: it never reached Knosc
              continue;
            }
            if (!res->is_line_list()) {
              out.insert({name, replica::to_string(id)});
              continue;
            }
            auto row = rep.row(*res, id);
            std::optional<std::string> parent;
            if (row && row->contains(res->parent_key)) parent = id_text((*row)[res->parent_key]);
            if (parent) {
              out.insert({res->parent, *parent});
            } else {
              rep.remove_record(*res, id);  // a local line that never reached Knosc
            }
          }
          return std::vector<std::pair<std::string, std::string>>(out.begin(), out.end());
        },
        [this,
         then = std::move(then)](std::optional<std::vector<std::pair<std::string, std::string>>> records) {
          if (!records || records->empty()) {
            if (then) then();
            return;
          }
          // Counts the records still on their way; the last one to be stored runs `then`.
          auto left = std::make_shared<std::size_t>(records->size());
          auto one_done = [self = shared_from_this(), left, then]() {
            if (--*left == 0 && then) then();
          };
          for (const auto& named : *records) {
            const std::string& name = named.first;
            const std::string id = named.second;
            const auto* res = catalog.find(name);
            if (!res) {
              one_done();
              continue;
            }
            fetch_record(
                upstream, catalog, *res, id, std::nullopt, [this, res, id, one_done](FetchedRecord f) {
                  if (f.disposition == Disposition::Success) {
                    writer.post([self = shared_from_this(), res, one_done,
                                 record = std::move(*f.record)](replica::Replica& rep) {
                      try {
                        rep.store_fetched_record(*res, record, unix_now());
                      } catch (const std::exception& e) {
                        spdlog::warn("push: storing {} as Knosc has it failed: {}", res->name, e.what());
                      }
                      self->inbox.post(one_done);
                    });
                  } else if (f.disposition == Disposition::NotFound) {
                    const auto rid =
                        res->id_type == schema::IdType::Integer ? RecordId{std::stoll(id)} : RecordId{id};
                    writer.post([self = shared_from_this(), res, rid, one_done](replica::Replica& rep) {
                      try {
                        rep.remove_record(*res, rid);
                      } catch (const std::exception& e) {
                        spdlog::warn("push: removing {} failed: {}", res->name, e.what());
                      }
                      self->inbox.post(one_done);
                    });
                  } else {
                    one_done();  // anything else: the next pass brings upstream's version
                  }
                });
          }
        });
  }
};

Pusher::Pusher(uv_loop_t* loop, UpstreamSession& session, replica::ReplicaWriter& writer, LoopInbox& inbox,
               const schema::Catalog& catalog, PushOptions options, OnlineFn online,
               TriggerPullFn trigger_pull)
    : impl_(std::make_shared<Impl>(loop, session, writer, inbox, catalog, std::move(options),
                                   std::move(online), std::move(trigger_pull))) {}

Pusher::~Pusher() {
  if (impl_->timer) {
    uv_timer_stop(impl_->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(impl_->timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    impl_->timer = nullptr;
  }
}

void Pusher::start() {
  auto& d = *impl_;
  d.timer = new uv_timer_t;
  uv_timer_init(d.loop, d.timer);
  d.timer->data = impl_.get();
  d.started = true;
  d.load_more();
}

void Pusher::stop(std::function<void()> done) {
  auto& d = *impl_;
  d.stopping = true;
  if (d.timer) uv_timer_stop(d.timer);
  if (d.in_flight.empty()) return done();
  d.on_stopped = std::move(done);
}

void Pusher::queued(std::int64_t seq) {
  auto& d = *impl_;
  (void)seq;
  // New entries lie above everything loaded; they are read in the next chunk.
  d.all_loaded = false;
  d.load_more();
}

void Pusher::kick() {
  impl_->schedule();
}

void Pusher::link_returned() {
  auto& d = *impl_;
  if (d.stopping) return;
  using std::chrono::seconds;
  const auto now = unix_now();
  // In memory only: the entry's next attempt records its own outcome and next time.
  for (auto& [seq, e] : d.entries) {
    if (e.state != replica::OutboxState::Queued || !e.next_attempt_at || *e.next_attempt_at <= now) continue;
    std::optional<std::chrono::milliseconds> server_left;
    if (auto it = d.server_not_before.find(seq); it != d.server_not_before.end())
      server_left = seconds(it->second - now);
    const auto wait = wait_after_link_return(seconds(*e.next_attempt_at - now), true, server_left);
    e.next_attempt_at = now + std::chrono::ceil<seconds>(wait).count();
  }
  std::erase_if(d.server_not_before, [&](const auto& kv) { return !d.entries.contains(kv.first); });
  d.arm(0);
}

void Pusher::watch(std::int64_t seq, PushWatch w) {
  auto& d = *impl_;
  d.waiters[seq] = Impl::Waiter{std::move(w), false};
  queued(seq);
}

void Pusher::unwatch(std::int64_t seq) {
  impl_->waiters.erase(seq);
}

void Pusher::resolve(std::int64_t id, Resolution how, std::optional<Json> body, std::string user,
                     std::function<void(std::string)> done) {
  auto& d = *impl_;
  struct Outcome {
    std::string error;                 // why the resolution was refused; empty when it was applied
    std::int64_t seq = 0;              // the entry it settled
    std::optional<OutboxEntry> entry;  // the entry as it is now, when it is still open
    Released released;                 // records that take upstream's version again
    std::int64_t new_seq = 0;          // a retried edit's new entry
  };
  const auto* catalog = &d.catalog;
  d.on_writer<Outcome>(
      [id, how, body = std::move(body), user, catalog](replica::Replica& rep) {
        Outcome out;
        const auto now = unix_now();
        if (how == Resolution::Retry || how == Resolution::Drop) {
          auto entry = replica::outbox_entry(rep, id);
          if (!entry || entry->state != replica::OutboxState::Rejected) {
            out.error = "outbox entry " + std::to_string(id) + " is not a rejected edit";
            return out;
          }
          out.seq = id;
          if (how == Resolution::Drop) {
            out.released = replica::drop_entry(rep, id, "dropped", user, now);
            return out;
          }
          // A retry is a new local edit with the (corrected) body, validated like the first one; the rejected
          // entry gives way to it.
          replica::EditRequest req;
          req.method = entry->method;
          std::string path = entry->path.substr(1);
          for (std::size_t pos = 0;;) {
            auto slash = path.find('/', pos);
            req.path.push_back(path.substr(pos, slash - pos));
            if (slash == std::string::npos) break;
            pos = slash + 1;
          }
          const Json request = body.value_or(entry->request.value_or(Json()));
          if (!request.is_null()) req.body = &request;
          // Stamped as a new edit of the user who made the first one (write_locally gives it the time).
          req.user_email = replica::local_user_email(rep, entry->local_user);
          auto w = replica::write_locally(rep, req, entry->local_user, now);
          if (const auto* err = std::get_if<replica::EditError>(&w.outcome)) {
            out.error = err->code + ": " + err->message;
            return out;
          }
          out.new_seq = w.seq;
          out.released =
              replica::drop_entry(rep, id, "retried as outbox entry " + std::to_string(w.seq), user, now);
          return out;
        }
        auto c = replica::conflict_row(rep, id);
        if (!c || c->resolved_at) {
          out.error = "conflict " + std::to_string(id) + " is not open";
          return out;
        }
        out.seq = c->outbox_seq;
        auto entry = replica::outbox_entry(rep, c->outbox_seq);
        const auto* res = catalog->find(c->resource);
        if (!entry || !res) {
          out.error = "conflict " + std::to_string(id) + " has no outbox entry";
          return out;
        }
        if (how == Resolution::KeepRemote) {
          out.released = replica::drop_entry(rep, c->outbox_seq, "keep-remote", user, now);
          return out;
        }
        std::string op = entry->op, method = entry->method, path = entry->path;
        Json request = entry->request.value_or(Json());
        Json base = c->remote;
        const auto shape = push_shape(*catalog, *res);
        if (how == Resolution::Merged) {
          if (!body || !body->is_object()) {
            out.error = "a merged resolution needs a JSON object body";
            return out;
          }
          request = *body;
        } else if (c->kind == "fields") {
          auto client = shape;
          client.policy = conflict::Policy::ClientWins;
          client.line_policy = conflict::Policy::ClientWins;
          client.manual_fields.clear();
          client.line_manual_fields.clear();
          auto plan = conflict::plan_update(c->base, request, c->remote, client);
          if (plan.decision == conflict::Decision::SendMerged) request = plan.body;
        }
        if (c->kind == "deleted-upstream") {
          // Keeping a record Knosc deleted means creating it again from the local version.
          auto local = replica::compose_record(rep, *res, entry->record_id);
          if (how == Resolution::KeepLocal) request = without_ids(local.value_or(request), shape.lines_key);
          op = "create";
          method = "POST";
          path = res->route();
          base = Json();
        }
        if (c->kind == "create-unknown") base = Json();
        replica::requeue_entry(rep, c->outbox_seq, op, method, path, request, base,
                               how == Resolution::Merged ? "merged" : "keep-local", user, now);
        out.entry = replica::outbox_entry(rep, c->outbox_seq);
        return out;
      },
      [this, done = std::move(done)](std::optional<Outcome> out) {
        auto& p = *impl_;
        if (!out) return done("the replica could not record the resolution");
        if (!out->error.empty()) return done(out->error);
        if (out->entry) {
          p.entries[out->seq] = std::move(*out->entry);
        } else {
          p.entries.erase(out->seq);
        }
        p.restore(std::move(out->released));
        if (out->new_seq) queued(out->new_seq);
        p.schedule();
        done("");
      });
}

PushStatus Pusher::status() const {
  const auto& d = *impl_;
  PushStatus s;
  for (const auto& [seq, e] : d.entries) {
    if (e.state == replica::OutboxState::Queued) ++s.queued;
    if (e.state == replica::OutboxState::Conflict) ++s.conflicts;
    if (e.state == replica::OutboxState::Rejected) ++s.rejected;
  }
  s.in_flight = static_cast<std::int64_t>(d.in_flight.size());
  s.pushed = d.pushed;
  s.last_progress_at = d.last_progress_at;
  s.stalled = d.stalled;
  s.last_error = d.last_error;
  for (const auto& h : d.choose(true).held)
    ++s.held[std::string(conflict::to_string(h.reason))];
  return s;
}

}  // namespace knosc::sync
