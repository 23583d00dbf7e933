// The docker runtime (docs/docker.md) on a real dockerd the test starts
// itself (Debian's docker.io, installed by scripts/setup.sh): private
// --data-root/--exec-root/socket, no iptables, no bridge (the containers run
// with --docker-network none), vfs storage. leverd imports its own image.
// The test inspects containers through the Engine API with curl, apart from
// the client under test.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// One dockerd for the whole binary.
class Dockerd {
 public:
  Dockerd() {
    socket_ = dir_.path() + "/docker.sock";
    std::string log = dir_.path() + "/dockerd.log";
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      setpgid(0, 0);
      execl("/usr/sbin/dockerd", "dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none",
            "--storage-driver=vfs", "--data-root", (dir_.path() + "/data").c_str(), "--exec-root",
            (dir_.path() + "/exec").c_str(), "--pidfile", (dir_.path() + "/dockerd.pid").c_str(), "-H",
            ("unix://" + socket_).c_str(), nullptr);
      _exit(127);
    }
    ready_ = WaitUntil([&] { return Api("GET", "/_ping").second == "OK"; }, std::chrono::seconds(30));
    if (!ready_) {
      std::ifstream in(log);
      log_ = std::string(std::istreambuf_iterator<char>(in), {});
    }
  }
  ~Dockerd() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st;
      if (!WaitUntil([&] { return waitpid(pid_, &st, WNOHANG) == pid_; }, std::chrono::seconds(20))) {
        kill(-pid_, SIGKILL);
        waitpid(pid_, &st, 0);
      }
    }
    // vfs layers and containerd state: as root, under the temp dir.
    RunCommand({"/bin/rm", "-rf", dir_.path() + "/data", dir_.path() + "/exec"});
  }
  bool ready() const { return ready_; }
  pid_t pid() const { return pid_; }
  const std::string& why_not() const { return log_; }
  std::string host() const { return "unix://" + socket_; }

  // An Engine API call with curl: {HTTP status, body}.
  std::pair<int, std::string> Api(const std::string& method, const std::string& target) const {
    CommandResult r = RunCommand({"/usr/bin/curl", "-s", "--max-time", "10", "-X", method, "-w", "\n%{http_code}",
                                  "--unix-socket", socket_, "http://docker/v1.41" + target},
                                 "", std::chrono::seconds(15));
    size_t nl = r.out.rfind('\n');
    if (r.exit_code != 0 || nl == std::string::npos) return {0, ""};
    return {std::atoi(r.out.c_str() + nl + 1), r.out.substr(0, nl)};
  }
  // Containers (running or not) with label `key=value`.
  Json Containers(const std::string& label) const {
    std::string filters = R"({"label":[")" + label + R"("]})";
    std::string escaped;
    for (char c : filters) {
      if (isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') {
        escaped.push_back(c);
      } else {
        char hex[4];
        snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
        escaped += hex;
      }
    }
    auto [status, body] = Api("GET", "/containers/json?all=1&filters=" + escaped);
    Json list = Json::parse(body, nullptr, false);
    return status == 200 && list.is_array() ? list : Json::array();
  }

 private:
  TempDir dir_;
  std::string socket_;
  pid_t pid_ = -1;
  bool ready_ = false;
  std::string log_;
};

Dockerd* dockerd = nullptr;

// The test's dockerd stopped (SIGSTOP: its socket still takes connections
// and requests, answering none) until Thaw() or the end of the scope.
class FrozenDockerd {
 public:
  FrozenDockerd() { EXPECT_EQ(kill(dockerd->pid(), SIGSTOP), 0); }
  ~FrozenDockerd() { Thaw(); }
  void Thaw() {
    if (!thawed_) kill(dockerd->pid(), SIGCONT);
    thawed_ = true;
  }

 private:
  bool thawed_ = false;
};

// Stops it once every test has run.
class DockerdEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete dockerd;
    dockerd = nullptr;
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new DockerdEnvironment);

class DockerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!dockerd) dockerd = new Dockerd();
  }
  void SetUp() override {
    ASSERT_TRUE(dockerd->ready()) << "dockerd did not start (scripts/setup.sh installs docker.io; the test runs "
                                     "/usr/sbin/dockerd as root). Its log:\n"
                                  << dockerd->why_not();
  }
  // leverd with the docker runtime's flags; `default_docker`: --runtime docker.
  // `mount`: one more host dir for every container.
  std::unique_ptr<Leverd> StartLeverd(bool default_docker, const std::string& data_dir = "",
                                      const std::string& mount = "") {
    Leverd::Options o;
    o.data_dir = data_dir;
    o.extra_flags = {"--docker-host", dockerd->host(), "--docker-network", "none", "--docker-mounts",
                     fs::path(LeverPath()).parent_path().parent_path().string() + "/sdk/c" +
                         (mount.empty() ? "" : "," + mount)};
    if (default_docker) o.extra_flags.insert(o.extra_flags.end(), {"--runtime", "docker"});
    auto l = std::make_unique<Leverd>(o);
    l->Start();
    return l;
  }
  static Json Running(const std::string& service) {
    Json out = Json::array();
    for (const Json& c : dockerd->Containers("lever.service=" + service)) {
      if (c["State"] == "running") out.push_back(c);
    }
    return out;
  }
  // Containers created, not started: the one made ahead for `service`'s next start.
  static Json CreatedAhead(const std::string& service) {
    Json out = Json::array();
    for (const Json& c : dockerd->Containers("lever.service=" + service)) {
      if (c["State"] == "created") out.push_back(c);
    }
    return out;
  }
  static std::string ContainerId(const std::string& service) {
    Json r = Running(service);
    return r.size() == 1 ? r[0]["Id"].get<std::string>() : "";
  }
};

std::string Curl(const Leverd& l, const std::string& path, const std::string& body) {
  CommandResult r = RunCommand({"/usr/bin/curl", "-s", "-H", "Content-Type: application/json", "-X", "POST", "-d", body,
                                "http://" + l.address() + path});
  return r.out;
}

// Deploys `dir` and calls service.method("cli"|"http"|"sdk") by the CLI, the
// HTTP API and the C++ SDK.
void DeployAndSayHello(const Leverd& leverd, const std::string& dir, const std::string& service,
                       const std::string& method) {
  CommandResult d = leverd.Lever({"deploy", dir});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  std::string path = "/" + service + "/" + method;
  CommandResult cli = leverd.Lever({"invoke", path, "\"cli\""});
  std::string log;
  for (const auto& l : leverd.LogLines()) log += l + "\n";
  ASSERT_EQ(cli.exit_code, 0) << cli.err << "\n" << log;
  EXPECT_EQ(cli.out, "\"Hello, cli!\"\n");
  EXPECT_EQ(Curl(leverd, path + "?forceenv=dev.lever", R"(["http"])"), "\"Hello, http!\"");
  auto client = leverd.NewClient();
  Result r = client->Service("dev.lever", service).Invoke(method, {"sdk"});
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(r.value.as_string(), "Hello, sdk!");
}

TEST_F(DockerTest, HelloCppRunsInAContainerAndAnswersCliHttpAndSdk) {
  auto leverd = StartLeverd(false);  // process by default: lever.json picks docker
  TempDir svc;
  std::ofstream(svc.path() + "/lever.json") << R"({"name":"helloCpp","entry":["./serve"],"runtime":"docker"})";
  fs::copy_file(HelloServicePath(), svc.path() + "/serve");
  DeployAndSayHello(*leverd, svc.path(), "helloCpp", "sayHello");
  if (HasFatalFailure()) return;

  // It is a container of this leverd, labelled with what it runs.
  Json running = Running("helloCpp");
  ASSERT_EQ(running.size(), 1u) << running.dump();
  const Json& labels = running[0]["Labels"];
  EXPECT_EQ(labels["lever.env"], "dev.lever");
  EXPECT_EQ(labels["lever.version"], "1");
  EXPECT_EQ(labels["lever.owner"], fs::canonical(leverd->data_dir()).string());
  std::vector<Value> instances = leverd->Instances("helloCpp");
  ASSERT_EQ(instances.size(), 1u);
  EXPECT_EQ(labels["lever.instance"], instances[0].as_map().Find("id")->as_string());
  // Locked down: read-only root, no capabilities, no new privileges, no network.
  auto [status, body] = dockerd->Api("GET", "/containers/" + running[0]["Id"].get<std::string>() + "/json");
  ASSERT_EQ(status, 200);
  Json info = Json::parse(body);
  EXPECT_EQ(info["HostConfig"]["ReadonlyRootfs"], true);
  EXPECT_EQ(info["HostConfig"]["CapDrop"], Json({"ALL"}));
  EXPECT_EQ(info["HostConfig"]["SecurityOpt"], Json({"no-new-privileges"}));
  EXPECT_EQ(info["HostConfig"]["NetworkMode"], "none");
  EXPECT_EQ(info["Config"]["NetworkDisabled"], true);
  EXPECT_EQ(info["HostConfig"]["Memory"], 50'000'000);
  EXPECT_GT(info["HostConfig"]["PidsLimit"].get<int64_t>(), 0);
  EXPECT_NE(info["Config"]["User"], "");
  EXPECT_NE(info["Config"]["User"], "0:0");

  ASSERT_EQ(leverd->Stop(), 0);
  EXPECT_TRUE(WaitUntil([] { return dockerd->Containers("lever.service=helloCpp").empty(); },
                        std::chrono::seconds(10)))
      << "leverd's stop leaves no container";
}

TEST_F(DockerTest, HelloJsInAContainer) {
  auto leverd = StartLeverd(false);
  TempDir svc;
  fs::copy_file(std::string(LEVER_SOURCE_DIR) + "/examples/hello-js/server.js", svc.path() + "/server.js");
  std::ofstream(svc.path() + "/lever.json") << R"({"name":"helloJs","jsEntry":"server.js","runtime":"docker"})";
  DeployAndSayHello(*leverd, svc.path(), "helloJs", "sayHello");
  EXPECT_EQ(Running("helloJs").size(), 1u);
}

// Built here against this build's liblever (rpath to its dir, which the
// test's leverd mounts into containers with --docker-mounts).
TEST_F(DockerTest, HelloGoInAContainer) {
  TempDir svc;
  CommandResult build = BuildHelloGo(svc.path());
  ASSERT_EQ(build.exit_code, 0) << "go build of examples/hello-go: " << build.err;
  std::ofstream(svc.path() + "/lever.json") << R"({"name":"helloGo","entry":["./serve"],"runtime":"docker"})";
  auto leverd = StartLeverd(false);
  DeployAndSayHello(*leverd, svc.path(), "helloGo", "SayHello");
  EXPECT_EQ(Running("helloGo").size(), 1u);
}

TEST_F(DockerTest, ContainerKilledMidCallFailsThatCallOnly) {
  auto leverd = StartLeverd(true);
  ASSERT_EQ(leverd->DeployTestService(R"({"name":"dkill"})").exit_code, 0);
  auto client = leverd->NewClient();
  Endpoint ep = client->Service("dev.lever", "dkill");
  Result warm = ep.Invoke("Whoami", {});
  ASSERT_TRUE(warm.ok()) << warm.status.ToString();
  std::string id = ContainerId("dkill");
  ASSERT_FALSE(id.empty());

  std::atomic<bool> done{false};
  Result slow;
  auto pending = ep.InvokeAsync("SleepMs", {int64_t{20000}}, CallOptions{std::chrono::seconds(30)}, [&](Result r) {
    slow = std::move(r);
    done = true;
  });
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto in = leverd->Instances("dkill");
        return in.size() == 1 && in[0].as_map().Find("inFlight") && in[0].as_map().Find("inFlight")->as_int() >= 1;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(dockerd->Api("POST", "/containers/" + id + "/kill?signal=SIGKILL").first, 204);
  ASSERT_TRUE(WaitUntil([&] { return done.load(); }, std::chrono::seconds(10)));
  EXPECT_FALSE(slow.ok());
  EXPECT_EQ(slow.status.code(), Code::kUnavailable) << slow.status.ToString();

  Result next = ep.Invoke("Whoami", {});
  ASSERT_TRUE(next.ok()) << next.status.ToString();
  EXPECT_NE(next.value.as_map().Find("instance")->as_string(), warm.value.as_map().Find("instance")->as_string());
  EXPECT_TRUE(WaitUntil([&] { return dockerd->Api("GET", "/containers/" + id + "/json").first == 404; },
                        std::chrono::seconds(10)))
      << "the killed container is removed";
}

TEST_F(DockerTest, OverRamIsOomKilledAndTheNextCallGetsAFreshInstance) {
  auto leverd = StartLeverd(true);
  ASSERT_EQ(leverd->DeployTestService(R"({"name":"doom","ram":64})").exit_code, 0);
  auto client = leverd->NewClient();
  Endpoint ep = client->Service("dev.lever", "doom");
  Result first = ep.Invoke("Whoami", {});
  ASSERT_TRUE(first.ok()) << first.status.ToString();
  Result oom = ep.Invoke("AllocMb", {int64_t{200}});
  EXPECT_FALSE(oom.ok());
  EXPECT_EQ(oom.status.code(), Code::kUnavailable) << oom.status.ToString();
  Result next = ep.Invoke("Whoami", {});
  ASSERT_TRUE(next.ok()) << next.status.ToString();
  EXPECT_NE(next.value.as_map().Find("instance")->as_string(), first.value.as_map().Find("instance")->as_string());
  EXPECT_TRUE(leverd->WaitForLog("out of memory", std::chrono::seconds(10)));
  CommandResult logs = leverd->Lever({"logs", "doom"});
  EXPECT_NE(logs.out.find("out of memory"), std::string::npos) << logs.out << logs.err;
  // Within the limit is fine.
  EXPECT_TRUE(ep.Invoke("AllocMb", {int64_t{8}}).ok());
}

TEST_F(DockerTest, AContainerCannotReadTheDataDirOrWriteItsCode) {
  auto leverd = StartLeverd(true);
  ASSERT_EQ(leverd->DeployTestService(R"({"name":"diso"})").exit_code, 0);
  auto client = leverd->NewClient();
  Endpoint ep = client->Service("dev.lever", "diso");
  std::string data = fs::canonical(leverd->data_dir()).string();
  // Its own code it reads, at /lever/code.
  Result own = ep.Invoke("ReadFile", {"/lever/code/lever.json"});
  ASSERT_TRUE(own.ok()) << own.status.ToString();
  EXPECT_NE(own.value.as_string().find("diso"), std::string::npos);
  for (const std::string& secret : {data + "/admin.token", data + "/lever.db", std::string("/etc/shadow")}) {
    Result r = ep.Invoke("ReadFile", {secret});
    EXPECT_TRUE(r.is_app_error()) << secret << " was readable";
  }
  Result w = ep.Invoke("WriteFile", {"/lever/code/serve"});
  ASSERT_TRUE(w.is_app_error());
  EXPECT_EQ(w.value.as_string(), "Read-only file system");
  EXPECT_TRUE(ep.Invoke("WriteFile", {"/usr/x"}).is_app_error());
  EXPECT_TRUE(ep.Invoke("WriteFile", {"/x"}).is_app_error());
  EXPECT_TRUE(ep.Invoke("WriteFile", {"/tmp/x"}).ok()) << "its /tmp is a small tmpfs";
  // A network namespace of its own: loopback only (--docker-network none).
  Result net = ep.Invoke("ReadFile", {"/proc/net/dev"});
  ASSERT_TRUE(net.ok()) << net.status.ToString();
  std::string dev = net.value.as_string();
  EXPECT_NE(dev.find("lo:"), std::string::npos) << dev;
  EXPECT_EQ(std::count(dev.begin(), dev.end(), ':'), 1) << "lo alone: " << dev;
  // Its output (the attach stream) reaches leverd's log and `lever logs`.
  ASSERT_TRUE(ep.Invoke("Print", {"hello from a container"}).ok());
  EXPECT_TRUE(leverd->WaitForLog("print: hello from a container", std::chrono::seconds(10)));
  CommandResult logs = leverd->Lever({"logs", "diso"});
  EXPECT_NE(logs.out.find("print: hello from a container"), std::string::npos) << logs.out << logs.err;
  Result uid = ep.Invoke("Uid", {});
  ASSERT_TRUE(uid.ok());
  EXPECT_NE(uid.value.as_int(), 0) << "runs as a non-root user";
  if (geteuid() == 0) {
    // Its service's own user, as process instances (docs/security.md), and
    // its env's internal socket its env's group's alone: it reaches it
    // through the group it was given (HostConfig.GroupAdd).
    EXPECT_GE(uid.value.as_int(), 61184);
    EXPECT_LE(uid.value.as_int(), 65519);
    struct stat st;
    ASSERT_EQ(stat((data + "/run/env-dev.lever.sock").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_uid, 0u);
    ASSERT_EQ(leverd->DeployTestService(R"({"name":"diso2"})").exit_code, 0);
    Result other = ep.Invoke("CallOther", {"diso2", "Uid"});
    ASSERT_TRUE(other.ok()) << other.status.ToString() << (other.value.is_string() ? other.value.as_string() : "");
    ASSERT_TRUE(other.value.is_integer());
    EXPECT_NE(other.value.as_int(), uid.value.as_int()) << "another service, another user";
    EXPECT_GE(other.value.as_int(), 61184);
  }
}

TEST_F(DockerTest, LeverdRestartedAfterKill9LeavesNoContainerBehind) {
  TempDir data;
  std::string old_id;
  {
    auto leverd = StartLeverd(true, data.path());
    ASSERT_EQ(leverd->DeployTestService(R"({"name":"dleft"})").exit_code, 0);
    auto client = leverd->NewClient();
    ASSERT_TRUE(client->Service("dev.lever", "dleft").Invoke("Whoami", {}).ok());
    old_id = ContainerId("dleft");
    ASSERT_FALSE(old_id.empty());
    kill(leverd->pid(), SIGKILL);
    int st;
    waitpid(leverd->pid(), &st, 0);
  }  // ~Leverd: already dead
  EXPECT_EQ(Running("dleft").size(), 1u) << "the container outlives a killed leverd";
  auto again = StartLeverd(true, data.path());
  EXPECT_EQ(dockerd->Api("GET", "/containers/" + old_id + "/json").first, 404);
  EXPECT_TRUE(dockerd->Containers("lever.owner=" + fs::canonical(data.path()).string()).empty());
  auto client = again->NewClient();
  Result r = client->Service("dev.lever", "dleft").Invoke("Whoami", {});
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(Running("dleft").size(), 1u);
}

// A deployable dir of the test service with `lever_json`.
void MakeTestService(const TempDir& dir, const std::string& lever_json) {
  std::ofstream(dir.path() + "/lever.json") << lever_json;
  fs::copy_file(TestServicePath(), dir.path() + "/serve");
}

// The docker runtime never makes the supervisor wait for dockerd: with
// dockerd stopped, a docker service's first instance (and the runtime's own
// checks, opened by that start) waits on its own thread, while a process
// service on the same leverd deploys and answers; once dockerd runs again
// the docker service answers too.
TEST_F(DockerTest, AStoppedDockerdHoldsUpOnlyItsOwnInstances) {
  auto leverd = StartLeverd(false);  // process by default: docker opens on dslow's first start
  TempDir dsvc, psvc;
  MakeTestService(dsvc, R"({"name":"dslow","runtime":"docker"})");
  MakeTestService(psvc, R"({"name":"pquick"})");
  CommandResult docker_deploy;
  std::atomic<bool> docker_deployed{false};
  std::jthread deploy;  // joined after the thaw below (declared first: destroyed last)
  FrozenDockerd frozen;
  deploy = std::jthread([&] {
    docker_deploy = leverd->Lever({"deploy", dsvc.path()});
    docker_deployed = true;
  });
  ASSERT_TRUE(WaitUntil([&] { return leverd->Instances("dslow").size() == 1; }, std::chrono::seconds(20)))
      << "dslow's first instance starts";
  CommandResult p = leverd->Lever({"deploy", psvc.path()});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto client = leverd->NewClient();
  Result quick = client->Service("dev.lever", "pquick").Invoke("Whoami", {});
  ASSERT_TRUE(quick.ok()) << quick.status.ToString();
  EXPECT_FALSE(docker_deployed.load()) << "dslow's deploy finished with dockerd stopped: " << docker_deploy.err;
  std::vector<Value> starting = leverd->Instances("dslow");
  ASSERT_EQ(starting.size(), 1u);
  EXPECT_EQ(starting[0].as_map().Find("state")->as_string(), "starting");

  frozen.Thaw();
  deploy.join();
  ASSERT_EQ(docker_deploy.exit_code, 0) << docker_deploy.err;
  Result slow = client->Service("dev.lever", "dslow").Invoke("Whoami", {});
  ASSERT_TRUE(slow.ok()) << slow.status.ToString();
  EXPECT_EQ(Running("dslow").size(), 1u);
  EXPECT_TRUE(WaitUntil(
      [&] {
        std::vector<Value> in = leverd->Instances("dslow");
        return in.size() == 1 && in[0].as_map().Find("pid")->as_int() > 0;
      },
      std::chrono::seconds(10)))
      << "lever ps shows the container's pid once dockerd started it";
}

// A container that cannot be made (here: a mounted dir gone) is an instance
// that exited at once: the call waiting for it fails UNAVAILABLE with
// dockerd's reason, which `lever logs` shows too, nothing is left behind and
// leverd goes on serving.
TEST_F(DockerTest, AContainerThatCannotStartFailsTheCallWithWhy) {
  auto extra = std::make_unique<TempDir>();
  std::string gone = extra->path();
  auto leverd = StartLeverd(false, "", gone);
  ASSERT_EQ(leverd->DeployTestService(R"({"name":"dfail","runtime":"docker"})").exit_code, 0);
  auto client = leverd->NewClient();
  Endpoint ep = client->Service("dev.lever", "dfail");
  ASSERT_TRUE(ep.Invoke("Whoami", {}).ok());
  std::string id = ContainerId("dfail");
  ASSERT_FALSE(id.empty());
  std::vector<Value> before = leverd->Instances("dfail");
  ASSERT_EQ(before.size(), 1u);
  std::string old_instance = before[0].as_map().Find("id")->as_string();
  // Made ahead with the mount: its start fails (a later create would too).
  ASSERT_TRUE(WaitUntil([] { return CreatedAhead("dfail").size() == 1; }, std::chrono::seconds(20)));
  extra.reset();  // the next container's bind mount has no source
  ASSERT_FALSE(fs::exists(gone));
  EXPECT_EQ(dockerd->Api("POST", "/containers/" + id + "/kill?signal=SIGKILL").first, 204);
  // Gone (the autoscaler may be starting another meanwhile, which fails the same way).
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const Value& i : leverd->Instances("dfail")) {
          if (i.as_map().Find("id")->as_string() == old_instance) return false;
        }
        return true;
      },
      std::chrono::seconds(10)));

  Result r = ep.Invoke("Whoami", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status.code(), Code::kUnavailable) << r.status.ToString();
  EXPECT_NE(r.status.message().find("exited with status 127"), std::string::npos) << r.status.message();
  EXPECT_NE(r.status.message().find("cannot start the container"), std::string::npos) << r.status.message();
  EXPECT_NE(r.status.message().find(gone), std::string::npos) << "names the missing mount: " << r.status.message();
  CommandResult logs = leverd->Lever({"logs", "dfail"});
  EXPECT_NE(logs.out.find("[docker] cannot start the container"), std::string::npos) << logs.out << logs.err;

  std::string owner = "lever.owner=" + fs::canonical(leverd->data_dir()).string();
  EXPECT_TRUE(WaitUntil([&] { return dockerd->Containers(owner).empty(); }, std::chrono::seconds(10)))
      << dockerd->Containers(owner).dump();
  ASSERT_EQ(leverd->DeployTestService(R"({"name":"pafter"})").exit_code, 0);
  EXPECT_TRUE(client->Service("dev.lever", "pafter").Invoke("Whoami", {}).ok()) << "leverd goes on serving";
}

// A cold start after the first takes the container created ahead for it
// (created, not started, once the first listened): the instance that answers
// is that container's, and the next one is made; leverd's stop removes it.
TEST_F(DockerTest, AColdStartTakesTheContainerCreatedAhead) {
  auto leverd = StartLeverd(true);
  ASSERT_EQ(leverd->DeployTestService(R"({"name":"dahead"})").exit_code, 0);
  auto client = leverd->NewClient();
  Endpoint ep = client->Service("dev.lever", "dahead");
  Result first = ep.Invoke("Whoami", {});
  ASSERT_TRUE(first.ok()) << first.status.ToString();
  std::string first_instance = first.value.as_map().Find("instance")->as_string();
  ASSERT_TRUE(WaitUntil([] { return CreatedAhead("dahead").size() == 1; }, std::chrono::seconds(20)));
  Json ahead = CreatedAhead("dahead")[0];
  std::string ahead_instance = ahead["Labels"]["lever.instance"].get<std::string>();
  EXPECT_NE(ahead_instance, first_instance);
  std::string running = ContainerId("dahead");
  ASSERT_FALSE(running.empty());
  EXPECT_EQ(dockerd->Api("POST", "/containers/" + running + "/kill?signal=SIGKILL").first, 204);

  // The next start (the call's, or the autoscaler's) takes it.
  Result next;
  ASSERT_TRUE(WaitUntil(
      [&] {
        next = ep.Invoke("Whoami", {});
        return next.ok() && next.value.as_map().Find("instance")->as_string() != first_instance;
      },
      std::chrono::seconds(20)))
      << next.status.ToString();
  EXPECT_EQ(next.value.as_map().Find("instance")->as_string(), ahead_instance);
  EXPECT_EQ(ContainerId("dahead"), ahead["Id"].get<std::string>());
  // Made ahead, it runs as the same per-service user as one made at start.
  if (geteuid() == 0) {
    Result uid = ep.Invoke("Uid", {});
    ASSERT_TRUE(uid.ok()) << uid.status.ToString();
    EXPECT_GE(uid.value.as_int(), 61184);
    EXPECT_LE(uid.value.as_int(), 65519);
  }
  EXPECT_TRUE(WaitUntil(
      [&] {
        Json c = CreatedAhead("dahead");
        return c.size() == 1 && c[0]["Id"] != ahead["Id"];
      },
      std::chrono::seconds(20)))
      << "the one after is made";

  ASSERT_EQ(leverd->Stop(), 0);
  EXPECT_TRUE(WaitUntil([] { return dockerd->Containers("lever.service=dahead").empty(); }, std::chrono::seconds(10)))
      << "leverd's stop removes the container made ahead too";
}

// A stop while the container's create is on its way (dockerd stopped): the
// start is given up once dockerd answers, and the container it made is
// removed with the instance's socket dir.
TEST_F(DockerTest, AStopDuringTheStartRemovesTheContainer) {
  auto leverd = StartLeverd(true);
  TempDir svc;
  MakeTestService(svc, R"({"name":"dgone"})");
  CommandResult deploy_result;
  std::jthread deploy;  // joined after the thaw below (declared first: destroyed last)
  FrozenDockerd frozen;
  deploy = std::jthread([&] { deploy_result = leverd->Lever({"deploy", svc.path()}); });
  std::string instance;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto in = leverd->Instances("dgone");
        if (in.size() == 1) instance = in[0].as_map().Find("id")->as_string();
        return in.size() == 1;
      },
      std::chrono::seconds(20)));
  CommandResult del = leverd->Lever({"env", "delete", "dev.lever"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  ASSERT_TRUE(leverd->WaitForLog("stopping instance " + instance, std::chrono::seconds(10)));
  frozen.Thaw();
  ASSERT_TRUE(leverd->WaitForLog("instance " + instance + " stopped", std::chrono::seconds(40)));
  deploy.join();
  EXPECT_NE(deploy_result.exit_code, 0) << "its environment was deleted";
  std::string owner = "lever.owner=" + fs::canonical(leverd->data_dir()).string();
  EXPECT_TRUE(WaitUntil([&] { return dockerd->Containers(owner).empty(); }, std::chrono::seconds(10)))
      << dockerd->Containers(owner).dump();
  EXPECT_FALSE(fs::exists(leverd->data_dir() + "/run/" + instance + ".docker"));
  EXPECT_FALSE(fs::exists(leverd->data_dir() + "/run/" + instance + ".sock"));
}

TEST_F(DockerTest, UnreachableDockerdFailsLeverdsStartClearly) {
  TempDir data;
  CommandResult r = RunCommand({LeverdPath(), "--listen", "127.0.0.1:0", "--data-dir", data.path(), "--runtime",
                                "docker", "--docker-host", "unix://" + data.path() + "/none.sock"},
                               "", std::chrono::seconds(20));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("does not answer"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--docker-host"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lever::e2e
