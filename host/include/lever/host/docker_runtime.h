// The "docker" runtime (docs/docker.md): each instance is a container on a
// dockerd, driven over the Docker Engine API on its unix socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lever/host/instance_ids.h"
#include "lever/status.h"

namespace lever::host {

struct DockerRuntimeOptions {
  // dockerd's API socket: unix:///path. Default unix:///var/run/docker.sock.
  std::string host = "unix:///var/run/docker.sock";
  // Image the containers run. Made by leverd when missing: an image imported
  // from a minimal rootfs of mount points (and the host's /bin, /lib...
  // symlinks), onto which the host's runtime directories are bind-mounted
  // read-only. Default "lever-rootfs:1".
  std::string image = "lever-rootfs:1";
  // HostConfig.NetworkMode: "bridge" (default), "none", "host" or a network
  // name. The instance's socket reaches leverd through a bind-mounted
  // directory whatever the network.
  std::string network = "bridge";
  // Host directories bind-mounted read-only at the same path in every
  // container, beside /usr (and /lib*, /bin, /sbin when they are real
  // directories) and the language runners' own trees, which are always
  // mounted. E.g. the build tree whose liblever a service links.
  std::vector<std::string> mounts;
  // The container user, "uid:gid". Empty: 65534:65534 (nobody) when leverd
  // is root, else leverd's own uid:gid (so that leverd can connect to the
  // sockets instances create).
  std::string user;
  // Per-service users, shared with the process runtime
  // (ProcessRuntimeOptions::ids): a container runs as its service's uid:gid
  // with its env's group added (HostConfig.GroupAdd), its code dir is
  // root:<svc gid> 0750 and the env's internal socket root:<env gid> 0660,
  // as for process instances. Overrides `user`. Null: `user` for all.
  std::shared_ptr<InstanceIds> ids;
  // Set by the host: the label value (lever.owner) that marks this leverd's
  // containers, its data dir; and the dir instance sockets live in.
  std::string owner;
  std::string run_dir;
  // The runners of jsEntry and pyEntry services (as for "process"); their
  // trees are mounted read-only.
  std::string lever_serve;
  std::string lever_serve_py;
  // PATH in the container. Default "/usr/local/bin:/usr/bin:/bin".
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  // pids limit (HostConfig.PidsLimit). Default 512.
  int64_t max_pids = 512;
  // false (default): NewDockerRuntime checks dockerd at once (it answers,
  // this leverd's leftover containers, the image) and fails if it cannot.
  // true: it makes no API call; the checks run on the thread of the first
  // instance that starts (again on later starts until they pass), and a
  // failure is that instance's exit. Set by the runtime registry
  // (runtimes.cc) for a runtime opened on a service's first start, which
  // happens on the supervisor's thread.
  bool check_on_first_start = false;
  // Containers created ahead: once an instance of a version has started,
  // the container for that service's next start is created (not started) on
  // the runtime's own thread, under an instance id of its own, which the
  // next start of that version takes (Runtime::ReservedInstanceId): a cold
  // start then only attaches and starts. One per service (its latest
  // version's); removed when the runtime goes, and at leverd's next start if
  // it was killed. Default true.
  bool create_ahead = true;
};

}  // namespace lever::host
