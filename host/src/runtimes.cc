// Every runtime, registered by name.
#include <string>

#include "lever/host/runtime.h"

namespace lever::host {
namespace {

struct Entry {
  std::string_view name;
  Status (*open)(const ProcessRuntimeOptions&, RuntimePtr*);
};

constexpr Entry kRuntimes[] = {
    {"process", &NewProcessRuntime},
};

}  // namespace

Status OpenRuntime(std::string_view name, const ProcessRuntimeOptions& options, RuntimePtr* out) {
  for (const Entry& e : kRuntimes) {
    if (e.name == name) return e.open(options, out);
  }
  return InvalidArgument("unknown runtime \"" + std::string(name) + "\"");
}

}  // namespace lever::host
