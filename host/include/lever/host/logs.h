// Instance output: per-service ring buffers of prefixed lines, for
// `lever logs` (tail) and `lever logs -f` (follow).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lever::host {

struct LogLine {
  uint64_t seq = 0;  // increasing per service, from 1
  std::chrono::system_clock::time_point time;
  int64_t version = 0;
  std::string instance_id;  // empty for the host's own notes
  std::string stream;       // "stdout", "stderr" or "host"
  std::string text;         // "lever://<env>/<service> v<version> <line>"
};

// Thread contract: every method may be called from any thread; one internal
// mutex, held only to copy lines.
class LogStore {
 public:
  // Bounds per service: lines and bytes of text. Defaults 1000 / 1 MiB.
  explicit LogStore(size_t max_lines = 1000, size_t max_bytes = 1 << 20);

  // Appends one line (seq and text prefix are filled in); returns its text.
  std::string Append(std::string_view env, std::string_view service, LogLine line, std::string_view message);
  // The last `n` lines kept for the service (oldest first).
  std::vector<LogLine> Tail(std::string_view env, std::string_view service, size_t n) const;
  // Lines with seq > after_seq (at most `max`), waiting until at least one
  // exists or `deadline` passes (then empty). Follow a service by passing the
  // last seq seen; lines already dropped from the ring are skipped.
  std::vector<LogLine> Read(std::string_view env, std::string_view service, uint64_t after_seq, size_t max,
                            std::chrono::steady_clock::time_point deadline) const;
  // Wakes every Read() (e.g. at shutdown); they return what they have.
  void WakeAll();

 private:
  struct Ring {
    std::deque<LogLine> lines;
    size_t bytes = 0;
    uint64_t next_seq = 1;
  };
  static std::string Key(std::string_view env, std::string_view service);

  const size_t max_lines_;
  const size_t max_bytes_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, Ring, std::less<>> rings_;
  uint64_t wake_generation_ = 0;
};

}  // namespace lever::host
