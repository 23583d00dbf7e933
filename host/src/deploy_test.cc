#include "lever/host/deploy.h"

#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <iostream>
#include <random>

#include "testutil.h"

namespace lever::host {
namespace {

using testing::ListTree;
using testing::ReadFileOrEmpty;
using testing::TarBuilder;
using testing::TempDir;

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = sandbox_.path() + "/data";
    outside_ = sandbox_.path() + "/outside";
    ASSERT_EQ(mkdir(data_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(outside_.c_str(), 0755), 0);
    ASSERT_TRUE(OpenRegistry("embedded:", data_, &registry_).ok());
    MakeDeployer(DeployOptions{});
  }

  void MakeDeployer(DeployOptions opts) {
    opts.data_dir = data_;
    opts.on_deployed = [this](const ServiceInfo& s, const LeverConfig& c) {
      deployed_.push_back(s.env + "/" + s.name + " v" + std::to_string(s.live_version) + " " + c.name);
    };
    deployer_.reset();
    ASSERT_TRUE(Deployer::Create(opts, registry_, &deployer_).ok());
  }

  Status Deploy(const std::string& env, const std::string& tgz, DeployResult* result = nullptr) {
    std::unique_ptr<DeploySession> session;
    Status s = deployer_->Begin(env, &session);
    if (!s.ok()) return s;
    Status write_status;
    for (size_t off = 0; off < tgz.size(); off += 32 * 1024) {
      write_status = session->Write(std::string_view(tgz).substr(off, 32 * 1024));
      if (!write_status.ok()) break;
    }
    DeployResult r;
    s = session->Finish(&r);
    if (!write_status.ok()) {
      EXPECT_EQ(s, write_status);
    }
    if (result) *result = r;
    return s;
  }

  // A failed deploy leaves the sandbox exactly as it was and the registry
  // without new services.
  void ExpectRejected(const std::string& tgz, Code code, const std::string& what) {
    auto before = ListTree(sandbox_.path());
    std::vector<ServiceInfo> services_before;
    ASSERT_TRUE(registry_->ListServices("dev.lever", &services_before).ok());
    Status s = Deploy("dev.lever", tgz);
    EXPECT_EQ(s.code(), code) << what << ": " << s.message();
    std::cerr << "[ rejected ] " << what << ": " << s.message() << "\n";
    EXPECT_EQ(ListTree(sandbox_.path()), before) << what;
    EXPECT_TRUE(ListTree(outside_).empty()) << what;
    std::vector<ServiceInfo> services_after;
    ASSERT_TRUE(registry_->ListServices("dev.lever", &services_after).ok());
    EXPECT_EQ(services_after.size(), services_before.size()) << what;
  }

  static std::string Manifest(const std::string& name = "hello") {
    return R"({"name":")" + name + R"(","description":"Says hello","entry":["./serve"]})";
  }

  TempDir sandbox_;
  std::string data_, outside_;
  RegistryPtr registry_;
  std::unique_ptr<Deployer> deployer_;
  std::vector<std::string> deployed_;
};

TEST_F(DeployTest, ValidTarballKeepsRelativeSymlinks) {
  std::string tgz = TarBuilder()
                        .Dir("./")
                        .File("./lever.json", Manifest())
                        .File("./serve", "#!/bin/sh\necho hi\n", 0755)
                        .Dir("./lib/")
                        .File("./lib/data.txt", "payload")
                        .Symlink("./link", "lib/data.txt")
                        .Symlink("./lib/up", "../lever.json")
                        .Symlink("./lib/self", ".")
                        .Hardlink("./hard", "lib/data.txt")
                        .Finish();
  DeployResult r;
  Status s = Deploy("dev.lever", tgz, &r);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(r.service, "hello");
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.code_dir, data_ + "/code/dev.lever/hello/1");
  EXPECT_EQ(CodeDirPath(data_, "dev.lever", "hello", 1), r.code_dir);
  char buf[256];
  ssize_t n = readlink((r.code_dir + "/link").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "lib/data.txt");
  EXPECT_EQ(ReadFileOrEmpty(r.code_dir + "/link"), "payload");  // resolves after the rename
  EXPECT_EQ(ReadFileOrEmpty(r.code_dir + "/lib/up"), Manifest());
  EXPECT_EQ(ReadFileOrEmpty(r.code_dir + "/hard"), "payload");
  EXPECT_EQ(access((r.code_dir + "/serve").c_str(), X_OK), 0);
  // Nothing else: no temp dir left, nothing outside.
  EXPECT_EQ(ListTree(data_ + "/code/dev.lever"),
            (std::set<std::string>{"hello", "hello/1", "hello/1/lever.json", "hello/1/serve", "hello/1/lib",
                                   "hello/1/lib/data.txt", "hello/1/link", "hello/1/lib/up",
                                   "hello/1/lib/self", "hello/1/hard"}));
  EXPECT_TRUE(ListTree(outside_).empty());

  ServiceInfo svc;
  ASSERT_TRUE(registry_->GetService("dev.lever", "hello", &svc).ok());
  EXPECT_EQ(svc.live_version, 1);
  EXPECT_EQ(svc.description, "Says hello");
  CodeVersionInfo cv;
  ASSERT_TRUE(registry_->GetCodeVersion("dev.lever", "hello", 1, &cv).ok());
  EXPECT_EQ(cv.lever_json, Manifest());
  EXPECT_EQ(deployed_, std::vector<std::string>{"dev.lever/hello v1 hello"});
}

TEST_F(DeployTest, RedeployBumpsVersionAndLiveVersion) {
  std::string tgz = TarBuilder().File("lever.json", Manifest()).Finish();
  DeployResult r1, r2;
  ASSERT_TRUE(Deploy("dev.lever", tgz, &r1).ok());
  std::string tgz2 = TarBuilder()
                         .File("lever.json", R"({"name":"hello","private":true,"description":"v2"})")
                         .Finish();
  ASSERT_TRUE(Deploy("dev.lever", tgz2, &r2).ok());
  EXPECT_EQ(r1.version, 1);
  EXPECT_EQ(r2.version, 2);
  ServiceInfo svc;
  ASSERT_TRUE(registry_->GetService("dev.lever", "hello", &svc).ok());
  EXPECT_EQ(svc.live_version, 2);
  EXPECT_TRUE(svc.is_private);
  EXPECT_EQ(svc.description, "v2");
  struct stat st;
  EXPECT_EQ(stat((data_ + "/code/dev.lever/hello/1").c_str(), &st), 0);
  EXPECT_EQ(stat((data_ + "/code/dev.lever/hello/2").c_str(), &st), 0);
}

TEST_F(DeployTest, NewEnvironmentCreatedOnFirstDeploy) {
  std::string tgz = TarBuilder().File("lever.json", Manifest()).Finish();
  ASSERT_TRUE(Deploy("staging.lever", tgz).ok());
  EnvironmentInfo env;
  EXPECT_TRUE(registry_->GetEnvironment("staging.lever", &env).ok());
  std::unique_ptr<DeploySession> session;
  EXPECT_EQ(deployer_->Begin("../x", &session).code(), Code::kInvalidArgument);
  EXPECT_EQ(deployer_->Begin("ab", &session).code(), Code::kInvalidArgument);
}

TEST_F(DeployTest, AdminServiceCannotBeDeployed) {
  std::string tgz = TarBuilder().File("lever.json", R"({"name":"admin"})").Finish();
  auto before = ListTree(sandbox_.path());
  EXPECT_EQ(Deploy("admin.lever", tgz).code(), Code::kPermissionDenied);
  EXPECT_EQ(ListTree(sandbox_.path()), before);
}

TEST_F(DeployTest, AbsolutePathRejected) {
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).File(outside_ + "/pwned", "x").Finish(),
                 Code::kInvalidArgument, "absolute path");
}

TEST_F(DeployTest, DotDotRejected) {
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).File("../../../outside/pwned", "x").Finish(),
                 Code::kInvalidArgument, "leading ..");
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).File("a/../../pwned", "x").Finish(),
                 Code::kInvalidArgument, "inner ..");
}

TEST_F(DeployTest, EscapingSymlinksRejected) {
  ExpectRejected(TarBuilder()
                     .File("lever.json", Manifest())
                     .Symlink("evil", "../../../outside")
                     .File("evil/pwned", "x")
                     .Finish(),
                 Code::kInvalidArgument, "symlink up and out");
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).Symlink("abs", outside_).Finish(),
                 Code::kInvalidArgument, "absolute symlink");
  // Each link alone looks inside, but "sub/d/.." climbs out through sub/d -> "..".
  ExpectRejected(TarBuilder()
                     .File("lever.json", Manifest())
                     .Dir("sub")
                     .Symlink("sub/d", "..")
                     .Symlink("e", "sub/d/..")
                     .Finish(),
                 Code::kInvalidArgument, "symlink chain");
}

TEST_F(DeployTest, HardLinksOutOfTreeRejected) {
  ASSERT_EQ(access((outside_).c_str(), F_OK), 0);
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).Hardlink("h", "../outside/secret").Finish(),
                 Code::kInvalidArgument, "hard link ..");
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).Hardlink("h", "/etc/passwd").Finish(),
                 Code::kInvalidArgument, "hard link absolute");
  ExpectRejected(TarBuilder()
                     .File("lever.json", Manifest())
                     .Dir("a")
                     .Dir("a/b")
                     .Symlink("a/b/s", "../../lever.json")
                     .Hardlink("h", "a/b/s")
                     .Finish(),
                 Code::kInvalidArgument, "hard link to a symlink");
}

TEST_F(DeployTest, DevicesAndFifosRejected) {
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).Special("null", AE_IFCHR).Finish(),
                 Code::kInvalidArgument, "char device");
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).Special("disk", AE_IFBLK).Finish(),
                 Code::kInvalidArgument, "block device");
  ExpectRejected(TarBuilder().File("lever.json", Manifest()).Special("fifo", AE_IFIFO).Finish(),
                 Code::kInvalidArgument, "fifo");
}

TEST_F(DeployTest, TooLargeCompressed) {
  DeployOptions opts;
  opts.max_compressed_bytes = 64 * 1024;
  MakeDeployer(opts);
  std::string noise(256 * 1024, '\0');
  std::mt19937 rng(42);
  for (char& c : noise) c = static_cast<char>(rng());
  std::string tgz = TarBuilder().File("lever.json", Manifest()).File("noise", noise).Finish();
  ASSERT_GT(tgz.size(), opts.max_compressed_bytes);
  auto before = ListTree(sandbox_.path());
  Status s = Deploy("dev.lever", tgz);
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_EQ(s.message(), "File too large");
  EXPECT_EQ(ListTree(sandbox_.path()), before);
}

TEST_F(DeployTest, TooLargeUncompressed) {
  DeployOptions opts;
  opts.max_uncompressed_bytes = 1 << 20;
  MakeDeployer(opts);
  std::string tgz = TarBuilder().File("lever.json", Manifest()).File("zeros", std::string(2 << 20, '\0')).Finish();
  ASSERT_LT(tgz.size(), 64u * 1024);  // a small upload that unpacks big
  ExpectRejected(tgz, Code::kResourceExhausted, "uncompressed size");
}

TEST_F(DeployTest, TooManyEntries) {
  DeployOptions opts;
  opts.max_entries = 10;
  MakeDeployer(opts);
  TarBuilder tar;
  tar.File("lever.json", Manifest());
  for (int i = 0; i < 20; ++i) tar.File("f" + std::to_string(i), "x");
  ExpectRejected(tar.Finish(), Code::kResourceExhausted, "entry count");
}

TEST_F(DeployTest, BadUploadsRejected) {
  ExpectRejected("this is not a gzip file at all", Code::kInvalidArgument, "garbage");
  ExpectRejected(TarBuilder().File("serve", "x").Finish(), Code::kInvalidArgument, "no lever.json");
  ExpectRejected(TarBuilder().File("lever.json", "{nope").Finish(), Code::kInvalidArgument, "bad lever.json");
  ExpectRejected(TarBuilder().File("lever.json", R"({"name":"x y z"})").Finish(), Code::kInvalidArgument,
                 "bad name");
  ExpectRejected(TarBuilder().Dir("lever.json").Finish(), Code::kInvalidArgument, "lever.json is a dir");
}

TEST_F(DeployTest, AbandonedSessionLeavesNoTrace) {
  auto before = ListTree(sandbox_.path());
  std::string tgz = TarBuilder().File("lever.json", Manifest()).File("big", std::string(100000, 'x')).Finish();
  {
    std::unique_ptr<DeploySession> session;
    ASSERT_TRUE(deployer_->Begin("fresh.lever", &session).ok());
    ASSERT_TRUE(session->Write(std::string_view(tgz).substr(0, tgz.size() / 2)).ok());
  }
  EXPECT_EQ(ListTree(sandbox_.path()), before);
}

}  // namespace
}  // namespace lever::host
