// A Lever instance for cross-process tests: serves the test handlers on
// LEVEROS_LISTEN_ADDR until SIGTERM or SIGINT, then shuts down gracefully and
// exits 0. Prints "listening <port> fd|bound" once serving (fd: on the
// inherited LEVEROS_LISTEN_FD).
#include <signal.h>

#include <cstdio>
#include <thread>

#include "lever/server.h"
#include "test_service.h"

int main() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // every thread inherits the mask

  lever::Server server;
  lever::testing::TestState state;
  lever::Status s = lever::testing::RegisterTestHandlers(&server, &state);
  if (s.ok()) s = server.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "lever_test_server: %s\n", s.ToString().c_str());
    return 1;
  }
  // The bound port (0 for unix sockets), for parents that asked for port 0.
  std::printf("listening %d %s\n", server.port(), server.on_listen_fd() ? "fd" : "bound");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  server.Shutdown(std::chrono::seconds(5));
  return 0;
}
