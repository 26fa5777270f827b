#include "replica/key_slots.hpp"

#include <algorithm>
#include <limits>

#include "replica/list_query.hpp"

namespace knosc::replica {
namespace {

// Binds a copy of `value` kept in `buffer` (whose capacity is reused from row to row): SQLiteCpp has no
// bind for text that is not a whole std::string.
void bind_copy(SQLite::Statement& st, int param, std::string_view value, std::string& buffer) {
  buffer.assign(value);
  st.bindNoCopy(param, buffer);
}

// "record_k<slot>_<resource>", a line list's own index of a slot.
std::string own_index_name(const schema::Resource& res, int slot) {
  return slot_index_name(slot) + "_" + res.name;
}

// The conditions of the shared slot indexes and of record_nested_due, which resource_terms repeats word for
// word: SQLite matches a query's terms against a partial index's condition as written.
std::string shared_slot_term(int slot) {
  return "slot_count >= " + std::to_string(slot);
}
constexpr const char* kNestedPartsTerm = "nested_parts = 1";

bool nameable(std::string_view key) {
  // The list queries name keys in SQLite JSON paths ($."key"), which have no escape for '"'; such keys are
  // refused in requests, so a slot for them would never be read.
  return key.find('"') == std::string_view::npos && key.find('\0') == std::string_view::npos;
}

}  // namespace

std::vector<std::string> indexed_keys(const schema::Resource& res) {
  std::vector<std::string> keys;
  const auto add = [&](const std::string& key) {
    if (key == "id" || !nameable(key)) return;
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return;
    if (keys.size() < static_cast<std::size_t>(kKeySlots)) keys.push_back(key);
  };
  add(res.default_sort.key);
  for (const auto& k : res.filterable)
    add(k);
  for (const auto& k : res.sortable)
    add(k);
  return keys;
}

std::optional<int> slot_of(const schema::Resource& res, std::string_view key) {
  const auto keys = indexed_keys(res);
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key) return static_cast<int>(i + 1);
  return std::nullopt;
}

std::string slot_column(int slot) {
  // Appended rather than `"k" + std::to_string(slot)`, which GCC 12 at -O3 mistakes for an overlapping copy
  // (-Wrestrict).
  std::string s = "k";
  s += std::to_string(slot);
  return s;
}

std::string slot_index_name(int slot) {
  std::string s = "record_k";
  s += std::to_string(slot);
  return s;
}

bool has_own_slot_indexes(const schema::Resource& res) {
  return res.is_line_list();
}

std::string slot_index(const schema::Resource& res, int slot) {
  if (!has_own_slot_indexes(res)) return slot_index_name(slot);
  return sql_identifier(own_index_name(res, slot));
}

std::vector<std::pair<std::string, std::string>> partial_indexes(const schema::Catalog& catalog) {
  std::vector<std::pair<std::string, std::string>> out;
  std::array<bool, kKeySlots + 1> shared{};
  bool nested = false;
  for (const auto& res : catalog.resources()) {
    const int used = static_cast<int>(indexed_keys(res).size());
    nested = nested || res.has_nested();
    if (!has_own_slot_indexes(res)) {
      for (int slot = 1; slot <= used; ++slot)
        shared[static_cast<std::size_t>(slot)] = true;
      continue;
    }
    for (int slot = 1; slot <= used; ++slot) {
      const std::string name = own_index_name(res, slot);
      out.emplace_back(name, "CREATE INDEX " + sql_identifier(name) + " ON record (" + slot_column(slot) +
                                 ", id) WHERE resource = " + sql_quote(res.name));
    }
  }
  for (int slot = 1; slot <= kKeySlots; ++slot) {
    if (!shared[static_cast<std::size_t>(slot)]) continue;
    out.emplace_back(slot_index_name(slot), "CREATE INDEX " + slot_index_name(slot) +
                                                " ON record (resource, " + slot_column(slot) +
                                                ", id) WHERE " + shared_slot_term(slot));
  }
  if (nested) {
    out.emplace_back("record_nested_due",
                     std::string("CREATE INDEX record_nested_due ON record (resource, nested_at) WHERE ") +
                         kNestedPartsTerm);
  }
  return out;
}

RowLayout row_layout(const schema::Resource& res) {
  return {has_own_slot_indexes(res) ? 0 : static_cast<int>(indexed_keys(res).size()), res.has_nested()};
}

std::string resource_terms(const schema::Resource& res, std::string_view table) {
  const std::string prefix = table.empty() ? std::string() : std::string(table) + ".";
  std::string out = prefix + "resource = " + sql_quote(res.name);
  const RowLayout layout = row_layout(res);
  for (int slot = 1; slot <= layout.slot_count; ++slot)
    out += " AND " + prefix + shared_slot_term(slot);
  if (layout.nested_parts) out += " AND " + prefix + kNestedPartsTerm;
  return out;
}

SlotFiller::SlotFiller(const schema::Resource& res) : keys_(indexed_keys(res)), layout_(row_layout(res)) {}

const ScannedMember* SlotFiller::find(const ListPage& page, const PageRow& row, std::size_t slot) const {
  const auto members = page.members(row);
  const std::string& key = keys_[slot];
  std::uint32_t& last = last_position_[slot];
  if (last < members.size() && members[last].key == key) return &members[last];
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (members[i].key == key) {
      last = static_cast<std::uint32_t>(i);
      return &members[i];
    }
  }
  return nullptr;
}

void SlotFiller::bind(SQLite::Statement& st, int first_param, const nlohmann::ordered_json& row,
                      SlotText& text) const {
  using T = nlohmann::ordered_json::value_t;
  for (int i = 0; i < kKeySlots; ++i) {
    const int param = first_param + i;
    const auto slot = static_cast<std::size_t>(i);
    const nlohmann::ordered_json* v = nullptr;
    if (slot < keys_.size() && row.is_object()) {
      if (auto it = row.find(keys_[slot]); it != row.end()) v = &*it;
    }
    if (!v) {
      st.bind(param);
      continue;
    }
    switch (v->type()) {
      case T::string:
        st.bindNoCopy(param, v->get_ref<const std::string&>());
        break;
      case T::number_integer:
        st.bind(param, static_cast<std::int64_t>(v->get<std::int64_t>()));
        break;
      case T::number_unsigned: {
        const auto u = v->get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          st.bind(param, static_cast<std::int64_t>(u));
        } else {
          st.bind(param, static_cast<double>(u));  // as SQLite's JSON reads a number beyond int64
        }
        break;
      }
      case T::number_float:
        st.bind(param, v->get<double>());
        break;
      case T::boolean:
        st.bind(param, v->get<bool>() ? 1 : 0);
        break;
      case T::object:
      case T::array:
        text[slot] = v->dump();
        st.bindNoCopy(param, text[slot]);
        break;
      case T::null:
      case T::binary:
      case T::discarded:
        st.bind(param);
        break;
    }
  }
}

void SlotFiller::bind(SQLite::Statement& st, int first_param, const ListPage& page, const PageRow& row,
                      SlotText& text) const {
  if (row.dom) {
    bind(st, first_param, *row.dom, text);
    return;
  }
  for (int i = 0; i < kKeySlots; ++i) {
    const int param = first_param + i;
    const auto slot = static_cast<std::size_t>(i);
    const ScannedMember* v = slot < keys_.size() ? find(page, row, slot) : nullptr;
    if (!v) {
      st.bind(param);
      continue;
    }
    // The same SQL values as the DOM overload gives the same row.
    switch (v->kind) {
      case ValueKind::String:
        bind_copy(st, param, v->value, text[slot]);
        break;
      case ValueKind::Integer:
        st.bind(param, static_cast<std::int64_t>(v->integer));
        break;
      case ValueKind::Unsigned:
        st.bind(param, static_cast<double>(v->unsigned_value()));  // beyond int64, as SQLite's JSON reads it
        break;
      case ValueKind::Float:
        st.bind(param, v->real);
        break;
      case ValueKind::True:
      case ValueKind::False:
        st.bind(param, v->kind == ValueKind::True ? 1 : 0);
        break;
      case ValueKind::Object:
      case ValueKind::Array:
        if (row.spaced) {
          text[slot].clear();
          append_without_whitespace(v->value, text[slot]);
          st.bindNoCopy(param, text[slot]);
        } else {
          bind_copy(st, param, v->value, text[slot]);
        }
        break;
      case ValueKind::Null:
        st.bind(param);
        break;
    }
  }
}

}  // namespace knosc::replica
