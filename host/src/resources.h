// Resources with one owner. Every call for lever://env/service/R/method goes
// to R's lease: the instance that owns R. A lease is made when R is first
// called (rendezvous hashing over the ready instances), opened with a
// NewResource call to its owner before any call reaches it, and held: a
// scale-up never moves it. It is closed (CloseResource on the owner, once
// R's calls there are done) when the owner drains or R idles out, and
// dropped without a call when the owner dies; R's next call makes a new one.
// A service without the two methods is served the same (their failure is
// ignored).
//
// In a cluster (resources_cluster.h) R has one owner across every node: a
// lease starts in kClaiming while this node creates R's key in etcd under
// its own etcd lease; the key's create revision is R's fencing token, sent
// to the owner with NewResource, every call and CloseResource. A lease
// whose node lease has ended (by this node's clock) serves nothing more.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "instance.h"
#include "lever/host/router.h"
#include "lever/rpc.h"
#include "remote.h"

namespace lever::host {

namespace etcd {
class Session;
}

// A call waiting: for a cold start, or for its resource's lease to open.
struct Waiter {
  uint64_t id = 0;  // the Router's cancel token
  std::string resource;
  SteadyTime deadline;
  std::function<void(RouteResult)> done;
  bool from_peer = false;  // relayed by another node: stays on this one
};

// The Backend handed out for a resource's calls: the owner's connection and
// load, plus the resource's own calls in flight and last use.
class ResourceLease final : public Backend {
 public:
  enum class State {
    kClaiming,  // in a cluster: R's key is being created in etcd; calls wait
    kOpening,  // NewResource sent (or about to be); calls wait
    kOpen,     // calls go to the owner
    kClosing,  // CloseResource once its calls are done; new calls wait
  };

  ResourceLease(std::string resource, std::shared_ptr<Instance> owner);

  // Backend (atomics only): the owner's address and id, so the gateway
  // shares one connection per instance across its resources.
  const std::string& address() const override { return owner->address(); }
  uint64_t id() const override { return owner->id(); }
  void OnCallStart() override { owner->OnCallStart(); }
  void OnCallEnd() override;
  void OnConnectionFailed() override { owner->OnConnectionFailed(); }
  bool alive() const override { return owner->alive() && !closing_.load(std::memory_order_acquire); }
  std::string_view fencing_token() const override { return token_text_; }

  // Routing, service lock held: one call placed on this lease.
  void Placed(SteadyTime now);
  int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  SteadyTime last_used() const;

  const std::string resource;
  const std::shared_ptr<Instance> owner;

  // Guarded by the service's mutex.
  State state = State::kOpening;
  bool call_sent = false;  // the NewResource / CloseResource call of the state

  // Set with state kClosing; the last call to end then wakes the supervisor.
  void MarkClosing();

  // In a cluster, service lock held: R's key is ours, created at `token`
  // (its create revision) under `session`'s lease. Set once, before any
  // call is placed on the lease.
  void SetClaim(int64_t token, std::shared_ptr<const etcd::Session> session);
  int64_t token() const { return token_; }
  // Whether the lease may take a call: outside a cluster always; in one,
  // while the node lease R's key lives under is alive by this node's clock
  // (it may have ended while etcd was unreachable or the node was paused).
  bool Current() const;
  bool claimed() const { return session_ != nullptr; }
  const std::shared_ptr<const etcd::Session>& session() const { return session_; }

 private:
  int64_t token_ = 0;
  std::string token_text_;
  std::shared_ptr<const etcd::Session> session_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> last_used_ns_{0};
  std::atomic<bool> closing_{false};
};

// Whether a NewResource/CloseResource result means "the service has no such
// method" (UNIMPLEMENTED, NOT_FOUND, or the original runtimes' "Method not
// found" / "Invalid method" application errors): served normally, no note.
bool IsMissingMethod(const Result& r);

// The metadata key that carries a resource's fencing token to its owner
// (docs/cluster.md): set by leverd only (the gateway drops every client x-
// header), on NewResource, CloseResource and every call for the resource.
inline constexpr std::string_view kFencingTokenHeader = "x-lever-fencing-token";

// Who holds a resource's key in etcd, as the watched mirror has it
// (ServiceState::holders): routing relays R's calls to that node.
struct ResourceHolder {
  std::string node;
  int64_t token = 0;         // the key's create revision
  int64_t lease = 0;         // the etcd lease it lives under
  int64_t mod_revision = 0;  // of the key as seen
  // The holder's peer port (made when first needed; again if that peer went).
  std::shared_ptr<RemoteBackend> backend;
};

// How a claim of a resource's key ended (ClusterResources::Claim).
struct ResourceClaim {
  Status status;  // not OK: etcd could not be asked in time
  bool owned = false;
  int64_t token = 0;                             // owned: the fencing token
  std::shared_ptr<const etcd::Session> session;  // owned: the lease the key lives under
  ResourceHolder holder;                         // not owned: who holds it
};

}  // namespace lever::host
