#include "daemon/cli_conflicts.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "daemon/service.hpp"
#include "daemon/status_report.hpp"
#include "replica/outbox.hpp"

namespace knosc::daemon {
namespace {

using Json = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

std::string cli_token_path(const Config& config) {
  return config.state_dir + "/cli.token";
}

std::string write_cli_token(const Config& config) {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("no randomness for the CLI token");
  static const char* hex = "0123456789abcdef";
  std::string token;
  for (unsigned char c : raw) {
    token += hex[c >> 4];
    token += hex[c & 15];
  }
  const auto path = cli_token_path(config);
  const auto tmp = path + ".tmp";
  // Created 0600 from the start (never briefly readable by others), then renamed over the old one.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp);
  ::fchmod(fd, 0600);
  const bool ok = ::write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
  return token;
}

int cmd_conflicts(const Config& config, bool as_json) {
  try {
    replica::Replica rep(config.replica_path(), schema::Catalog::builtin(), replica::Replica::Mode::ReadOnly);
    Json out = Json::object();
    out["conflicts"] = Json::array();
    for (const auto& c : replica::conflict_rows(rep, false, 100000)) {
      Json j;
      j["id"] = c.id;
      j["resource"] = c.resource;
      j["record_id"] = replica::to_string(c.record_id);
      j["kind"] = c.kind;
      j["fields"] = c.fields;
      j["base"] = c.base;
      j["local"] = c.local;
      j["remote"] = c.remote;
      j["created_at"] = iso8601_utc(c.created_at);
      out["conflicts"].push_back(std::move(j));
    }
    out["rejected"] = Json::array();
    for (const auto& e : replica::open_entries(rep, 0, 100000)) {
      if (e.state != replica::OutboxState::Rejected) continue;
      Json j;
      j["seq"] = e.seq;
      j["resource"] = e.resource;
      j["record_id"] = replica::to_string(e.record_id);
      j["method"] = e.method;
      j["path"] = e.path;
      j["request"] = e.request.value_or(Json());
      j["error"] = e.last_error ? Json::parse(*e.last_error, nullptr, false) : Json();
      j["local_user"] = e.local_user;
      out["rejected"].push_back(std::move(j));
    }
    if (as_json) {
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    if (out["conflicts"].empty() && out["rejected"].empty()) {
      std::cout << "No conflicts and no rejected edits.\n";
      return 0;
    }
    for (const auto& c : out["conflicts"]) {
      std::cout << "conflict " << c["id"].get<std::int64_t>() << ": " << c["resource"].get<std::string>()
                << " " << c["record_id"].get<std::string>() << " (" << c["kind"].get<std::string>() << ")\n";
      for (const auto& f : c["fields"])
        std::cout << "  " << f.value("key", std::string("(record)")) << ": base "
                  << f.value("base", Json()).dump() << ", local " << f.value("local", Json()).dump()
                  << ", Knosc " << f.value("remote", Json()).dump() << "\n";
    }
    for (const auto& e : out["rejected"])
      std::cout << "rejected edit " << e["seq"].get<std::int64_t>() << ": " << e["method"].get<std::string>()
                << " " << e["path"].get<std::string>() << " — " << e["error"].dump() << "\n";
    std::cout << "Settle with: knosc-syncd resolve --config FILE <conflict-id> keep-local|keep-remote|merged "
                 "[--body FILE], or --entry <seq> retry [--body FILE] | drop\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "knosc-syncd: %s: %s\n", config.replica_path().c_str(), e.what());
    return 1;
  }
  return 0;
}

int cmd_resolve(const Config& config, const std::vector<std::string>& args) {
  std::string id, action, body_file;
  bool entry = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--entry") {
      entry = true;
    } else if (args[i] == "--body" && i + 1 < args.size()) {
      body_file = args[++i];
    } else if (id.empty()) {
      id = args[i];
    } else if (action.empty()) {
      action = args[i];
    } else {
      std::fprintf(stderr, "knosc-syncd: unexpected argument '%s'\n", args[i].c_str());
      return 2;
    }
  }
  const bool known = entry ? (action == "retry" || action == "drop")
                           : (action == "keep-local" || action == "keep-remote" || action == "merged");
  if (id.empty() || !known || id.find_first_not_of("0123456789") != std::string::npos) {
    std::fprintf(stderr,
                 "knosc-syncd: resolve needs <conflict-id> keep-local|keep-remote|merged [--body FILE], or "
                 "--entry <seq> retry [--body FILE] | drop\n");
    return 2;
  }
  Json request = Json::object();
  if (!entry) request["resolution"] = action;
  try {
    if (!body_file.empty()) {
      auto body = Json::parse(read_file(body_file), nullptr, false);
      if (body.is_discarded() || !body.is_object()) {
        std::fprintf(stderr, "knosc-syncd: %s does not hold a JSON object\n", body_file.c_str());
        return 2;
      }
      request["body"] = std::move(body);
    } else if (action == "merged") {
      std::fprintf(stderr, "knosc-syncd: a merged resolution needs --body FILE with the merged record\n");
      return 2;
    }
    if (!StateDirLock::held_by_someone(config.lock_path())) {
      std::fprintf(
          stderr,
          "knosc-syncd: the daemon is not running; start it ('knosc-syncd run --config FILE'): it settles "
          "conflicts because it must fetch Knosc's version of what it gives back\n");
      return 1;
    }
    replica::Replica rep(config.replica_path(), schema::Catalog::builtin(), replica::Replica::Mode::ReadOnly);
    auto base = rep.state("loopback_base");
    if (!base) throw std::runtime_error("the daemon has not published its loopback address yet");
    std::string root = base->substr(0, base->size() - 4);  // drop "/api"
    const std::string url =
        root + (entry ? "/syncd/outbox/" + id + "/" + action : "/syncd/conflicts/" + id + "/resolve");
    const std::string token = read_file(cli_token_path(config));
    CURL* curl = curl_easy_init();
    if (!curl) throw std::runtime_error("curl_easy_init failed");
    std::string answer;
    const std::string payload = request.dump();
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    const auto rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK)
      throw std::runtime_error(std::string("the daemon did not answer: ") + curl_easy_strerror(rc));
    if (status != 200) {
      auto err = Json::parse(answer, nullptr, false);
      std::fprintf(stderr, "knosc-syncd: refused (%ld): %s\n", status,
                   err.is_object() ? err.value("Message", answer).c_str() : answer.c_str());
      return 1;
    }
    std::cout << "Done.\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "knosc-syncd: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace knosc::daemon
