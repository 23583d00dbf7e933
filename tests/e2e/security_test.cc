// What instances and other callers can reach of the platform (docs/security.md):
// admin calls through an instance's internal gateway, from another network
// namespace and over the HTTP API need the admin token; a root leverd's
// instances cannot read its secrets. Real leverd, real instances, a real
// network namespace (the tests run as root, here and in CI).
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "etcd/test_cluster.h"
#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {
namespace {

using namespace std::chrono_literals;

// The ids an instance of `service` runs with, from /proc/<pid>/status.
struct Ids {
  int pid = 0;
  uint32_t uid = 0, euid = 0;
  std::string groups;  // "Groups:" as the kernel lists them
};
Ids IdsOf(const Leverd& d, const std::string& service) {
  Ids ids;
  std::vector<Value> inst = d.Instances(service);
  EXPECT_EQ(inst.size(), 1u) << service;
  if (inst.size() != 1) return ids;
  ids.pid = static_cast<int>(inst[0].as_map().Find("pid")->as_int());
  std::ifstream status("/proc/" + std::to_string(ids.pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) std::sscanf(line.c_str(), "Uid: %u %u", &ids.uid, &ids.euid);
    if (line.rfind("Groups:", 0) == 0) ids.groups = line.substr(7);
  }
  return ids;
}

std::string Token(const Leverd& d) {
  std::ifstream in(d.data_dir() + "/admin.token");
  std::string t;
  std::getline(in, t);
  return t;
}

// `lever` with no token anywhere: no LEVER_ADMIN_TOKEN, and a HOME and
// --data-dir without a token file (as root the default data dir is
// /var/lib/lever, which another leverd on this machine may use).
CommandResult LeverWithoutToken(const std::vector<std::string>& prefix, const std::string& host,
                                const std::vector<std::string>& args) {
  static TempDir empty_home;
  std::vector<std::string> argv = prefix;
  for (std::string a : {"/usr/bin/env", "-u", "LEVER_ADMIN_TOKEN", "-u", "LEVER_DATA_DIR", "-u", "XDG_DATA_HOME"}) {
    argv.push_back(a);
  }
  argv.push_back("HOME=" + empty_home.path());
  argv.push_back(LeverPath());
  argv.push_back("--data-dir");
  argv.push_back(empty_home.path());
  argv.push_back("-H");
  argv.push_back(host);
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

CommandResult LeverWithToken(const std::vector<std::string>& prefix, const std::string& host,
                             const std::string& token, const std::vector<std::string>& args) {
  std::vector<std::string> argv = prefix;
  argv.push_back("/usr/bin/env");
  argv.push_back("LEVER_ADMIN_TOKEN=" + token);
  argv.push_back(LeverPath());
  argv.push_back("-H");
  argv.push_back(host);
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

TEST(SecurityTest, AnInstanceCannotDeployThroughItsInternalGateway) {
  Leverd d;
  d.Start();
  ASSERT_EQ(d.DeployTestService(R"({"name": "intruder", "entry": ["./serve"]})").exit_code, 0);
  auto client = d.NewClient();
  // DeployServiceChan through LEVEROS_INTERNAL_RPC_GATEWAY: denied before
  // anything is uploaded.
  Result r = client->InvokeUrl("lever://dev.lever/intruder/StreamUrl",
                               {"lever://admin.lever/admin//DeployServiceChan", "dev.lever"}, CallOptions{30s});
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  ASSERT_TRUE(r.value.is_string());
  EXPECT_EQ(r.value.as_string().rfind("PERMISSION_DENIED", 0), 0u) << r.value.as_string();
  EXPECT_NE(r.value.as_string().find("an instance"), std::string::npos) << r.value.as_string();
  // Unary admin calls too.
  r = client->InvokeUrl("lever://dev.lever/intruder/CallUrl", {"lever://admin.lever/admin//ListEnvironments"},
                        CallOptions{30s});
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  ASSERT_TRUE(r.value.is_string());
  EXPECT_EQ(r.value.as_string().rfind("PERMISSION_DENIED", 0), 0u) << r.value.as_string();
  // The service is still the one deployed, alone.
  CommandResult ps = d.Lever({"--json", "ps", "-a"});
  EXPECT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_NE(ps.out.find("intruder"), std::string::npos);
}

TEST(SecurityTest, LoopbackNeedsNoTokenByDefaultAndDoesWhenRequired) {
  Leverd open;
  open.Start();
  CommandResult r = LeverWithoutToken({}, open.address(), {"env", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;  // the original CLI's laptop workflow

  Leverd strict(Leverd::Options{.extra_flags = {"--admin-token-required"}});
  strict.Start();
  r = LeverWithoutToken({}, strict.address(), {"env", "list"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("LEVER_ADMIN_TOKEN"), std::string::npos) << r.err;  // says how to fix it
  // The token from the data dir, from the variable; a wrong one is refused.
  r = strict.Lever({"env", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = LeverWithToken({}, strict.address(), Token(strict), {"env", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = LeverWithToken({}, strict.address(), "wrong", {"env", "list"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("wrong"), std::string::npos) << r.err;
  // A user service never sees the token.
  ASSERT_EQ(strict.DeployTestService(R"({"name": "peek", "entry": ["./serve"]})").exit_code, 0);
  r = strict.Lever({"invoke", "lever://dev.lever/peek/Metadata", "\"lever-admin-token\""});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\"\"\n");
}

// A network namespace joined to this one by a veth pair, with addresses on
// that link only; removed (with the pair) on destruction, also when the test
// fails half-way.
class NetNs {
 public:
  NetNs() : name_("lvsec" + std::to_string(getpid())) {
    Run({"ip", "netns", "del", name_});  // a leftover of a killed run
    std::string host_if = "lvh" + std::to_string(getpid()), ns_if = "lvn" + std::to_string(getpid());
    // 10.254.x.y/30, x.y from the pid: concurrent runs do not collide.
    int n = getpid() % 16000;
    std::string net = "10.254." + std::to_string(n / 64) + ".";
    int base = (n % 64) * 4;
    host_addr_ = net + std::to_string(base + 1);
    ns_addr_ = net + std::to_string(base + 2);
    ok_ = Run({"ip", "netns", "add", name_}) && Run({"ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if}) &&
          Run({"ip", "link", "set", ns_if, "netns", name_}) &&
          Run({"ip", "addr", "add", host_addr_ + "/30", "dev", host_if}) && Run({"ip", "link", "set", host_if, "up"}) &&
          Run({"ip", "-n", name_, "addr", "add", ns_addr_ + "/30", "dev", ns_if}) &&
          Run({"ip", "-n", name_, "link", "set", ns_if, "up"}) && Run({"ip", "-n", name_, "link", "set", "lo", "up"});
    host_if_ = host_if;
  }
  ~NetNs() {
    Run({"ip", "netns", "del", name_});  // takes its end of the pair, and so the pair, with it
    Run({"ip", "link", "del", host_if_});  // in case the pair never moved
  }
  bool ok() const { return ok_; }
  const std::string& host_addr() const { return host_addr_; }
  const std::string& ns_addr() const { return ns_addr_; }
  std::vector<std::string> Exec() const { return {"/usr/bin/env", "ip", "netns", "exec", name_}; }
  const std::string& name() const { return name_; }

 private:
  static bool Run(std::vector<std::string> argv) {
    argv.insert(argv.begin(), "/usr/bin/env");  // ip from PATH
    return RunCommand(argv, "", 10s).exit_code == 0;
  }
  std::string name_, host_if_, host_addr_, ns_addr_;
  bool ok_ = false;
};

TEST(SecurityTest, ACallerFromAnotherNetworkNamespaceNeedsTheToken) {
  std::string ns_name;
  {
    NetNs ns;
    ns_name = ns.name();
    ASSERT_TRUE(ns.ok()) << "cannot set up the network namespace (ip netns, veth)";
    // Loopback may go without the token here, so the denial below is the
    // non-loopback rule alone.
    Leverd d(Leverd::Options{.extra_flags = {"--admin-token-required=false"}, .listen = "0.0.0.0:0"});
    d.Start();
    std::string there = ns.host_addr() + ":" + std::to_string(d.port());
    CommandResult r = LeverWithoutToken(ns.Exec(), there, {"env", "list"});
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(ns.ns_addr()), std::string::npos) << r.err;  // the caller as leverd saw it
    r = LeverWithToken(ns.Exec(), there, Token(d), {"env", "list"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("dev.lever"), std::string::npos) << r.out;
    // A user service answers without any token.
    ASSERT_EQ(d.DeployTestService(R"({"name": "open", "entry": ["./serve"]})").exit_code, 0);
    r = LeverWithoutToken(ns.Exec(), there, {"invoke", "lever://dev.lever/open/BasicHello", "\"ns\""});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  CommandResult left = RunCommand({"/usr/bin/env", "ip", "netns", "list"});
  EXPECT_EQ(left.out.find(ns_name), std::string::npos) << left.out;
}

// The leverd (started) asks loopback callers for the token: the auto rule.
void ExpectTokenRequiredOnLoopback(Leverd& d) {
  d.Start();
  EXPECT_TRUE(d.WaitForLog("admin calls need the token from every caller", 5s));
  CommandResult r = LeverWithoutToken({}, d.address(), {"env", "list"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  EXPECT_EQ(d.Lever({"env", "list"}).exit_code, 0);
}

TEST(SecurityTest, AClusterRegistryRequiresTheTokenByDefault) {
  std::unique_ptr<host::etcd::testing::Cluster> etcd;
  Status s = host::etcd::testing::Cluster::Start({}, &etcd);
  ASSERT_TRUE(s.ok()) << s.message();
  Leverd d(Leverd::Options{.extra_flags = {"--registry", "etcd://" + etcd->Endpoints()}});
  ExpectTokenRequiredOnLoopback(d);
}

TEST(SecurityTest, ANonLoopbackListenerRequiresTheTokenByDefault) {
  Leverd d(Leverd::Options{.listen = "0.0.0.0:0"});
  ExpectTokenRequiredOnLoopback(d);
}

// One request on a new loopback connection: `head` is the request line and
// headers (without the blank line).
RawResponse Http(int port, const std::string& head, const std::string& body = "") {
  RawHttp c(port);
  RawResponse r;
  std::string req = head + "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  if (!c.Send(req) || !c.ReadResponse(&r)) r.status = -1;
  return r;
}

TEST(SecurityTest, TheHttpApiNeverReachesAdminWithoutTheToken) {
  Leverd d;
  d.Start();
  ASSERT_EQ(d.DeployTestService(R"({"name": "web", "entry": ["./serve"]})").exit_code, 0);
  int port = d.port();
  std::string host = "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
  std::string json = "Content-Type: application/json\r\n";
  std::string list = "POST /admin/ListEnvironments?forceenv=admin.lever HTTP/1.1\r\n";
  std::string bearer = "Authorization: Bearer " + Token(d) + "\r\n";

  // From loopback without the token: refused, whatever names the env.
  RawResponse r = Http(port, list + host + json, "[]");
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("Authorization: Bearer"), std::string::npos) << r.body;
  r = Http(port, "POST /admin/ListEnvironments HTTP/1.1\r\nHost: admin.lever\r\n" + json, "[]");
  EXPECT_EQ(r.status, 403);
  r = Http(port, "POST /admin/ListEnvironments?forceenv=ADMIN.LEVER HTTP/1.1\r\n" + host + json, "[]");
  EXPECT_GE(r.status, 400);  // no other spelling routes to admin
  r = Http(port, list + host + json + "Authorization: Bearer wrong\r\n", "[]");
  EXPECT_EQ(r.status, 403);
  // With it: served.
  r = Http(port, list + host + json + bearer, "[]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("dev.lever"), std::string::npos) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "");

  // A browser, even one holding the token: refused, and no CORS header tells
  // it anything. A page's "simple" cross-origin POST (no preflight) too.
  for (std::string origin : {std::string("https://evil.example"), "http://127.0.0.1:" + std::to_string(port)}) {
    r = Http(port, list + host + json + bearer + "Origin: " + origin + "\r\n", "[]");
    EXPECT_EQ(r.status, 403) << origin;
    EXPECT_NE(r.body.find("Origin"), std::string::npos) << r.body;
    EXPECT_EQ(r.header("access-control-allow-origin"), "") << origin;
  }
  r = Http(port,
           "POST /admin/DeleteEnvironment?forceenv=admin.lever HTTP/1.1\r\n" + host +
               "Content-Type: text/plain\r\nOrigin: https://evil.example\r\n",
           "[\"dev.lever\"]");
  EXPECT_EQ(r.status, 403);
  // DNS rebinding: the page's own name, pointed at 127.0.0.1.
  r = Http(port, list + "Host: evil.example:" + std::to_string(port) + "\r\nOrigin: http://evil.example:" +
                     std::to_string(port) + "\r\n" + json,
           "[]");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  EXPECT_EQ(d.Lever({"invoke", "lever://dev.lever/web/BasicHello", "\"still here\""}).exit_code, 0);

  // The preflight of a cross-origin fetch() to admin fails.
  std::string preflight = "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n"
                          "Access-Control-Request-Headers: content-type\r\n";
  r = Http(port, "OPTIONS /admin/ListEnvironments?forceenv=admin.lever HTTP/1.1\r\n" + host + preflight);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  EXPECT_EQ(r.header("access-control-allow-methods"), "");
  // User services keep the original's CORS.
  r = Http(port, "OPTIONS /web/BasicHello?forceenv=dev.lever HTTP/1.1\r\n" + host + preflight);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("access-control-allow-origin"), "https://evil.example");
  r = Http(port, "POST /web/BasicHello?forceenv=dev.lever HTTP/1.1\r\n" + host + json +
                     "Origin: https://evil.example\r\n",
           "[\"page\"]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("access-control-allow-origin"), "https://evil.example");

  // The status page's data still comes from admin for a loopback page.
  r = Http(port, "GET /_lever/status HTTP/1.1\r\n" + host);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"web\""), std::string::npos) << r.body;
}

TEST(SecurityTest, AProcessInstanceOfARootLeverdCannotReadItsSecrets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a root leverd (CI runs the tests as root)";
  Leverd d;
  d.Start();
  ASSERT_EQ(d.DeployTestService(R"({"name": "reader", "entry": ["./serve"]})").exit_code, 0);
  auto client = d.NewClient();
  auto open = [&](const std::string& path, const std::string& mode) {
    Result r = client->InvokeUrl("lever://dev.lever/reader/OpenFile", {path, mode}, CallOptions{30s});
    EXPECT_TRUE(r.ok()) << r.status.ToString();
    return r.value.is_string() ? r.value.as_string() : "?";
  };
  const std::string& data = d.data_dir();
  for (std::string secret : {"/admin.token", "/lever.db", "/lever.db-wal", "/leverd.lock", "/run/admin.sock", "",
                             "/code", "/run", "/blobs"}) {
    EXPECT_EQ(open(data + secret, "r"), "error: Permission denied") << data + secret;
  }
  // Its own code: readable, not writable.
  std::string code = data + "/code/dev.lever/reader/1";
  EXPECT_EQ(open(code + "/lever.json", "r"), "opened");
  EXPECT_EQ(open(code + "/lever.json", "w"), "error: Permission denied");
  EXPECT_EQ(open(code, "r"), "opened");
  // It runs as its service's own unprivileged user (--instance-user auto).
  Ids ids = IdsOf(d, "reader");
  EXPECT_GE(ids.uid, 61184u) << ids.uid;
  EXPECT_LE(ids.uid, 65519u) << ids.uid;
  EXPECT_EQ(ids.euid, ids.uid);
  EXPECT_TRUE(d.WaitForLog("process instances run as per-service users (uids 61184-65519", 1s));
}

TEST(SecurityTest, AProcessInstanceRunsAsTheSharedUserItIsGiven) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a root leverd (CI runs the tests as root)";
  // lever-instance (scripts/setup.sh makes it), else nobody.
  const passwd* pw = getpwnam("lever-instance");
  if (pw == nullptr) pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  std::string name = pw->pw_name;
  uint32_t uid = pw->pw_uid;
  Leverd d(Leverd::Options{.extra_flags = {"--instance-user", name}});
  d.Start();
  ASSERT_EQ(d.DeployTestService(R"({"name": "reader", "entry": ["./serve"]})").exit_code, 0);
  auto client = d.NewClient();
  Result r = client->InvokeUrl("lever://dev.lever/reader/OpenFile", {d.data_dir() + "/admin.token", "r"},
                               CallOptions{30s});
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(r.value, Value("error: Permission denied"));
  EXPECT_EQ(IdsOf(d, "reader").uid, uid);
  EXPECT_TRUE(d.WaitForLog("process instances run as " + name, 1s));
}

// Instances of different services, and of different environments, are kept
// apart by their users: no reading another's code or /proc environ, no
// reaching another env's internal socket. C++ (a child forked ahead, switched
// at its order) and JavaScript (a runner pre-started as root, which switches
// itself at its hand-off) alike.
TEST(SecurityTest, InstancesOfDifferentServicesCannotReachEachOther) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a root leverd (CI runs the tests as root)";
  Leverd d;
  d.Start();
  ASSERT_EQ(d.DeployTestService(R"({"name": "reader", "entry": ["./serve"]})").exit_code, 0);
  ASSERT_EQ(d.DeployTestService(R"({"name": "victim", "entry": ["./serve"]})").exit_code, 0);
  ASSERT_EQ(d.Lever({"env", "create", "prod.lever"}).exit_code, 0);
  ASSERT_EQ(d.DeployTestService(R"({"name": "elsewhere", "entry": ["./serve"]})", "prod.lever").exit_code, 0);
  TempDir js;
  std::filesystem::copy_file(std::string(LEVER_SOURCE_DIR) + "/examples/hello-js/server.js", js.path() + "/server.js");
  std::ofstream(js.path() + "/lever.json") << R"({"name":"helloJs","jsEntry":"server.js"})";
  ASSERT_EQ(d.Lever({"deploy", js.path()}).exit_code, 0);
  auto client = d.NewClient();
  auto open_as = [&](const std::string& service, const std::string& path) {
    Result r = client->InvokeUrl("lever://dev.lever/" + service + "/OpenFile", {path, "r"}, CallOptions{30s});
    EXPECT_TRUE(r.ok()) << r.status.ToString();
    return r.value.is_string() ? r.value.as_string() : "?";
  };
  // Every instance up.
  ASSERT_EQ(open_as("victim", "/dev/null"), "opened");
  Result hello = client->InvokeUrl("lever://dev.lever/helloJs/sayHello", {Value("ids")}, CallOptions{30s});
  ASSERT_TRUE(hello.ok()) << hello.status.ToString();
  EXPECT_EQ(hello.value, Value("Hello, ids!"));
  Result far = client->InvokeUrl("lever://prod.lever/elsewhere/OpenFile", {"/dev/null", "r"}, CallOptions{30s});
  ASSERT_TRUE(far.ok()) << far.status.ToString();

  Ids reader = IdsOf(d, "reader"), victim = IdsOf(d, "victim"), js_ids = IdsOf(d, "helloJs"),
      elsewhere = IdsOf(d, "elsewhere");
  for (const Ids* i : {&reader, &victim, &js_ids, &elsewhere}) {
    EXPECT_GE(i->uid, 61184u);
    EXPECT_LE(i->uid, 65519u);
    EXPECT_EQ(i->euid, i->uid);
  }
  EXPECT_NE(reader.uid, victim.uid);
  EXPECT_NE(reader.uid, js_ids.uid);
  EXPECT_NE(victim.uid, js_ids.uid);
  EXPECT_NE(elsewhere.uid, reader.uid);
  // One env, one group; another env, another.
  EXPECT_EQ(reader.groups, victim.groups);
  EXPECT_EQ(reader.groups, js_ids.groups);
  EXPECT_NE(reader.groups, elsewhere.groups);

  const std::string& data = d.data_dir();
  // Its own code and environ: yes. Another service's, in its env or not: no.
  EXPECT_EQ(open_as("reader", data + "/code/dev.lever/reader/1/lever.json"), "opened");
  EXPECT_EQ(open_as("reader", "/proc/" + std::to_string(reader.pid) + "/environ"), "opened");
  EXPECT_EQ(open_as("reader", data + "/code/dev.lever/victim/1/lever.json"), "error: Permission denied");
  EXPECT_EQ(open_as("reader", data + "/code/dev.lever/victim/1"), "error: Permission denied");
  EXPECT_EQ(open_as("reader", data + "/code/dev.lever/helloJs/1/server.js"), "error: Permission denied");
  EXPECT_EQ(open_as("reader", data + "/code/prod.lever/elsewhere/1/lever.json"), "error: Permission denied");
  for (const Ids* other : {&victim, &js_ids, &elsewhere}) {
    EXPECT_EQ(open_as("reader", "/proc/" + std::to_string(other->pid) + "/environ"), "error: Permission denied")
        << other->pid;
  }
  // Its env's internal socket: open(2) of a socket it may reach says ENXIO;
  // another env's is refused before that.
  EXPECT_EQ(open_as("reader", data + "/run/env-dev.lever.sock"), "error: No such device or address");
  EXPECT_EQ(open_as("reader", data + "/run/env-prod.lever.sock"), "error: Permission denied");
  // The table of ids is leverd's.
  EXPECT_EQ(open_as("reader", data + "/instance-ids"), "error: Permission denied");
}

TEST(SecurityTest, ALeverdWhoseInstancesCannotReachTheDataDirSaysSo) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a root leverd (CI runs the tests as root)";
  TempDir tmp;
  ASSERT_EQ(chmod(tmp.path().c_str(), 0700), 0);
  Leverd::Options o;
  o.data_dir = tmp.path() + "/data";
  CommandResult r = RunCommand({LeverdPath(), "--listen", "127.0.0.1:0", "--data-dir", o.data_dir});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot reach the data dir " + o.data_dir + ": " + tmp.path() + " is mode 0700"),
            std::string::npos)
      << r.err;
  // Told to keep instances as root, it starts (and warns).
  ASSERT_EQ(chmod(tmp.path().c_str(), 0700), 0);
  o.extra_flags = {"--instance-user", "root"};
  Leverd root(o);
  root.Start();
  EXPECT_TRUE(root.WaitForLog("instances run as root", 1s));
  // A uid works as well as a name.
  ASSERT_EQ(chmod(tmp.path().c_str(), 0755), 0);
  Leverd by_uid(Leverd::Options{.data_dir = tmp.path() + "/uid", .extra_flags = {"--instance-user", "65534"}});
  by_uid.Start();
  EXPECT_TRUE(by_uid.WaitForLog("process instances run as 65534", 1s));
  // A user that does not exist is an error.
  r = RunCommand({LeverdPath(), "--listen", "127.0.0.1:0", "--data-dir", tmp.path() + "/other", "--instance-user",
                  "no-such-user-here"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no-such-user-here"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lever::e2e
