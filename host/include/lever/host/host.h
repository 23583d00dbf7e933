// The host: leverd's node agent. It owns the registry, the code store
// (deploy), the instance manager with its runtime, placement and logs, and
// implements the Router the gateway calls.
//
// Lifecycle of an instance (docs/scheduling.md): the lifecycle decides how
// many instances a service needs (the autoscaler, minInstances, a rollout)
// and the supervisor thread spawns them "starting"; one is "ready" once its
// unix socket accepts a connection (inotify on the socket dir plus a short
// connect backoff, bounded by start_timeout; never a fixed sleep); it is
// "draining" (no new calls) when scaled down or when its version is no
// longer live, and "stopping" once drained (SIGTERM, SIGKILL after
// stop_grace), after the idle period, or at once when the gateway reports a
// dead connection and the socket refuses connections (a full backlog is
// alive); it is gone when its process exits (seen at once through a pidfd).
// Lock order: host/LOCKS.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lever/host/clock.h"
#include "lever/host/deploy.h"
#include "lever/host/logs.h"
#include "lever/host/placement.h"
#include "lever/host/registry.h"
#include "lever/host/router.h"
#include "lever/host/runtime.h"
#include "lever/status.h"

namespace lever::host {

// Many nodes on one etcd (docs/cluster.md). Used when the registry is etcd
// and `advertise` is set; otherwise the node serves alone.
struct ClusterOptions {
  // This node's name in the cluster: [A-Za-z0-9._-], 1..64. Required.
  std::string node_name;
  // This node's peer port as the others reach it, "ip:port" (leverd listens
  // there too). Empty: not part of a cluster.
  std::string advertise;
  // Shared by every node: sent with each relayed call and code fetch, and
  // required of them. At least 16 bytes.
  std::string token;
  // The node's etcd lease: its keys (node, instances, load) vanish this long
  // after it stops renewing. Default 3 s.
  std::chrono::seconds lease_ttl{3};
  // At most one write per published key this often. Default 200 ms.
  std::chrono::milliseconds publish_interval{200};
  // Bound on fetching one version's code from one peer. Default 60 s.
  std::chrono::milliseconds fetch_timeout{60000};
};

// A node of the cluster, for `lever ps`.
struct ClusterNodeInfo {
  std::string name;
  std::string address;  // its peer port
  bool self = false;
  bool healthy = true;
  int64_t instances = 0;
};

struct HostOptions {
  // Data dir: code store, registry file, instance sockets (<data>/run).
  // Required; created if missing. Its absolute path must leave room for
  // "/run/<32 chars>.sock" within a unix socket path (107 bytes).
  std::string data_dir;
  // Registry URL: "embedded:" (default: <data>/lever.db).
  std::string registry_url = "embedded:";
  // The cluster, with an etcd registry (docs/cluster.md).
  ClusterOptions cluster;
  // Runtime by name: "process" (default) or "docker"; a service's lever.json
  // "runtime" overrides it.
  std::string runtime = "process";
  ProcessRuntimeOptions process;
  // For "docker" (owner, run_dir and the runners are set by the host).
  DockerRuntimeOptions docker;
  // Deploy bounds (data_dir and on_deployed are set by the host).
  DeployOptions deploy;
  // Placement policy. Default NewDefaultPlacement().
  PlacementPtr placement;
  // Time for every timeout, window and lease of the host. Default
  // RealClock(); tests inject a FakeClock.
  ClockPtr clock;

  // Called (on the supervisor thread, no host lock held) before an env's
  // first instance starts; returns the path of the env's internal unix
  // socket, given to instances as LEVEROS_INTERNAL_RPC_GATEWAY=unix:<path>.
  // leverd wires it to the gateway. Optional: without it instances get no
  // LEVEROS_INTERNAL_RPC_GATEWAY.
  std::function<Status(std::string_view env, std::string* socket_path)> ensure_internal_listener;
  // Where lever://admin.lever/admin goes: the in-process admin gRPC server,
  // "unix:/path" or "host:port". Empty: calls to it fail with UNAVAILABLE.
  std::string admin_address;
  // Each output line of every instance, already prefixed
  // "lever://<env>/<service> v<ver> ". Called on the supervisor thread; must
  // not block long. Default: write to stderr.
  std::function<void(std::string_view line)> log_sink;

  // Readiness bound for a starting instance. Default 15 s (the original's).
  std::chrono::milliseconds start_timeout{15000};
  // How long a call may wait for a cold start. Default start_timeout + 1 s.
  std::chrono::milliseconds cold_start_wait{0};
  // Calls allowed to wait for a cold start, per service. Default 1000.
  size_t max_waiting_calls = 1000;
  // A service with no call for this long scales to zero (unless
  // minInstances). Default 5 min (the original's).
  std::chrono::milliseconds idle_timeout{5 * 60 * 1000};
  // A draining instance (scaled down, or of a version no longer live) stops
  // once it has no call in flight and none was placed on it for this long.
  // Default 1 s.
  std::chrono::milliseconds retired_idle_timeout{1000};
  // Autoscaler windows (docs/scheduling.md). Defaults 60 s and 6 s.
  std::chrono::milliseconds autoscale_stable_window{60000};
  std::chrono::milliseconds autoscale_panic_window{6000};
  // A resource with no call for this long is closed on its owner
  // (CloseResource) and may move on its next call. Default 3 min (the
  // original's).
  std::chrono::milliseconds resource_idle{3 * 60 * 1000};
  // The gateway counts a call from its placement: it calls OnCallEnd for
  // every RouteResult with a backend, whether or not the call reached it, and
  // never OnCallStart. Default false (load from OnCallStart to OnCallEnd).
  bool count_at_placement = false;
  // SIGTERM, then SIGKILL after this. Default 10 s (the original's).
  std::chrono::milliseconds stop_grace{10000};
  // Instances per service (all versions). Default 16.
  size_t max_instances_per_service = 16;
  // Instances spawned and not yet ready at once, host-wide (more wait their
  // turn, still "starting"). Default: the number of cores, at least 2.
  size_t max_starting = 0;
  // Lines / bytes kept per service for `lever logs`. Defaults 1000 / 1 MiB.
  size_t log_lines = 1000;
  size_t log_bytes = 1 << 20;
};

struct InstanceInfo {
  std::string instance_id;  // 32 chars; "builtin" for the admin service
  std::string env;
  std::string service;
  int64_t version = 0;
  int pid = 0;
  std::string state;  // "starting", "ready", "stopping", "builtin"
  int64_t calls_in_flight = 0;
  std::chrono::system_clock::time_point started_at;
  std::string address;  // "unix:/..." once known
  // Once ready: "inherited" (it serves on the socket leverd made, passed in
  // as LEVEROS_LISTEN_FD) or "own" (it bound LEVEROS_LISTEN_ADDR itself).
  std::string socket;
  std::vector<std::string> resources;  // resources it owns, sorted
  std::string node;  // the node it runs on (empty on a single node)
};

// A service with what its autoscaler decided.
struct ServiceStatus {
  ServiceInfo info;
  int64_t desired = 0;        // instances the autoscaler wants of the live version
  std::string reason;         // "min", "panic", "stable" or "idle"
  int64_t rollout_version = 0;  // a deployed version starting up, 0 if none
  int64_t waiting = 0;          // calls waiting for an instance (or a resource's owner)
};

// Thread contract: every method may be called from any thread. Route() and
// the Backends it returns are cheap (no I/O, short locks); the rest may do
// registry or disk I/O.
class Host final : public Router {
 public:
  static Status Create(HostOptions options, std::shared_ptr<Host>* out);
  // Stops every instance (SIGTERM, SIGKILL after stop_grace) and fails the
  // calls still waiting for a cold start with UNAVAILABLE. Backends handed out
  // stay valid objects (alive() is false).
  ~Host() override;

  // Router.
  void Route(const RouteRequest& request, std::function<void(RouteResult)> done) override;
  PendingRoute RouteCancellable(const RouteRequest& request, std::function<void(RouteResult)> done) override;
  void CancelRoute(const PendingRoute& pending) override;

  // Deploy into `env` (see deploy.h). Finish() commits the new version and
  // starts its rollout: its instances start, and it becomes live once one is
  // ready (AwaitRollout tells). Every session must be finished or destroyed
  // before the Host is.
  Status BeginDeploy(std::string_view env, std::unique_ptr<DeploySession>* out);
  // Waits until the rollout of `version` ends or `deadline`: OK once it is
  // live; FAILED_PRECONDITION with the instance's last output lines when it
  // failed to start (the old version stays live); ABORTED when a newer
  // deploy superseded it; DEADLINE_EXCEEDED at the deadline.
  Status AwaitRollout(std::string_view env, std::string_view service, int64_t version,
                      std::chrono::steady_clock::time_point deadline);

  // Environments. Delete refuses admin.lever; it stops the env's instances
  // and removes its services and code.
  Status CreateEnvironment(std::string_view name, std::string_view description);
  Status ListEnvironments(std::vector<EnvironmentInfo>* out);
  Status DeleteEnvironment(std::string_view name);

  // Services of one env (live version, private, description), sorted.
  Status ListServices(std::string_view env, std::vector<ServiceInfo>* out);
  // The same with the autoscaler's desired count and reason.
  Status ListServiceStatus(std::string_view env, std::vector<ServiceStatus>* out);
  // The cluster's nodes, this one first (empty when not in a cluster).
  std::vector<ClusterNodeInfo> ListNodes();
  // Instances, optionally filtered by env and service (empty: all); in a
  // cluster, other nodes' ready instances too (state "ready", node set).
  Status ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out);

  // Logs of a service: the last n lines, or lines after `after_seq`, waiting
  // until `deadline` for one (follow). NOT_FOUND for an unknown service.
  Status TailLogs(std::string_view env, std::string_view service, size_t n, std::vector<LogLine>* out);
  Status ReadLogs(std::string_view env, std::string_view service, uint64_t after_seq, size_t max,
                  std::chrono::steady_clock::time_point deadline, std::vector<LogLine>* out);

  const RegistryPtr& registry() const { return registry_; }
  const std::string& data_dir() const { return data_dir_; }

  class Impl;

 private:
  explicit Host(std::unique_ptr<Impl> impl, RegistryPtr registry, std::string data_dir);
  std::unique_ptr<Impl> impl_;
  RegistryPtr registry_;
  std::string data_dir_;
};

}  // namespace lever::host
