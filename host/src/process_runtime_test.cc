// The process runtime's prepared children (ProcessRuntimeOptions::prestart):
// a child forked ahead into its cgroups serves the next start, is replaced
// when taken, dies or grows old, holds none of leverd's fds, and ends with
// the runtime. They exist only where cgroups are writable (root, as in CI).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "lever/host/runtime.h"
#include "testutil.h"

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
  // The one parked child, once there (and different from `not_this`).
  pid_t Parked(pid_t not_this = -1) {
    pid_t found = -1;
    WaitFor([&] {
      std::vector<int> pids = runtime_->ParkedPids();
      if (pids.size() == 1 && pids[0] != not_this) found = pids[0];
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
  EXPECT_TRUE(runtime_->ParkedPids().empty());
  inst->Signal(SIGKILL);
  int st;
  EXPECT_TRUE(WaitFor([&] { return inst->Reap(&st); }));
}

}  // namespace
}  // namespace lever::host
