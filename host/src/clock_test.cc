#include "lever/host/clock.h"

#include <poll.h>

#include <gtest/gtest.h>

namespace lever::host {
namespace {

using std::chrono::milliseconds;

bool Readable(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

TEST(FakeClock, TimersFireOnlyWhenTimeReachesThem) {
  auto clock = std::make_shared<FakeClock>();
  SteadyTime t0 = clock->Now();
  auto timer = clock->NewTimer();
  ASSERT_TRUE(timer);
  timer->ArmAt(t0 + milliseconds(100));
  EXPECT_EQ(clock->NextDeadline(), t0 + milliseconds(100));
  EXPECT_FALSE(Readable(timer->fd()));
  clock->Advance(milliseconds(99));
  EXPECT_FALSE(Readable(timer->fd()));
  clock->Advance(milliseconds(1));
  EXPECT_TRUE(Readable(timer->fd()));
  timer->Clear();
  EXPECT_FALSE(Readable(timer->fd()));
  EXPECT_EQ(clock->NextDeadline(), SteadyTime::max());  // one-shot
  EXPECT_EQ(clock->Now(), t0 + milliseconds(100));
}

TEST(FakeClock, ArmingInThePastFiresAtOnceAndDisarmCancels) {
  auto clock = std::make_shared<FakeClock>();
  auto timer = clock->NewTimer();
  timer->ArmAt(clock->Now() - milliseconds(5));
  EXPECT_TRUE(Readable(timer->fd()));
  timer->Clear();
  timer->ArmAt(clock->Now() + milliseconds(5));
  timer->Disarm();
  clock->Advance(milliseconds(10));
  EXPECT_FALSE(Readable(timer->fd()));
}

TEST(RealClock, TimerFdFiresAtItsDeadline) {
  ClockPtr clock = RealClock();
  auto timer = clock->NewTimer();
  ASSERT_TRUE(timer);
  SteadyTime deadline = clock->Now() + milliseconds(20);
  timer->ArmAt(deadline);
  EXPECT_TRUE(Readable(timer->fd(), 5000));
  EXPECT_GE(clock->Now(), deadline);
  timer->Clear();
  timer->ArmAt(SteadyTime{});  // long past: at once
  EXPECT_TRUE(Readable(timer->fd(), 5000));
}

}  // namespace
}  // namespace lever::host
