#pragma once
// A list page read straight from Knosc's response bytes, without building a JSON DOM.
//
// A pass stores each row as Json::dump writes it and compares its content_hash with the stored one. Knosc
// sends compact JSON, whose rows are already exactly what dump writes; for those rows the page keeps the
// response's own bytes, and the content hash, the id and the key slot values are read from them in the same
// sweep. A row whose text differs from dump's in anything but whitespace (escape sequences, another number
// format, a duplicate key) is parsed on its own into a DOM and handled as before, so the stored bytes and
// hashes never depend on which way a row was read. Whitespace between tokens is dropped from the stored
// text.

#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "replica/record_id.hpp"

namespace knosc::replica {

enum class ValueKind : std::uint8_t { Null, False, True, Integer, Unsigned, Float, String, Object, Array };

// One member of a row object read from the text. Rows read this way hold no escape sequences, so `key` and a
// string's contents are the decoded strings.
struct ScannedMember {
  std::string_view key;    // without quotes
  std::string_view value;  // the value's text; for a string, its contents without quotes
  ValueKind kind = ValueKind::Null;
  std::int64_t integer = 0;  // Integer; Unsigned: the value cast to int64, as Json's get<std::int64_t>
  double real = 0;           // Float
  std::uint64_t unsigned_value() const { return static_cast<std::uint64_t>(integer); }
};

// One element of a page's data.rows.
struct PageRow {
  const nlohmann::ordered_json* dom = nullptr;  // set when the row was read into a DOM
  std::string_view text;                        // otherwise: the row exactly as Json::dump writes it
  std::uint64_t hash = 0;                       // content_hash of the row, either way
  std::uint32_t first_member = 0;               // text rows: their members in ListPage::members
  std::uint32_t member_count = 0;
  bool object = false;  // rows that are not objects have no id and are not mirrored
  bool spaced = false;  // the member texts hold whitespace (the response was not compact)
};

class ListPage {
 public:
  // Reads a list response body (`{"data": {"rows": [...], "headers": [...]}}`). Throws what Json::parse
  // throws for a body that is not JSON, and std::runtime_error when it has no data.rows array.
  explicit ListPage(std::string body);
  // Rows already parsed (a JSON array); they must outlive the page.
  explicit ListPage(const nlohmann::ordered_json& rows);
  ListPage(const ListPage&) = delete;
  ListPage& operator=(const ListPage&) = delete;

  const std::vector<PageRow>& rows() const { return rows_; }
  std::span<const ScannedMember> members(const PageRow& row) const {
    return {members_.data() + row.first_member, row.member_count};
  }
  // The row's member `key` (text rows only); nullptr when absent.
  const ScannedMember* member(const PageRow& row, std::string_view key) const;
  // The row's `key` read as a record id, as record_id_from_json reads it.
  std::optional<RecordId> record_id(const PageRow& row, const std::string& key) const;
  // data.headers, when it is an array.
  std::optional<nlohmann::ordered_json> headers() const;

  // How many rows were read into a DOM (diagnostics and tests).
  std::size_t dom_rows() const { return dom_rows_; }

 private:
  bool scan();
  void read_whole_document();

  std::string body_;
  std::deque<nlohmann::ordered_json> dom_;  // DOM rows (deque: stable addresses), or the whole document
  std::deque<std::string> stripped_;        // texts of rows that came with whitespace
  std::vector<PageRow> rows_;
  std::vector<ScannedMember> members_;
  std::string_view headers_text_;
  const nlohmann::ordered_json* headers_dom_ = nullptr;
  std::size_t dom_rows_ = 0;
};

// The parts of a record that only get-one carries (line sets, notes), as Replica::store_nested keeps them:
// the object {key: the record's value, or null} over `keys`, as Json::dump writes it, and its content_hash.
struct NestedParts {
  std::string text;
  std::uint64_t hash = 0;
};
// Reads them from a get-one response body: the record is `data`, or `data.rows` when `rows_object`. nullopt
// when the body needs Json::parse (it is not JSON, has no such record, or the record's text is not what
// dump writes); the caller then parses it.
std::optional<NestedParts> read_nested_parts(std::string_view body, bool rows_object,
                                             const std::vector<std::string>& keys);

// `text` without the whitespace between its tokens, appended to `out`. `text` must be valid JSON.
void append_without_whitespace(std::string_view text, std::string& out);

}  // namespace knosc::replica
