// The peer port's HTTP/1.1 side (private): other Lever nodes fetch code
// archives by content address (docs/cluster.md, "Code distribution").
//
//   GET /_lever/peer/blob/<64 hex>.tgz HTTP/1.1
//   x-lever-cluster-token: <token>
//
// 200 with Content-Length and the file <blob_dir>/<hex>.tgz; 401 without
// the token, 404 for a digest this node does not hold, 400/405/431 for
// anything else. One request per connection (closed after the response);
// the head must arrive within `timeout` and be at most 8 KiB; the body is
// written in 64 KiB pieces as the peer reads it, each within `timeout`.
#pragma once

#include <chrono>
#include <string>

#include "io.h"

namespace lever::gateway {

class WorkerImpl;

struct PeerHttpOptions {
  std::string cluster_token;
  std::string blob_dir;
  std::chrono::milliseconds timeout{10000};
};

void StartPeerHttp(WorkerImpl* w, Socket socket, std::string already_read, const PeerHttpOptions& options);

}  // namespace lever::gateway
