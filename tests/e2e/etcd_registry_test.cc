// leverd on the etcd registry (`--registry etcd://...`) of a real 3-member
// etcd cluster: deploys and calls, a restart that keeps everything, one
// member lost, and etcd gone (calls still served, deploys refused clearly).
#include <gtest/gtest.h>

#include "etcd/test_cluster.h"
#include "harness.h"

namespace lever::e2e {
namespace {

constexpr char kService[] = R"({"name": "etcdservice", "entry": ["./serve"]})";

class EtcdRegistryE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = host::etcd::testing::Cluster::Start({}, &etcd_);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  Leverd::Options NodeOptions(const std::string& data_dir = "") {
    Leverd::Options o;
    o.data_dir = data_dir;
    o.extra_flags = {"--registry", "etcd://" + etcd_->Endpoints()};
    return o;
  }
  static void ExpectHello(const Leverd& node, const std::string& name) {
    CommandResult r = node.Lever({"invoke", "/etcdservice/BasicHello", "\"" + name + "\""});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "\"hello " + name + "\"\n");
  }
  std::unique_ptr<host::etcd::testing::Cluster> etcd_;
};

TEST_F(EtcdRegistryE2E, DeployCallAndARestartThatKeepsEverything) {
  TempDir data;
  {
    Leverd node(NodeOptions(data.path()));
    node.Start();
    CommandResult d = node.DeployTestService(kService);
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
    d = node.DeployTestService(kService);
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
    EXPECT_NE(d.out.find("version 2"), std::string::npos) << d.out;
    ExpectHello(node, "one");
    ASSERT_EQ(node.Stop(), 0);
  }
  // The services and live versions are in etcd, the code in the data dir.
  Leverd again(NodeOptions(data.path()));
  again.Start();
  ExpectHello(again, "two");
  CommandResult d = again.DeployTestService(kService);
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("version 3"), std::string::npos) << d.out;
}

TEST_F(EtcdRegistryE2E, OneMemberLostChangesNothing) {
  Leverd node(NodeOptions());
  node.Start();
  ASSERT_EQ(node.DeployTestService(kService).exit_code, 0);
  etcd_->Kill(1);
  ExpectHello(node, "still");
  CommandResult d = node.DeployTestService(kService);
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("version 2"), std::string::npos) << d.out;
  ExpectHello(node, "after");
}

TEST_F(EtcdRegistryE2E, WithEtcdGoneCallsAreServedAndDeploysRefusedClearly) {
  Leverd node(NodeOptions());
  node.Start();
  ASSERT_EQ(node.DeployTestService(kService).exit_code, 0);
  ExpectHello(node, "warm");
  for (int i = 0; i < etcd_->size(); ++i) etcd_->Kill(i);
  ExpectHello(node, "cached");
  CommandResult d = node.DeployTestService(kService);
  EXPECT_NE(d.exit_code, 0);
  EXPECT_NE(d.err.find("etcd is unreachable"), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("refused until etcd is back"), std::string::npos) << d.err;
  // And once etcd is back, deploys work again.
  ASSERT_TRUE(etcd_->RestartAll().ok());
  ASSERT_TRUE(WaitUntil([&] { return node.DeployTestService(kService).exit_code == 0; }, std::chrono::seconds(30)));
  ExpectHello(node, "back");
}

TEST_F(EtcdRegistryE2E, LeverdRefusesToStartWithoutEtcd) {
  for (int i = 0; i < etcd_->size(); ++i) etcd_->Kill(i);
  TempDir data;
  CommandResult r = RunCommand({LeverdPath(), "--listen", "127.0.0.1:0", "--data-dir", data.path(), "--registry",
                                "etcd://" + etcd_->Endpoints()},
                               "", std::chrono::seconds(60));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("etcd is unreachable at " + etcd_->Endpoint(0)), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lever::e2e
