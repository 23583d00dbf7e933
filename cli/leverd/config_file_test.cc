#include "config_file.h"

#include <sstream>

#include <gtest/gtest.h>

namespace lever::leverd {
namespace {

std::vector<CLI::ConfigItem> Read(const std::string& text) {
  std::istringstream in(text);
  return ConfigFile().from_config(in);
}

std::string ValueOf(const std::string& line) {
  auto items = Read(line);
  EXPECT_EQ(items.size(), 1u) << line;
  return items.empty() || items[0].inputs.size() != 1 ? "<none>" : items[0].inputs[0];
}

std::string ErrorOf(const std::string& text) {
  try {
    Read(text);
  } catch (const CLI::ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(ConfigFileTest, ValuesAreTakenExactlyAsWritten) {
  // Each of these CLI11's own reader changes: split at commas or spaces,
  // read as a list, or cut at '#'.
  EXPECT_EQ(ValueOf(R"(data-dir = "/srv/lever#2")"), "/srv/lever#2");
  EXPECT_EQ(ValueOf(R"(js-runner = "/opt/a,b/lever-serve")"), "/opt/a,b/lever-serve");
  EXPECT_EQ(ValueOf(R"(js-runner = "/opt/my runner/x")"), "/opt/my runner/x");
  EXPECT_EQ(ValueOf(R"(listen = "[::1]:8080")"), "[::1]:8080");
  EXPECT_EQ(ValueOf(R"(x = "[a,b]")"), "[a,b]");
  EXPECT_EQ(ValueOf(R"(x = 'C:\no\escapes')"), R"(C:\no\escapes)");
  EXPECT_EQ(ValueOf(R"(x = "q\"b\\s\t\u00e9\U0001F600")"), "q\"b\\s\t\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(ValueOf(R"(x = "")"), "");
  EXPECT_EQ(ValueOf("workers = 4   # a comment"), "4");
  EXPECT_EQ(ValueOf("listen = 127.0.0.1:8080"), "127.0.0.1:8080");
  EXPECT_EQ(ValueOf("  x=\"a # b\"#c\r"), "a # b");
}

TEST(ConfigFileTest, KeysAndComments) {
  auto items = Read("# leverd.conf\n\n  # indented comment\nlisten = \"a\"\ndata_dir = \"b\"\n\"log-level\" = \"debug\"\n");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].name, "listen");
  EXPECT_EQ(items[1].name, "data-dir");  // _ stands for -
  EXPECT_EQ(items[2].name, "log-level");
  EXPECT_TRUE(items[0].parents.empty());
}

TEST(ConfigFileTest, AnythingElseIsAClearError) {
  EXPECT_NE(ErrorOf("[gateway]\nlisten = \"x\"").find("line 1: sections are not supported"), std::string::npos);
  EXPECT_NE(ErrorOf("a = 1\nlisten = [\"x\", \"y\"]").find("line 2: listen: arrays"), std::string::npos);
  EXPECT_NE(ErrorOf("listen = \"x").find("unterminated string"), std::string::npos);
  EXPECT_NE(ErrorOf("listen = \"\"\"x\"\"\"").find("multi-line"), std::string::npos);
  EXPECT_NE(ErrorOf("js-runner = /opt/my runner").find("unexpected text after the value of js-runner"),
            std::string::npos);
  EXPECT_NE(ErrorOf("listen").find("expected `=` after listen"), std::string::npos);
  EXPECT_NE(ErrorOf("listen =").find("listen has no value"), std::string::npos);
  EXPECT_NE(ErrorOf("= 1").find("expected `flag-name = value`"), std::string::npos);
  EXPECT_NE(ErrorOf("x = \"\\q\"").find("unknown escape \\q"), std::string::npos);
  EXPECT_NE(ErrorOf("x = \"\\uD800\"").find("not a Unicode scalar"), std::string::npos);
  EXPECT_NE(ErrorOf("x = \"\\u12\"").find("\\u escape"), std::string::npos);
  EXPECT_NE(ErrorOf("a = 1\nb = 2\na = 3").find("line 3: a is set twice (first on line 1)"), std::string::npos);
  EXPECT_NE(ErrorOf("x = \"" + std::string(70000, 'a') + "\"").find("longer than 64 KiB"), std::string::npos);
  std::string big;
  for (int i = 0; i < 20000; ++i) big += "# " + std::string(60, 'c') + "\n";
  EXPECT_NE(ErrorOf(big).find("larger than 1 MiB"), std::string::npos);
}

// Through CLI11: the file sets flags, the command line wins, unknown keys are
// refused, and what to_config writes reads back unchanged.
class ConfigAppTest : public ::testing::Test {
 protected:
  ConfigAppTest() {
    app_.config_formatter(std::make_shared<ConfigFile>(&app_));
    app_.add_flag("--print", print_)->configurable(false);
    app_.set_config("--config");
    app_.add_option("--listen", listen_)->capture_default_str();
    app_.add_option("--data-dir", data_dir_);
    app_.add_option("--workers", workers_)->capture_default_str();
  }
  void Parse(const std::string& file, std::vector<std::string> args) {
    app_.clear();
    char tmpl[] = "/tmp/lever-conf-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, file.data(), file.size()), static_cast<ssize_t>(file.size()));
    close(fd);
    path_ = tmpl;
    args.insert(args.begin(), {"leverd", "--config", path_});
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    try {
      app_.parse(static_cast<int>(argv.size()), argv.data());
    } catch (...) {
      unlink(path_.c_str());
      throw;
    }
    unlink(path_.c_str());
  }
  CLI::App app_{"leverd"};
  std::string listen_ = "127.0.0.1:8080", data_dir_, path_;
  int workers_ = 0;
  bool print_ = false;
};

TEST_F(ConfigAppTest, FileSetsFlagsAndTheCommandLineWins) {
  Parse("listen = \"0.0.0.0:9\"\ndata-dir = \"/srv/a,b #1\"\nworkers = 3\n", {"--workers", "5"});
  EXPECT_EQ(listen_, "0.0.0.0:9");
  EXPECT_EQ(data_dir_, "/srv/a,b #1");
  EXPECT_EQ(workers_, 5);
}

TEST_F(ConfigAppTest, UnknownOrUnsettableKeyIsRefused) {
  try {
    Parse("listen = \"x\"\nlistn = \"x\"\n", {});
    ADD_FAILURE() << "no error";
  } catch (const CLI::ConfigError& e) {
    EXPECT_STREQ(e.what(), "config file line 2: unknown flag listn (leverd --help lists them)");
  }
  try {
    Parse("print = true\n", {});
    ADD_FAILURE() << "no error";
  } catch (const CLI::ConfigError& e) {
    EXPECT_STREQ(e.what(), "config file line 1: --print cannot be set in a config file");
  }
}

TEST_F(ConfigAppTest, WrittenConfigReadsBack) {
  Parse("data-dir = \"/srv/q\\\"uote [a,b] #x\"\n", {"--listen", "h:1"});
  std::string written = app_.config_to_str(true, true);
  EXPECT_NE(written.find("workers = 0\n"), std::string::npos) << written;
  EXPECT_NE(written.find("listen = \"h:1\"\n"), std::string::npos) << written;
  EXPECT_EQ(written.find("config ="), std::string::npos) << written;
  listen_.clear();
  data_dir_.clear();
  Parse(written, {});
  EXPECT_EQ(listen_, "h:1");
  EXPECT_EQ(data_dir_, "/srv/q\"uote [a,b] #x");
}

}  // namespace
}  // namespace lever::leverd
