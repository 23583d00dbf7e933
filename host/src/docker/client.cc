#include "docker/client.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace lever::host::docker {
namespace {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kApiPrefix = "/v1.41";

std::string Format(const Request& r, bool hijack) {
  http::request<http::string_body> req;
  req.method(http::string_to_verb(r.method));
  req.target(std::string(kApiPrefix) + r.target);
  req.version(11);
  req.set(http::field::host, "docker");
  if (!r.body.empty()) req.set(http::field::content_type, r.content_type);
  if (hijack) {
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::upgrade, "tcp");
  }
  req.body() = r.body;
  req.prepare_payload();
  std::ostringstream out;
  out << req;
  return out.str();
}

Clock::time_point DeadlineOf(const Request& r) {
  return r.timeout.count() > 0 ? Clock::now() + r.timeout : Clock::time_point::max();
}

// Waits until `fd` is ready for `events`, the deadline passes or `cancel`
// fires.
Status WaitFd(int fd, short events, Clock::time_point deadline, const Canceller* cancel) {
  while (true) {
    int ms = -1;
    if (deadline != Clock::time_point::max()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Status(Code::kDeadlineExceeded, "dockerd did not answer in time");
      ms = static_cast<int>(std::min<int64_t>(left + 1, 60000));
    }
    pollfd p[2] = {{fd, events, 0}, {cancel ? cancel->fd() : -1, POLLIN, 0}};
    int n = poll(p, cancel ? 2 : 1, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(Code::kInternal, std::string("poll: ") + std::strerror(errno));
    if (cancel && (p[1].revents & POLLIN)) return Status(Code::kCancelled, "cancelled");
    if (n > 0 && p[0].revents) return Status::Ok();
  }
}

Status SendAll(int fd, std::string_view data, Clock::time_point deadline, const Canceller* cancel) {
  while (!data.empty()) {
    if (Status s = WaitFd(fd, POLLOUT, deadline, cancel); !s.ok()) return s;
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Status(Code::kUnavailable, std::string("writing to dockerd: ") + std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Appends what one read gives; false at EOF.
Status ReadSome(int fd, std::string* buf, bool* eof, Clock::time_point deadline, const Canceller* cancel) {
  char tmp[16384];
  while (true) {
    if (Status s = WaitFd(fd, POLLIN, deadline, cancel); !s.ok()) return s;
    ssize_t n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Status(Code::kUnavailable, std::string("reading from dockerd: ") + std::strerror(errno));
    *eof = n == 0;
    buf->append(tmp, static_cast<size_t>(n));
    return Status::Ok();
  }
}

// Feeds `buf` to the parser until it wants more; consumed bytes leave buf.
template <class Parser>
Status Feed(Parser& p, std::string* buf) {
  while (!buf->empty() && !p.is_done()) {
    boost::system::error_code ec;
    size_t n = p.put(boost::asio::buffer(buf->data(), buf->size()), ec);
    buf->erase(0, n);
    if (ec == http::error::need_more) return Status::Ok();
    if (ec) return Status(Code::kUnavailable, "bad reply from dockerd: " + ec.message());
    if (n == 0) return Status::Ok();
    if (p.is_header_done() && !p.eager()) return Status::Ok();
  }
  return Status::Ok();
}

}  // namespace

Canceller::Canceller() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
Canceller::~Canceller() {
  if (fd_ >= 0) close(fd_);
}
void Canceller::Cancel() {
  uint64_t one = 1;
  (void)!write(fd_, &one, sizeof one);
}

Status ParseDockerHost(std::string_view host, std::string* socket_path) {
  std::string_view path = host;
  if (host.starts_with("unix://")) path = host.substr(7);
  if (path.empty() || path[0] != '/') {
    return InvalidArgument("docker host \"" + std::string(host) +
                           "\": only unix:///path/to/docker.sock is supported (dockerd's unix socket)");
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return InvalidArgument("docker host \"" + std::string(host) + "\": socket path too long");
  }
  *socket_path = std::string(path);
  return Status::Ok();
}

std::string FormatRequest(const Request& r) { return Format(r, false); }

bool StreamDemux::Feed(std::string_view data) {
  while (!broken_ && !data.empty()) {
    if (left_ == 0) {
      size_t take = std::min(data.size(), sizeof header_ - header_len_);
      std::memcpy(header_ + header_len_, data.data(), take);
      header_len_ += take;
      data.remove_prefix(take);
      if (header_len_ < sizeof header_) return true;
      header_len_ = 0;
      auto b = [&](int i) { return static_cast<uint32_t>(static_cast<unsigned char>(header_[i])); };
      stream_ = static_cast<int>(b(0));
      left_ = b(4) << 24 | b(5) << 16 | b(6) << 8 | b(7);
      if (stream_ > 2 || left_ > max_frame_) {
        broken_ = true;
        return false;
      }
      continue;
    }
    size_t take = std::min<size_t>(data.size(), left_);
    out_(stream_, data.substr(0, take));
    left_ -= static_cast<uint32_t>(take);
    data.remove_prefix(take);
  }
  return !broken_;
}

Status Client::Connect(int* out, Clock::time_point deadline, const Canceller* cancel) const {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status(Code::kInternal, std::string("socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == EAGAIN || err == EINPROGRESS) {
      Status s = WaitFd(fd, POLLOUT, deadline, cancel);
      socklen_t len = sizeof err;
      if (s.ok()) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (!s.ok()) {
        close(fd);
        return s;
      }
    }
    if (err != 0 && err != EAGAIN && err != EINPROGRESS) {
      close(fd);
      return Status(Code::kUnavailable, "cannot reach dockerd at " + socket_path_ + ": " + std::strerror(err));
    }
  }
  *out = fd;
  return Status::Ok();
}

Status Client::Do(const Request& r, Reply* reply, const Canceller* cancel) const {
  Clock::time_point deadline = DeadlineOf(r);
  int fd = -1;
  if (Status s = Connect(&fd, deadline, cancel); !s.ok()) return s;
  Status s = SendAll(fd, Format(r, false), deadline, cancel);
  http::response_parser<http::string_body> p;
  p.body_limit(r.max_body);
  p.header_limit(64 * 1024);
  p.eager(true);
  std::string buf;
  size_t total = 0;  // Beast's body_limit does not bound a response: counted here
  while (s.ok() && !p.is_done()) {
    bool eof = false;
    size_t before = buf.size();
    s = ReadSome(fd, &buf, &eof, deadline, cancel);
    if (!s.ok()) break;
    total += buf.size() - before;
    if (total > r.max_body + 64 * 1024) {
      s = Status(Code::kUnavailable, "bad reply from dockerd: larger than " + std::to_string(r.max_body) + " bytes");
      break;
    }
    if (eof) {
      s = Feed(p, &buf);
      boost::system::error_code ec;
      if (s.ok() && !p.is_done()) p.put_eof(ec);
      if (s.ok() && (ec || !p.is_done())) s = Status(Code::kUnavailable, "dockerd closed the connection mid-reply");
      break;
    }
    s = Feed(p, &buf);
  }
  close(fd);
  if (!s.ok()) return Status(s.code(), r.method + " " + r.target + ": " + s.message());
  reply->status = static_cast<int>(p.get().result_int());
  reply->body = std::move(p.get().body());
  return Status::Ok();
}

Status Client::Hijack(const Request& r, int* out, std::string* rest, const Canceller* cancel) const {
  Clock::time_point deadline = DeadlineOf(r);
  int fd = -1;
  if (Status s = Connect(&fd, deadline, cancel); !s.ok()) return s;
  Status s = SendAll(fd, Format(r, true), deadline, cancel);
  http::response_parser<http::empty_body> p;
  p.header_limit(64 * 1024);
  std::string buf;
  while (s.ok() && !p.is_header_done()) {
    bool eof = false;
    s = ReadSome(fd, &buf, &eof, deadline, cancel);
    if (s.ok() && eof) s = Status(Code::kUnavailable, "dockerd closed the connection");
    if (s.ok()) s = Feed(p, &buf);
  }
  if (s.ok()) {
    int status = static_cast<int>(p.get().result_int());
    if (status != 101 && status != 200) {
      // An error reply: its body is JSON with the message; read a bit of it.
      std::string body = buf;
      for (int i = 0; i < 4 && body.size() < 4096; ++i) {
        bool eof = false;
        if (!ReadSome(fd, &body, &eof, std::min(deadline, Clock::now() + std::chrono::milliseconds(500)), cancel)
                 .ok() ||
            eof) {
          break;
        }
      }
      s = Check(Reply{status, body}, r.method + " " + r.target);
    }
  }
  if (!s.ok()) {
    close(fd);
    return s;
  }
  *out = fd;
  *rest = std::move(buf);
  return Status::Ok();
}

Status Check(const Reply& reply, std::string_view what) {
  if (reply.status >= 200 && reply.status < 300) return Status::Ok();
  std::string message;
  auto doc = nlohmann::json::parse(reply.body, nullptr, false);
  if (doc.is_object() && doc.contains("message") && doc["message"].is_string()) {
    message = doc["message"].get<std::string>();
  } else {
    message = reply.body.substr(0, 200);
  }
  Code code = reply.status == 404   ? Code::kNotFound
              : reply.status == 409 ? Code::kFailedPrecondition
              : reply.status == 400 ? Code::kInvalidArgument
                                    : Code::kUnavailable;
  return Status(code, std::string(what) + ": dockerd answered " + std::to_string(reply.status) + ": " + message);
}

std::string QueryEscape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace lever::host::docker
