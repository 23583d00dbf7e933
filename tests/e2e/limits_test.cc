// leverd's HTTP/2 edges against hostile and slow peers (docs/operations.md,
// "HTTP/2 limits"): every timeout, cap and limit, and the classic attacks
// (CONTINUATION flood, HPACK bomb, zero-window reader, rapid reset, SETTINGS
// flood), each driven over a raw TCP socket at a real leverd with short flag
// values. Each test asserts the refusal or close the peer sees, and that a
// well-behaved client is served meanwhile with leverd's memory bounded.
// Frames are written by hand; nghttp2's HPACK coder encodes and decodes the
// header blocks.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "leverrpc.pb.h"

namespace lever::e2e {
namespace {

constexpr char kService[] = R"({"name": "limsvc", "entry": ["./serve"]})";
constexpr char kUrlPrefix[] = "lever://dev.lever/limsvc//";

enum : uint8_t {
  kData = 0,
  kHeaders = 1,
  kRstStream = 3,
  kSettings = 4,
  kPing = 6,
  kGoaway = 7,
  kWindowUpdate = 8,
  kContinuation = 9,
};
enum : uint8_t { kEndStream = 1, kAck = 1, kEndHeaders = 4 };

struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  int32_t sid = 0;
  std::string payload;
};

uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// One raw HTTP/2 client connection over loopback TCP.
class H2 {
 public:
  // `rcvbuf` > 0: a small receive buffer, set before connecting.
  explicit H2(int port, int rcvbuf = 0) {
    fd_ = ConnectLoopback(port, &ok_, rcvbuf);
    nghttp2_hd_deflate_new(&deflater_, 4096);
    nghttp2_hd_inflate_new(&inflater_);
  }
  ~H2() {
    close(fd_);
    nghttp2_hd_deflate_del(deflater_);
    nghttp2_hd_inflate_del(inflater_);
  }
  bool ok() const { return ok_; }

  bool SendRaw(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  static std::string FrameBytes(uint8_t type, uint8_t flags, int32_t sid, std::string_view payload) {
    std::string f;
    size_t n = payload.size();
    f.push_back(char(n >> 16));
    f.push_back(char(n >> 8));
    f.push_back(char(n));
    f.push_back(char(type));
    f.push_back(char(flags));
    f.push_back(char(uint32_t(sid) >> 24));
    f.push_back(char(uint32_t(sid) >> 16));
    f.push_back(char(uint32_t(sid) >> 8));
    f.push_back(char(uint32_t(sid)));
    f.append(payload);
    return f;
  }
  bool Send(uint8_t type, uint8_t flags, int32_t sid, std::string_view payload = {}) {
    return SendRaw(FrameBytes(type, flags, sid, payload));
  }
  bool Preface() { return SendRaw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); }
  static std::string SettingsPayload(const std::vector<std::pair<uint16_t, uint32_t>>& entries) {
    std::string p;
    for (auto [id, v] : entries) {
      p.push_back(char(id >> 8));
      p.push_back(char(id));
      for (int shift = 24; shift >= 0; shift -= 8) p.push_back(char(v >> shift));
    }
    return p;
  }
  static std::string U32(uint32_t v) {
    std::string p;
    for (int shift = 24; shift >= 0; shift -= 8) p.push_back(char(v >> shift));
    return p;
  }
  // Preface and our SETTINGS; reads until leverd's SETTINGS (ACKed) and its
  // ACK of ours.
  bool Handshake(const std::vector<std::pair<uint16_t, uint32_t>>& settings = {}) {
    if (!Preface() || !Send(kSettings, 0, 0, SettingsPayload(settings))) return false;
    bool theirs = false, acked = false;
    return ReadUntil(
        [&](const Frame& f) {
          if (f.type == kSettings && (f.flags & kAck) == 0) {
            theirs = true;
            for (size_t at = 0; at + 6 <= f.payload.size(); at += 6) {
              uint16_t id = uint16_t((uint8_t(f.payload[at]) << 8) | uint8_t(f.payload[at + 1]));
              server_settings.emplace_back(id, Be32(f.payload, at + 2));
            }
            Send(kSettings, kAck, 0);
          }
          if (f.type == kSettings && (f.flags & kAck) != 0) acked = true;
          return theirs && acked;
        },
        10000);
  }
  std::string Encode(const Headers& headers) {
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : headers) {
      nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(deflater_, nv.data(), nv.size()), '\0');
    ssize_t n = nghttp2_hd_deflate_hd(deflater_, reinterpret_cast<uint8_t*>(out.data()), out.size(), nv.data(), nv.size());
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
  }
  Headers Decode(const std::string& block) {
    Headers out;
    const auto* in = reinterpret_cast<const uint8_t*>(block.data());
    size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      ssize_t n = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, in, left, 1);
      if (n < 0) return out;
      in += n;
      left -= static_cast<size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        out.emplace_back(std::string(reinterpret_cast<char*>(nv.name), nv.namelen),
                         std::string(reinterpret_cast<char*>(nv.value), nv.valuelen));
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inflater_);
        return out;
      }
      if (n == 0 && left == 0) return out;
    }
  }
  static Headers RequestHeaders(const std::string& method, bool stream) {
    return {{":method", "POST"},
            {":scheme", "http"},
            {":path", stream ? "/core.LeverRPC/HandleStreamingRPC" : "/core.LeverRPC/HandleRPC"},
            {":authority", "limits"},
            {"content-type", "application/grpc"},
            {"te", "trailers"},
            {"lever-url", std::string(kUrlPrefix) + method}};
  }
  // A gRPC message (5-byte prefix).
  static std::string GrpcMessage(const google::protobuf::Message& m) {
    std::string body = m.SerializeAsString();
    std::string out(1, '\0');
    out += U32(static_cast<uint32_t>(body.size()));
    return out + body;
  }
  // Opens stream `sid`: HEADERS, then `body` (if any) in DATA frames; `end`
  // closes our side.
  bool Open(int32_t sid, const Headers& headers, std::string_view body, bool end) {
    std::string block = Encode(headers);
    if (!Send(kHeaders, kEndHeaders | (body.empty() && end ? kEndStream : 0), sid, block)) return false;
    while (!body.empty()) {
      size_t n = std::min<size_t>(body.size(), 16384);
      bool last = n == body.size();
      if (!Send(kData, last && end ? kEndStream : 0, sid, body.substr(0, n))) return false;
      body.remove_prefix(n);
    }
    return true;
  }

  // One frame, within `ms`; false on EOF, error or timeout (eof() tells).
  bool ReadFrame(Frame* f, int ms) {
    while (buf_.size() < 9 || buf_.size() < 9 + FrameLength()) {
      if (!Fill(ms)) return false;
    }
    size_t n = FrameLength();
    f->type = uint8_t(buf_[3]);
    f->flags = uint8_t(buf_[4]);
    f->sid = static_cast<int32_t>(Be32(buf_, 5) & 0x7fffffffu);
    f->payload = buf_.substr(9, n);
    buf_.erase(0, 9 + n);
    if (f->type == kGoaway && f->payload.size() >= 8) {
      goaway_code = static_cast<int64_t>(Be32(f->payload, 4));
      goaway_debug = f->payload.substr(8);
    }
    return true;
  }
  bool ReadUntil(const std::function<bool(const Frame&)>& pred, int ms) {
    Frame f;
    while (ReadFrame(&f, ms)) {
      if (pred(f)) return true;
    }
    return false;
  }
  // Reads (and drops) until leverd closes; true if it does within `ms`.
  bool ClosedWithin(int ms) {
    Frame f;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!ReadFrame(&f, ms)) return eof_;
    }
    return false;
  }
  // Reads frames until stream `sid` ends; returns its grpc-status (-1: reset
  // or the connection ended first; then *rst holds the RST_STREAM code).
  // Every header block is decoded, whichever stream it is for, so the HPACK
  // table stays in step with leverd's.
  int GrpcStatus(int32_t sid, int ms, uint32_t* rst = nullptr) {
    Frame f;
    for (;;) {
      if (auto it = status_.find(sid); it != status_.end()) return it->second;
      if (auto it = rst_.find(sid); it != rst_.end()) {
        if (rst != nullptr) *rst = it->second;
        return -1;
      }
      if (!ReadFrame(&f, ms)) return -1;
      if (f.type == kRstStream && f.payload.size() >= 4) rst_[f.sid] = Be32(f.payload, 0);
      if (f.type != kHeaders && f.type != kContinuation) continue;
      if (f.type == kHeaders) block_end_stream_ = (f.flags & kEndStream) != 0;
      block_ += f.payload;
      if ((f.flags & kEndHeaders) == 0) continue;
      Headers h = Decode(block_);
      block_.clear();
      if (!block_end_stream_) continue;
      int code = -1;
      for (auto& [n, v] : h) {
        if (n == "grpc-status") code = std::atoi(v.c_str());
      }
      status_[f.sid] = code;
    }
  }
  // A header block of literals never indexed, which leaves the HPACK table
  // as it is.
  static std::string LiteralBlock(const Headers& headers) {
    std::string out;
    for (auto& [n, v] : headers) {
      out.push_back('\0');
      AppendLength(&out, n.size());
      out += n;
      AppendLength(&out, v.size());
      out += v;
    }
    return out;
  }
  // An HPACK string length (7-bit prefix, no Huffman).
  static void AppendLength(std::string* out, size_t n) {
    if (n < 127) {
      out->push_back(char(n));
      return;
    }
    out->push_back(char(127));
    n -= 127;
    while (n >= 128) {
      out->push_back(char((n & 0x7f) | 0x80));
      n >>= 7;
    }
    out->push_back(char(n));
  }
  bool eof() const { return eof_; }

  std::vector<std::pair<uint16_t, uint32_t>> server_settings;
  int64_t goaway_code = -1;
  std::string goaway_debug;

 private:
  size_t FrameLength() const {
    return (size_t(uint8_t(buf_[0])) << 16) | (size_t(uint8_t(buf_[1])) << 8) | size_t(uint8_t(buf_[2]));
  }
  bool Fill(int ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return false;
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool ok_ = false;
  bool eof_ = false;
  std::string buf_;
  std::string block_;  // a header block in progress
  bool block_end_stream_ = false;
  std::map<int32_t, int> status_;      // ended streams' grpc-status
  std::map<int32_t, uint32_t> rst_;    // reset streams' codes
  nghttp2_hd_deflater* deflater_ = nullptr;
  nghttp2_hd_inflater* inflater_ = nullptr;
};

// RPC{args: [args...]} as a gRPC message, numbers as JSON numbers.
std::string RpcMessage(const std::vector<double>& numbers, const std::string& text = "") {
  core::RPC rpc;
  auto* args = rpc.mutable_args();
  if (!text.empty()) args->add_element()->set_json_string(text);
  for (double n : numbers) args->add_element()->set_json_number(n);
  return H2::GrpcMessage(rpc);
}
std::string StreamOpenMessage(const std::vector<double>& numbers) {
  core::StreamMessage m;
  auto* args = m.mutable_rpc()->mutable_args();
  for (double n : numbers) args->add_element()->set_json_number(n);
  return H2::GrpcMessage(m);
}

class LimitsTest : public ::testing::Test {
 protected:
  // A leverd with `flags`, the test service deployed and warm.
  void Start(std::vector<std::string> flags) {
    Leverd::Options o;
    o.extra_flags = std::move(flags);
    leverd_ = std::make_unique<Leverd>(o);
    leverd_->Start();
    CommandResult d = leverd_->DeployTestService(kService);
    ASSERT_EQ(d.exit_code, 0) << d.out << d.err;
    client_ = leverd_->NewClient();
    ASSERT_TRUE(ServedOthers());
    rss_before_ = RssBytes(leverd_->pid());
  }
  // A well-behaved client (the C++ SDK) gets its answer.
  bool ServedOthers() {
    Result r = client_->Service("dev.lever", "limsvc").Invoke("Echo", {Value("still here")});
    if (!r.ok()) ADD_FAILURE() << r.status.ToString();
    return r.ok() && r.value == Value("still here");
  }
  // A /metrics counter.
  int64_t Metric(const std::string& name) {
    RawHttp c(leverd_->port());
    c.Send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    RawResponse r;
    if (!c.ReadResponse(&r)) return -1;
    size_t at = r.body.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::atoll(r.body.c_str() + at + name.size() + 2);
  }
  // leverd's resident memory grew by less than `mib` since Start.
  void ExpectRssGrowthBelow(int64_t mib) {
    int64_t now = RssBytes(leverd_->pid());
    EXPECT_LT(now - rss_before_, mib << 20) << "RSS " << rss_before_ << " -> " << now;
  }

  std::unique_ptr<Leverd> leverd_;
  std::unique_ptr<Client> client_;
  int64_t rss_before_ = 0;
};

// --- timeouts -----------------------------------------------------------------

TEST_F(LimitsTest, SilentConnectionIsClosedAfterThePrefaceTimeout) {
  Start({"--preface-timeout=300ms"});
  H2 silent(leverd_->port());
  ASSERT_TRUE(silent.ok());
  EXPECT_TRUE(silent.ClosedWithin(10000));
  EXPECT_TRUE(silent.eof());
  EXPECT_TRUE(ServedOthers());
}

TEST_F(LimitsTest, ClientWithoutSettingsGetsSettingsTimeout) {
  Start({"--h2-client-settings-timeout=300ms"});
  H2 mute(leverd_->port());
  ASSERT_TRUE(mute.Preface());  // the preface and nothing else: no SETTINGS
  EXPECT_TRUE(mute.ClosedWithin(10000));
  EXPECT_EQ(mute.goaway_code, NGHTTP2_SETTINGS_TIMEOUT);

  H2 no_ack(leverd_->port());  // SETTINGS, but never an ACK of leverd's
  ASSERT_TRUE(no_ack.Preface());
  ASSERT_TRUE(no_ack.Send(kSettings, 0, 0));
  EXPECT_TRUE(no_ack.ClosedWithin(10000));
  EXPECT_EQ(no_ack.goaway_code, NGHTTP2_SETTINGS_TIMEOUT);
  EXPECT_GE(Metric("lever_gateway_timed_out_connections"), 2);
  EXPECT_TRUE(ServedOthers());
}

TEST_F(LimitsTest, IdleClientGetsGoawayButABusyOneStays) {
  Start({"--h2-client-idle-timeout=400ms"});
  H2 busy(leverd_->port());
  ASSERT_TRUE(busy.Handshake());
  // A call longer than the idle timeout keeps its connection.
  ASSERT_TRUE(busy.Open(1, H2::RequestHeaders("SleepMs", false), RpcMessage({1500}), true));
  H2 idle(leverd_->port());
  ASSERT_TRUE(idle.Handshake());
  EXPECT_TRUE(idle.ClosedWithin(10000));
  EXPECT_EQ(idle.goaway_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(busy.GrpcStatus(1, 10000), 0) << busy.goaway_code << " " << busy.goaway_debug << " eof " << busy.eof();
  // Then it is idle too.
  EXPECT_TRUE(busy.ClosedWithin(10000));
  EXPECT_EQ(busy.goaway_code, NGHTTP2_NO_ERROR);
  EXPECT_TRUE(ServedOthers());
}

TEST_F(LimitsTest, ClientThatReadsNothingIsClosedAfterTheWriteTimeout) {
  Start({"--h2-client-write-timeout=500ms", "--workers=1"});
  int64_t others = Metric("lever_gateway_grpc_connections");  // the SDK client's
  H2 deaf(leverd_->port(), 4096);
  // Large windows, so only the socket stops leverd's writes.
  ASSERT_TRUE(deaf.Handshake({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff}}));
  ASSERT_TRUE(deaf.Send(kWindowUpdate, 0, 0, H2::U32(0x7fff0000)));
  ASSERT_TRUE(deaf.Open(1, H2::RequestHeaders("SourceChan", true), StreamOpenMessage({64 << 20, 65536}), false));
  // It never reads again: leverd's write stalls, and the connection goes.
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_timed_out_connections") >= 1; }, std::chrono::seconds(20)));
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_grpc_connections") == others; }, std::chrono::seconds(10)));
  EXPECT_TRUE(ServedOthers());
  ExpectRssGrowthBelow(64);
}

TEST_F(LimitsTest, WedgedInstanceDoesNotHoldTheCall) {
  Start({"--h2-instance-settings-timeout=300ms", "--workers=1"});
  // A second service whose instance is stopped before the gateway ever
  // connected to it: its kernel accepts, nothing answers.
  ASSERT_EQ(leverd_->DeployTestService(R"({"name": "wedged", "entry": ["./serve"]})").exit_code, 0);
  // Ready, not only listed: stopped while still starting, it would be a
  // start timeout (15 s, then a fresh start), not a wedged connection.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto list = leverd_->Instances("wedged");
        const Value* state = list.size() == 1 ? list[0].as_map().Find("state") : nullptr;
        return state != nullptr && *state == Value("ready");
      },
      std::chrono::seconds(20)));
  ASSERT_EQ(leverd_->KillInstances("wedged", SIGSTOP), 1);
  auto call = std::async(std::launch::async, [&] {
    auto other = leverd_->NewClient();
    return other->Service("dev.lever", "wedged").Invoke("Echo", {Value("x")});
  });
  // The call does not wait forever on the wedged connection: it goes to a
  // fresh instance or fails UNAVAILABLE, and the timeout is counted.
  bool ended = call.wait_for(std::chrono::seconds(25)) == std::future_status::ready;
  EXPECT_TRUE(ended);
  if (!ended) {
    for (const auto& l : leverd_->LogLines()) std::fprintf(stderr, "leverd: %s\n", l.c_str());
  }
  leverd_->KillInstances("wedged", SIGCONT);
  Result r = call.get();
  EXPECT_TRUE(r.ok() || r.status.code() == Code::kUnavailable) << r.status.ToString();
  EXPECT_GE(Metric("lever_gateway_timed_out_connections"), 1);
  EXPECT_TRUE(ServedOthers());
}

// --- caps and limits ------------------------------------------------------------

TEST_F(LimitsTest, StreamsBeyondTheLimitBreakOnlyThatConnection) {
  Start({"--h2-max-concurrent-streams=2"});
  H2 c(leverd_->port());
  ASSERT_TRUE(c.Handshake());
  bool advertised = false;
  for (auto [id, v] : c.server_settings) advertised |= id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS && v == 2;
  EXPECT_TRUE(advertised);
  // Two calls at the limit are served.
  ASSERT_TRUE(c.Open(1, H2::RequestHeaders("SleepMs", false), RpcMessage({300}), true));
  ASSERT_TRUE(c.Open(3, H2::RequestHeaders("SleepMs", false), RpcMessage({300}), true));
  EXPECT_EQ(c.GrpcStatus(1, 10000), 0);
  EXPECT_EQ(c.GrpcStatus(3, 10000), 0);
  // A third at once, after the client acknowledged the limit, breaks the
  // protocol (RFC 9113 5.1.2): nghttp2 answers GOAWAY PROTOCOL_ERROR.
  ASSERT_TRUE(c.Open(5, H2::RequestHeaders("SleepMs", false), RpcMessage({800}), true));
  ASSERT_TRUE(c.Open(7, H2::RequestHeaders("SleepMs", false), RpcMessage({800}), true));
  ASSERT_TRUE(c.Open(9, H2::RequestHeaders("SleepMs", false), RpcMessage({800}), true));
  EXPECT_TRUE(c.ClosedWithin(10000));
  EXPECT_EQ(c.goaway_code, NGHTTP2_PROTOCOL_ERROR);
  EXPECT_NE(c.goaway_debug.find("max concurrent streams"), std::string::npos) << c.goaway_debug;
  EXPECT_TRUE(ServedOthers());
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_active_calls") == 0; }, std::chrono::seconds(20)));
}

TEST_F(LimitsTest, OversizedHeaderListIsResourceExhausted) {
  Start({"--h2-max-header-list-kib=2"});
  H2 c(leverd_->port());
  ASSERT_TRUE(c.Handshake());
  bool advertised = false;
  for (auto [id, v] : c.server_settings) advertised |= id == NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE && v == 2048;
  EXPECT_TRUE(advertised);
  Headers h = H2::RequestHeaders("Echo", false);
  h.emplace_back("big", std::string(3000, 'b'));
  ASSERT_TRUE(c.Open(1, h, RpcMessage({}, "x"), true));
  EXPECT_EQ(c.GrpcStatus(1, 10000), 8);  // RESOURCE_EXHAUSTED
  // The same connection still serves a call within the limit.
  ASSERT_TRUE(c.Open(3, H2::RequestHeaders("Echo", false), RpcMessage({}, "x"), true));
  EXPECT_EQ(c.GrpcStatus(3, 10000), 0);
  EXPECT_TRUE(ServedOthers());
}

TEST_F(LimitsTest, ConnectionsBeyondTheCapAreRefusedWithGoaway) {
  Start({"--max-connections=2"});
  client_.reset();  // the SDK client's connection would count
  ASSERT_TRUE(WaitUntil([&] { return Metric("lever_gateway_grpc_connections") == 0; }, std::chrono::seconds(10)));
  // (No /metrics while full: that request would be refused too.) The
  // /metrics connection just used may still count until leverd has seen it
  // close, so the two that fill the cap try again until they are in.
  auto enter = [&](std::unique_ptr<H2>& c) {
    return WaitUntil([&] {
      c = std::make_unique<H2>(leverd_->port());
      return c->Handshake();
    }, std::chrono::seconds(10));
  };
  std::unique_ptr<H2> a, b;
  ASSERT_TRUE(enter(a));
  ASSERT_TRUE(enter(b));
  H2 refused(leverd_->port());
  ASSERT_TRUE(refused.Preface());
  refused.Send(kSettings, 0, 0);
  EXPECT_TRUE(refused.ClosedWithin(10000));
  EXPECT_EQ(refused.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_EQ(refused.goaway_debug, "connection limit");
  // The two inside are unaffected.
  ASSERT_TRUE(a->Open(1, H2::RequestHeaders("Echo", false), RpcMessage({}, "x"), true));
  EXPECT_EQ(a->GrpcStatus(1, 10000), 0);
  // One leaves: a newcomer gets in.
  b.reset();
  EXPECT_TRUE(WaitUntil([&] { return H2(leverd_->port()).Handshake(); }, std::chrono::seconds(10)));
  a.reset();
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_refused_connections") >= 1; }, std::chrono::seconds(10)));
}

TEST_F(LimitsTest, PerWorkerCapRefusesOnAFullWorker) {
  Start({"--workers=2", "--max-connections-per-worker=1"});
  client_.reset();
  ASSERT_TRUE(WaitUntil([&] { return Metric("lever_gateway_grpc_connections") == 0; }, std::chrono::seconds(10)));
  // Connections go round-robin over the two workers, one each at most: of
  // four, at most two get in (fewer while the /metrics connection above is
  // still closing on its worker), and the total cap (10000) is far.
  int64_t refused_before = Metric("lever_gateway_refused_connections");
  std::vector<std::unique_ptr<H2>> conns;
  int handshakes = 0;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(std::make_unique<H2>(leverd_->port()));
    if (conns.back()->Handshake()) ++handshakes;
  }
  EXPECT_GE(handshakes, 1);
  EXPECT_LE(handshakes, 2);
  conns.clear();
  ASSERT_TRUE(WaitUntil([&] { return Metric("lever_gateway_grpc_connections") == 0; }, std::chrono::seconds(10)));
  EXPECT_GE(Metric("lever_gateway_refused_connections") - refused_before, 2);
}

// --- attacks ------------------------------------------------------------------

TEST_F(LimitsTest, ContinuationFloodClosesTheConnection) {
  Start({});
  H2 c(leverd_->port());
  ASSERT_TRUE(c.Handshake());
  std::string block = c.Encode(H2::RequestHeaders("Echo", false));
  ASSERT_TRUE(c.Send(kHeaders, 0, 1, block));  // no END_HEADERS
  // CVE-2024-27316 class: header blocks that never end. nghttp2 allows 8
  // CONTINUATION frames; leverd must not buffer the rest.
  std::string filler = c.Encode({{"x-filler", std::string(8000, 'f')}});
  bool sending = true;
  for (int i = 0; i < 10000 && sending; ++i) sending = c.Send(kContinuation, 0, 1, filler);
  EXPECT_TRUE(c.ClosedWithin(10000));
  EXPECT_TRUE(ServedOthers());
  ExpectRssGrowthBelow(32);
}

TEST_F(LimitsTest, HpackBombIsAnsweredWithoutExpandingIt) {
  Start({});
  H2 c(leverd_->port());
  ASSERT_TRUE(c.Handshake());
  // A 4000-byte header enters the dynamic table once (literal with
  // incremental indexing); each later block names it 8000 times by index
  // (one byte each): 32 MB of headers from an 8 KB frame. The rest of every
  // block is literals that leave the table alone, so the entry stays at
  // index 62 (0xbe).
  std::string entry = std::string(1, char(0x40)) + char(4) + "bomb";
  H2::AppendLength(&entry, 4000);
  entry += std::string(4000, 'b');
  std::string request = H2::LiteralBlock(H2::RequestHeaders("Echo", false));
  ASSERT_TRUE(c.Send(kHeaders, kEndHeaders, 1, request + entry));
  ASSERT_TRUE(c.Send(kData, kEndStream, 1, RpcMessage({}, "x")));
  EXPECT_EQ(c.GrpcStatus(1, 10000), 0);  // 4 KB of headers: fine
  int32_t sid = 1;
  for (int round = 0; round < 40; ++round) {
    sid += 2;
    ASSERT_TRUE(c.Send(kHeaders, kEndHeaders | kEndStream, sid, request + std::string(8000, char(0xbe))));
    ASSERT_EQ(c.GrpcStatus(sid, 10000), 8) << "round " << round;  // RESOURCE_EXHAUSTED
  }
  EXPECT_TRUE(ServedOthers());
  ExpectRssGrowthBelow(32);
}

TEST_F(LimitsTest, ZeroWindowReaderStallsOnlyItself) {
  // One worker, so the reader and the others share the connection to the
  // instance.
  Start({"--workers=1"});
  H2 reader(leverd_->port());
  ASSERT_TRUE(reader.Handshake({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0}}));
  // 24 streams of 4 MiB each that it never lets through: more than the
  // instance connection's 16 MiB window.
  for (int32_t sid = 1; sid <= 47; sid += 2) {
    ASSERT_TRUE(reader.Open(sid, H2::RequestHeaders("SourceChan", true), StreamOpenMessage({4 << 20, 65536}), false));
  }
  // leverd holds at most a stream window (1 MiB) per stream.
  // More than the 16 MiB of the instance connection's window: that window
  // went back as the bytes arrived.
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_buffered_bytes") >= (20 << 20); }, std::chrono::seconds(20)));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ServedOthers());
  EXPECT_LE(Metric("lever_gateway_buffered_bytes"), 24 * ((1 << 20) + (64 << 10)));
  ExpectRssGrowthBelow(96);
}

TEST_F(LimitsTest, ZeroWindowClientThatKeepsPingingIsCutOff) {
  // A client that opens streams, never returns a byte of window, and stays
  // active with PINGs (which reset no timer): each stream whose response
  // waits on its window is reset after the write timeout, and with no stream
  // left the connection is idle, PINGs or not: GOAWAY after the idle timeout.
  Start({"--h2-client-write-timeout=500ms", "--h2-client-idle-timeout=1s", "--workers=1"});
  H2 c(leverd_->port());
  ASSERT_TRUE(c.Handshake({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0}}));
  std::set<int32_t> opened;
  for (int32_t sid = 1; sid <= 15; sid += 2) {
    ASSERT_TRUE(c.Open(sid, H2::RequestHeaders("SourceChan", true), StreamOpenMessage({4 << 20, 65536}), false));
    opened.insert(sid);
  }
  std::set<int32_t> cancelled;
  int pongs = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!c.eof() && std::chrono::steady_clock::now() < deadline) {
    if (!c.Send(kPing, 0, 0, std::string(8, 'p'))) break;
    Frame f;
    while (c.ReadFrame(&f, 50)) {  // until 50 ms pass without a frame: then PING again
      if (f.type == kPing && (f.flags & kAck) != 0) ++pongs;
      if (f.type == kRstStream && f.payload.size() >= 4 && Be32(f.payload, 0) == NGHTTP2_CANCEL) cancelled.insert(f.sid);
    }
  }
  EXPECT_TRUE(c.eof());
  EXPECT_EQ(cancelled, opened);
  EXPECT_EQ(c.goaway_code, NGHTTP2_NO_ERROR);
  EXPECT_GE(pongs, 1);  // it was answered all along
  // What leverd held for it is gone, and others were served throughout.
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_buffered_bytes") < (256 << 10); }, std::chrono::seconds(10)));
  EXPECT_TRUE(ServedOthers());
  ExpectRssGrowthBelow(64);
}

TEST_F(LimitsTest, RapidResetIsCutOff) {
  Start({});
  H2 c(leverd_->port());
  ASSERT_TRUE(c.Handshake());
  // CVE-2023-44487: open and reset at once, as fast as possible.
  std::string burst;
  int32_t sid = 1;
  bool sending = true;
  for (int round = 0; round < 40 && sending; ++round) {
    burst.clear();
    for (int i = 0; i < 250; ++i, sid += 2) {
      burst += H2::FrameBytes(kHeaders, kEndHeaders, sid, c.Encode(H2::RequestHeaders("SleepMs", false)));
      burst += H2::FrameBytes(kRstStream, 0, sid, H2::U32(NGHTTP2_CANCEL));
    }
    sending = c.SendRaw(burst);
  }
  EXPECT_TRUE(c.ClosedWithin(10000));
  EXPECT_NE(c.goaway_code, -1);  // told why (nghttp2's rate limit)
  EXPECT_TRUE(WaitUntil([&] { return Metric("lever_gateway_active_calls") == 0; }, std::chrono::seconds(20)));
  EXPECT_TRUE(ServedOthers());
  ExpectRssGrowthBelow(32);
}

TEST_F(LimitsTest, SettingsFloodFromAClientThatDoesNotReadIsCutOff) {
  Start({});
  H2 c(leverd_->port(), 4096);
  ASSERT_TRUE(c.Handshake());
  // Each SETTINGS owes an ACK; the client reads none of them.
  std::string burst;
  for (int i = 0; i < 1000; ++i) burst += H2::FrameBytes(kSettings, 0, 0, H2::SettingsPayload({{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}}));
  bool sending = true;
  for (int round = 0; round < 200 && sending; ++round) sending = c.SendRaw(burst);
  EXPECT_TRUE(c.ClosedWithin(15000));
  EXPECT_TRUE(ServedOthers());
  ExpectRssGrowthBelow(32);
}

}  // namespace
}  // namespace lever::e2e
