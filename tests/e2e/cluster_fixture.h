// The cluster e2e tests' fixture: a real 3-member etcd per test and leverd
// nodes on it, each on loopback with its own public and peer port and the
// same cluster token, plus what the tests ask the nodes.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etcd/test_cluster.h"
#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {

inline constexpr char kClusterToken[] = "cluster-e2e-token-0123456789abcdef";

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

inline std::string Str(const Value& v, const char* key) {
  const Value* f = v.is_map() ? v.as_map().Find(key) : nullptr;
  return f && f->is_string() ? f->as_string() : "";
}

class ClusterFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = host::etcd::testing::Cluster::Start({}, &etcd_);
    ASSERT_TRUE(s.ok()) << s.message();
  }

  struct Node {
    std::string name;
    int peer_port = 0;
    std::unique_ptr<Leverd> leverd;
    Leverd* operator->() const { return leverd.get(); }
  };

  Node StartNode(const std::string& name, const std::string& token = kClusterToken,
                 const std::vector<std::string>& flags = {}) {
    Node n;
    n.name = name;
    n.peer_port = FreePort();
    std::string file = dir_.path() + "/token-" + name;
    std::ofstream(file) << token << "\n";
    Leverd::Options o;
    o.extra_flags = {"--registry",  "etcd://" + etcd_->Endpoints(),
                     "--node-name", name,
                     "--advertise", "127.0.0.1:" + std::to_string(n.peer_port),
                     "--cluster-token-file", file};
    o.extra_flags.insert(o.extra_flags.end(), flags.begin(), flags.end());
    n.leverd = std::make_unique<Leverd>(o);
    n.leverd->Start();
    return n;
  }

  // Ids of `service`'s instances that `node` runs itself.
  static std::vector<std::string> LocalInstances(const Node& node, const std::string& service,
                                                 bool ready_only = false) {
    std::vector<std::string> ids;
    for (const Value& i : node->Instances(service)) {
      if (Str(i, "node") == node.name && (!ready_only || Str(i, "state") == "ready")) ids.push_back(Str(i, "id"));
    }
    return ids;
  }

  static bool Contains(const std::vector<std::string>& ids, const std::string& id) {
    return !id.empty() && std::find(ids.begin(), ids.end(), id) != ids.end();
  }

  // The names in `node`'s `lever ps --json` nodes[].
  static std::vector<std::string> NodeNames(const Node& node) {
    std::vector<std::string> names;
    Value ps = node->Ps();
    const Value* nodes = ps.is_map() ? ps.as_map().Find("nodes") : nullptr;
    if (nodes && nodes->is_array()) {
      for (const Value& n : nodes->as_array()) names.push_back(Str(n, "name"));
    }
    return names;
  }

  TempDir dir_;
  std::unique_ptr<host::etcd::testing::Cluster> etcd_;
};

}  // namespace lever::e2e
