#include "replica/record_lookup.hpp"

#include <SQLiteCpp/Statement.h>

#include <algorithm>
#include <limits>

#include "replica/id_sql.hpp"
#include "replica/key_slots.hpp"
#include "replica/list_query.hpp"
#include "replica/record_view.hpp"

namespace knosc::replica {
namespace {

// Binds a scalar the way json_extract and the key slots hold it (true/false as 1/0); false when the value
// cannot equal any stored scalar (null, objects, arrays), so there is nothing to look for.
bool bind_scalar(SQLite::Statement& st, int index, const Json& v) {
  if (v.is_boolean()) {
    st.bind(index, v.get<bool>() ? 1 : 0);
  } else if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      st.bind(index, static_cast<double>(u));
    } else {
      st.bind(index, static_cast<std::int64_t>(u));
    }
  } else if (v.is_number_integer()) {
    st.bind(index, v.get<std::int64_t>());
  } else if (v.is_number_float()) {
    st.bind(index, v.get<double>());
  } else if (v.is_string()) {
    st.bind(index, v.get<std::string>());
  } else {
    return false;
  }
  return true;
}

// SQL's = lets 1 match 1.0 and true match 1; Knosc compares decoded JSON values, where only the numbers
// mix. The rows SQLite found are checked again here.
bool same(const Json& a, const Json& b) {
  if (a.is_boolean() != b.is_boolean()) return false;
  return a == b;
}

std::string json_path(const std::string& key) {
  return "$.\"" + key + "\"";
}

}  // namespace

std::optional<Json> ReplicaLookup::get(const schema::Resource& res, const RecordId& id) {
  return compose_record(rep_, res, id);
}

std::vector<Json> ReplicaLookup::find(const schema::Resource& res, const std::string& key, const Json& value,
                                      std::size_t limit) {
  std::vector<Json> out;
  if (limit == 0) return out;
  const auto slot = slot_of(res, key);
  // A key with '"' cannot be named in a JSON path; such keys (none in the catalog today) are compared here.
  const bool quoted = key.find('"') != std::string::npos;
  // The resource's terms as literals: a slot's index is partial, and SQLite reads it only for a query that
  // names its condition (see resource_terms).
  std::string sql = "SELECT body FROM record WHERE " + resource_terms(res);
  if (slot) {
    sql += " AND " + slot_column(*slot) + " = ?2";
  } else if (!quoted) {
    sql += " AND json_extract(body, ?3) = ?2";
  }
  sql += " ORDER BY id";
  auto q_cached = rep_.cached(sql);
  SQLite::Statement& q = *q_cached;
  if (slot || !quoted) {
    if (!bind_scalar(q, 2, value)) return out;
    if (!slot) q.bind(3, json_path(key));
  }
  while (out.size() < limit && q.executeStep()) {
    Json row = Json::parse(q.getColumn(0).getString());
    auto it = row.find(key);
    if (it != row.end() && same(*it, value)) out.push_back(std::move(row));
  }
  return out;
}

std::vector<Json> ReplicaLookup::find_in_lines(const schema::Resource& res, const std::string& lines_key,
                                               const std::string& key, const Json& value, std::size_t limit) {
  std::vector<Json> out;
  if (limit == 0) return out;
  std::vector<RecordId> ids;
  if (!res.lines.empty() && lines_key == "details") {
    // A flat line list: the lines are rows of their own that name their header.
    const auto& lines = rep_.catalog().at(res.lines);
    for (const auto& line : find(lines, key, value, std::numeric_limits<std::size_t>::max())) {
      auto p = line.find(lines.parent_key);
      if (p == line.end()) continue;
      auto pid = record_id_from_json(*p);
      if (pid && std::find(ids.begin(), ids.end(), *pid) == ids.end()) ids.push_back(*pid);
    }
    std::sort(ids.begin(), ids.end());
  } else {
    auto q_cached = rep_.cached(
        "SELECT id FROM record WHERE resource = ?1 AND nested IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM json_each(record.nested, ?2) AS j "
        " WHERE j.type = 'object' AND json_extract(j.value, ?3) = ?4) ORDER BY id");
    SQLite::Statement& q = *q_cached;
    q.bind(1, res.name);
    q.bind(2, json_path(lines_key));
    q.bind(3, json_path(key));
    if (!bind_scalar(q, 4, value)) return out;
    while (q.executeStep())
      if (auto id = column_id(q.getColumn(0))) ids.push_back(std::move(*id));
  }
  for (const auto& id : ids) {
    if (out.size() >= limit) break;
    auto rec = compose_record(rep_, res, id);
    if (!rec) continue;
    auto lines = rec->find(lines_key);
    if (lines == rec->end() || !lines->is_array()) continue;
    const bool hit = std::any_of(lines->begin(), lines->end(), [&](const Json& l) {
      if (!l.is_object()) return false;
      auto v = l.find(key);
      return v != l.end() && same(*v, value);
    });
    if (hit) out.push_back(std::move(*rec));
  }
  return out;
}

}  // namespace knosc::replica
