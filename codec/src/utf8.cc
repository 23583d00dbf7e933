#include "utf8.h"

#include <simdjson.h>

namespace lever::internal {

bool ValidUtf8(std::string_view s) {
  // Short strings (most keys and arguments) are ASCII: skip the SIMD dispatch.
  if (s.size() < 16) {
    bool ascii = true;
    for (unsigned char c : s) ascii &= c < 0x80;
    if (ascii) return true;
  }
  return simdjson::validate_utf8(s.data(), s.size());
}

}  // namespace lever::internal
