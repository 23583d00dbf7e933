#include "lever/host/instance_ids.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

namespace lever::host {
namespace {

// Named by a user or a group of this machine (files, NSS): not ours to give.
bool TakenBySystem(uint32_t id) {
  std::vector<char> buf(16384);
  struct passwd pw, *user = nullptr;
  struct group gr, *group = nullptr;
  getpwuid_r(id, &pw, buf.data(), buf.size(), &user);
  if (user != nullptr) return true;
  getgrgid_r(id, &gr, buf.data(), buf.size(), &group);
  return group != nullptr;
}

}  // namespace

Status InstanceIds::Open(const std::string& path, uint32_t first, uint32_t last, std::shared_ptr<InstanceIds>* out) {
  if (first == 0 || last < first) return InvalidArgument("an empty instance id range");
  std::shared_ptr<InstanceIds> ids(new InstanceIds(path, first, last));
  std::ifstream in(path);
  std::string line;
  std::set<uint32_t> seen;
  while (in && std::getline(in, line)) {
    if (line.empty()) continue;
    size_t space = line.find(' ');
    uint32_t id = 0;
    bool ok = space != std::string::npos && space > 0 && space <= 10 &&
              line.find_first_not_of("0123456789") == space && line.size() > space + 2 &&
              (line[space + 1] == 's' || line[space + 1] == 'e') && line[space + 2] == ' ';
    if (ok) {
      uint64_t v = std::stoull(line.substr(0, space));
      ok = v > 0 && v <= UINT32_MAX && seen.insert(static_cast<uint32_t>(v)).second;
      id = static_cast<uint32_t>(v);
    }
    if (!ok) return InvalidArgument(path + ": not an instance id table (bad line \"" + line.substr(0, 80) + "\")");
    // An id outside today's range stays that service's: a range is where new
    // ids come from.
    ids->ids_[line.substr(space + 1)] = id;
  }
  *out = std::move(ids);
  return Status::Ok();
}

Status InstanceIds::ForService(std::string_view env, std::string_view service, InstanceIdentity* out) {
  std::lock_guard lock(mu_);
  uint32_t uid = 0, env_gid = 0;
  if (Status s = IdLocked("s " + std::string(env) + "/" + std::string(service), &uid); !s.ok()) return s;
  if (Status s = IdLocked("e " + std::string(env), &env_gid); !s.ok()) return s;
  *out = InstanceIdentity{uid, uid, env_gid};
  return Status::Ok();
}

Status InstanceIds::IdLocked(const std::string& key, uint32_t* id) {
  if (key.find_first_of("\n\r") != std::string::npos) return InvalidArgument("a name with a line break");
  if (auto it = ids_.find(key); it != ids_.end()) {
    *id = it->second;
    return Status::Ok();
  }
  std::set<uint32_t> used;
  for (const auto& [k, v] : ids_) used.insert(v);
  uint64_t span = uint64_t{last_} - first_ + 1;
  for (uint64_t tried = 0; tried < span; ++tried) {
    uint32_t candidate = first_ + static_cast<uint32_t>((next_ + tried) % span);
    if (used.count(candidate) || TakenBySystem(candidate)) continue;
    ids_[key] = candidate;
    if (Status s = SaveLocked(); !s.ok()) {
      ids_.erase(key);
      return s;
    }
    next_ = static_cast<uint32_t>((candidate - first_ + 1) % span);
    *id = candidate;
    return Status::Ok();
  }
  return Status(Code::kResourceExhausted, "no free instance id left in " + std::to_string(first_) + "-" +
                                               std::to_string(last_) + " (leverd --instance-ids)");
}

Status InstanceIds::SaveLocked() const {
  std::ostringstream body;
  for (const auto& [key, id] : ids_) body << id << ' ' << key << '\n';
  std::string text = body.str();
  std::string tmp = path_ + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status(Code::kInternal, "cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  int err = errno;
  close(fd);
  if (ok && rename(tmp.c_str(), path_.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    unlink(tmp.c_str());
    return Status(Code::kInternal, "cannot write " + path_ + ": " + std::strerror(err));
  }
  return Status::Ok();
}

}  // namespace lever::host
