// The cluster layer (docs/cluster.md): what makes several leverd nodes on
// one etcd one Lever. Active when the registry is etcd and the node has a
// peer address (HostOptions::cluster.advertise).
//
// - Node: one etcd lease (etcd::Session, TTL by flag), `node/<name>` under
//   it with the peer address and a proof of the cluster token
//   (HMAC-SHA256(token, name "\n" address)): a key without a valid proof is
//   ignored, so a writer of etcd without the token cannot make nodes relay
//   calls (and the token) to it.
// - Instances and load: `inst/<env>/<service>/<node>` under the lease: the
//   node's ready instances of a version and its calls in flight, published
//   from the supervisor's ticks (coalesced, at most one write per key every
//   `publish_interval`; none on the routing path), with what the
//   cluster-wide autoscaler needs: starting instances, the node's own load
//   (mean and peak of its last tick), calls waiting, called recently.
// - Cluster-wide autoscaling: a share per node, no decider (PeerLoads() and
//   lifecycle.h ClusterShare(); docs/cluster.md says why).
// - Remote candidates: every node's keys, watched through the registry's
//   mirror, become per-service `RemoteCandidate`s (ServiceState::remote)
//   that routing places calls on when no local instance has capacity.
// - Code: a version this node lacks is fetched from a peer's blob store over
//   the peer port (the deploying node first), its digest checked, then
//   installed (Deployer::BeginInstall); a version that cannot be fetched is
//   never started (the start fails with why).
//
// Threads: the mirror's (listeners), one publisher (session, keys) and one
// fetcher. Lock order: Cluster::mu_ is a leaf for callers; the cluster takes
// the catalog and service locks only with mu_ released.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catalog.h"
#include "etcd/session.h"
#include "lever/host/deploy.h"
#include "lever/host/host.h"
#include "registry_etcd.h"
#include "remote.h"
#include "service.h"

namespace lever::host {

using NodeInfo = ClusterNodeInfo;

// An instance on another node, for `lever ps`.
struct RemoteInstanceInfo {
  std::string node, env, service, instance_id;
  int64_t version = 0;
};

class Cluster {
 public:
  struct Deps {
    EtcdRegistry* registry = nullptr;
    Catalog* catalog = nullptr;
    Deployer* deployer = nullptr;
    ClockPtr clock;
    std::function<void(std::string_view line)> log;  // the node's log
    std::function<void()> wake;                       // the supervisor
    uint64_t max_archive_bytes = 30ull << 20;
    bool count_at_placement = false;
  };
  Cluster(ClusterOptions options, Deps deps);
  ~Cluster();  // revokes the lease: the node's keys go at once

  // Starts the session, publishes the node key, subscribes to the others.
  Status Start();

  // The supervisor's tick: this node's instances and load, every service.
  void Publish(std::vector<ServiceLoad> loads);

  enum class CodeState { kReady, kPending, kFailed };
  // Whether the code of env/service/version is in `code_dir`; if not, starts
  // fetching it (wake() is called when the fetch ends). kFailed hands over
  // the fetch's error once (the next call starts a new fetch).
  CodeState EnsureCode(const std::string& env, const std::string& service, int64_t version,
                       const std::string& code_dir, Status* failure);

  // The autoscaler's view of the other usable nodes for a service: every
  // peer, with what it published for the service (nothing: zeros);
  // instances count only when of `live_version`. Returns this node's rank.
  uint64_t PeerLoads(const std::string& env, const std::string& service, int64_t live_version,
                     std::vector<PeerLoad>* out) const;

  // Installs the known remote candidates into a service the catalog just
  // made (or whose candidates may have changed).
  void RefreshService(const std::string& env, const std::string& service);

  std::vector<NodeInfo> Nodes(const std::map<std::string, int64_t>& local_instances) const;
  std::vector<RemoteInstanceInfo> RemoteInstances(std::string_view env, std::string_view service) const;
  const std::string& node_name() const { return options_.node_name; }
  // This node's etcd session now (null while it has none), and another
  // node by name (null unless its node key is valid): for resources_cluster.h.
  std::shared_ptr<etcd::Session> session() const;
  std::shared_ptr<Peer> FindPeer(const std::string& name) const;

 private:
  struct NodeService {  // one `inst/` key of another node
    int64_t version = 0;
    std::vector<std::string> ready;
    int64_t in_flight = 0;
    int64_t starting = 0;
    double load = 0, peak = 0;
    int64_t waiting = 0;
    bool recent = false;
    int64_t rollout = 0, rollout_instances = 0;
  };
  void OnNodes(const std::vector<etcd::Change>& changes);
  void OnInstances(const std::vector<etcd::Change>& changes);
  void Install(const std::string& env, const std::string& service);
  std::vector<RemoteCandidate> CandidatesLocked(const std::string& env, const std::string& service);
  etcd::SessionOptions SessionOptions();  // the TTL, the clock, on_lost
  void RunPublisher();
  void RunFetcher();
  Status Fetch(const std::string& env, const std::string& service, int64_t version);
  std::string Proof(std::string_view name, std::string_view address) const;
  std::string NodeKey(std::string_view name) const { return root_ + "node/" + std::string(name); }
  std::string InstKey(const std::string& env, const std::string& service) const {
    return root_ + "inst/" + env + "/" + service + "/" + options_.node_name;
  }

  const ClusterOptions options_;
  const Deps deps_;
  const std::string root_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // Peers (not this node), by name.
  std::map<std::string, std::shared_ptr<Peer>> peers_;
  std::set<std::string> refused_;  // node keys with a bad proof, logged once
  // Other nodes' services: "env/service" -> node -> what it published.
  std::map<std::string, std::map<std::string, NodeService>> remote_;
  // RemoteBackends by "node\nenv/service" (kept so their counts survive updates).
  std::map<std::string, std::shared_ptr<RemoteBackend>> backends_;

  // Publisher: the session and what this node wants in etcd.
  std::shared_ptr<etcd::Session> session_;
  bool session_lost_ = false;
  std::map<std::string, std::string> wanted_;     // key -> value
  std::map<std::string, std::string> published_;  // what etcd has from us
  SteadyTime next_publish_{};

  // Fetcher.
  struct FetchEntry {
    bool done = false;
    Status status;
  };
  std::map<std::string, FetchEntry> fetches_;  // "env/service/version"
  std::deque<std::tuple<std::string, std::string, int64_t>> fetch_queue_;

  uint64_t node_sub_ = 0, inst_sub_ = 0;
  std::thread publisher_;
  std::thread fetcher_;
};

}  // namespace lever::host
