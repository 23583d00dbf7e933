// The etcd registry backend beyond the shared contract: several nodes on
// one cluster, member loss, etcd gone, URLs. Real 3-member etcd clusters.
#include "registry_etcd.h"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "etcd/test_cluster.h"
#include "testutil.h"

namespace lever::host {
namespace {

using etcd::testing::Cluster;
using testing::CheckAndDeleteSample;
using testing::WaitFor;
using testing::WriteSample;

class EtcdRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = Cluster::Start({}, &cluster_);
    ASSERT_TRUE(s.ok()) << s.message();
    url_ = "etcd://" + cluster_->Endpoints();
  }
  RegistryPtr Open(const std::string& url = "") {
    RegistryPtr reg;
    Status s = OpenRegistry(url.empty() ? url_ : url, "", &reg);
    EXPECT_TRUE(s.ok()) << s.message();
    return reg;
  }
  std::unique_ptr<Cluster> cluster_;
  std::string url_;
};

TEST_F(EtcdRegistryTest, AReopenedRegistryFindsEverything) {
  WriteSample(*Open());
  CheckAndDeleteSample(*Open());
}

TEST_F(EtcdRegistryTest, EachNodesWritesReachTheOthersThroughTheWatch) {
  RegistryPtr a = Open(), b = Open();
  ASSERT_TRUE(a->CreateEnvironment({"shared.lever", "made on a"}).ok());
  EnvironmentInfo env;
  ASSERT_TRUE(WaitFor([&] { return b->GetEnvironment("shared.lever", &env).ok(); }));
  EXPECT_EQ(env.description, "made on a");
  ASSERT_TRUE(b->CreateService({"shared.lever", "svc", "made on b", false, 0, 1}).ok());
  ServiceInfo got;
  ASSERT_TRUE(WaitFor([&] { return a->GetService("shared.lever", "svc", &got).ok(); }));
  got.live_version = 7;
  ASSERT_TRUE(a->UpdateService(got).ok());
  ASSERT_TRUE(WaitFor([&] { return b->GetService("shared.lever", "svc", &got).ok() && got.live_version == 7; }));
  ASSERT_TRUE(b->DeleteEnvironment("shared.lever").ok());
  ASSERT_TRUE(WaitFor([&] { return a->GetEnvironment("shared.lever", &env).code() == Code::kNotFound; }));
  EXPECT_EQ(a->GetService("shared.lever", "svc", &got).code(), Code::kNotFound);
}

TEST_F(EtcdRegistryTest, VersionsAreUniqueAcrossNodesAndAnUpdateKeepsAllocations) {
  // Three nodes allocate versions of one service while one of them keeps
  // changing its description: no version twice, none lost to the update.
  std::vector<RegistryPtr> nodes = {Open(), Open(), Open()};
  ASSERT_TRUE(nodes[0]->CreateService({"dev.lever", "counter", "", false, 0, 1}).ok());
  std::mutex mu;
  std::set<int64_t> seen;
  std::vector<std::thread> threads;
  for (int n = 0; n < 3; ++n) {
    threads.emplace_back([&, n] {
      for (int i = 0; i < 20; ++i) {
        int64_t v = 0;
        Status s = nodes[n]->AllocateVersion("dev.lever", "counter", &v);
        ASSERT_TRUE(s.ok()) << s.message();
        std::lock_guard lock(mu);
        EXPECT_TRUE(seen.insert(v).second) << v;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 20; ++i) {
      ServiceInfo info{"dev.lever", "counter", "d" + std::to_string(i), false, 0, 0};
      ASSERT_TRUE(nodes[1]->UpdateService(info).ok());
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.size(), 60u);
  // Another node's view catches up through its watch.
  ServiceInfo got;
  ASSERT_TRUE(WaitFor([&] {
    return nodes[2]->GetService("dev.lever", "counter", &got).ok() && got.description == "d19" &&
           got.next_version == 61;
  }));
}

TEST_F(EtcdRegistryTest, NodesSeedingAtOnceMakeOneSetOfDefaults) {
  std::vector<RegistryPtr> regs(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { regs[i] = Open(); });
  for (auto& t : threads) t.join();
  std::vector<EnvironmentInfo> envs;
  ASSERT_TRUE(regs[2]->ListEnvironments(&envs).ok());
  ASSERT_EQ(envs.size(), 2u);
  ServiceInfo admin;
  ASSERT_TRUE(regs[1]->GetService("admin.lever", "admin", &admin).ok());
  EXPECT_EQ(admin.live_version, 1);
  EXPECT_EQ(admin.next_version, 2);
}

TEST_F(EtcdRegistryTest, PrefixesKeepClustersApart) {
  RegistryPtr a = Open(url_ + "/team-a"), b = Open(url_ + "/team-b/");
  ASSERT_TRUE(a->CreateEnvironment({"only.lever", ""}).ok());
  EnvironmentInfo env;
  EXPECT_EQ(b->GetEnvironment("only.lever", &env).code(), Code::kNotFound);
  auto& parts = dynamic_cast<EtcdRegistry&>(*b);
  EXPECT_EQ(parts.root(), "/team-b/");
}

TEST_F(EtcdRegistryTest, KeepsWorkingWhenOneMemberIsKilled) {
  RegistryPtr reg = Open();
  ASSERT_TRUE(reg->CreateEnvironment({"before.lever", ""}).ok());
  cluster_->Kill(0);
  WriteSample(*reg);
  CheckAndDeleteSample(*reg);
  EnvironmentInfo env;
  EXPECT_TRUE(reg->GetEnvironment("before.lever", &env).ok());
}

TEST_F(EtcdRegistryTest, WithEtcdGoneReadsComeFromTheCacheAndWritesAreRefusedClearly) {
  RegistryPtr reg = Open();
  ASSERT_TRUE(reg->CreateService({"dev.lever", "svc", "kept", false, 0, 1}).ok());
  // Another node's write, so this node's cache is what the watch made it.
  ASSERT_TRUE(Open()->AddCodeVersion({"dev.lever", "svc", 1, "{}", 0}).ok());
  auto& mirror = dynamic_cast<EtcdRegistry&>(*reg).mirror();
  ASSERT_TRUE(WaitFor([&] {
    etcd::pb::KeyValue kv;
    return mirror.Get("/lever/ver/dev.lever/svc/00000000000000000001", &kv);
  }));
  CodeVersionInfo cv;
  for (int i = 0; i < cluster_->size(); ++i) cluster_->Kill(i);
  ASSERT_TRUE(WaitFor([&] { return !mirror.connected(); }));

  ServiceInfo got;
  Status gs = reg->GetService("dev.lever", "svc", &got);
  ASSERT_TRUE(gs.ok()) << gs.message();
  EXPECT_EQ(got.description, "kept");
  std::vector<ServiceInfo> list;
  ASSERT_TRUE(reg->ListServices("dev.lever", &list).ok());
  EXPECT_EQ(list.size(), 1u);
  EXPECT_TRUE(reg->GetCodeVersion("dev.lever", "svc", 1, &cv).ok());

  int64_t v;
  Status s = reg->AllocateVersion("dev.lever", "svc", &v);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("etcd is unreachable at " + cluster_->Endpoint(0)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("refused until etcd is back"), std::string::npos) << s.message();
  EXPECT_EQ(reg->CreateEnvironment({"new.lever", ""}).code(), Code::kUnavailable);

  // Back again: writes work, and the cache follows again.
  ASSERT_TRUE(cluster_->RestartAll().ok());
  ASSERT_TRUE(WaitFor([&] { return reg->AllocateVersion("dev.lever", "svc", &v).ok(); }, std::chrono::seconds(30)));
  EXPECT_EQ(v, 1);
  EXPECT_TRUE(WaitFor([&] { return mirror.connected(); }, std::chrono::seconds(20)));
}

TEST_F(EtcdRegistryTest, OpeningWithoutEtcdFailsClearly) {
  for (int i = 0; i < cluster_->size(); ++i) cluster_->Kill(i);
  RegistryPtr reg;
  Status s = OpenRegistry(url_, "", &reg);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("etcd is unreachable"), std::string::npos) << s.message();
}

TEST(EtcdRegistryUrl, BadUrlsAreRejected) {
  RegistryPtr reg;
  for (const char* url : {"etcd:", "etcd:h1:2379", "etcd://", "etcd://h1", "etcd://h1:2379,", "etcd://h1:x",
                          "etcd://h1:2379/", "etcd://h1:2379//a", "etcd://h1:2379/a b", "etcd://h1:2379/a?x"}) {
    Status s = OpenRegistry(url, "", &reg);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << url << ": " << s.message();
  }
}

}  // namespace
}  // namespace lever::host
