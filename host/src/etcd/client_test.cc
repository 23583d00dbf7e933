// The etcd client against a real 3-member etcd cluster.
#include "client.h"

#include <gtest/gtest.h>

#include "test_cluster.h"

namespace lever::host::etcd {
namespace {

using testing::Cluster;
using testing::Connect;

std::unique_ptr<Cluster> StartCluster() {
  std::unique_ptr<Cluster> cluster;
  Status s = Cluster::Start({}, &cluster);
  EXPECT_TRUE(s.ok()) << s.message();
  return cluster;
}

TEST(EtcdEndpoints, Parse) {
  std::vector<std::string> eps;
  ASSERT_TRUE(ParseEndpoints("h1:2379,h2:2379,10.0.0.3:1", &eps).ok());
  EXPECT_EQ(eps, (std::vector<std::string>{"h1:2379", "h2:2379", "10.0.0.3:1"}));
  for (const char* bad : {"", "h1", "h1:", ":2379", "h1:2379,", "h1:2379,,h2:1", "h1:23a9"}) {
    EXPECT_EQ(ParseEndpoints(bad, &eps).code(), Code::kInvalidArgument) << bad;
  }
}

TEST(EtcdKeys, PrefixEnd) {
  EXPECT_EQ(PrefixEnd("/lever/"), "/lever0");
  EXPECT_EQ(PrefixEnd("a"), "b");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST(EtcdClient, KvAndTransactionsOnARealCluster) {
  auto cluster = StartCluster();
  ASSERT_TRUE(cluster);
  auto c = Connect(cluster->Endpoints());

  pb::PutRequest put;
  put.set_key("/t/a");
  put.set_value("1");
  pb::PutResponse put_resp;
  ASSERT_TRUE(c->Put(put, &put_resp).ok());
  const int64_t rev = put_resp.header().revision();
  EXPECT_GT(rev, 0);

  pb::RangeRequest get;
  get.set_key("/t/a");
  pb::RangeResponse got;
  ASSERT_TRUE(c->Range(get, &got).ok());
  ASSERT_EQ(got.kvs_size(), 1);
  EXPECT_EQ(got.kvs(0).value(), "1");
  EXPECT_EQ(got.kvs(0).create_revision(), rev);

  // Create-if-absent: only the first of two wins.
  for (int i = 0; i < 2; ++i) {
    pb::TxnRequest txn;
    *txn.add_compare() = CompareCreateRevision("/t/b", pb::Compare::EQUAL, 0);
    *txn.add_success() = OpPut("/t/b", "first");
    *txn.add_failure() = OpGet("/t/b");
    pb::TxnResponse resp;
    ASSERT_TRUE(c->Txn(txn, &resp).ok());
    EXPECT_EQ(resp.succeeded(), i == 0);
    if (i == 1) {
      ASSERT_EQ(resp.responses_size(), 1);
      EXPECT_EQ(resp.responses(0).response_range().kvs(0).value(), "first");
    }
  }

  // Prefix range and delete.
  pb::RangeRequest all;
  all.set_key("/t/");
  all.set_range_end(PrefixEnd("/t/"));
  ASSERT_TRUE(c->Range(all, &got).ok());
  EXPECT_EQ(got.kvs_size(), 2);
  pb::TxnRequest del;
  *del.add_success() = OpDeletePrefix("/t/");
  pb::TxnResponse del_resp;
  ASSERT_TRUE(c->Txn(del, &del_resp).ok());
  EXPECT_EQ(del_resp.responses(0).response_delete_range().deleted(), 2);
  ASSERT_TRUE(c->Range(all, &got).ok());
  EXPECT_EQ(got.kvs_size(), 0);

  // etcd's own errors come back as they are, not as "unreachable".
  pb::PutRequest bad;
  bad.set_key("/t/c");
  bad.set_lease(12345);  // no such lease
  Status s = c->Put(bad, &put_resp);
  EXPECT_EQ(s.code(), Code::kNotFound) << s.message();
  EXPECT_NE(s.message().find("lease not found"), std::string::npos) << s.message();

  // Leases: granted with the TTL asked for, and revoked.
  pb::LeaseGrantResponse grant;
  ASSERT_TRUE(c->LeaseGrant(5, &grant).ok());
  EXPECT_NE(grant.id(), 0);
  EXPECT_EQ(grant.ttl(), 5);
  ASSERT_TRUE(c->LeaseRevoke(grant.id()).ok());
  EXPECT_EQ(c->LeaseRevoke(grant.id()).code(), Code::kNotFound);

  pb::StatusResponse st;
  ASSERT_TRUE(c->MemberStatus(1, &st).ok());
  EXPECT_EQ(st.version(), "3.4.23");
  EXPECT_NE(st.leader(), 0u);
}

TEST(EtcdClient, CallsMovePastAKilledMember) {
  auto cluster = StartCluster();
  ASSERT_TRUE(cluster);
  auto c = Connect(cluster->Endpoints());
  pb::PutRequest put;
  put.set_key("/k");
  put.set_value("v");
  pb::PutResponse resp;
  ASSERT_TRUE(c->Put(put, &resp).ok());
  const size_t first = c->preferred();
  cluster->Kill(static_cast<int>(first));
  // Two of three still form a quorum: reads and writes go on.
  for (int i = 0; i < 5; ++i) {
    Status s = c->Put(put, &resp);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  EXPECT_NE(c->preferred(), first);
}

TEST(EtcdClient, NoQuorumOrNoEtcdIsUnavailableNamingTheEndpoints) {
  auto cluster = StartCluster();
  ASSERT_TRUE(cluster);
  auto c = Connect(cluster->Endpoints());
  cluster->Kill(0);
  cluster->Kill(1);
  pb::PutRequest put;
  put.set_key("/k");
  pb::PutResponse resp;
  // One member of three has no quorum: it cannot serve a write.
  Status s = c->Put(put, &resp);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.message();
  cluster->Kill(2);
  s = c->Put(put, &resp);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.message();
  EXPECT_NE(s.message().find("etcd is unreachable at " + cluster->Endpoint(0)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(cluster->Endpoint(2)), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lever::host::etcd
