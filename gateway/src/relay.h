// The HTTP/2 frame relay (private). See gateway/relay.md.
//
// Everything here lives on one worker thread: a ClientConn (nghttp2 server
// session toward one client), the BackendConns of that worker (nghttp2 client
// sessions toward instances, keyed by Backend::id()) and the Streams relayed
// between them. No locks; Router answers from other threads are posted back.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "lever/gateway/gateway.h"
#include "lever/host/router.h"
#include "lever/status.h"

namespace lever::gateway {

class WorkerImpl;
class H2Conn;
class ClientConn;
class BackendConn;
class HeaderBlock;

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

// A FIFO of bytes that keeps its storage between uses.
class ByteBuf {
 public:
  size_t size() const { return data_.size() - head_; }
  bool empty() const { return head_ == data_.size(); }
  void Append(const uint8_t* p, size_t n) {
    if (head_ != 0 && head_ == data_.size()) Clear();
    if (head_ > (64u << 10) && head_ > data_.size() / 2) {
      data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    data_.insert(data_.end(), p, p + n);
  }
  size_t Read(uint8_t* out, size_t n) {
    n = std::min(n, size());
    if (n != 0) std::memcpy(out, data_.data() + head_, n);
    head_ += n;
    if (head_ == data_.size()) Clear();
    return n;
  }
  void Clear() {
    data_.clear();
    head_ = 0;
  }
  // Gives back big storage (a pooled stream must not pin a window's worth).
  void Release() {
    Clear();
    if (data_.capacity() > (64u << 10)) std::vector<uint8_t>().swap(data_);
  }

 private:
  std::vector<uint8_t> data_;
  size_t head_ = 0;
};

// A header block copied out of nghttp2's callbacks, in arrival order.
class HeaderBlock {
 public:
  void Clear() {
    arena_.clear();
    refs_.clear();
  }
  bool empty() const { return refs_.empty(); }
  size_t bytes() const { return arena_.size(); }
  void Add(std::string_view name, std::string_view value) {
    refs_.push_back({arena_.size(), name.size(), arena_.size() + name.size(), value.size()});
    arena_.append(name);
    arena_.append(value);
  }
  // The first value of `name`, or null.
  bool Find(std::string_view name, std::string_view* value) const {
    for (const Ref& r : refs_) {
      if (std::string_view(arena_.data() + r.name_off, r.name_len) == name) {
        *value = std::string_view(arena_.data() + r.value_off, r.value_len);
        return true;
      }
    }
    return false;
  }
  // Fills `nv` (cleared first); the pointers are valid until the next Add/Clear.
  void ToNv(std::vector<nghttp2_nv>* nv) const {
    nv->clear();
    AppendNv(nv);
  }
  void AppendNv(std::vector<nghttp2_nv>* nv) const {
    for (const Ref& r : refs_) {
      nv->push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(arena_.data() + r.name_off)),
                               reinterpret_cast<uint8_t*>(const_cast<char*>(arena_.data() + r.value_off)),
                               r.name_len, r.value_len, NGHTTP2_NV_FLAG_NONE});
    }
  }

 private:
  struct Ref {
    size_t name_off, name_len, value_off, value_len;
  };
  std::string arena_;
  std::vector<Ref> refs_;
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
  bool call_started = false;  // OnCallStart called, OnCallEnd owed
  bool routing = false;       // a Router answer is outstanding
  bool rerouted = false;      // placed again once after a dead instance connection

  // Request (client -> backend).
  HeaderBlock req;
  std::string url;  // the lever-url value
  ByteBuf up;
  bool up_eof = false;        // client sent END_STREAM
  bool up_deferred = false;   // the backend data source returned DEFERRED
  bool up_consumed = false;   // connection window already returned for `up`
  bool discard_up = false;    // answered by the relay: drop client DATA
  bool headers_too_large = false;
  HeaderBlock up_trailers;    // rare: request trailers

  // Response (backend -> client).
  ByteBuf down;
  bool resp_started = false;  // response HEADERS submitted to the client
  bool down_eof = false;      // backend ended its side (or the relay did)
  bool down_deferred = false;
  bool down_consumed = false;
  HeaderBlock trailers;

  bool attached() const { return client != nullptr || ds != nullptr; }
  void Reset() {
    client = nullptr;
    ds = nullptr;
    csid = -1;
    bconn = nullptr;
    bsid = -1;
    backend.reset();
    call_started = routing = rerouted = false;
    req.Clear();
    url.clear();
    up.Release();
    up_eof = up_deferred = up_consumed = discard_up = headers_too_large = false;
    up_trailers.Clear();
    down.Release();
    resp_started = down_eof = down_deferred = down_consumed = false;
    trailers.Clear();
  }
};

struct WorkerCounters {
  std::atomic<int64_t> buffered{0};
  std::atomic<int64_t> peak{0};
  std::atomic<int64_t> streams{0};
  std::atomic<int64_t> clients{0};
  std::atomic<int64_t> backends{0};
  std::atomic<int64_t> streams_total{0};
  std::atomic<int64_t> http_connections{0};
  std::atomic<int64_t> http_responses[6] = {};  // by status class: [1] 1xx .. [5] 5xx
};

struct RelayConfig {
  uint32_t stream_window = 1u << 20;
  uint32_t connection_window = 16u << 20;
  uint32_t max_concurrent_streams = 10000;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::microseconds busy_poll{0};
};

// TCP_NODELAY on TCP sockets.
void SetTcpNoDelay(Socket& socket);
// "ip:port", "[ip6]:port", or "unix:<path of the listener>".
std::string PeerAddress(Socket& socket);

class WorkerImpl final : public Worker, public std::enable_shared_from_this<WorkerImpl> {
 public:
  WorkerImpl(size_t index, const RelayConfig& config, host::Router* router);
  ~WorkerImpl() override;
  // Makes the worker reachable for late Router answers; call once, after
  // make_shared. RunThread runs the io_context on the calling thread.
  void Register();
  void RunThread();

  boost::asio::io_context& io_context() override { return io_; }
  size_t index() const override { return index_; }
  const RelayConfig& config() const { return config_; }
  host::Router* router() const { return router_; }
  WorkerCounters& counters() { return counters_; }

  // Takes over an h2c connection whose 24-byte preface is in `preface`.
  void StartClient(Socket socket, std::string preface, std::string src_env);

  // Streams.
  Stream* NewStream();
  void MaybeRelease(Stream* s);
  void Route(Stream* s, std::string_view src_env);
  void OnRouted(Stream* s, host::RouteResult result);
  // A Router answer, from any thread (see Route).
  struct RouteTicket {
    uint32_t worker;
    uint32_t slot;
    uint64_t gen;
  };
  static void Deliver(RouteTicket ticket, host::RouteResult result);
  // Answers the client with a trailers-only gRPC error (or error trailers if
  // the response already started) and drops the rest of the request.
  void FailClient(Stream* s, Code code, std::string_view message);
  // One side of a stream closed (nghttp2 on_stream_close, or its connection
  // closed). `conn_lost` non-empty: the backend connection died.
  void OnClientStreamClosed(Stream* s, uint32_t error_code);
  void ReleaseBackendSide(Stream* s, bool cancel);
  void OnBackendStreamClosed(Stream* s, uint32_t error_code, std::string_view conn_lost);

  // Buffered-bytes accounting.
  void AddBuffered(int64_t n);

  // Connections call these; FlushDirty writes every touched connection once
  // per event (so a frame relayed from A to B goes out in the same turn).
  void MarkDirty(H2Conn* c);
  void FlushDirty();
  void OnConnClosed(H2Conn* c);

  // Graceful stop: GOAWAY to clients; Close all at the deadline.
  void Drain();
  void CloseAll();

  // --- downstreams (HTTP API exchanges) ---
  // Process() `d` at the next FlushDirty (the caller keeps it alive until then).
  void Schedule(Downstream* d);
  // Appends request bytes (gRPC frames) for the instance; `eof` ends the request.
  void PushUp(Stream* s, std::string_view data, bool eof);
  // Moves up to `max` response bytes into `out`, returning the instance that
  // much flow-control window.
  size_t TakeDown(Stream* s, std::string* out, size_t max);
  // The downstream is done with `s` (`cancel`: the instance's handler sees a
  // cancellation if the call is still open). `s` may be released.
  void DetachDownstream(Stream* s, bool cancel);
  // HTTP connections, for stop and /metrics.
  void AddHttp(Downstream* d);
  void RemoveHttp(Downstream* d);
  // Every worker of this gateway (for /metrics); set by Gateway::Start.
  const std::vector<std::shared_ptr<WorkerImpl>>* siblings = nullptr;

 private:
  friend class BackendConn;
  BackendConn* GetBackendConn(const host::BackendPtr& backend);

  void OnTicket(RouteTicket ticket, host::RouteResult result);

  boost::asio::io_context io_;
  size_t index_;
  uint32_t serial_;  // process-unique, names the worker in RouteTickets
  RelayConfig config_;
  host::Router* router_;
  WorkerCounters counters_;
  std::vector<std::unique_ptr<Stream>> all_streams_;
  std::vector<Stream*> free_streams_;
  std::unordered_map<uint64_t, std::shared_ptr<BackendConn>> backends_;
  std::vector<std::shared_ptr<BackendConn>> retired_;  // after GOAWAY, until closed
  std::vector<std::shared_ptr<ClientConn>> clients_;
  std::vector<std::shared_ptr<H2Conn>> graveyard_;      // closed this event
  std::vector<H2Conn*> dirty_;
  std::vector<H2Conn*> flush_list_;
  std::vector<Downstream*> ds_dirty_;
  std::vector<Downstream*> ds_list_;
  std::vector<Downstream*> http_;
  bool flushing_ = false;
  bool draining_ = false;
  std::vector<nghttp2_nv> nv_scratch_;
  std::string scratch_;      // messages built by Route
  std::string enc_scratch_;  // percent-encoded grpc-message

 public:
  std::thread thread;
  // Keeps the BackendConn alive while it is in backends_ or has streams.
  void ForgetBackend(BackendConn* c);
  std::vector<nghttp2_nv>& nv_scratch() { return nv_scratch_; }
};

// One nghttp2 session over one socket, driven by Asio.
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
  std::array<uint8_t, 32768> rbuf_;
  std::vector<uint8_t> wbuf_;
};

class ClientConn final : public H2Conn {
 public:
  ClientConn(WorkerImpl* w, Socket socket, std::string src_env);
  ~ClientConn() override;
  bool Init(const std::string& preface);
  const std::string& src_env() const { return src_env_; }
  // The peer, for x-lever-client-addr: "ip:port", "[ip6]:port" or "unix:<listener path>".
  const std::string& client_addr() const { return client_addr_; }
  void AddStream(Stream* s);
  void RemoveStream(Stream* s);
  size_t stream_count() const { return streams_.size(); }
  void Goaway();
  HeaderBlock& scratch() { return scratch_; }

 private:
  void OnClose() override;
  std::string src_env_;
  std::string client_addr_;
  std::vector<Stream*> streams_;
  HeaderBlock scratch_;
};

class BackendConn final : public H2Conn {
 public:
  BackendConn(WorkerImpl* w, host::BackendPtr backend);
  ~BackendConn() override;
  void Connect();
  bool connected() const { return connected_; }
  bool usable() const { return !closed_ && !goaway_; }
  const host::BackendPtr& backend() const { return backend_; }
  // Opens the backend stream for `s` now or once connected.
  void Submit(Stream* s);
  void RemoveStream(Stream* s);  // s->bconn cleared by caller
  void OnGoaway();
  // The instance's first SETTINGS frame: it speaks HTTP/2 on this connection.
  void OnPeerSettings();
  HeaderBlock& scratch() { return scratch_; }

 private:
  void OnConnected();
  void OnClose() override;
  bool SubmitNow(Stream* s);
  host::BackendPtr backend_;
  bool connected_ = false;
  // Streams are submitted only once the instance sent its SETTINGS: until
  // then nothing of a call has reached it, so a connection that dies first
  // (an instance that just crashed, still accepting in the kernel) lets the
  // relay place its calls again instead of failing them.
  bool peer_ready_ = false;
  bool goaway_ = false;
  bool failed_reported_ = false;
  std::string fail_message_;
  boost::asio::steady_timer connect_timer_;
  std::vector<Stream*> streams_;  // open or queued
  HeaderBlock scratch_;
};

}  // namespace lever::gateway
