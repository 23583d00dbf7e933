// leverd's logger: one line per event on stderr, as text or JSON, with a
// level filter. Thread-safe (one mutex around the write).
#pragma once

#include <string>
#include <string_view>

namespace lever::leverd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

struct LogConfig {
  bool json = false;
  LogLevel level = LogLevel::kInfo;
};

// Parses "debug", "info", "warn"/"warning", "error".
bool ParseLogLevel(std::string_view text, LogLevel* out);

void ConfigureLog(LogConfig config);
bool LogEnabled(LogLevel level);
// `source` names the emitter: "leverd", or "instance" for service output.
void Log(LogLevel level, std::string_view source, std::string_view message);

inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, "leverd", m); }
inline void LogWarn(std::string_view m) { Log(LogLevel::kWarn, "leverd", m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, "leverd", m); }

}  // namespace lever::leverd
