// libFuzzer target: JSON text parsing on arbitrary bytes; whatever parses is
// written back and must parse to the same value.
#include <cstdint>
#include <cstdlib>

#include "lever/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  lever::DecodeLimits limits;
  limits.max_depth = 64;
  lever::Value v;
  if (!lever::ParseJson(in, &v, limits).ok()) return 0;
  std::string text;
  if (!lever::WriteJson(v, &text).ok()) std::abort();
  lever::Value again;
  if (!lever::ParseJson(text, &again, limits).ok() || !(again == v)) std::abort();
  return 0;
}
