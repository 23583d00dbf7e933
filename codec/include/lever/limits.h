// Limits every Lever decoder takes (msgpack, JSON text, proto-JSON). A decoder
// that meets input beyond a limit stops at once with RESOURCE_EXHAUSTED and a
// message naming the limit; it never allocates in proportion to a count it
// has not yet seen the bytes for.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lever {

struct DecodeLimits {
  // Total input bytes. Default 64 MiB. Range: 0 (reject everything) to SIZE_MAX.
  size_t max_size = size_t{64} << 20;
  // Nesting depth of arrays and maps; a scalar at top level has depth 0,
  // `[[]]` has depth 2. Default 128. Range: 0 to 10,000 (decoders recurse
  // while building values, so keep it small).
  uint32_t max_depth = 128;
  // Total number of values in the document (every array element, map key and
  // map value counts, plus the root). Default 4,194,304.
  size_t max_elements = size_t{4} << 20;
};

}  // namespace lever
