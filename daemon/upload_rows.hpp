#pragma once
// The rows of a job upload (CSV or XLSX) as Knosc reads them, and their check against the uploader's granular
// filters (API-NOTES §4 and §15.1, CONTRACT §6).
//
// Uploads go to Knosc under the service account, which sees every row; Knosc cannot know which local user
// sent a file, so the daemon itself must refuse rows the user's role may not change. The template columns are
// the list's column keys, so a filter on `Warehouse Number` applies to a column headed `Warehouse Number`.
//
// The check must never read a file more leniently than Knosc does: a value Knosc would see as WH-02 must not
// pass here as WH-01. So the readers follow Knosc's own reading where it is known (Python's csv module over
// UTF-8 with an optional BOM, openpyxl for XLSX, cell text stripped of Unicode blanks), take every reading of
// a cell that some XLSX reader could make (shared strings, inline strings, cached values, `_xHHHH_` escapes),
// check every worksheet of a workbook, and refuse what they cannot read exactly (an unknown ZIP method,
// another text encoding, a DTD, ambiguous cell positions) instead of guessing. A refusal costs a user with
// granular filters one re-exported file; a lenient reading would land another warehouse's rows.
//
// There is no XLSX reader among the project's libraries (libxlsxwriter only writes), so the workbook is read
// here: the ZIP directory, entries inflated with zlib, and a small XML reader that knows only what
// SpreadsheetML parts use. fuzz/fuzz_upload_rows.cpp fuzzes it. Pure functions; any thread.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replica/list_query.hpp"

namespace knosc::daemon {

// One row of an upload. Each cell holds every reading of it (usually one; none when the cell is empty),
// stripped of surrounding blanks as Knosc strips them.
struct UploadRow {
  std::string_view sheet;   // the worksheet's ZIP entry (XLSX), empty for CSV
  std::int64_t number = 0;  // the row's number in the file: the header is row 1
  std::vector<std::vector<std::string>> cells;
};

// Calls `sink` with every row of the file, the header (row 1) of each sheet first. Returns why the file
// cannot be read, or nullopt; rows given to `sink` before a failure are not to be trusted.
std::optional<std::string> read_csv_upload(std::string_view data,
                                           const std::function<void(const UploadRow&)>& sink);
std::optional<std::string> read_xlsx_upload(std::string_view data,
                                            const std::function<void(const UploadRow&)>& sink);

// One bad row as a failed Knosc job lists it: its row number in the file (0 for the file as a whole).
struct UploadRowError {
  std::int64_t row = 0;
  std::string message;
  bool operator==(const UploadRowError&) const = default;
};

// At most this many bad rows are listed one by one; a last entry (row 0) counts the rest.
inline constexpr std::size_t kMaxListedRowErrors = 1000;

// Whether a stored record is within a role's granular filters, the loopback's rule for reads and changes: a
// record whose value for a filter's category is present (not null) must be one of an include filter's values
// and none of an exclude filter's.
bool record_within(const std::vector<replica::GranularFilter>& filters, const nlohmann::json& record);

// The records an upload's rows name by business number (e.g. a procurement row's "PO List Number"). A row
// naming a stored record outside the filters is outside too, whatever it says of its own warehouse: Knosc's
// default REFRESH action, UPDATE and DELETE change the stored record, and a row may leave the category out or
// give the record another warehouse.
struct NamedRecords {
  std::vector<std::string> columns;  // column keys that name a record on their own
  // Whether a stored record with `value` in `column` is outside the filters; asked once per distinct value.
  std::function<bool(const std::string& column, const std::string& value)> outside;
};

// The rows of an upload that a user with `filters` may not send, in file order; empty when every row is
// within them. A row is outside a filter when its value in a column headed like the filter's category
// (compared without regard to ASCII case) is present and not allowed: not one of an include filter's values,
// or one of an exclude filter's (compared without regard to ASCII case). A row without the column, or with it
// empty, is not restricted, as the loopback treats records. A row is also outside when a value in one of
// `named`'s columns names a stored record outside the filters. A file that cannot be read is one error at row
// 0: it is never sent unchecked.
std::vector<UploadRowError> upload_rows_outside(std::string_view data, bool xlsx,
                                                const std::vector<replica::GranularFilter>& filters,
                                                const NamedRecords& named = {});

}  // namespace knosc::daemon
