// Placement: which ready instance takes a call, and when a service needs one
// more instance. One interface so the windowed autoscaler, scale-down and
// resource leases can replace the simple policy later.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace lever::host {

// A ready instance of the live version, as placement sees it.
struct PlacementCandidate {
  uint64_t key = 0;        // stable per instance: a hash of its instance ID
  int64_t in_flight = 0;   // calls in flight
};

// Thread contract: const methods, called concurrently from gateway threads
// under the service's lock; must be cheap and must not block.
class Placement {
 public:
  virtual ~Placement() = default;
  // Index into `ready` (non-empty) of the instance for one call. A call with
  // a resource goes to one instance, stable while the set is stable.
  virtual size_t Pick(std::span<const PlacementCandidate> ready, std::string_view resource) const = 0;
  // True when one more instance should start: `ready` are the ready
  // instances, `starting` how many are starting.
  virtual bool WantMore(std::span<const PlacementCandidate> ready, size_t starting,
                        double max_instance_load) const = 0;
};
using PlacementPtr = std::shared_ptr<const Placement>;

// Least outstanding requests (ties: the first); resources by rendezvous
// hashing of (resource, key); one more instance when every ready one has
// max_instance_load calls in flight and none is starting.
PlacementPtr NewDefaultPlacement();

// 64-bit hash of an instance ID (or any string) for PlacementCandidate::key.
uint64_t PlacementKey(std::string_view s);

}  // namespace lever::host
