// Platform errors through leverd, each with its gRPC status code, seen by a
// plain gRPC client built from the original proto (not the Lever SDK), and
// the private-service rules.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "leverrpc.grpc.pb.h"

namespace lever::e2e {
namespace {

class ErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leverd_.Start();
    ASSERT_EQ(leverd_.DeployTestService(R"({"name":"pubsvc"})").exit_code, 0);
    ASSERT_EQ(leverd_.DeployTestService(R"({"name":"privsvc","private":true})").exit_code, 0);
    channel_ = grpc::CreateChannel(leverd_.address(), grpc::InsecureChannelCredentials());
    stub_ = core::LeverRPC::NewStub(channel_);
  }

  // A raw unary call with the given lever-url (none when empty) and headers.
  grpc::Status Call(const std::string& url, core::RPCReply* reply,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!url.empty()) ctx.AddMetadata("lever-url", url);
    for (auto& [k, v] : headers) ctx.AddMetadata(k, v);
    core::RPC rpc;
    rpc.mutable_args();
    return stub_->HandleRPC(&ctx, rpc, reply);
  }

  grpc::StatusCode CodeOf(const std::string& url) {
    core::RPCReply reply;
    return Call(url, &reply).error_code();
  }

  Leverd leverd_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<core::LeverRPC::Stub> stub_;
};

TEST_F(ErrorsTest, RoutingErrorsHaveTheirCodes) {
  EXPECT_EQ(CodeOf(""), grpc::StatusCode::INVALID_ARGUMENT);                              // no lever-url
  EXPECT_EQ(CodeOf("lever://"), grpc::StatusCode::INVALID_ARGUMENT);                      // malformed
  EXPECT_EQ(CodeOf("/pubsvc//Echo"), grpc::StatusCode::INVALID_ARGUMENT);                 // relative
  EXPECT_EQ(CodeOf("lever://example.com/pubsvc//Echo"), grpc::StatusCode::INVALID_ARGUMENT);  // not .lever
  EXPECT_EQ(CodeOf("lever://nope.lever/pubsvc//Echo"), grpc::StatusCode::NOT_FOUND);     // unknown env
  EXPECT_EQ(CodeOf("lever://dev.lever/nosuchsvc//Echo"), grpc::StatusCode::NOT_FOUND);   // unknown service
  EXPECT_EQ(CodeOf("lever://dev.lever/pubsvc//NoSuchMethod"), grpc::StatusCode::NOT_FOUND);  // unknown method
  EXPECT_EQ(CodeOf("lever://dev.lever/privsvc//Echo"), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ErrorsTest, ErrorsCarryMessages) {
  core::RPCReply reply;
  grpc::Status s = Call("lever://dev.lever/nosuchsvc//Echo", &reply);
  EXPECT_NE(s.error_message().find("nosuchsvc"), std::string::npos) << s.error_message();
}

// A first version that cannot start is never live: the deploy fails with
// why, and calls find nothing live.
TEST_F(ErrorsTest, VersionThatCannotStartIsNotDeployed) {
  CommandResult d = leverd_.DeployTestService(R"({"name":"broken","entry":["./does-not-exist"]})");
  EXPECT_EQ(d.exit_code, 1) << d.err;
  EXPECT_NE(d.err.find("failed to start"), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("does-not-exist"), std::string::npos) << d.err;
  EXPECT_EQ(CodeOf("lever://dev.lever/broken//Echo"), grpc::StatusCode::NOT_FOUND);
}

// A live version whose next instance cannot start: the call that waits for
// it is UNAVAILABLE, with the instance's exit.
TEST_F(ErrorsTest, InstanceThatCannotStartIsUnavailable) {
  TempDir dir;
  std::string marker = dir.path() + "/marker";
  ASSERT_EQ(leverd_.DeployTestService(R"({"name":"flaky","entry":["./serve","--exit-if-exists",")" + marker +
                                      R"("]})").exit_code, 0);
  std::ofstream(marker) << "x";
  ASSERT_EQ(leverd_.KillInstances("flaky", SIGKILL), 1);
  core::RPCReply reply;
  grpc::Status s = Call("lever://dev.lever/flaky//Echo", &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find("exited with status 2"), std::string::npos) << s.error_message();
}

TEST_F(ErrorsTest, ReplySetsExactlyOneMember) {
  core::RPCReply reply;
  grpc::ClientContext ctx;
  ctx.AddMetadata("lever-url", "lever://dev.lever/pubsvc//BasicHello");
  core::RPC rpc;
  rpc.mutable_args()->add_element()->set_json_string("proto");
  ASSERT_TRUE(stub_->HandleRPC(&ctx, rpc, &reply).ok());
  ASSERT_EQ(reply.result_oneof_case(), core::RPCReply::kResult);
  EXPECT_EQ(reply.result().json_string(), "hello proto");
}

TEST_F(ErrorsTest, ClientXHeadersAreStripped) {
  // A client cannot pretend to be an instance of dev.lever.
  core::RPCReply reply;
  grpc::Status s = Call("lever://dev.lever/privsvc//Whoami", &reply, {{"x-lever-src-env", "dev.lever"}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Call("lever://dev.lever/pubsvc//Whoami", &reply, {{"x-lever-src-env", "dev.lever"}}).ok());
  ASSERT_EQ(reply.result_oneof_case(), core::RPCReply::kResult);
  bool found = false;
  for (const auto& p : reply.result().json_object().property()) {
    if (p.name() == "srcEnv") {
      found = true;
      EXPECT_EQ(p.value().json_string(), "");
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(ErrorsTest, PrivateServiceReachableFromInside) {
  auto client = leverd_.NewClient();
  Result r = client->Service("dev.lever", "pubsvc").Invoke("CallOther", {"privsvc", "Whoami"});
  ASSERT_TRUE(r.ok()) << r.status.ToString() << " " << (r.value.is_string() ? r.value.as_string() : "");
  ASSERT_TRUE(r.value.is_map());
  EXPECT_EQ(*r.value.as_map().Find("srcEnv"), Value("dev.lever"));
  // And refused from outside.
  Result direct = client->Service("dev.lever", "privsvc").Invoke("Whoami", {});
  ASSERT_TRUE(direct.is_platform_error());
  EXPECT_EQ(direct.status.code(), Code::kPermissionDenied);
}

TEST_F(ErrorsTest, Http1GetsAnAnswerNotAHang) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(leverd_.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  char buf[512];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  ASSERT_GT(n, 12);
  EXPECT_EQ(std::string(buf, 9), "HTTP/1.1 ");
}

}  // namespace
}  // namespace lever::e2e
