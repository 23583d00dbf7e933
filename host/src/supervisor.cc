#include "supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util.h"

namespace lever::host {
namespace {

using std::chrono::milliseconds;

std::string DescribeExit(int ws) {
  if (WIFEXITED(ws)) return "exited with status " + std::to_string(WEXITSTATUS(ws));
  if (WIFSIGNALED(ws)) {
    int sig = WTERMSIG(ws);
    const char* name = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited";
}

// Delay before minInstances restarts a crashing service: 100 ms doubling to 30 s.
SteadyDuration RestartDelay(int crash_streak) {
  return std::min<SteadyDuration>(milliseconds(100 << std::min(crash_streak, 9)), std::chrono::seconds(30));
}

constexpr size_t kMaxLineBytes = 16 * 1024;
constexpr auto kFirstBackoff = milliseconds(1);
constexpr auto kMaxBackoff = milliseconds(100);

}  // namespace

std::string Seconds(SteadyDuration d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", std::chrono::duration_cast<milliseconds>(d).count() / 1000.0);
  return buf;
}

Supervisor::Supervisor(SupervisorOptions options, Catalog& catalog, Routing& routing, LogStore& logs,
                       RuntimePtr runtime, ClockPtr clock)
    : options_(std::move(options)),
      catalog_(catalog),
      routing_(routing),
      logs_(logs),
      runtime_(std::move(runtime)),
      clock_(std::move(clock)) {}

Supervisor::~Supervisor() {
  Shutdown();
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (inotify_fd_ >= 0) close(inotify_fd_);
}

Status Supervisor::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  timer_ = clock_->NewTimer();
  if (epoll_fd_ < 0 || inotify_fd_ < 0 || wakeup_->fd < 0 || !timer_) {
    return ErrnoStatus("epoll/inotify/eventfd/timer", errno);
  }
  if (inotify_add_watch(inotify_fd_, options_.run_dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    return ErrnoStatus("inotify " + options_.run_dir, errno);
  }
  for (int fd : {wakeup_->fd, inotify_fd_, timer_->fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
  next_wake_ = clock_->Now();  // a first pass starts minInstances
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void Supervisor::Shutdown() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  Wake();
  thread_.join();  // it stops every instance on its way out
}

void Supervisor::StartLocked(ServiceState& svc) {
  std::string id = RandomId(32);
  auto inst = std::make_shared<Instance>(id, svc.env, svc.name, svc.info.live_version,
                                         options_.run_dir + "/" + id + ".sock", wakeup_, clock_);
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

void Supervisor::Flush(Deferred* d) {
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

// ---------------------------------------------------------------------------
// The loop.

void Supervisor::Run() {
  epoll_event events[64];
  while (!stopping_.load()) {
    timer_->ArmAt(next_wake_);
    int n = epoll_wait(epoll_fd_, events, 64, -1);
    // Output alone needs no pass over the services; everything else does.
    bool need_tick = false;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wakeup_->fd) {
        uint64_t v;
        (void)!read(fd, &v, sizeof v);
        need_tick = true;
        continue;
      }
      if (fd == timer_->fd()) {
        timer_->Clear();
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
    if (!need_tick && clock_->Now() < next_wake_) continue;
    StartQueued();
    Tick();
  }
  StopAll();
}

void Supervisor::Watch(int fd, const std::shared_ptr<Instance>& inst, int kind) {
  if (fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0) fds_[fd] = {inst, kind};
}

void Supervisor::Unwatch(int fd) {
  if (fd < 0) return;
  if (fds_.erase(fd)) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void Supervisor::StartQueued() {
  std::vector<std::pair<ServicePtr, std::shared_ptr<Instance>>> queue;
  {
    std::lock_guard lock(queue_mu_);
    queue.swap(to_start_);
  }
  for (auto& [svc, inst] : queue) Spawn(svc, inst);
}

// ---------------------------------------------------------------------------
// Processes.

void Supervisor::Spawn(const ServicePtr& svc, const std::shared_ptr<Instance>& inst) {
  Deferred d;
  {
    std::lock_guard lock(svc->mu);
    if (svc->removed || inst->state != InstanceState::kStarting) {
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
      d.AddNote(*svc, inst->version, inst->instance_id, "[host] cannot start an instance: " + s.message());
      if (CountInstancesLocked(*svc, true, false) == 0) {
        routing_.FailWaitersLocked(*svc,
                                   Status(Code::kUnavailable, "cannot start " + ServiceUrl(svc->env, svc->name) +
                                                                  " v" + std::to_string(inst->version) + ": " +
                                                                  s.message()),
                                   &d);
      }
      svc->crash_streak++;
      svc->restart_after = clock_->Now() + RestartDelay(svc->crash_streak);
    } else {
      inst->proc = std::move(proc);
      inst->pid = inst->proc->pid();
      inst->spawned = true;
      inst->started_at = std::chrono::system_clock::now();
      SteadyTime now = clock_->Now();
      inst->start_deadline = now + options_.lifecycle.start_timeout;
      inst->backoff = kFirstBackoff;
      inst->next_attempt = now + kFirstBackoff;
      inst->out_open = inst->proc->stdout_fd() >= 0;
      inst->err_open = inst->proc->stderr_fd() >= 0;
      Watch(inst->proc->exit_fd(), inst, 0);
      Watch(inst->proc->stdout_fd(), inst, 1);
      Watch(inst->proc->stderr_fd(), inst, 2);
      by_socket_name_[inst->socket_path.substr(options_.run_dir.size() + 1)] = inst;
    }
  }
  Flush(&d);
}

void Supervisor::HandleInotify() {
  alignas(inotify_event) char buf[4096];
  while (true) {
    ssize_t n = read(inotify_fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (ev->len > 0) {
        auto it = by_socket_name_.find(std::string_view(ev->name));
        if (it != by_socket_name_.end()) it->second->next_attempt = clock_->Now();
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
}

void Supervisor::ReadOutput(Instance& inst, bool is_err, bool drain) {
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

void Supervisor::EmitLine(Instance& inst, bool is_err, std::string_view line) {
  LogLine l;
  l.time = std::chrono::system_clock::now();
  l.version = inst.version;
  l.instance_id = inst.instance_id;
  l.stream = is_err ? "stderr" : "stdout";
  std::string text = logs_.Append(inst.env, inst.service, std::move(l), line);
  options_.log_sink(text);
  if (!line.empty()) inst.last_line = std::string(line.substr(0, 512));
}

void Supervisor::HandleExit(const std::shared_ptr<Instance>& inst) {
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
  by_socket_name_.erase(inst->socket_path.substr(options_.run_dir.size() + 1));

  ServicePtr svc = inst->owner.lock();
  Deferred d;
  if (svc) {
    std::lock_guard lock(svc->mu);
    InstanceState was = inst->state;
    inst->alive_.store(false, std::memory_order_release);
    std::erase(svc->instances, inst);
    std::string how = DescribeExit(ws);
    if (inst->stop_intended) {
      d.AddNote(*svc, inst->version, inst->instance_id, "[host] instance " + inst->instance_id + " stopped: it " + how);
    } else {
      std::string last = inst->last_line.empty() ? "" : "; last output: " + inst->last_line;
      d.AddNote(*svc, inst->version, inst->instance_id, "[host] instance " + inst->instance_id + " " + how + last);
      if (inst->version == svc->info.live_version) {
        svc->crash_streak++;
        svc->restart_after = clock_->Now() + RestartDelay(svc->crash_streak);
      }
      if (was == InstanceState::kStarting && CountInstancesLocked(*svc, true, false) == 0) {
        routing_.FailWaitersLocked(*svc,
                                   Status(Code::kUnavailable, ServiceUrl(svc->env, svc->name) + " v" +
                                                                  std::to_string(inst->version) +
                                                                  " failed to start: the instance " + how + last),
                                   &d);
      }
    }
  }
  inst->proc.reset();
  Flush(&d);
}

// ---------------------------------------------------------------------------
// Passes: facts (probes), then the lifecycle's plan, carried out.

void Supervisor::Tick() {
  std::vector<ServicePtr> list = catalog_.Services();
  SteadyTime now = clock_->Now();
  next_wake_ = now + std::chrono::seconds(60);
  Deferred d;
  bool prune = false;
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    if (svc->is_admin()) continue;
    TickService(*svc, now, &d);
    if (svc->removed && svc->instances.empty()) prune = true;
  }
  if (prune) catalog_.Prune();
  Flush(&d);
}

void Supervisor::TickService(ServiceState& svc, SteadyTime now, Deferred* d) {
  // Facts first: which starting instances accept connections now, and
  // whether the suspect ones are dead.
  std::vector<bool> unhealthy(svc.instances.size(), false);
  for (size_t i = 0; i < svc.instances.size(); ++i) {
    Instance& inst = *svc.instances[i];
    if (!inst.spawned || svc.removed) continue;
    if (inst.state == InstanceState::kStarting && now >= inst.next_attempt) {
      if (ProbeSocket(inst.socket_path) != Probe::kDead) {
        inst.state = InstanceState::kReady;
        inst.alive_.store(true, std::memory_order_release);
        inst.Touch();
        svc.crash_streak = 0;
      } else {
        inst.backoff = std::min<SteadyDuration>(inst.backoff * 2, kMaxBackoff);
        inst.next_attempt = now + inst.backoff;
      }
    } else if (inst.state == InstanceState::kReady && inst.check_requested.load()) {
      if (ProbeSocket(inst.socket_path) == Probe::kDead) {
        unhealthy[i] = true;
      } else {
        inst.check_requested.store(false);
      }
    }
  }
  if (!svc.removed) routing_.ReleaseWaitersLocked(svc, now, d);

  ServiceView view;
  view.removed = svc.removed;
  view.live_version = svc.info.live_version;
  view.config_ok = svc.config_status.ok();
  view.min_instances = svc.config.min_instances;
  view.waiters = svc.waiters.size();
  if (!svc.waiters.empty()) view.first_waiter_deadline = svc.waiters.front().deadline;
  view.restart_after = svc.restart_after;
  view.instances.reserve(svc.instances.size());
  for (size_t i = 0; i < svc.instances.size(); ++i) {
    const Instance& inst = *svc.instances[i];
    InstanceView v;
    v.version = inst.version;
    v.state = inst.state;
    v.spawned = inst.spawned;
    v.unhealthy = unhealthy[i];
    v.in_flight = inst.in_flight();
    v.last_active = inst.last_active();
    v.start_deadline = inst.start_deadline;
    v.kill_deadline = inst.kill_deadline;
    v.killed = inst.killed;
    view.instances.push_back(v);
    if (inst.state == InstanceState::kStarting && inst.spawned) WakeAt(inst.next_attempt);
  }

  Plan plan = Decide(view, options_.lifecycle, now);

  // Carry it out (indices refer to svc.instances as viewed: nothing was
  // added or removed since).
  std::vector<std::shared_ptr<Instance>> snapshot = svc.instances;
  for (const Plan::Stop& stop : plan.stops) {
    Instance& inst = *snapshot[stop.instance];
    std::string reason = stop.reason;
    if (stop.start_timeout) {
      reason = "no connection accepted on " + inst.socket_path + " within " +
               Seconds(options_.lifecycle.start_timeout) + " s";
    }
    StopLocked(svc, inst, reason, d);
    if (stop.kind == Plan::StopKind::kKill && inst.proc) {
      inst.proc->Signal(SIGKILL);
      inst.killed = true;
    }
    if (stop.fail_waiters) {
      std::string last = inst.last_line.empty() ? "" : "; last output: " + inst.last_line;
      routing_.FailWaitersLocked(svc,
                                 Status(Code::kUnavailable, ServiceUrl(svc.env, svc.name) + " v" +
                                                                std::to_string(inst.version) +
                                                                " failed to start: " + reason + last),
                                 d);
    }
  }
  for (size_t i : plan.kills) {
    Instance& inst = *snapshot[i];
    if (inst.proc) inst.proc->Signal(SIGKILL);
    inst.killed = true;
  }
  if (plan.removed) {
    routing_.FailWaitersLocked(svc, Status(Code::kNotFound, "service " + ServiceUrl(svc.env, svc.name) + " was removed"),
                               d);
  }
  for (size_t i = 0; i < plan.start; ++i) StartLocked(svc);
  WakeAt(plan.wake);
}

void Supervisor::StopLocked(ServiceState& svc, Instance& inst, const std::string& reason, Deferred* d) {
  if (inst.state == InstanceState::kStopping) return;
  inst.state = InstanceState::kStopping;
  inst.alive_.store(false, std::memory_order_release);
  inst.stop_intended = true;
  inst.kill_deadline = clock_->Now() + options_.lifecycle.stop_grace;
  if (inst.proc) inst.proc->Signal(SIGTERM);
  WakeAt(inst.kill_deadline);
  d->AddNote(svc, inst.version, inst.instance_id, "[host] stopping instance " + inst.instance_id + ": " + reason);
}

// On the supervisor thread, as its last act: instances die with the thread
// that forked them (PR_SET_PDEATHSIG), so the graceful stop happens here.
void Supervisor::StopAll() {
  std::vector<ServicePtr> list = catalog_.Services();
  Deferred d;
  std::vector<std::shared_ptr<Instance>> running;
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    routing_.FailWaitersLocked(*svc, Status(Code::kUnavailable, "leverd is shutting down"), &d);
    for (auto& inst : svc->instances) {
      if (inst->proc) {
        inst->alive_.store(false);
        inst->state = InstanceState::kStopping;
        inst->proc->Signal(SIGTERM);
        running.push_back(inst);
      }
    }
    svc->instances.clear();
  }
  for (auto& [done, result] : d.calls) done(std::move(result));
  // The grace is real time: the processes get it whatever clock decides.
  auto deadline = std::chrono::steady_clock::now() + options_.lifecycle.stop_grace;
  for (auto& inst : running) {
    int ws;
    while (!inst->proc->Reap(&ws)) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()).count();
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

}  // namespace lever::host
