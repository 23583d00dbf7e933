// libFuzzer target: the msgpack decoder and view on arbitrary bytes. Checks
// that whatever decodes re-encodes and decodes to the same value, and that the
// view agrees with the decoder.
#include <cstdint>
#include <cstdlib>

#include "lever/msgpack.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  lever::DecodeLimits limits;
  limits.max_depth = 64;
  lever::Value v;
  lever::Status s = lever::DecodeMsgpack(in, &v, limits);
  lever::MsgpackView view;
  lever::Status vs = lever::MsgpackView::Parse(in, &view, limits);
  if (s.ok() != vs.ok()) std::abort();
  if (!s.ok()) return 0;
  if (!(view.ToValue() == v)) std::abort();
  lever::Value again;
  if (!lever::DecodeMsgpack(lever::EncodeMsgpack(v), &again, limits).ok() || !(again == v)) std::abort();
  return 0;
}
