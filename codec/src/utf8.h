// Private: UTF-8 validation shared by the decoders and writers.
#pragma once

#include <string_view>

namespace lever::internal {

// True when `s` is valid UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF).
bool ValidUtf8(std::string_view s);

}  // namespace lever::internal
