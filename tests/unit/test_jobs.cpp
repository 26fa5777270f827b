// Upload jobs: the import order, the forwarder's choice of the next upload, the local view of a job, who may
// poll a job, the rows of an upload checked against a role's granular filters (CSV and XLSX, read as Knosc
// reads them), and the multipart body the forwarder sends upstream (built, parsed back, and sent through
// UpstreamSession to a fake Knosc on the test's own loop).

#include <zlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_server.hpp"
#include "daemon/jobs.hpp"
#include "daemon/multipart.hpp"
#include "daemon/upload_rows.hpp"
#include "daemon/xlsx_export.hpp"
#include "sync/http_client.hpp"
#include "sync/upstream_session.hpp"

namespace {

using knosc::daemon::JobRecord;
using knosc::daemon::JobSlot;
using knosc::daemon::JobState;
using namespace std::chrono_literals;

JobSlot slot(std::string id, std::string trigger, std::int64_t seq, JobState state = JobState::Queued) {
  return JobSlot{std::move(id), std::move(trigger), seq, state};
}

using knosc::daemon::UploadRowError;
using knosc::replica::GranularFilter;

// wh1's role in knosc-sim: rows of warehouse WH-01 only.
const std::vector<GranularFilter> kWh01 = {{"Warehouse Number", true, {"WH-01"}}};

std::vector<UploadRowError> csv_outside(const std::string& text,
                                        const std::vector<GranularFilter>& filters = kWh01) {
  return knosc::daemon::upload_rows_outside(text, false, filters);
}

std::vector<UploadRowError> xlsx_outside(const std::string& data,
                                         const std::vector<GranularFilter>& filters = kWh01) {
  return knosc::daemon::upload_rows_outside(data, true, filters);
}

std::vector<std::int64_t> rows_of(const std::vector<UploadRowError>& errors) {
  std::vector<std::int64_t> out;
  for (const auto& e : errors)
    out.push_back(e.row);
  return out;
}

// The one error of a file that cannot be read: row 0, saying so.
bool unreadable(const std::vector<UploadRowError>& errors) {
  return errors.size() == 1 && errors[0].row == 0 &&
         errors[0].message.find("cannot be read") != std::string::npos;
}

void put_le(std::string& out, std::uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::string raw_deflate(const std::string& data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A ZIP archive of deflated entries, as a workbook is one; hand-made so a test can hold any XML it likes.
std::string zip_of(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out, directory;
  for (const auto& file : files) {
    const std::string& name = file.first;  // not a structured binding: clang 14's lambdas cannot capture one
    const std::string& data = file.second;
    const auto crc = static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    const std::string packed = raw_deflate(data);
    const auto offset = static_cast<std::uint32_t>(out.size());
    auto common = [&](std::string& h) {
      put_le(h, 20, 2);  // version needed
      put_le(h, 0, 2);   // flags
      put_le(h, 8, 2);   // deflate
      put_le(h, 0, 2);   // time
      put_le(h, 0x21, 2);
      put_le(h, crc, 4);
      put_le(h, static_cast<std::uint32_t>(packed.size()), 4);
      put_le(h, static_cast<std::uint32_t>(data.size()), 4);
      put_le(h, static_cast<std::uint32_t>(name.size()), 2);
      put_le(h, 0, 2);  // extra
    };
    out += std::string("PK\x03\x04", 4);
    common(out);
    out += name + packed;
    directory += std::string("PK\x01\x02", 4);
    put_le(directory, 20, 2);  // made by
    common(directory);
    put_le(directory, 0, 2);  // comment
    put_le(directory, 0, 2);  // disk
    put_le(directory, 0, 2);  // internal attributes
    put_le(directory, 0, 4);  // external attributes
    put_le(directory, offset, 4);
    directory += name;
  }
  const auto at = static_cast<std::uint32_t>(out.size());
  out += directory;
  out += std::string("PK\x05\x06", 4);
  put_le(out, 0, 2);
  put_le(out, 0, 2);
  put_le(out, static_cast<std::uint32_t>(files.size()), 2);
  put_le(out, static_cast<std::uint32_t>(files.size()), 2);
  put_le(out, static_cast<std::uint32_t>(directory.size()), 4);
  put_le(out, at, 4);
  put_le(out, 0, 2);
  return out;
}

const std::string kMain = R"(xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main")";

std::string sheet_xml(const std::string& rows) {
  return R"(<?xml version="1.0" encoding="UTF-8" standalone="yes"?>)"
         "\n<worksheet " +
         kMain + "><dimension ref=\"A1:C9\"/><sheetData>" + rows + "</sheetData></worksheet>";
}

// A workbook whose strings are in the shared-string table, as Excel and openpyxl write them.
std::string shared_string_workbook(const std::string& rows, const std::vector<std::string>& strings) {
  std::string sst = R"(<?xml version="1.0" encoding="UTF-8"?><sst )" + kMain + ">";
  for (const auto& s : strings)
    sst += "<si>" + s + "</si>";
  sst += "</sst>";
  return zip_of(
      {{"[Content_Types].xml", R"(<?xml version="1.0"?><Types/>)"},
       {"xl/workbook.xml", "<workbook " + kMain + "><sheets><sheet name=\"a\"/></sheets></workbook>"},
       {"xl/worksheets/sheet1.xml", sheet_xml(rows)},
       {"xl/sharedStrings.xml", sst},
       {"docProps/thumbnail.jpeg", std::string("\xFF\xD8\xFF\xE0 not xml", 12)}});
}

}  // namespace

TEST_CASE("Jobs: triggers follow the bulk-import guide's dependency order", "[jobs]") {
  std::vector<std::string> names;
  for (const auto& t : knosc::daemon::job_triggers())
    names.emplace_back(t.name);
  CHECK(names == std::vector<std::string>{
                     "unit-master", "warehouse-master", "supplier-master", "customer-master", "item-master",
                     "external-item-master", "bill-of-materials", "supplier-allocation", "forecast",
                     "procurement", "demand", "manufacturing", "inventory", "inventory-planning"});
  using knosc::daemon::import_rank;
  CHECK(import_rank("unit-master") == 0);
  CHECK(import_rank("item-master") < import_rank("bill-of-materials"));
  CHECK(import_rank("supplier-allocation") < import_rank("procurement"));
  CHECK(import_rank("inventory") < import_rank("inventory-planning"));
  CHECK(import_rank("no-such-trigger") > import_rank("inventory-planning"));

  const auto* planning = knosc::daemon::find_job_trigger("inventory-planning");
  REQUIRE(planning);
  CHECK_FALSE(planning->takes_file);
  CHECK(planning->module == "Inventory Planning");
  const auto* procurement = knosc::daemon::find_job_trigger("procurement");
  REQUIRE(procurement);
  CHECK(procurement->takes_file);
  CHECK(procurement->module == "Procurement");
  CHECK(procurement->resources == std::vector<std::string_view>{"purchase-order", "purchase-order-details"});
  CHECK(knosc::daemon::find_job_trigger("purchase-order") == nullptr);
}

TEST_CASE("Jobs: the next upload to forward", "[jobs]") {
  using knosc::daemon::next_job_to_forward;
  using S = JobState;
  struct Case {
    const char* what;
    std::vector<JobSlot> jobs;
    std::optional<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"nothing stored", {}, std::nullopt},
      {"nothing queued",
       {slot("a", "item-master", 1, S::Completed), slot("b", "unit-master", 2, S::Failed)},
       std::nullopt},
      {"master data before what names it, whatever the upload order",
       {slot("items", "item-master", 1), slot("pos", "procurement", 2), slot("units", "unit-master", 3)},
       "units"},
      {"upload order within a trigger",
       {slot("second", "item-master", 7), slot("first", "item-master", 4)},
       "first"},
      {"an earlier trigger still running upstream holds the later ones back",
       {slot("units", "unit-master", 1, S::Forwarded), slot("items", "item-master", 2)},
       std::nullopt},
      {"jobs of the same trigger queue upstream in the order they arrive",
       {slot("old", "item-master", 1, S::Forwarded), slot("new", "item-master", 2)},
       "new"},
      {"a later trigger running upstream does not hold an earlier one back",
       {slot("pos", "procurement", 1, S::Forwarded), slot("units", "unit-master", 2)},
       "units"},
      {"finished jobs hold nothing back, failed ones included",
       {slot("units", "unit-master", 1, S::Failed), slot("wh", "warehouse-master", 2, S::Completed),
        slot("items", "item-master", 3)},
       "items"},
      {"the planning run goes last",
       {slot("plan", "inventory-planning", 1), slot("inv", "inventory", 2)},
       "inv"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    CHECK(next_job_to_forward(c.jobs) == c.expected);
  }
}

TEST_CASE("Jobs: ids, file names and types as Knosc gives them", "[jobs]") {
  using namespace knosc::daemon;
  CHECK(new_job_id("item-master", true, 0xa1b2c3u) == "item-master-upload-00a1b2c3");
  CHECK(new_job_id("inventory-planning", false, 0xffffffffu) == "inventory-planning-run-ffffffff");

  const std::string xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  CHECK(upload_content_type("items.XLSX", "a,b\n") == xlsx);
  CHECK(upload_content_type("upload", std::string("PK\x03\x04rest", 8)) == xlsx);
  CHECK(upload_content_type("items.csv", "Item Number\nA\n") == "text/csv");
  CHECK(upload_content_type("", "") == "text/csv");

  CHECK(upload_file_name("C:\\Users\\plant\\items.csv", "text/csv") == "items.csv");
  CHECK(upload_file_name("/tmp/x/units.xlsx", xlsx) == "units.xlsx");
  CHECK(upload_file_name("", xlsx) == "upload.xlsx");
  CHECK(upload_file_name("", "text/csv") == "upload.csv");
}

TEST_CASE("Jobs: polls are frequent at first, then sparser", "[jobs]") {
  using knosc::daemon::poll_delay;
  CHECK(poll_delay(0s) == 1000ms);
  CHECK(poll_delay(5s) == 1000ms);
  CHECK(poll_delay(60s) == 6000ms);
  CHECK(poll_delay(3600s) == 30000ms);
}

TEST_CASE("Jobs: the local view of a job", "[jobs]") {
  using knosc::daemon::job_view;
  JobRecord job;
  job.job_id = "item-master-upload-0000beef";
  job.trigger = "item-master";
  CHECK(job_view(job).dump() ==
        R"({"trigger":"item-master","job_id":"item-master-upload-0000beef","status":"queued",)"
        R"("rows_processed":0,"errors":[],"completed_at":null})");

  // Forwarded: upstream's object under the id the tool was given.
  job.state = JobState::Forwarded;
  job.upstream_job_id = "item-master-upload-12345678";
  job.upstream_status = nlohmann::ordered_json::parse(
      R"({"trigger":"item-master","job_id":"item-master-upload-12345678","status":"running",)"
      R"("rows_processed":0,"errors":[],"completed_at":null})");
  auto v = job_view(job);
  CHECK(v["job_id"] == "item-master-upload-0000beef");
  CHECK(v["status"] == "running");

  // Failed upstream: its errors stay for polling.
  job.state = JobState::Failed;
  job.upstream_status["status"] = "failed";
  job.upstream_status["errors"] =
      nlohmann::ordered_json::parse(R"([{"row":3,"message":"Unit PARSEC not found."}])");
  v = job_view(job);
  CHECK(v["status"] == "failed");
  CHECK(v["errors"].size() == 1);
  CHECK(v["errors"][0]["row"] == 3);

  // A queued job shows nothing of an earlier word from upstream.
  job.state = JobState::Queued;
  CHECK(job_view(job)["status"] == "queued");

  for (auto s : {JobState::Queued, JobState::Forwarded, JobState::Completed, JobState::Failed})
    CHECK(knosc::daemon::job_state_from(knosc::daemon::to_string(s)) == s);
  CHECK_FALSE(knosc::daemon::job_state_from("running").has_value());
}

TEST_CASE("Jobs: a multipart body holds the file byte for byte", "[jobs][multipart]") {
  knosc::sync::MultipartFile file;
  file.filename = "odd \"name\"\r\n.csv";
  file.content_type = "text/csv\r\nX-Injected: 1";
  const char raw[] = "Item Number\r\n--not-the-boundary\r\n\0binary\xff";
  file.data = std::string(raw, sizeof raw - 1);  // a NUL and a non-UTF-8 byte inside
  const std::string boundary = "knosc-syncd-0123456789abcdef";
  const std::string body = knosc::sync::multipart_form_body(file, boundary);

  auto form = knosc::daemon::parse_multipart("multipart/form-data; boundary=" + boundary, body);
  REQUIRE(form.ok());
  REQUIRE(form->parts.size() == 1);
  const auto* part = form->find("file");
  REQUIRE(part);
  CHECK(std::string(part->data) == file.data);
  CHECK(part->filename == std::optional<std::string>("odd %22name%22%0D%0A.csv"));
  CHECK(part->content_type == "text/csvX-Injected: 1");  // no header can be smuggled in
  CHECK(part->headers.size() == 2);
}

TEST_CASE("Jobs: UpstreamSession sends a multipart upload with the session's cookies and CSRF header",
          "[jobs][multipart]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct Seen {
    std::string content_type, csrf, cookie, filename, data;
    int uploads = 0;
  } seen;
  knosc::daemon::HttpServerLimits limits;
  limits.shutdown_grace_ms = 100;
  knosc::daemon::HttpServer server(
      &loop,
      [&](const knosc::daemon::HttpRequest& req, knosc::daemon::Responder respond) {
        if (req.path == "/api/authenticate") {
          auto r = knosc::daemon::HttpResponse::json(200, R"({"login": true})");
          r.headers.emplace_back("Set-Cookie", "access_token_cookie=tok; Path=/; HttpOnly");
          r.headers.emplace_back("Set-Cookie", "csrf_access_token=csrf-1; Path=/");
          return respond(std::move(r));
        }
        if (req.path == "/api/job/item-master" && req.method == "POST") {
          ++seen.uploads;
          seen.content_type = req.header("content-type").value_or("");
          seen.csrf = req.header("x-xsrf-token").value_or("");
          seen.cookie = req.header("cookie").value_or("");
          auto form = knosc::daemon::parse_multipart(seen.content_type, req.body);
          if (form.ok())
            if (const auto* p = form->find("file")) {
              seen.filename = p->filename.value_or("");
              seen.data = std::string(p->data);
            }
          return respond(knosc::daemon::HttpResponse::json(
              200, R"({"message": "File uploaded. Processing started.", "job_id": "item-master-upload-1", )"
                   R"("status": "queued"})"));
        }
        respond(knosc::daemon::HttpResponse::knosc_error(404, "Not Found", "Route.NotFound"));
      },
      limits);
  REQUIRE(server.listen("127.0.0.1", 0) == 0);
  knosc::sync::HttpClient http(&loop, {}, {});
  knosc::sync::UpstreamSession session(http,
                                       "http://127.0.0.1:" + std::to_string(server.bound_port()) + "/api",
                                       {"sync@acme.example", "pw", std::nullopt});

  knosc::sync::MultipartFile file;
  file.filename = "items.csv";
  file.content_type = "text/csv";
  file.data = "Item Number,Item Description\r\nITEM-1,Widget\r\n";
  std::optional<knosc::sync::ApiResult> result;
  session.call_multipart("POST", "/job/item-master", file,
                         [&](knosc::sync::ApiResult r) { result = std::move(r); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!result && std::chrono::steady_clock::now() < deadline)
    uv_run(&loop, UV_RUN_ONCE);
  REQUIRE(result);
  CHECK(result->ok());
  CHECK(nlohmann::json::parse(result->response.body)["job_id"] == "item-master-upload-1");
  CHECK(seen.uploads == 1);
  CHECK(seen.content_type.rfind("multipart/form-data; boundary=knosc-syncd-", 0) == 0);
  CHECK(seen.csrf == "csrf-1");
  CHECK(seen.cookie.find("access_token_cookie=tok") != std::string::npos);
  CHECK(seen.filename == "items.csv");
  CHECK(seen.data == file.data);

  bool server_closed = false, http_closed = false;
  server.shutdown([&] { server_closed = true; });
  http.close([&] { http_closed = true; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(server_closed);
  CHECK(http_closed);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Jobs: a user polls their own jobs; administrators poll everyone's", "[jobs]") {
  using knosc::daemon::may_see_job;
  JobRecord job;
  job.local_user = "wh1@acme.example";
  knosc::daemon::LocalSession wh1, other, admin;
  wh1.username = "WH1@Acme.example";  // as typed at this login: usernames ignore ASCII case
  other.username = "viewer@acme.example";
  admin.username = "admin@acme.example";
  admin.privileges.role_name = "Administrator";
  CHECK(may_see_job(wh1, job));
  CHECK_FALSE(may_see_job(other, job));
  CHECK(may_see_job(admin, job));
  other.privileges.role_name = "Superuser";
  CHECK(may_see_job(other, job));
}

TEST_CASE("Upload rows: CSV rows outside a granular filter, read as Python's csv module reads them",
          "[jobs][upload_rows]") {
  // A BOM, a header name with spaces (padded, as Knosc strips cells), quoting, CRLF line ends.
  const std::string csv =
      "\xEF\xBB\xBFItem Number, Warehouse Number ,Inventory Quantity\r\n"
      "ITEM-1,WH-01,5\r\n"
      "\"ITEM-2, with a comma\",\"WH-02\",6\r\n"
      "\"ITEM-3 \"\"quoted\"\"\",\" WH-01\xC2\xA0\",7\r\n"  // NBSP stripped as Python's str.strip() does
      "ITEM-4,,8\r\n"                                       // the category empty: not restricted
      "ITEM-5\r\n"                                          // the category missing: not restricted
      "\"ITEM-6\nsecond line\",WH-03,9\r\n"                 // a quoted line break: still one row
      "\r\n"                                                // an empty line counts as a row, as in Knosc
      "ITEM-7,wh-01,1\n";                                   // values compare exactly
  const auto errors = csv_outside(csv);
  CHECK(rows_of(errors) == std::vector<std::int64_t>{3, 7, 9});
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].message ==
        "Not Privileged for this action: Warehouse Number 'WH-02' is outside the rows your role may change.");
  CHECK(errors[1].message.find("'WH-03'") != std::string::npos);

  // A file inside the filter, or a filter on a column the file does not have, passes.
  CHECK(csv_outside("Warehouse Number,Qty\nWH-01,1\n\"WH-01\",2").empty());
  CHECK(csv_outside("Item Number,Qty\nITEM-1,1\n").empty());
  // Header names match without regard to ASCII case (Knosc may match them so).
  CHECK(rows_of(csv_outside("warehouse NUMBER\nWH-02\n")) == std::vector<std::int64_t>{2});
  // Every column headed with the category is checked.
  CHECK(rows_of(csv_outside("Warehouse Number,Warehouse Number\nWH-01,WH-02\n")) ==
        std::vector<std::int64_t>{2});

  // Exclude filters, several filters, and numbers.
  const std::vector<GranularFilter> exclude = {{"Warehouse Number", false, {"WH-02"}}};
  CHECK(rows_of(csv_outside("Warehouse Number\nWH-01\nwh-02\nWH-03\n", exclude)) ==
        std::vector<std::int64_t>{3});
  const std::vector<GranularFilter> two = {{"Warehouse Number", true, {"WH-01", "WH-02"}},
                                           {"Supplier Id", true, {7}}};
  CHECK(rows_of(csv_outside("Supplier Id,Warehouse Number\n7,WH-02\n7.0,WH-01\n8,WH-01\nx,WH-01\n", two)) ==
        std::vector<std::int64_t>{4, 5});
}

TEST_CASE("Upload rows: CSV files that cannot be read exactly are refused whole", "[jobs][upload_rows]") {
  CHECK(unreadable(csv_outside("Warehouse Number\nWH-\xFF\n")));         // not UTF-8
  CHECK(unreadable(csv_outside("Warehouse Number\nWH-01\"x\n")));        // a quote in an unquoted field
  CHECK(unreadable(csv_outside("Warehouse Number\n\"WH-01\"WH-02\n")));  // text after a closing quote
  CHECK(unreadable(csv_outside("Warehouse Number\n\"WH-02\n")));         // a quote left open
  CHECK(unreadable(csv_outside("Warehouse Number\nWH-01\rWH-02\n")));    // a bare CR inside a line
  CHECK(unreadable(csv_outside("\nWarehouse Number\nWH-02\n")));         // the first row is no header
  CHECK(unreadable(csv_outside(std::string("Warehouse Number\nWH-01\0\n", 24))));
  CHECK(unreadable(csv_outside(std::string("PK\x05\x06", 4) + "Warehouse Number\nWH-01\n")));
  // Another separator: a reader that guesses it would find a Warehouse Number column this one cannot.
  CHECK(unreadable(csv_outside("Item Number;Warehouse Number\nITEM-1;WH-02\n")));
  CHECK(unreadable(csv_outside("Item Number\tWarehouse Number\nITEM-1\tWH-02\n")));
  const auto e = csv_outside("\"x\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0].message.find("not sent") != std::string::npos);
}

TEST_CASE("Upload rows: XLSX with inline strings, as libxlsxwriter writes them", "[jobs][upload_rows]") {
  const std::string book = knosc::daemon::build_xlsx(
      {"Item Number", "Warehouse Number", "Inventory Quantity"},
      {nlohmann::ordered_json{
           {"Item Number", "ITEM-1"}, {"Warehouse Number", "WH-01"}, {"Inventory Quantity", 1}},
       nlohmann::ordered_json{
           {"Item Number", "ITEM-2"}, {"Warehouse Number", "WH-02"}, {"Inventory Quantity", 2}},
       nlohmann::ordered_json{{"Item Number", "ITEM-3"}, {"Inventory Quantity", 3}},  // no warehouse
       nlohmann::ordered_json{{"Item Number", "ITEM-4"}, {"Warehouse Number", " WH-01 "}}},
      "inventory");
  const auto errors = xlsx_outside(book);
  REQUIRE(rows_of(errors) == std::vector<std::int64_t>{3});
  CHECK(errors[0].message ==
        "Not Privileged for this action: Warehouse Number 'WH-02' is outside the rows your role may change.");

  std::vector<std::vector<std::vector<std::string>>> rows;
  REQUIRE_FALSE(knosc::daemon::read_xlsx_upload(book, [&](const knosc::daemon::UploadRow& r) {
                  rows.push_back(r.cells);
                }).has_value());
  REQUIRE(rows.size() == 5);
  CHECK(rows[0][1] == std::vector<std::string>{"Warehouse Number"});
  CHECK(rows[3][1].empty());
  CHECK(rows[4][1] == std::vector<std::string>{"WH-01"});
}

TEST_CASE("Upload rows: XLSX with shared strings, rich text and every spelling of a cell",
          "[jobs][upload_rows]") {
  const std::vector<std::string> strings = {
      "<t>Warehouse Number</t>",                                  // 0
      "<t>WH-01</t>",                                             // 1
      "<r><rPr><b/></rPr><t>WH-</t></r><r><t>02</t></r>",         // 2: rich text reads "WH-02"
      "<t>WH-01</t><rPh sb=\"0\" eb=\"1\"><t>ignored</t></rPh>",  // 3: phonetic runs are not text
      "<t>_x0057_H-02</t>",                                       // 4: Excel reads "WH-02"
      "<t xml:space=\"preserve\"> Item Number </t>",              // 5
  };
  const std::string rows =
      R"(<row r="1"><c r="A1" t="s"><v>5</v></c><c r="B1" t="s"><v>0</v></c></row>)"
      R"(<row r="2"><c r="A2" t="inlineStr"><is><t>I-1</t></is></c><c r="B2" t="s"><v>1</v></c></row>)"
      R"(<row r="3"><c t="inlineStr"><is><t>I-2</t></is></c><c t="s"><v>2</v></c></row>)"  // no references
      R"(<row r="4"><c r="B4" t="s"><v>3</v></c></row>)"
      R"(<row r="5"><c r="B5" t="s"><v>4</v></c></row>)"
      R"(<row r="7"><c r="B7" t="inlineStr"><is><r><t>WH-0</t></r><r><t>3</t></r></is></c></row>)"
      R"(<row r="8"><c r="B8" t="str"><f>CONCAT("WH-","04")</f><v>WH-04</v></c></row>)"
      R"(<row r="9"><c r="C9" t="s"><v>1</v></c><c r="B9" t="s"/></row>)";  // out of order: refused below
  const std::string good_rows = rows.substr(0, rows.find("<row r=\"9\""));
  const auto errors = xlsx_outside(shared_string_workbook(good_rows, strings));
  CHECK(rows_of(errors) == std::vector<std::int64_t>{3, 5, 7, 8});
  REQUIRE(errors.size() == 4);
  CHECK(errors[0].message.find("'WH-02'") != std::string::npos);

  // A prefixed namespace reads the same (openpyxl reads it).
  const std::string prefixed = zip_of(
      {{"xl/worksheets/sheet1.xml",
        R"(<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><x:sheetData>)"
        R"(<x:row r="1"><x:c r="A1" t="inlineStr"><x:is><x:t>Warehouse Number</x:t></x:is></x:c></x:row>)"
        R"(<x:row r="2"><x:c r="A2" t="inlineStr"><x:is><x:t>WH&#45;02</x:t></x:is></x:c></x:row>)"
        R"(<x:row r="3"><x:c r="A3" t="inlineStr"><x:is><x:t><![CDATA[WH-01]]></x:t></x:is></x:c></x:row>)"
        R"(</x:sheetData></x:worksheet>)"}});
  CHECK(rows_of(xlsx_outside(prefixed)) == std::vector<std::int64_t>{2});

  // Every worksheet of the workbook is checked, whichever one a reader takes for the first.
  const std::string two_sheets =
      zip_of({{"xl/worksheets/sheet1.xml",
               sheet_xml(R"(<row r="1"><c r="A1" t="inlineStr"><is><t>Notes</t></is></c></row>)")},
              {"xl/worksheets/sheet2.xml",
               sheet_xml(R"(<row r="1"><c r="A1" t="inlineStr"><is><t>Warehouse Number</t></is></c></row>)"
                         R"(<row r="2"><c r="A2" t="inlineStr"><is><t>WH-02</t></is></c></row>)")}});
  const auto two = xlsx_outside(two_sheets);
  REQUIRE(rows_of(two) == std::vector<std::int64_t>{2});
  CHECK(two[0].message.find("(worksheet xl/worksheets/sheet2.xml)") != std::string::npos);

  // Cells or rows a reader could place differently, and parts that are not plain UTF-8 XML, are refused.
  CHECK(unreadable(xlsx_outside(shared_string_workbook(rows, strings))));
  const auto refused = [&](const std::string& sheet_rows) {
    return unreadable(xlsx_outside(shared_string_workbook(sheet_rows, strings)));
  };
  CHECK(refused(
      R"(<row r="1"><c r="B1" t="s"><v>0</v></c></row><row r="1"><c r="B1" t="s"><v>1</v></c></row>)"));
  CHECK(refused(R"(<row r="1"><c r="B2" t="s"><v>0</v></c></row>)"));                // a cell of another row
  CHECK(refused(R"(<row r="1"><c r="AAAAAAAAAAAAAAB1" t="s"><v>0</v></c></row>)"));  // beyond column ZZZ
  CHECK(refused(R"(<row r="2"><c r="B2" t="s"><v>0</v></c></row>)"));                // no header in row 1
  CHECK(refused(R"(<row r="1"><c r="B1" t="s"><v>9</v></c></row>)"));                // no such shared string
  CHECK(refused(R"(<row r="1"><c r="B1" t="s"><v> 0</v></c></row>)"));               // a lenient index
  CHECK(refused(R"(<row r="1"><c r="B1" t="x"><v>0</v></c></row>)"));                // an unknown type
  CHECK(refused(R"(<row r="1"><c r="B1" t="inlineStr"><is><t>Ware<b/>house</t></is></c></row>)"));
  CHECK(refused(R"(<row r="1"><c r="B1" t="s"><v>0</v><v>1</v></c></row>)"));
  CHECK(refused(R"(<row r="1"><c r="B1" t="s"><v>0</v></c></row><row r="2"><c r="B2">&unknown;</c></row>)"));
  CHECK(refused(
      R"(<row r="1"><c r="B1" t="s"><v>0</v></c></row></sheetData><cols><row r="2"/></cols><sheetData>)"));
}

TEST_CASE("Upload rows: SpreadsheetML rows wherever openpyxl would read them", "[jobs][upload_rows]") {
  const std::string header =
      R"(<row r="1"><c r="A1" t="inlineStr"><is><t>Warehouse Number</t></is></c></row>)";
  const auto sheet = [&](const std::string& rows) {
    return zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(rows)}});
  };
  // An attribute is known by its name as written: "x:r" is not "r", so this cell is in column A (openpyxl
  // counts it after the row's last cell), under the header.
  CHECK(rows_of(xlsx_outside(sheet(header + R"(<row r="2"><c xmlns:x="urn:x" x:r="B2" t="inlineStr">)"
                                            R"(<is><t>WH-02</t></is></c></row>)"))) ==
        std::vector<std::int64_t>{2});
  // A row nested in a cell, or SpreadsheetML rows or strings in a part that is no worksheet or string table
  // (a workbook's relationships may still name it so): openpyxl would read them; refused.
  CHECK(unreadable(xlsx_outside(sheet(header + R"(<row r="2"><c r="A2"><row r="3"><c r="A3" t="inlineStr">)"
                                               R"(<is><t>WH-02</t></is></c></row></c></row>)"))));
  const std::string rows_elsewhere = "<notes " + kMain + "><sheetData>" + header + "</sheetData></notes>";
  CHECK(unreadable(xlsx_outside(
      zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(header)}, {"xl/notes.xml", rows_elsewhere}}))));
  const std::string strings_elsewhere = "<notes " + kMain + "><si><t>WH-02</t></si></notes>";
  CHECK(unreadable(xlsx_outside(
      zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(header)}, {"xl/notes.xml", strings_elsewhere}}))));
  CHECK(unreadable(
      xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(header + "<row r=\"2\"><y:c/></row>")}}))));
  // Rows of another namespace, as a drawing anchors a picture, are no cells.
  const std::string drawing =
      R"(<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing">)"
      R"(<xdr:oneCellAnchor><xdr:from><xdr:col>0</xdr:col><xdr:row>1</xdr:row></xdr:from></xdr:oneCellAnchor></xdr:wsDr>)";
  CHECK(xlsx_outside(
            zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(header)}, {"xl/drawings/drawing1.xml", drawing}}))
            .empty());
}

TEST_CASE("Upload rows: workbooks that cannot be read exactly are refused whole", "[jobs][upload_rows]") {
  const std::string rows = R"(<row r="1"><c r="A1" t="inlineStr"><is><t>Warehouse Number</t></is></c></row>)"
                           R"(<row r="2"><c r="A2" t="inlineStr"><is><t>WH-01</t></is></c></row>)";
  const std::string good = zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(rows)}});
  REQUIRE(xlsx_outside(good).empty());

  CHECK(unreadable(xlsx_outside("Warehouse Number\nWH-02\n")));  // not a ZIP
  CHECK(unreadable(xlsx_outside(good.substr(0, good.size() - 10))));
  CHECK(unreadable(xlsx_outside("junk" + good)));  // bytes before the first entry
  std::string flipped = good;
  flipped[60] =
      static_cast<char>(flipped[60] ^ 0x01);  // inside the deflated sheet (after the 54-byte header)
  CHECK(unreadable(xlsx_outside(flipped)));
  CHECK(unreadable(xlsx_outside(zip_of({{"xl/styles.xml", "<styleSheet/>"}}))));  // no worksheet
  CHECK(unreadable(xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(rows)},
                                        {"xl/sharedStrings.xml", "<sst><si><t>a</t></si></sst>"},
                                        {"xl/strings2.xml", "<sst><si><t>b</t></si></sst>"}}))));
  CHECK(unreadable(xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", "<!DOCTYPE w [<!ENTITY wh \"WH-02\">]>" +
                                                                         sheet_xml(rows).substr(55)}}))));
  CHECK(unreadable(
      xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", R"(<?xml version="1.0" encoding="ISO-8859-1"?>)" +
                                                            sheet_xml(rows).substr(55)}}))));
  CHECK(unreadable(xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(rows) + "<worksheet/>"}}))));
  CHECK(unreadable(xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", sheet_xml(rows).substr(0, 200)}}))));
  CHECK(unreadable(xlsx_outside(zip_of({{"xl/worksheets/sheet1.xml", std::string("\xFF\xFE<\0w\0", 6)}}))));
}

TEST_CASE("Upload rows: at most a thousand bad rows are listed", "[jobs][upload_rows]") {
  std::string csv = "Warehouse Number\n";
  for (int i = 0; i < 1005; ++i)
    csv += "WH-02\n";
  const auto errors = csv_outside(csv);
  REQUIRE(errors.size() == knosc::daemon::kMaxListedRowErrors + 1);
  CHECK(errors[999].row == 1001);
  CHECK(errors.back() == UploadRowError{0, "5 more rows are outside the rows your role may change."});
}

TEST_CASE("Upload rows: a row naming a stored record outside the filters is outside", "[jobs][upload_rows]") {
  using knosc::daemon::record_within;
  CHECK(record_within(kWh01, nlohmann::json{{"Warehouse Number", "WH-01"}}));
  CHECK_FALSE(record_within(kWh01, nlohmann::json{{"Warehouse Number", "WH-02"}}));
  CHECK(record_within(kWh01, nlohmann::json{{"Warehouse Number", nullptr}}));
  CHECK(record_within(kWh01, nlohmann::json{{"Item Number", "ITEM-1"}}));

  // PO-7 is a stored purchase order of WH-02: a row naming it may not change it, whatever warehouse it names.
  int asked = 0;
  knosc::daemon::NamedRecords named;
  named.columns = {"PO List Number"};
  named.outside = [&](const std::string& column, const std::string& value) {
    ++asked;
    CHECK(column == "PO List Number");
    return value == "PO-7";
  };
  const std::string csv =
      "PO List Number,Warehouse Number,Item Number\n"
      "PO-1,WH-01,A\n"
      "PO-7,WH-01,A\n"  // moves PO-7 to WH-01
      "PO-7,,B\n"       // names no warehouse
      "PO-8,WH-02,C\n"  // outside by its own warehouse
      "PO-1,WH-01,D\n";
  const auto errors = knosc::daemon::upload_rows_outside(csv, false, kWh01, named);
  CHECK(rows_of(errors) == std::vector<std::int64_t>{3, 4, 5});
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].message ==
        "Not Privileged for this action: PO List Number 'PO-7' names a record outside the rows your role may "
        "change.");
  CHECK(errors[2].message.find("Warehouse Number 'WH-02'") != std::string::npos);
  CHECK(asked == 2);  // once per distinct number (PO-8's row was already outside)
}
