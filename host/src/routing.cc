#include "routing.h"

#include <algorithm>

#include "supervisor.h"

namespace lever::host {

void Routing::Route(const RouteRequest& req, std::function<void(RouteResult)> done) {
  if (!EndsWith(req.env, kInternalEnvSuffix)) {
    done({InvalidArgument("cannot route to environment " + std::string(req.env)), nullptr});
    return;
  }
  ServicePtr svc;
  switch (catalog_.Find(req.env, req.service, &svc)) {
    case Catalog::Lookup::kNoEnvironment:
      done({Status(Code::kNotFound, "environment " + std::string(req.env) + " not found"), nullptr});
      return;
    case Catalog::Lookup::kNoService:
      done({Status(Code::kNotFound, "service " + ServiceUrl(req.env, req.service) + " not found"), nullptr});
      return;
    case Catalog::Lookup::kFound:
      break;
  }
  if (svc->is_admin()) {
    if (!admin_) {
      done({Status(Code::kUnavailable, "the admin service is not running"), nullptr});
    } else {
      done({Status::Ok(), admin_});
    }
    return;
  }
  RouteResult result;
  {
    std::lock_guard lock(svc->mu);
    if (svc->removed || svc->info.live_version <= 0) {
      result.status = Status(Code::kNotFound, "service " + ServiceUrl(req.env, req.service) + " is not live");
    } else if (svc->info.is_private && req.src_env.empty()) {
      result.status = Status(Code::kPermissionDenied, "service " + ServiceUrl(req.env, req.service) +
                                                          " is private: it can only be called from inside Lever");
    } else if (auto inst = PickLocked(*svc, req.resource)) {
      result.backend = std::move(inst);
    } else if (!svc->config_status.ok()) {
      result.status = Status(Code::kUnavailable, "cannot start " + ServiceUrl(req.env, req.service) + ": " +
                                                     svc->config_status.message());
    } else if (svc->waiters.size() >= options_.max_waiting_calls) {
      result.status = ResourceExhausted("too many calls waiting for " + ServiceUrl(req.env, req.service) +
                                        " to start (" + std::to_string(options_.max_waiting_calls) + ")");
    } else {
      // A suspect instance is checked by the supervisor within a moment: the
      // call waits for that verdict rather than starting a new instance.
      if (CountInstancesLocked(*svc, true, true) == 0 && !HasSuspectLocked(*svc) &&
          CountInstancesLocked(*svc, false, false) < options_.max_instances) {
        supervisor_->StartLocked(*svc);
      }
      svc->waiters.push_back({0, std::string(req.resource), clock_->Now() + options_.cold_start_wait, std::move(done)});
      supervisor_->Wake();
      return;
    }
  }
  done(std::move(result));
}

std::shared_ptr<Instance> Routing::PickLocked(ServiceState& svc, std::string_view resource) {
  thread_local std::vector<PlacementCandidate> candidates;
  thread_local std::vector<Instance*> ready;
  candidates.clear();
  ready.clear();
  size_t starting = 0;
  for (auto& inst : svc.instances) {
    if (inst->version != svc.info.live_version) continue;
    if (inst->state == InstanceState::kStarting) ++starting;
    // A connection the gateway saw fail makes the instance suspect until the
    // supervisor has checked it: the next call must not go to a crashed one.
    if (inst->state != InstanceState::kReady || !inst->alive() ||
        inst->check_requested.load(std::memory_order_relaxed)) {
      continue;
    }
    candidates.push_back({inst->placement_key, inst->in_flight()});
    ready.push_back(inst.get());
  }
  if (ready.empty()) return nullptr;
  size_t i = placement_->Pick(candidates, resource);
  Instance* chosen = ready[std::min(i, ready.size() - 1)];
  chosen->Touch();  // not idle between Route() and the gateway's OnCallStart()
  if (placement_->WantMore(candidates, starting, svc.config.max_instance_load) &&
      svc.instances.size() < options_.max_instances) {
    supervisor_->StartLocked(svc);
  }
  for (auto& inst : svc.instances) {
    if (inst.get() == chosen) return inst;
  }
  return nullptr;
}

bool Routing::HasSuspectLocked(const ServiceState& svc) const {
  for (const auto& inst : svc.instances) {
    if (inst->version == svc.info.live_version && inst->state == InstanceState::kReady &&
        inst->check_requested.load(std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void Routing::ReleaseWaitersLocked(ServiceState& svc, SteadyTime now, Deferred* d) {
  while (!svc.waiters.empty()) {
    std::shared_ptr<Instance> inst = PickLocked(svc, svc.waiters.front().resource);
    if (!inst) break;
    d->Answer(std::move(svc.waiters.front().done), RouteResult{Status::Ok(), std::move(inst)});
    svc.waiters.pop_front();
  }
  while (!svc.waiters.empty() && svc.waiters.front().deadline <= now) {
    d->Answer(std::move(svc.waiters.front().done),
              RouteResult{Status(Code::kDeadlineExceeded, ServiceUrl(svc.env, svc.name) + " did not start within " +
                                                              Seconds(options_.cold_start_wait) + " s"),
                          nullptr});
    svc.waiters.pop_front();
  }
}

void Routing::FailWaitersLocked(ServiceState& svc, const Status& status, Deferred* d) {
  for (Waiter& w : svc.waiters) d->Answer(std::move(w.done), RouteResult{status, nullptr});
  svc.waiters.clear();
}

}  // namespace lever::host
