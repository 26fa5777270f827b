#pragma once
// Record ids in SQLite statements. The `id` columns have no declared type, so SQLite keeps an integer id as
// INTEGER and a ticket id as TEXT, exactly as bound; binding an integer id as text (or the reverse) would
// find nothing.

#include <SQLiteCpp/SQLiteCpp.h>

#include <optional>

#include "replica/record_id.hpp"

namespace knosc::replica {

void bind_id(SQLite::Statement& st, int index, const RecordId& id);
// NULL when there is no id.
void bind_optional_id(SQLite::Statement& st, int index, const std::optional<RecordId>& id);
// The id a column holds; nullopt for NULL (or any other type, which no id column holds).
std::optional<RecordId> column_id(const SQLite::Column& c);

}  // namespace knosc::replica
