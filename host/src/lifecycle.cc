#include "lifecycle.h"

#include <algorithm>

namespace lever::host {

Plan Decide(const ServiceView& view, const LifecycleOptions& options, SteadyTime now) {
  Plan plan;
  auto wake_at = [&](SteadyTime t) { plan.wake = std::min(plan.wake, t); };
  const int64_t live = view.live_version;
  // Live instances that are not stopping (starting or ready), and of those
  // the ready ones; both drop as this pass stops instances.
  size_t live_active = 0, live_ready = 0;
  for (const InstanceView& inst : view.instances) {
    if (inst.version != live) continue;
    if (inst.state != InstanceState::kStopping && inst.state != InstanceState::kDraining) ++live_active;
    if (inst.state == InstanceState::kReady) ++live_ready;
  }
  auto stop = [&](size_t i, Plan::StopKind kind, std::string reason) {
    const InstanceView& inst = view.instances[i];
    if (inst.version == live) {
      --live_active;
      if (inst.state == InstanceState::kReady) --live_ready;
    }
    plan.stops.push_back({i, kind, std::move(reason)});
  };

  for (size_t i = 0; i < view.instances.size(); ++i) {
    const InstanceView& inst = view.instances[i];
    if (!inst.spawned) continue;
    const bool is_live = inst.version == live && !view.removed;
    switch (inst.state) {
      case InstanceState::kStarting:
        if (view.removed) {
          stop(i, Plan::StopKind::kTerm, "its service was removed");
        } else if (now >= inst.start_deadline) {
          stop(i, Plan::StopKind::kKill, "start timeout");
          plan.stops.back().start_timeout = true;
          plan.stops.back().fail_waiters = live_active == 0;
        } else {
          wake_at(inst.start_deadline);
        }
        break;
      case InstanceState::kReady: {
        if (view.removed) {
          stop(i, Plan::StopKind::kTerm, "its service was removed");
          break;
        }
        if (inst.unhealthy) {
          stop(i, Plan::StopKind::kKill, "its socket no longer accepts connections");
          break;
        }
        SteadyDuration limit = is_live ? options.idle_timeout : options.retired_idle_timeout;
        if (inst.in_flight > 0) {
          wake_at(now + limit);  // look again once it could have become idle
          break;
        }
        bool needed = is_live && live_ready <= static_cast<size_t>(std::max<int64_t>(view.min_instances, 0));
        if (now - inst.last_active >= limit && !needed) {
          stop(i, Plan::StopKind::kTerm, is_live ? "idle" : "its version is no longer live");
        } else if (!needed) {
          wake_at(inst.last_active + limit);
        }
        break;
      }
      case InstanceState::kDraining:
      case InstanceState::kStopping:
        if (!inst.killed) {
          if (now >= inst.kill_deadline) {
            plan.kills.push_back(i);
          } else {
            wake_at(inst.kill_deadline);
          }
        }
        break;
    }
  }
  if (view.removed) {
    plan.removed = true;
    return plan;
  }
  size_t total = view.instances.size();
  auto can_start = [&] { return view.config_ok && total + plan.start < options.max_instances; };
  // Cold-start queue: one instance starting for it at a time.
  if (view.waiters > 0) {
    wake_at(view.first_waiter_deadline);
    size_t live_starting = 0;
    for (const InstanceView& inst : view.instances) {
      if (inst.version == live && inst.state == InstanceState::kStarting) ++live_starting;
    }
    for (const Plan::Stop& s : plan.stops) {
      const InstanceView& inst = view.instances[s.instance];
      if (inst.version == live && inst.state == InstanceState::kStarting) --live_starting;
    }
    if (live_starting == 0 && can_start()) {
      ++plan.start;
      ++live_active;
    }
  }
  // minInstances: started on deploy and on host start, and kept.
  if (live > 0 && view.config_ok && view.min_instances > 0 &&
      live_active < static_cast<size_t>(view.min_instances)) {
    if (now < view.restart_after) {
      wake_at(view.restart_after);
    } else {
      while (live_active < static_cast<size_t>(view.min_instances) && can_start()) {
        ++plan.start;
        ++live_active;
      }
    }
  }
  return plan;
}

}  // namespace lever::host
