#include "peer_fetch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace lever::host {
namespace {

constexpr size_t kMaxHead = 16u << 10;

int RemainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on fd until the deadline.
Status WaitFor(int fd, short events, const PeerGet& get, std::string_view what) {
  while (true) {
    pollfd p{fd, events, 0};
    int ms = RemainingMs(get.deadline);
    if (ms == 0) return Status(Code::kDeadlineExceeded, "timed out " + std::string(what) + " " + get.address);
    int n = poll(&p, 1, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(Code::kUnavailable, "poll: " + std::string(std::strerror(errno)));
    if (n > 0) return Status::Ok();
  }
}

Status Connect(const PeerGet& get, int* out) {
  size_t colon = get.address.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("peer address \"" + get.address + "\" is not ip:port");
  std::string host = get.address.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  uint16_t port = 0;
  std::string_view port_text = std::string_view(get.address).substr(colon + 1);
  auto [ptr, err] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (err != std::errc() || ptr != port_text.data() + port_text.size()) {
    return InvalidArgument("peer address \"" + get.address + "\" is not ip:port");
  }
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    return InvalidArgument("peer address \"" + get.address + "\" is not ip:port");
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status(Code::kUnavailable, "socket: " + std::string(std::strerror(errno)));
  *out = fd;
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) {
      return Status(Code::kUnavailable, "cannot connect to " + get.address + ": " + std::strerror(errno));
    }
    Status s = WaitFor(fd, POLLOUT, get, "connecting to");
    if (!s.ok()) return s;
    int so_error = 0;
    socklen_t sl = sizeof so_error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &sl);
    if (so_error != 0) {
      return Status(Code::kUnavailable, "cannot connect to " + get.address + ": " + std::strerror(so_error));
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return Status::Ok();
}

Status SendAll(int fd, std::string_view data, const PeerGet& get) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Status s = WaitFor(fd, POLLOUT, get, "writing to");
      if (!s.ok()) return s;
      continue;
    }
    if (n < 0) return Status(Code::kUnavailable, "connection to " + get.address + " lost: " + std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// One read; 0 at EOF.
Status RecvSome(int fd, char* buf, size_t cap, const PeerGet& get, size_t* got) {
  while (true) {
    ssize_t n = recv(fd, buf, cap, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Status s = WaitFor(fd, POLLIN, get, "reading from");
      if (!s.ok()) return s;
      continue;
    }
    if (n < 0) return Status(Code::kUnavailable, "connection to " + get.address + " lost: " + std::strerror(errno));
    *got = static_cast<size_t>(n);
    return Status::Ok();
  }
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool HeaderIs(std::string_view line, std::string_view name, std::string_view* value) {
  size_t colon = line.find(':');
  if (colon != name.size()) return false;
  for (size_t i = 0; i < colon; ++i) {
    if (Lower(line[i]) != name[i]) return false;
  }
  std::string_view v = line.substr(colon + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) v.remove_suffix(1);
  *value = v;
  return true;
}

}  // namespace

Status PeerHttpGet(const PeerGet& get, const std::function<Status(std::string_view)>& sink) {
  int raw = -1;
  Status s = Connect(get, &raw);
  Fd fd(raw);
  if (!s.ok()) return s;
  std::string req = "GET " + get.path + " HTTP/1.1\r\nHost: " + get.address + "\r\nx-lever-cluster-token: " +
                    get.token + "\r\nConnection: close\r\n\r\n";
  s = SendAll(fd.get(), req, get);
  if (!s.ok()) return s;

  std::string buf;
  char tmp[64 << 10];
  size_t head_end = std::string::npos;
  while (head_end == std::string::npos) {
    size_t n = 0;
    s = RecvSome(fd.get(), tmp, sizeof tmp, get, &n);
    if (!s.ok()) return s;
    if (n == 0) return Status(Code::kUnavailable, get.address + " closed the connection before answering");
    buf.append(tmp, n);
    head_end = buf.find("\r\n\r\n");
    if (head_end == std::string::npos && buf.size() > kMaxHead) {
      return Status(Code::kInternal, get.address + " answered with a head over 16 KiB");
    }
  }
  std::string_view head = std::string_view(buf).substr(0, head_end);
  std::string_view status_line = head.substr(0, head.find("\r\n"));
  int code = 0;
  if (status_line.size() >= 12 && status_line.starts_with("HTTP/1.")) {
    std::from_chars(status_line.data() + 9, status_line.data() + 12, code);
  }
  std::string_view body_start = std::string_view(buf).substr(head_end + 4);
  if (code != 200) {
    std::string why(body_start.substr(0, std::min<size_t>(body_start.size(), 200)));
    while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
    std::string msg = get.address + " answered " + std::string(status_line) + (why.empty() ? "" : ": " + why);
    if (code == 401) return Status(Code::kPermissionDenied, msg);
    if (code == 404) return Status(Code::kNotFound, msg);
    return Status(Code::kInternal, msg);
  }
  uint64_t length = 0;
  bool have_length = false;
  for (size_t at = head.find("\r\n"); at != std::string_view::npos;) {
    size_t next = head.find("\r\n", at + 2);
    std::string_view line = head.substr(at + 2, next == std::string_view::npos ? std::string_view::npos : next - at - 2);
    std::string_view v;
    if (HeaderIs(line, "content-length", &v)) {
      auto [p, e] = std::from_chars(v.data(), v.data() + v.size(), length);
      have_length = e == std::errc() && p == v.data() + v.size();
    }
    at = next;
  }
  if (!have_length) return Status(Code::kInternal, get.address + " answered without a Content-Length");
  if (length > get.max_body_bytes) {
    return ResourceExhausted(get.address + " offers " + std::to_string(length) + " bytes, over the bound of " +
                             std::to_string(get.max_body_bytes));
  }
  uint64_t received = 0;
  if (!body_start.empty()) {
    std::string_view piece = body_start.substr(0, std::min<uint64_t>(body_start.size(), length));
    received += piece.size();
    s = sink(piece);
    if (!s.ok()) return s;
  }
  while (received < length) {
    size_t n = 0;
    s = RecvSome(fd.get(), tmp, std::min<uint64_t>(sizeof tmp, length - received), get, &n);
    if (!s.ok()) return s;
    if (n == 0) {
      return Status(Code::kUnavailable, get.address + " sent " + std::to_string(received) + " of " +
                                            std::to_string(length) + " bytes and closed");
    }
    received += n;
    s = sink(std::string_view(tmp, n));
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace lever::host
