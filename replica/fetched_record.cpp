// Storing a record fetched by get-one (after a change the loopback forwarded to Knosc), so that the tool's
// next read shows Knosc's answer at once instead of after the next pass.

#include <SQLiteCpp/Statement.h>

#include <set>

#include "replica/content_hash.hpp"
#include "replica/id_sql.hpp"
#include "replica/key_slots.hpp"
#include "replica/replica.hpp"
#include "replica/savepoint.hpp"

namespace knosc::replica {

void Replica::store_fetched_record(const schema::Resource& res, const Json& record, std::int64_t now) {
  auto idv = record.find("id");
  if (idv == record.end()) throw std::invalid_argument("the record has no id");
  auto id = record_id_from_json(*idv);
  if (!id) throw std::invalid_argument("the record's id is neither an integer nor a string");

  // Split the get-one record the way passes store it: the list row, the nested parts, and (for headers with a
  // flat line list) the lines as rows of their own. Derived parts are recomputed on read and not stored.
  std::set<std::string> set_aside(res.nested.begin(), res.nested.end());
  for (const auto& d : res.derived)
    set_aside.insert(d.key);
  if (!res.lines.empty()) set_aside.insert("details");
  Json row = Json::object();
  Json nested = Json::object();
  for (const auto& [k, v] : record.items()) {
    if (!set_aside.count(k)) {
      row[k] = v;
    } else if (std::find(res.nested.begin(), res.nested.end(), k) != res.nested.end()) {
      nested[k] = v;
    }
  }

  Savepoint tx(db_);
  std::vector<std::pair<const schema::Resource*, Json>> rows = {{&res, row}};
  if (!res.lines.empty()) {
    const auto& lines = catalog_.at(res.lines);
    SQLite::Statement rm(db_, "DELETE FROM record WHERE resource = ?1 AND parent_id = ?2");
    rm.bind(1, lines.name);
    bind_id(rm, 2, *id);
    rm.exec();
    if (auto d = record.find("details"); d != record.end() && d->is_array())
      for (const auto& line : *d)
        rows.emplace_back(&lines, line);
  }
  for (const auto& [r, body] : rows)
    write_row(*r, body, now);
  if (res.has_nested()) store_nested(res, *id, nested, now);
  tx.release();
}

void Replica::remove_record(const schema::Resource& res, const RecordId& id) {
  resolve_candidate(res, id, true);  // removes the row and its flat lines
  Savepoint tx(db_);
  // Knosc deletes a customer's ship-tos and a supplier's ship-froms with it: the same relation the get-one
  // derives its lists from.
  for (const auto& d : res.derived) {
    if (d.own_key != "id") continue;
    SQLite::Statement rm(db_, "DELETE FROM record WHERE resource = ?1 AND json_extract(body, ?2) = ?3");
    rm.bind(1, d.from);
    rm.bind(2, "$.\"" + d.match_key + "\"");
    bind_id(rm, 3, id);
    rm.exec();
  }
  tx.release();
}

}  // namespace knosc::replica

namespace knosc::replica {

void Replica::write_row(const schema::Resource& res, const Json& row, std::int64_t now) {
  auto idv = row.find("id");
  if (idv == row.end()) return;
  auto id = record_id_from_json(*idv);
  if (!id) return;
  std::optional<RecordId> parent;
  if (!res.parent_key.empty())
    if (auto p = row.find(res.parent_key); p != row.end()) parent = record_id_from_json(*p);
  const auto hash = static_cast<std::int64_t>(content_hash(row));
  // The key slots (?7..?14) are written with the body, as a pass writes them, so the lists' indexes see the
  // new values; a new row gets its resource's layout (?15, ?16), which the partial indexes read.
  SQLite::Statement up(
      db_,
      "INSERT INTO record (resource, id, parent_id, body, body_hash, updated_at, k1, k2, k3, k4, k5, k6, k7, "
      "k8, slot_count, nested_parts) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) "
      "ON CONFLICT (resource, id) DO UPDATE SET parent_id = ?3, body = ?4, body_hash = ?5, updated_at = ?6, "
      "k1 = ?7, k2 = ?8, k3 = ?9, k4 = ?10, k5 = ?11, k6 = ?12, k7 = ?13, k8 = ?14 "
      "WHERE body_hash IS NOT ?5");
  up.bind(1, res.name);
  bind_id(up, 2, *id);
  bind_optional_id(up, 3, parent);
  up.bind(4, row.dump());
  up.bind(5, hash);
  up.bind(6, now);
  SlotText slot_text;
  const SlotFiller slots(res);
  slots.bind(up, 7, row, slot_text);
  up.bind(15, slots.layout().slot_count);
  up.bind(16, static_cast<int>(slots.layout().nested_parts));
  up.exec();
}

}  // namespace knosc::replica
