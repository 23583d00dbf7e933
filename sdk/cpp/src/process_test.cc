// Cross-process tests: the client in this process, the server runtime in a
// child (testing/test_server.cc) on a unix socket or TCP.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "lever/client.h"

extern char** environ;

namespace lever {
namespace {

using namespace std::chrono_literals;

class Child {
 public:
  // `listen_fd` >= 0: passed in as fd 3, as leverd does (LEVEROS_LISTEN_FD=3),
  // with LEVEROS_LISTEN_PID set to the child's pid, or to `listen_pid`.
  explicit Child(const std::string& listen, int listen_fd = -1, const std::string& listen_pid = "") {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).starts_with("LEVEROS_")) continue;
      env_strings.emplace_back(*e);
    }
    env_strings.push_back("LEVEROS_LISTEN_ADDR=" + listen);
    if (listen_fd >= 0) env_strings.push_back("LEVEROS_LISTEN_FD=3");
    if (!listen_pid.empty()) env_strings.push_back("LEVEROS_LISTEN_PID=" + listen_pid);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    // The shell knows the pid before the exec keeps it.
    std::string own_pid = "LEVEROS_LISTEN_PID=$$ exec \"$0\"";
    char* plain[] = {const_cast<char*>(LEVER_TEST_SERVER), nullptr};
    char* with_pid[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), own_pid.data(),
                        const_cast<char*>(LEVER_TEST_SERVER), nullptr};
    bool shell = listen_fd >= 0 && listen_pid.empty();
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    if (listen_fd >= 0) posix_spawn_file_actions_adddup2(&actions, listen_fd, 3);
    ok_ = posix_spawn(&pid_, shell ? "/bin/sh" : LEVER_TEST_SERVER, &actions, nullptr, shell ? with_pid : plain,
                      envp.data()) == 0;
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    stdout_ = fdopen(fds[0], "r");
  }
  // Reads "listening <port> ...": blocks until the child serves or exits.
  int Port() {
    int port = -1;
    if (stdout_ == nullptr || std::fscanf(stdout_, "listening %d", &port) != 1) return -1;
    return port;
  }
  // After Port(): "fd" (it serves on the inherited socket) or "bound".
  std::string How() {
    char how[16] = {};
    if (stdout_ == nullptr || std::fscanf(stdout_, " %15s", how) != 1) return "";
    return how;
  }
  ~Child() {
    if (stdout_ != nullptr) std::fclose(stdout_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return ok_; }
  // SIGTERM, then the exit status.
  int Stop() {
    kill(pid_, SIGTERM);
    return Wait();
  }
  void Term() { kill(pid_, SIGTERM); }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
  FILE* stdout_ = nullptr;
};

std::string TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "lever-proc-XXXXXX").string();
  return mkdtemp(tmpl.data());
}

// The child may still be binding: calls wait for it, within a bound.
const CallOptions kReady{.timeout = 20s, .wait_for_ready = true};

TEST(CrossProcess, UnixSocketCallsStreamsAndGracefulExit) {
  std::string dir = TempDir();
  std::string addr = "unix:" + dir + "/instance.sock";
  Child child(addr);
  ASSERT_TRUE(child.ok());
  ClientOptions o;
  o.force_host = addr;
  Client client(o);
  Endpoint ep = client.Service("dev.lever", "testService");
  Result r = ep.Invoke("add", {20, 22}, kReady);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(42));
  r = client.Resource("dev.lever", "testService", "a/b").Invoke("whoami", {}, kReady);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r.value.as_map().Find("resource"), Value("a/b"));

  ClientStreamPtr s;
  ASSERT_TRUE(ep.InvokeStream(&s, "echoChan", {}, kReady).ok());
  ASSERT_TRUE(s->Send("one").ok());
  EXPECT_EQ(s->Receive(20s).value, Value("one"));
  // Shutdown begins; the stream in flight still completes.
  child.Term();
  ASSERT_TRUE(s->Send("two").ok());
  EXPECT_EQ(s->Receive(20s).value, Value("two"));
  s->CloseSend();
  EXPECT_TRUE(s->Receive(20s).is_end());
  EXPECT_EQ(child.Wait(), 0);
  std::filesystem::remove_all(dir);
}

TEST(CrossProcess, TcpWithOriginalCodec) {
  Child child("127.0.0.1:0");
  ASSERT_TRUE(child.ok());
  int port = child.Port();
  ASSERT_GT(port, 0);
  ClientOptions o;
  o.force_host = "127.0.0.1:" + std::to_string(port);
  o.codec = wire::Codec::kProtoJson;
  Client client(o);
  Result r = client.InvokeUrl("lever://dev.lever/testService//bytesLen", {Value::FromBytes("abc")}, kReady);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(3));
  r = client.InvokeUrl("lever://dev.lever/testService//fail", {"x"}, kReady);
  ASSERT_TRUE(r.is_app_error());
  EXPECT_EQ(child.Stop(), 0);
}

// A listening unix socket at `path`, as leverd makes one (socket activation).
int ListenUnix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 16) != 0) return -1;
  return fd;
}

uint64_t Inode(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// add(a, b) over a fresh client, gone before the server's stop (which would
// wait for its connection).
Result AddOver(const std::string& path, int a, int b) {
  ClientOptions o;
  o.force_host = "unix:" + path;
  Client client(o);
  return client.Service("dev.lever", "testService").Invoke("add", {a, b}, kReady);
}

TEST(CrossProcess, AnInheritedListeningSocketServesWhatQueuedBeforeTheServerStarted) {
  std::string dir = TempDir(), path = dir + "/instance.sock";
  int lfd = ListenUnix(path);
  ASSERT_GE(lfd, 0);
  uint64_t inode = Inode(path);
  // The gateway's connection, made before the instance exists: the kernel
  // queues it, and the server answers it with its SETTINGS once serving.
  int early = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  ASSERT_EQ(connect(early, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  const char hello[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
  ASSERT_EQ(send(early, hello, sizeof hello - 1, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof hello - 1));

  Child child("unix:" + path, lfd);
  close(lfd);  // the child's copy is the only one now, as in leverd
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child.Port(), 0);
  EXPECT_EQ(child.How(), "fd");
  timeval tv{20, 0};
  setsockopt(early, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  unsigned char frame[9];
  ASSERT_EQ(recv(early, frame, sizeof frame, MSG_WAITALL), 9);
  EXPECT_EQ(frame[3], 4) << "the first frame is SETTINGS";
  close(early);

  Result r = AddOver(path, 1, 2);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(3));
  EXPECT_EQ(Inode(path), inode) << "the server did not re-make the socket";
  EXPECT_EQ(child.Stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST(CrossProcess, AListenFdMeantForAnotherProcessIsIgnored) {
  std::string dir = TempDir(), path = dir + "/instance.sock";
  int lfd = ListenUnix(path);
  ASSERT_GE(lfd, 0);
  uint64_t inode = Inode(path);
  // LEVEROS_LISTEN_PID names another process (the variables were inherited
  // from a parent instance): the server binds LEVEROS_LISTEN_ADDR itself.
  Child child("unix:" + path, lfd, "1");
  close(lfd);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child.Port(), 0);
  EXPECT_EQ(child.How(), "bound");
  Result r = AddOver(path, 2, 2);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_NE(Inode(path), inode) << "a socket of its own";
  EXPECT_EQ(child.Stop(), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lever
