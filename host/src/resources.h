// Resources with one owner. Every call for lever://env/service/R/method goes
// to R's lease: the instance that owns R. A lease is made when R is first
// called (rendezvous hashing over the ready instances), opened with a
// NewResource call to its owner before any call reaches it, and held: a
// scale-up never moves it. It is closed (CloseResource on the owner, once
// R's calls there are done) when the owner drains or R idles out, and
// dropped without a call when the owner dies; R's next call makes a new one.
// A service without the two methods is served the same (their failure is
// ignored).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "instance.h"
#include "lever/host/router.h"
#include "lever/rpc.h"

namespace lever::host {

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

 private:
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> last_used_ns_{0};
  std::atomic<bool> closing_{false};
};

// Whether a NewResource/CloseResource result means "the service has no such
// method" (UNIMPLEMENTED, NOT_FOUND, or the original runtimes' "Method not
// found" / "Invalid method" application errors): served normally, no note.
bool IsMissingMethod(const Result& r);

}  // namespace lever::host
