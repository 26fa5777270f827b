// Upload jobs: the import order, the forwarder's choice of the next upload, the local view of a job, and the
// multipart body the forwarder sends upstream (built, parsed back, and sent through UpstreamSession to a fake
// Knosc on the test's own loop).

#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/http_server.hpp"
#include "daemon/jobs.hpp"
#include "daemon/multipart.hpp"
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
