// WebSocket streaming calls on the HTTP port (private). See gateway/websocket.md.
//
// The HTTP API (http_api.cc) reads a request head; a GET with
// `Upgrade: websocket` is checked here (CheckUpgrade) and, when it is a valid
// upgrade to a streaming method, the connection is handed over (StartWebSocket):
// RFC 6455 on Beast's websocket stream, one streaming call per connection,
// relayed through the same relay Stream path as every HTTP and gRPC call.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>

#include "http_parse.h"
#include "io.h"
#include "lever/gateway/gateway.h"

namespace lever::gateway {

class WorkerImpl;

namespace ws {

using RequestHead = boost::beast::http::request_header<>;

// The request asks for a WebSocket (it has an `Upgrade` header naming
// websocket); CheckUpgrade says whether it is a valid one.
bool WantsUpgrade(const RequestHead& req);

// What a valid upgrade opens.
struct Upgrade {
  http::Target target;
  std::string client_addr;  // x-lever-client-addr
  std::string admin_token;  // sent as lever-admin-token (admin.lever only)
};

// Checks an upgrade request from `client_addr` (PeerAddress). Returns 0 and
// fills `out`, or the HTTP status to answer (400 malformed upgrade or URL, a
// unary method; 403 origin; 404 environment; 426 WebSocket version) with a
// message and extra response headers. `buffered` is how many bytes the client
// sent after the head: a client must wait for the handshake (RFC 6455 4.1).
int CheckUpgrade(const RequestHead& req, std::string_view client_addr, size_t buffered, const HttpApiOptions& options,
                 Upgrade* out, std::string* error, std::string* extra_headers);

// Takes over the connection of a checked upgrade on its worker: answers 101
// and runs the call.
void StartWebSocket(WorkerImpl* w, Socket socket, RequestHead req, Upgrade upgrade, const WebSocketOptions& options);

// When a connection's idle rule acts (pure, so that it is tested on made-up
// times; the connection arms one timer at NextCheck()).
class IdleRule {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Action { kNone, kPing, kClose };
  IdleRule(std::chrono::milliseconds timeout, Clock::time_point now) : timeout_(timeout), last_(now) {}
  // A frame arrived from the client (any frame, pongs included).
  void Received(Clock::time_point now) {
    last_ = now;
    pinged_ = false;
  }
  // After half the timeout of silence: ping once (when `may_ping`); after
  // the whole timeout: close.
  Action Check(Clock::time_point now, bool may_ping) {
    if (now - last_ >= timeout_) return Action::kClose;
    if (may_ping && !pinged_ && now - last_ >= timeout_ / 2) {
      pinged_ = true;
      return Action::kPing;
    }
    return Action::kNone;
  }
  Clock::time_point NextCheck(bool may_ping) const {
    return may_ping && !pinged_ ? last_ + timeout_ / 2 : last_ + timeout_;
  }

 private:
  std::chrono::milliseconds timeout_;
  Clock::time_point last_;
  bool pinged_ = false;
};

// A close reason of at most 123 bytes (RFC 6455 5.5.1), cut at a UTF-8
// character boundary.
std::string CloseReason(std::string_view text);

}  // namespace ws
}  // namespace lever::gateway
