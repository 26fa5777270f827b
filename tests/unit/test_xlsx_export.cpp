// build_xlsx's workbooks read back by an independent reader: openpyxl (the library knosc-sim's export is
// written with) in the system Python, run as a subprocess that prints every cell with its Python type.

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/xlsx_export.hpp"

namespace {

using knosc::daemon::build_xlsx;
using knosc::daemon::XlsxError;
using knosc::daemon::XlsxOptions;
using nlohmann::json;
using nlohmann::ordered_json;
namespace fs = std::filesystem;

// A fresh directory for one test case, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "knosc-xlsx-test-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  bool empty() const { return fs::is_empty(path_); }

 private:
  fs::path path_;
};

// Prints {"sheets": [names], "rows": [[cell, ...], ...]} for the first sheet, a cell being null or
// [python type name, value]. Every row is as wide as the sheet (openpyxl pads with None).
constexpr const char* kReader = R"py(
import json, sys
import openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
ws = wb[wb.sheetnames[0]]
rows = [[None if v is None else [type(v).__name__, v] for v in row] for row in ws.iter_rows(values_only=True)]
json.dump({"sheets": wb.sheetnames, "rows": rows}, sys.stdout, ensure_ascii=True)
)py";

json read_back(const std::string& xlsx) {
  TempDir dir;
  const fs::path book = dir.path() / "book.xlsx";
  const fs::path script = dir.path() / "read.py";
  std::ofstream(book, std::ios::binary).write(xlsx.data(), static_cast<std::streamsize>(xlsx.size()));
  std::ofstream(script) << kReader;
  const std::string cmd = "/usr/bin/python3 '" + script.string() + "' '" + book.string() + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;)
    out.append(buf, n);
  const int status = ::pclose(p);
  INFO(out);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return json::parse(out);
}

json cell(const char* type, json value) {
  return json::array({type, std::move(value)});
}

}  // namespace

TEST_CASE("build_xlsx: header row of column keys, typed values, empty cells", "[xlsx]") {
  const std::vector<std::string> columns = {"PO Number", "Quantity", "Price",  "Closed",
                                            "Note",      "Lines",    "Missing"};
  std::vector<ordered_json> rows = {
      {{"PO Number", "PO-1"},
       {"Quantity", 12},
       {"Price", 2.5},
       {"Closed", true},
       {"Note", nullptr},
       {"Lines", json::array({1, 2})}},
      // keys in another order than the columns, a key that is not exported, an empty string
      {{"Closed", false}, {"Extra", "not exported"}, {"Quantity", -7}, {"PO Number", ""}, {"Price", 1e20}},
      {{"Lines", {{"a", 1}, {"b", "x"}}}, {"Quantity", 18446744073709551615ULL}, {"Price", 3.0}},
      // positional rows, as knosc-sim's export builds them; shorter than the columns is fine
      ordered_json::object(),
      json::array({"PO-4", 0, -0.125, nullptr, "text"}),
  };
  const json got = read_back(build_xlsx(columns, rows, "export"));
  CHECK(got["sheets"] == json::array({"export"}));
  const json& r = got["rows"];
  REQUIRE(r.size() == 6);

  json header = json::array();
  for (const auto& c : columns)
    header.push_back(cell("str", c));
  CHECK(r[0] == header);

  CHECK(r[1] == json::array({cell("str", "PO-1"), cell("int", 12), cell("float", 2.5), cell("bool", true),
                             nullptr, cell("str", "[1,2]"), nullptr}));
  CHECK(r[2] == json::array({nullptr, cell("int", -7), cell("float", 1e20), cell("bool", false), nullptr,
                             nullptr, nullptr}));
  // Excel numbers are doubles, written with 16 significant digits (libxlsxwriter's precision; Excel shows
  // 15); a whole float reads back as an int, as Excel shows it.
  CHECK(r[3] == json::array({nullptr, cell("float", 1.844674407370955e19), cell("int", 3), nullptr, nullptr,
                             cell("str", R"({"a":1,"b":"x"})"), nullptr}));
  CHECK(r[4] == json::array({nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr}));
  CHECK(r[5] == json::array({cell("str", "PO-4"), cell("int", 0), cell("float", -0.125), nullptr,
                             cell("str", "text"), nullptr, nullptr}));
}

TEST_CASE("build_xlsx: a repeated column key gets the value in each of its columns", "[xlsx]") {
  const json got = read_back(build_xlsx({"A", "B", "A"}, {ordered_json{{"A", 1}, {"B", 2}}}, "export"));
  CHECK(got["rows"][1] == json::array({cell("int", 1), cell("int", 2), cell("int", 1)}));
}

TEST_CASE("build_xlsx: no rows is a header-only sheet; no columns is an empty sheet", "[xlsx]") {
  CHECK(read_back(build_xlsx({"id", "Timestamp"}, {}, "export"))["rows"] ==
        json::array({json::array({cell("str", "id"), cell("str", "Timestamp")})}));
  const json empty = read_back(build_xlsx({}, {}, "export"));
  CHECK(empty["sheets"] == json::array({"export"}));
  CHECK(empty["rows"].size() <= 1);  // openpyxl reports an empty sheet as no row or one row of nothing
  if (empty["rows"].size() == 1) CHECK(empty["rows"][0] == json::array({nullptr}));
}

TEST_CASE("build_xlsx: unicode keys, values and sheet names; invalid UTF-8 and NUL become U+FFFD", "[xlsx]") {
  const std::vector<std::string> columns = {"Menge (Stück)", "品目", "emoji 📦"};
  std::vector<ordered_json> rows = {
      {{"Menge (Stück)", "Größe ÄÖÜ ß"}, {"品目", "部品-番号 ١٢٣ עברית"}, {"emoji 📦", "📦🚚 ok"}},
      {{"Menge (Stück)", std::string("a\xff"
                                     "b\xc3(") +
                             "c"},
       {"品目", std::string("x\0y", 3)}},
      {{"Menge (Stück)", "tab\there\nnew line"},
       {"品目", "_x0041_ stays literal"},
       {"emoji 📦", "\x01\x1f ctl"}},
  };
  const json got = read_back(build_xlsx(columns, rows, "Ausfuhr Übersicht"));
  CHECK(got["sheets"] == json::array({"Ausfuhr Übersicht"}));
  const json& r = got["rows"];
  REQUIRE(r.size() == 4);
  CHECK(r[0] == json::array({cell("str", "Menge (Stück)"), cell("str", "品目"), cell("str", "emoji 📦")}));
  CHECK(r[1] ==
        json::array({cell("str", "Größe ÄÖÜ ß"), cell("str", "部品-番号 ١٢٣ עברית"), cell("str", "📦🚚 ok")}));
  CHECK(r[2] == json::array({cell("str",
                                  "a\xEF\xBF\xBD"
                                  "b\xEF\xBF\xBD(c"),
                             cell("str", "x\xEF\xBF\xBDy"), nullptr}));
  CHECK(r[3][0] == cell("str", "tab\there\nnew line"));
  // Text that looks like OOXML's _xHHHH_ escape is written as is, as openpyxl (Knosc's export) writes it.
  CHECK(r[3][1] == cell("str", "_x0041_ stays literal"));
  // XML cannot carry these control characters; they are written in OOXML's _xHHHH_ escape, which Excel
  // decodes and openpyxl shows as is.
  CHECK(r[3][2] == cell("str", "_x0001__x001F_ ctl"));
}

TEST_CASE("build_xlsx: 10,000 rows", "[xlsx]") {
  const std::vector<std::string> columns = {"id", "Item Number", "Quantity", "Active", "Comment"};
  std::vector<ordered_json> rows;
  rows.reserve(10'000);
  for (int i = 0; i < 10'000; ++i) {
    ordered_json row = {{"id", i},
                        {"Item Number", "ITEM-" + std::to_string(i)},
                        {"Quantity", i * 0.5},
                        {"Active", i % 2 == 0}};
    if (i % 3 == 0) row["Comment"] = "every third";
    rows.push_back(std::move(row));
  }
  const json got = read_back(build_xlsx(columns, rows, "export"));
  const json& r = got["rows"];
  REQUIRE(r.size() == 10'001);
  for (int i = 0; i < 10'000; ++i) {
    const json& row = r[static_cast<std::size_t>(i) + 1];
    const double q = i * 0.5;
    const json quantity = i % 2 == 0 ? cell("int", i / 2) : cell("float", q);
    const json expected =
        json::array({cell("int", i), cell("str", "ITEM-" + std::to_string(i)), quantity,
                     cell("bool", i % 2 == 0), i % 3 == 0 ? cell("str", "every third") : json()});
    if (row != expected) {
      INFO("row " << i);
      CHECK(row == expected);
    }
  }
}

TEST_CASE("build_xlsx: errors are XlsxError with a clear message; nothing is left behind", "[xlsx]") {
  TempDir tmp;
  XlsxOptions opts;
  opts.tmp_dir = tmp.path().string();
  auto fails_with = [&](const std::vector<std::string>& columns, const std::vector<ordered_json>& rows,
                        std::string_view sheet, const std::string& message) {
    INFO(message);
    CHECK_THROWS_AS(build_xlsx(columns, rows, sheet, opts), XlsxError);
    CHECK_THROWS_WITH(build_xlsx(columns, rows, sheet, opts), Catch::Contains(message));
    CHECK(tmp.empty());
  };

  SECTION("sheet names Excel refuses") {
    fails_with({"a"}, {}, "", "invalid sheet name");
    fails_with({"a"}, {}, "a/b", "invalid sheet name \"a/b\"");
    fails_with({"a"}, {}, "'quoted'", "invalid sheet name");
    fails_with({"a"}, {}, std::string(32, 'x'), "invalid sheet name");
    fails_with({"a"}, {}, std::string_view("a\0b", 3), "NUL");
  }
  SECTION("too many columns") {
    fails_with(std::vector<std::string>(16'385, "c"), {}, "export", "16385 columns");
  }
  SECTION("a string longer than a cell holds names the cell") {
    std::vector<ordered_json> rows = {ordered_json::object(), {{"b", std::string(32'768, 'x')}}};
    fails_with({"a", "b"}, rows, "export", "cell B3");
  }
  SECTION("rows that are neither objects nor arrays, arrays longer than the columns") {
    fails_with({"a"}, {ordered_json::object(), ordered_json(5)}, "export",
               "data row 2 of the export is a JSON number");
    fails_with({"a"}, {ordered_json::array({1, 2})}, "export", "2 values for 1 columns");
  }
  SECTION("an unusable temporary directory") {
    XlsxOptions bad;
    bad.tmp_dir = (tmp.path() / "does-not-exist").string();
    CHECK_THROWS_AS(build_xlsx({"a"}, {}, "export", bad), XlsxError);
    CHECK_THROWS_WITH(build_xlsx({"a"}, {}, "export", bad),
                      Catch::Contains("cannot create a temporary directory"));
  }
  SECTION("success leaves nothing behind either") {
    CHECK(build_xlsx({"a"}, {ordered_json{{"a", 1}}}, "export", opts).substr(0, 2) == "PK");
    CHECK(tmp.empty());
  }
}
