#include "daemon/xlsx_export.hpp"

#include <xlsxwriter.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <unordered_map>

namespace knosc::daemon {
namespace {

// A mkdtemp directory that is removed with everything in it when the export is done or fails. The workbook
// is written under a fixed name inside it: the directory's random name and mode 0700 keep other local users
// from reading the export or planting a file (or link) where libxlsxwriter will write.
class PrivateDir {
 public:
  explicit PrivateDir(const XlsxOptions& options) {
    std::string base = options.tmp_dir;
    if (base.empty()) {
      const char* env = std::getenv("TMPDIR");
      base = env != nullptr && *env != '\0' ? env : "/tmp";
    }
    std::string templ = base + "/knosc-export-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      throw XlsxError("cannot create a temporary directory in " + base + ": " + std::strerror(errno));
    }
    path_.assign(buf.data());
  }
  ~PrivateDir() {
    std::error_code ec;  // nothing to report from a destructor; the directory is private and small
    std::filesystem::remove_all(path_, ec);
  }
  PrivateDir(const PrivateDir&) = delete;
  PrivateDir& operator=(const PrivateDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct WorkbookFree {
  void operator()(lxw_workbook* wb) const { lxw_workbook_free(wb); }
};
using WorkbookPtr = std::unique_ptr<lxw_workbook, WorkbookFree>;

// "A1"-style reference of a zero-based cell, for error messages.
std::string cell_ref(lxw_row_t row, lxw_col_t col) {
  std::string letters;
  for (std::uint32_t n = static_cast<std::uint32_t>(col) + 1; n > 0; n = (n - 1) / 26) {
    letters.insert(letters.begin(), static_cast<char>('A' + (n - 1) % 26));
  }
  return letters + std::to_string(static_cast<std::uint64_t>(row) + 1);
}

// Length of the well-formed UTF-8 sequence at s[i], or 0 when the bytes there are not one (overlong forms,
// surrogates and code points above U+10FFFF included), following the Unicode table of well-formed sequences.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  unsigned b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b == 0xE0) return cont(i + 1, 0xA0) && cont(i + 2) ? 3 : 0;
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return cont(i + 1) && cont(i + 2) ? 3 : 0;
  if (b == 0xED) return cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : 0;
  if (b == 0xF0) return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (b >= 0xF1 && b <= 0xF3) return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (b == 0xF4) return cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  return 0;
}

// The text libxlsxwriter is given: a C string, so NUL (which XML cannot carry either) and invalid UTF-8
// (which would make the sheet's XML unreadable) become U+FFFD.
std::string cell_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = s[i] == '\0' ? 0 : utf8_sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

void check(lxw_error err, lxw_row_t row, lxw_col_t col) {
  if (err == LXW_NO_ERROR) return;
  std::string reason = lxw_strerror(err);
  if (err == LXW_ERROR_MAX_STRING_LENGTH_EXCEEDED) {
    reason += " (a cell holds at most " + std::to_string(kXlsxMaxCellChars) + " characters)";
  }
  throw XlsxError("cannot write cell " + cell_ref(row, col) + " of the export: " + reason);
}

void write_string(lxw_worksheet* ws, lxw_row_t row, lxw_col_t col, std::string_view s) {
  if (s.empty()) return;  // libxlsxwriter leaves an empty string's cell empty anyway
  check(worksheet_write_string(ws, row, col, cell_text(s).c_str(), nullptr), row, col);
}

void write_value(lxw_worksheet* ws, lxw_row_t row, lxw_col_t col, const nlohmann::ordered_json& v) {
  using Type = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case Type::null:
    case Type::discarded:
      return;
    case Type::boolean:
      check(worksheet_write_boolean(ws, row, col, v.get<bool>() ? 1 : 0, nullptr), row, col);
      return;
    case Type::number_integer:
    case Type::number_unsigned:
    case Type::number_float: {
      // Excel stores every number as a double; integers beyond 2^53 are rounded as Excel itself would.
      double d = v.get<double>();
      if (!std::isfinite(d)) return;  // what nlohmann's dump makes of them too: null
      check(worksheet_write_number(ws, row, col, d, nullptr), row, col);
      return;
    }
    case Type::string:
      write_string(ws, row, col, v.get_ref<const std::string&>());
      return;
    case Type::object:
    case Type::array:
    case Type::binary:
      write_string(ws, row, col, v.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
      return;
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw XlsxError("cannot open the finished workbook " + path + ": " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw XlsxError("cannot read the finished workbook " + path);
  return bytes;
}

}  // namespace

std::string build_xlsx(const std::vector<std::string>& columns,
                       const std::vector<nlohmann::ordered_json>& rows, std::string_view sheet_name,
                       const XlsxOptions& options) {
  if (columns.size() > kXlsxMaxColumns) {
    throw XlsxError("cannot export " + std::to_string(columns.size()) + " columns: a sheet holds at most " +
                    std::to_string(kXlsxMaxColumns));
  }
  if (rows.size() >= kXlsxMaxRows) {
    throw XlsxError("cannot export " + std::to_string(rows.size()) + " rows: a sheet holds at most " +
                    std::to_string(kXlsxMaxRows - 1) + " below its header row");
  }
  // libxlsxwriter would name an empty sheet name "Sheet1" on its own; an explicit name is asked for.
  if (sheet_name.empty()) throw XlsxError("invalid sheet name \"\": it is empty");
  if (sheet_name.find('\0') != std::string_view::npos) throw XlsxError("the sheet name contains a NUL byte");
  const std::string sheet(sheet_name);

  // Column keys can repeat; each occurrence gets the value.
  std::unordered_map<std::string_view, std::vector<lxw_col_t>> column_of;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    column_of[columns[c]].push_back(static_cast<lxw_col_t>(c));
  }

  PrivateDir dir(options);
  const std::string file = dir.path() + "/export.xlsx";
  std::vector<char> tmpdir(dir.path().begin(), dir.path().end());
  tmpdir.push_back('\0');
  lxw_workbook_options opts{};
  // Rows go to a temporary file in the private directory as soon as the next row starts, so an export's
  // memory does not grow with its rows. Rows are written strictly in order, as this mode requires.
  opts.constant_memory = LXW_TRUE;
  opts.tmpdir = tmpdir.data();
  opts.use_zip64 = LXW_FALSE;
  WorkbookPtr wb(workbook_new_opt(file.c_str(), &opts));
  if (!wb) throw XlsxError("libxlsxwriter cannot create a workbook (out of memory or temporary files)");

  if (lxw_error err = workbook_validate_sheet_name(wb.get(), sheet.c_str()); err != LXW_NO_ERROR) {
    throw XlsxError("invalid sheet name \"" + sheet + "\": " + lxw_strerror(err));
  }
  lxw_worksheet* ws = workbook_add_worksheet(wb.get(), sheet.c_str());
  if (ws == nullptr) throw XlsxError("libxlsxwriter cannot add the sheet \"" + sheet + "\"");

  for (std::size_t c = 0; c < columns.size(); ++c)
    write_string(ws, 0, static_cast<lxw_col_t>(c), columns[c]);

  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto row = static_cast<lxw_row_t>(r + 1);
    const nlohmann::ordered_json& values = rows[r];
    if (values.is_object()) {
      // Walking the row's own keys: ordered_json's lookup by key is a linear scan.
      for (const auto& [key, value] : values.items()) {
        auto it = column_of.find(key);
        if (it == column_of.end()) continue;  // not exported
        for (lxw_col_t c : it->second)
          write_value(ws, row, c, value);
      }
    } else if (values.is_array()) {
      if (values.size() > columns.size()) {
        throw XlsxError("data row " + std::to_string(r + 1) + " of the export has " +
                        std::to_string(values.size()) + " values for " + std::to_string(columns.size()) +
                        " columns");
      }
      for (std::size_t c = 0; c < values.size(); ++c)
        write_value(ws, row, static_cast<lxw_col_t>(c), values[c]);
    } else {
      throw XlsxError("data row " + std::to_string(r + 1) + " of the export is a JSON " + values.type_name() +
                      ", not an object or an array");
    }
  }

  // workbook_close frees the workbook whatever it returns.
  if (lxw_error err = workbook_close(wb.release()); err != LXW_NO_ERROR) {
    throw XlsxError(std::string("libxlsxwriter cannot write the workbook: ") + lxw_strerror(err));
  }
  return read_file(file);
}

}  // namespace knosc::daemon
