#include "lever/host/host.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <sstream>

#include "testutil.h"

#ifndef LEVER_TEST_INSTANCE
#error "LEVER_TEST_INSTANCE must name the test instance program"
#endif

namespace lever::host {
namespace {

using std::chrono::milliseconds;
using testing::ReadFileOrEmpty;
using testing::TarBuilder;
using testing::TempDir;
using testing::WaitFor;

// $LEVER_TEST_INSTANCE overrides (a sanitizer build's instance cannot run
// under the 50 MB RLIMIT_AS).
const char* const kInstance = getenv("LEVER_TEST_INSTANCE") ? getenv("LEVER_TEST_INSTANCE") : LEVER_TEST_INSTANCE;

std::map<std::string, std::string> ParseEnvFile(const std::string& text) {
  std::map<std::string, std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

std::string JsonArray(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ",\"" : "\"") + v[i] + "\"";
  return out + "]";
}

class HostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = sandbox_.path() + "/d";
    out_ = sandbox_.path() + "/out";
    ASSERT_EQ(mkdir(out_.c_str(), 0755), 0);
    options_.data_dir = data_;
    options_.process.memory_cgroup = "none";
    options_.process.pids_cgroup = "none";
    options_.start_timeout = milliseconds(5000);
    options_.stop_grace = milliseconds(2000);
    options_.admin_address = "unix:/tmp/admin-test.sock";
    options_.log_sink = [this](std::string_view line) {
      std::lock_guard lock(mu_);
      if (getenv("LEVER_TEST_VERBOSE")) fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
      sink_.emplace_back(line);
    };
    options_.ensure_internal_listener = [this](std::string_view env, std::string* path) {
      std::lock_guard lock(mu_);
      listener_calls_.emplace_back(env);
      *path = sandbox_.path() + "/internal-" + std::string(env) + ".sock";
      return Status::Ok();
    };
  }

  void TearDown() override { host_.reset(); }  // before the sink it writes to

  void StartHost() {
    host_.reset();
    Status s = Host::Create(options_, &host_);
    ASSERT_TRUE(s.ok()) << s.message();
  }

  // Deploys a service whose entry is the test instance with `args`, and
  // waits until the new version is live.
  DeployResult Deploy(const std::string& env, const std::string& name, const std::vector<std::string>& args,
                      const std::string& extra = "", bool wait = true) {
    std::vector<std::string> entry = {kInstance, "--env-out", out_};
    entry.insert(entry.end(), args.begin(), args.end());
    std::string json = R"({"name":")" + name + R"(","entry":)" + JsonArray(entry) + extra + "}";
    return DeployTar(env, TarBuilder().File("lever.json", json).Finish(), wait);
  }

  // Uploads; with `wait`, also waits for the rollout and expects it live.
  DeployResult DeployTar(const std::string& env, const std::string& tgz, bool wait = true) {
    std::unique_ptr<DeploySession> session;
    DeployResult r;
    Status s = host_->BeginDeploy(env, &session);
    EXPECT_TRUE(s.ok()) << s.message();
    if (!s.ok()) return r;
    EXPECT_TRUE(session->Write(tgz).ok());
    s = session->Finish(&r);
    EXPECT_TRUE(s.ok()) << s.message();
    if (s.ok() && wait) {
      s = Rollout(r);
      EXPECT_TRUE(s.ok()) << s.message();
    }
    return r;
  }

  Status Rollout(const DeployResult& r) {
    return host_->AwaitRollout(r.env, r.service, r.version, std::chrono::steady_clock::now() + std::chrono::seconds(20));
  }

  struct Routed {
    RouteResult result;
    bool sync = false;
  };
  // A route asked for and not yet waited on (Route waits on it).
  struct PendingRoute {
    std::future<RouteResult> future;
    std::shared_ptr<std::atomic<bool>> sync;  // answered inside host_->Route
  };
  PendingRoute StartRoute(std::string_view env, std::string_view service, std::string_view resource = "",
                          std::string_view src_env = "") {
    auto promise = std::make_shared<std::promise<RouteResult>>();
    auto returned = std::make_shared<std::atomic<bool>>(false);
    PendingRoute pending{promise->get_future(), std::make_shared<std::atomic<bool>>(false)};
    host_->Route({env, service, resource, "Method", src_env}, [returned, sync = pending.sync, promise](RouteResult r) {
      sync->store(!returned->load());
      promise->set_value(std::move(r));
    });
    returned->store(true);
    return pending;
  }
  Routed Route(std::string_view env, std::string_view service, std::string_view resource = "",
               std::string_view src_env = "") {
    PendingRoute pending = StartRoute(env, service, resource, src_env);
    Routed out;
    EXPECT_EQ(pending.future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    out.result = pending.future.get();
    out.sync = pending.sync->load();
    return out;
  }

  std::vector<InstanceInfo> Instances(const std::string& service, const std::string& state = "") {
    std::vector<InstanceInfo> all, out;
    EXPECT_TRUE(host_->ListInstances("dev.lever", service, &all).ok());
    for (auto& i : all) {
      if (state.empty() || i.state == state) out.push_back(i);
    }
    return out;
  }

  std::map<std::string, std::string> EnvOf(const BackendPtr& b) {
    // The socket name is the instance ID.
    std::string addr = b->address();
    std::string id = addr.substr(addr.rfind('/') + 1);
    id = id.substr(0, id.size() - 5);
    std::string path = out_ + "/" + id + ".env";
    EXPECT_TRUE(WaitFor([&] { return access(path.c_str(), F_OK) == 0; }));
    return ParseEnvFile(ReadFileOrEmpty(path));
  }

  // Waits for the service's last log line to end with `suffix`.
  bool LogEndsWith(const std::string& service, const std::string& suffix) {
    std::vector<LogLine> lines;
    bool ok = WaitFor([&] {
      EXPECT_TRUE(host_->TailLogs("dev.lever", service, 1, &lines).ok());
      return !lines.empty() && lines.back().text.size() >= suffix.size() &&
             lines.back().text.compare(lines.back().text.size() - suffix.size(), suffix.size(), suffix) == 0;
    });
    if (!ok) ADD_FAILURE() << "last line: " << (lines.empty() ? "(none)" : lines.back().text);
    return ok;
  }

  // Waits for one of the service's last lines to be `text`; says which lines
  // there were if none is.
  bool WaitForLogLine(const std::string& service, const std::string& text) {
    std::vector<LogLine> lines;
    bool ok = WaitFor([&] {
      EXPECT_TRUE(host_->TailLogs("dev.lever", service, 10, &lines).ok());
      return std::any_of(lines.begin(), lines.end(), [&](const LogLine& l) { return l.text == text; });
    });
    if (!ok) {
      std::string seen;
      for (auto& l : lines) seen += "\n  " + l.text;
      ADD_FAILURE() << "no line \"" << text << "\"; lines:" << (seen.empty() ? " (none)" : seen);
    }
    return ok;
  }

  bool SinkHas(const std::string& text) {
    std::lock_guard lock(mu_);
    for (auto& l : sink_) {
      if (l == text) return true;
    }
    return false;
  }

  TempDir sandbox_;
  std::string data_, out_;
  HostOptions options_;
  std::shared_ptr<Host> host_;
  std::mutex mu_;
  std::vector<std::string> sink_;
  std::vector<std::string> listener_calls_;
};

TEST_F(HostTest, ColdStartRunsEntryWithCleanEnvironment) {
  StartHost();
  std::string serve = std::string("#!/bin/sh\nexec ") + kInstance + " \"$@\"\n";
  std::string json = R"({"name":"hello","entry":["./bin/serve","--env-out",")" + out_ +
                     R"(","--say","hi there","--warn","careful"]})";
  DeployResult r = DeployTar("dev.lever", TarBuilder()
                                              .File("lever.json", json)
                                              .Dir("bin")
                                              .File("bin/serve", serve, 0755)
                                              .Finish(),
                             false);
  ASSERT_EQ(r.version, 1);
  // The deploy starts its version's instance before the switch: the call
  // waits for it, or (on a fast start) finds it ready. Which one is a race,
  // and not this test's subject.
  Routed first = Route("dev.lever", "hello");
  ASSERT_TRUE(first.result.status.ok()) << first.result.status.message();
  BackendPtr b = first.result.backend;
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->alive());
  EXPECT_EQ(b->address().rfind("unix:" + data_ + "/run/", 0), 0u) << b->address();

  auto env = EnvOf(b);
  EXPECT_EQ(env["LEVEROS_ENVIRONMENT"], "dev.lever");
  EXPECT_EQ(env["LEVEROS_SERVICE"], "hello");
  EXPECT_EQ(env["LEVEROS_CODE_VERSION"], "1");
  EXPECT_EQ(env["LEVEROS_INTERNAL_ENV_SUFFIX"], ".lever");
  EXPECT_EQ(env["LEVEROS_LISTEN_ADDR"], b->address());
  EXPECT_EQ(env["LEVEROS_INTERNAL_RPC_GATEWAY"], "unix:" + sandbox_.path() + "/internal-dev.lever.sock");
  std::string id = env["LEVEROS_INSTANCE_ID"];
  ASSERT_EQ(id.size(), 32u);
  for (char c : id) EXPECT_TRUE(isalnum(static_cast<unsigned char>(c))) << id;
  EXPECT_FALSE(env["PATH"].empty());
  EXPECT_EQ(env.count("HOME"), 0u);  // a clean environment
  EXPECT_EQ(env["CWD"], r.code_dir);
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(listener_calls_, std::vector<std::string>{"dev.lever"});
  }

  // A ready instance answers synchronously, and is the same one.
  Routed second = Route("dev.lever", "hello");
  ASSERT_TRUE(second.result.status.ok());
  EXPECT_TRUE(second.sync);
  EXPECT_EQ(second.result.backend->id(), b->id());

  auto ready = Instances("hello", "ready");
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].instance_id, id);
  EXPECT_GT(ready[0].pid, 0);
  EXPECT_EQ(ready[0].version, 1);

  // Output lines, prefixed, in the ring buffer and the sink (beside the
  // host's own notes, which may come first).
  std::vector<LogLine> lines;
  std::set<std::string> texts;
  ASSERT_TRUE(WaitFor([&] {
    EXPECT_TRUE(host_->TailLogs("dev.lever", "hello", 10, &lines).ok());
    texts.clear();
    for (auto& l : lines) texts.insert(l.text);
    return texts.count("lever://dev.lever/hello v1 hi there") && texts.count("lever://dev.lever/hello v1 careful");
  }));
  EXPECT_TRUE(SinkHas("lever://dev.lever/hello v1 hi there"));
  EXPECT_EQ(host_->TailLogs("dev.lever", "nope", 10, &lines).code(), Code::kNotFound);
}

TEST_F(HostTest, FollowLogsWaitsForNewLines) {
  StartHost();
  Deploy("dev.lever", "talker", {"--say", "line one"});
  // Follow from the start until the instance's line is there (the host's
  // note that v1 is live may come before or after it).
  std::vector<LogLine> got;
  const LogLine* said = nullptr;
  bool live = false;
  ASSERT_TRUE(WaitFor([&] {
    std::vector<LogLine> more;
    uint64_t after = got.empty() ? 0 : got.back().seq;
    EXPECT_TRUE(host_->ReadLogs("dev.lever", "talker", after, 100,
                                std::chrono::steady_clock::now() + milliseconds(100), &more).ok());
    got.insert(got.end(), more.begin(), more.end());
    for (const LogLine& l : got) {
      if (l.text == "lever://dev.lever/talker v1 line one") said = &l;
      live |= l.text == "lever://dev.lever/talker v1 [host] v1 is live";
    }
    return said != nullptr && live;
  }));
  EXPECT_EQ(said->stream, "stdout");
  // Nothing new: returns empty at the deadline.
  ASSERT_TRUE(host_->ReadLogs("dev.lever", "talker", got.back().seq, 100,
                              std::chrono::steady_clock::now() + milliseconds(50), &got).ok());
  EXPECT_TRUE(got.empty());
}

TEST_F(HostTest, KilledInstanceIsDetectedAndReplaced) {
  StartHost();
  Deploy("dev.lever", "fragile", {});
  Routed r1 = Route("dev.lever", "fragile");
  ASSERT_TRUE(r1.result.status.ok());
  auto ready = Instances("fragile", "ready");
  ASSERT_EQ(ready.size(), 1u);
  ASSERT_EQ(kill(ready[0].pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] {
    auto all = Instances("fragile");
    return !r1.result.backend->alive() &&
           std::none_of(all.begin(), all.end(), [&](const InstanceInfo& i) { return i.pid == ready[0].pid; });
  }));
  EXPECT_TRUE(LogEndsWith("fragile", "was killed by signal 9 (SIGKILL)"));

  Routed r2 = Route("dev.lever", "fragile");
  ASSERT_TRUE(r2.result.status.ok());
  EXPECT_NE(r2.result.backend->id(), r1.result.backend->id());
  EXPECT_TRUE(r2.result.backend->alive());
}

TEST_F(HostTest, IdleInstanceStops) {
  options_.idle_timeout = milliseconds(200);
  StartHost();
  Deploy("dev.lever", "sleepy", {});
  Routed r = Route("dev.lever", "sleepy");
  ASSERT_TRUE(r.result.status.ok());
  ASSERT_TRUE(WaitFor([&] { return !r.result.backend->alive() && Instances("sleepy").empty(); })) << [&] {
    std::vector<ServiceStatus> st;
    (void)host_->ListServiceStatus("dev.lever", &st);
    return st.empty() ? "" : st[0].reason + " " + std::to_string(st[0].desired);
  }();
}

TEST_F(HostTest, StubbornInstanceIsKilledAfterGrace) {
  options_.idle_timeout = milliseconds(100);
  options_.stop_grace = milliseconds(200);
  StartHost();
  Deploy("dev.lever", "stubborn", {"--ignore-term"});
  Routed r = Route("dev.lever", "stubborn");
  ASSERT_TRUE(r.result.status.ok());
  ASSERT_TRUE(WaitFor([&] { return Instances("stubborn").empty(); }));
  EXPECT_TRUE(LogEndsWith("stubborn", "stopped: it was killed by signal 9 (SIGKILL)"));
}

TEST_F(HostTest, DestroyingTheHostStopsInstancesGracefully) {
  StartHost();
  std::string term = out_ + "/terminated";
  Deploy("dev.lever", "polite", {"--term-file", term});
  Routed r = Route("dev.lever", "polite");
  ASSERT_TRUE(r.result.status.ok());
  host_.reset();
  EXPECT_FALSE(r.result.backend->alive());
  EXPECT_EQ(access(term.c_str(), F_OK), 0);  // it got SIGTERM, not SIGKILL
}

TEST_F(HostTest, BrokenConnectionReportedByGatewayReplacesInstance) {
  StartHost();
  Deploy("dev.lever", "deaf", {});
  Routed r = Route("dev.lever", "deaf");
  ASSERT_TRUE(r.result.status.ok());
  std::string path = r.result.backend->address().substr(5);
  ASSERT_EQ(unlink(path.c_str()), 0);  // its socket stops accepting
  r.result.backend->OnConnectionFailed();
  ASSERT_TRUE(WaitFor([&] { return !r.result.backend->alive(); }));
  Routed again = Route("dev.lever", "deaf");
  ASSERT_TRUE(again.result.status.ok());
  EXPECT_NE(again.result.backend->id(), r.result.backend->id());
}

TEST_F(HostTest, ConnectionFailureMakesTheInstanceSuspectUntilChecked) {
  StartHost();
  Deploy("dev.lever", "checked", {});
  Routed r = Route("dev.lever", "checked");
  ASSERT_TRUE(r.result.status.ok());
  auto ready = Instances("checked", "ready");
  ASSERT_EQ(ready.size(), 1u);
  // A spurious report: the check passes and the call goes to the same instance.
  r.result.backend->OnConnectionFailed();
  Routed same = Route("dev.lever", "checked");
  ASSERT_TRUE(same.result.status.ok());
  EXPECT_EQ(same.result.backend->id(), r.result.backend->id());
  EXPECT_EQ(Instances("checked").size(), 1u);
  // A dead socket the gateway noticed first (as after a crash, whose closed
  // files the gateway sees before the host reaps the process): the very next
  // call waits for the check and goes to a new instance.
  ASSERT_EQ(unlink(r.result.backend->address().substr(5).c_str()), 0);
  r.result.backend->OnConnectionFailed();
  Routed next = Route("dev.lever", "checked");
  ASSERT_TRUE(next.result.status.ok()) << next.result.status.message();
  EXPECT_NE(next.result.backend->id(), r.result.backend->id());
  EXPECT_FALSE(r.result.backend->alive());
}

TEST_F(HostTest, MinInstancesStartedOnDeployAndKept) {
  options_.idle_timeout = milliseconds(50);
  StartHost();
  Deploy("dev.lever", "always", {}, R"(,"minInstances":2)");
  ASSERT_TRUE(WaitFor([&] { return Instances("always", "ready").size() == 2; }));
  auto ready = Instances("always", "ready");
  ASSERT_EQ(kill(ready[0].pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] {
    auto now = Instances("always", "ready");
    return now.size() == 2 && now[0].pid != ready[0].pid && now[1].pid != ready[0].pid;
  }));
  // Also on a restart of the host with the same data dir.
  host_.reset();
  StartHost();
  ASSERT_TRUE(WaitFor([&] { return Instances("always", "ready").size() == 2; }));
}

TEST_F(HostTest, LeastOutstandingAndScaleUp) {
  options_.autoscale_panic_window = milliseconds(60);  // a 10 ms load sample
  StartHost();
  Deploy("dev.lever", "busy", {}, R"(,"minInstances":2,"maxInstanceLoad":1)");
  ASSERT_TRUE(WaitFor([&] { return Instances("busy", "ready").size() == 2; }));
  Routed a = Route("dev.lever", "busy");
  ASSERT_TRUE(a.result.status.ok());
  a.result.backend->OnCallStart();
  Routed b = Route("dev.lever", "busy");
  ASSERT_TRUE(b.result.status.ok());
  EXPECT_NE(a.result.backend->id(), b.result.backend->id());  // the idle one
  b.result.backend->OnCallStart();
  a.result.backend->OnCallEnd();
  Routed c = Route("dev.lever", "busy");
  EXPECT_EQ(c.result.backend->id(), a.result.backend->id());
  EXPECT_EQ(Instances("busy").size(), 2u);
  // Twice as many calls in flight as the 2 instances take: the autoscaler
  // panics up to 4 at its next load sample.
  a.result.backend->OnCallStart();
  c.result.backend->OnCallStart();
  Routed d = Route("dev.lever", "busy");
  ASSERT_TRUE(d.result.status.ok());
  d.result.backend->OnCallStart();
  ASSERT_TRUE(WaitFor([&] { return Instances("busy", "ready").size() == 4; }));
  Routed e = Route("dev.lever", "busy");
  EXPECT_NE(e.result.backend->id(), a.result.backend->id());
  EXPECT_NE(e.result.backend->id(), b.result.backend->id());
  std::vector<ServiceStatus> st;
  ASSERT_TRUE(host_->ListServiceStatus("dev.lever", &st).ok());
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].desired, 4);
  EXPECT_EQ(st[0].reason, "panic");
}

TEST_F(HostTest, ResourcesStickToOneInstance) {
  StartHost();
  Deploy("dev.lever", "sharded", {}, R"(,"minInstances":3)");
  ASSERT_TRUE(WaitFor([&] { return Instances("sharded", "ready").size() == 3; }));
  std::map<std::string, uint64_t> owner;
  std::set<uint64_t> used;
  for (int i = 0; i < 30; ++i) {
    std::string res = "res-" + std::to_string(i);
    Routed r = Route("dev.lever", "sharded", res);
    ASSERT_TRUE(r.result.status.ok());
    owner[res] = r.result.backend->id();
    used.insert(r.result.backend->id());
    r.result.backend->OnCallStart();  // load must not move a resource
  }
  EXPECT_GE(used.size(), 2u);
  for (auto& [res, id] : owner) {
    Routed r = Route("dev.lever", "sharded", res);
    EXPECT_EQ(r.result.backend->id(), id) << res;
  }
}

// Many gateway threads route, account load and report failures while
// instances idle out and crash: every call is answered exactly once, with a
// live backend or a platform error.
TEST_F(HostTest, ConcurrentRoutingUnderChurn) {
  options_.idle_timeout = milliseconds(20);
  options_.max_instances_per_service = 4;
  StartHost();
  Deploy("dev.lever", "churn", {}, R"(,"maxInstanceLoad":2)");
  std::atomic<int> answered{0}, ok{0}, calls{0};
  std::atomic<bool> twice{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        auto once = std::make_shared<std::atomic<bool>>(false);
        auto promise = std::make_shared<std::promise<RouteResult>>();
        auto future = promise->get_future();
        std::string res = (i % 3 == 0) ? "r" + std::to_string(i % 7) : "";
        calls++;
        host_->Route({"dev.lever", "churn", res, "M", ""}, [&, once, promise](RouteResult r) {
          if (once->exchange(true)) twice = true;
          answered++;
          promise->set_value(std::move(r));
        });
        if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) continue;
        RouteResult r = future.get();
        if (!r.status.ok()) continue;
        ok++;
        r.backend->OnCallStart();
        if ((i + t) % 17 == 0) r.backend->OnConnectionFailed();
        r.backend->OnCallEnd();
      }
    });
  }
  std::thread killer([&] {
    for (int k = 0; k < 5; ++k) {
      WaitFor([&] { return !Instances("churn", "ready").empty(); }, milliseconds(2000));
      auto ready = Instances("churn", "ready");
      if (!ready.empty()) kill(ready[0].pid, SIGKILL);
    }
  });
  for (auto& th : threads) th.join();
  killer.join();
  EXPECT_EQ(answered.load(), calls.load());
  EXPECT_FALSE(twice.load());
  EXPECT_GT(ok.load(), calls.load() / 2);
  host_.reset();
}

TEST(Placement, RendezvousMovesOnlyTheRemovedInstancesResources) {
  PlacementPtr p = NewDefaultPlacement();
  std::vector<PlacementCandidate> four = {{PlacementKey("a"), 0}, {PlacementKey("b"), 5}, {PlacementKey("c"), 1},
                                          {PlacementKey("d"), 0}};
  std::vector<PlacementCandidate> three = {four[0], four[1], four[3]};  // "c" gone
  int moved = 0, on_c = 0;
  for (int i = 0; i < 200; ++i) {
    std::string res = "r" + std::to_string(i);
    size_t before = p->Pick(four, res);
    size_t after = p->Pick(three, res);
    EXPECT_EQ(p->Pick(four, res), before);  // stable
    if (before == 2) {
      ++on_c;
      continue;
    }
    if (four[before].key != three[after].key) ++moved;
  }
  EXPECT_EQ(moved, 0);
  EXPECT_GT(on_c, 20);
  EXPECT_LT(on_c, 90);
  // Least outstanding without a resource.
  EXPECT_EQ(p->Pick(four, ""), 0u);
  std::vector<PlacementCandidate> loaded = {{1, 3}, {2, 1}, {3, 2}};
  EXPECT_EQ(p->Pick(loaded, ""), 1u);
  EXPECT_FALSE(p->WantMore(loaded, 0, 2.0));
  EXPECT_TRUE(p->WantMore(loaded, 0, 1.0));
  EXPECT_FALSE(p->WantMore(loaded, 1, 1.0));
}

TEST_F(HostTest, ColdStartQueueIsBoundedAndFailsWhenStartTimesOut) {
  options_.max_waiting_calls = 3;
  options_.start_timeout = milliseconds(300);
  StartHost();
  Deploy("dev.lever", "mute", {"--no-listen", "--say", "never ready"}, "", false);
  std::vector<std::future<RouteResult>> pending;
  for (int i = 0; i < 3; ++i) {
    auto promise = std::make_shared<std::promise<RouteResult>>();
    pending.push_back(promise->get_future());
    host_->Route({"dev.lever", "mute", "", "M", ""}, [promise](RouteResult r) { promise->set_value(std::move(r)); });
  }
  Routed full = Route("dev.lever", "mute");
  EXPECT_TRUE(full.sync);
  EXPECT_EQ(full.result.status.code(), Code::kResourceExhausted) << full.result.status.message();
  for (auto& f : pending) {
    ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    RouteResult r = f.get();
    EXPECT_EQ(r.status.code(), Code::kUnavailable);
    EXPECT_NE(r.status.message().find("failed to start"), std::string::npos) << r.status.message();
  }
  ASSERT_TRUE(WaitFor([&] { return Instances("mute").empty(); }));
}

TEST_F(HostTest, ColdStartWaitIsBounded) {
  options_.cold_start_wait = milliseconds(100);
  StartHost();
  Deploy("dev.lever", "slow", {"--no-listen"}, "", false);
  Routed r = Route("dev.lever", "slow");
  EXPECT_EQ(r.result.status.code(), Code::kUnavailable) << r.result.status.message();
  EXPECT_NE(r.result.status.message().find("did not start within 0.1 s"), std::string::npos);
}

// A version that cannot start is never made live: its deploy fails with
// why, and its last output lines; calls waiting for it fail the same way.
TEST_F(HostTest, StartFailureCarriesExitStatusAndLastLine) {
  StartHost();
  DeployResult q = Deploy("dev.lever", "quitter", {"--exit-now", "3"}, "", false);
  Status s = Rollout(q);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("exited with status 3"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("last output:\n  lever://dev.lever/quitter v1 giving up"), std::string::npos)
      << s.message();
  EXPECT_EQ(Route("dev.lever", "quitter").result.status.code(), Code::kNotFound);  // nothing is live

  DeployResult js = DeployTar("dev.lever", TarBuilder().File("lever.json", R"({"name":"nodejs","jsEntry":"index.js"})").Finish(),
                              false);
  s = Rollout(js);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("lever-serve"), std::string::npos) << s.message();

  DeployResult missing = DeployTar("dev.lever", TarBuilder().File("lever.json", R"({"name":"missing"})").Finish(), false);
  s = Rollout(missing);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("./serve"), std::string::npos) << s.message();

  // A call waiting for a first version that fails gets the failure. The
  // instance exits only once the call waits (a gate file): had it exited
  // first, nothing would be live and the call would be NotFound.
  std::string gate = sandbox_.path() + "/quitter2-gate";
  Deploy("dev.lever", "quitter2", {"--wait-for", gate, "--exit-now", "4"}, "", false);
  PendingRoute pending = StartRoute("dev.lever", "quitter2");
  std::ofstream(gate).flush();
  ASSERT_EQ(pending.future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  RouteResult r = pending.future.get();
  EXPECT_EQ(r.status.code(), Code::kUnavailable) << r.status.message();
  EXPECT_NE(r.status.message().find("exited with status 4"), std::string::npos) << r.status.message();
}

// A bad version deployed over a good one: the good one stays live and its
// instance is untouched.
TEST_F(HostTest, BadVersionIsNeverSwitchedTo) {
  StartHost();
  Deploy("dev.lever", "steady", {});
  Routed v1 = Route("dev.lever", "steady");
  ASSERT_TRUE(v1.result.status.ok());
  DeployResult bad = Deploy("dev.lever", "steady", {"--exit-now", "1"}, "", false);
  Status s = Rollout(bad);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("v1 stays live"), std::string::npos) << s.message();
  Routed after = Route("dev.lever", "steady");
  ASSERT_TRUE(after.result.status.ok());
  EXPECT_EQ(after.result.backend->id(), v1.result.backend->id());
  std::vector<ServiceInfo> services;
  ASSERT_TRUE(host_->ListServices("dev.lever", &services).ok());
  EXPECT_EQ(services[0].live_version, 1);
  ASSERT_TRUE(host_->registry()->GetService("dev.lever", "steady", &services[0]).ok());
  EXPECT_EQ(services[0].live_version, 1);  // a restart serves v1 too
}

TEST_F(HostTest, PrivateServiceOnlyFromInside) {
  StartHost();
  Deploy("dev.lever", "secret", {}, R"(,"private":true)");
  Routed outside = Route("dev.lever", "secret");
  EXPECT_EQ(outside.result.status.code(), Code::kPermissionDenied);
  EXPECT_TRUE(outside.sync);
  Routed inside = Route("dev.lever", "secret", "", "dev.lever");
  EXPECT_TRUE(inside.result.status.ok()) << inside.result.status.message();
}

TEST_F(HostTest, RoutingErrorsAndTheAdminService) {
  StartHost();
  EXPECT_EQ(Route("dev.example", "x").result.status.code(), Code::kInvalidArgument);
  EXPECT_EQ(Route("dev.example", "x").result.status.message(), "cannot route to environment dev.example");
  EXPECT_EQ(Route("nope.lever", "x").result.status.code(), Code::kNotFound);
  EXPECT_EQ(Route("dev.lever", "nothing").result.status.code(), Code::kNotFound);
  Routed admin = Route("admin.lever", "admin");
  ASSERT_TRUE(admin.result.status.ok());
  EXPECT_TRUE(admin.sync);
  EXPECT_EQ(admin.result.backend->address(), "unix:/tmp/admin-test.sock");
  std::vector<InstanceInfo> all;
  ASSERT_TRUE(host_->ListInstances("admin.lever", "", &all).ok());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state, "builtin");
  std::vector<ServiceInfo> services;
  ASSERT_TRUE(host_->ListServices("admin.lever", &services).ok());
  ASSERT_EQ(services.size(), 1u);
  EXPECT_EQ(services[0].name, "admin");
}

TEST_F(HostTest, RedeployRoutesToNewVersionAndRetiresOld) {
  options_.retired_idle_timeout = milliseconds(100);
  StartHost();
  Deploy("dev.lever", "evolving", {});
  Routed v1 = Route("dev.lever", "evolving");
  ASSERT_TRUE(v1.result.status.ok());
  EXPECT_EQ(EnvOf(v1.result.backend)["LEVEROS_CODE_VERSION"], "1");
  DeployResult r2 = Deploy("dev.lever", "evolving", {"--say", "v2"});
  EXPECT_EQ(r2.version, 2);
  Routed v2 = Route("dev.lever", "evolving");
  ASSERT_TRUE(v2.result.status.ok());
  EXPECT_NE(v2.result.backend->id(), v1.result.backend->id());
  EXPECT_EQ(EnvOf(v2.result.backend)["LEVEROS_CODE_VERSION"], "2");
  ASSERT_TRUE(WaitFor([&] { return !v1.result.backend->alive() && Instances("evolving").size() == 1; }));
  EXPECT_TRUE(v2.result.backend->alive());
}

TEST_F(HostTest, ServicesSurviveARestart) {
  StartHost();
  Deploy("dev.lever", "durable", {}, R"(,"description":"stays")");
  std::shared_ptr<Host> second;
  EXPECT_EQ(Host::Create(options_, &second).code(), Code::kFailedPrecondition);  // one leverd per data dir
  host_.reset();
  StartHost();
  std::vector<ServiceInfo> services;
  ASSERT_TRUE(host_->ListServices("dev.lever", &services).ok());
  ASSERT_EQ(services.size(), 1u);
  EXPECT_EQ(services[0].name, "durable");
  EXPECT_EQ(services[0].live_version, 1);
  Routed r = Route("dev.lever", "durable");
  EXPECT_TRUE(r.result.status.ok()) << r.result.status.message();
}

TEST_F(HostTest, EnvironmentsCreateListDelete) {
  StartHost();
  ASSERT_TRUE(host_->CreateEnvironment("qa.lever", "QA").ok());
  EXPECT_EQ(host_->CreateEnvironment("qa.lever", "QA").code(), Code::kAlreadyExists);
  std::vector<EnvironmentInfo> envs;
  ASSERT_TRUE(host_->ListEnvironments(&envs).ok());
  ASSERT_EQ(envs.size(), 3u);
  EXPECT_EQ(envs[2].name, "qa.lever");
  Deploy("qa.lever", "thing", {});
  Routed r = Route("qa.lever", "thing");
  ASSERT_TRUE(r.result.status.ok());
  ASSERT_TRUE(host_->DeleteEnvironment("qa.lever").ok());
  ASSERT_TRUE(WaitFor([&] { return !r.result.backend->alive(); }));
  EXPECT_EQ(Route("qa.lever", "thing").result.status.code(), Code::kNotFound);
  std::vector<ServiceInfo> services;
  EXPECT_EQ(host_->ListServices("qa.lever", &services).code(), Code::kNotFound);
  EXPECT_NE(access((data_ + "/code/qa.lever").c_str(), F_OK), 0);
  EXPECT_EQ(host_->DeleteEnvironment("admin.lever").code(), Code::kPermissionDenied);
}

TEST_F(HostTest, RlimitsWithoutCgroups) {
  options_.process.max_pids = 300;
  StartHost();
  Deploy("dev.lever", "boxed", {}, R"(,"ram":80)");
  Routed r = Route("dev.lever", "boxed");
  ASSERT_TRUE(r.result.status.ok());
  auto ready = Instances("boxed", "ready");
  ASSERT_EQ(ready.size(), 1u);
  std::string limits = ReadFileOrEmpty("/proc/" + std::to_string(ready[0].pid) + "/limits");
  auto row = [&](const std::string& name) {
    size_t at = limits.find(name);
    if (at == std::string::npos) return std::string();
    std::stringstream ss(limits.substr(at + name.size()));
    std::string soft;
    ss >> soft;
    return soft;
  };
  EXPECT_EQ(row("Max address space"), "80000000");
  EXPECT_EQ(row("Max processes"), "300");
}

TEST_F(HostTest, JsEntryRunsLeverServe) {
  std::string serve = sandbox_.path() + "/lever-serve";
  {
    std::ofstream f(serve);
    f << "#!/bin/sh\necho \"serving $1 with $NODE_OPTIONS\"\nexec " << kInstance << " --env-out " << out_ << "\n";
  }
  ASSERT_EQ(chmod(serve.c_str(), 0755), 0);
  options_.process.lever_serve = serve;
  StartHost();
  DeployTar("dev.lever", TarBuilder().File("lever.json", R"({"name":"nodejs","jsEntry":"lib/index.js","ram":100})").Finish());
  Routed r = Route("dev.lever", "nodejs");
  ASSERT_TRUE(r.result.status.ok()) << r.result.status.message();
  // The runner's line is read from its pipe while the host's notes ("v1 is
  // live") are written at once: either may come first.
  EXPECT_TRUE(WaitForLogLine("nodejs", "lever://dev.lever/nodejs v1 serving lib/index.js with --max-old-space-size=90"));
}

TEST_F(HostTest, PyEntryRunsLeverServePy) {
  std::string serve = sandbox_.path() + "/lever-serve-py";
  {
    std::ofstream f(serve);
    f << "#!/bin/sh\necho \"serving $1 unbuffered=$PYTHONUNBUFFERED\"\nexec " << kInstance << " --env-out " << out_
      << "\n";
  }
  ASSERT_EQ(chmod(serve.c_str(), 0755), 0);
  options_.process.lever_serve_py = serve;
  StartHost();
  DeployTar("dev.lever", TarBuilder().File("lever.json", R"({"name":"python","pyEntry":"app/server.py"})").Finish());
  Routed r = Route("dev.lever", "python");
  ASSERT_TRUE(r.result.status.ok()) << r.result.status.message();
  // The runner's line is read from its pipe while the host's notes ("v1 is
  // live") are written at once: either may come first.
  EXPECT_TRUE(WaitForLogLine("python", "lever://dev.lever/python v1 serving app/server.py unbuffered=1"));
}

TEST_F(HostTest, PyEntryWithoutRunnerFailsClearly) {
  StartHost();
  DeployResult d =
      DeployTar("dev.lever", TarBuilder().File("lever.json", R"({"name":"python","pyEntry":"server.py"})").Finish(), false);
  Status s = Rollout(d);  // never live: the deploy says why
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("no Python runtime is configured"), std::string::npos) << s.message();
}

TEST_F(HostTest, InstancesCanRunAsAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  ASSERT_EQ(chmod(sandbox_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod(out_.c_str(), 0777), 0);
  options_.process.user = "nobody";
  StartHost();
  Deploy("dev.lever", "unprivileged", {});
  Routed r = Route("dev.lever", "unprivileged");
  ASSERT_TRUE(r.result.status.ok()) << r.result.status.message();
  auto ready = Instances("unprivileged", "ready");
  ASSERT_EQ(ready.size(), 1u);
  std::string status = ReadFileOrEmpty("/proc/" + std::to_string(ready[0].pid) + "/status");
  EXPECT_NE(status.find("\nUid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
  EXPECT_NE(status.find("\nGroups:\t \n"), std::string::npos) << status;  // none
  options_.process.user = "no-such-user-here";
  host_.reset();
  std::shared_ptr<Host> bad;
  EXPECT_EQ(Host::Create(options_, &bad).code(), Code::kInvalidArgument);
}

TEST_F(HostTest, MemoryLimitThroughCgroupWhenWritable) {
  options_.process.memory_cgroup = "";  // auto: a child of our own cgroup
  StartHost();
  Deploy("dev.lever", "limited", {}, R"(,"ram":64)");
  Routed r = Route("dev.lever", "limited");
  ASSERT_TRUE(r.result.status.ok());
  auto env = EnvOf(r.result.backend);
  std::string id = env["LEVEROS_INSTANCE_ID"];
  std::string own;
  {
    std::stringstream ss(ReadFileOrEmpty("/proc/self/cgroup"));
    std::string line;
    while (std::getline(ss, line)) {
      if (line.find(":memory:") != std::string::npos) own = line.substr(line.find(":memory:") + 8);
    }
  }
  if (own == "/") own.clear();
  std::string base = "/sys/fs/cgroup/memory" + own + "/lever-" + std::to_string(getpid());
  std::string limit_file = base + "/" + id + "/memory.limit_in_bytes";
  if (access(limit_file.c_str(), F_OK) != 0) {
    host_.reset();
    GTEST_SKIP() << "cgroup v1 memory controller not writable here";
  }
  EXPECT_EQ(std::stoll(ReadFileOrEmpty(limit_file)), 64000000);
  host_.reset();  // stops the instance and removes its cgroups
  EXPECT_NE(access(base.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace lever::host
