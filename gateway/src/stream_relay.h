// The per-stream relay state (private). See gateway/relay.md, "Life of a
// stream". A Stream is one call relayed between a client side (an h2 client
// stream, or an HTTP/1.1 exchange: a Downstream) and a backend side (a stream
// on the worker's h2c connection to the instance). Its state machine is the
// WorkerImpl's "stream relay" functions (stream_relay.cc): Route, OnRouted,
// FailClient, the two On*StreamClosed, ReleaseBackendSide and the downstream
// calls PushUp / TakeDown / DetachDownstream.
#pragma once

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "byte_buf.h"
#include "header_block.h"
#include "lever/host/router.h"
#include "lever/status.h"

namespace lever::gateway {

class WorkerImpl;
class ClientConn;
class BackendConn;

// The response side of a Stream when it is not an h2 client stream: an
// HTTP/1.1 exchange of the HTTP API (http_api.cc). The relay calls these from
// inside its own callbacks, so they must only record what happened and
// Wake(): the worker then calls Process() at the top of its next FlushDirty,
// where the downstream may call the WorkerImpl's downstream functions
// (PushUp, TakeDown, DetachDownstream) and Route.
class Downstream {
 public:
  // The instance's response HEADERS (`end`: trailers-only). Copy what you need.
  virtual void OnResponseHeaders(const HeaderBlock& headers, bool end) = 0;
  // The relay failed the call (routing, connection, reset); once per stream.
  virtual void OnFail(Code code, std::string_view message) = 0;
  // Something changed (response data, end, request buffer drained).
  virtual void Wake() = 0;
  // Called by the worker for a scheduled downstream (see WorkerImpl::Schedule).
  virtual void Process() = 0;
  // Gateway stop: Drain (finish the exchange in flight, then close) or Close.
  virtual void Drain() = 0;
  virtual void Close() = 0;
  virtual const std::string& client_addr() const = 0;
  bool scheduled = false;

 protected:
  ~Downstream() = default;
};

// One call relayed from a client stream to a backend stream. Pooled per
// worker: `gen` changes on every reuse, so a late Router answer for a released
// stream is recognised and dropped.
struct Stream {
  uint64_t gen = 0;
  uint32_t slot = 0;  // index in the worker's pool
  // Client side. `client` is null once that stream is closed.
  ClientConn* client = nullptr;
  int32_t csid = -1;
  // Or an HTTP API exchange (then `client` stays null).
  Downstream* ds = nullptr;
  size_t client_index = 0;  // position in client->streams_
  // Backend side. `bconn` is non-null while the backend stream is open or
  // queued on a connecting BackendConn.
  BackendConn* bconn = nullptr;
  int32_t bsid = -1;  // -1: not submitted yet
  size_t backend_index = 0;
  host::BackendPtr backend;
  bool call_started = false;  // placed on `backend` (the host counted it): OnCallEnd owed
  bool routing = false;       // a Router answer is outstanding
  bool rerouted = false;      // placed again once (a dead connection, a refused stream)
  host::PendingRoute pending;  // while routing and queued in the host: to cancel it

  // Request (client -> backend).
  HeaderBlock req;
  std::string url;  // the lever-url value
  ByteBuf up;
  bool up_eof = false;        // client sent END_STREAM
  bool up_deferred = false;   // the backend data source returned DEFERRED
  bool up_consumed = false;   // connection window already returned for `up`
  bool discard_up = false;    // answered by the relay: drop client DATA
  bool headers_too_large = false;
  bool up_taken = false;      // some request DATA went to a backend stream
  // From the peer port: the cluster token matched, and the relaying node's
  // x-lever-src-env / x-lever-client-addr (passed on to the instance).
  bool peer_authed = false;
  std::string peer_src_env;
  std::string peer_client_addr;
  HeaderBlock up_trailers;    // rare: request trailers

  // Response (backend -> client).
  ByteBuf down;
  bool resp_started = false;  // response HEADERS submitted to the client
  bool down_eof = false;      // backend ended its side (or the relay did)
  bool down_deferred = false;
  bool down_consumed = false;
  // Since when `down` has held bytes the client took none of (its window is
  // shut), as the client connection's timer saw it; max(): reset for it.
  std::chrono::steady_clock::time_point down_waiting_since{};
  HeaderBlock trailers;

  bool attached() const { return client != nullptr || ds != nullptr; }
  // Back to the pool's idle state; large buffers and header arenas are given
  // back, so a burst does not pin memory in every pooled stream.
  void Reset() {
    client = nullptr;
    ds = nullptr;
    csid = -1;
    bconn = nullptr;
    bsid = -1;
    backend.reset();
    call_started = routing = rerouted = false;
    pending = {};
    req.Release();
    if (url.capacity() > HeaderBlock::kKeepArenaBytes) {
      std::string().swap(url);
    } else {
      url.clear();
    }
    up.Release();
    up_eof = up_deferred = up_consumed = discard_up = headers_too_large = up_taken = peer_authed = false;
    peer_src_env.clear();
    peer_client_addr.clear();
    up_trailers.Release();
    down.Release();
    resp_started = down_eof = down_deferred = down_consumed = false;
    down_waiting_since = {};
    trailers.Release();
  }
  // Bytes the stream's buffers hold (pool accounting, tests).
  size_t capacity() const {
    return req.capacity() + url.capacity() + up.capacity() + up_trailers.capacity() + down.capacity() +
           trailers.capacity();
  }
};

// The end of a data source read, the same in both directions: once one side's
// buffer is drained and that side has ended, EOF (with its trailers, if any);
// while it waits for more, DEFERRED; otherwise the `n` bytes just copied.
// Constant-time comparison of a presented cluster token with ours; an empty
// token of ours matches nothing.
bool TokenEquals(std::string_view presented, std::string_view ours);

ssize_t EndOfRead(WorkerImpl* w, nghttp2_session* session, int32_t sid, size_t n, const ByteBuf& buffer, bool eof,
                  const HeaderBlock& trailers, bool* deferred, uint32_t* flags);

}  // namespace lever::gateway
