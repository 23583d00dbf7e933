#include "lifecycle.h"

#include <algorithm>
#include <cmath>

#include "lever/host/placement.h"

namespace lever::host {
namespace {

bool Serving(InstanceState s) { return s == InstanceState::kStarting || s == InstanceState::kReady; }

// Instances needed for `concurrency` at `load` calls each. A need within 1%
// of a whole instance rounds down: a steady 4 calls measured as 4.004 (the
// meters are read while calls start and end) needs 4 instances, not 5.
int64_t Need(double concurrency, double load) {
  if (concurrency <= 0) return 0;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(concurrency / load - 0.01)));
}

}  // namespace

uint64_t NodeRank(std::string_view env, std::string_view service, std::string_view node) {
  std::string key;
  key.reserve(env.size() + service.size() + node.size() + 2);
  key.append(env).append("/").append(service).append("\n").append(node);
  return PlacementKey(key);
}

int64_t ClusterShare(int64_t total, int64_t mine, uint64_t rank, bool waiting, std::span<const PeerLoad> peers,
                     int64_t floor, int64_t cap) {
  struct Slot {
    int64_t n;
    uint64_t rank;
    bool waiting;
  };
  std::vector<Slot> slots;
  slots.reserve(peers.size() + 1);
  slots.push_back({mine, rank, waiting});
  int64_t sum = mine;
  for (const PeerLoad& p : peers) {
    slots.push_back({std::max<int64_t>(p.instances, 0), p.rank, p.waiting});
    sum += slots.back().n;
  }
  // A missing instance: the fewest first, then where calls wait, then the rank.
  auto gets_before = [](const Slot& a, const Slot& b) {
    if (a.n != b.n) return a.n < b.n;
    if (a.waiting != b.waiting) return a.waiting;
    return a.rank < b.rank;
  };
  while (sum < total) {
    Slot* best = nullptr;
    for (Slot& s : slots) {
      if (s.n < cap && (!best || gets_before(s, *best))) best = &s;
    }
    if (!best) break;
    ++best->n;
    ++sum;
  }
  // A surplus instance: the most first, then the highest rank.
  while (sum > total) {
    Slot* worst = nullptr;
    for (Slot& s : slots) {
      if (s.n > floor && (!worst || s.n > worst->n || (s.n == worst->n && s.rank > worst->rank))) worst = &s;
    }
    if (!worst) break;
    --worst->n;
    --sum;
  }
  return slots.front().n;
}

SteadyDuration SampleTick(const LifecycleOptions& options) {
  return std::clamp<SteadyDuration>(options.panic_window / 6, std::chrono::milliseconds(10), std::chrono::seconds(1));
}

Plan Decide(const ServiceView& view, const LifecycleOptions& o, SteadyTime now) {
  Plan plan;
  plan.panic_until = view.panic_until;
  plan.last_scale_down = view.last_scale_down;
  auto wake_at = [&](SteadyTime t) { plan.wake = std::min(plan.wake, t); };
  const SteadyDuration tick = SampleTick(o);
  const int64_t old_live = view.live.version;
  const int64_t rollout = view.rollout.version;
  const size_t n = view.instances.size();
  std::vector<bool> stopped(n, false);
  auto stop = [&](size_t i, Plan::StopKind kind, std::string reason) {
    stopped[i] = true;
    plan.stops.push_back({i, kind, std::move(reason)});
    return &plan.stops.back();
  };
  auto active = [&](size_t i) { return !stopped[i] && Serving(view.instances[i].state); };

  // 1. Rules for each instance on its own.
  for (size_t i = 0; i < n; ++i) {
    const InstanceView& inst = view.instances[i];
    if (!inst.spawned) continue;
    const bool current = inst.version == old_live || inst.version == rollout;
    switch (inst.state) {
      case InstanceState::kStarting:
        if (view.removed) {
          stop(i, Plan::StopKind::kTerm, "its service was removed");
        } else if (!current) {
          stop(i, Plan::StopKind::kTerm, "its version is no longer live");
        } else if (now >= inst.start_deadline) {
          stop(i, Plan::StopKind::kKill, "start timeout")->start_timeout = true;
        } else {
          wake_at(inst.start_deadline);
        }
        break;
      case InstanceState::kReady:
        if (view.removed) {
          stop(i, Plan::StopKind::kTerm, "its service was removed");
        } else if (inst.unhealthy) {
          stop(i, Plan::StopKind::kKill, "its socket no longer accepts connections");
        } else if (!current) {
          stop(i, Plan::StopKind::kDrain, "its version is no longer live");
        }
        break;
      case InstanceState::kDraining: {
        bool idle = inst.in_flight == 0 && inst.resources == 0;
        if ((idle && now - inst.last_active >= o.drain_settle) || now >= inst.drain_deadline) {
          stop(i, Plan::StopKind::kTerm, idle ? "drained" : "drain timeout");
        } else {
          if (idle) wake_at(inst.last_active + o.drain_settle);
          wake_at(inst.drain_deadline);
        }
        break;
      }
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

  // 2. A rollout: start its instances, switch once one is ready, or give up.
  int64_t live = old_live;
  VersionView live_view = view.live;
  if (rollout > 0) {
    bool ready = false, timed_out = false;
    size_t starting = 0;
    for (size_t i = 0; i < n; ++i) {
      if (view.instances[i].version != rollout) continue;
      if (active(i) && view.instances[i].state == InstanceState::kReady) ready = true;
      if (active(i)) ++starting;
    }
    for (const Plan::Stop& s : plan.stops) {
      if (view.instances[s.instance].version == rollout && s.start_timeout) timed_out = true;
    }
    if (view.rollout_failed || timed_out) {
      plan.fail_rollout = timed_out && !view.rollout_failed ? "start timeout" : "exited";
      for (size_t i = 0; i < n; ++i) {
        if (view.instances[i].version == rollout && active(i)) {
          stop(i, Plan::StopKind::kTerm, "its version failed to start");
        }
      }
    } else if (ready) {
      plan.switch_live = true;
      live = rollout;
      live_view = view.rollout;
      for (size_t i = 0; i < n; ++i) {
        const InstanceView& inst = view.instances[i];
        if (inst.version != old_live || !active(i)) continue;
        if (inst.state == InstanceState::kReady) {
          stop(i, Plan::StopKind::kDrain, "its version is no longer live");
        } else {
          stop(i, Plan::StopKind::kTerm, "its version is no longer live");
        }
      }
    } else {
      size_t live_count = 0;
      for (size_t i = 0; i < n; ++i) {
        if (view.instances[i].version == old_live && active(i)) ++live_count;
      }
      int64_t target = std::max<int64_t>({1, view.rollout.min_instances, static_cast<int64_t>(live_count)});
      target = std::min<int64_t>(target, static_cast<int64_t>(o.max_instances));
      if (static_cast<int64_t>(starting) < target && view.rollout.config_ok) {
        plan.start_rollout = static_cast<size_t>(target) - starting;
      }
    }
  }

  // 3. Resource leases: closed when their owner goes, or when idle.
  for (size_t j = 0; j < view.leases.size(); ++j) {
    const LeaseView& lease = view.leases[j];
    if (!lease.open || lease.closing) continue;
    const InstanceView& owner = view.instances[lease.owner];
    bool owner_going = stopped[lease.owner] || !Serving(owner.state) || owner.version != live;
    if (owner_going) {
      plan.close_leases.push_back(j);
    } else if (lease.in_flight == 0 && now - lease.last_used >= o.resource_idle) {
      plan.close_leases.push_back(j);
    } else {
      wake_at(lease.last_used + o.resource_idle);
    }
  }

  // 4. The autoscaler, for the live version: the count the load needs
  // (over the cluster, in one), then this node's share of it.
  if (live <= 0) return plan;
  std::vector<size_t> serving;  // live instances starting or ready
  for (size_t i = 0; i < n; ++i) {
    if (view.instances[i].version == live && active(i)) serving.push_back(i);
  }
  const int64_t current = static_cast<int64_t>(serving.size());
  int64_t cluster_current = current;
  double concurrency_now = view.concurrency_now;
  bool peers_recent = false;
  for (const PeerLoad& p : view.peers) {
    cluster_current += std::max<int64_t>(p.instances, 0);
    concurrency_now += std::max(p.load, 0.0);
    peers_recent |= p.recent;
  }
  const double load = live_view.max_instance_load > 0 ? live_view.max_instance_load : 10.0;
  // The stable window's average over the time its samples cover (a gap
  // with no instance is covered by the next sample's span, at zero load);
  // with no sample yet, the load now.
  double area = 0, covered = 0, peak = concurrency_now;
  const SteadyTime stable_start = now - o.stable_window;
  for (const LoadSample& s : view.samples) {
    if (s.at > stable_start) {
      double span = std::chrono::duration<double>(std::min(s.span, s.at - stable_start)).count();
      area += s.concurrency * span;
      covered += span;
    }
    if (s.at > now - o.panic_window) peak = std::max({peak, s.concurrency, s.peak});
  }
  const double stable_average = covered > 0 ? area / covered : concurrency_now;
  const int64_t stable_need = Need(stable_average, load);
  const int64_t panic_need = Need(peak, load);
  // A version just switched to counts as called now: it stays warm. With
  // no call for the idle period (on any node) the windows' history is moot:
  // zero.
  const SteadyTime last_call = plan.switch_live ? now : view.last_call;
  const bool recent_here = view.concurrency_now > 0 || now - last_call < o.idle_timeout;
  const bool recent = recent_here || concurrency_now > 0 || peers_recent;
  if (recent && panic_need > 0 && panic_need >= 2 * cluster_current) plan.panic_until = now + o.stable_window;
  if (!recent) plan.panic_until = {};
  const bool panicking = now < plan.panic_until;

  int64_t desired = recent ? stable_need : 0;
  plan.reason = "stable";
  if (panicking && std::max(panic_need, cluster_current) >= desired) {
    desired = std::max(panic_need, cluster_current);  // no scale-down while panicking
    plan.reason = "panic";
  }
  if (desired == 0 && recent) desired = 1;  // stays warm until the idle period ends
  if (desired == 0) plan.reason = "idle";
  const int64_t nodes = 1 + static_cast<int64_t>(view.peers.size());
  // minInstances holds on every node (each keeps that many warm), and
  // max_instances bounds every node.
  const int64_t min = std::min<int64_t>(live_view.min_instances, static_cast<int64_t>(o.max_instances));
  if (min * nodes > desired) {
    desired = min * nodes;
    plan.reason = "min";
  }
  desired = std::min<int64_t>(desired, static_cast<int64_t>(o.max_instances) * nodes);
  const int64_t split = view.peers.empty()
                            ? desired
                            : std::max(min, ClusterShare(desired, current, view.rank, view.waiters > 0, view.peers,
                                                         min, static_cast<int64_t>(o.max_instances)));
  plan.desired = desired;
  // Calls relayed here by another node wait for an instance of this node
  // (they are never relayed on): one here, whatever the split says. (A call
  // that arrived here goes to another node's instance once one is known.)
  plan.share = view.relayed_waiters > 0 && current == 0 ? std::max<int64_t>(split, 1) : split;
  const int64_t share_here = plan.share;
  if (recent_here && view.concurrency_now <= 0) wake_at(last_call + o.idle_timeout);

  size_t in_use = plan.start_rollout;  // instances that count against max_instances
  for (size_t i = 0; i < n; ++i) {
    if (active(i)) ++in_use;
  }
  if (current < share_here) {
    if (now < view.restart_after) {
      wake_at(view.restart_after);
    } else if (live_view.config_ok && in_use < o.max_instances) {
      plan.start = std::min<size_t>(static_cast<size_t>(share_here - current), o.max_instances - in_use);
    }
  } else if (current > share_here) {
    // Victims: starting ones first, then those owning the fewest resources,
    // then the least busy, then the newest.
    std::stable_sort(serving.begin(), serving.end(), [&](size_t a, size_t b) {
      const InstanceView& x = view.instances[a];
      const InstanceView& y = view.instances[b];
      bool xs = x.state == InstanceState::kStarting, ys = y.state == InstanceState::kStarting;
      if (xs != ys) return xs;
      if (x.resources != y.resources) return x.resources < y.resources;
      if (x.in_flight != y.in_flight) return x.in_flight < y.in_flight;
      return a > b;
    });
    auto retire = [&](size_t i, const char* why) {
      bool starting = view.instances[i].state == InstanceState::kStarting;
      stop(i, starting ? Plan::StopKind::kTerm : Plan::StopKind::kDrain, why);
    };
    if (share_here == 0 && desired == 0) {
      for (size_t i : serving) retire(i, "idle");
    } else if (!panicking && now - view.last_scale_down >= tick) {
      retire(serving.front(), "scaled down");
      plan.last_scale_down = now;
    } else {
      wake_at(std::max(plan.panic_until, view.last_scale_down + tick));
    }
  }

  // 5. A start that timed out fails the waiting calls when nothing else of
  // the live version can serve them.
  size_t left = 0;
  for (size_t i = 0; i < n; ++i) {
    if (view.instances[i].version == live && active(i)) ++left;
  }
  for (Plan::Stop& s : plan.stops) {
    if (s.start_timeout && view.instances[s.instance].version == live && left == 0) s.fail_waiters = true;
  }
  if (view.waiters > 0) wake_at(view.first_waiter_deadline);
  return plan;
}

}  // namespace lever::host
