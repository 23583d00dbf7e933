// Resources with one owner across the cluster (docs/cluster.md, "Resources
// across nodes"): real etcd, real leverd nodes. Calls for a resource through
// any node reach one instance; the resources of a node killed with SIGKILL
// are owned elsewhere about one lease TTL later; a node paused past its
// lease (SIGSTOP) serves none of its old resources after SIGCONT, nor does a
// node cut from etcd once its lease ended. The test
// service logs the fencing token of every call it serves (one shared file,
// in the order served across all instances), and the log shows there were
// never two owners at once: per resource, tokens never go back, and each
// token is one instance's.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "cluster_fixture.h"

namespace lever::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ClusterResourcesE2E : public ClusterFixture {
 protected:
  // A service that keeps one instance on every node and logs tokens.
  void DeployOn(const Node& node, const std::string& name) {
    log_ = logs_.path() + "/tokens.log";
    CommandResult d = node->DeployTestService(R"({"name": ")" + name + R"(", "entry": ["./serve", "--token-log", ")" +
                                              log_ + R"("], "minInstances": 1})");
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
  }

  // Waits until every node runs a ready instance of `service` and knows
  // every other node's.
  bool AllReady(const std::vector<const Node*>& nodes, const std::string& service) {
    return WaitUntil(
        [&] {
          for (const Node* n : nodes) {
            if (LocalInstances(*n, service, true).empty()) return false;
            size_t ready = 0;
            for (const Value& i : (*n)->Instances(service)) ready += Str(i, "state") == "ready";
            if (ready < nodes.size()) return false;
          }
          return true;
        },
        seconds(30));
  }

  struct Served {
    bool ok = false;
    std::string instance, why;
    int64_t token = 0;
  };
  // One Fenced call for `resource` through `node`.
  Served Call(const Node& node, const std::string& service, const std::string& resource) {
    std::unique_ptr<Client>& client = clients_[node.name];
    if (!client) client = node->NewClient();
    Result r = client->Resource("dev.lever", service, resource).Invoke("Fenced", {}, CallOptions{seconds(20)});
    Served s;
    if (!r.ok()) {
      s.why = r.status.ToString();
      return s;
    }
    s.ok = Str(r.value, "resource") == resource;
    s.instance = Str(r.value, "instance");
    s.token = std::atoll(Str(r.value, "token").c_str());
    if (s.token <= 0) {
      s.ok = false;
      s.why = "no fencing token: " + Str(r.value, "token");
    }
    return s;
  }

  // Instance id -> node, from every node's own instances.
  std::map<std::string, std::string> Where(const std::vector<const Node*>& nodes, const std::string& service) {
    std::map<std::string, std::string> out;
    for (const Node* n : nodes) {
      for (const std::string& id : LocalInstances(*n, service)) out[id] = n->name;
    }
    return out;
  }

  // The token log, checked: every call carried a token; per resource the
  // tokens of calls, in the order they were served, never go back; a token
  // is one instance's; NewResource ran with the token its calls carry.
  // Returns how many calls it saw.
  size_t CheckTokenLog() {
    std::ifstream in(log_);
    std::string line;
    std::map<std::string, int64_t> last;                    // resource -> newest token served
    std::map<std::pair<std::string, int64_t>, std::string> by;  // (resource, token) -> instance
    std::set<std::pair<std::string, int64_t>> opened;
    size_t calls = 0;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string kind, resource, token_text, instance;
      if (!(f >> kind >> resource >> token_text >> instance)) {
        ADD_FAILURE() << "bad token log line: " << line;
        continue;
      }
      EXPECT_NE(token_text, "-") << "a " << kind << " for " << resource << " without a fencing token";
      int64_t token = std::atoll(token_text.c_str());
      if (kind == "new") opened.insert({resource, token});
      if (kind != "call") continue;
      ++calls;
      EXPECT_GE(token, last[resource]) << resource << " was served under token " << token << " after token "
                                       << last[resource] << " (two owners at once)";
      last[resource] = std::max(last[resource], token);
      auto [it, fresh] = by.emplace(std::make_pair(resource, token), instance);
      EXPECT_EQ(it->second, instance) << resource << " token " << token << " served by two instances";
      if (fresh) {
        EXPECT_TRUE(opened.count({resource, token}))
            << resource << " served before NewResource (token " << token << ")";
      }
    }
    return calls;
  }

  // Whether the owner that served `s` got CloseResource for `resource`
  // under its token (waits a little: it is sent in the background).
  bool Closed(const std::string& resource, const Served& s) {
    std::string close = "close " + resource + " " + std::to_string(s.token) + " " + s.instance;
    return WaitUntil(
        [&] {
          std::ifstream in(log_);
          std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
          return all.find(close) != std::string::npos;
        },
        seconds(10));
  }

  // Every resource key in etcd and its mod revision (its last write).
  std::map<std::string, int64_t> ResourceKeys() {
    auto client = host::etcd::testing::Connect(etcd_->Endpoints());
    host::etcd::pb::RangeRequest req;
    req.set_key("/lever/res/");
    req.set_range_end(host::etcd::PrefixEnd("/lever/res/"));
    host::etcd::pb::RangeResponse resp;
    std::map<std::string, int64_t> out;
    EXPECT_TRUE(client->Range(req, &resp).ok());
    for (const auto& kv : resp.kvs()) out[kv.key()] = kv.mod_revision();
    return out;
  }

  TempDir logs_;
  std::string log_;
  std::map<std::string, std::unique_ptr<Client>> clients_;
};

TEST_F(ClusterResourcesE2E, OneOwnerThroughEveryNodeAndMovedAfterKill9) {
  Node n1 = StartNode("n1"), n2 = StartNode("n2"), n3 = StartNode("n3");
  std::vector<const Node*> all = {&n1, &n2, &n3};
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 3 && NodeNames(n3).size() == 3; }, seconds(10)));
  DeployOn(n1, "owned");
  ASSERT_TRUE(AllReady(all, "owned"));

  // 12 resources, each first called through a different node (local first:
  // owned there), then called through every node: one instance each, and
  // no etcd write for a resource after its first call.
  constexpr int kResources = 12;
  std::map<std::string, Served> owner;
  std::map<std::string, int64_t> keys_after_first;
  for (int round = 0; round < 3; ++round) {
    if (round == 1) {
      keys_after_first = ResourceKeys();
      EXPECT_EQ(keys_after_first.size(), size_t{kResources});
    }
    for (int r = 0; r < kResources; ++r) {
      std::string res = "user/" + std::to_string(r);
      Served s = Call(*all[(r + round) % 3], "owned", res);
      ASSERT_TRUE(s.ok) << res << ": " << s.why;
      auto [it, first] = owner.emplace(res, s);
      EXPECT_EQ(it->second.instance, s.instance) << res << " moved between instances";
      EXPECT_EQ(it->second.token, s.token) << res << " changed tokens while its owner lived";
    }
  }
  EXPECT_EQ(ResourceKeys(), keys_after_first) << "calls for owned resources wrote to etcd";
  std::map<std::string, std::string> where = Where(all, "owned");
  std::map<std::string, std::vector<std::string>> by_node;  // node -> its resources
  for (const auto& [res, s] : owner) by_node[where[s.instance]].push_back(res);
  EXPECT_EQ(by_node.size(), 3u) << "the first calls through each node did not own their resources there";
  ASSERT_FALSE(by_node["n2"].empty());

  // kill -9 of n2 (its instances die with it): its resources move to n1 or
  // n3 once its lease ends, with larger tokens; the others stay put.
  ASSERT_EQ(kill(n2->pid(), SIGKILL), 0);
  auto killed = std::chrono::steady_clock::now();
  const std::string moved = by_node["n2"].front();
  Served after;
  ASSERT_TRUE(WaitUntil([&] { return (after = Call(n1, "owned", moved)).ok; }, seconds(15))) << after.why;
  auto failover = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - killed);
  std::cerr << "first call on a moved resource " << failover.count() << " ms after kill -9 of its owner's node\n";
  EXPECT_GT(after.token, owner[moved].token);
  where = Where({&n1, &n3}, "owned");
  EXPECT_TRUE(where.count(after.instance)) << moved << " served by " << after.instance << ", not on n1 or n3";
  for (const std::string& res : by_node["n2"]) {
    for (const Node* n : {&n3, &n1}) {
      Served s;
      ASSERT_TRUE(WaitUntil([&] { return (s = Call(*n, "owned", res)).ok; }, seconds(15))) << res << ": " << s.why;
      EXPECT_TRUE(where.count(s.instance)) << res;
      EXPECT_GT(s.token, owner[res].token) << res;
      if (res == moved) {
        EXPECT_EQ(s.token, after.token) << res << " moved twice";
      }
    }
  }
  for (const char* node : {"n1", "n3"}) {
    for (const std::string& res : by_node[node]) {
      Served s = Call(n3, "owned", res);
      ASSERT_TRUE(s.ok) << res << ": " << s.why;
      EXPECT_EQ(s.instance, owner[res].instance) << res << " moved though its owner lives";
      EXPECT_EQ(s.token, owner[res].token) << res;
    }
  }
  EXPECT_GE(CheckTokenLog(), size_t{3 * kResources});
}

TEST_F(ClusterResourcesE2E, AnOwnerPausedPastItsLeaseServesNoneOfItsResourcesAfterSigcont) {
  Node n1 = StartNode("n1"), n3 = StartNode("n3");
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 2 && NodeNames(n3).size() == 2; }, seconds(10)));
  DeployOn(n3, "paused");
  ASSERT_TRUE(AllReady({&n1, &n3}, "paused"));
  const std::vector<std::string> on_n3 = LocalInstances(n3, "paused");
  std::map<std::string, Served> before;
  for (int r = 0; r < 4; ++r) {
    std::string res = "acct-" + std::to_string(r);
    Served s = Call(n3, "paused", res);
    ASSERT_TRUE(s.ok) << res << ": " << s.why;
    EXPECT_TRUE(Contains(on_n3, s.instance)) << res << " not owned on n3, where it was first called";
    before[res] = s;
  }

  // SIGSTOP n3 (its instances keep running): once its lease ends, n1 owns
  // the resources, with larger tokens.
  ASSERT_EQ(kill(n3->pid(), SIGSTOP), 0);
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 1; }, seconds(15)));
  const std::vector<std::string> on_n1 = LocalInstances(n1, "paused");
  std::map<std::string, Served> moved;
  for (const auto& [res, old] : before) {
    Served s;
    ASSERT_TRUE(WaitUntil([&] { return (s = Call(n1, "paused", res)).ok; }, seconds(15))) << res << ": " << s.why;
    EXPECT_TRUE(Contains(on_n1, s.instance)) << res;
    EXPECT_GT(s.token, old.token) << res;
    moved[res] = s;
  }

  // SIGCONT: n3's own clock says its lease ended, so it serves none of its
  // old resources; calls through it reach n1's owner (a call while n3 has
  // not caught up waits; none is served by n3's instance).
  ASSERT_EQ(kill(n3->pid(), SIGCONT), 0);
  for (const auto& [res, s] : moved) {
    Served got = Call(n3, "paused", res);
    ASSERT_TRUE(got.ok) << res << ": " << got.why;
    EXPECT_EQ(got.instance, s.instance) << res << " served by " << got.instance << " after SIGCONT";
    EXPECT_EQ(got.token, s.token) << res;
  }
  EXPECT_TRUE(n3->WaitForLog("is no longer served by instance", seconds(10)));
  // It rejoins, and its instance is told to forget the old resources.
  ASSERT_TRUE(WaitUntil([&] { return NodeNames(n1).size() == 2; }, seconds(15)));
  EXPECT_GE(CheckTokenLog(), before.size() * 3);
  for (const auto& [res, old] : before) {
    EXPECT_TRUE(Closed(res, old)) << res << ": no CloseResource on n3's instance after its lease ended";
  }
}

// Cut from etcd (every member killed), a node keeps serving calls without a
// resource, but its resources only while its lease lives by its own clock:
// then their calls fail clearly (nobody could tell who owns them), and once
// etcd is back they are owned again, under a larger token.
TEST_F(ClusterResourcesE2E, CutFromEtcdAnOwnerStopsServingItsResourcesUntilEtcdIsBack) {
  Node n1 = StartNode("n1", kClusterToken, {"--cold-start-wait", "2s"});
  DeployOn(n1, "cut");
  ASSERT_TRUE(AllReady({&n1}, "cut"));
  Served first = Call(n1, "cut", "order/1");
  ASSERT_TRUE(first.ok) << first.why;
  for (int i = 0; i < etcd_->size(); ++i) etcd_->Kill(i);
  Served s;
  ASSERT_TRUE(WaitUntil([&] { return !(s = Call(n1, "cut", "order/1")).ok; }, seconds(15)))
      << "still served with token " << s.token << " long after the lease ended";
  EXPECT_NE(s.why.find("UNAVAILABLE"), std::string::npos) << s.why;
  EXPECT_NE(s.why.find("got no owner that could serve it"), std::string::npos) << s.why;
  EXPECT_TRUE(Closed("order/1", first)) << "no CloseResource once the lease ended";
  // A call without a resource is still served.
  Result plain = n1->NewClient()->Service("dev.lever", "cut").Invoke("BasicHello", {"x"}, CallOptions{seconds(10)});
  EXPECT_TRUE(plain.ok()) << plain.status.ToString();
  ASSERT_TRUE(etcd_->RestartAll().ok());
  Served back;
  ASSERT_TRUE(WaitUntil([&] { return (back = Call(n1, "cut", "order/1")).ok; }, seconds(30))) << back.why;
  EXPECT_GT(back.token, first.token);
  EXPECT_GE(CheckTokenLog(), size_t{2});
}

}  // namespace
}  // namespace lever::e2e
