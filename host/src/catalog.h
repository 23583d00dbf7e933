// The catalog: environments, services, their versions and live version, as
// an in-memory cache of the registry. Routing reads only this cache; the
// registry is read at start and written by deploys and admin calls, which
// then update the cache.
#pragma once

#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "lever/host/registry.h"
#include "service.h"

namespace lever::host {

class Catalog {
 public:
  explicit Catalog(std::string data_dir) : data_dir_(std::move(data_dir)) {}

  // Fills the cache from the registry (at start, before any other call).
  Status Load(Registry& registry);

  enum class Lookup { kFound, kNoEnvironment, kNoService };
  // Routing's lookup: shared lock only.
  Lookup Find(std::string_view env, std::string_view service, ServicePtr* out) const;
  ServicePtr Find(std::string_view env, std::string_view service) const;

  // A deploy committed `info.live_version` (with `config`): it becomes the
  // service's rollout (the supervisor starts it and switches to it once it
  // is ready); creates the env and service entries if new. Returns the
  // service.
  ServicePtr OnDeployed(const ServiceInfo& info, const LeverConfig& config);

  void AddEnvironment(std::string_view name, std::string_view description);
  bool HasEnvironment(std::string_view name) const;
  // Another node's change (the registry's watch): the service, made with
  // `info` (live version 0 until the caller sets it) if new; `*created` says.
  ServicePtr FindOrCreate(const ServiceInfo& info, bool* created);
  // Drops the env from the lookup maps; returns its services (marked removed
  // by the caller, then stopped by the supervisor).
  std::vector<ServicePtr> RemoveEnvironment(std::string_view name);

  // Services of one env, sorted by name. NOT_FOUND for an unknown env.
  Status ListServices(std::string_view env, std::vector<ServiceInfo>* out) const;
  // Every service, removed ones included until Prune() (the supervisor's
  // list), optionally filtered by env and name (empty: any).
  std::vector<ServicePtr> Services(std::string_view env = {}, std::string_view service = {}) const;
  // Forgets removed services that have no instance left.
  void Prune();

 private:
  struct EnvState {
    std::string description;
    StringMap<ServicePtr> services;
  };
  const std::string data_dir_;
  mutable std::shared_mutex mu_;
  StringMap<EnvState> envs_;        // guarded by mu_
  std::vector<ServicePtr> services_;  // guarded by mu_; incl. removed ones
};

}  // namespace lever::host
