#pragma once
// knosc-syncd's configuration file (TOML). Loading validates every key: an unknown key or a bad value is an
// error naming the key and its line, so a typo can never silently fall back to a default.

#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "sync/puller.hpp"

namespace knosc::daemon {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Config {
  std::string path;  // the file this came from

  // [upstream]
  std::string base_url;  // e.g. http://127.0.0.1:9000/api
  std::string username;
  std::string password_file;     // mode 0600 or stricter; or systemd's $CREDENTIALS_DIRECTORY/password
  std::string totp_secret_file;  // optional, same rules
  std::string ca_file;
  bool verify_tls = true;
  // Every transfer: connect within this, and never a stretch this long without a byte moving. A cap on the
  // whole exchange (0: none) would cut a large page on a slow link, so by default there is none.
  int connect_timeout_seconds = 5;
  int no_progress_timeout_seconds = 10;
  int transfer_timeout_seconds = 0;
  // The link's probe (sync/link_state.hpp): while online, once nothing was answered for probe_idle_seconds;
  // while offline or in doubt, every probe_interval_seconds; each gets probe_timeout_seconds to answer. A
  // hang is reported offline within probe_idle + probe_timeout (8 s), a return within probe_interval (2 s).
  int probe_idle_seconds = 5;
  int probe_interval_seconds = 2;
  int probe_timeout_seconds = 3;

  // [storage]
  std::string state_dir;

  // [loopback]
  std::string loopback_host = "127.0.0.1";
  int loopback_port = 8470;
  int reader_threads = 2;
  int response_cache_mb = 32;  // answers kept for repeated reads (daemon/response_cache.hpp); 0: none
  std::int64_t access_ttl_seconds = 15 * 60;
  std::int64_t refresh_ttl_seconds = 30 * 24 * 3600;
  std::int64_t offline_login_ttl_seconds = 7 * 24 * 3600;
  // The longest a login (and every other loopback call that needs Knosc's own answer: password routes,
  // analytics not cached yet) waits for Knosc before it is answered without it.
  int login_wait_ms = 1500;
  // How long a tool waits for a change's push before it gets the pending answer. Long enough for a healthy
  // link (a read and a write to Knosc, then the record read back: a few hundred ms), short enough that a tool
  // never notices a link that hangs. 0: never wait (every change answered as pending).
  int write_wait_ms = 1500;

  // [sync]
  sync::PullOptions pull;

  // [push]
  bool conflict_tickets = false;       // raise a Knosc issue-tracker ticket for each conflict
  int push_stall_after_seconds = 600;  // the outbox watchdog's threshold

  // [log]
  std::string log_level = "info";

  std::string replica_path() const { return state_dir + "/replica.sqlite3"; }
  std::string lock_path() const { return state_dir + "/knosc-syncd.lock"; }
};

// Reads and validates the file. Throws ConfigError("FILE:LINE: message").
Config load_config(const std::string& path);

// Reads a secret file: refused unless it is a regular file with no group or other permissions. Under systemd
// (LoadCredential=), $CREDENTIALS_DIRECTORY/<credential_name> is used when present instead. Trailing newlines
// are removed. Throws ConfigError; the secret never appears in a message.
std::string read_secret(const std::string& path, const std::string& credential_name);

}  // namespace knosc::daemon
