#include "lever/host/instance_ids.h"

#include <pwd.h>
#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "testutil.h"

namespace lever::host {
namespace {

using lever::host::testing::TempDir;

TEST(InstanceIds, EachServiceItsOwnUserEachEnvItsGroupKeptAcrossOpens) {
  TempDir dir;
  std::string path = dir.path() + "/instance-ids";
  std::shared_ptr<InstanceIds> ids;
  ASSERT_TRUE(InstanceIds::Open(path, 61184, 65519, &ids).ok());
  InstanceIdentity a, b, again, other_env;
  ASSERT_TRUE(ids->ForService("dev.lever", "a", &a).ok());
  ASSERT_TRUE(ids->ForService("dev.lever", "b", &b).ok());
  ASSERT_TRUE(ids->ForService("dev.lever", "a", &again).ok());
  ASSERT_TRUE(ids->ForService("prod.lever", "a", &other_env).ok());
  EXPECT_EQ(a.uid, a.gid);
  EXPECT_NE(a.uid, b.uid);
  EXPECT_EQ(a.env_gid, b.env_gid);
  EXPECT_NE(a.env_gid, a.uid);
  EXPECT_NE(a.env_gid, b.uid);
  EXPECT_EQ(again.uid, a.uid);
  EXPECT_NE(other_env.uid, a.uid);
  EXPECT_NE(other_env.env_gid, a.env_gid);
  for (uint32_t id : {a.uid, b.uid, a.env_gid, other_env.uid, other_env.env_gid}) {
    EXPECT_GE(id, 61184u);
    EXPECT_LE(id, 65519u);
  }
  // The table is leverd's alone, and survives a restart.
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::shared_ptr<InstanceIds> reopened;
  ASSERT_TRUE(InstanceIds::Open(path, 61184, 65519, &reopened).ok());
  InstanceIdentity b2, c;
  ASSERT_TRUE(reopened->ForService("dev.lever", "b", &b2).ok());
  EXPECT_EQ(b2.uid, b.uid);
  EXPECT_EQ(b2.env_gid, b.env_gid);
  // A new service gets none of the ids given before the restart.
  ASSERT_TRUE(reopened->ForService("dev.lever", "c", &c).ok());
  for (uint32_t id : {a.uid, b.uid, a.env_gid, other_env.uid, other_env.env_gid}) EXPECT_NE(c.uid, id);
}

TEST(InstanceIds, SkipsTheMachinesUsersAndSaysWhenTheRangeIsFull) {
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  uint32_t taken = nobody->pw_uid;
  TempDir dir;
  std::shared_ptr<InstanceIds> ids;
  // Two ids, one of them nobody's: room for one service's uid, then none
  // for its env's group.
  ASSERT_TRUE(InstanceIds::Open(dir.path() + "/ids", taken, taken + 1, &ids).ok());
  InstanceIdentity id;
  Status s = ids->ForService("dev.lever", "a", &id);
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("--instance-ids"), std::string::npos) << s.message();
  std::ifstream saved(dir.path() + "/ids");
  std::string line;
  ASSERT_TRUE(std::getline(saved, line));
  EXPECT_EQ(line, std::to_string(taken + 1) + " s dev.lever/a");  // never nobody's
}

TEST(InstanceIds, RefusesAFileThatIsNotATableAndAnEmptyRange) {
  TempDir dir;
  std::string path = dir.path() + "/ids";
  std::shared_ptr<InstanceIds> ids;
  EXPECT_EQ(InstanceIds::Open(path, 10, 9, &ids).code(), Code::kInvalidArgument);
  EXPECT_EQ(InstanceIds::Open(path, 0, 9, &ids).code(), Code::kInvalidArgument);
  for (const char* bad : {"hello\n", "61184 x dev.lever/a\n", "61184 s a\n61184 s b\n", "0 s a\n", "-1 s a\n"}) {
    std::ofstream(path) << bad;
    Status s = InstanceIds::Open(path, 61184, 65519, &ids);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
  }
  std::ofstream(path) << "61190 s dev.lever/a\n61191 e dev.lever\n";
  ASSERT_TRUE(InstanceIds::Open(path, 61184, 65519, &ids).ok());
  InstanceIdentity a;
  ASSERT_TRUE(ids->ForService("dev.lever", "a", &a).ok());
  EXPECT_EQ(a.uid, 61190u);
  EXPECT_EQ(a.env_gid, 61191u);
  EXPECT_EQ(ids->ForService("dev.lever", "a\nb", &a).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace lever::host
