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

// The memory of a worker's nghttp2 sessions. nghttp2 mallocs and frees
// small blocks for every stream, frame and header it handles; here they
// come from per-size-class free lists instead (blocks up to 4 KiB; larger
// ones go to malloc). One thread at a time: the worker's, or whoever drops
// its last connection. Each class keeps at most kMaxIdleBytes idle, so a
// burst does not pin memory for good. Shared by the sessions that use it.
class SessionMemory {
 public:
  static constexpr size_t kMaxIdleBytes = 256u << 10;
  SessionMemory();
  ~SessionMemory();
  SessionMemory(const SessionMemory&) = delete;
  SessionMemory& operator=(const SessionMemory&) = delete;
  nghttp2_mem* mem() { return &mem_; }
  // Idle bytes held in the free lists (tests).
  size_t idle_bytes() const;

 private:
  static constexpr int kClasses = 7;  // 64 B .. 4 KiB, headers included
  struct Block {
    Block* next;
  };
  static void* Malloc(size_t size, void* user);
  static void Free(void* ptr, void* user);
  static void* Calloc(size_t n, size_t size, void* user);
  static void* Realloc(void* ptr, size_t size, void* user);
  void* Take(size_t size);
  void Give(void* ptr);
  nghttp2_mem mem_;
  std::array<Block*, kClasses> free_{};
  std::array<size_t, kClasses> idle_{};  // blocks in each list
};

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
  H2Conn(WorkerImpl* w, Socket socket);
  H2Conn(WorkerImpl* w, boost::asio::io_context& io);
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
  // A write that Flush left to a later turn has ended: closes on an error,
  // else flushes again.
  void Written(boost::system::error_code ec);
  virtual void OnClose() = 0;

  WorkerImpl* w_;
  // The session's allocator (nghttp2_mem for *_new3); outlives the session.
  std::shared_ptr<SessionMemory> memory_;
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
