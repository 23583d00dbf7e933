// The process runtime's prepared children (ProcessRuntimeOptions::prestart):
// a child forked ahead into its cgroups serves the next start, is replaced
// when taken, dies or grows old, holds none of leverd's fds, and ends with
// the runtime. They exist only where cgroups are writable (root, as in CI).
// Pre-started language runners (played by the test instance's --pool-fd
// mode, which speaks lever-serve's hand-off) exist everywhere once their
// language is in use.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "lever/host/runtime.h"
#include "testutil.h"
#include "util.h"

namespace lever::host {
namespace {

using testing::ReadFileOrEmpty;
using testing::TempDir;
using testing::WaitFor;

bool Exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// The memory cgroup of `pid` ("/sys/fs/cgroup/memory/..."), or "".
std::string MemoryCgroup(pid_t pid) {
  std::stringstream ss(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(ss, line)) {
    size_t at = line.find(":memory:");
    if (at != std::string::npos) return "/sys/fs/cgroup/memory" + line.substr(at + 8);
  }
  return "";
}

// The cgroup a parked child joins right after its fork ("p-<id>"), once it
// has joined.
std::string ParkedCgroup(pid_t pid) {
  std::string cg;
  WaitFor([&] {
    cg = MemoryCgroup(pid);
    return cg.find("/p-") != std::string::npos;
  });
  return cg;
}

// Reads from a non-blocking fd until `want` appears (bounded).
bool ReadUntil(int fd, const std::string& want, std::string* got) {
  return WaitFor([&] {
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) got->append(buf, static_cast<size_t>(n));
    return got->find(want) != std::string::npos;
  });
}

class ProcessRuntimeTest : public ::testing::Test {
 protected:
  void Open() {
    options_.memory_cgroup = "";  // auto: children of our own cgroups, where writable
    options_.pids_cgroup = "";
    ASSERT_TRUE(NewProcessRuntime(options_, &runtime_).ok());
  }
  // The one parked process of `language` ("": a plain child), once there
  // and ready (and different from `not_this`).
  pid_t Parked(pid_t not_this = -1, const std::string& language = "") {
    pid_t found = -1;
    WaitFor([&] {
      std::vector<ParkedProcess> of;
      for (const ParkedProcess& p : runtime_->Parked()) {
        if (p.language == language) of.push_back(p);
      }
      if (of.size() == 1 && of[0].pid != not_this && of[0].ready) found = of[0].pid;
      return found > 0;
    });
    return found;
  }
  InstanceSpec Spec(const std::string& id, std::vector<std::string> entry) {
    InstanceSpec spec;
    spec.env = "dev.lever";
    spec.service = "svc";
    spec.version = 1;
    spec.instance_id = id;
    spec.code_dir = dir_.path();
    spec.listen_path = dir_.path() + "/i.sock";
    spec.config.entry = std::move(entry);
    spec.config.ram_mb = 64;
    return spec;
  }

  TempDir dir_;
  ProcessRuntimeOptions options_;
  RuntimePtr runtime_;
};

#define REQUIRE_PREPARED_CHILDREN(pid)                                                     \
  if ((pid) <= 0) {                                                                        \
    if (geteuid() != 0) GTEST_SKIP() << "prepared children need writable cgroups (root)"; \
    FAIL() << "no prepared child appeared as root";                                        \
  }

TEST_F(ProcessRuntimeTest, APreparedChildServesTheNextStartInTheInstancesCgroupAndIsReplaced) {
  Open();
  pid_t p = Parked();
  REQUIRE_PREPARED_CHILDREN(p);
  std::unique_ptr<RunningInstance> inst;
  Status s = runtime_->Start(Spec("Inst0000000000000000000000000001",
                                  {"/bin/sh", "-c", "echo started $LEVEROS_INSTANCE_ID in $(pwd); exec sleep 100"}),
                             &inst);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(inst->pid(), p);  // the child forked ahead
  std::string out;
  EXPECT_TRUE(ReadUntil(inst->stdout_fd(), "started Inst0000000000000000000000000001 in " + dir_.path(), &out))
      << out;
  std::string cg = MemoryCgroup(p);
  EXPECT_EQ(cg.substr(cg.rfind('/') + 1), "Inst0000000000000000000000000001");  // named after the instance
  EXPECT_EQ(ReadFileOrEmpty(cg + "/memory.limit_in_bytes"), "64000000\n");

  pid_t q = Parked(p);  // refilled
  ASSERT_GT(q, 0);
  kill(q, SIGKILL);  // a parked child that dies is reaped and replaced
  pid_t r = Parked(q);
  ASSERT_GT(r, 0);
  EXPECT_TRUE(WaitFor([&] { return !Exists(q); }));

  inst->Signal(SIGKILL);
  int st = 0;
  EXPECT_TRUE(WaitFor([&] { return inst->Reap(&st); }));
  EXPECT_TRUE(WIFSIGNALED(st));
  inst->Cleanup();
  EXPECT_FALSE(std::filesystem::exists(cg));
}

TEST_F(ProcessRuntimeTest, AParkedChildHoldsNoneOfOurFds) {
  int mine[2];
  ASSERT_EQ(pipe(mine), 0);  // no O_CLOEXEC: a plain fork would keep it
  Open();
  pid_t p = Parked();
  if (p <= 0) {
    close(mine[0]);
    close(mine[1]);
  }
  REQUIRE_PREPARED_CHILDREN(p);
  char target[256];
  ssize_t n = readlink(("/proc/self/fd/" + std::to_string(mine[0])).c_str(), target, sizeof target - 1);
  ASSERT_GT(n, 0);
  std::string pipe_name(target, static_cast<size_t>(n));
  // Right after its fork it holds a copy of all of ours; it closes them
  // before it parks.
  std::string fd_dir = "/proc/" + std::to_string(p) + "/fd";
  std::set<std::string> links;
  EXPECT_TRUE(WaitFor([&] {
    links.clear();
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(fd_dir, ec)) {
      links.insert(std::filesystem::read_symlink(e.path(), ec).string());
    }
    return !ec && links.size() <= 7;  // stdio, its order socket, report pipe, stdout and stderr
  })) << links.size() << " fds open";
  EXPECT_EQ(links.count(pipe_name), 0u) << "the parked child kept our pipe";
  close(mine[0]);
  close(mine[1]);
}

TEST_F(ProcessRuntimeTest, AFailedExecIsReportedAndTheChildIsNotLeftBehind) {
  Open();
  pid_t p = Parked();
  REQUIRE_PREPARED_CHILDREN(p);
  {
    std::ofstream bad(dir_.path() + "/bad");
    bad << "not a program\n";
  }
  ASSERT_EQ(chmod((dir_.path() + "/bad").c_str(), 0755), 0);
  std::unique_ptr<RunningInstance> inst;
  Status s = runtime_->Start(Spec("Inst0000000000000000000000000002", {"./bad"}), &inst);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("cannot start ./bad: exec: Exec format error"), std::string::npos) << s.message();
  EXPECT_FALSE(Exists(p));  // reaped
  EXPECT_GT(Parked(p), 0);
}

TEST_F(ProcessRuntimeTest, OldParkedChildrenAreReplacedAndTheRuntimeEndsThem) {
  options_.prestart_max_age = std::chrono::milliseconds(200);
  Open();
  pid_t p = Parked();
  REQUIRE_PREPARED_CHILDREN(p);
  std::string cg = ParkedCgroup(p);
  ASSERT_NE(cg.find("/p-"), std::string::npos) << cg;
  pid_t q = Parked(p);  // retired at 200 ms, and a new one forked
  ASSERT_GT(q, 0);
  EXPECT_TRUE(WaitFor([&] { return !Exists(p); }));
  EXPECT_FALSE(std::filesystem::exists(cg));
  std::string qcg = ParkedCgroup(q);  // "" if it is already retired
  runtime_.reset();
  EXPECT_FALSE(Exists(q));
  EXPECT_FALSE(std::filesystem::exists(qcg));
}

TEST_F(ProcessRuntimeTest, WithoutPrestartEveryStartForksAndNothingIsParked) {
  options_.prestart = 0;
  Open();
  std::unique_ptr<RunningInstance> inst;
  Status s = runtime_->Start(Spec("Inst0000000000000000000000000003", {"/bin/sh", "-c", "echo up; exec sleep 100"}), &inst);
  ASSERT_TRUE(s.ok()) << s.message();
  std::string out;
  EXPECT_TRUE(ReadUntil(inst->stdout_fd(), "up\n", &out)) << out;
  EXPECT_TRUE(runtime_->Parked().empty());
  inst->Signal(SIGKILL);
  int st;
  EXPECT_TRUE(WaitFor([&] { return inst->Reap(&st); }));
}

// The test instance plays the runner (its --pool-fd mode).
std::string TestRunner() {
  const char* over = getenv("LEVER_TEST_INSTANCE");
  return over ? over : LEVER_TEST_INSTANCE;
}

// The NUL-separated strings of /proc/<pid>/<file> (environ, cmdline).
std::set<std::string> ProcStrings(pid_t pid, const std::string& file) {
  std::string all = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/" + file);
  std::set<std::string> out;
  std::stringstream ss(all);
  std::string item;
  while (std::getline(ss, item, '\0')) out.insert(item);
  return out;
}

// The nice values of the threads of `pid`.
std::set<int> Nice(pid_t pid) {
  std::set<int> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::string stat = ReadFileOrEmpty(e.path().string() + "/stat");
    std::stringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 0; i < 17 && fields >> field; ++i) {
    }
    if (fields) out.insert(std::stoi(field));  // field 19: nice
  }
  return out;
}

// The fds of `pid` as their /proc links ("socket:[123]", "/dev/null"),
// sorted, one per fd.
std::vector<std::string> FdTargets(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    out.push_back(std::filesystem::read_symlink(e.path(), ec).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// How many fds of `pid` are `link`.
size_t FdsAt(pid_t pid, const std::string& link) {
  std::vector<std::string> fds = FdTargets(pid);
  return static_cast<size_t>(std::count(fds.begin(), fds.end(), link));
}

TEST_F(ProcessRuntimeTest, ARunnerIsPreStartedOnceItsLanguageIsInUseAndHandedTheNextStartOfAnyService) {
  options_.lever_serve = TestRunner();
  options_.lever_serve_py = TestRunner();
  auto count = [&](const std::string& language) {
    std::vector<ParkedProcess> all = runtime_->Parked();
    return std::count_if(all.begin(), all.end(), [&](const ParkedProcess& p) { return p.language == language; });
  };
  Open();
  EXPECT_EQ(count("js"), 0);  // no JS service seen yet
  LeverConfig js;
  js.js_entry = "server.js";
  runtime_->Expect(js);
  pid_t p = Parked(-1, "js");
  ASSERT_GT(p, 0) << "no ready runner";
  EXPECT_EQ(count("py"), 0);  // only the languages in use

  // Before its hand-off it knows no service: the runner environment, "/",
  // and fds 0-3 only (stdin /dev/null, stdout, stderr, its order socket).
  EXPECT_EQ(ProcStrings(p, "environ"), std::set<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin"});
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(p) + "/cwd").string(), "/");
  std::vector<std::string> fds = FdTargets(p);
  ASSERT_EQ(fds.size(), 4u);
  EXPECT_EQ(fds[0], "/dev/null");
  EXPECT_EQ(fds[1].rfind("pipe:", 0), 0u);
  EXPECT_EQ(fds[3].rfind("socket:", 0), 0u);
  // In the background while it waits (as root, which can undo it).
  if (geteuid() == 0) {
    EXPECT_EQ(Nice(p), std::set<int>{10});
  }

  InstanceSpec spec = Spec("Inst0000000000000000000000000004", {});
  spec.config.js_entry = "server.js";
  std::unique_ptr<RunningInstance> inst;
  Status s = runtime_->Start(spec, &inst);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(inst->pid(), p);  // the pre-started runner
  std::string out;
  // Its service's dir and environment (NODE_OPTIONS: 90 % of its 64 MB),
  // and it listens where that says.
  EXPECT_TRUE(ReadUntil(inst->stdout_fd(),
                        "handed server.js in " + dir_.path() +
                            " as Inst0000000000000000000000000004 NODE_OPTIONS=--max-old-space-size=57\n",
                        &out))
      << out;
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(spec.listen_path); }));
  EXPECT_EQ(Nice(p), std::set<int>{0});  // every thread of the instance
  std::string cg = MemoryCgroup(p);
  if (!cg.empty() && cg.find("/lever-") != std::string::npos) {
    EXPECT_EQ(cg.substr(cg.rfind('/') + 1), "Inst0000000000000000000000000004");
    EXPECT_EQ(ReadFileOrEmpty(cg + "/memory.limit_in_bytes"), "64000000\n");
  }

  pid_t q = Parked(p, "js");  // refilled
  ASSERT_GT(q, 0);
  kill(q, SIGKILL);  // one that dies is replaced
  pid_t r = Parked(q, "js");
  ASSERT_GT(r, 0);
  EXPECT_TRUE(WaitFor([&] { return !Exists(q); }));

  // Python the same way.
  LeverConfig py;
  py.py_entry = "server.py";
  runtime_->Expect(py);
  pid_t y = Parked(-1, "py");
  ASSERT_GT(y, 0);
  EXPECT_EQ(ProcStrings(y, "environ"), (std::set<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin",
                                                              "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"}));
  InstanceSpec pspec = Spec("Inst0000000000000000000000000005", {});
  pspec.listen_path = dir_.path() + "/p.sock";
  pspec.config.py_entry = "server.py";
  std::unique_ptr<RunningInstance> pinst;
  s = runtime_->Start(pspec, &pinst);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(pinst->pid(), y);
  out.clear();
  EXPECT_TRUE(ReadUntil(pinst->stdout_fd(),
                        "handed server.py in " + dir_.path() + " as Inst0000000000000000000000000005 NODE_OPTIONS=\n",
                        &out))
      << out;

  for (RunningInstance* i : {inst.get(), pinst.get()}) {
    i->Signal(SIGKILL);
    int st = 0;
    EXPECT_TRUE(WaitFor([&] { return i->Reap(&st); }));
    i->Cleanup();
  }
  runtime_.reset();  // the runtime ends its runners
  EXPECT_FALSE(Exists(r));
}

TEST_F(ProcessRuntimeTest, ARunnerThatCannotBePreStartedIsGivenUpAndStartsAreForkedInstead) {
  // /bin/false exits at once instead of saying it is ready.
  options_.lever_serve = "/bin/false";
  std::mutex mu;
  std::vector<std::string> log;
  options_.log = [&](std::string_view line) {
    std::lock_guard lock(mu);
    log.emplace_back(line);
  };
  Open();
  LeverConfig js;
  js.js_entry = "server.js";
  runtime_->Expect(js);
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return !log.empty();
  }));
  std::lock_guard lock(mu);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0],
            "[host] cannot pre-start the Node runtime (/bin/false): exit 1 before it was ready; its services start it "
            "at each cold start");
  for (const ParkedProcess& p : runtime_->Parked()) EXPECT_NE(p.language, "js");
}

}  // namespace
}  // namespace lever::host

namespace lever::host {
namespace {

std::string FdLink(pid_t pid, int fd) {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec).string();
}

// The socket bound at `path` as /proc/net/unix has it: "socket:[inode]" and
// whether it listens (flag __SO_ACCEPTCON); "" if there is none.
std::string UnixSocketAt(const std::string& path, bool* listening) {
  std::stringstream table(ReadFileOrEmpty("/proc/net/unix"));
  std::string line;
  while (std::getline(table, line)) {
    std::stringstream row(line);
    std::string num, refs, proto, flags, type, st, inode, p;
    if (row >> num >> refs >> proto >> flags >> type >> st >> inode >> p && p == path) {
      *listening = flags == "00010000";
      return "socket:[" + inode + "]";
    }
  }
  return "";
}

bool Connects(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  close(fd);
  return ok;
}

// Socket activation: the listening socket at listen_path exists before the
// instance does anything, is its fd 3 (LEVEROS_LISTEN_FD=3 and its own pid
// as LEVEROS_LISTEN_PID), and is held by nobody else: not by leverd once
// started, not by the next instance.
TEST_F(ProcessRuntimeTest, TheInstancesListeningSocketIsItsFd3AndNobodyElses) {
  Open();
  const char* kShow = "echo fd=$LEVEROS_LISTEN_FD pid=$LEVEROS_LISTEN_PID self=$$; exec sleep 100";
  std::unique_ptr<RunningInstance> a, b;
  InstanceSpec spec_a = Spec("Inst0000000000000000000000000011", {"/bin/sh", "-c", kShow});
  ASSERT_TRUE(runtime_->Start(spec_a, &a).ok());
  std::string pid = std::to_string(a->pid());
  std::string out;
  EXPECT_TRUE(ReadUntil(a->stdout_fd(), "fd=3 pid=" + pid + " self=" + pid, &out)) << out;

  bool listening = false;
  std::string socket_a = UnixSocketAt(spec_a.listen_path, &listening);
  ASSERT_NE(socket_a, "");
  EXPECT_TRUE(listening);
  EXPECT_EQ(FdLink(a->pid(), 3), socket_a);
  struct stat st;
  ASSERT_EQ(stat(spec_a.listen_path.c_str(), &st), 0);
  EXPECT_EQ(a->listen_socket_inode(), st.st_ino);
  // The instance (a shell, then sleep) never listened: leverd's socket takes
  // the connection, queued until someone accepts.
  EXPECT_TRUE(Connects(spec_a.listen_path));
  EXPECT_EQ(FdsAt(getpid(), socket_a), 0u) << "leverd kept its copy";

  InstanceSpec spec_b = Spec("Inst0000000000000000000000000012", {"/bin/sh", "-c", kShow});
  spec_b.listen_path = dir_.path() + "/b.sock";
  ASSERT_TRUE(runtime_->Start(spec_b, &b).ok());
  std::string out_b;
  EXPECT_TRUE(ReadUntil(b->stdout_fd(), "fd=3", &out_b)) << out_b;
  std::string socket_b = UnixSocketAt(spec_b.listen_path, &listening);
  EXPECT_EQ(FdLink(b->pid(), 3), socket_b);
  EXPECT_NE(socket_b, socket_a);
  EXPECT_EQ(FdsAt(b->pid(), socket_a), 0u) << "the next instance holds the first one's socket";
}

TEST_F(ProcessRuntimeTest, WithoutSocketActivationTheInstanceGetsNoSocket) {
  options_.socket_activation = false;
  Open();
  std::unique_ptr<RunningInstance> inst;
  InstanceSpec spec = Spec("Inst0000000000000000000000000013",
                           // No exec: sleep's loader opens libc.so.6 as fd 3 for a moment,
                           // which the check below may see; sh itself keeps what it was given.
                           {"/bin/sh", "-c", "echo fd=[$LEVEROS_LISTEN_FD]; sleep 100"});
  ASSERT_TRUE(runtime_->Start(spec, &inst).ok());
  std::string out;
  EXPECT_TRUE(ReadUntil(inst->stdout_fd(), "fd=[]", &out)) << out;
  EXPECT_EQ(inst->listen_socket_inode(), 0u);
  EXPECT_EQ(FdLink(inst->pid(), 3), "");
  EXPECT_FALSE(std::filesystem::exists(spec.listen_path));
}

TEST(ListenUnix, ReplacesAStaleSocketListensAndIsCloseOnExec) {
  TempDir dir;
  std::string path = dir.path() + "/s.sock";
  {
    ListenSocket stale;  // a socket file nobody listens on any more
    ASSERT_TRUE(ListenUnix(path, geteuid(), getegid(), &stale).ok());
  }
  EXPECT_FALSE(Connects(path));
  ListenSocket s;
  ASSERT_TRUE(ListenUnix(path, geteuid(), getegid(), &s).ok());
  EXPECT_TRUE(fcntl(s.fd, F_GETFD) & FD_CLOEXEC) << "no child of leverd but its instance may inherit it";
  int listening = 0;
  socklen_t len = sizeof listening;
  ASSERT_EQ(getsockopt(s.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0);
  EXPECT_EQ(listening, 1);
  EXPECT_TRUE(Connects(path));
  ListenSocket too_long;
  EXPECT_EQ(ListenUnix(std::string(200, 'x'), geteuid(), getegid(), &too_long).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace lever::host
