// Scheduling benchmarks against a real leverd with real instances (the e2e
// harness starts it; the test service is the instance). Figures go to
// docs/BENCHMARKS.md with the command that produced them.
//
//   sched_bench step   [--stable 60s --panic 6s]   time from a 10x load step to enough capacity
//   sched_bench deploy [--deploys 3 --callers 8]   failed calls per deploy, slowest call with/without
//   sched_bench burst  [--calls 100]               p50/p99 of a cold burst at zero
//
// Every figure is printed as one line "name value unit".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace lever::e2e {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::map<std::string, std::string> Flags(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 2; i + 1 < argc; i += 2) out[argv[i]] = argv[i + 1];
  return out;
}

std::string Get(const std::map<std::string, std::string>& f, const std::string& k, const std::string& d) {
  auto it = f.find(k);
  return it == f.end() ? d : it->second;
}

size_t Ready(Client& c, const std::string& service) {
  Result r = c.InvokeUrl("lever://admin.lever/admin//ListInstances", {"dev.lever"}, CallOptions{10s});
  size_t n = 0;
  if (!r.ok() || !r.value.is_array()) return 0;
  for (const Value& row : r.value.as_array()) {
    const Value* s = row.as_map().Find("service");
    const Value* st = row.as_map().Find("state");
    if (s && *s == Value(service) && st && *st == Value("ready")) ++n;
  }
  return n;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

class Callers {
 public:
  Callers(int n, std::function<bool()> call) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, call] {
        while (!stop_.load()) {
          auto t0 = Clock::now();
          bool ok = call();
          double ms = Ms(Clock::now() - t0);
          std::lock_guard lock(mu_);
          (ok ? ok_ : failed_)++;
          max_ms_ = std::max(max_ms_, ms);
        }
      });
    }
  }
  ~Callers() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Counters since the last Reset.
  void Reset() {
    std::lock_guard lock(mu_);
    ok_ = failed_ = 0;
    max_ms_ = 0;
  }
  void Read(int64_t* ok, int64_t* failed, double* max_ms) {
    std::lock_guard lock(mu_);
    *ok = ok_;
    *failed = failed_;
    *max_ms = max_ms_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  int64_t ok_ = 0, failed_ = 0;
  double max_ms_ = 0;
  std::vector<std::thread> threads_;
};

// 3 callers of a 200 ms method, then 30 (maxInstanceLoad 2: 2 → 15 instances).
int Step(const std::map<std::string, std::string>& f) {
  Leverd leverd({"", {"--autoscale-stable-window", Get(f, "--stable", "60s"), "--autoscale-panic-window",
                      Get(f, "--panic", "6s"), "--max-instances", "32"}});
  leverd.Start();
  if (leverd.DeployTestService(R"({"name":"stepbench","maxInstanceLoad":2})").exit_code != 0) return 1;
  auto client = leverd.NewClient();
  auto call = [&] { return client->Service("dev.lever", "stepbench").Invoke("SleepMs", {200}, CallOptions{60s}).ok(); };
  Callers base(3, call);
  if (!WaitUntil([&] { return Ready(*client, "stepbench") == 2; }, 60s)) return 1;
  std::this_thread::sleep_for(std::chrono::seconds(5));  // a steady state before the step (a benchmark, not a test)
  auto t0 = Clock::now();
  Callers step(27, call);
  double first = 0;
  bool ok = WaitUntil(
      [&] {
        size_t n = Ready(*client, "stepbench");
        if (n > 2 && first == 0) first = Ms(Clock::now() - t0);
        return n >= 15;
      },
      60s);
  double enough = Ms(Clock::now() - t0);
  step.Stop();
  base.Stop();
  std::printf("step_first_new_instance_ready %.0f ms\n", first);
  std::printf("step_enough_capacity_15_of_15 %s%.0f ms\n", ok ? "" : "(not reached) ", enough);
  return ok ? 0 : 1;
}

// Closed-loop callers; the slowest call over a window without a deploy, then
// over the same window with `deploys` deploys, and the failed calls.
int Deploy(const std::map<std::string, std::string>& f) {
  int deploys = std::stoi(Get(f, "--deploys", "3"));
  int callers = std::stoi(Get(f, "--callers", "8"));
  Leverd leverd;
  leverd.Start();
  const std::string json = R"({"name":"deploybench","maxInstanceLoad":8})";
  if (leverd.DeployTestService(json).exit_code != 0) return 1;
  auto client = leverd.NewClient();
  Callers load(callers, [&] {
    return client->Service("dev.lever", "deploybench").Invoke("WhoamiAfterMs", {1}, CallOptions{60s}).ok();
  });
  std::this_thread::sleep_for(3s);  // warm
  load.Reset();
  auto t0 = Clock::now();
  std::this_thread::sleep_for(6s);
  int64_t ok0, failed0;
  double max0;
  load.Read(&ok0, &failed0, &max0);
  double window0 = Ms(Clock::now() - t0);
  load.Reset();
  t0 = Clock::now();
  for (int i = 0; i < deploys; ++i) {
    if (leverd.DeployTestService(json).exit_code != 0) return 1;
    std::this_thread::sleep_for(1s);
  }
  int64_t ok1, failed1;
  double max1;
  load.Read(&ok1, &failed1, &max1);
  double window1 = Ms(Clock::now() - t0);
  load.Stop();
  std::printf("calls_without_deploy %lld in %.0f ms, failed %lld, slowest %.1f ms\n", static_cast<long long>(ok0),
              window0, static_cast<long long>(failed0), max0);
  std::printf("calls_with_%d_deploys %lld in %.0f ms, failed %lld, slowest %.1f ms\n", deploys,
              static_cast<long long>(ok1), window1, static_cast<long long>(failed1), max1);
  std::printf("failed_calls_per_deploy %.2f\n", static_cast<double>(failed1) / deploys);
  std::printf("slowest_ratio_deploy_vs_none %.2f x\n", max0 > 0 ? max1 / max0 : 0);
  return 0;
}

// A burst of `calls` concurrent calls at zero instances (maxInstanceLoad 10).
int Burst(const std::map<std::string, std::string>& f) {
  int calls = std::stoi(Get(f, "--calls", "100"));
  Leverd leverd({"", {"--idle-timeout", "1s", "--max-instances", "32"}});
  leverd.Start();
  if (leverd.DeployTestService(R"({"name":"burstbench","maxInstanceLoad":10})").exit_code != 0) return 1;
  auto client = leverd.NewClient();
  if (!WaitUntil([&] { return Ready(*client, "burstbench") == 0; }, 60s)) return 1;
  std::this_thread::sleep_for(1500ms);  // the stopped instance is gone
  std::mutex mu;
  std::condition_variable cv;
  std::vector<double> ms;
  int failed = 0;
  auto t0 = Clock::now();
  for (int i = 0; i < calls; ++i) {
    client->Service("dev.lever", "burstbench").InvokeAsync("WhoamiAfterMs", {0}, CallOptions{60s}, [&](Result r) {
      std::lock_guard lock(mu);
      if (r.ok()) {
        ms.push_back(Ms(Clock::now() - t0));
      } else {
        ++failed;
      }
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 60s, [&] { return static_cast<int>(ms.size()) + failed == calls; });
  }
  size_t instances = Ready(*client, "burstbench");
  if (!Get(f, "--verbose", "").empty()) {
    std::sort(ms.begin(), ms.end());
    for (size_t i = 0; i < ms.size(); i += 10) std::printf("  %zu: %.1f ms\n", i, ms[i]);
  }
  std::printf("cold_burst_%d p50 %.1f ms, p99 %.1f ms, max %.1f ms, failed %d, instances %zu\n", calls,
              Percentile(ms, 0.5), Percentile(ms, 0.99), Percentile(ms, 1.0), failed, instances);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lever::e2e

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    std::fprintf(stderr, "usage: sched_bench step|deploy|burst [flags]\n"
                         "  step   [--stable 60s] [--panic 6s]\n"
                         "  deploy [--deploys 3] [--callers 8]\n"
                         "  burst  [--calls 100]\n");
    return argc < 2 ? 2 : 0;
  }
  auto flags = lever::e2e::Flags(argc, argv);
  std::string what = argv[1];
  if (what == "step") return lever::e2e::Step(flags);
  if (what == "deploy") return lever::e2e::Deploy(flags);
  if (what == "burst") return lever::e2e::Burst(flags);
  std::fprintf(stderr, "sched_bench: unknown benchmark %s\n", what.c_str());
  return 2;
}
