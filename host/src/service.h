// A service's in-memory state, shared by the catalog (which creates it), the
// routing path (which places calls under its lock), the lifecycle (which
// decides from a view of it) and the supervisor (which carries decisions
// out). Lock order: host/LOCKS.md.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "instance.h"
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

// A call waiting for a cold start.
struct Waiter {
  uint64_t id = 0;  // the Router's cancel token
  std::string resource;
  SteadyTime deadline;
  std::function<void(RouteResult)> done;
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
  std::vector<std::shared_ptr<Instance>> instances;
  std::deque<Waiter> waiters;
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
