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

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "cluster_fixture.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kToken = kClusterToken;

// One WhoamiAfterMs call in flight through `node`, its result awaited.
class SlowCall {
 public:
  SlowCall(const Leverd& node, const std::string& service, int64_t ms) : client_(node.NewClient()) {
    client_->Service("dev.lever", service).InvokeAsync("WhoamiAfterMs", {ms}, {}, [this](Result r) {
      std::lock_guard lock(mu_);
      result_ = std::move(r);
      done_ = true;
      cv_.notify_all();
    });
  }
  // Waits (bounded) for the result; false if it did not come.
  bool Wait(std::chrono::milliseconds timeout, Result* out) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return done_; })) return false;
    *out = result_;
    return true;
  }

 private:
  std::unique_ptr<Client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Result result_;
};

class ClusterE2E : public ClusterFixture {
 protected:
  // `lever invoke /<service>/Whoami` through `node`: the instance that served it.
  static std::string WhoamiThrough(const Node& node, const std::string& service) {
    CommandResult r = node->Lever({"--json", "invoke", "/" + service + "/Whoami"});
    if (r.exit_code != 0) return "";
    Value v;
    if (!ParseJson(r.out, &v).ok()) return "";
    return Str(v, "instance");
  }

  // Whether `node` runs an instance of `service` with a call in flight.
  static bool BusyOn(const Node& node, const std::string& service) {
    for (const Value& i : node->Instances(service)) {
      const Value* f = i.is_map() ? i.as_map().Find("inFlight") : nullptr;
      if (Str(i, "node") == node.name && f && f->is_int() && f->as_int() >= 1) return true;
    }
    return false;
  }

  // How many of `service`'s instances each node runs itself (ready or starting).
  static std::map<std::string, size_t> PerNode(const std::vector<const Node*>& nodes, const std::string& service) {
    std::map<std::string, size_t> out;
    for (const Node* n : nodes) out[n->name] = LocalInstances(*n, service).size();
    return out;
  }
  static std::string Describe(const std::map<std::string, size_t>& m) {
    std::string s;
    for (const auto& [k, v] : m) s += k + "=" + std::to_string(v) + " ";
    return s;
  }
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
  // n2's table lists n1's instance without a made-up pid or start time.
  CommandResult table = n2->Lever({"ps"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find(on_n1[0]), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find("1970-"), std::string::npos) << table.out;
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
  // Ready, not only listed: a call while n3's instance still starts goes to n1's.
  ASSERT_TRUE(WaitUntil([&] { return !LocalInstances(n3, "bigsvc", true).empty(); }, seconds(30)));
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
  // A call in flight on n2 (through n1) when n2 dies.
  SlowCall slow(*n1.leverd, "failover", 30000);
  ASSERT_TRUE(WaitUntil([&] { return BusyOn(n2, "failover"); }, seconds(5)));
  ASSERT_EQ(kill(n2->pid(), SIGKILL), 0);
  auto killed = std::chrono::steady_clock::now();
  // It fails at once (the relay's connection to n2 is reset), not after its 30 s.
  Result in_flight;
  ASSERT_TRUE(slow.Wait(seconds(5), &in_flight));
  EXPECT_TRUE(in_flight.is_platform_error());
  EXPECT_EQ(in_flight.status.code(), Code::kUnavailable) << in_flight.status.ToString();
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

TEST_F(ClusterE2E, ANodePausedPastItsLeaseLeavesThenRejoins) {
  Node n1 = StartNode("n1"), n3 = StartNode("n3");
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 2; }, seconds(10)));
  CommandResult d = n3->DeployTestService(R"({"name": "paused", "entry": ["./serve"]})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  ASSERT_TRUE(n1->WaitForLog("fetched the code of lever://dev.lever/paused v1", seconds(15)));
  std::vector<std::string> on_n3 = LocalInstances(n3, "paused");
  ASSERT_EQ(on_n3.size(), 1u);
  std::string id;
  ASSERT_TRUE(WaitUntil([&] { return Contains(on_n3, id = WhoamiThrough(n1, "paused")); }, seconds(10))) << id;
  // SIGSTOP: n3 renews nothing, its lease ends and its keys go; n1 stops
  // relaying there and serves the calls itself.
  ASSERT_EQ(kill(n3->pid(), SIGSTOP), 0);
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 1; }, seconds(10)));
  ASSERT_TRUE(WaitUntil([&] { return !(id = WhoamiThrough(n1, "paused")).empty(); }, seconds(10)));
  EXPECT_TRUE(Contains(LocalInstances(n1, "paused"), id)) << id;
  // SIGCONT: n3 finds its lease gone (its own clock says so), takes a new
  // one and publishes itself again; n1 sees it again.
  ASSERT_EQ(kill(n3->pid(), SIGCONT), 0);
  EXPECT_TRUE(n3->WaitForLog("this node's etcd lease ended; joining again", seconds(10)));
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 2; }, seconds(10)));
  bool back = false;
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const Value& i : n1->Instances("paused")) back |= Str(i, "node") == "n3";
        return back;
      },
      seconds(10)));
}

TEST_F(ClusterE2E, LocalFirstThenTheLeastLoadedNodeWithRoom) {
  Node n1 = StartNode("n1"), n2 = StartNode("n2");
  // One call at a time per instance, one instance on each node.
  CommandResult d = n1->DeployTestService(
      R"({"name": "placed", "entry": ["./serve"], "maxInstanceLoad": 1, "minInstances": 1})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  std::vector<std::string> on_n1, on_n2;
  ASSERT_TRUE(WaitUntil(
      [&] {
        on_n1 = LocalInstances(n1, "placed");
        on_n2 = LocalInstances(n2, "placed");
        bool known = false;
        for (const Value& i : n2->Instances("placed")) known |= Str(i, "node") == "n1";
        return on_n1.size() == 1 && on_n2.size() == 1 && known;
      },
      seconds(15)));
  ASSERT_TRUE(WaitUntil([&] { return Contains(on_n2, WhoamiThrough(n2, "placed")); }, seconds(10)))
      << "n2 serves its own calls while its instance has room";
  // n2's instance busy with one call (its maxInstanceLoad): the next call
  // through n2 goes to n1, whose instance has room.
  SlowCall slow(*n2.leverd, "placed", 3000);
  ASSERT_TRUE(WaitUntil([&] { return BusyOn(n2, "placed"); }, seconds(5)));
  std::string id = WhoamiThrough(n2, "placed");
  EXPECT_TRUE(Contains(on_n1, id)) << "served by " << id;
  Result r;
  ASSERT_TRUE(slow.Wait(seconds(15), &r));
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_TRUE(Contains(on_n2, Str(r.value, "instance")));
}

// Closed-loop callers: each thread calls WhoamiAfterMs(ms) through its node
// again and again until Stop(); every answer and failure is kept.
class Load {
 public:
  Load(std::vector<const Leverd*> through, const std::string& service, int64_t ms) {
    for (const Leverd* node : through) {
      threads_.emplace_back([this, node, service, ms] {
        std::unique_ptr<Client> client = node->NewClient();
        while (!stop_.load()) {
          Result r = client->Service("dev.lever", service).Invoke("WhoamiAfterMs", {ms});
          std::lock_guard lock(mu_);
          if (r.ok()) {
            served_[Str(r.value, "instance")]++;
            versions_[Str(r.value, "version")]++;
            ++ok_;
          } else {
            failures_.push_back(r.status.ToString());
          }
        }
      });
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t ok() const {
    std::lock_guard lock(mu_);
    return ok_;
  }
  std::vector<std::string> failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }
  std::map<std::string, int64_t> served() const {
    std::lock_guard lock(mu_);
    return served_;
  }
  std::map<std::string, int64_t> versions() const {
    std::lock_guard lock(mu_);
    return versions_;
  }

 private:
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  int64_t ok_ = 0;
  std::vector<std::string> failures_;
  std::map<std::string, int64_t> served_, versions_;
  std::vector<std::thread> threads_;
};

// Cluster-wide autoscaling (docs/cluster.md): 6 concurrent calls into n1
// alone, one call per instance, need 6 instances: the nodes split them (each
// its share of the cluster's count) rather than n1 running all, and n1
// relays the calls its own cannot take. Once the calls end, every node scales
// to zero.
TEST_F(ClusterE2E, ALoadStepIntoOneNodeSpreadsInstancesThenAllScaleToZero) {
  const std::vector<std::string> flags = {"--autoscale-panic-window", "600ms", "--autoscale-stable-window", "3s",
                                          "--idle-timeout", "2s"};
  Node n1 = StartNode("n1", kToken, flags), n2 = StartNode("n2", kToken, flags), n3 = StartNode("n3", kToken, flags);
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 3; }, seconds(10)));
  CommandResult d = n1->DeployTestService(R"({"name": "stepped", "entry": ["./serve"], "maxInstanceLoad": 1})");
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  for (const Node* n : {&n2, &n3}) {
    ASSERT_TRUE((*n)->WaitForLog("fetched the code of lever://dev.lever/stepped v1", seconds(15))) << n->name;
  }
  const std::vector<const Node*> all = {&n1, &n2, &n3};
  std::map<std::string, size_t> per_node;
  std::map<std::string, int64_t> served;
  {
    Load load({n1.leverd.get(), n1.leverd.get(), n1.leverd.get(), n1.leverd.get(), n1.leverd.get(), n1.leverd.get()},
              "stepped", 200);
    // Instances on at least two nodes, and calls into n1 served on another.
    auto spread = [&] {
      per_node = PerNode(all, "stepped");
      int running = 0;
      for (const auto& [_, count] : per_node) running += count > 0;
      return running >= 2;
    };
    ASSERT_TRUE(WaitUntil(spread, seconds(20))) << Describe(per_node);
    std::vector<std::string> elsewhere = LocalInstances(n2, "stepped");
    for (const std::string& id : LocalInstances(n3, "stepped")) elsewhere.push_back(id);
    ASSERT_TRUE(WaitUntil(
        [&] {
          served = load.served();
          elsewhere = LocalInstances(n2, "stepped");
          for (const std::string& id : LocalInstances(n3, "stepped")) elsewhere.push_back(id);
          for (const auto& [id, _] : served) {
            if (Contains(elsewhere, id)) return true;
          }
          return false;
        },
        seconds(20)))
        << "no call into n1 reached n2's or n3's instances; " << Describe(PerNode(all, "stepped"));
    // n1 does not run the whole count itself.
    per_node = PerNode(all, "stepped");
    EXPECT_LT(per_node["n1"], 6u) << Describe(per_node);
    load.Stop();
    EXPECT_EQ(load.failures(), std::vector<std::string>{});
    EXPECT_GT(load.ok(), 0);
  }
  std::cerr << "instances per node under the step: " << Describe(per_node) << "\n";
  // No call for the idle period (2 s) anywhere: zero instances on every node.
  ASSERT_TRUE(WaitUntil(
      [&] {
        per_node = PerNode(all, "stepped");
        for (const auto& [_, count] : per_node) {
          if (count > 0) return false;
        }
        return true;
      },
      seconds(30)))
      << Describe(per_node);
}

// A deploy while calls flow through all three nodes: none fails, and every
// node ends on v2 (its live version, and its instances).
TEST_F(ClusterE2E, LiveUpgradeAcrossNodesUnderLoad) {
  Node n1 = StartNode("n1"), n2 = StartNode("n2"), n3 = StartNode("n3");
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 3 && NodeNames(n3).size() == 3; }, seconds(10)));
  const std::string json = R"({"name": "upgraded", "entry": ["./serve"], "maxInstanceLoad": 1})";
  CommandResult d = n1->DeployTestService(json);
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  const std::vector<const Node*> all = {&n1, &n2, &n3};
  Load load({n1.leverd.get(), n2.leverd.get(), n3.leverd.get(), n1.leverd.get()}, "upgraded", 50);
  // Four calls at once, one per instance: every node runs its share.
  std::map<std::string, size_t> per_node;
  ASSERT_TRUE(WaitUntil(
      [&] {
        per_node = PerNode(all, "upgraded");
        return per_node["n1"] > 0 && per_node["n2"] > 0 && per_node["n3"] > 0;
      },
      seconds(30)))
      << Describe(per_node);
  d = n2->DeployTestService(json);
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("version 2"), std::string::npos) << d.out;
  // Every node's instances are of v2, and calls through each answer from v2.
  auto on_v2 = [&](const Node& n) {
    bool any = false;
    for (const Value& i : n->Instances("upgraded")) {
      if (Str(i, "node") != n.name) continue;
      const Value* v = i.as_map().Find("version");
      if (!v || !v->is_int() || v->as_int() != 2) return false;
      any = true;
    }
    return any;
  };
  for (const Node* n : all) {
    EXPECT_TRUE(WaitUntil([&] { return on_v2(*n); }, seconds(30))) << n->name;
    CommandResult r = (*n)->Lever({"--json", "invoke", "/upgraded/Whoami"});
    Value v;
    ASSERT_TRUE(ParseJson(r.out, &v).ok()) << r.out << r.err;
    EXPECT_EQ(Str(v, "version"), "2") << n->name;
  }
  load.Stop();
  EXPECT_EQ(load.failures(), std::vector<std::string>{});
  std::map<std::string, int64_t> versions = load.versions();
  EXPECT_GT(versions["1"], 0);
  EXPECT_GT(versions["2"], 0);
}

// etcd loses one member of three: the three nodes keep serving and a deploy
// on one runs on the others. Then etcd is gone entirely: every node keeps
// serving what it has (its own instances, and calls relayed to the others'),
// and a deploy is refused with a clear error.
TEST_F(ClusterE2E, EtcdMemberLostThenEtcdGone) {
  Node n1 = StartNode("n1"), n2 = StartNode("n2"), n3 = StartNode("n3");
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n2).size() == 3; }, seconds(10)));
  const std::string json = R"({"name": "quorum", "entry": ["./serve"]})";
  CommandResult d = n1->DeployTestService(json);
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  etcd_->Kill(0);
  d = n3->DeployTestService(json);
  ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("version 2"), std::string::npos) << d.out;
  auto version_through = [&](const Node& n) {
    CommandResult r = n->Lever({"--json", "invoke", "/quorum/Whoami"});
    Value v;
    return r.exit_code == 0 && ParseJson(r.out, &v).ok() ? Str(v, "version") : "";
  };
  for (const Node* n : {&n1, &n2, &n3}) {
    ASSERT_TRUE(WaitUntil([&] { return version_through(*n) == "2"; }, seconds(20))) << n->name;
  }
  for (int i = 1; i < etcd_->size(); ++i) etcd_->Kill(i);
  // Past the nodes' lease TTL (3 s): by its own clock n1's lease is gone too.
  auto own_health = [&](const Node& n) {
    Value ps = n->Ps();
    const Value* nodes = ps.is_map() ? ps.as_map().Find("nodes") : nullptr;
    if (nodes && nodes->is_array()) {
      for (const Value& v : nodes->as_array()) {
        if (Str(v, "name") == n.name) return Str(v, "health");
      }
    }
    return std::string();
  };
  ASSERT_TRUE(WaitUntil([&] { return own_health(n1) == "unreachable"; }, seconds(10))) << own_health(n1);
  for (const Node* n : {&n1, &n2, &n3}) {
    EXPECT_EQ(version_through(*n), "2") << n->name << " stopped serving without etcd";
    CommandResult r = (*n)->Lever({"invoke", "/quorum/BasicHello", "\"cached\""});
    EXPECT_EQ(r.out, "\"hello cached\"\n") << n->name << ": " << r.err;
  }
  d = n2->DeployTestService(json);
  EXPECT_NE(d.exit_code, 0);
  EXPECT_NE(d.err.find("etcd is unreachable"), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("refused until etcd is back"), std::string::npos) << d.err;
}

// The test's own network: a bridge in this namespace and one network
// namespace per node, each joined to the bridge by a veth pair, addresses on
// that subnet only (10.253.x.0/24, x from the pid). Everything is removed on
// destruction, also when a test fails half-way, and leftovers of a killed
// run with the same pid first.
class NodeNetwork {
 public:
  explicit NodeNetwork(int nodes) : tag_(std::to_string(getpid() % 100000)) {
    int x = getpid() % 250 + 1;
    net_ = "10.253." + std::to_string(x) + ".";
    Cleanup(nodes);
    ok_ = Run({"ip", "link", "add", Bridge(), "type", "bridge"}) &&
          Run({"ip", "addr", "add", net_ + "1/24", "dev", Bridge()}) && Run({"ip", "link", "set", Bridge(), "up"});
    for (int i = 1; ok_ && i <= nodes; ++i) {
      ok_ = Run({"ip", "netns", "add", Ns(i)}) &&
            Run({"ip", "link", "add", HostIf(i), "type", "veth", "peer", "name", NsIf(i)}) &&
            Run({"ip", "link", "set", NsIf(i), "netns", Ns(i)}) &&
            Run({"ip", "link", "set", HostIf(i), "master", Bridge()}) && Run({"ip", "link", "set", HostIf(i), "up"}) &&
            Run({"ip", "-n", Ns(i), "addr", "add", Addr(i) + "/24", "dev", NsIf(i)}) &&
            Run({"ip", "-n", Ns(i), "link", "set", NsIf(i), "up"}) && Run({"ip", "-n", Ns(i), "link", "set", "lo", "up"});
    }
    nodes_ = nodes;
  }
  ~NodeNetwork() { Cleanup(nodes_); }
  bool ok() const { return ok_; }
  std::string BridgeAddr() const { return net_ + "1"; }
  std::string Addr(int i) const { return net_ + std::to_string(10 + i); }
  // Only the network namespace changes (ip netns exec would remount /sys).
  std::vector<std::string> Exec(int i) const { return {"/usr/bin/env", "nsenter", "--net=/run/netns/" + Ns(i)}; }
  std::string Ns(int i) const { return "lvc" + tag_ + "n" + std::to_string(i); }
  std::vector<std::string> Namespaces() const {
    std::vector<std::string> out;
    for (int i = 1; i <= nodes_; ++i) out.push_back(Ns(i));
    return out;
  }

 private:
  std::string Bridge() const { return "lvcbr" + tag_; }
  std::string HostIf(int i) const { return "lvch" + tag_ + std::to_string(i); }
  std::string NsIf(int i) const { return "lvcn" + tag_ + std::to_string(i); }
  void Cleanup(int nodes) {
    for (int i = 1; i <= nodes; ++i) {
      Run({"ip", "netns", "del", Ns(i)});  // takes the pair's end, and so the pair
      Run({"ip", "link", "del", HostIf(i)});
    }
    Run({"ip", "link", "del", Bridge()});
  }
  static bool Run(std::vector<std::string> argv) {
    argv.insert(argv.begin(), "/usr/bin/env");
    return RunCommand(argv, "", seconds(10)).exit_code == 0;
  }
  std::string tag_, net_;
  int nodes_ = 0;
  bool ok_ = false;
};

// `lever -H <node> args...` from this namespace: not loopback for the node,
// so with its admin token.
CommandResult LeverAt(const Leverd& node, std::vector<std::string> args) {
  std::string token;
  std::ifstream(node.data_dir() + "/admin.token") >> token;
  std::vector<std::string> argv = {"/usr/bin/env", "LEVER_ADMIN_TOKEN=" + token, LeverPath(), "-H", node.address()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

// The same cluster with each node in its own network namespace: nodes reach
// each other only over the test's bridge, at their namespace addresses.
TEST(ClusterNetnsE2E, NodesInTheirOwnNetworkNamespaces) {
  std::vector<std::string> names;
  {
    NodeNetwork net(3);
    names = net.Namespaces();
    ASSERT_TRUE(net.ok()) << "cannot set up the test's network (ip netns, veth, bridge)";
    host::etcd::testing::ClusterOptions eo;
    eo.also_listen = net.BridgeAddr();
    std::unique_ptr<host::etcd::testing::Cluster> etcd;
    Status s = host::etcd::testing::Cluster::Start(eo, &etcd);
    ASSERT_TRUE(s.ok()) << s.message();
    TempDir dir;
    std::ofstream(dir.path() + "/token") << kToken << "\n";
    std::vector<std::unique_ptr<Leverd>> nodes;
    for (int i = 1; i <= 3; ++i) {
      Leverd::Options o;
      o.exec_prefix = net.Exec(i);
      o.listen = net.Addr(i) + ":0";
      o.extra_flags = {"--registry", "etcd://" + etcd->EndpointsAt(net.BridgeAddr()), "--node-name", "n" + std::to_string(i),
                       "--advertise", net.Addr(i) + ":7000", "--cluster-token-file", dir.path() + "/token"};
      nodes.push_back(std::make_unique<Leverd>(o));
      nodes.back()->Start();
    }
    TempDir code;
    std::ofstream(code.path() + "/lever.json") << R"({"name": "nssvc", "entry": ["./serve"]})";
    fs::copy_file(TestServicePath(), code.path() + "/serve");
    CommandResult d = LeverAt(*nodes[0], {"deploy", code.path()});
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
    std::vector<std::string> on_n1;
    Value ps;
    ASSERT_TRUE(ParseJson(LeverAt(*nodes[0], {"--json", "ps"}).out, &ps).ok());
    const Value* insts = ps.is_map() ? ps.as_map().Find("instances") : nullptr;
    ASSERT_TRUE(insts && insts->is_array());
    for (const Value& i : insts->as_array()) {
      if (Str(i, "service") == "nssvc") on_n1.push_back(Str(i, "id"));
    }
    ASSERT_EQ(on_n1.size(), 1u);
    for (int i : {1, 2}) {
      ASSERT_TRUE(nodes[i]->WaitForLog("fetched the code of lever://dev.lever/nssvc v1 from node n1", seconds(15)));
      std::string id;
      ASSERT_TRUE(WaitUntil(
          [&] {
            CommandResult r = LeverAt(*nodes[i], {"--json", "invoke", "/nssvc/Whoami"});
            Value v;
            if (r.exit_code != 0 || !ParseJson(r.out, &v).ok()) return false;
            id = Str(v, "instance");
            return true;
          },
          seconds(10)));
      EXPECT_NE(std::find(on_n1.begin(), on_n1.end(), id), on_n1.end()) << "n" << i + 1 << " served by " << id;
    }
  }
  CommandResult left = RunCommand({"/usr/bin/env", "ip", "netns", "list"});
  for (const std::string& n : names) EXPECT_EQ(left.out.find(n), std::string::npos) << left.out;
}

}  // namespace
}  // namespace lever::e2e
