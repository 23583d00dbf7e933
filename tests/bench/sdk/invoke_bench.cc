// The C++ client's side of the SDK round-trip benchmark (tests/bench/sdk/run.sh):
// sequential sayHello calls (p50/p99), then calls/s with 64 in flight.
//   sdk_invoke_bench <leverd host:port> <calls>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <vector>

#include "lever/client.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: sdk_invoke_bench <host:port> <calls>\n");
    return 2;
  }
  lever::ClientOptions o;
  o.force_host = argv[1];
  lever::Client client(o);
  lever::Endpoint ep = client.Service("dev.lever", "helloService");
  int n = std::atoi(argv[2]);
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < 200; ++i) (void)ep.Invoke("sayHello", {"warm"});
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    lever::Result r = ep.Invoke("sayHello", {"world"});
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!r.ok()) {
      std::fprintf(stderr, "call failed: %s\n", r.status.ToString().c_str());
      return 1;
    }
  }
  std::sort(us.begin(), us.end());
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, started = 0;
  auto t0 = Clock::now();
  std::function<void()> next = [&] {
    ep.InvokeAsync("sayHello", {"world"}, {}, [&](lever::Result) {
      std::lock_guard<std::mutex> lock(mu);
      ++done;
      if (started < n) {
        ++started;
        next();
      }
      cv.notify_all();
    });
  };
  {
    std::lock_guard<std::mutex> lock(mu);
    for (; started < std::min(64, n); ++started) next();
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == n; });
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("cpp   sequential p50 %.0f us p99 %.0f us | 64 in flight %.0f calls/s\n", us[us.size() / 2],
              us[us.size() * 99 / 100], n / secs);
  return 0;
}
