// The status page's access rules and answers (pure; the page itself is
// tested in Chromium, tests/browser, against a real leverd).
#include "status_page.h"

#include <gtest/gtest.h>

namespace lever::gateway::pages {
namespace {

constexpr std::string_view kToken = "T0123456789012345678901234567890123456789";

Answer Get(std::string_view path, std::string_view query = "", std::string_view addr = "127.0.0.1:4000",
           std::string_view host = "127.0.0.1:8080", std::string_view auth = "", std::string_view cookie = "",
           std::string_view accept = "text/html,application/xhtml+xml,*/*;q=0.8") {
  return Serve(Request{path, query, accept, {addr, host, auth, cookie}}, kToken);
}

TEST(StatusPageAccess, LoopbackWithALoopbackHost) {
  for (std::string_view host : {"127.0.0.1:8080", "localhost", "LOCALHOST:1", "127.1.2.3", "[::1]:8080", "[::1]"}) {
    EXPECT_EQ(CheckAccess({"127.0.0.1:5", host, "", ""}, kToken), Access::kLoopback) << host;
  }
  EXPECT_EQ(CheckAccess({"[::1]:5", "[::1]:8080", "", ""}, kToken), Access::kLoopback);
  // DNS rebinding: a loopback peer that names another site.
  for (std::string_view host : {"evil.example:8080", "127.0.0.1.evil.example", "", "[::1]x", "127.0.0.1x"}) {
    EXPECT_EQ(CheckAccess({"127.0.0.1:5", host, "", ""}, kToken), Access::kDenied) << host;
  }
  // Not loopback: another machine, or an instance on its environment's socket.
  EXPECT_EQ(CheckAccess({"10.1.2.3:5", "127.0.0.1:8080", "", ""}, kToken), Access::kDenied);
  EXPECT_EQ(CheckAccess({"unix:/data/run/env-dev.lever.sock", "localhost", "", ""}, kToken), Access::kDenied);
}

TEST(AdminRequest, NoBrowserAndTheBearerTokenAlways) {
  std::string bearer = "Bearer " + std::string(kToken), error;
  EXPECT_EQ(CheckAdminRequest("", bearer, kToken, &error), 0) << error;
  EXPECT_EQ(CheckAdminRequest("", "  bearer " + std::string(kToken) + " ", kToken, &error), 0) << error;
  // A browser, whatever it holds (its own page's origin included).
  for (std::string_view origin : {"https://evil.example", "http://127.0.0.1:8080", "null"}) {
    error.clear();
    EXPECT_EQ(CheckAdminRequest(origin, bearer, kToken, &error), 403) << origin;
    EXPECT_NE(error.find("Origin"), std::string::npos) << error;
  }
  error.clear();
  EXPECT_EQ(CheckAdminRequest("", "", kToken, &error), 403);
  EXPECT_NE(error.find("Authorization: Bearer"), std::string::npos) << error;
  error.clear();
  EXPECT_EQ(CheckAdminRequest("", "Bearer wrong", kToken, &error), 403);
  EXPECT_NE(error.find("wrong"), std::string::npos) << error;
  EXPECT_EQ(CheckAdminRequest("", "Basic " + std::string(kToken), kToken, &error), 403);
  EXPECT_EQ(CheckAdminRequest("", "Bearer ", "", &error), 403);  // no token configured: nothing passes
}

TEST(StatusPageAccess, TheTokenFromAnywhere) {
  std::string bearer = "Bearer " + std::string(kToken);
  EXPECT_EQ(CheckAccess({"10.1.2.3:5", "node1", bearer, ""}, kToken), Access::kToken);
  std::string cookie = "x=1; lever_admin_token=" + std::string(kToken) + "; y=2";
  EXPECT_EQ(CheckAccess({"10.1.2.3:5", "node1", "", cookie}, kToken), Access::kToken);
  EXPECT_EQ(CheckAccess({"10.1.2.3:5", "node1", "Bearer wrong", ""}, kToken), Access::kDenied);
  EXPECT_EQ(CheckAccess({"10.1.2.3:5", "node1", "", "lever_admin_token="}, kToken), Access::kDenied);
  // No token configured: nothing matches, not even an empty one.
  EXPECT_EQ(CheckAccess({"10.1.2.3:5", "node1", "Bearer ", "lever_admin_token="}, ""), Access::kDenied);
}

TEST(StatusPageAccess, SameOrigin) {
  EXPECT_TRUE(SameOrigin("http://127.0.0.1:8080", "127.0.0.1:8080"));
  EXPECT_TRUE(SameOrigin("https://Node1", "node1"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1:8081", "127.0.0.1:8080"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1:8080", ""));
  EXPECT_FALSE(SameOrigin("null", "127.0.0.1:8080"));
}

TEST(StatusPage, ServesTheEmbeddedFiles) {
  Answer a = Get("/");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/html; charset=utf-8");
  EXPECT_NE(a.body.find("/_lever/status.js"), std::string::npos);
  EXPECT_NE(a.headers.find("Content-Security-Policy: default-src 'self'"), std::string::npos);
  EXPECT_NE(a.headers.find("Cache-Control: no-store"), std::string::npos);
  a = Get("/_lever/status.js");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(a.body.find("/_lever/status"), std::string::npos);
  a = Get("/_lever/status.css");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/css; charset=utf-8");
  EXPECT_EQ(Get("/_lever/nope").status, 404);
}

TEST(StatusPage, RootIsForBrowsers) {
  Answer a = Get("/", "", "127.0.0.1:4000", "127.0.0.1:8080", "", "", "*/*");
  EXPECT_EQ(a.status, 404);
  EXPECT_NE(a.body.find("/_lever/status"), std::string::npos);
}

TEST(StatusPage, StatusIsTheAdminCall) {
  Answer a = Get("/_lever/status", "", "127.0.0.1:4000", "localhost:8080", "", "", "*/*");
  EXPECT_EQ(a.kind, Answer::Kind::kStatus);
  EXPECT_EQ(a.admin_token, kToken);  // checked here: the admin service gets the token
  a = Get("/_lever/status", "", "10.0.0.1:4000", "node1:8080", "Bearer " + std::string(kToken));
  EXPECT_EQ(a.kind, Answer::Kind::kStatus);
  EXPECT_EQ(a.admin_token, kToken);
  a = Get("/_lever/status", "", "10.0.0.1:4000", "node1:8080");
  EXPECT_EQ(a.kind, Answer::Kind::kRespond);
  EXPECT_EQ(a.status, 403);
  EXPECT_EQ(a.content_type, "application/json");
  EXPECT_NE(a.body.find("admin token"), std::string::npos);
}

TEST(StatusPage, DeniedWithoutLoopbackOrToken) {
  EXPECT_EQ(Get("/", "", "10.0.0.1:4000", "node1:8080").status, 403);
  EXPECT_EQ(Get("/_lever/status.js", "", "10.0.0.1:4000", "node1:8080").status, 403);
  std::string cookie = "lever_admin_token=" + std::string(kToken);
  EXPECT_EQ(Get("/", "", "10.0.0.1:4000", "node1:8080", "", cookie).status, 200);
}

TEST(StatusPage, ATokenLinkSetsTheCookie) {
  std::string q = "token=" + std::string(kToken);
  Answer a = Get("/", q, "10.0.0.1:4000", "node1:8080");
  EXPECT_EQ(a.status, 303);
  EXPECT_NE(a.headers.find("Location: /\r\n"), std::string::npos);
  EXPECT_NE(a.headers.find("Set-Cookie: lever_admin_token=" + std::string(kToken) +
                           "; Path=/; HttpOnly; SameSite=Strict\r\n"),
            std::string::npos);
  EXPECT_EQ(Get("/", "token=wrong", "10.0.0.1:4000", "node1:8080").status, 403);
  EXPECT_EQ(Get("/", "token=", "127.0.0.1:4000").status, 403);
}

}  // namespace
}  // namespace lever::gateway::pages
