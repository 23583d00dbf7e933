// A Docker Engine API client over dockerd's unix socket (API v1.41, the
// version of Debian 12's docker.io 20.10; later engines accept it too).
// Boost.Beast serialises requests and parses replies; the socket is a plain
// blocking fd driven with poll(2), so that every exchange has a deadline and
// can be cancelled from another thread (Canceller). One connection per
// exchange: dockerd is local and a connect costs microseconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lever/status.h"

namespace lever::host::docker {

// Aborts the exchanges it is given, from any thread: Cancel() makes the ones
// in progress and every later one fail at once with CANCELLED.
class Canceller {
 public:
  Canceller();
  ~Canceller();
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;
  void Cancel();
  int fd() const { return fd_; }  // readable once cancelled

 private:
  int fd_ = -1;
};

struct Reply {
  int status = 0;    // HTTP status
  std::string body;  // at most Request::max_body bytes
};

struct Request {
  std::string method = "GET";
  std::string target;  // below the API version: "/containers/json?all=1"
  std::string body;
  std::string content_type = "application/json";  // sent with a body only
  // Whole exchange, connect to last byte. Zero: no bound (a wait that lasts
  // as long as the container; cancel it with a Canceller).
  std::chrono::milliseconds timeout{30000};
  size_t max_body = 8 << 20;
};

// "unix:///var/run/docker.sock" (or a bare absolute path) → the socket path.
// Anything else (tcp://, ssh://): INVALID_ARGUMENT.
Status ParseDockerHost(std::string_view host, std::string* socket_path);

// The HTTP/1.1 request text sent for `r` (for tests and debug logs).
std::string FormatRequest(const Request& r);

// Docker's multiplexed stdout/stderr stream (attach, logs without a TTY):
// frames of an 8-byte header {stream, 0, 0, 0, size (big-endian u32)} and
// `size` bytes. Feed it any pieces; it calls `out(stream, bytes)` for each
// frame's payload as it arrives (stream 1 stdout, 2 stderr). A frame larger
// than max_frame or an unknown stream number is an error (the stream is not
// Docker's): Feed returns false and ignores what follows.
class StreamDemux {
 public:
  using Out = std::function<void(int stream, std::string_view bytes)>;
  explicit StreamDemux(Out out, uint32_t max_frame = 1 << 24) : out_(std::move(out)), max_frame_(max_frame) {}
  bool Feed(std::string_view data);

 private:
  Out out_;
  uint32_t max_frame_;
  bool broken_ = false;
  char header_[8];
  size_t header_len_ = 0;
  uint32_t left_ = 0;  // payload bytes of the current frame still to come
  int stream_ = 0;
};

class Client {
 public:
  explicit Client(std::string socket_path) : socket_path_(std::move(socket_path)) {}
  const std::string& socket_path() const { return socket_path_; }

  // One exchange. Transport failures: UNAVAILABLE ("cannot reach dockerd at
  // ..."), DEADLINE_EXCEEDED, CANCELLED. Any HTTP status is OK here; the
  // caller reads reply->status (see Check).
  Status Do(const Request& r, Reply* reply, const Canceller* cancel = nullptr) const;

  // A hijacked exchange (attach): sends `r` with "Upgrade: tcp"; on 101 or
  // 200 hands over the connected socket (*fd, blocking, caller closes it)
  // and any stream bytes read past the reply's head (*rest).
  Status Hijack(const Request& r, int* fd, std::string* rest, const Canceller* cancel = nullptr) const;

 private:
  Status Connect(int* fd, std::chrono::steady_clock::time_point deadline, const Canceller* cancel) const;
  std::string socket_path_;
};

// OK for a 2xx reply; else an error with dockerd's message ({"message": ...})
// and a code from the status: 404 NOT_FOUND, 409 FAILED_PRECONDITION, 400
// INVALID_ARGUMENT, others UNAVAILABLE. `what` prefixes the message.
Status Check(const Reply& reply, std::string_view what);

// Percent-encodes a query value.
std::string QueryEscape(std::string_view s);

}  // namespace lever::host::docker
