#include "runners.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

namespace lever::leverd {
namespace {

namespace fs = std::filesystem;

class RunnersTest : public ::testing::Test {
 protected:
  RunnersTest() {
    char tmpl[] = "/tmp/lever-runners-XXXXXX";
    root_ = mkdtemp(tmpl);
    lookup_.getenv = [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
    lookup_.runtime_dir_from_bin = "../lib/lever";
    lookup_.build_from_bin = "..";
    lookup_.source_from_bin = "../../..";
  }
  ~RunnersTest() override { fs::remove_all(root_); }

  // Creates root/<rel> (mode 0755 or 0644) and returns its path.
  std::string File(const std::string& rel, bool executable = true) {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << "#!/bin/sh\n";
    chmod(p.c_str(), executable ? 0755 : 0644);
    return p.string();
  }

  RunnerChoice Find(const std::string& flag = "") {
    RunnerChoice c;
    Status s = FindRunner(kJsRunner, flag, lookup_, &c);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return c;
  }

  // A lever-serve in a dir on PATH.
  std::string OnPath() {
    env_["PATH"] = root_.string() + "/onpath";
    return File("onpath/lever-serve");
  }

  void ExpectFound(const std::string& path, const std::string& how) {
    RunnerChoice c = Find();
    EXPECT_EQ(c.path, path);
    EXPECT_EQ(c.found, how);
  }

  fs::path root_;
  std::map<std::string, std::string> env_;
  RunnerLookup lookup_;
};

TEST_F(RunnersTest, NamesFollowTheLanguage) {
  EXPECT_EQ(RunnerFlag(kJsRunner), "--js-runner");
  EXPECT_EQ(RunnerEnvVar(kJsRunner), "LEVER_JS_RUNNER");
  EXPECT_EQ(RunnerFlag(kPyRunner), "--py-runner");
  EXPECT_EQ(RunnerEnvVar(kPyRunner), "LEVER_PY_RUNNER");
}

TEST_F(RunnersTest, PythonRunsFromTheBuildDirsVenvOrTheInstall) {
  lookup_.self = File("build/main/cli/leverd");
  std::string venv = File("build/main/py-venv/bin/lever-serve-py");
  RunnerChoice c;
  ASSERT_TRUE(FindRunner(kPyRunner, "", lookup_, &c).ok());
  EXPECT_EQ(c.path, venv);
  EXPECT_EQ(c.found, "build dir");
  lookup_.self = File("prefix/bin/leverd");
  std::string installed = File("prefix/lib/lever/python/bin/lever-serve-py");
  ASSERT_TRUE(FindRunner(kPyRunner, "", lookup_, &c).ok());
  EXPECT_EQ(c.path, installed);
  EXPECT_EQ(c.found, "install prefix");
}

TEST_F(RunnersTest, InstallPrefixBeatsSourceTreeAndPath) {
  lookup_.self = File("prefix/bin/leverd");
  std::string installed = File("prefix/lib/lever/node/bin/lever-serve");
  File("sdk/node/bin/lever-serve");
  OnPath();
  ExpectFound(installed, "install prefix");
}

TEST_F(RunnersTest, AMovedPrefixStillFindsItsOwn) {
  lookup_.self = File("a/prefix/bin/leverd");
  File("a/prefix/lib/lever/node/bin/lever-serve");
  fs::create_directories(root_ / "b");
  fs::rename(root_ / "a/prefix", root_ / "b/moved");
  lookup_.self = (root_ / "b/moved/bin/leverd").string();
  EXPECT_EQ(Find().path, (root_ / "b/moved/lib/lever/node/bin/lever-serve").string());
}

TEST_F(RunnersTest, BuildTreeFindsTheSourceTree) {
  lookup_.self = File("build/main/cli/leverd");
  std::string tree = File("sdk/node/bin/lever-serve");
  OnPath();
  ExpectFound(tree, "source tree");
}

TEST_F(RunnersTest, PathIsTheLastResort) {
  lookup_.self = File("bin/leverd");
  File("lib/lever/node/bin/lever-serve", /*executable=*/false);  // not runnable: skipped
  std::string on_path = OnPath();
  env_["PATH"] = "/nonexistent::" + env_["PATH"];
  ExpectFound(on_path, "PATH");
}

TEST_F(RunnersTest, FlagThenEnvironmentWin) {
  lookup_.self = File("prefix/bin/leverd");
  File("prefix/lib/lever/node/bin/lever-serve");
  std::string from_env = File("env/lever-serve");
  std::string from_flag = File("flag/lever-serve");
  env_["LEVER_JS_RUNNER"] = from_env;
  RunnerChoice c = Find(from_flag);
  EXPECT_EQ(c.path, from_flag);
  EXPECT_EQ(c.found, "--js-runner");
  c = Find();
  EXPECT_EQ(c.path, from_env);
  EXPECT_EQ(c.found, "$LEVER_JS_RUNNER");
}

TEST_F(RunnersTest, ABadExplicitChoiceIsAnError) {
  lookup_.self = File("prefix/bin/leverd");
  File("prefix/lib/lever/node/bin/lever-serve");
  RunnerChoice c;
  Status s = FindRunner(kJsRunner, File("plain.js", false), lookup_, &c);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("--js-runner"), std::string::npos) << s.message();
  env_["LEVER_JS_RUNNER"] = root_.string();  // a directory
  s = FindRunner(kJsRunner, "", lookup_, &c);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("$LEVER_JS_RUNNER"), std::string::npos) << s.message();
}

TEST_F(RunnersTest, NothingFoundSaysWhereItLooked) {
  lookup_.self = File("prefix/bin/leverd");
  RunnerChoice c = Find();
  EXPECT_TRUE(c.path.empty());
  std::vector<std::string> want = {"--js-runner", "$LEVER_JS_RUNNER",
                                   (root_ / "prefix/lib/lever/node/bin/lever-serve").string(),
                                   (root_.parent_path() / "sdk/node/bin/lever-serve").string(),
                                   "lever-serve on PATH"};
  EXPECT_EQ(c.tried, want);
}

}  // namespace
}  // namespace lever::leverd
