#pragma once
// `knosc-syncd conflicts` and `knosc-syncd resolve`: the conflict inbox and rejected edits from a shell.
//
// Listing reads the replica (read-only, like `status`), running daemon or not. Settling goes through the
// running daemon, which alone writes the replica and can fetch Knosc's version of what it gives back: the CLI
// posts to the loopback's /syncd routes with the CLI token the daemon writes at start to
// <state_dir>/cli.token (mode 0600, readable only by the account that runs the daemon).

#include <string>
#include <vector>

#include "daemon/config.hpp"

namespace knosc::daemon {

std::string cli_token_path(const Config& config);
// Writes a fresh random token (0600) and returns it; the loopback accepts it as a bearer token on /syncd.
std::string write_cli_token(const Config& config);

int cmd_conflicts(const Config& config, bool as_json);
// args: <conflict-id> keep-local|keep-remote|merged [--body FILE]
//   or: --entry <seq> retry [--body FILE] | --entry <seq> drop
int cmd_resolve(const Config& config, const std::vector<std::string>& args);

}  // namespace knosc::daemon
