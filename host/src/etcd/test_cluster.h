// A real etcd cluster for tests: Debian's etcd-server, N members on free
// loopback ports with private data dirs (under /dev/shm, else /tmp), killed (SIGKILL) and
// removed when the object goes, also when a test fails; each member also
// dies with the thread that started it (PR_SET_PDEATHSIG), so a test process
// killed by CTest leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "lever/status.h"

namespace lever::host::etcd::testing {

// A client of `endpoints` ("h:p,h:p") with a 1 s attempt timeout; fails the
// test on a bad list.
std::shared_ptr<Client> Connect(const std::string& endpoints);

struct ClusterOptions {
  int members = 3;
  // Default: $LEVER_ETCD, else /usr/bin/etcd.
  std::string etcd_binary;
  // Faster elections than etcd's defaults (100 ms / 1 s), so member loss
  // costs the tests well under a second; the minimum lease TTL is 1 s then.
  int heartbeat_ms = 50;
  int election_ms = 500;
  // Another local address the members also serve clients on (tests whose
  // clients live in other network namespaces; EndpointsAt names it).
  std::string also_listen;
};

class Cluster {
 public:
  // Starts every member and waits (bounded) until each answers and a leader
  // is elected. On a port taken by someone else meanwhile, starts again on
  // new ports (a few times).
  static Status Start(ClusterOptions options, std::unique_ptr<Cluster>* out);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:p0,127.0.0.1:p1,..." (for etcd:// URLs and ParseEndpoints).
  std::string Endpoints() const;
  // The same members at `host` (ClusterOptions::also_listen).
  std::string EndpointsAt(const std::string& host) const;
  std::string Endpoint(int i) const;
  pid_t pid(int i) const { return members_[i].pid; }
  bool running(int i) const { return members_[i].pid > 0; }

  // SIGKILL one member and reap it.
  void Kill(int i);
  // SIGSTOP / SIGCONT one member.
  void Pause(int i);
  void Resume(int i);
  // Starts a killed member again with its data dir and ports, and waits
  // until it answers.
  Status Restart(int i);
  // Starts every killed member again, then waits for all.
  Status RestartAll();
  // The last lines of a member's log, for failure messages.
  std::string LogTail(int i) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log_path;
    pid_t pid = -1;
  };
  Cluster() = default;
  Status Spawn(int i, bool initial);
  Status WaitReady(int i);
  void KillAll();

  ClusterOptions options_;
  std::string root_;
  std::string token_;
  std::vector<Member> members_;
};

// A fault injector, named as such: a TCP relay in front of one member that
// a test can cut (open connections closed, new ones closed on accept) and
// mend. It stands for a network partition between one client and one
// member, which loopback cannot make otherwise (the netns tests make real
// ones).
class LinkCutter {
 public:
  // `target`: "127.0.0.1:port".
  static Status Start(const std::string& target, std::unique_ptr<LinkCutter>* out);
  ~LinkCutter();
  LinkCutter(const LinkCutter&) = delete;
  LinkCutter& operator=(const LinkCutter&) = delete;

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  void Cut();
  void Mend();

 private:
  LinkCutter() = default;
  void Run();
  void Command(char c);

  int target_port_ = 0;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace lever::host::etcd::testing
