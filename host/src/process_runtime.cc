// The "process" runtime: an instance is a child process group of leverd.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "lever/host/runtime.h"
#include "util.h"

namespace lever::host {
namespace {

// Without a pids cgroup, instances under one --instance-user get an
// RLIMIT_NPROC of this many times max_pids, all together.
constexpr uint64_t kSharedUserInstances = 64;

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
  // Creates a child cgroup. Returns its path, or "" when unusable/failed.
  std::string Make(const std::string& name) {
    if (base_.empty()) return "";
    std::string dir = base_ + "/" + name;
    return mkdir(dir.c_str(), 0755) == 0 ? dir : "";
  }
  // Writes `settings` (file, value) into `dir`. False (errno set) if the
  // first fails; the others are optional knobs (e.g. memsw without swap
  // accounting).
  static bool Write(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& settings) {
    for (const auto& [file, value] : settings) {
      std::string path = dir + "/" + file;
      int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      ssize_t n = fd < 0 ? -1 : write(fd, value.data(), value.size());
      int err = errno;
      if (fd >= 0) close(fd);
      if (n < 0 && file == settings.front().first) {
        errno = err;
        return false;
      }
    }
    return true;
  }
  // Renames `dir` within its parent; its new path, or "" (errno set).
  static std::string Rename(const std::string& dir, const std::string& name) {
    std::string to = dir.substr(0, dir.rfind('/') + 1) + name;
    return rename(dir.c_str(), to.c_str()) == 0 ? to : "";
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


// The order a prepared child reads before it execs: this header, then
// NUL-terminated strings: the executable, the working dir, argv, envp.
struct OrderHeader {
  uint32_t size;  // of the whole order
  uint32_t argc;
  uint32_t envc;
  uint32_t flags;
  uint64_t as_limit;
  uint64_t nproc_limit;
  // kIdentity: the user, group and supplementary group to switch to
  // (ProcessRuntimeOptions::ids). A runner started ahead runs as root until
  // then and switches itself (sdk/node/bin/lever-serve, leveros.serve).
  uint32_t uid;
  uint32_t gid;
  uint32_t group;
  uint32_t reserved;
};
static_assert(sizeof(OrderHeader) == 48);  // the runners read it at these offsets
constexpr uint32_t kLimitAs = 1;
constexpr uint32_t kLimitNproc = 2;
constexpr uint32_t kListenSocket = 4;  // the order carries the listening socket (SCM_RIGHTS)
constexpr uint32_t kIdentity = 8;
constexpr size_t kMaxOrder = 64 << 10;
constexpr size_t kMaxOrderStrings = 1024;

struct Order {
  std::string exe, dir;
  const std::vector<std::string>* argv = nullptr;
  const std::vector<std::string>* env = nullptr;
  uint32_t flags = 0;
  uint64_t as_limit = 0, nproc_limit = 0;
  InstanceIdentity identity;  // with kIdentity
};

bool EncodeOrder(const Order& o, std::string* out) {
  if (o.argv->empty() || o.argv->size() + o.env->size() > kMaxOrderStrings) return false;
  OrderHeader h{};
  h.argc = static_cast<uint32_t>(o.argv->size());
  h.envc = static_cast<uint32_t>(o.env->size());
  h.flags = o.flags;
  h.as_limit = o.as_limit;
  h.nproc_limit = o.nproc_limit;
  h.uid = o.identity.uid;
  h.gid = o.identity.gid;
  h.group = o.identity.env_gid;
  std::string body;
  for (const std::string* str : {&o.exe, &o.dir}) body.append(str->c_str(), str->size() + 1);
  for (const std::vector<std::string>* list : {o.argv, o.env}) {
    for (const std::string& str : *list) {
      if (str.find('\0') != std::string::npos) return false;
      body.append(str.c_str(), str.size() + 1);
    }
  }
  if (sizeof h + body.size() > kMaxOrder) return false;
  h.size = static_cast<uint32_t>(sizeof h + body.size());
  out->assign(reinterpret_cast<const char*>(&h), sizeof h);
  out->append(body);
  return true;
}

// The fds a child keeps: all >= 3 (AboveStdio), so that dup2 onto 0-2
// cannot clobber one.
struct ChildFds {
  int mem_procs = -1, pids_procs = -1;  // cgroup.procs to join, closed once joined
  int order = -1;                        // reads its Order here
  int report = -1;                       // O_CLOEXEC: closes at exec; a failed step writes {step, errno}
  int out = -1, err = -1;                // its stdout and stderr
};

// A language's runner exec'd ahead (Kind kNode, kPython): what it execs,
// made before the fork (the child allocates nothing). It gets the order
// socket as fd 3 (kRunnerOrderFd) and reads its Order there itself. A plain
// child's entry gets its listening socket as fd 3 instead (socket
// activation: LEVEROS_LISTEN_FD).
struct RunnerExec {
  const char* exe = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  uint32_t flags = 0;  // kLimitNproc: the rlimit is the runtime's, the same for every service
  uint64_t nproc_limit = 0;
  int nice = 0;  // while it starts and waits (kRunnerNice)
};
constexpr int kRunnerOrderFd = 3;
constexpr int kListenFd = 3;
// A runner starts in the background: under this nice value, the start-up of
// the pool's refill does not take the CPU from the instance whose start
// emptied the pool. Its threads are set back to 0 at hand-off, which takes
// CAP_SYS_NICE: only a root leverd does it.
constexpr int kRunnerNice = 10;

int AboveStdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return moved;
}

// The forked child's last steps: stdio, working dir, limits, user, exec (of
// the entry, or of a runner), with `fd3` (a runner's order socket, an
// entry's listening socket, or none: -1) as the one fd it inherits, fd 3.
// Reports the step that failed.
[[noreturn]] void BecomeAndExec(ChildFds fds, pid_t parent, bool drop, uid_t uid, gid_t gid, gid_t group,
                                const char* exe, const char* dir, char* const argv[], char* const envp[],
                                uint32_t flags, uint64_t as, uint64_t nproc, int fd3) {
  int err_step = 0;
  struct rlimit as_limit = {as, as};
  struct rlimit nproc_limit = {nproc, nproc};
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(fds.out, 1) < 0 || dup2(fds.err, 2) < 0) {
    err_step = 1;
  } else if (chdir(dir) != 0) {
    err_step = 2;
  } else if ((flags & kLimitAs) && setrlimit(RLIMIT_AS, &as_limit) != 0) {
    err_step = 3;
  } else if ((flags & kLimitNproc) && setrlimit(RLIMIT_NPROC, &nproc_limit) != 0) {
    err_step = 3;
  } else if (drop && (setgroups(group != 0 ? 1 : 0, &group) != 0 || setgid(gid) != 0 || setuid(uid) != 0 ||
                      getuid() != uid || geteuid() != uid)) {
    err_step = 5;
  } else {
    // A change of credentials clears the parent-death signal: set it again.
    if (drop) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
    }
    syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
    if (fd3 >= 0) {
      // The report pipe must stay open until the exec: off fd 3 first.
      if (fds.report == 3 && fd3 != 3) fds.report = fcntl(fds.report, F_DUPFD_CLOEXEC, 4);
      if (fds.report < 0 || (fd3 == 3 ? fcntl(fd3, F_SETFD, 0) : dup2(fd3, 3)) < 0) err_step = 1;
    }
    if (err_step == 0) {
      execve(exe, argv, envp);
      err_step = 4;
    }
  }
  int report[2] = {err_step, errno};
  (void)!write(fds.report, report, sizeof report);
  _exit(127);
}

// The forked child, up to exec: async-signal-safe calls only (leverd's other
// threads may hold any lock), no allocation. Without `runner` it waits for
// its Order and execs it; with one it execs the runner at once.
[[noreturn]] void ChildMain(const ChildFds& fds, pid_t parent, bool drop, uid_t uid, gid_t gid,
                            const RunnerExec* runner) {
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
  // Joining a cgroup v1 hierarchy waits for an RCU grace period (~8 ms
  // here): the reason children are prepared ahead (ProcessRuntimeOptions::prestart).
  if (fds.mem_procs >= 0) (void)!write(fds.mem_procs, "0\n", 2);
  if (fds.pids_procs >= 0) (void)!write(fds.pids_procs, "0\n", 2);
  // Only our four fds stay open: a parked child must not keep leverd's
  // sockets and files alive.
  int keep[4] = {fds.order, fds.report, fds.out, fds.err};
  for (int i = 1; i < 4; ++i) {
    for (int j = i; j > 0 && keep[j - 1] > keep[j]; --j) std::swap(keep[j - 1], keep[j]);
  }
  unsigned next = 3;
  for (int fd : keep) {
    if (static_cast<unsigned>(fd) > next) syscall(SYS_close_range, next, static_cast<unsigned>(fd) - 1, 0u);
    next = static_cast<unsigned>(fd) + 1;
  }
  syscall(SYS_close_range, next, ~0u, 0u);
  // A runner starts in "/": nothing of leverd's, nothing of a service's yet.
  if (runner) {
    static_assert(kRunnerOrderFd == 3);
    if (runner->nice != 0) setpriority(PRIO_PROCESS, 0, runner->nice);
    BecomeAndExec(fds, parent, drop, uid, gid, 0, runner->exe, "/", runner->argv, runner->envp, runner->flags, 0,
                  runner->nproc_limit, fds.order);
  }

  static_assert(sizeof(OrderHeader) % 8 == 0);
  alignas(8) char buf[kMaxOrder];
  OrderHeader h{};
  size_t have = 0;
  int listen_fd = -1;  // the listening socket, if the order carries one
  while (true) {
    iovec iov = {buf + have, sizeof buf - have};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fds.order, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)) &&
          listen_fd < 0) {
        std::memcpy(&listen_fd, CMSG_DATA(c), sizeof listen_fd);
      }
    }
    if (n <= 0) _exit(have == 0 ? 0 : 127);  // EOF before an order: not needed after all
    have += static_cast<size_t>(n);
    if (have < sizeof h) continue;
    std::memcpy(&h, buf, sizeof h);
    if (h.size < sizeof h || h.size > sizeof buf || h.argc == 0 || h.argc + h.envc > kMaxOrderStrings) _exit(127);
    if (have >= h.size) break;
  }
  close(fds.order);
  if ((h.flags & kListenSocket) != 0 && listen_fd < 0) _exit(127);
  char* strings[kMaxOrderStrings + 2];
  char* p = buf + sizeof h;
  char* end = buf + h.size;
  for (uint32_t i = 0; i < h.argc + h.envc + 2; ++i) {
    auto* nul = static_cast<char*>(std::memchr(p, '\0', static_cast<size_t>(end - p)));
    if (!nul) _exit(127);
    strings[i] = p;
    p = nul + 1;
  }
  char* argv[kMaxOrderStrings + 1];
  char* envp[kMaxOrderStrings + 1];
  for (uint32_t i = 0; i < h.argc; ++i) argv[i] = strings[2 + i];
  argv[h.argc] = nullptr;
  for (uint32_t i = 0; i < h.envc; ++i) envp[i] = strings[2 + h.argc + i];
  envp[h.envc] = nullptr;
  // A per-service identity comes with the order (the child was forked as
  // root, before its service was known).
  gid_t group = 0;
  if (h.flags & kIdentity) {
    if (h.uid == 0 || h.gid == 0) _exit(127);
    drop = true;
    uid = h.uid;
    gid = h.gid;
    group = h.group;
  }
  BecomeAndExec(fds, parent, drop, uid, gid, group, strings[0], strings[1], argv, envp, h.flags, h.as_limit,
                h.nproc_limit, listen_fd);
}

// A forked child of leverd up to its exec: in its own cgroups, waiting for
// its Order.
// What a prepared process is: a plain child that execs any entry, or a
// language's runner exec'd already.
enum Kind : int { kPlain = 0, kNode = 1, kPython = 2 };
constexpr int kKinds = 3;
constexpr const char* kKindLanguage[kKinds] = {"", "js", "py"};
constexpr const char* kKindRuntime[kKinds] = {"", "Node", "Python"};

struct Child {
  Kind kind = kPlain;
  pid_t pid = -1;
  int pidfd = -1;
  int order = -1;   // our end of the order socket
  int report = -1;  // the report pipe's read end, until the exec
  int out = -1, err = -1;
  std::string mem_cg, pids_cg;
  std::chrono::steady_clock::time_point born;
  bool ready = false;  // a runner that reported the end of its start-up
};

class ProcessInstance final : public RunningInstance {
 public:
  ProcessInstance(pid_t pid, int pidfd, int out, int err, std::string mem_cg, std::string pids_cg,
                  uint64_t listen_inode)
      : pid_(pid),
        pidfd_(pidfd),
        out_(out),
        err_(err),
        mem_cg_(std::move(mem_cg)),
        pids_cg_(std::move(pids_cg)),
        listen_inode_(listen_inode) {}
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
  uint64_t listen_socket_inode() const override { return listen_inode_; }
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
  const uint64_t listen_inode_;
  bool reaped_ = false;
  int status_ = 0;
};

class ProcessRuntime final : public Runtime {
 public:
  ProcessRuntime(ProcessRuntimeOptions options, uid_t uid, gid_t gid, bool drop)
      : options_(std::move(options)), uid_(uid), gid_(gid), drop_(drop) {
    memory_.Init("memory", options_.memory_cgroup);
    pids_.Init("pids", options_.pids_cgroup);
    runners_[kNode] = options_.lever_serve;
    runners_[kPython] = options_.lever_serve_py;
    // Plain children pay off where joining cgroups is what costs; runners
    // everywhere (their start-up is what costs), once their language is in use.
    pools_[kPlain].wanted = memory_.usable() || pids_.usable();
    if (options_.prestart > 0) {
      pool_wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (pool_wake_ >= 0) pool_thread_ = std::thread([this] { PoolLoop(); });
    }
  }
  ~ProcessRuntime() override {
    if (pool_thread_.joinable()) {
      {
        std::lock_guard lock(pool_mu_);
        pool_stop_ = true;
      }
      Wake();
      pool_thread_.join();
    }
    for (Pool& pool : pools_) {
      for (Child& c : pool.parked) Discard(std::move(c), false);
    }
    if (pool_wake_ >= 0) close(pool_wake_);
  }
  const char* name() const override { return "process"; }

  Status Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) override;
  std::vector<ParkedProcess> Parked() const override;
  void Expect(const LeverConfig& config) override { Want(KindOf(config)); }

 private:
  // Prepared processes of one kind.
  struct Pool {
    std::vector<Child> parked;
    bool wanted = false;  // plain: cgroups in use; a runner: its language is
    // Runners in a row that failed to exec or died before they were ready;
    // the next is started at once after one, then later and later.
    int failures = 0;
    bool given_up = false;  // after kMaxRunnerFailures
    std::chrono::steady_clock::time_point retry_at = std::chrono::steady_clock::time_point::min();
  };
  static constexpr int kMaxRunnerFailures = 5;

  static Kind KindOf(const LeverConfig& config) {
    if (!config.js_entry.empty()) return kNode;
    if (!config.py_entry.empty()) return kPython;
    return kPlain;
  }
  Status Resolve(const InstanceSpec& spec, std::vector<std::string>* argv, std::string* exe) const;
  // Forks a child that joins fresh cgroups and waits for its order (kPlain),
  // or execs that kind's runner, which waits for its order itself.
  Status Fork(Kind kind, Child* child);
  // Names its cgroups after the instance, sets their limits and sends the
  // order, with `listen` (the instance's listening socket, or none).
  // ABORTED if the child was already dead, or (a runner) cannot take this
  // instance.
  Status Hand(const InstanceSpec& spec, const InstanceIdentity& id, const std::string& exe,
              const std::vector<std::string>& argv, const std::vector<std::string>& env, const ListenSocket& listen,
              Child* child, std::unique_ptr<RunningInstance>* out);
  // Instances share one uid (the instance user, or a service's own): the
  // RLIMIT_NPROC fallback bounds them together.
  uint64_t NprocLimit() const {
    return static_cast<uint64_t>(options_.max_pids) * (drop_ || options_.ids ? kSharedUserInstances : 1);
  }
  // Waits for the child's exec: "" once done, else the step that failed.
  static std::string ReadReport(Child* child, const char* chdir_step);
  // The started child becomes the instance.
  static Status Finish(Child* child, uint64_t listen_inode, std::unique_ptr<RunningInstance>* out);
  void Discard(Child child, bool reaped);
  // A parked runner of `kind`, else a parked plain child.
  bool TakeParked(Kind kind, Child* child);
  void Want(Kind kind);
  void Wake();
  void PoolLoop();
  // Pool thread, pool_mu_ held: a runner of `kind` failed; `why` for the
  // log (written once pool_mu_ is released).
  void RunnerFailed(Kind kind, const std::string& why);

  const ProcessRuntimeOptions options_;
  const uid_t uid_;
  const gid_t gid_;
  const bool drop_;  // switch to uid_/gid_ in the child
  CgroupParent memory_;
  CgroupParent pids_;
  std::string runners_[kKinds];  // by Kind; "" for kPlain and for a language without a runner

  // Processes prepared ahead by pool_thread_ (options_.prestart of each kind).
  mutable std::mutex pool_mu_;
  Pool pools_[kKinds];      // guarded by pool_mu_
  bool pool_stop_ = false;  // guarded by pool_mu_
  std::vector<std::string> unlogged_;  // guarded by pool_mu_: logged once it is released
  int pool_wake_ = -1;      // eventfd: a take, a wanted kind, or stop
  std::thread pool_thread_;
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
  InstanceIdentity id;
  if (options_.ids) {
    // Per-service users: the service's identity, and its code dir and env
    // socket made reachable by it alone.
    if (s = options_.ids->ForService(spec.env, spec.service, &id); !s.ok()) return s;
    if (s = GiveToService(spec, id); !s.ok()) return s;
  }

  std::vector<std::string> env_s =
      InstanceEnvironment(spec, options_.path, "unix:" + spec.listen_path, spec.internal_gateway);

  // A parked runner of its language if there is one (past its start-up), a
  // parked child (its cgroup attach done), else a child forked now. Each is
  // handed the same order.
  Kind kind = KindOf(spec.config);
  Want(kind);
  Child child;
  bool parked = TakeParked(kind, &child);
  if (!parked) {
    if (Status f = Fork(kPlain, &child); !f.ok()) return f;
  }
  // Socket activation, for a plain child and a runner started ahead alike
  // (lever-serve and lever-serve-py move the socket that rides on their order
  // to LEVEROS_LISTEN_FD): leverd can connect at once, and the connection
  // queues in the kernel until the instance accepts. Our copy closes when the start is over: the
  // instance has its own. The instance's user owns the path, as one that
  // binds its own socket (as before) first removes it.
  ListenSocket listen;
  for (int attempt = 0;; ++attempt) {
    if (options_.socket_activation && listen.fd < 0) {
      // The socket is the instance user's.
      uid_t owner = options_.ids ? id.uid : drop_ ? uid_ : geteuid();
      gid_t group = options_.ids ? id.gid : drop_ ? gid_ : getegid();
      s = ListenUnix(spec.listen_path, owner, group, &listen);
      if (!s.ok()) {
        Discard(std::move(child), false);
        return s;
      }
    }
    s = Hand(spec, id, exe, argv_s, env_s, listen, &child, out);
    if (s.ok() || !parked || attempt > 0 || s.code() != Code::kAborted) break;
    // The parked one died before it got its order, or cannot take it: fork
    // one now.
    if (s = Fork(kPlain, &child); !s.ok()) break;
  }
  if (!s.ok() && listen.fd >= 0) unlink(spec.listen_path.c_str());
  return s;
}

Status ProcessRuntime::Hand(const InstanceSpec& spec, const InstanceIdentity& id, const std::string& exe,
                            const std::vector<std::string>& argv_s, const std::vector<std::string>& env_given,
                            const ListenSocket& listen, Child* child, std::unique_ptr<RunningInstance>* out) {
  // A runner that cannot take this instance leaves it to a child forked now.
  auto discard = [&](Status st) {
    Discard(std::move(*child), false);
    *child = Child();
    return st;
  };
  const bool runner = child->kind != kPlain;
  auto refuse = [&](Status st) { return discard(runner ? Status(Code::kAborted, st.message()) : st); };
  // Its cgroups take the instance's name and limits.
  uint64_t ram_bytes = static_cast<uint64_t>(spec.config.ram_mb) * 1000 * 1000;
  if (!child->mem_cg.empty()) {
    std::string named = CgroupParent::Rename(child->mem_cg, spec.instance_id);
    if (!named.empty()) child->mem_cg = named;
    if (!CgroupParent::Write(child->mem_cg, {{"memory.limit_in_bytes", std::to_string(ram_bytes)},
                                             {"memory.memsw.limit_in_bytes", std::to_string(ram_bytes)},
                                             {"memory.swappiness", "0"}})) {
      // A runner that already uses more than the limit: EBUSY.
      return refuse(ErrnoStatus("setting the memory limit of " + std::to_string(spec.config.ram_mb) + " MB", errno));
    }
  }
  if (!child->pids_cg.empty()) {
    std::string named = CgroupParent::Rename(child->pids_cg, spec.instance_id);
    if (!named.empty()) child->pids_cg = named;
    if (!CgroupParent::Write(child->pids_cg, {{"pids.max", std::to_string(options_.max_pids)}})) {
      return refuse(ErrnoStatus("setting pids.max", errno));
    }
  }
  // V8 and CPython's per-thread malloc arenas reserve far more address space
  // than they use: language runtimes get no RLIMIT_AS.
  Order order;
  order.exe = exe;
  order.dir = spec.code_dir;
  order.argv = &argv_s;
  // systemd's LISTEN_FDS/LISTEN_PID convention: the fd, and the process it is
  // for (the instance's children inherit the variables, not the socket).
  std::vector<std::string> env_s = env_given;
  if (listen.fd >= 0) {
    env_s.push_back("LEVEROS_LISTEN_FD=" + std::to_string(kListenFd));
    env_s.push_back("LEVEROS_LISTEN_PID=" + std::to_string(child->pid));
    order.flags |= kListenSocket;
  }
  order.env = &env_s;
  if (options_.ids) {
    order.flags |= kIdentity;
    order.identity = id;
  }
  if (child->mem_cg.empty() && spec.config.js_entry.empty() && spec.config.py_entry.empty()) {
    order.flags |= kLimitAs;
    order.as_limit = ram_bytes;
  }
  if (child->pids_cg.empty()) {
    // RLIMIT_NPROC counts every task of the user: instances that share an
    // instance user share it, so it bounds them together (a fork bomb does
    // not take the node), not each one.
    order.flags |= kLimitNproc;
    order.nproc_limit = NprocLimit();
  }
  if (runner && geteuid() == 0) {
    // Back from kRunnerNice, every thread (nice is per thread), before it
    // runs any of the service's code.
    std::string tasks = "/proc/" + std::to_string(child->pid) + "/task";
    if (DIR* d = opendir(tasks.c_str())) {
      while (struct dirent* e = readdir(d)) {
        if (e->d_name[0] != '.') setpriority(PRIO_PROCESS, static_cast<id_t>(std::atoi(e->d_name)), 0);
      }
      closedir(d);
    }
  }
  std::string wire;
  if (!EncodeOrder(order, &wire)) {
    return refuse(InvalidArgument("the entry's arguments and environment exceed " +
                                   std::to_string(kMaxOrder >> 10) + " KiB"));
  }
  size_t sent = 0;
  while (sent < wire.size()) {
    // The listening socket rides on the order's first bytes.
    iovec iov = {wire.data() + sent, wire.size() - sent};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sent == 0 && listen.fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &listen.fd, sizeof listen.fd);
    }
    ssize_t n = sendmsg(child->order, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return discard(Status(Code::kAborted, "the prepared process died"));
    sent += static_cast<size_t>(n);
  }
  close(child->order);
  child->order = -1;
  if (runner) {
    // It exec'd when it was prepared (the report pipe is gone); what it does
    // with its order (chdir, load the entry, listen) shows in its output and
    // exit, as for a runner started now.
    return Finish(child, listen.inode, out);
  }
  if (std::string failed = ReadReport(child, "chdir to the code dir"); !failed.empty()) {
    return discard(Status(Code::kFailedPrecondition, "cannot start " + argv_s[0] + ": " + failed));
  }
  return Finish(child, listen.inode, out);
}

std::string ProcessRuntime::ReadReport(Child* child, const char* chdir_step) {
  // The report pipe closes at exec (O_CLOEXEC); a failed step writes why.
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(child->report, report, sizeof report);
  } while (n < 0 && errno == EINTR);
  close(child->report);
  child->report = -1;
  if (n <= 0) return "";
  const char* steps[] = {"", "redirecting output", chdir_step, "setting limits", "exec", "switching user"};
  return std::string(steps[report[0] >= 1 && report[0] <= 5 ? report[0] : 4]) + ": " + std::strerror(report[1]);
}

Status ProcessRuntime::Finish(Child* child, uint64_t listen_inode, std::unique_ptr<RunningInstance>* out) {
  fcntl(child->out, F_SETFL, O_NONBLOCK);
  fcntl(child->err, F_SETFL, O_NONBLOCK);
  *out = std::make_unique<ProcessInstance>(child->pid, child->pidfd, child->out, child->err, child->mem_cg,
                                           child->pids_cg, listen_inode);
  *child = Child();
  return Status::Ok();
}

Status ProcessRuntime::Fork(Kind kind, Child* child) {
  *child = Child();
  child->kind = kind;
  child->ready = kind == kPlain;
  std::string name = "p-" + RandomId(16);  // renamed after the instance when handed one
  child->mem_cg = memory_.Make(name);
  child->pids_cg = pids_.Make(name);
  // A runner's exec, made here: the child allocates nothing. Its rlimit is
  // the runtime's (the same for every service); RLIMIT_AS is never set for
  // a language runtime (Hand).
  std::vector<std::string> runner_argv, runner_env;
  std::vector<char*> argv_p, env_p;
  RunnerExec exec;
  if (kind != kPlain) {
    runner_argv = {runners_[kind], "--pool-fd=" + std::to_string(kRunnerOrderFd)};
    runner_env = RunnerEnvironment(kKindLanguage[kind], options_.path);
    for (std::string& a : runner_argv) argv_p.push_back(a.data());
    argv_p.push_back(nullptr);
    for (std::string& e : runner_env) env_p.push_back(e.data());
    env_p.push_back(nullptr);
    exec.exe = runners_[kind].c_str();
    exec.argv = argv_p.data();
    exec.envp = env_p.data();
    if (child->pids_cg.empty()) {
      exec.flags = kLimitNproc;
      exec.nproc_limit = NprocLimit();
    }
    if (geteuid() == 0) exec.nice = kRunnerNice;
  }
  auto open_procs = [](const std::string& dir) {
    return dir.empty() ? -1 : AboveStdio(open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  };
  ChildFds fds;
  fds.mem_procs = open_procs(child->mem_cg);
  fds.pids_procs = open_procs(child->pids_cg);
  int order[2] = {-1, -1}, report[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  auto fail = [&](const char* what, int err) {
    for (int fd : {fds.mem_procs, fds.pids_procs, order[0], order[1], report[0], report[1], out_pipe[0], out_pipe[1],
                   err_pipe[0], err_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
    CgroupParent::Remove(child->mem_cg);
    CgroupParent::Remove(child->pids_cg);
    *child = Child();
    return ErrnoStatus(what, err);
  };
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, order) != 0) return fail("socketpair", errno);
  if (pipe2(report, O_CLOEXEC) != 0) return fail("pipe", errno);
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return fail("pipe", errno);
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return fail("pipe", errno);
  fds.order = order[1] = AboveStdio(order[1]);
  fds.report = report[1] = AboveStdio(report[1]);
  fds.out = out_pipe[1] = AboveStdio(out_pipe[1]);
  fds.err = err_pipe[1] = AboveStdio(err_pipe[1]);
  for (int fd : {fds.order, fds.report, fds.out, fds.err}) {
    if (fd < 0) return fail("dup", EMFILE);
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) ChildMain(fds, parent, drop_, uid_, gid_, kind == kPlain ? nullptr : &exec);
  if (pid < 0) return fail("fork", errno);
  for (int* fd : {&fds.mem_procs, &fds.pids_procs, &order[1], &report[1], &out_pipe[1], &err_pipe[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  child->pid = pid;
  child->order = order[0];
  child->report = report[0];
  child->out = out_pipe[0];
  child->err = err_pipe[0];
  child->born = std::chrono::steady_clock::now();
  child->pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (child->pidfd < 0) {
    int err = errno;
    Discard(std::move(*child), false);
    *child = Child();
    return ErrnoStatus("pidfd_open", err);
  }
  if (kind != kPlain) {
    if (std::string failed = ReadReport(child, "chdir to /"); !failed.empty()) {
      Discard(std::move(*child), false);
      *child = Child();
      return Status(Code::kFailedPrecondition, failed);
    }
  }
  return Status::Ok();
}

void ProcessRuntime::Discard(Child child, bool reaped) {
  if (child.order >= 0) close(child.order);  // a parked child exits at EOF
  if (child.pid > 0 && !reaped) {
    kill(child.pid, SIGKILL);
    int st;
    while (waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  for (int fd : {child.pidfd, child.report, child.out, child.err}) {
    if (fd >= 0) close(fd);
  }
  CgroupParent::Remove(child.mem_cg);
  CgroupParent::Remove(child.pids_cg);
}

bool ProcessRuntime::TakeParked(Kind kind, Child* child) {
  {
    std::lock_guard lock(pool_mu_);
    // Only a runner that said it is ready: one that never does (a runner
    // that does not know --pool-fd) must not swallow a start.
    for (Kind k : {kind, kPlain}) {
      std::vector<Child>& parked = pools_[k].parked;
      auto it = std::find_if(parked.begin(), parked.end(), [](const Child& c) { return c.ready; });
      if (it == parked.end()) continue;
      *child = std::move(*it);
      parked.erase(it);
      break;
    }
    if (child->pid <= 0) return false;
  }
  Wake();  // refill
  return true;
}

void ProcessRuntime::Want(Kind kind) {
  if (kind == kPlain || runners_[kind].empty()) return;
  {
    std::lock_guard lock(pool_mu_);
    if (pools_[kind].wanted || pools_[kind].given_up) return;
    pools_[kind].wanted = true;
  }
  if (pool_wake_ >= 0) Wake();
}

void ProcessRuntime::Wake() {
  uint64_t one = 1;
  (void)!write(pool_wake_, &one, sizeof one);
}

void ProcessRuntime::RunnerFailed(Kind kind, const std::string& why) {
  Pool& pool = pools_[kind];
  ++pool.failures;
  if (pool.failures >= kMaxRunnerFailures) {
    // A runner that cannot be pre-started (e.g. one that does not know
    // --pool-fd) is not run in a loop: its services start it at each start.
    pool.wanted = false;
    pool.given_up = true;
    unlogged_.push_back("[host] cannot pre-start the " + std::string(kKindRuntime[kind]) + " runtime (" +
                        runners_[kind] + "): " + why + "; its services start it at each cold start");
    return;
  }
  // Then 0, 0.25 s, 0.5 s, 1 s: one that was killed is replaced at once.
  pool.retry_at = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(pool.failures <= 1 ? 0 : 250 << (pool.failures - 2));
}

// The last line a dead runner wrote to stderr, for the log.
std::string LastLine(int fd) {
  std::string text;
  char buf[4096];
  fcntl(fd, F_SETFL, O_NONBLOCK);
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 && text.size() < (64 << 10)) text.append(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  size_t nl = text.rfind('\n');
  if (nl != std::string::npos) text.erase(0, nl + 1);
  return text.size() > 300 ? text.substr(0, 300) + "..." : text;
}

void ProcessRuntime::PoolLoop() {
  using std::chrono::steady_clock;
  std::unique_lock lock(pool_mu_);
  while (!pool_stop_) {
    // Parked children that died, or that are old: each plain one holds a
    // copy-on-write snapshot of leverd's memory, which diverges as leverd
    // runs (a runner has exec'd: it holds none).
    auto now = steady_clock::now();
    std::vector<std::pair<Child, bool>> gone;
    for (int k = 0; k < kKinds; ++k) {
      std::vector<Child>& parked = pools_[k].parked;
      for (auto it = parked.begin(); it != parked.end();) {
        int st = 0;
        bool dead = waitpid(it->pid, &st, WNOHANG) == it->pid;
        bool old = now - it->born >= options_.prestart_max_age;
        // A runner not ready by then is as good as dead.
        if (dead || (old && (k == kPlain || !it->ready))) {
          if (k != kPlain && !it->ready) {
            std::string line = LastLine(it->err);
            auto age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.prestart_max_age).count();
            std::string how = !dead            ? "not ready after " + std::to_string(age_ms) + " ms"
                              : WIFSIGNALED(st) ? "killed by signal " + std::to_string(WTERMSIG(st))
                                                : "exit " + std::to_string(WEXITSTATUS(st));
            if (dead) how += " before it was ready";
            RunnerFailed(static_cast<Kind>(k), how + (line.empty() ? "" : ": " + line));
          }
          gone.emplace_back(std::move(*it), dead);
          it = parked.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (!gone.empty()) {
      std::vector<std::string> lines = std::move(unlogged_);
      unlogged_.clear();
      lock.unlock();
      for (auto& [c, dead] : gone) Discard(std::move(c), dead);
      for (const std::string& line : lines) {
        if (options_.log) options_.log(line);
      }
      lock.lock();
      continue;
    }
    bool forked = false;
    for (int k = 0; k < kKinds && !forked; ++k) {
      Pool& pool = pools_[k];
      if (!pool.wanted || pool.parked.size() >= static_cast<size_t>(options_.prestart) || now < pool.retry_at) {
        continue;
      }
      lock.unlock();
      Child c;
      Status s = Fork(static_cast<Kind>(k), &c);
      lock.lock();
      forked = true;
      if (s.ok()) {
        pool.parked.push_back(std::move(c));
      } else if (k == kPlain) {
        pool.retry_at = steady_clock::now() + std::chrono::seconds(1);  // e.g. out of pids: no busy loop
      } else {
        RunnerFailed(static_cast<Kind>(k), s.message());
      }
    }
    if (!unlogged_.empty()) {
      std::vector<std::string> lines = std::move(unlogged_);
      unlogged_.clear();
      lock.unlock();
      for (const std::string& line : lines) {
        if (options_.log) options_.log(line);
      }
      lock.lock();
    }
    if (forked) continue;
    // Sleep until a take, a death, a runner's "ready", the oldest's
    // retirement or a retry.
    std::vector<pollfd> fds = {{pool_wake_, POLLIN, 0}};
    std::vector<pid_t> starting;  // runners whose order socket is in fds, in order
    auto wake_at = now + std::chrono::hours(1);
    for (int k = 0; k < kKinds; ++k) {
      const Pool& pool = pools_[k];
      for (const Child& c : pool.parked) {
        fds.push_back({c.pidfd, POLLIN, 0});
        if (k == kPlain || !c.ready) wake_at = std::min(wake_at, c.born + options_.prestart_max_age);
      }
      for (const Child& c : pool.parked) {
        if (c.ready) continue;
        fds.push_back({c.order, POLLIN, 0});
        starting.push_back(c.pid);
      }
      if (pool.wanted && pool.parked.size() < static_cast<size_t>(options_.prestart)) {
        wake_at = std::min(wake_at, pool.retry_at);
      }
    }
    int timeout_ms = static_cast<int>(
        std::chrono::ceil<std::chrono::milliseconds>(std::max(wake_at - now, steady_clock::duration::zero())).count());
    lock.unlock();
    poll(fds.data(), fds.size(), timeout_ms);
    uint64_t drained;
    (void)!read(pool_wake_, &drained, sizeof drained);
    std::vector<pid_t> readable;
    for (size_t i = fds.size() - starting.size(); i < fds.size(); ++i) {
      if (fds[i].revents) readable.push_back(starting[i - (fds.size() - starting.size())]);
    }
    lock.lock();
    // A runner writes one byte once past its start-up ("R"); EOF or anything
    // else: it is broken, and goes.
    for (pid_t pid : readable) {
      for (Pool& pool : pools_) {
        for (Child& c : pool.parked) {
          if (c.pid != pid || c.ready) continue;
          char byte = 0;
          ssize_t n = recv(c.order, &byte, 1, MSG_DONTWAIT);
          if (n == 1 && byte == 'R') {
            c.ready = true;
            pool.failures = 0;
          } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || n == 1) {
            kill(c.pid, SIGKILL);  // reaped above on the next round
          }
        }
      }
    }
  }
}

std::vector<ParkedProcess> ProcessRuntime::Parked() const {
  std::lock_guard lock(pool_mu_);
  std::vector<ParkedProcess> out;
  for (int k = 0; k < kKinds; ++k) {
    for (const Child& c : pools_[k].parked) out.push_back({c.pid, kKindLanguage[k], c.ready});
  }
  return out;
}

}  // namespace

Status NewProcessRuntime(const ProcessRuntimeOptions& options, RuntimePtr* out) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  bool drop = false;
  if (options.ids) {
    // Each service its own user, switched to at hand-off: no fork-time user.
    if (geteuid() != 0) return Status(Code::kPermissionDenied, "per-service instance users need root");
  } else if (!options.user.empty()) {
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
