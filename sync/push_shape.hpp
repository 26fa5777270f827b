#pragma once
// The conflict module's view of a catalog resource (conflict::RecordShape): which keys a push compares and
// sends, how the line set is keyed, the conflict policy and the fields that always go to a person.

#include "conflict/record_merge.hpp"
#include "schema/catalog.hpp"

namespace knosc::sync {

// Only keys a write may set are compared: the rest (copied names and ids of referenced records, header
// aggregates, stamps, derived and nested parts other than the lines) are Knosc's to compute and never
// collide.
conflict::RecordShape push_shape(const schema::Catalog& catalog, const schema::Resource& res);

conflict::Policy to_conflict_policy(schema::ConflictPolicy p);

}  // namespace knosc::sync
