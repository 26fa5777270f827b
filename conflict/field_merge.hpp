#pragma once
// Three-way merge of one record's fields: the base (the record as it was when a local edit was made), the
// local version and the remote (current upstream) version. Pure: no I/O, no clock, no globals.

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace knosc::conflict {

using Json = nlohmann::ordered_json;

// One field both sides changed to different values.
struct FieldConflict {
  std::string key;
  // Each side's value; `has_*` is false when the key is absent on that side (absent and null differ).
  Json base, local, remote;
  bool has_base = false, has_local = false, has_remote = false;
};

struct FieldMerge {
  Json merged;  // every non-conflicting change of either side applied; conflicting keys hold the remote value
  std::vector<FieldConflict> conflicts;
  bool local_changed = false;   // local differs from base somewhere
  bool remote_changed = false;  // remote differs from base somewhere
};

// Merges objects key by key: a key changed on one side only takes that side's value; changed on both to the
// same value takes it; changed on both differently is a conflict. Keys in `ignore` (e.g. nested line sets,
// which have their own merge) are taken from remote and never conflict. Key order follows remote, then keys
// only local has.
FieldMerge merge_fields(const Json& base, const Json& local, const Json& remote,
                        const std::set<std::string>& ignore = {});

}  // namespace knosc::conflict
