// Positionals that must reach `lever` exactly as written.
//
// CLI11 reads a positional of a list option written as "[a,b]" as the list's
// items: `lever invoke /s/m '[1,2]'` would send two arguments, '[]' none, and
// '[[1,2],[3]]' pieces that are not JSON. The original CLI sends every JSON
// argument whole (reference §9), and `lever up` must hand leverd its flags
// unchanged. So those positionals never reach CLI11's list parsing:
// TakeRawArgs walks the command line the way CLI11 will (global and
// subcommand options, their values, `--`, subcommand names) and takes out, as
// written, every positional of a raw subcommand after its named ones.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lever::cli {

struct RawSubcommand {
  const CLI::App* app = nullptr;
  // Positionals CLI11 still parses before the raw ones (the URL of invoke).
  size_t named = 0;
  // Unknown flags (and everything after `--`) are raw too: `lever up` hands
  // them to leverd. Otherwise an unknown flag stays for CLI11 to refuse.
  bool unknown_flags_are_raw = false;
};

struct RawArgs {
  std::vector<std::string> argv;  // for CLI11, argv[0] included
  std::vector<std::string> raw;   // taken out, in order, as written
  const CLI::App* from = nullptr; // the raw subcommand they belong to, or null
};

// `app` must be fully declared (options and subcommands) before the call.
RawArgs TakeRawArgs(const CLI::App& app, const std::vector<RawSubcommand>& subcommands, int argc,
                    const char* const* argv);

}  // namespace lever::cli
