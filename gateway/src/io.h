// The gateway's Asio types (private; tests include it for the HTTP/1 hook).
// The public gateway.h has none of them. See gateway/relay.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>

namespace lever::gateway {

class Gateway;

// A connected stream socket (TCP or unix), bound to its worker's io_context.
using Socket = boost::asio::generic::stream_protocol::socket;

// One worker thread: its io_context runs every connection it owns.
class Worker {
 public:
  virtual ~Worker() = default;
  virtual boost::asio::io_context& io_context() = 0;
  // 0 .. workers-1.
  virtual size_t index() const = 0;
};

// Takes over a connection whose first bytes were not the HTTP/2 preface.
// Called on the worker thread that owns `socket`; `already_read` holds the
// bytes the sniffer consumed (never more than 24); `src_env` is the
// environment of the internal listener it arrived on, empty on the public
// port. The handler owns the socket from then on and must not block.
using Http1Handler =
    std::function<void(Socket&& socket, std::string already_read, std::string_view src_env, Worker& worker)>;

// Replaces the HTTP API with `handler` for the connections `gateway` accepts
// from now on (tests of the sniffer). Before Start.
void SetHttp1HandlerForTest(Gateway& gateway, Http1Handler handler);

// Hands `fd`, a connected stream socket (e.g. one end of a socketpair), to
// `gateway` as if its public port had just accepted it: the connection caps,
// the sniffer, then the relay or the HTTP API, on the next worker. The
// gateway owns `fd` from then on. After Start, before Stop (the h2c fuzzer:
// no TCP handshake per input).
void AdoptConnectionForTest(Gateway& gateway, int fd);

// Blocks until `gateway` holds no relayed stream and no h2 client connection,
// or until `deadline`; returns whether it got there. Wakes on the workers'
// notifications (IdleWatch in worker.h), no polling.
bool WaitUntilIdleForTest(Gateway& gateway, std::chrono::steady_clock::time_point deadline);

// TCP_NODELAY on TCP sockets.
void SetTcpNoDelay(Socket& socket);
// "ip:port", "[ip6]:port", or "unix:<path of the listener>" (unix clients
// are unnamed).
std::string PeerAddress(Socket& socket);

}  // namespace lever::gateway
