// The lifecycle's decisions on plain values: no processes, no sleeps; time
// is whatever the test says it is. A small simulator carries plans out the
// way the supervisor does (a start adds a starting instance, a drain makes it
// draining, a stop removes it) so the autoscaler is tested over time.
#include "lifecycle.h"

#include <algorithm>

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

InstanceView Starting(int64_t version, SteadyTime deadline) {
  InstanceView v;
  v.version = version;
  v.spawned = true;
  v.start_deadline = deadline;
  return v;
}

VersionView Version(int64_t v, int64_t min = 0, double load = 2) { return {v, true, min, load}; }

struct Sim {
  Sim() {
    o.stable_window = seconds(60);
    o.panic_window = seconds(6);
    o.idle_timeout = seconds(300);
    o.max_instances = 64;
    view.live = Version(1);
    view.last_call = now;
  }

  // One tick of load `concurrency` (calls in flight plus waiting), then a
  // pass of the lifecycle at the tick's end.
  Plan Tick(double concurrency) {
    SteadyDuration tick = SampleTick(o);
    now += tick;
    samples.push_back({now, tick, concurrency});
    while (!samples.empty() && samples.front().at <= now - o.stable_window) samples.erase(samples.begin());
    view.concurrency_now = concurrency;
    if (concurrency > 0) view.last_call = now;
    return Pass();
  }

  Plan Pass() {
    view.samples = samples;
    Plan p = Decide(view, o, now);
    Apply(p);
    return p;
  }

  void Apply(const Plan& p) {
    std::vector<size_t> gone;
    for (const Plan::Stop& s : p.stops) {
      if (s.kind == Plan::StopKind::kDrain) {
        view.instances[s.instance].state = InstanceState::kDraining;
        view.instances[s.instance].drain_deadline = now + o.stop_grace;
      } else {
        gone.push_back(s.instance);
      }
    }
    std::sort(gone.rbegin(), gone.rend());
    for (size_t i : gone) view.instances.erase(view.instances.begin() + static_cast<ptrdiff_t>(i));
    for (size_t i = 0; i < p.start_rollout; ++i) {
      view.instances.push_back(Starting(view.rollout.version, now + o.start_timeout));
    }
    if (p.switch_live) {  // before the starts, as the supervisor does: they are of the new live version
      view.live = view.rollout;
      view.rollout = {};
      view.last_call = now;
    }
    if (!p.fail_rollout.empty()) view.rollout = {};
    for (size_t i = 0; i < p.start; ++i) view.instances.push_back(Starting(view.live.version, now + o.start_timeout));
    view.panic_until = p.panic_until;
    view.last_scale_down = p.last_scale_down;
    desired = p.desired;
    reason = p.reason;
  }

  void ReadyAll() {
    for (InstanceView& i : view.instances) {
      if (i.state == InstanceState::kStarting) i.state = InstanceState::kReady;
    }
  }
  // Draining instances with nothing in flight are done (the drain settle has passed).
  void FinishDrains() {
    std::erase_if(view.instances, [](const InstanceView& i) { return i.state == InstanceState::kDraining; });
  }

  size_t Count(int64_t version, InstanceState state) const {
    return static_cast<size_t>(std::count_if(view.instances.begin(), view.instances.end(), [&](const InstanceView& i) {
      return i.version == version && i.state == state;
    }));
  }
  size_t Serving(int64_t version) const {
    return Count(version, InstanceState::kStarting) + Count(version, InstanceState::kReady);
  }

  LifecycleOptions o;
  ServiceView view;
  SteadyTime now = kT0;
  std::vector<LoadSample> samples;
  int64_t desired = 0;
  std::string reason;
};

TEST(Lifecycle, SampleTickIsASixthOfThePanicWindowWithinBounds) {
  LifecycleOptions o;
  EXPECT_EQ(SampleTick(o), seconds(1));
  o.panic_window = milliseconds(600);
  EXPECT_EQ(SampleTick(o), milliseconds(100));
  o.panic_window = milliseconds(1);
  EXPECT_EQ(SampleTick(o), milliseconds(10));
}

TEST(Lifecycle, ABurstAtZeroStartsThePlannedCountNotOne) {
  Sim sim;
  sim.view.waiters = 100;
  sim.view.concurrency_now = 100;  // 100 calls waiting, maxInstanceLoad 2
  sim.view.first_waiter_deadline = sim.now + seconds(16);
  Plan p = sim.Pass();
  EXPECT_EQ(p.start, 50u);
  EXPECT_EQ(p.desired, 50);
  EXPECT_STREQ(p.reason, "panic");
  EXPECT_LE(p.wake, sim.now + seconds(16));  // the waiters' deadline at the latest
  // Capped by max_instances.
  Sim capped;
  capped.o.max_instances = 8;
  capped.view.waiters = 100;
  capped.view.concurrency_now = 100;
  EXPECT_EQ(capped.Pass().start, 8u);
}

TEST(Lifecycle, OneWaitingCallStartsOneInstance) {
  Sim sim;
  sim.view.waiters = 1;
  sim.view.concurrency_now = 1;
  EXPECT_EQ(sim.Pass().start, 1u);
  // Starting instances count: the next pass starts nothing more.
  EXPECT_EQ(sim.Pass().start, 0u);
}

TEST(Lifecycle, PanicScalesUpAtOnceWhenTheShortWindowNeedsTwiceTheCount) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now)};
  for (int i = 0; i < 120; ++i) sim.Tick(2);  // steady: 2 calls, load 2 → 1 instance
  EXPECT_EQ(sim.Serving(1), 1u);
  EXPECT_STREQ(sim.reason.c_str(), "stable");
  // A 10x step: the first tick of it asks for 10 instances.
  Plan p = sim.Tick(20);
  EXPECT_STREQ(p.reason, "panic");
  EXPECT_EQ(p.desired, 10);
  EXPECT_EQ(sim.Serving(1), 10u);
  sim.ReadyAll();
  // While panicking the count follows the short window up (never down).
  sim.Tick(30);
  EXPECT_EQ(sim.Serving(1), 15u);
  sim.ReadyAll();
  sim.Tick(4);
  EXPECT_EQ(sim.Serving(1), 15u);
}

TEST(Lifecycle, APeakOfShortCallsPanicsThoughTheMeanIsLow) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now)};
  sim.view.last_call = sim.now;
  // 1000 calls of 1 ms at once: the tick's mean is ~1, its peak 1000.
  sim.now += SampleTick(sim.o);
  sim.samples.push_back({sim.now, SampleTick(sim.o), 1.0, 1000.0});
  Plan p = sim.Pass();
  EXPECT_STREQ(p.reason, "panic");
  EXPECT_EQ(p.desired, 64);  // capped at max_instances
}

TEST(Lifecycle, NoPanicFromHistoryOnceTheIdlePeriodPassed) {
  Sim sim;
  sim.o.idle_timeout = milliseconds(200);
  sim.view.last_call = sim.now;
  sim.now += milliseconds(500);
  sim.samples.push_back({sim.now - milliseconds(100), SampleTick(sim.o), 0.0, 1.0});  // a call's peak, 400 ms ago
  Plan p = sim.Pass();
  EXPECT_EQ(p.start, 0u) << "an old peak restarted an idle service";
  EXPECT_STREQ(p.reason, "idle");
}

TEST(Lifecycle, NoPanicBelowTwiceTheCount) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now), Ready(1, sim.now)};
  for (int i = 0; i < 60; ++i) sim.Tick(4);  // 2 instances' worth
  Plan p = sim.Tick(7);                       // needs 4 = 2x: panic
  EXPECT_STREQ(p.reason, "panic");
  Sim calm;
  calm.view.instances = {Ready(1, calm.now), Ready(1, calm.now)};
  for (int i = 0; i < 60; ++i) calm.Tick(3.9);
  Plan q = calm.Tick(6);  // needs 3 < 4, and the stable average still fits 2
  EXPECT_STREQ(q.reason, "stable");
  EXPECT_EQ(q.start, 0u);
}

TEST(Lifecycle, StableWindowScalesDownOneStepAtATimeAfterThePanicEnds) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now)};
  sim.Tick(16);  // panic to 8
  sim.ReadyAll();
  ASSERT_EQ(sim.Serving(1), 8u);
  for (int i = 0; i < 70; ++i) sim.Tick(16);
  ASSERT_EQ(sim.Serving(1), 8u);
  // The load drops to 2: the stable average falls over the window, and the
  // count follows one instance per tick, never below what it says.
  size_t last = sim.Serving(1);
  int steps = 0;
  for (int i = 0; i < 200; ++i) {
    sim.Tick(2);
    size_t now_serving = sim.Serving(1);
    EXPECT_GE(now_serving + 1, last) << "more than one step down in one tick";
    if (now_serving < last) ++steps;
    last = now_serving;
    sim.FinishDrains();
  }
  EXPECT_EQ(sim.Serving(1), 1u);
  EXPECT_EQ(steps, 7);
  EXPECT_STREQ(sim.reason.c_str(), "stable");
}

TEST(Lifecycle, NoScaleDownWhilePanicking) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now)};
  sim.Tick(16);
  sim.ReadyAll();
  // Load gone at once: within the stable window after the panic, nothing stops.
  for (int i = 0; i < 50; ++i) {
    sim.Tick(0);
    EXPECT_EQ(sim.Serving(1), 8u) << "tick " << i;
  }
}

TEST(Lifecycle, IdlePeriodScalesToZero) {
  Sim sim;
  sim.o.idle_timeout = seconds(120);
  sim.view.instances = {Ready(1, sim.now)};
  sim.Tick(1);
  // No calls: one instance stays warm through the idle period, then none.
  size_t ticks_warm = 0;
  for (int i = 0; i < 200 && sim.Serving(1) > 0; ++i) {
    Plan p = sim.Tick(0);
    if (sim.Serving(1) > 0) ++ticks_warm;
    if (sim.Serving(1) == 0) {
      EXPECT_STREQ(p.reason, "idle");
    }
  }
  EXPECT_EQ(sim.Serving(1), 0u);
  EXPECT_EQ(ticks_warm, 119u);  // tick 120 is the idle period's end
  EXPECT_EQ(sim.desired, 0);
  // And the supervisor is told when to look: the idle period's end.
  Sim warm;
  warm.o.idle_timeout = seconds(120);
  warm.view.instances = {Ready(1, warm.now)};
  warm.view.last_call = warm.now;
  EXPECT_LE(warm.Pass().wake, warm.now + seconds(120));
}

TEST(Lifecycle, MinInstancesIsAFloor) {
  Sim sim;
  sim.view.live = Version(1, 3);
  Plan p = sim.Pass();
  EXPECT_EQ(p.start, 3u);
  EXPECT_STREQ(p.reason, "min");
  sim.ReadyAll();
  sim.view.last_call = sim.now - seconds(1000);  // long idle
  for (int i = 0; i < 100; ++i) sim.Tick(0);
  EXPECT_EQ(sim.Serving(1), 3u);
  EXPECT_STREQ(sim.reason.c_str(), "min");
  // Load above the floor scales above it, and back down to it.
  sim.Tick(20);
  EXPECT_EQ(sim.Serving(1), 10u);
  sim.ReadyAll();
  for (int i = 0; i < 300; ++i) {
    sim.Tick(0);
    sim.FinishDrains();
  }
  EXPECT_EQ(sim.Serving(1), 3u);
}

TEST(Lifecycle, MaxInstancesCapsTheCount) {
  Sim sim;
  sim.o.max_instances = 4;
  sim.view.instances = {Ready(1, sim.now)};
  sim.Tick(100);
  EXPECT_EQ(sim.Serving(1), 4u);
  EXPECT_EQ(sim.desired, 4);
}

TEST(Lifecycle, CrashBackoffDelaysStarts) {
  Sim sim;
  sim.view.live = Version(1, 2);
  sim.view.restart_after = sim.now + milliseconds(400);
  Plan p = sim.Pass();
  EXPECT_EQ(p.start, 0u);
  EXPECT_EQ(p.wake, sim.now + milliseconds(400));
  sim.now += milliseconds(400);
  EXPECT_EQ(sim.Pass().start, 2u);
}

TEST(Lifecycle, ScaleDownPrefersInstancesWithoutResources) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now), Ready(1, sim.now), Ready(1, sim.now)};
  sim.view.instances[0].resources = 0;
  sim.view.instances[1].resources = 5;
  sim.view.instances[2].resources = 1;
  sim.view.last_call = sim.now;
  sim.view.concurrency_now = 1;
  Plan p = sim.Pass();  // needs 1 of 3
  ASSERT_EQ(p.stops.size(), 1u);
  EXPECT_EQ(p.stops[0].instance, 0u);
  EXPECT_EQ(p.stops[0].kind, Plan::StopKind::kDrain);
}

TEST(Lifecycle, StartTimeoutKillsAndFailsWaitersWhenNothingElseCanServe) {
  Sim sim;
  sim.view.instances = {Starting(1, sim.now + seconds(15))};
  sim.view.waiters = 1;
  sim.view.concurrency_now = 1;
  sim.view.first_waiter_deadline = sim.now + seconds(16);
  Plan before = Decide(sim.view, sim.o, sim.now + seconds(14));
  EXPECT_TRUE(before.stops.empty());
  EXPECT_EQ(before.wake, sim.now + seconds(15));
  Plan after = Decide(sim.view, sim.o, sim.now + seconds(15));
  ASSERT_EQ(after.stops.size(), 1u);
  EXPECT_EQ(after.stops[0].kind, Plan::StopKind::kKill);
  EXPECT_TRUE(after.stops[0].start_timeout);
  EXPECT_TRUE(after.stops[0].fail_waiters);
  // With another instance that can serve, the waiters stay.
  sim.view.instances.push_back(Ready(1, sim.now));
  Plan other = Decide(sim.view, sim.o, sim.now + seconds(15));
  ASSERT_EQ(other.stops.size(), 1u);
  EXPECT_FALSE(other.stops[0].fail_waiters);
}

TEST(Lifecycle, UnhealthyInstanceIsKilledAndStoppingOneKilledAtItsDeadline) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now)};
  sim.view.instances[0].unhealthy = true;
  Plan p = Decide(sim.view, sim.o, sim.now);
  ASSERT_EQ(p.stops.size(), 1u);
  EXPECT_EQ(p.stops[0].kind, Plan::StopKind::kKill);
  InstanceView stopping = Ready(1, sim.now);
  stopping.state = InstanceState::kStopping;
  stopping.kill_deadline = sim.now + seconds(10);
  sim.view.instances = {stopping};
  EXPECT_TRUE(Decide(sim.view, sim.o, sim.now + seconds(9)).kills.empty());
  EXPECT_EQ(Decide(sim.view, sim.o, sim.now + seconds(10)).kills, std::vector<size_t>{0});
}

TEST(Lifecycle, DrainingInstanceStopsOnceIdleAndSettledOrAtItsDeadline) {
  Sim sim;
  sim.o.drain_settle = milliseconds(200);
  InstanceView d = Ready(1, sim.now, 2);
  d.state = InstanceState::kDraining;
  d.drain_deadline = sim.now + seconds(10);
  sim.view.instances = {d};
  sim.view.live = Version(2);
  EXPECT_TRUE(Decide(sim.view, sim.o, sim.now + seconds(1)).stops.empty());  // calls in flight
  sim.view.instances[0].in_flight = 0;
  EXPECT_TRUE(Decide(sim.view, sim.o, sim.now + milliseconds(100)).stops.empty());  // settling
  Plan settled = Decide(sim.view, sim.o, sim.now + milliseconds(200));
  ASSERT_EQ(settled.stops.size(), 1u);
  EXPECT_EQ(settled.stops[0].reason, "drained");
  sim.view.instances[0].resources = 1;  // its lease is not closed yet
  EXPECT_TRUE(Decide(sim.view, sim.o, sim.now + seconds(5)).stops.empty());
  sim.view.instances[0].in_flight = 3;
  Plan late = Decide(sim.view, sim.o, sim.now + seconds(10));
  ASSERT_EQ(late.stops.size(), 1u);
  EXPECT_EQ(late.stops[0].reason, "drain timeout");
  EXPECT_EQ(late.stops[0].kind, Plan::StopKind::kTerm);
}

// --- Upgrades ------------------------------------------------------------------

TEST(Lifecycle, RolloutStartsNewInstancesFirstAndSwitchesOnceOneIsReady) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now), Ready(1, sim.now), Ready(1, sim.now)};
  sim.view.concurrency_now = 6;
  sim.view.last_call = sim.now;
  sim.view.rollout = Version(2);
  Plan start = sim.Pass();
  EXPECT_EQ(start.start_rollout, 3u);  // as many as are live
  EXPECT_FALSE(start.switch_live);
  EXPECT_EQ(sim.Serving(1), 3u);       // the old ones keep serving
  EXPECT_EQ(sim.Pass().start_rollout, 0u);  // already starting
  // One is ready: switch, and the old ones drain.
  for (InstanceView& i : sim.view.instances) {
    if (i.version == 2) {
      i.state = InstanceState::kReady;
      break;
    }
  }
  Plan sw = sim.Pass();
  EXPECT_TRUE(sw.switch_live);
  EXPECT_EQ(sim.view.live.version, 2);
  EXPECT_EQ(sim.Count(1, InstanceState::kDraining), 3u);
  EXPECT_EQ(sim.Serving(2), 3u);
}

TEST(Lifecycle, RolloutTargetIsAtLeastOneAndMinInstancesAndCapped) {
  Sim zero;  // scaled to zero: one new instance proves the version starts
  zero.view.rollout = Version(2);
  EXPECT_EQ(zero.Pass().start_rollout, 1u);
  Sim min;
  min.view.rollout = Version(2, 4);
  EXPECT_EQ(min.Pass().start_rollout, 4u);
  Sim cap;
  cap.o.max_instances = 2;
  cap.view.rollout = Version(2, 4);
  EXPECT_EQ(cap.Pass().start_rollout, 2u);
}

TEST(Lifecycle, FirstDeployHasNothingLiveUntilTheSwitch) {
  Sim sim;
  sim.view.live = {};
  sim.view.rollout = Version(1);
  sim.view.waiters = 5;
  sim.view.concurrency_now = 5;
  Plan p = sim.Pass();
  EXPECT_EQ(p.start_rollout, 1u);
  EXPECT_EQ(p.start, 0u);  // no live version to scale
  sim.ReadyAll();
  Plan sw = sim.Pass();
  EXPECT_TRUE(sw.switch_live);
  EXPECT_EQ(sim.view.live.version, 1);
  // After the switch the autoscaler plans for the waiting calls.
  EXPECT_EQ(sim.Serving(1), 3u);
}

TEST(Lifecycle, ABadVersionIsNeverSwitchedTo) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now)};
  sim.view.concurrency_now = 2;
  sim.view.rollout = Version(2);
  sim.Pass();
  ASSERT_EQ(sim.Serving(2), 1u);
  // Its instance exited before it was ready.
  sim.view.instances.pop_back();
  sim.view.rollout_failed = true;
  Plan p = sim.Pass();
  EXPECT_FALSE(p.switch_live);
  EXPECT_EQ(p.fail_rollout, "exited");
  EXPECT_EQ(p.start_rollout, 0u);
  EXPECT_EQ(sim.view.live.version, 1);
  EXPECT_EQ(sim.Count(1, InstanceState::kReady), 1u);  // v1 untouched
}

TEST(Lifecycle, ARolloutThatNeverListensFailsAtTheStartTimeoutAndStopsItsOthers) {
  Sim sim;
  sim.view.instances = {Ready(1, sim.now), Ready(1, sim.now)};
  sim.view.concurrency_now = 4;
  sim.view.rollout = Version(2);
  sim.Pass();
  ASSERT_EQ(sim.Serving(2), 2u);
  sim.view.instances[2].start_deadline = sim.now;  // this one times out now
  Plan p = sim.Pass();
  EXPECT_EQ(p.fail_rollout, "start timeout");
  EXPECT_FALSE(p.switch_live);
  EXPECT_EQ(sim.Serving(2), 0u);
  EXPECT_EQ(sim.Count(1, InstanceState::kReady), 2u);
}

TEST(Lifecycle, InstancesOfAnOldVersionDrainAndStartingOnesStop) {
  Sim sim;
  sim.view.live = Version(3);
  sim.view.instances = {Ready(1, sim.now), Starting(2, sim.now + seconds(10)), Ready(3, sim.now)};
  sim.view.last_call = sim.now;
  Plan p = sim.Pass();
  ASSERT_EQ(p.stops.size(), 2u);
  EXPECT_EQ(p.stops[0].kind, Plan::StopKind::kDrain);
  EXPECT_EQ(p.stops[1].kind, Plan::StopKind::kTerm);
}

// --- Resource leases ---------------------------------------------------------------

TEST(Lifecycle, LeasesCloseWhenTheirOwnerDrainsOrTheyIdleOut) {
  Sim sim;
  sim.o.resource_idle = seconds(180);
  sim.view.instances = {Ready(1, sim.now), Ready(1, sim.now)};
  sim.view.instances[1].state = InstanceState::kDraining;
  sim.view.instances[1].drain_deadline = sim.now + seconds(10);
  sim.view.last_call = sim.now;
  sim.view.concurrency_now = 1;
  LeaseView busy{0, true, false, 1, sim.now - seconds(500)};
  LeaseView idle{0, true, false, 0, sim.now - seconds(180)};
  LeaseView fresh{0, true, false, 0, sim.now - seconds(10)};
  LeaseView draining_owner{1, true, false, 0, sim.now};
  LeaseView opening{1, false, false, 0, sim.now};
  sim.view.leases = {busy, idle, fresh, draining_owner, opening};
  Plan p = Decide(sim.view, sim.o, sim.now);
  EXPECT_EQ(p.close_leases, (std::vector<size_t>{1, 3}));
  EXPECT_LE(p.wake, sim.now + seconds(170));  // when `fresh` idles out
}

// --- Cluster-wide autoscaling ------------------------------------------------------

TEST(ClusterShare, MissingInstancesGoToTheNodesWithFewestThenWaitingThenRank) {
  std::vector<PeerLoad> peers = {{/*rank=*/20, 0}, {/*rank=*/30, 0}};
  // Nobody runs it; 3 needed: one each.
  EXPECT_EQ(ClusterShare(3, 0, 10, false, peers, 0, 16), 1);
  // 1 needed: the lowest rank gets it, unless calls wait elsewhere.
  EXPECT_EQ(ClusterShare(1, 0, 10, false, peers, 0, 16), 1);
  EXPECT_EQ(ClusterShare(1, 0, 40, false, peers, 0, 16), 0);
  EXPECT_EQ(ClusterShare(1, 0, 40, true, peers, 0, 16), 1) << "the node whose calls wait starts it";
  peers[0].waiting = true;
  EXPECT_EQ(ClusterShare(1, 0, 10, false, peers, 0, 16), 0);
  // Where instances already are, they stay: 2 here, 0 and 0 there, 5 needed.
  peers = {{20, 0}, {30, 0}};
  EXPECT_EQ(ClusterShare(5, 2, 10, false, peers, 0, 16), 2);
  EXPECT_EQ(ClusterShare(2, 2, 10, false, peers, 0, 16), 2) << "no instance moves when the count is met";
  // The cap bounds a node: the rest go elsewhere.
  EXPECT_EQ(ClusterShare(9, 0, 10, false, peers, 0, 2), 2);
}

TEST(ClusterShare, SurplusLeavesTheNodesWithMostThenHighestRankNeverBelowTheFloor) {
  std::vector<PeerLoad> peers = {{20, 1}, {30, 3}};
  EXPECT_EQ(ClusterShare(4, 2, 10, false, peers, 0, 16), 2) << "the node with 3 gives one up";
  EXPECT_EQ(ClusterShare(3, 2, 10, false, peers, 0, 16), 1);  // 2,1,3 -> 2,1,2 -> 2,1,1 -> 1,1,1
  EXPECT_EQ(ClusterShare(0, 2, 10, false, peers, 0, 16), 0);
  EXPECT_EQ(ClusterShare(0, 2, 10, false, peers, 1, 16), 1) << "minInstances holds on every node";
  // Ties: the highest rank goes first, so the nodes agree on who.
  peers = {{20, 1}};
  EXPECT_EQ(ClusterShare(1, 1, 10, false, peers, 0, 16), 1);
  EXPECT_EQ(ClusterShare(1, 1, 30, false, peers, 0, 16), 0);
}

TEST(ClusterShare, EveryNodeComputesTheSameSplit) {
  // Three nodes with their ranks and counts; each computes its share from
  // the others' published counts: the shares add up to the total.
  const uint64_t ranks[3] = {NodeRank("dev.lever", "svc", "n1"), NodeRank("dev.lever", "svc", "n2"),
                             NodeRank("dev.lever", "svc", "n3")};
  EXPECT_NE(ranks[0], ranks[1]);
  for (int64_t total : {0, 1, 2, 5, 7, 12}) {
    for (const auto& counts : std::vector<std::vector<int64_t>>{{0, 0, 0}, {4, 0, 0}, {1, 2, 3}, {6, 6, 0}}) {
      int64_t sum = 0;
      for (int i = 0; i < 3; ++i) {
        std::vector<PeerLoad> peers;
        for (int j = 0; j < 3; ++j) {
          if (j != i) peers.push_back({ranks[j], counts[j]});
        }
        sum += ClusterShare(total, counts[i], ranks[i], false, peers, 0, 16);
      }
      EXPECT_EQ(sum, total) << "total " << total << " from " << counts[0] << "," << counts[1] << "," << counts[2];
    }
  }
}

// Three nodes, each deciding alone from the others' published loads (as of
// their last tick), on one fake clock. Calls arrive at node 0 only; routing
// fills node 0's instances first, then the others' with room, the rest stay
// on node 0 (routing.cc PlaceCallLocked).
struct ClusterSim {
  static constexpr int kNodes = 3;
  ClusterSim() {
    for (int i = 0; i < kNodes; ++i) {
      nodes[i].o.panic_window = milliseconds(600);
      nodes[i].o.stable_window = seconds(6);
      nodes[i].o.idle_timeout = seconds(3);
      nodes[i].o.max_instances = 16;
      nodes[i].view.live = Version(1, 0, 1);  // maxInstanceLoad 1
      nodes[i].view.last_call = {};
      ranks[i] = NodeRank("dev.lever", "svc", "n" + std::to_string(i + 1));
    }
  }
  // One tick with `calls` concurrent calls arriving at node 0.
  void Tick(double calls) {
    double left = calls;
    double local[kNodes] = {};
    for (int i = 0; i < kNodes && left > 0; ++i) {
      double room = static_cast<double>(nodes[i].Count(1, InstanceState::kReady));
      local[i] = std::min(left, room);
      left -= local[i];
    }
    local[0] += left;  // waits at node 0, or over capacity there
    bool waiting0 = left > 0 && nodes[0].Count(1, InstanceState::kReady) == 0;
    PeerLoad published[kNodes];
    for (int i = 0; i < kNodes; ++i) published[i] = last[i];
    for (int i = 0; i < kNodes; ++i) {
      Sim& n = nodes[i];
      std::vector<PeerLoad> peers;
      double remote = 0;
      for (int j = 0; j < kNodes; ++j) {
        if (j == i) continue;
        peers.push_back(published[j]);
        remote += published[j].load;
      }
      SteadyDuration tick = SampleTick(n.o);
      n.now += tick;
      // As the supervisor samples in a cluster: this node's figure as it
      // published it last, so that every node adds up the same numbers.
      n.samples.push_back({n.now, tick, last[i].load + remote, last[i].load + remote});
      while (!n.samples.empty() && n.samples.front().at <= n.now - n.o.stable_window) n.samples.erase(n.samples.begin());
      n.view.concurrency_now = local[i];
      n.view.waiters = i == 0 && waiting0 ? static_cast<size_t>(left) : 0;
      if (local[i] > 0) n.view.last_call = n.now;
      n.view.peers = peers;
      n.view.rank = ranks[i];
      n.Pass();
      n.ReadyAll();  // instances start within a tick
      n.FinishDrains();
      last[i] = {ranks[i], static_cast<int64_t>(n.Serving(1)), local[i], local[i], n.view.waiters > 0,
                 n.now - n.view.last_call < n.o.idle_timeout || local[i] > 0};
    }
  }
  size_t Total() const {
    size_t t = 0;
    for (const Sim& n : nodes) t += n.Serving(1);
    return t;
  }
  int NodesRunning() const {
    int k = 0;
    for (const Sim& n : nodes) k += n.Serving(1) > 0;
    return k;
  }
  Sim nodes[kNodes];
  uint64_t ranks[kNodes];
  PeerLoad last[kNodes];
};

TEST(ClusterAutoscaler, ALoadStepIntoOneNodeSpreadsOverTheNodesThenScalesToZero) {
  ClusterSim c;
  c.Tick(1);  // a first call at node 0: it starts the instance (its call waits there)
  EXPECT_EQ(c.nodes[0].Serving(1), 1u);
  EXPECT_EQ(c.Total(), 1u);
  for (int i = 0; i < 10; ++i) c.Tick(1);
  EXPECT_EQ(c.Total(), 1u) << "one call needs one instance cluster-wide, not one per node";
  // A step to 9 concurrent calls at node 0 (maxInstanceLoad 1).
  for (int i = 0; i < 20; ++i) c.Tick(9);
  EXPECT_GE(c.Total(), 9u);
  EXPECT_LE(c.Total(), 12u) << "the nodes overshot";
  EXPECT_EQ(c.NodesRunning(), 3);
  for (const Sim& n : c.nodes) EXPECT_GE(n.Serving(1), 2u);
  for (int i = 0; i < 80; ++i) c.Tick(9);  // steady: the count settles on the need
  EXPECT_EQ(c.Total(), 9u);
  EXPECT_EQ(c.nodes[0].desired, 9);
  // The calls end: the count follows the stable window down, on every
  // node, until the idle period (3 s) ends on all of them.
  for (int i = 0; i < 20; ++i) c.Tick(0);
  EXPECT_LT(c.Total(), 9u);
  EXPECT_GE(c.Total(), 1u);
  for (int i = 0; i < 40; ++i) c.Tick(0);
  EXPECT_EQ(c.Total(), 0u) << "scale to zero on every node";
  for (const Sim& n : c.nodes) EXPECT_STREQ(n.reason.c_str(), "idle");
}

TEST(ClusterAutoscaler, AnotherNodesRecentCallsKeepAWarmInstanceHere) {
  Sim sim;
  sim.o.idle_timeout = seconds(10);
  sim.view.instances = {Ready(1, sim.now)};
  sim.view.last_call = sim.now - seconds(100);  // nothing here for long
  std::vector<PeerLoad> peers = {{NodeRank("e", "s", "b"), 0, 0, 0, false, /*recent=*/true}};
  sim.view.peers = peers;
  sim.view.rank = NodeRank("e", "s", "a");
  Plan p = sim.Pass();
  EXPECT_TRUE(p.stops.empty()) << "the cluster's one warm instance stopped";
  EXPECT_EQ(p.desired, 1);
  EXPECT_EQ(p.share, 1);
  EXPECT_GT(p.wake, sim.now) << "no pass loop on a local idle period long over";
  peers[0].recent = false;
  p = sim.Pass();
  EXPECT_EQ(p.desired, 0);
  ASSERT_EQ(p.stops.size(), 1u);
  EXPECT_EQ(p.stops[0].reason, "idle");
}

TEST(ClusterAutoscaler, CallsRelayedHereGetAnInstanceHereWhateverTheSplit) {
  // The cluster's one instance runs on the other node, yet a call relayed
  // here waits (it is never relayed on): this node starts one rather than
  // let it time out.
  Sim sim;
  sim.view.waiters = 1;
  sim.view.relayed_waiters = 1;
  sim.view.concurrency_now = 1;
  sim.view.first_waiter_deadline = sim.now + seconds(16);
  std::vector<PeerLoad> peers = {{/*rank=*/0, /*instances=*/1, 0, 0, false, true}};
  sim.view.peers = peers;
  sim.view.rank = 1;
  Plan p = sim.Pass();
  EXPECT_EQ(p.desired, 1);
  EXPECT_EQ(p.share, 1);
  EXPECT_EQ(p.start, 1u);
  // A call that arrived here waits for the other node's instance (routing
  // hands it over): the split holds, nothing here.
  sim.view.instances.clear();
  sim.view.relayed_waiters = 0;
  EXPECT_EQ(sim.Pass().start, 0u);
}

TEST(ClusterAutoscaler, OtherNodesInstancesCountAgainstPanic) {
  // 4 calls at load 2 need 2: the other node's 2 instances are enough, no
  // panic and no start here.
  Sim sim;
  sim.view.instances = {};
  sim.view.concurrency_now = 0;
  std::vector<PeerLoad> peers = {{1, 2, 4, 4, false, true}};
  sim.view.peers = peers;
  sim.view.rank = 2;
  Plan p = sim.Pass();
  EXPECT_STREQ(p.reason, "stable");
  EXPECT_EQ(p.desired, 2);
  EXPECT_EQ(p.start, 0u);
  // 12 calls there: the cluster needs 6, twice the 2 it has: it panics,
  // and this node takes its part of the 4 missing (the fewest first).
  peers[0].load = peers[0].peak = 12;
  sim.samples.push_back({sim.now, SampleTick(sim.o), 12, 12});
  p = sim.Pass();
  EXPECT_STREQ(p.reason, "panic");
  EXPECT_EQ(p.desired, 6);
  EXPECT_EQ(p.share, 3);
  EXPECT_EQ(p.start, 3u);
}

}  // namespace
}  // namespace lever::host
