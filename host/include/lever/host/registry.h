// The registry: the durable state of a Lever node or cluster (environments,
// services, code versions, the live version). One small interface, backends
// registered by name in host/src/registry_backends.cc and picked by the URL
// scheme: "embedded:<sqlite file>" (one node, SQLite) or
// "etcd://h1:2379,h2:2379,h3:2379[/prefix]" (clusters; host/src/etcd/etcd.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lever/status.h"

namespace lever::host {

inline constexpr std::string_view kDevEnv = "dev.lever";
inline constexpr std::string_view kAdminEnv = "admin.lever";
inline constexpr std::string_view kAdminService = "admin";
inline constexpr std::string_view kInternalEnvSuffix = ".lever";

struct EnvironmentInfo {
  std::string name;
  std::string description;
};

struct ServiceInfo {
  std::string env;
  std::string name;
  std::string description;
  bool is_private = false;
  int64_t live_version = 0;  // 0: nothing deployed yet (not routable)
  int64_t next_version = 1;  // the version AllocateVersion hands out next
};

struct CodeVersionInfo {
  std::string env;
  std::string service;
  int64_t version = 0;
  std::string lever_json;   // the file's text as deployed
  int64_t created_unix_ms = 0;
  // The uploaded archive's content address: lowercase hex sha256 of the
  // gzip-tar as uploaded, and its size. Nodes that lack the code fetch it
  // from a peer and check it against this (docs/cluster.md). Empty for
  // versions recorded before content addressing (they cannot be fetched).
  std::string sha256;
  int64_t archive_bytes = 0;
  // The node that accepted the deploy (empty on a single node): where a
  // fetch is tried first.
  std::string node;
};

// Thread contract: every method may be called from any thread at any time;
// a backend serialises what it must. Methods may block on disk or network
// I/O, so they are never called on the gateway's routing path (the host
// caches what routing needs). Errors: INVALID_ARGUMENT (bad name),
// NOT_FOUND, ALREADY_EXISTS, INTERNAL (storage failure), UNAVAILABLE (etcd:
// no member reachable; writes are refused, reads answer from the node's
// watched copy).
// Consistency: a registry sees its own writes at once. The etcd backend
// reads from a copy kept current by a watch, so another node's write shows
// up a watch delivery later (milliseconds); read-modify-writes
// (UpdateService, AllocateVersion) compare-and-swap against etcd itself.
class Registry {
 public:
  virtual ~Registry() = default;

  // Environments. Opening a registry creates "dev.lever" ("The default
  // environment") and "admin.lever" ("The admin environment"), plus the
  // built-in service admin.lever/admin (live version 1), when absent.
  virtual Status CreateEnvironment(const EnvironmentInfo& env) = 0;
  virtual Status GetEnvironment(std::string_view name, EnvironmentInfo* out) = 0;
  virtual Status ListEnvironments(std::vector<EnvironmentInfo>* out) = 0;  // sorted by name
  // Deletes the environment with its services and code versions.
  virtual Status DeleteEnvironment(std::string_view name) = 0;

  // Services. CreateService ignores info.live_version/next_version (0 / 1).
  virtual Status CreateService(const ServiceInfo& info) = 0;
  virtual Status GetService(std::string_view env, std::string_view name, ServiceInfo* out) = 0;
  virtual Status ListServices(std::string_view env, std::vector<ServiceInfo>* out) = 0;  // sorted
  // Sets description, is_private and live_version of an existing service.
  virtual Status UpdateService(const ServiceInfo& info) = 0;
  // Atomically hands out the service's next version (the first is 1).
  virtual Status AllocateVersion(std::string_view env, std::string_view service,
                                 int64_t* version) = 0;

  // Code versions.
  virtual Status AddCodeVersion(const CodeVersionInfo& info) = 0;
  virtual Status GetCodeVersion(std::string_view env, std::string_view service, int64_t version,
                                CodeVersionInfo* out) = 0;
  virtual Status DeleteCodeVersion(std::string_view env, std::string_view service,
                                   int64_t version) = 0;
};
using RegistryPtr = std::shared_ptr<Registry>;

// Opens the backend named by the URL scheme. "embedded:" alone means
// "embedded:<data_dir>/lever.db"; "embedded::memory:" is an in-memory SQLite
// database (tests). "etcd://h1:2379,h2:2379" uses the key prefix "/lever";
// "etcd://h1:2379/team-a" uses "/team-a". Unknown scheme or a bad URL:
// INVALID_ARGUMENT; etcd unreachable while opening: UNAVAILABLE.
Status OpenRegistry(std::string_view url, std::string_view data_dir, RegistryPtr* out);

}  // namespace lever::host
