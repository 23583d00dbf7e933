#include "mirror.h"

#include <algorithm>

namespace lever::host::etcd {
namespace {

bool HasPrefix(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// The watch's reconnect backoff: 100 ms doubling to 1 s.
constexpr std::chrono::milliseconds kMinBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{1000};

}  // namespace

Mirror::Mirror(std::shared_ptr<Client> client, MirrorOptions options)
    : client_(std::move(client)), options_(std::move(options)) {}

Status Mirror::Start(std::shared_ptr<Client> client, MirrorOptions options, std::unique_ptr<Mirror>* out) {
  if (options.prefix.empty()) return InvalidArgument("etcd mirror: empty prefix");
  if (options.page_keys <= 0) return InvalidArgument("etcd mirror: page_keys must be positive");
  std::unique_ptr<Mirror> m(new Mirror(std::move(client), std::move(options)));
  Status s = m->Load(/*reload=*/false);
  if (!s.ok()) return s;
  m->thread_ = std::thread([raw = m.get()] { raw->Run(); });
  *out = std::move(m);
  return Status::Ok();
}

Mirror::~Mirror() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (stream_ctx_) stream_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Mirror::Load(bool reload) {
  std::map<std::string, pb::KeyValue> fresh;
  int64_t at = 0;
  pb::RangeRequest req;
  req.set_key(options_.prefix);
  req.set_range_end(PrefixEnd(options_.prefix));
  req.set_limit(options_.page_keys);
  for (;;) {
    pb::RangeResponse resp;
    Status s = client_->Range(req, &resp);
    if (!s.ok()) return s;
    if (at == 0) at = resp.header().revision();
    if (!resp.more() || resp.kvs_size() == 0) req.clear_key();
    else req.set_key(resp.kvs(resp.kvs_size() - 1).key() + '\0');  // the next page starts after the last key
    for (pb::KeyValue& kv : *resp.mutable_kvs()) {
      std::string key = kv.key();
      fresh.emplace(std::move(key), std::move(kv));
    }
    if (req.key().empty()) break;
    // The next page, at the same revision: one consistent snapshot.
    req.set_revision(at);
  }
  // What changed against what we had (nothing on the first load).
  std::lock_guard deliver(deliver_mu_);
  std::vector<Change> batch;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, kv] : kvs_) {
      if (!fresh.count(key)) {
        Change c;
        c.kv.set_key(key);
        c.kv.set_mod_revision(at);
        c.deleted = true;
        batch.push_back(std::move(c));
      }
    }
    for (const auto& [key, kv] : fresh) {
      auto it = kvs_.find(key);
      if (it == kvs_.end() || it->second.mod_revision() != kv.mod_revision()) batch.push_back({kv, false});
    }
    kvs_ = std::move(fresh);
    revision_ = std::max(revision_, at);
    if (reload) ++reloads_;
  }
  cv_.notify_all();
  if (!batch.empty()) Deliver(batch);
  return Status::Ok();
}

void Mirror::Run() {
  std::chrono::milliseconds backoff = kMinBackoff;
  bool need_reload = false;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    if (need_reload) {
      Status s = Load(/*reload=*/true);
      if (s.ok()) need_reload = false;
    }
    const size_t ep = client_->PickForStream();
    bool created = false;
    if (!need_reload && client_->WaitConnected(ep, client_->options().call_timeout)) {
      grpc::ClientContext ctx;
      // A member cut off from the leader cancels the watch instead of
      // serving a stale view (clientv3's WithRequireLeader).
      ctx.AddMetadata("hasleader", "true");
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        stream_ctx_ = &ctx;
      }
      auto stream = client_->WatchStub(ep).Watch(&ctx);
      pb::WatchRequest req;
      pb::WatchCreateRequest* create = req.mutable_create_request();
      create->set_key(options_.prefix);
      create->set_range_end(PrefixEnd(options_.prefix));
      create->set_start_revision(revision() + 1);
      create->set_progress_notify(true);
      if (stream->Write(req)) {
        pb::WatchResponse resp;
        while (stream->Read(&resp)) {
          if (resp.compact_revision() > 0) {
            need_reload = true;  // history we need is gone: read everything again
            break;
          }
          if (resp.canceled()) break;
          if (resp.created()) {
            created = true;
            backoff = kMinBackoff;
            std::lock_guard lock(mu_);
            connected_ = true;
            cv_.notify_all();
          }
          // Progress: the events' revision, or a progress notification's
          // header (every later event is newer). A created reply's header
          // is not progress: the events since start_revision follow it.
          std::vector<Change> batch;
          int64_t rev = resp.created() ? 0 : resp.header().revision();
          if (resp.events_size() > 0) {
            rev = 0;
            for (pb::Event& ev : *resp.mutable_events()) {
              rev = std::max(rev, ev.kv().mod_revision());
              batch.push_back({std::move(*ev.mutable_kv()), ev.type() == pb::Event::DELETE});
            }
          }
          Apply(std::move(batch), rev);
        }
        ctx.TryCancel();
      }
      stream->Finish();
      std::lock_guard lock(mu_);
      stream_ctx_ = nullptr;
      connected_ = false;
      if (stopping_) return;
    }
    if (!created) client_->MarkFailed(ep);
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, backoff, [&] { return stopping_; });
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

void Mirror::Apply(std::vector<Change> batch, int64_t revision) {
  // Held across the update and the delivery, so that Subscribe sees each
  // change either in its initial list or as a delivery, never both or neither.
  std::lock_guard deliver(deliver_mu_);
  {
    std::lock_guard lock(mu_);
    for (const Change& c : batch) {
      if (c.deleted) {
        kvs_.erase(c.kv.key());
      } else {
        kvs_[c.kv.key()] = c.kv;
      }
    }
    revision_ = std::max(revision_, revision);
  }
  cv_.notify_all();
  if (!batch.empty()) Deliver(batch);
}

void Mirror::Deliver(const std::vector<Change>& batch) {
  for (const Sub& sub : subs_) {
    std::vector<Change> mine;
    for (const Change& c : batch) {
      if (HasPrefix(c.kv.key(), sub.prefix)) mine.push_back(c);
    }
    if (!mine.empty()) sub.fn(mine);
  }
}

bool Mirror::Get(const std::string& key, pb::KeyValue* out) const {
  std::lock_guard lock(mu_);
  auto it = kvs_.find(key);
  if (it == kvs_.end()) return false;
  *out = it->second;
  return true;
}

std::vector<pb::KeyValue> Mirror::List(const std::string& prefix) const {
  std::vector<pb::KeyValue> out;
  std::lock_guard lock(mu_);
  for (auto it = kvs_.lower_bound(prefix); it != kvs_.end() && HasPrefix(it->first, prefix); ++it) {
    out.push_back(it->second);
  }
  return out;
}

int64_t Mirror::revision() const {
  std::lock_guard lock(mu_);
  return revision_;
}

bool Mirror::connected() const {
  std::lock_guard lock(mu_);
  return connected_;
}

int64_t Mirror::reloads() const {
  std::lock_guard lock(mu_);
  return reloads_;
}

uint64_t Mirror::Subscribe(std::string prefix, Listener fn) {
  std::lock_guard deliver(deliver_mu_);
  std::vector<Change> initial;
  for (pb::KeyValue& kv : List(prefix)) initial.push_back({std::move(kv), false});
  if (!initial.empty()) fn(initial);
  uint64_t id = next_sub_++;
  subs_.push_back({id, std::move(prefix), std::move(fn)});
  return id;
}

void Mirror::Unsubscribe(uint64_t id) {
  std::lock_guard deliver(deliver_mu_);
  subs_.erase(std::remove_if(subs_.begin(), subs_.end(), [&](const Sub& s) { return s.id == id; }), subs_.end());
}

bool Mirror::WaitForRevisionForTest(int64_t rev, std::chrono::milliseconds timeout) const {
  {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return revision_ >= rev; })) return false;
  }
  // The batch that reached `rev` is delivered under deliver_mu_, which its
  // Apply (or Load) held before it raised revision_: once we get it, the
  // listeners have seen that batch.
  std::lock_guard delivered(deliver_mu_);
  return true;
}

}  // namespace lever::host::etcd
