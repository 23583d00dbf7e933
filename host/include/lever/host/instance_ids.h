// Per-service users for instances (docs/security.md, "Instances under a root
// leverd"): each service gets its own uid (and a gid of the same number),
// each environment its own group, so that instances of different services
// cannot read each other's code, /proc/<pid>/environ, or signal each other,
// and only an environment's own instances connect to its internal socket.
//
// Ids come from a range that no user or group of the machine uses (default
// 61184-65519, the range systemd keeps for dynamic users); an id named in
// /etc/passwd or /etc/group (getpwuid/getgrgid) is skipped. They are kept in
// a file (one "<id> <s|e> <key>" line each), so a service keeps its uid
// across restarts of leverd, and are never reused: a deleted service's id
// stays taken (files it left in /tmp stay its own).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "lever/status.h"

namespace lever::host {

// Who an instance of one service runs as.
struct InstanceIdentity {
  uint32_t uid = 0;      // the service's user
  uint32_t gid = 0;      // its group (the same number)
  uint32_t env_gid = 0;  // its environment's group: its only supplementary group
};

class InstanceIds {
 public:
  // Loads `path` (a missing file is an empty table). Range: [first, last],
  // first > 0. INVALID_ARGUMENT for a file that is not ours, or an empty range.
  static Status Open(const std::string& path, uint32_t first, uint32_t last, std::shared_ptr<InstanceIds>* out);

  // The service's identity, allocating (and saving) its ids on first use.
  // RESOURCE_EXHAUSTED when the range has no free id left. Thread contract:
  // any thread.
  Status ForService(std::string_view env, std::string_view service, InstanceIdentity* out);

  uint32_t first() const { return first_; }
  uint32_t last() const { return last_; }

 private:
  InstanceIds(std::string path, uint32_t first, uint32_t last) : path_(std::move(path)), first_(first), last_(last) {}
  // mu_ held: the id of `key`, allocated if new.
  Status IdLocked(const std::string& key, uint32_t* id);
  Status SaveLocked() const;

  const std::string path_;
  const uint32_t first_, last_;
  std::mutex mu_;
  std::map<std::string, uint32_t> ids_;  // "s <env>/<service>" or "e <env>" -> id; guarded by mu_
  uint32_t next_ = 0;                    // where the next search starts; guarded by mu_
};

}  // namespace lever::host
