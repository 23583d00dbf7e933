// gateway_echo_server <address>: serves the test EchoService (echo_service.h)
// until killed; prints "ready" on stdout once it listens.
#include <cstdio>
#include <string>

#include "echo_service.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s unix:/path.sock | host:port\n", argv[0]);
    return 2;
  }
  lever::gateway::testing::EchoServer server;
  if (!server.Start(argv[1])) {
    std::fprintf(stderr, "cannot listen on %s\n", argv[1]);
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  server.server->Wait();
  return 0;
}
