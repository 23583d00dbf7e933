// lever.json (reference §4.1) and the name rules of environments and
// services (reference §4.3, §12.3).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lever/status.h"

namespace lever::host {

// A service's lever.json after defaults are applied.
struct LeverConfig {
  std::string name;         // required; IsValidServiceName
  std::string description;  // optional
  // Exactly one of `entry` (argv, non-empty), `js_entry` (run by the Node
  // SDK's lever-serve) and `py_entry` (run by the Python SDK's
  // lever-serve-py) is set. None in the file means entry = {"./serve"}.
  std::vector<std::string> entry;
  std::string js_entry;
  std::string py_entry;
  bool is_private = false;          // "private"; default false (public)
  double max_instance_load = 10.0;  // "maxInstanceLoad"; 10.0 when <= 0
  int64_t min_instances = 0;        // "minInstances"; negative counts as 0
  int64_t ram_mb = 50;              // "ram" in MB (1e6 bytes); 50 when <= 0
  // "runtime": "process" or "docker" (docs/docker.md); "" (absent): leverd's
  // --runtime.
  std::string runtime;
};

// Parses lever.json the way the original's Go decoder did: keys match
// case-insensitively (a later key wins), unknown keys and anything after the
// first JSON object are ignored, null leaves the default. Errors
// (INVALID_ARGUMENT): "Error trying to read lever.json: <why>" for bad JSON or
// a field of the wrong type, "Invalid service name", "More than one type of
// entry point specified", "runtime must be \"process\" or \"docker\"". Limit: `text` is at most 1 MiB.
Status ParseLeverConfig(std::string_view text, LeverConfig* out);

// Characters that survive URL query escaping unchanged: [A-Za-z0-9-_.~].
bool IsUrlSafeName(std::string_view name);
// Environment names: 3..255 chars, IsUrlSafeName.
bool IsValidEnvName(std::string_view name);
// Service names: 3..255 chars, IsUrlSafeName.
bool IsValidServiceName(std::string_view name);

}  // namespace lever::host
