#include "supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "lever/client.h"
#include "resources_cluster.h"
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
constexpr int kProbesToDeath = 4;

// The HTTP/2 client preface and an empty SETTINGS frame.
constexpr char kH2Hello[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
constexpr size_t kFrameHeader = 9;

// Socket activation's readiness check: a connection to the socket leverd made
// (it connects at once; the kernel queues it until the instance accepts),
// carrying the HTTP/2 client preface. The instance serves once its first
// frame, SETTINGS, comes back. -1 if it cannot be made.
int OpenReadyProbe(const std::string& path) {
  sockaddr_un sa{};
  if (path.size() >= sizeof sa.sun_path) return -1;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      send(fd, kH2Hello, sizeof kH2Hello - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof kH2Hello - 1)) {
    close(fd);
    return -1;
  }
  return fd;
}

// A frame header of SETTINGS (not an ACK) on stream 0.
bool IsSettings(std::string_view h) {
  return h.size() == kFrameHeader && h[3] == 4 && (h[4] & 1) == 0 && h.substr(5) == std::string_view("\0\0\0\0", 4);
}

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
      clock_(std::move(clock)) {
  hook_guard_->self = this;
}

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
  {
    std::lock_guard lock(hook_guard_->mu);  // waits for a running completion
    hook_guard_->self = nullptr;
  }
  if (!thread_.joinable()) return;
  stopping_.store(true);
  Wake();
  thread_.join();  // it stops every instance on its way out
}

void Supervisor::StartLocked(ServiceState& svc, int64_t version) {
  bool rollout = version == svc.rollout.version && version != svc.info.live_version;
  const LeverConfig& config = rollout ? svc.rollout.config : svc.config;
  const std::string& code_dir = rollout ? svc.rollout.code_dir : svc.code_dir;
  // The id of what the runtime made ahead for this version (docker: a
  // container created ahead), if anything.
  std::string id = runtime_->ReservedInstanceId(svc.env, svc.name, version, config, code_dir);
  if (id.empty()) id = RandomId(32);
  auto inst = std::make_shared<Instance>(id, svc.env, svc.name, version, options_.run_dir + "/" + id + ".sock",
                                         wakeup_, clock_, options_.count_at_placement);
  inst->config = config;
  inst->code_dir = code_dir;
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
  for (auto& fn : d->after) fn();
  d->after.clear();
}

// ---------------------------------------------------------------------------
// NewResource / CloseResource.

void Supervisor::SendHookLocked(ServiceState& svc, const std::shared_ptr<ResourceLease>& lease, bool open,
                                Deferred* d) {
  lease->call_sent = true;
  Instance& owner = *lease->owner;
  if (!owner.hook_client) {
    ClientOptions co;
    co.force_host = owner.address();
    co.codec = wire::Codec::kProtoJson;  // what every runtime reads, the original's too
    owner.hook_client = std::make_shared<Client>(std::move(co));
  }
  // The original's form (reference §7.2): lever://<env>/<svc>//NewResource
  // with the resource name as the only argument.
  std::string url = "lever://" + svc.env + "/" + svc.name + "//" + (open ? "NewResource" : "CloseResource");
  CallOptions co;
  co.timeout = std::chrono::duration_cast<milliseconds>(options_.lifecycle.start_timeout);
  if (!lease->fencing_token().empty()) {
    co.metadata.emplace_back(std::string(kFencingTokenHeader), std::string(lease->fencing_token()));
  }
  d->after.push_back([client = owner.hook_client, url = std::move(url), co, lease, open, guard = hook_guard_,
                      weak = svc.weak_from_this()] {
    client->InvokeUrlAsync(url, Array{Value(lease->resource)}, co, [guard, weak, lease, open](Result r) {
      std::lock_guard lock(guard->mu);
      if (guard->self) guard->self->OnHookDone(weak, lease, open, r);
    });
  });
}

void Supervisor::OnHookDone(const std::weak_ptr<ServiceState>& weak, const std::shared_ptr<ResourceLease>& lease,
                            bool open, const Result& result) {
  ServicePtr svc = weak.lock();
  if (!svc) return;
  Deferred d;
  {
    std::lock_guard lock(svc->mu);
    const Instance& owner = *lease->owner;
    if (!result.ok() && !IsMissingMethod(result)) {
      std::string why = result.is_app_error() ? (result.value.is_string() ? result.value.as_string() : "an error")
                                              : result.status.ToString();
      d.AddNote(*svc, owner.version, owner.instance_id,
                std::string("[host] ") + (open ? "NewResource" : "CloseResource") + "(" + lease->resource +
                    ") on instance " + owner.instance_id + " failed: " + why);
    }
    if (open) {
      if (lease->state == ResourceLease::State::kOpening) lease->state = ResourceLease::State::kOpen;
    } else {
      auto it = svc->leases.find(lease->resource);
      if (it != svc->leases.end() && it->second == lease) {
        svc->leases.erase(it);
        if (lease->owner->resources > 0) --lease->owner->resources;
      }
      // In a cluster its key goes too: R's next call may take it anywhere.
      if (routing_.owners() && lease->claimed()) {
        routing_.owners()->Release(svc->env, svc->name, lease->resource, lease->token(), lease->session());
      }
    }
    routing_.ReleaseWaitersLocked(*svc, clock_->Now(), &d);
  }
  Flush(&d);
  Wake();  // a draining owner may be done now
}

void Supervisor::SendClaimLocked(ServiceState& svc, const std::shared_ptr<ResourceLease>& lease, Deferred* d) {
  d->after.push_back([owners = routing_.owners(), env = svc.env, name = svc.name, lease, guard = hook_guard_,
                      weak = svc.weak_from_this()] {
    owners->Claim(env, name, lease->resource, lease->owner->instance_id,
                  [guard, weak, lease](ResourceClaim r) {
                    std::lock_guard lock(guard->mu);
                    if (guard->self) guard->self->OnClaimDone(weak, lease, std::move(r));
                  });
  });
}

void Supervisor::OnClaimDone(const std::weak_ptr<ServiceState>& weak, const std::shared_ptr<ResourceLease>& lease,
                             ResourceClaim r) {
  ClusterResources* owners = routing_.owners();
  ServicePtr svc = weak.lock();
  if (!svc) {
    if (r.owned) owners->Release(lease->owner->env, lease->owner->service, lease->resource, r.token, r.session);
    return;
  }
  Deferred d;
  {
    std::lock_guard lock(svc->mu);
    auto it = svc->leases.find(lease->resource);
    bool current = it != svc->leases.end() && it->second == lease && lease->state == ResourceLease::State::kClaiming;
    if (!current) {
      // Its owner went (or it closed) meanwhile: the key is not wanted.
      if (r.owned) owners->Release(svc->env, svc->name, lease->resource, r.token, r.session);
    } else if (r.owned) {
      lease->SetClaim(r.token, r.session);
      lease->state = ResourceLease::State::kOpening;
      SendHookLocked(*svc, lease, true, &d);
    } else {
      svc->leases.erase(it);
      if (lease->owner->resources > 0) --lease->owner->resources;
      if (!r.status.ok()) {
        routing_.FailResourceWaitersLocked(
            *svc, lease->resource,
            Status(Code::kUnavailable, "cannot take " + ServiceUrl(svc->env, svc->name) + " resource " +
                                           lease->resource + " for this node: " + r.status.message()),
            &d);
      } else if (owners->NewerThanMirror(r.holder.mod_revision)) {
        // Another node holds it: its calls go there (the mirror would say
        // so a moment later; a later change of the key still reaches us).
        svc->holders[lease->resource] = std::move(r.holder);
      }
    }
    routing_.ReleaseWaitersLocked(*svc, clock_->Now(), &d);
  }
  Flush(&d);
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
      } else if (kind == 3) {
        HandleReadyProbe(inst);
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
  // At most max_starting instances start at once (host-wide): the planned
  // count of a burst is queued, not spawned all together, so starts do not
  // starve each other (and the instances serving) of the CPU. Queued ones
  // that were stopped meanwhile leave the queue and their service.
  std::vector<std::pair<ServicePtr, std::shared_ptr<Instance>>> queue, kept;
  {
    std::lock_guard lock(queue_mu_);
    queue.swap(to_start_);
  }
  for (auto& entry : queue) {
    auto& [svc, inst] = entry;
    if (starting_.size() < options_.max_starting) {
      Spawn(svc, inst);
      continue;
    }
    std::lock_guard lock(svc->mu);
    if (svc->removed || inst->state != InstanceState::kStarting) {
      std::erase(svc->instances, inst);
    } else {
      kept.push_back(std::move(entry));
    }
  }
  if (!kept.empty()) {
    std::lock_guard lock(queue_mu_);
    to_start_.insert(to_start_.begin(), std::make_move_iterator(kept.begin()), std::make_move_iterator(kept.end()));
  }
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
    // In a cluster the code may be on another node only: fetched first (the
    // start waits in the queue meanwhile), and never run without it.
    if (options_.ensure_code) {
      Status failure;
      int code = options_.ensure_code(inst->env, inst->service, inst->version, inst->code_dir, &failure);
      if (code == 1) {
        std::lock_guard lock(queue_mu_);
        to_start_.emplace_back(svc, inst);
        return;
      }
      if (code == 2) s = failure;
    }
    if (s.ok()) s = runtime_->Start(spec, &proc);
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
      if (inst->version == svc->rollout.version && !svc->rollout.failed) {
        svc->rollout.failed = true;
        svc->rollout.failure = "cannot start an instance: " + s.message();
      }
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
      starting_.insert(inst.get());
      // Socket activation: ready on the instance's SETTINGS, no polling.
      if (uint64_t inode = inst->proc->listen_socket_inode(); inode != 0) {
        inst->listen_inode = inode;
        inst->ready_probe = OpenReadyProbe(inst->socket_path);
        if (inst->ready_probe >= 0) {
          Watch(inst->ready_probe, inst, 3);
          inst->next_attempt = SteadyTime::max();
        }
      }
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
        if (it != by_socket_name_.end()) {
          Instance& inst = *it->second;
          struct stat st;
          if (inst.listen_inode == 0) {
            // Probed at once, and soon again: the socket's file appears at
            // bind(), a moment before listen(), and a probe in between is
            // refused (the backoff grown while it was missing would
            // otherwise hold the next probe back by up to 100 ms).
            inst.next_attempt = clock_->Now();
            inst.backoff = kFirstBackoff;
          } else if (stat(inst.socket_path.c_str(), &st) != 0 || st.st_ino != inst.listen_inode) {
            // Not leverd's socket: the instance made its own (it predates
            // socket activation). That one tells when it is ready.
            EndReadyProbe(inst, false);
          }
        }
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

void Supervisor::BecomeReadyLocked(ServiceState& svc, Instance& inst, SteadyTime now) {
  inst.state = InstanceState::kReady;
  inst.alive_.store(true, std::memory_order_release);
  if (inst.proc) inst.pid = inst.proc->pid();
  inst.Touch();
  inst.socket_kind = inst.listen_inode != 0 ? "inherited" : "own";
  svc.crash_streak = 0;
  if (starting_.erase(&inst)) WakeAt(now);  // room for a queued start
}

void Supervisor::CloseReadyProbe(Instance& inst) {
  if (inst.ready_probe < 0) return;
  Unwatch(inst.ready_probe);
  close(inst.ready_probe);
  inst.ready_probe = -1;
  inst.probe_in.clear();
}

void Supervisor::EndReadyProbe(Instance& inst, bool serving) {
  CloseReadyProbe(inst);
  ServicePtr svc = inst.owner.lock();
  if (!svc) return;
  std::lock_guard lock(svc->mu);
  SteadyTime now = clock_->Now();
  if (serving) {
    if (inst.state == InstanceState::kStarting && !svc->removed) BecomeReadyLocked(*svc, inst, now);
    return;
  }
  // It closed the socket unanswered, answered something else, or made its
  // own: ready as without activation, when its path accepts.
  inst.listen_inode = 0;
  inst.next_attempt = now;
  WakeAt(now);
}

void Supervisor::HandleReadyProbe(const std::shared_ptr<Instance>& inst) {
  char buf[kFrameHeader];
  ssize_t n = read(inst->ready_probe, buf, kFrameHeader - inst->probe_in.size());
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n > 0) inst->probe_in.append(buf, static_cast<size_t>(n));
  if (n > 0 && inst->probe_in.size() < kFrameHeader) return;
  EndReadyProbe(*inst, IsSettings(inst->probe_in));
}

void Supervisor::HandleExit(const std::shared_ptr<Instance>& inst) {
  int ws = 0;
  if (!inst->proc || !inst->proc->Reap(&ws)) return;
  CloseReadyProbe(*inst);
  ReadOutput(*inst, false, true);
  ReadOutput(*inst, true, true);
  Unwatch(inst->proc->stdout_fd());
  Unwatch(inst->proc->stderr_fd());
  Unwatch(inst->proc->exit_fd());
  inst->proc->CloseOutput();
  inst->proc->Cleanup();
  unlink(inst->socket_path.c_str());
  by_socket_name_.erase(inst->socket_path.substr(options_.run_dir.size() + 1));
  if (starting_.erase(inst.get())) WakeAt(clock_->Now());

  ServicePtr svc = inst->owner.lock();
  Deferred d;
  if (svc) {
    std::lock_guard lock(svc->mu);
    InstanceState was = inst->state;
    inst->alive_.store(false, std::memory_order_release);
    svc->scaler.retired_area += inst->load.Area(inst->MeterUs(clock_->Now()));
    std::erase(svc->instances, inst);
    routing_.DropLeasesLocked(*svc, *inst);
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
      if (inst->version == svc->rollout.version && !svc->rollout.failed) {
        svc->rollout.failed = true;
        svc->rollout.failure = "the instance " + how;
      }
      if (was == InstanceState::kStarting && inst->version == svc->info.live_version &&
          CountInstancesLocked(*svc, true, false) == 0) {
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
  std::vector<ServiceLoad> loads;
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    if (svc->is_admin()) continue;
    TickService(*svc, now, &d);
    if (svc->removed && svc->instances.empty()) prune = true;
    if (options_.publish && !svc->removed) {
      ServiceLoad l{svc->env, svc->name, svc->info.live_version, {}, 0};
      for (auto& inst : svc->instances) {
        if (inst->version == svc->info.live_version && inst->state == InstanceState::kStarting) ++l.starting;
        if (!UsableLocked(*svc, *inst)) continue;
        l.ready.push_back(inst->instance_id);
        l.in_flight += inst->in_flight();
      }
      l.load = svc->scaler.local_load;
      l.peak = svc->scaler.local_peak;
      l.waiting = static_cast<int64_t>(svc->waiters.size());
      l.recent = now - svc->last_call < options_.lifecycle.idle_timeout;
      if (svc->rollout.version > 0) {
        l.rollout = svc->rollout.version;
        for (auto& inst : svc->instances) {
          l.rollout_instances += inst->version == l.rollout && (inst->state == InstanceState::kStarting ||
                                                                 inst->state == InstanceState::kReady);
        }
      }
      loads.push_back(std::move(l));
    }
  }
  if (prune) catalog_.Prune();
  Flush(&d);
  if (options_.publish) options_.publish(std::move(loads));
}

void Supervisor::TickService(ServiceState& svc, SteadyTime now, Deferred* d) {
  // Facts first: which starting instances accept connections now, and
  // whether the suspect ones are dead.
  std::vector<bool> unhealthy(svc.instances.size(), false);
  for (size_t i = 0; i < svc.instances.size(); ++i) {
    Instance& inst = *svc.instances[i];
    if (!inst.spawned || svc.removed) continue;
    if (inst.pid == 0 && inst.proc) inst.pid = inst.proc->pid();  // a container's, once dockerd started it
    if (inst.state == InstanceState::kStarting && inst.ready_probe < 0 && now >= inst.next_attempt) {
      if (ProbeSocket(inst.socket_path) != Probe::kDead) {
        BecomeReadyLocked(svc, inst, now);
      } else {
        inst.backoff = std::min<SteadyDuration>(inst.backoff * 2, kMaxBackoff);
        inst.next_attempt = now + inst.backoff;
      }
    } else if (inst.state == InstanceState::kReady && inst.check_requested.load() && now >= inst.next_check) {
      // Dead only if its socket keeps refusing connections while the
      // process lives (its exit is seen apart): a full backlog (busy) is
      // alive, and one refusal may be a listener being re-made, so it is
      // probed kProbesToDeath times, 10 ms apart and doubling (~150 ms),
      // taking no new call meanwhile.
      if (ProbeSocket(inst.socket_path) == Probe::kDead) {
        if (++inst.failed_probes >= kProbesToDeath) {
          unhealthy[i] = true;
        } else {
          inst.next_check = now + milliseconds(10 << (inst.failed_probes - 1));
          WakeAt(inst.next_check);
        }
      } else {
        inst.check_requested.store(false);
        inst.failed_probes = 0;
      }
    } else if (inst.state == InstanceState::kReady && inst.check_requested.load()) {
      WakeAt(inst.next_check);
    }
  }
  routing_.DropStaleLeasesLocked(svc, d);
  if (!svc.removed) routing_.ReleaseWaitersLocked(svc, now, d);
  // Closing leases whose calls are done: CloseResource now.
  for (auto& [_, lease] : svc.leases) {
    if (lease->state == ResourceLease::State::kClosing && !lease->call_sent && lease->in_flight() <= 0) {
      SendHookLocked(svc, lease, false, d);
    }
  }
  // The other nodes' part of the service (a cluster): their load joins
  // the samples, their instances the count.
  std::vector<PeerLoad> peers;
  uint64_t rank = 0;
  double remote_load = 0, remote_peak = 0;
  if (options_.peer_loads && !svc.removed) {
    rank = options_.peer_loads(svc.env, svc.name, svc.info.live_version, &peers);
    for (const PeerLoad& p : peers) {
      remote_load += p.load;
      remote_peak += p.peak;
    }
  }
  SampleLocked(svc, now, !peers.empty(), remote_load, remote_peak);
  svc.scaler.peak_woken = false;

  ServiceView view;
  view.removed = svc.removed;
  view.live = {svc.info.live_version, svc.config_status.ok(), svc.config.min_instances, svc.config.max_instance_load};
  if (svc.rollout.version > 0) {
    view.rollout = {svc.rollout.version, true, svc.rollout.config.min_instances, svc.rollout.config.max_instance_load};
    view.rollout_failed = svc.rollout.failed;
  }
  view.waiters = svc.waiters.size();
  for (const Waiter& w : svc.waiters) view.relayed_waiters += w.from_peer;
  if (!svc.waiters.empty()) view.first_waiter_deadline = svc.waiters.front().deadline;
  view.restart_after = svc.restart_after;
  std::vector<LoadSample> samples(svc.scaler.samples.begin(), svc.scaler.samples.end());
  view.samples = samples;
  view.last_call = svc.last_call;
  view.panic_until = svc.scaler.panic_until;
  view.last_scale_down = svc.scaler.last_scale_down;
  view.peers = peers;
  view.rank = rank;
  double concurrency = static_cast<double>(svc.waiters.size());
  view.instances.reserve(svc.instances.size());
  std::unordered_map<const Instance*, size_t> index;
  for (size_t i = 0; i < svc.instances.size(); ++i) {
    const Instance& inst = *svc.instances[i];
    index[&inst] = i;
    InstanceView v;
    v.version = inst.version;
    v.state = inst.state;
    v.spawned = inst.spawned;
    v.unhealthy = unhealthy[i];
    v.in_flight = inst.in_flight();
    v.resources = inst.resources;
    v.last_active = inst.last_active();
    v.start_deadline = inst.start_deadline;
    v.drain_deadline = inst.drain_deadline;
    v.kill_deadline = inst.kill_deadline;
    v.killed = inst.killed;
    view.instances.push_back(v);
    concurrency += static_cast<double>(v.in_flight + inst.pending());
    if (inst.state == InstanceState::kStarting && inst.spawned) WakeAt(inst.next_attempt);
  }
  // Now: what is in flight and waiting, or the peak routing saw since the
  // last sample if that was more.
  view.concurrency_now = std::max(concurrency, svc.scaler.peak);
  std::vector<std::shared_ptr<ResourceLease>> leases;
  for (auto& [_, lease] : svc.leases) {
    auto it = index.find(lease->owner.get());
    if (it == index.end()) continue;
    leases.push_back(lease);
    view.leases.push_back({it->second, lease->state == ResourceLease::State::kOpen,
                           lease->state == ResourceLease::State::kClosing, lease->in_flight(), lease->last_used()});
  }

  Plan plan = Decide(view, options_.lifecycle, now);

  // Carry it out (indices refer to the instances and leases as viewed:
  // nothing was added or removed since).
  std::vector<std::shared_ptr<Instance>> viewed = svc.instances;
  for (size_t j : plan.close_leases) {
    ResourceLease& lease = *leases[j];
    lease.MarkClosing();
    if (lease.in_flight() <= 0) SendHookLocked(svc, leases[j], false, d);
  }
  ApplyLocked(svc, plan, viewed, now, d);
}

void Supervisor::ApplyLocked(ServiceState& svc, const Plan& plan, const std::vector<std::shared_ptr<Instance>>& viewed,
                             SteadyTime now, Deferred* d) {
  for (const Plan::Stop& stop : plan.stops) {
    Instance& inst = *viewed[stop.instance];
    std::string reason = stop.reason;
    if (stop.start_timeout) {
      reason = "no connection accepted on " + inst.socket_path + " within " +
               Seconds(options_.lifecycle.start_timeout) + " s";
      svc.crash_streak++;
      svc.restart_after = now + RestartDelay(svc.crash_streak);
      if (inst.version == svc.rollout.version && svc.rollout.failure.empty()) svc.rollout.failure = reason;
    }
    if (stop.kind == Plan::StopKind::kDrain) {
      DrainLocked(svc, inst, reason, d);
      continue;
    }
    StopLocked(svc, inst, reason, d);
    if (stop.kind == Plan::StopKind::kKill && inst.proc) {
      inst.proc->Signal(SIGKILL);
      inst.killed = true;
    }
    if (stop.kind == Plan::StopKind::kKill) routing_.DropLeasesLocked(svc, inst);
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
    Instance& inst = *viewed[i];
    if (inst.proc) inst.proc->Signal(SIGKILL);
    inst.killed = true;
  }
  if (plan.removed) {
    routing_.FailWaitersLocked(svc, Status(Code::kNotFound, "service " + ServiceUrl(svc.env, svc.name) + " was removed"),
                               d);
    return;
  }
  if (!plan.fail_rollout.empty() && svc.rollout.version > 0) {
    int64_t v = svc.rollout.version;
    std::string why = svc.rollout.failure.empty() ? "it did not start" : svc.rollout.failure;
    // Its last output lines, from the service's log ring.
    std::vector<std::string> lines;
    for (const LogLine& l : logs_.Tail(svc.env, svc.name, 200)) {
      if (l.version == v && l.stream != "host") lines.push_back(l.text);
    }
    std::string log;
    for (size_t i = lines.size() > 10 ? lines.size() - 10 : 0; i < lines.size(); ++i) log += "\n  " + lines[i];
    std::string message = ServiceUrl(svc.env, svc.name) + " v" + std::to_string(v) + " failed to start: " + why +
                          (svc.info.live_version > 0 ? "; v" + std::to_string(svc.info.live_version) + " stays live"
                                                     : "") +
                          (log.empty() ? "" : "\nlast output:" + log);
    d->AddNote(svc, v, "", "[host] v" + std::to_string(v) + " was not switched to: " + why);
    FinishRolloutLocked(svc, v, Status(Code::kFailedPrecondition, message));
    svc.rollout = Rollout{};
    if (svc.info.live_version <= 0) routing_.FailWaitersLocked(svc, Status(Code::kUnavailable, message), d);
  }
  if (plan.switch_live && svc.rollout.version > 0) {
    int64_t v = svc.rollout.version;
    svc.info.live_version = v;
    svc.config = std::move(svc.rollout.config);
    svc.config_status = Status::Ok();
    svc.code_dir = std::move(svc.rollout.code_dir);
    svc.rollout = Rollout{};
    svc.last_call = now;  // the new version stays warm for an idle period
    svc.crash_streak = 0;
    svc.restart_after = {};
    d->AddNote(svc, v, "", "[host] v" + std::to_string(v) + " is live");
    FinishRolloutLocked(svc, v, Status::Ok());
    if (options_.on_switched) {
      d->after.push_back([fn = options_.on_switched, env = svc.env, name = svc.name, v] { fn(env, name, v); });
    }
    routing_.ReleaseWaitersLocked(svc, now, d);  // calls that waited for the first version
  }
  svc.scaler.desired = plan.desired;
  svc.scaler.reason = plan.reason;
  svc.scaler.panic_until = plan.panic_until;
  svc.scaler.last_scale_down = plan.last_scale_down;
  for (size_t i = 0; i < plan.start; ++i) StartLocked(svc, svc.info.live_version);
  for (size_t i = 0; i < plan.start_rollout; ++i) StartLocked(svc, svc.rollout.version);
  WakeAt(plan.wake);
}

void Supervisor::FinishRolloutLocked(ServiceState& svc, int64_t version, Status status) {
  RolloutResult& r = svc.rollouts[version];
  r.done = true;
  r.status = std::move(status);
  while (svc.rollouts.size() > 16) svc.rollouts.erase(svc.rollouts.begin());
  svc.rollout_cv.notify_all();
}

// The load sample of the tick that just ended: calls in flight on every
// instance, time-weighted, plus the calls waiting now.
void Supervisor::SampleLocked(ServiceState& svc, SteadyTime now, bool clustered, double remote_load,
                              double remote_peak) {
  Autoscaler& a = svc.scaler;
  bool active = !svc.instances.empty() || !svc.waiters.empty() || remote_load > 0 || remote_peak > 0;
  if (!active && a.samples.empty()) {
    a.local_load = a.local_peak = 0;
    return;
  }
  SteadyDuration tick = SampleTick(options_.lifecycle);
  if (now < a.next_sample) {
    if (active) WakeAt(a.next_sample);
    return;
  }
  uint64_t area = a.retired_area;
  for (auto& inst : svc.instances) {
    area += inst->load.Area(inst->MeterUs(now));
    // Placements that never started (their callers left before the gateway
    // opened the stream) once nothing has happened there for a second.
    if (inst->pending() > 0 && now - inst->last_active() > std::chrono::seconds(1)) inst->ForgetPending();
  }
  if (a.last_sample != SteadyTime{} && now > a.last_sample) {
    SteadyDuration span = now - a.last_sample;
    double us = static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(span).count());
    double value = (area >= a.last_area ? static_cast<double>(area - a.last_area) : 0.0) / std::max(us, 1.0);
    double mean = value + static_cast<double>(svc.waiters.size());
    if (clustered) {
      // The cluster's sample adds this node's figures as it published
      // them (last tick's) to the others': every node adds up the same
      // numbers, so they agree on the count (a fresh figure beside the
      // others' older ones counts calls that moved between nodes twice).
      a.samples.push_back({now, span, a.local_load + remote_load, a.local_peak + remote_peak});
      a.local_load = mean;
      a.local_peak = std::max(mean, a.peak);
    } else {
      a.samples.push_back({now, span, mean, std::max(mean, a.peak)});
      a.local_load = mean;
      a.local_peak = std::max(mean, a.peak);
    }
  }
  // The next tick's peak starts from what is in flight now.
  double current = static_cast<double>(svc.waiters.size());
  for (auto& inst : svc.instances) current += static_cast<double>(inst->in_flight() + inst->pending());
  a.peak = current;
  a.last_area = area;
  a.last_sample = now;
  a.next_sample = now + tick;
  while (!a.samples.empty() && a.samples.front().at <= now - options_.lifecycle.stable_window) a.samples.pop_front();
  if (active || !a.samples.empty()) WakeAt(a.next_sample);
}

void Supervisor::DrainLocked(ServiceState& svc, Instance& inst, const std::string& reason, Deferred* d) {
  if (inst.state != InstanceState::kReady) return;
  inst.state = InstanceState::kDraining;
  inst.alive_.store(false, std::memory_order_release);  // no new calls
  inst.MarkDraining();
  SteadyTime now = clock_->Now();
  inst.drain_deadline = now + options_.lifecycle.stop_grace;
  WakeAt(std::max(now, inst.last_active() + options_.lifecycle.drain_settle));
  d->AddNote(svc, inst.version, inst.instance_id, "[host] draining instance " + inst.instance_id + ": " + reason);
}

void Supervisor::StopLocked(ServiceState& svc, Instance& inst, const std::string& reason, Deferred* d) {
  if (inst.state == InstanceState::kStopping) return;
  if (starting_.erase(&inst)) WakeAt(clock_->Now());
  inst.state = InstanceState::kStopping;
  inst.alive_.store(false, std::memory_order_release);
  inst.stop_intended = true;
  inst.kill_deadline = clock_->Now() + options_.lifecycle.stop_grace;
  if (inst.proc) inst.proc->Signal(SIGTERM);
  WakeAt(inst.kill_deadline);
  routing_.DropLeasesLocked(svc, inst);
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
      CloseReadyProbe(*inst);
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
