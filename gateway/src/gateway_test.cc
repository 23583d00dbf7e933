// The gateway end to end: real gRPC clients -> gateway (real sockets) -> real
// gRPC instances (in-process EchoServer on unix sockets, or a child process
// that the test kills). The Router is a test double.
#include "lever/gateway/gateway.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "client_side.h"
#include "echo_service.h"
#include "io.h"
#include "worker.h"
#include "leverrpc.grpc.pb.h"

extern char** environ;

namespace lever::gateway {
namespace {

using namespace std::chrono_literals;
using testing::EchoServer;

constexpr auto kWait = 10s;  // bound on every wait for a condition

// Keep gRPC initialised for the whole run: a full grpc_shutdown between tests
// waits up to 10 s for gRPC's executor thread (gRPC 1.51).
const int kGrpcInit = (grpc_init(), 0);

// --- test doubles -------------------------------------------------------------

class TestBackend final : public host::Backend {
 public:
  explicit TestBackend(std::string address) : address_(std::move(address)), id_(next_id_++) {}
  const std::string& address() const override { return address_; }
  uint64_t id() const override { return id_; }
  // The router counts a call when it places it (`starts`); the gateway owes
  // OnCallEnd once for every placed call and never calls OnCallStart.
  void OnCallStart() override { unexpected_starts++; }
  void OnCallEnd() override { ends++; }
  void OnConnectionFailed() override { conn_failed++; }
  bool alive() const override { return true; }
  std::atomic<int> starts{0}, ends{0}, conn_failed{0}, unexpected_starts{0};

 private:
  static inline std::atomic<uint64_t> next_id_{1};
  std::string address_;
  uint64_t id_;
};

// A Router test double: answers by service name.
//   echo     the in-process echo instance
//   private  the echo instance, but PERMISSION_DENIED unless the call is internal
//   remote   `remote_backend` (set by the test)
//   dead     an address where nothing listens
//   full     RESOURCE_EXHAUSTED; down: UNAVAILABLE
//   cold     held until the test calls ReleaseCold()
//   anything else: NOT_FOUND
class TestRouter final : public host::Router {
 public:
  // Places a call on `b`: counted there, as the host does.
  static void Place(const std::function<void(host::RouteResult)>& done, const std::shared_ptr<TestBackend>& b) {
    b->starts++;
    done({Status(), b});
  }

  void Route(const host::RouteRequest& r, std::function<void(host::RouteResult)> done) override {
    (void)RouteCancellable(r, std::move(done));
  }

  // Held `cold` calls can be cancelled, as the host's queue can.
  host::PendingRoute RouteCancellable(const host::RouteRequest& r,
                                      std::function<void(host::RouteResult)> done) override {
    if (r.service == "cold") {
      std::lock_guard<std::mutex> lock(mu);
      requests.push_back({std::string(r.env), std::string(r.service), std::string(r.resource),
                          std::string(r.method), std::string(r.src_env)});
      uint64_t id = ++next_cold_id;
      cold.push_back(std::move(done));
      cold_ids.push_back(id);
      cv.notify_all();
      return {queue_token, id};
    }
    RouteNow(r, std::move(done));
    return {};
  }

  void CancelRoute(const host::PendingRoute& p) override {
    std::function<void(host::RouteResult)> done;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (size_t i = 0; i < cold_ids.size(); ++i) {
        if (cold_ids[i] != p.id) continue;
        done = std::move(cold[i]);
        cold.erase(cold.begin() + static_cast<ptrdiff_t>(i));
        cold_ids.erase(cold_ids.begin() + static_cast<ptrdiff_t>(i));
        ++cancelled;
        break;
      }
    }
    if (done) done({Status(Code::kCancelled, "the caller went away"), nullptr});
  }

  void RouteNow(const host::RouteRequest& r, std::function<void(host::RouteResult)> done) {
    {
      std::lock_guard<std::mutex> lock(mu);
      requests.push_back({std::string(r.env), std::string(r.service), std::string(r.resource),
                          std::string(r.method), std::string(r.src_env)});
    }
    if (r.service == "echo") return Place(done, echo);
    if (r.service == "private") {
      if (r.src_env.empty()) {
        return done({Status(Code::kPermissionDenied, "service \"private\" is private to its environment"), nullptr});
      }
      return Place(done, echo);
    }
    if (r.service == "remote") return Place(done, remote_backend);
    if (r.service == "dead") return Place(done, dead);
    if (r.service == "badaddr") return Place(done, std::make_shared<TestBackend>("no-port-here"));
    if (r.service == "longpath") {
      return Place(done, std::make_shared<TestBackend>("unix:/" + std::string(200, 'p') + ".sock"));
    }
    if (r.service == "full") {
      return done({Status(Code::kResourceExhausted, "queue full: 100% of 64 slots\ntry later"), nullptr});
    }
    if (r.service == "down") return done({Status(Code::kUnavailable, "no instance could start"), nullptr});
    if (r.service == "late") {
      return done({Status(Code::kDeadlineExceeded, "cold start took longer than 30s"), nullptr});
    }
    std::string message = "service \"" + std::string(r.service) + "\" not found in environment \"" +
                          std::string(r.env) + "\"";
    done({Status(Code::kNotFound, message), nullptr});
  }

  bool WaitCold(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kWait, [&] { return cold.size() >= n; });
  }
  // Answers the held calls from this (non-worker) thread, like a cold start.
  void ReleaseCold() {
    std::vector<std::function<void(host::RouteResult)>> held;
    {
      std::lock_guard<std::mutex> lock(mu);
      held.swap(cold);
      cold_ids.clear();
    }
    for (auto& done : held) Place(done, echo);
  }

  struct Seen {
    std::string env, service, resource, method, src_env;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Seen> requests;
  std::vector<std::function<void(host::RouteResult)>> cold;
  std::vector<uint64_t> cold_ids;
  uint64_t next_cold_id = 0;
  int cancelled = 0;
  std::shared_ptr<int> queue_token = std::make_shared<int>(0);
  std::shared_ptr<TestBackend> echo, dead, remote_backend;
};

// --- fixture ------------------------------------------------------------------

std::string TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "lever-gw-XXXXXX").string();
  char* dir = ::mkdtemp(tmpl.data());
  return dir != nullptr ? std::string(dir) : std::string();
}

// Async unary calls started at once on one completion queue (the tests of
// many calls in flight).
class PendingCalls {
 public:
  explicit PendingCalls(core::LeverRPC::Stub* stub) : stub_(stub) {}
  ~PendingCalls() {
    cq_.Shutdown();
    void* tag;
    bool got;
    while (cq_.Next(&tag, &got)) {
    }
  }
  void Start(const std::string& url, std::string byte_args) {
    auto p = std::make_unique<Pending>();
    p->ctx.set_deadline(std::chrono::system_clock::now() + 30s);
    p->ctx.AddMetadata("lever-url", url);
    core::RPC rpc;
    rpc.set_byte_args(std::move(byte_args));
    p->reader = stub_->AsyncHandleRPC(&p->ctx, rpc, &cq_);
    p->reader->Finish(&p->reply, &p->status, p.get());
    calls_.push_back(std::move(p));
  }
  // Waits (up to kWait) for the next call to end; false if none did. `*ok`:
  // its status was OK.
  bool Next(bool* ok) {
    void* tag;
    bool got;
    if (cq_.AsyncNext(&tag, &got, std::chrono::system_clock::now() + kWait) != grpc::CompletionQueue::GOT_EVENT) {
      return false;
    }
    *ok = static_cast<Pending*>(tag)->status.ok();
    return true;
  }
  const core::RPCReply& reply(size_t i) const { return calls_[i]->reply; }

 private:
  struct Pending {
    grpc::ClientContext ctx;
    core::RPCReply reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<core::RPCReply>> reader;
  };
  core::LeverRPC::Stub* stub_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Pending>> calls_;
};

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override { StartAll(GatewayOptions()); }

  void StartAll(GatewayOptions options) {
    dir_ = TempDir();
    ASSERT_FALSE(dir_.empty());
    echo_ = std::make_unique<EchoServer>();
    ASSERT_TRUE(echo_->Start("unix:" + dir_ + "/echo.sock"));
    router_ = std::make_shared<TestRouter>();
    router_->echo = std::make_shared<TestBackend>("unix:" + dir_ + "/echo.sock");
    router_->dead = std::make_shared<TestBackend>("unix:" + dir_ + "/nothing-here.sock");
    options.listen = "127.0.0.1:0";
    if (options.workers == 0) options.workers = 2;
    gateway_ = std::make_unique<Gateway>(options, router_);
    Status s = gateway_->Start();
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_NE(gateway_->port(), 0);
  }

  void TearDown() override {
    if (gateway_) gateway_->Stop(0ms);
    gateway_.reset();
    echo_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& target = "") {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    args.SetInt("grpc.use_local_subchannel_pool", 1);  // a fresh connection per channel
    std::string t = target.empty() ? "127.0.0.1:" + std::to_string(gateway_->port()) : target;
    return grpc::CreateCustomChannel(t, grpc::InsecureChannelCredentials(), args);
  }

  grpc::Status Call(core::LeverRPC::Stub* stub, const std::string& url, const std::string& args,
                    core::RPCReply* reply, const std::multimap<std::string, std::string>& md = {}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kWait);
    if (!url.empty()) ctx.AddMetadata("lever-url", url);
    for (auto& [k, v] : md) ctx.AddMetadata(k, v);
    core::RPC rpc;
    rpc.set_byte_args(args);
    return stub->HandleRPC(&ctx, rpc, reply);
  }

  std::string dir_;
  std::unique_ptr<EchoServer> echo_;
  std::shared_ptr<TestRouter> router_;
  std::unique_ptr<Gateway> gateway_;
};

template <typename Pred>
bool WaitFor(Pred pred) {
  // For conditions with no notification (gateway counters): bounded, yields.
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

// --- tests --------------------------------------------------------------------

TEST_F(GatewayTest, UnaryThroughTheRelay) {
  auto stub = core::LeverRPC::NewStub(Channel());
  core::RPCReply reply;
  grpc::Status s = Call(stub.get(), "lever://dev.lever/echo//echo", "hello", &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.byte_result(), "hello");
  // Load accounting: exactly one start and one end.
  EXPECT_TRUE(WaitFor([&] { return router_->echo->ends.load() == 1; }));
  EXPECT_EQ(router_->echo->starts.load(), 1);
  std::lock_guard<std::mutex> lock(router_->mu);
  ASSERT_EQ(router_->requests.size(), 1u);
  EXPECT_EQ(router_->requests[0].env, "dev.lever");
  EXPECT_EQ(router_->requests[0].service, "echo");
  EXPECT_EQ(router_->requests[0].method, "echo");
  EXPECT_EQ(router_->requests[0].src_env, "");
}

TEST_F(GatewayTest, ManySequentialCallsReuseOneBackendConnectionPerWorker) {
  auto stub = core::LeverRPC::NewStub(Channel());
  for (int i = 0; i < 50; ++i) {
    core::RPCReply reply;
    std::string payload = "call-" + std::to_string(i);
    ASSERT_TRUE(Call(stub.get(), "lever://dev.lever/echo//echo", payload, &reply).ok());
    ASSERT_EQ(reply.byte_result(), payload);
  }
  EXPECT_EQ(gateway_->StatsForTest().backend_connections, 1);
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().active_streams == 0; }));
}

TEST_F(GatewayTest, EachWorkerMultiplexesOneConnectionPerInstance) {
  // Four client connections land on the two workers round-robin; each worker
  // opens one connection to the instance and multiplexes its calls on it.
  std::vector<std::unique_ptr<core::LeverRPC::Stub>> stubs;
  for (int i = 0; i < 4; ++i) stubs.push_back(core::LeverRPC::NewStub(Channel()));
  for (int round = 0; round < 3; ++round) {
    for (auto& stub : stubs) {
      core::RPCReply reply;
      ASSERT_TRUE(Call(stub.get(), "lever://dev.lever/echo//echo", "x", &reply).ok());
    }
  }
  GatewayStats stats = gateway_->StatsForTest();
  EXPECT_EQ(stats.client_connections, 4);
  EXPECT_EQ(stats.backend_connections, 2);
  EXPECT_EQ(router_->echo->starts.load(), 12);
}

TEST_F(GatewayTest, StreamingBothWaysWithHalfClose) {
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//echoChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc()->set_byte_args("open");
  ASSERT_TRUE(stream->Write(first));
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));
  // The empty first server message passes through as an empty message.
  EXPECT_EQ(m.message_oneof_case(), core::StreamMessage::MESSAGE_ONEOF_NOT_SET);
  EXPECT_EQ(m.ByteSizeLong(), 0u);
  for (int i = 0; i < 5; ++i) {
    core::StreamMessage out;
    out.set_byte_message("msg-" + std::to_string(i));
    ASSERT_TRUE(stream->Write(out));
    ASSERT_TRUE(stream->Read(&m));
    EXPECT_EQ(m.byte_message(), "msg-" + std::to_string(i));
  }
  ASSERT_TRUE(stream->WritesDone());  // half-close: the server ends its side
  EXPECT_FALSE(stream->Read(&m));
  grpc::Status s = stream->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(GatewayTest, TenMebibyteMessageBothWays) {
  auto stub = core::LeverRPC::NewStub(Channel());
  std::string big(10 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 12));
  core::RPCReply reply;
  grpc::Status s = Call(stub.get(), "lever://dev.lever/echo//echo", big, &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(reply.byte_result() == big);
}

TEST_F(GatewayTest, StripsClientXHeadersAndAddsSrcEnvOnlyOnInternalSockets) {
  std::string sock = dir_ + "/internal-dev.sock";
  ASSERT_TRUE(gateway_->AddInternalListener("dev.lever", sock).ok());
  std::multimap<std::string, std::string> md = {
      {"x-foo", "bar"}, {"x-lever-src-env", "spoofed.lever"}, {"x-lever-client-addr", "spoofed"}, {"keep-me", "yes"}};

  auto external = core::LeverRPC::NewStub(Channel());
  core::RPCReply reply;
  ASSERT_TRUE(Call(external.get(), "lever://dev.lever/echo//headers", "", &reply, md).ok());
  const std::string& seen = reply.byte_result();
  EXPECT_NE(seen.find("keep-me=yes\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("lever-url=lever://dev.lever/echo//headers\n"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("x-foo"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("x-lever-src-env"), std::string::npos) << seen;
  EXPECT_NE(seen.find("x-lever-client-addr=127.0.0.1:"), std::string::npos) << seen;

  auto internal = core::LeverRPC::NewStub(Channel("unix:" + sock));
  ASSERT_TRUE(Call(internal.get(), "lever://dev.lever/echo//headers", "", &reply, md).ok());
  const std::string& seen2 = reply.byte_result();
  EXPECT_NE(seen2.find("x-lever-src-env=dev.lever\n"), std::string::npos) << seen2;
  EXPECT_EQ(seen2.find("spoofed"), std::string::npos) << seen2;
  EXPECT_EQ(seen2.find("x-foo"), std::string::npos) << seen2;
  EXPECT_NE(seen2.find("keep-me=yes\n"), std::string::npos) << seen2;
  EXPECT_NE(seen2.find("x-lever-client-addr=unix:" + sock + "\n"), std::string::npos) << seen2;
}

TEST_F(GatewayTest, PrivateServiceOnlyFromInternalSocket) {
  std::string sock = dir_ + "/internal-dev.sock";
  ASSERT_TRUE(gateway_->AddInternalListener("dev.lever", sock).ok());
  core::RPCReply reply;
  auto external = core::LeverRPC::NewStub(Channel());
  grpc::Status s = Call(external.get(), "lever://dev.lever/private//echo", "x", &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), "service \"private\" is private to its environment");
  auto internal = core::LeverRPC::NewStub(Channel("unix:" + sock));
  s = Call(internal.get(), "lever://dev.lever/private//echo", "x", &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.byte_result(), "x");
  std::lock_guard<std::mutex> lock(router_->mu);
  EXPECT_EQ(router_->requests.back().src_env, "dev.lever");
}

TEST_F(GatewayTest, PlatformErrorsAreTrailersOnlyStatuses) {
  auto stub = core::LeverRPC::NewStub(Channel());
  struct Case {
    std::string url;
    grpc::StatusCode code;
    std::string message_part;
  };
  std::vector<Case> cases = {
      {"", grpc::StatusCode::INVALID_ARGUMENT, "missing lever-url"},
      {"lever://", grpc::StatusCode::INVALID_ARGUMENT, "bad lever-url"},
      {"not a url", grpc::StatusCode::INVALID_ARGUMENT, "lever-url"},
      {"/echo//echo", grpc::StatusCode::INVALID_ARGUMENT, "absolute"},
      {"lever://dev/echo//echo", grpc::StatusCode::INVALID_ARGUMENT, "cannot route to environment \"dev\""},
      {"lever://dev.lever/nosuch//m", grpc::StatusCode::NOT_FOUND, "service \"nosuch\" not found"},
      {"lever://dev.lever/private//m", grpc::StatusCode::PERMISSION_DENIED, "private"},
      {"lever://dev.lever/down//m", grpc::StatusCode::UNAVAILABLE, "no instance could start"},
      {"lever://dev.lever/dead//echo", grpc::StatusCode::UNAVAILABLE, "could not connect to instance"},
      {"lever://dev.lever/late//m", grpc::StatusCode::DEADLINE_EXCEEDED, "cold start took longer"},
      {"lever://dev.lever/badaddr//m", grpc::StatusCode::UNAVAILABLE, "neither unix:/path"},
      {"lever://dev.lever/longpath//m", grpc::StatusCode::UNAVAILABLE, "neither unix:/path"},
      // Percent-encoded on the wire, decoded by the client: exact text.
      {"lever://dev.lever/full//m", grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full: 100% of 64 slots\ntry later"},
  };
  for (const Case& c : cases) {
    core::RPCReply reply;
    grpc::Status s = Call(stub.get(), c.url, "x", &reply);
    EXPECT_EQ(s.error_code(), c.code) << c.url << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.message_part), std::string::npos) << c.url << ": " << s.error_message();
  }
  EXPECT_GE(router_->dead->conn_failed.load(), 1);
  // The connection stays usable after errors.
  core::RPCReply reply;
  EXPECT_TRUE(Call(stub.get(), "lever://dev.lever/echo//echo", "ok", &reply).ok());
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().active_streams == 0; }));
}

TEST_F(GatewayTest, PlatformErrorOnStreamingCall) {
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  ctx.AddMetadata("lever-url", "lever://dev.lever/nosuch//fooChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc();
  stream->Write(first);
  core::StreamMessage m;
  EXPECT_FALSE(stream->Read(&m));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// Sends `request` on a raw TCP connection to the gateway and returns what it
// answers until it closes (bounded by a receive timeout).
std::string RawExchange(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!request.empty()) (void)::write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0) out += "<timeout>";
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST_F(GatewayTest, Http11GetsTheHttpApi) {
  std::string answer =
      RawExchange(gateway_->port(), "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_EQ(answer.find("<timeout>"), std::string::npos);
  // A short prefix of the preface that then diverges is HTTP/1 too.
  answer = RawExchange(gateway_->port(), "PRI * HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 405", 0), 0u) << answer;
}

// The HTTP API against the router double and the echo instance: statuses
// from the Router, cold start, and the instance connection shared with gRPC.
std::string HttpPost(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: dev.lever\r\nConnection: close\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST_F(GatewayTest, HttpApiMapsRouterErrorsToStatuses) {
  auto status_of = [&](const std::string& service) {
    std::string a = RawExchange(gateway_->port(), HttpPost("/" + service + "/m", "x"));
    return a.substr(0, 12);
  };
  EXPECT_EQ(status_of("private"), "HTTP/1.1 403");
  EXPECT_EQ(status_of("nope"), "HTTP/1.1 404");
  EXPECT_EQ(status_of("full"), "HTTP/1.1 429");
  EXPECT_EQ(status_of("down"), "HTTP/1.1 503");
  EXPECT_EQ(status_of("late"), "HTTP/1.1 504");
  EXPECT_EQ(status_of("dead"), "HTTP/1.1 503");
  std::string a = RawExchange(gateway_->port(), HttpPost("/full/m", "x"));
  EXPECT_NE(a.find("\r\n\r\n\"queue full: 100% of 64 slots\\ntry later\""), std::string::npos) << a;
}

TEST_F(GatewayTest, HttpApiBytesThroughTheEchoInstance) {
  std::string blob("\x00\x01\xff bytes", 9);
  std::string a = RawExchange(gateway_->port(), HttpPost("/echo/res/echo", blob));
  EXPECT_EQ(a.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << a;
  EXPECT_NE(a.find("Content-Type: application/octet-stream\r\n"), std::string::npos) << a;
  EXPECT_EQ(a.substr(a.size() - blob.size()), blob);
  std::lock_guard<std::mutex> lock(router_->mu);
  ASSERT_FALSE(router_->requests.empty());
  EXPECT_EQ(router_->requests.back().resource, "res");
  EXPECT_EQ(router_->requests.back().src_env, "");
}

TEST_F(GatewayTest, HttpApiWaitsForAColdStart) {
  std::string answer;
  std::thread t([&] { answer = RawExchange(gateway_->port(), HttpPost("/cold/echo", "warm")); });
  ASSERT_TRUE(router_->WaitCold(1));
  router_->ReleaseCold();
  t.join();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
  EXPECT_TRUE(answer.ends_with("\r\n\r\nwarm")) << answer;
}

TEST(GatewayHttpApi, SharesTheInstanceConnectionWithGrpc) {
  std::string dir = TempDir();
  EchoServer echo;
  ASSERT_TRUE(echo.Start("unix:" + dir + "/echo.sock"));
  auto router = std::make_shared<TestRouter>();
  router->echo = std::make_shared<TestBackend>("unix:" + dir + "/echo.sock");
  GatewayOptions options;
  options.listen = "127.0.0.1:0";
  options.workers = 1;
  Gateway gateway(options, router);
  ASSERT_TRUE(gateway.Start().ok());
  for (int i = 0; i < 3; ++i) {
    std::string a = RawExchange(gateway.port(), HttpPost("/echo/echo", "hi"));
    EXPECT_TRUE(a.ends_with("hi")) << a;
  }
  auto stub = core::LeverRPC::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(gateway.port()),
                                                          grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//echo");
  core::RPC rpc;
  rpc.set_byte_args("grpc");
  core::RPCReply reply;
  ASSERT_TRUE(stub->HandleRPC(&ctx, rpc, &reply).ok());
  GatewayStats st = gateway.StatsForTest();
  EXPECT_EQ(st.backend_connections, 1);  // one h2c connection per (worker, instance), HTTP calls included
  EXPECT_EQ(router->echo->starts.load(), 4);
  EXPECT_TRUE(WaitFor([&] { return router->echo->ends.load() == 4 && gateway.StatsForTest().active_streams == 0; }));
  EXPECT_EQ(gateway.StatsForTest().http_responses[2], 3);
  gateway.Stop(0ms);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST(GatewayHttp1Hook, HookGetsSocketAndSniffedBytes) {
  std::mutex mu;
  std::condition_variable cv;
  std::string got;
  GatewayOptions options;
  options.listen = "127.0.0.1:0";
  options.workers = 1;
  Gateway gateway(options, std::make_shared<TestRouter>());
  SetHttp1HandlerForTest(gateway, [&](Socket&& socket, std::string already_read, std::string_view src_env,
                                      Worker& worker) {
    // Runs on the worker: answer from the hook with the socket it was given.
    auto s = std::make_shared<Socket>(std::move(socket));
    static const std::string kAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    boost::asio::async_write(*s, boost::asio::buffer(kAnswer), [s](boost::system::error_code, size_t) {
      boost::system::error_code ignored;
      s->shutdown(boost::asio::socket_base::shutdown_send, ignored);
    });
    std::lock_guard<std::mutex> lock(mu);
    got = already_read + "|" + std::string(src_env) + "|" + std::to_string(worker.index());
    cv.notify_all();
  });
  ASSERT_TRUE(gateway.Start().ok());
  std::string answer = RawExchange(gateway.port(), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK", 0), 0u) << answer;
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return !got.empty(); }));
  // The hook gets what the sniffer read (here the whole short request).
  EXPECT_EQ(got, "GET / HTTP/1.1\r\n\r\n||0");
  lock.unlock();
  gateway.Stop(0ms);
}

// One echo instance behind a one-worker gateway with busy_poll 200 µs.
struct BusyPollGateway {
  std::string dir = TempDir();
  EchoServer echo;
  std::shared_ptr<TestRouter> router = std::make_shared<TestRouter>();
  std::unique_ptr<Gateway> gateway;
  std::unique_ptr<core::LeverRPC::Stub> stub;

  bool Start() {
    if (!echo.Start("unix:" + dir + "/echo.sock")) return false;
    router->echo = std::make_shared<TestBackend>("unix:" + dir + "/echo.sock");
    GatewayOptions options;
    options.listen = "127.0.0.1:0";
    options.workers = 1;
    options.busy_poll = std::chrono::microseconds(200);
    gateway = std::make_unique<Gateway>(options, router);
    if (!gateway->Start().ok()) return false;
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    stub = core::LeverRPC::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(gateway->port()), grpc::InsecureChannelCredentials(), args));
    return true;
  }
  // 20 echo calls, one at a time.
  void EchoCalls() {
    for (int i = 0; i < 20; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kWait);
      ctx.AddMetadata("lever-url", "lever://dev.lever/echo//echo");
      core::RPC rpc;
      rpc.set_byte_args("b" + std::to_string(i));
      core::RPCReply reply;
      ASSERT_TRUE(stub->HandleRPC(&ctx, rpc, &reply).ok());
      EXPECT_EQ(reply.byte_result(), "b" + std::to_string(i));
    }
  }
  ~BusyPollGateway() {
    if (gateway) gateway->Stop(0ms);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

TEST(GatewayBusyPoll, RelaysAndStops) {
  BusyPollGateway g;
  ASSERT_TRUE(g.Start());
  g.EchoCalls();
  auto start = std::chrono::steady_clock::now();
  g.gateway->Stop(1s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// The worker spins after a burst only if it has had at most
// kBusyPollMaxStreams calls open at once since it last slept: 20 calls one
// at a time start spins; the same 20 beside more blocked calls than that
// start none.
TEST(GatewayBusyPoll, SpinsOnlyAtLowConcurrency) {
  BusyPollGateway g;
  ASSERT_TRUE(g.Start());
  int64_t before = g.gateway->StatsForTest().busy_polls;
  g.EchoCalls();
  EXPECT_GT(g.gateway->StatsForTest().busy_polls, before);

  constexpr int kBlocked = static_cast<int>(kBusyPollMaxStreams) + 2;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::thread> callers;
  for (int i = 0; i < kBlocked; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->set_deadline(std::chrono::system_clock::now() + kWait);
    contexts.back()->AddMetadata("lever-url", "lever://dev.lever/echo//block");
    callers.emplace_back([&g, ctx = contexts.back().get()] {
      core::RPC rpc;
      core::RPCReply reply;
      g.stub->HandleRPC(ctx, rpc, &reply);
    });
  }
  {
    std::unique_lock<std::mutex> lock(g.echo.service.mu);
    ASSERT_TRUE(g.echo.service.cv.wait_for(lock, kWait, [&] { return g.echo.service.blocked.load() == kBlocked; }));
  }
  ASSERT_TRUE(WaitFor([&] { return g.gateway->StatsForTest().active_streams == kBlocked; }));
  before = g.gateway->StatsForTest().busy_polls;
  g.EchoCalls();
  EXPECT_EQ(g.gateway->StatsForTest().busy_polls, before);

  for (auto& ctx : contexts) ctx->TryCancel();
  for (auto& t : callers) t.join();
  EXPECT_TRUE(WaitFor([&] { return g.gateway->StatsForTest().active_streams == 0; }));
}

TEST(GatewaySniff, SilentConnectionIsClosedAfterTheTimeout) {
  GatewayOptions options;
  options.listen = "127.0.0.1:0";
  options.workers = 1;
  options.sniff_timeout = 100ms;
  Gateway gateway(options, std::make_shared<TestRouter>());
  ASSERT_TRUE(gateway.Start().ok());
  auto start = std::chrono::steady_clock::now();
  std::string answer = RawExchange(gateway.port(), "");
  EXPECT_EQ(answer, "");  // closed, not a timeout of the 5 s read
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  gateway.Stop(0ms);
}

TEST_F(GatewayTest, ClientCancelReachesTheBackendHandler) {
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//block");
  core::RPC rpc;
  core::RPCReply reply;
  grpc::Status status;
  std::thread caller([&] { status = stub->HandleRPC(&ctx, rpc, &reply); });
  {
    std::unique_lock<std::mutex> lock(echo_->service.mu);
    ASSERT_TRUE(echo_->service.cv.wait_for(lock, kWait, [&] { return echo_->service.blocked.load() == 1; }));
  }
  ctx.TryCancel();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  {
    std::unique_lock<std::mutex> lock(echo_->service.mu);
    EXPECT_TRUE(echo_->service.cv.wait_for(lock, kWait, [&] { return echo_->service.cancelled.load() == 1; }));
  }
  EXPECT_TRUE(WaitFor([&] { return router_->echo->ends.load() == 1; }));
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().active_streams == 0; }));
}

TEST_F(GatewayTest, StreamCancelReachesTheBackendHandler) {
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//blockChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc();
  ASSERT_TRUE(stream->Write(first));
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ctx.TryCancel();
  std::unique_lock<std::mutex> lock(echo_->service.mu);
  EXPECT_TRUE(echo_->service.cv.wait_for(lock, kWait, [&] { return echo_->service.cancelled.load() == 1; }));
  lock.unlock();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// A child process running the echo instance, killed by the test.
struct ChildServer {
  pid_t pid = -1;
  bool Start(const std::string& address) {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string path = LEVER_ECHO_SERVER_PATH;
    char* argv[] = {path.data(), const_cast<char*>(address.c_str()), nullptr};
    int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      return false;
    }
    pollfd p{fds[0], POLLIN, 0};
    char buf[16] = {};
    bool ready = ::poll(&p, 1, 10000) == 1 && ::read(fds[0], buf, sizeof buf) > 0;
    ::close(fds[0]);
    return ready && std::string(buf).starts_with("ready");
  }
  void Kill() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~ChildServer() { Kill(); }
};

TEST_F(GatewayTest, BackendKilledMidCallFailsUnavailablePromptly) {
  ChildServer child;
  std::string sock = dir_ + "/child.sock";
  ASSERT_TRUE(child.Start("unix:" + sock));
  router_->remote_backend = std::make_shared<TestBackend>("unix:" + sock);
  auto stub = core::LeverRPC::NewStub(Channel());
  // One call that works first (connection established).
  core::RPCReply reply;
  ASSERT_TRUE(Call(stub.get(), "lever://dev.lever/remote//echo", "hi", &reply).ok());

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  ctx.AddMetadata("lever-url", "lever://dev.lever/remote//block");
  grpc::Status status;
  std::thread caller([&] {
    core::RPCReply r;
    status = stub->HandleRPC(&ctx, core::RPC(), &r);
  });
  ASSERT_TRUE(WaitFor([&] { return router_->remote_backend->starts.load() == 2; }));
  auto killed = std::chrono::steady_clock::now();
  child.Kill();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_NE(status.error_message().find("lost"), std::string::npos) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 5s);
  EXPECT_EQ(router_->remote_backend->conn_failed.load(), 1);
  EXPECT_EQ(router_->remote_backend->ends.load(), 2);
}

TEST_F(GatewayTest, OversizedHeaderListFailsOnlyThatCall) {
  auto stub = core::LeverRPC::NewStub(Channel());
  core::RPCReply reply;
  std::multimap<std::string, std::string> md;
  for (int i = 0; i < 10; ++i) md.emplace("big-" + std::to_string(i), std::string(8 << 10, 'h'));
  grpc::Status s = Call(stub.get(), "lever://dev.lever/echo//echo", "x", &reply, md);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(router_->echo->starts.load(), 0);
  // The connection and the gateway carry on.
  s = Call(stub.get(), "lever://dev.lever/echo//echo", "after", &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.byte_result(), "after");
}

TEST_F(GatewayTest, InstanceGoawayMovesNewCallsToANewConnection) {
  std::string sock = dir_ + "/restarting.sock";
  auto first = std::make_unique<EchoServer>();
  ASSERT_TRUE(first->Start("unix:" + sock));
  router_->remote_backend = std::make_shared<TestBackend>("unix:" + sock);
  auto stub = core::LeverRPC::NewStub(Channel());
  core::RPCReply reply;
  ASSERT_TRUE(Call(stub.get(), "lever://dev.lever/remote//echo", "one", &reply).ok());
  // A graceful shutdown sends GOAWAY and closes the connection: the gateway
  // drops that connection, and a graceful GOAWAY is no failure to report.
  first->server->Shutdown();
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return gateway_->StatsForTest().backend_connections == 0; }));
  EXPECT_EQ(router_->remote_backend->conn_failed.load(), 0);
  std::filesystem::remove(sock);
  auto second = std::make_unique<EchoServer>();
  ASSERT_TRUE(second->Start("unix:" + sock));
  grpc::Status s = Call(stub.get(), "lever://dev.lever/remote//echo", "two", &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.byte_result(), "two");
  EXPECT_EQ(router_->remote_backend->starts.load(), 2);
  EXPECT_TRUE(WaitFor([&] { return router_->remote_backend->ends.load() == 2; }));
}

TEST_F(GatewayTest, ThousandCallsInFlight) {
  auto stub = core::LeverRPC::NewStub(Channel());
  PendingCalls calls(stub.get());
  constexpr int kCalls = 1000;
  for (int i = 0; i < kCalls; ++i) calls.Start("lever://dev.lever/echo//echo", "payload-" + std::to_string(i));
  int done = 0, ok = 0;
  for (bool call_ok = false; done < kCalls && calls.Next(&call_ok); ++done) ok += call_ok;
  EXPECT_EQ(done, kCalls);
  EXPECT_EQ(ok, kCalls);
  for (int i = 0; i < kCalls; ++i) ASSERT_EQ(calls.reply(i).byte_result(), "payload-" + std::to_string(i));
  EXPECT_GE(gateway_->StatsForTest().streams_total, kCalls);
}

TEST_F(GatewayTest, SlowReaderKeepsRelayMemoryBounded) {
  // The reader stops after the first message: the instance must stall once
  // the windows are full, and the relay holds at most its stream windows.
  constexpr int64_t kTotal = 64 << 20;
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 50s);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//downloadChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc()->set_byte_args(std::to_string(kTotal));
  ASSERT_TRUE(stream->Write(first));
  ASSERT_TRUE(stream->WritesDone());
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));  // empty first message
  ASSERT_TRUE(stream->Read(&m));
  // Wait until the instance has filled every window and stalled: its sent
  // count must stop short of the total.
  const int64_t window = GatewayOptions().stream_window;
  {
    std::unique_lock<std::mutex> lock(echo_->service.mu);
    EXPECT_FALSE(echo_->service.cv.wait_for(lock, 1500ms, [&] { return echo_->service.download_sent.load() == kTotal; }))
        << "the instance sent everything to a reader that does not read";
  }
  GatewayStats stalled = gateway_->StatsForTest();
  EXPECT_GT(stalled.buffered_bytes, 0);
  EXPECT_LE(stalled.buffered_bytes, 2 * window + (64 << 10));
  // Now read it all.
  int64_t received = static_cast<int64_t>(m.byte_message().size());
  while (stream->Read(&m)) received += static_cast<int64_t>(m.byte_message().size());
  grpc::Status s = stream->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(received, kTotal);
  GatewayStats after = gateway_->StatsForTest();
  EXPECT_LE(after.peak_buffered_bytes, 2 * window + (64 << 10));
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().buffered_bytes == 0; }));
}

TEST_F(GatewayTest, BulkStreamingBothWaysAtOnce) {
  // A writer and a reader running together with messages bigger than every
  // window: flow control in both directions must not deadlock.
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//echoChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc();
  ASSERT_TRUE(stream->Write(first));
  constexpr int kMessages = 24;
  std::thread writer([&] {
    for (int i = 0; i < kMessages; ++i) {
      core::StreamMessage m;
      m.set_byte_message(std::string(1 << 20, static_cast<char>('a' + i)));
      if (!stream->Write(m)) return;
    }
    stream->WritesDone();
  });
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));  // empty first message
  int got = 0;
  while (stream->Read(&m)) {
    ASSERT_EQ(m.byte_message().size(), 1u << 20);
    ASSERT_EQ(m.byte_message()[0], static_cast<char>('a' + got));
    ++got;
  }
  writer.join();
  EXPECT_EQ(got, kMessages);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(GatewayTest, StalledStreamDoesNotBlockItsNeighbours) {
  // One stream's reader stops; other calls on the same client connection
  // (and the same instance connection) keep flowing.
  auto channel = Channel();
  auto stub = core::LeverRPC::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//downloadChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc()->set_byte_args(std::to_string(64 << 20));
  ASSERT_TRUE(stream->Write(first));
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(WaitFor([&] { return gateway_->StatsForTest().buffered_bytes >= (512 << 10); }));
  for (int i = 0; i < 20; ++i) {
    core::RPCReply reply;
    grpc::Status s = Call(stub.get(), "lever://dev.lever/echo//echo", std::string(100 << 10, 'n'), &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ctx.TryCancel();
  stream->Finish();
}

TEST_F(GatewayTest, StopClosesStreamsThatOutliveTheGracePeriod) {
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//blockChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc();
  ASSERT_TRUE(stream->Write(first));
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));
  auto start = std::chrono::steady_clock::now();
  gateway_->Stop(200ms);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 5s);
  EXPECT_FALSE(stream->Read(&m));
  EXPECT_FALSE(stream->Finish().ok());
  // The instance's handler saw the call go away.
  std::unique_lock<std::mutex> lock(echo_->service.mu);
  EXPECT_TRUE(echo_->service.cv.wait_for(lock, kWait, [&] { return echo_->service.cancelled.load() == 1; }));
}

TEST_F(GatewayTest, ColdStartBuffersTheRequestUntilTheRouterAnswers) {
  auto stub = core::LeverRPC::NewStub(Channel());
  std::string payload(200 << 10, 'c');
  core::RPCReply reply;
  grpc::Status status;
  std::thread caller([&] { status = Call(stub.get(), "lever://dev.lever/cold//echo", payload, &reply); });
  ASSERT_TRUE(router_->WaitCold(1));
  // The request's DATA waits in the relay (within the stream window).
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().buffered_bytes >= static_cast<int64_t>(payload.size()); }));
  EXPECT_EQ(router_->echo->starts.load(), 0);
  router_->ReleaseCold();  // from this thread, as a host thread would
  caller.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(reply.byte_result() == payload);
  EXPECT_EQ(router_->echo->starts.load(), 1);
}

// A caller that gives up while its call waits for a cold start takes it out
// of the host's queue at once (not when the wait times out).
TEST_F(GatewayTest, CancelledWaitingCallsLeaveTheQueueAtOnce) {
  auto stub = core::LeverRPC::NewStub(Channel());
  constexpr int kCalls = 20;
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::thread> callers;
  std::vector<grpc::Status> status(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    ctxs.back()->AddMetadata("lever-url", "lever://dev.lever/cold//echo");
    callers.emplace_back([&, i] {
      core::RPCReply r;
      status[i] = stub->HandleRPC(ctxs[i].get(), core::RPC(), &r);
    });
  }
  ASSERT_TRUE(router_->WaitCold(kCalls));
  for (auto& c : ctxs) c->TryCancel();  // client RST_STREAM
  for (auto& t : callers) t.join();
  for (auto& st : status) EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(router_->mu);
    return router_->cancelled == kCalls && router_->cold.empty();
  }));
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().active_streams == 0; }));
}

// A call placed after its caller left still ends its placement: the host's
// count of calls in flight comes back to zero.
TEST_F(GatewayTest, APlacementWhoseCallerLeftIsEnded) {
  auto stub = core::LeverRPC::NewStub(Channel());
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("lever-url", "lever://dev.lever/cold//echo");
  std::thread caller([&] {
    core::RPCReply r;
    (void)stub->HandleRPC(ctx.get(), core::RPC(), &r);
  });
  ASSERT_TRUE(router_->WaitCold(1));
  {
    // Take it out of reach of CancelRoute: the host is answering it.
    std::lock_guard<std::mutex> lock(router_->mu);
    router_->cold_ids.assign(router_->cold_ids.size(), 0);
  }
  ctx->TryCancel();
  caller.join();
  router_->ReleaseCold();  // placed on echo after the caller left
  EXPECT_EQ(router_->echo->starts.load(), 1);
  EXPECT_TRUE(WaitFor([&] { return router_->echo->ends.load() == 1; }));
  EXPECT_EQ(router_->echo->unexpected_starts.load(), 0);
}

TEST_F(GatewayTest, ManyColdCallsOnBothWorkersReleasedFromAnotherThread) {
  // Router answers for streams on two workers arrive together from one host
  // thread; each lands on the worker that owns its stream.
  constexpr int kChannels = 4, kPerChannel = 50;
  std::vector<std::unique_ptr<core::LeverRPC::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) stubs.push_back(core::LeverRPC::NewStub(Channel()));
  grpc::CompletionQueue cq;
  struct Pending {
    grpc::ClientContext ctx;
    core::RPCReply reply;
    grpc::Status status;
    std::string payload;
    std::unique_ptr<grpc::ClientAsyncResponseReader<core::RPCReply>> reader;
  };
  std::vector<std::unique_ptr<Pending>> calls;
  for (int c = 0; c < kChannels; ++c) {
    for (int i = 0; i < kPerChannel; ++i) {
      auto p = std::make_unique<Pending>();
      p->ctx.set_deadline(std::chrono::system_clock::now() + 30s);
      p->ctx.AddMetadata("lever-url", "lever://dev.lever/cold//echo");
      p->payload = std::to_string(c) + "/" + std::to_string(i);
      core::RPC rpc;
      rpc.set_byte_args(p->payload);
      p->reader = stubs[c]->AsyncHandleRPC(&p->ctx, rpc, &cq);
      p->reader->Finish(&p->reply, &p->status, p.get());
      calls.push_back(std::move(p));
    }
  }
  ASSERT_TRUE(router_->WaitCold(kChannels * kPerChannel));
  std::thread host([&] { router_->ReleaseCold(); });
  int ok = 0;
  for (int n = 0; n < kChannels * kPerChannel; ++n) {
    void* tag;
    bool got;
    ASSERT_EQ(cq.AsyncNext(&tag, &got, std::chrono::system_clock::now() + kWait), grpc::CompletionQueue::GOT_EVENT);
    auto* p = static_cast<Pending*>(tag);
    if (p->status.ok() && p->reply.byte_result() == p->payload) ++ok;
  }
  host.join();
  EXPECT_EQ(ok, kChannels * kPerChannel);
  EXPECT_EQ(gateway_->StatsForTest().backend_connections, 2);
  EXPECT_TRUE(WaitFor([&] { return router_->echo->ends.load() == kChannels * kPerChannel; }));
  cq.Shutdown();
  void* tag;
  bool got;
  while (cq.Next(&tag, &got)) {
  }
}

TEST_F(GatewayTest, ColdStartAnsweredAfterTheClientLeftIsDropped) {
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.AddMetadata("lever-url", "lever://dev.lever/cold//echo");
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  grpc::Status status;
  std::thread caller([&] {
    core::RPCReply r;
    status = stub->HandleRPC(&ctx, core::RPC(), &r);
  });
  ASSERT_TRUE(router_->WaitCold(1));
  ctx.TryCancel();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  router_->ReleaseCold();
  // The stream is released and the load accounting balances (whether the
  // cancel or the Router's answer reached the worker first).
  EXPECT_TRUE(WaitFor([&] { return gateway_->StatsForTest().active_streams == 0; }));
  EXPECT_TRUE(WaitFor([&] { return router_->echo->ends.load() == router_->echo->starts.load(); }));
  EXPECT_LE(router_->echo->starts.load(), 1);
}

TEST_F(GatewayTest, GracefulStopLetsStreamsInFlightFinish) {
  std::string sock = dir_ + "/internal-dev.sock";
  ASSERT_TRUE(gateway_->AddInternalListener("dev.lever", sock).ok());
  ASSERT_TRUE(std::filesystem::exists(sock));
  auto stub = core::LeverRPC::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  ctx.AddMetadata("lever-url", "lever://dev.lever/echo//echoChan");
  auto stream = stub->HandleStreamingRPC(&ctx);
  core::StreamMessage first;
  first.mutable_rpc();
  ASSERT_TRUE(stream->Write(first));
  core::StreamMessage m;
  ASSERT_TRUE(stream->Read(&m));

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    gateway_->Stop(8s);
    stopped = true;
  });
  // Stop closes the listeners first; the stream in flight keeps working.
  ASSERT_TRUE(WaitFor([&] { return !std::filesystem::exists(sock); }));
  core::StreamMessage out;
  out.set_byte_message("still here");
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&m));
  EXPECT_EQ(m.byte_message(), "still here");
  EXPECT_FALSE(stopped.load());
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&m));
  EXPECT_TRUE(stream->Finish().ok());
  auto finished = std::chrono::steady_clock::now();
  stopper.join();
  // Stop returned once the last stream was done, well before the grace period.
  EXPECT_LT(std::chrono::steady_clock::now() - finished, 5s);
  EXPECT_TRUE(stopped.load());
}

// --- HTTP/2 limits (docs/operations.md "HTTP/2 limits") ----------------------

// The client connection timer's decisions, on a fake clock.
TEST(ClientConnTimer, DecidesSettingsIdleAndWriteTimeouts) {
  using Clock = std::chrono::steady_clock;
  using V = ClientConn::Verdict;
  RelayConfig config;
  config.client_settings_timeout = 10s;
  config.client_idle_timeout = 180s;
  config.client_write_timeout = 30s;
  Clock::time_point t0{};
  Clock::time_point next{};
  ClientConn::TimerState t;
  t.settings_deadline = t0 + 10s;
  t.idle = true;
  t.idle_since = t0;
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 9s, &next), V::kKeep);
  EXPECT_EQ(next, t0 + 10s);
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 10s, &next), V::kSettingsTimeout);
  t.settings_done = true;  // SETTINGS and ACK arrived
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 10s, &next), V::kKeep);
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 179s, &next), V::kKeep);
  EXPECT_EQ(next, t0 + 180s);
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 180s, &next), V::kIdle);
  // A busy connection is never idle; it is looked at again later.
  t.idle = false;
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 500s, &next), V::kKeep);
  EXPECT_GT(next, t0 + 500s);
  // A write that does not complete.
  t.writing = true;
  t.write_started = t0 + 500s;
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 529s, &next), V::kKeep);
  EXPECT_EQ(next, t0 + 530s);
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 530s, &next), V::kWriteTimeout);
  // A stream's response waiting on the client's window: looked at again when
  // its wait reaches the write timeout (ResetStalledStreams resets it then).
  t.writing = false;
  t.waiting = true;
  t.waiting_since = t0 + 510s;
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 520s, &next), V::kKeep);
  EXPECT_EQ(next, t0 + 540s);
  t.waiting = false;
  // 0 turns the idle and write timeouts off.
  config.client_idle_timeout = 0s;
  config.client_write_timeout = 0s;
  t.idle = true;
  next = {};
  EXPECT_EQ(ClientConn::Decide(t, config, t0 + 100000s, &next), V::kKeep);
  EXPECT_EQ(next, Clock::time_point::max());
}


// After a burst, a worker keeps at most kMaxPooledStreams idle Streams.
TEST_F(GatewayTest, StreamPoolShrinksAfterABurst) {
  TearDown();
  GatewayOptions options;
  options.workers = 1;
  options.max_concurrent_streams = 5000;
  StartAll(options);
  auto stub = core::LeverRPC::NewStub(Channel());
  PendingCalls calls(stub.get());
  constexpr int kCalls = 600;  // all at once: they wait for a "cold start"
  for (int i = 0; i < kCalls; ++i) {
    calls.Start("lever://dev.lever/cold//echo", std::string(100 << 10, 'p'));  // grows each Stream's buffers
  }
  ASSERT_TRUE(router_->WaitCold(kCalls));
  EXPECT_EQ(gateway_->StatsForTest().active_streams, kCalls);
  router_->ReleaseCold();
  int ok = 0;
  for (int n = 0; n < kCalls; ++n) {
    bool call_ok = false;
    ASSERT_TRUE(calls.Next(&call_ok));
    ok += call_ok;
  }
  EXPECT_EQ(ok, kCalls);
  ASSERT_TRUE(WaitFor([&] { return gateway_->StatsForTest().active_streams == 0; }));
  GatewayStats st = gateway_->StatsForTest();
  EXPECT_LE(st.pooled_streams, static_cast<int64_t>(kMaxPooledStreams));
  EXPECT_GT(st.pooled_streams, 0);
  // Each pooled Stream keeps at most 64 KiB per direction and small arenas.
  EXPECT_LE(st.pooled_stream_bytes, st.pooled_streams * ((2 << 16) + (16 << 10)));
  // The freed slots are reused: another call still works.
  core::RPCReply reply;
  ASSERT_TRUE(Call(stub.get(), "lever://dev.lever/echo//echo", "again", &reply).ok());
  EXPECT_EQ(reply.byte_result(), "again");
}

// A Lever-Timeout call that ended while its client reads its response
// slowly: the connection timer must not fire again and again at the past
// call deadline (it spun the worker until the response was drained).
TEST_F(GatewayTest, EndedLeverTimeoutCallDoesNotSpinTheTimer) {
  TearDown();
  GatewayOptions options;
  options.workers = 1;
  options.http.idle_timeout = 800ms;
  StartAll(options);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(gateway_->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  // The echo answers at once with 500 KiB, which this client never reads:
  // the response stalls in the socket past the 50 ms call deadline, until
  // the idle timeout drops it.
  std::string request = HttpPost("/echo/echo", std::string(500 << 10, 'r'), "Lever-Timeout: 50ms\r\n");
  ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  ASSERT_TRUE(WaitFor([&] { return gateway_->StatsForTest().http_connections == 1; }));
  ASSERT_TRUE(WaitFor([&] { return gateway_->StatsForTest().http_connections == 0; }));
  // A handful of wake-ups (idle checks), not thousands.
  EXPECT_LT(gateway_->StatsForTest().http_timer_wakeups, 20);
  ::close(fd);
}

}  // namespace
}  // namespace lever::gateway
