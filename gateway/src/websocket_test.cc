// The pure parts of WebSocket calls: the upgrade check, the idle rule on
// made-up times, close reasons. The protocol itself is tested against a real
// leverd over raw sockets (tests/e2e/websocket_test.cc) and in Chromium
// (tests/browser).
#include "websocket.h"

#include <gtest/gtest.h>

namespace lever::gateway::ws {
namespace {

namespace bhttp = boost::beast::http;
using std::chrono::milliseconds;

RequestHead Head(std::string target) {
  RequestHead h;
  h.method(bhttp::verb::get);
  h.target(target);
  h.version(11);
  h.set(bhttp::field::host, "127.0.0.1:8080");
  h.set(bhttp::field::connection, "keep-alive, Upgrade");
  h.set(bhttp::field::upgrade, "websocket");
  h.set(bhttp::field::sec_websocket_version, "13");
  h.set(bhttp::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  return h;
}

struct Checked {
  int status;
  Upgrade up;
  std::string error, extra;
};

Checked Check(const RequestHead& h, const HttpApiOptions& o = {}, std::string_view addr = "127.0.0.1:5000",
              size_t buffered = 0) {
  Checked c;
  c.status = CheckUpgrade(h, addr, buffered, o, &c.up, &c.error, &c.extra);
  return c;
}

TEST(WebSocketUpgrade, OpensAStreamingCall) {
  Checked c = Check(Head("/chat/room%2F1/joinChan?forceenv=dev.lever"));
  ASSERT_EQ(c.status, 0) << c.error;
  EXPECT_EQ(c.up.target.env, "dev.lever");
  EXPECT_EQ(c.up.target.service, "chat");
  EXPECT_EQ(c.up.target.resource, "room/1");
  EXPECT_EQ(c.up.target.method, "joinChan");
  EXPECT_EQ(c.up.client_addr, "127.0.0.1:5000");
  EXPECT_TRUE(c.up.admin_token.empty());
}

TEST(WebSocketUpgrade, WantsUpgradeReadsTheToken) {
  RequestHead h = Head("/s/mChan");
  EXPECT_TRUE(WantsUpgrade(h));
  h.set(bhttp::field::upgrade, "WebSocket");
  EXPECT_TRUE(WantsUpgrade(h));
  h.set(bhttp::field::upgrade, "h2c");
  EXPECT_FALSE(WantsUpgrade(h));
  h.erase(bhttp::field::upgrade);
  EXPECT_FALSE(WantsUpgrade(h));
}

TEST(WebSocketUpgrade, BadUpgradesAre400) {
  RequestHead h = Head("/s/mChan?forceenv=dev.lever");
  h.method(bhttp::verb::post);
  EXPECT_EQ(Check(h).status, 400);

  h = Head("/s/mChan?forceenv=dev.lever");
  h.set(bhttp::field::connection, "keep-alive");
  EXPECT_EQ(Check(h).status, 400);

  h = Head("/s/mChan?forceenv=dev.lever");
  h.version(10);
  EXPECT_EQ(Check(h).status, 400);

  for (const char* key : {"", "short==", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZ!==",
                          "dGhlIHNhbXBsZSBub25jZQ=="
                          "x"}) {
    h = Head("/s/mChan?forceenv=dev.lever");
    h.set(bhttp::field::sec_websocket_key, key);
    EXPECT_EQ(Check(h).status, 400) << key;
  }
  // Data before the handshake answer (RFC 6455 4.1: the client waits).
  EXPECT_EQ(Check(Head("/s/mChan?forceenv=dev.lever"), {}, "127.0.0.1:1", 10).status, 400);
}

TEST(WebSocketUpgrade, OtherVersionsAre426WithTheVersionWeSpeak) {
  RequestHead h = Head("/s/mChan?forceenv=dev.lever");
  h.set(bhttp::field::sec_websocket_version, "8");
  Checked c = Check(h);
  EXPECT_EQ(c.status, 426);
  EXPECT_EQ(c.extra, "Sec-WebSocket-Version: 13\r\n");
}

TEST(WebSocketUpgrade, UnaryMethodIs400WithAClearMessage) {
  Checked c = Check(Head("/s/sayHello?forceenv=dev.lever"));
  EXPECT_EQ(c.status, 400);
  EXPECT_NE(c.error.find("\"sayHello\" is not a streaming method"), std::string::npos) << c.error;
  EXPECT_NE(c.error.find("POST"), std::string::npos) << c.error;
}

TEST(WebSocketUpgrade, UrlErrorsAsForPost) {
  EXPECT_EQ(Check(Head("/s/mChan")).status, 404);  // Host 127.0.0.1 is no .lever environment
  EXPECT_EQ(Check(Head("/s%zz/mChan?forceenv=dev.lever")).status, 400);
  EXPECT_EQ(Check(Head("/onlyservice?forceenv=dev.lever")).status, 400);
}

TEST(WebSocketUpgrade, OriginAllowList) {
  HttpApiOptions o;
  RequestHead h = Head("/s/mChan?forceenv=dev.lever");
  h.set(bhttp::field::origin, "https://evil.example");
  EXPECT_EQ(Check(h, o).status, 0);  // no list: any origin, as CORS
  o.websocket.allowed_origins = {"https://app.example"};
  Checked c = Check(h, o);
  EXPECT_EQ(c.status, 403);
  EXPECT_NE(c.error.find("https://evil.example"), std::string::npos);
  h.set(bhttp::field::origin, "https://app.example");
  EXPECT_EQ(Check(h, o).status, 0);
  h.erase(bhttp::field::origin);
  EXPECT_EQ(Check(h, o).status, 0);  // not a browser
}

TEST(WebSocketUpgrade, AdminOnlyFromLeverdsOwnPages) {
  HttpApiOptions o;
  o.admin_token = "T0123456789012345678901234567890123456789";
  RequestHead h = Head("/admin/LogsChan?forceenv=admin.lever");
  // Another site's page, through a loopback leverd: refused.
  h.set(bhttp::field::origin, "https://evil.example");
  EXPECT_EQ(Check(h, o).status, 403);
  // The status page itself.
  h.set(bhttp::field::origin, "http://127.0.0.1:8080");
  Checked c = Check(h, o);
  EXPECT_EQ(c.status, 0) << c.error;
  EXPECT_EQ(c.up.admin_token, o.admin_token);  // checked here: the admin service gets the token
  // DNS rebinding: same origin, but a name that is not loopback.
  h.set(bhttp::field::host, "evil.example:8080");
  h.set(bhttp::field::origin, "http://evil.example:8080");
  EXPECT_EQ(Check(h, o).status, 403);
  // From another machine with the token cookie: the token goes to the admin service.
  h.set(bhttp::field::host, "node1:8080");
  h.set(bhttp::field::origin, "http://node1:8080");
  h.set(bhttp::field::cookie, "a=b; lever_admin_token=" + o.admin_token);
  c = Check(h, o, "10.0.0.7:4000");
  EXPECT_EQ(c.status, 0) << c.error;
  EXPECT_EQ(c.up.admin_token, o.admin_token);
  // A non-browser client (no Origin) shows the token, from loopback too.
  for (std::string_view peer : {"10.0.0.7:4000", "127.0.0.1:4000"}) {
    RequestHead cli = Head("/admin/LogsChan?forceenv=admin.lever");
    c = Check(cli, o, peer);
    EXPECT_EQ(c.status, 403) << peer;
    EXPECT_NE(c.error.find("Authorization: Bearer"), std::string::npos) << c.error;
    cli.set(bhttp::field::authorization, "Bearer " + o.admin_token);
    c = Check(cli, o, peer);
    EXPECT_EQ(c.status, 0) << c.error;
    EXPECT_EQ(c.up.admin_token, o.admin_token);
  }
  // No other spelling of admin.lever gets through.
  RequestHead upper = Head("/admin/LogsChan?forceenv=ADMIN.Lever");
  upper.set(bhttp::field::origin, "https://evil.example");
  EXPECT_NE(Check(upper, o).status, 0);
}

TEST(WebSocketIdle, PingsAtHalfThenClosesAtTheTimeout) {
  using Clock = IdleRule::Clock;
  Clock::time_point t0{};
  IdleRule idle(milliseconds(1000), t0);
  EXPECT_EQ(idle.NextCheck(true), t0 + milliseconds(500));
  EXPECT_EQ(idle.Check(t0 + milliseconds(499), true), IdleRule::Action::kNone);
  EXPECT_EQ(idle.Check(t0 + milliseconds(500), true), IdleRule::Action::kPing);
  EXPECT_EQ(idle.Check(t0 + milliseconds(600), true), IdleRule::Action::kNone);  // once per silence
  EXPECT_EQ(idle.NextCheck(true), t0 + milliseconds(1000));
  EXPECT_EQ(idle.Check(t0 + milliseconds(1000), true), IdleRule::Action::kClose);
}

TEST(WebSocketIdle, AnyFrameFromTheClientRestartsIt) {
  using Clock = IdleRule::Clock;
  Clock::time_point t0{};
  IdleRule idle(milliseconds(1000), t0);
  EXPECT_EQ(idle.Check(t0 + milliseconds(500), true), IdleRule::Action::kPing);
  idle.Received(t0 + milliseconds(700));  // the pong
  EXPECT_EQ(idle.Check(t0 + milliseconds(1100), true), IdleRule::Action::kNone);
  EXPECT_EQ(idle.NextCheck(true), t0 + milliseconds(1200));
  EXPECT_EQ(idle.Check(t0 + milliseconds(1200), true), IdleRule::Action::kPing);
  EXPECT_EQ(idle.Check(t0 + milliseconds(1700), true), IdleRule::Action::kClose);
}

TEST(WebSocketIdle, NoPingsBeforeTheArguments) {
  using Clock = IdleRule::Clock;
  Clock::time_point t0{};
  IdleRule idle(milliseconds(1000), t0);
  EXPECT_EQ(idle.NextCheck(false), t0 + milliseconds(1000));
  EXPECT_EQ(idle.Check(t0 + milliseconds(900), false), IdleRule::Action::kNone);
  EXPECT_EQ(idle.Check(t0 + milliseconds(1000), false), IdleRule::Action::kClose);
}

TEST(WebSocketClose, ReasonFitsAControlFrame) {
  EXPECT_EQ(CloseReason("short"), "short");
  std::string long_ascii(200, 'a');
  EXPECT_EQ(CloseReason(long_ascii).size(), 123u);
  // 61 two-byte characters = 122 bytes, then one more would cross 123.
  std::string utf8;
  for (int i = 0; i < 70; ++i) utf8 += "\xC3\xA9";
  std::string r = CloseReason(utf8);
  EXPECT_EQ(r.size(), 122u);
  EXPECT_EQ(r, utf8.substr(0, 122));
}

}  // namespace
}  // namespace lever::gateway::ws
