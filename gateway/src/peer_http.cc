#include "peer_http.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <string_view>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "stream_relay.h"
#include "worker.h"

namespace lever::gateway {
namespace {

namespace asio = boost::asio;

constexpr size_t kMaxHead = 8u << 10;
constexpr size_t kPiece = 64u << 10;
constexpr std::string_view kBlobPrefix = "/_lever/peer/blob/";

bool IsHexDigest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// The value of header `name` (lowercase) in a request head, or empty.
std::string_view HeaderValue(std::string_view head, std::string_view name) {
  size_t at = head.find("\r\n");
  while (at != std::string_view::npos && at + 2 < head.size()) {
    size_t start = at + 2;
    size_t end = head.find("\r\n", start);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(start, end - start);
    size_t colon = line.find(':');
    if (colon == name.size()) {
      bool same = true;
      for (size_t i = 0; i < colon && same; ++i) same = Lower(line[i]) == name[i];
      if (same) {
        std::string_view v = line.substr(colon + 1);
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
        return v;
      }
    }
    at = end;
  }
  return {};
}

class PeerHttpConn : public std::enable_shared_from_this<PeerHttpConn> {
 public:
  PeerHttpConn(WorkerImpl* w, Socket socket, const PeerHttpOptions& options)
      : socket_(std::move(socket)), timer_(w->io_context()), options_(options) {}
  ~PeerHttpConn() {
    if (fd_ >= 0) close(fd_);
  }

  void Start(std::string already_read) {
    head_ = std::move(already_read);
    Arm();
    if (!TryRequest()) Read();
  }

 private:
  void Arm() {
    timer_.expires_after(options_.timeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket_.close(ignored);  // too slow: drop it
    });
  }

  void Read() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      if (ec) {
        self->timer_.cancel();
        return;
      }
      self->head_.append(self->buf_.data(), n);
      if (!self->TryRequest()) self->Read();
    });
  }

  // True once a response is under way (the head is complete or too long).
  bool TryRequest() {
    size_t end = head_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (head_.size() > kMaxHead) {
        Respond(431, "Request Header Fields Too Large", "request head over 8 KiB\n");
        return true;
      }
      return false;
    }
    std::string_view head = std::string_view(head_).substr(0, end + 2);
    std::string_view line = head.substr(0, head.find("\r\n"));
    if (!line.starts_with("GET ")) {
      Respond(405, "Method Not Allowed", "the peer port serves GET /_lever/peer/blob/<sha256>.tgz\n");
      return true;
    }
    std::string_view target = line.substr(4, line.find(' ', 4) == std::string_view::npos
                                                 ? std::string_view::npos
                                                 : line.find(' ', 4) - 4);
    if (!TokenEquals(HeaderValue(head, "x-lever-cluster-token"), options_.cluster_token)) {
      Respond(401, "Unauthorized", "the peer port serves Lever nodes with the cluster token only\n");
      return true;
    }
    std::string_view digest;
    if (target.starts_with(kBlobPrefix) && target.ends_with(".tgz")) {
      digest = target.substr(kBlobPrefix.size(), target.size() - kBlobPrefix.size() - 4);
    }
    if (!IsHexDigest(digest)) {
      Respond(400, "Bad Request", "want /_lever/peer/blob/<64 lowercase hex>.tgz\n");
      return true;
    }
    std::string path = options_.blob_dir + "/" + std::string(digest) + ".tgz";
    fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd_ < 0 || fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      Respond(404, "Not Found", "no such archive on this node\n");
      return true;
    }
    remaining_ = static_cast<uint64_t>(st.st_size);
    out_ = "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: " + std::to_string(remaining_) +
           "\r\nConnection: close\r\n\r\n";
    Write();
    return true;
  }

  void Respond(int code, std::string_view reason, std::string_view body) {
    out_ = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) +
           "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + std::string(body);
    remaining_ = 0;
    Write();
  }

  // Writes out_, then the file's next piece, until the file is done.
  void Write() {
    Arm();
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](boost::system::error_code ec, size_t) {
      if (ec || self->remaining_ == 0) {
        self->timer_.cancel();
        boost::system::error_code ignored;
        self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
        self->socket_.close(ignored);
        return;
      }
      self->out_.resize(std::min<uint64_t>(kPiece, self->remaining_));
      ssize_t n = read(self->fd_, self->out_.data(), self->out_.size());
      if (n <= 0) {  // the file shrank: the peer sees a short body and refuses it
        self->timer_.cancel();
        boost::system::error_code ignored;
        self->socket_.close(ignored);
        return;
      }
      self->out_.resize(static_cast<size_t>(n));
      self->remaining_ -= static_cast<uint64_t>(n);
      self->Write();  // after the last piece, its completion closes

    });
  }

  Socket socket_;
  asio::steady_timer timer_;
  const PeerHttpOptions& options_;
  std::string head_;
  std::array<char, 4096> buf_;
  std::string out_;
  int fd_ = -1;
  uint64_t remaining_ = 0;
};

}  // namespace

void StartPeerHttp(WorkerImpl* w, Socket socket, std::string already_read, const PeerHttpOptions& options) {
  auto conn = std::make_shared<PeerHttpConn>(w, std::move(socket), options);
  conn->Start(std::move(already_read));
}

}  // namespace lever::gateway
