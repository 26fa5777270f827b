#pragma once
// Key slots: the columns k1..k8 of `record` hold copies of a row's values of its resource's indexed keys, and
// the indexes record_k1..record_k8 on (resource, kN, id) serve the list queries' filters and sorts on them.
//
// The writer fills the slots from the JSON it has already parsed, so SQLite never parses a row's body to
// maintain an index. Which key goes to which slot depends only on the catalog entry (indexed_keys), and the
// replica records the assignment in the `key_slot` table: when a catalog change moves keys, the slots of that
// resource's rows are refilled at the next start.

#include <SQLiteCpp/Statement.h>

#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replica/list_page.hpp"
#include "schema/catalog.hpp"

namespace knosc::replica {

inline constexpr int kKeySlots = 8;

// The keys of `res` that get a slot, in slot order (slot 1 first): the default sort key, then the filterable
// keys, then the sortable keys, each once. "id" gets none (the record's id column is already indexed), nor
// does a key that cannot be named in a list request (one containing '"' or NUL). At most kKeySlots; the
// catalog refuses a resource that needs more.
std::vector<std::string> indexed_keys(const schema::Resource& res);

// The 1-based slot holding `key` for `res`, or nullopt when the key has none.
std::optional<int> slot_of(const schema::Resource& res, std::string_view key);

// "k<slot>", the column of a slot.
std::string slot_column(int slot);
// "record_k<slot>", the index on (resource, k<slot>, id).
std::string slot_index_name(int slot);

// Object and array slot values as JSON text, kept until the statement they are bound to has run.
using SlotText = std::array<std::string, kKeySlots>;

// A resource's indexed keys resolved once, so filling a row's slots is one lookup in the row per key.
class SlotFiller {
 public:
  explicit SlotFiller(const schema::Resource& res);

  // Binds the row's slot values to parameters first_param .. first_param + kKeySlots - 1: scalars as their
  // SQL type (true/false as 1/0, the way SQLite's json_extract reads them), objects and arrays as JSON
  // text, an absent key or a JSON null as NULL. Unused slots are bound NULL. Nothing is copied: `row` and
  // `text` must outlive the statement's next step.
  void bind(SQLite::Statement& st, int first_param, const nlohmann::ordered_json& row, SlotText& text) const;
  // The same for a row of a list page; a DOM row goes through the overload above. `page` and `text` must
  // outlive the statement's next step.
  void bind(SQLite::Statement& st, int first_param, const ListPage& page, const PageRow& row,
            SlotText& text) const;

 private:
  std::vector<std::string> keys_;
};

}  // namespace knosc::replica
