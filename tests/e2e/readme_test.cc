// The README's quick start, run as written against a real leverd, so that it
// never rots: every `lever deploy` / `lever invoke` / `curl` line of the
// quick-start shell block must print what its comment says (N stands for a
// number; 127.0.0.1:8080 becomes the test's leverd), and the Node snippet must
// print the reply.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;

std::string Readme() {
  std::ifstream in(std::string(LEVER_SOURCE_DIR) + "/README.md");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The first fenced block of `lang` after `heading`.
std::string Block(const std::string& text, const std::string& heading, const std::string& lang) {
  size_t at = text.find(heading);
  if (at == std::string::npos) return "";
  size_t open = text.find("```" + lang + "\n", at);
  if (open == std::string::npos) return "";
  open += 4 + lang.size();
  size_t close = text.find("```", open);
  return text.substr(open, close - open);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(0, 1);
  return s;
}

TEST(ReadmeTest, QuickStartCommandsPrintWhatTheReadmeSays) {
  Leverd leverd;
  leverd.Start();
  std::string readme = Readme();
  std::string shell = Block(readme, "## Quick start", "sh");
  ASSERT_FALSE(shell.empty());
  std::string cli_dir = fs::path(LeverPath()).parent_path().string();
  int checked = 0;
  std::istringstream lines(shell);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("lever deploy") && !line.starts_with("lever invoke") && !line.starts_with("curl ")) {
      continue;
    }
    size_t hash = line.find("  #");
    ASSERT_NE(hash, std::string::npos) << "no expected output in: " << line;
    std::string command = std::regex_replace(Trim(line.substr(0, hash)), std::regex("127\\.0\\.0\\.1:8080"),
                                             leverd.address());
    std::string expected = Trim(line.substr(hash + 3));
    CommandResult r = RunCommand({"/bin/bash", "-c",
                                  "cd '" + std::string(LEVER_SOURCE_DIR) + "' && PATH='" + cli_dir +
                                      "':$PATH LEVEROS_IP_PORT=" + leverd.address() + " " + command});
    ASSERT_EQ(r.exit_code, 0) << command << ": " << r.err;
    std::string pattern = std::regex_replace(expected, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)");
    pattern = std::regex_replace(pattern, std::regex(" N$"), " [0-9]+");
    EXPECT_TRUE(std::regex_match(Trim(r.out), std::regex(pattern))) << command << " printed " << r.out
                                                                    << " but the README says " << expected;
    ++checked;
  }
  EXPECT_GE(checked, 3);

  // The Node snippet, with the real address, inside an async function.
  std::string js = Block(readme, "From Node", "js");
  ASSERT_NE(js.find("127.0.0.1:8080"), std::string::npos);
  js = std::regex_replace(js, std::regex("127\\.0\\.0\\.1:8080"), leverd.address());
  TempDir dir;
  fs::create_directories(dir.path() + "/node_modules");
  fs::create_directory_symlink(std::string(LEVER_SOURCE_DIR) + "/sdk/node", dir.path() + "/node_modules/leveros");
  std::ofstream(dir.path() + "/snippet.js") << "(async () => {\n" << js << "console.log(JSON.stringify(reply));\n})();\n";
  CommandResult node = RunCommand({"/usr/bin/env", "node", dir.path() + "/snippet.js"});
  ASSERT_EQ(node.exit_code, 0) << node.err;
  EXPECT_EQ(node.out, "\"Hello, world!\"\n");
}

}  // namespace
}  // namespace lever::e2e
