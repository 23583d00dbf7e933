// leverd's config file (--config; the package's /etc/lever/leverd.conf),
// read and written through CLI11's config-file support: every flag can be a
// key, and the command line overrides the file.
//
// The format is the part of TOML that flags need:
//   # a comment
//   listen = "0.0.0.0:8080"     # a basic string: \" \\ \t \n \r \b \f \uXXXX \UXXXXXXXX
//   js-runner = '/opt/x/lever-serve'   # a literal string: no escapes
//   max-instances = 32          # a bare value (number, true, false, or a word)
// Keys are the flag names without "--" ("_" may stand for "-"). Each key once.
// CLI11's own reader splits values at commas and spaces, reads a value that
// starts with '[' as a list and cuts a quoted value at '#'; values here are
// taken exactly as written instead. Sections and arrays are refused (no
// leverd flag takes a list), as are text after a value, a file over 1 MiB and
// a line over 64 KiB: a clear error, never a silently different value.
#pragma once

#include <istream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lever::leverd {

class ConfigFile final : public CLI::Config {
 public:
  static constexpr size_t kMaxBytes = 1 << 20;
  static constexpr size_t kMaxLineBytes = 64 << 10;

  // With `app`, a key that is not one of its configurable flags is an error
  // naming the line (CLI11 alone ignores it, or says "INI was not able to
  // parse"). `app` must outlive this object.
  explicit ConfigFile(const CLI::App* app = nullptr) : app_(app) {}

  // Throws CLI::ConfigError naming the line.
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
  // Every configurable flag of `app` (no subcommands), with its value or,
  // with default_also, its default; strings quoted so that from_config reads
  // them back unchanged.
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;

 private:
  const CLI::App* app_;
};

}  // namespace lever::leverd
