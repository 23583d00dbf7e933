// The test hooks of io.h that the h2c fuzzer drives the gateway with: an
// adopted socketpair end runs as a public-port connection, and
// WaitUntilIdleForTest waits for its client connection to go, bounded.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "io.h"
#include "lever/gateway/gateway.h"

namespace lever::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class NoRoutes final : public host::Router {
 public:
  void Route(const host::RouteRequest&, std::function<void(host::RouteResult)> done) override {
    done({Status(Code::kNotFound, "no such service"), nullptr});
  }
};

// Reads one frame header (9 bytes) from `fd` within 10 s; empty on EOF or timeout.
std::string ReadFrameHeader(int fd) {
  std::string got;
  auto deadline = Clock::now() + 10s;
  while (got.size() < 9 && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char c[9];
    ssize_t n = ::recv(fd, c, 9 - got.size(), 0);
    if (n <= 0) break;
    got.append(c, static_cast<size_t>(n));
  }
  return got.size() == 9 ? got : "";
}

TEST(GatewayTestHooks, AdoptedSocketRunsAsAClientUntilItCloses) {
  GatewayOptions options;
  options.listen = "127.0.0.1:0";
  options.workers = 1;
  Gateway gateway(options, std::make_shared<NoRoutes>());
  ASSERT_TRUE(gateway.Start().ok());
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  AdoptConnectionForTest(gateway, sv[1]);
  static const std::string kHello = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string("\0\0\0\4\0\0\0\0\0", 9);
  ASSERT_EQ(::send(sv[0], kHello.data(), kHello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(kHello.size()));
  // The relay answers the preface with its SETTINGS: the sniffer handed it over.
  std::string header = ReadFrameHeader(sv[0]);
  ASSERT_EQ(header.size(), 9u);
  EXPECT_EQ(header[3], 4);  // SETTINGS
  EXPECT_EQ(gateway.StatsForTest().client_connections, 1);
  // Connected: the wait runs out at its deadline.
  EXPECT_FALSE(WaitUntilIdleForTest(gateway, Clock::now() + 50ms));
  // Half-closed: leverd closes it, and the wait sees it go.
  ::shutdown(sv[0], SHUT_WR);
  EXPECT_TRUE(WaitUntilIdleForTest(gateway, Clock::now() + 10s));
  EXPECT_EQ(gateway.StatsForTest().client_connections, 0);
  EXPECT_EQ(gateway.StatsForTest().active_streams, 0);
  ::close(sv[0]);
  gateway.Stop(0ms);
}

}  // namespace
}  // namespace lever::gateway
