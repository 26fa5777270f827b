#include "replica/key_slots.hpp"

#include <algorithm>
#include <limits>

namespace knosc::replica {
namespace {

// Binds a copy of `value` kept in `buffer` (whose capacity is reused from row to row): SQLiteCpp has no
// bind for text that is not a whole std::string.
void bind_copy(SQLite::Statement& st, int param, std::string_view value, std::string& buffer) {
  buffer.assign(value);
  st.bindNoCopy(param, buffer);
}

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

SlotFiller::SlotFiller(const schema::Resource& res) : keys_(indexed_keys(res)) {}

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
    const ScannedMember* v = slot < keys_.size() ? page.member(row, keys_[slot]) : nullptr;
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
