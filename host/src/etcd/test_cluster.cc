#include "test_cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "client.h"
#include "util.h"

namespace lever::host::etcd::testing {
namespace {

// Free loopback ports, all distinct: every socket stays bound until all are
// picked. (Someone may still take one before etcd binds it; Start retries.)
std::vector<int> FreePorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) close(fd);
      ports.push_back(0);
      continue;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

std::string Url(int port) { return "http://127.0.0.1:" + std::to_string(port); }

bool Exited(pid_t pid) {
  int status;
  return waitpid(pid, &status, WNOHANG) == pid;
}

constexpr auto kReadyTimeout = std::chrono::seconds(20);
constexpr auto kPoll = std::chrono::milliseconds(20);

}  // namespace

std::shared_ptr<Client> Connect(const std::string& endpoints) {
  ClientOptions co;
  EXPECT_TRUE(ParseEndpoints(endpoints, &co.endpoints).ok()) << endpoints;
  co.call_timeout = std::chrono::milliseconds(1000);
  std::shared_ptr<Client> c;
  EXPECT_TRUE(Client::Open(co, &c).ok());
  return c;
}

Status Cluster::Start(ClusterOptions options, std::unique_ptr<Cluster>* out) {
  if (options.members < 1) return InvalidArgument("a cluster needs a member");
  if (options.etcd_binary.empty()) {
    const char* env = getenv("LEVER_ETCD");
    options.etcd_binary = env && *env ? env : "/usr/bin/etcd";
  }
  if (access(options.etcd_binary.c_str(), X_OK) != 0) {
    return Status(Code::kFailedPrecondition,
                  options.etcd_binary + " is missing: scripts/setup.sh installs etcd-server");
  }
  Status last;
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::unique_ptr<Cluster> c(new Cluster());
    c->options_ = options;
    // Data dirs in memory when there is a tmpfs: etcd preallocates and
    // fsyncs a 64 MiB WAL per member, which takes seconds on a busy disk.
    std::string tmpl = access("/dev/shm", W_OK) == 0 ? "/dev/shm/lever-etcd-XXXXXX" : "/tmp/lever-etcd-XXXXXX";
    if (!mkdtemp(tmpl.data())) return ErrnoStatus("mkdtemp", errno);
    c->root_ = tmpl;
    c->token_ = "lever-test-" + RandomId(12);
    std::vector<int> ports = FreePorts(2 * options.members);
    for (int i = 0; i < options.members; ++i) {
      Member m;
      m.name = "m" + std::to_string(i);
      m.client_port = ports[2 * i];
      m.peer_port = ports[2 * i + 1];
      m.data_dir = c->root_ + "/" + m.name;
      m.log_path = c->root_ + "/" + m.name + ".log";
      c->members_.push_back(m);
    }
    Status s;
    for (int i = 0; i < options.members && s.ok(); ++i) s = c->Spawn(i, /*initial=*/true);
    for (int i = 0; i < options.members && s.ok(); ++i) s = c->WaitReady(i);
    if (s.ok()) {
      *out = std::move(c);
      return Status::Ok();
    }
    last = s;  // ~Cluster kills what started and removes the dirs
  }
  return last;
}

Cluster::~Cluster() {
  KillAll();
  if (!root_.empty()) (void)RemoveTree(root_);
}

void Cluster::KillAll() {
  for (int i = 0; i < size(); ++i) Kill(i);
}

std::string Cluster::Endpoint(int i) const { return "127.0.0.1:" + std::to_string(members_[i].client_port); }

std::string Cluster::Endpoints() const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (i) out += ",";
    out += Endpoint(i);
  }
  return out;
}

std::string Cluster::EndpointsAt(const std::string& host) const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (i) out += ",";
    out += host + ":" + std::to_string(members_[i].client_port);
  }
  return out;
}

Status Cluster::Spawn(int i, bool initial) {
  Member& m = members_[i];
  std::string peers;
  for (const Member& p : members_) {
    if (!peers.empty()) peers += ",";
    peers += p.name + "=" + Url(p.peer_port);
  }
  std::vector<std::string> argv = {
      options_.etcd_binary,
      "--name", m.name,
      "--data-dir", m.data_dir,
      "--listen-client-urls", options_.also_listen.empty() ? Url(m.client_port)
                                  : Url(m.client_port) + ",http://" + options_.also_listen + ":" +
                                        std::to_string(m.client_port),
      "--advertise-client-urls", Url(m.client_port),
      "--listen-peer-urls", Url(m.peer_port),
      "--initial-advertise-peer-urls", Url(m.peer_port),
      "--initial-cluster", peers,
      "--initial-cluster-state", initial ? "new" : "existing",
      "--initial-cluster-token", token_,
      "--heartbeat-interval", std::to_string(options_.heartbeat_ms),
      "--election-timeout", std::to_string(options_.election_ms),
      "--enable-v2=false",
      "--logger", "zap",
      "--log-outputs", "stderr",
      "--log-level", "warn",
  };
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int log = open(m.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ErrnoStatus(m.log_path, errno);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(log);
    return ErrnoStatus("fork", errno);
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(log, 1);
    dup2(log, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log);
  m.pid = pid;
  return Status::Ok();
}

Status Cluster::WaitReady(int i) {
  std::shared_ptr<Client> client;
  ClientOptions co;
  co.endpoints = {Endpoint(i)};
  co.call_timeout = std::chrono::milliseconds(500);
  Status s = Client::Open(co, &client);
  if (!s.ok()) return s;
  auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Exited(members_[i].pid)) {
      members_[i].pid = -1;
      return Status(Code::kUnavailable, "etcd member " + members_[i].name + " exited: " + LogTail(i));
    }
    pb::StatusResponse st;
    if (client->MemberStatus(0, &st).ok() && st.leader() != 0) {
      // A linearizable read goes through the leader: the member is usable.
      pb::RangeRequest req;
      req.set_key("/");
      pb::RangeResponse resp;
      if (client->Range(req, &resp).ok()) return Status::Ok();
    }
    std::this_thread::sleep_for(kPoll);
  }
  return Status(Code::kDeadlineExceeded, "etcd member " + members_[i].name + " not ready: " + LogTail(i));
}

void Cluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  kill(m.pid, SIGKILL);
  int status;
  waitpid(m.pid, &status, 0);
  m.pid = -1;
}

void Cluster::Pause(int i) {
  if (members_[i].pid > 0) kill(members_[i].pid, SIGSTOP);
}

void Cluster::Resume(int i) {
  if (members_[i].pid > 0) kill(members_[i].pid, SIGCONT);
}

Status Cluster::Restart(int i) {
  Kill(i);
  Status s = Spawn(i, /*initial=*/false);
  if (!s.ok()) return s;
  return WaitReady(i);
}

Status Cluster::RestartAll() {
  for (int i = 0; i < size(); ++i) {
    if (running(i)) continue;
    Status s = Spawn(i, /*initial=*/false);
    if (!s.ok()) return s;
  }
  for (int i = 0; i < size(); ++i) {
    Status s = WaitReady(i);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

std::string Cluster::LogTail(int i) const {
  std::ifstream in(members_[i].log_path);
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (lines.size() > 5) lines.pop_front();
  }
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out.empty() ? "(no log)" : out;
}

}  // namespace lever::host::etcd::testing

namespace lever::host::etcd::testing {

Status LinkCutter::Start(const std::string& target, std::unique_ptr<LinkCutter>* out) {
  std::unique_ptr<LinkCutter> c(new LinkCutter());
  size_t colon = target.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("target is not host:port");
  c->target_port_ = std::stoi(target.substr(colon + 1));
  c->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (c->listen_fd_ < 0 || bind(c->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(c->listen_fd_, 64) != 0 ||
      getsockname(c->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoStatus("link cutter socket", errno);
  }
  c->port_ = ntohs(addr.sin_port);
  if (pipe2(c->wake_, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  c->thread_ = std::thread([raw = c.get()] { raw->Run(); });
  *out = std::move(c);
  return Status::Ok();
}

LinkCutter::~LinkCutter() {
  Command('q');
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void LinkCutter::Command(char c) {
  if (wake_[1] >= 0) (void)!write(wake_[1], &c, 1);
}

void LinkCutter::Cut() { Command('c'); }
void LinkCutter::Mend() { Command('m'); }

void LinkCutter::Run() {
  struct Pair {
    int a, b;
  };
  std::vector<Pair> pairs;
  bool cut = false;
  auto close_all = [&] {
    for (const Pair& p : pairs) {
      close(p.a);
      close(p.b);
    }
    pairs.clear();
  };
  for (;;) {
    std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (const Pair& p : pairs) {
      fds.push_back({p.a, POLLIN, 0});
      fds.push_back({p.b, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents) {
      char c;
      if (read(wake_[0], &c, 1) == 1) {
        if (c == 'q') {
          close_all();
          return;
        }
        cut = c == 'c';
        if (cut) close_all();
      }
      continue;
    }
    if (fds[1].revents) {
      int a = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (a >= 0) {
        int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(target_port_));
        if (cut || b < 0 || connect(b, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          close(a);
          if (b >= 0) close(b);
        } else {
          pairs.push_back({a, b});
        }
      }
    }
    std::vector<size_t> dead;
    for (size_t i = 0; i < pairs.size(); ++i) {
      for (int side = 0; side < 2; ++side) {
        const pollfd& pf = fds[2 + 2 * i + side];
        if (!pf.revents) continue;
        int from = side == 0 ? pairs[i].a : pairs[i].b;
        int to = side == 0 ? pairs[i].b : pairs[i].a;
        char buf[16384];
        ssize_t n = read(from, buf, sizeof buf);
        bool ok = n > 0;
        for (ssize_t off = 0; ok && off < n;) {
          ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) ok = false;
          off += w;
        }
        if (!ok && (dead.empty() || dead.back() != i)) dead.push_back(i);
      }
    }
    for (size_t k = dead.size(); k-- > 0;) {
      close(pairs[dead[k]].a);
      close(pairs[dead[k]].b);
      pairs.erase(pairs.begin() + static_cast<ptrdiff_t>(dead[k]));
    }
  }
}

}  // namespace lever::host::etcd::testing
