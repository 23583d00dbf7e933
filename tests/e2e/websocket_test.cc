// WebSocket streaming calls on a real leverd's HTTP port (docs/http-api.md
// "WebSocket", gateway/websocket.md), over raw sockets with a client written
// here from RFC 6455: the handshake, frames both ways, ping/pong, the close
// codes, the limits and the bad upgrades. Chromium's side is tests/browser.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;
using Head = RawResponse;

constexpr char kService[] = R"({"name": "wssvc", "entry": ["./serve"]})";
// RFC 6455 1.3's example: this key must be answered with this accept value.
constexpr char kKey[] = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr char kAccept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

enum Op : uint8_t { kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10 };

struct Frame {
  bool fin = true;
  uint8_t op = 0;
  std::string payload;
};

struct Message {
  uint8_t op = 0;  // kText, kBinary or kClose
  std::string payload;
  int close_code() const {
    return payload.size() >= 2 ? (static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]) : 1005;
  }
  std::string close_reason() const { return payload.size() > 2 ? payload.substr(2) : ""; }
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s;
}

// A WebSocket client on one TCP connection; every read is bounded.
class WsClient : public RawHttp {
 public:
  using RawHttp::RawHttp;
  using RawHttp::Send;

  // Sends the upgrade request and reads the response head (and, for an
  // error, its body).
  Head Upgrade(const std::string& target, const std::string& extra = "", const std::string& host = "127.0.0.1") {
    Send("GET " + target + " HTTP/1.1\r\nHost: " + host +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + kKey +
         "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n");
    return ReadHead();
  }
  // The head of the answer; an error's body too (a 101 has none).
  Head ReadHead() {
    Head h;
    if (!RawHttp::ReadHead(&h) || h.status == 101) return h;
    size_t n = std::strtoul(h.header("content-length").c_str(), nullptr, 10);
    while (buf_.size() < n && Fill()) {
    }
    h.body = buf_.substr(0, std::min(n, buf_.size()));
    buf_.erase(0, h.body.size());
    return h;
  }

  // One frame, masked as a client must.
  bool Send(uint8_t op, std::string_view payload, bool fin = true) {
    std::string f;
    f.push_back(static_cast<char>((fin ? 0x80 : 0) | op));
    size_t n = payload.size();
    if (n < 126) {
      f.push_back(static_cast<char>(0x80 | n));
    } else if (n < 65536) {
      f.push_back(static_cast<char>(0x80 | 126));
      f.push_back(static_cast<char>(n >> 8));
      f.push_back(static_cast<char>(n & 0xff));
    } else {
      f.push_back(static_cast<char>(0x80 | 127));
      for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    }
    uint8_t key[4];
    for (uint8_t& k : key) k = static_cast<uint8_t>(rng_());
    f.append(reinterpret_cast<char*>(key), 4);
    for (size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
    return RawHttp::Send(f);
  }
  bool SendClose(int code, std::string_view reason = "") {
    std::string p;
    p.push_back(static_cast<char>(code >> 8));
    p.push_back(static_cast<char>(code & 0xff));
    p.append(reason);
    return Send(kClose, p);
  }

  // The next frame from the server, or false (connection closed, 15 s).
  bool ReadFrame(Frame* f) {
    while (buf_.size() < 2) {
      if (!Fill()) return false;
    }
    auto b = [this](size_t i) { return static_cast<uint8_t>(buf_[i]); };
    if (b(1) & 0x80) return false;  // a server never masks
    size_t n = b(1) & 0x7f, off = 2;
    if (n == 126 || n == 127) {
      size_t len_bytes = n == 126 ? 2 : 8;
      while (buf_.size() < 2 + len_bytes) {
        if (!Fill()) return false;
      }
      n = 0;
      for (size_t i = 0; i < len_bytes; ++i) n = (n << 8) | b(2 + i);
      off += len_bytes;
    }
    while (buf_.size() < off + n) {
      if (!Fill()) return false;
    }
    f->fin = (b(0) & 0x80) != 0;
    f->op = b(0) & 0x0f;
    f->payload = buf_.substr(off, n);
    buf_.erase(0, off + n);
    frames_seen_.push_back(n);
    return true;
  }

  // The next message (fragments joined); pings are answered unless
  // `answer_pings` is off, then they are counted and skipped.
  bool ReadMessage(Message* m) {
    m->payload.clear();
    Frame f;
    for (;;) {
      if (!ReadFrame(&f)) return false;
      if (f.op == kPing) {
        ++pings_;
        if (answer_pings && !Send(kPong, f.payload)) return false;
        continue;
      }
      if (f.op == kPong) {
        pongs_.push_back(f.payload);
        continue;
      }
      if (f.op != kCont) m->op = f.op;
      m->payload += f.payload;
      if (f.fin) return true;
    }
  }

  // Reads until the server's close frame; returns it (op 0 if none came).
  Message ReadUntilClose(std::vector<Message>* before = nullptr) {
    Message m;
    while (ReadMessage(&m)) {
      if (m.op == kClose) return m;
      if (before) before->push_back(m);
    }
    return Message{};
  }

  void Abort() {
    linger l{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd_);
    fd_ = -1;
  }

  bool answer_pings = true;
  int pings() const { return pings_; }
  const std::vector<std::string>& pongs() const { return pongs_; }
  const std::vector<size_t>& frames_seen() const { return frames_seen_; }

 private:
  std::mt19937 rng_{42};
  int pings_ = 0;
  std::vector<std::string> pongs_;
  std::vector<size_t> frames_seen_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class WebSocketTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    leverd_ = new Leverd();
    leverd_->Start();
    ASSERT_EQ(leverd_->DeployTestService(kService).exit_code, 0);
    ASSERT_EQ(leverd_->DeployTestService(R"({"name":"privws","private":true})").exit_code, 0);
    // Tight limits on a second leverd (so the rest never trips over them).
    tight_ = new Leverd(Leverd::Options{"",
                                        {"--ws-max-message-kib", "4", "--ws-max-frame-kib", "1", "--ws-idle-timeout",
                                         "1s", "--ws-allowed-origins", "https://app.example,https://b.example"}});
    tight_->Start();
    ASSERT_EQ(tight_->DeployTestService(kService).exit_code, 0);
  }
  static void TearDownTestSuite() {
    delete leverd_;
    delete tight_;
    leverd_ = tight_ = nullptr;
  }

  // An open WebSocket call of wssvc's `method` with `args` (JSON).
  static std::unique_ptr<WsClient> Open(Leverd* d, const std::string& method, const std::string& args) {
    auto c = std::make_unique<WsClient>(d->port());
    EXPECT_TRUE(c->ok());
    Head h = c->Upgrade("/wssvc/" + method + "?forceenv=dev.lever");
    EXPECT_EQ(h.status, 101) << h.body;
    EXPECT_TRUE(c->Send(kText, args));
    return c;
  }

  static Leverd* leverd_;
  static Leverd* tight_;
};
Leverd* WebSocketTest::leverd_ = nullptr;
Leverd* WebSocketTest::tight_ = nullptr;

TEST_F(WebSocketTest, Handshake) {
  WsClient c(leverd_->port());
  Head h = c.Upgrade("/wssvc/EchoChan?forceenv=dev.lever");
  EXPECT_EQ(h.status, 101);
  EXPECT_EQ(Lower(h.headers["upgrade"]), "websocket");
  EXPECT_EQ(Lower(h.headers["connection"]), "upgrade");
  EXPECT_EQ(h.headers["sec-websocket-accept"], kAccept);
  // The environment from Host, as for POST.
  WsClient by_host(leverd_->port());
  EXPECT_EQ(by_host.Upgrade("/wssvc/EchoChan", "", "dev.lever:1234").status, 101);
}

TEST_F(WebSocketTest, JsonAndBytesBothWaysInOrder) {
  auto c = Open(leverd_, "EchoChan", "[]");
  for (int i = 0; i < 50; ++i) {
    if (i % 2 == 0) {
      ASSERT_TRUE(c->Send(kText, R"({"n": )" + std::to_string(i) + R"(, "s": "é\u0000"})"));
    } else {
      ASSERT_TRUE(c->Send(kBinary, std::string("\x00\xff", 2) + std::to_string(i)));
    }
  }
  for (int i = 0; i < 50; ++i) {
    Message m;
    ASSERT_TRUE(c->ReadMessage(&m)) << i;
    if (i % 2 == 0) {
      EXPECT_EQ(m.op, kText) << i;
      EXPECT_EQ(m.payload, R"({"n":)" + std::to_string(i) + R"(,"s":"é\u0000"})");
    } else {
      EXPECT_EQ(m.op, kBinary) << i;
      EXPECT_EQ(m.payload, std::string("\x00\xff", 2) + std::to_string(i));
    }
  }
  // The client's close: the server answers it (and half-closes the call).
  ASSERT_TRUE(c->SendClose(1000));
  Message close = c->ReadUntilClose();
  EXPECT_EQ(close.op, kClose);
  EXPECT_EQ(close.close_code(), 1000);
  EXPECT_TRUE(c->ClosedWithin(10000));
}

TEST_F(WebSocketTest, EachMessageIsFlushedAsItArrives) {
  auto c = Open(leverd_, "ReqReplyStreamChan", R"(["p"])");
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c->Send(kText, "\"" + std::to_string(i) + "\""));
    Message m;
    ASSERT_TRUE(c->ReadMessage(&m));  // before the next is sent
    EXPECT_EQ(m.payload, "\"p:" + std::to_string(i) + " received\"");
  }
}

TEST_F(WebSocketTest, TheEndOfTheCallIsTheCloseCode) {
  {
    auto c = Open(leverd_, "SourceChan", "[3000, 1000]");
    std::vector<Message> got;
    Message close = c->ReadUntilClose(&got);
    ASSERT_EQ(got.size(), 3u);
    for (auto& m : got) EXPECT_EQ(m.payload, std::string(1000, 'x'));
    EXPECT_EQ(close.close_code(), 1000);
    EXPECT_EQ(close.close_reason(), "");
    c->SendClose(1000);
    EXPECT_TRUE(c->ClosedWithin(10000));
  }
  {
    auto c = Open(leverd_, "FailAfterChan", R"([2, "app"])");
    std::vector<Message> got;
    Message close = c->ReadUntilClose(&got);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].payload, "\"m1\"");
    EXPECT_EQ(close.close_code(), 1011);
    EXPECT_EQ(close.close_reason(), "failed after 2");
  }
  {
    auto c = Open(leverd_, "FailAfterChan", R"([1, "platform"])");
    std::vector<Message> got;
    Message close = c->ReadUntilClose(&got);
    EXPECT_EQ(got.size(), 1u);
    EXPECT_EQ(close.close_code(), 1011);
    EXPECT_NE(close.close_reason().find("broke"), std::string::npos) << close.close_reason();
  }
}

TEST_F(WebSocketTest, PlatformErrorsCloseWith1011AndTheirText) {
  {
    WsClient c(leverd_->port());
    ASSERT_EQ(c.Upgrade("/nosuchsvc/xChan?forceenv=dev.lever").status, 101);
    c.Send(kText, "[]");
    Message close = c.ReadUntilClose();
    EXPECT_EQ(close.close_code(), 1011);
    EXPECT_NE(close.close_reason().find("nosuchsvc"), std::string::npos) << close.close_reason();
  }
  {
    WsClient c(leverd_->port());
    ASSERT_EQ(c.Upgrade("/privws/EchoChan?forceenv=dev.lever").status, 101);
    c.Send(kText, "[]");
    Message close = c.ReadUntilClose();
    EXPECT_EQ(close.close_code(), 1011);
    EXPECT_NE(close.close_reason().find("private"), std::string::npos) << close.close_reason();
  }
}

TEST_F(WebSocketTest, PingIsAnsweredWithPong) {
  auto c = Open(leverd_, "EchoChan", "[]");
  ASSERT_TRUE(c->Send(kPing, "are you there"));
  ASSERT_TRUE(c->Send(kText, "1"));
  Message m;
  ASSERT_TRUE(c->ReadMessage(&m));
  EXPECT_EQ(m.payload, "1");
  ASSERT_EQ(c->pongs().size(), 1u);
  EXPECT_EQ(c->pongs()[0], "are you there");
}

TEST_F(WebSocketTest, FragmentedMessagesAreJoined) {
  auto c = Open(leverd_, "EchoChan", "[]");
  ASSERT_TRUE(c->Send(kText, "[1, ", false));
  ASSERT_TRUE(c->Send(kPing, "between fragments"));
  ASSERT_TRUE(c->Send(kCont, "2]", true));
  Message m;
  ASSERT_TRUE(c->ReadMessage(&m));
  EXPECT_EQ(m.op, kText);
  EXPECT_EQ(m.payload, "[1,2]");
}

TEST_F(WebSocketTest, BrowserCloseHalfClosesTheCall) {
  TempDir dir;
  std::string marker = dir.path() + "/end";
  auto c = Open(leverd_, "RecordEndChan", "[\"" + marker + "\"]");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c->Send(kText, "\"x\""));
  ASSERT_TRUE(c->SendClose(1000, "done"));
  Message close = c->ReadUntilClose();
  EXPECT_EQ(close.close_code(), 1000);
  // The handler saw the end of its input, not a cancellation.
  ASSERT_TRUE(WaitUntil([&] { return fs::exists(marker); }, std::chrono::seconds(15)));
  EXPECT_EQ(Slurp(marker), "eof 3");
}

TEST_F(WebSocketTest, ADroppedConnectionCancelsTheCall) {
  TempDir dir;
  std::string marker = dir.path() + "/end";
  auto c = Open(leverd_, "RecordEndChan", "[\"" + marker + "\"]");
  Message ready;
  ASSERT_TRUE(c->ReadMessage(&ready));  // the handler runs
  EXPECT_EQ(ready.payload, "\"ready\"");
  ASSERT_TRUE(c->Send(kText, "\"x\""));
  c->Abort();
  ASSERT_TRUE(WaitUntil([&] { return fs::exists(marker); }, std::chrono::seconds(15)));
  EXPECT_EQ(Slurp(marker), "cancelled");
}

TEST_F(WebSocketTest, BadFirstMessagesClose1007) {
  {
    auto c = std::make_unique<WsClient>(leverd_->port());
    ASSERT_EQ(c->Upgrade("/wssvc/EchoChan?forceenv=dev.lever").status, 101);
    c->Send(kBinary, "[]");
    Message close = c->ReadUntilClose();
    EXPECT_EQ(close.close_code(), 1007);
    EXPECT_NE(close.close_reason().find("JSON argument array"), std::string::npos) << close.close_reason();
  }
  for (const char* bad : {"[1,", "{\"a\": 1}", "\"x\""}) {
    auto c = Open(leverd_, "EchoChan", bad);
    Message close = c->ReadUntilClose();
    EXPECT_EQ(close.close_code(), 1007) << bad;
    EXPECT_NE(close.close_reason().find("first message"), std::string::npos) << close.close_reason();
  }
  {
    auto c = Open(leverd_, "EchoChan", "[]");
    c->Send(kText, "{not json");
    Message close = c->ReadUntilClose();
    EXPECT_EQ(close.close_code(), 1007);
    EXPECT_NE(close.close_reason().find("invalid JSON"), std::string::npos) << close.close_reason();
  }
  {
    auto c = Open(leverd_, "EchoChan", "[]");
    c->Send(kText, std::string("\"\xff\xfe\""));  // not UTF-8
    EXPECT_EQ(c->ReadUntilClose().close_code(), 1007);
  }
}

TEST_F(WebSocketTest, BadUpgradesAre400) {
  auto raw = [](int port, const std::string& request) {
    WsClient c(port);
    c.Send(request);
    return c.ReadHead();
  };
  int port = leverd_->port();
  Head h = raw(port, "GET /wssvc/EchoChan?forceenv=dev.lever HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
  EXPECT_EQ(h.status, 400);
  EXPECT_NE(h.body.find("Sec-WebSocket-Key"), std::string::npos) << h.body;
  h = raw(port, std::string("GET /wssvc/EchoChan?forceenv=dev.lever HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: ") +
                    kKey + "\r\nSec-WebSocket-Version: 8\r\n\r\n");
  EXPECT_EQ(h.status, 426);
  EXPECT_EQ(h.headers["sec-websocket-version"], "13");
  h = raw(port, std::string("POST /wssvc/EchoChan?forceenv=dev.lever HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nContent-Length: 0\r\nSec-WebSocket-Key: ") +
                    kKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n");
  EXPECT_EQ(h.status, 400);
  // A unary method.
  WsClient unary(port);
  h = unary.Upgrade("/wssvc/BasicHello?forceenv=dev.lever");
  EXPECT_EQ(h.status, 400);
  EXPECT_NE(h.body.find("\\\"BasicHello\\\" is not a streaming method"), std::string::npos) << h.body;
  // URL errors as for POST.
  WsClient noenv(port);
  EXPECT_EQ(noenv.Upgrade("/wssvc/EchoChan?forceenv=nope").status, 404);
  // A failed upgrade closes the connection.
  EXPECT_TRUE(noenv.ClosedWithin(10000));
}

TEST_F(WebSocketTest, OversizeMessagesClose1009) {
  {
    auto c = Open(tight_, "EchoChan", "[]");
    c->Send(kText, "\"" + std::string(4 * 1024 - 2, 'a') + "\"");  // exactly the limit
    Message m;
    ASSERT_TRUE(c->ReadMessage(&m));
    EXPECT_EQ(m.payload.size(), 4096u);
    c->Send(kBinary, std::string(4097, 'b'));
    Message close = c->ReadUntilClose();
    EXPECT_EQ(close.close_code(), 1009);
  }
  {
    // Over the limit only across fragments.
    auto c = Open(tight_, "EchoChan", "[]");
    c->Send(kBinary, std::string(3000, 'b'), false);
    c->Send(kCont, std::string(3000, 'b'), true);
    EXPECT_EQ(c->ReadUntilClose().close_code(), 1009);
  }
}

TEST_F(WebSocketTest, LongMessagesGoOutInFramesOfTheFrameLimit) {
  auto c = Open(tight_, "SourceChan", "[4000, 4000]");
  std::vector<Message> got;
  Message close = c->ReadUntilClose(&got);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, std::string(4000, 'x'));
  EXPECT_EQ(close.close_code(), 1000);
  size_t data_frames = 0;
  for (size_t n : c->frames_seen()) {
    EXPECT_LE(n, 1024u);
    if (n > 2) ++data_frames;
  }
  EXPECT_GE(data_frames, 4u);
}

TEST_F(WebSocketTest, AClientThatSendsNothingIsPingedThenClosed) {
  auto c = Open(tight_, "EchoChan", "[]");
  c->answer_pings = false;
  Message close = c->ReadUntilClose();
  EXPECT_GE(c->pings(), 1);
  EXPECT_EQ(close.close_code(), 1001);
  EXPECT_EQ(close.close_reason(), "idle timeout");
}

TEST_F(WebSocketTest, AClientThatAnswersPingsStaysOpenWhileQuiet) {
  auto c = Open(tight_, "ReqReplyStreamChan", R"(["q"])");
  // Three pings answered means three half-timeouts of silence went by.
  Frame f;
  int pings = 0;
  while (pings < 3) {
    ASSERT_TRUE(c->ReadFrame(&f));
    ASSERT_EQ(f.op, kPing);
    ++pings;
    ASSERT_TRUE(c->Send(kPong, f.payload));
  }
  ASSERT_TRUE(c->Send(kText, "\"still here\""));
  Message m;
  ASSERT_TRUE(c->ReadMessage(&m));
  EXPECT_EQ(m.payload, "\"q:still here received\"");
}

TEST_F(WebSocketTest, TheArgumentsMustArriveWithinTheIdleTimeout) {
  WsClient c(tight_->port());
  ASSERT_EQ(c.Upgrade("/wssvc/EchoChan?forceenv=dev.lever").status, 101);
  Message close = c.ReadUntilClose();
  EXPECT_EQ(close.close_code(), 1001);
  EXPECT_EQ(c.pings(), 0);
}

TEST_F(WebSocketTest, OriginAllowList) {
  WsClient evil(tight_->port());
  Head h = evil.Upgrade("/wssvc/EchoChan?forceenv=dev.lever", "Origin: https://evil.example\r\n");
  EXPECT_EQ(h.status, 403);
  EXPECT_NE(h.body.find("https://evil.example"), std::string::npos);
  WsClient ok(tight_->port());
  EXPECT_EQ(ok.Upgrade("/wssvc/EchoChan?forceenv=dev.lever", "Origin: https://b.example\r\n").status, 101);
  // The default leverd takes any origin, as CORS does for POST.
  WsClient any(leverd_->port());
  EXPECT_EQ(any.Upgrade("/wssvc/EchoChan?forceenv=dev.lever", "Origin: https://evil.example\r\n").status, 101);
}

TEST_F(WebSocketTest, AdminOnlyFromLeverdsOwnPages) {
  // Another site's page cannot reach admin.lever through a loopback leverd.
  WsClient evil(leverd_->port());
  EXPECT_EQ(evil.Upgrade("/admin/LogsChan?forceenv=admin.lever", "Origin: https://evil.example\r\n").status, 403);
  // leverd's own page can: the log tail of the status page.
  ASSERT_EQ(leverd_->Lever({"invoke", "/wssvc/Print", "\"hello from the test\""}).exit_code, 0);
  std::string host = "127.0.0.1:" + std::to_string(leverd_->port());
  WsClient page(leverd_->port());
  ASSERT_EQ(page.Upgrade("/admin/LogsChan?forceenv=admin.lever", "Origin: http://" + host + "\r\n", host).status, 101);
  page.Send(kText, R"(["dev.lever", "wssvc", {"follow": true, "lines": 50}])");
  Message m;
  bool seen = false;
  while (!seen && page.ReadMessage(&m)) {
    ASSERT_EQ(m.op, kText);
    seen = m.payload.find("print: hello from the test") != std::string::npos;
  }
  EXPECT_TRUE(seen);
}

TEST_F(WebSocketTest, DrainClosesIdleWebSocketsWith1001) {
  Leverd d;
  d.Start();
  WsClient c(d.port());
  ASSERT_EQ(c.Upgrade("/wssvc/EchoChan?forceenv=dev.lever").status, 101);
  std::thread stop([&] { d.Stop(); });
  Message close = c.ReadUntilClose();
  stop.join();
  EXPECT_EQ(close.close_code(), 1001);
}

}  // namespace
}  // namespace lever::e2e
