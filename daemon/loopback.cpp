#include "daemon/loopback.hpp"

#include <SQLiteCpp/Statement.h>
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "daemon/canonical_request.hpp"
#include "daemon/deadlines.hpp"
#include "daemon/item_views.hpp"
#include "daemon/response_cache.hpp"
#include "daemon/status_report.hpp"
#include "daemon/upstream_answer.hpp"
#include "daemon/xlsx_export.hpp"
#include "replica/clock.hpp"
#include "replica/id_sql.hpp"
#include "replica/list_query.hpp"
#include "replica/outbox.hpp"
#include "replica/record_view.hpp"
#include "sync/pusher.hpp"
#include "sync/retry_policy.hpp"

namespace knosc::daemon {
namespace {

using OJson = nlohmann::ordered_json;

using replica::unix_now;

HttpResponse json_response(int status, const OJson& body) {
  return HttpResponse::json(status, body.dump());
}
HttpResponse not_privileged() {
  return HttpResponse::knosc_error(403, "Not Privileged for this action", "User.NotPrivileged");
}
HttpResponse route_not_found() {
  return HttpResponse::knosc_error(404, "Not Found", "Route.NotFound");
}
// Knosc's answer for a record id that names nothing (CONTRACT §3: 400 <Entity>.NotFound).
HttpResponse missing_record(const schema::Resource& res, const std::string& id_text) {
  return HttpResponse::knosc_error(400, res.missing_message(id_text), res.not_found_code);
}
HttpResponse internal_error() {
  return HttpResponse::knosc_error(500, "Internal Server Error", "Server.InternalError");
}

bool is_write(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

replica::ListScope scope_of(const LocalSession& s) {
  return replica::ListScope{s.privileges.granular};
}

// Whether a user's granular filters let them see a record (Knosc answers NotFound for records it hides).
bool granular_allows(const LocalSession& s, const OJson& rec) {
  for (const auto& g : s.privileges.granular) {
    auto it = rec.find(g.category);
    if (it == rec.end() || it->is_null()) continue;
    bool in = false;
    for (const auto& v : g.values)
      if (nlohmann::json(*it) == v) in = true;
    if (g.include != in) return false;
  }
  return true;
}

OJson id_json(const replica::RecordId& id) {
  return std::holds_alternative<std::int64_t>(id) ? OJson(std::get<std::int64_t>(id))
                                                  : OJson(std::get<std::string>(id));
}

bool same_user(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// What a user may do with a queued edit or its conflict.
struct EntryAccess {
  std::string module;    // the privilege module of the record's resource
  bool visible = false;  // the user may see the record: View on its module, every version within the filters
  bool own = false;      // the edit is theirs, or they administer: its body is theirs to see and settle
};

// Reads the record as the replica holds it now; `versions` are further versions of it (a conflict's base,
// local and remote) that must be within the user's granular filters too, so an entry that concerns another
// warehouse at any point stays hidden.
EntryAccess entry_access(replica::Replica& rep, const schema::Catalog& catalog, const LocalSession& s,
                         const replica::OutboxEntry& e,
                         std::initializer_list<const replica::Json*> versions) {
  EntryAccess a;
  const auto* res = catalog.find(e.resource);
  a.module = res ? res->module : "Issue Tracker";  // notes and subscribers: not mirrored lists of their own
  const bool admin = s.privileges.is_administrator();
  a.own = admin || same_user(e.local_user, s.username);
  if (!s.privileges.allows(a.module, Access::View)) return a;
  if (admin || s.privileges.granular.empty()) {
    a.visible = true;
    return a;
  }
  const auto within = [&](const replica::Json& v) { return !v.is_object() || granular_allows(s, OJson(v)); };
  if (res)
    if (auto rec = replica::compose_record(rep, *res, e.record_id); rec && !granular_allows(s, *rec))
      return a;
  if (e.request && !within(*e.request)) return a;
  if (e.base && !within(*e.base)) return a;
  for (const auto* v : versions)
    if (v && !within(*v)) return a;
  a.visible = true;
  return a;
}

// Facts about the answer that Knosc's bodies have no room for travel in headers (CONTRACT §7).
void add_freshness(HttpResponse& r, std::optional<std::int64_t> last_complete, std::optional<bool> online) {
  if (last_complete)
    r.set_header("X-Knosc-Syncd-Data-Age",
                 std::to_string(std::max<std::int64_t>(0, unix_now() - *last_complete)));
  r.set_header("X-Knosc-Syncd-Upstream", online ? (*online ? "online" : "offline") : "unknown");
}

std::optional<std::int64_t> last_complete_pass(replica::Replica& rep, const std::string& resource) {
  SQLite::Statement q(rep.db(), "SELECT last_complete_at FROM pull_pass WHERE resource = ?1");
  q.bind(1, resource);
  if (!q.executeStep() || q.getColumn(0).isNull()) return std::nullopt;
  return q.getColumn(0).getInt64();
}

OJson push_json(const sync::PushStatus& p) {
  OJson j;
  j["queued"] = p.queued;
  j["in_flight"] = p.in_flight;
  j["conflicts"] = p.conflicts;
  j["rejected"] = p.rejected;
  j["landed_since_start"] = p.pushed;
  j["last_progress_at"] = p.last_progress_at ? OJson(iso8601_utc(*p.last_progress_at)) : OJson();
  j["stalled"] = p.stalled;
  j["last_error"] = p.last_error.empty() ? OJson() : OJson(p.last_error);
  j["held"] = OJson::object();
  for (const auto& [reason, n] : p.held)
    j["held"][reason] = n;
  return j;
}

// The caller's row scope as part of a cache key: granular filters change which rows an answer holds.
std::string scope_key(const LocalSession& s) {
  if (s.privileges.granular.empty()) return {};
  OJson j = OJson::array();
  for (const auto& g : s.privileges.granular)
    j.push_back(OJson{g.category, g.include, g.values});
  return j.dump();
}

// An answer read from the replica, before the headers that depend on the moment it is served.
struct ReplicaAnswer {
  HttpResponse response;
  std::optional<std::int64_t> last_complete;  // of the resource answered about
};

}  // namespace

struct LoopbackApi::Impl {
  LoopbackDeps d;
  HttpServer server;
  ResponseCache cache;
  Deadlines deadlines;  // how long tools wait for their changes' pushes
  int bound_port = 0;
  std::map<int, std::uint64_t> answered;  // status -> count, for /metrics
  // Change-feed indexes of what a resource's list pages and get-one answers are built from.
  std::map<const schema::Resource*, std::vector<std::size_t>> list_sources, record_sources;

  explicit Impl(LoopbackDeps deps)
      : d(std::move(deps)),
        server(
            d.loop, [this](const HttpRequest& req, Responder r) { handle(req, std::move(r)); }, {},
            // Health and readiness probes are answered from the server's reserve connections too.
            [](const HttpRequest& req) {
              return req.method == "GET" && req.segments.size() == 2 && req.segments[0] == "syncd" &&
                     (req.segments[1] == "health" || req.segments[1] == "ready");
            }),
        cache(d.config ? static_cast<std::size_t>(d.config->response_cache_mb) << 20 : 0, d.changes),
        deadlines(d.loop) {
    if (!d.changes) return;
    const auto add = [this](std::vector<std::size_t>& to, const std::string& name) {
      if (auto i = d.changes->index_of(name)) to.push_back(*i);
    };
    const replica::WarehouseStatusLookup wh;
    for (const auto& res : d.catalog->resources()) {
      auto& list = list_sources[&res];
      add(list, res.name);
      // Rows of inactive warehouses are left out of warehouse-scoped lists.
      if (res.warehouse_scoped) add(list, wh.resource);
      auto& one = record_sources[&res];
      add(one, res.name);
      if (!res.lines.empty()) add(one, res.lines);
      for (const auto& derived : res.derived)
        add(one, derived.from);
    }
  }

  // Wraps a Responder to count answers by status for /metrics.
  Responder counted(Responder respond) {
    return [this, respond = std::move(respond)](HttpResponse r) {
      ++answered[r.status];
      respond(std::move(r));
    };
  }

  // Runs `work` on a reader thread and answers with what it returns, on the loop thread.
  void read(Responder respond, std::function<HttpResponse(replica::Replica&)> work) {
    auto shared = std::make_shared<Responder>(std::move(respond));
    d.readers->post([this, shared, work = std::move(work)](replica::Replica& rep) {
      HttpResponse out;
      try {
        out = work(rep);
      } catch (const std::exception& e) {
        spdlog::error("loopback: reading the replica failed: {}", e.what());
        out = internal_error();
      }
      d.inbox->post([shared, out = std::move(out)]() mutable { (*shared)(std::move(out)); });
    });
  }

  // Answers a list page or record from the cache when it holds a current answer for `key`. Headers that
  // depend on the moment (data age, link state) are added as it is served. Checked before anything else is
  // built for the request: a hit must cost little more than writing the answer.
  bool serve_cached(const std::string& key, Responder& respond) {
    const CachedAnswer* hit = cache.find(key);
    if (!hit) return false;
    HttpResponse out = hit->response;
    add_freshness(out, hit->last_complete, d.online ? d.online() : std::nullopt);
    respond(std::move(out));
    return true;
  }

  // Reads an answer on a reader thread and keeps it in the cache when it is a success.
  void read_and_cache(std::string key, const std::vector<std::size_t>& sources, const std::string& resource,
                      Responder respond, std::function<ReplicaAnswer(replica::Replica&)> work) {
    // Taken before the reader reads: a change committed after this moment retires the answer.
    Generations read_at = cache.enabled() ? cache.snapshot(sources) : Generations{};
    auto shared = std::make_shared<Responder>(std::move(respond));
    d.readers->post([this, shared, key, resource, read_at = std::move(read_at),
                     work = std::move(work)](replica::Replica& rep) mutable {
      ReplicaAnswer answer;
      try {
        answer = work(rep);
        answer.last_complete = last_complete_pass(rep, resource);
      } catch (const std::exception& e) {
        spdlog::error("loopback: reading the replica failed: {}", e.what());
        answer = ReplicaAnswer{internal_error(), std::nullopt};
      }
      d.inbox->post([this, shared, key = std::move(key), read_at = std::move(read_at),
                     answer = std::move(answer)]() mutable {
        if (answer.response.status == 200 && cache.enabled()) {
          // The body is shared by the cache and every answer sent from it, never copied.
          answer.response.shared_body = std::make_shared<const std::string>(std::move(answer.response.body));
          answer.response.body.clear();
          cache.store(std::move(key),
                      CachedAnswer{answer.response, answer.last_complete, std::move(read_at)});
        }
        add_freshness(answer.response, answer.last_complete, d.online ? d.online() : std::nullopt);
        (*shared)(std::move(answer.response));
      });
    });
  }

  // The route table
  // ------------------------------------------------------------------------------------------
  void handle(const HttpRequest& req, Responder raw_respond) {
    Responder respond = counted(std::move(raw_respond));
    const auto& seg = req.segments;  // the canonical parse the server checked
    const std::string& m = req.method;

    if (m == "GET" && req.path == "/metrics") return metrics(std::move(respond));
    if (!seg.empty() && seg[0] == "syncd") return daemon_route(req, seg, std::move(respond));
    if (seg.empty() || seg[0] != "api") return respond(route_not_found());
    // A web page of another site can make the browser send anything but a custom header or a JSON content
    // type; logins have no CSRF token to stop it, so every change is checked for its origin first.
    if (m != "GET" && m != "HEAD")
      if (auto refusal = cross_site_refusal(req)) return respond(std::move(*refusal));

    // Knosc's auth routes: public, or checked by LocalAuth itself.
    if (seg.size() == 2 && m == "POST") {
      if (seg[1] == "authenticate" || seg[1] == "verify-2fa") {
        // Credentials come as JSON only, so a web page cannot post a login form (text/plain) across sites.
        auto body = json_body(req, true);
        if (auto* refusal = std::get_if<HttpResponse>(&body)) return respond(std::move(*refusal));
        if (seg[1] == "authenticate") return d.auth->authenticate(req, std::move(respond));
        return d.auth->verify_2fa(req, std::move(respond));
      }
      if (seg[1] == "token-refresh") return d.auth->refresh(req, std::move(respond));
      if (seg[1] == "logout") return d.auth->logout(req, std::move(respond));
    }

    // Knosc's account routes answer a wrong method with 405 before looking at the session.
    if (seg.size() == 2) {
      static const std::map<std::string, std::string> kAccountRoutes = {
          {"authenticate", "POST"},   {"verify-2fa", "POST"},           {"token-refresh", "POST"},
          {"logout", "POST"},         {"first-signin", "POST"},         {"forgot-password", "POST"},
          {"reset-password", "POST"}, {"force-reset-password", "POST"}, {"profile", "GET"}};
      if (auto it = kAccountRoutes.find(seg[1]); it != kAccountRoutes.end()) {
        const std::string verb = m == "HEAD" ? "GET" : m;
        if (verb != it->second)
          return respond(HttpResponse::knosc_error(405, "Method Not Allowed", "Route.MethodNotAllowed"));
        if (seg[1] == "first-signin" || seg[1] == "forgot-password" || seg[1] == "reset-password")
          return forward_public(req, std::move(respond));
      }
    }

    // Everything else needs a session, and writes need the CSRF header, exactly as upstream.
    auto s = d.auth->session_for(req);
    if (auto* refusal = std::get_if<HttpResponse>(&s)) return respond(std::move(*refusal));
    const LocalSession& session = *std::get<const LocalSession*>(s);
    if (is_write(m))
      if (auto refusal = d.auth->check_csrf(req, session)) return respond(std::move(*refusal));

    if (seg.size() == 2 && seg[1] == "profile" && m == "GET")
      return respond(json_response(200, OJson{{"data", session.profile}}));
    if (seg.size() == 2 && seg[1] == "export-data" && m == "POST")
      return export_data(req, session, std::move(respond));
    if (d.jobs && seg.size() >= 2 && seg[1] == "job") return d.jobs->handle(req, session, std::move(respond));
    if (d.analytics && d.analytics->serves(req)) return d.analytics->handle(req, session, std::move(respond));

    const schema::Resource* res = seg.size() >= 2 ? d.catalog->find(seg[1]) : nullptr;
    if (res && res->mirror) {
      if (m == "GET" && seg.size() == 2) return list(req, session, *res, std::move(respond));
      if (m == "GET" && seg.size() == 3) return get_one(session, *res, seg[2], std::move(respond));
      if (is_write(m) && seg.size() <= 3) {
        if (!session.privileges.allows(res->module, Access::Edit)) return respond(not_privileged());
        // User administration through the service account could create accounts the caller's own role may
        // not; only administrators may do it here.
        if (res->name == "user" && !session.privileges.is_administrator()) return respond(not_privileged());
        std::optional<IdSegment> id;
        if (seg.size() == 3) id = IdSegment{res->id_type, missing_record(*res, seg[2])};
        auto w = parse_write(req, res, seg, std::move(id));
        if (auto* refusal = std::get_if<HttpResponse>(&w)) return respond(std::move(*refusal));
        return write(std::move(std::get<WriteRequest>(w)), session, std::move(respond));
      }
    }
    if (is_write(m) && seg.size() >= 2) {
      // Changes that are not records of a mirrored list: forwarded with the module Knosc checks for them.
      // Each shape is exact (how many segments, which one is an id), so nothing else rides along.
      std::string module;
      std::optional<IdSegment> id;
      if ((seg[1] == "purchase-order-details-move-lines" ||
           seg[1] == "purchase-order-details-accept-suggested-orders") &&
          seg.size() == 2) {
        module = "Procurement";
      } else if (seg[1] == "issue-tracker-notes" && (seg.size() == 2 || seg.size() == 3)) {
        module = "Issue Tracker";
        if (seg.size() == 3) id = IdSegment{schema::IdType::Integer, route_not_found()};  // note ids
      } else if (seg.size() == 4 && seg[1] == "issue-tracker-tickets" && seg[3] == "subscribers") {
        module = "Issue Tracker";
        const auto* tickets = d.catalog->find("issue-tracker-tickets");
        id = IdSegment{tickets ? tickets->id_type : schema::IdType::String,
                       tickets ? missing_record(*tickets, seg[2]) : route_not_found()};
      }
      if (!module.empty()) {
        if (!session.privileges.allows(module, Access::Edit)) return respond(not_privileged());
        auto w = parse_write(req, nullptr, seg, std::move(id));
        if (auto* refusal = std::get_if<HttpResponse>(&w)) return respond(std::move(*refusal));
        return write(std::move(std::get<WriteRequest>(w)), session, std::move(respond));
      }
      return respond(HttpResponse::knosc_error(
          501, "This change is not available through knosc-syncd; make it in Knosc directly",
          "Sync.WritesUnavailable"));
    }
    // Knosc's read-only helpers and analytics, computed from the replica (daemon/item_views.hpp).
    if (m == "GET") {
      std::vector<std::string> rest(seg.begin() + 1, seg.end());
      return read(std::move(respond),
                  [sess = session, rest = std::move(rest), q = req.query_params()](replica::Replica& rep) {
                    return item_view(rep, sess, rest, q).value_or(route_not_found());
                  });
    }
    respond(route_not_found());
  }

  // A change as routes check it and as it is sent: the validated segments, the record id in its canonical
  // spelling, the parsed body. The upstream request is rebuilt from these, never from the raw target or body.
  struct WriteRequest {
    std::string method;
    std::vector<std::string> seg;           // "api" first, as HttpRequest::segments holds them
    const schema::Resource* res = nullptr;  // the mirrored resource changed, null for other change routes
    std::optional<replica::RecordId> id;    // the record the path names
    OJson body;                             // null: none (a DELETE)
    std::string path;                       // upstream path without "/api", e.g. "/inventory/19"
  };

  // The type of the id that a change route's third segment holds, and Knosc's answer when it names nothing.
  struct IdSegment {
    schema::IdType type;
    HttpResponse missing;
  };

  // Parses a change once. An id that is not canonical names no record (Knosc's NotFound, as for a GET), and a
  // body that is not strict JSON is Knosc's JSON.Invalid, both before any privilege, filter or forward sees
  // them.
  std::variant<WriteRequest, HttpResponse> parse_write(const HttpRequest& req, const schema::Resource* res,
                                                       const std::vector<std::string>& seg,
                                                       std::optional<IdSegment> id) {
    WriteRequest w;
    w.method = req.method;
    w.seg = seg;
    w.res = res;
    if (id) {
      w.id = canonical_record_id(id->type, seg.at(2));
      if (!w.id) return std::move(id->missing);
    }
    auto body = json_body(req, req.method != "DELETE");
    if (auto* refusal = std::get_if<HttpResponse>(&body)) return std::move(*refusal);
    w.body = std::move(std::get<OJson>(body));
    // Knosc answers a body that is JSON but not an object exactly as one that is not JSON.
    if (!w.body.is_null() && !w.body.is_object())
      return HttpResponse::knosc_error(400, "Bad Request Format", "JSON.Invalid");
    w.path = upstream_path(std::vector<std::string>(seg.begin() + 1, seg.end()));
    return w;
  }

  // A change: the role's granular filters are checked against the body and the stored record, then the
  // change takes the one write path (commit_write).
  void write(WriteRequest w, const LocalSession& session, Responder respond) {
    // A role's granular filters limit changes as they limit reads: a body naming a value outside them is
    // refused, and a record the role cannot see does not exist for it (checked below against the replica).
    if (!session.privileges.granular.empty() && w.body.is_object()) {
      bool allowed = granular_allows(session, w.body);
      if (auto dl = w.body.find("details"); dl != w.body.end() && dl->is_array())
        for (const auto& line : *dl)
          if (line.is_object() && !granular_allows(session, line)) allowed = false;
      if (!allowed) return respond(not_privileged());
    }
    if (w.res && w.id && !session.privileges.granular.empty()) {
      auto shared_respond = std::make_shared<Responder>(std::move(respond));
      auto shared_w = std::make_shared<WriteRequest>(std::move(w));
      const LocalSession s = session;
      d.readers->post([this, shared_respond, s, shared_w](replica::Replica& rep) {
        bool visible = false;
        try {
          auto rec = replica::compose_record(rep, *shared_w->res, *shared_w->id);
          visible = !rec || granular_allows(s, *rec);
        } catch (const std::exception& e) {
          // Not known to be visible: refused, never written unchecked.
          spdlog::error("loopback: reading a record to check a change failed: {}", e.what());
        }
        d.inbox->post([this, shared_respond, s, shared_w, visible] {
          const auto& wr = *shared_w;
          if (!visible) return (*shared_respond)(missing_record(*wr.res, replica::to_string(*wr.id)));
          commit_write(std::move(*shared_w), s, std::move(*shared_respond));
        });
      });
      return;
    }
    commit_write(std::move(w), session, std::move(respond));
  }

  // Password routes that need no session (first sign-in, forgot and reset password) only make sense with
  // Knosc: passed through while it is reachable, answered 503 Sync.Offline while it is not, or when it has
  // not answered within `[loopback] login_wait_ms` (a late answer is dropped: the tool was already told to
  // try again). Their bodies carry passwords and tokens and are never logged.
  void forward_public(const HttpRequest& req, Responder respond) {
    if (!d.upstream || (d.online && d.online() == std::optional<bool>(false)))
      return respond(HttpResponse::knosc_error(
          503, "Knosc cannot be reached; passwords can be set again when the link is back.", "Sync.Offline"));
    auto body = json_body(req, true);
    if (auto* refusal = std::get_if<HttpResponse>(&body)) return respond(std::move(*refusal));
    // The route is one of three fixed names (checked by the caller); the body goes as it was parsed.
    const std::string path = upstream_path({req.segments.at(1)});
    const auto wait = std::chrono::milliseconds(d.config ? d.config->login_wait_ms : 1500);
    auto deadline = UpstreamDeadline::arm(d.loop, wait, std::move(respond), [wait, path](Responder late) {
      spdlog::warn("loopback: Knosc did not answer POST {} within {} ms; the tool is told to try again", path,
                   wait.count());
      late(HttpResponse::knosc_error(
          503, "Knosc did not answer in time; try again when the link to Knosc is back.", "Sync.Offline"));
    });
    d.upstream->call(req.method, path, std::get<OJson>(body).dump(), [deadline, path](sync::ApiResult r) {
      HttpResponse out =
          r.kind == sync::ApiResult::Kind::Transport || r.kind == sync::ApiResult::Kind::LockedOut ||
                  r.kind == sync::ApiResult::Kind::AuthFailed
              ? HttpResponse::knosc_error(503, "Knosc cannot be reached; try again when the link is back.",
                                          "Sync.Offline")
              : pass_through(r.response);
      if (!deadline->answer(std::move(out)))
        spdlog::info("loopback: Knosc answered POST {} after the wait (HTTP {}); that answer is dropped",
                     path, r.status);
    });
  }

  // The one write path. A change is validated against the replica as Knosc would, applied to it and queued in
  // the outbox, in one transaction that is on disk before anything else happens; then it is pushed at once
  // and the tool waits for the push at most [loopback] write_wait_ms: Knosc's own answer when it landed or
  // was refused in time, else the pending answer while the pusher carries on. Nothing is ever sent to Knosc
  // outside the outbox, so no answer is ever "may or may not have been applied".
  void commit_write(WriteRequest w, const LocalSession& session, Responder respond) {
    auto body = std::make_shared<replica::Json>(std::move(w.body));
    replica::EditRequest edit;
    edit.method = w.method;
    edit.path.assign(w.seg.begin() + 1, w.seg.end());
    if (auto e = session.profile.find("User Email"); e != session.profile.end() && e->is_string())
      edit.user_email = e->get<std::string>();
    const bool has_body = !body->is_null();
    auto shared = std::make_shared<Responder>(std::move(respond));
    const std::string user = session.username;
    const schema::Resource* res = w.res;
    // A change of the group commit (replica/writer.hpp): stored in a savepoint of its own, shared with the
    // changes of other tools queued with it, and answered only once the commit is on disk.
    d.writer->post_change(
        [edit, body, has_body, user](replica::Replica& rep) mutable {
          if (has_body) edit.body = body.get();
          return replica::write_locally(rep, edit, user, unix_now());
        },
        [this, shared, method = edit.method, route = edit.path.front(), user,
         res](replica::ChangeResult<replica::LocalWrite> written) {
          HttpResponse out;
          std::int64_t seq = 0;
          OJson plan_response;
          if (!written.committed()) {
            // Nothing was stored (its savepoint or its group's transaction rolled back); the tool must not
            // believe otherwise.
            spdlog::error("loopback: storing a local change failed: {}", written.error);
            out = HttpResponse::knosc_error(
                503, "The change could not be stored by knosc-syncd: " + written.error, "Sync.StorageFailed");
          } else if (const auto* err = std::get_if<replica::EditError>(&written.value->outcome)) {
            out = HttpResponse::knosc_error(err->status, err->message, err->code);
          } else {
            const auto& plan = std::get<replica::EditPlan>(written.value->outcome);
            seq = written.value->seq;
            plan_response = plan.response;
            out = json_response(200, plan.response);
            out.set_header("X-Knosc-Syncd-Pending", "true");
            out.set_header("X-Knosc-Syncd-Outbox-Seq", std::to_string(seq));
            out.set_header("X-Knosc-Syncd-Record-Id", replica::to_string(plan.id));
            spdlog::info("loopback: {} /{} by {} committed as outbox entry {}", method, route, user, seq);
          }
          d.inbox->post([this, shared, out = std::move(out), seq, res,
                         plan_response = std::move(plan_response)]() mutable {
            if (!seq) return (*shared)(std::move(out));
            await_push(seq, res, std::move(plan_response), std::move(out), std::move(*shared));
          });
        });
  }

  // A committed change waits for its push. Known offline, or without a pusher, the pending answer goes at
  // once.
  struct AwaitedWrite {
    Responder respond;
    HttpResponse pending;  // the answer when Knosc has not decided in time
    OJson plan_response;   // Knosc's success body as computed locally, for a landing Knosc did not answer
    const schema::Resource* res = nullptr;
    std::optional<sync::PushVerdict> verdict;
    bool answered = false;
  };

  void await_push(std::int64_t seq, const schema::Resource* res, OJson plan_response, HttpResponse pending,
                  Responder respond) {
    const bool offline =
        !d.upstream || !d.watch_push || (d.online && d.online() == std::optional<bool>(false));
    const auto wait_ms = d.config ? d.config->write_wait_ms : 1500;
    if (offline || wait_ms <= 0) {
      respond(std::move(pending));
      if (d.outbox_queued) d.outbox_queued(seq);
      return;
    }
    auto w = std::make_shared<AwaitedWrite>();
    w->respond = std::move(respond);
    w->pending = std::move(pending);
    w->plan_response = std::move(plan_response);
    w->res = res;
    sync::PushWatch watch;
    watch.verdict = [w](const sync::PushVerdict& v) { w->verdict = v; };
    watch.settled = [this, w] { answer_awaited(*w); };
    d.watch_push(seq, std::move(watch));
    deadlines.after(std::chrono::milliseconds(wait_ms), [this, w, seq] {
      if (w->answered) return;
      if (d.unwatch_push) d.unwatch_push(seq);
      answer_awaited(*w);
    });
  }

  // Answers a waiting tool once: Knosc's verdict when there is one, the pending answer otherwise.
  void answer_awaited(AwaitedWrite& w) {
    if (w.answered) return;
    w.answered = true;
    const auto& v = w.verdict;
    if (!v || v->kind == sync::PushVerdict::Kind::Held) {
      if (v && v->conflict_id)
        w.pending.set_header("X-Knosc-Syncd-Conflict", std::to_string(*v->conflict_id));
      return w.respond(std::move(w.pending));
    }
    if (v->answer) {
      auto answer = *v->answer;
      return w.respond(pass_through(answer));
    }
    // Landed without an answer of Knosc's to pass on (nothing had to be sent, or a create was found to have
    // landed after a lost answer): the body Knosc gives for the change, naming the server id.
    OJson body = w.plan_response;
    if (v->server_id && body.is_object() && body.contains("id") && w.res) {
      const auto id = canonical_record_id(w.res->id_type, *v->server_id);
      if (id)
        body["id"] = std::holds_alternative<std::int64_t>(*id) ? OJson(std::get<std::int64_t>(*id))
                                                               : OJson(std::get<std::string>(*id));
    }
    w.respond(json_response(200, body));
  }

  // GET /api/<resource>
  // ----------------------------------------------------------------------------------------
  void list(const HttpRequest& req, const LocalSession& session, const schema::Resource& res,
            Responder respond) {
    if (!session.privileges.allows(res.module, Access::View)) return respond(not_privileged());
    std::string key = scope_key(session) + ' ' + req.target;
    if (serve_cached(key, respond)) return;
    auto parsed = replica::parse_list_params(req.query_params());
    if (!parsed)
      return respond(
          HttpResponse::knosc_error(parsed.error().status, parsed.error().message, parsed.error().code));
    auto params = std::move(parsed).value();
    auto scope = scope_of(session);
    const auto* r = &res;
    read_and_cache(std::move(key), list_sources[r], r->name, std::move(respond),
                   [r, params = std::move(params), scope = std::move(scope)](replica::Replica& rep) {
                     auto result = replica::run_list(rep.db(), *r, params, scope);
                     OJson env;
                     OJson data;
                     data["headers"] = rep.list_headers(*r).value_or(OJson::array());
                     data["sort"] = OJson{{"key", result.sort.key},
                                          {"type", result.sort.descending ? "Descending" : "Ascending"}};
                     data["rows"] = OJson::array();
                     for (auto& row : result.rows)
                       data["rows"].push_back(std::move(row));
                     env["data"] = std::move(data);
                     env["tags"] = OJson::object();
                     // Only Knosc's user list reports a total (CONTRACT §2).
                     if (r->name == "user") {
                       env["extra"] = OJson{{"page", params.page},
                                            {"page_size", params.page_size},
                                            {"total", replica::count_list(rep.db(), *r, params, scope)}};
                     } else {
                       env["extra"] = OJson::object();
                     }
                     return ReplicaAnswer{json_response(200, env), std::nullopt};
                   });
  }

  // POST /api/export-data: an XLSX of a list view, built from the replica with the list's semantics (works
  // offline). Columns are the keys of the exported rows in first-seen order (nested objects and arrays left
  // out), as Knosc's export does.
  void export_data(const HttpRequest& req, const LocalSession& session, Responder respond) {
    auto parsed_body = json_body(req, true);
    if (auto* refusal = std::get_if<HttpResponse>(&parsed_body)) return respond(std::move(*refusal));
    const OJson& body = std::get<OJson>(parsed_body);
    if (!body.is_object())
      return respond(HttpResponse::knosc_error(400, "Bad Request Format", "JSON.Invalid"));
    auto view = body.find("view_name");
    if (view == body.end() || !view->is_string())
      return respond(
          HttpResponse::knosc_error(400, "Missing required field: view_name.", "ExportData.MissingField"));
    const auto* res = d.catalog->find_export_view(view->get<std::string>());
    if (!res)
      return respond(HttpResponse::knosc_error(400, "Unknown view_name '" + view->get<std::string>() + "'.",
                                               "ExportData.UnknownView"));
    if (!session.privileges.allows(res->module, Access::View)) return respond(not_privileged());
    // The export body carries the list parameters as JSON values; the list parser takes them as text.
    std::map<std::string, std::string> q;
    if (auto f = body.find("filters"); f != body.end() && !f->is_null()) q["filter"] = f->dump();
    if (auto s = body.find("search"); s != body.end() && !s->is_null()) q["search"] = s->dump();
    if (auto s = body.find("sort"); s != body.end() && !s->is_null()) q["sort"] = s->dump();
    auto parsed = replica::parse_list_params(q);
    if (!parsed)
      return respond(
          HttpResponse::knosc_error(parsed.error().status, parsed.error().message, parsed.error().code));
    std::int64_t limit = 10000, offset = 0;
    if (auto idx = body.find("index"); idx != body.end() && !idx->is_null()) {
      if (!idx->is_object())
        return respond(
            HttpResponse::knosc_error(400, "'index' must be {\"limit\": N, \"offset\": N}.", "JSON.Invalid"));
      auto l = idx->find("limit");
      auto o = idx->find("offset");
      if (l != idx->end() && (!l->is_number_integer() || l->get<std::int64_t>() < 0))
        return respond(
            HttpResponse::knosc_error(400, "'index.limit' must be a non-negative integer.", "JSON.Invalid"));
      if (o != idx->end() && (!o->is_number_integer() || o->get<std::int64_t>() < 0))
        return respond(
            HttpResponse::knosc_error(400, "'index.offset' must be a non-negative integer.", "JSON.Invalid"));
      if (l != idx->end()) limit = std::min<std::int64_t>(l->get<std::int64_t>(), 100000);
      if (o != idx->end()) offset = o->get<std::int64_t>();
    }
    auto params = std::move(parsed).value();
    // One page ending at offset + limit; rows before the offset are dropped below.
    params.page = 1;
    params.page_size = offset + limit;
    auto scope = scope_of(session);
    const auto* r = res;
    read(std::move(respond), [r, params = std::move(params), scope = std::move(scope),
                              offset](replica::Replica& rep) {
      auto result = replica::run_list(rep.db(), *r, params, scope);
      std::vector<OJson> rows;
      const auto first = static_cast<std::size_t>(
          std::min<std::int64_t>(offset, static_cast<std::int64_t>(result.rows.size())));
      for (std::size_t i = first; i < result.rows.size(); ++i)
        rows.push_back(std::move(result.rows[i]));
      std::vector<std::string> columns;
      std::set<std::string> seen;
      for (const auto& row : rows)
        for (const auto& [k, v] : row.items())
          if (!v.is_object() && !v.is_array() && seen.insert(k).second) columns.push_back(k);
      HttpResponse out;
      out.status = 200;
      out.body = build_xlsx(columns, rows, "export");
      out.set_header("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
      out.set_header("Content-Disposition", "attachment; filename=\"export.xlsx\"");
      return out;
    });
  }

  // GET /api/<resource>/<id>
  // -----------------------------------------------------------------------------------
  void get_one(const LocalSession& session, const schema::Resource& res, const std::string& id_text,
               Responder respond) {
    if (!session.privileges.allows(res.module, Access::View)) return respond(not_privileged());
    std::string key = scope_key(session) + ' ';
    key += res.name;
    key += '/';
    key += id_text;
    if (serve_cached(key, respond)) return;
    const auto missing = HttpResponse::knosc_error(400, res.missing_message(id_text), res.not_found_code);
    auto id = canonical_record_id(res.id_type, id_text);
    if (!id) return respond(missing);
    const auto* r = &res;
    const LocalSession s = session;
    read_and_cache(std::move(key), record_sources[r], r->name, std::move(respond),
                   [r, s, id = *id, missing](replica::Replica& rep) {
                     auto shown = id;
                     auto record = replica::compose_record(rep, *r, id);
                     if (!record) {
                       // A tool may still hold the local id of a record it created offline: after the push
                       // that id names the record under its Knosc id, which the answer carries (and a header
                       // repeats).
                       if (const auto* local = std::get_if<std::int64_t>(&id); local && *local < 0)
                         if (auto known = replica::server_id_of(rep, *r, *local)) {
                           shown = *known;
                           record = replica::compose_record(rep, *r, *known);
                         }
                     }
                     if (!record || !granular_allows(s, *record)) return ReplicaAnswer{missing, std::nullopt};
                     OJson body;
                     if (r->get_one == schema::GetOneShape::RowsObject) {
                       body["data"]["rows"] = std::move(*record);
                     } else {
                       body["data"] = std::move(*record);
                     }
                     auto out = json_response(200, body);
                     if (!(shown == id)) out.set_header("X-Knosc-Syncd-Record-Id", replica::to_string(shown));
                     if (rep.is_pending(*r, shown)) out.set_header("X-Knosc-Syncd-Pending", "true");
                     return ReplicaAnswer{std::move(out), std::nullopt};
                   });
  }

  // The daemon's own routes
  // ------------------------------------------------------------------------------------
  void daemon_route(const HttpRequest& req, const std::vector<std::string>& seg, Responder respond) {
    if (req.method == "POST" && seg.size() == 4) return settle_route(req, seg, std::move(respond));
    if (req.method != "GET" || seg.size() != 2) return respond(route_not_found());
    const std::string& what = seg[1];
    if (what == "health") return respond(json_response(200, OJson{{"status", "ok"}}));
    if (what == "ready") {
      auto progress = d.progress ? d.progress() : std::vector<sync::PullProgress>{};
      std::size_t done = 0;
      for (const auto& p : progress)
        done += p.first_pass_done ? 1 : 0;
      return read(std::move(respond), [done, total = progress.size()](replica::Replica& rep) {
        // Ready once every resource has a complete pass, in this run or an earlier one.
        const auto st = rep.status();
        std::size_t complete = 0;
        for (const auto& r : st.resources)
          complete += r.last_complete_at ? 1 : 0;
        const bool ready = complete == st.resources.size();
        OJson body{{"ready", ready},
                   {"resources_complete", complete},
                   {"resources", st.resources.size()},
                   {"passes_complete_this_run", done},
                   {"resources_this_run", total}};
        return json_response(ready ? 200 : 503, body);
      });
    }
    // The rest shows tenant data or who changed what: a session is required.
    auto s = d.auth->session_for(req);
    if (auto* refusal = std::get_if<HttpResponse>(&s)) return respond(std::move(*refusal));
    if (what == "status") {
      const auto link = d.link ? d.link() : sync::LinkReport{};
      const std::string base = base_url();
      const auto push = d.push_status ? std::optional<sync::PushStatus>(d.push_status()) : std::nullopt;
      return read(std::move(respond), [link, base, push](replica::Replica& rep) {
        auto body = status_json(rep.status(), true);
        body["online"] = link.status == sync::LinkStatus::Online;
        body["upstream"] = upstream_json(link);
        body["loopback_base"] = base;
        if (push) body["push"] = push_json(*push);
        return json_response(200, body);
      });
    }
    if (what == "outbox" || what == "conflicts") {
      const LocalSession sess = *std::get<const LocalSession*>(s);
      const auto* catalog = d.catalog;
      if (what == "outbox")
        return read(std::move(respond), [sess, catalog](replica::Replica& rep) {
          OJson entries = OJson::array();
          for (const auto& e : replica::open_entries(rep, 0, std::numeric_limits<std::size_t>::max())) {
            const auto access = entry_access(rep, *catalog, sess, e, {});
            if (!access.visible) continue;
            OJson j;
            j["seq"] = e.seq;
            j["resource"] = e.resource;
            j["record_id"] = id_json(e.record_id);
            j["op"] = e.op;
            j["method"] = e.method;
            j["path"] = e.path;
            j["local_user"] = e.local_user;
            j["created_at"] = iso8601_utc(e.created_at);
            j["state"] = replica::to_string(e.state);
            j["attempts"] = e.attempts;
            // Knosc's refusal of a rejected entry is kept as its JSON error.
            OJson err;
            if (e.last_error) {
              err = OJson::parse(*e.last_error, nullptr, false);
              if (err.is_discarded()) err = *e.last_error;
            }
            j["last_error"] = err;
            j["next_attempt_at"] = e.next_attempt_at ? OJson(iso8601_utc(*e.next_attempt_at)) : OJson();
            j["conflict_id"] = e.conflict_id ? OJson(*e.conflict_id) : OJson();
            // What someone else asked for is theirs: its body is shown to its author and administrators.
            j["request"] = access.own && e.request ? OJson(*e.request) : OJson();
            entries.push_back(std::move(j));
          }
          return json_response(200, OJson{{"entries", entries}});
        });
      return read(std::move(respond), [sess, catalog](replica::Replica& rep) {
        OJson items = OJson::array();
        for (const auto& c : replica::conflict_rows(rep, false, 10000)) {
          const auto entry = replica::outbox_entry(rep, c.outbox_seq);
          if (!entry) continue;
          const auto access = entry_access(rep, *catalog, sess, *entry, {&c.base, &c.local, &c.remote});
          if (!access.visible) continue;
          OJson j;
          j["id"] = c.id;
          j["outbox_seq"] = c.outbox_seq;
          j["resource"] = c.resource;
          j["record_id"] = id_json(c.record_id);
          j["kind"] = c.kind;
          j["local_user"] = entry->local_user;
          j["base"] = c.base;
          // The local side is the author's edit: shown to its author and administrators only.
          j["local"] = access.own ? OJson(c.local) : OJson();
          j["remote"] = c.remote;
          OJson fields = c.fields;
          if (!access.own && fields.is_array())
            for (auto& f : fields)
              if (f.is_object() && f.contains("local")) f["local"] = nullptr;
          j["fields"] = std::move(fields);
          j["created_at"] = iso8601_utc(c.created_at);
          items.push_back(std::move(j));
        }
        return json_response(200, OJson{{"conflicts", items}});
      });
    }
    respond(route_not_found());
  }

  // POST /syncd/conflicts/{id}/resolve {"resolution": "keep-local" | "keep-remote" | "merged", "body": {...}}
  // POST /syncd/outbox/{seq}/retry [{"body": {...}}] and POST /syncd/outbox/{seq}/drop
  // A person settles a conflict or a rejected edit: a session, the CSRF header and the Edit privilege of the
  // record's module are required, as for the edit itself.
  void settle_route(const HttpRequest& req, const std::vector<std::string>& seg, Responder respond) {
    const bool conflict = seg[1] == "conflicts" && seg[3] == "resolve";
    const bool retry = seg[1] == "outbox" && seg[3] == "retry";
    const bool drop = seg[1] == "outbox" && seg[3] == "drop";
    if (!conflict && !retry && !drop) return respond(route_not_found());
    // The CLI authenticates with the token only the daemon's own account can read; a bearer header is never
    // sent by a browser on its own, so it needs no CSRF check.
    LocalSession cli;
    const LocalSession* who = nullptr;
    if (auto auth = req.header("authorization");
        auth && !d.cli_token.empty() && constant_time_equal(*auth, "Bearer " + d.cli_token)) {
      cli.username = "knosc-syncd CLI";
      cli.privileges.role_name = "Administrator";
      for (const auto& r : d.catalog->resources())
        cli.privileges.modules[r.module] = Access::Edit;
      who = &cli;
    } else {
      auto s = d.auth->session_for(req);
      if (auto* refusal = std::get_if<HttpResponse>(&s)) return respond(std::move(*refusal));
      who = std::get<const LocalSession*>(s);
      if (auto refusal = d.auth->check_csrf(req, *who)) return respond(std::move(*refusal));
    }
    const LocalSession& session = *who;
    const auto parsed_id = canonical_record_id(schema::IdType::Integer, seg[2]);
    if (!parsed_id || std::get<std::int64_t>(*parsed_id) <= 0) return respond(route_not_found());
    const std::int64_t id = std::get<std::int64_t>(*parsed_id);
    auto parsed_body = json_body(req, false);
    if (auto* refusal = std::get_if<HttpResponse>(&parsed_body)) return respond(std::move(*refusal));
    OJson body = std::move(std::get<OJson>(parsed_body));
    if (body.is_null()) body = OJson::object();
    if (!body.is_object())
      return respond(HttpResponse::knosc_error(400, "Bad Request Format", "JSON.Invalid"));
    sync::Resolution how = retry ? sync::Resolution::Retry : sync::Resolution::Drop;
    if (conflict) {
      const auto r = body.value("resolution", std::string());
      if (r == "keep-local") {
        how = sync::Resolution::KeepLocal;
      } else if (r == "keep-remote") {
        how = sync::Resolution::KeepRemote;
      } else if (r == "merged") {
        how = sync::Resolution::Merged;
      } else {
        return respond(HttpResponse::knosc_error(
            400, "Field 'resolution' must be one of keep-local, keep-remote, merged.",
            "Sync.InvalidResolution"));
      }
    }
    std::optional<OJson> given;
    if (body.contains("body")) given = body["body"];
    if (!d.resolve) return respond(internal_error());
    // Which module the record belongs to decides who may settle it.
    auto shared = std::make_shared<Responder>(std::move(respond));
    const LocalSession sess = session;
    d.readers->post([this, shared, sess, conflict, id, how, given](replica::Replica& rep) {
      std::optional<EntryAccess> access;
      try {
        if (conflict) {
          if (auto c = replica::conflict_row(rep, id))
            if (auto e = replica::outbox_entry(rep, c->outbox_seq))
              access = entry_access(rep, *d.catalog, sess, *e, {&c->base, &c->local, &c->remote});
        } else if (auto e = replica::outbox_entry(rep, id)) {
          access = entry_access(rep, *d.catalog, sess, *e, {});
        }
      } catch (const std::exception& e) {
        spdlog::error("loopback: reading the outbox failed: {}", e.what());
      }
      d.inbox->post([this, shared, sess, access, id, how, given]() mutable {
        // An entry the caller may not see does not exist for them.
        if (!access || !access->visible)
          return (*shared)(
              HttpResponse::knosc_error(404, "No such conflict or outbox entry.", "Sync.NotFound"));
        // Settling decides the fate of someone's edit: it is for its author, with Edit on the record's
        // module, or an administrator.
        if (!access->own || !sess.privileges.allows(access->module, Access::Edit))
          return (*shared)(not_privileged());
        d.resolve(id, how, std::move(given), sess.username, [shared](std::string error) {
          if (!error.empty())
            return (*shared)(HttpResponse::knosc_error(409, error, "Sync.ResolutionRefused"));
          (*shared)(json_response(200, OJson{{"message", "Resolved."}}));
        });
      });
    });
  }

  // Prometheus text format (https://prometheus.io/docs/instrumenting/exposition_formats/).
  void metrics(Responder respond) {
    const auto link = d.link ? d.link() : sync::LinkReport{};
    auto answered_now = answered;
    const auto sessions = d.auth->active_sessions();
    const auto push = d.push_status ? std::optional<sync::PushStatus>(d.push_status()) : std::nullopt;
    const auto cached = cache.stats();
    const std::int64_t ttl = d.config ? d.config->offline_login_ttl_seconds : 7 * 24 * 3600;
    read(std::move(respond), [link, answered_now, sessions, push, cached, ttl](replica::Replica& rep) {
      const auto st = rep.status();
      std::ostringstream o;
      o << upstream_metrics(link);
      o << offline_horizon_metrics(read_offline_horizon(rep, ttl), link, unix_now());
      o << "# HELP knosc_syncd_replica_rows Rows mirrored per resource.\n# TYPE knosc_syncd_replica_rows "
           "gauge\n";
      for (const auto& r : st.resources)
        o << "knosc_syncd_replica_rows{resource=\"" << r.name << "\"} " << r.rows << "\n";
      o << "# HELP knosc_syncd_last_complete_pass_timestamp_seconds When each resource last completed a "
           "pass.\n"
        << "# TYPE knosc_syncd_last_complete_pass_timestamp_seconds gauge\n";
      for (const auto& r : st.resources)
        if (r.last_complete_at)
          o << "knosc_syncd_last_complete_pass_timestamp_seconds{resource=\"" << r.name << "\"} "
            << *r.last_complete_at << "\n";
      o << "# HELP knosc_syncd_pass_errors Whether the resource's last pass step failed (1) or not (0).\n"
        << "# TYPE knosc_syncd_pass_errors gauge\n";
      for (const auto& r : st.resources)
        o << "knosc_syncd_pass_errors{resource=\"" << r.name << "\"} " << (r.last_error ? 1 : 0) << "\n";
      o << "# HELP knosc_syncd_pending_deletion_checks Rows a pass missed that still await a check "
           "upstream.\n"
        << "# TYPE knosc_syncd_pending_deletion_checks gauge\n";
      for (const auto& r : st.resources)
        o << "knosc_syncd_pending_deletion_checks{resource=\"" << r.name << "\"} "
          << r.pending_deletion_checks << "\n";
      SQLite::Statement q(rep.db(), "SELECT state, COUNT(*) FROM outbox GROUP BY state");
      o << "# HELP knosc_syncd_outbox_entries Local edits by state.\n# TYPE knosc_syncd_outbox_entries "
           "gauge\n";
      while (q.executeStep())
        o << "knosc_syncd_outbox_entries{state=\"" << q.getColumn(0).getString() << "\"} "
          << q.getColumn(1).getInt64() << "\n";
      if (push) {
        o << "# HELP knosc_syncd_push_stalled Whether the outbox has stopped moving while Knosc is "
             "reachable.\n"
          << "# TYPE knosc_syncd_push_stalled gauge\nknosc_syncd_push_stalled " << (push->stalled ? 1 : 0)
          << "\n"
          << "# HELP knosc_syncd_push_landed_total Outbox entries that reached Knosc since the start.\n"
          << "# TYPE knosc_syncd_push_landed_total counter\nknosc_syncd_push_landed_total " << push->pushed
          << "\n"
          << "# HELP knosc_syncd_push_in_flight Outbox entries being sent.\n"
          << "# TYPE knosc_syncd_push_in_flight gauge\nknosc_syncd_push_in_flight " << push->in_flight
          << "\n";
      }
      o << "# HELP knosc_syncd_loopback_responses_total Loopback API answers by HTTP status.\n"
        << "# TYPE knosc_syncd_loopback_responses_total counter\n";
      for (const auto& [status, n] : answered_now)
        o << "knosc_syncd_loopback_responses_total{status=\"" << status << "\"} " << n << "\n";
      o << "# HELP knosc_syncd_loopback_sessions Active loopback sessions.\n# TYPE "
           "knosc_syncd_loopback_sessions gauge\n"
        << "knosc_syncd_loopback_sessions " << sessions << "\n";
      o << "# HELP knosc_syncd_response_cache_hits_total Loopback reads answered from the response cache.\n"
        << "# TYPE knosc_syncd_response_cache_hits_total counter\nknosc_syncd_response_cache_hits_total "
        << cached.hits << "\n"
        << "# HELP knosc_syncd_response_cache_misses_total Cacheable loopback reads that read the replica.\n"
        << "# TYPE knosc_syncd_response_cache_misses_total counter\nknosc_syncd_response_cache_misses_total "
        << cached.misses << "\n"
        << "# HELP knosc_syncd_response_cache_retired_total Cached answers retired by a replica change.\n"
        << "# TYPE knosc_syncd_response_cache_retired_total "
           "counter\nknosc_syncd_response_cache_retired_total "
        << cached.stale << "\n"
        << "# HELP knosc_syncd_response_cache_bytes Memory held by cached answers (estimate).\n"
        << "# TYPE knosc_syncd_response_cache_bytes gauge\nknosc_syncd_response_cache_bytes " << cached.bytes
        << "\n";
      HttpResponse r;
      r.status = 200;
      r.body = o.str();
      r.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      return r;
    });
  }

  std::string base_url() const {
    std::string host = d.config->loopback_host;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(bound_port) + "/api";
  }
};

LoopbackApi::LoopbackApi(LoopbackDeps deps) : impl_(std::make_unique<Impl>(std::move(deps))) {}
LoopbackApi::~LoopbackApi() = default;

int LoopbackApi::listen() {
  const auto& host = impl_->d.config->loopback_host;
  const int port = impl_->d.config->loopback_port;
  if (host == "localhost") {
    int rc = impl_->server.listen("127.0.0.1", port);
    if (rc != 0) return rc;
    impl_->bound_port = impl_->server.bound_port();
    rc = impl_->server.listen("::1", impl_->bound_port);
    if (rc != 0) spdlog::warn("loopback: ::1 is not available ({}); serving 127.0.0.1 only", uv_strerror(rc));
    return 0;
  }
  const int rc = impl_->server.listen(host, port);
  if (rc == 0) impl_->bound_port = impl_->server.bound_port();
  return rc;
}

int LoopbackApi::port() const {
  return impl_->bound_port;
}
std::string LoopbackApi::base_url() const {
  return impl_->base_url();
}
void LoopbackApi::shutdown(std::function<void()> done) {
  // Tools waiting for a push get the pending answer now: their changes are committed either way.
  impl_->deadlines.fire_all();
  impl_->deadlines.close();
  impl_->server.shutdown(std::move(done));
}

}  // namespace knosc::daemon
