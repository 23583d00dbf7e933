// The language runtimes leverd starts services with (`lever-serve` for a
// jsEntry; the Python one joins the same way), found the same way for each
// language:
//   1. the flag, `--<lang>-runner PATH`;
//   2. the environment, `$LEVER_<LANG>_RUNNER`;
//   3. beside an installed leverd: <prefix>/<runtime dir>/<installed>, with
//      <prefix>/bin/leverd (cmake --install, the .deb's /usr, or that tree
//      moved anywhere);
//   4. a leverd in its build tree (<build>/cli/leverd): <build>/<built>, else
//      <source tree>/<source> (the Node runtime runs from sdk/node; the Python
//      one from the venv scripts/setup.sh makes in the build dir);
//   5. `<program>` on leverd's own PATH.
// An installed or built leverd so runs the runtime of its own version before
// one that happens to be on PATH (which a service unit does not set anyway).
// A flag or variable that names no executable is an error, not a fallback.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lever/status.h"

namespace lever::leverd {

struct RunnerSpec {
  std::string_view language;   // "js": --js-runner, $LEVER_JS_RUNNER
  std::string_view entry_key;  // lever.json key it serves, for messages: "jsEntry"
  std::string_view program;    // looked up on PATH: "lever-serve"
  std::string_view installed;  // below the install prefix's runtime dir: "node/bin/lever-serve"
  std::string_view built;      // below the build dir ("" for none): "py-venv/bin/lever-serve-py"
  std::string_view source;     // below the source tree ("" for none): "sdk/node/bin/lever-serve"
};

inline constexpr RunnerSpec kJsRunner{"js", "jsEntry", "lever-serve", "node/bin/lever-serve", "",
                                      "sdk/node/bin/lever-serve"};
inline constexpr RunnerSpec kPyRunner{"py", "pyEntry", "lever-serve-py", "python/bin/lever-serve-py",
                                      "py-venv/bin/lever-serve-py", ""};

// Every runner leverd knows, in flag order.
inline constexpr RunnerSpec kRunners[] = {kJsRunner, kPyRunner};

std::string RunnerFlag(const RunnerSpec& spec);    // "--js-runner"
std::string RunnerEnvVar(const RunnerSpec& spec);  // "LEVER_JS_RUNNER"

// Where to look; the defaults are this process's (tests inject their own).
struct RunnerLookup {
  std::string self;  // this leverd's path; default /proc/self/exe
  std::function<const char*(const char*)> getenv;  // default ::getenv
  std::string runtime_dir_from_bin;  // default LEVER_RUNTIME_DIR_FROM_BIN ("../lib/lever")
  std::string build_from_bin;        // default LEVER_BUILD_FROM_BIN (".." for <build>/cli)
  std::string source_from_bin;       // default LEVER_SOURCE_FROM_BIN ("../../.." for build/x/cli)
  static RunnerLookup ForThisProcess();
};

struct RunnerChoice {
  std::string path;   // absolute; empty if none was found
  std::string found;  // how: "--js-runner", "$LEVER_JS_RUNNER", "install prefix", "build dir", "source tree", "PATH"
  std::vector<std::string> tried;  // where it looked, in order, for the message when none is found
};

// `flag_value` is the flag's value ("" when not given). Fails (INVALID_ARGUMENT)
// when the flag or the variable names something that is not an executable file.
Status FindRunner(const RunnerSpec& spec, const std::string& flag_value, const RunnerLookup& lookup,
                  RunnerChoice* out);

}  // namespace lever::leverd
