// Serving a grpc::Server on a listening socket made by someone else (socket
// activation: leverd's LEVEROS_LISTEN_FD). gRPC C++ 1.51 cannot listen on a
// given fd, only adopt a connected one (grpc::AddInsecureChannelFromFd), so a
// thread of ours accepts and hands each connection over.
#pragma once

#include <grpcpp/server.h>

#include <atomic>
#include <string>
#include <thread>

#include "lever/status.h"

namespace lever::internal {

class FdListener {
 public:
  FdListener() = default;
  ~FdListener();  // Stop()
  FdListener(const FdListener&) = delete;
  FdListener& operator=(const FdListener&) = delete;

  // Takes `fd` (closed on failure too) after checking that it is a
  // listening stream socket; `name` is for messages. Sets *port to its TCP
  // port, 0 for a unix socket.
  Status Open(int fd, const std::string& name, int* port);
  // Accepts on a thread of its own until Stop, handing every connection to
  // `server` (started, and alive until Stop returns).
  void Start(grpc::Server* server);
  // Stops accepting and closes the socket: new connections are refused, as
  // when a server that bound its own address stops. Idempotent.
  void Stop();

 private:
  void Loop(grpc::Server* server);

  int fd_ = -1;
  int stop_fd_ = -1;  // eventfd: Stop() wakes the loop
  bool tcp_ = false;
  std::thread thread_;
};

// The inherited LEVEROS_LISTEN_FD may serve one Server: true for the first
// caller only.
bool ClaimInheritedListenFd();

}  // namespace lever::internal
