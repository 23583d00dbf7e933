#include "lever/host/clock.h"

#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace lever::host {
namespace {

class RealTimer final : public Timer {
 public:
  explicit RealTimer(int fd) : fd_(fd) {}
  ~RealTimer() override { close(fd_); }
  void ArmAt(SteadyTime deadline) override {
    // steady_clock is CLOCK_MONOTONIC on Linux: an absolute timerfd deadline.
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
    if (ns <= 0) ns = 1;  // 0 would disarm: "already past" fires at once
    itimerspec spec{};
    spec.it_value.tv_sec = ns / 1000000000;
    spec.it_value.tv_nsec = ns % 1000000000;
    timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }
  void Disarm() override {
    itimerspec spec{};
    timerfd_settime(fd_, 0, &spec, nullptr);
  }
  void Clear() override {
    uint64_t expirations;
    (void)!read(fd_, &expirations, sizeof expirations);
  }
  int fd() const override { return fd_; }

 private:
  const int fd_;
};

class SteadyClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  std::unique_ptr<Timer> NewTimer() override {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return nullptr;
    return std::make_unique<RealTimer>(fd);
  }
};

}  // namespace

ClockPtr RealClock() {
  static ClockPtr* clock = new ClockPtr(std::make_shared<SteadyClock>());  // never destroyed
  return *clock;
}

class FakeClock::FakeTimer final : public Timer {
 public:
  FakeTimer(std::shared_ptr<FakeClock> clock, int fd) : clock_(std::move(clock)), fd_(fd) {
    std::lock_guard lock(clock_->mu_);
    clock_->timers_.push_back(this);
  }
  ~FakeTimer() override {
    {
      std::lock_guard lock(clock_->mu_);
      std::erase(clock_->timers_, this);
    }
    close(fd_);
  }
  void ArmAt(SteadyTime deadline) override {
    std::lock_guard lock(clock_->mu_);
    armed_ = true;
    deadline_ = deadline;
    clock_->FireDueLocked();
  }
  void Disarm() override {
    std::lock_guard lock(clock_->mu_);
    armed_ = false;
  }
  void Clear() override {
    uint64_t v;
    (void)!read(fd_, &v, sizeof v);
  }
  int fd() const override { return fd_; }

  // Under the clock's mutex.
  void FireIfDue(SteadyTime now) {
    if (!armed_ || deadline_ > now) return;
    armed_ = false;
    uint64_t one = 1;
    (void)!write(fd_, &one, sizeof one);
  }
  bool armed_ = false;
  SteadyTime deadline_{};

 private:
  std::shared_ptr<FakeClock> clock_;
  const int fd_;
};

FakeClock::FakeClock() : now_(SteadyTime(std::chrono::hours(1000))) {}
FakeClock::~FakeClock() = default;

SteadyTime FakeClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

std::unique_ptr<Timer> FakeClock::NewTimer() {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return nullptr;
  return std::make_unique<FakeTimer>(shared_from_this(), fd);
}

void FakeClock::Advance(SteadyDuration d) {
  std::lock_guard lock(mu_);
  if (d > SteadyDuration::zero()) now_ += d;
  FireDueLocked();
}

SteadyTime FakeClock::NextDeadline() const {
  std::lock_guard lock(mu_);
  SteadyTime next = SteadyTime::max();
  for (const FakeTimer* t : timers_) {
    if (t->armed_) next = std::min(next, t->deadline_);
  }
  return next;
}

void FakeClock::FireDueLocked() {
  for (FakeTimer* t : timers_) t->FireIfDue(now_);
}

}  // namespace lever::host
