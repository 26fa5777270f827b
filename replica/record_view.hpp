#pragma once
// A record as Knosc's get-one shows it, composed from the replica: the list row, then the parts only get-one
// carries (nested parts fetched per record, lines from a flat line list, or lists derived from related master
// data). The loopback serves it, local edits start from it, and the outbox keeps it as an edit's base.

#include <optional>

#include "replica/replica.hpp"

namespace knosc::replica {

// Lines of a header come in id order, with lines created locally (negative ids, not yet in Knosc) after
// Knosc's own, in the order they were made: that is where Knosc will put them once they are pushed.
std::optional<Json> compose_record(Replica& rep, const schema::Resource& res, const RecordId& id);

}  // namespace knosc::replica
