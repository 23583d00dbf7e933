// The "process" runtime: an instance is a child process group of leverd.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "lever/host/runtime.h"
#include "util.h"

namespace lever::host {
namespace {

// A cgroup v1 controller hierarchy we may create children in.
class CgroupParent {
 public:
  // `setting`: "" (auto: child of our own cgroup), "none", or a path.
  void Init(const std::string& controller, const std::string& setting) {
    if (setting == "none") return;
    std::string base = setting;
    if (base.empty()) {
      std::string own = OwnCgroup(controller);
      if (own.empty()) return;
      std::string mount = "/sys/fs/cgroup/" + controller;
      if (own == "/") own.clear();
      base = mount + own + "/lever-" + std::to_string(getpid());
    }
    if (setting.empty()) RemoveStale(base.substr(0, base.rfind('/')));
    if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) return;
    // Probe: a child we can create and remove.
    std::string probe = base + "/probe-" + RandomId(8);
    if (mkdir(probe.c_str(), 0755) != 0) {
      rmdir(base.c_str());
      return;
    }
    rmdir(probe.c_str());
    base_ = base;
    owns_base_ = setting.empty();
  }
  ~CgroupParent() {
    if (owns_base_) rmdir(base_.c_str());
  }
  bool usable() const { return !base_.empty(); }
  // Creates the instance's cgroup and writes `settings` (file, value) into
  // it. Returns its path, or "" when unusable/failed.
  std::string Create(const std::string& name, const std::vector<std::pair<std::string, std::string>>& settings) {
    if (base_.empty()) return "";
    std::string dir = base_ + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) return "";
    for (const auto& [file, value] : settings) {
      std::string path = dir + "/" + file;
      int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) continue;  // optional knob (e.g. memsw without swap accounting)
      ssize_t n = write(fd, value.data(), value.size());
      close(fd);
      if (n < 0 && file == settings.front().first) {
        rmdir(dir.c_str());
        return "";
      }
    }
    return dir;
  }
  static void Remove(const std::string& dir) {
    if (dir.empty()) return;
    // Anything left in it (a daemonised grandchild) is killed first.
    for (int attempt = 0; attempt < 100; ++attempt) {
      if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
      std::ifstream procs(dir + "/cgroup.procs");
      pid_t p;
      bool any = false;
      while (procs >> p) {
        kill(p, SIGKILL);
        any = true;
      }
      if (!any && errno != EBUSY) return;
      sched_yield();
    }
  }

 private:
  // Removes the empty "lever-<pid>" cgroups of leverd processes that died.
  static void RemoveStale(const std::string& parent) {
    DIR* d = opendir(parent.c_str());
    if (!d) return;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("lever-", 0) != 0) continue;
      pid_t owner = static_cast<pid_t>(std::atoi(name.c_str() + 6));
      if (owner <= 0 || owner == getpid() || kill(owner, 0) == 0 || errno != ESRCH) continue;
      std::string dir = parent + "/" + name;
      if (DIR* sub = opendir(dir.c_str())) {
        while (struct dirent* c = readdir(sub)) {
          if (c->d_type == DT_DIR && c->d_name[0] != '.') Remove(dir + "/" + c->d_name);
        }
        closedir(sub);
      }
      rmdir(dir.c_str());
    }
    closedir(d);
  }

  static std::string OwnCgroup(const std::string& controller) {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      // "4:memory:/path"
      size_t a = line.find(':');
      size_t b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b == std::string::npos) continue;
      std::string controllers = line.substr(a + 1, b - a - 1);
      std::stringstream ss(controllers);
      std::string c;
      while (std::getline(ss, c, ',')) {
        if (c == controller) return line.substr(b + 1);
      }
    }
    return "";
  }

  std::string base_;
  bool owns_base_ = false;
};

class ProcessInstance final : public RunningInstance {
 public:
  ProcessInstance(pid_t pid, int pidfd, int out, int err, std::string mem_cg, std::string pids_cg)
      : pid_(pid), pidfd_(pidfd), out_(out), err_(err), mem_cg_(std::move(mem_cg)), pids_cg_(std::move(pids_cg)) {}
  ~ProcessInstance() override {
    if (!reaped_) {
      Signal(SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
      reaped_ = true;
    }
    CloseOutput();
    if (pidfd_ >= 0) close(pidfd_);
    Cleanup();
  }
  int pid() const override { return pid_; }
  int exit_fd() const override { return pidfd_; }
  int stdout_fd() const override { return out_; }
  int stderr_fd() const override { return err_; }
  void CloseOutput() override {
    if (out_ >= 0) close(out_);
    if (err_ >= 0) close(err_);
    out_ = err_ = -1;
  }
  bool Reap(int* wait_status) override {
    if (reaped_) {
      *wait_status = status_;
      return true;
    }
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = st;
      *wait_status = st;
      // The group may outlive its leader: take it down too.
      kill(-pid_, SIGKILL);
      return true;
    }
    return false;
  }
  void Signal(int sig) override {
    if (reaped_) {
      kill(-pid_, sig);  // stragglers of the group, if any
      return;
    }
    // pidfd_send_signal cannot hit a recycled pid; the group gets it too.
    syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
    kill(-pid_, sig);
  }
  void Cleanup() override {
    CgroupParent::Remove(mem_cg_);
    CgroupParent::Remove(pids_cg_);
    mem_cg_.clear();
    pids_cg_.clear();
  }

 private:
  pid_t pid_;
  int pidfd_;
  int out_, err_;
  std::string mem_cg_, pids_cg_;
  bool reaped_ = false;
  int status_ = 0;
};

class ProcessRuntime final : public Runtime {
 public:
  ProcessRuntime(ProcessRuntimeOptions options, uid_t uid, gid_t gid, bool drop)
      : options_(std::move(options)), uid_(uid), gid_(gid), drop_(drop) {
    memory_.Init("memory", options_.memory_cgroup);
    pids_.Init("pids", options_.pids_cgroup);
  }
  const char* name() const override { return "process"; }

  Status Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) override;

 private:
  Status Resolve(const InstanceSpec& spec, std::vector<std::string>* argv, std::string* exe) const;

  const ProcessRuntimeOptions options_;
  const uid_t uid_;
  const gid_t gid_;
  const bool drop_;  // switch to uid_/gid_ in the child
  CgroupParent memory_;
  CgroupParent pids_;
};

Status ProcessRuntime::Resolve(const InstanceSpec& spec, std::vector<std::string>* argv,
                               std::string* exe) const {
  // A language entry runs as `<runner> <entry>` in the code dir.
  struct Runner {
    const std::string& entry;
    const std::string& path;
    const char* what;  // for messages
  };
  for (const Runner& r : {Runner{spec.config.js_entry, options_.lever_serve,
                                 "a jsEntry but no Node runtime is configured (the lever-serve executable of "
                                 "the Node SDK; leverd --js-runner)"},
                          Runner{spec.config.py_entry, options_.lever_serve_py,
                                 "a pyEntry but no Python runtime is configured (the lever-serve-py executable "
                                 "of the Python SDK; leverd --py-runner)"}}) {
    if (r.entry.empty()) continue;
    if (r.path.empty()) return Status(Code::kFailedPrecondition, std::string("service has ") + r.what);
    if (access(r.path.c_str(), X_OK) != 0) {
      return Status(Code::kFailedPrecondition, "runner " + r.path + ": " + std::strerror(errno));
    }
    *argv = {r.path, r.entry};
    *exe = r.path;
    return Status::Ok();
  }
  if (spec.config.entry.empty() || spec.config.entry[0].empty()) {
    return InvalidArgument("lever.json entry is empty");
  }
  *argv = spec.config.entry;
  const std::string& cmd = spec.config.entry[0];
  if (cmd.find('/') != std::string::npos) {
    *exe = cmd[0] == '/' ? cmd : spec.code_dir + "/" + cmd;
    if (access(exe->c_str(), X_OK) != 0) {
      return Status(Code::kFailedPrecondition, "entry " + cmd + ": " + std::strerror(errno));
    }
    return Status::Ok();
  }
  std::stringstream path(options_.path);
  std::string dir;
  while (std::getline(path, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + cmd;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0) {
      *exe = candidate;
      return Status::Ok();
    }
  }
  return Status(Code::kFailedPrecondition, "entry " + cmd + ": not found in PATH " + options_.path);
}

Status ProcessRuntime::Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) {
  std::vector<std::string> argv_s;
  std::string exe;
  Status s = Resolve(spec, &argv_s, &exe);
  if (!s.ok()) return s;

  std::vector<std::string> env_s = {
      "LEVEROS_ENVIRONMENT=" + spec.env,
      "LEVEROS_SERVICE=" + spec.service,
      "LEVEROS_INSTANCE_ID=" + spec.instance_id,
      "LEVEROS_CODE_VERSION=" + std::to_string(spec.version),
      "LEVEROS_INTERNAL_ENV_SUFFIX=.lever",
      "LEVEROS_LISTEN_ADDR=unix:" + spec.listen_path,
      "PATH=" + options_.path,
  };
  if (!spec.internal_gateway.empty()) env_s.push_back("LEVEROS_INTERNAL_RPC_GATEWAY=" + spec.internal_gateway);
  if (!spec.config.js_entry.empty()) {
    // The original gave node --max_old_space_size=int(ram*0.9).
    env_s.push_back("NODE_OPTIONS=--max-old-space-size=" + std::to_string(spec.config.ram_mb * 9 / 10));
  }
  if (!spec.config.py_entry.empty()) {
    // Output reaches `lever logs` line by line; the code dir is not ours to
    // litter with __pycache__ (and is read-only for another user).
    env_s.push_back("PYTHONUNBUFFERED=1");
    env_s.push_back("PYTHONDONTWRITEBYTECODE=1");
  }
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  uint64_t ram_bytes = static_cast<uint64_t>(spec.config.ram_mb) * 1000 * 1000;
  std::string cg_name = spec.instance_id;
  std::string mem_cg = memory_.Create(cg_name, {{"memory.limit_in_bytes", std::to_string(ram_bytes)},
                                                {"memory.memsw.limit_in_bytes", std::to_string(ram_bytes)},
                                                {"memory.swappiness", "0"}});
  std::string pids_cg = pids_.Create(cg_name, {{"pids.max", std::to_string(options_.max_pids)}});
  auto open_procs = [](const std::string& dir) {
    return dir.empty() ? -1 : open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  };
  int mem_procs = open_procs(mem_cg);
  int pids_procs = open_procs(pids_cg);
  // V8 and CPython's per-thread malloc arenas reserve far more address space
  // than they use: language runtimes get no RLIMIT_AS.
  bool limit_as = mem_procs < 0 && spec.config.js_entry.empty() && spec.config.py_entry.empty();
  bool limit_nproc = pids_procs < 0;
  struct rlimit as_limit = {ram_bytes, ram_bytes};
  struct rlimit nproc_limit = {static_cast<rlim_t>(options_.max_pids), static_cast<rlim_t>(options_.max_pids)};

  auto fail_cleanup = [&](Status st) {
    if (mem_procs >= 0) close(mem_procs);
    if (pids_procs >= 0) close(pids_procs);
    CgroupParent::Remove(mem_cg);
    CgroupParent::Remove(pids_cg);
    return st;
  };
  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return fail_cleanup(ErrnoStatus("pipe", errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return fail_cleanup(ErrnoStatus("pipe", errno));
  }
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return fail_cleanup(ErrnoStatus("pipe", errno));
  }
  const char* code_dir = spec.code_dir.c_str();
  const bool drop = drop_;
  const uid_t uid = uid_;
  const gid_t gid = gid_;
  const char* exe_c = exe.c_str();
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    int err_step = 0;
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    setpgid(0, 0);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (mem_procs >= 0) (void)!write(mem_procs, "0\n", 2);
    if (pids_procs >= 0) (void)!write(pids_procs, "0\n", 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_pipe[1], 1) < 0 || dup2(err_pipe[1], 2) < 0) {
      err_step = 1;
    } else if (chdir(code_dir) != 0) {
      err_step = 2;
    } else if (limit_as && setrlimit(RLIMIT_AS, &as_limit) != 0) {
      err_step = 3;
    } else if (limit_nproc && setrlimit(RLIMIT_NPROC, &nproc_limit) != 0) {
      err_step = 3;
    } else if (drop && (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
      err_step = 5;
    } else {
      syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
      execve(exe_c, argv.data(), envp.data());
      err_step = 4;
    }
    int report[2] = {err_step, errno};
    (void)!write(exec_pipe[1], report, sizeof report);
    _exit(127);
  }
  int fork_errno = errno;
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(exec_pipe[1]);
  if (mem_procs >= 0) close(mem_procs);
  if (pids_procs >= 0) close(pids_procs);
  mem_procs = pids_procs = -1;
  if (pid < 0) {
    for (int fd : {out_pipe[0], err_pipe[0], exec_pipe[0]}) close(fd);
    return fail_cleanup(ErrnoStatus("fork", fork_errno));
  }
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(exec_pipe[0], report, sizeof report);
  } while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n > 0) {
    int st;
    waitpid(pid, &st, 0);
    close(out_pipe[0]);
    close(err_pipe[0]);
    static const char* kSteps[] = {"",     "redirecting output", "chdir to the code dir", "setting limits",
                                   "exec", "switching user"};
    return fail_cleanup(Status(Code::kFailedPrecondition, std::string("cannot start ") + argv_s[0] + ": " +
                                                              kSteps[report[0] >= 1 && report[0] <= 5 ? report[0] : 4] + ": " +
                                                              std::strerror(report[1])));
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int err = errno;
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return fail_cleanup(ErrnoStatus("pidfd_open", err));
  }
  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
  *out = std::make_unique<ProcessInstance>(pid, pidfd, out_pipe[0], err_pipe[0], mem_cg, pids_cg);
  return Status::Ok();
}

}  // namespace

Status NewProcessRuntime(const ProcessRuntimeOptions& options, RuntimePtr* out) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  bool drop = false;
  if (!options.user.empty()) {
    std::vector<char> buf(16384);
    struct passwd pw;
    struct passwd* found = nullptr;
    getpwnam_r(options.user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (!found && options.user.find_first_not_of("0123456789") == std::string::npos) {
      getpwuid_r(static_cast<uid_t>(std::stoul(options.user)), &pw, buf.data(), buf.size(), &found);
    }
    if (!found) return InvalidArgument("instance user \"" + options.user + "\" not found");
    if (geteuid() != 0 && found->pw_uid != geteuid()) {
      return Status(Code::kPermissionDenied, "running instances as " + options.user + " needs root");
    }
    uid = found->pw_uid;
    gid = found->pw_gid;
    drop = true;
  }
  *out = std::make_shared<ProcessRuntime>(options, uid, gid, drop);
  return Status::Ok();
}

}  // namespace lever::host
