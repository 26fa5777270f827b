// knosc-syncd: keeps a local SQLite replica of a Knosc tenant and (later) serves it on a loopback API.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "daemon/cli_conflicts.hpp"
#include "daemon/config.hpp"
#include "daemon/service.hpp"
#include "daemon/status_report.hpp"
#include "replica/replica.hpp"

namespace {

constexpr const char* kUsage = R"(usage:
  knosc-syncd run --config FILE            run the daemon (mirror the tenant, serve the loopback API)
  knosc-syncd status --config FILE [--json]  show what the replica holds per resource
  knosc-syncd conflicts --config FILE [--json]  list conflicts and rejected edits waiting for a person
  knosc-syncd resolve --config FILE <conflict-id> keep-local|keep-remote|merged [--body FILE]
  knosc-syncd resolve --config FILE --entry <seq> retry [--body FILE] | drop
  knosc-syncd --version
  knosc-syncd --help
)";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "knosc-syncd: %s\n%s", what.c_str(), kUsage);
  return 2;
}

int cmd_status(const std::string& config_path, bool as_json) {
  using namespace knosc;
  daemon::Config config;
  try {
    config = daemon::load_config(config_path);
  } catch (const daemon::ConfigError& e) {
    std::fprintf(stderr, "knosc-syncd: %s\n", e.what());
    return 1;
  }
  FILE* probe = std::fopen(config.replica_path().c_str(), "rb");
  if (!probe) {
    std::fprintf(stderr,
                 "knosc-syncd: no replica at %s yet; start the daemon with 'knosc-syncd run --config %s'\n",
                 config.replica_path().c_str(), config_path.c_str());
    return 1;
  }
  std::fclose(probe);
  try {
    replica::Replica rep(config.replica_path(), schema::Catalog::builtin(), replica::Replica::Mode::ReadOnly);
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    const auto st = rep.status();
    const bool running = daemon::StateDirLock::held_by_someone(config.lock_path());
    if (as_json) {
      std::cout << daemon::status_json(st, running).dump(2) << "\n";
    } else {
      std::cout << daemon::status_text(st, running, now);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "knosc-syncd: %s: %s\n", config.replica_path().c_str(), e.what());
    return 1;
  }
  return 0;
}

int cmd_run(const std::string& config_path) {
  using namespace knosc;
  daemon::Config config;
  try {
    config = daemon::load_config(config_path);
  } catch (const daemon::ConfigError& e) {
    std::fprintf(stderr, "knosc-syncd: %s\n", e.what());
    return 1;
  }
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  return daemon::run_daemon(config);
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr (journald under systemd); stdout is kept for command output.
  spdlog::set_default_logger(spdlog::stderr_color_mt("knosc-syncd"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("a command is required");
  const std::string cmd = args[0];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("knosc-syncd %s\n", KNOSC_VERSION);
    return 0;
  }
  std::string config_path;
  bool as_json = false;
  std::vector<std::string> rest;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i] == "--json" && (cmd == "status" || cmd == "conflicts")) {
      as_json = true;
    } else if (cmd == "resolve") {
      rest.push_back(args[i]);
    } else {
      return usage_error("unexpected argument '" + args[i] + "'");
    }
  }
  if (cmd != "run" && cmd != "status" && cmd != "conflicts" && cmd != "resolve")
    return usage_error("unknown command '" + cmd + "'");
  if (config_path.empty()) return usage_error(cmd + " needs --config FILE");
  if (cmd == "run") return cmd_run(config_path);
  if (cmd == "status") return cmd_status(config_path, as_json);
  knosc::daemon::Config config;
  try {
    config = knosc::daemon::load_config(config_path);
  } catch (const knosc::daemon::ConfigError& e) {
    std::fprintf(stderr, "knosc-syncd: %s\n", e.what());
    return 1;
  }
  if (cmd == "conflicts") return knosc::daemon::cmd_conflicts(config, as_json);
  return knosc::daemon::cmd_resolve(config, rest);
}
