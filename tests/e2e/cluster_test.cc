// Many leverd nodes on one real 3-member etcd (docs/cluster.md): code
// accepted by one node runs on the others (fetched over the peer port,
// checked by digest), calls arriving at any node reach instances on
// another, strangers without the cluster token are refused, and a node
// killed with SIGKILL stops receiving calls at once (the others serve them).
// The nodes share loopback, each with its own public and peer port.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "etcd/test_cluster.h"
#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kToken[] = "cluster-e2e-token-0123456789abcdef";

int FreePort() {
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

std::string Str(const Value& v, const char* key) {
  const Value* f = v.is_map() ? v.as_map().Find(key) : nullptr;
  return f && f->is_string() ? f->as_string() : "";
}

class ClusterE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = host::etcd::testing::Cluster::Start({}, &etcd_);
    ASSERT_TRUE(s.ok()) << s.message();
    token_file_ = dir_.path() + "/token";
    std::ofstream(token_file_) << kToken << "\n";
  }

  struct Node {
    std::string name;
    int peer_port = 0;
    std::unique_ptr<Leverd> leverd;
    Leverd* operator->() const { return leverd.get(); }
  };

  Node StartNode(const std::string& name, const std::string& token = kToken) {
    Node n;
    n.name = name;
    n.peer_port = FreePort();
    std::string file = dir_.path() + "/token-" + name;
    std::ofstream(file) << token << "\n";
    Leverd::Options o;
    o.extra_flags = {"--registry",      "etcd://" + etcd_->Endpoints(),
                     "--node-name",     name,
                     "--advertise",     "127.0.0.1:" + std::to_string(n.peer_port),
                     "--cluster-token-file", file};
    n.leverd = std::make_unique<Leverd>(o);
    n.leverd->Start();
    return n;
  }

  // `lever invoke /<service>/Whoami` through `node`: the instance that served it.
  static std::string WhoamiThrough(const Node& node, const std::string& service) {
    CommandResult r = node->Lever({"--json", "invoke", "/" + service + "/Whoami"});
    if (r.exit_code != 0) return "";
    Value v;
    if (!ParseJson(r.out, &v).ok()) return "";
    return Str(v, "instance");
  }

  // Ids of `service`'s instances that `node` runs itself.
  static std::vector<std::string> LocalInstances(const Node& node, const std::string& service) {
    std::vector<std::string> ids;
    for (const Value& i : node->Instances(service)) {
      if (Str(i, "node") == node.name) ids.push_back(Str(i, "id"));
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
  std::string token_file_;
  std::unique_ptr<host::etcd::testing::Cluster> etcd_;
};

TEST_F(ClusterE2E, DeployOnOneNodeCallThroughTheOthers) {
  Node n1 = StartNode("n1"), n2 = StartNode("n2"), n3 = StartNode("n3");
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n2).size() == 3; }, seconds(10))) << NodeNames(n2).size();
  CommandResult d = n1->DeployTestService(R"({"name": "clustersvc", "entry": ["./serve"]})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  // Every node keeps the live version's code: fetched from n1, digest checked.
  for (const Node* n : {&n2, &n3}) {
    EXPECT_TRUE((*n)->WaitForLog("fetched the code of lever://dev.lever/clustersvc v1 from node n1", seconds(15)))
        << n->name;
  }
  // Calls through n2 and n3 (CLI and SDK) reach n1's instance over the peer port.
  std::vector<std::string> on_n1 = LocalInstances(n1, "clustersvc");
  ASSERT_EQ(on_n1.size(), 1u);
  // Once n2 and n3 know of n1's instance (its key, a watch delivery away),
  // their calls go there rather than start instances of their own.
  auto knows = [&](const Node& n) {
    for (const Value& i : n->Instances("clustersvc")) {
      if (Str(i, "node") == "n1" && Contains(on_n1, Str(i, "id"))) return true;
    }
    return false;
  };
  ASSERT_TRUE(WaitUntil([&] { return knows(n2) && knows(n3); }, seconds(10)));
  for (const Node* n : {&n2, &n3}) {
    std::string id;
    ASSERT_TRUE(WaitUntil([&] { return !(id = WhoamiThrough(*n, "clustersvc")).empty(); }, seconds(10))) << n->name;
    EXPECT_TRUE(Contains(on_n1, id)) << n->name << " served by " << id;
    EXPECT_TRUE(LocalInstances(*n, "clustersvc").empty()) << n->name << " started its own instance:\n" << [&] {
      std::string all;
      for (const std::string& l : (*n)->LogLines()) all += l + "\n";
      return all;
    }();
    std::unique_ptr<Client> client = (*n)->NewClient();
    Result r = client->Service("dev.lever", "clustersvc").Invoke("BasicHello", {"sdk"});
    ASSERT_TRUE(r.ok()) << r.status.ToString();
    EXPECT_EQ(r.value.as_string(), "hello sdk");
  }
  // And over HTTP through n3.
  CommandResult h = RunCommand({"/usr/bin/curl", "-s", "-H", "Content-Type: application/json", "-X", "POST", "-d",
                                "[\"http\"]",
                                "http://" + n3->address() + "/clustersvc/BasicHello?forceenv=dev.lever"});
  EXPECT_EQ(h.out, "\"hello http\"") << h.err;
  // Internal calls cross nodes too: an instance on n2 calls a private
  // service whose only instance is on n1 (its environment travels along).
  d = n1->DeployTestService(R"({"name": "clusterpriv", "entry": ["./serve"], "private": true})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  d = n2->DeployTestService(R"({"name": "caller", "entry": ["./serve"]})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  std::vector<std::string> priv_on_n1 = LocalInstances(n1, "clusterpriv");
  ASSERT_EQ(priv_on_n1.size(), 1u);
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const Value& i : n2->Instances("clusterpriv")) {
          if (Str(i, "node") == "n1") return true;
        }
        return false;
      },
      seconds(10)));
  CommandResult other = n2->Lever({"--json", "invoke", "/caller/CallOther", "\"clusterpriv\"", "\"Whoami\""});
  ASSERT_EQ(other.exit_code, 0) << other.out << other.err;
  Value who;
  ASSERT_TRUE(ParseJson(other.out, &who).ok()) << other.out;
  EXPECT_TRUE(Contains(priv_on_n1, Str(who, "instance"))) << other.out;
  EXPECT_EQ(Str(who, "srcEnv"), "dev.lever") << other.out;
  EXPECT_TRUE(LocalInstances(n2, "clusterpriv").empty());
  // lever ps on n2 shows the nodes and where the instance runs.
  CommandResult ps = n2->Lever({"ps"});
  EXPECT_NE(ps.out.find("PEER ADDRESS"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("127.0.0.1:" + std::to_string(n1.peer_port)), std::string::npos) << ps.out;
}

TEST_F(ClusterE2E, A25MiBServiceDeployedOnNode1RunsOnNode3) {
  Node n1 = StartNode("n1"), n3 = StartNode("n3");
  TempDir code;
  std::ofstream(code.path() + "/lever.json") << R"({"name": "bigsvc", "entry": ["./serve"], "minInstances": 1})";
  fs::copy_file(TestServicePath(), code.path() + "/serve");
  {
    // Incompressible: the archive stays about 25 MiB, under the 30 MiB bound.
    std::ofstream big(code.path() + "/data.bin", std::ios::binary);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (25u << 20) / 8; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      big.write(reinterpret_cast<const char*>(&x), 8);
    }
  }
  CommandResult d = n1->Lever({"deploy", code.path()});
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  ASSERT_TRUE(n3->WaitForLog("fetched the code of lever://dev.lever/bigsvc v1 from node n1", seconds(60)));
  ASSERT_TRUE(WaitUntil([&] { return !LocalInstances(n3, "bigsvc").empty(); }, seconds(30)));
  EXPECT_EQ(fs::file_size(n3->data_dir() + "/code/dev.lever/bigsvc/1/data.bin"), uint64_t{25} << 20);
  // n3 serves it itself (local first) and now holds the archive for others.
  std::string id;
  ASSERT_TRUE(WaitUntil([&] { return !(id = WhoamiThrough(n3, "bigsvc")).empty(); }, seconds(10)));
  EXPECT_TRUE(Contains(LocalInstances(n3, "bigsvc"), id)) << id;
  size_t blobs = 0;
  for (const auto& e : fs::directory_iterator(n3->data_dir() + "/blobs")) blobs += e.path().extension() == ".tgz";
  EXPECT_EQ(blobs, 1u);
}

TEST_F(ClusterE2E, ATamperedFetchIsRefusedAndThatCodeNeverRuns) {
  Node n1 = StartNode("n1");
  CommandResult d = n1->DeployTestService(R"({"name": "tampered", "entry": ["./serve"], "minInstances": 1})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  // n1 serves other bytes than it was given for v1 (a corrupt or malicious peer).
  std::string blob;
  for (const auto& e : fs::directory_iterator(n1->data_dir() + "/blobs")) {
    if (e.path().extension() == ".tgz") blob = e.path().string();
  }
  ASSERT_FALSE(blob.empty());
  std::ofstream(blob, std::ios::binary | std::ios::trunc) << "not the deployed archive";
  Node n2 = StartNode("n2");
  ASSERT_TRUE(n2->WaitForLog("not the deployed", seconds(15)));
  ASSERT_TRUE(n2->WaitForLog("cannot get the code of lever://dev.lever/tampered v1", seconds(15)));
  EXPECT_TRUE(LocalInstances(n2, "tampered").empty());
  EXPECT_FALSE(fs::exists(n2->data_dir() + "/code/dev.lever/tampered/1"));
  // Calls through n2 are still served, by n1's instance.
  std::string id;
  ASSERT_TRUE(WaitUntil([&] { return !(id = WhoamiThrough(n2, "tampered")).empty(); }, seconds(10)));
  EXPECT_TRUE(Contains(LocalInstances(n1, "tampered"), id)) << id;
}

TEST_F(ClusterE2E, APeerWithoutTheClusterTokenIsRefused) {
  Node n1 = StartNode("n1");
  CommandResult d = n1->DeployTestService(R"({"name": "guarded", "entry": ["./serve"]})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  std::string digest;
  for (const auto& e : fs::directory_iterator(n1->data_dir() + "/blobs")) {
    if (e.path().extension() == ".tgz") digest = e.path().stem().string();
  }
  ASSERT_EQ(digest.size(), 64u);
  auto get = [&](const std::string& token_header) {
    RawHttp c(n1.peer_port);
    EXPECT_TRUE(c.ok());
    c.Send("GET /_lever/peer/blob/" + digest + ".tgz HTTP/1.1\r\nHost: x\r\n" + token_header + "\r\n");
    RawResponse r;
    EXPECT_TRUE(c.ReadResponse(&r));
    return r;
  };
  EXPECT_EQ(get("").status, 401);
  EXPECT_EQ(get("x-lever-cluster-token: wrong-token-wrong-token-wrong\r\n").status, 401);
  RawResponse ok = get(std::string("x-lever-cluster-token: ") + kToken + "\r\n");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body.size(), fs::file_size(n1->data_dir() + "/blobs/" + digest + ".tgz"));
  // A call on the peer port without the token.
  CommandResult r = RunCommand({LeverPath(), "-H", "127.0.0.1:" + std::to_string(n1.peer_port), "invoke",
                                "/guarded/BasicHello", "\"x\""});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cluster token"), std::string::npos) << r.err;
  // A leverd with another token on the same etcd is no node of this cluster:
  // n1 ignores its key (never relays to it), and it cannot fetch n1's code.
  Node stranger = StartNode("stranger", "another-token-0123456789abcdef");
  EXPECT_TRUE(n1->WaitForLog("ignoring node key /lever/node/stranger", seconds(10)));
  EXPECT_TRUE(stranger->WaitForLog("ignoring node key /lever/node/n1", seconds(10)));
  EXPECT_TRUE(stranger->WaitForLog("cannot fetch the code of lever://dev.lever/guarded v1", seconds(15)));
  EXPECT_FALSE(fs::exists(stranger->data_dir() + "/code/dev.lever/guarded/1"));
  std::vector<std::string> names = NodeNames(n1);
  EXPECT_EQ(names, std::vector<std::string>{"n1"});
}

TEST_F(ClusterE2E, AfterKill9OfANodeNewCallsSucceedWithinOneLeaseTtl) {
  Node n1 = StartNode("n1"), n2 = StartNode("n2"), n3 = StartNode("n3");
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 3 && NodeNames(n3).size() == 3; }, seconds(10)));
  CommandResult d = n2->DeployTestService(R"({"name": "failover", "entry": ["./serve"]})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  ASSERT_TRUE(n1->WaitForLog("fetched the code of lever://dev.lever/failover v1", seconds(15)));
  ASSERT_TRUE(n3->WaitForLog("fetched the code of lever://dev.lever/failover v1", seconds(15)));
  std::vector<std::string> on_n2 = LocalInstances(n2, "failover");
  ASSERT_EQ(on_n2.size(), 1u);
  std::string id;
  ASSERT_TRUE(WaitUntil([&] { return !(id = WhoamiThrough(n1, "failover")).empty(); }, seconds(10)));
  EXPECT_TRUE(Contains(on_n2, id)) << id;
  ASSERT_EQ(kill(n2->pid(), SIGKILL), 0);
  auto killed = std::chrono::steady_clock::now();
  // New calls through n1 and n3 succeed within one lease TTL (3 s): the
  // refused connection takes n2 out of their routing at once, and they
  // start instances of their own from the code they already hold.
  for (const Node* n : {&n1, &n3}) {
    ASSERT_TRUE(WaitUntil([&] { return !(id = WhoamiThrough(*n, "failover")).empty(); }, seconds(3))) << n->name;
    EXPECT_FALSE(Contains(on_n2, id));
    std::vector<std::string> live = LocalInstances(n1, "failover");
    for (const std::string& i : LocalInstances(n3, "failover")) live.push_back(i);
    EXPECT_TRUE(Contains(live, id)) << n->name << " served by " << id;
  }
  std::cerr << "first calls after kill -9 answered within "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - killed).count() << " ms\n";
  // And once its lease ends, n2 is gone from the cluster's view.
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 2; }, seconds(10)));
}

}  // namespace
}  // namespace lever::e2e
