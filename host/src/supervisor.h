// The supervisor: one thread that owns the instances' processes. It spawns
// them through the runtime, reads their output, sees them exit (pidfds),
// probes starting and suspect ones, and on every pass asks the lifecycle
// (lifecycle.h) what to do for each service and does it. It sleeps in
// epoll_wait until an fd or the next deadline (a Timer of the injected
// clock) needs it; it never polls on a fixed period.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "catalog.h"
#include "lever/host/clock.h"
#include "lever/host/logs.h"
#include "lever/host/runtime.h"
#include "lifecycle.h"
#include "routing.h"
#include "service.h"

namespace lever::host {

struct SupervisorOptions {
  std::string run_dir;  // <data>/run: instance sockets
  LifecycleOptions lifecycle;
  bool count_at_placement = false;  // RoutingOptions::count_at_placement
  // Instances spawned and not yet ready, at most, host-wide; more wait in
  // the start queue (still "starting"). Default 4.
  size_t max_starting = 4;
  std::function<Status(std::string_view env, std::string* socket_path)> ensure_internal_listener;
  std::function<void(std::string_view line)> log_sink;  // required
  // The cluster (optional): this node's ready instances and load per service
  // after each pass, and whether a version's code is here (0), being fetched
  // (1: the start waits, the fetch wakes the supervisor) or unobtainable (2,
  // with why: the start fails with it).
  std::function<void(std::vector<ServiceLoad> loads)> publish;
  std::function<int(const std::string& env, const std::string& service, int64_t version, const std::string& code_dir,
                    Status* failure)>
      ensure_code;
  // The cluster (optional): the other usable nodes' published load of a
  // service (instances counted only when of `live_version`), and this
  // node's NodeRank() for it. Called with the service's lock held.
  std::function<uint64_t(const std::string& env, const std::string& service, int64_t live_version,
                         std::vector<PeerLoad>* out)>
      peer_loads;
  // A rollout switched `version` live: make it so in the registry. Called
  // with no host lock held (it takes the code store's lock).
  std::function<void(const std::string& env, const std::string& service, int64_t version)> on_switched;
};

class Supervisor {
 public:
  Supervisor(SupervisorOptions options, Catalog& catalog, Routing& routing, LogStore& logs, RuntimePtr runtime,
             ClockPtr clock);
  ~Supervisor();  // Shutdown()

  // Sets up epoll, inotify and the timer, then starts the thread (its first
  // pass starts minInstances).
  Status Start();
  // Stops every instance (SIGTERM, SIGKILL after stop_grace), fails waiting
  // calls, joins the thread. Idempotent.
  void Shutdown();

  // Any thread, service lock held: a new instance of `version` (the live
  // one or the rollout's), "starting", spawned by the supervisor thread.
  void StartLocked(ServiceState& svc, int64_t version);
  // Service lock held: NewResource (open) or CloseResource on the lease's
  // owner, sent once `d` is flushed; its answer moves the lease on and
  // releases the calls waiting for it.
  void SendHookLocked(ServiceState& svc, const std::shared_ptr<ResourceLease>& lease, bool open, Deferred* d);
  // In a cluster, service lock held: claims the lease's resource in etcd
  // (once `d` is flushed); owned, the lease gets its fencing token and
  // opens; held elsewhere, it goes and its calls follow the holder.
  void SendClaimLocked(ServiceState& svc, const std::shared_ptr<ResourceLease>& lease, Deferred* d);
  // Any thread: run a pass soon.
  void Wake() const { wakeup_->Notify(); }
  // Answers and log lines, with no host lock held.
  void Flush(Deferred* d);

 private:
  void Run();
  void StartQueued();
  void Spawn(const ServicePtr& svc, const std::shared_ptr<Instance>& inst);
  void Tick();
  void TickService(ServiceState& svc, SteadyTime now, Deferred* d);
  void StopLocked(ServiceState& svc, Instance& inst, const std::string& reason, Deferred* d);
  void DrainLocked(ServiceState& svc, Instance& inst, const std::string& reason, Deferred* d);
  // In a cluster (`clustered`), `remote_load` and `remote_peak` are the
  // other nodes' figures, added to this node's own.
  void SampleLocked(ServiceState& svc, SteadyTime now, bool clustered, double remote_load, double remote_peak);
  void ApplyLocked(ServiceState& svc, const Plan& plan, const std::vector<std::shared_ptr<Instance>>& viewed,
                   SteadyTime now, Deferred* d);
  void FinishRolloutLocked(ServiceState& svc, int64_t version, Status status);
  void OnHookDone(const std::weak_ptr<ServiceState>& weak, const std::shared_ptr<ResourceLease>& lease, bool open,
                  const Result& result);
  void OnClaimDone(const std::weak_ptr<ServiceState>& weak, const std::shared_ptr<ResourceLease>& lease,
                   ResourceClaim result);
  void HandleExit(const std::shared_ptr<Instance>& inst);
  // Socket activation's readiness (OpenReadyProbe): the probe connection
  // has something to read; it ends with the instance ready (`serving`: its
  // SETTINGS came) or checked as without activation.
  void HandleReadyProbe(const std::shared_ptr<Instance>& inst);
  void EndReadyProbe(Instance& inst, bool serving);
  void CloseReadyProbe(Instance& inst);
  void BecomeReadyLocked(ServiceState& svc, Instance& inst, SteadyTime now);
  void ReadOutput(Instance& inst, bool is_err, bool drain);
  void EmitLine(Instance& inst, bool is_err, std::string_view line);
  void HandleInotify();
  void Watch(int fd, const std::shared_ptr<Instance>& inst, int kind);
  void Unwatch(int fd);
  void StopAll();
  void WakeAt(SteadyTime t) { next_wake_ = std::min(next_wake_, t); }

  const SupervisorOptions options_;
  Catalog& catalog_;
  Routing& routing_;
  LogStore& logs_;
  const RuntimePtr runtime_;
  const ClockPtr clock_;
  const std::shared_ptr<const Wakeup> wakeup_ = std::make_shared<Wakeup>();

  // Guards resource-call completions against the supervisor going away: a
  // completion runs holding its mutex, and Shutdown() clears `self` under it.
  struct HookGuard {
    std::mutex mu;
    Supervisor* self = nullptr;
  };
  const std::shared_ptr<HookGuard> hook_guard_ = std::make_shared<HookGuard>();

  std::mutex queue_mu_;
  std::vector<std::pair<ServicePtr, std::shared_ptr<Instance>>> to_start_;  // guarded by queue_mu_

  // Supervisor thread only.
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  int epoll_fd_ = -1;
  int inotify_fd_ = -1;
  std::unique_ptr<Timer> timer_;
  struct FdRef {
    std::shared_ptr<Instance> inst;
    int kind;  // 0 exit, 1 stdout, 2 stderr, 3 ready probe
  };
  std::unordered_map<int, FdRef> fds_;
  StringMap<std::shared_ptr<Instance>> by_socket_name_;
  std::unordered_set<const Instance*> starting_;  // spawned, not ready yet
  StringMap<std::string> listeners_;  // env -> internal socket path
  SteadyTime next_wake_{};
};

}  // namespace lever::host
