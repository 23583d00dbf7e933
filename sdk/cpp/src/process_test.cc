// Cross-process tests: the client in this process, the server runtime in a
// child (testing/test_server.cc) on a unix socket or TCP.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
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
  explicit Child(const std::string& listen) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).starts_with("LEVEROS_")) continue;
      env_strings.emplace_back(*e);
    }
    env_strings.push_back("LEVEROS_LISTEN_ADDR=" + listen);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    char* argv[] = {const_cast<char*>(LEVER_TEST_SERVER), nullptr};
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    ok_ = posix_spawn(&pid_, LEVER_TEST_SERVER, &actions, nullptr, argv, envp.data()) == 0;
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    stdout_ = fdopen(fds[0], "r");
  }
  // Reads "listening <port>": blocks until the child serves or exits.
  int Port() {
    int port = -1;
    if (stdout_ == nullptr || std::fscanf(stdout_, "listening %d", &port) != 1) return -1;
    return port;
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

}  // namespace
}  // namespace lever
