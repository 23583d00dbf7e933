// Runtimes start and stop one instance of a service. Registered by name in
// host/src/runtimes.cc: "process" (default; a child process with rlimits and
// cgroup v1 limits) and "docker" (a container on a dockerd, docs/docker.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lever/host/docker_runtime.h"
#include "lever/host/instance_ids.h"
#include "lever/host/lever_json.h"
#include "lever/status.h"

namespace lever::host {

// What to run. Built by the instance manager.
struct InstanceSpec {
  std::string env;
  std::string service;
  int64_t version = 0;
  std::string instance_id;        // 32 chars [A-Za-z0-9]
  std::string code_dir;           // absolute; the working directory
  LeverConfig config;             // of `version`
  std::string listen_path;        // absolute unix socket path the instance serves on
  std::string internal_gateway;   // "unix:/..." of the env's internal socket; may be empty
};

// The environment every runtime gives an instance: the LEVEROS_* variables,
// PATH, and the language runtimes' settings. `listen_addr` and
// `internal_gateway` are as the instance sees them ("unix:/..."); the gateway
// may be empty.
std::vector<std::string> InstanceEnvironment(const InstanceSpec& spec, const std::string& path,
                                             const std::string& listen_addr, const std::string& internal_gateway);

// Per-service users (ProcessRuntimeOptions::ids): gives the spec's code dir
// to the service's group (root:<gid> 0750; the files inside keep their modes,
// unreachable to others from there) and its env's internal socket, if any, to
// the env's group (root:<env gid> 0660; leverd makes it root:root 0660, and
// the env's id is known here). Idempotent; every runtime calls it at each
// start. Needs root.
Status GiveToService(const InstanceSpec& spec, const InstanceIdentity& id);

// The environment a language's runner ("js": `lever-serve`, "py":
// `lever-serve-py`) gets before it knows its service, when it is started
// ahead (ProcessRuntimeOptions::prestart): PATH and the settings that are the
// same for every service of that language. InstanceEnvironment includes them.
std::vector<std::string> RunnerEnvironment(std::string_view language, const std::string& path);

// One started instance. Thread contract: used only by the instance manager's
// supervisor thread.
class RunningInstance {
 public:
  virtual ~RunningInstance() = default;
  // 0 until known: a container's once dockerd has started it (its start
  // goes on after Runtime::Start returned).
  virtual int pid() const = 0;
  // Readable (EPOLLIN) once the instance has exited; owned by this object.
  virtual int exit_fd() const = 0;
  // The read ends of the instance's stdout and stderr (non-blocking), or -1.
  // Owned by this object; the caller may close them early with CloseOutput.
  virtual int stdout_fd() const = 0;
  virtual int stderr_fd() const = 0;
  virtual void CloseOutput() = 0;
  // Socket activation: the inode of the unix socket leverd bound at the
  // spec's listen_path and passed in as LEVEROS_LISTEN_FD, or 0 when the
  // instance binds its own (docker, or activation off). An instance that
  // ignores the fd re-makes the path: another inode.
  virtual uint64_t listen_socket_inode() const { return 0; }
  // Collects the exit status without blocking: true once exited, with the
  // wait(2) status in *wait_status.
  virtual bool Reap(int* wait_status) = 0;
  // Sends `sig` to the instance and everything it started.
  virtual void Signal(int sig) = 0;
  // Releases what the runtime holds for it (cgroups); call after Reap.
  virtual void Cleanup() = 0;
};

// A process a runtime prepared ahead of a start.
struct ParkedProcess {
  int pid = 0;
  // "": a child that waits to exec whatever the start runs; "js", "py": that
  // language's runner, exec'd already, that waits to be handed its service.
  std::string language;
  // A runner past its start-up (addon loaded); a plain child always is.
  bool ready = false;
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  // Thread contract: called from the supervisor thread only; returns at
  // once, never waiting on anything outside this machine's kernel (a docker
  // instance's create and start go on on its own thread, and a failure there
  // is an exit, status 127, its reason on the instance's stderr). Fails with
  // a clear message (e.g. the entry's executable is missing).
  virtual Status Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) = 0;
  // "process", "docker": for logs and listings.
  virtual const char* name() const = 0;
  // The processes prepared ahead for the next starts (for tests and
  // diagnostics); empty for runtimes without any.
  virtual std::vector<ParkedProcess> Parked() const { return {}; }
  // A service with `config` is deployed here and may start soon: a runtime
  // may prepare for it (the process runtime pre-starts its language's
  // runner). Thread contract: any thread.
  virtual void Expect(const LeverConfig& config) { (void)config; }
  // The instance id the next start of this version should have, because the
  // runtime prepared it ahead under that id (docker: a container created
  // ahead), or "" (the caller picks one). A non-empty id is reserved for one
  // Start() with that id, `code_dir` and the version's config; one never
  // started is released when the runtime goes. Thread contract: any thread,
  // under the service's lock (it takes only the runtime's leaf locks).
  virtual std::string ReservedInstanceId(const std::string& env, const std::string& service, int64_t version,
                                         const LeverConfig& config, const std::string& code_dir) {
    (void)env, (void)service, (void)version, (void)config, (void)code_dir;
    return "";
  }
};
using RuntimePtr = std::shared_ptr<Runtime>;

struct ProcessRuntimeOptions {
  // PATH given to instances and used to find an entry's argv[0] without a
  // '/'. Default "/usr/local/bin:/usr/bin:/bin".
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  // Executable that serves a jsEntry service (the Node SDK's `lever-serve`),
  // run as `<lever_serve> <jsEntry>` in the code dir. Empty: jsEntry services
  // fail to start with a clear error.
  std::string lever_serve;
  // The same for a pyEntry service: the Python SDK's `lever-serve-py`, run as
  // `<lever_serve_py> <pyEntry>`.
  std::string lever_serve_py;
  // cgroup v1 parents, e.g. "/sys/fs/cgroup/memory/lever". Empty: a
  // "lever-<pid>" child of this process's own cgroup of that controller, used
  // only where writable. "none": never use cgroups (rlimits instead).
  std::string memory_cgroup;
  std::string pids_cgroup;
  // Run instances as this user (a name or a numeric uid), with its primary
  // group and no supplementary groups. Empty: leverd's own user. Needs root.
  // The host then makes <data>/run writable for it (mode 01733); the data dir
  // itself must be searchable by that user.
  std::string user;
  // Per-service users (docs/security.md): each service's instances run as its
  // own uid and gid from this table, with its environment's group as their
  // one supplementary group; its code dir becomes root:<its gid> 0750 and the
  // env's internal socket root:<env gid> 0660 at each start. Plain children
  // are forked as root and switch at their order; runners started ahead run
  // as root (no new privileges, none of leverd's fds) until their hand-off,
  // where they switch themselves before loading any of the service's code.
  // Overrides `user`. Needs root. Default: none (one user for all, `user`).
  std::shared_ptr<InstanceIds> ids;
  // Processes and threads an instance may have (pids.max, or RLIMIT_NPROC).
  // Default 512. RLIMIT_NPROC counts every task of the user, and root ignores
  // it: the cgroup is the real bound; the rlimit is a best effort (with
  // `user` set, 64 times this, shared by all the instances of that user).
  int64_t max_pids = 512;
  // Processes prepared ahead, per kind, each in fresh memory and pids cgroups
  // (where cgroups are used) and running as `user`. Default 1; 0: start each
  // instance from scratch.
  // - Children forked ahead that wait to be told what to exec: joining a
  //   cgroup v1 hierarchy waits for an RCU grace period (~8 ms here), which a
  //   cold start then does not pay. Only where cgroups are (root). Each holds
  //   a copy-on-write view of leverd's memory, so it is replaced after
  //   `prestart_max_age`.
  // - Per language in use (one of its services started since the runtime was
  //   made, or named by Expect), its runner exec'd ahead with
  //   RunnerEnvironment, past the interpreter's start-up and its addon's
  //   load, waiting to be handed a service: its code dir, entry and
  //   environment (docs/operations.md, "Pre-started runtimes"). The first
  //   start of any service of that language takes one; the pool refills
  //   in the background, and replaces one that dies.
  int prestart = 1;
  // Socket activation: leverd makes each instance's listening socket at its
  // listen_path and passes it in as fd 3 (LEVEROS_LISTEN_FD=3,
  // LEVEROS_LISTEN_PID=<its pid>), so calls queue in the kernel until it
  // accepts. false: the instance binds LEVEROS_LISTEN_ADDR itself. Default true.
  bool socket_activation = true;
  std::chrono::steady_clock::duration prestart_max_age = std::chrono::seconds(60);
  // Where the runtime writes what an operator should see (e.g. a runner that
  // cannot be pre-started), one line each; may be empty. Called from the
  // runtime's own thread.
  std::function<void(std::string_view line)> log;
};

// Creates the "process" runtime: the entry runs in the code dir with a clean
// environment (the LEVEROS_* variables and PATH), its own process group,
// stdin on /dev/null, stdout/stderr on pipes, memory limited to ram MB
// (cgroup memory.limit_in_bytes, else RLIMIT_AS; jsEntry and pyEntry get no
// RLIMIT_AS, as their runtimes reserve far more address space than they use),
// pids limited (cgroup pids.max, else RLIMIT_NPROC), and SIGKILL if the
// thread that forked it dies (the supervisor's, or the runtime's own for the
// children it prepares ahead: options.prestart).
Status NewProcessRuntime(const ProcessRuntimeOptions& options, RuntimePtr* out);

// Creates the "docker" runtime: checks that dockerd answers, removes the
// containers a previous run of this leverd left (label lever.owner), and
// imports options.image when it is missing. Fails with a clear message when
// dockerd cannot be reached.
Status NewDockerRuntime(const DockerRuntimeOptions& options, RuntimePtr* out);

struct RuntimeOptions {
  ProcessRuntimeOptions process;
  DockerRuntimeOptions docker;
};

// Opens the runtime named `name` ("process", "docker"; unknown:
// INVALID_ARGUMENT) as the default, inside one that runs each service with
// the runtime its lever.json names ("runtime"), opening that one on first
// use.
Status OpenRuntime(std::string_view name, const RuntimeOptions& options, RuntimePtr* out);

}  // namespace lever::host
