#include "log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "lever/json.h"

namespace lever::leverd {
namespace {

std::mutex g_mu;
LogConfig g_config;

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  if (text == "debug") {
    *out = LogLevel::kDebug;
  } else if (text == "info") {
    *out = LogLevel::kInfo;
  } else if (text == "warn" || text == "warning") {
    *out = LogLevel::kWarn;
  } else if (text == "error") {
    *out = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

void ConfigureLog(LogConfig config) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_config = config;
}

bool LogEnabled(LogLevel level) {
  std::lock_guard<std::mutex> lock(g_mu);
  return level >= g_config.level;
}

void Log(LogLevel level, std::string_view source, std::string_view message) {
  std::string line;
  std::lock_guard<std::mutex> lock(g_mu);
  if (level < g_config.level) return;
  if (g_config.json) {
    Map m{{"time", Timestamp()}, {"level", LevelName(level)}, {"source", std::string(source)}};
    // Instance output may not be UTF-8; keep it readable rather than drop it.
    std::string msg(message);
    JsonWriteOptions o;
    if (!WriteJson(Value(msg), &line, o).ok()) {
      for (char& c : msg) {
        if (static_cast<unsigned char>(c) >= 0x80) c = '?';
      }
    }
    line.clear();
    m.Set("msg", std::move(msg));
    (void)WriteJson(Value(std::move(m)), &line, o);
  } else {
    line = Timestamp() + " " + LevelName(level) + " " + std::string(message);
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace lever::leverd
