// Sessions, leased keys and ownership against a real 3-member etcd cluster.
#include "session.h"

#include <gtest/gtest.h>

#include <atomic>

#include "test_cluster.h"
#include "testutil.h"

namespace lever::host::etcd {
namespace {

using host::testing::WaitFor;
using testing::Cluster;
using testing::Connect;

bool Exists(Client& c, const std::string& key) {
  pb::RangeRequest req;
  req.set_key(key);
  pb::RangeResponse resp;
  return c.Range(req, &resp).ok() && resp.kvs_size() == 1;
}

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = Cluster::Start({}, &cluster_);
    ASSERT_TRUE(s.ok()) << s.message();
    client_ = Connect(cluster_->Endpoints());
  }
  std::unique_ptr<Session> NewSession(std::chrono::seconds ttl = std::chrono::seconds(1),
                                      ClockPtr clock = RealClock()) {
    SessionOptions so;
    so.ttl = ttl;
    so.clock = std::move(clock);
    so.on_lost = [this] { ++lost_; };
    std::unique_ptr<Session> s;
    Status st = Session::Start(Connect(cluster_->Endpoints()), so, &s);
    EXPECT_TRUE(st.ok()) << st.message();
    return s;
  }
  std::unique_ptr<Cluster> cluster_;
  std::shared_ptr<Client> client_;
  std::atomic<int> lost_{0};
};

TEST_F(SessionTest, OneOwnerPerKeyWithIncreasingFencingTokens) {
  auto a = NewSession();
  auto b = NewSession();
  Ownership oa, ob;
  ASSERT_TRUE(a->Acquire("/r/x", "node-a", &oa).ok());
  EXPECT_TRUE(oa.owned);
  EXPECT_TRUE(a->Holds(oa));
  EXPECT_GT(oa.revision, 0);
  ASSERT_TRUE(b->Acquire("/r/x", "node-b", &ob).ok());
  EXPECT_FALSE(ob.owned);
  EXPECT_FALSE(b->Holds(ob));
  EXPECT_EQ(ob.value, "node-a");
  EXPECT_EQ(ob.revision, oa.revision);
  EXPECT_EQ(ob.lease, a->lease());
  // Acquiring again what one holds answers the same ownership.
  Ownership again;
  ASSERT_TRUE(a->Acquire("/r/x", "node-a", &again).ok());
  EXPECT_TRUE(again.owned);
  EXPECT_EQ(again.revision, oa.revision);

  // A release of a stale token deletes nothing; the right one does.
  ASSERT_TRUE(a->Release("/r/x", oa.revision - 1).ok());
  EXPECT_TRUE(Exists(*client_, "/r/x"));
  ASSERT_TRUE(a->Release("/r/x", oa.revision).ok());
  ASSERT_TRUE(b->Acquire("/r/x", "node-b", &ob).ok());
  EXPECT_TRUE(ob.owned);
  EXPECT_GT(ob.revision, oa.revision);
}

TEST_F(SessionTest, KeepAlivesHoldTheLeaseAndItsKeysPastTheTtl) {
  auto s = NewSession();
  ASSERT_TRUE(s->Put("/n/me", "up").ok());
  // Renewals answered by etcd move the local deadline on; etcd keeps the key.
  SteadyTime first = s->valid_until();
  ASSERT_TRUE(WaitFor([&] { return s->valid_until() > first + std::chrono::seconds(2); }));
  EXPECT_TRUE(Exists(*client_, "/n/me"));
  EXPECT_TRUE(s->Alive());
  EXPECT_EQ(lost_, 0);
}

TEST_F(SessionTest, KeepAlivesMovePastAKilledMember) {
  auto client = Connect(cluster_->Endpoints());
  SessionOptions so;
  // Long enough for the survivors to elect a leader (500 ms election timeout,
  // several rounds on a loaded machine) before the lease would run out: the
  // member killed may be the leader, and "hasleader" streams wait for one.
  so.ttl = std::chrono::seconds(5);
  so.clock = RealClock();
  so.on_lost = [this] { ++lost_; };
  std::unique_ptr<Session> s;
  ASSERT_TRUE(Session::Start(client, so, &s).ok());
  ASSERT_TRUE(s->Put("/n/me", "up").ok());
  cluster_->Kill(static_cast<int>(client->preferred()));
  SteadyTime at_kill = s->valid_until();
  ASSERT_TRUE(WaitFor([&] { return s->valid_until() > at_kill + std::chrono::seconds(2); },
                      std::chrono::seconds(20)))
      << "lost: " << lost_;
  EXPECT_TRUE(s->Alive());
  EXPECT_EQ(lost_, 0);
  EXPECT_TRUE(Exists(*client_, "/n/me"));
}

TEST_F(SessionTest, ADeadHoldersKeyIsTakenOnlyAfterItsLeaseRanOut) {
  auto a = NewSession();
  Ownership oa;
  ASSERT_TRUE(a->Acquire("/r/y", "node-a", &oa).ok());
  ASSERT_TRUE(oa.owned);
  a->AbandonForTest();  // node a dies: nothing renews its lease
  SteadyTime a_deadline = a->valid_until();
  auto b = NewSession();
  Ownership ob;
  SteadyTime owned_by = {};
  ASSERT_TRUE(WaitFor(
      [&] {
        Status s = b->Acquire("/r/y", "node-b", &ob);
        owned_by = std::chrono::steady_clock::now();
        return s.ok() && ob.owned;
      },
      std::chrono::seconds(20)));
  // Never while a's lease could still be alive: a itself had stopped
  // trusting it before b's winning transaction was answered.
  EXPECT_GE(owned_by, a_deadline);
  EXPECT_FALSE(a->Alive());
  EXPECT_GT(ob.revision, oa.revision);
}

TEST_F(SessionTest, APausedNodeDropsItsLeaseOnItsOwnClock) {
  // The fake clock jumps past the TTL, as a SIGSTOPped leverd's clock does
  // when it runs again: the session gives up before etcd says anything.
  auto clock = std::make_shared<FakeClock>();
  auto s = NewSession(std::chrono::seconds(5), clock);
  Ownership o;
  ASSERT_TRUE(s->Acquire("/r/z", "me", &o).ok());
  ASSERT_TRUE(s->Holds(o));
  clock->Advance(std::chrono::milliseconds(4999));
  EXPECT_TRUE(s->Holds(o));
  clock->Advance(std::chrono::milliseconds(1));
  EXPECT_FALSE(s->Holds(o));  // decided at once, from the clock alone
  s->WakeForTest();
  ASSERT_TRUE(WaitFor([&] { return lost_ == 1; }));
  Status st = s->Acquire("/r/other", "me", &o);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("expired"), std::string::npos) << st.message();
  EXPECT_EQ(s->Put("/n/me", "up").code(), Code::kFailedPrecondition);
}

TEST_F(SessionTest, RevokeDeletesTheLeasedKeysAtOnce) {
  auto s = NewSession(std::chrono::seconds(30));
  ASSERT_TRUE(s->Put("/n/a", "1").ok());
  ASSERT_TRUE(s->Put("/n/b", "1").ok());
  ASSERT_TRUE(s->Revoke().ok());
  EXPECT_FALSE(Exists(*client_, "/n/a"));
  EXPECT_FALSE(Exists(*client_, "/n/b"));
  EXPECT_FALSE(s->Alive());
}

TEST_F(SessionTest, EtcdGoneEndsTheSessionWithinItsTtl) {
  auto s = NewSession();
  for (int i = 0; i < cluster_->size(); ++i) cluster_->Kill(i);
  ASSERT_TRUE(WaitFor([&] { return lost_ == 1; }, std::chrono::seconds(20)));
  EXPECT_FALSE(s->Alive());
}

}  // namespace
}  // namespace lever::host::etcd
