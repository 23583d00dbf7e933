// The injected clock: steady time and timers. Everything in host/ that has a
// timeout, a window or a lease reads time from a Clock, so its decisions can
// be tested on a FakeClock without sleeping. Shared with the runtimes and
// registry backends that need timers of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace lever::host {

using SteadyTime = std::chrono::steady_clock::time_point;
using SteadyDuration = std::chrono::steady_clock::duration;

// A one-shot timer readable through a file descriptor, so an epoll loop can
// wait on it beside its other fds. Thread contract: one owner thread arms,
// clears and reads it; fd() is stable for the timer's life.
class Timer {
 public:
  virtual ~Timer() = default;
  // Readable (EPOLLIN) once the clock reaches `deadline` (at once if it is
  // already past), until Clear(). Arming again replaces the deadline.
  virtual void ArmAt(SteadyTime deadline) = 0;
  // Not readable until armed again.
  virtual void Disarm() = 0;
  // Consumes the readiness (call after the fd was readable).
  virtual void Clear() = 0;
  virtual int fd() const = 0;
};

// Thread contract: Now() may be called from any thread at any time and is
// cheap (the real clock is one vDSO call); NewTimer() from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;
  // A new timer on this clock (a timerfd on the real clock). Null only when
  // the kernel refuses a file descriptor.
  virtual std::unique_ptr<Timer> NewTimer() = 0;
};
using ClockPtr = std::shared_ptr<Clock>;

// std::chrono::steady_clock (CLOCK_MONOTONIC) with timerfd timers. One
// process-wide instance.
ClockPtr RealClock();

// A clock that moves only when told: for tests. Its timers are eventfds made
// readable by Advance()/Set() once their deadline is reached. Thread-safe.
class FakeClock final : public Clock, public std::enable_shared_from_this<FakeClock> {
 public:
  // Starts at an arbitrary, fixed point (not zero, so "no time" sentinels of
  // SteadyTime{} stay in the past).
  FakeClock();
  ~FakeClock() override;
  SteadyTime Now() const override;
  std::unique_ptr<Timer> NewTimer() override;
  // Moves time forward (never back) and fires the timers that are due.
  void Advance(SteadyDuration d);
  // The earliest armed deadline, or SteadyTime::max() when none is armed
  // (tests step from deadline to deadline).
  SteadyTime NextDeadline() const;

 private:
  class FakeTimer;
  friend class FakeTimer;
  void FireDueLocked();
  mutable std::mutex mu_;
  SteadyTime now_;
  std::vector<FakeTimer*> timers_;  // guarded by mu_
};

}  // namespace lever::host
