// The machine's floor for a relay at 1 call in flight: the round trip of one
// byte over a unix socketpair to a child process that has been blocked for
// a given idle gap. The parent spins through the gap, so only the child's CPU
// goes idle; the round trip is then one wake-up of a CPU that idled for the
// gap, plus two short syscalls each way. On bare metal this is a few µs at
// every gap; in a VM whose idle vCPUs halt, it is the cost of waking a halted
// vCPU, which every extra process hop (a proxy) pays at low load.
//
//   wake_probe [round trips per gap]      (docs/BENCHMARKS.md, "The wake-up floor")
//
// Run it with `taskset -c 0` to put both processes on one CPU (no idle CPU
// to wake), and compare.
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(10, std::atoi(argv[1])) : 2000;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    std::perror("socketpair");
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    return 1;
  }
  if (child == 0) {
    close(sv[0]);
    char c;
    while (read(sv[1], &c, 1) == 1) {
      if (write(sv[1], &c, 1) != 1) break;
    }
    _exit(0);
  }
  close(sv[1]);
  std::printf("idle gap (µs)\tround trip p50 (µs)\tp90 (µs)\n");
  std::vector<double> rtt(static_cast<size_t>(rounds));
  for (int gap : {0, 20, 50, 100, 200, 500, 1000, 5000}) {
    for (double& r : rtt) {
      Clock::time_point idle = Clock::now();
      while (MicrosSince(idle) < gap) {
      }
      char c = 'x';
      Clock::time_point sent = Clock::now();
      if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1) {
        std::perror("round trip");
        return 1;
      }
      r = MicrosSince(sent);
    }
    std::sort(rtt.begin(), rtt.end());
    std::printf("%d\t%.1f\t%.1f\n", gap, rtt[rtt.size() / 2], rtt[rtt.size() * 9 / 10]);
    std::fflush(stdout);
  }
  close(sv[0]);  // the child reads EOF and exits
  waitpid(child, nullptr, 0);
  return 0;
}
