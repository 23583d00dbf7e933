#include "lever/host/registry.h"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "etcd/test_cluster.h"
#include "testutil.h"

namespace lever::host {
namespace {

using testing::CheckAndDeleteSample;
using testing::TempDir;
using testing::WriteSample;

// The contract every backend must meet, run against each URL; "etcd" is a
// real 3-member etcd cluster started for the test.
class RegistryContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url = GetParam();
    if (url == "etcd") {
      Status s = etcd::testing::Cluster::Start({}, &cluster_);
      ASSERT_TRUE(s.ok()) << s.message();
      url = "etcd://" + cluster_->Endpoints() + "/contract";
    }
    Status s = OpenRegistry(url, dir_.path(), &reg_);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  void TearDown() override { reg_.reset(); }
  std::unique_ptr<etcd::testing::Cluster> cluster_;
  TempDir dir_;
  RegistryPtr reg_;
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryContract, ::testing::Values("embedded:", "embedded::memory:", "etcd"),
                         [](const auto& param_info) {
                           std::string name = param_info.param;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST_P(RegistryContract, VersionsAreAllocatedOnceEachUnderConcurrency) {
  ASSERT_TRUE(reg_->CreateService({"dev.lever", "counter", "", false, 0, 1}).ok());
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<int64_t> seen;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        int64_t v = 0;
        ASSERT_TRUE(reg_->AllocateVersion("dev.lever", "counter", &v).ok());
        std::lock_guard lock(mu);
        EXPECT_TRUE(seen.insert(v).second) << v;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(seen.size(), 100u);
  EXPECT_EQ(*seen.begin(), 1);
  EXPECT_EQ(*seen.rbegin(), 100);
}

TEST_P(RegistryContract, ServicesAndVersions) {
  ServiceInfo s;
  s.env = "dev.lever";
  s.name = "svc";
  s.description = "first";
  ASSERT_TRUE(reg_->CreateService(s).ok());
  ServiceInfo got;
  ASSERT_TRUE(reg_->GetService("dev.lever", "svc", &got).ok());
  EXPECT_EQ(got.live_version, 0);
  EXPECT_EQ(got.next_version, 1);
  EXPECT_EQ(reg_->GetService("dev.lever", "other", &got).code(), Code::kNotFound);
  ASSERT_TRUE(reg_->AddCodeVersion({"dev.lever", "svc", 1, "{\"name\":\"svc\"}", 0}).ok());
  CodeVersionInfo cv;
  ASSERT_TRUE(reg_->GetCodeVersion("dev.lever", "svc", 1, &cv).ok());
  ASSERT_TRUE(reg_->DeleteCodeVersion("dev.lever", "svc", 1).ok());
  EXPECT_EQ(reg_->GetCodeVersion("dev.lever", "svc", 1, &cv).code(), Code::kNotFound);
}

TEST_P(RegistryContract, SeedsDefaultEnvironmentsAndAdmin) {
  RegistryPtr reg = reg_;
  std::vector<EnvironmentInfo> envs;
  ASSERT_TRUE(reg->ListEnvironments(&envs).ok());
  ASSERT_EQ(envs.size(), 2u);
  EXPECT_EQ(envs[0].name, "admin.lever");
  EXPECT_EQ(envs[0].description, "The admin environment");
  EXPECT_EQ(envs[1].name, "dev.lever");
  EXPECT_EQ(envs[1].description, "The default environment");
  ServiceInfo admin;
  ASSERT_TRUE(reg->GetService("admin.lever", "admin", &admin).ok());
  EXPECT_EQ(admin.live_version, 1);
  EXPECT_FALSE(admin.is_private);
}

TEST(Registry, UnknownSchemeRejected) {
  RegistryPtr reg;
  EXPECT_EQ(OpenRegistry("zookeeper://x", "/tmp", &reg).code(), Code::kInvalidArgument);
  EXPECT_EQ(OpenRegistry("no-scheme", "/tmp", &reg).code(), Code::kInvalidArgument);
}

TEST_P(RegistryContract, CrudRules) {
  WriteSample(*reg_);
  CheckAndDeleteSample(*reg_);
}

TEST(Registry, EmbeddedPersistsAcrossReopen) {
  TempDir dir;
  {
    RegistryPtr reg;
    ASSERT_TRUE(OpenRegistry("embedded:", dir.path(), &reg).ok());
    WriteSample(*reg);
  }
  RegistryPtr reg;
  ASSERT_TRUE(OpenRegistry("embedded:" + dir.path() + "/lever.db", "", &reg).ok());
  CheckAndDeleteSample(*reg);
}

}  // namespace
}  // namespace lever::host
