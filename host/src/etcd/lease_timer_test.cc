// Every decision of the lease timer, on fake time.
#include "lease_timer.h"

#include <gtest/gtest.h>

namespace lever::host::etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const SteadyTime t0 = SteadyTime() + seconds(1000);

TEST(LeaseTimer, ValidForOneTtlFromWhenTheGrantLeft) {
  LeaseTimer t(seconds(3), t0);
  EXPECT_TRUE(t.Alive(t0));
  EXPECT_TRUE(t.Alive(t0 + milliseconds(2999)));
  EXPECT_FALSE(t.Alive(t0 + seconds(3)));
  EXPECT_EQ(t.valid_until(), t0 + seconds(3));
}

TEST(LeaseTimer, KeepAliveDueEveryThirdOfTheTtl) {
  LeaseTimer t(seconds(3), t0);
  EXPECT_EQ(t.NextKeepAlive(), t0 + seconds(1));
  t.KeepAliveSent(t0 + seconds(1));
  EXPECT_EQ(t.NextKeepAlive(), t0 + seconds(2));
  // A TTL that does not divide by three is not rounded down to zero.
  LeaseTimer two(seconds(2), t0);
  EXPECT_EQ(two.NextKeepAlive(), t0 + milliseconds(666));
}

TEST(LeaseTimer, AnAnswerExtendsFromWhenItsRequestLeftNotFromWhenItCame) {
  LeaseTimer t(seconds(3), t0);
  t.KeepAliveSent(t0 + seconds(1));
  // The reply is slow: it arrives 1.5 s later. etcd renewed at some point
  // after t0+1 s, so all we may count on is t0+1 s + 3 s.
  t.KeepAliveAnswered(3);
  EXPECT_EQ(t.valid_until(), t0 + seconds(4));
  EXPECT_TRUE(t.Alive(t0 + milliseconds(3999)));
  EXPECT_FALSE(t.Alive(t0 + seconds(4)));
}

TEST(LeaseTimer, AnswersPairWithTheOldestRequestInOrder) {
  LeaseTimer t(seconds(3), t0);
  t.KeepAliveSent(t0 + seconds(1));
  t.KeepAliveSent(t0 + seconds(2));
  t.KeepAliveAnswered(3);  // for the one sent at +1 s
  EXPECT_EQ(t.valid_until(), t0 + seconds(4));
  t.KeepAliveAnswered(3);  // for +2 s
  EXPECT_EQ(t.valid_until(), t0 + seconds(5));
  // An answer with nothing outstanding counts for nothing.
  t.KeepAliveAnswered(3);
  EXPECT_EQ(t.valid_until(), t0 + seconds(5));
}

TEST(LeaseTimer, AnAnswerNeverShortensTheLease) {
  LeaseTimer t(seconds(10), t0);
  t.KeepAliveSent(t0 + seconds(1));
  t.KeepAliveAnswered(2);  // etcd granted less this time
  EXPECT_EQ(t.valid_until(), t0 + seconds(10));
}

TEST(LeaseTimer, EtcdSayingTheLeaseIsGoneEndsItAtOnce) {
  LeaseTimer t(seconds(3), t0);
  t.KeepAliveSent(t0 + seconds(1));
  t.KeepAliveAnswered(0);
  EXPECT_TRUE(t.gone());
  EXPECT_FALSE(t.Alive(t0 + seconds(1)));
}

TEST(LeaseTimer, AnUnansweredKeepAliveStallsAfterAThirdOfTheTtl) {
  LeaseTimer t(seconds(3), t0);
  EXPECT_FALSE(t.Stalled(t0 + seconds(100)));  // nothing outstanding
  t.KeepAliveSent(t0 + seconds(1));
  EXPECT_FALSE(t.Stalled(t0 + seconds(2)));
  EXPECT_TRUE(t.Stalled(t0 + milliseconds(2001)));
  EXPECT_EQ(t.NextDecision(), t0 + seconds(2));  // the next renewal comes first
}

TEST(LeaseTimer, AfterAStreamResetLateAnswersDoNotCount) {
  LeaseTimer t(seconds(3), t0);
  t.KeepAliveSent(t0 + seconds(1));
  t.StreamReset();
  EXPECT_FALSE(t.Stalled(t0 + seconds(2)));
  t.KeepAliveAnswered(3);
  EXPECT_EQ(t.valid_until(), t0 + seconds(3));
}

TEST(LeaseTimer, APausedNodeFindsItsLeaseDeadWithoutHearingFromEtcd) {
  // SIGSTOP past the TTL: when the node runs again the first thing it sees
  // is the clock, and the clock alone says the lease may be gone.
  LeaseTimer t(seconds(3), t0);
  t.KeepAliveSent(t0 + seconds(1));
  t.KeepAliveAnswered(3);
  SteadyTime resumed = t0 + seconds(30);
  EXPECT_FALSE(t.Alive(resumed));
  // A reply that was in flight before the pause cannot revive it: it pairs
  // with nothing, or with a request sent before the pause.
  t.KeepAliveAnswered(3);
  EXPECT_FALSE(t.Alive(resumed));
}

TEST(LeaseTimer, NextDecisionIsTheEarliestOfRenewalAndExpiry) {
  LeaseTimer t(seconds(3), t0);
  EXPECT_EQ(t.NextDecision(), t0 + seconds(1));
  t.KeepAliveSent(t0 + seconds(2));  // late, with its answer outstanding
  EXPECT_EQ(t.NextDecision(), t0 + seconds(3));  // expiry comes first
}

}  // namespace
}  // namespace lever::host::etcd
