#include "routing.h"

#include <algorithm>
#include <limits>

#include "resources_cluster.h"
#include "supervisor.h"

namespace lever::host {

bool UsableLocked(const ServiceState& svc, const Instance& inst) {
  return inst.state == InstanceState::kReady && inst.version == svc.info.live_version && inst.alive() &&
         !inst.check_requested.load(std::memory_order_relaxed);
}

PendingRoute Routing::Route(const RouteRequest& req, std::function<void(RouteResult)> done) {
  if (!EndsWith(req.env, kInternalEnvSuffix)) {
    done({InvalidArgument("cannot route to environment " + std::string(req.env)), nullptr});
    return {};
  }
  ServicePtr svc;
  switch (catalog_.Find(req.env, req.service, &svc)) {
    case Catalog::Lookup::kNoEnvironment:
      done({Status(Code::kNotFound, "environment " + std::string(req.env) + " not found"), nullptr});
      return {};
    case Catalog::Lookup::kNoService:
      done({Status(Code::kNotFound, "service " + ServiceUrl(req.env, req.service) + " not found"), nullptr});
      return {};
    case Catalog::Lookup::kFound:
      break;
  }
  if (svc->is_admin()) {
    if (!admin_) {
      done({Status(Code::kUnavailable, "the admin service is not running"), nullptr});
    } else {
      if (options_.count_at_placement) admin_->OnCallStart();  // counted when placed, like instances
      done({Status::Ok(), admin_});
    }
    return {};
  }
  RouteResult result;
  PendingRoute pending;
  Deferred d;
  {
    std::lock_guard lock(svc->mu);
    const bool live = svc->info.live_version > 0;
    SteadyTime now = clock_->Now();
    if (svc->removed || (!live && svc->rollout.version == 0)) {
      result.status = Status(Code::kNotFound, "service " + ServiceUrl(req.env, req.service) + " is not live");
    } else if (svc->info.is_private && req.src_env.empty()) {
      result.status = Status(Code::kPermissionDenied, "service " + ServiceUrl(req.env, req.service) +
                                                          " is private: it can only be called from inside Lever");
    } else {
      Status refused;
      if (live) {
        result.backend = req.resource.empty()
                             ? PlaceCallLocked(*svc, now, req.from_peer)
                             : PlaceResourceLocked(*svc, req.resource, req.from_peer, now, &d, &refused);
      }
      // A call relayed to another node keeps nothing warm here.
      if (!result.backend || !result.backend->is_peer()) svc->last_call = now;
      if (result.backend) {
        // placed
      } else if (!refused.ok()) {
        result.status = refused;
      } else if (live && !svc->config_status.ok()) {
        result.status = Status(Code::kUnavailable, "cannot start " + ServiceUrl(req.env, req.service) + ": " +
                                                       svc->config_status.message());
      } else if (svc->waiters.size() >= options_.max_waiting_calls) {
        result.status = ResourceExhausted("too many calls waiting for " + ServiceUrl(req.env, req.service) +
                                          " to start (" + std::to_string(options_.max_waiting_calls) + ")");
      } else {
        NotePeakLocked(*svc, 1, 0);
        uint64_t id = next_waiter_id_.fetch_add(1, std::memory_order_relaxed);
        svc->waiters.push_back(
            {id, std::string(req.resource), now + options_.cold_start_wait, std::move(done), req.from_peer});
        pending = {svc, id};
      }
    }
  }
  if (pending) {
    supervisor_->Wake();  // the lifecycle counts the waiting call and starts what it needs
  } else {
    done(std::move(result));
  }
  supervisor_->Flush(&d);
  return pending;
}

void Routing::Cancel(const PendingRoute& pending) {
  auto svc = std::static_pointer_cast<ServiceState>(pending.queue.lock());
  if (!svc) return;
  std::function<void(RouteResult)> done;
  {
    std::lock_guard lock(svc->mu);
    auto it = std::find_if(svc->waiters.begin(), svc->waiters.end(),
                           [&](const Waiter& w) { return w.id == pending.id; });
    if (it == svc->waiters.end()) return;
    done = std::move(it->done);
    svc->waiters.erase(it);
  }
  done({Status(Code::kCancelled, "the caller went away"), nullptr});
}

Instance* Routing::PickLocked(ServiceState& svc, double max_load, bool note_peak) {
  thread_local std::vector<PlacementCandidate> candidates;
  thread_local std::vector<Instance*> ready;
  candidates.clear();
  ready.clear();
  int64_t total = 0;
  size_t usable = 0;
  for (auto& inst : svc.instances) {
    // A connection the gateway saw fail makes the instance suspect until the
    // supervisor has checked it: the next call must not go to a crashed one.
    if (!UsableLocked(svc, *inst)) continue;
    int64_t load = inst->in_flight() + inst->pending();
    total += load;
    ++usable;
    if (static_cast<double>(load) >= max_load) continue;
    candidates.push_back({inst->placement_key, load});
    ready.push_back(inst.get());
  }
  if (note_peak) NotePeakLocked(svc, static_cast<double>(total + 1), usable);
  if (ready.empty()) return nullptr;
  size_t i = placement_->Pick(candidates, {});
  return ready[std::min(i, ready.size() - 1)];
}

// The autoscaler's peak: the most calls at once. A peak that needs twice the
// usable instances wakes the supervisor now, not at its next tick.
void Routing::NotePeakLocked(ServiceState& svc, double concurrency, size_t usable) {
  concurrency += static_cast<double>(svc.waiters.size());
  if (concurrency <= svc.scaler.peak) return;
  svc.scaler.peak = concurrency;
  double load = svc.config.max_instance_load > 0 ? svc.config.max_instance_load : 10.0;
  if (!svc.scaler.peak_woken && concurrency > 2.0 * load * static_cast<double>(usable)) {
    svc.scaler.peak_woken = true;
    supervisor_->Wake();
  }
}

// Local first: a local instance with room (fewer calls than maxInstanceLoad);
// else the least-loaded other node with room; else the least-loaded local
// instance; else the least-loaded other node; else nothing (the call waits
// and the lifecycle starts an instance here). A call relayed from another
// node stays here.
BackendPtr Routing::PlaceCallLocked(ServiceState& svc, SteadyTime now, bool from_peer) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (from_peer || svc.remote.empty()) return PlaceLocked(svc, PickLocked(svc, kInf, true), now);
  const double cap = svc.config.max_instance_load > 0 ? svc.config.max_instance_load : 10.0;
  // Only calls placed here count toward this node's autoscaler (its peak):
  // one relayed to another node is that node's load.
  if (PickLocked(svc, cap, false) != nullptr) return PlaceLocked(svc, PickLocked(svc, cap, true), now);
  if (BackendPtr remote = PlaceRemoteLocked(svc, cap)) return remote;
  if (PickLocked(svc, kInf, false) != nullptr) return PlaceLocked(svc, PickLocked(svc, kInf, true), now);
  return PlaceRemoteLocked(svc, kInf);
}

// The least-loaded other node with fewer than `cap` calls per instance.
BackendPtr Routing::PlaceRemoteLocked(ServiceState& svc, double cap) {
  RemoteCandidate* best = nullptr;
  double best_load = std::numeric_limits<double>::infinity();
  for (RemoteCandidate& c : svc.remote) {
    if (c.version != svc.info.live_version || c.ready <= 0 || !c.backend->alive()) continue;
    double load = static_cast<double>(std::max(c.in_flight, c.backend->in_flight())) / static_cast<double>(c.ready);
    if (load < best_load) {
      best_load = load;
      best = &c;
    }
  }
  if (best == nullptr || !(best_load < cap || cap == std::numeric_limits<double>::infinity())) return nullptr;
  best->backend->Placed();
  return best->backend;
}

BackendPtr Routing::PlaceLocked(ServiceState& svc, Instance* inst, SteadyTime now) {
  if (inst == nullptr) return nullptr;
  inst->Placed(now);
  for (auto& i : svc.instances) {
    if (i.get() == inst) return i;
  }
  return nullptr;
}

BackendPtr Routing::PlaceResourceLocked(ServiceState& svc, std::string_view resource, bool from_peer, SteadyTime now,
                                        Deferred* d, Status* refused) {
  auto it = svc.leases.find(resource);
  if (it != svc.leases.end() && !it->second->Current()) {
    // This node's etcd lease ended (its own clock says so: etcd may not
    // have dropped R's key yet, or another node may own R already): R is
    // not served here any more.
    DropStaleLeaseLocked(svc, std::shared_ptr<ResourceLease>(it->second), d);
    it = svc.leases.end();
  }
  if (it != svc.leases.end()) {
    const std::shared_ptr<ResourceLease>& lease = it->second;
    if (lease->state != ResourceLease::State::kOpen) return nullptr;  // claiming, opening or closing: wait
    Instance& owner = *lease->owner;
    if (UsableLocked(svc, owner)) {
      lease->Placed(now);
      owner.Placed(now);
      return lease;
    }
    if (owner.state == InstanceState::kReady && owner.version == svc.info.live_version && owner.alive()) {
      return nullptr;  // suspect: wait for the supervisor's verdict
    }
    // Its owner is going. Draining, it still runs: CloseResource there once
    // the resource's calls are done, then the resource moves. Otherwise
    // there is nobody to tell: it moves now.
    if (owner.state == InstanceState::kDraining) {
      lease->MarkClosing();
      supervisor_->Wake();
      return nullptr;
    }
    DropLeasesLocked(svc, owner);
    return PlaceResourceLocked(svc, resource, from_peer, now, d, refused);
  }
  if (owners_) {
    auto held = svc.holders.find(resource);
    if (held != svc.holders.end()) {
      // Another node's (relay there), or one this node must wait out: its
      // ended session's key, a key being released, an unknown node's.
      std::shared_ptr<RemoteBackend> b = owners_->HolderBackend(held->second);
      if (!b) return nullptr;
      if (from_peer) {
        // Relayed here by a node that thought R was this node's: one hop
        // only, never on (the sender's view was behind).
        *refused = Status(Code::kUnavailable, ServiceUrl(svc.env, svc.name) + " resource " + std::string(resource) +
                                                  " is owned by node " + held->second.node +
                                                  ", not this one (it moved); call again");
        return nullptr;
      }
      if (!b->alive()) return nullptr;  // unreachable: until it answers again, or its lease ends
      b->Placed();
      return b;
    }
    // Nobody holds R. A node with an instance claims it: this one if it has
    // one, else a node that does (it claims it there).
    if (!from_peer) {
      bool usable = false;
      for (auto& inst : svc.instances) usable |= UsableLocked(svc, *inst);
      if (!usable) return PlaceRemoteLocked(svc, std::numeric_limits<double>::infinity());
    }
  }
  // A new lease: the owner by rendezvous hashing over the usable instances.
  thread_local std::vector<PlacementCandidate> candidates;
  thread_local std::vector<std::shared_ptr<Instance>*> usable;
  candidates.clear();
  usable.clear();
  for (auto& inst : svc.instances) {
    if (!UsableLocked(svc, *inst)) continue;
    candidates.push_back({inst->placement_key, inst->in_flight()});
    usable.push_back(&inst);
  }
  if (usable.empty()) return nullptr;
  size_t i = placement_->Pick(candidates, resource);
  std::shared_ptr<Instance> owner = *usable[std::min(i, usable.size() - 1)];
  auto lease = std::make_shared<ResourceLease>(std::string(resource), owner);
  ++owner->resources;
  svc.leases.emplace(lease->resource, lease);
  if (owners_) {
    lease->state = ResourceLease::State::kClaiming;  // R's key in etcd first, then NewResource
    supervisor_->SendClaimLocked(svc, lease, d);
  } else {
    supervisor_->SendHookLocked(svc, lease, true, d);
  }
  return nullptr;
}

void Routing::DropStaleLeaseLocked(ServiceState& svc, const std::shared_ptr<ResourceLease>& lease, Deferred* d) {
  auto it = svc.leases.find(lease->resource);
  if (it == svc.leases.end() || it->second != lease) return;
  svc.leases.erase(it);
  Instance& owner = *lease->owner;
  if (owner.resources > 0) --owner.resources;
  d->AddNote(svc, owner.version, owner.instance_id,
             "[host] resource " + lease->resource + " (token " + std::to_string(lease->token()) +
                 ") is no longer served by instance " + owner.instance_id +
                 ": this node's etcd lease ended, so another node may own it now");
  // The instance forgets it (its calls in flight end as they will).
  bool was_open = lease->state == ResourceLease::State::kOpen;
  lease->MarkClosing();
  if (was_open && (owner.state == InstanceState::kReady || owner.state == InstanceState::kDraining)) {
    supervisor_->SendHookLocked(svc, lease, false, d);
  }
}

void Routing::DropStaleLeasesLocked(ServiceState& svc, Deferred* d) {
  if (!owners_) return;
  std::vector<std::shared_ptr<ResourceLease>> stale;
  for (auto& [_, lease] : svc.leases) {
    if (!lease->Current()) stale.push_back(lease);
  }
  for (auto& lease : stale) DropStaleLeaseLocked(svc, lease, d);
}

void Routing::FailResourceWaitersLocked(ServiceState& svc, std::string_view resource, const Status& status,
                                        Deferred* d) {
  size_t kept = 0;
  for (size_t i = 0; i < svc.waiters.size(); ++i) {
    Waiter& w = svc.waiters[i];
    if (w.resource == resource) {
      d->Answer(std::move(w.done), RouteResult{status, nullptr});
    } else {
      if (kept != i) svc.waiters[kept] = std::move(w);
      ++kept;
    }
  }
  svc.waiters.resize(kept);
}

void Routing::DropLeasesLocked(ServiceState& svc, Instance& owner) {
  std::erase_if(svc.leases, [&](const auto& entry) {
    const std::shared_ptr<ResourceLease>& lease = entry.second;
    if (lease->owner.get() != &owner) return false;
    // In a cluster its key goes too, so that R can be taken again at once.
    if (owners_ && lease->claimed()) {
      owners_->Release(svc.env, svc.name, lease->resource, lease->token(), lease->session());
    }
    return true;
  });
  owner.resources = 0;
}

void Routing::ReleaseWaitersLocked(ServiceState& svc, SteadyTime now, Deferred* d) {
  if (!svc.waiters.empty() && svc.info.live_version > 0) {
    // While more instances are starting, each ready one takes only up to
    // maxInstanceLoad of the waiting calls: the rest wait for the others.
    bool starting = false;
    for (auto& inst : svc.instances) {
      starting |= inst->state == InstanceState::kStarting && inst->version == svc.info.live_version;
    }
    double limit = starting ? std::max(svc.config.max_instance_load, 1.0) : std::numeric_limits<double>::infinity();
    size_t kept = 0;
    for (size_t i = 0; i < svc.waiters.size(); ++i) {
      Waiter& w = svc.waiters[i];
      Status refused;
      BackendPtr b = w.resource.empty() ? PlaceLocked(svc, PickLocked(svc, limit, false), now)
                                        : PlaceResourceLocked(svc, w.resource, w.from_peer, now, d, &refused);
      // Another node has an instance meanwhile: the call need not wait for ours.
      if (!b && w.resource.empty() && !w.from_peer) b = PlaceRemoteLocked(svc, std::numeric_limits<double>::infinity());
      if (b || !refused.ok()) {
        d->Answer(std::move(w.done), RouteResult{b ? Status::Ok() : refused, std::move(b)});
      } else {
        if (kept != i) svc.waiters[kept] = std::move(w);
        ++kept;
      }
    }
    svc.waiters.resize(kept);
  }
  while (!svc.waiters.empty() && svc.waiters.front().deadline <= now) {
    Waiter& w = svc.waiters.front();
    std::string why = " did not start within " + Seconds(options_.cold_start_wait) + " s";
    // In a cluster a resource's call may wait for an owner rather than an
    // instance: say so.
    bool usable = false;
    for (auto& inst : svc.instances) usable |= UsableLocked(svc, *inst);
    if (owners_ && !w.resource.empty() && (usable || svc.holders.find(w.resource) != svc.holders.end())) {
      why = " resource " + w.resource + " got no owner that could serve it within " +
            Seconds(options_.cold_start_wait) +
            " s (this node's etcd lease ended and etcd has not answered since, or its owner's node is unreachable "
            "and its lease has not ended yet)";
    }
    d->Answer(std::move(w.done),
              RouteResult{Status(Code::kUnavailable, ServiceUrl(svc.env, svc.name) + why), nullptr});
    svc.waiters.pop_front();
  }
}

void Routing::FailWaitersLocked(ServiceState& svc, const Status& status, Deferred* d) {
  for (Waiter& w : svc.waiters) d->Answer(std::move(w.done), RouteResult{status, nullptr});
  svc.waiters.clear();
}

}  // namespace lever::host
