// An etcd v3 client on gRPC C++: unary KV, Txn and Lease calls with
// fail-over across the cluster's members, and the stub plumbing the
// long-lived streams (mirror.h's watch, session.h's keep-alive) build on.
// Design note: host/src/etcd/etcd.md.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "etcd_rpc.grpc.pb.h"
#include "lever/status.h"

namespace lever::host::etcd {

namespace pb = ::etcdserverpb;

struct ClientOptions {
  // "host:port" of each member, tried in this order first. Required.
  std::vector<std::string> endpoints;
  // Deadline of one attempt of a unary call on one member. Default 2 s.
  // A call tries each member at most once, so a whole call is bounded by
  // endpoints.size() * call_timeout (and a refused connection fails at once).
  std::chrono::milliseconds call_timeout{2000};
  // Largest message accepted from etcd (Range pages, watch batches).
  // Default 16 MiB; etcd's own request bound is 1.5 MiB per value.
  int max_receive_bytes = 16 << 20;
};

// Splits "h1:2379,h2:2379" into endpoints; INVALID_ARGUMENT on an empty list,
// an empty entry or an entry without a port.
Status ParseEndpoints(std::string_view list, std::vector<std::string>* out);

// Thread contract: every method may be called from any thread.
class Client {
 public:
  static Status Open(ClientOptions options, std::shared_ptr<Client>* out);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Each tries the preferred member, then the others, moving past a member
  // that answers UNAVAILABLE or does not answer within call_timeout (etcd
  // says UNAVAILABLE for "no leader" and "leader changed" too). Any other
  // error is etcd's answer and returned as is. A write whose reply was lost
  // may be retried on another member and applied twice: callers make writes
  // compare-and-swap so that a repeat is harmless.
  // Errors keep the gRPC code; when no member could be reached the code is
  // UNAVAILABLE and the message names the endpoints.
  Status Range(const pb::RangeRequest& req, pb::RangeResponse* resp);
  Status Put(const pb::PutRequest& req, pb::PutResponse* resp);
  Status DeleteRange(const pb::DeleteRangeRequest& req, pb::DeleteRangeResponse* resp);
  Status Txn(const pb::TxnRequest& req, pb::TxnResponse* resp);
  // Drops the history before `revision` (watches from earlier fail with
  // compact_revision). Operators normally let etcd do it
  // (--auto-compaction-retention); tests call it.
  Status Compact(int64_t revision);
  Status LeaseGrant(int64_t ttl_seconds, pb::LeaseGrantResponse* resp);
  Status LeaseRevoke(int64_t id);
  // One member's status (no fail-over): for health listings and tests.
  Status MemberStatus(size_t endpoint, pb::StatusResponse* resp);

  const std::vector<std::string>& endpoints() const { return options_.endpoints; }
  const ClientOptions& options() const { return options_; }

  // Streams: the member to open the next stream on (the preferred one,
  // unless its last connection attempt failed and another's did not), a
  // bounded wait for its connection, and the stubs. MarkFailed(i) makes the
  // next member preferred if i still is.
  size_t preferred() const { return preferred_.load(std::memory_order_relaxed); }
  size_t PickForStream() const;
  bool WaitConnected(size_t endpoint, std::chrono::milliseconds timeout);
  void MarkFailed(size_t endpoint);
  pb::Watch::Stub& WatchStub(size_t endpoint) { return *members_[endpoint].watch; }
  pb::Lease::Stub& LeaseStub(size_t endpoint) { return *members_[endpoint].lease; }

  // "etcd is unreachable at h1:2379, h2:2379 (<detail>)".
  std::string UnreachableMessage(std::string_view detail) const;

 private:
  explicit Client(ClientOptions options);
  template <class Fn>
  Status Call(std::string_view what, Fn&& attempt);
  // Every member once: the preferred first, those that failed to connect last.
  std::vector<size_t> AttemptOrder() const;

  struct Member {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Watch::Stub> watch;
    std::unique_ptr<pb::Lease::Stub> lease;
    std::unique_ptr<pb::Maintenance::Stub> maintenance;
  };

  const ClientOptions options_;
  std::vector<Member> members_;
  std::atomic<size_t> preferred_{0};
};

// Key helpers. PrefixEnd("a/") == "a0": the range_end of every key under a
// prefix (etcd's clientv3.GetPrefixRangeEnd).
std::string PrefixEnd(std::string_view prefix);

// Txn building blocks.
pb::Compare CompareCreateRevision(std::string_view key, pb::Compare::CompareResult result, int64_t revision);
pb::Compare CompareModRevision(std::string_view key, pb::Compare::CompareResult result, int64_t revision);
pb::RequestOp OpPut(std::string_view key, std::string_view value, int64_t lease = 0);
pb::RequestOp OpGet(std::string_view key);
pb::RequestOp OpDelete(std::string_view key);
pb::RequestOp OpDeletePrefix(std::string_view prefix);

}  // namespace lever::host::etcd
