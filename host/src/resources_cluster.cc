#include "resources_cluster.h"

#include <map>
#include <nlohmann/json.hpp>
#include <optional>

namespace lever::host {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
constexpr milliseconds kRetry{100};

}  // namespace

bool ParseResourceKey(std::string_view rest, std::string* env, std::string* service, std::string* resource) {
  size_t a = rest.find('/');
  size_t b = a == std::string_view::npos ? a : rest.find('/', a + 1);
  if (a == 0 || b == std::string_view::npos || b == a + 1 || b + 1 >= rest.size()) return false;
  *env = rest.substr(0, a);
  *service = rest.substr(a + 1, b - a - 1);
  *resource = rest.substr(b + 1);
  return true;
}

bool ParseResourceHolder(const etcd::pb::KeyValue& kv, ResourceHolder* out) {
  out->token = kv.create_revision();
  out->lease = kv.lease();
  out->mod_revision = kv.mod_revision();
  out->backend.reset();
  Json v = Json::parse(kv.value(), nullptr, /*allow_exceptions=*/false);
  out->node = v.is_object() && v.contains("node") && v["node"].is_string() ? v["node"].get<std::string>() : "";
  return !out->node.empty();
}

ClusterResources::ClusterResources(Deps deps) : deps_(std::move(deps)), prefix_(deps_.registry->root() + "res/") {}

ClusterResources::~ClusterResources() {
  if (sub_) deps_.registry->mirror().Unsubscribe(sub_);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ClusterResources::Start() {
  sub_ = deps_.registry->mirror().Subscribe(prefix_, [this](const std::vector<etcd::Change>& c) { OnChanges(c); });
  thread_ = std::thread([this] { Run(); });
}

std::string ClusterResources::Key(std::string_view env, std::string_view service, std::string_view resource) const {
  std::string key = prefix_;
  key.append(env).append("/").append(service).append("/").append(resource);
  return key;
}

// --- what the mirror says -------------------------------------------------------

void ClusterResources::OnChanges(const std::vector<etcd::Change>& changes) {
  // "env/service" -> resource -> its holder now (none: the key went).
  std::map<std::pair<std::string, std::string>, std::map<std::string, std::optional<ResourceHolder>>> by_service;
  for (const etcd::Change& c : changes) {
    std::string env, service, resource;
    if (!ParseResourceKey(std::string_view(c.kv.key()).substr(prefix_.size()), &env, &service, &resource)) continue;
    std::optional<ResourceHolder>& slot = by_service[{env, service}][resource];
    if (c.deleted) {
      slot.reset();
    } else {
      // A value we cannot read still holds the key: its calls wait (an
      // empty node is no node) until the key goes.
      ResourceHolder h;
      (void)ParseResourceHolder(c.kv, &h);
      slot = std::move(h);
    }
  }
  for (auto& [svc_key, resources] : by_service) {
    ServicePtr svc = deps_.catalog->Find(svc_key.first, svc_key.second);
    if (!svc) continue;  // Refresh() fills it in when the catalog makes it
    std::lock_guard lock(svc->mu);
    for (auto& [resource, holder] : resources) {
      if (holder) {
        svc->holders[resource] = std::move(*holder);
      } else {
        auto it = svc->holders.find(resource);
        if (it != svc->holders.end()) svc->holders.erase(it);
      }
    }
  }
  if (!by_service.empty()) deps_.wake();
}

void ClusterResources::Refresh(const std::string& env, const std::string& service) {
  ServicePtr svc = deps_.catalog->Find(env, service);
  if (!svc) return;
  const std::string prefix = Key(env, service, "");
  std::vector<etcd::pb::KeyValue> kvs = deps_.registry->mirror().List(prefix);
  std::lock_guard lock(svc->mu);
  svc->holders.clear();
  for (const etcd::pb::KeyValue& kv : kvs) {
    ResourceHolder h;
    (void)ParseResourceHolder(kv, &h);
    svc->holders[kv.key().substr(prefix.size())] = std::move(h);
  }
}

bool ClusterResources::NewerThanMirror(int64_t mod_revision) const {
  return deps_.registry->mirror().revision() < mod_revision;
}

std::shared_ptr<RemoteBackend> ClusterResources::HolderBackend(ResourceHolder& h) {
  if (h.node.empty() || h.node == deps_.node_name) return nullptr;
  if (h.backend && !h.backend->peer().gone.load(std::memory_order_acquire)) return h.backend;
  std::shared_ptr<Peer> peer = deps_.peer(h.node);
  if (!peer) {
    h.backend.reset();
    return nullptr;
  }
  h.backend = std::make_shared<RemoteBackend>(std::move(peer), deps_.count_at_placement, deps_.suspect_for);
  return h.backend;
}

// --- claims and releases ----------------------------------------------------------

void ClusterResources::Claim(const std::string& env, const std::string& service, const std::string& resource,
                             const std::string& instance_id, std::function<void(ResourceClaim)> done) {
  Job job;
  job.key = Key(env, service, resource);
  job.value = Json{{"node", deps_.node_name}, {"instance", instance_id}}.dump();
  job.done = std::move(done);
  job.not_before = std::chrono::steady_clock::now();
  job.give_up = job.not_before + deps_.claim_wait;
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void ClusterResources::Release(const std::string& env, const std::string& service, const std::string& resource,
                               int64_t token, std::shared_ptr<const etcd::Session> session) {
  Job job;
  job.claim = false;
  job.key = Key(env, service, resource);
  job.token = token;
  job.session = std::move(session);
  job.not_before = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

// Jobs run in order, one at a time: a claim never overtakes the release of
// an earlier key of its resource (which would delete the key it adopted).
// Waits are real time: this is a background worker, not a lease decision.
void ClusterResources::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    if (std::chrono::steady_clock::now() < jobs_.front().not_before) {
      cv_.wait_until(lock, jobs_.front().not_before, [&] { return stopping_; });
      continue;
    }
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    bool finished = Attempt(job);
    lock.lock();
    if (!finished) jobs_.push_front(std::move(job));
  }
}

bool ClusterResources::Attempt(Job& job) {
  auto now = std::chrono::steady_clock::now();
  if (!job.claim) {
    // After its session, the key is gone (or going) by itself.
    if (!job.session || !job.session->Alive()) return true;
    etcd::pb::TxnRequest txn;
    *txn.add_compare() = etcd::CompareCreateRevision(job.key, etcd::pb::Compare::EQUAL, job.token);
    *txn.add_success() = etcd::OpDelete(job.key);
    etcd::pb::TxnResponse resp;
    if (deps_.registry->client()->Txn(txn, &resp).ok()) return true;
    job.not_before = now + kRetry;
    return false;
  }
  ResourceClaim r;
  std::shared_ptr<etcd::Session> session = deps_.session();
  if (session && session->Alive()) {
    etcd::Ownership o;
    r.status = session->Acquire(job.key, job.value, &o);
    if (r.status.ok()) {
      r.owned = o.owned;
      r.token = o.revision;
      if (o.owned) {
        r.session = session;
      } else {
        etcd::pb::KeyValue kv;
        kv.set_value(o.value);
        kv.set_create_revision(o.revision);
        kv.set_mod_revision(o.revision);
        kv.set_lease(o.lease);
        (void)ParseResourceHolder(kv, &r.holder);
      }
      job.done(std::move(r));
      return true;
    }
  } else {
    r.status = Status(Code::kUnavailable, "this node has no etcd session (etcd unreachable, or the node was paused "
                                          "past its lease); it takes no resource until it has one");
  }
  // Only a transport failure or an ended session is worth another try.
  bool retry = r.status.code() == Code::kUnavailable || r.status.code() == Code::kFailedPrecondition ||
               r.status.code() == Code::kDeadlineExceeded;
  if (retry && now + kRetry < job.give_up) {
    job.not_before = now + kRetry;
    return false;
  }
  job.done(std::move(r));
  return true;
}

}  // namespace lever::host
