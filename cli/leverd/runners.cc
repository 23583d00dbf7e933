#include "runners.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>

#ifndef LEVER_RUNTIME_DIR_FROM_BIN
#define LEVER_RUNTIME_DIR_FROM_BIN "../lib/lever"
#endif
#ifndef LEVER_BUILD_FROM_BIN
#define LEVER_BUILD_FROM_BIN ".."
#endif
#ifndef LEVER_SOURCE_FROM_BIN
#define LEVER_SOURCE_FROM_BIN "../../.."
#endif

namespace lever::leverd {
namespace {

namespace fs = std::filesystem;

bool IsExecutableFile(const fs::path& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

// `p` made absolute and lexically clean (no "..": the log names a real path).
std::string Clean(const fs::path& p) {
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  return (ec ? p : abs).lexically_normal().string();
}

}  // namespace

std::string RunnerFlag(const RunnerSpec& spec) { return "--" + std::string(spec.language) + "-runner"; }

std::string RunnerEnvVar(const RunnerSpec& spec) {
  std::string name = "LEVER_";
  for (char c : spec.language) name.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return name + "_RUNNER";
}

RunnerLookup RunnerLookup::ForThisProcess() {
  RunnerLookup l;
  std::error_code ec;
  l.self = fs::read_symlink("/proc/self/exe", ec).string();
  l.getenv = [](const char* name) { return static_cast<const char*>(std::getenv(name)); };
  l.runtime_dir_from_bin = LEVER_RUNTIME_DIR_FROM_BIN;
  l.build_from_bin = LEVER_BUILD_FROM_BIN;
  l.source_from_bin = LEVER_SOURCE_FROM_BIN;
  return l;
}

Status FindRunner(const RunnerSpec& spec, const std::string& flag_value, const RunnerLookup& lookup,
                  RunnerChoice* out) {
  *out = RunnerChoice{};
  auto explicit_choice = [&](const std::string& value, const std::string& how) {
    if (!IsExecutableFile(value)) {
      return InvalidArgument(how + " " + value + ": not an executable file (the program that runs " +
                             std::string(spec.entry_key) + " services)");
    }
    out->path = Clean(value);
    out->found = how;
    return Status::Ok();
  };
  if (!flag_value.empty()) return explicit_choice(flag_value, RunnerFlag(spec));
  std::string var = RunnerEnvVar(spec);
  if (const char* e = lookup.getenv ? lookup.getenv(var.c_str()) : nullptr; e && *e) {
    return explicit_choice(e, "$" + var);
  }
  out->tried = {RunnerFlag(spec), "$" + var};

  auto candidate = [&](const fs::path& p, const char* how) {
    out->tried.push_back(Clean(p));
    if (!IsExecutableFile(p)) return false;
    out->path = Clean(p);
    out->found = how;
    return true;
  };
  if (!lookup.self.empty()) {
    fs::path bin = fs::path(lookup.self).parent_path();
    if (candidate(bin / lookup.runtime_dir_from_bin / spec.installed, "install prefix")) return Status::Ok();
    if (!spec.built.empty() && candidate(bin / lookup.build_from_bin / spec.built, "build dir")) return Status::Ok();
    if (!spec.source.empty() && candidate(bin / lookup.source_from_bin / spec.source, "source tree")) {
      return Status::Ok();
    }
  }
  const char* path = lookup.getenv ? lookup.getenv("PATH") : nullptr;
  std::string_view rest = path ? path : "";
  while (!rest.empty()) {
    size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (dir.empty()) continue;
    if (IsExecutableFile(fs::path(dir) / spec.program)) {
      out->path = Clean(fs::path(dir) / spec.program);
      out->found = "PATH";
      return Status::Ok();
    }
  }
  out->tried.push_back(std::string(spec.program) + " on PATH");
  return Status::Ok();
}

}  // namespace lever::leverd
