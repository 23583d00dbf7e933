// A service's in-memory state, shared by the catalog (which creates it), the
// routing path (which places calls under its lock), the lifecycle (which
// decides from a view of it) and the supervisor (which carries decisions
// out). Lock order: host/LOCKS.md.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "instance.h"
#include "remote.h"
#include "lifecycle.h"
#include "resources.h"
#include "lever/host/clock.h"
#include "lever/host/lever_json.h"
#include "lever/host/registry.h"
#include "lever/host/router.h"
#include "lever/status.h"

namespace lever::host {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// A deployed version on its way to live: its instances start first, and it
// is switched to once one of them is ready (or given up if one fails).
struct Rollout {
  int64_t version = 0;  // 0: none
  LeverConfig config;
  std::string code_dir;
  bool failed = false;     // an instance of it exited before any was ready
  std::string failure;     // how ("the instance exited with status 1")
  std::string failed_log;  // its last output lines
};

// How a rollout ended, for the deploy that waits on it.
struct RolloutResult {
  bool done = false;
  Status status;  // OK: switched
};

// The autoscaler's memory (the lifecycle reads it in the view and returns
// the new values in its plan).
struct Autoscaler {
  std::deque<LoadSample> samples;  // oldest first, trimmed to the stable window
  SteadyTime next_sample{};
  SteadyTime last_sample{};
  uint64_t last_area = 0;     // call-µs of every instance so far, at last_sample
  uint64_t retired_area = 0;  // call-µs of instances that are gone
  SteadyTime panic_until{};
  SteadyTime last_scale_down{};
  // The most calls at once since the last sample, as routing placed them.
  double peak = 0;
  // Routing woke the supervisor for a peak that needs twice the instances
  // (once per pass; the pass clears it).
  bool peak_woken = false;
  int64_t desired = 0;
  const char* reason = "idle";
  // This node's own part of the last sample (in a cluster the samples hold
  // the cluster's concurrency), which it publishes.
  double local_load = 0;
  double local_peak = 0;
};

struct ServiceState : std::enable_shared_from_this<ServiceState> {
  ServiceState(std::string e, std::string n) : env(std::move(e)), name(std::move(n)) {}
  const std::string env;
  const std::string name;
  bool is_admin() const { return env == kAdminEnv && name == kAdminService; }

  std::mutex mu;
  // Guarded by mu.
  bool removed = false;
  ServiceInfo info;
  LeverConfig config;  // of the live version
  Status config_status;
  std::string code_dir;  // of the live version
  Rollout rollout;
  std::map<int64_t, RolloutResult> rollouts;  // by version; the last few
  std::condition_variable rollout_cv;          // with mu: rollouts changed
  std::vector<std::shared_ptr<Instance>> instances;
  std::deque<Waiter> waiters;
  StringMap<std::shared_ptr<ResourceLease>> leases;
  // In a cluster: every resource's holder in etcd, as watched
  // (resources_cluster.h); a local lease, when there is one, comes first.
  StringMap<ResourceHolder> holders;
  // Other nodes' instances of this service (the cluster layer keeps it).
  std::vector<RemoteCandidate> remote;
  Autoscaler scaler;
  SteadyTime last_call{};
  int crash_streak = 0;
  SteadyTime restart_after{};
};
using ServicePtr = std::shared_ptr<ServiceState>;

// Work to do once every host lock is released: answers to the gateway and
// lines for the service's log.
struct Deferred {
  std::vector<std::pair<std::function<void(RouteResult)>, RouteResult>> calls;
  struct Note {
    std::string env, service, instance_id, text;
    int64_t version;
  };
  std::vector<Note> notes;
  std::vector<std::function<void()>> after;  // run last (e.g. calls to instances)

  void Answer(std::function<void(RouteResult)> done, RouteResult r) {
    calls.emplace_back(std::move(done), std::move(r));
  }
  void AddNote(const ServiceState& svc, int64_t version, const std::string& instance_id, std::string text) {
    notes.push_back({svc.env, svc.name, instance_id, std::move(text), version});
  }
};

inline std::string ServiceUrl(std::string_view env, std::string_view service) {
  return "lever://" + std::string(env) + "/" + std::string(service);
}

inline bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Instances of the service, service lock held: with live_only, those of the
// live version that are neither draining nor stopping; with starting_only,
// only starting ones.
inline size_t CountInstancesLocked(const ServiceState& svc, bool live_only, bool starting_only) {
  size_t n = 0;
  for (const auto& inst : svc.instances) {
    if (live_only && (inst->version != svc.info.live_version || inst->state == InstanceState::kStopping ||
                      inst->state == InstanceState::kDraining)) {
      continue;
    }
    if (starting_only && inst->state != InstanceState::kStarting) continue;
    ++n;
  }
  return n;
}

// "1.5" for 1500 ms: durations in messages.
std::string Seconds(SteadyDuration d);

}  // namespace lever::host
