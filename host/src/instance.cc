#include "instance.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lever/host/placement.h"

namespace lever::host {
namespace {

std::atomic<uint64_t> g_next_backend_id{1};

}  // namespace

uint64_t NewBackendId() { return g_next_backend_id.fetch_add(1); }

const char* InstanceStateName(InstanceState s) {
  switch (s) {
    case InstanceState::kStarting: return "starting";
    case InstanceState::kReady: return "ready";
    case InstanceState::kDraining: return "draining";
    case InstanceState::kStopping: return "stopping";
  }
  return "?";
}

Wakeup::Wakeup() : fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
Wakeup::~Wakeup() {
  if (fd >= 0) close(fd);
}
void Wakeup::Notify() const {
  uint64_t one = 1;
  (void)!write(fd, &one, sizeof one);
}

void LoadMeter::Add(int64_t delta, int64_t now_us) {
  uint64_t now = static_cast<uint64_t>(std::max<int64_t>(now_us, 0)) & kTimeMask;
  uint64_t s = state_.load(std::memory_order_relaxed);
  uint64_t next, before, since;
  do {
    before = s >> kTimeBits;
    since = s & kTimeMask;
    int64_t n = static_cast<int64_t>(before) + delta;
    if (n < 0) n = 0;  // an unmatched end (a gateway bug) must not wrap
    next = (static_cast<uint64_t>(n) << kTimeBits) | std::max(since, now);
  } while (!state_.compare_exchange_weak(s, next, std::memory_order_relaxed));
  if (now > since && before > 0) area_.fetch_add(before * (now - since), std::memory_order_relaxed);
}

uint64_t LoadMeter::Area(int64_t now_us) const {
  uint64_t now = static_cast<uint64_t>(std::max<int64_t>(now_us, 0)) & kTimeMask;
  uint64_t s = state_.load(std::memory_order_relaxed);
  uint64_t a = area_.load(std::memory_order_relaxed);
  uint64_t since = s & kTimeMask;
  return a + (now > since ? (s >> kTimeBits) * (now - since) : 0);
}

Probe ProbeSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Probe::kBusy;  // out of fds here says nothing about the instance
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), std::min(path.size(), sizeof sa.sun_path - 1));
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int err = rc == 0 ? 0 : errno;
  close(fd);
  if (rc == 0 || err == EINPROGRESS) return Probe::kAccepting;
  // A unix socket whose accept backlog is full refuses a non-blocking
  // connect with EAGAIN: the instance is alive, only busy.
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return Probe::kBusy;
  return Probe::kDead;
}

Instance::Instance(std::string instance_id, std::string env, std::string service, int64_t version,
                   std::string socket_path, std::shared_ptr<const Wakeup> wakeup, ClockPtr clock,
                   bool placement_counts)
    : backend_id(g_next_backend_id.fetch_add(1)),
      instance_id(std::move(instance_id)),
      env(std::move(env)),
      service(std::move(service)),
      version(version),
      socket_path(std::move(socket_path)),
      address_("unix:" + this->socket_path),
      placement_key(PlacementKey(this->instance_id)),
      clock(std::move(clock)),
      created_(this->clock->Now()),
      placement_counts(placement_counts),
      wakeup_(std::move(wakeup)) {
  Touch();
}

int64_t Instance::MeterUs(SteadyTime t) const {
  return std::chrono::duration_cast<std::chrono::microseconds>(t - created_).count();
}

void Instance::Count(int64_t delta, SteadyTime now) {
  load.Add(delta, MeterUs(now));
  last_active_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
                       std::memory_order_relaxed);
}

void Instance::Placed(SteadyTime now) {
  if (placement_counts) {
    Count(1, now);
  } else {
    pending_.fetch_add(1, std::memory_order_relaxed);
    last_active_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
                         std::memory_order_relaxed);
  }
}

void Instance::OnCallStart() {
  if (placement_counts) return;
  Count(1, clock->Now());
  int64_t p = pending_.load(std::memory_order_relaxed);
  while (p > 0 && !pending_.compare_exchange_weak(p, p - 1, std::memory_order_relaxed)) {
  }
}

void Instance::OnCallEnd() {
  Count(-1, clock->Now());
  if (draining_.load(std::memory_order_acquire) && load.in_flight() == 0) wakeup_->Notify();
}

void Instance::OnConnectionFailed() {
  if (!check_requested.exchange(true)) wakeup_->Notify();
}

void Instance::Touch() {
  last_active_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(clock->Now().time_since_epoch()).count(),
                       std::memory_order_relaxed);
}

SteadyTime Instance::last_active() const {
  return SteadyTime(std::chrono::nanoseconds(last_active_ns.load(std::memory_order_relaxed)));
}

AdminBackend::AdminBackend(std::string address) : address_(std::move(address)), id_(g_next_backend_id.fetch_add(1)) {}

}  // namespace lever::host
