#include "session.h"

namespace lever::host::etcd {

Session::Session(std::shared_ptr<Client> client, SessionOptions options, int64_t lease, LeaseTimer timer)
    : client_(std::move(client)), options_(std::move(options)), lease_(lease), timer_(timer) {}

Status Session::Start(std::shared_ptr<Client> client, SessionOptions options, std::unique_ptr<Session>* out) {
  if (options.ttl.count() <= 0) return InvalidArgument("etcd session: the lease TTL must be at least 1 s");
  if (!options.clock) return InvalidArgument("etcd session: no clock");
  SteadyTime sent = options.clock->Now();
  pb::LeaseGrantResponse grant;
  Status s = client->LeaseGrant(options.ttl.count(), &grant);
  if (!s.ok()) return s;
  LeaseTimer timer(std::chrono::seconds(grant.ttl()), sent);
  std::unique_ptr<Session> session(new Session(std::move(client), std::move(options), grant.id(), timer));
  session->thread_ = std::thread([raw = session.get()] { raw->Run(); });
  *out = std::move(session);
  return Status::Ok();
}

Session::~Session() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (stream_ctx_) stream_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  bool revoke;
  {
    std::lock_guard lock(mu_);
    revoke = !lost_ && !revoked_ && !abandoned_;
  }
  if (revoke) (void)client_->LeaseRevoke(lease_);
}

std::chrono::seconds Session::ttl() const {
  std::lock_guard lock(mu_);
  return timer_.ttl();
}

bool Session::Alive() const {
  SteadyTime now = options_.clock->Now();
  std::lock_guard lock(mu_);
  return !lost_ && !revoked_ && timer_.Alive(now);
}

SteadyTime Session::valid_until() const {
  std::lock_guard lock(mu_);
  return timer_.valid_until();
}

void Session::Run() {
  for (;;) {
    // Before each stream: is the lease still ours, and how long may we
    // wait for a member?
    const size_t ep = client_->PickForStream();
    std::chrono::milliseconds wait = client_->options().call_timeout;
    bool lost = false;
    {
      std::lock_guard lock(mu_);
      if (stopping_ || revoked_) return;
      SteadyTime now = options_.clock->Now();
      lost_ = lost_ || !timer_.Alive(now);
      lost = lost_;
      if (!lost) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(timer_.valid_until() - now);
        wait = std::min(wait, left + std::chrono::milliseconds(1));
      }
    }
    if (lost) break;
    if (!client_->WaitConnected(ep, wait)) {
      client_->MarkFailed(ep);
      continue;
    }
    grpc::ClientContext ctx;
    ctx.AddMetadata("hasleader", "true");
    {
      std::lock_guard lock(mu_);
      if (stopping_ || revoked_) return;
      stream_ctx_ = &ctx;
    }
    auto stream = client_->LeaseStub(ep).LeaseKeepAlive(&ctx);
    bool reader_done = false;
    std::thread reader([&] {
      pb::LeaseKeepAliveResponse resp;
      while (stream->Read(&resp)) {
        std::lock_guard lock(mu_);
        timer_.KeepAliveAnswered(resp.ttl());
        cv_.notify_all();
      }
      std::lock_guard lock(mu_);
      reader_done = true;
      cv_.notify_all();
    });
    {
      std::unique_lock lock(mu_);
      pb::LeaseKeepAliveRequest req;
      req.set_id(lease_);
      for (;;) {
        SteadyTime now = options_.clock->Now();
        if (stopping_ || revoked_) break;
        if (!timer_.Alive(now)) {
          lost_ = true;
          break;
        }
        if (reader_done || timer_.Stalled(now)) break;
        if (now >= timer_.NextKeepAlive()) {
          timer_.KeepAliveSent(now);
          lock.unlock();
          bool ok = stream->Write(req);
          lock.lock();
          if (!ok) break;
          continue;
        }
        // Real time stands in for the injected clock's between decisions.
        cv_.wait_for(lock, timer_.NextDecision() - now);
      }
    }
    ctx.TryCancel();
    reader.join();
    stream->Finish();
    {
      std::lock_guard lock(mu_);
      stream_ctx_ = nullptr;
      timer_.StreamReset();
      lost_ = lost_ || timer_.gone();
      lost = lost_;
      if (stopping_ || revoked_) return;
    }
    if (lost) break;
    client_->MarkFailed(ep);
  }
  if (options_.on_lost) options_.on_lost();
}

Status Session::CheckAlive(std::string_view what) const {
  if (Alive()) return Status::Ok();
  return Status(Code::kFailedPrecondition, "etcd " + std::string(what) + ": lease " + std::to_string(lease_) +
                                               " has expired (this node lost its session)");
}

Status Session::Put(const std::string& key, const std::string& value) {
  Status s = CheckAlive("put");
  if (!s.ok()) return s;
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease_);
  pb::PutResponse resp;
  return client_->Put(req, &resp);
}

Status Session::Delete(const std::string& key) {
  pb::DeleteRangeRequest req;
  req.set_key(key);
  pb::DeleteRangeResponse resp;
  return client_->DeleteRange(req, &resp);
}

Status Session::Acquire(const std::string& key, const std::string& value, Ownership* out) {
  Status s = CheckAlive("acquire");
  if (!s.ok()) return s;
  pb::TxnRequest txn;
  *txn.add_compare() = CompareCreateRevision(key, pb::Compare::EQUAL, 0);
  *txn.add_success() = OpPut(key, value, lease_);
  *txn.add_success() = OpGet(key);
  *txn.add_failure() = OpGet(key);
  pb::TxnResponse resp;
  s = client_->Txn(txn, &resp);
  if (!s.ok()) return s;
  if (resp.responses_size() == 0) return Status(Code::kInternal, "etcd acquire: empty transaction reply");
  const pb::ResponseOp& last = resp.responses(resp.responses_size() - 1);
  if (!last.has_response_range() || last.response_range().kvs_size() != 1) {
    return Status(Code::kInternal, "etcd acquire: " + key + " vanished inside its transaction");
  }
  const pb::KeyValue& kv = last.response_range().kvs(0);
  out->owned = kv.lease() == lease_;
  out->value = kv.value();
  out->revision = kv.create_revision();
  out->lease = kv.lease();
  return Status::Ok();
}

Status Session::Release(const std::string& key, int64_t revision) {
  pb::TxnRequest txn;
  *txn.add_compare() = CompareCreateRevision(key, pb::Compare::EQUAL, revision);
  *txn.add_success() = OpDelete(key);
  pb::TxnResponse resp;
  return client_->Txn(txn, &resp);
}

void Session::AbandonForTest() {
  {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    stopping_ = true;
    if (stream_ctx_) stream_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Session::Revoke() {
  {
    std::lock_guard lock(mu_);
    if (revoked_) return Status::Ok();
    revoked_ = true;
    if (stream_ctx_) stream_ctx_->TryCancel();
  }
  cv_.notify_all();
  return client_->LeaseRevoke(lease_);
}

}  // namespace lever::host::etcd
