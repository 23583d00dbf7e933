#include "lever/host/logs.h"

namespace lever::host {

LogStore::LogStore(size_t max_lines, size_t max_bytes) : max_lines_(max_lines), max_bytes_(max_bytes) {}

std::string LogStore::Key(std::string_view env, std::string_view service) {
  std::string k(env);
  k.push_back('/');
  k.append(service);
  return k;
}

std::string LogStore::Append(std::string_view env, std::string_view service, LogLine line,
                             std::string_view message) {
  line.text = "lever://";
  line.text.append(env);
  line.text.push_back('/');
  line.text.append(service);
  line.text += " v" + std::to_string(line.version) + " ";
  line.text.append(message);
  std::string text = line.text;
  {
    std::lock_guard lock(mu_);
    Ring& ring = rings_[Key(env, service)];
    line.seq = ring.next_seq++;
    ring.bytes += line.text.size();
    ring.lines.push_back(std::move(line));
    while (ring.lines.size() > max_lines_ || (ring.bytes > max_bytes_ && ring.lines.size() > 1)) {
      ring.bytes -= ring.lines.front().text.size();
      ring.lines.pop_front();
    }
  }
  cv_.notify_all();
  return text;
}

std::vector<LogLine> LogStore::Tail(std::string_view env, std::string_view service, size_t n) const {
  std::lock_guard lock(mu_);
  std::vector<LogLine> out;
  auto it = rings_.find(Key(env, service));
  if (it == rings_.end()) return out;
  const auto& lines = it->second.lines;
  size_t start = lines.size() > n ? lines.size() - n : 0;
  out.assign(lines.begin() + static_cast<std::ptrdiff_t>(start), lines.end());
  return out;
}

std::vector<LogLine> LogStore::Read(std::string_view env, std::string_view service, uint64_t after_seq,
                                    size_t max, std::chrono::steady_clock::time_point deadline) const {
  std::string key = Key(env, service);
  std::unique_lock lock(mu_);
  uint64_t generation = wake_generation_;
  std::vector<LogLine> out;
  auto collect = [&] {
    auto it = rings_.find(key);
    if (it == rings_.end()) return false;
    for (const LogLine& l : it->second.lines) {
      if (l.seq > after_seq && out.size() < max) out.push_back(l);
    }
    return !out.empty();
  };
  while (!collect()) {
    if (wake_generation_ != generation) break;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      collect();
      break;
    }
  }
  return out;
}

void LogStore::WakeAll() {
  {
    std::lock_guard lock(mu_);
    ++wake_generation_;
  }
  cv_.notify_all();
}

}  // namespace lever::host
