// What a Lever instance's container is, as Docker Engine API JSON: pure
// functions, unit-tested in docker_test.cc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lever::host::docker {

// Inside every container.
inline constexpr const char* kContainerCodeDir = "/lever/code";   // the code, read-only; the working dir
inline constexpr const char* kContainerRunDir = "/lever/run";     // holds the instance's socket, s.sock
inline constexpr const char* kContainerGateway = "/lever/gateway.sock";  // LEVEROS_INTERNAL_RPC_GATEWAY
inline constexpr const char* kOwnerLabel = "lever.owner";         // the leverd's data dir

struct ContainerSpec {
  std::string image;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"
  std::string user;              // "uid:gid"
  std::vector<uint32_t> groups;  // supplementary gids (HostConfig.GroupAdd)
  std::string code_dir;          // host path → kContainerCodeDir, read-only
  std::string run_dir;           // host path → kContainerRunDir, read-write
  std::string gateway_socket;    // host path → kContainerGateway; may be empty
  std::vector<std::string> host_mounts;  // host dirs, read-only at the same path
  std::string network;
  int64_t memory_bytes = 0;
  int64_t pids_limit = 0;
  std::map<std::string, std::string> labels;
};

// The body of POST /containers/create: read-only root with a small /tmp
// tmpfs, every capability dropped, no-new-privileges, memory (no swap) and
// pids limits, no log driver (output comes from attach), the mounts above.
// Network "none" is NetworkDisabled too: a network namespace of its own with
// only loopback, made by runc, without dockerd's sandbox.
nlohmann::json CreateBody(const ContainerSpec& spec);

// The host's top level as the image must mirror it: real directories among
// /usr, /bin, /lib* are bind-mounted; symlinks (merged /usr: /bin → usr/bin)
// are copied into the image. /sbin is the image's own, empty but for
// dockerd's init.
struct HostLayout {
  std::vector<std::string> mounts;                          // "/usr", ...
  std::vector<std::pair<std::string, std::string>> links;   // {"bin", "usr/bin"}
};
HostLayout ReadHostLayout(const std::string& root);

// The entries of the image's rootfs tar, in order (no leading '/').
struct RootfsEntry {
  std::string path;
  std::string symlink_to;  // empty: a directory
};
std::vector<RootfsEntry> RootfsEntries(const HostLayout& layout);

// The tree a language runner runs from, mounted read-only: the parent of the
// directory holding the (symlink-resolved) runner, e.g. sdk/node for
// sdk/node/bin/lever-serve, a venv for <venv>/bin/lever-serve-py.
std::string RunnerTree(const std::string& runner);

struct User {
  std::string spec;  // "uid:gid"
  uid_t uid = 0;
  gid_t gid = 0;
};
// `configured` ("uid:gid" or "uid"), else 65534:65534 under root, else
// this process's uid:gid.
User ContainerUser(const std::string& configured);

}  // namespace lever::host::docker
