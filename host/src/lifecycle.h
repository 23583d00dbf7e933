// The lifecycle of a service's instances as one pure function: from a view
// of the service (its instances, resource leases, waiting calls, load
// samples, a rollout in progress) and the time, decide what to do: start
// instances, drain, stop or kill some, switch the live version, fail a
// rollout, close resource leases, and when to look again. No I/O, no clock,
// no locks: the supervisor builds the view under the service's lock, calls
// Decide() and carries the plan out, so every transition is unit-tested with
// plain values (lifecycle_test.cc). docs/scheduling.md explains the rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "instance.h"
#include "lever/host/clock.h"

namespace lever::host {

struct LifecycleOptions {
  SteadyDuration start_timeout = std::chrono::seconds(15);
  // No call for this long: the service scales to zero (unless minInstances).
  SteadyDuration idle_timeout = std::chrono::minutes(5);
  // A draining instance (old version, or scaled down) with no call in flight
  // stops once nothing was placed on it for this long. The time between a
  // placement and the gateway's first frame is covered by it.
  SteadyDuration drain_settle = std::chrono::milliseconds(200);
  // A draining instance stops after this even with calls in flight, and a
  // stopping one is killed this long after SIGTERM.
  SteadyDuration stop_grace = std::chrono::seconds(10);
  // Autoscaler windows: the average over the stable window sets the count
  // (and alone may lower it, one instance per tick); the panic window's peak
  // raises it at once when it needs twice the instances there are.
  SteadyDuration stable_window = std::chrono::seconds(60);
  SteadyDuration panic_window = std::chrono::seconds(6);
  // A resource lease with no call for this long is closed (CloseResource).
  SteadyDuration resource_idle = std::chrono::minutes(3);
  // Instances per service, counting those of a rollout.
  size_t max_instances = 16;
};

// The load sample period: a sixth of the panic window, within [10 ms, 1 s].
SteadyDuration SampleTick(const LifecycleOptions& options);

// Concurrency (calls in flight plus calls waiting) over one tick: its mean,
// time-weighted, and its peak (the most at once, as calls were placed; a
// burst of short calls barely moves the mean); `at` is the tick's end,
// `span` its length.
struct LoadSample {
  SteadyTime at{};
  SteadyDuration span{};
  double concurrency = 0;
  double peak = 0;  // >= concurrency
};

struct InstanceView {
  int64_t version = 0;
  InstanceState state = InstanceState::kStarting;
  bool spawned = false;        // the runtime started it (a start may be queued)
  bool unhealthy = false;      // the gateway reported a failure and the probe found it dead
  int64_t in_flight = 0;
  size_t resources = 0;        // leases it owns
  SteadyTime last_active{};    // last placement or call end
  SteadyTime start_deadline{};  // starting: must accept a connection by then
  SteadyTime drain_deadline{};  // draining: stops by then whatever is in flight
  SteadyTime kill_deadline{};   // stopping: SIGKILL then
  bool killed = false;
};

struct LeaseView {
  size_t owner = 0;  // index into ServiceView::instances
  bool open = false;  // NewResource done; false while opening or closing
  bool closing = false;
  int64_t in_flight = 0;
  SteadyTime last_used{};
};

// Per-version settings from lever.json.
struct VersionView {
  int64_t version = 0;  // 0: none
  bool config_ok = true;
  int64_t min_instances = 0;
  double max_instance_load = 10;
};

// Another node's part of a service in a cluster (docs/cluster.md
// "Cluster-wide autoscaling"), as it published it in its `inst/` key. The
// autoscaler sums the cluster's load from these and takes its own share of
// the cluster's count.
struct PeerLoad {
  uint64_t rank = 0;      // NodeRank(): the same on every node
  int64_t instances = 0;  // its ready and starting instances of the live version
  double load = 0;        // its concurrency over its last tick (calls in flight and waiting)
  double peak = 0;        // the most at once in that tick
  bool waiting = false;   // calls wait there for an instance
  bool recent = false;    // it had a call within its idle period
};

// A node's rank for a service: the order in which nodes are given a
// service's instances when they have as many (lowest first) and lose them
// (highest first). The same number on every node.
uint64_t NodeRank(std::string_view env, std::string_view service, std::string_view node);

// How many of a cluster-wide count of `total` instances this node runs: from
// where the instances are now (this node's `mine`, the others' in `peers`), a
// missing instance goes to the node with the fewest (ties: one where calls
// wait, then the lowest rank), a surplus one leaves the node with the most
// (ties: the highest rank), never below `floor` on a node nor above `cap`.
// Every node computes this from the same published data, so they agree
// without talking to each other.
int64_t ClusterShare(int64_t total, int64_t mine, uint64_t rank, bool waiting, std::span<const PeerLoad> peers,
                     int64_t floor, int64_t cap);

struct ServiceView {
  bool removed = false;
  VersionView live;      // the version calls go to
  VersionView rollout;   // a deployed version starting up (0: none)
  bool rollout_failed = false;  // one of its instances exited before any was ready
  std::vector<InstanceView> instances;
  std::vector<LeaseView> leases;
  size_t waiters = 0;                  // calls waiting for a cold start
  size_t relayed_waiters = 0;          // of those, calls another node relayed here
  SteadyTime first_waiter_deadline{};  // of the oldest one
  SteadyTime restart_after{};          // crash-loop backoff
  // Autoscaler inputs and memory.
  std::span<const LoadSample> samples;  // oldest first
  double concurrency_now = 0;           // in flight + waiting, now
  SteadyTime last_call{};               // last call placed or queued (or the switch)
  SteadyTime panic_until{};             // no scale-down before this
  SteadyTime last_scale_down{};
  // In a cluster: the other usable nodes that run or call the service.
  // `samples` then hold the cluster's concurrency (this node's plus what the
  // others published); `concurrency_now` stays this node's own (the peers'
  // loads are added to it). Empty: this node decides alone.
  std::span<const PeerLoad> peers;
  uint64_t rank = 0;  // this node's NodeRank()
};

struct Plan {
  enum class StopKind {
    kDrain,  // no new calls; SIGTERM once idle (or at drain_deadline)
    kTerm,   // SIGTERM now, SIGKILL after stop_grace
    kKill,   // SIGKILL now (it failed: no start, or a dead socket)
  };
  struct Stop {
    size_t instance;  // index into ServiceView::instances
    StopKind kind;
    std::string reason;  // for the service's log: "idle", "scaled down", ...
    bool start_timeout = false;  // it never accepted a connection in time
    // It was the last live instance that could serve: fail the waiting calls
    // (UNAVAILABLE, with why it failed).
    bool fail_waiters = false;
  };
  size_t start = 0;           // new instances of the live version
  size_t start_rollout = 0;   // new instances of the rollout's version
  std::vector<Stop> stops;
  std::vector<size_t> kills;  // stopping instances whose grace ran out
  std::vector<size_t> close_leases;  // indices into ServiceView::leases
  bool switch_live = false;   // a rollout instance is ready: it is live now
  std::string fail_rollout;   // non-empty: the rollout failed, with why
  bool removed = false;       // the service is gone: fail waiters with NOT_FOUND

  // The autoscaler's verdict, for `lever ps` and its memory: the count for
  // the whole cluster (one node: for this node), and this node's share of it.
  int64_t desired = 0;
  int64_t share = 0;
  const char* reason = "idle";  // "min", "panic", "stable" or "idle"
  SteadyTime panic_until{};
  SteadyTime last_scale_down{};

  SteadyTime wake = SteadyTime::max();  // look again by then
};

Plan Decide(const ServiceView& view, const LifecycleOptions& options, SteadyTime now);

}  // namespace lever::host
