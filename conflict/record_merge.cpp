#include "conflict/record_merge.hpp"

#include <algorithm>
#include <initializer_list>
#include <map>
#include <utility>

namespace knosc::conflict {
namespace {

using Keys = std::set<std::string>;

const Json* find(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool same(const Json* a, const Json* b) {
  if (!a || !b) return a == b;
  return *a == *b;
}

const Json& empty_object() {
  static const Json empty = Json::object();
  return empty;
}

const Json& empty_array() {
  static const Json empty = Json::array();
  return empty;
}

// Keys, other than `skip`, whose values differ between a and b (absence counts as a value). With `shown`, a
// key is compared only if one of the `shown` records carries it: a key Knosc's record does not show (a
// write-only key such as "Purchase Order Id" in a PO body) can never be confirmed, so it is sent but not
// compared.
Keys changed_keys(const Json& a, const Json& b, const Keys& skip,
                  std::initializer_list<const Json*> shown = {}) {
  Keys out;
  for (const Json* side : {&a, &b}) {
    if (!side->is_object()) continue;
    for (const auto& [k, _] : side->items()) {
      if (skip.count(k) || out.count(k) || same(find(a, k), find(b, k))) continue;
      bool visible = shown.size() == 0;
      for (const Json* s : shown)
        visible = visible || (s && find(*s, k));
      if (visible) out.insert(k);
    }
  }
  return out;
}

bool equal_fields(const Json& a, const Json& b, const Keys& skip,
                  std::initializer_list<const Json*> shown = {}) {
  return changed_keys(a, b, skip, shown).empty();
}

Settlement settle(Policy p) {
  switch (p) {
    case Policy::ServerWins:
      return Settlement::TookRemote;
    case Policy::ClientWins:
      return Settlement::TookLocal;
    case Policy::Merge:
    case Policy::Manual:
      break;
  }
  return Settlement::Person;
}

bool intersects(const Keys& a, const Keys& b) {
  for (const auto& k : a)
    if (b.count(k)) return true;
  return false;
}

FieldConflict whole(const Json* base, const Json* local, const Json* remote) {
  FieldConflict c;
  if ((c.has_base = base != nullptr)) c.base = *base;
  if ((c.has_local = local != nullptr)) c.local = *local;
  if ((c.has_remote = remote != nullptr)) c.remote = *remote;
  return c;
}

// A line's id, or null for a new line (id null or absent).
Json line_id_of(const Json& line, const std::string& id_key) {
  const Json* id = find(line, id_key);
  return id ? *id : Json();
}

// Everything the merge of one record needs, computed once.
class RecordMerger {
 public:
  RecordMerger(const Json& base, const Json& request, const RecordShape& shape)
      : base_(base.is_object() ? base : empty_object()),
        request_(request.is_object() ? request : empty_object()),
        shape_(shape) {
    header_skip_ = shape.ignored;
    header_skip_.insert(shape.id_key);
    if (!shape.lines_key.empty()) header_skip_.insert(shape.lines_key);
    line_skip_ = shape.line_ignored;
    line_skip_.insert(shape.line_id_key);
    has_lines_ = !shape.lines_key.empty();
    request_lines_ = has_lines_ && request_.contains(shape.lines_key) && request_[shape.lines_key].is_array();
    // A partial PUT carrying the line set replaces it; a full PUT always does (a full request without lines
    // is read as leaving them as they are, since sending none would remove them all).
    lines_apply_ = has_lines_ && (shape.full_replacement || request_lines_);
    local_ = local_record();
  }

  RecordPlan update(const std::optional<Json>& remote) {
    if (!remote) return edit_vs_delete();
    const Json& r = remote->is_object() ? *remote : empty_object();
    RecordPlan plan;
    FieldMerge fm = merge_fields(base_, local_, r, header_skip_);
    plan.merged = std::move(fm.merged);
    for (auto& c : fm.conflicts) {
      const Settlement s = settle(header_policy(c.key));
      if (s == Settlement::TookLocal) {
        if (c.has_local) {
          plan.merged[c.key] = c.local;
        } else {
          plan.merged.erase(c.key);
        }
      }
      plan.collisions.push_back({Json(), std::move(c), s});
    }
    add_manual_touched(r, plan);
    if (lines_apply_) plan.merged[shape_.lines_key] = merge_lines(r, plan.collisions);

    for (const auto& c : plan.collisions)
      if (c.settlement == Settlement::Person) {
        plan.decision = Decision::NeedsPerson;
        return plan;
      }
    if (equal_fields(plan.merged, r, header_skip_, {&r, &base_}) &&
        (!lines_apply_ || equal_lines(lines_of(plan.merged), lines_of(r), &lines_of(base_)))) {
      plan.decision = Decision::NothingToSend;
      return plan;
    }
    if (untouched_upstream(r)) {
      plan.decision = Decision::Send;
      plan.body = request_;
    } else {
      plan.decision = Decision::SendMerged;
      plan.body = merged_body(plan.merged, r);
    }
    return plan;
  }

  RecordPlan remove(const std::optional<Json>& remote) {
    RecordPlan plan;
    if (!remote) return plan;  // already gone: the delete's outcome holds
    const Json& r = remote->is_object() ? *remote : empty_object();
    Keys changed = changed_keys(base_, r, header_skip_);
    Keys line_changed;
    // A base without its line set (not fetched yet) says nothing about the lines.
    if (has_lines_ && base_.contains(shape_.lines_key))
      line_changed = changed_line_keys(lines_of(base_), lines_of(r));
    if (changed.empty() && line_changed.empty()) {
      plan.decision = Decision::Send;
      return plan;
    }
    Policy p = shape_.policy;
    if (intersects(changed, shape_.manual_fields) || intersects(line_changed, shape_.line_manual_fields))
      p = Policy::Manual;
    const Settlement s = settle(p);
    plan.collisions.push_back({Json(), whole(&base_, nullptr, &r), s});
    switch (s) {
      case Settlement::TookLocal:
        plan.decision = Decision::Send;
        break;
      case Settlement::TookRemote:
        plan.decision = Decision::NothingToSend;
        plan.merged = r;
        break;
      case Settlement::Person:
        plan.decision = Decision::DeleteVsEdit;
        plan.merged = r;
        break;
    }
    return plan;
  }

 private:
  Policy header_policy(const std::string& key) const {
    return shape_.manual_fields.count(key) ? Policy::Manual : shape_.policy;
  }
  Policy line_policy(const std::string& key) const {
    return shape_.line_manual_fields.count(key) ? Policy::Manual : shape_.line_policy.value_or(shape_.policy);
  }

  const Json& lines_of(const Json& record) const {
    const Json* lines = find(record, shape_.lines_key);
    return lines && lines->is_array() ? *lines : empty_array();
  }

  // The record as the local edit leaves it, header only (lines are merged one by one).
  Json local_record() const {
    Json out = Json::object();
    if (shape_.full_replacement) {
      for (const auto& [k, v] : request_.items())
        if (!has_lines_ || k != shape_.lines_key) out[k] = v;
      // Knosc clears what a full PUT leaves out.
      for (const auto& [k, _] : base_.items())
        if (!header_skip_.count(k) && !out.contains(k)) out[k] = nullptr;
    } else {
      for (const auto& [k, v] : base_.items())
        if (!has_lines_ || k != shape_.lines_key) out[k] = v;
      for (const auto& [k, v] : request_.items())
        if (!has_lines_ || k != shape_.lines_key) out[k] = v;
    }
    return out;
  }

  // A line as a line-set replacement leaves it: Knosc clears the keys of an existing line the request omits.
  Json local_line(const Json* base_line, const Json& line) const {
    Json out = line.is_object() ? line : empty_object();
    if (base_line)
      for (const auto& [k, _] : base_line->items())
        if (!line_skip_.count(k) && !out.contains(k)) out[k] = nullptr;
    return out;
  }

  // The local line set: the request's when it carries one, else base's unchanged.
  const Json& local_lines() const { return request_lines_ ? request_[shape_.lines_key] : lines_of(base_); }

  // Under Manual, a field the partial request sent unchanged is still the request's statement of its value:
  // a change upstream since base goes to a person instead of being kept silently.
  void add_manual_touched(const Json& remote, RecordPlan& plan) const {
    if (shape_.full_replacement) return;  // a full request sends every field; "touched" there means changed
    for (const auto& [k, v] : request_.items()) {
      if (header_skip_.count(k) || header_policy(k) != Policy::Manual) continue;
      const Json* b = find(base_, k);
      const Json* r = find(remote, k);
      if (!same(b, &v) || same(b, r)) continue;  // changed locally (merge_fields' case) or not upstream
      plan.collisions.push_back({Json(), whole(b, &v, r), Settlement::Person});
      plan.collisions.back().field.key = k;
    }
  }

  Json merge_lines(const Json& remote, std::vector<Collision>& collisions) const {
    std::map<Json, const Json*> base_by_id, local_by_id, remote_by_id;
    for (const auto& ln : lines_of(base_)) {
      Json id = line_id_of(ln, shape_.line_id_key);
      if (!id.is_null()) base_by_id.emplace(std::move(id), &ln);
    }
    std::vector<const Json*> local_new, local_named;
    for (const auto& ln : local_lines()) {
      Json id = line_id_of(ln, shape_.line_id_key);
      if (id.is_null()) {
        local_new.push_back(&ln);
      } else if (local_by_id.emplace(id, &ln).second) {
        // The loopback refuses a request naming a line twice, so only the first can reach the outbox.
        local_named.push_back(&ln);
      }
    }
    for (const auto& ln : lines_of(remote)) {
      Json id = line_id_of(ln, shape_.line_id_key);
      if (!id.is_null()) remote_by_id.emplace(std::move(id), &ln);
    }
    auto lookup = [](const std::map<Json, const Json*>& m, const Json& id) -> const Json* {
      auto it = m.find(id);
      return it == m.end() ? nullptr : it->second;
    };

    Json out = Json::array();
    std::vector<const Json*> added_upstream;  // remote lines base did not have and the request does not name
    for (const auto& r : lines_of(remote)) {
      const Json id = line_id_of(r, shape_.line_id_key);
      const Json* b = lookup(base_by_id, id);
      const Json* l = lookup(local_by_id, id);
      if (l) {
        const Json local = local_line(b, *l);
        FieldMerge fm = merge_fields(b ? *b : empty_object(), local, r, line_skip_);
        for (auto& c : fm.conflicts) {
          const Settlement s = settle(line_policy(c.key));
          if (s == Settlement::TookLocal) {
            if (c.has_local) {
              fm.merged[c.key] = c.local;
            } else {
              fm.merged.erase(c.key);
            }
          }
          collisions.push_back({id, std::move(c), s});
        }
        out.push_back(std::move(fm.merged));
      } else if (b) {
        // Removed by the local edit. Dropped, unless Knosc changed it since base: then the removal would lose
        // that change, which is the line-level form of delete-vs-edit.
        const Keys changed = changed_keys(*b, r, line_skip_);
        if (changed.empty()) continue;
        const Policy p = intersects(changed, shape_.line_manual_fields)
                             ? Policy::Manual
                             : shape_.line_policy.value_or(shape_.policy);
        const Settlement s = settle(p);
        collisions.push_back({id, whole(b, nullptr, &r), s});
        if (s != Settlement::TookLocal) out.push_back(r);
      } else {
        out.push_back(r);  // added upstream: a full replacement must carry it, or Knosc would remove it
        added_upstream.push_back(&r);
      }
    }
    for (const Json* l : local_named) {
      const Json id = line_id_of(*l, shape_.line_id_key);
      if (lookup(remote_by_id, id)) continue;
      const Json* b = lookup(base_by_id, id);
      const Json local = local_line(b, *l);
      if (b) {
        // Deleted upstream. An untouched line stays deleted (never resurrected); a line the local edit
        // changed is the line-level form of edit-vs-delete. A PUT cannot bring a line id back, so only
        // server-wins settles it without a person (the local change is dropped).
        const Keys changed = changed_keys(*b, local, line_skip_, {b});
        if (changed.empty()) continue;
        Settlement s = Settlement::Person;
        if (shape_.line_policy.value_or(shape_.policy) == Policy::ServerWins &&
            !intersects(changed, shape_.line_manual_fields))
          s = Settlement::TookRemote;
        collisions.push_back({id, whole(b, &local, nullptr), s});
      } else {
        // A line id neither base nor Knosc knows (e.g. a local line id not yet remapped): sending it would be
        // refused, and sending it as new could duplicate a line an earlier push added.
        collisions.push_back({id, whole(nullptr, &local, nullptr), Settlement::Person});
      }
    }
    std::vector<bool> claimed(added_upstream.size(), false);
    for (const Json* l : local_new) {
      // A new line identical (in every key the request gave it) to a line added upstream is that line: the
      // usual case is an earlier send of this same edit that landed but whose answer was lost.
      bool found = false;
      for (std::size_t i = 0; i < added_upstream.size() && !found; ++i) {
        if (claimed[i] || !new_line_matches(*l, *added_upstream[i])) continue;
        claimed[i] = found = true;
      }
      if (!found) out.push_back(*l);
    }
    return out;
  }

  bool new_line_matches(const Json& local, const Json& remote) const {
    if (!local.is_object()) return false;
    for (const auto& [k, v] : local.items()) {
      if (line_skip_.count(k)) continue;
      const Json* r = find(remote, k);
      if (!(r ? *r == v : v.is_null())) return false;
    }
    return true;
  }

  // Keys that differ in some line between two line sets (a line on one side only counts with all its keys).
  // With `shown_by_a`, a line on both sides is compared only on the keys a's line shows.
  Keys changed_line_keys(const Json& a, const Json& b, bool shown_by_a = false) const {
    std::map<Json, const Json*> a_by_id;
    for (const auto& ln : a)
      a_by_id.emplace(line_id_of(ln, shape_.line_id_key), &ln);
    Keys out;
    std::set<Json> seen;
    for (const auto& ln : b) {
      const Json id = line_id_of(ln, shape_.line_id_key);
      auto it = id.is_null() ? a_by_id.end() : a_by_id.find(id);
      Keys k;
      if (it == a_by_id.end()) {
        k = changed_keys(empty_object(), ln, line_skip_);
      } else if (shown_by_a) {
        k = changed_keys(*it->second, ln, line_skip_, {it->second});
      } else {
        k = changed_keys(*it->second, ln, line_skip_);
      }
      out.insert(k.begin(), k.end());
      seen.insert(id);
    }
    for (const auto& [id, ln] : a_by_id) {
      if (seen.count(id) && !id.is_null()) continue;
      const Keys k = changed_keys(*ln, empty_object(), line_skip_);
      out.insert(k.begin(), k.end());
    }
    return out;
  }

  // Same line ids with the same values. With `base`, a line key neither b's line nor base's line of the same
  // id shows is not compared (see changed_keys).
  bool equal_lines(const Json& a, const Json& b, const Json* base = nullptr) const {
    if (a.size() != b.size()) return false;
    std::map<Json, const Json*> a_by_id, base_by_id;
    for (const auto& ln : a) {
      Json id = line_id_of(ln, shape_.line_id_key);
      if (id.is_null() || !a_by_id.emplace(std::move(id), &ln).second) return false;
    }
    if (base)
      for (const auto& ln : *base)
        base_by_id.emplace(line_id_of(ln, shape_.line_id_key), &ln);
    for (const auto& ln : b) {
      const Json id = line_id_of(ln, shape_.line_id_key);
      auto it = a_by_id.find(id);
      if (it == a_by_id.end()) return false;
      if (!base) {
        if (!equal_fields(*it->second, ln, line_skip_)) return false;
        continue;
      }
      auto bt = base_by_id.find(id);
      if (!equal_fields(*it->second, ln, line_skip_, {&ln, bt == base_by_id.end() ? nullptr : bt->second}))
        return false;
    }
    return true;
  }

  // Knosc changed nothing the request touches since base, so the request can go unchanged.
  bool untouched_upstream(const Json& remote) const {
    if (lines_apply_ && (!request_lines_ || !equal_lines(lines_of(base_), lines_of(remote)))) return false;
    if (shape_.full_replacement) return equal_fields(base_, remote, header_skip_);
    for (const auto& [k, _] : request_.items())
      if (!header_skip_.count(k) && !same(find(base_, k), find(remote, k))) return false;
    return true;
  }

  Json strip_line(const Json& line) const {
    if (!line.is_object()) return line;
    Json out = Json::object();
    for (const auto& [k, v] : line.items())
      if (k == shape_.line_id_key || !shape_.line_ignored.count(k)) out[k] = v;
    return out;
  }

  Json merged_lines_body(const Json& merged) const {
    Json out = Json::array();
    for (const auto& ln : lines_of(merged))
      out.push_back(strip_line(ln));
    return out;
  }

  Json merged_body(const Json& merged, const Json& remote) const {
    Json body = Json::object();
    if (shape_.full_replacement) {
      for (const auto& [k, v] : merged.items()) {
        if (has_lines_ && k == shape_.lines_key) continue;
        if (!header_skip_.count(k)) body[k] = v;
      }
      if (lines_apply_) body[shape_.lines_key] = merged_lines_body(merged);
      return body;
    }
    // Partial: only the keys that change Knosc's record, so nothing Knosc changed since base is written back.
    for (const auto& [k, _] : request_.items()) {
      if (header_skip_.count(k)) continue;
      const Json* m = find(merged, k);
      if (m && !same(m, find(remote, k))) body[k] = *m;
    }
    if (lines_apply_ && !equal_lines(lines_of(merged), lines_of(remote)))
      body[shape_.lines_key] = merged_lines_body(merged);
    return body;
  }

  // The local edit against a record Knosc no longer has.
  RecordPlan edit_vs_delete() const {
    RecordPlan plan;
    // Only keys base shows: with Knosc's record gone, nothing else can be compared.
    Keys changed = changed_keys(base_, local_, header_skip_, {&base_});
    Keys line_changed;
    Json local = local_;
    if (lines_apply_) {
      Json lines = Json::array();
      std::map<Json, const Json*> base_by_id;
      for (const auto& ln : lines_of(base_))
        base_by_id.emplace(line_id_of(ln, shape_.line_id_key), &ln);
      for (const auto& ln : local_lines()) {
        const Json id = line_id_of(ln, shape_.line_id_key);
        auto it = id.is_null() ? base_by_id.end() : base_by_id.find(id);
        lines.push_back(local_line(it == base_by_id.end() ? nullptr : it->second, ln));
      }
      line_changed = changed_line_keys(lines_of(base_), lines, true);
      local[shape_.lines_key] = std::move(lines);
    }
    if (changed.empty() && line_changed.empty()) return plan;  // nothing of the edit is lost
    Settlement s = Settlement::Person;
    if (shape_.policy == Policy::ServerWins && !intersects(changed, shape_.manual_fields) &&
        !intersects(line_changed, shape_.line_manual_fields))
      s = Settlement::TookRemote;
    plan.collisions.push_back({Json(), whole(&base_, &local, nullptr), s});
    plan.decision = s == Settlement::Person ? Decision::EditVsDelete : Decision::NothingToSend;
    return plan;
  }

  const Json& base_;
  const Json& request_;
  const RecordShape& shape_;
  Keys header_skip_, line_skip_;
  bool has_lines_ = false, request_lines_ = false, lines_apply_ = false;
  Json local_;
};

}  // namespace

bool RecordPlan::needs_person() const {
  for (const auto& c : collisions)
    if (c.settlement == Settlement::Person) return true;
  return false;
}

RecordPlan plan_update(const Json& base, const Json& request, const std::optional<Json>& remote,
                       const RecordShape& shape) {
  return RecordMerger(base, request, shape).update(remote);
}

RecordPlan plan_delete(const Json& base, const std::optional<Json>& remote, const RecordShape& shape) {
  return RecordMerger(base, Json::object(), shape).remove(remote);
}

EchoCheck discount_late_echoes(const Json& base, const Json& remote, const std::vector<Json>& late,
                               const RecordShape& shape) {
  EchoCheck out{remote, {}};
  if (!remote.is_object() || !base.is_object() || late.empty()) return out;
  for (const auto& item : remote.items()) {
    // Named copies rather than a structured binding: the lambda below uses them (clang before 16 cannot
    // capture a binding).
    const std::string& key = item.key();
    const Json& value = item.value();
    if (key == shape.id_key || key == shape.lines_key || shape.ignored.count(key)) continue;
    const auto was = base.find(key);
    if (was == base.end() || *was == value) continue;  // unchanged, or nothing to put back
    const bool ours = std::any_of(late.begin(), late.end(), [&](const Json& body) {
      const auto sent = body.is_object() ? body.find(key) : body.end();
      return body.is_object() && sent != body.end() && *sent == value;
    });
    if (!ours) continue;
    out.remote[key] = *was;
    out.repaired.push_back(key);
  }
  return out;
}

std::string_view to_string(Policy p) {
  switch (p) {
    case Policy::Merge:
      return "merge";
    case Policy::ServerWins:
      return "server-wins";
    case Policy::ClientWins:
      return "client-wins";
    case Policy::Manual:
      return "manual";
  }
  return "?";
}

std::string_view to_string(Decision d) {
  switch (d) {
    case Decision::NothingToSend:
      return "nothing-to-send";
    case Decision::Send:
      return "send";
    case Decision::SendMerged:
      return "send-merged";
    case Decision::NeedsPerson:
      return "needs-person";
    case Decision::EditVsDelete:
      return "edit-vs-delete";
    case Decision::DeleteVsEdit:
      return "delete-vs-edit";
  }
  return "?";
}

std::string_view to_string(Settlement s) {
  switch (s) {
    case Settlement::Person:
      return "person";
    case Settlement::TookRemote:
      return "took-remote";
    case Settlement::TookLocal:
      return "took-local";
  }
  return "?";
}

}  // namespace knosc::conflict
