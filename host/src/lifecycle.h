// The lifecycle of a service's instances as one pure function: from a view
// of the service (its instances, waiting calls, config) and the time, decide
// what to do: start instances, stop or kill some, fail waiting calls, and
// when to look again. No I/O, no clock, no locks: the supervisor builds the
// view under the service's lock, calls Decide() and carries the plan out, so
// every transition is unit-tested with plain values (lifecycle_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "instance.h"
#include "lever/host/clock.h"

namespace lever::host {

struct LifecycleOptions {
  SteadyDuration start_timeout = std::chrono::seconds(15);
  SteadyDuration idle_timeout = std::chrono::minutes(5);
  SteadyDuration retired_idle_timeout = std::chrono::seconds(5);
  SteadyDuration stop_grace = std::chrono::seconds(10);
  size_t max_instances = 16;
};

struct InstanceView {
  int64_t version = 0;
  InstanceState state = InstanceState::kStarting;
  bool spawned = false;        // the runtime started it (a start may be queued)
  bool unhealthy = false;      // the gateway reported a failure and the probe found it dead
  int64_t in_flight = 0;
  SteadyTime last_active{};
  SteadyTime start_deadline{};  // starting: must accept a connection by then
  SteadyTime kill_deadline{};   // stopping: SIGKILL then
  bool killed = false;
};

struct ServiceView {
  bool removed = false;
  int64_t live_version = 0;
  bool config_ok = true;  // the live version's lever.json was read
  int64_t min_instances = 0;
  std::vector<InstanceView> instances;
  size_t waiters = 0;               // calls waiting for a cold start
  SteadyTime first_waiter_deadline{};  // of the oldest one
  SteadyTime restart_after{};       // crash-loop backoff for minInstances
};

struct Plan {
  enum class StopKind {
    kTerm,  // SIGTERM now, SIGKILL after stop_grace
    kKill,  // SIGKILL now (it failed: no start, or dead socket)
  };
  struct Stop {
    size_t instance;  // index into ServiceView::instances
    StopKind kind;
    std::string reason;  // for the service's log: "idle", ...
    bool start_timeout = false;  // it never accepted a connection in time
    // It was the last live instance that could serve: fail the waiting calls
    // (UNAVAILABLE, with why it failed).
    bool fail_waiters = false;
  };
  size_t start = 0;            // new instances of the live version
  std::vector<Stop> stops;
  std::vector<size_t> kills;   // stopping instances whose grace ran out
  bool removed = false;        // the service is gone: fail waiters with NOT_FOUND
  SteadyTime wake = SteadyTime::max();  // look again by then
};

Plan Decide(const ServiceView& view, const LifecycleOptions& options, SteadyTime now);

}  // namespace lever::host
