#include "client.h"

#include <grpc/grpc.h>

#include <algorithm>

namespace lever::host::etcd {
namespace {

Status FromGrpc(std::string_view what, const grpc::Status& s) {
  return Status(static_cast<Code>(s.error_code()), "etcd " + std::string(what) + ": " + s.error_message());
}

// Answers that mean "this member cannot serve now; another may". A member
// without quorum holds a write until the deadline we sent it; when its own
// timer fires before ours, etcd answers with the bare Go error as UNKNOWN
// "context deadline exceeded" rather than DEADLINE_EXCEEDED.
bool TryAnotherMember(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         (s.error_code() == grpc::StatusCode::UNKNOWN && s.error_message() == "context deadline exceeded");
}

}  // namespace

Status ParseEndpoints(std::string_view list, std::vector<std::string>* out) {
  out->clear();
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view ep = list.substr(start, comma - start);
    size_t colon = ep.rfind(':');
    if (ep.empty() || colon == std::string_view::npos || colon == 0 || colon + 1 == ep.size()) {
      return InvalidArgument("etcd endpoint \"" + std::string(ep) + "\" is not host:port");
    }
    for (char c : ep.substr(colon + 1)) {
      if (c < '0' || c > '9') return InvalidArgument("etcd endpoint \"" + std::string(ep) + "\" has a bad port");
    }
    out->emplace_back(ep);
    start = comma + 1;
  }
  if (out->empty()) return InvalidArgument("no etcd endpoints");
  return Status::Ok();
}

Client::Client(ClientOptions options) : options_(std::move(options)) {}
Client::~Client() = default;

Status Client::Open(ClientOptions options, std::shared_ptr<Client>* out) {
  if (options.endpoints.empty()) return InvalidArgument("no etcd endpoints");
  std::shared_ptr<Client> c(new Client(std::move(options)));
  for (const std::string& ep : c->options_.endpoints) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(c->options_.max_receive_bytes);
    // A member that comes back is used again within a second, not after
    // gRPC's default backoff of up to two minutes. (Not the "min" backoff:
    // gRPC uses it as the connect timeout too, and a member that is up but
    // not yet serving holds the handshake for longer than that.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Pings find a member that stopped answering while a stream is open.
    // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    // A failed connection asks for a new DNS answer; gRPC's default spacing
    // of those (30 s) would keep a member that came back unused that long.
    args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 500);
    // One channel per member, never shared with another Client: a test
    // that kills a member must not see a neighbour's cached connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    Member m;
    m.channel = grpc::CreateCustomChannel("dns:///" + ep, grpc::InsecureChannelCredentials(), args);
    m.kv = pb::KV::NewStub(m.channel);
    m.watch = pb::Watch::NewStub(m.channel);
    m.lease = pb::Lease::NewStub(m.channel);
    m.maintenance = pb::Maintenance::NewStub(m.channel);
    c->members_.push_back(std::move(m));
  }
  *out = std::move(c);
  return Status::Ok();
}

void Client::MarkFailed(size_t endpoint) {
  size_t expected = endpoint;
  preferred_.compare_exchange_strong(expected, (endpoint + 1) % members_.size());
}

std::string Client::UnreachableMessage(std::string_view detail) const {
  std::string eps;
  for (const std::string& ep : options_.endpoints) {
    if (!eps.empty()) eps += ", ";
    eps += ep;
  }
  return "etcd is unreachable at " + eps + " (" + std::string(detail) + ")";
}

std::vector<size_t> Client::AttemptOrder() const {
  const size_t n = members_.size();
  const size_t start = preferred();
  std::vector<size_t> order;
  for (size_t k = 0; k < n; ++k) order.push_back((start + k) % n);
  // Members whose last connection attempt failed go last.
  std::stable_partition(order.begin(), order.end(), [&](size_t i) {
    return members_[i].channel->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_TRANSIENT_FAILURE;
  });
  return order;
}

size_t Client::PickForStream() const { return AttemptOrder().front(); }

bool Client::WaitConnected(size_t endpoint, std::chrono::milliseconds timeout) {
  return members_[endpoint].channel->WaitForConnected(std::chrono::system_clock::now() + timeout);
}

template <class Fn>
Status Client::Call(std::string_view what, Fn&& attempt) {
  grpc::Status last;
  bool first = true;
  for (size_t i : AttemptOrder()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
    // Wait (within the deadline) for a connection rather than fail at
    // once: without it, gRPC answers from a channel whose last attempt
    // failed for as long as its reconnect backoff lasts (seconds), even
    // after the member is back.
    ctx.set_wait_for_ready(true);
    grpc::Status s = attempt(members_[i], &ctx);
    if (s.ok()) {
      if (!first) preferred_.store(i, std::memory_order_relaxed);
      return Status::Ok();
    }
    if (!TryAnotherMember(s)) return FromGrpc(what, s);
    last = s;
    first = false;
  }
  return Status(Code::kUnavailable,
                UnreachableMessage(std::string(what) + ": " + last.error_message()));
}

Status Client::Range(const pb::RangeRequest& req, pb::RangeResponse* resp) {
  return Call("range", [&](Member& m, grpc::ClientContext* ctx) { return m.kv->Range(ctx, req, resp); });
}

Status Client::Put(const pb::PutRequest& req, pb::PutResponse* resp) {
  return Call("put", [&](Member& m, grpc::ClientContext* ctx) { return m.kv->Put(ctx, req, resp); });
}

Status Client::DeleteRange(const pb::DeleteRangeRequest& req, pb::DeleteRangeResponse* resp) {
  return Call("delete", [&](Member& m, grpc::ClientContext* ctx) { return m.kv->DeleteRange(ctx, req, resp); });
}

Status Client::Txn(const pb::TxnRequest& req, pb::TxnResponse* resp) {
  return Call("txn", [&](Member& m, grpc::ClientContext* ctx) { return m.kv->Txn(ctx, req, resp); });
}

Status Client::Compact(int64_t revision) {
  pb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(true);
  pb::CompactionResponse resp;
  return Call("compact", [&](Member& m, grpc::ClientContext* ctx) { return m.kv->Compact(ctx, req, &resp); });
}

Status Client::LeaseGrant(int64_t ttl_seconds, pb::LeaseGrantResponse* resp) {
  pb::LeaseGrantRequest req;
  req.set_ttl(ttl_seconds);
  Status s = Call("lease grant",
                  [&](Member& m, grpc::ClientContext* ctx) { return m.lease->LeaseGrant(ctx, req, resp); });
  if (s.ok() && !resp->error().empty()) return Status(Code::kInternal, "etcd lease grant: " + resp->error());
  return s;
}

Status Client::LeaseRevoke(int64_t id) {
  pb::LeaseRevokeRequest req;
  req.set_id(id);
  pb::LeaseRevokeResponse resp;
  return Call("lease revoke",
              [&](Member& m, grpc::ClientContext* ctx) { return m.lease->LeaseRevoke(ctx, req, &resp); });
}

Status Client::MemberStatus(size_t endpoint, pb::StatusResponse* resp) {
  if (endpoint >= members_.size()) return InvalidArgument("no such etcd endpoint");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
  ctx.set_wait_for_ready(true);
  grpc::Status s = members_[endpoint].maintenance->Status(&ctx, pb::StatusRequest(), resp);
  return s.ok() ? Status::Ok() : FromGrpc("status of " + options_.endpoints[endpoint], s);
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  for (size_t i = end.size(); i-- > 0;) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(static_cast<unsigned char>(end[i]) + 1);
      end.resize(i + 1);
      return end;
    }
  }
  return std::string(1, '\0');  // every key
}

pb::Compare CompareCreateRevision(std::string_view key, pb::Compare::CompareResult result, int64_t revision) {
  pb::Compare c;
  c.set_key(std::string(key));
  c.set_target(pb::Compare::CREATE);
  c.set_result(result);
  c.set_create_revision(revision);
  return c;
}

pb::Compare CompareModRevision(std::string_view key, pb::Compare::CompareResult result, int64_t revision) {
  pb::Compare c;
  c.set_key(std::string(key));
  c.set_target(pb::Compare::MOD);
  c.set_result(result);
  c.set_mod_revision(revision);
  return c;
}

pb::RequestOp OpPut(std::string_view key, std::string_view value, int64_t lease) {
  pb::RequestOp op;
  pb::PutRequest* put = op.mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  put->set_lease(lease);
  return op;
}

pb::RequestOp OpGet(std::string_view key) {
  pb::RequestOp op;
  op.mutable_request_range()->set_key(std::string(key));
  return op;
}

pb::RequestOp OpDelete(std::string_view key) {
  pb::RequestOp op;
  op.mutable_request_delete_range()->set_key(std::string(key));
  return op;
}

pb::RequestOp OpDeletePrefix(std::string_view prefix) {
  pb::RequestOp op;
  pb::DeleteRangeRequest* del = op.mutable_request_delete_range();
  del->set_key(std::string(prefix));
  del->set_range_end(PrefixEnd(prefix));
  return op;
}

}  // namespace lever::host::etcd
