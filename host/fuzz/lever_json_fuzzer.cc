// ParseLeverConfig on arbitrary text: never crashes, and what it accepts
// satisfies the documented rules.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "lever/host/lever_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lever::host::LeverConfig c;
  lever::Status s =
      lever::host::ParseLeverConfig(std::string_view(reinterpret_cast<const char*>(data), size), &c);
  if (s.ok()) {
    int entries = int(!c.entry.empty()) + int(!c.js_entry.empty()) + int(!c.py_entry.empty());
    bool one_entry = entries == 1;
    if (!one_entry || !lever::host::IsValidServiceName(c.name) || c.max_instance_load <= 0 || c.ram_mb <= 0 ||
        c.min_instances < 0) {
      abort();
    }
  }
  return 0;
}
