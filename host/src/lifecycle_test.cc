// The lifecycle's decisions on plain values: no processes, no sleeps; time
// is whatever the test says it is.
#include "lifecycle.h"

#include <gtest/gtest.h>

namespace lever::host {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const SteadyTime kT0 = SteadyTime(std::chrono::hours(1000));

InstanceView Ready(int64_t version, SteadyTime last_active, int64_t in_flight = 0) {
  InstanceView v;
  v.version = version;
  v.state = InstanceState::kReady;
  v.spawned = true;
  v.last_active = last_active;
  v.in_flight = in_flight;
  return v;
}

TEST(Lifecycle, ColdStartStartsOneInstanceForWaitingCalls) {
  ServiceView view;
  view.live_version = 1;
  view.waiters = 3;
  view.first_waiter_deadline = kT0 + seconds(16);
  Plan p = Decide(view, {}, kT0);
  EXPECT_EQ(p.start, 1u);
  EXPECT_EQ(p.wake, kT0 + seconds(16));
}

TEST(Lifecycle, IdleInstanceStopsAfterTheIdleTimeoutUnlessMinInstancesNeedsIt) {
  LifecycleOptions o;
  o.idle_timeout = seconds(300);
  ServiceView view;
  view.live_version = 1;
  view.instances = {Ready(1, kT0)};
  Plan early = Decide(view, o, kT0 + seconds(299));
  EXPECT_TRUE(early.stops.empty());
  EXPECT_EQ(early.wake, kT0 + seconds(300));
  Plan late = Decide(view, o, kT0 + seconds(300));
  ASSERT_EQ(late.stops.size(), 1u);
  EXPECT_EQ(late.stops[0].reason, "idle");
  view.min_instances = 1;
  EXPECT_TRUE(Decide(view, o, kT0 + seconds(3000)).stops.empty());
}

TEST(Lifecycle, StartTimeoutKillsAndFailsWaitersWhenNothingElseCanServe) {
  LifecycleOptions o;
  ServiceView view;
  view.live_version = 1;
  InstanceView starting;
  starting.version = 1;
  starting.spawned = true;
  starting.start_deadline = kT0 + seconds(15);
  view.instances = {starting};
  view.waiters = 1;
  view.first_waiter_deadline = kT0 + seconds(16);
  Plan before = Decide(view, o, kT0 + seconds(14));
  EXPECT_TRUE(before.stops.empty());
  EXPECT_EQ(before.wake, kT0 + seconds(15));
  Plan after = Decide(view, o, kT0 + seconds(15));
  ASSERT_EQ(after.stops.size(), 1u);
  EXPECT_EQ(after.stops[0].kind, Plan::StopKind::kKill);
  EXPECT_TRUE(after.stops[0].start_timeout);
  EXPECT_TRUE(after.stops[0].fail_waiters);
}

TEST(Lifecycle, StoppingInstanceIsKilledAtItsDeadline) {
  ServiceView view;
  view.live_version = 1;
  InstanceView stopping = Ready(1, kT0);
  stopping.state = InstanceState::kStopping;
  stopping.kill_deadline = kT0 + seconds(10);
  view.instances = {stopping};
  EXPECT_TRUE(Decide(view, {}, kT0 + seconds(9)).kills.empty());
  EXPECT_EQ(Decide(view, {}, kT0 + seconds(10)).kills, std::vector<size_t>{0});
}

TEST(Lifecycle, MinInstancesRestartWaitsForTheCrashBackoff) {
  ServiceView view;
  view.live_version = 1;
  view.min_instances = 2;
  view.restart_after = kT0 + milliseconds(400);
  Plan p = Decide(view, {}, kT0);
  EXPECT_EQ(p.start, 0u);
  EXPECT_EQ(p.wake, kT0 + milliseconds(400));
  EXPECT_EQ(Decide(view, {}, kT0 + milliseconds(400)).start, 2u);
}

}  // namespace
}  // namespace lever::host
