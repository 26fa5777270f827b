#include "daemon/config.hpp"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "schema/catalog.hpp"

namespace knosc::daemon {
namespace {

class TableReader {
 public:
  TableReader(const std::string& file, const toml::table& table, std::string prefix)
      : file_(file), table_(table), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) const {
    throw ConfigError(file_ + ":" + std::to_string(n.source().begin.line) + ": " + prefix_ + key + " " +
                      what);
  }

  const toml::node* get(const std::string& key) {
    known_.insert(key);
    return table_.get(key);
  }

  std::optional<std::string> str(const std::string& key, bool required = false) {
    const toml::node* n = get(key);
    if (!n) {
      if (required) throw ConfigError(file_ + ": " + prefix_ + key + " is required");
      return std::nullopt;
    }
    auto v = n->value<std::string>();
    if (!v) fail(*n, key, "must be a string");
    if (required && v->empty()) fail(*n, key, "must not be empty");
    return v;
  }

  std::optional<bool> boolean(const std::string& key) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    auto v = n->value<bool>();
    if (!v) fail(*n, key, "must be true or false");
    return v;
  }

  std::optional<int> integer(const std::string& key, std::int64_t min, std::int64_t max) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    auto v = n->value_exact<std::int64_t>();
    if (!v) fail(*n, key, "must be an integer");
    if (*v < min || *v > max)
      fail(*n, key,
           "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
               std::to_string(*v) + ")");
    return static_cast<int>(*v);
  }

  const toml::table* table(const std::string& key) {
    const toml::node* n = get(key);
    if (!n) return nullptr;
    const toml::table* t = n->as_table();
    if (!t) fail(*n, key, "must be a table");
    return t;
  }

  void reject_unknown() const {
    for (const auto& [k, node] : table_) {
      const std::string key(k.str());
      if (!known_.count(key))
        throw ConfigError(file_ + ":" + std::to_string(node.source().begin.line) + ": unknown key " +
                          prefix_ + key);
    }
  }

 private:
  const std::string& file_;
  const toml::table& table_;
  std::string prefix_;
  std::set<std::string> known_;
};

}  // namespace

Config load_config(const std::string& path) {
  Config c;
  c.path = path;
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    if (e.source().begin.line == 0) throw ConfigError(path + ": " + std::string(e.description()));
    throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ": " +
                      std::string(e.description()));
  }
  TableReader top(path, root, "");

  if (const auto* up = top.table("upstream")) {
    TableReader r(path, *up, "upstream.");
    c.base_url = *r.str("base_url", true);
    if (c.base_url.rfind("http://", 0) != 0 && c.base_url.rfind("https://", 0) != 0)
      r.fail(*up->get("base_url"), "base_url", "must start with http:// or https://");
    while (!c.base_url.empty() && c.base_url.back() == '/')
      c.base_url.pop_back();
    c.username = *r.str("username", true);
    c.password_file = r.str("password_file").value_or("");
    c.totp_secret_file = r.str("totp_secret_file").value_or("");
    c.ca_file = r.str("ca_file").value_or("");
    c.verify_tls = r.boolean("verify_tls").value_or(true);
    c.connect_timeout_seconds =
        r.integer("connect_timeout_seconds", 1, 600).value_or(c.connect_timeout_seconds);
    c.no_progress_timeout_seconds =
        r.integer("no_progress_timeout_seconds", 1, 3600).value_or(c.no_progress_timeout_seconds);
    c.transfer_timeout_seconds =
        r.integer("transfer_timeout_seconds", 0, 24 * 3600).value_or(c.transfer_timeout_seconds);
    c.probe_idle_seconds = r.integer("probe_idle_seconds", 1, 3600).value_or(c.probe_idle_seconds);
    c.probe_interval_seconds = r.integer("probe_interval_seconds", 1, 60).value_or(c.probe_interval_seconds);
    c.probe_timeout_seconds = r.integer("probe_timeout_seconds", 1, 60).value_or(c.probe_timeout_seconds);
    r.reject_unknown();
  } else {
    throw ConfigError(path + ": the [upstream] table is required");
  }

  if (const auto* st = top.table("storage")) {
    TableReader r(path, *st, "storage.");
    c.state_dir = *r.str("state_dir", true);
    r.reject_unknown();
  } else {
    throw ConfigError(path + ": the [storage] table is required");
  }

  if (const auto* lb = top.table("loopback")) {
    TableReader r(path, *lb, "loopback.");
    c.loopback_host = r.str("host").value_or(c.loopback_host);
    c.loopback_port = r.integer("port", 0, 65535).value_or(c.loopback_port);
    c.reader_threads = r.integer("reader_threads", 1, 64).value_or(c.reader_threads);
    c.response_cache_mb = r.integer("response_cache_mb", 0, 4096).value_or(c.response_cache_mb);
    c.access_ttl_seconds =
        r.integer("access_ttl_seconds", 10, 24 * 3600).value_or(static_cast<int>(c.access_ttl_seconds));
    c.refresh_ttl_seconds = r.integer("refresh_ttl_seconds", 60, 365 * 24 * 3600)
                                .value_or(static_cast<int>(c.refresh_ttl_seconds));
    c.offline_login_ttl_seconds = r.integer("offline_login_ttl_seconds", 0, 365 * 24 * 3600)
                                      .value_or(static_cast<int>(c.offline_login_ttl_seconds));
    c.login_wait_ms = r.integer("login_wait_ms", 50, 120'000).value_or(c.login_wait_ms);
    c.write_wait_ms = r.integer("write_wait_ms", 0, 60'000).value_or(c.write_wait_ms);
    r.reject_unknown();
  }

  if (const auto* sy = top.table("sync")) {
    TableReader r(path, *sy, "sync.");
    c.pull.interval_seconds = r.integer("interval_seconds", 1, 7 * 24 * 3600);
    // Knosc clamps pages at 1000 rows; a larger page size would make every page look like the last one.
    c.pull.page_size = r.integer("page_size", 1, 1000).value_or(c.pull.page_size);
    c.pull.max_concurrent_requests =
        r.integer("max_concurrent_requests", 1, 64).value_or(c.pull.max_concurrent_requests);
    c.pull.nested_refresh_seconds = r.integer("nested_refresh_seconds", 1, 30 * 24 * 3600);
    if (auto ms = r.integer("backoff_base_ms", 10, 3'600'000))
      c.pull.backoff.base = std::chrono::milliseconds(*ms);
    if (auto ms = r.integer("backoff_cap_ms", 10, 24 * 3'600'000))
      c.pull.backoff.cap = std::chrono::milliseconds(*ms);
    if (const auto* res = r.table("resources")) {
      for (const auto& [name_key, node] : *res) {
        const std::string name(name_key.str());
        if (!schema::Catalog::builtin().find(name))
          throw ConfigError(path + ":" + std::to_string(node.source().begin.line) + ": sync.resources." +
                            name + " is not a resource knosc-syncd knows");
        const toml::table* t = node.as_table();
        if (!t)
          throw ConfigError(path + ":" + std::to_string(node.source().begin.line) + ": sync.resources." +
                            name + " must be a table");
        TableReader rr(path, *t, "sync.resources." + name + ".");
        sync::ResourcePullSettings s;
        s.enabled = rr.boolean("enabled").value_or(true);
        s.interval_seconds = rr.integer("interval_seconds", 1, 7 * 24 * 3600);
        s.page_size = rr.integer("page_size", 1, 1000);
        s.nested_refresh_seconds = rr.integer("nested_refresh_seconds", 1, 30 * 24 * 3600);
        rr.reject_unknown();
        c.pull.resources[name] = s;
      }
    }
    r.reject_unknown();
  }

  if (const auto* pu = top.table("push")) {
    TableReader r(path, *pu, "push.");
    c.conflict_tickets = r.boolean("conflict_tickets").value_or(c.conflict_tickets);
    c.push_stall_after_seconds =
        r.integer("stall_after_seconds", 10, 7 * 24 * 3600).value_or(c.push_stall_after_seconds);
    r.reject_unknown();
  }

  if (const auto* lg = top.table("log")) {
    TableReader r(path, *lg, "log.");
    c.log_level = r.str("level").value_or(c.log_level);
    static const std::set<std::string> levels = {"trace", "debug",    "info", "warn",
                                                 "error", "critical", "off"};
    if (!levels.count(c.log_level))
      r.fail(*lg->get("level"), "level", "must be one of trace, debug, info, warn, error");
    r.reject_unknown();
  }

  top.reject_unknown();
  if (c.password_file.empty() && !std::getenv("CREDENTIALS_DIRECTORY"))
    throw ConfigError(
        path + ": upstream.password_file is required (or run under systemd with LoadCredential=password)");
  return c;
}

std::string read_secret(const std::string& path, const std::string& credential_name) {
  std::string file = path;
  if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY")) {
    // systemd's LoadCredential= places the secret in a private, read-only directory for this service only.
    std::string candidate = std::string(dir) + "/" + credential_name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0) file = candidate;
  }
  if (file.empty()) throw ConfigError("no file holds the " + credential_name);
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw ConfigError(file + ": cannot read the " + credential_name + " file");
  if (!S_ISREG(st.st_mode))
    throw ConfigError(file + ": the " + credential_name + " file must be a regular file");
  if ((st.st_mode & 077) != 0) {
    std::ostringstream mode;
    mode << std::oct << (st.st_mode & 0777);
    throw ConfigError(file + ": the " + credential_name + " file has mode 0" + mode.str() +
                      "; it must be 0600 or stricter (chmod 600 " + file + ")");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(file + ": cannot open the " + credential_name + " file");
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r'))
    secret.pop_back();
  if (secret.empty()) throw ConfigError(file + ": the " + credential_name + " file is empty");
  return secret;
}

}  // namespace knosc::daemon
