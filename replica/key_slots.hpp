#pragma once
// Key slots: the columns k1..k8 of `record` hold copies of a row's values of its resource's indexed keys, and
// an index per slot serves the list queries' filters and sorts on them. Slot indexes are partial:
//  - record_k1..record_k8 on (resource, kN, id) hold the rows of the resources that have slot N and no
//    others (most resources use only a few slots; every row of the others would be an entry with a NULL
//    slot, maintained on every write and read by no query);
//  - a flat line list has an index of its own per slot instead, "record_kN_<resource>" on (kN, id): lines
//    are the most numerous rows of a tenant and use the most slots, and their entries then carry no resource
//    name (22 bytes of "purchase-order-details" each) and compare on their first column, which makes
//    writing lines markedly cheaper. Every other resource shares the eight, so a row's write evaluates few
//    index conditions.
//
// The writer fills the slots from the JSON it has already parsed, so SQLite never parses a row's body to
// maintain an index. Which key goes to which slot depends only on the catalog entry (indexed_keys), and the
// replica records the assignment in the `key_slot` table: when a catalog change moves keys, the slots of that
// resource's rows are refilled at the next start.

#include <SQLiteCpp/Statement.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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
// "record_k<slot>", the shared index on (resource, k<slot>, id).
std::string slot_index_name(int slot);

// Whether `res` has slot indexes of its own (flat line lists) rather than sharing record_k1..record_k8.
bool has_own_slot_indexes(const schema::Resource& res);

// The index that serves slot `slot` of `res`, as SQL names it (INDEXED BY): record_k<slot>, or the line
// list's own "record_k<slot>_<resource>" (quoted).
std::string slot_index(const schema::Resource& res, int slot);

// Every slot index `catalog` needs, and record_nested_due: its name (as sqlite_master holds it) and its
// CREATE INDEX statement. A shared index record_kN holds the rows whose slot_count is at least N; a line
// list's own indexes hold its rows; record_nested_due holds the rows with nested_parts = 1. A shared slot no
// resource has gets no index. The replica (re)creates these at start, since the catalog decides which
// resources have which slots.
std::vector<std::pair<std::string, std::string>> partial_indexes(const schema::Catalog& catalog);

// What the rows of `res` hold in the columns the partial indexes' conditions read (see
// schema/migrations/0007_partial_indexes.sql).
struct RowLayout {
  int slot_count = 0;  // shared slot indexes record_k1..record_k<slot_count> hold the row
  bool nested_parts = false;
  bool operator==(const RowLayout&) const = default;
};
RowLayout row_layout(const schema::Resource& res);

// The WHERE terms selecting the rows of `res`, every value a literal: "resource = '<name>'" and, for each
// partial index holding them, that index's condition as written (" AND slot_count >= 2", " AND
// nested_parts = 1"). SQLite reads a partial index only for a query whose WHERE has a term implying the
// index's condition, and it does not see that slot_count = 3 implies slot_count >= 2: every query of a
// resource's rows starts its WHERE with these terms, so any index that holds the rows can serve it.
// `table`, when not empty, qualifies each column ("w" gives "w.resource = ...").
std::string resource_terms(const schema::Resource& res, std::string_view table = {});

// Object and array slot values as JSON text, kept until the statement they are bound to has run.
using SlotText = std::array<std::string, kKeySlots>;

// A resource's indexed keys resolved once, so filling a row's slots is one lookup in the row per key.
class SlotFiller {
 public:
  explicit SlotFiller(const schema::Resource& res);

  // What the resource's rows hold in slot_count and nested_parts, which a new row is written with.
  const RowLayout& layout() const { return layout_; }

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
  // The row member holding each key, found in the row's members.
  const ScannedMember* find(const ListPage& page, const PageRow& row, std::size_t slot) const;

  std::vector<std::string> keys_;
  RowLayout layout_;
  // Where each key was found in the last row: the rows of a page list their keys in the same order, so
  // looking there first finds it at once. A filler serves one thread (the writer's) at a time.
  mutable std::array<std::uint32_t, kKeySlots> last_position_{};
};

}  // namespace knosc::replica
