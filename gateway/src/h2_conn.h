// One nghttp2 session over one socket, driven by Asio (private): read, feed,
// flush, close. The client side (client_side.h) and the backend side
// (backend_side.h) derive from it. See gateway/relay.md, "Threads and
// ownership".
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "io.h"

namespace lever::gateway {

class WorkerImpl;
struct RelayConfig;
struct Stream;

std::string_view View(const uint8_t* p, size_t n);
nghttp2_nv Nv(std::string_view name, std::string_view value);
// The Stream attached to `sid` of `session`, or null.
Stream* StreamOf(nghttp2_session* session, int32_t sid);
// The session option both sides use: no automatic WINDOW_UPDATE (flow
// control end to end, relay.md "Flow control").
const nghttp2_option* RelaySessionOption();

// One side's nghttp2 callbacks, made once per process by `setup`.
class SessionCallbacks {
 public:
  explicit SessionCallbacks(void (*setup)(nghttp2_session_callbacks*)) {
    nghttp2_session_callbacks_new(&cb_);
    setup(cb_);
  }
  ~SessionCallbacks() { nghttp2_session_callbacks_del(cb_); }
  SessionCallbacks(const SessionCallbacks&) = delete;
  SessionCallbacks& operator=(const SessionCallbacks&) = delete;
  const nghttp2_session_callbacks* get() const { return cb_; }

 private:
  nghttp2_session_callbacks* cb_ = nullptr;
};

class H2Conn : public std::enable_shared_from_this<H2Conn> {
 public:
  H2Conn(WorkerImpl* w, Socket socket) : w_(w), socket_(std::move(socket)) {}
  H2Conn(WorkerImpl* w, boost::asio::io_context& io) : w_(w), socket_(io) {}
  virtual ~H2Conn();
  nghttp2_session* session() const { return session_; }
  WorkerImpl* worker() const { return w_; }
  bool closed() const { return closed_; }
  bool dirty = false;

  // Writes what the session has to send; closes when it is done.
  void Flush();
  // Closes the socket and fails the streams (idempotent).
  void Close();

 protected:
  void StartRead();
  // Feeds bytes to nghttp2; false when the connection must close.
  bool Feed(const uint8_t* data, size_t n);
  virtual void OnClose() = 0;

  WorkerImpl* w_;
  Socket socket_;
  nghttp2_session* session_ = nullptr;
  bool closed_ = false;
  bool writing_ = false;
  bool ready_ = true;  // session exists and the socket is connected
  std::chrono::steady_clock::time_point write_started_;  // of the write in flight (writing_)
  std::array<uint8_t, 32768> rbuf_;
  std::vector<uint8_t> wbuf_;
};

}  // namespace lever::gateway
