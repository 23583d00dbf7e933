#include "cluster.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "peer_fetch.h"

namespace lever::host {
namespace {

using Json = nlohmann::json;

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json ParseObject(const std::string& text) {
  Json v = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_object() ? v : Json();
}

std::string Str(const Json& v, const char* key) {
  return v.contains(key) && v[key].is_string() ? v[key].get<std::string>() : std::string();
}
int64_t Int(const Json& v, const char* key) {
  return v.contains(key) && v[key].is_number_integer() ? v[key].get<int64_t>() : 0;
}
// A published figure: a finite number in [0, 1e6], else 0 (any peer may be wrong or hostile).
double Figure(const Json& v, const char* key) {
  if (!v.contains(key) || !v[key].is_number()) return 0;
  double x = v[key].get<double>();
  return std::isfinite(x) ? std::clamp(x, 0.0, 1e6) : 0;
}
// Loads are published to a tenth: a steady load does not rewrite the key every tick.
double Tenth(double x) { return std::round(x * 10) / 10; }

}  // namespace

Cluster::Cluster(ClusterOptions options, Deps deps)
    : options_(std::move(options)), deps_(std::move(deps)), root_(deps_.registry->root()) {}

Cluster::~Cluster() {
  if (node_sub_) deps_.registry->mirror().Unsubscribe(node_sub_);
  if (inst_sub_) deps_.registry->mirror().Unsubscribe(inst_sub_);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  if (fetcher_.joinable()) fetcher_.join();
  if (session_) (void)session_->Revoke();  // the node's keys go now, not after a TTL
  for (auto& [_, peer] : peers_) peer->gone.store(true);
}

std::string Cluster::Proof(std::string_view name, std::string_view address) const {
  std::string msg = std::string(name) + "\n" + std::string(address);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), options_.token.data(), static_cast<int>(options_.token.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  return Hex(mac, len);
}

etcd::SessionOptions Cluster::SessionOptions() {
  etcd::SessionOptions so;
  so.ttl = options_.lease_ttl;
  so.clock = deps_.clock;
  so.on_lost = [this] {
    {
      std::lock_guard lock(mu_);
      session_lost_ = true;
    }
    cv_.notify_all();
  };
  return so;
}

Status Cluster::Start() {
  std::unique_ptr<etcd::Session> session;
  Status s = etcd::Session::Start(deps_.registry->client(), SessionOptions(), &session);
  if (!s.ok()) return Status(s.code(), "cluster: cannot start this node's etcd session: " + s.message());
  Json node = {{"address", options_.advertise},
               {"proof", Proof(options_.node_name, options_.advertise)},
               {"started_ms", NowUnixMs()}};
  // Put, not create-if-absent: a node restarted within its old lease's TTL
  // takes its key over (the old lease then ends with nothing left on it).
  s = session->Put(NodeKey(options_.node_name), node.dump());
  if (!s.ok()) return Status(s.code(), "cluster: cannot register node " + options_.node_name + ": " + s.message());
  {
    std::lock_guard lock(mu_);
    session_ = std::move(session);
    published_[NodeKey(options_.node_name)] = node.dump();
    wanted_[NodeKey(options_.node_name)] = node.dump();
  }
  node_sub_ = deps_.registry->mirror().Subscribe(root_ + "node/",
                                                [this](const std::vector<etcd::Change>& c) { OnNodes(c); });
  inst_sub_ = deps_.registry->mirror().Subscribe(root_ + "inst/",
                                                [this](const std::vector<etcd::Change>& c) { OnInstances(c); });
  publisher_ = std::thread([this] { RunPublisher(); });
  fetcher_ = std::thread([this] { RunFetcher(); });
  return Status::Ok();
}

std::shared_ptr<etcd::Session> Cluster::session() const {
  std::lock_guard lock(mu_);
  return session_;
}

std::shared_ptr<Peer> Cluster::FindPeer(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = peers_.find(name);
  return it == peers_.end() ? nullptr : it->second;
}

// --- what the other nodes publish -------------------------------------------

void Cluster::OnNodes(const std::vector<etcd::Change>& changes) {
  std::set<std::string> touched;
  {
    std::lock_guard lock(mu_);
    for (const etcd::Change& c : changes) {
      std::string name = c.kv.key().substr(root_.size() + 5);  // "node/"
      if (name == options_.node_name) continue;
      auto it = peers_.find(name);
      if (c.deleted) {
        if (it != peers_.end()) {
          it->second->gone.store(true, std::memory_order_release);
          peers_.erase(it);
          deps_.log("[cluster] node " + name + " left (its lease ended)");
        }
      } else {
        Json v = ParseObject(c.kv.value());
        std::string address = Str(v, "address");
        if (address.empty() || Str(v, "proof") != Proof(name, address)) {
          if (refused_.insert(name).second) {
            deps_.log("[cluster] ignoring node key " + c.kv.key() +
                      ": its proof does not match the cluster token (a node with another token, or a stranger)");
          }
          if (it != peers_.end()) {
            it->second->gone.store(true);
            peers_.erase(it);
          }
        } else if (it == peers_.end() || it->second->address != address) {
          if (it != peers_.end()) it->second->gone.store(true);
          auto peer = std::make_shared<Peer>();
          peer->name = name;
          peer->address = address;
          peer->id = NewBackendId();
          peer->clock = deps_.clock;
          peers_[name] = peer;
          refused_.erase(name);
          deps_.log("[cluster] node " + name + " at " + address + " joined");
        } else {
          it->second->suspect_until_ns.store(0);  // written again: trusted again
        }
      }
      for (auto& [svc, nodes] : remote_) {
        if (nodes.count(name)) touched.insert(svc);
      }
    }
    // Backends of a peer that is gone or moved are made again.
    std::erase_if(backends_, [&](const auto& e) { return e.second->peer().gone.load(); });
  }
  for (const std::string& key : touched) {
    size_t slash = key.find('/');
    Install(key.substr(0, slash), key.substr(slash + 1));
  }
}

void Cluster::OnInstances(const std::vector<etcd::Change>& changes) {
  std::set<std::string> touched;
  {
    std::lock_guard lock(mu_);
    for (const etcd::Change& c : changes) {
      std::string_view rest = std::string_view(c.kv.key()).substr(root_.size() + 5);  // "inst/"
      size_t a = rest.find('/');
      size_t b = a == std::string_view::npos ? a : rest.find('/', a + 1);
      if (b == std::string_view::npos) continue;
      std::string svc_key(rest.substr(0, b));
      std::string node(rest.substr(b + 1));
      if (node == options_.node_name) continue;
      touched.insert(svc_key);
      if (c.deleted) {
        auto it = remote_.find(svc_key);
        if (it != remote_.end()) {
          it->second.erase(node);
          if (it->second.empty()) remote_.erase(it);
        }
        continue;
      }
      Json v = ParseObject(c.kv.value());
      NodeService ns;
      ns.version = Int(v, "version");
      ns.in_flight = Int(v, "in_flight");
      ns.starting = std::clamp<int64_t>(Int(v, "starting"), 0, 1024);
      ns.load = Figure(v, "load");
      ns.peak = Figure(v, "peak");
      ns.waiting = std::clamp<int64_t>(Int(v, "waiting"), 0, 1 << 20);
      ns.recent = v.contains("recent") && v["recent"].is_boolean() && v["recent"].get<bool>();
      ns.rollout = Int(v, "rollout");
      ns.rollout_instances = std::clamp<int64_t>(Int(v, "rollout_instances"), 0, 1024);
      if (v.contains("instances") && v["instances"].is_array()) {
        for (const Json& id : v["instances"]) {
          if (id.is_string() && ns.ready.size() < 1024) ns.ready.push_back(id.get<std::string>());
        }
      }
      remote_[svc_key][node] = std::move(ns);
    }
  }
  for (const std::string& key : touched) {
    size_t slash = key.find('/');
    Install(key.substr(0, slash), key.substr(slash + 1));
  }
}

std::vector<RemoteCandidate> Cluster::CandidatesLocked(const std::string& env, const std::string& service) {
  std::vector<RemoteCandidate> out;
  auto it = remote_.find(env + "/" + service);
  if (it == remote_.end()) return out;
  for (const auto& [node, ns] : it->second) {
    auto peer = peers_.find(node);
    if (peer == peers_.end() || ns.ready.empty()) continue;  // no valid node key: never routed to
    std::string bkey = node + "\n" + env + "/" + service;
    std::shared_ptr<RemoteBackend>& b = backends_[bkey];
    if (!b) {
      b = std::make_shared<RemoteBackend>(peer->second, deps_.count_at_placement,
                                          std::chrono::duration_cast<SteadyDuration>(options_.lease_ttl));
    }
    out.push_back({b, ns.version, static_cast<int64_t>(ns.ready.size()), ns.in_flight});
  }
  return out;
}

uint64_t Cluster::PeerLoads(const std::string& env, const std::string& service, int64_t live_version,
                            std::vector<PeerLoad>* out) const {
  out->clear();
  std::lock_guard lock(mu_);
  auto svc = remote_.find(env + "/" + service);
  for (const auto& [name, peer] : peers_) {
    if (!peer->usable()) continue;  // gone, or a connection to it failed: its instances do not count
    PeerLoad p;
    p.rank = NodeRank(env, service, name);
    const NodeService* ns = nullptr;
    if (svc != remote_.end()) {
      auto it = svc->second.find(name);
      if (it != svc->second.end()) ns = &it->second;
    }
    if (ns) {
      if (ns->version == live_version) {
        p.instances = static_cast<int64_t>(ns->ready.size()) + ns->starting;
      } else if (ns->rollout == live_version) {
        p.instances = ns->rollout_instances;  // it has not switched yet: its new instances count
      }
      p.load = ns->load;
      p.peak = ns->peak;
      p.waiting = ns->waiting > 0;
      p.recent = ns->recent;
    }
    out->push_back(p);
  }
  return NodeRank(env, service, options_.node_name);
}

void Cluster::Install(const std::string& env, const std::string& service) {
  ServicePtr svc = deps_.catalog->Find(env, service);
  if (!svc) return;
  std::vector<RemoteCandidate> candidates;
  {
    std::lock_guard lock(mu_);
    candidates = CandidatesLocked(env, service);
  }
  {
    std::lock_guard lock(svc->mu);
    svc->remote = std::move(candidates);
  }
  deps_.wake();  // calls waiting for an instance may go there now
}

void Cluster::RefreshService(const std::string& env, const std::string& service) { Install(env, service); }

// --- what this node publishes -------------------------------------------------

void Cluster::Publish(std::vector<ServiceLoad> loads) {
  std::lock_guard lock(mu_);
  const std::string prefix = root_ + "inst/";
  std::set<std::string> seen;
  for (const ServiceLoad& l : loads) {
    std::string key = InstKey(l.env, l.service);
    double load = Tenth(l.load), peak = Tenth(l.peak);
    if (l.ready.empty() && l.in_flight == 0 && l.starting == 0 && l.waiting == 0 && load == 0 && peak == 0 &&
        !l.recent && l.rollout_instances == 0) {
      continue;  // nothing here: no key
    }
    seen.insert(key);
    Json v = {{"version", l.version}, {"instances", l.ready}, {"in_flight", l.in_flight}, {"starting", l.starting},
              {"load", load},         {"peak", peak},         {"waiting", l.waiting},     {"recent", l.recent}};
    if (l.rollout > 0) {
      v["rollout"] = l.rollout;
      v["rollout_instances"] = l.rollout_instances;
    }
    wanted_[key] = v.dump();
  }
  std::erase_if(wanted_, [&](const auto& e) { return e.first.starts_with(prefix) && !seen.count(e.first); });
  cv_.notify_all();
}

void Cluster::RunPublisher() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (session_lost_) {
      // The lease is gone (or may be): everything this node published went
      // with it. A new session, then the node key and the rest again.
      session_lost_ = false;
      std::shared_ptr<etcd::Session> old = std::move(session_);
      published_.clear();
      lock.unlock();
      deps_.log("[cluster] this node's etcd lease ended; joining again");
      old.reset();
      std::unique_ptr<etcd::Session> fresh;
      Status s = etcd::Session::Start(deps_.registry->client(), SessionOptions(), &fresh);
      lock.lock();
      if (!s.ok()) {
        session_lost_ = true;
        cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_; });
        continue;
      }
      session_ = std::move(fresh);
    }
    SteadyTime now = deps_.clock->Now();
    bool dirty = wanted_ != published_;
    if (!dirty || now < next_publish_) {
      // Real time: the publisher is a background thread, not a decision.
      cv_.wait_for(lock, dirty ? std::chrono::milliseconds(20) : std::chrono::milliseconds(1000));
      continue;
    }
    next_publish_ = now + options_.publish_interval;
    std::map<std::string, std::string> wanted = wanted_, published = published_;
    etcd::Session* session = session_.get();
    lock.unlock();
    std::map<std::string, std::string> done = published;
    bool failed = false;
    for (const auto& [key, value] : wanted) {
      auto it = published.find(key);
      if (it != published.end() && it->second == value) continue;
      if (session->Put(key, value).ok()) {
        done[key] = value;
      } else {
        failed = true;
      }
    }
    for (const auto& [key, value] : published) {
      if (wanted.count(key)) continue;
      if (session->Delete(key).ok()) {
        done.erase(key);
      } else {
        failed = true;
      }
    }
    lock.lock();
    if (session_.get() == session) published_ = std::move(done);
    if (failed) cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_ || session_lost_; });
  }
}

// --- code ---------------------------------------------------------------------

Cluster::CodeState Cluster::EnsureCode(const std::string& env, const std::string& service, int64_t version,
                                       const std::string& code_dir, Status* failure) {
  struct stat st;
  if (stat(code_dir.c_str(), &st) == 0) return CodeState::kReady;
  std::string key = env + "/" + service + "/" + std::to_string(version);
  std::lock_guard lock(mu_);
  auto it = fetches_.find(key);
  if (it != fetches_.end()) {
    if (!it->second.done) return CodeState::kPending;
    Status s = it->second.status;
    fetches_.erase(it);
    if (s.ok()) return CodeState::kReady;
    *failure = s;
    return CodeState::kFailed;
  }
  fetches_[key] = {};
  fetch_queue_.emplace_back(env, service, version);
  cv_.notify_all();
  return CodeState::kPending;
}

void Cluster::RunFetcher() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !fetch_queue_.empty(); });
    if (stopping_) return;
    auto [env, service, version] = fetch_queue_.front();
    fetch_queue_.pop_front();
    lock.unlock();
    Status s = Fetch(env, service, version);
    if (!s.ok()) deps_.log("[cluster] " + s.message());
    lock.lock();
    FetchEntry& e = fetches_[env + "/" + service + "/" + std::to_string(version)];
    e.done = true;
    e.status = s;
    lock.unlock();
    deps_.wake();
    lock.lock();
  }
}

Status Cluster::Fetch(const std::string& env, const std::string& service, int64_t version) {
  const std::string what = ServiceUrl(env, service) + " v" + std::to_string(version);
  CodeVersionInfo cv;
  Status s = deps_.registry->GetCodeVersion(env, service, version, &cv);
  if (!s.ok()) return Status(s.code(), "cannot fetch the code of " + what + ": " + s.message());
  if (!IsSha256Hex(cv.sha256)) {
    return Status(Code::kFailedPrecondition, "cannot fetch the code of " + what +
                                                 ": the version has no content address (deployed before "
                                                 "content addressing); deploy it again");
  }
  std::vector<std::pair<std::string, std::string>> peers;  // name, address
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, peer] : peers_) peers.emplace_back(name, peer->address);
  }
  std::stable_partition(peers.begin(), peers.end(), [&](const auto& p) { return p.first == cv.node; });
  if (peers.empty()) {
    return Status(Code::kUnavailable, "cannot fetch the code of " + what + " (sha256 " + cv.sha256 +
                                          "): no other node is up to fetch it from");
  }
  std::string errors;
  for (const auto& [name, address] : peers) {
    std::unique_ptr<DeploySession> session;
    s = deps_.deployer->BeginInstall(env, service, version, cv.sha256, &session);
    if (!s.ok()) return Status(s.code(), "cannot install the code of " + what + ": " + s.message());
    PeerGet get;
    get.address = address;
    get.path = "/_lever/peer/blob/" + cv.sha256 + ".tgz";
    get.token = options_.token;
    get.max_body_bytes = deps_.max_archive_bytes;
    get.deadline = std::chrono::steady_clock::now() + options_.fetch_timeout;
    // Only the size bound stops the transfer: for any other error the rest
    // is read, so that Finish() can say whether the bytes were the deployed ones.
    s = PeerHttpGet(get, [&](std::string_view piece) {
      Status w = session->Write(piece);
      return w.code() == Code::kResourceExhausted ? w : Status::Ok();
    });
    DeployResult result;
    if (s.ok()) s = session->Finish(&result);
    if (s.ok()) {
      deps_.log("[cluster] fetched the code of " + what + " from node " + name + " (" +
                std::to_string(cv.archive_bytes) + " bytes, sha256 " + cv.sha256 + ")");
      return Status::Ok();
    }
    deps_.log("[cluster] fetching the code of " + what + " from node " + name + " failed: " + s.message());
    errors += (errors.empty() ? "" : "; ") + name + ": " + s.message();
  }
  return Status(Code::kUnavailable, "cannot get the code of " + what + " (sha256 " + cv.sha256 +
                                        ") from any node, so it does not run here: " + errors);
}

// --- listings -------------------------------------------------------------------

std::vector<NodeInfo> Cluster::Nodes(const std::map<std::string, int64_t>& local_instances) const {
  std::vector<NodeInfo> out;
  int64_t mine = 0;
  for (const auto& [_, n] : local_instances) mine += n;
  std::lock_guard lock(mu_);
  out.push_back({options_.node_name, options_.advertise, true, session_ && session_->Alive(), mine});
  for (const auto& [name, peer] : peers_) {
    NodeInfo n{name, peer->address, false, peer->usable(), 0};
    for (const auto& [svc, nodes] : remote_) {
      auto it = nodes.find(name);
      if (it != nodes.end()) n.instances += static_cast<int64_t>(it->second.ready.size());
    }
    out.push_back(std::move(n));
  }
  return out;
}

std::vector<RemoteInstanceInfo> Cluster::RemoteInstances(std::string_view env, std::string_view service) const {
  std::vector<RemoteInstanceInfo> out;
  std::lock_guard lock(mu_);
  for (const auto& [key, nodes] : remote_) {
    size_t slash = key.find('/');
    std::string_view e = std::string_view(key).substr(0, slash), s = std::string_view(key).substr(slash + 1);
    if ((!env.empty() && e != env) || (!service.empty() && s != service)) continue;
    for (const auto& [node, ns] : nodes) {
      if (!peers_.count(node)) continue;
      for (const std::string& id : ns.ready) out.push_back({node, std::string(e), std::string(s), id, ns.version});
    }
  }
  return out;
}

}  // namespace lever::host
