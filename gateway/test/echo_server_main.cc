// gateway_echo_server <address> [--callback]: serves the test EchoService
// (echo_service.h; with --callback the unary-only CallbackEchoService) until
// killed; prints "ready" on stdout once it listens.
#include <cstdio>
#include <string>

#include "echo_service.h"

int main(int argc, char** argv) {
  bool callback = argc == 3 && std::string(argv[2]) == "--callback";
  if (argc != 2 && !callback) {
    std::fprintf(stderr, "usage: %s unix:/path.sock | host:port [--callback]\n", argv[0]);
    return 2;
  }
  lever::gateway::testing::EchoServer server;
  if (!server.Start(argv[1], callback)) {
    std::fprintf(stderr, "cannot listen on %s\n", argv[1]);
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  server.server->Wait();
  return 0;
}
