// libFuzzer target: the proto-JSON wire decoder on arbitrary bytes (as a JSON
// message and as an argument list); whatever decodes re-encodes and decodes
// to the same value.
#include <cstdint>
#include <cstdlib>

#include "lever/proto_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  lever::DecodeLimits limits;
  limits.max_depth = 64;
  lever::Value v;
  if (lever::DecodeProtoJson(in, &v, limits).ok()) {
    std::string bytes;
    if (!lever::EncodeProtoJson(v, &bytes).ok()) std::abort();
    lever::Value again;
    if (!lever::DecodeProtoJson(bytes, &again, limits).ok() || !(again == v)) std::abort();
  }
  lever::Array args;
  if (lever::DecodeProtoJsonArray(in, &args, limits).ok()) {
    std::string bytes;
    if (!lever::EncodeProtoJsonArray(args, &bytes).ok()) std::abort();
    lever::Array again;
    if (!lever::DecodeProtoJsonArray(bytes, &again, limits).ok() || !(again == args)) std::abort();
  }
  return 0;
}
