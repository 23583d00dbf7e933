// Other nodes as routing sees them (private): a peer's port as a Backend,
// and a service's instances on another node (ServiceState::remote). The
// cluster layer (cluster.h) makes and updates them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lever/host/clock.h"
#include "lever/host/router.h"

namespace lever::host {

// Another node, from its `node/` key.
struct Peer {
  std::string name;
  std::string address;  // its peer port, "host:port"
  uint64_t id = 0;      // the Backend id all its RemoteBackends share (one connection per gateway worker)
  ClockPtr clock;
  std::atomic<bool> gone{false};
  // A connection to it failed: no new calls until then (or until its key is
  // written again).
  std::atomic<int64_t> suspect_until_ns{0};
  bool usable() const {
    return !gone.load(std::memory_order_acquire) &&
           clock->Now().time_since_epoch().count() >= suspect_until_ns.load(std::memory_order_acquire);
  }
};

// A service on another node, as routing places calls on it: the peer's
// port, with this node's own count of calls relayed there.
class RemoteBackend final : public Backend {
 public:
  RemoteBackend(std::shared_ptr<Peer> peer, bool count_at_placement, SteadyDuration suspect_for)
      : peer_(std::move(peer)), count_at_placement_(count_at_placement), suspect_for_(suspect_for) {}
  const std::string& address() const override { return peer_->address; }
  uint64_t id() const override { return peer_->id; }
  void OnCallStart() override {
    if (!count_at_placement_) in_flight_.fetch_add(1, std::memory_order_relaxed);
  }
  void OnCallEnd() override { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  void OnConnectionFailed() override {
    peer_->suspect_until_ns.store((peer_->clock->Now() + suspect_for_).time_since_epoch().count(),
                                  std::memory_order_release);
  }
  bool alive() const override { return peer_->usable(); }
  bool is_peer() const override { return true; }

  // Routing (service lock held): one call placed here.
  void Placed() {
    if (count_at_placement_) in_flight_.fetch_add(1, std::memory_order_relaxed);
  }
  int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  const Peer& peer() const { return *peer_; }

 private:
  const std::shared_ptr<Peer> peer_;
  const bool count_at_placement_;
  const SteadyDuration suspect_for_;
  std::atomic<int64_t> in_flight_{0};
};

// One node's instances of a service, for routing (ServiceState::remote).
struct RemoteCandidate {
  std::shared_ptr<RemoteBackend> backend;
  int64_t version = 0;
  int64_t ready = 0;      // ready instances there
  int64_t in_flight = 0;  // calls in flight there, as last published
};

// What a node publishes per service (from the supervisor's tick): for
// routing, its ready instances and calls in flight; for the cluster-wide
// autoscaler (lifecycle.h PeerLoad), its starting instances and its own load.
struct ServiceLoad {
  std::string env, service;
  int64_t version = 0;
  std::vector<std::string> ready;  // ids of its ready instances of `version`
  int64_t in_flight = 0;
  int64_t starting = 0;  // instances of `version` starting
  double load = 0;       // this node's concurrency over its last tick
  double peak = 0;
  int64_t waiting = 0;   // calls waiting for an instance here
  bool recent = false;   // called here within the idle period
  // A rollout here: its version and its instances (starting or ready), so
  // that a node that learns of the new live version first counts them.
  int64_t rollout = 0;
  int64_t rollout_instances = 0;
};

}  // namespace lever::host
