// One instance of a service: the Backend the gateway holds, its state under
// the service's lock, and what only the supervisor thread touches.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "lever/client.h"
#include "lever/host/clock.h"
#include "lever/host/lever_json.h"
#include "lever/host/router.h"
#include "lever/host/runtime.h"

namespace lever::host {

struct ServiceState;

// starting: spawned (or about to be), not yet accepting connections.
// ready: accepts connections; takes calls while alive().
// draining: takes no new call; stops once its calls in flight are done (or
//   after the drain bound).
// stopping: SIGTERM sent; SIGKILL at kill_deadline; gone when it exits.
enum class InstanceState { kStarting, kReady, kDraining, kStopping };
const char* InstanceStateName(InstanceState s);

// The supervisor's eventfd; shared with Backends, which may outlive the host.
struct Wakeup {
  Wakeup();
  ~Wakeup();
  void Notify() const;
  int fd = -1;
};

// Time-weighted load: calls in flight and their integral over time
// (call-microseconds), updated without a lock from any thread. The integral
// read while another thread updates may be off by one interval for one
// reading; it is cumulative, so the next reading is exact again.
class LoadMeter {
 public:
  void Add(int64_t delta, int64_t now_us);
  int64_t in_flight() const { return static_cast<int64_t>(state_.load(std::memory_order_relaxed) >> kTimeBits); }
  // Call-microseconds up to `now_us`.
  uint64_t Area(int64_t now_us) const;

 private:
  static constexpr int kTimeBits = 44;  // µs since the meter's epoch: 200 days
  static constexpr uint64_t kTimeMask = (uint64_t{1} << kTimeBits) - 1;
  std::atomic<uint64_t> state_{0};  // in_flight << 44 | last change (µs)
  std::atomic<uint64_t> area_{0};
};

// Outcome of a connection attempt to an instance's socket.
enum class Probe { kAccepting, kBusy, kDead };
// A non-blocking connect: accepted (or in progress) → kAccepting; a full
// backlog (EAGAIN) → kBusy, which is alive; refused, missing → kDead.
Probe ProbeSocket(const std::string& path);

class Instance final : public Backend {
 public:
  // `placement_counts`: a call counts as in flight from the moment Route()
  // places it (Placed()), and OnCallStart() is a no-op; otherwise from the
  // gateway's OnCallStart().
  Instance(std::string instance_id, std::string env, std::string service, int64_t version, std::string socket_path,
           std::shared_ptr<const Wakeup> wakeup, ClockPtr clock, bool placement_counts);

  // Backend: atomics only.
  const std::string& address() const override { return address_; }
  uint64_t id() const override { return backend_id; }
  void OnCallStart() override;
  void OnCallEnd() override;
  void OnConnectionFailed() override;
  bool alive() const override { return alive_.load(std::memory_order_acquire); }

  // Routing, service lock held: one call placed here.
  void Placed(SteadyTime now);
  // Draining: the call that leaves it idle wakes the supervisor.
  void MarkDraining() { draining_.store(true, std::memory_order_release); }
  void WakeSupervisor() const { wakeup_->Notify(); }

  void Touch();
  int64_t in_flight() const { return load.in_flight(); }
  // Without placement_counts: calls placed whose OnCallStart has not come
  // yet, so that placement spreads a burst. A placed call that never starts
  // (its caller left first) would leave one behind: ForgetPending() clears
  // them once the instance has been quiet for a while.
  int64_t pending() const { return pending_.load(std::memory_order_relaxed); }
  void ForgetPending() { pending_.store(0, std::memory_order_relaxed); }
  SteadyTime last_active() const;
  // The meter's time base: microseconds since the instance was created.
  int64_t MeterUs(SteadyTime t) const;

  const uint64_t backend_id;
  const std::string instance_id;
  const std::string env;
  const std::string service;
  const int64_t version;
  const std::string socket_path;
  const std::string address_;
  const uint64_t placement_key;
  const ClockPtr clock;
  const SteadyTime created_;
  const bool placement_counts;

  LoadMeter load;
  std::atomic<bool> alive_{false};
  std::atomic<int64_t> last_active_ns{0};
  std::atomic<bool> check_requested{false};

  // Guarded by the service's mutex (written by the supervisor).
  InstanceState state = InstanceState::kStarting;
  int pid = 0;
  bool spawned = false;
  std::chrono::system_clock::time_point started_at = std::chrono::system_clock::now();
  SteadyTime start_deadline{};
  SteadyTime drain_deadline{};
  SteadyTime kill_deadline{};
  size_t resources = 0;      // leases it owns
  int failed_probes = 0;     // suspect: refused probes in a row
  SteadyTime next_check{};   // suspect: when to probe again

  bool killed = false;
  bool stop_intended = false;
  // How it serves, once ready: "inherited" (on the socket leverd passed in,
  // LEVEROS_LISTEN_FD) or "own" (it bound LEVEROS_LISTEN_ADDR itself).
  const char* socket_kind = "";

  std::weak_ptr<ServiceState> owner;  // set at creation

  // Supervisor thread only.
  LeverConfig config;
  std::string code_dir;
  std::unique_ptr<RunningInstance> proc;
  SteadyTime next_attempt{};
  SteadyDuration backoff{};
  std::string out_partial, err_partial;
  bool out_open = false, err_open = false;
  std::string last_line;
  // Socket activation: the inode of the socket leverd bound (0: none, or the
  // instance re-made the path), and a connection that waits for the
  // instance's first HTTP/2 frame (its SETTINGS: it is serving).
  uint64_t listen_inode = 0;
  int ready_probe = -1;
  std::string probe_in;
  // For NewResource/CloseResource, made on first use (service lock held).
  std::shared_ptr<Client> hook_client;

 private:
  void Count(int64_t delta, SteadyTime now);
  std::shared_ptr<const Wakeup> wakeup_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> pending_{0};
};

// The built-in admin service, served in-process by leverd.
// A Backend id never handed out before (instances, the admin service, peers).
uint64_t NewBackendId();

class AdminBackend final : public Backend {
 public:
  explicit AdminBackend(std::string address);
  const std::string& address() const override { return address_; }
  uint64_t id() const override { return id_; }
  void OnCallStart() override { in_flight.fetch_add(1, std::memory_order_relaxed); }
  void OnCallEnd() override { in_flight.fetch_sub(1, std::memory_order_relaxed); }
  void OnConnectionFailed() override {}
  bool alive() const override { return true; }
  std::atomic<int64_t> in_flight{0};

 private:
  const std::string address_;
  const uint64_t id_;
};

}  // namespace lever::host
