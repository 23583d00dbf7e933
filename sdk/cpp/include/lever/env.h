// The LEVEROS_* environment of an instance (reference §4.4, DESIGN.md
// "Processes"), read once by the client and the server runtime.
#pragma once

#include <string>

namespace lever {

struct InstanceEnv {
  std::string environment;           // LEVEROS_ENVIRONMENT: own env, e.g. "dev.lever"
  std::string service;               // LEVEROS_SERVICE
  std::string instance_id;           // LEVEROS_INSTANCE_ID
  std::string code_version;          // LEVEROS_CODE_VERSION (decimal)
  std::string internal_env_suffix;   // LEVEROS_INTERNAL_ENV_SUFFIX, default ".lever"
  // LEVEROS_LISTEN_ADDR: "unix:/abs/path.sock" or "host:port". Default
  // "0.0.0.0:3837", the original's instance port.
  std::string listen_addr;
  // LEVEROS_LISTEN_FD: the listening socket leverd made for listen_addr and
  // passed in (socket activation, DESIGN.md "Processes"; leverd passes fd 3),
  // with LEVEROS_LISTEN_PID naming the process it is meant for. -1 when unset,
  // not a number >= 3, or meant for another process (a child of the instance
  // inherits the variables, not the socket's meaning).
  int listen_fd = -1;
  // LEVEROS_INTERNAL_RPC_GATEWAY: where an instance dials internal envs and
  // its own env ("unix:/abs/path.sock" or "host:port"); empty outside instances.
  std::string internal_rpc_gateway;
  // LEVEROS_IP_PORT: the local Lever for clients outside instances. Default
  // "127.0.0.1:8080".
  std::string ip_port;

  // Reads the process environment.
  static InstanceEnv FromProcess();
};

// The environment read once at first use (thread-safe).
const InstanceEnv& ProcessEnv();

}  // namespace lever
