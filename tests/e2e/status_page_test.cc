// The status page of a real leverd (gateway/status_page.md): GET
// /_lever/status is exactly `lever ps --json`, the page is served to loopback
// clients and to holders of the admin token only. The page's behaviour in a
// browser is tests/browser.

#include <fstream>

#include <gtest/gtest.h>

#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {
namespace {

using Reply = RawResponse;

// One request on a new connection (Connection: close).
Reply Get(int port, const std::string& target, const std::string& headers) {
  RawHttp c(port);
  Reply r;
  if (!c.Send("GET " + target + " HTTP/1.1\r\n" + headers + "Connection: close\r\n\r\n") || !c.ReadResponse(&r)) {
    return r;
  }
  return r;
}

std::string Token(const Leverd& d) {
  std::ifstream in(d.data_dir() + "/admin.token");
  std::string t;
  std::getline(in, t);
  return t;
}

class StatusPageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    leverd_ = new Leverd();
    leverd_->Start();
    ASSERT_EQ(leverd_->DeployTestService(R"({"name": "statussvc", "entry": ["./serve"], "description": "d1"})")
                  .exit_code,
              0);
    ASSERT_EQ(leverd_->Lever({"invoke", "/statussvc/BasicHello", "\"x\""}).exit_code, 0);  // one instance
  }
  static void TearDownTestSuite() {
    delete leverd_;
    leverd_ = nullptr;
  }
  static Leverd* leverd_;
};
Leverd* StatusPageTest::leverd_ = nullptr;

TEST_F(StatusPageTest, StatusIsExactlyLeverPsJson) {
  std::string host = "Host: 127.0.0.1:" + std::to_string(leverd_->port()) + "\r\n";
  // Both count the one call in flight, their own, on the admin service: the
  // same JSON at a quiet moment.
  CommandResult ps = leverd_->Lever({"ps", "--all", "--json"});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  Reply r = Get(leverd_->port(), "/_lever/status", host);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  Value from_ps, from_http;
  ASSERT_TRUE(ParseJson(ps.out, &from_ps).ok()) << ps.out;
  ASSERT_TRUE(ParseJson(r.body, &from_http).ok()) << r.body;
  EXPECT_EQ(from_http, from_ps) << r.body << "\n" << ps.out;
  EXPECT_NE(r.body.find("\"name\":\"statussvc\""), std::string::npos);
  EXPECT_NE(r.body.find("\"service\":\"statussvc\""), std::string::npos);
}

TEST_F(StatusPageTest, ThePageIsForLoopbackOrTheToken) {
  int port = leverd_->port();
  std::string local = "Host: 127.0.0.1:" + std::to_string(port) + "\r\nAccept: text/html\r\n";
  Reply page = Get(port, "/", local);
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<script src=\"/_lever/status.js\""), std::string::npos);
  EXPECT_EQ(Get(port, "/_lever/status.js", local).status, 200);
  EXPECT_EQ(Get(port, "/_lever/status.css", local).status, 200);
  // A name that is not loopback (DNS rebinding, or a remote name): the token is needed.
  std::string remote = "Host: node1.example:" + std::to_string(port) + "\r\nAccept: text/html\r\n";
  EXPECT_EQ(Get(port, "/", remote).status, 403);
  EXPECT_EQ(Get(port, "/_lever/status", remote).status, 403);
  std::string bearer = "Authorization: Bearer " + Token(*leverd_) + "\r\n";
  EXPECT_EQ(Get(port, "/", remote + bearer).status, 200);
  Reply status = Get(port, "/_lever/status", remote + bearer);
  EXPECT_EQ(status.status, 200) << status.body;
  EXPECT_NE(status.body.find("statussvc"), std::string::npos);
  // A link with the token sets a cookie the page's own requests carry.
  Reply link = Get(port, "/?token=" + Token(*leverd_), remote);
  EXPECT_EQ(link.status, 303);
  EXPECT_NE(link.header("set-cookie").find("lever_admin_token=" + Token(*leverd_)), std::string::npos);
  std::string cookie = "Cookie: lever_admin_token=" + Token(*leverd_) + "\r\n";
  EXPECT_EQ(Get(port, "/_lever/status", remote + cookie).status, 200);
  EXPECT_EQ(Get(port, "/_lever/status", remote + "Cookie: lever_admin_token=nope\r\n").status, 403);
  // Not a browser: a hint, not the page.
  Reply curl = Get(port, "/", "Host: 127.0.0.1\r\nAccept: */*\r\n");
  EXPECT_EQ(curl.status, 404);
  EXPECT_NE(curl.body.find("/_lever/status"), std::string::npos);
}

}  // namespace
}  // namespace lever::e2e
