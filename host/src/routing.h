// Routing: what the gateway calls. Route() finds the service in the
// catalog's cache, checks it may be called, and places the call on a ready
// instance, or queues it for a cold start. Runs on gateway threads: a shared
// lock on the catalog and the service's lock, no I/O, no registry.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "catalog.h"
#include "lever/host/placement.h"
#include "lever/host/router.h"
#include "service.h"

namespace lever::host {

class Supervisor;

struct RoutingOptions {
  SteadyDuration cold_start_wait = std::chrono::seconds(16);
  size_t max_waiting_calls = 1000;
  size_t max_instances = 16;
};

class Routing {
 public:
  Routing(const Catalog& catalog, PlacementPtr placement, RoutingOptions options,
          std::shared_ptr<AdminBackend> admin, ClockPtr clock)
      : catalog_(catalog),
        placement_(std::move(placement)),
        options_(options),
        admin_(std::move(admin)),
        clock_(std::move(clock)) {}
  void SetSupervisor(Supervisor* supervisor) { supervisor_ = supervisor; }

  void Route(const RouteRequest& request, std::function<void(RouteResult)> done);

  // Service lock held. A ready instance of the live version for a call (and
  // a new one starting when placement wants more), or null.
  std::shared_ptr<Instance> PickLocked(ServiceState& svc, std::string_view resource);
  // Supervisor, service lock held: hands waiting calls to ready instances,
  // then answers the overdue ones.
  void ReleaseWaitersLocked(ServiceState& svc, SteadyTime now, Deferred* d);
  void FailWaitersLocked(ServiceState& svc, const Status& status, Deferred* d);

  const std::shared_ptr<AdminBackend>& admin() const { return admin_; }

 private:
  bool HasSuspectLocked(const ServiceState& svc) const;

  const Catalog& catalog_;
  const PlacementPtr placement_;
  const RoutingOptions options_;
  const std::shared_ptr<AdminBackend> admin_;
  const ClockPtr clock_;
  Supervisor* supervisor_ = nullptr;
};

}  // namespace lever::host
