// Resources with one owner across the cluster (docs/cluster.md, "Resources
// across nodes"). R's owner is recorded in etcd at
//
//   <root>res/<env>/<service>/<resource>   {"node", "instance"}
//
// created if absent under the owning node's lease, in one transaction
// (etcd::Session::Acquire); the key's create revision is R's fencing token.
// Every node watches the keys (the registry's mirror) into
// ServiceState::holders, so routing finds R's owner in memory and relays
// R's calls to that node; only the first call of a resource nobody holds
// waits, for this node's claim. A dead owner's key goes with its lease (one
// TTL after its last renewal, never earlier), and the next call takes R
// anew, with a larger token. A node whose lease ended by its own clock
// serves none of the resources it held (ResourceLease::Current()).
//
// Threads: the mirror's (the listener), one claimer (etcd transactions,
// claims and releases in order), and routing's (HolderBackend, under a
// service lock). Lock order: a service's lock, then mu_ (a leaf but for the
// `peer` callback, which takes Cluster::mu_, itself a leaf).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "catalog.h"
#include "etcd/session.h"
#include "registry_etcd.h"
#include "remote.h"
#include "resources.h"

namespace lever::host {

class ClusterResources {
 public:
  struct Deps {
    EtcdRegistry* registry = nullptr;
    Catalog* catalog = nullptr;
    std::string node_name;
    // This node's etcd session now (null, or not Alive(), while it has none).
    std::function<std::shared_ptr<etcd::Session>()> session;
    // Another node by name; null when it has no valid node key.
    std::function<std::shared_ptr<Peer>(const std::string& name)> peer;
    std::function<void()> wake;  // the supervisor: waiting calls may move
    bool count_at_placement = false;
    SteadyDuration suspect_for{std::chrono::seconds(3)};  // a peer whose connection failed
    // How long a claim waits for this node to have a live session, and
    // retries an etcd that does not answer, before it fails.
    std::chrono::milliseconds claim_wait{5000};
  };
  explicit ClusterResources(Deps deps);
  ~ClusterResources();  // drops what is queued; this node's keys go with its lease

  // Subscribes to the resource keys and starts the claimer.
  void Start();
  // A service the catalog just made: its holders from the mirror.
  void Refresh(const std::string& env, const std::string& service);

  // Routing, service lock held, no I/O: the peer port of `h`'s node, or
  // null when calls for the resource must wait: `h` is this node's (an
  // ended session's key that etcd has not dropped yet, or one being
  // released), or its node is not known (yet).
  std::shared_ptr<RemoteBackend> HolderBackend(ResourceHolder& h);

  // Any thread: takes R's key for this node (owner `instance_id`) unless
  // another holds it; `done` runs on the claimer thread.
  void Claim(const std::string& env, const std::string& service, const std::string& resource,
             const std::string& instance_id, std::function<void(ResourceClaim)> done);
  // Any thread: deletes R's key if it still is the one created at `token`
  // (retried while `session` lives: after that the key is gone anyway).
  void Release(const std::string& env, const std::string& service, const std::string& resource, int64_t token,
               std::shared_ptr<const etcd::Session> session);
  // Whether a holder read from a claim's reply (the key at `mod_revision`)
  // is news to the mirror's listener; if not, the listener has it (or a
  // later state of the key) already or is about to deliver it.
  bool NewerThanMirror(int64_t mod_revision) const;

  const std::string& node_name() const { return deps_.node_name; }

 private:
  struct Job {
    bool claim = true;
    std::string key, value;
    int64_t token = 0;  // release: the create revision to delete
    std::shared_ptr<const etcd::Session> session;
    std::function<void(ResourceClaim)> done;
    std::chrono::steady_clock::time_point not_before, give_up;
  };
  std::string Key(std::string_view env, std::string_view service, std::string_view resource) const;
  void OnChanges(const std::vector<etcd::Change>& changes);
  void Run();
  // One attempt; false: try again at job.not_before.
  bool Attempt(Job& job);

  const Deps deps_;
  const std::string prefix_;  // <root>res/

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<Job> jobs_;
  uint64_t sub_ = 0;
  std::thread thread_;
};

// The parts of a resource key after <root>res/: false if it is not
// <env>/<service>/<resource> with all three non-empty.
bool ParseResourceKey(std::string_view rest, std::string* env, std::string* service, std::string* resource);
// A holder from a resource key's value; false if the value is not ours.
bool ParseResourceHolder(const etcd::pb::KeyValue& kv, ResourceHolder* out);

}  // namespace lever::host
