// The per-node ingress of leverd (DESIGN.md, "The gateway is a frame relay").
//
// One TCP port, sniffed per connection: the HTTP/2 client preface goes to a
// frame relay built on nghttp2 that routes each stream by its `lever-url`
// header (asking a host::Router where it goes) and forwards its frames over one
// multiplexed h2c connection per (worker, instance); anything else goes to an
// HTTP/1.1 hook (the HTTP API). Internal listeners (one unix socket per
// environment) accept the calls that instances make; only those carry
// `x-lever-src-env`. Design note: gateway/relay.md.
//
// Headers the relay sets on every call it forwards (clients' own `x-*` headers
// are all dropped, so neither can be spoofed):
//   x-lever-src-env      the environment, for calls on its internal listener only
//   x-lever-client-addr  the caller: "ip:port", "[ip6]:port", or
//                        "unix:<listener path>" for internal listeners
//
// Thread contract: Start and Stop are called from a control thread (never a
// worker). AddInternalListener may be called from any thread except a worker,
// also while Stop runs (it fails once Stop has begun). The stats accessor may
// be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lever/host/router.h"
#include "lever/status.h"

namespace lever::gateway {

// WebSocket streaming calls on the HTTP port (gateway/websocket.md,
// docs/http-api.md "WebSocket").
struct WebSocketOptions {
  // Largest message a client may send, over all its frames; a frame header
  // announcing more closes the connection with 1009 before its payload is
  // read. Default 1 MiB.
  size_t max_message_bytes = 1u << 20;
  // Largest frame leverd sends: a longer message goes out in fragments of
  // this size. Default 16 KiB; at least 8 bytes.
  size_t max_frame_bytes = 16u << 10;
  // A client that sends nothing (no frame at all) for this long is closed
  // with 1001; after half of it leverd pings, so a live browser (which
  // answers pings by itself) stays connected while its call is quiet. The
  // first message (the arguments) must arrive within it too. Default 30 s.
  std::chrono::milliseconds idle_timeout{30000};
  // Origins a page may open WebSockets from, e.g. "https://app.example";
  // other origins get 403. Empty (default): any origin, as CORS for the HTTP
  // API. A WebSocket to admin.lever is only ever accepted from leverd's own
  // pages (same origin) or a client that sends no Origin.
  std::vector<std::string> allowed_origins;
};

// The HTTP/1.1 API (gateway/http_api.md, docs/http-api.md): every connection
// whose first bytes are not the HTTP/2 preface.
struct HttpApiOptions {
  // Request line plus headers. Default 16 KiB (431 beyond).
  size_t max_header_bytes = 16u << 10;
  // Request target. Default 8 KiB (414 beyond).
  size_t max_url_bytes = 8u << 10;
  // Body of a non-streaming call. Default 512 KiB, as the original (413 beyond).
  size_t max_body_bytes = 512u << 10;
  // One line of a streaming request body (a JSON message). Default 1 MiB.
  size_t max_line_bytes = 1u << 20;
  // A request's headers (counted from when the connection is ready for it,
  // so also the keep-alive idle time) and a non-streaming body must each
  // arrive within this; a streaming exchange is closed after this long with
  // no bytes moving either way; a response the client does not read is
  // dropped after this long. Default 30 s.
  std::chrono::milliseconds idle_timeout{30000};
  // Requests per connection before it is closed. Default 0 (unlimited).
  uint32_t max_requests_per_connection = 0;
  // GET requests with `Upgrade: websocket`.
  WebSocketOptions websocket;
  // The node's admin token: the status page (GET /, GET /_lever/status,
  // gateway/status_page.md) is served to loopback clients, and to others
  // that present this token. Empty (default): loopback only.
  std::string admin_token;
};

struct GatewayOptions {
  // Public listen address "host:port" (numeric host or "localhost"). Port 0
  // picks a free port (see Gateway::port()). Default 127.0.0.1:8080.
  std::string listen = "127.0.0.1:8080";
  // Worker threads. Default 0 = std::thread::hardware_concurrency().
  int workers = 0;
  // How long a new connection may take to send its first bytes before it is
  // closed. Default 10 s.
  std::chrono::milliseconds sniff_timeout{10000};
  // Bytes the relay buffers per stream and direction (the HTTP/2 stream
  // window advertised on both sides). While a call waits for a cold start the
  // client can send this much before flow control stops it. Default 1 MiB.
  // Range 16 KiB .. 1 GiB.
  uint32_t stream_window = 1u << 20;
  // Connection-level window on both sides. Default 16 MiB.
  uint32_t connection_window = 16u << 20;
  // HTTP/2 limits toward hostile or wedged peers (docs/operations.md,
  // "HTTP/2 limits"; the defaults are nghttpx 1.52's).
  //
  // SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients; a client that
  // opens more after acknowledging it gets GOAWAY PROTOCOL_ERROR (nghttp2).
  // Default 100.
  uint32_t max_concurrent_streams = 100;
  // A client must send its SETTINGS and acknowledge ours within this after
  // its preface, or it gets GOAWAY SETTINGS_TIMEOUT and is closed. Default
  // 10 s (nghttpx --frontend-http2-setting-timeout).
  std::chrono::milliseconds client_settings_timeout{10000};
  // An instance must send its SETTINGS and acknowledge ours within this after
  // the connection is up; otherwise the connection is closed and the calls
  // queued on it are placed again (the instance saw nothing of them).
  // Default 10 s (nghttpx --backend-http2-settings-timeout).
  std::chrono::milliseconds instance_settings_timeout{10000};
  // A client connection with no open stream for this long gets GOAWAY
  // (NO_ERROR) and is closed. Default 3 min (nghttpx
  // --frontend-http2-read-timeout).
  std::chrono::milliseconds client_idle_timeout{180000};
  // A client connection whose socket takes none of what leverd writes for
  // this long is closed (it does not read), and a call whose response bytes
  // wait this long on a flow-control window the client keeps shut is reset
  // with CANCEL. Default 30 s (nghttpx --frontend-write-timeout, and
  // --stream-write-timeout for the second).
  std::chrono::milliseconds client_write_timeout{30000};
  // Header list (names plus values, trailers included) of a request, and of
  // an instance's response. A larger request is answered RESOURCE_EXHAUSTED,
  // a larger response fails the call with INTERNAL; advertised to clients as
  // SETTINGS_MAX_HEADER_LIST_SIZE. Default 64 KiB (nghttpx
  // --request-header-field-buffer / --response-header-field-buffer).
  uint32_t max_header_list_bytes = 64u << 10;
  // Open connections on the public port and the internal listeners (gRPC,
  // HTTP, WebSocket, and those still sending their first bytes), over all
  // workers and per worker; 0: no cap. A connection beyond a cap is refused
  // as it is accepted: leverd writes an HTTP/2 SETTINGS frame and GOAWAY
  // (ENHANCE_YOUR_CALM, "connection limit") and closes it, before reading
  // anything. Defaults 10000 and 0 (nghttpx --worker-frontend-connections:
  // 0).
  uint32_t max_connections = 10000;
  uint32_t max_connections_per_worker = 0;
  // Bound on connecting to an instance. Default 5 s.
  std::chrono::milliseconds connect_timeout{5000};
  // After each burst of work a worker keeps polling its sockets this long
  // before it sleeps in epoll, if it had at most 4 calls open at once since
  // it last slept: lower latency at low load for CPU. Default 0 (off). See
  // docs/BENCHMARKS.md, "Gateway relay" and "Under foreign clients".
  std::chrono::microseconds busy_poll{0};
  // The HTTP API.
  HttpApiOptions http;
  // The cluster (docs/cluster.md): the token this node sends with every call
  // it relays to another node's peer port (a Backend with is_peer()), and
  // requires of every call and code fetch on its own peer port. Empty: no
  // peer port.
  std::string cluster_token;
  // Where the peer port serves code archives from (<dir>/<sha256>.tgz).
  std::string peer_blob_dir;
};

// Counters for tests and the benchmark (sums over workers).
struct GatewayStats {
  int64_t buffered_bytes = 0;       // DATA bytes held by the relay right now
  int64_t peak_buffered_bytes = 0;  // high-water mark of the above since Start
  int64_t active_streams = 0;       // relayed streams not yet released
  int64_t client_connections = 0;   // open h2 client connections
  int64_t backend_connections = 0;  // open h2c connections to instances
  int64_t streams_total = 0;        // streams accepted since Start
  int64_t http_connections = 0;     // open HTTP/1.1 connections
  int64_t http_responses[6] = {};   // HTTP responses by status class ([2] = 2xx)
  int64_t refused_connections = 0;  // refused by max_connections* since Start
  int64_t timed_out_connections = 0;  // h2 connections closed by a SETTINGS, idle or write timeout
  int64_t pooled_streams = 0;       // Stream objects kept for reuse (idle)
  int64_t pooled_stream_bytes = 0;  // buffer capacity those idle Streams hold
  int64_t http_timer_wakeups = 0;   // HTTP API connection timers that fired since Start
  int64_t busy_polls = 0;           // spins begun after a burst (GatewayOptions::busy_poll)
};

class Gateway {
 public:
  // `router` must outlive the gateway's Stop().
  Gateway(GatewayOptions options, host::RouterPtr router);
  ~Gateway();  // Stop(0) if still running
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds the public port and starts the workers. Errors: INVALID_ARGUMENT
  // (bad options), UNAVAILABLE (cannot bind).
  Status Start();
  // The bound public port (after Start).
  uint16_t port() const;

  // Listens on `unix_socket_path` (an existing file there is replaced) for
  // calls from the instances of environment `env`: they get
  // `x-lever-src-env: env` and may reach private services. The file is removed
  // on Stop. Call after Start.
  Status AddInternalListener(std::string env, std::string unix_socket_path);

  // Listens on `listen` ("ip:port") for other nodes of the cluster: h2c
  // calls relayed by their gateways (each must carry cluster_token, else
  // UNAUTHENTICATED; their x-lever-src-env / x-lever-client-addr are kept;
  // routed with RouteRequest::from_peer) and, over HTTP/1.1, code archives
  // by digest (GET /_lever/peer/blob/<sha256>.tgz with the token). `port`
  // (optional) gets the bound port. Call after Start; needs cluster_token.
  Status AddPeerListener(const std::string& listen, uint16_t* port = nullptr);

  // Stops accepting, sends GOAWAY to every client, lets streams in flight
  // finish for up to `grace`, then closes everything and joins the workers.
  // Idempotent.
  void Stop(std::chrono::milliseconds grace);

  GatewayStats StatsForTest() const;

 private:
  friend struct GatewayTesting;  // src/io.h: test hooks
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lever::gateway
