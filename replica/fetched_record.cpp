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

  // What Knosc sent, which a crash at worst makes the daemon fetch again: no fsync of its own (the pusher
  // stores one of these after each landed entry). Inside a group commit this changes nothing.
  const RefetchableWrites relaxed(*this);
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

namespace knosc::replica {}  // namespace knosc::replica
