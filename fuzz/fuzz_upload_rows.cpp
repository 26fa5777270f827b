// libFuzzer target: the reading of job uploads (CSV and XLSX) and their check against granular filters.
//
// Input layout: the first byte chooses what the rest is. 0 mod 3: a CSV file. 1 mod 3: an XLSX file as sent.
// 2 mod 3: SpreadsheetML parts, split at each "\n--\n", that this target packs into a valid ZIP (stored
// entries with correct CRCs, named xl/worksheets/sheetN.xml, the last one xl/sharedStrings.xml), so that
// mutations spend their time in the XML and sheet readers instead of failing the ZIP's checksums.
// Uploads come from any local user: whatever the bytes, reading must never crash, trip a sanitizer or hang,
// and the check must keep its promises: a file that cannot be read is exactly one error at row 0, every other
// error names a data row (row 2 or later), in file order within a sheet, and no more than
// kMaxListedRowErrors rows are listed one by one.
// The seeds in fuzz/corpus/fuzz_upload_rows/ are a CSV file, a workbook written by openpyxl (shared strings)
// and parts as libxlsxwriter writes them (inline strings).

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/upload_rows.hpp"

namespace {

void put_le(std::string& out, std::uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::string stored_zip(const std::vector<std::pair<std::string, std::string_view>>& files) {
  std::string out, directory;
  for (const auto& file : files) {
    const std::string& name = file.first;  // not a structured binding: clang 14's lambdas cannot capture one
    const std::string_view data = file.second;
    const auto crc =
        static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
    const auto offset = static_cast<std::uint32_t>(out.size());
    auto common = [&](std::string& h) {
      put_le(h, 20, 2);
      put_le(h, 0, 2);
      put_le(h, 0, 2);  // stored
      put_le(h, 0, 4);  // time and date
      put_le(h, crc, 4);
      put_le(h, static_cast<std::uint32_t>(data.size()), 4);
      put_le(h, static_cast<std::uint32_t>(data.size()), 4);
      put_le(h, static_cast<std::uint32_t>(name.size()), 2);
      put_le(h, 0, 2);
    };
    out += std::string("PK\x03\x04", 4);
    common(out);
    out += name;
    out += data;
    directory += std::string("PK\x01\x02", 4);
    put_le(directory, 20, 2);
    common(directory);
    directory.append(10, '\0');  // comment length, disk, internal and external attributes
    put_le(directory, offset, 4);
    directory += name;
  }
  const auto at = static_cast<std::uint32_t>(out.size());
  out += directory;
  out += std::string("PK\x05\x06", 4);
  put_le(out, 0, 4);
  put_le(out, static_cast<std::uint32_t>(files.size()), 2);
  put_le(out, static_cast<std::uint32_t>(files.size()), 2);
  put_le(out, static_cast<std::uint32_t>(directory.size()), 4);
  put_le(out, at, 4);
  put_le(out, 0, 2);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  std::string_view file(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string packed;
  if (mode == 2) {
    std::vector<std::pair<std::string, std::string_view>> parts;
    while (true) {
      const auto cut = file.find("\n--\n");
      parts.emplace_back("xl/worksheets/sheet" + std::to_string(parts.size() + 1) + ".xml",
                         file.substr(0, cut));
      if (cut == std::string_view::npos) break;
      file.remove_prefix(cut + 4);
    }
    if (parts.size() > 1) parts.back().first = "xl/sharedStrings.xml";
    packed = stored_zip(parts);
    file = packed;
  }
  static const std::vector<knosc::replica::GranularFilter> filters = {{"Warehouse Number", true, {"WH-01"}},
                                                                      {"Supplier Id", false, {7}}};
  knosc::daemon::NamedRecords named;
  named.columns = {"PO List Number"};
  named.outside = [](const std::string&, const std::string& value) { return value == "PO-2"; };

  const auto errors = knosc::daemon::upload_rows_outside(file, mode != 0, filters, named);
  if (errors.size() > knosc::daemon::kMaxListedRowErrors + 1) std::abort();
  if (errors.size() == 1 && errors[0].row == 0 &&
      errors[0].message.find("cannot be read") != std::string::npos)
    return 0;
  std::int64_t previous = 1;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    const auto& e = errors[i];
    if (e.message.empty()) std::abort();
    if (e.row == 0 && i + 1 == errors.size() && i == knosc::daemon::kMaxListedRowErrors)
      continue;  // "N more"
    if (e.row < 2) std::abort();
    // Rows come in file order within a sheet; the message names the sheet when there are several.
    if (e.row <= previous && e.message.find("(worksheet ") == std::string::npos) std::abort();
    previous = e.row;
  }
  return 0;
}
