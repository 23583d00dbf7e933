// Deploy and call: the original system test (reference §11.1) through a real
// leverd, with the CLI and the C++ client.
#include <gtest/gtest.h>

#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {
namespace {

constexpr char kService[] = R"({"name": "basictestservice", "entry": ["./serve"]})";

class BasicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leverd_.Start();
    CommandResult d = leverd_.DeployTestService(kService);
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
    client_ = leverd_.NewClient();
  }
  Leverd leverd_;
  std::unique_ptr<Client> client_;
};

TEST_F(BasicTest, DeployPrintsTheVersion) {
  CommandResult d = leverd_.DeployTestService(kService);
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.out.find("basictestservice"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("version 2"), std::string::npos) << d.out;
}

TEST_F(BasicTest, BasicHelloColdThenWarm) {
  CommandResult r = leverd_.Lever({"invoke", "/basictestservice/BasicHello", "\"name\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\"hello name\"\n");
  for (int i = 0; i < 20; ++i) {
    Result w = client_->Service("dev.lever", "basictestservice").Invoke("BasicHello", {"warm"});
    ASSERT_TRUE(w.ok()) << w.status.ToString();
    EXPECT_EQ(w.value, Value("hello warm"));
  }
}

TEST_F(BasicTest, AbsoluteUrlAndJsonOutput) {
  CommandResult r =
      leverd_.Lever({"--json", "invoke", "lever://dev.lever/basictestservice//Echo", R"({"a":[1,2.5,null]})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"a\":[1,2.5,null]}\n");
}

TEST_F(BasicTest, BasicErrorIsInBand) {
  Result r = client_->Service("dev.lever", "basictestservice").Invoke("BasicError", {"some test"});
  ASSERT_TRUE(r.is_app_error()) << r.status.ToString();
  EXPECT_EQ(r.value, Value("error sent: some test"));
  CommandResult c = leverd_.Lever({"invoke", "/basictestservice/BasicError", "\"some test\""});
  EXPECT_EQ(c.exit_code, 1);
  EXPECT_NE(c.err.find("error sent: some test"), std::string::npos) << c.err;

  Result b = client_->Service("dev.lever", "basictestservice").Invoke("ByteError", {});
  ASSERT_TRUE(b.is_app_error());
  EXPECT_EQ(b.value, Value::FromBytes(std::string("\x00\x01\xfe", 3)));
}

TEST_F(BasicTest, BytesInAndOut) {
  std::string blob("\x00\xff\x10 binary", 10);
  Result r = client_->Service("dev.lever", "basictestservice").Invoke("Echo", {Value::FromBytes(blob)});
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(r.value, Value::FromBytes(blob));
  // The CLI sends stdin as one bytes argument and prints byte replies raw.
  CommandResult c = leverd_.Lever({"invoke", "--bytes", "/basictestservice/Echo"}, blob);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, blob);
}

TEST_F(BasicTest, ReqReplyStream) {
  ClientStreamPtr s;
  ASSERT_TRUE(client_->Service("dev.lever", "basictestservice")
                  .InvokeStream(&s, "ReqReplyStreamChan", {"some test"})
                  .ok());
  for (const char* m : {"1", "2", "hello", "world", "test", "123"}) {
    ASSERT_TRUE(s->Send(Value(m)).ok());
    Result r = s->Receive();
    ASSERT_TRUE(r.ok()) << r.status.ToString();
    EXPECT_EQ(r.value, Value(std::string("some test:") + m + " received"));
  }
  s->CloseSend();
  EXPECT_TRUE(s->Receive().is_end());
}

TEST_F(BasicTest, StreamFromTheCli) {
  CommandResult c = leverd_.Lever({"stream", "/basictestservice/ReqReplyStreamChan", "\"cli\""}, "\"a\"\n\"b\"\n");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "\"cli:a received\"\n\"cli:b received\"\n");
}

TEST_F(BasicTest, TenMebibyteMessageBothWays) {
  ClientStreamPtr s;
  ASSERT_TRUE(client_->Service("dev.lever", "basictestservice").InvokeStream(&s, "EchoChan", {}).ok());
  std::string big(10 << 20, 'z');
  big[12345] = 'q';
  ASSERT_TRUE(s->Send(Value::FromBytes(big)).ok());
  Result r = s->Receive();
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(r.value, Value::FromBytes(big));
  s->CloseSend();
  EXPECT_TRUE(s->Receive().is_end());
}

TEST_F(BasicTest, ThousandCallsInFlight) {
  Endpoint ep = client_->Service("dev.lever", "basictestservice");
  constexpr int kCalls = 1000;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, good = 0;
  for (int i = 0; i < kCalls; ++i) {
    ep.InvokeAsync("Echo", {i}, CallOptions{std::chrono::seconds(60)}, [&, i](Result r) {
      std::lock_guard<std::mutex> lock(mu);
      if (r.ok() && r.value == Value(i)) ++good;
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == kCalls; }));
  EXPECT_EQ(good, kCalls);
}

TEST_F(BasicTest, PsAndLogs) {
  ASSERT_TRUE(client_->Service("dev.lever", "basictestservice").Invoke("BasicHello", {"x"}).ok());
  CommandResult ps = leverd_.Lever({"--json", "ps"});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  Value v;
  ASSERT_TRUE(ParseJson(ps.out, &v).ok()) << ps.out;
  ASSERT_TRUE(v.is_map());
  const Value* instances = v.as_map().Find("instances");
  ASSERT_TRUE(instances && instances->is_array());
  ASSERT_GE(instances->as_array().size(), 1u);
  EXPECT_EQ(*instances->as_array()[0].as_map().Find("service"), Value("basictestservice"));

  // The instance printed "testservice ready": it is in leverd's log with the
  // service prefix, and in `lever logs`.
  EXPECT_TRUE(leverd_.WaitForLog("lever://dev.lever/basictestservice v1", std::chrono::seconds(10)));
  CommandResult logs = leverd_.Lever({"logs", "basictestservice"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("testservice ready"), std::string::npos) << logs.out;
}

TEST_F(BasicTest, EnvironmentsFromTheCli) {
  CommandResult c = leverd_.Lever({"env", "create", "qa.lever"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  CommandResult l = leverd_.Lever({"env", "list"});
  EXPECT_NE(l.out.find("qa.lever"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("dev.lever"), std::string::npos);
  ASSERT_EQ(leverd_.DeployTestService(kService, "qa.lever").exit_code, 0);
  CommandResult r = leverd_.Lever({"--env", "qa.lever", "invoke", "/basictestservice/BasicHello", "\"qa\""});
  EXPECT_EQ(r.out, "\"hello qa\"\n") << r.err;
  EXPECT_EQ(leverd_.Lever({"env", "delete", "qa.lever"}).exit_code, 0);
  CommandResult gone = leverd_.Lever({"--env", "qa.lever", "invoke", "/basictestservice/BasicHello", "\"qa\""});
  EXPECT_EQ(gone.exit_code, 3);
  EXPECT_NE(gone.err.find("NOT_FOUND"), std::string::npos) << gone.err;
}

}  // namespace
}  // namespace lever::e2e
