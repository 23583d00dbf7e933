#include "lever/env.h"

#include <unistd.h>

#include <charconv>
#include <cstdlib>

namespace lever {
namespace {

std::string Get(const char* name, const char* fallback = "") {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : std::string(fallback);
}

// A decimal number, the whole of `text`, or -1.
long long Number(const std::string& text) {
  long long n = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  return ec == std::errc() && end == text.data() + text.size() ? n : -1;
}

int ListenFd() {
  long long fd = Number(Get("LEVEROS_LISTEN_FD"));
  if (fd < 3 || fd > 1 << 20) return -1;
  std::string pid = Get("LEVEROS_LISTEN_PID");
  if (!pid.empty() && Number(pid) != static_cast<long long>(getpid())) return -1;
  return static_cast<int>(fd);
}

}  // namespace

InstanceEnv InstanceEnv::FromProcess() {
  InstanceEnv e;
  e.environment = Get("LEVEROS_ENVIRONMENT");
  e.service = Get("LEVEROS_SERVICE");
  e.instance_id = Get("LEVEROS_INSTANCE_ID");
  e.code_version = Get("LEVEROS_CODE_VERSION");
  e.internal_env_suffix = Get("LEVEROS_INTERNAL_ENV_SUFFIX", ".lever");
  e.listen_addr = Get("LEVEROS_LISTEN_ADDR", "0.0.0.0:3837");
  e.listen_fd = ListenFd();
  e.internal_rpc_gateway = Get("LEVEROS_INTERNAL_RPC_GATEWAY");
  e.ip_port = Get("LEVEROS_IP_PORT", "127.0.0.1:8080");
  return e;
}

const InstanceEnv& ProcessEnv() {
  static const InstanceEnv env = InstanceEnv::FromProcess();
  return env;
}

}  // namespace lever
