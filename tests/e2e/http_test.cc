// The HTTP/1.1 API of a real leverd (docs/http-api.md, gateway/http_api.md):
// real instances deployed with `lever deploy`, requests over raw sockets (and
// curl for the README's line), every status code, streaming both ways.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <signal.h>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;

constexpr char kService[] = R"({"name": "httpsvc", "entry": ["./serve"]})";

using Response = RawResponse;
using Conn = RawHttp;

std::string Post(const std::string& target, const std::string& body, const std::string& content_type = "",
                 const std::string& extra = "", const std::string& host = "dev.lever") {
  std::string r = "POST " + target + " HTTP/1.1\r\nHost: " + host + "\r\n";
  if (!content_type.empty()) r += "Content-Type: " + content_type + "\r\n";
  r += extra;
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return r;
}

int64_t Metric(int port, const std::string& name) {
  Conn c(port);
  c.Send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  Response r;
  if (!c.ReadResponse(&r)) return -1;
  size_t at = r.body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::atoll(r.body.c_str() + at + name.size() + 2);
}

class HttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    leverd_ = new Leverd(Leverd::Options{"", {"--http-max-body-kib", "64"}});
    leverd_->Start();
    ASSERT_EQ(leverd_->DeployTestService(kService).exit_code, 0);
    ASSERT_EQ(leverd_->DeployTestService(R"({"name":"privsvc","private":true})").exit_code, 0);
    // A live service whose instances stop starting once the marker exists.
    broken_dir_ = new TempDir();
    broken_marker_ = broken_dir_->path() + "/marker";
    ASSERT_EQ(leverd_->DeployTestService(R"({"name":"broken","entry":["./serve","--exit-if-exists",")" +
                                         broken_marker_ + R"("]})").exit_code, 0);
    std::ofstream(broken_marker_) << "x";
    // The README's hello service (the C++ one: same method, same answer).
    hello_dir_ = new TempDir();
    std::ofstream(hello_dir_->path() + "/lever.json") << R"({"name": "helloService", "entry": ["./serve"]})";
    fs::copy_file(HelloServicePath(), hello_dir_->path() + "/serve");
    CommandResult d = leverd_->Lever({"deploy", hello_dir_->path()});
    ASSERT_EQ(d.exit_code, 0) << d.err;
  }
  static void TearDownTestSuite() {
    delete leverd_;
    delete hello_dir_;
    delete broken_dir_;
    leverd_ = nullptr;
  }

  Response Call(const std::string& request) {
    Conn c(leverd_->port());
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(c.Send(request));
    Response r;
    EXPECT_TRUE(c.ReadResponse(&r)) << request;
    return r;
  }

  static void KillInstancesOf(const std::string& service) { leverd_->KillInstances(service, SIGKILL); }
  static Leverd* leverd_;
  static TempDir* hello_dir_;
  static TempDir* broken_dir_;
  static std::string broken_marker_;
};
Leverd* HttpTest::leverd_ = nullptr;
TempDir* HttpTest::hello_dir_ = nullptr;
TempDir* HttpTest::broken_dir_ = nullptr;
std::string HttpTest::broken_marker_;

TEST_F(HttpTest, ReadmeCurlLine) {
  std::string url = "http://127.0.0.1:" + std::to_string(leverd_->port()) + "/helloService/sayHello?forceenv=dev.lever";
  CommandResult r = RunCommand({"/usr/bin/curl", "-s", "-H", "Content-Type: application/json", "-X", "POST", "-d",
                                "[\"world\"]", url});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\"Hello, world!\"");
  CommandResult i = RunCommand({"/usr/bin/curl", "-s", "-i", "-H", "Content-Type: application/json", "-X", "POST",
                                "-d", "[\"world\"]", url});
  EXPECT_NE(i.out.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("Content-Type: application/json\r\n"), std::string::npos) << i.out;
}

TEST_F(HttpTest, HostHeaderPicksTheEnvironment) {
  Response r = Call(Post("/httpsvc/BasicHello", R"(["host"])", "application/json", "", "dev.lever:8080"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"hello host\"");
  // forceenv wins over Host.
  r = Call(Post("/httpsvc/BasicHello?forceenv=dev.lever", R"(["f"])", "application/json", "", "127.0.0.1:8080"));
  EXPECT_EQ(r.status, 200);
  r = Call(Post("/httpsvc/BasicHello", R"(["x"])", "application/json", "", "127.0.0.1:8080"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body.front(), '"') << r.body;
  r = Call(Post("/httpsvc/BasicHello", R"(["x"])", "application/json", "", "nope.lever"));
  EXPECT_EQ(r.status, 404) << r.body;
}

TEST_F(HttpTest, JsonArgumentsAndResults) {
  Response r = Call(Post("/httpsvc/Echo", R"([{"a":[1,2.5,null,true,"s"]}])", "application/json; charset=utf-8"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, R"({"a":[1,2.5,null,true,"s"]})");
  // null = no arguments.
  r = Call(Post("/httpsvc/Echo", "null", "application/json"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "null");
}

TEST_F(HttpTest, BytesInAndOut) {
  std::string blob("\x00\xff\x10 binary\n", 11);
  for (std::string type : {"application/octet-stream", "", "text/plain"}) {
    Response r = Call(Post("/httpsvc/Echo", blob, type));
    EXPECT_EQ(r.status, 200) << type;
    EXPECT_EQ(r.header("content-type"), "application/octet-stream");
    EXPECT_EQ(r.body, blob);
  }
}

TEST_F(HttpTest, ApplicationErrorsAre500) {
  Response r = Call(Post("/httpsvc/BasicError", R"(["oops"])", "application/json"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, "\"error sent: oops\"");
  r = Call(Post("/httpsvc/ByteError", "[]", "application/json"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  EXPECT_EQ(r.body, std::string("\x00\x01\xfe", 3));
}

TEST_F(HttpTest, PathIsPercentDecoded) {
  Response r = Call(Post("/httpsvc/a%2Fb%3Ac/Whoami", "[]", "application/json"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("resource":"a/b:c")"), std::string::npos) << r.body;
  r = Call(Post("/httpsvc/x/y/Whoami", "[]", "application/json"));
  EXPECT_NE(r.body.find(R"("resource":"x/y")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("srcEnv":"")"), std::string::npos) << r.body;  // external
}

TEST_F(HttpTest, StatusCodes) {
  EXPECT_EQ(Call(Post("/httpsvc", "[]", "application/json")).status, 400);           // no method
  EXPECT_EQ(Call(Post("/httpsvc/", "[]", "application/json")).status, 400);          // empty method
  EXPECT_EQ(Call(Post("/httpsvc/%zz/Echo", "[]", "application/json")).status, 400);  // bad escape
  EXPECT_EQ(Call(Post("/httpsvc/Echo", "[1,", "application/json")).status, 400);     // invalid JSON
  EXPECT_EQ(Call(Post("/httpsvc/Echo", R"({"a":1})", "application/json")).status, 400);  // not an array
  EXPECT_EQ(Call(Post("/privsvc/Echo", "[]", "application/json")).status, 403);
  EXPECT_EQ(Call(Post("/nosuchsvc/Echo", "[]", "application/json")).status, 404);
  EXPECT_EQ(Call(Post("/httpsvc/NoSuchMethod", "[]", "application/json")).status, 404);
  EXPECT_EQ(Call(Post("/httpsvc/Echo?forceenv=nope.lever", "[]", "application/json")).status, 404);
  Response r = Call("GET /httpsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\n\r\n");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "POST, OPTIONS");
  EXPECT_EQ(Call("PUT /httpsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\nContent-Length: 0\r\n\r\n").status, 405);
  // 64 KiB limit (flag): at the limit passes, over it is refused.
  EXPECT_EQ(Call(Post("/httpsvc/Echo", std::string(64 << 10, 'x'))).status, 200);
  r = Call(Post("/httpsvc/Echo", std::string((64 << 10) + 1, 'x')));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "\"Exceeded maximum request size\"");
  KillInstancesOf("broken");  // the next one cannot start
  EXPECT_EQ(Call(Post("/broken/Echo", "[]", "application/json")).status, 503);
  r = Call(Post("/httpsvc/SleepMs", "[5000]", "application/json", "Lever-Timeout: 200ms\r\n"));
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(Call(Post("/httpsvc/SleepMs", "[1]", "application/json", "Lever-Timeout: soon\r\n")).status, 400);
}

TEST_F(HttpTest, OversizeAndMalformedRequests) {
  Response r = Call("POST /" + std::string(9000, 'a') + "/m HTTP/1.1\r\nHost: dev.lever\r\n\r\n");
  EXPECT_EQ(r.status, 414);
  r = Call("POST /httpsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  EXPECT_EQ(r.status, 431);
  r = Call("BLAH BLAH BLAH\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  // A chunked body that lies about its chunk size.
  r = Call("POST /httpsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  EXPECT_EQ(r.status, 400);
  // A chunked unary body over the limit.
  Conn c(leverd_->port());
  c.Send("POST /httpsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 70; ++i) c.SendChunk(std::string(1024, 'z'));
  ASSERT_TRUE(c.ReadResponse(&r));
  EXPECT_EQ(r.status, 413);
}

TEST_F(HttpTest, Cors) {
  Response r = Call("OPTIONS /httpsvc/Echo HTTP/1.1\r\nHost: dev.lever\r\nOrigin: https://app.example\r\n"
                    "Access-Control-Request-Method: POST\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("access-control-allow-origin"), "https://app.example");
  EXPECT_EQ(r.header("access-control-allow-methods"), "POST, OPTIONS");
  EXPECT_EQ(r.header("access-control-allow-headers"),
            "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization");
  r = Call(Post("/httpsvc/BasicHello", R"(["c"])", "application/json", "Origin: https://app.example\r\n"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("access-control-allow-origin"), "https://app.example");
  r = Call(Post("/httpsvc/BasicHello", R"(["c"])", "application/json"));
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
}

TEST_F(HttpTest, KeepAliveAndPipelining) {
  Conn c(leverd_->port());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.Send(Post("/httpsvc/BasicHello", "[\"" + std::to_string(i) + "\"]", "application/json")));
    Response r;
    ASSERT_TRUE(c.ReadResponse(&r));
    EXPECT_EQ(r.body, "\"hello " + std::to_string(i) + "\"");
  }
  // Two requests in one write, answered in order; an error keeps the connection.
  ASSERT_TRUE(c.Send(Post("/nosuchsvc/X", "[]", "application/json") + Post("/httpsvc/BasicHello", R"(["p"])", "application/json")));
  Response a, b;
  ASSERT_TRUE(c.ReadResponse(&a));
  ASSERT_TRUE(c.ReadResponse(&b));
  EXPECT_EQ(a.status, 404);
  EXPECT_EQ(b.body, "\"hello p\"");
  // Connection: close is honoured.
  ASSERT_TRUE(c.Send(Post("/httpsvc/BasicHello", R"(["z"])", "application/json", "Connection: close\r\n")));
  ASSERT_TRUE(c.ReadResponse(&a));
  EXPECT_EQ(a.header("connection"), "close");
  EXPECT_TRUE(c.ClosedWithin(5000));
}

// Each reply arrives before the next line is sent: the gateway flushes every
// message; the end of the body half-closes the stream.
TEST_F(HttpTest, NdjsonStreamingBothWays) {
  Conn c(leverd_->port());
  ASSERT_TRUE(c.Send("POST /httpsvc/ReqReplyStreamChan HTTP/1.1\r\nHost: dev.lever\r\n"
                     "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"));
  c.SendChunk("[\"p\"]\n");
  bool head = false;
  for (const char* m : {"1", "2", "hello"}) {
    c.SendChunk(std::string("\"") + m + "\"\n");
    Response r;
    if (!head) {
      ASSERT_TRUE(c.ReadHead(&r));
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.header("content-type"), "application/x-ndjson");
      EXPECT_EQ(r.header("transfer-encoding"), "chunked");
      head = true;
    }
    std::string chunk;
    ASSERT_TRUE(c.ReadChunk(&chunk));
    EXPECT_EQ(chunk, std::string("\"p:") + m + " received\"\n");
  }
  // Two messages in one chunk, the last without a newline, then the end.
  c.SendChunk("\"a\"\n\"b\"");
  c.Send("0\r\n\r\n");
  std::string rest, chunk;
  while (c.ReadChunk(&chunk)) rest += chunk;
  EXPECT_EQ(rest, "\"p:a received\"\n\"p:b received\"\n");
  // The connection is reusable.
  ASSERT_TRUE(c.Send(Post("/httpsvc/BasicHello", R"(["after"])", "application/json")));
  Response r;
  ASSERT_TRUE(c.ReadResponse(&r));
  EXPECT_EQ(r.body, "\"hello after\"");
}

TEST_F(HttpTest, ByteStreamingBothWays) {
  Conn c(leverd_->port());
  ASSERT_TRUE(c.Send("POST /httpsvc/EchoChan HTTP/1.1\r\nHost: dev.lever\r\n"
                     "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"));
  c.SendChunk("[]\n");
  std::string block("\x00\x01\x02 raw \xff", 9);
  c.SendChunk(block);
  Response r;
  ASSERT_TRUE(c.ReadHead(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  std::string got, chunk;
  while (got.size() < block.size() && c.ReadChunk(&chunk)) got += chunk;
  EXPECT_EQ(got, block);
  c.SendChunk("second");
  got.clear();
  while (got.size() < 6 && c.ReadChunk(&chunk)) got += chunk;
  EXPECT_EQ(got, "second");
  c.Send("0\r\n\r\n");
  EXPECT_FALSE(c.ReadChunk(&chunk));  // the end of the response
}

// 32 MiB up and back through one streaming call: nothing is buffered whole.
TEST_F(HttpTest, LargeByteStreamFlowsThrough) {
  std::string data(32 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  Conn c(leverd_->port());
  ASSERT_TRUE(c.Send("POST /httpsvc/EchoChan HTTP/1.1\r\nHost: dev.lever\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: " +
                     std::to_string(data.size() + 3) + "\r\n\r\n[]\n"));
  std::thread writer([&] { c.Send(data); });
  Response r;
  std::string got, chunk;
  bool head = c.ReadHead(&r);
  while (head && c.ReadChunk(&chunk)) got += chunk;
  writer.join();
  ASSERT_TRUE(head);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
  EXPECT_LE(Metric(leverd_->port(), "lever_gateway_peak_buffered_bytes"), 8 << 20);
}

// A unary bytes reply streams (http_api.md): to a client that reads nothing
// yet, leverd holds about a stream window of it, not the whole 32 MiB; then
// it all arrives, with its Content-Length.
TEST_F(HttpTest, LargeUnaryBytesReplyIsNotHeldWhole) {
  constexpr int64_t kSize = 32 << 20;
  ASSERT_EQ(leverd_->DeployTestService(R"({"name": "bigsvc", "entry": ["./serve"], "ram": 400})").exit_code, 0);
  int64_t rss_before = RssBytes(leverd_->pid());
  Conn c(leverd_->port(), 16384);
  ASSERT_TRUE(c.Send(Post("/bigsvc/Bytes", "[" + std::to_string(kSize) + "]", "application/json")));
  // The relay's stream buffer fills once the socket and leverd's 64 KiB of
  // pending output are full: the instance is held back by flow control.
  EXPECT_TRUE(WaitUntil([&] { return Metric(leverd_->port(), "lever_gateway_buffered_bytes") >= (512 << 10); },
                        std::chrono::seconds(30)));
  EXPECT_LT(RssBytes(leverd_->pid()) - rss_before, 24 << 20);
  Response r;
  ASSERT_TRUE(c.ReadResponse(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  EXPECT_EQ(r.header("content-length"), std::to_string(kSize));
  EXPECT_EQ(static_cast<int64_t>(r.body.size()), kSize);
  EXPECT_EQ(r.body.find_first_not_of('x'), std::string::npos);
  // A JSON reply is held whole but arrives the same.
  r = Call(Post("/bigsvc/Text", "[1048576]", "application/json"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"" + std::string(1 << 20, 'x') + "\"");
}

TEST_F(HttpTest, StreamingWholeBodyAtOnce) {
  // curl-style: Content-Length body with all lines; every reply comes back.
  std::string body = "[\"q\"]\n";
  std::string want;
  for (int i = 0; i < 200; ++i) {
    body += "\"" + std::to_string(i) + "\"\n";
    want += "\"q:" + std::to_string(i) + " received\"\n";
  }
  Response r = Call(Post("/httpsvc/ReqReplyStreamChan", body, "application/json"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, want);
  // Errors before the stream opens have their status.
  EXPECT_EQ(Call(Post("/httpsvc/ReqReplyStreamChan", "{\n", "application/json")).status, 400);
  EXPECT_EQ(Call(Post("/nosuchsvc/EchoChan", "[]\n", "application/json")).status, 404);
}

TEST_F(HttpTest, StreamingErrors) {
  // An application error before any message: 500 with the error, like unary.
  Response r = Call(Post("/httpsvc/FailAfterChan", "[0, \"app\"]", "application/json"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "\"failed after 0\"");
  // After messages: the last NDJSON line.
  r = Call(Post("/httpsvc/FailAfterChan", "[2, \"app\"]", "application/json"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"m0\"\n\"m1\"\n{\"error\":\"failed after 2\"}\n");
  // A platform error before any message has its status...
  r = Call(Post("/httpsvc/FailAfterChan", "[0, \"platform\"]", "application/json"));
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("broke"), std::string::npos) << r.body;
  // ...after messages the response is cut off (no final chunk) and closed.
  Conn c(leverd_->port());
  ASSERT_TRUE(c.Send(Post("/httpsvc/FailAfterChan", "[2, \"platform\"]", "application/json")));
  ASSERT_TRUE(c.ReadHead(&r));
  EXPECT_EQ(r.status, 200);
  std::string chunk, got;
  while (c.ReadChunk(&chunk)) got += chunk;
  EXPECT_EQ(got, "\"m0\"\n\"m1\"\n");
  EXPECT_TRUE(c.ClosedWithin(5000));
}

TEST_F(HttpTest, Metrics) {
  Response r = Call("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("lever_gateway_calls_total "), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("lever_http_responses_total{code=\"2xx\"} "), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("lever_gateway_active_calls "), std::string::npos);
  EXPECT_NE(r.body.find("lever_gateway_buffered_bytes "), std::string::npos);
}

TEST_F(HttpTest, TwoHundredKeepAliveConnections) {
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(std::make_unique<Conn>(leverd_->port()));
    ASSERT_TRUE(conns.back()->ok());
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(conns[i]->Send(Post("/httpsvc/BasicHello", "[\"" + std::to_string(i) + "\"]", "application/json")));
    }
    for (int i = 0; i < 200; ++i) {
      Response r;
      ASSERT_TRUE(conns[i]->ReadResponse(&r)) << i;
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, "\"hello " + std::to_string(i) + "\"");
    }
  }
}

// A client that goes away cancels its call: the handler sees the
// cancellation (unary), the stream is released (streaming).
TEST_F(HttpTest, ClientDisconnectCancelsTheCall) {
  TempDir dir;
  std::string started = dir.path() + "/started", cancelled = dir.path() + "/cancelled";
  {
    Conn c(leverd_->port());
    ASSERT_TRUE(c.Send(Post("/httpsvc/MarkThenWaitForCancel", "[\"" + started + "\",\"" + cancelled + "\"]",
                            "application/json")));
    ASSERT_TRUE(WaitUntil([&] { return fs::exists(started); }, std::chrono::seconds(10)));
  }
  EXPECT_TRUE(WaitUntil([&] { return fs::exists(cancelled); }, std::chrono::seconds(10)));
  {
    Conn c(leverd_->port());
    ASSERT_TRUE(c.Send("POST /httpsvc/EchoChan HTTP/1.1\r\nHost: dev.lever\r\n"
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
    c.SendChunk("[]\n\"x\"\n");
    Response r;
    ASSERT_TRUE(c.ReadHead(&r));
    std::string chunk;
    ASSERT_TRUE(c.ReadChunk(&chunk));
    EXPECT_EQ(chunk, "\"x\"\n");
    EXPECT_GE(Metric(leverd_->port(), "lever_gateway_active_calls"), 1);
  }
  EXPECT_TRUE(WaitUntil([&] { return Metric(leverd_->port(), "lever_gateway_active_calls") == 0; },
                        std::chrono::seconds(10)));
}

// A short idle timeout: a client that trickles its headers is closed.
TEST(HttpSlowClient, IsClosed) {
  Leverd leverd(Leverd::Options{"", {"--http-idle-timeout", "300ms"}});
  leverd.Start();
  // An idle keep-alive connection is closed after its request.
  Conn idle(leverd.port());
  ASSERT_TRUE(idle.Send("OPTIONS /x/y HTTP/1.1\r\nHost: dev.lever\r\n\r\n"));
  Response r;
  ASSERT_TRUE(idle.ReadResponse(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(idle.ClosedWithin(5000));
  Conn slow(leverd.port());
  ASSERT_TRUE(slow.Send("P"));  // sniffed as HTTP/1.1
  bool closed = false;
  std::string rest = "OST /x/y HTTP/1.1\r\nHost: dev.lever\r\n";
  for (size_t i = 0; i < rest.size() && !closed; ++i) {
    if (!slow.Send(rest.substr(i, 1))) closed = true;
    if (!closed && slow.ClosedWithin(100)) closed = true;
  }
  EXPECT_TRUE(closed || slow.ClosedWithin(5000));

  // A client that stops reading a streaming response is dropped, and its
  // call with it; the gateway holds at most about one stream window meanwhile.
  ASSERT_EQ(leverd.DeployTestService(kService).exit_code, 0);
  // Started first: a cold start under load can take longer than the 300 ms
  // a response may stand still.
  ASSERT_EQ(leverd.Lever({"invoke", "/httpsvc/Echo", "1"}).exit_code, 0);
  {
    Conn reader(leverd.port());
    ASSERT_TRUE(reader.Send(Post("/httpsvc/SourceChan", "[1073741824, 65536]\n", "application/json")));
    Response head;
    ASSERT_TRUE(reader.ReadHead(&head));
    EXPECT_EQ(head.status, 200);
    EXPECT_TRUE(WaitUntil([&] { return Metric(leverd.port(), "lever_gateway_active_calls") == 0; },
                          std::chrono::seconds(15)));
    EXPECT_LE(Metric(leverd.port(), "lever_gateway_peak_buffered_bytes"), 4 << 20);
  }
}

}  // namespace
}  // namespace lever::e2e
