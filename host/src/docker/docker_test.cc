// The Docker Engine API client against a fake dockerd: a thread serving one
// canned reply per connection on a real unix socket, recording what it got.
// And the container spec: what every instance's container is made of.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "docker/client.h"
#include "docker/container_spec.h"

namespace lever::host::docker {
namespace {

namespace fs = std::filesystem;

class FakeDockerd {
 public:
  // `reply`: sent whole after the request's head and body have arrived.
  explicit FakeDockerd(std::string reply, bool hold_open = false) : reply_(std::move(reply)), hold_(hold_open) {
    char tmpl[] = "/tmp/lever-dockerd-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/docker.sock";
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd_, 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeDockerd() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    fs::remove_all(dir_);
  }
  const std::string& path() const { return path_; }
  std::string received() {
    std::lock_guard lock(mu_);
    return received_;
  }

 private:
  void Serve() {
    int c = accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    std::string got;
    char buf[4096];
    // Until the head and its Content-Length of body are in.
    while (true) {
      size_t head = got.find("\r\n\r\n");
      if (head != std::string::npos) {
        size_t cl = 0;
        size_t at = got.find("Content-Length: ");
        if (at != std::string::npos && at < head) cl = std::stoul(got.substr(at + 16));
        if (got.size() >= head + 4 + cl) break;
      }
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      received_ = got;
    }
    (void)!send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
    if (hold_) {
      while (read(c, buf, sizeof buf) > 0) {
      }
    }
    close(c);
  }
  std::string reply_;
  bool hold_;
  std::string dir_, path_;
  int fd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::string received_;
};

TEST(DockerClient, ParsesOnlyUnixHosts) {
  std::string path;
  ASSERT_TRUE(ParseDockerHost("unix:///var/run/docker.sock", &path).ok());
  EXPECT_EQ(path, "/var/run/docker.sock");
  ASSERT_TRUE(ParseDockerHost("/tmp/d.sock", &path).ok());
  EXPECT_EQ(path, "/tmp/d.sock");
  EXPECT_EQ(ParseDockerHost("tcp://127.0.0.1:2375", &path).code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseDockerHost("unix://relative.sock", &path).code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseDockerHost("unix:///" + std::string(200, 'a'), &path).code(), Code::kInvalidArgument);
}

TEST(DockerClient, FormatsVersionedRequestsWithLength) {
  Request r;
  r.method = "POST";
  r.target = "/containers/create?name=x";
  r.body = R"({"Image":"i"})";
  std::string text = FormatRequest(r);
  EXPECT_TRUE(text.starts_with("POST /v1.41/containers/create?name=x HTTP/1.1\r\n")) << text;
  EXPECT_NE(text.find("Content-Type: application/json\r\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Content-Length: 13\r\n"), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with("\r\n\r\n{\"Image\":\"i\"}")) << text;
  Request empty;
  empty.method = "POST";
  empty.target = "/containers/abc/start";
  text = FormatRequest(empty);
  EXPECT_NE(text.find("Content-Length: 0\r\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("Content-Type"), std::string::npos) << text;
}

TEST(DockerClient, DoReadsChunkedReply) {
  FakeDockerd d(
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n{\"Id\"\r\n8\r\n:\"abc\"}\n\r\n0\r\n\r\n");
  Client c(d.path());
  Request r;
  r.method = "POST";
  r.target = "/containers/create";
  r.body = "{}";
  Reply reply;
  Status s = c.Do(r, &reply);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(reply.status, 201);
  EXPECT_EQ(reply.body, "{\"Id\":\"abc\"}\n");
  EXPECT_TRUE(d.received().starts_with("POST /v1.41/containers/create HTTP/1.1\r\n")) << d.received();
  EXPECT_TRUE(d.received().ends_with("\r\n\r\n{}"));
}

TEST(DockerClient, ErrorRepliesCarryDockerdsMessage) {
  FakeDockerd d("HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n{\"message\":\"No such image: lever:1\"}\n   ");
  Client c(d.path());
  Request r;
  r.target = "/images/lever:1/json";
  Reply reply;
  ASSERT_TRUE(c.Do(r, &reply).ok());
  Status s = Check(reply, "inspect image");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "inspect image: dockerd answered 404: No such image: lever:1");
  EXPECT_TRUE(Check(Reply{204, ""}, "start").ok());
  EXPECT_EQ(Check(Reply{409, "not json"}, "x").code(), Code::kFailedPrecondition);
}

TEST(DockerClient, BodyOverItsLimitIsAnError) {
  FakeDockerd d("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'x'));
  Client c(d.path());
  Request r;
  r.target = "/containers/json";
  r.max_body = 10;
  Reply reply;
  Status s = c.Do(r, &reply);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("bad reply from dockerd"), std::string::npos) << s.message();
}

TEST(DockerClient, NoDockerdIsUnavailableWithThePath) {
  Client c("/tmp/lever-no-such-dockerd.sock");
  Request r;
  r.target = "/version";
  Reply reply;
  Status s = c.Do(r, &reply);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("cannot reach dockerd at /tmp/lever-no-such-dockerd.sock"), std::string::npos)
      << s.message();
}

TEST(DockerClient, SilentDockerdTimesOutAndCancelStopsAWait) {
  FakeDockerd d("", /*hold_open=*/true);
  Client c(d.path());
  Request r;
  r.target = "/version";
  r.timeout = std::chrono::milliseconds(50);
  Reply reply;
  EXPECT_EQ(c.Do(r, &reply).code(), Code::kDeadlineExceeded);

  FakeDockerd d2("", true);
  Client c2(d2.path());
  Canceller cancel;
  Request wait;
  wait.method = "POST";
  wait.target = "/containers/x/wait";
  wait.timeout = std::chrono::milliseconds(0);
  std::atomic<int> code{-1};
  std::thread t([&] { code = static_cast<int>(c2.Do(wait, &reply, &cancel).code()); });
  cancel.Cancel();
  t.join();
  EXPECT_EQ(code.load(), static_cast<int>(Code::kCancelled));
}

TEST(DockerClient, HijackHandsOverTheStreamAfterTheHead) {
  FakeDockerd d(std::string("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                            "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n") +
                    std::string("\x01\x00\x00\x00\x00\x00\x00\x03hi\n", 11),
                true);
  Client c(d.path());
  Request r;
  r.method = "POST";
  r.target = "/containers/x/attach?stream=1&stdout=1&stderr=1";
  int fd = -1;
  std::string rest;
  Status s = c.Hijack(r, &fd, &rest);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(rest, std::string("\x01\x00\x00\x00\x00\x00\x00\x03hi\n", 11));
  EXPECT_NE(d.received().find("Upgrade: tcp\r\n"), std::string::npos) << d.received();
  close(fd);
}

TEST(DockerStream, DemuxesFramesSplitAnywhere) {
  std::string out, err;
  StreamDemux demux([&](int stream, std::string_view b) { (stream == 2 ? err : out).append(b); });
  std::string wire = std::string("\x01\0\0\0\0\0\0\x06hello\n", 14) + std::string("\x02\0\0\0\0\0\0\x04oops", 12) +
                     std::string("\x01\0\0\0\0\0\0\x00", 8) + std::string("\x01\0\0\0\0\0\0\x02!\n", 10);
  for (char ch : wire) ASSERT_TRUE(demux.Feed(std::string_view(&ch, 1)));
  EXPECT_EQ(out, "hello\n!\n");
  EXPECT_EQ(err, "oops");
}

TEST(DockerStream, RefusesWhatIsNotDockersFraming) {
  std::string out;
  StreamDemux demux([&](int, std::string_view b) { out.append(b); }, 1024);
  EXPECT_FALSE(demux.Feed(std::string("\x01\0\0\0\0\0\x10\x00", 8)));  // 4 KiB > 1 KiB limit
  EXPECT_FALSE(demux.Feed(std::string("\x01\0\0\0\0\0\0\x01x", 9)));   // ignored once broken
  StreamDemux tty([&](int, std::string_view b) { out.append(b); });
  EXPECT_FALSE(tty.Feed("plain text, a TTY's"));
  EXPECT_EQ(out, "");
}

TEST(ContainerSpec, LocksTheContainerDown) {
  ContainerSpec cs;
  cs.image = "lever-rootfs:1";
  cs.argv = {"./serve"};
  cs.env = {"LEVEROS_SERVICE=s"};
  cs.user = "65534:65534";
  cs.code_dir = "/data/code/abc";
  cs.run_dir = "/data/run/i.docker";
  cs.gateway_socket = "/data/run/env-dev.sock";
  cs.host_mounts = {"/usr", "/opt/sdk", "/usr"};
  cs.network = "none";
  cs.memory_bytes = 50'000'000;
  cs.pids_limit = 512;
  cs.labels = {{"lever.owner", "/data"}, {"lever.service", "s"}};
  nlohmann::json b = CreateBody(cs);
  EXPECT_EQ(b["Image"], "lever-rootfs:1");
  EXPECT_EQ(b["Cmd"], nlohmann::json({"./serve"}));
  EXPECT_EQ(b["User"], "65534:65534");
  EXPECT_EQ(b["WorkingDir"], "/lever/code");
  EXPECT_EQ(b["Tty"], false);
  EXPECT_EQ(b["Labels"]["lever.owner"], "/data");
  const auto& h = b["HostConfig"];
  EXPECT_EQ(h["ReadonlyRootfs"], true);
  EXPECT_EQ(h["CapDrop"], nlohmann::json({"ALL"}));
  EXPECT_EQ(h["SecurityOpt"], nlohmann::json({"no-new-privileges"}));
  EXPECT_EQ(h["Memory"], 50'000'000);
  EXPECT_EQ(h["MemorySwap"], 50'000'000);
  EXPECT_EQ(h["PidsLimit"], 512);
  EXPECT_EQ(h["NetworkMode"], "none");
  EXPECT_EQ(b["NetworkDisabled"], true) << "no sandbox for no network";
  cs.network = "bridge";
  EXPECT_FALSE(CreateBody(cs).contains("NetworkDisabled"));
  EXPECT_FALSE(h.contains("Privileged") && h["Privileged"] == true);
  std::map<std::string, std::pair<std::string, bool>> mounts;  // target → source, read-only
  for (const auto& m : h["Mounts"]) {
    EXPECT_EQ(m["Type"], "bind");
    EXPECT_FALSE(mounts.count(m["Target"])) << "twice: " << m["Target"];
    mounts[m["Target"]] = {m["Source"], m["ReadOnly"]};
  }
  EXPECT_EQ(mounts.size(), 5u);
  EXPECT_EQ(mounts["/usr"], std::make_pair(std::string("/usr"), true));
  EXPECT_EQ(mounts["/opt/sdk"], std::make_pair(std::string("/opt/sdk"), true));
  EXPECT_EQ(mounts["/lever/code"], std::make_pair(std::string("/data/code/abc"), true));
  EXPECT_EQ(mounts["/lever/run"], std::make_pair(std::string("/data/run/i.docker"), false));
  EXPECT_EQ(mounts["/lever/gateway.sock"].first, "/data/run/env-dev.sock");
  EXPECT_FALSE(h.contains("GroupAdd"));  // no supplementary group unless given
  // Per-service users: the env's group, which reaches its internal socket.
  cs.user = "61190:61190";
  cs.groups = {61191};
  b = CreateBody(cs);
  EXPECT_EQ(b["User"], "61190:61190");
  EXPECT_EQ(b["HostConfig"]["GroupAdd"], nlohmann::json({"61191"}));
}

TEST(ContainerSpec, ImageMirrorsTheHostsTopLevel) {
  char tmpl[] = "/tmp/lever-root-XXXXXX";
  std::string root = mkdtemp(tmpl);
  fs::create_directories(root + "/usr/bin");
  fs::create_directories(root + "/lib64");
  fs::create_symlink("usr/bin", root + "/bin");
  HostLayout l = ReadHostLayout(root);
  EXPECT_EQ(l.mounts, (std::vector<std::string>{"/usr", "/lib64"}));
  ASSERT_EQ(l.links.size(), 1u);
  EXPECT_EQ(l.links[0], std::make_pair(std::string("bin"), std::string("usr/bin")));
  std::vector<RootfsEntry> entries = RootfsEntries(l);
  auto has = [&](const std::string& path, const std::string& link) {
    for (const auto& e : entries) {
      if (e.path == path) return e.symlink_to == link;
    }
    return false;
  };
  EXPECT_TRUE(has("usr", ""));
  EXPECT_TRUE(has("lib64", ""));
  EXPECT_TRUE(has("bin", "usr/bin"));
  EXPECT_TRUE(has("lever/code", ""));
  EXPECT_TRUE(has("tmp", ""));
  fs::remove_all(root);
}

TEST(ContainerSpec, RunnerTreeAndUser) {
  EXPECT_EQ(RunnerTree("/opt/lever/node/bin/lever-serve"), "/opt/lever/node");
  EXPECT_EQ(RunnerTree("/lever-serve"), "/");
  User u = ContainerUser("1000:1001");
  EXPECT_EQ(u.spec, "1000:1001");
  EXPECT_EQ(u.uid, 1000u);
  EXPECT_EQ(u.gid, 1001u);
  EXPECT_EQ(ContainerUser("1234").spec, "1234:1234");
  User d = ContainerUser("");
  if (geteuid() == 0) {
    EXPECT_EQ(d.spec, "65534:65534");
  } else {
    EXPECT_EQ(d.uid, geteuid());
  }
}

}  // namespace
}  // namespace lever::host::docker
