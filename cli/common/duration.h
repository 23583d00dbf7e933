// Durations on the command line of lever and leverd: "250ms", "30s", "5m",
// "1h", or a bare number of seconds ("0" is zero: no limit where a flag says so).
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace lever::cli {

inline bool ParseDuration(const std::string& text, std::chrono::milliseconds* out) {
  char* end = nullptr;
  errno = 0;
  double n = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || errno != 0 || !(n >= 0) || n > 1e12) return false;
  std::string unit(end);
  double scale;
  if (unit.empty() || unit == "s") {
    scale = 1e3;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 6e4;
  } else if (unit == "h") {
    scale = 3.6e6;
  } else {
    return false;
  }
  *out = std::chrono::milliseconds(static_cast<int64_t>(n * scale));
  return true;
}

}  // namespace lever::cli
