#include "replica/id_sql.hpp"

namespace knosc::replica {

void bind_id(SQLite::Statement& st, int index, const RecordId& id) {
  if (const auto* i = std::get_if<std::int64_t>(&id)) {
    st.bind(index, *i);
  } else {
    st.bind(index, std::get<std::string>(id));
  }
}

void bind_optional_id(SQLite::Statement& st, int index, const std::optional<RecordId>& id) {
  if (id) {
    bind_id(st, index, *id);
  } else {
    st.bind(index);
  }
}

std::optional<RecordId> column_id(const SQLite::Column& c) {
  if (c.isInteger()) return RecordId{static_cast<std::int64_t>(c.getInt64())};
  if (c.isText()) return RecordId{c.getString()};
  return std::nullopt;
}

}  // namespace knosc::replica
