#include "docker/container_spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

namespace lever::host::docker {

using Json = nlohmann::json;

Json CreateBody(const ContainerSpec& spec) {
  Json mounts = Json::array();
  auto bind = [&](const std::string& source, const std::string& target, bool read_only) {
    mounts.push_back({{"Type", "bind"}, {"Source", source}, {"Target", target}, {"ReadOnly", read_only}});
  };
  std::vector<std::string> seen;  // dockerd refuses a mount point twice
  for (const std::string& dir : spec.host_mounts) {
    if (std::find(seen.begin(), seen.end(), dir) != seen.end()) continue;
    seen.push_back(dir);
    bind(dir, dir, true);
  }
  bind(spec.code_dir, kContainerCodeDir, true);
  bind(spec.run_dir, kContainerRunDir, false);
  if (!spec.gateway_socket.empty()) bind(spec.gateway_socket, kContainerGateway, false);
  Json host = {
      {"ReadonlyRootfs", true},
      {"CapDrop", {"ALL"}},
      {"SecurityOpt", {"no-new-privileges"}},
      {"Memory", spec.memory_bytes},
      {"MemorySwap", spec.memory_bytes},  // the same: no swap
      {"PidsLimit", spec.pids_limit},
      {"NetworkMode", spec.network},
      {"Mounts", mounts},
      {"Tmpfs", {{"/tmp", "rw,nosuid,nodev,noexec,size=16m"}}},
      {"LogConfig", {{"Type", "none"}, {"Config", Json::object()}}},
      {"IpcMode", "private"},
      {"AutoRemove", false},
      {"Init", true},  // docker-init as PID 1: signals reach the entry (PID 1 ignores SIGTERM)
  };
  if (!spec.groups.empty()) {
    Json groups = Json::array();
    for (uint32_t g : spec.groups) groups.push_back(std::to_string(g));
    host["GroupAdd"] = groups;
  }
  Json body = {
      {"Image", spec.image},
      {"Cmd", spec.argv},
      {"Env", spec.env},
      {"User", spec.user},
      {"WorkingDir", kContainerCodeDir},
      {"Labels", spec.labels},
      {"AttachStdin", false},
      {"AttachStdout", true},
      {"AttachStderr", true},
      {"OpenStdin", false},
      {"Tty", false},
      {"HostConfig", host},
  };
  // No network: runc's own fresh namespace (loopback only, up), without the
  // sandbox dockerd would make for NetworkMode none and the prestart hook
  // (dockerd's binary run again) that joins it, which cost most of a
  // container's start (docs/BENCHMARKS.md).
  if (spec.network == "none") body["NetworkDisabled"] = true;
  return body;
}

HostLayout ReadHostLayout(const std::string& root) {
  HostLayout layout;
  std::string base = root == "/" ? "" : root;
  // Not /sbin: dockerd mounts its init at /sbin/docker-init, which must not
  // land below the /usr mount (services need nothing from /sbin).
  for (const char* name : {"usr", "bin", "lib", "lib32", "lib64", "libx32"}) {
    std::string path = base + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
      if (n > 0) layout.links.emplace_back(name, std::string(target, static_cast<size_t>(n)));
    } else if (S_ISDIR(st.st_mode)) {
      layout.mounts.push_back(std::string("/") + name);
    }
  }
  return layout;
}

std::vector<RootfsEntry> RootfsEntries(const HostLayout& layout) {
  std::vector<RootfsEntry> out;
  for (const char* dir : {"dev", "etc", "proc", "sbin", "sys", "tmp", "lever", "lever/code", "lever/run"}) {
    out.push_back({dir, ""});
  }
  for (const std::string& m : layout.mounts) out.push_back({m.substr(1), ""});
  for (const auto& [name, target] : layout.links) out.push_back({name, target});
  return out;
}

std::string RunnerTree(const std::string& runner) {
  std::string path = runner;
  if (char* real = realpath(runner.c_str(), nullptr)) {
    path = real;
    free(real);
  }
  for (int up = 0; up < 2; ++up) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) return "/";
    path.resize(slash);
  }
  return path;
}

User ContainerUser(const std::string& configured) {
  User u;
  if (!configured.empty()) {
    u.spec = configured;
    size_t colon = configured.find(':');
    u.uid = static_cast<uid_t>(std::strtoul(configured.c_str(), nullptr, 10));
    u.gid = colon == std::string::npos ? u.uid
                                       : static_cast<gid_t>(std::strtoul(configured.c_str() + colon + 1, nullptr, 10));
    if (colon == std::string::npos) u.spec += ":" + std::to_string(u.gid);
    return u;
  }
  if (geteuid() == 0) {
    u.uid = 65534;
    u.gid = 65534;
  } else {
    u.uid = geteuid();
    u.gid = getegid();
  }
  u.spec = std::to_string(u.uid) + ":" + std::to_string(u.gid);
  return u;
}

}  // namespace lever::host::docker
