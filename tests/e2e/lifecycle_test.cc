// Instances and leverd over time: redeploys, crashes, restarts, idle stops,
// cancels, SIGTERM drains, and memory under a slow reader.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

constexpr char kService[] = R"({"name":"lifesvc"})";

Value Whoami(Client& c) {
  Result r = c.Service("dev.lever", "lifesvc").Invoke("Whoami", {}, CallOptions{std::chrono::seconds(30)});
  EXPECT_TRUE(r.ok()) << r.status.ToString();
  return r.value;
}

std::string Field(const Value& v, const char* key) {
  if (!v.is_map() || !v.as_map().Find(key)) return "";
  const Value& f = *v.as_map().Find(key);
  return f.is_string() ? f.as_string() : std::to_string(f.is_int() ? f.as_int() : 0);
}

TEST(LifecycleTest, RedeployMakesTheNewVersionLive) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  auto client = leverd.NewClient();
  EXPECT_EQ(Field(Whoami(*client), "version"), "1");
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  EXPECT_EQ(Field(Whoami(*client), "version"), "2");
}

TEST(LifecycleTest, CrashFailsTheCallPromptlyAndTheNextOneWorks) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  auto client = leverd.NewClient();
  std::string first = Field(Whoami(*client), "instance");
  Result r = client->Service("dev.lever", "lifesvc").Invoke("Crash", {}, CallOptions{std::chrono::seconds(30)});
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kUnavailable) << r.status.ToString();
  std::string second = Field(Whoami(*client), "instance");
  EXPECT_FALSE(second.empty());
  EXPECT_NE(first, second);
}

TEST(LifecycleTest, KillNineMidCall) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  auto client = leverd.NewClient();
  int pid = std::stoi(Field(Whoami(*client), "pid"));
  auto call = std::async(std::launch::async, [&] {
    return client->Service("dev.lever", "lifesvc").Invoke("SleepMs", {20000}, CallOptions{std::chrono::seconds(60)});
  });
  // Let the call reach the instance: it is in flight once ps says so.
  ASSERT_TRUE(WaitUntil(
      [&] {
        CommandResult ps = leverd.Lever({"--json", "ps"});
        return ps.out.find("\"inFlight\":1") != std::string::npos;
      },
      std::chrono::seconds(20)));
  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  Result r = call.get();
  auto took = std::chrono::steady_clock::now() - killed_at;
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kUnavailable) << r.status.ToString();
  EXPECT_LT(took, std::chrono::seconds(10));  // promptly: not the 20 s the call would have taken
  EXPECT_NE(Field(Whoami(*client), "pid"), std::to_string(pid));
}

TEST(LifecycleTest, RestartedLeverdServesWhatWasDeployed) {
  TempDir dir;
  {
    Leverd first({dir.path() + "/data", {}});
    first.Start();
    ASSERT_EQ(first.DeployTestService(kService).exit_code, 0);
    ASSERT_EQ(first.Stop(), 0);
  }
  Leverd second({dir.path() + "/data", {}});
  second.Start();
  CommandResult r = second.Lever({"invoke", "/lifesvc/BasicHello", "\"again\""});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\"hello again\"\n");
}

TEST(LifecycleTest, IdleTimeoutStopsTheInstance) {
  Leverd leverd({"", {"--idle-timeout", "300ms"}});
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  auto client = leverd.NewClient();
  int pid = std::stoi(Field(Whoami(*client), "pid"));
  EXPECT_TRUE(WaitUntil([&] { return kill(pid, 0) != 0; }, std::chrono::seconds(30)));
  // And a new call starts a new one.
  EXPECT_NE(Field(Whoami(*client), "pid"), std::to_string(pid));
}

TEST(LifecycleTest, SigtermDrainsCallsInFlight) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  auto client = leverd.NewClient();
  (void)Whoami(*client);
  auto call = std::async(std::launch::async, [&] {
    return client->Service("dev.lever", "lifesvc").Invoke("SleepMs", {700}, CallOptions{std::chrono::seconds(30)});
  });
  ASSERT_TRUE(WaitUntil(
      [&] { return leverd.Lever({"--json", "ps"}).out.find("\"inFlight\":1") != std::string::npos; },
      std::chrono::seconds(20)));
  EXPECT_EQ(leverd.Stop(), 0);
  Result r = call.get();
  EXPECT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(r.value, Value("slept"));
}

// Waits for `path` to appear, with inotify (no polling).
bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout) {
  std::filesystem::path p(path);
  int fd = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(fd, p.parent_path().c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
  bool found = std::filesystem::exists(p);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!found && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) > 0) {
      char buf[4096];
      (void)read(fd, buf, sizeof buf);
    }
    found = std::filesystem::exists(p);
  }
  close(fd);
  return found;
}

TEST(LifecycleTest, ClientCancelReachesTheHandler) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  TempDir markers;
  chmod(markers.path().c_str(), 0777);
  std::string marker = markers.path() + "/cancelled";
  auto client = leverd.NewClient();
  (void)Whoami(*client);
  Result r = client->Service("dev.lever", "lifesvc")
                 .Invoke("WaitForCancel", {marker}, CallOptions{std::chrono::milliseconds(500)});
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kDeadlineExceeded);
  EXPECT_TRUE(WaitForFile(marker, std::chrono::seconds(20))) << "the handler never saw the cancel";
}

TEST(LifecycleTest, SlowReaderKeepsLeverdMemoryBounded) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  auto client = leverd.NewClient();
  (void)Whoami(*client);
  int64_t before = RssBytes(leverd.pid());
  ClientStreamPtr s;
  constexpr int64_t kTotal = 100 << 20;
  ASSERT_TRUE(client->Service("dev.lever", "lifesvc").InvokeStream(&s, "SourceChan", {kTotal, 65536}).ok());
  int64_t received = 0, peak = before;
  uint64_t checksum = 0;
  for (;;) {
    Result m = s->Receive();
    if (!m.ok()) {
      EXPECT_TRUE(m.is_end()) << m.status.ToString();
      break;
    }
    // The reader is slow: a byte-at-a-time checksum of every chunk.
    for (char c : m.value.as_bytes().view()) checksum = checksum * 31 + static_cast<unsigned char>(c);
    received += static_cast<int64_t>(m.value.as_bytes().size());
    if ((received & ((4 << 20) - 1)) == 0) {
      peak = std::max(peak, RssBytes(leverd.pid()));
    }
  }
  EXPECT_EQ(received, kTotal);
  EXPECT_NE(checksum, 0u);
  EXPECT_LT(peak - before, 48 << 20) << "leverd grew by " << (peak - before) << " bytes relaying 100 MiB";
}

}  // namespace
}  // namespace lever::e2e
