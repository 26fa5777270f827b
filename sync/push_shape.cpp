#include "sync/push_shape.hpp"

namespace knosc::sync {
namespace {

// Keys of `keys` that no field, reference or line set of the rules lets a write set.
template <typename Rules>
std::set<std::string> computed_keys(const std::vector<std::string>& keys, const Rules& rules,
                                    const std::string& lines_key) {
  std::set<std::string> writable = {"id"};
  for (const auto& f : rules.fields)
    writable.insert(f.key);
  for (const auto& r : rules.refs)
    writable.insert(r.field);
  if (!lines_key.empty()) writable.insert(lines_key);
  std::set<std::string> out;
  for (const auto& k : keys)
    if (!writable.count(k)) out.insert(k);
  for (const auto& r : rules.refs) {
    if (!r.id_field.empty()) out.insert(r.id_field);
    for (const auto& [own, theirs] : r.copy)
      out.insert(own);
  }
  return out;
}

}  // namespace

conflict::Policy to_conflict_policy(schema::ConflictPolicy p) {
  switch (p) {
    case schema::ConflictPolicy::Merge:
      return conflict::Policy::Merge;
    case schema::ConflictPolicy::ServerWins:
      return conflict::Policy::ServerWins;
    case schema::ConflictPolicy::ClientWins:
      return conflict::Policy::ClientWins;
    case schema::ConflictPolicy::Manual:
      return conflict::Policy::Manual;
  }
  return conflict::Policy::Manual;
}

conflict::RecordShape push_shape(const schema::Catalog& catalog, const schema::Resource& res) {
  conflict::RecordShape shape;
  shape.policy = to_conflict_policy(res.conflict_policy);
  shape.manual_fields.insert(res.manual_fields.begin(), res.manual_fields.end());
  for (const auto& d : res.derived)
    shape.ignored.insert(d.key);
  const auto* w = res.write.get();
  if (w && w->lines) shape.lines_key = w->lines->key;
  for (const auto& n : res.nested)
    if (n != shape.lines_key) shape.ignored.insert(n);
  if (!w) return shape;
  shape.full_replacement = w->update == schema::UpdateMode::Full;
  auto computed = computed_keys(w->keys, *w, shape.lines_key);
  shape.ignored.insert(computed.begin(), computed.end());
  for (const auto* stamp : {&w->stamps.created_at, &w->stamps.updated_at, &w->stamps.created_by})
    if (!stamp->empty()) shape.ignored.insert(*stamp);
  for (const auto& g : w->groups)
    shape.ignored.insert(g.key);
  if (const auto& lines = w->lines) {
    for (const auto& a : lines->aggregates)
      shape.ignored.insert(a.key);
    auto line_computed = computed_keys(lines->keys, *lines, "");
    shape.line_ignored.insert(line_computed.begin(), line_computed.end());
    for (const auto& [own, header] : lines->copy)
      shape.line_ignored.insert(own);
    if (!lines->parent_field.empty()) shape.line_ignored.insert(lines->parent_field);
    if (!lines->id_alias.empty()) shape.line_ignored.insert(lines->id_alias);
    // Lines of a flat line list follow that list's policy (order lines: quantities and dates go to a person);
    // nested line sets (MOs, forecasts, BOMs) are part of their header, whose manual_fields name line keys
    // too.
    if (const auto* line_res = catalog.find(lines->resource)) {
      shape.line_policy = to_conflict_policy(line_res->conflict_policy);
      shape.line_manual_fields.insert(line_res->manual_fields.begin(), line_res->manual_fields.end());
    } else {
      shape.line_manual_fields = shape.manual_fields;
    }
  }
  return shape;
}

}  // namespace knosc::sync
