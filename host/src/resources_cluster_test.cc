// Resource owners across nodes (resources_cluster.h) on a real 3-member
// etcd: one holder per resource, fencing tokens that grow, holders followed
// through the watch, and an owner whose lease ended by its own (fake) clock
// stops serving before etcd drops its key, while nobody else may take it
// until etcd does.
#include "resources_cluster.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "etcd/test_cluster.h"
#include "testutil.h"

namespace lever::host {
namespace {

using etcd::testing::Cluster;
using testing::WaitFor;

// One node's side: its registry (mirror), catalog with one service, etcd
// session and ClusterResources.
struct Node {
  std::string name;
  RegistryPtr registry;
  std::unique_ptr<Catalog> catalog;
  ServicePtr svc;
  std::shared_ptr<etcd::Session> session;
  std::unique_ptr<ClusterResources> owners;
  std::atomic<int> wakes{0};

  ResourceClaim Claim(const std::string& resource, const std::string& service = "svc") {
    std::promise<ResourceClaim> p;
    owners->Claim("dev.lever", service, resource, name + "-instance",
                  [&](ResourceClaim r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  // What this node's watch says about `resource`: its holder's node ("" if none).
  std::string Holder(const std::string& resource, int64_t* token = nullptr) {
    std::lock_guard lock(svc->mu);
    auto it = svc->holders.find(resource);
    if (it == svc->holders.end()) return "";
    if (token) *token = it->second.token;
    return it->second.node;
  }
};

class ClusterResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = Cluster::Start({}, &cluster_);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  std::unique_ptr<Node> StartNode(const std::string& name, ClockPtr clock, std::chrono::seconds ttl) {
    auto n = std::make_unique<Node>();
    n->name = name;
    Status s = OpenRegistry("etcd://" + cluster_->Endpoints(), "", &n->registry);
    EXPECT_TRUE(s.ok()) << s.message();
    auto* reg = dynamic_cast<EtcdRegistry*>(n->registry.get());
    n->catalog = std::make_unique<Catalog>(dir_.path());
    bool created = false;
    n->svc = n->catalog->FindOrCreate({"dev.lever", "svc", "", false, 1, 2}, &created);
    etcd::SessionOptions so;
    so.ttl = ttl;
    so.clock = std::move(clock);
    std::unique_ptr<etcd::Session> session;
    s = etcd::Session::Start(reg->client(), so, &session);
    EXPECT_TRUE(s.ok()) << s.message();
    n->session = std::move(session);
    ClusterResources::Deps d;
    d.registry = reg;
    d.catalog = n->catalog.get();
    d.node_name = name;
    d.session = [raw = n.get()] { return raw->session; };
    d.peer = [](const std::string&) { return nullptr; };
    d.wake = [raw = n.get()] { ++raw->wakes; };
    d.claim_wait = std::chrono::milliseconds(300);
    n->owners = std::make_unique<ClusterResources>(std::move(d));
    n->owners->Start();
    return n;
  }
  static std::shared_ptr<Instance> NewInstance() {
    return std::make_shared<Instance>("i1", "dev.lever", "svc", 1, "/nonexistent.sock", std::make_shared<Wakeup>(),
                                      RealClock(), true);
  }

  testing::TempDir dir_;
  std::unique_ptr<Cluster> cluster_;
};

TEST(ResourceKeys, ParseEnvServiceAndAResourceThatMayHoldSlashes) {
  std::string env, svc, res;
  ASSERT_TRUE(ParseResourceKey("dev.lever/svc/user/42", &env, &svc, &res));
  EXPECT_EQ(env, "dev.lever");
  EXPECT_EQ(svc, "svc");
  EXPECT_EQ(res, "user/42");
  for (const char* bad : {"", "dev.lever", "dev.lever/svc", "dev.lever/svc/", "/svc/r", "dev.lever//r"}) {
    EXPECT_FALSE(ParseResourceKey(bad, &env, &svc, &res)) << bad;
  }
  etcd::pb::KeyValue kv;
  kv.set_value("not json");
  ResourceHolder h;
  EXPECT_FALSE(ParseResourceHolder(kv, &h));
  EXPECT_EQ(h.node, "");  // held by nobody known: its calls wait
}

TEST_F(ClusterResourcesTest, OneHolderAndAPausedOwnerStopsBeforeEtcdDropsItsKey) {
  auto fake = std::make_shared<FakeClock>();
  // a's lease runs on a fake clock that the test moves; b's on real time.
  std::unique_ptr<Node> a = StartNode("a", fake, std::chrono::seconds(5));
  std::unique_ptr<Node> b = StartNode("b", RealClock(), std::chrono::seconds(2));

  ResourceClaim ra = a->Claim("user/1");
  ASSERT_TRUE(ra.status.ok()) << ra.status.message();
  ASSERT_TRUE(ra.owned);
  EXPECT_GT(ra.token, 0);
  ResourceLease lease("user/1", NewInstance());
  lease.SetClaim(ra.token, ra.session);
  EXPECT_TRUE(lease.Current());
  EXPECT_EQ(lease.fencing_token(), std::to_string(ra.token));

  // b finds a holding it, by the transaction and through its watch.
  ResourceClaim rb = b->Claim("user/1");
  ASSERT_TRUE(rb.status.ok()) << rb.status.message();
  EXPECT_FALSE(rb.owned);
  EXPECT_EQ(rb.holder.node, "a");
  EXPECT_EQ(rb.holder.token, ra.token);
  ASSERT_TRUE(WaitFor([&] { return b->Holder("user/1") == "a"; }));
  EXPECT_GT(b->wakes.load(), 0);

  // a is paused past its TTL (its clock jumps): it stops serving at once,
  // by its own clock, while etcd still has its key.
  fake->Advance(std::chrono::seconds(5));
  EXPECT_FALSE(lease.Current());
  etcd::pb::RangeRequest req;
  req.set_key("/lever/res/dev.lever/svc/user/1");
  etcd::pb::RangeResponse resp;
  ASSERT_TRUE(dynamic_cast<EtcdRegistry*>(b->registry.get())->client()->Range(req, &resp).ok());
  EXPECT_EQ(resp.kvs_size(), 1) << "etcd dropped the key before the owner stopped";
  // A claim of a's fails while it has no live session (nothing to take it under).
  ResourceClaim again = a->Claim("user/2");
  EXPECT_FALSE(again.status.ok());

  // b takes it only once etcd dropped a's lease, with a larger token.
  ResourceClaim taken;
  ASSERT_TRUE(WaitFor(
      [&] {
        taken = b->Claim("user/1");
        if (taken.status.ok() && !taken.owned) {
          EXPECT_EQ(taken.holder.token, ra.token);
        }
        return taken.status.ok() && taken.owned;
      },
      std::chrono::seconds(15)));
  EXPECT_GT(taken.token, ra.token);
  int64_t seen = 0;
  ASSERT_TRUE(WaitFor([&] { return a->Holder("user/1", &seen) == "b" && seen == taken.token; }));

  // Released, the key goes and the watch says nobody holds it.
  b->owners->Release("dev.lever", "svc", "user/1", taken.token, taken.session);
  ASSERT_TRUE(WaitFor([&] { return b->Holder("user/1").empty() && a->Holder("user/1").empty(); }));
  // A release of an older token deletes nothing of a newer holder's.
  ResourceClaim newer = b->Claim("user/1");
  ASSERT_TRUE(newer.owned);
  b->owners->Release("dev.lever", "svc", "user/1", taken.token, taken.session);
  ResourceClaim check = b->Claim("user/1");
  EXPECT_TRUE(check.owned);  // still ours: the same key, the same token
  EXPECT_EQ(check.token, newer.token);
}

TEST_F(ClusterResourcesTest, AServiceMadeLaterGetsItsHoldersFromTheMirror) {
  std::unique_ptr<Node> a = StartNode("a", RealClock(), std::chrono::seconds(3));
  ResourceClaim r = a->Claim("late");
  ASSERT_TRUE(r.owned);
  std::unique_ptr<Node> b = StartNode("b", RealClock(), std::chrono::seconds(3));
  ASSERT_TRUE(WaitFor([&] { return b->Holder("late") == "a"; }));
  // A service b's catalog did not have when the keys arrived.
  bool created = false;
  ServicePtr other = b->catalog->FindOrCreate({"dev.lever", "other", "", false, 1, 2}, &created);
  ResourceClaim o = a->Claim("x", "other");
  ASSERT_TRUE(o.owned);
  ASSERT_TRUE(WaitFor([&] {
    b->owners->Refresh("dev.lever", "other");
    std::lock_guard lock(other->mu);
    auto it = other->holders.find("x");
    return it != other->holders.end() && it->second.node == "a" && it->second.token == o.token;
  }));
}

}  // namespace
}  // namespace lever::host
