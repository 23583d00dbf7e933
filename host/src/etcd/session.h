// A node's session with etcd: one lease, kept alive, that every ephemeral
// key the node publishes hangs on (its heartbeat, its instances, the
// resources it owns, its load). When the node dies or is cut off, the lease
// expires and etcd deletes all of them at once; the node itself stops
// trusting them first (lease_timer.h). Ownership is create-if-absent under
// the lease, and the key's create revision is the fencing token.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "client.h"
#include "lease_timer.h"
#include "lever/host/clock.h"

namespace lever::host::etcd {

struct SessionOptions {
  // The lease TTL. Default 3 s; etcd may grant more (its minimum is about
  // 1.5 x its election timeout), and the granted TTL is what counts.
  std::chrono::seconds ttl{3};
  // The clock of every lease decision. Required (RealClock() in leverd).
  ClockPtr clock;
  // Called once, on the session's thread, when the lease is gone or may be
  // (etcd said so, or no keep-alive was answered in time). From then on
  // Alive() is false and every write fails; the owner starts a new session.
  std::function<void()> on_lost;
};

// The result of Acquire.
struct Ownership {
  bool owned = false;        // this session holds the key
  std::string value;         // the holder's value
  int64_t revision = 0;      // the key's create revision: the fencing token
  int64_t lease = 0;         // the holder's lease
};

// Thread contract: every method may be called from any thread.
class Session {
 public:
  static Status Start(std::shared_ptr<Client> client, SessionOptions options, std::unique_ptr<Session>* out);
  // Stops the keep-alives and revokes the lease (best effort: when etcd is
  // unreachable the lease expires by itself after its TTL).
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int64_t lease() const { return lease_; }
  std::chrono::seconds ttl() const;
  // True until the lease's local deadline (see lease_timer.h). Every use of
  // something held under the lease checks it first.
  bool Alive() const;
  SteadyTime valid_until() const;

  // A key that lives as long as the lease.
  Status Put(const std::string& key, const std::string& value);
  Status Delete(const std::string& key);
  // Takes `key` for this session if nobody holds it (one transaction:
  // create-if-absent under the lease), else reports the holder. A lost reply
  // retried is recognised as ours by the lease.
  Status Acquire(const std::string& key, const std::string& value, Ownership* out);
  // Deletes `key` if it is still the one created at `revision`.
  Status Release(const std::string& key, int64_t revision);
  // True if `o` is this session's and the lease is alive now.
  bool Holds(const Ownership& o) const { return o.owned && o.lease == lease_ && Alive(); }

  // Revokes now (a clean shutdown: etcd deletes the keys at once).
  Status Revoke();

  // Stops the keep-alives without revoking, as when the node dies: the
  // lease runs out on its own. The destructor then revokes nothing.
  void AbandonForTest();
  // Re-evaluates the lease now (after a fake clock moved).
  void WakeForTest() { cv_.notify_all(); }

 private:
  Session(std::shared_ptr<Client> client, SessionOptions options, int64_t lease, LeaseTimer timer);
  void Run();
  Status CheckAlive(std::string_view what) const;

  const std::shared_ptr<Client> client_;
  const SessionOptions options_;
  const int64_t lease_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  LeaseTimer timer_;
  bool stopping_ = false;
  bool lost_ = false;
  bool revoked_ = false;
  bool abandoned_ = false;
  grpc::ClientContext* stream_ctx_ = nullptr;
  std::thread thread_;
};

}  // namespace lever::host::etcd
