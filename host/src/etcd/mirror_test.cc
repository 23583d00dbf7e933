// The watched mirror against a real 3-member etcd cluster.
#include "mirror.h"

#include <gtest/gtest.h>

#include <mutex>

#include "test_cluster.h"
#include "testutil.h"

namespace lever::host::etcd {
namespace {

using host::testing::WaitFor;
using testing::Cluster;
using testing::Connect;

int64_t Put(Client& c, const std::string& key, const std::string& value) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  pb::PutResponse resp;
  Status s = c.Put(req, &resp);
  EXPECT_TRUE(s.ok()) << s.message();
  return resp.header().revision();
}

int64_t Delete(Client& c, const std::string& key) {
  pb::DeleteRangeRequest req;
  req.set_key(key);
  pb::DeleteRangeResponse resp;
  EXPECT_TRUE(c.DeleteRange(req, &resp).ok());
  return resp.header().revision();
}

std::string ValueOf(const Mirror& m, const std::string& key) {
  pb::KeyValue kv;
  return m.Get(key, &kv) ? kv.value() : "<none>";
}

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = Cluster::Start({}, &cluster_);
    ASSERT_TRUE(s.ok()) << s.message();
    writer_ = Connect(cluster_->Endpoints());
  }
  std::unique_ptr<Cluster> cluster_;
  std::shared_ptr<Client> writer_;
};

TEST_F(MirrorTest, LoadsThePrefixThenFollowsEveryChange) {
  Put(*writer_, "/p/a", "1");
  Put(*writer_, "/p/b", "2");
  Put(*writer_, "/other", "x");
  std::unique_ptr<Mirror> m;
  MirrorOptions mo;
  mo.prefix = "/p/";
  mo.page_keys = 1;  // every key its own page: the snapshot is still one revision
  ASSERT_TRUE(Mirror::Start(Connect(cluster_->Endpoints()), mo, &m).ok());
  EXPECT_EQ(ValueOf(*m, "/p/a"), "1");
  EXPECT_EQ(ValueOf(*m, "/p/b"), "2");
  EXPECT_EQ(ValueOf(*m, "/other"), "<none>");
  ASSERT_TRUE(WaitFor([&] { return m->connected(); }));

  Put(*writer_, "/p/a", "10");
  int64_t rev = Delete(*writer_, "/p/b");
  ASSERT_TRUE(m->WaitForRevisionForTest(rev, std::chrono::seconds(10)));
  EXPECT_EQ(ValueOf(*m, "/p/a"), "10");
  EXPECT_EQ(ValueOf(*m, "/p/b"), "<none>");
  auto list = m->List("/p/");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].key(), "/p/a");
}

TEST_F(MirrorTest, SubscribersSeeTheCurrentStateThenEachChangeOnce) {
  Put(*writer_, "/p/x/1", "a");
  std::unique_ptr<Mirror> m;
  ASSERT_TRUE(Mirror::Start(Connect(cluster_->Endpoints()), {"/p/"}, &m).ok());
  std::mutex mu;
  std::vector<std::string> seen;
  uint64_t id = m->Subscribe("/p/x/", [&](const std::vector<Change>& batch) {
    std::lock_guard lock(mu);
    for (const Change& c : batch) seen.push_back((c.deleted ? "-" : "+") + c.kv.key() + "=" + c.kv.value());
  });
  Put(*writer_, "/p/y", "not mine");
  Put(*writer_, "/p/x/2", "b");
  int64_t rev = Delete(*writer_, "/p/x/1");
  ASSERT_TRUE(m->WaitForRevisionForTest(rev, std::chrono::seconds(10)));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(seen, (std::vector<std::string>{"+/p/x/1=a", "+/p/x/2=b", "-/p/x/1="}));
  }
  m->Unsubscribe(id);
  rev = Put(*writer_, "/p/x/3", "c");
  ASSERT_TRUE(m->WaitForRevisionForTest(rev, std::chrono::seconds(10)));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen.size(), 3u);
}

TEST_F(MirrorTest, KeepsFollowingWhenItsMemberIsKilled) {
  auto client = Connect(cluster_->Endpoints());
  std::unique_ptr<Mirror> m;
  ASSERT_TRUE(Mirror::Start(client, {"/p/"}, &m).ok());
  ASSERT_TRUE(WaitFor([&] { return m->connected(); }));
  cluster_->Kill(static_cast<int>(client->preferred()));
  for (int i = 0; i < 20; ++i) {
    int64_t rev = Put(*writer_, "/p/k", std::to_string(i));
    ASSERT_TRUE(m->WaitForRevisionForTest(rev, std::chrono::seconds(15))) << i;
  }
  EXPECT_EQ(ValueOf(*m, "/p/k"), "19");
  EXPECT_TRUE(WaitFor([&] { return m->connected(); }));
}

TEST_F(MirrorTest, ReloadsEverythingWhenEtcdCompactedPastIt) {
  // The mirror reaches member 0 through a link the test cuts; while it is
  // cut, keys change and the history is compacted, so the watch cannot
  // resume where it was.
  Put(*writer_, "/p/gone", "1");
  Put(*writer_, "/p/kept", "1");
  std::unique_ptr<testing::LinkCutter> link;
  ASSERT_TRUE(testing::LinkCutter::Start(cluster_->Endpoint(0), &link).ok());
  std::unique_ptr<Mirror> m;
  ASSERT_TRUE(Mirror::Start(Connect(link->endpoint()), {"/p/"}, &m).ok());
  ASSERT_TRUE(WaitFor([&] { return m->connected(); }));
  std::mutex mu;
  std::vector<std::string> seen;
  m->Subscribe("/p/", [&](const std::vector<Change>& batch) {
    std::lock_guard lock(mu);
    for (const Change& c : batch) seen.push_back((c.deleted ? "-" : "+") + c.kv.key());
  });
  link->Cut();
  ASSERT_TRUE(WaitFor([&] { return !m->connected(); }));
  Delete(*writer_, "/p/gone");
  Put(*writer_, "/p/new", "1");
  int64_t rev = Put(*writer_, "/p/filler", "1");
  ASSERT_TRUE(writer_->Compact(rev).ok());
  // A linearizable read on member 0 returns once it applied all of that.
  pb::RangeRequest probe;
  probe.set_key("/p/filler");
  pb::RangeResponse probed;
  ASSERT_TRUE(Connect(cluster_->Endpoint(0))->Range(probe, &probed).ok());
  link->Mend();
  ASSERT_TRUE(m->WaitForRevisionForTest(rev, std::chrono::seconds(15)));
  EXPECT_EQ(m->reloads(), 1);
  EXPECT_EQ(ValueOf(*m, "/p/gone"), "<none>");
  EXPECT_EQ(ValueOf(*m, "/p/new"), "1");
  EXPECT_EQ(ValueOf(*m, "/p/kept"), "1");
  EXPECT_TRUE(WaitFor([&] { return m->connected(); }));
  std::lock_guard lock(mu);
  // The initial state, then the reload's difference: no change is lost.
  EXPECT_EQ(seen, (std::vector<std::string>{"+/p/gone", "+/p/kept", "-/p/gone", "+/p/filler", "+/p/new"}));
}

TEST_F(MirrorTest, ServesTheLastStateWhenEtcdIsGone) {
  int64_t rev = Put(*writer_, "/p/a", "1");
  std::unique_ptr<Mirror> m;
  ASSERT_TRUE(Mirror::Start(Connect(cluster_->Endpoints()), {"/p/"}, &m).ok());
  ASSERT_TRUE(m->WaitForRevisionForTest(rev, std::chrono::seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return m->connected(); }));
  for (int i = 0; i < cluster_->size(); ++i) cluster_->Kill(i);
  EXPECT_TRUE(WaitFor([&] { return !m->connected(); }));
  EXPECT_EQ(ValueOf(*m, "/p/a"), "1");
  EXPECT_EQ(m->List("/p/").size(), 1u);
}

TEST_F(MirrorTest, StartFailsClearlyWithoutEtcd) {
  for (int i = 0; i < cluster_->size(); ++i) cluster_->Kill(i);
  std::unique_ptr<Mirror> m;
  Status s = Mirror::Start(Connect(cluster_->Endpoints()), {"/p/"}, &m);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("etcd is unreachable"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lever::host::etcd
