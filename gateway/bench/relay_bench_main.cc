// The gateway relay benchmark (docs/BENCHMARKS.md, "Gateway relay").
//
//   gateway_relay_bench [--runs 5] [--seconds 2] [--workers 1] [--json]
//       Starts the echo instance (gateway_echo_server --callback, next to this
//       binary: gRPC's callback API, unary echo),
//       the gateway (this binary, `serve`) and nghttpx, then measures 64 B
//       unary calls at 1, 16 and 64 in flight over one client connection:
//       direct to the instance, through the gateway (public TCP port, internal
//       unix listener, and TCP with busy_poll = 100 µs), through nghttpx. Runs are
//       interleaved; the table shows medians over runs of p50, p99,
//       throughput, and the CPU per call of the proxy and of the instance
//       (utime+stime from /proc/<pid>/stat).
//   gateway_relay_bench load <target> <in flight> <seconds> [<lever-url> <string>]
//       One measurement against one target (for profiling); with a lever-url,
//       calls it with one JSON string argument instead of the 64 B echo
//       (the HTTP API benchmark's gRPC row: the hello call through leverd).
//   gateway_relay_bench serve <backend address> <workers> [<unix socket>]
//       Hosts a Gateway on 127.0.0.1:0 (and an internal listener on the unix
//       socket) whose Router sends every call to the backend; prints "port N"
//       and runs until stdin closes.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "fixed_backend.h"
#include "leverrpc.grpc.pb.h"
#include "lever/gateway/gateway.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

// --- serve -----------------------------------------------------------------------

class FixedRouter final : public lever::host::Router {
 public:
  explicit FixedRouter(std::string address)
      : backend_(std::make_shared<lever::gateway::testing::FixedBackend>(std::move(address))) {}
  void Route(const lever::host::RouteRequest&, std::function<void(lever::host::RouteResult)> done) override {
    done({lever::Status(), backend_});
  }

 private:
  lever::host::BackendPtr backend_;
};

int Serve(const std::string& backend, int workers, const std::string& internal_socket) {
  lever::gateway::GatewayOptions options;
  if (const char* busy = std::getenv("LEVER_GATEWAY_BUSY_POLL_US")) {
    options.busy_poll = std::chrono::microseconds(std::atoi(busy));
  }
  options.listen = "127.0.0.1:0";
  options.workers = workers;
  lever::gateway::Gateway gateway(options, std::make_shared<FixedRouter>(backend));
  lever::Status s = gateway.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "gateway: %s\n", s.message().c_str());
    return 1;
  }
  if (!internal_socket.empty()) {
    s = gateway.AddInternalListener("bench.lever", internal_socket);
    if (!s.ok()) {
      std::fprintf(stderr, "gateway: %s\n", s.message().c_str());
      return 1;
    }
  }
  std::printf("port %u\n", gateway.port());
  std::fflush(stdout);
  char buf[64];
  while (::read(0, buf, sizeof buf) > 0) {
  }
  gateway.Stop(std::chrono::milliseconds(100));
  return 0;
}

// --- processes -------------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int out = -1;  // its stdout
  int in = -1;   // its stdin
  ~Child() { Stop(); }
  void Stop() {
    if (in >= 0) ::close(in), in = -1;
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
    if (out >= 0) ::close(out), out = -1;
  }
};

bool Spawn(const std::vector<std::string>& args, Child* child) {
  int out[2], in[2];
  if (::pipe(out) != 0 || ::pipe(in) != 0) return false;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addclose(&actions, in[1]);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int rc = posix_spawn(&child->pid, args[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(in[0]);
  child->out = out[0];
  child->in = in[1];
  return rc == 0;
}

std::string ReadLine(int fd, int timeout_ms) {
  std::string line;
  char c;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1 || ::read(fd, &c, 1) != 1 || c == '\n') break;
    line.push_back(c);
  }
  return line;
}

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool WaitConnectable(uint16_t port) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// /proc/<pid>/stat from field 3 (state) on.
std::vector<std::string> StatFields(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t close = all.rfind(')');
  std::vector<std::string> fields;
  if (close == std::string::npos) return fields;
  std::istringstream in(all.substr(close + 2));
  std::string field;
  while (in >> field) fields.push_back(field);
  return fields;
}

// utime+stime of a process and its children (nghttpx forks its workers), in
// microseconds.
double CpuMicros(pid_t pid, bool with_children = true) {
  std::vector<std::string> fields = StatFields(pid);
  if (fields.size() < 13) return 0;
  // fields[0] is state (field 3); utime is field 14, stime field 15.
  double ticks = std::stod(fields[11]) + std::stod(fields[12]);
  double us = ticks * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  if (!with_children) return us;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t child = static_cast<pid_t>(std::stol(name));
    std::vector<std::string> cf = StatFields(child);
    if (cf.size() > 1 && cf[1] == std::to_string(pid)) us += CpuMicros(child);
  }
  return us;
}

// --- load ------------------------------------------------------------------------

struct Result {
  double p50_us = 0, p99_us = 0, calls_per_s = 0, proxy_cpu_us = 0, server_cpu_us = 0, client_cpu_us = 0;
};

struct Load {
  std::unique_ptr<core::LeverRPC::Stub> stub;
  std::string url = "lever://bench.lever/echo//echo";
  std::string json_arg;  // non-empty: args = [json_arg] instead of 64 B byte_args
  explicit Load(const std::string& target) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    stub = core::LeverRPC::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }

  struct Call {
    grpc::ClientContext ctx;
    core::RPCReply reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<core::RPCReply>> reader;
    Clock::time_point start;
  };

  // Keeps `inflight` calls going for `seconds`; returns per-call latencies (µs).
  std::vector<double> Run(int inflight, double seconds, int* errors) {
    grpc::CompletionQueue cq;
    core::RPC rpc;
    if (json_arg.empty()) {
      rpc.set_byte_args(std::string(64, 'x'));
    } else {
      rpc.mutable_args()->add_element()->set_json_string(json_arg);
    }
    auto start_call = [&] {
      auto* c = new Call;
      c->ctx.AddMetadata("lever-url", url);
      c->start = Clock::now();
      c->reader = stub->AsyncHandleRPC(&c->ctx, rpc, &cq);
      c->reader->Finish(&c->reply, &c->status, c);
    };
    std::vector<double> lat;
    lat.reserve(1 << 20);
    auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    for (int i = 0; i < inflight; ++i) start_call();
    int outstanding = inflight;
    while (outstanding > 0) {
      void* tag;
      bool ok;
      if (!cq.Next(&tag, &ok)) break;
      auto* c = static_cast<Call*>(tag);
      auto now = Clock::now();
      if (c->status.ok()) {
        lat.push_back(std::chrono::duration<double, std::micro>(now - c->start).count());
      } else {
        ++*errors;
      }
      delete c;
      --outstanding;
      if (now < end) {
        start_call();
        ++outstanding;
      }
    }
    cq.Shutdown();
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
    return lat;
  }
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int RunAll(int runs, double seconds, int workers) {
  namespace fs = std::filesystem;
  fs::path self = fs::read_symlink("/proc/self/exe");
  fs::path echo_bin = self.parent_path() / "gateway_echo_server";
  std::string tmpl = (fs::temp_directory_path() / "lever-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return 1;
  std::string sock = tmpl + "/echo.sock";

  Child echo, gw, nghttpx;
  if (!Spawn({echo_bin.string(), "unix:" + sock, "--callback"}, &echo) || ReadLine(echo.out, 10000) != "ready") {
    std::fprintf(stderr, "echo server did not start (%s)\n", echo_bin.c_str());
    return 1;
  }
  std::string gw_sock = tmpl + "/gateway.sock";
  if (!Spawn({self.string(), "serve", "unix:" + sock, std::to_string(workers), gw_sock}, &gw)) return 1;
  std::string port_line = ReadLine(gw.out, 10000);
  if (!port_line.starts_with("port ")) {
    std::fprintf(stderr, "gateway did not start\n");
    return 1;
  }
  std::string gw_port = port_line.substr(5);
  // The same gateway with its workers polling 100 µs before they sleep.
  Child gw_busy;
  ::setenv("LEVER_GATEWAY_BUSY_POLL_US", "100", 1);
  bool busy_ok = Spawn({self.string(), "serve", "unix:" + sock, std::to_string(workers)}, &gw_busy);
  ::unsetenv("LEVER_GATEWAY_BUSY_POLL_US");
  std::string busy_line = busy_ok ? ReadLine(gw_busy.out, 10000) : "";
  if (!busy_line.starts_with("port ")) {
    std::fprintf(stderr, "busy-poll gateway did not start\n");
    return 1;
  }
  uint16_t nx_port = FreePort();
  std::string nghttpx_bin = "/usr/sbin/nghttpx";
  bool have_nghttpx = fs::exists(nghttpx_bin);
  if (have_nghttpx) {
    Spawn({nghttpx_bin, "--conf=/dev/null", "--frontend=127.0.0.1," + std::to_string(nx_port) + ";no-tls",
           "--backend=unix:" + sock + ";;proto=h2", "--workers=1", "--errorlog-file=/dev/null"},
          &nghttpx);
    have_nghttpx = WaitConnectable(nx_port);
  }

  struct Target {
    std::string name, address;
    pid_t proxy;
  };
  // "gateway" is the public TCP port, like nghttpx's frontend; "gateway-unix"
  // is an internal listener (what instances use), which takes the TCP hop out.
  std::vector<Target> targets = {{"direct", "unix:" + sock, -1},
                                 {"gateway", "127.0.0.1:" + gw_port, gw.pid},
                                 {"gateway-unix", "unix:" + gw_sock, gw.pid},
                                 {"gateway-busy100", "127.0.0.1:" + busy_line.substr(5), gw_busy.pid}};
  if (have_nghttpx) targets.push_back({"nghttpx", "127.0.0.1:" + std::to_string(nx_port), nghttpx.pid});
  std::vector<int> inflights = {1, 16, 64};

  // samples[target][inflight] -> per-run results
  std::map<std::string, std::map<int, std::vector<Result>>> samples;
  std::map<std::string, std::unique_ptr<Load>> loads;
  for (auto& t : targets) loads[t.name] = std::make_unique<Load>(t.address);
  int errors = 0;
  for (auto& t : targets) loads[t.name]->Run(8, 0.3, &errors);  // connect + warm up
  for (int run = 0; run < runs; ++run) {
    for (int inflight : inflights) {
      for (auto& t : targets) {
        Load& load = *loads[t.name];
        load.Run(inflight, 0.2, &errors);  // settle
        double proxy0 = t.proxy > 0 ? CpuMicros(t.proxy) : 0, server0 = CpuMicros(echo.pid);
        double client0 = CpuMicros(::getpid(), false);
        auto t0 = Clock::now();
        std::vector<double> lat = load.Run(inflight, seconds, &errors);
        double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        double proxy1 = t.proxy > 0 ? CpuMicros(t.proxy) : 0, server1 = CpuMicros(echo.pid);
        double client1 = CpuMicros(::getpid(), false);
        Result r;
        double n = static_cast<double>(lat.size());
        r.calls_per_s = n / elapsed;
        r.p50_us = Percentile(lat, 0.50);
        r.p99_us = Percentile(lat, 0.99);
        r.proxy_cpu_us = t.proxy > 0 ? (proxy1 - proxy0) / n : 0;
        r.server_cpu_us = (server1 - server0) / n;
        r.client_cpu_us = (client1 - client0) / n;
        samples[t.name][inflight].push_back(r);
        std::fprintf(stderr, "run %d %-15s %2d in flight: p50 %6.1f us p99 %7.1f us %8.0f calls/s proxy %5.1f us/call\n",
                     run + 1, t.name.c_str(), inflight, r.p50_us, r.p99_us, r.calls_per_s, r.proxy_cpu_us);
      }
    }
  }
  std::printf("| target | in flight | p50 µs | p99 µs | calls/s | vs direct | proxy CPU µs/call | instance CPU µs/call | client CPU µs/call |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int inflight : inflights) {
    double direct_tput = 0;
    for (auto& t : targets) {
      auto& rs = samples[t.name][inflight];
      auto pick = [&](auto f) {
        std::vector<double> v;
        for (auto& r : rs) v.push_back(f(r));
        return Median(v);
      };
      double tput = pick([](const Result& r) { return r.calls_per_s; });
      if (t.name == "direct") direct_tput = tput;
      char cpu[32] = "–";
      if (t.proxy > 0) std::snprintf(cpu, sizeof cpu, "%.1f", pick([](const Result& r) { return r.proxy_cpu_us; }));
      std::printf("| %s | %d | %.0f | %.0f | %.0f | %.2f× | %s | %.1f | %.1f |\n", t.name.c_str(), inflight,
                  pick([](const Result& r) { return r.p50_us; }), pick([](const Result& r) { return r.p99_us; }), tput,
                  direct_tput > 0 ? tput / direct_tput : 0, cpu, pick([](const Result& r) { return r.server_cpu_us; }),
                  pick([](const Result& r) { return r.client_cpu_us; }));
    }
  }
  std::printf("\nerrors: %d\n", errors);
  loads.clear();
  nghttpx.Stop();
  gw_busy.Stop();
  gw.Stop();
  echo.Stop();
  std::error_code ec;
  fs::remove_all(tmpl, ec);
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "serve") {
    if (args.size() < 3) return 2;
    return Serve(args[1], std::atoi(args[2].c_str()), args.size() > 3 ? args[3] : "");
  }
  if (!args.empty() && args[0] == "load") {  // load <target> <inflight> <seconds> [<url> <string>]
    if (args.size() != 4 && args.size() != 6) return 2;
    Load load(args[1]);
    if (args.size() == 6) {
      load.url = args[4];
      load.json_arg = args[5];
    }
    int errors = 0;
    size_t warm = load.Run(8, 0.3, &errors).size();
    auto t0 = Clock::now();
    std::vector<double> lat = load.Run(std::atoi(args[2].c_str()), std::atof(args[3].c_str()), &errors);
    double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    double n = static_cast<double>(lat.size());
    // (calls and warm: for a proxy's CPU per call, tests/bench/foreign/run.sh)
    std::printf("p50 %.1f us p99 %.1f us %.0f calls/s errors %d calls %zu warm %zu\n", Percentile(lat, 0.5),
                Percentile(lat, 0.99), n / elapsed, errors, lat.size(), warm);
    return 0;
  }
  int runs = 5, workers = 1;
  double seconds = 2;
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    if (args[i] == "--runs") runs = std::atoi(args[i + 1].c_str());
    else if (args[i] == "--seconds") seconds = std::atof(args[i + 1].c_str());
    else if (args[i] == "--workers") workers = std::atoi(args[i + 1].c_str());
  }
  return RunAll(runs, seconds, workers);
}
