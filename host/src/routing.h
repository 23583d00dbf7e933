// Routing: what the gateway calls. Route() finds the service in the
// catalog's cache, checks it may be called, and places the call on a ready
// instance (least outstanding requests) or on its resource's lease, or
// queues it (cold start, a lease opening). Runs on gateway threads: a shared
// lock on the catalog and the service's lock, no I/O, no registry; the
// decisions to start or stop instances are the lifecycle's, on the
// supervisor thread, which Route() only wakes.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string_view>

#include "catalog.h"
#include "lever/host/placement.h"
#include "lever/host/router.h"
#include "service.h"

namespace lever::host {

class Supervisor;
class ClusterResources;

struct RoutingOptions {
  SteadyDuration cold_start_wait = std::chrono::seconds(16);
  size_t max_waiting_calls = 1000;
  // A call counts as in flight from its placement (the gateway calls
  // OnCallEnd for every placed call) rather than from OnCallStart.
  bool count_at_placement = false;
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
  // In a cluster: resources have one owner across the nodes (set before
  // the first call, cleared after the supervisor stopped).
  void SetOwners(ClusterResources* owners) { owners_ = owners; }
  ClusterResources* owners() const { return owners_; }

  PendingRoute Route(const RouteRequest& request, std::function<void(RouteResult)> done);
  void Cancel(const PendingRoute& pending);

  // Supervisor (or a resource call's completion), service lock held: hands
  // waiting calls to ready instances and open leases, opens the leases they
  // need, then answers the overdue ones.
  void ReleaseWaitersLocked(ServiceState& svc, SteadyTime now, Deferred* d);
  void FailWaitersLocked(ServiceState& svc, const Status& status, Deferred* d);
  // The instance is gone (exited, or found dead): its leases go without a
  // CloseResource; their resources get a new owner on their next call.
  void DropLeasesLocked(ServiceState& svc, Instance& owner);
  // Leases whose node lease ended by this node's clock (resources_cluster.h):
  // they go now, their instance told with CloseResource.
  void DropStaleLeasesLocked(ServiceState& svc, Deferred* d);
  // A claim for `resource` failed: its waiting calls fail with `status`.
  void FailResourceWaitersLocked(ServiceState& svc, std::string_view resource, const Status& status, Deferred* d);

  const std::shared_ptr<AdminBackend>& admin() const { return admin_; }
  const RoutingOptions& options() const { return options_; }

 private:
  // A ready instance of the live version with fewer than `max_load` calls
  // (placed ones counted), or null; with `note_peak`, the call counts
  // toward the autoscaler's peak (not for queued calls: already counted).
  Instance* PickLocked(ServiceState& svc, double max_load, bool note_peak);
  // The lease's backend for a call for `resource`, or null when the call
  // must wait (a lease claiming, opening or closing, or no instance to own
  // it yet) or, with `*refused` set, fail; makes a lease when there is none.
  // In a cluster, R's holder's node when another node holds it.
  BackendPtr PlaceResourceLocked(ServiceState& svc, std::string_view resource, bool from_peer, SteadyTime now,
                                 Deferred* d, Status* refused);
  void DropStaleLeaseLocked(ServiceState& svc, const std::shared_ptr<ResourceLease>& lease, Deferred* d);
  BackendPtr PlaceLocked(ServiceState& svc, Instance* inst, SteadyTime now);
  // A call without a resource, over this node's and the other nodes' instances.
  BackendPtr PlaceCallLocked(ServiceState& svc, SteadyTime now, bool from_peer);
  BackendPtr PlaceRemoteLocked(ServiceState& svc, double cap);
  void NotePeakLocked(ServiceState& svc, double concurrency, size_t usable);

  const Catalog& catalog_;
  const PlacementPtr placement_;
  const RoutingOptions options_;
  const std::shared_ptr<AdminBackend> admin_;
  const ClockPtr clock_;
  Supervisor* supervisor_ = nullptr;
  ClusterResources* owners_ = nullptr;
  std::atomic<uint64_t> next_waiter_id_{1};
};

// An instance that may take new calls: ready, alive, of the live version,
// not suspect. Service lock held.
bool UsableLocked(const ServiceState& svc, const Instance& inst);

}  // namespace lever::host
