#include "replica/outbox.hpp"

#include <SQLiteCpp/Statement.h>

#include <set>

#include "replica/clock.hpp"
#include "replica/content_hash.hpp"
#include "replica/id_sql.hpp"
#include "replica/record_lookup.hpp"
#include "replica/record_view.hpp"
#include "replica/savepoint.hpp"

namespace knosc::replica {
namespace {

// Local ids a record names besides its own: keys ending in " Id" (how Knosc stores a reference next to its
// business number) holding a negative integer, in the record and its lines. Local ids come from one counter
// for every resource, so the id alone names the record.
void collect_needs(const Json& v, const std::string& key, std::set<std::int64_t>& out) {
  if (v.is_object()) {
    for (const auto& [k, child] : v.items())
      if (k != "id") collect_needs(child, k, out);
  } else if (v.is_array()) {
    for (const auto& child : v)
      collect_needs(child, "", out);
  } else if (v.is_number_integer() && v.get<std::int64_t>() < 0 && key.size() > 3 &&
             key.compare(key.size() - 3, 3, " Id") == 0) {
    out.insert(v.get<std::int64_t>());
  }
}

Json parse_optional(const SQLite::Column& c) {
  if (c.isNull()) return Json();
  return Json::parse(c.getString(), nullptr, false);
}

// Records touched by `seq` that no other open entry (queued or waiting on a conflict) touches.
std::vector<std::pair<std::string, RecordId>> released_records(Replica& rep, std::int64_t seq) {
  std::vector<std::pair<std::string, RecordId>> out;
  auto q_cached = rep.cached(
      "SELECT t.resource, t.id FROM outbox_touch t WHERE t.seq = ?1 AND NOT EXISTS ("
      "SELECT 1 FROM outbox_touch o JOIN outbox e ON e.seq = o.seq WHERE o.resource = t.resource "
      "AND o.id = t.id AND o.seq != ?1 AND e.state IN ('queued', 'conflict'))");
  SQLite::Statement& q = *q_cached;
  q.bind(1, seq);
  while (q.executeStep())
    if (auto id = column_id(q.getColumn(1))) out.emplace_back(q.getColumn(0).getString(), *id);
  return out;
}

void set_state(Replica& rep, std::int64_t seq, OutboxState state, const std::optional<std::string>& error,
               std::int64_t now) {
  auto up_cached = rep.cached(
      "UPDATE outbox SET state = ?2, last_error = COALESCE(?3, last_error), done_at = ?4, "
      "next_attempt_at = NULL WHERE seq = ?1");
  SQLite::Statement& up = *up_cached;
  up.bind(1, seq);
  up.bind(2, std::string(to_string(state)));
  if (error) {
    up.bind(3, *error);
  } else {
    up.bind(3);
  }
  up.bind(4, now);
  up.exec();
}

}  // namespace

std::string_view to_string(OutboxState s) {
  switch (s) {
    case OutboxState::Queued:
      return "queued";
    case OutboxState::Conflict:
      return "conflict";
    case OutboxState::Rejected:
      return "rejected";
    case OutboxState::Refused:
      return "refused";
    case OutboxState::Done:
      return "done";
    case OutboxState::Dropped:
      return "dropped";
  }
  return "rejected";
}

std::optional<OutboxState> outbox_state_from(std::string_view text) {
  for (auto s : {OutboxState::Queued, OutboxState::Conflict, OutboxState::Rejected, OutboxState::Refused,
                 OutboxState::Done, OutboxState::Dropped})
    if (to_string(s) == text) return s;
  return std::nullopt;
}

bool is_local_id(const RecordId& id) {
  if (const auto* i = std::get_if<std::int64_t>(&id)) return *i < 0;
  return std::get<std::string>(id).rfind(kLocalStringIdPrefix, 0) == 0;
}

RecordId allocate_local_id(Replica& rep, const schema::Resource& res) {
  // One counter for every resource, so a local id names one record whatever its resource (see collect_needs).
  const bool integer = res.id_type == schema::IdType::Integer;
  const std::string counter = integer ? "local-integer" : "local-string";
  auto up_cached = rep.cached(
      "INSERT INTO id_counter (name, next) VALUES (?1, 2) "
      "ON CONFLICT (name) DO UPDATE SET next = next + 1 RETURNING next - 1");
  SQLite::Statement& up = *up_cached;
  up.bind(1, counter);
  if (!up.executeStep()) throw std::runtime_error("the local id counter did not advance");
  const std::int64_t n = up.getColumn(0).getInt64();
  up.reset();
  if (integer) return RecordId{-n};
  return RecordId{std::string(kLocalStringIdPrefix) + std::to_string(n)};
}

std::string local_user_email(Replica& rep, const std::string& local_user) {
  auto q_cached = rep.cached("SELECT profile FROM local_user WHERE username = ?1");
  SQLite::Statement& q = *q_cached;
  q.bind(1, local_user);
  if (!q.executeStep()) return "";
  const Json profile = Json::parse(q.getColumn(0).getString(), nullptr, false);
  const auto email = profile.is_object() ? profile.find("User Email") : profile.end();
  return profile.is_object() && email != profile.end() && email->is_string() ? email->get<std::string>() : "";
}

LocalWrite write_locally(Replica& rep, const EditRequest& edit, const std::string& local_user,
                         std::int64_t now) {
  // Knosc stamps a change with the time it makes it; here that is the time of the local commit.
  EditRequest request = edit;
  request.now_iso = iso8601_utc(now);
  LocalWrite out;
  Savepoint tx(rep.db());
  ReplicaLookup lookup(rep);
  std::vector<std::pair<const schema::Resource*, RecordId>> created;
  const LocalIdAllocator next_id = [&](const schema::Resource& res) {
    auto id = allocate_local_id(rep, res);
    created.emplace_back(&res, id);
    return id;
  };
  out.outcome = plan_edit(rep.catalog(), lookup, request, next_id);
  auto* plan = std::get_if<EditPlan>(&out.outcome);
  if (!plan) return out;  // the savepoint rolls back: nothing changed, no local id used

  // The base: the record as the tool saw it before this edit (after earlier local edits, if any), which the
  // push merges against what Knosc has by then.
  std::optional<Json> base;
  if (plan->op != "create") base = compose_record(rep, *plan->res, plan->id);

  std::set<std::int64_t> needs;
  for (const auto& r : plan->records) {
    rep.store_local_version(*r.res, r.id, r.record, now);
    if (r.record) collect_needs(*r.record, "", needs);
  }
  for (const auto& [res, id] : created) {
    if (const auto* i = std::get_if<std::int64_t>(&id)) needs.erase(*i);
    auto ins_cached = rep.cached("INSERT INTO local_id (resource, local_id, created_at) VALUES (?1, ?2, ?3)");
    SQLite::Statement& ins = *ins_cached;
    ins.bind(1, res->name);
    bind_id(ins, 2, id);
    ins.bind(3, now);
    ins.exec();
  }
  if (const auto* own = std::get_if<std::int64_t>(&plan->id)) needs.erase(*own);

  std::string path = "/" + request.path.front();
  for (std::size_t i = 1; i < request.path.size(); ++i)
    path += "/" + request.path[i];
  auto ins_cached = rep.cached(
      "INSERT INTO outbox (resource, record_id, op, method, path, request, base, local_user, "
      "created_at, refs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq");
  SQLite::Statement& ins = *ins_cached;
  ins.bind(1, plan->res->name);
  bind_id(ins, 2, plan->id);
  ins.bind(3, plan->op);
  ins.bind(4, request.method);
  ins.bind(5, path);
  if (request.body) {
    ins.bind(6, request.body->dump());
  } else {
    ins.bind(6);
  }
  if (base) {
    ins.bind(7, base->dump());
  } else {
    ins.bind(7);
  }
  ins.bind(8, local_user);
  ins.bind(9, now);
  if (needs.empty()) {
    ins.bind(10);
  } else {
    ins.bind(10, Json(std::vector<std::int64_t>(needs.begin(), needs.end())).dump());
  }
  if (!ins.executeStep()) throw std::runtime_error("the outbox entry was not stored");
  out.seq = ins.getColumn(0).getInt64();
  ins.reset();

  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& r : plan->records) {
    if (!seen.insert({r.res->name, to_string(r.id)}).second) continue;
    auto t_cached = rep.cached("INSERT OR IGNORE INTO outbox_touch (resource, id, seq) VALUES (?1, ?2, ?3)");
    SQLite::Statement& t = *t_cached;
    t.bind(1, r.res->name);
    bind_id(t, 2, r.id);
    t.bind(3, out.seq);
    t.exec();
  }
  tx.release();
  return out;
}

void Replica::store_local_version(const schema::Resource& res, const RecordId& id,
                                  const std::optional<Json>& record, std::int64_t now) {
  {
    // Upstream's version is what `record` holds until the first local edit; later edits keep it as it is.
    auto mark_cached = cached(
        "INSERT INTO pending_record (resource, id, upstream_body, upstream_hash, seen_at, since) "
        "SELECT ?1, ?2, body, body_hash, updated_at, ?3 FROM record "
        "WHERE resource = ?1 AND id = ?2 ON CONFLICT (resource, id) DO NOTHING");
    SQLite::Statement& mark = *mark_cached;
    mark.bind(1, res.name);
    bind_id(mark, 2, id);
    mark.bind(3, now);
    mark.exec();
    auto fresh_cached =
        cached("INSERT OR IGNORE INTO pending_record (resource, id, since) VALUES (?1, ?2, ?3)");
    SQLite::Statement& fresh = *fresh_cached;
    fresh.bind(1, res.name);
    bind_id(fresh, 2, id);
    fresh.bind(3, now);
    fresh.exec();
  }
  if (!record) {
    auto rm_cached = cached("DELETE FROM record WHERE resource = ?1 AND id = ?2");
    SQLite::Statement& rm = *rm_cached;
    rm.bind(1, res.name);
    bind_id(rm, 2, id);
    rm.exec();
    return;
  }
  std::set<std::string> set_aside(res.nested.begin(), res.nested.end());
  for (const auto& d : res.derived)
    set_aside.insert(d.key);
  if (!res.lines.empty()) set_aside.insert("details");
  Json row = Json::object();
  Json nested = Json::object();
  for (const auto& [k, v] : record->items()) {
    if (!set_aside.count(k)) {
      row[k] = v;
    } else if (std::find(res.nested.begin(), res.nested.end(), k) != res.nested.end()) {
      nested[k] = v;
    }
  }
  write_row(res, row, now);
  if (res.has_nested()) {
    auto up_cached = cached(
        "UPDATE record SET nested = ?3, nested_hash = ?4, nested_at = ?5 "
        "WHERE resource = ?1 AND id = ?2");
    SQLite::Statement& up = *up_cached;
    up.bind(1, res.name);
    bind_id(up, 2, id);
    up.bind(3, nested.dump());
    up.bind(4, static_cast<std::int64_t>(content_hash(nested)));
    up.bind(5, now);
    up.exec();
  }
  if (!res.lines.empty()) {
    auto details = record->find("details");
    if (details == record->end() || !details->is_array()) return;
    const auto& lines = catalog().at(res.lines);
    std::set<std::string> kept;
    for (const auto& line : *details) {
      auto lid = line.is_object() && line.contains("id") ? record_id_from_json(line["id"]) : std::nullopt;
      if (!lid) continue;
      kept.insert(to_string(*lid));
      auto same_cached = cached("SELECT body_hash FROM record WHERE resource = ?1 AND id = ?2");
      SQLite::Statement& same = *same_cached;
      same.bind(1, lines.name);
      bind_id(same, 2, *lid);
      if (same.executeStep() && same.getColumn(0).getInt64() == static_cast<std::int64_t>(content_hash(line)))
        continue;
      same.reset();
      store_local_version(lines, *lid, line, now);
    }
    std::vector<RecordId> gone;
    auto q_cached =
        cached("SELECT id FROM record WHERE resource = ?1 AND parent_id = ?2 AND parent_id IS NOT NULL");
    SQLite::Statement& q = *q_cached;
    q.bind(1, lines.name);
    bind_id(q, 2, id);
    while (q.executeStep())
      if (auto lid = column_id(q.getColumn(0)); lid && !kept.count(to_string(*lid))) gone.push_back(*lid);
    q.reset();
    for (const auto& lid : gone)
      store_local_version(lines, lid, std::nullopt, now);
  }
}

namespace {

OutboxEntry entry_from(SQLite::Statement& q) {
  OutboxEntry e;
  e.seq = q.getColumn(0).getInt64();
  e.resource = q.getColumn(1).getString();
  e.record_id = column_id(q.getColumn(2)).value_or(RecordId{std::int64_t{0}});
  e.op = q.getColumn(3).getString();
  e.method = q.getColumn(4).getString();
  e.path = q.getColumn(5).getString();
  if (!q.getColumn(6).isNull()) e.request = parse_optional(q.getColumn(6));
  if (!q.getColumn(7).isNull()) e.base = parse_optional(q.getColumn(7));
  e.local_user = q.getColumn(8).getString();
  e.created_at = q.getColumn(9).getInt64();
  // A state no build writes (a replica edited by hand) is shown as a refusal for a person, never pushed.
  e.state = outbox_state_from(q.getColumn(10).getString()).value_or(OutboxState::Rejected);
  e.attempts = q.getColumn(11).getInt();
  if (!q.getColumn(12).isNull()) e.next_attempt_at = q.getColumn(12).getInt64();
  if (!q.getColumn(13).isNull()) e.last_error = q.getColumn(13).getString();
  if (!q.getColumn(14).isNull()) {
    auto refs = parse_optional(q.getColumn(14));
    if (refs.is_array())
      for (const auto& v : refs)
        if (v.is_number_integer()) e.needs.push_back(v.get<std::int64_t>());
  }
  e.upstream_id = column_id(q.getColumn(15));
  if (!q.getColumn(16).isNull()) e.conflict_id = q.getColumn(16).getInt64();
  e.outcome_unknown = q.getColumn(17).getInt() != 0;
  if (!q.getColumn(18).isNull()) e.create_guard = parse_optional(q.getColumn(18));
  return e;
}

constexpr const char* kEntryColumns =
    "SELECT seq, resource, record_id, op, method, path, request, base, local_user, created_at, state, "
    "attempts, next_attempt_at, last_error, refs, upstream_id, conflict_id, outcome_unknown, create_guard "
    "FROM outbox ";

}  // namespace

std::vector<OutboxEntry> open_entries(Replica& rep, std::int64_t after_seq, std::size_t limit) {
  std::vector<OutboxEntry> out;
  auto q_cached = rep.cached(std::string(kEntryColumns) +
                             "WHERE seq > ?2 AND state IN ('queued', 'conflict', 'rejected') "
                             "ORDER BY seq LIMIT ?1");
  SQLite::Statement& q = *q_cached;
  q.bind(1, static_cast<std::int64_t>(limit));
  q.bind(2, after_seq);
  while (q.executeStep())
    out.push_back(entry_from(q));
  return out;
}

std::optional<OutboxEntry> outbox_entry(Replica& rep, std::int64_t seq) {
  auto q_cached = rep.cached(std::string(kEntryColumns) + "WHERE seq = ?1");
  SQLite::Statement& q = *q_cached;
  q.bind(1, seq);
  if (!q.executeStep()) return std::nullopt;
  return entry_from(q);
}

Json guard_create(Replica& rep, std::int64_t seq, const std::string& reporter_email, std::int64_t now) {
  auto entry = outbox_entry(rep, seq);
  if (!entry) throw std::invalid_argument("guard_create: no outbox entry " + std::to_string(seq));
  if (entry->create_guard) return *entry->create_guard;
  const Json request = entry->request.value_or(Json::object());
  Json not_ours = Json::array();
  if (entry->op == "note-create") {
    // Notes have no business key: the ticket's notes with the same text are not ours.
    const auto* tickets = rep.catalog().find("issue-tracker-tickets");
    const auto ticket_id =
        request.contains("Ticket Id") ? record_id_from_json(request["Ticket Id"]) : std::nullopt;
    if (tickets && ticket_id)
      if (auto ticket = compose_record(rep, *tickets, *ticket_id))
        if (auto notes = ticket->find("Notes"); notes != ticket->end() && notes->is_array())
          for (const auto& n : *notes)
            if (n.is_object() && n.value("Note", Json()) == request.value("Note", Json()) && n.contains("id"))
              not_ours.push_back(n["id"]);
    Json guard{{"sent_at", now}, {"not_ours", not_ours}};
    auto up_cached = rep.cached("UPDATE outbox SET create_guard = ?2 WHERE seq = ?1");
    SQLite::Statement& up = *up_cached;
    up.bind(1, seq);
    up.bind(2, guard.dump());
    up.exec();
    return guard;
  }
  const auto& res = rep.catalog().at(entry->resource);
  std::string sql = "SELECT id FROM record WHERE resource = ?1";
  std::vector<std::pair<std::string, Json>> match;
  if (!res.business_key.empty()) {
    for (const auto& k : res.business_key)
      match.emplace_back(k, request.contains(k) ? request[k] : Json());
  } else {
    match.emplace_back("Reporter Email", request.value("Reporter Email", Json(reporter_email)));
  }
  for (std::size_t i = 0; i < match.size(); ++i)
    sql += " AND json_extract(body, ?" + std::to_string(2 * i + 2) + ") IS ?" + std::to_string(2 * i + 3);
  auto q_cached = rep.cached(sql);
  SQLite::Statement& q = *q_cached;
  q.bind(1, res.name);
  for (std::size_t i = 0; i < match.size(); ++i) {
    const int p = static_cast<int>(2 * i + 2);
    q.bind(p, "$.\"" + match[i].first + "\"");
    const auto& v = match[i].second;
    if (v.is_string()) {
      q.bind(p + 1, v.get<std::string>());
    } else if (v.is_number_integer()) {
      q.bind(p + 1, v.get<std::int64_t>());
    } else if (v.is_number()) {
      q.bind(p + 1, v.get<double>());
    } else {
      q.bind(p + 1);
    }
  }
  while (q.executeStep())
    if (auto id = column_id(q.getColumn(0)); id && !is_local_id(*id))
      not_ours.push_back(std::holds_alternative<std::int64_t>(*id) ? Json(std::get<std::int64_t>(*id))
                                                                   : Json(std::get<std::string>(*id)));
  q.reset();
  Json guard{{"sent_at", now}, {"not_ours", not_ours}};
  auto up_cached = rep.cached("UPDATE outbox SET create_guard = ?2 WHERE seq = ?1");
  SQLite::Statement& up = *up_cached;
  up.bind(1, seq);
  up.bind(2, guard.dump());
  up.exec();
  return guard;
}

void retry_entry(Replica& rep, std::int64_t seq, std::int64_t next_attempt_at, const std::string& error,
                 bool outcome_unknown) {
  auto up_cached = rep.cached(
      "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, "
      "outcome_unknown = ?4 WHERE seq = ?1");
  SQLite::Statement& up = *up_cached;
  up.bind(1, seq);
  up.bind(2, next_attempt_at);
  up.bind(3, error);
  up.bind(4, outcome_unknown ? 1 : 0);
  up.exec();
}

void remap_local_id(Replica& rep, const schema::Resource& res, const RecordId& local_id,
                    const RecordId& server_id) {
  auto& db = rep.db();
  Savepoint tx(db);
  const auto exec = [&](const char* sql) {
    SQLite::Statement st(db, sql);
    st.bind(1, res.name);
    bind_id(st, 2, local_id);
    bind_id(st, 3, server_id);
    st.exec();
  };
  // A pass may have listed the new record under its server id before this: that row is upstream's version,
  // which the caller stores again right after; the local row (with its edits still queued) takes its place.
  exec("DELETE FROM record WHERE resource = ?1 AND id = ?3 AND ?2 IS NOT NULL");
  exec("UPDATE record SET id = ?3, body = json_set(body, '$.id', ?3) WHERE resource = ?1 AND id = ?2");
  exec("DELETE FROM pending_record WHERE resource = ?1 AND id = ?3 AND ?2 IS NOT NULL");
  exec("UPDATE pending_record SET id = ?3 WHERE resource = ?1 AND id = ?2");
  exec("UPDATE outbox_touch SET id = ?3 WHERE resource = ?1 AND id = ?2");
  exec("UPDATE local_id SET server_id = ?3 WHERE resource = ?1 AND local_id = ?2");
  {
    // Later entries of the record name it by its server id from now on.
    SQLite::Statement up(db,
                         "UPDATE outbox SET record_id = ?3, path = '/' || resource || '/' || ?4 "
                         "WHERE resource = ?1 AND record_id = ?2 AND path = '/' || resource || '/' || ?5");
    up.bind(1, res.name);
    bind_id(up, 2, local_id);
    bind_id(up, 3, server_id);
    up.bind(4, to_string(server_id));
    up.bind(5, to_string(local_id));
    up.exec();
    SQLite::Statement own(db,
                          "UPDATE outbox SET record_id = ?3, upstream_id = ?3 WHERE resource = ?1 AND "
                          "record_id = ?2");
    own.bind(1, res.name);
    bind_id(own, 2, local_id);
    bind_id(own, 3, server_id);
    own.exec();
  }
  if (!res.lines.empty()) {
    const auto& lines = rep.catalog().at(res.lines);
    SQLite::Statement up(db,
                         "UPDATE record SET parent_id = ?3, body = json_set(body, ?4, ?3) "
                         "WHERE resource = ?1 AND parent_id = ?2 AND parent_id IS NOT NULL");
    up.bind(1, lines.name);
    bind_id(up, 2, local_id);
    bind_id(up, 3, server_id);
    up.bind(4, "$.\"" + lines.parent_key + "\"");
    up.exec();
  }
  if (const auto* n = std::get_if<std::int64_t>(&local_id)) {
    // Entries that waited for this create may go now.
    SQLite::Statement q(db, "SELECT seq, refs FROM outbox WHERE refs IS NOT NULL AND state != 'done'");
    std::vector<std::pair<std::int64_t, std::string>> changed;
    while (q.executeStep()) {
      auto refs = Json::parse(q.getColumn(1).getString(), nullptr, false);
      if (!refs.is_array()) continue;
      Json kept = Json::array();
      for (const auto& v : refs)
        if (!(v.is_number_integer() && v.get<std::int64_t>() == *n)) kept.push_back(v);
      if (kept.size() != refs.size())
        changed.emplace_back(q.getColumn(0).getInt64(), kept.empty() ? "" : kept.dump());
    }
    q.reset();
    for (const auto& [seq, refs] : changed) {
      SQLite::Statement up(db, "UPDATE outbox SET refs = ?2 WHERE seq = ?1");
      up.bind(1, seq);
      if (refs.empty()) {
        up.bind(2);
      } else {
        up.bind(2, refs);
      }
      up.exec();
    }
  }
  tx.release();
}

std::vector<std::pair<std::string, RecordId>> complete_entry(Replica& rep, std::int64_t seq,
                                                             std::int64_t now) {
  Savepoint tx(rep.db());
  set_state(rep, seq, OutboxState::Done, std::nullopt, now);
  auto released = released_records(rep, seq);
  for (const auto& [name, id] : released)
    rep.clear_pending(rep.catalog().at(name), id);
  tx.release();
  return released;
}

std::vector<std::pair<std::string, RecordId>> reject_entry(Replica& rep, std::int64_t seq,
                                                           const std::string& error, std::int64_t now,
                                                           bool heard) {
  Savepoint tx(rep.db());
  set_state(rep, seq, heard ? OutboxState::Refused : OutboxState::Rejected, error, now);
  auto released = released_records(rep, seq);
  for (const auto& [name, id] : released)
    rep.clear_pending(rep.catalog().at(name), id);
  tx.release();
  return released;
}

std::int64_t park_conflict(Replica& rep, std::int64_t seq, const std::string& kind, const Json& base,
                           const Json& local, const Json& remote, const Json& fields, std::int64_t now) {
  auto entry = outbox_entry(rep, seq);
  if (!entry) throw std::invalid_argument("park_conflict: no outbox entry " + std::to_string(seq));
  Savepoint tx(rep.db());
  auto ins_cached = rep.cached(
      "INSERT INTO conflict (outbox_seq, resource, record_id, base, local, remote, fields, "
      "created_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id");
  SQLite::Statement& ins = *ins_cached;
  ins.bind(1, seq);
  ins.bind(2, entry->resource);
  bind_id(ins, 3, entry->record_id);
  ins.bind(4, base.dump());
  ins.bind(5, local.dump());
  ins.bind(6, remote.dump());
  ins.bind(7, fields.dump());
  ins.bind(8, now);
  ins.bind(9, kind);
  if (!ins.executeStep()) throw std::runtime_error("the conflict was not stored");
  const auto id = ins.getColumn(0).getInt64();
  ins.reset();
  auto up_cached = rep.cached("UPDATE outbox SET state = 'conflict', conflict_id = ?2 WHERE seq = ?1");
  SQLite::Statement& up = *up_cached;
  up.bind(1, seq);
  up.bind(2, id);
  up.exec();
  tx.release();
  return id;
}

namespace {

ConflictRow conflict_from(SQLite::Statement& q) {
  ConflictRow c;
  c.id = q.getColumn(0).getInt64();
  c.outbox_seq = q.getColumn(1).getInt64();
  c.resource = q.getColumn(2).getString();
  c.record_id = column_id(q.getColumn(3)).value_or(RecordId{std::int64_t{0}});
  c.kind = q.getColumn(4).getString();
  c.base = parse_optional(q.getColumn(5));
  c.local = parse_optional(q.getColumn(6));
  c.remote = parse_optional(q.getColumn(7));
  c.fields = parse_optional(q.getColumn(8));
  c.created_at = q.getColumn(9).getInt64();
  if (!q.getColumn(10).isNull()) c.resolved_at = q.getColumn(10).getInt64();
  if (!q.getColumn(11).isNull()) c.resolution = q.getColumn(11).getString();
  if (!q.getColumn(12).isNull()) c.resolved_by = q.getColumn(12).getString();
  return c;
}

constexpr const char* kConflictColumns =
    "SELECT id, outbox_seq, resource, record_id, kind, base, local, remote, fields, created_at, resolved_at, "
    "resolution, resolved_by FROM conflict ";

void settle_conflict(Replica& rep, std::int64_t seq, const std::string& resolution, const std::string& user,
                     std::int64_t now) {
  auto up_cached = rep.cached(
      "UPDATE conflict SET resolved_at = ?2, resolution = ?3, resolved_by = ?4 "
      "WHERE outbox_seq = ?1 AND resolved_at IS NULL");
  SQLite::Statement& up = *up_cached;
  up.bind(1, seq);
  up.bind(2, now);
  up.bind(3, resolution);
  up.bind(4, user);
  up.exec();
}

}  // namespace

std::optional<ConflictRow> conflict_row(Replica& rep, std::int64_t id) {
  auto q_cached = rep.cached(std::string(kConflictColumns) + "WHERE id = ?1");
  SQLite::Statement& q = *q_cached;
  q.bind(1, id);
  if (!q.executeStep()) return std::nullopt;
  return conflict_from(q);
}

std::vector<ConflictRow> conflict_rows(Replica& rep, bool include_resolved, std::size_t limit) {
  std::vector<ConflictRow> out;
  auto q_cached = rep.cached(std::string(kConflictColumns) +
                             (include_resolved ? "" : "WHERE resolved_at IS NULL ") + "ORDER BY id LIMIT ?1");
  SQLite::Statement& q = *q_cached;
  q.bind(1, static_cast<std::int64_t>(limit));
  while (q.executeStep())
    out.push_back(conflict_from(q));
  return out;
}

void requeue_entry(Replica& rep, std::int64_t seq, const std::string& op, const std::string& method,
                   const std::string& path, const Json& request, const Json& base,
                   const std::string& resolution, const std::string& user, std::int64_t now) {
  Savepoint tx(rep.db());
  settle_conflict(rep, seq, resolution, user, now);
  auto up_cached = rep.cached(
      "UPDATE outbox SET state = 'queued', op = ?2, method = ?3, path = ?4, request = ?5, "
      "base = ?6, attempts = 0, next_attempt_at = NULL, conflict_id = NULL, "
      "outcome_unknown = 0 WHERE seq = ?1");
  SQLite::Statement& up = *up_cached;
  up.bind(1, seq);
  up.bind(2, op);
  up.bind(3, method);
  up.bind(4, path);
  up.bind(5, request.dump());
  up.bind(6, base.dump());
  up.exec();
  tx.release();
}

std::vector<std::pair<std::string, RecordId>> drop_entry(Replica& rep, std::int64_t seq,
                                                         const std::string& resolution,
                                                         const std::string& user, std::int64_t now) {
  Savepoint tx(rep.db());
  settle_conflict(rep, seq, resolution, user, now);
  set_state(rep, seq, OutboxState::Dropped, std::nullopt, now);
  auto released = released_records(rep, seq);
  for (const auto& [name, id] : released)
    rep.clear_pending(rep.catalog().at(name), id);
  tx.release();
  return released;
}

std::optional<RecordId> server_id_of(Replica& rep, const schema::Resource& res, std::int64_t local_id) {
  auto q_cached = rep.cached("SELECT server_id FROM local_id WHERE resource = ?1 AND local_id = ?2");
  SQLite::Statement& q = *q_cached;
  q.bind(1, res.name);
  q.bind(2, local_id);
  if (!q.executeStep()) return std::nullopt;
  return column_id(q.getColumn(0));
}

}  // namespace knosc::replica
