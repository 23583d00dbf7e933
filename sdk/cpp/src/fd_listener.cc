#include "fd_listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpcpp/server_posix.h>

#include <cerrno>
#include <cstring>

namespace lever::internal {
namespace {

std::atomic<bool> g_inherited_claimed{false};

Status Refuse(int fd, const std::string& name, const std::string& why) {
  close(fd);
  return InvalidArgument("listen fd " + name + ": " + why);
}

}  // namespace

bool ClaimInheritedListenFd() { return !g_inherited_claimed.exchange(true); }

FdListener::~FdListener() { Stop(); }

Status FdListener::Open(int fd, const std::string& name, int* port) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Status(Code::kInvalidArgument, "listen fd " + name + ": " + std::strerror(errno));
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (!S_ISSOCK(st.st_mode) || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    return Refuse(fd, name, "not a stream socket");
  }
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
    return Refuse(fd, name, "not listening");
  }
  sockaddr_storage sa{};
  len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return Refuse(fd, name, std::strerror(errno));
  *port = 0;
  if (sa.ss_family == AF_INET) {
    tcp_ = true;
    *port = ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    tcp_ = true;
    *port = ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port);
  }
  // Ours now: not for the service's own children; polled, never blocking
  // (another process may share the socket and win the race to a connection).
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    return Refuse(fd, name, std::strerror(errno));
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return Refuse(fd, name, std::strerror(errno));
  fd_ = fd;
  return Status::Ok();
}

void FdListener::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] { Loop(server); });
}

void FdListener::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  for (int* fd : {&fd_, &stop_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void FdListener::Loop(grpc::Server* server) {
  while (true) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0 || (p[0].revents & (POLLERR | POLLNVAL)) != 0) return;
    // Everything queued, at once: at a cold start the gateway's connection
    // is already waiting.
    bool out_of_fds = false;
    while (true) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        out_of_fds = errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
        break;  // EAGAIN, a connection reset before we took it, or out of fds
      }
      if (tcp_) {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      grpc::AddInsecureChannelFromFd(server, c);  // takes c
    }
    // Out of fds: the connection stays queued; try again in a while (as
    // gRPC's own listener does) instead of spinning.
    if (out_of_fds) {
      pollfd s = {stop_fd_, POLLIN, 0};
      if (poll(&s, 1, 100) > 0) return;
    }
  }
}

}  // namespace lever::internal
