// Scheduling through a real leverd with real instances (docs/scheduling.md):
// the autoscaler under a load step, a cold burst, resources with one owner
// while the service scales and after an owner dies, live upgrades under
// closed-loop load, and a version that cannot start. Windows are short and
// set by flags; every wait is for a condition, bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "leverrpc.grpc.pb.h"

namespace lever::e2e {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Inst {
  std::string id, state;
  int64_t version = 0, pid = 0;
  std::vector<std::string> resources;
};

std::string Str(const Value& row, const char* key) {
  const Value* v = row.is_map() ? row.as_map().Find(key) : nullptr;
  return v && v->is_string() ? v->as_string() : "";
}
int64_t Int(const Value& row, const char* key) {
  const Value* v = row.is_map() ? row.as_map().Find(key) : nullptr;
  return v && v->is_int() ? v->as_int() : 0;
}

// The service's instances, from the admin service itself (a poll that does
// not fork a CLI every few milliseconds).
std::vector<Inst> InstancesOf(Client& c, const std::string& service) {
  std::vector<Inst> out;
  Result r = c.InvokeUrl("lever://admin.lever/admin//ListInstances", {"dev.lever"}, CallOptions{10s});
  if (!r.ok() || !r.value.is_array()) return out;
  for (const Value& row : r.value.as_array()) {
    if (Str(row, "service") != service) continue;
    Inst i{Str(row, "id"), Str(row, "state"), Int(row, "version"), Int(row, "pid"), {}};
    if (const Value* res = row.as_map().Find("resources"); res && res->is_array()) {
      for (const Value& n : res->as_array()) i.resources.push_back(n.as_string());
    }
    out.push_back(std::move(i));
  }
  return out;
}

size_t Count(Client& c, const std::string& service, const std::string& state) {
  size_t n = 0;
  for (const Inst& i : InstancesOf(c, service)) n += state.empty() || i.state == state;
  return n;
}

// The service's row of ListServices (desired, reason, liveVersion).
Value ServiceRow(Client& c, const std::string& service) {
  Result r = c.InvokeUrl("lever://admin.lever/admin//ListServices", {"dev.lever"}, CallOptions{10s});
  if (r.ok() && r.value.is_array()) {
    for (const Value& row : r.value.as_array()) {
      if (Str(row, "name") == service) return row;
    }
  }
  return Value();
}

// Closed-loop callers: each runs `call(caller)` again and again until
// Stop(); a false return counts as a failure (the first few are kept).
class Load {
 public:
  Load(int callers, std::function<bool(int, std::string*)> call) : call_(std::move(call)) {
    for (int i = 0; i < callers; ++i) {
      threads_.emplace_back([this, i] {
        while (!stop_.load()) {
          std::string why;
          if (call_(i, &why)) {
            ok_.fetch_add(1);
          } else {
            failed_.fetch_add(1);
            std::lock_guard lock(mu_);
            if (failures_.size() < 5) failures_.push_back(why);
          }
        }
      });
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t ok() const { return ok_.load(); }
  int64_t failed() const { return failed_.load(); }
  std::string Failures() {
    std::lock_guard lock(mu_);
    std::string out;
    for (auto& f : failures_) out += f + "\n";
    return out;
  }

 private:
  std::function<bool(int, std::string*)> call_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0}, failed_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
  std::vector<std::thread> threads_;
};

bool CallOk(const Result& r, std::string* why) {
  if (r.ok()) return true;
  *why = r.is_app_error() ? "app error" : r.status.ToString();
  return false;
}

// Deploys the test service with `entry_args` after ./serve.
std::string ServiceJson(const std::string& name, const std::string& extra, const std::vector<std::string>& args = {}) {
  std::string entry = R"(["./serve")";
  for (const auto& a : args) entry += ",\"" + a + "\"";
  entry += "]";
  return R"({"name":")" + name + R"(","entry":)" + entry + extra + "}";
}

TEST(SchedulingTest, LoadStepScalesUpThenBackToOneAndToZero) {
  // The idle period is longer than the stable window plus the steps down
  // (one per 100 ms tick), so the way down shows one warm instance first.
  Leverd leverd({"", {"--autoscale-stable-window", "2s", "--autoscale-panic-window", "600ms", "--idle-timeout",
                      "6s", "--max-instances", "24"}});
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(ServiceJson("stepsvc", R"(,"maxInstanceLoad":2)")).exit_code, 0);
  auto client = leverd.NewClient();
  auto call = [&](int, std::string* why) {
    return CallOk(client->Service("dev.lever", "stepsvc").Invoke("SleepMs", {200}, CallOptions{30s}), why);
  };
  {
    Load one(1, call);
    ASSERT_TRUE(WaitUntil([&] { return one.ok() >= 3; }, 20s));
    EXPECT_LE(Count(*client, "stepsvc", ""), 2u);
    // 1 → 32 callers of a 200 ms method, 2 calls per instance: 16 needed.
    Load more(31, call);
    EXPECT_TRUE(WaitUntil([&] { return Count(*client, "stepsvc", "ready") >= 12; }, 30s))
        << Count(*client, "stepsvc", "ready") << " ready";
    Value row = ServiceRow(*client, "stepsvc");
    EXPECT_GE(Int(row, "desired"), 12);
    more.Stop();
    one.Stop();
    EXPECT_EQ(one.failed() + more.failed(), 0) << one.Failures() << more.Failures();
  }
  // No load: back to one warm instance once the stable window agrees...
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto all = InstancesOf(*client, "stepsvc");
        return std::count_if(all.begin(), all.end(), [](const Inst& i) { return i.state == "ready"; }) == 1;
      },
      30s))
      << [&] {
           std::string out;
           for (const Inst& i : InstancesOf(*client, "stepsvc")) out += i.id + " " + i.state + "\n";
           return out + Str(ServiceRow(*client, "stepsvc"), "reason");
         }();
  // ...and to zero after the idle period.
  EXPECT_TRUE(WaitUntil([&] { return Count(*client, "stepsvc", "") == 0; }, 30s));
  Value row = ServiceRow(*client, "stepsvc");
  EXPECT_EQ(Int(row, "desired"), 0);
  EXPECT_EQ(Str(row, "reason"), "idle");
  // And it comes back on the next call.
  EXPECT_TRUE(client->Service("dev.lever", "stepsvc").Invoke("SleepMs", {1}, CallOptions{30s}).ok());
}

TEST(SchedulingTest, ColdBurstOfAHundredStartsThePlannedInstances) {
  Leverd leverd({"", {"--idle-timeout", "1s", "--autoscale-panic-window", "600ms", "--max-instances", "32"}});
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(ServiceJson("burstsvc", R"(,"maxInstanceLoad":10)")).exit_code, 0);
  auto client = leverd.NewClient();
  ASSERT_TRUE(WaitUntil([&] { return Count(*client, "burstsvc", "") == 0; }, 30s));  // scaled to zero
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, failed = 0;
  std::set<std::string> answered_by;
  std::string first_failure;
  for (int i = 0; i < 100; ++i) {
    client->Service("dev.lever", "burstsvc").InvokeAsync("WhoamiAfterMs", {300}, CallOptions{30s}, [&](Result r) {
      std::lock_guard lock(mu);
      if (r.ok()) {
        answered_by.insert(Str(r.value, "instance"));
      } else {
        ++failed;
        if (first_failure.empty()) first_failure = r.status.ToString();
      }
      ++done;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 60s, [&] { return done == 100; }));
  }
  EXPECT_EQ(failed, 0) << first_failure;
  size_t instances = Count(*client, "burstsvc", "");
  EXPECT_GE(instances, 2u);
  EXPECT_LE(instances, 11u);  // ceil(100 / maxInstanceLoad) + 1
  EXPECT_GE(answered_by.size(), 2u) << "the burst went to one instance";
}

TEST(SchedulingTest, FiftyCancelledWaitingCallsFreeTheQueueAtOnce) {
  Leverd leverd({"", {"--max-waiting-calls", "50", "--cold-start-wait", "60s"}});
  leverd.Start();
  TempDir dir;
  std::string marker = dir.path() + "/slow";
  ASSERT_EQ(leverd.DeployTestService(ServiceJson("slowsvc", "", {"--slow-start-if-exists", marker})).exit_code, 0);
  auto client = leverd.NewClient();
  // From now on its instances take their time to start.
  std::ofstream(marker) << "x";
  ASSERT_EQ(leverd.KillInstances("slowsvc", SIGKILL), 1);
  auto channel = grpc::CreateChannel(leverd.address(), grpc::InsecureChannelCredentials());
  auto stub = core::LeverRPC::NewStub(channel);
  struct Call {
    grpc::ClientContext ctx;
    core::RPCReply reply;
    grpc::Status status;
    std::thread thread;
  };
  auto start = [&](std::vector<std::unique_ptr<Call>>* calls, int n) {
    for (int i = 0; i < n; ++i) {
      auto c = std::make_unique<Call>();
      c->ctx.AddMetadata("lever-url", "lever://dev.lever/slowsvc//Echo");
      c->ctx.set_deadline(std::chrono::system_clock::now() + 120s);
      Call* raw = c.get();
      c->thread = std::thread([&stub, raw] {
        core::RPC rpc;
        rpc.mutable_args();  // no arguments, but the field set
        raw->status = stub->HandleRPC(&raw->ctx, rpc, &raw->reply);
      });
      calls->push_back(std::move(c));
    }
  };
  auto waiting = [&] { return Int(ServiceRow(*client, "slowsvc"), "waiting"); };
  std::vector<std::unique_ptr<Call>> first;
  start(&first, 50);
  ASSERT_TRUE(WaitUntil([&] { return waiting() == 50; }, 30s)) << waiting();
  // The queue is full: one more is refused at once.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("lever-url", "lever://dev.lever/slowsvc//Echo");
    core::RPCReply reply;
    EXPECT_EQ(stub->HandleRPC(&ctx, core::RPC(), &reply).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Their callers give up: the queue is empty at once, not after 60 s.
  auto cancelled_at = Clock::now();
  for (auto& c : first) c->ctx.TryCancel();
  for (auto& c : first) {
    c->thread.join();
    EXPECT_EQ(c->status.error_code(), grpc::StatusCode::CANCELLED) << c->status.error_message();
  }
  ASSERT_TRUE(WaitUntil([&] { return waiting() == 0; }, 10s)) << waiting();
  EXPECT_LT(Clock::now() - cancelled_at, 10s);
  // An HTTP caller that disconnects leaves the queue too.
  {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(leverd.port()));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    std::string req = "POST /slowsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\nContent-Type: application/json\r\n"
                      "Content-Length: 2\r\n\r\n[]";
    ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    ASSERT_TRUE(WaitUntil([&] { return waiting() == 1; }, 30s)) << waiting();
    close(fd);
    EXPECT_TRUE(WaitUntil([&] { return waiting() == 0; }, 10s)) << waiting();
  }
  // Fifty new callers fit, and are served once the instance listens.
  std::vector<std::unique_ptr<Call>> second;
  start(&second, 50);
  ASSERT_TRUE(WaitUntil([&] { return waiting() == 50; }, 30s)) << waiting();
  std::filesystem::remove(marker);
  for (auto& c : second) {
    c->thread.join();
    EXPECT_TRUE(c->status.ok()) << c->status.error_message();
  }
}

// Reads the resource log: "new|close <resource> <instance>" lines.
std::map<std::pair<std::string, std::string>, int> NewResourceCalls(const std::string& path) {
  std::map<std::pair<std::string, std::string>, int> out;
  std::ifstream in(path);
  std::string kind, resource, instance;
  while (in >> kind >> resource >> instance) {
    if (kind == "new") ++out[{resource, instance}];
  }
  return out;
}

TEST(SchedulingTest, ResourcesHaveOneOwnerWhileScalingAndMoveOnlyWhenItDies) {
  // A long stable window: nothing scales down (and so nothing moves) here.
  Leverd leverd({"", {"--autoscale-stable-window", "60s", "--autoscale-panic-window", "600ms", "--max-instances",
                      "8"}});
  leverd.Start();
  TempDir logs;
  std::string log = logs.path() + "/resources.log";
  ASSERT_EQ(leverd.DeployTestService(ServiceJson("ownedsvc", R"(,"maxInstanceLoad":2)", {"--resource-log", log}))
                .exit_code,
            0);
  auto client = leverd.NewClient();
  std::mutex mu;
  std::map<std::string, std::set<std::string>> answered;  // resource -> instances
  std::atomic<int> calls{0};
  size_t most_ready = 0;
  {
    Load load(16, [&](int caller, std::string* why) {
      int n = calls.fetch_add(1);
      if (n >= 10000) {
        std::this_thread::yield();
        return true;
      }
      std::string resource = "r" + std::to_string((caller * 7919 + n) % 100);
      Result r = client->Resource("dev.lever", "ownedsvc", resource).Invoke("WhoamiAfterMs", {2}, CallOptions{30s});
      if (!CallOk(r, why)) return false;
      std::lock_guard lock(mu);
      answered[resource].insert(Str(r.value, "instance"));
      return true;
    });
    ASSERT_TRUE(WaitUntil(
        [&] {
          most_ready = std::max(most_ready, Count(*client, "ownedsvc", "ready"));
          return calls.load() >= 10000;
        },
        120s));
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.Failures();
  }
  EXPECT_EQ(most_ready, 8u) << "the service did not scale to 8 under 16 callers";
  ASSERT_EQ(answered.size(), 100u);
  std::map<std::string, std::string> owner;
  for (auto& [resource, by] : answered) {
    EXPECT_EQ(by.size(), 1u) << resource << " was answered by " << by.size() << " instances";
    owner[resource] = *by.begin();
  }
  auto opened = NewResourceCalls(log);
  for (auto& [key, n] : opened) EXPECT_EQ(n, 1) << "NewResource(" << key.first << ") ran " << n << " times on " << key.second;
  for (auto& [resource, instance] : owner) EXPECT_EQ((opened[{resource, instance}]), 1) << resource;
  // `lever ps` lists each instance's resources.
  std::map<std::string, std::string> listed;
  auto before = InstancesOf(*client, "ownedsvc");
  for (const Inst& i : before) {
    for (const auto& r : i.resources) listed[r] = i.id;
  }
  EXPECT_EQ(listed, owner);

  // kill -9 the busiest owner: its resources get new owners, and stay.
  std::map<std::string, int> per_instance;
  for (auto& [r, i] : owner) ++per_instance[i];
  std::string victim = std::max_element(per_instance.begin(), per_instance.end(), [](auto& a, auto& b) {
                         return a.second < b.second;
                       })->first;
  int64_t victim_pid = 0;
  for (const Inst& i : before) {
    if (i.id == victim) victim_pid = i.pid;
  }
  ASSERT_GT(victim_pid, 0);
  ASSERT_EQ(kill(static_cast<pid_t>(victim_pid), SIGKILL), 0);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto all = InstancesOf(*client, "ownedsvc");
        return std::none_of(all.begin(), all.end(), [&](const Inst& i) { return i.id == victim; });
      },
      20s));
  std::map<std::string, std::string> moved;
  for (int round = 0; round < 3; ++round) {
    for (auto& [resource, old] : owner) {
      Result r = client->Resource("dev.lever", "ownedsvc", resource).Invoke("WhoamiAfterMs", {0}, CallOptions{30s});
      ASSERT_TRUE(r.ok()) << resource << ": " << r.status.ToString();
      std::string now_owner = Str(r.value, "instance");
      if (old != victim) {
        EXPECT_EQ(now_owner, old) << resource << " moved though its owner lives";
      } else {
        EXPECT_NE(now_owner, victim);
        auto [it, fresh] = moved.emplace(resource, now_owner);
        EXPECT_EQ(it->second, now_owner) << resource << " did not stay on its new owner";
      }
    }
  }
  EXPECT_EQ(moved.size(), static_cast<size_t>(per_instance[victim]));
  opened = NewResourceCalls(log);
  for (auto& [resource, instance] : moved) EXPECT_EQ((opened[{resource, instance}]), 1) << resource;
}

TEST(SchedulingTest, ThreeDeploysUnderLoadDropNoCall) {
  Leverd leverd({"", {"--autoscale-panic-window", "600ms"}});
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(ServiceJson("livesvc", R"(,"maxInstanceLoad":4)")).exit_code, 0);
  auto client = leverd.NewClient();
  // A stream opened before the deploys stays on its instance to its end.
  ClientStreamPtr long_stream;
  ASSERT_TRUE(client->Service("dev.lever", "livesvc").InvokeStream(&long_stream, "WhoamiChan", {}).ok());
  ASSERT_TRUE(long_stream->Send(Value("hi")).ok());
  Result first = long_stream->Receive(30s);
  ASSERT_TRUE(first.ok()) << first.status.ToString();
  const std::string stream_instance = first.value.as_string();

  std::mutex mu;
  std::vector<std::pair<Clock::time_point, int64_t>> seen;  // call start, version
  Load unary(8, [&](int, std::string* why) {
    auto start = Clock::now();
    Result r = client->Service("dev.lever", "livesvc").Invoke("WhoamiAfterMs", {2}, CallOptions{30s});
    if (!CallOk(r, why)) return false;
    std::lock_guard lock(mu);
    seen.emplace_back(start, std::stoll(Str(r.value, "version")));
    return true;
  });
  Load streams(4, [&](int, std::string* why) {
    ClientStreamPtr s;
    Status st = client->Service("dev.lever", "livesvc").InvokeStream(&s, "WhoamiChan", {}, CallOptions{30s});
    if (!st.ok()) {
      *why = "open: " + st.ToString();
      return false;
    }
    for (int i = 0; i < 3; ++i) {
      if (!s->Send(Value(i)).ok()) {
        *why = "send failed";
        return false;
      }
      Result m = s->Receive(30s);
      if (!m.ok()) return CallOk(m, why);
    }
    s->CloseSend();
    Result end = s->Receive(30s);
    if (!end.is_end()) {
      *why = "no end: " + end.status.ToString();
      return false;
    }
    return true;
  });
  ASSERT_TRUE(WaitUntil([&] { return unary.ok() > 50 && streams.ok() > 10; }, 30s));
  std::vector<Clock::time_point> switched;
  for (int v = 2; v <= 4; ++v) {
    CommandResult d = leverd.DeployTestService(ServiceJson("livesvc", R"(,"maxInstanceLoad":4)"));
    ASSERT_EQ(d.exit_code, 0) << d.err;
    EXPECT_NE(d.err.find("Starting livesvc v" + std::to_string(v)), std::string::npos) << d.err;
    EXPECT_NE(d.err.find("Switched dev.lever/livesvc to v" + std::to_string(v)), std::string::npos) << d.err;
    switched.push_back(Clock::now());
    int64_t at_switch = unary.ok();
    ASSERT_TRUE(WaitUntil([&] { return unary.ok() > at_switch + 20; }, 30s));
  }
  unary.Stop();
  streams.Stop();
  EXPECT_EQ(unary.failed(), 0) << unary.Failures();
  EXPECT_EQ(streams.failed(), 0) << streams.Failures();
  // After each switch, new calls reach only the new version.
  for (auto& [start, version] : seen) {
    for (size_t i = 0; i < switched.size(); ++i) {
      if (start > switched[i]) {
        EXPECT_GE(version, static_cast<int64_t>(i) + 2);
      }
    }
  }
  // The long stream is still on its first instance, and ends cleanly.
  ASSERT_TRUE(long_stream->Send(Value("still there?")).ok());
  Result again = long_stream->Receive(30s);
  ASSERT_TRUE(again.ok()) << again.status.ToString();
  EXPECT_EQ(again.value.as_string(), stream_instance);
  long_stream->CloseSend();
  EXPECT_TRUE(long_stream->Receive(30s).is_end());
  EXPECT_EQ(Int(ServiceRow(*client, "livesvc"), "liveVersion"), 4);
}

TEST(SchedulingTest, AVersionThatExitsAtStartFailsItsDeployAndNoCall) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(ServiceJson("goodsvc", "")).exit_code, 0);
  auto client = leverd.NewClient();
  std::mutex mu;
  std::set<std::string> versions;
  Load load(4, [&](int, std::string* why) {
    Result r = client->Service("dev.lever", "goodsvc").Invoke("WhoamiAfterMs", {2}, CallOptions{30s});
    if (!CallOk(r, why)) return false;
    std::lock_guard lock(mu);
    versions.insert(Str(r.value, "version"));
    return true;
  });
  ASSERT_TRUE(WaitUntil([&] { return load.ok() > 20; }, 30s));
  CommandResult d = leverd.DeployTestService(ServiceJson("goodsvc", "", {"--exit-now", "3"}));
  EXPECT_EQ(d.exit_code, 1) << d.out << d.err;
  EXPECT_NE(d.err.find("v2 failed to start: the instance exited with status 3; v1 stays live"), std::string::npos)
      << d.err;
  EXPECT_NE(d.err.find("testservice: this version cannot start"), std::string::npos) << d.err;  // its log
  int64_t after = load.ok();
  ASSERT_TRUE(WaitUntil([&] { return load.ok() > after + 20; }, 30s));
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.Failures();
  EXPECT_EQ(versions, std::set<std::string>{"1"});
  EXPECT_EQ(Int(ServiceRow(*client, "goodsvc"), "liveVersion"), 1);
}

}  // namespace
}  // namespace lever::e2e
