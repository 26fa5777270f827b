#pragma once
// XLSX workbooks for POST /api/export-data (API-NOTES §15.2, CONTRACT §6): one sheet whose first row holds
// the column keys and whose further rows hold the values, typed as Knosc's export types them (numbers as
// numbers, booleans as booleans, strings as strings, missing and null values as empty cells).
//
// libxlsxwriter builds the workbook. The version Debian ships cannot write to memory, so the workbook is
// assembled in a private directory (mode 0700, made by mkdtemp) that is removed before build_xlsx returns,
// whether it succeeds or throws. Memory stays flat however many rows are exported: rows are streamed to
// that directory as they are written (libxlsxwriter's constant_memory mode).

#include <cstddef>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace knosc::daemon {

inline constexpr std::string_view kXlsxContentType =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
inline constexpr std::string_view kExportSheetName = "export";  // the sheet name Knosc's export uses
inline constexpr std::string_view kExportContentDisposition = "attachment; filename=\"export.xlsx\"";

// Excel's own limits; libxlsxwriter refuses anything beyond them.
inline constexpr std::size_t kXlsxMaxColumns = 16'384;
inline constexpr std::size_t kXlsxMaxRows = 1'048'576;    // header row included
inline constexpr std::size_t kXlsxMaxCellChars = 32'767;  // characters (code points) in one string cell

// The workbook cannot be built: a bad argument (sheet name, too many rows or columns, a row that is neither
// an object nor an array, a string longer than a cell can hold) or a libxlsxwriter failure (temporary
// files, zip). what() names the cell or the step and carries libxlsxwriter's reason.
class XlsxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct XlsxOptions {
  // Where the private working directory is made; empty: $TMPDIR, else /tmp. Exports may be large, so this
  // should be a disk-backed file system when /tmp is a tmpfs.
  std::string tmp_dir;
};

// Builds the .xlsx file's bytes. Row 1 is `columns`; each element of `rows` is one further row, either an
// object (the value of each column key; an absent key is an empty cell) or an array (values by position,
// at most one per column). Cell values: numbers are numeric cells with 16 significant digits, like every
// libxlsxwriter number (non-finite ones, which JSON cannot carry, are empty like null), booleans are boolean
// cells, strings are string cells (invalid UTF-8 is replaced by U+FFFD), null is an empty cell, and objects
// and arrays are string cells holding their compact JSON text. An empty string is an empty cell, as in
// Knosc's export. Throws XlsxError.
std::string build_xlsx(const std::vector<std::string>& columns,
                       const std::vector<nlohmann::ordered_json>& rows, std::string_view sheet_name,
                       const XlsxOptions& options = {});

}  // namespace knosc::daemon
