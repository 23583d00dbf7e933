// A node's copy of every key under one prefix, kept current by one etcd
// watch: the cache that lets the routing path and the registry's reads
// never wait on etcd, and that keeps serving when etcd is gone.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client.h"

namespace lever::host::etcd {

struct Change {
  pb::KeyValue kv;  // for a delete: the key and the deletion's mod_revision
  bool deleted = false;
};

struct MirrorOptions {
  // Every key under this prefix is mirrored. Required, non-empty.
  std::string prefix;
  // Keys per Range page while loading. Default 64.
  int64_t page_keys = 64;
};

// Thread contract: every method may be called from any thread. Listeners
// run on the mirror's own thread, one batch at a time, in revision order,
// after the batch is visible to Get/List; they must not call Subscribe or
// Unsubscribe.
class Mirror {
 public:
  // Loads the prefix (a consistent snapshot, page by page) and starts
  // watching from the revision after it. Fails when etcd cannot be read.
  static Status Start(std::shared_ptr<Client> client, MirrorOptions options, std::unique_ptr<Mirror>* out);
  ~Mirror();  // stops the watch
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  bool Get(const std::string& key, pb::KeyValue* out) const;
  // Every key under `prefix` (which must lie under the mirrored prefix), sorted.
  std::vector<pb::KeyValue> List(const std::string& prefix) const;
  // Every change up to this etcd revision is applied.
  int64_t revision() const;
  // True while the watch stream is open and created on some member.
  bool connected() const;
  // Times the mirror reloaded everything (etcd compacted past its revision).
  int64_t reloads() const;

  using Listener = std::function<void(const std::vector<Change>&)>;
  // Calls `fn` at once with a put for every key under `prefix` (on the
  // caller's thread, serialised with deliveries), then with every later
  // change under it. Returns an id for Unsubscribe.
  uint64_t Subscribe(std::string prefix, Listener fn);
  // After it returns, `fn` is not running and is never called again.
  void Unsubscribe(uint64_t id);

  // Blocks until revision() >= rev or the timeout, and the listeners have
  // had the changes up to it; true if reached.
  bool WaitForRevisionForTest(int64_t rev, std::chrono::milliseconds timeout) const;

 private:
  Mirror(std::shared_ptr<Client> client, MirrorOptions options);
  Status Load(bool reload);
  void Run();
  // Applies one batch and hands it to the listeners.
  void Apply(std::vector<Change> batch, int64_t revision);
  void Deliver(const std::vector<Change>& batch);  // deliver_mu_ held

  const std::shared_ptr<Client> client_;
  const MirrorOptions options_;

  // Lock order: deliver_mu_, then mu_.
  mutable std::mutex mu_;  // the data below
  mutable std::condition_variable cv_;
  std::map<std::string, pb::KeyValue> kvs_;
  int64_t revision_ = 0;
  bool connected_ = false;
  int64_t reloads_ = 0;
  bool stopping_ = false;
  grpc::ClientContext* stream_ctx_ = nullptr;  // the open stream's, for TryCancel

  mutable std::mutex deliver_mu_;  // serialises listener calls and the listener list
  struct Sub {
    uint64_t id;
    std::string prefix;
    Listener fn;
  };
  std::vector<Sub> subs_;
  uint64_t next_sub_ = 1;

  std::thread thread_;
};

}  // namespace lever::host::etcd
