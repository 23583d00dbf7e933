#include "lever/host/host.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "util.h"

namespace lever::host {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
Clock::time_point FromNs(int64_t ns) { return Clock::time_point(std::chrono::nanoseconds(ns)); }

std::atomic<uint64_t> g_next_backend_id{1};

// The supervisor's eventfd; shared with Backends, which may outlive the host.
struct Wakeup {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ~Wakeup() {
    if (fd >= 0) close(fd);
  }
  void Notify() const {
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
  }
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

enum class State { kStarting, kReady, kStopping };

const char* StateName(State s) {
  switch (s) {
    case State::kStarting: return "starting";
    case State::kReady: return "ready";
    case State::kStopping: return "stopping";
  }
  return "?";
}

struct ServiceState;

class Instance final : public Backend {
 public:
  Instance(std::string instance_id, std::string env, std::string service, int64_t version,
           std::string socket_path, std::shared_ptr<const Wakeup> wakeup)
      : backend_id(g_next_backend_id.fetch_add(1)),
        instance_id(std::move(instance_id)),
        env(std::move(env)),
        service(std::move(service)),
        version(version),
        socket_path(std::move(socket_path)),
        address_("unix:" + this->socket_path),
        placement_key(PlacementKey(this->instance_id)),
        wakeup_(std::move(wakeup)) {
    Touch();
  }

  // Backend: atomics only.
  const std::string& address() const override { return address_; }
  uint64_t id() const override { return backend_id; }
  void OnCallStart() override {
    in_flight.fetch_add(1, std::memory_order_relaxed);
    Touch();
  }
  void OnCallEnd() override {
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    Touch();
  }
  void OnConnectionFailed() override {
    if (!check_requested.exchange(true)) wakeup_->Notify();
  }
  bool alive() const override { return alive_.load(std::memory_order_acquire); }

  void Touch() { last_active_ns.store(NowNs(), std::memory_order_relaxed); }

  const uint64_t backend_id;
  const std::string instance_id;
  const std::string env;
  const std::string service;
  const int64_t version;
  const std::string socket_path;
  const std::string address_;
  const uint64_t placement_key;

  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> alive_{false};
  std::atomic<int64_t> last_active_ns{0};
  std::atomic<bool> check_requested{false};

  // Guarded by the service's mutex (written by the supervisor).
  State state = State::kStarting;
  int pid = 0;
  bool spawned = false;
  std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();

  std::weak_ptr<ServiceState> owner;  // set at creation

  // Supervisor thread only.
  LeverConfig config;
  std::string code_dir;
  std::unique_ptr<RunningInstance> proc;
  Clock::time_point start_deadline{};
  Clock::time_point next_attempt{};
  Clock::duration backoff{};
  Clock::time_point kill_deadline{};
  bool killed = false;
  bool stop_intended = false;
  std::string out_partial, err_partial;
  bool out_open = false, err_open = false;
  std::string last_line;

 private:
  std::shared_ptr<const Wakeup> wakeup_;
};

// The built-in admin service, served in-process by leverd.
class AdminBackend final : public Backend {
 public:
  explicit AdminBackend(std::string address) : address_(std::move(address)), id_(g_next_backend_id.fetch_add(1)) {}
  const std::string& address() const override { return address_; }
  uint64_t id() const override { return id_; }
  void OnCallStart() override { in_flight.fetch_add(1, std::memory_order_relaxed); }
  void OnCallEnd() override { in_flight.fetch_sub(1, std::memory_order_relaxed); }
  void OnConnectionFailed() override {}
  bool alive() const override { return true; }
  std::atomic<int64_t> in_flight{0};

 private:
  const std::string address_;
  const uint64_t id_;
};

struct Waiter {
  std::string resource;
  Clock::time_point deadline;
  std::function<void(RouteResult)> done;
};

struct ServiceState : std::enable_shared_from_this<ServiceState> {
  ServiceState(std::string e, std::string n) : env(std::move(e)), name(std::move(n)) {}
  const std::string env;
  const std::string name;

  std::mutex mu;
  // Guarded by mu.
  bool removed = false;
  ServiceInfo info;
  LeverConfig config;  // of the live version
  Status config_status;
  std::string code_dir;  // of the live version
  std::vector<std::shared_ptr<Instance>> instances;
  std::deque<Waiter> waiters;
  int crash_streak = 0;
  Clock::time_point restart_after{};
};

struct EnvState {
  std::string description;
  StringMap<std::shared_ptr<ServiceState>> services;
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string Url(std::string_view env, std::string_view service) {
  return "lever://" + std::string(env) + "/" + std::string(service);
}

std::string DescribeExit(int ws) {
  if (WIFEXITED(ws)) return "exited with status " + std::to_string(WEXITSTATUS(ws));
  if (WIFSIGNALED(ws)) {
    int sig = WTERMSIG(ws);
    const char* name = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited";
}

bool TryConnect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), std::min(path.size(), sizeof sa.sun_path - 1));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  close(fd);
  return ok;
}

// A deferred action to run with no lock held.
struct Deferred {
  std::vector<std::pair<std::function<void(RouteResult)>, RouteResult>> calls;
  struct Note {
    std::string env, service, instance_id, text;
    int64_t version;
  };
  std::vector<Note> notes;
};

// Delay before minInstances restarts a crashing service: 100 ms doubling to 30 s.
Clock::duration RestartDelay(int crash_streak) {
  return std::min<Clock::duration>(milliseconds(100 << std::min(crash_streak, 9)), std::chrono::seconds(30));
}

constexpr size_t kMaxLineBytes = 16 * 1024;
constexpr auto kFirstBackoff = milliseconds(1);
constexpr auto kMaxBackoff = milliseconds(100);

}  // namespace

class Host::Impl {
 public:
  explicit Impl(HostOptions options) : options_(std::move(options)), logs_(options_.log_lines, options_.log_bytes) {}
  ~Impl();

  Status Init(RegistryPtr registry);
  void Route(const RouteRequest& request, std::function<void(RouteResult)> done);
  void OnDeployed(const ServiceInfo& info, const LeverConfig& config);

  Status BeginDeploy(std::string_view env, std::unique_ptr<DeploySession>* out) {
    return deployer_->Begin(env, out);
  }
  Status CreateEnvironment(std::string_view name, std::string_view description);
  Status DeleteEnvironment(std::string_view name);
  Status ListServices(std::string_view env, std::vector<ServiceInfo>* out);
  Status ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out);
  Status CheckService(std::string_view env, std::string_view service);

  HostOptions options_;
  LogStore logs_;
  RegistryPtr registry_;

 private:
  // Routing helpers (service mutex held).
  std::shared_ptr<Instance> PickLocked(ServiceState& svc, std::string_view resource);
  void StartLocked(ServiceState& svc);
  size_t CountLocked(const ServiceState& svc, bool live_only, bool starting_only) const;
  bool HasSuspectLocked(const ServiceState& svc) const;
  void StopLocked(ServiceState& svc, Instance& inst, std::string reason, Deferred* d);
  void FailWaitersLocked(ServiceState& svc, const Status& status, Deferred* d);

  // Supervisor thread.
  void Run();
  void StartQueued();
  void Spawn(const std::shared_ptr<ServiceState>& svc, const std::shared_ptr<Instance>& inst);
  void Tick();
  void TickService(ServiceState& svc, Clock::time_point now, Deferred* d);
  void HandleExit(const std::shared_ptr<Instance>& inst);
  void ReadOutput(Instance& inst, bool is_err, bool drain);
  void EmitLine(Instance& inst, bool is_err, std::string_view line);
  void HandleInotify();
  void Flush(Deferred* d);
  void Watch(int fd, const std::shared_ptr<Instance>& inst, int kind);
  void Unwatch(int fd);
  void Shutdown();
  void StopAll();
  std::shared_ptr<ServiceState> FindService(std::string_view env, std::string_view service);
  void Note(Deferred* d, const ServiceState& svc, int64_t version, const std::string& instance_id,
            std::string text) {
    d->notes.push_back({svc.env, svc.name, instance_id, std::move(text), version});
  }
  void Wake() { wakeup_->Notify(); }

  std::string data_dir_;
  std::string run_dir_;
  RuntimePtr runtime_;
  PlacementPtr placement_;
  std::unique_ptr<Deployer> deployer_;
  std::shared_ptr<AdminBackend> admin_;
  std::shared_ptr<const Wakeup> wakeup_ = std::make_shared<Wakeup>();

  std::shared_mutex envs_mu_;
  StringMap<EnvState> envs_;                               // guarded by envs_mu_
  std::vector<std::shared_ptr<ServiceState>> services_;    // guarded by envs_mu_; incl. removed ones

  std::mutex queue_mu_;
  std::vector<std::pair<std::shared_ptr<ServiceState>, std::shared_ptr<Instance>>> to_start_;  // queue_mu_

  // Supervisor thread only.
  std::thread supervisor_;
  std::atomic<bool> stopping_{false};
  int epoll_fd_ = -1;
  int inotify_fd_ = -1;

 public:
  int lock_fd_ = -1;  // flock on <data>/leverd.lock

 private:
  struct FdRef {
    std::shared_ptr<Instance> inst;
    int kind;  // 0 exit, 1 stdout, 2 stderr
  };
  std::unordered_map<int, FdRef> fds_;
  StringMap<std::shared_ptr<Instance>> by_socket_name_;
  StringMap<std::string> listeners_;  // env -> internal socket path
  Clock::time_point next_wake_{};
};

// ---------------------------------------------------------------------------
// Setup and caches.

Status Host::Impl::Init(RegistryPtr registry) {
  registry_ = std::move(registry);
  char* real = realpath(options_.data_dir.c_str(), nullptr);
  if (!real) return ErrnoStatus("data dir " + options_.data_dir, errno);
  data_dir_ = real;
  free(real);
  run_dir_ = data_dir_ + "/run";
  if (run_dir_.size() + 1 + 32 + 5 >= sizeof(sockaddr_un::sun_path)) {
    return InvalidArgument("data dir path too long for instance sockets: " + data_dir_ + " (at most " +
                           std::to_string(sizeof(sockaddr_un::sun_path) - 1 - 5 - 32 - 1 - 4) + " bytes)");
  }
  Status s = MakeDirs(run_dir_);
  if (!s.ok()) return s;
  // Instances running as another user create their sockets here: writable,
  // not listable, and nobody removes another's file.
  chmod(run_dir_.c_str(), options_.process.user.empty() ? 0755 : 01733);
  // Sockets of instances of an earlier run are stale.
  if (DIR* d = opendir(run_dir_.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (EndsWith(e->d_name, ".sock")) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }

  s = OpenRuntime(options_.runtime, options_.process, &runtime_);
  if (!s.ok()) return s;
  placement_ = options_.placement ? options_.placement : NewDefaultPlacement();
  if (!options_.admin_address.empty()) admin_ = std::make_shared<AdminBackend>(options_.admin_address);
  if (options_.cold_start_wait.count() <= 0) options_.cold_start_wait = options_.start_timeout + milliseconds(1000);
  if (!options_.log_sink) {
    options_.log_sink = [](std::string_view line) {
      std::string l(line);
      l.push_back('\n');
      (void)!write(2, l.data(), l.size());
    };
  }

  DeployOptions deploy = options_.deploy;
  deploy.data_dir = data_dir_;
  deploy.on_deployed = [this](const ServiceInfo& info, const LeverConfig& config) { OnDeployed(info, config); };
  s = Deployer::Create(deploy, registry_, &deployer_);
  if (!s.ok()) return s;

  // Everything routing needs, cached: the registry is never read on Route().
  std::vector<EnvironmentInfo> envs;
  s = registry_->ListEnvironments(&envs);
  if (!s.ok()) return s;
  for (const EnvironmentInfo& env : envs) {
    EnvState& es = envs_[env.name];
    es.description = env.description;
    std::vector<ServiceInfo> services;
    s = registry_->ListServices(env.name, &services);
    if (!s.ok()) return s;
    for (ServiceInfo& info : services) {
      auto svc = std::make_shared<ServiceState>(info.env, info.name);
      svc->info = info;
      if (info.live_version > 0 && !(info.env == kAdminEnv && info.name == kAdminService)) {
        CodeVersionInfo cv;
        svc->config_status = registry_->GetCodeVersion(info.env, info.name, info.live_version, &cv);
        if (svc->config_status.ok()) svc->config_status = ParseLeverConfig(cv.lever_json, &svc->config);
        svc->code_dir = CodeDirPath(data_dir_, info.env, info.name, info.live_version);
      }
      es.services[info.name] = svc;
      services_.push_back(svc);
    }
  }

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (epoll_fd_ < 0 || inotify_fd_ < 0 || wakeup_->fd < 0) return ErrnoStatus("epoll/inotify/eventfd", errno);
  if (inotify_add_watch(inotify_fd_, run_dir_.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    return ErrnoStatus("inotify " + run_dir_, errno);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wakeup_->fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wakeup_->fd, &ev);
  ev.data.fd = inotify_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, inotify_fd_, &ev);
  next_wake_ = Clock::now();  // a first pass starts minInstances
  supervisor_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void Host::Impl::OnDeployed(const ServiceInfo& info, const LeverConfig& config) {
  std::shared_ptr<ServiceState> svc;
  {
    std::unique_lock lock(envs_mu_);
    EnvState& es = envs_[info.env];  // created by the deploy if new
    auto it = es.services.find(info.name);
    if (it == es.services.end()) {
      svc = std::make_shared<ServiceState>(info.env, info.name);
      es.services[info.name] = svc;
      services_.push_back(svc);
    } else {
      svc = it->second;
    }
  }
  {
    std::lock_guard lock(svc->mu);
    svc->info = info;
    svc->config = config;
    svc->config_status = Status::Ok();
    svc->code_dir = CodeDirPath(data_dir_, info.env, info.name, info.live_version);
    svc->crash_streak = 0;
    svc->restart_after = {};
  }
  Wake();  // retire old instances, start minInstances of the new version
}

Status Host::Impl::CreateEnvironment(std::string_view name, std::string_view description) {
  std::unique_lock store = deployer_->LockStore();
  Status s = registry_->CreateEnvironment({std::string(name), std::string(description)});
  if (!s.ok()) return s;
  std::unique_lock lock(envs_mu_);
  envs_[std::string(name)].description = description;
  return Status::Ok();
}

Status Host::Impl::DeleteEnvironment(std::string_view name) {
  if (name == kAdminEnv) return Status(Code::kPermissionDenied, "the admin environment cannot be deleted");
  // No deploy commits while the env's rows, code and cache entries go.
  std::unique_lock store = deployer_->LockStore();
  Status s = registry_->DeleteEnvironment(name);
  if (!s.ok()) return s;
  Status removed_code = RemoveTree(data_dir_ + "/code/" + std::string(name));
  std::vector<std::shared_ptr<ServiceState>> removed;
  {
    std::unique_lock lock(envs_mu_);
    auto it = envs_.find(name);
    if (it != envs_.end()) {
      for (auto& [_, svc] : it->second.services) removed.push_back(svc);
      envs_.erase(it);
    }
  }
  Deferred d;
  for (auto& svc : removed) {
    std::lock_guard lock(svc->mu);
    svc->removed = true;
    FailWaitersLocked(*svc, Status(Code::kNotFound, "environment " + std::string(name) + " was deleted"), &d);
  }
  store.unlock();
  for (auto& [done, result] : d.calls) done(std::move(result));
  Wake();  // the supervisor stops their instances
  return removed_code;
}

Status Host::Impl::ListServices(std::string_view env, std::vector<ServiceInfo>* out) {
  out->clear();
  std::vector<std::shared_ptr<ServiceState>> list;
  {
    std::shared_lock lock(envs_mu_);
    auto it = envs_.find(env);
    if (it == envs_.end()) return Status(Code::kNotFound, "environment " + std::string(env) + " not found");
    for (auto& [_, svc] : it->second.services) list.push_back(svc);
  }
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    out->push_back(svc->info);
  }
  std::sort(out->begin(), out->end(), [](const ServiceInfo& a, const ServiceInfo& b) { return a.name < b.name; });
  return Status::Ok();
}

Status Host::Impl::ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out) {
  out->clear();
  std::vector<std::shared_ptr<ServiceState>> list;
  {
    std::shared_lock lock(envs_mu_);
    for (auto& svc : services_) {
      if ((env.empty() || svc->env == env) && (service.empty() || svc->name == service)) list.push_back(svc);
    }
  }
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    if (svc->removed) continue;
    if (svc->env == kAdminEnv && svc->name == kAdminService) {
      InstanceInfo info;
      info.instance_id = "builtin";
      info.env = svc->env;
      info.service = svc->name;
      info.version = svc->info.live_version;
      info.pid = getpid();
      info.state = "builtin";
      info.calls_in_flight = admin_ ? admin_->in_flight.load() : 0;
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
      info.state = StateName(inst->state);
      info.calls_in_flight = inst->in_flight.load(std::memory_order_relaxed);
      info.started_at = inst->started_at;
      info.address = inst->address();
      out->push_back(std::move(info));
    }
  }
  return Status::Ok();
}

Status Host::Impl::CheckService(std::string_view env, std::string_view service) {
  return FindService(env, service) ? Status::Ok()
                                   : Status(Code::kNotFound, "service " + Url(env, service) + " not found");
}

std::shared_ptr<ServiceState> Host::Impl::FindService(std::string_view env, std::string_view service) {
  std::shared_lock lock(envs_mu_);
  auto e = envs_.find(env);
  if (e == envs_.end()) return nullptr;
  auto s = e->second.services.find(service);
  return s == e->second.services.end() ? nullptr : s->second;
}

// ---------------------------------------------------------------------------
// Routing (gateway threads).

void Host::Impl::Route(const RouteRequest& req, std::function<void(RouteResult)> done) {
  if (!EndsWith(req.env, kInternalEnvSuffix)) {
    done({InvalidArgument("cannot route to environment " + std::string(req.env)), nullptr});
    return;
  }
  std::shared_ptr<ServiceState> svc;
  {
    std::shared_lock lock(envs_mu_);
    auto e = envs_.find(req.env);
    if (e == envs_.end()) {
      lock.unlock();
      done({Status(Code::kNotFound, "environment " + std::string(req.env) + " not found"), nullptr});
      return;
    }
    auto s = e->second.services.find(req.service);
    if (s != e->second.services.end()) svc = s->second;
  }
  if (!svc) {
    done({Status(Code::kNotFound, "service " + Url(req.env, req.service) + " not found"), nullptr});
    return;
  }
  if (req.env == kAdminEnv && req.service == kAdminService) {
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
      result.status = Status(Code::kNotFound, "service " + Url(req.env, req.service) + " is not live");
    } else if (svc->info.is_private && req.src_env.empty()) {
      result.status = Status(Code::kPermissionDenied,
                             "service " + Url(req.env, req.service) + " is private: it can only be called "
                             "from inside Lever");
    } else if (auto inst = PickLocked(*svc, req.resource)) {
      result.backend = std::move(inst);
    } else if (!svc->config_status.ok()) {
      result.status = Status(Code::kUnavailable, "cannot start " + Url(req.env, req.service) + ": " +
                                                     svc->config_status.message());
    } else if (svc->waiters.size() >= options_.max_waiting_calls) {
      result.status = ResourceExhausted("too many calls waiting for " + Url(req.env, req.service) +
                                        " to start (" + std::to_string(options_.max_waiting_calls) + ")");
    } else {
      // A suspect instance is checked by the supervisor within a moment: the
      // call waits for that verdict rather than starting a new instance.
      if (CountLocked(*svc, true, true) == 0 && !HasSuspectLocked(*svc) &&
          CountLocked(*svc, false, false) < options_.max_instances_per_service) {
        StartLocked(*svc);
      }
      svc->waiters.push_back({std::string(req.resource), Clock::now() + options_.cold_start_wait, std::move(done)});
      Wake();
      return;
    }
  }
  done(std::move(result));
}

std::shared_ptr<Instance> Host::Impl::PickLocked(ServiceState& svc, std::string_view resource) {
  thread_local std::vector<PlacementCandidate> candidates;
  thread_local std::vector<Instance*> ready;
  candidates.clear();
  ready.clear();
  size_t starting = 0;
  for (auto& inst : svc.instances) {
    if (inst->version != svc.info.live_version) continue;
    if (inst->state == State::kStarting) ++starting;
    // A connection the gateway saw fail makes the instance suspect until the
    // supervisor has checked it: the next call must not go to a crashed one.
    if (inst->state != State::kReady || !inst->alive() || inst->check_requested.load(std::memory_order_relaxed)) {
      continue;
    }
    candidates.push_back({inst->placement_key, inst->in_flight.load(std::memory_order_relaxed)});
    ready.push_back(inst.get());
  }
  if (ready.empty()) return nullptr;
  size_t i = placement_->Pick(candidates, resource);
  Instance* chosen = ready[std::min(i, ready.size() - 1)];
  chosen->Touch();  // not idle between Route() and the gateway's OnCallStart()
  if (placement_->WantMore(candidates, starting, svc.config.max_instance_load) &&
      svc.instances.size() < options_.max_instances_per_service) {
    StartLocked(svc);
  }
  for (auto& inst : svc.instances) {
    if (inst.get() == chosen) return inst;
  }
  return nullptr;
}

bool Host::Impl::HasSuspectLocked(const ServiceState& svc) const {
  for (const auto& inst : svc.instances) {
    if (inst->version == svc.info.live_version && inst->state == State::kReady &&
        inst->check_requested.load(std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

size_t Host::Impl::CountLocked(const ServiceState& svc, bool live_only, bool starting_only) const {
  size_t n = 0;
  for (const auto& inst : svc.instances) {
    if (live_only && (inst->version != svc.info.live_version || inst->state == State::kStopping)) continue;
    if (starting_only && inst->state != State::kStarting) continue;
    ++n;
  }
  return n;
}

void Host::Impl::StartLocked(ServiceState& svc) {
  std::string id = RandomId(32);
  auto inst = std::make_shared<Instance>(id, svc.env, svc.name, svc.info.live_version,
                                         run_dir_ + "/" + id + ".sock", wakeup_);
  inst->config = svc.config;
  inst->code_dir = svc.code_dir;
  inst->owner = svc.weak_from_this();
  svc.instances.push_back(inst);
  {
    std::lock_guard lock(queue_mu_);
    to_start_.emplace_back(svc.shared_from_this(), inst);
  }
  Wake();
}

void Host::Impl::StopLocked(ServiceState& svc, Instance& inst, std::string reason, Deferred* d) {
  if (inst.state == State::kStopping) return;
  inst.state = State::kStopping;
  inst.alive_.store(false, std::memory_order_release);
  inst.stop_intended = true;
  inst.kill_deadline = Clock::now() + options_.stop_grace;
  if (inst.proc) inst.proc->Signal(SIGTERM);
  next_wake_ = std::min(next_wake_, inst.kill_deadline);
  Note(d, svc, inst.version, inst.instance_id, "[host] stopping instance " + inst.instance_id + ": " + reason);
}

void Host::Impl::FailWaitersLocked(ServiceState& svc, const Status& status, Deferred* d) {
  for (Waiter& w : svc.waiters) d->calls.emplace_back(std::move(w.done), RouteResult{status, nullptr});
  svc.waiters.clear();
}

// ---------------------------------------------------------------------------
// Supervisor thread.

void Host::Impl::Run() {
  epoll_event events[64];
  while (!stopping_.load()) {
    auto now = Clock::now();
    int timeout_ms = 60000;
    if (next_wake_ != Clock::time_point{}) {
      auto delta = std::chrono::duration_cast<milliseconds>(next_wake_ - now).count() + 1;
      timeout_ms = static_cast<int>(std::clamp<int64_t>(delta, 0, 60000));
    }
    int n = epoll_wait(epoll_fd_, events, 64, timeout_ms);
    // Output alone needs no pass over the services; everything else does.
    bool need_tick = n <= 0;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wakeup_->fd) {
        uint64_t v;
        (void)!read(fd, &v, sizeof v);
        need_tick = true;
        continue;
      }
      if (fd == inotify_fd_) {
        HandleInotify();
        need_tick = true;
        continue;
      }
      auto it = fds_.find(fd);
      if (it == fds_.end()) continue;
      std::shared_ptr<Instance> inst = it->second.inst;
      int kind = it->second.kind;
      if (kind == 0) {
        HandleExit(inst);
        need_tick = true;
      } else {
        ReadOutput(*inst, kind == 2, false);
      }
    }
    if (stopping_.load()) break;
    if (!need_tick && Clock::now() < next_wake_) continue;
    StartQueued();
    Tick();
  }
  StopAll();
}

void Host::Impl::Watch(int fd, const std::shared_ptr<Instance>& inst, int kind) {
  if (fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0) fds_[fd] = {inst, kind};
}

void Host::Impl::Unwatch(int fd) {
  if (fd < 0) return;
  if (fds_.erase(fd)) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void Host::Impl::StartQueued() {
  std::vector<std::pair<std::shared_ptr<ServiceState>, std::shared_ptr<Instance>>> queue;
  {
    std::lock_guard lock(queue_mu_);
    queue.swap(to_start_);
  }
  for (auto& [svc, inst] : queue) Spawn(svc, inst);
}

void Host::Impl::Spawn(const std::shared_ptr<ServiceState>& svc, const std::shared_ptr<Instance>& inst) {
  Deferred d;
  {
    std::lock_guard lock(svc->mu);
    if (svc->removed || inst->state != State::kStarting) {
      std::erase(svc->instances, inst);
      return;
    }
  }
  Status s;
  std::string gateway;
  if (options_.ensure_internal_listener) {
    auto it = listeners_.find(inst->env);
    if (it != listeners_.end()) {
      gateway = it->second;
    } else {
      std::string path;
      s = options_.ensure_internal_listener(inst->env, &path);
      if (s.ok()) {
        listeners_[inst->env] = path;
        gateway = path;
      }
    }
  }
  std::unique_ptr<RunningInstance> proc;
  if (s.ok()) {
    InstanceSpec spec;
    spec.env = inst->env;
    spec.service = inst->service;
    spec.version = inst->version;
    spec.instance_id = inst->instance_id;
    spec.code_dir = inst->code_dir;
    spec.config = inst->config;
    spec.listen_path = inst->socket_path;
    if (!gateway.empty()) spec.internal_gateway = "unix:" + gateway;
    s = runtime_->Start(spec, &proc);
  }
  {
  std::lock_guard lock(svc->mu);
  if (!s.ok()) {
    std::erase(svc->instances, inst);
    Note(&d, *svc, inst->version, inst->instance_id, "[host] cannot start an instance: " + s.message());
    if (CountLocked(*svc, true, false) == 0) {
      FailWaitersLocked(*svc, Status(Code::kUnavailable, "cannot start " + Url(svc->env, svc->name) + " v" +
                                                             std::to_string(inst->version) + ": " + s.message()),
                        &d);
    }
    svc->crash_streak++;
    svc->restart_after = Clock::now() + RestartDelay(svc->crash_streak);
  } else {
    inst->proc = std::move(proc);
    inst->pid = inst->proc->pid();
    inst->spawned = true;
    inst->started_at = std::chrono::system_clock::now();
    auto now = Clock::now();
    inst->start_deadline = now + options_.start_timeout;
    inst->backoff = kFirstBackoff;
    inst->next_attempt = now + kFirstBackoff;
    inst->out_open = inst->proc->stdout_fd() >= 0;
    inst->err_open = inst->proc->stderr_fd() >= 0;
    Watch(inst->proc->exit_fd(), inst, 0);
    Watch(inst->proc->stdout_fd(), inst, 1);
    Watch(inst->proc->stderr_fd(), inst, 2);
    std::string sock_name = inst->socket_path.substr(run_dir_.size() + 1);
    by_socket_name_[sock_name] = inst;
  }
  }
  Flush(&d);
}

void Host::Impl::HandleInotify() {
  alignas(inotify_event) char buf[4096];
  while (true) {
    ssize_t n = read(inotify_fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (ev->len > 0) {
        auto it = by_socket_name_.find(std::string_view(ev->name));
        if (it != by_socket_name_.end()) it->second->next_attempt = Clock::now();
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
}

void Host::Impl::ReadOutput(Instance& inst, bool is_err, bool drain) {
  if (!inst.proc) return;
  int fd = is_err ? inst.proc->stderr_fd() : inst.proc->stdout_fd();
  bool& open_flag = is_err ? inst.err_open : inst.out_open;
  if (fd < 0 || !open_flag) return;
  std::string& partial = is_err ? inst.err_partial : inst.out_partial;
  char buf[16384];
  for (int rounds = 0; drain || rounds < 4; ++rounds) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        open_flag = false;
        Unwatch(fd);
        if (!partial.empty()) {
          EmitLine(inst, is_err, partial);
          partial.clear();
        }
      }
      return;
    }
    partial.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    while (true) {
      size_t nl = partial.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line(partial.data() + start, nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      EmitLine(inst, is_err, line);
      start = nl + 1;
    }
    partial.erase(0, start);
    if (partial.size() > kMaxLineBytes) {
      EmitLine(inst, is_err, partial);
      partial.clear();
    }
  }
}

void Host::Impl::EmitLine(Instance& inst, bool is_err, std::string_view line) {
  LogLine l;
  l.time = std::chrono::system_clock::now();
  l.version = inst.version;
  l.instance_id = inst.instance_id;
  l.stream = is_err ? "stderr" : "stdout";
  std::string text = logs_.Append(inst.env, inst.service, std::move(l), line);
  options_.log_sink(text);
  if (!line.empty()) inst.last_line = std::string(line.substr(0, 512));
}

void Host::Impl::HandleExit(const std::shared_ptr<Instance>& inst) {
  int ws = 0;
  if (!inst->proc || !inst->proc->Reap(&ws)) return;
  ReadOutput(*inst, false, true);
  ReadOutput(*inst, true, true);
  Unwatch(inst->proc->stdout_fd());
  Unwatch(inst->proc->stderr_fd());
  Unwatch(inst->proc->exit_fd());
  inst->proc->CloseOutput();
  inst->proc->Cleanup();
  unlink(inst->socket_path.c_str());
  by_socket_name_.erase(inst->socket_path.substr(run_dir_.size() + 1));

  std::shared_ptr<ServiceState> svc = inst->owner.lock();
  Deferred d;
  if (svc) {
    std::lock_guard lock(svc->mu);
    State was = inst->state;
    inst->alive_.store(false, std::memory_order_release);
    std::erase(svc->instances, inst);
    std::string how = DescribeExit(ws);
    if (inst->stop_intended) {
      Note(&d, *svc, inst->version, inst->instance_id, "[host] instance " + inst->instance_id + " stopped: it " + how);
    } else {
      std::string last = inst->last_line.empty() ? "" : "; last output: " + inst->last_line;
      Note(&d, *svc, inst->version, inst->instance_id, "[host] instance " + inst->instance_id + " " + how + last);
      if (inst->version == svc->info.live_version) {
        svc->crash_streak++;
        svc->restart_after = Clock::now() + RestartDelay(svc->crash_streak);
      }
      if (was == State::kStarting && CountLocked(*svc, true, false) == 0) {
        FailWaitersLocked(*svc, Status(Code::kUnavailable,
                                       Url(svc->env, svc->name) + " v" + std::to_string(inst->version) +
                                           " failed to start: the instance " + how + last),
                          &d);
      }
    }
  }
  inst->proc.reset();
  Flush(&d);
}

void Host::Impl::Tick() {
  std::vector<std::shared_ptr<ServiceState>> list;
  {
    std::shared_lock lock(envs_mu_);
    list = services_;
  }
  auto now = Clock::now();
  next_wake_ = now + std::chrono::seconds(60);
  Deferred d;
  bool prune = false;
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    TickService(*svc, now, &d);
    if (svc->removed && svc->instances.empty()) prune = true;
  }
  if (prune) {
    std::unique_lock lock(envs_mu_);
    std::erase_if(services_, [](const std::shared_ptr<ServiceState>& s) {
      std::lock_guard l(s->mu);
      return s->removed && s->instances.empty();
    });
  }
  Flush(&d);
}

void Host::Impl::TickService(ServiceState& svc, Clock::time_point now, Deferred* d) {
  auto wake_at = [&](Clock::time_point t) { next_wake_ = std::min(next_wake_, t); };
  const int64_t live = svc.info.live_version;
  size_t live_ready = 0;
  for (auto& inst : svc.instances) {
    if (inst->version == live && inst->state == State::kReady) ++live_ready;
  }
  for (size_t i = 0; i < svc.instances.size(); ++i) {
    Instance& inst = *svc.instances[i];
    if (!inst.spawned) continue;
    bool is_live = inst.version == live && !svc.removed;
    switch (inst.state) {
      case State::kStarting: {
        if (svc.removed) {
          StopLocked(svc, inst, "its service was removed", d);
          break;
        }
        if (now >= inst.next_attempt) {
          if (TryConnect(inst.socket_path)) {
            inst.state = State::kReady;
            inst.alive_.store(true, std::memory_order_release);
            inst.Touch();
            svc.crash_streak = 0;
            if (is_live) ++live_ready;
            wake_at(now);  // evaluate it as ready (idle deadline) on the next pass
            break;
          }
          inst.backoff = std::min<Clock::duration>(inst.backoff * 2, kMaxBackoff);
          inst.next_attempt = now + inst.backoff;
        }
        if (now >= inst.start_deadline) {
          auto secs = std::chrono::duration_cast<milliseconds>(options_.start_timeout).count() / 1000.0;
          char buf[64];
          std::snprintf(buf, sizeof buf, "%g", secs);
          std::string why = "no connection accepted on " + inst.socket_path + " within " + buf + " s";
          StopLocked(svc, inst, why, d);
          inst.proc->Signal(SIGKILL);
          inst.killed = true;
          if (CountLocked(svc, true, false) == 0) {
            std::string last = inst.last_line.empty() ? "" : "; last output: " + inst.last_line;
            FailWaitersLocked(svc, Status(Code::kUnavailable, Url(svc.env, svc.name) + " v" +
                                                                  std::to_string(inst.version) +
                                                                  " failed to start: " + why + last),
                              d);
          }
          break;
        }
        wake_at(std::min(inst.next_attempt, inst.start_deadline));
        break;
      }
      case State::kReady: {
        if (svc.removed) {
          StopLocked(svc, inst, "its service was removed", d);
          break;
        }
        if (inst.check_requested.load()) {
          if (!TryConnect(inst.socket_path)) {
            StopLocked(svc, inst, "its socket no longer accepts connections", d);
            inst.proc->Signal(SIGKILL);
            inst.killed = true;
            if (is_live) --live_ready;
            break;
          }
          inst.check_requested.store(false);
        }
        auto limit = is_live ? options_.idle_timeout : options_.retired_idle_timeout;
        if (inst.in_flight.load(std::memory_order_relaxed) > 0) {
          wake_at(now + limit);  // look again once it could have become idle
          break;
        }
        auto last = FromNs(inst.last_active_ns.load(std::memory_order_relaxed));
        bool needed = is_live && live_ready <= static_cast<size_t>(svc.config.min_instances);
        if (now - last >= limit && !needed) {
          StopLocked(svc, inst, is_live ? "idle" : "its version is no longer live", d);
          if (is_live) --live_ready;
        } else if (!needed) {
          wake_at(last + limit);
        }
        break;
      }
      case State::kStopping:
        if (!inst.killed && inst.proc) {
          if (now >= inst.kill_deadline) {
            inst.proc->Signal(SIGKILL);
            inst.killed = true;
          } else {
            wake_at(inst.kill_deadline);
          }
        }
        break;
    }
  }
  if (svc.removed) {
    FailWaitersLocked(svc, Status(Code::kNotFound, "service " + Url(svc.env, svc.name) + " was removed"), d);
    return;
  }
  // Cold-start queue: release to ready instances, expire, or start one.
  if (!svc.waiters.empty()) {
    while (!svc.waiters.empty()) {
      std::shared_ptr<Instance> inst = PickLocked(svc, svc.waiters.front().resource);
      if (!inst) break;
      d->calls.emplace_back(std::move(svc.waiters.front().done), RouteResult{Status::Ok(), std::move(inst)});
      svc.waiters.pop_front();
    }
    while (!svc.waiters.empty() && svc.waiters.front().deadline <= now) {
      auto secs = std::chrono::duration_cast<milliseconds>(options_.cold_start_wait).count() / 1000.0;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%g", secs);
      d->calls.emplace_back(std::move(svc.waiters.front().done),
                            RouteResult{Status(Code::kDeadlineExceeded,
                                               Url(svc.env, svc.name) + " did not start within " + buf + " s"),
                                        nullptr});
      svc.waiters.pop_front();
    }
    if (!svc.waiters.empty()) {
      wake_at(svc.waiters.front().deadline);
      if (CountLocked(svc, true, true) == 0 && svc.instances.size() < options_.max_instances_per_service &&
          svc.config_status.ok()) {
        StartLocked(svc);
      }
    }
  }
  // minInstances: started on deploy and on host start, and kept.
  if (live > 0 && svc.config_status.ok() && svc.config.min_instances > 0 &&
      !(svc.env == kAdminEnv && svc.name == kAdminService)) {
    size_t active = CountLocked(svc, true, false);
    if (active < static_cast<size_t>(svc.config.min_instances)) {
      if (now < svc.restart_after) {
        wake_at(svc.restart_after);
      } else {
        while (active < static_cast<size_t>(svc.config.min_instances) &&
               svc.instances.size() < options_.max_instances_per_service) {
          StartLocked(svc);
          ++active;
        }
      }
    }
  }
}

void Host::Impl::Flush(Deferred* d) {
  for (auto& n : d->notes) {
    LogLine l;
    l.time = std::chrono::system_clock::now();
    l.version = n.version;
    l.instance_id = n.instance_id;
    l.stream = "host";
    options_.log_sink(logs_.Append(n.env, n.service, std::move(l), n.text));
  }
  d->notes.clear();
  for (auto& [done, result] : d->calls) done(std::move(result));
  d->calls.clear();
}

void Host::Impl::Shutdown() {
  if (!supervisor_.joinable()) return;
  stopping_.store(true);
  Wake();
  supervisor_.join();  // it stops every instance on its way out
  logs_.WakeAll();
}

// On the supervisor thread, as its last act: instances die with the thread
// that forked them (PR_SET_PDEATHSIG), so the graceful stop happens here.
void Host::Impl::StopAll() {
  std::vector<std::shared_ptr<ServiceState>> list;
  {
    std::shared_lock lock(envs_mu_);
    list = services_;
  }
  Deferred d;
  std::vector<std::shared_ptr<Instance>> running;
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    FailWaitersLocked(*svc, Status(Code::kUnavailable, "leverd is shutting down"), &d);
    for (auto& inst : svc->instances) {
      if (inst->proc) {
        inst->alive_.store(false);
        inst->state = State::kStopping;
        inst->proc->Signal(SIGTERM);
        running.push_back(inst);
      }
    }
    svc->instances.clear();
  }
  for (auto& [done, result] : d.calls) done(std::move(result));
  auto deadline = Clock::now() + options_.stop_grace;
  for (auto& inst : running) {
    int ws;
    while (!inst->proc->Reap(&ws)) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        inst->proc->Signal(SIGKILL);
        break;
      }
      pollfd p{inst->proc->exit_fd(), POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    }
    unlink(inst->socket_path.c_str());
    inst->proc.reset();  // reaps (after SIGKILL) and removes its cgroups
  }
}

Host::Impl::~Impl() {
  Shutdown();
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (inotify_fd_ >= 0) close(inotify_fd_);
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
  impl_->Route(request, std::move(done));
}

Status Host::BeginDeploy(std::string_view env, std::unique_ptr<DeploySession>* out) {
  return impl_->BeginDeploy(env, out);
}

Status Host::CreateEnvironment(std::string_view name, std::string_view description) {
  return impl_->CreateEnvironment(name, description);
}

Status Host::ListEnvironments(std::vector<EnvironmentInfo>* out) { return registry_->ListEnvironments(out); }

Status Host::DeleteEnvironment(std::string_view name) { return impl_->DeleteEnvironment(name); }

Status Host::ListServices(std::string_view env, std::vector<ServiceInfo>* out) {
  return impl_->ListServices(env, out);
}

Status Host::ListInstances(std::string_view env, std::string_view service, std::vector<InstanceInfo>* out) {
  return impl_->ListInstances(env, service, out);
}

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
