// The Host: wires the catalog, routing, supervisor (with the lifecycle) and
// the deployer together, and answers the admin service's questions.
#include "lever/host/host.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "catalog.h"
#include "cluster.h"
#include "resources_cluster.h"
#include "registry_etcd.h"
#include "routing.h"
#include "supervisor.h"
#include "util.h"

namespace lever::host {

class Host::Impl {
 public:
  explicit Impl(HostOptions options)
      : options_(std::move(options)), logs_(options_.log_lines, options_.log_bytes) {}
  ~Impl();

  Status Init(RegistryPtr registry);
  void OnDeployed(const ServiceInfo& info, const LeverConfig& config);
  Status CreateEnvironment(std::string_view name, std::string_view description);
  Status DeleteEnvironment(std::string_view name);
  Status ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out);
  std::vector<ClusterNodeInfo> ListNodes();
  Status ListServiceStatus(std::string_view env, std::vector<ServiceStatus>* out);
  Status AwaitRollout(std::string_view env, std::string_view service, int64_t version, SteadyTime deadline);
  void SetLive(const std::string& env, const std::string& service, int64_t version);
  // Another node's registry change, from the etcd mirror's watch.
  void OnRegistryChanges(const std::vector<etcd::Change>& changes);
  void SyncService(const std::string& env, const std::string& name);
  void RemoveEnvironmentHere(const std::string& name);
  Status CheckService(std::string_view env, std::string_view service) {
    return catalog_->Find(env, service) ? Status::Ok()
                                        : Status(Code::kNotFound, "service " + ServiceUrl(env, service) + " not found");
  }

  HostOptions options_;
  LogStore logs_;
  RegistryPtr registry_;
  ClockPtr clock_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<Routing> routing_;
  RuntimePtr runtime_;  // the supervisor's
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<Deployer> deployer_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<ClusterResources> resources_;  // resource owners across the cluster
  uint64_t registry_sub_ = 0;  // the etcd mirror subscription (0: none)
  int lock_fd_ = -1;  // flock on <data>/leverd.lock

 private:
  std::string data_dir_;
};

Status Host::Impl::Init(RegistryPtr registry) {
  registry_ = std::move(registry);
  clock_ = options_.clock ? options_.clock : RealClock();
  char* real = realpath(options_.data_dir.c_str(), nullptr);
  if (!real) return ErrnoStatus("data dir " + options_.data_dir, errno);
  data_dir_ = real;
  free(real);
  std::string run_dir = data_dir_ + "/run";
  if (run_dir.size() + 1 + 32 + 5 >= sizeof(sockaddr_un::sun_path)) {
    return InvalidArgument("data dir path too long for instance sockets: " + data_dir_ + " (at most " +
                           std::to_string(sizeof(sockaddr_un::sun_path) - 1 - 5 - 32 - 1 - 4) + " bytes)");
  }
  Status s = MakeDirs(run_dir);
  if (!s.ok()) return s;
  // Instances running as another user create their sockets here: writable,
  // not listable, and nobody removes another's file.
  chmod(run_dir.c_str(), options_.process.user.empty() && !options_.process.ids ? 0755 : 01733);
  // Sockets of instances of an earlier run are stale.
  if (DIR* d = opendir(run_dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (EndsWith(e->d_name, ".sock")) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }

  if (!options_.log_sink) {
    options_.log_sink = [](std::string_view line) {
      std::string l(line);
      l.push_back('\n');
      (void)!write(2, l.data(), l.size());
    };
  }
  RuntimePtr runtime;
  RuntimeOptions rt;
  rt.process = options_.process;
  if (!rt.process.log) rt.process.log = options_.log_sink;
  rt.docker = options_.docker;
  rt.docker.owner = data_dir_;
  rt.docker.run_dir = run_dir;
  rt.docker.lever_serve = options_.process.lever_serve;
  rt.docker.lever_serve_py = options_.process.lever_serve_py;
  s = OpenRuntime(options_.runtime, rt, &runtime);
  if (!s.ok()) return s;
  if (options_.cold_start_wait.count() <= 0) {
    options_.cold_start_wait = options_.start_timeout + std::chrono::milliseconds(1000);
  }

  // Everything routing needs, cached: the registry is never read on Route().
  catalog_ = std::make_unique<Catalog>(data_dir_);
  s = catalog_->Load(*registry_);
  if (!s.ok()) return s;
  // Their language runtimes are pre-started before their first call.
  runtime_ = runtime;
  for (const ServicePtr& svc : catalog_->Services()) {
    LeverConfig config;
    {
      std::lock_guard lock(svc->mu);
      config = svc->config;
    }
    runtime_->Expect(config);
  }

  RoutingOptions ro;
  ro.cold_start_wait = options_.cold_start_wait;
  ro.max_waiting_calls = options_.max_waiting_calls;
  ro.count_at_placement = options_.count_at_placement;
  std::shared_ptr<AdminBackend> admin;
  if (!options_.admin_address.empty()) admin = std::make_shared<AdminBackend>(options_.admin_address);
  routing_ = std::make_unique<Routing>(*catalog_, options_.placement ? options_.placement : NewDefaultPlacement(), ro,
                                       std::move(admin), clock_);

  SupervisorOptions so;
  so.run_dir = run_dir;
  so.lifecycle.start_timeout = options_.start_timeout;
  so.lifecycle.idle_timeout = options_.idle_timeout;
  so.lifecycle.drain_settle = options_.retired_idle_timeout;
  so.lifecycle.stop_grace = options_.stop_grace;
  so.lifecycle.stable_window = options_.autoscale_stable_window;
  so.lifecycle.panic_window = options_.autoscale_panic_window;
  so.lifecycle.resource_idle = options_.resource_idle;
  so.lifecycle.max_instances = options_.max_instances_per_service;
  so.count_at_placement = options_.count_at_placement;
  so.max_starting = options_.max_starting > 0
                        ? options_.max_starting
                        : std::max<size_t>(2, std::thread::hardware_concurrency());
  so.on_switched = [this](const std::string& env, const std::string& service, int64_t version) {
    SetLive(env, service, version);
  };
  so.ensure_internal_listener = options_.ensure_internal_listener;
  so.log_sink = options_.log_sink;
  auto* etcd_registry = dynamic_cast<EtcdRegistry*>(registry_.get());
  const ClusterOptions& co = options_.cluster;
  if (!co.advertise.empty()) {
    if (!etcd_registry) return InvalidArgument("cluster: a peer address (--advertise) needs --registry etcd://...");
    if (co.node_name.empty() || co.node_name.size() > 64 ||
        co.node_name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos) {
      return InvalidArgument("cluster: node name \"" + co.node_name + "\" must be 1..64 of [A-Za-z0-9._-]");
    }
    if (co.token.size() < 16) return InvalidArgument("cluster: the cluster token must be at least 16 bytes");
    so.publish = [this](std::vector<ServiceLoad> loads) {
      if (cluster_) cluster_->Publish(std::move(loads));
    };
    so.peer_loads = [this](const std::string& env, const std::string& service, int64_t live,
                           std::vector<PeerLoad>* out) -> uint64_t {
      if (!cluster_) return 0;
      return cluster_->PeerLoads(env, service, live, out);
    };
    so.ensure_code = [this](const std::string& env, const std::string& service, int64_t version,
                            const std::string& code_dir, Status* failure) {
      if (!cluster_) return 0;
      switch (cluster_->EnsureCode(env, service, version, code_dir, failure)) {
        case Cluster::CodeState::kReady:
          return 0;
        case Cluster::CodeState::kPending:
          return 1;
        case Cluster::CodeState::kFailed:
          return 2;
      }
      return 2;
    };
  }
  supervisor_ = std::make_unique<Supervisor>(std::move(so), *catalog_, *routing_, logs_, std::move(runtime), clock_);
  routing_->SetSupervisor(supervisor_.get());

  DeployOptions deploy = options_.deploy;
  deploy.data_dir = data_dir_;
  deploy.set_live = false;  // the supervisor switches once a new instance is ready
  deploy.node_name = co.advertise.empty() ? "" : co.node_name;
  deploy.on_deployed = [this](const ServiceInfo& info, const LeverConfig& config) { OnDeployed(info, config); };
  s = Deployer::Create(deploy, registry_, &deployer_);
  if (!s.ok()) return s;
  if (!co.advertise.empty()) {
    Cluster::Deps deps;
    deps.registry = etcd_registry;
    deps.catalog = catalog_.get();
    deps.deployer = deployer_.get();
    deps.clock = clock_;
    deps.log = [sink = options_.log_sink](std::string_view line) { sink(line); };
    deps.wake = [this] { supervisor_->Wake(); };
    deps.max_archive_bytes = deploy.max_compressed_bytes;
    deps.count_at_placement = options_.count_at_placement;
    cluster_ = std::make_unique<Cluster>(co, std::move(deps));
    s = cluster_->Start();
    if (!s.ok()) return s;
    ClusterResources::Deps rd;
    rd.registry = etcd_registry;
    rd.catalog = catalog_.get();
    rd.node_name = co.node_name;
    rd.session = [c = cluster_.get()] { return c->session(); };
    rd.peer = [c = cluster_.get()](const std::string& name) { return c->FindPeer(name); };
    rd.wake = [this] { supervisor_->Wake(); };
    rd.count_at_placement = options_.count_at_placement;
    rd.suspect_for = std::chrono::duration_cast<SteadyDuration>(co.lease_ttl);
    resources_ = std::make_unique<ClusterResources>(std::move(rd));
    resources_->Start();
    routing_->SetOwners(resources_.get());
  }
  s = supervisor_->Start();
  if (!s.ok()) return s;
  // Other nodes' deploys, live versions and environments reach this node's
  // catalog through the registry's watch (the first call hands the current
  // state, which the catalog already has).
  if (etcd_registry) {
    registry_sub_ = etcd_registry->mirror().Subscribe(
        etcd_registry->root(), [this](const std::vector<etcd::Change>& changes) { OnRegistryChanges(changes); });
  }
  return Status::Ok();
}

void Host::Impl::OnRegistryChanges(const std::vector<etcd::Change>& changes) {
  const std::string& root = static_cast<EtcdRegistry*>(registry_.get())->root();
  for (const etcd::Change& c : changes) {
    std::string_view key = std::string_view(c.kv.key()).substr(root.size());
    if (key.starts_with("env/")) {
      std::string name(key.substr(4));
      if (c.deleted) {
        if (catalog_->HasEnvironment(name)) RemoveEnvironmentHere(name);
      } else if (!catalog_->HasEnvironment(name)) {
        EnvironmentInfo env;
        if (registry_->GetEnvironment(name, &env).ok()) catalog_->AddEnvironment(name, env.description);
      }
    } else if (key.starts_with("svc/") && !c.deleted) {
      std::string_view rest = key.substr(4);
      size_t slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      SyncService(std::string(rest.substr(0, slash)), std::string(rest.substr(slash + 1)));
    }
  }
}

// A service as the registry has it now: new services appear, a live version
// another node switched to becomes this node's live version (its instances
// of the old one drain; the new one starts here when calls need it, its code
// fetched from a peer), and a rollout here that it overtook ends.
void Host::Impl::SyncService(const std::string& env, const std::string& name) {
  ServiceInfo info;
  if (!registry_->GetService(env, name, &info).ok()) return;
  bool created = false;
  ServicePtr svc = catalog_->FindOrCreate(info, &created);
  if (svc->is_admin()) return;
  int64_t live = 0;
  {
    std::lock_guard lock(svc->mu);
    svc->info.description = info.description;
    svc->info.is_private = info.is_private;
    svc->info.next_version = std::max(svc->info.next_version, info.next_version);
    live = svc->info.live_version;
  }
  if (info.live_version > live) {
    CodeVersionInfo cv;
    LeverConfig config;
    Status cs = registry_->GetCodeVersion(env, name, info.live_version, &cv);
    if (cs.ok()) cs = ParseLeverConfig(cv.lever_json, &config);
    std::lock_guard lock(svc->mu);
    if (info.live_version > svc->info.live_version) {
      svc->info.live_version = info.live_version;
      svc->config_status = cs;
      svc->config = config;
      svc->code_dir = CodeDirPath(data_dir_, env, name, info.live_version);
      if (svc->rollout.version > 0 && svc->rollout.version <= info.live_version) {
        RolloutResult& r = svc->rollouts[svc->rollout.version];
        r.done = true;
        r.status = svc->rollout.version == info.live_version
                       ? Status::Ok()
                       : Status(Code::kAborted, ServiceUrl(env, name) + " v" + std::to_string(svc->rollout.version) +
                                                    " was superseded by v" + std::to_string(info.live_version) +
                                                    " on another node before it was ready");
        svc->rollout = Rollout{};
        svc->rollout_cv.notify_all();
      }
    }
  }
  if (cluster_) {
    if (created) {
      cluster_->RefreshService(env, name);
      resources_->Refresh(env, name);
    }
    // Every node keeps the code of every live version (fetched in the
    // background), so a call needs no fetch and a version outlives the node
    // that accepted it.
    int64_t v = 0;
    std::string dir;
    {
      std::lock_guard lock(svc->mu);
      v = svc->info.live_version;
      dir = svc->code_dir;
    }
    Status ignored;
    if (v > 0 && !dir.empty()) (void)cluster_->EnsureCode(env, name, v, dir, &ignored);
  }
  supervisor_->Wake();
}

// Another node deleted the environment: this node stops its instances and
// drops its code and cache entries (the registry rows are already gone).
void Host::Impl::RemoveEnvironmentHere(const std::string& name) {
  std::unique_lock store = deployer_->LockStore();
  (void)RemoveTree(data_dir_ + "/code/" + name);
  Deferred d;
  for (auto& svc : catalog_->RemoveEnvironment(name)) {
    std::lock_guard lock(svc->mu);
    svc->removed = true;
    svc->rollout_cv.notify_all();
    routing_->FailWaitersLocked(*svc, Status(Code::kNotFound, "environment " + name + " was deleted"), &d);
  }
  store.unlock();
  for (auto& [done, result] : d.calls) done(std::move(result));
  supervisor_->Wake();
}

void Host::Impl::OnDeployed(const ServiceInfo& info, const LeverConfig& config) {
  catalog_->OnDeployed(info, config);
  runtime_->Expect(config);
  supervisor_->Wake();  // retire old instances, start minInstances of the new version
}

// A rollout switched: the registry's live version follows, so a restarted
// leverd serves what was serving.
void Host::Impl::SetLive(const std::string& env, const std::string& service, int64_t version) {
  std::unique_lock store = deployer_->LockStore();
  ServiceInfo info;
  Status s = registry_->GetService(env, service, &info);
  if (s.ok() && info.live_version < version) {
    info.live_version = version;
    s = registry_->UpdateService(info);
  }
  if (!s.ok()) options_.log_sink("[host] cannot record v" + std::to_string(version) + " of " + ServiceUrl(env, service) +
                                 " as live: " + s.message());
}

Status Host::Impl::AwaitRollout(std::string_view env, std::string_view service, int64_t version,
                                SteadyTime deadline) {
  ServicePtr svc = catalog_->Find(env, service);
  if (!svc) return Status(Code::kNotFound, "service " + ServiceUrl(env, service) + " not found");
  std::unique_lock lock(svc->mu);
  auto done = [&] {
    auto it = svc->rollouts.find(version);
    return (it != svc->rollouts.end() && it->second.done) || svc->removed;
  };
  // The deadline is real time: a deploy's client waits on a wall clock.
  if (!svc->rollout_cv.wait_until(lock, deadline, done)) {
    return Status(Code::kDeadlineExceeded, ServiceUrl(env, service) + " v" + std::to_string(version) +
                                               " did not become ready in time");
  }
  if (svc->removed) return Status(Code::kNotFound, "service " + ServiceUrl(env, service) + " was removed");
  return svc->rollouts[version].status;
}

Status Host::Impl::ListServiceStatus(std::string_view env, std::vector<ServiceStatus>* out) {
  out->clear();
  std::vector<ServiceInfo> infos;
  Status s = catalog_->ListServices(env, &infos);
  if (!s.ok()) return s;
  for (ServiceInfo& info : infos) {
    ServiceStatus st;
    if (ServicePtr svc = catalog_->Find(info.env, info.name)) {
      std::lock_guard lock(svc->mu);
      st.desired = svc->is_admin() ? 1 : svc->scaler.desired;
      st.reason = svc->is_admin() ? "builtin" : svc->scaler.reason;
      st.rollout_version = svc->rollout.version;
      st.waiting = static_cast<int64_t>(svc->waiters.size());
    }
    st.info = std::move(info);
    out->push_back(std::move(st));
  }
  return Status::Ok();
}

Status Host::Impl::CreateEnvironment(std::string_view name, std::string_view description) {
  std::unique_lock store = deployer_->LockStore();
  Status s = registry_->CreateEnvironment({std::string(name), std::string(description)});
  if (!s.ok()) return s;
  catalog_->AddEnvironment(name, description);
  return Status::Ok();
}

Status Host::Impl::DeleteEnvironment(std::string_view name) {
  if (name == kAdminEnv) return Status(Code::kPermissionDenied, "the admin environment cannot be deleted");
  // No deploy commits while the env's rows, code and cache entries go.
  std::unique_lock store = deployer_->LockStore();
  Status s = registry_->DeleteEnvironment(name);
  if (!s.ok()) return s;
  Status removed_code = RemoveTree(data_dir_ + "/code/" + std::string(name));
  Deferred d;
  for (auto& svc : catalog_->RemoveEnvironment(name)) {
    std::lock_guard lock(svc->mu);
    svc->removed = true;
    svc->rollout_cv.notify_all();  // a deploy waiting on it learns at once
    routing_->FailWaitersLocked(*svc, Status(Code::kNotFound, "environment " + std::string(name) + " was deleted"),
                                &d);
  }
  store.unlock();
  for (auto& [done, result] : d.calls) done(std::move(result));
  supervisor_->Wake();  // it stops their instances
  return removed_code;
}

Status Host::Impl::ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out) {
  out->clear();
  for (auto& svc : catalog_->Services(env, service)) {
    std::lock_guard lock(svc->mu);
    if (svc->removed) continue;
    if (svc->is_admin()) {
      InstanceInfo info;
      info.instance_id = "builtin";
      info.env = svc->env;
      info.service = svc->name;
      info.version = svc->info.live_version;
      info.pid = getpid();
      info.state = "builtin";
      info.calls_in_flight = routing_->admin() ? routing_->admin()->in_flight.load() : 0;
      info.address = options_.admin_address;
      out->push_back(info);
      continue;
    }
    for (auto& inst : svc->instances) {
      InstanceInfo info;
      info.instance_id = inst->instance_id;
      info.env = inst->env;
      info.service = inst->service;
      info.version = inst->version;
      info.pid = inst->pid;
      info.state = InstanceStateName(inst->state);
      info.calls_in_flight = inst->in_flight();
      info.started_at = inst->started_at;
      info.address = inst->address();
      info.socket = inst->socket_kind;
      for (auto& [name, lease] : svc->leases) {
        if (lease->owner == inst) info.resources.push_back(name);
      }
      std::sort(info.resources.begin(), info.resources.end());
      if (cluster_) info.node = cluster_->node_name();
      out->push_back(std::move(info));
    }
  }
  if (cluster_) {
    for (RemoteInstanceInfo& r : cluster_->RemoteInstances(env, service)) {
      InstanceInfo info;
      info.instance_id = std::move(r.instance_id);
      info.env = std::move(r.env);
      info.service = std::move(r.service);
      info.version = r.version;
      info.state = "ready";
      info.node = std::move(r.node);
      out->push_back(std::move(info));
    }
  }
  return Status::Ok();
}

std::vector<ClusterNodeInfo> Host::Impl::ListNodes() {
  if (!cluster_) return {};
  std::map<std::string, int64_t> local;
  for (auto& svc : catalog_->Services()) {
    std::lock_guard lock(svc->mu);
    if (!svc->removed && !svc->is_admin()) local[svc->env + "/" + svc->name] = static_cast<int64_t>(svc->instances.size());
  }
  return cluster_->Nodes(local);
}

Host::Impl::~Impl() {
  // No more registry changes or cluster updates; the node's keys go with its
  // lease (revoked), so the others stop routing here at once.
  if (registry_sub_) static_cast<EtcdRegistry*>(registry_.get())->mirror().Unsubscribe(registry_sub_);
  // The supervisor first: it stops the instances and answers waiting calls.
  if (supervisor_) supervisor_->Shutdown();
  if (routing_) routing_->SetOwners(nullptr);
  resources_.reset();
  cluster_.reset();
  logs_.WakeAll();
  supervisor_.reset();
  if (lock_fd_ >= 0) close(lock_fd_);
}

// ---------------------------------------------------------------------------
// Host.

Host::Host(std::unique_ptr<Impl> impl, RegistryPtr registry, std::string data_dir)
    : impl_(std::move(impl)), registry_(std::move(registry)), data_dir_(std::move(data_dir)) {}

Host::~Host() = default;

Status Host::Create(HostOptions options, std::shared_ptr<Host>* out) {
  if (options.data_dir.empty()) return InvalidArgument("HostOptions.data_dir is required");
  Status s = MakeDirs(options.data_dir);
  if (!s.ok()) return s;
  char* real = realpath(options.data_dir.c_str(), nullptr);
  if (!real) return ErrnoStatus("data dir " + options.data_dir, errno);
  options.data_dir = real;
  free(real);
  // One leverd per data dir: its sockets, code and registry are not shared.
  std::string lock_path = options.data_dir + "/leverd.lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return ErrnoStatus("open " + lock_path, errno);
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(lock_fd);
    return Status(Code::kFailedPrecondition, "data dir " + options.data_dir + " is in use by another leverd");
  }
  RegistryPtr registry;
  s = OpenRegistry(options.registry_url, options.data_dir, &registry);
  if (!s.ok()) {
    close(lock_fd);
    return s;
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->lock_fd_ = lock_fd;  // released when the host is destroyed
  s = impl->Init(registry);
  if (!s.ok()) return s;
  std::string dir = impl->options_.data_dir;
  *out = std::shared_ptr<Host>(new Host(std::move(impl), std::move(registry), std::move(dir)));
  return Status::Ok();
}

void Host::Route(const RouteRequest& request, std::function<void(RouteResult)> done) {
  impl_->routing_->Route(request, std::move(done));
}

PendingRoute Host::RouteCancellable(const RouteRequest& request, std::function<void(RouteResult)> done) {
  return impl_->routing_->Route(request, std::move(done));
}

void Host::CancelRoute(const PendingRoute& pending) { impl_->routing_->Cancel(pending); }

Status Host::AwaitRollout(std::string_view env, std::string_view service, int64_t version,
                          std::chrono::steady_clock::time_point deadline) {
  return impl_->AwaitRollout(env, service, version, deadline);
}

Status Host::ListServiceStatus(std::string_view env, std::vector<ServiceStatus>* out) {
  return impl_->ListServiceStatus(env, out);
}

Status Host::BeginDeploy(std::string_view env, std::unique_ptr<DeploySession>* out) {
  return impl_->deployer_->Begin(env, out);
}

Status Host::CreateEnvironment(std::string_view name, std::string_view description) {
  return impl_->CreateEnvironment(name, description);
}

Status Host::ListEnvironments(std::vector<EnvironmentInfo>* out) { return registry_->ListEnvironments(out); }

Status Host::DeleteEnvironment(std::string_view name) { return impl_->DeleteEnvironment(name); }

Status Host::ListServices(std::string_view env, std::vector<ServiceInfo>* out) {
  return impl_->catalog_->ListServices(env, out);
}

Status Host::ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out) {
  return impl_->ListInstances(env, service, out);
}

std::vector<ClusterNodeInfo> Host::ListNodes() { return impl_->ListNodes(); }

Status Host::TailLogs(std::string_view env, std::string_view service, size_t n, std::vector<LogLine>* out) {
  Status s = impl_->CheckService(env, service);
  if (!s.ok()) return s;
  *out = impl_->logs_.Tail(env, service, n);
  return Status::Ok();
}

Status Host::ReadLogs(std::string_view env, std::string_view service, uint64_t after_seq, size_t max,
                      std::chrono::steady_clock::time_point deadline, std::vector<LogLine>* out) {
  Status s = impl_->CheckService(env, service);
  if (!s.ok()) return s;
  *out = impl_->logs_.Read(env, service, after_seq, max, deadline);
  return Status::Ok();
}

}  // namespace lever::host
