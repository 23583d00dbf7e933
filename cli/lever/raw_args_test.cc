#include "raw_args.h"

#include <gtest/gtest.h>

namespace lever::cli {
namespace {

using Strings = std::vector<std::string>;

// An App shaped like lever's: global flags that fall through, invoke with a
// URL and JSON arguments, env create with a name, up with leverd's flags.
class RawArgsTest : public ::testing::Test {
 protected:
  RawArgsTest() {
    app_.fallthrough();
    app_.require_subcommand(1);
    app_.add_option("-E,--env", env_);
    app_.add_option("-H,--host", host_);
    app_.add_flag("--json", json_);
    invoke_ = app_.add_subcommand("invoke");
    invoke_->add_option("url", url_)->required();
    invoke_->add_option("args", args_);
    invoke_->add_flag("--pretty", pretty_);
    auto* env = app_.add_subcommand("env");
    create_ = env->add_subcommand("create");
    create_->add_option("name", name_)->required();
    create_->add_option("--description", description_);
    up_ = app_.add_subcommand("up");
    up_->add_option("leverd-args", args_);
    up_->allow_extras();
  }

  // Splits, then lets CLI11 parse what is left (it must accept it).
  RawArgs Run(Strings line) {
    line.insert(line.begin(), "lever");
    std::vector<const char*> argv;
    for (const auto& a : line) argv.push_back(a.c_str());
    RawArgs r = TakeRawArgs(app_, {{invoke_, 1}, {up_, 0, true}}, static_cast<int>(argv.size()), argv.data());
    std::vector<const char*> rest;
    for (const auto& a : r.argv) rest.push_back(a.c_str());
    app_.parse(static_cast<int>(rest.size()), rest.data());
    EXPECT_TRUE(args_.empty()) << "CLI11 saw a raw argument";
    return r;
  }

  CLI::App app_{"lever"};
  CLI::App *invoke_, *create_, *up_;
  std::string env_, host_, url_, name_, description_;
  Strings args_;
  bool json_ = false, pretty_ = false;
};

TEST_F(RawArgsTest, JsonArgumentsPassAsWritten) {
  Strings args = {"[1,2,3]", "[]", "[[1,2],[3]]", "{\"k\":[1,2]}", "\"a,[b]\"", "null", "-1", "-2.5e3"};
  Strings line = {"invoke", "/s/m"};
  line.insert(line.end(), args.begin(), args.end());
  RawArgs r = Run(line);
  EXPECT_EQ(r.raw, args);
  EXPECT_EQ(r.from, invoke_);
  EXPECT_EQ(url_, "/s/m");
}

TEST_F(RawArgsTest, FlagsAnywhereKeepTheirValues) {
  // A flag's value is never an argument, even when it looks like a list.
  RawArgs r = Run({"-H", "[::1]:8080", "invoke", "--pretty", "/s/m", "[1]", "--env", "[e,f]", "--json", "[2]"});
  EXPECT_EQ(r.raw, (Strings{"[1]", "[2]"}));
  EXPECT_TRUE(pretty_);
  EXPECT_TRUE(json_);
  EXPECT_EQ(env_, "[e,f]");
  EXPECT_EQ(host_, "[::1]:8080");
}

TEST_F(RawArgsTest, AttachedValuesTakeNoNextToken) {
  RawArgs r = Run({"invoke", "-Eg.lever", "/s/m", "--host=h:1", "3"});
  EXPECT_EQ(r.raw, (Strings{"3"}));
  EXPECT_EQ(env_, "g.lever");
  EXPECT_EQ(host_, "h:1");
}

TEST_F(RawArgsTest, DoubleDashEndsFlags) {
  RawArgs r = Run({"invoke", "--", "/s/m", "--pretty", "-x", "[]"});
  EXPECT_EQ(r.raw, (Strings{"--pretty", "-x", "[]"}));
  EXPECT_FALSE(pretty_);
  EXPECT_EQ(url_, "/s/m");
}

TEST_F(RawArgsTest, UnknownFlagOfInvokeIsLeftForCli11ToRefuse) {
  Strings line = {"lever", "invoke", "/s/m", "--prety", "1"};
  std::vector<const char*> argv;
  for (const auto& a : line) argv.push_back(a.c_str());
  RawArgs r = TakeRawArgs(app_, {{invoke_, 1}, {up_, 0, true}}, static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(r.raw, (Strings{"1"}));
  EXPECT_EQ(r.argv, (Strings{"lever", "invoke", "/s/m", "--prety"}));
  std::vector<const char*> rest;
  for (const auto& a : r.argv) rest.push_back(a.c_str());
  EXPECT_THROW(app_.parse(static_cast<int>(rest.size()), rest.data()), CLI::ExtrasError);
}

TEST_F(RawArgsTest, UpHandsLeverdItsFlagsUnchanged) {
  RawArgs r = Run({"-H", "127.0.0.1:9", "up", "--data-dir", "/tmp/[a,b]", "--listen=[::1]:0", "--", "--json", "[x,y]"});
  EXPECT_EQ(r.raw, (Strings{"--data-dir", "/tmp/[a,b]", "--listen=[::1]:0", "--json", "[x,y]"}));
  EXPECT_EQ(r.from, up_);
  EXPECT_FALSE(json_);
  EXPECT_EQ(host_, "127.0.0.1:9");
}

TEST_F(RawArgsTest, OtherSubcommandsAreCli11s) {
  RawArgs r = Run({"env", "create", "[a,b].lever", "--description", "[x, y], z"});
  EXPECT_TRUE(r.raw.empty());
  EXPECT_EQ(r.from, nullptr);
  EXPECT_EQ(name_, "[a,b].lever");
  EXPECT_EQ(description_, "[x, y], z");
}

TEST_F(RawArgsTest, SubcommandNamesAsArgumentsAreArguments) {
  RawArgs r = Run({"invoke", "/s/m", "env", "up", "invoke"});
  EXPECT_EQ(r.raw, (Strings{"env", "up", "invoke"}));
}

}  // namespace
}  // namespace lever::cli
