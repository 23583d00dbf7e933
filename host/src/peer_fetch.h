// A bounded HTTP/1.1 GET to another node's peer port: how a node fetches a
// code archive it lacks (docs/cluster.md, "Code distribution"). Blocking,
// for the cluster's fetch thread; every step is bounded by one deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "lever/status.h"

namespace lever::host {

struct PeerGet {
  std::string address;  // "ip:port" or "localhost:port"
  std::string path;     // "/_lever/peer/blob/<sha256>.tgz"
  std::string token;    // sent as x-lever-cluster-token
  uint64_t max_body_bytes = 30ull << 20;
  std::chrono::steady_clock::time_point deadline;
};

// GETs `get.path`; the body goes to `sink` piece by piece (a sink error
// ends the fetch with it). Errors: UNAVAILABLE (cannot connect, connection
// lost, short body), DEADLINE_EXCEEDED, PERMISSION_DENIED (401: the peer
// does not take our token), NOT_FOUND (404), RESOURCE_EXHAUSTED (a body
// over max_body_bytes, refused before it is read), INTERNAL (any other
// answer, with its status line).
Status PeerHttpGet(const PeerGet& get, const std::function<Status(std::string_view)>& sink);

}  // namespace lever::host
