#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "daemon/config.hpp"

using knosc::daemon::ConfigError;
using knosc::daemon::load_config;
using knosc::daemon::read_secret;

namespace {
struct TempFiles {
  std::filesystem::path dir;
  TempFiles() {
    std::random_device rd;
    dir =
        std::filesystem::temp_directory_path() / ("knosc-cfg-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(dir);
  }
  ~TempFiles() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    auto p = (dir / name).string();
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
};

const std::string kGood = R"(
[upstream]
base_url = "http://127.0.0.1:9000/api/"
username = "sync@acme.example"
password_file = "/run/secret"

[storage]
state_dir = "/var/lib/knosc-syncd"

[loopback]
host = "127.0.0.1"
port = 8470

[sync]
interval_seconds = 60
page_size = 1000

[sync.resources.purchase-order]
interval_seconds = 30

[sync.resources.role]
enabled = false
)";

std::string error_of(const std::string& text) {
  TempFiles f;
  auto p = f.write("c.toml", text);
  try {
    load_config(p);
  } catch (const ConfigError& e) {
    std::string m = e.what();
    return m.substr(m.find(".toml") + 5);  // drop the temporary directory
  }
  return "(accepted)";
}
}  // namespace

TEST_CASE("a complete config file loads") {
  TempFiles f;
  auto c = load_config(f.write("c.toml", kGood));
  CHECK(c.base_url == "http://127.0.0.1:9000/api");  // trailing slash removed
  CHECK(c.username == "sync@acme.example");
  CHECK(c.loopback_port == 8470);
  CHECK(c.pull.page_size == 1000);
  CHECK(c.pull.interval_seconds == 60);
  CHECK(c.pull.resources.at("purchase-order").interval_seconds == 30);
  CHECK_FALSE(c.pull.resources.at("role").enabled);
  CHECK(c.verify_tls);
  CHECK(c.response_cache_mb == 32);  // the default
  // The link's defaults: a hang is offline within probe_idle + probe_timeout = 8 s; no cap on a whole
  // exchange, so a large page on a slow link is never cut while its bytes move.
  CHECK(c.connect_timeout_seconds == 5);
  CHECK(c.no_progress_timeout_seconds == 10);
  CHECK(c.transfer_timeout_seconds == 0);
  CHECK(c.probe_idle_seconds == 5);
  CHECK(c.probe_interval_seconds == 2);
  CHECK(c.probe_timeout_seconds == 3);
  CHECK(c.replica_path() == "/var/lib/knosc-syncd/replica.sqlite3");
}

TEST_CASE("the link's timeouts and probe are configurable, and older files keep working") {
  TempFiles f;
  const std::string head =
      "[upstream]\nbase_url = \"http://x/api\"\nusername = \"u\"\npassword_file = \"p\"\n";
  const std::string storage = "[storage]\nstate_dir = \"/s\"\n";
  auto old = load_config(
      f.write("old.toml", head + "connect_timeout_seconds = 10\ntransfer_timeout_seconds = 120\n" + storage));
  CHECK(old.connect_timeout_seconds == 10);
  CHECK(old.transfer_timeout_seconds == 120);
  auto c = load_config(f.write("new.toml", head +
                                               "no_progress_timeout_seconds = 20\nprobe_idle_seconds = 30\n"
                                               "probe_interval_seconds = 5\nprobe_timeout_seconds = 4\n" +
                                               storage));
  CHECK(c.no_progress_timeout_seconds == 20);
  CHECK(c.probe_idle_seconds == 30);
  CHECK(c.probe_interval_seconds == 5);
  CHECK(c.probe_timeout_seconds == 4);
}

TEST_CASE("config mistakes name the key and the line") {
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {kGood + "\n[extra]\n", ":24: unknown key extra"},
      {"[upstream]\nbase_url = \"http://x/api\"\nusername = \"u\"\npassword_file = \"p\"\npasword = "
       "\"oops\"\n[storage]\nstate_dir = \"/s\"\n",
       ":5: unknown key upstream.pasword"},
      {"[upstream]\nbase_url = \"ftp://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n",
       ":2: upstream.base_url must start with http:// or https://"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[sync]\npage_size = 5000\n",
       ":8: sync.page_size must be between 1 and 1000 (got 5000)"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[loopback]\nport = \"80\"\n",
       ":8: loopback.port must be an integer"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[sync.resources.pruchase-order]\nenabled = true\n",
       ":7: sync.resources.pruchase-order is not a resource knosc-syncd knows"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[sync.resources.item-master]\nenabld = true\n",
       ":8: unknown key sync.resources.item-master.enabld"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n",
       ": the [storage] table is required"},
      {"[upstream]\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = \"/s\"\n",
       ": upstream.base_url is required"},
      {"[upstream\n", ":1: "},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[log]\nlevel = \"loud\"\n",
       ":8: log.level must be one of"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[push]\nconflict_tickets = \"yes\"\n",
       ":8: push.conflict_tickets must be"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[push]\nstall_after_seconds = 1\n",
       ":8: push.stall_after_seconds must be between 10 and"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[push]\nconflict_ticket = true\n",
       ":8: unknown key push.conflict_ticket"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n[storage]\nstate_dir = "
       "\"/s\"\n[loopback]\nresponse_cache_mb = -1\n",
       ":8: loopback.response_cache_mb must be between 0 and 4096 (got -1)"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n"
       "transfer_timeout_seconds = -1\n[storage]\nstate_dir = \"/s\"\n",
       ":5: upstream.transfer_timeout_seconds must be between 0 and 86400 (got -1)"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n"
       "no_progress_timeout_seconds = 0\n[storage]\nstate_dir = \"/s\"\n",
       ":5: upstream.no_progress_timeout_seconds must be between 1 and 3600 (got 0)"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n"
       "probe_timeout_seconds = 61\n[storage]\nstate_dir = \"/s\"\n",
       ":5: upstream.probe_timeout_seconds must be between 1 and 60 (got 61)"},
      {"[upstream]\nbase_url = \"http://x\"\nusername = \"u\"\npassword_file = \"p\"\n"
       "probe_intervall_seconds = 2\n[storage]\nstate_dir = \"/s\"\n",
       ":5: unknown key upstream.probe_intervall_seconds"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    CHECK_THAT(error_of(c.text), Catch::Matchers::StartsWith(c.expected));
  }
}

TEST_CASE("secret files must be 0600 or stricter and never appear in messages") {
  TempFiles f;
  auto good = f.write("pw", "s3cret-value\n", 0600);
  CHECK(read_secret(good, "password") == "s3cret-value");
  auto loose = f.write("pw2", "s3cret-value\n", 0644);
  try {
    read_secret(loose, "password");
    FAIL("accepted a world-readable secret");
  } catch (const ConfigError& e) {
    std::string m = e.what();
    CHECK_THAT(m, Catch::Matchers::Contains("mode 0644") && Catch::Matchers::Contains("0600 or stricter"));
    CHECK(m.find("s3cret") == std::string::npos);
  }
  CHECK_THROWS_AS(read_secret(f.write("empty", "", 0600), "password"), ConfigError);
  CHECK_THROWS_AS(read_secret((f.dir / "missing").string(), "password"), ConfigError);
}

TEST_CASE("under systemd the credential directory supplies the secret") {
  TempFiles f;
  f.write("password", "from-systemd\n", 0400);
  ::setenv("CREDENTIALS_DIRECTORY", f.dir.c_str(), 1);
  CHECK(read_secret("/nonexistent/pw", "password") == "from-systemd");
  ::unsetenv("CREDENTIALS_DIRECTORY");
}

TEST_CASE("[loopback] login_wait_ms bounds the wait for Knosc on logins; 1500 ms by default") {
  TempFiles f;
  const std::string head =
      "[upstream]\nbase_url = \"http://x/api\"\nusername = \"u\"\npassword_file = \"p\"\n"
      "[storage]\nstate_dir = \"/s\"\n";
  CHECK(load_config(f.write("default.toml", head)).login_wait_ms == 1500);
  CHECK(load_config(f.write("set.toml", head + "[loopback]\nlogin_wait_ms = 800\n")).login_wait_ms == 800);
  CHECK(error_of(head + "[loopback]\nlogin_wait_ms = 10\n").find("loopback.login_wait_ms") !=
        std::string::npos);
  CHECK(error_of(head + "[loopback]\nlogin_wait_ms = \"fast\"\n").find("loopback.login_wait_ms") !=
        std::string::npos);
}
