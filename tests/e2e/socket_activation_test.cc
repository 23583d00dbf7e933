// Socket activation (DESIGN.md "Processes", docs/operations.md): leverd makes
// each process instance's listening socket and passes it in as fd 3. C++, Go
// and Node services serve on it; a service that binds its own socket, as
// before, still works; and with --socket-activation false nothing is passed.
// `lever ps --json` says which ("socket": "inherited" once leverd got the
// instance's HTTP/2 SETTINGS on the socket it made, "own" otherwise).
#include <signal.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;

// The "socket" of the one instance of `service` in `lever ps --json`.
std::string SocketOf(const Leverd& leverd, const std::string& service) {
  std::vector<Value> rows = leverd.Instances(service);
  if (rows.size() != 1) return "(" + std::to_string(rows.size()) + " instances)";
  const Value* s = rows[0].as_map().Find("socket");
  return s && s->is_string() ? s->as_string() : "(none)";
}

// Deploys `dir` as `service`, calls `method`("sdk") and expects the hello
// answer; then the instance's socket.
std::string HelloSocket(Leverd& leverd, const std::string& dir, const std::string& service,
                        const std::string& method) {
  CommandResult d = leverd.Lever({"deploy", dir});
  EXPECT_EQ(d.exit_code, 0) << d.err;
  auto client = leverd.NewClient();
  Result r = client->Service("dev.lever", service).Invoke(method, {"sdk"});
  EXPECT_TRUE(r.ok()) << r.status.ToString();
  if (r.ok()) {
    EXPECT_EQ(r.value, Value("Hello, sdk!"));
  }
  return SocketOf(leverd, service);
}

// What the test service says about its listening socket (a map; empty if
// the call failed).
Map ListenFd(const Leverd& leverd, const std::string& service) {
  auto client = leverd.NewClient();
  Result r = client->Service("dev.lever", service).Invoke("ListenFd", {});
  EXPECT_TRUE(r.ok()) << r.status.ToString();
  return r.ok() && r.value.is_map() ? r.value.as_map() : Map();
}

// Deploys the test service as `name` with `lever_json`, then ListenFd.
Map DeployAndAsk(Leverd& leverd, const std::string& lever_json, const std::string& name) {
  EXPECT_EQ(leverd.DeployTestService(lever_json).exit_code, 0);
  return ListenFd(leverd, name);
}

Value Field(const Map& m, const char* key) {
  const Value* v = m.Find(key);
  return v ? *v : Value();
}

TEST(SocketActivation, CppServicesServeOnTheSocketLeverdMade) {
  Leverd leverd;
  leverd.Start();
  Map info = DeployAndAsk(leverd, R"({"name":"act"})", "act");
  EXPECT_EQ(Field(info, "onListenFd"), Value(true));
  EXPECT_EQ(Field(info, "LEVEROS_LISTEN_FD"), Value("3"));
  Value pid = Field(info, "pid");
  EXPECT_EQ(Field(info, "LEVEROS_LISTEN_PID"), Value(pid.is_int() ? std::to_string(pid.as_int()) : "?"));
  EXPECT_EQ(SocketOf(leverd, "act"), "inherited");

  // The README's hello (gRPC linked statically).
  TempDir svc;
  fs::copy_file(HelloServicePath(), svc.path() + "/serve");
  std::ofstream(svc.path() + "/lever.json") << R"({"name":"helloCpp","entry":["./serve"]})";
  EXPECT_EQ(HelloSocket(leverd, svc.path(), "helloCpp", "sayHello"), "inherited");
}

TEST(SocketActivation, AServiceThatBindsItsOwnSocketStillWorks) {
  Leverd leverd;
  leverd.Start();
  // As a binary from before socket activation: it binds LEVEROS_LISTEN_ADDR,
  // replacing leverd's socket at that path.
  Map info = DeployAndAsk(leverd, R"({"name":"own","entry":["./serve","--own-socket","1"]})", "own");
  EXPECT_EQ(Field(info, "onListenFd"), Value(false));
  EXPECT_EQ(SocketOf(leverd, "own"), "own");
  // And again from zero: a cold start of it is served too.
  ASSERT_EQ(leverd.KillInstances("own", SIGKILL), 1);
  ASSERT_TRUE(WaitUntil([&] { return leverd.Instances("own").empty(); }, std::chrono::seconds(20)));
  EXPECT_EQ(Field(ListenFd(leverd, "own"), "onListenFd"), Value(false));
}

TEST(SocketActivation, OffLeverdPassesNoSocket) {
  Leverd leverd({"", {"--socket-activation", "false"}});
  leverd.Start();
  Map info = DeployAndAsk(leverd, R"({"name":"noact"})", "noact");
  EXPECT_EQ(Field(info, "onListenFd"), Value(false));
  EXPECT_EQ(Field(info, "LEVEROS_LISTEN_FD"), Value(""));
  EXPECT_EQ(SocketOf(leverd, "noact"), "own");
}

TEST(SocketActivation, GoAndNodeServicesServeOnTheSocketLeverdMade) {
  // Node instances started fresh: a runner pre-started ahead (--prestart)
  // binds its own socket (it is handed its service over the order socket,
  // which carries no fd to JavaScript yet).
  Leverd leverd({"", {"--prestart", "0"}});
  leverd.Start();
  TempDir go;
  CommandResult build = BuildHelloGo(go.path());
  ASSERT_EQ(build.exit_code, 0) << "go build of examples/hello-go: " << build.err;
  std::ofstream(go.path() + "/lever.json") << R"({"name":"helloGo","entry":["./serve"]})";
  EXPECT_EQ(HelloSocket(leverd, go.path(), "helloGo", "SayHello"), "inherited");

  TempDir js;
  fs::copy_file(std::string(LEVER_SOURCE_DIR) + "/examples/hello-js/server.js", js.path() + "/server.js");
  std::ofstream(js.path() + "/lever.json") << R"({"name":"helloJs","jsEntry":"server.js"})";
  EXPECT_EQ(HelloSocket(leverd, js.path(), "helloJs", "sayHello"), "inherited");
}

}  // namespace
}  // namespace lever::e2e
