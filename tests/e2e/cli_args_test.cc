// `lever` passes arguments as written (issue 19), checked against the
// original CLI's rule (reference §9): every positional after the URL is
// exactly one JSON value, however many brackets and commas it holds. A test
// service echoes its arguments as one array, through invoke and stream; the
// other subcommands must pass brackets and commas in their values untouched.
#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

constexpr char kService[] = R"({"name": "argstestservice", "entry": ["./serve"]})";

struct Case {
  std::vector<std::string> args;  // as typed on the shell, one token each
  std::string reply;              // what the original CLI's rule sends: one value per token
};

// Each token is one argument; the reply is the array of those values.
const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {{"[1,2,3]"}, "[[1,2,3]]"},
      {{R"(["a","b"])", R"({"k":[1,2]})"}, R"([["a","b"],{"k":[1,2]}])"},
      {{"[[1,2],[3]]"}, "[[[1,2],[3]]]"},
      {{"[[[]]]", "[{}]"}, "[[[[]]],[{}]]"},
      {{"[]"}, "[[]]"},
      {{"[]", "[]"}, "[[],[]]"},
      {{"{}"}, "[{}]"},
      {{"null"}, "[null]"},
      {{"null", "[null]"}, "[null,[null]]"},
      {{R"("a,b")", R"("[x]")", R"("[1,2]")", R"("]")"}, R"(["a,b","[x]","[1,2]","]"])"},
      {{R"({"s":"[,]","a":[[],{}],"n":null})"}, R"([{"s":"[,]","a":[[],{}],"n":null}])"},
      {{"[1, 2]", "[ ]"}, "[[1,2],[]]"},
      {{"-1", "-2.5", "[-3]"}, "[-1,-2.5,[-3]]"},
      {{R"("--pretty")", R"("-x")"}, R"(["--pretty","-x"])"},
      {{"true", "false", "0", R"("")"}, R"([true,false,0,""])"},
      {{}, "[]"},
  };
  return cases;
}

class CliArgsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leverd_.Start();
    CommandResult d = leverd_.DeployTestService(kService);
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  }

  // `lever <command> <url> <case args...>` prints the case's reply.
  void ExpectEveryCase(const std::string& command, const std::string& url) {
    for (const Case& c : Cases()) {
      std::vector<std::string> line = {command, url};
      line.insert(line.end(), c.args.begin(), c.args.end());
      CommandResult r = leverd_.Lever(line);
      EXPECT_EQ(r.exit_code, 0) << Show(c.args) << ": " << r.err;
      EXPECT_EQ(r.out, c.reply + "\n") << "lever " << command << Show(c.args);
    }
  }

  static std::string Show(const std::vector<std::string>& args) {
    std::string s;
    for (const auto& a : args) s += " '" + a + "'";
    return s;
  }

  Leverd leverd_;
};

TEST_F(CliArgsTest, InvokeSendsEachArgumentWhole) { ExpectEveryCase("invoke", "/argstestservice/EchoArgs"); }

TEST_F(CliArgsTest, StreamSendsEachArgumentWhole) { ExpectEveryCase("stream", "/argstestservice/EchoArgsChan"); }

TEST_F(CliArgsTest, FlagsMayComeAfterTheArguments) {
  // A flag is never JSON, so there is no doubt which tokens are flags.
  CommandResult r = leverd_.Lever({"invoke", "/argstestservice/EchoArgs", "[1,2]", "--pretty", "[]"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[\n  [\n    1,\n    2\n  ],\n  []\n]\n");
  r = leverd_.Lever({"invoke", "/argstestservice/EchoArgs", "[3]", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[[3]]\n");
}

TEST_F(CliArgsTest, DoubleDashMakesEverythingAfterItAnArgument) {
  CommandResult r = leverd_.Lever({"invoke", "--", "/argstestservice/EchoArgs", "-1", "[-2]"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[-1,[-2]]\n");
  // A flag after `--` is an argument, and not JSON.
  r = leverd_.Lever({"invoke", "/argstestservice/EchoArgs", "--", "--pretty"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("argument 1 is not JSON"), std::string::npos) << r.err;
}

TEST_F(CliArgsTest, BadArgumentsAreUsageErrors) {
  // Not JSON: which argument, and how to quote it.
  CommandResult r = leverd_.Lever({"invoke", "/argstestservice/EchoArgs", "[1]", "[1,"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("argument 2 is not JSON"), std::string::npos) << r.err;
  r = leverd_.Lever({"invoke", "/argstestservice/EchoArgs", "world"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'\"world\"'"), std::string::npos) << r.err;
  // An unknown flag is refused, not sent.
  r = leverd_.Lever({"invoke", "/argstestservice/EchoArgs", "--prety", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--prety"), std::string::npos) << r.err;
}

TEST_F(CliArgsTest, OtherValuesKeepTheirBracketsAndCommas) {
  // A string option: the description comes back as written.
  const std::string description = "[x, y], z [a,b]";
  CommandResult r = leverd_.Lever({"env", "create", "brackets.lever", "--description", description});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = leverd_.Lever({"--json", "env", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"name":"brackets.lever","description":"[x, y], z [a,b]"})"), std::string::npos)
      << r.out;
  // A positional: a service directory named like a list deploys.
  TempDir tmp;
  std::string dir = tmp.path() + "/[a,b]";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  std::ofstream(dir + "/lever.json") << R"({"name": "bracketservice", "entry": ["./serve"]})";
  std::ifstream src(TestServicePath(), std::ios::binary);
  std::ofstream(dir + "/serve", std::ios::binary) << src.rdbuf();
  chmod((dir + "/serve").c_str(), 0755);
  r = leverd_.Lever({"deploy", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Deployed bracketservice"), std::string::npos) << r.out;
  // The environment flag, through an error that names it.
  r = leverd_.Lever({"-E", "[e,f].lever", "invoke", "/argstestservice/EchoArgs"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("[e,f].lever"), std::string::npos) << r.err;
}

TEST_F(CliArgsTest, UpHandsLeverdItsFlagsAsWritten) {
  // leverd gets both values whole: it makes the data dir, then cannot listen
  // on the address and says which.
  TempDir tmp;
  std::string data = tmp.path() + "/[a,b]";
  CommandResult r = RunCommand({LeverPath(), "up", "--data-dir", data, "--", "--listen", "bad[1,2]:x"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cannot listen on bad[1,2]:x"), std::string::npos) << r.err;
  struct stat st;
  EXPECT_EQ(stat((data + "/run").c_str(), &st), 0) << "no data dir at " << data;
}

}  // namespace
}  // namespace lever::e2e
