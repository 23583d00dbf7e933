#include "h2_conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "worker.h"

namespace lever::gateway {

namespace asio = boost::asio;

std::string_view View(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

nghttp2_nv Nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

Stream* StreamOf(nghttp2_session* session, int32_t sid) {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, sid));
}

const nghttp2_option* RelaySessionOption() {
  struct Option {
    nghttp2_option* option = nullptr;
    Option() {
      nghttp2_option_new(&option);
      // Flow control end to end: bytes are consumed only as the other side
      // takes them (nghttp2_session_consume).
      nghttp2_option_set_no_auto_window_update(option, 1);
    }
    ~Option() { nghttp2_option_del(option); }
  };
  static const Option option;
  return option.option;
}

void SetTcpNoDelay(Socket& socket) {
  boost::system::error_code ec;
  auto local = socket.local_endpoint(ec);
  if (ec) return;
  if (local.protocol().family() == AF_INET || local.protocol().family() == AF_INET6) {
    int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

std::string PeerAddress(Socket& socket) {
  boost::system::error_code ec;
  auto peer = socket.remote_endpoint(ec);
  if (ec) return "";
  char text[INET6_ADDRSTRLEN] = {};
  const sockaddr* sa = peer.data();
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  if (sa->sa_family == AF_UNIX) {
    auto local = socket.local_endpoint(ec);
    if (ec || local.size() <= offsetof(sockaddr_un, sun_path)) return "unix:";
    auto* un = reinterpret_cast<const sockaddr_un*>(local.data());
    size_t n = local.size() - offsetof(sockaddr_un, sun_path);
    return "unix:" + std::string(un->sun_path, strnlen(un->sun_path, n));
  }
  return "";
}

// --- SessionMemory -------------------------------------------------------------

namespace {
// A block's class sits in a 16-byte header in front of it (nghttp2 wants
// malloc's alignment). kLarge: a plain malloc of that size.
constexpr size_t kHeader = 16;
constexpr uint32_t kLarge = UINT32_MAX;
constexpr size_t ClassBytes(int c) { return size_t{64} << c; }
int ClassOf(size_t size) {
  size_t total = size + kHeader;
  for (int c = 0; c < 7; ++c) {
    if (total <= ClassBytes(c)) return c;
  }
  return -1;
}
uint32_t& ClassTag(void* user_ptr) { return *reinterpret_cast<uint32_t*>(static_cast<char*>(user_ptr) - kHeader); }
}  // namespace

SessionMemory::SessionMemory() : mem_{this, &Malloc, &Free, &Calloc, &Realloc} {}

SessionMemory::~SessionMemory() {
  for (Block*& head : free_) {
    while (head != nullptr) {
      Block* next = head->next;
      std::free(head);
      head = next;
    }
  }
}

size_t SessionMemory::idle_bytes() const {
  size_t n = 0;
  for (int c = 0; c < kClasses; ++c) n += idle_[c] * ClassBytes(c);
  return n;
}

void* SessionMemory::Take(size_t size) {
  int c = ClassOf(size);
  void* raw;
  if (c < 0) {
    raw = std::malloc(size + kHeader);
    if (raw == nullptr) return nullptr;
    *static_cast<uint32_t*>(raw) = kLarge;
  } else {
    if (free_[c] != nullptr) {
      raw = free_[c];
      free_[c] = free_[c]->next;
      --idle_[c];
    } else {
      raw = std::malloc(ClassBytes(c));
      if (raw == nullptr) return nullptr;
    }
    *static_cast<uint32_t*>(raw) = static_cast<uint32_t>(c);
  }
  return static_cast<char*>(raw) + kHeader;
}

void SessionMemory::Give(void* ptr) {
  if (ptr == nullptr) return;
  uint32_t c = ClassTag(ptr);
  void* raw = static_cast<char*>(ptr) - kHeader;
  if (c == kLarge || (idle_[c] + 1) * ClassBytes(static_cast<int>(c)) > kMaxIdleBytes) {
    std::free(raw);
    return;
  }
  auto* b = static_cast<Block*>(raw);
  b->next = free_[c];
  free_[c] = b;
  ++idle_[c];
}

void* SessionMemory::Malloc(size_t size, void* user) { return static_cast<SessionMemory*>(user)->Take(size); }

void SessionMemory::Free(void* ptr, void* user) { static_cast<SessionMemory*>(user)->Give(ptr); }

void* SessionMemory::Calloc(size_t n, size_t size, void* user) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;
  void* p = static_cast<SessionMemory*>(user)->Take(n * size);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

void* SessionMemory::Realloc(void* ptr, size_t size, void* user) {
  auto* self = static_cast<SessionMemory*>(user);
  if (ptr == nullptr) return self->Take(size);
  uint32_t c = ClassTag(ptr);
  if (c == kLarge) {
    void* raw = std::realloc(static_cast<char*>(ptr) - kHeader, size + kHeader);
    return raw == nullptr ? nullptr : static_cast<char*>(raw) + kHeader;
  }
  size_t have = ClassBytes(static_cast<int>(c)) - kHeader;
  if (size <= have) return ptr;
  void* p = self->Take(size);
  if (p == nullptr) return nullptr;
  std::memcpy(p, ptr, have);
  self->Give(ptr);
  return p;
}

// --- H2Conn ----------------------------------------------------------------------

namespace {
// The most Flush gathers from nghttp2 for one write.
constexpr size_t kFlushChunk = size_t{256} << 10;
}  // namespace

H2Conn::H2Conn(WorkerImpl* w, Socket socket) : w_(w), memory_(w->session_memory()), socket_(std::move(socket)) {}

H2Conn::H2Conn(WorkerImpl* w, boost::asio::io_context& io) : w_(w), memory_(w->session_memory()), socket_(io) {}

H2Conn::~H2Conn() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void H2Conn::StartRead() {
  socket_.async_read_some(asio::buffer(rbuf_), [self = shared_from_this(), this](boost::system::error_code ec,
                                                                                  size_t n) {
    if (closed_) return;
    if (ec || !Feed(rbuf_.data(), n)) {
      Close();
      w_->FlushDirty();
      return;
    }
    // Forward first: the next read (often a speculative recv that finds
    // nothing) stays off the critical path.
    w_->FlushDirty();
    if (!closed_) StartRead();
  });
}

bool H2Conn::Feed(const uint8_t* data, size_t n) {
  ssize_t rv = nghttp2_session_mem_recv(session_, data, n);
  if (rv < 0) return false;
  w_->MarkDirty(this);
  return true;
}

void H2Conn::Flush() {
  if (closed_ || writing_ || !ready_) return;
  for (;;) {
    wbuf_.clear();
    for (;;) {
      const uint8_t* p = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &p);
      if (n < 0) {
        Close();
        return;
      }
      if (n == 0) break;
      wbuf_.insert(wbuf_.end(), p, p + n);
      if (wbuf_.size() >= kFlushChunk) break;
    }
    if (wbuf_.empty()) {
      if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) Close();
      return;
    }
    // Send in this turn. Asio's async_write sends at once too, but it posts
    // its completion even when the send took everything, and that queued
    // handler makes the worker poll epoll once more (timeout 0) before it
    // sleeps: one wasted syscall per write at low load. Only what the socket
    // does not take now waits for an async_write.
    boost::system::error_code ec;
    if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
    size_t sent = ec ? 0 : socket_.write_some(asio::buffer(wbuf_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      sent = 0;
    } else if (ec) {
      Close();
      return;
    }
    if (sent == wbuf_.size() && wbuf_.size() < kFlushChunk) continue;  // all of it: is the session done?
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    if (sent == wbuf_.size()) {
      // A whole chunk went out and more may wait: the rest goes on a later
      // turn, as after an async_write, so that one fast reader with much to
      // send does not keep the worker from its other connections.
      asio::post(w_->io_context(), [self = shared_from_this(), this] { Written({}); });
      return;
    }
    asio::async_write(socket_, asio::buffer(wbuf_.data() + sent, wbuf_.size() - sent),
                      [self = shared_from_this(), this](boost::system::error_code write_ec, size_t) {
                        Written(write_ec);
                      });
    return;
  }
}

void H2Conn::Written(boost::system::error_code ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    Close();
  } else {
    w_->MarkDirty(this);
  }
  w_->FlushDirty();
}

void H2Conn::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
  OnClose();
  w_->OnConnClosed(this);
}

}  // namespace lever::gateway
