// The contract between the gateway (which relays calls) and the host (which
// knows environments, services and instances). The gateway asks the Router
// where a call goes; the host answers with a Backend (one running instance)
// or a platform error. Implemented by host/, used by gateway/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lever/status.h"

namespace lever::host {

// One call to place. The views are valid only during Route().
struct RouteRequest {
  std::string_view env;
  std::string_view service;
  std::string_view resource;  // empty: no resource
  std::string_view method;
  // The environment whose internal socket the call arrived on; empty for a
  // call from outside (the public port). Internal calls may reach private
  // services; external ones may not.
  std::string_view src_env;
  // The call came from another node's gateway over the peer port (already
  // placed there): place it on this node's own instances, never relay it on.
  bool from_peer = false;
};

// One running instance that accepts h2c (gRPC) connections.
//
// Thread contract: every method may be called from any gateway worker thread
// at any time and must be cheap (atomics, no blocking locks).
class Backend {
 public:
  virtual ~Backend() = default;
  // "unix:/abs/path.sock" or "host:port". Stable for the backend's life.
  virtual const std::string& address() const = 0;
  // Unique for the life of the process (never reused), so the gateway can key
  // its per-worker connection cache on it.
  virtual uint64_t id() const = 0;
  // Load accounting for least-outstanding-requests placement and the
  // autoscaler. A call counts as in flight from the moment Route() places it
  // on this backend (so a burst spreads): for every RouteResult that carries
  // a backend, the gateway calls OnCallEnd exactly once, when the call is
  // over for that backend: its stream to the instance closed, or the call
  // never reached it (the caller went away first, the stream could not be
  // opened, or the call was placed again elsewhere). The gateway never calls
  // OnCallStart; it stays for hosts that count from it (HostOptions::
  // count_at_placement false: tests that drive a Host by hand).
  virtual void OnCallStart() = 0;
  virtual void OnCallEnd() = 0;
  // The gateway could not connect, or its connection died (reset, error
  // GOAWAY). The host checks the instance (a refused connect, not a full
  // backlog) and replaces it if it is gone. A graceful GOAWAY (NO_ERROR) is
  // not a failure: the gateway drains that connection and opens a new one.
  virtual void OnConnectionFailed() = 0;
  // False once the instance is stopping or dead: the gateway stops sending new
  // calls to it (it may finish the calls in flight).
  virtual bool alive() const = 0;
  // True for another node's peer port (address() is its "host:port"): the
  // gateway sends the cluster token with each call it relays there
  // (docs/cluster.md). Default false: a local instance.
  virtual bool is_peer() const { return false; }
  // For a call placed on a resource's owner in a cluster: the resource's
  // fencing token (decimal), which the gateway sends to the instance as
  // x-lever-fencing-token (docs/cluster.md). Stable for the backend's life.
  // Default empty: none.
  virtual std::string_view fencing_token() const { return {}; }
};
using BackendPtr = std::shared_ptr<Backend>;

struct RouteResult {
  Status status;       // OK with a backend, or the platform error to answer with
  BackendPtr backend;  // set when status is OK
};

// A call that waits (for a cold start, or for its resource to open): what
// CancelRoute() needs to take it out of the queue. Empty when `done` already
// ran inside Route().
struct PendingRoute {
  std::weak_ptr<void> queue;
  uint64_t id = 0;
  explicit operator bool() const { return id != 0; }
};

class Router {
 public:
  virtual ~Router() = default;

  // Route() that can be taken back: for a call that has to wait, returns
  // its PendingRoute (or an empty one when `done` already ran). Same
  // contract as Route() otherwise. Default: Route(), not cancellable.
  virtual PendingRoute RouteCancellable(const RouteRequest& request, std::function<void(RouteResult)> done) {
    Route(request, std::move(done));
    return {};
  }
  // The caller of a waiting call went away: the call leaves the queue at
  // once and its `done` runs with CANCELLED (on the calling thread, or not
  // at all if it already ran or is running). Any thread. Default: nothing.
  virtual void CancelRoute(const PendingRoute& pending) { (void)pending; }

  // Places one call. `done` is called exactly once: synchronously when a ready
  // instance exists, or later, on a host thread, after a cold start (the
  // gateway posts it back to its worker). Errors: NOT_FOUND (environment,
  // service not found or not live), PERMISSION_DENIED (private service from
  // outside), INVALID_ARGUMENT (not a routable environment), UNAVAILABLE (no
  // instance could start, or none within the wait bound), RESOURCE_EXHAUSTED
  // (too many calls waiting), CANCELLED (CancelRoute).
  virtual void Route(const RouteRequest& request, std::function<void(RouteResult)> done) = 0;
};
using RouterPtr = std::shared_ptr<Router>;

}  // namespace lever::host
