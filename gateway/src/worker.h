// A gateway worker (private): one thread, one io_context, the connections it
// owns (clients, HTTP exchanges, instances) and the pooled Streams between
// them. No locks on the relay path; Router answers from other threads are
// posted back. See gateway/relay.md, "Threads and ownership".
#pragma once

#include <nghttp2/nghttp2.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "io.h"
#include "lever/gateway/gateway.h"
#include "lever/host/router.h"
#include "lever/status.h"
#include "stream_relay.h"

namespace lever::gateway {

class H2Conn;
class SessionMemory;
class ClientConn;
class BackendConn;

struct WorkerCounters {
  std::atomic<int64_t> buffered{0};
  std::atomic<int64_t> peak{0};
  std::atomic<int64_t> streams{0};
  std::atomic<int64_t> clients{0};
  std::atomic<int64_t> backends{0};
  std::atomic<int64_t> streams_total{0};
  std::atomic<int64_t> http_connections{0};
  std::atomic<int64_t> http_responses[6] = {};  // by status class: [1] 1xx .. [5] 5xx
  // Connections accepted for this worker and not yet handed to the relay or
  // the HTTP API (the sniffer reads their first bytes); for the caps.
  std::atomic<int64_t> sniffing{0};
  std::atomic<int64_t> refused{0};
  std::atomic<int64_t> timed_out{0};
  std::atomic<int64_t> pooled{0};
  std::atomic<int64_t> pooled_bytes{0};
  std::atomic<int64_t> http_timer_fires{0};
  std::atomic<int64_t> busy_polls{0};  // spins begun (RelayConfig::busy_poll)
  // Every open connection of this worker (for max_connections*).
  int64_t connections() const {
    return clients.load(std::memory_order_relaxed) + http_connections.load(std::memory_order_relaxed) +
           sniffing.load(std::memory_order_relaxed);
  }
};

// What WaitUntilIdleForTest (io.h) blocks on: a worker notifies it after its
// stream or client count drops, only while someone waits (a load of
// `waiters` otherwise). The drop and that load are seq_cst, against the
// waiter's increment of `waiters` and its loads of the counts, so either the
// worker sees the waiter or the waiter sees the drop.
struct IdleWatch {
  std::atomic<int> waiters{0};
  std::mutex mu;
  std::condition_variable cv;
  void Notify() {
    if (waiters.load() == 0) return;
    std::lock_guard<std::mutex> lock(mu);
    cv.notify_all();
  }
};

struct RelayConfig {
  uint32_t stream_window = 1u << 20;
  uint32_t connection_window = 16u << 20;
  uint32_t max_concurrent_streams = 100;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::microseconds busy_poll{0};
  // Sent with every call relayed to another node's peer port, and required
  // of every call arriving on this node's (GatewayOptions::cluster_token).
  std::string cluster_token;
  std::chrono::milliseconds client_settings_timeout{10000};
  std::chrono::milliseconds instance_settings_timeout{10000};
  std::chrono::milliseconds client_idle_timeout{180000};
  std::chrono::milliseconds client_write_timeout{30000};
  uint32_t max_header_list_bytes = 64u << 10;
};

// Idle Streams a worker keeps for reuse; beyond, a released Stream is freed,
// so a burst does not pin its buffers for good.
inline constexpr size_t kMaxPooledStreams = 256;
// A worker busy-polls (RelayConfig::busy_poll) only if it has relayed at
// most this many streams at once since it last slept.
inline constexpr int64_t kBusyPollMaxStreams = 4;

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
  // `peer`: it came in on the peer port (calls from other nodes' gateways).
  void StartClient(Socket socket, std::string preface, std::string src_env, bool peer = false);

  // --- the stream pool and Router answers (worker.cc) ---
  Stream* NewStream();
  // Returns `s` to the pool once both sides are gone and no answer is owed.
  void MaybeRelease(Stream* s);
  // A Router answer, from any thread (see Route).
  struct RouteTicket {
    uint32_t worker;
    uint32_t slot;
    uint64_t gen;
  };
  static void Deliver(RouteTicket ticket, host::RouteResult result);

  // --- the per-stream state machine (stream_relay.cc) ---
  // End of the request HEADERS: check lever-url, ask the Router.
  void Route(Stream* s, std::string_view src_env, bool from_peer = false);
  void OnRouted(Stream* s, host::RouteResult result);
  // Places a stream again that never reached its instance (ends the first
  // placement's load); once per stream.
  void Replace(Stream* s);
  // Takes a queued call back from the host when its caller is gone.
  void CancelRouting(Stream* s);
  // Answers the client with a trailers-only gRPC error (or error trailers if
  // the response already started) and drops the rest of the request.
  void FailClient(Stream* s, Code code, std::string_view message);
  // One side of a stream closed (nghttp2 on_stream_close, or its connection
  // closed). `conn_lost` non-empty: the backend connection died.
  void OnClientStreamClosed(Stream* s, uint32_t error_code);
  void ReleaseBackendSide(Stream* s, bool cancel);
  void OnBackendStreamClosed(Stream* s, uint32_t error_code, std::string_view conn_lost);
  // Downstreams (HTTP API exchanges): Process() `d` at the next FlushDirty
  // (the caller keeps it alive until then).
  void Schedule(Downstream* d);
  // Appends request bytes (gRPC frames) for the instance; `eof` ends the request.
  void PushUp(Stream* s, std::string_view data, bool eof);
  // Moves up to `max` response bytes into `out`, returning the instance that
  // much flow-control window.
  size_t TakeDown(Stream* s, std::string* out, size_t max);
  // The downstream is done with `s` (`cancel`: the instance's handler sees a
  // cancellation if the call is still open). `s` may be released.
  void DetachDownstream(Stream* s, bool cancel);

  // --- connections (worker.cc) ---
  // Buffered-bytes accounting.
  void AddBuffered(int64_t n);
  // Connections call these; FlushDirty writes every touched connection once
  // per event (so a frame relayed from A to B goes out in the same turn).
  void MarkDirty(H2Conn* c);
  void FlushDirty();
  void OnConnClosed(H2Conn* c);
  // The worker's connection to `backend` (made on first use).
  BackendConn* GetBackendConn(const host::BackendPtr& backend);
  // A BackendConn that takes no new streams (GOAWAY, closed) leaves the map;
  // it stays alive (retired) until it is closed.
  void ForgetBackend(BackendConn* c);
  // Graceful stop: GOAWAY to clients; Close all at the deadline.
  void Drain();
  void CloseAll();
  // HTTP connections, for stop and /metrics.
  void AddHttp(Downstream* d);
  void RemoveHttp(Downstream* d);
  std::vector<nghttp2_nv>& nv_scratch() { return nv_scratch_; }
  // The allocator of this worker's nghttp2 sessions.
  const std::shared_ptr<SessionMemory>& session_memory() const { return session_memory_; }

  // Every worker of this gateway (for /metrics); set by Gateway::Start.
  const std::vector<std::shared_ptr<WorkerImpl>>* siblings = nullptr;
  // The gateway's, for WaitUntilIdleForTest; set by Gateway::Start.
  IdleWatch* idle_watch = nullptr;

 private:
  void OnTicket(RouteTicket ticket, host::RouteResult result);

  boost::asio::io_context io_;
  size_t index_;
  uint32_t serial_;  // process-unique, names the worker in RouteTickets
  RelayConfig config_;
  host::Router* router_;
  std::shared_ptr<SessionMemory> session_memory_;
  WorkerCounters counters_;
  std::vector<std::unique_ptr<Stream>> all_streams_;  // by slot; null: freed
  std::vector<Stream*> free_streams_;
  std::vector<uint32_t> free_slots_;  // null entries of all_streams_
  std::vector<std::unique_ptr<Stream>> dead_streams_;  // freed at the end of this event
  uint64_t next_gen_ = 0;             // worker-unique Stream generations
  int64_t peak_streams_ = 0;          // most streams open at once since the worker last slept (busy_poll)
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
};

// The Router's `done`: 16 trivially copyable bytes, which std::function keeps
// in its small buffer (no heap allocation per call).
struct RouteDone {
  WorkerImpl::RouteTicket ticket;
  void operator()(host::RouteResult result) const { WorkerImpl::Deliver(ticket, std::move(result)); }
};
static_assert(std::is_trivially_copyable_v<RouteDone> && sizeof(RouteDone) <= 16);

}  // namespace lever::gateway
