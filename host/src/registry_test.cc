#include "lever/host/registry.h"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "testutil.h"

namespace lever::host {
namespace {

using testing::TempDir;

// The contract every backend must meet, run against each URL (the etcd
// backend joins this list when it lands).
class RegistryContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    Status s = OpenRegistry(GetParam(), dir_.path(), &reg_);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  TempDir dir_;
  RegistryPtr reg_;
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryContract, ::testing::Values("embedded:", "embedded::memory:"));

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

TEST(Registry, CrudAndPersistenceAcrossReopen) {
  TempDir dir;
  {
    RegistryPtr reg;
    ASSERT_TRUE(OpenRegistry("embedded:", dir.path(), &reg).ok());
    EXPECT_TRUE(reg->CreateEnvironment({"prod.lever", "Production"}).ok());
    EXPECT_EQ(reg->CreateEnvironment({"prod.lever", "again"}).code(), Code::kAlreadyExists);
    EXPECT_EQ(reg->CreateEnvironment({"x", ""}).code(), Code::kInvalidArgument);
    EXPECT_EQ(reg->CreateEnvironment({"a/b.lever", ""}).code(), Code::kInvalidArgument);

    ServiceInfo s;
    s.env = "prod.lever";
    s.name = "hello";
    s.description = "says hello";
    s.is_private = true;
    ASSERT_TRUE(reg->CreateService(s).ok());
    EXPECT_EQ(reg->CreateService(s).code(), Code::kAlreadyExists);
    s.name = "no";
    EXPECT_EQ(reg->CreateService(s).code(), Code::kInvalidArgument);

    int64_t v1 = 0, v2 = 0;
    ASSERT_TRUE(reg->AllocateVersion("prod.lever", "hello", &v1).ok());
    ASSERT_TRUE(reg->AllocateVersion("prod.lever", "hello", &v2).ok());
    EXPECT_EQ(v1, 1);
    EXPECT_EQ(v2, 2);
    EXPECT_EQ(reg->AllocateVersion("prod.lever", "nope", &v1).code(), Code::kNotFound);
    ASSERT_TRUE(reg->AddCodeVersion({"prod.lever", "hello", 2, R"({"name":"hello"})", 0}).ok());
    EXPECT_EQ(reg->AddCodeVersion({"prod.lever", "hello", 2, "{}", 0}).code(), Code::kAlreadyExists);

    ServiceInfo got;
    ASSERT_TRUE(reg->GetService("prod.lever", "hello", &got).ok());
    got.live_version = 2;
    got.description = "updated";
    ASSERT_TRUE(reg->UpdateService(got).ok());
    got.name = "missing";
    EXPECT_EQ(reg->UpdateService(got).code(), Code::kNotFound);
  }
  {
    RegistryPtr reg;
    ASSERT_TRUE(OpenRegistry("embedded:" + dir.path() + "/lever.db", "", &reg).ok());
    EnvironmentInfo env;
    ASSERT_TRUE(reg->GetEnvironment("prod.lever", &env).ok());
    EXPECT_EQ(env.description, "Production");
    ServiceInfo s;
    ASSERT_TRUE(reg->GetService("prod.lever", "hello", &s).ok());
    EXPECT_EQ(s.description, "updated");
    EXPECT_TRUE(s.is_private);
    EXPECT_EQ(s.live_version, 2);
    EXPECT_EQ(s.next_version, 3);
    CodeVersionInfo cv;
    ASSERT_TRUE(reg->GetCodeVersion("prod.lever", "hello", 2, &cv).ok());
    EXPECT_EQ(cv.lever_json, R"({"name":"hello"})");
    EXPECT_GT(cv.created_unix_ms, 0);
    EXPECT_EQ(reg->GetCodeVersion("prod.lever", "hello", 1, &cv).code(), Code::kNotFound);
    std::vector<ServiceInfo> list;
    ASSERT_TRUE(reg->ListServices("prod.lever", &list).ok());
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].name, "hello");

    ASSERT_TRUE(reg->DeleteEnvironment("prod.lever").ok());
    EXPECT_EQ(reg->GetEnvironment("prod.lever", &env).code(), Code::kNotFound);
    EXPECT_EQ(reg->GetService("prod.lever", "hello", &s).code(), Code::kNotFound);
    EXPECT_EQ(reg->GetCodeVersion("prod.lever", "hello", 2, &cv).code(), Code::kNotFound);
    EXPECT_EQ(reg->DeleteEnvironment("prod.lever").code(), Code::kNotFound);
  }
}

}  // namespace
}  // namespace lever::host
