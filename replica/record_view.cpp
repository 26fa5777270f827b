#include "replica/record_view.hpp"

#include <SQLiteCpp/Statement.h>

#include <algorithm>

#include "replica/id_sql.hpp"

namespace knosc::replica {

// The record as Knosc's get-one shows it: the list row, then the parts only get-one carries (nested parts
// fetched per record, lines from a flat line list, or lists derived from related master data).
std::optional<Json> compose_record(Replica& rep, const schema::Resource& res, const RecordId& id) {
  const auto& catalog = rep.catalog();
  auto q_cached = rep.cached("SELECT body, nested FROM record WHERE resource = ?1 AND id = ?2");
  SQLite::Statement& q = *q_cached;
  q.bind(1, res.name);
  bind_id(q, 2, id);
  if (!q.executeStep()) return std::nullopt;
  Json rec = Json::parse(q.getColumn(0).getString());
  if (!q.getColumn(1).isNull()) {
    Json nested = Json::parse(q.getColumn(1).getString());
    for (auto& [k, v] : nested.items())
      rec[k] = v;
  }
  if (!res.lines.empty()) {
    const auto& lines = catalog.at(res.lines);
    // "parent_id IS NOT NULL" lets SQLite use the partial (resource, parent_id) index; lines are put in id
    // order here rather than by SQL, which would otherwise walk every line of the resource in id order.
    auto l_cached = rep.cached(
        "SELECT id, body FROM record WHERE resource = ?1 AND parent_id = ?2 AND parent_id IS NOT NULL");
    SQLite::Statement& l = *l_cached;
    l.bind(1, lines.name);
    bind_id(l, 2, id);
    std::vector<std::pair<std::int64_t, std::string>> found;
    while (l.executeStep())
      found.emplace_back(l.getColumn(0).getInt64(), l.getColumn(1).getString());
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
      // Knosc's lines first in id order, then local ones (-1, -2, ...) in the order they were made.
      if ((a.first < 0) != (b.first < 0)) return a.first > 0;
      return a.first < 0 ? a.first > b.first : a.first < b.first;
    });
    Json details = Json::array();
    for (const auto& [line_id, text] : found)
      details.push_back(Json::parse(text));
    rec["details"] = std::move(details);
  }
  for (const auto& derived : res.derived) {
    auto l_cached =
        rep.cached("SELECT body FROM record WHERE resource = ?1 AND json_extract(body, ?2) = ?3 ORDER BY id");
    SQLite::Statement& l = *l_cached;
    l.bind(1, derived.from);
    l.bind(2, "$.\"" + derived.match_key + "\"");
    const auto& own = rec.contains(derived.own_key) ? rec[derived.own_key] : Json();
    if (own.is_number_integer()) {
      l.bind(3, own.get<std::int64_t>());
    } else if (own.is_string()) {
      l.bind(3, own.get<std::string>());
    } else {
      l.bind(3);
    }
    Json items = Json::array();
    while (l.executeStep()) {
      Json row = Json::parse(l.getColumn(0).getString());
      Json item = Json::object();
      for (const auto& f : derived.fields)
        item[f] = row.contains(f) ? row[f] : Json();
      items.push_back(std::move(item));
    }
    rec[derived.key] = std::move(items);
  }
  return rec;
}

}  // namespace knosc::replica
