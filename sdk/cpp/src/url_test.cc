#include "lever/url.h"

#include <gtest/gtest.h>

namespace lever {
namespace {

TEST(UrlTest, ParsesAbsoluteWithEmptyResource) {
  UrlView u;
  ASSERT_TRUE(ParseUrl("lever://dev.lever/helloService//sayHello", &u).ok());
  EXPECT_EQ(u.env, "dev.lever");
  EXPECT_EQ(u.service, "helloService");
  EXPECT_EQ(u.resource, "");
  EXPECT_EQ(u.method, "sayHello");
}

TEST(UrlTest, ParsesAbsoluteWithoutResourceSlot) {
  UrlView u;
  ASSERT_TRUE(ParseUrl("lever://dev.lever/svc/m", &u).ok());
  EXPECT_EQ(u.service, "svc");
  EXPECT_EQ(u.resource, "");
  EXPECT_EQ(u.method, "m");
}

TEST(UrlTest, ResourceMayContainSlashes) {
  UrlView u;
  ASSERT_TRUE(ParseUrl("lever://dev.lever/svc/a/b/c/m", &u).ok());
  EXPECT_EQ(u.resource, "a/b/c");
  EXPECT_EQ(u.method, "m");
}

TEST(UrlTest, DropsPortFromEnv) {
  UrlView u;
  ASSERT_TRUE(ParseUrl("lever://dev.lever:8080/svc//m", &u).ok());
  EXPECT_EQ(u.env, "dev.lever");
}

TEST(UrlTest, ParsesRelative) {
  UrlView u;
  ASSERT_TRUE(ParseUrl("/svc/res/m", &u).ok());
  EXPECT_FALSE(u.absolute());
  EXPECT_EQ(u.service, "svc");
  EXPECT_EQ(u.resource, "res");
  EXPECT_EQ(u.method, "m");
}

TEST(UrlTest, FormatsFourSlots) {
  EXPECT_EQ(Url("dev.lever", "helloService", "", "sayHello").ToString(),
            "lever://dev.lever/helloService//sayHello");
  EXPECT_EQ(Url("", "s", "r/x", "m").ToString(), "/s/r/x/m");
}

TEST(UrlTest, RoundTrips) {
  for (const char* text : {"lever://e.lever/s//m", "lever://e.lever/s/r/m", "lever://e.lever/s/a/b/m",
                           "/s//m", "/s/r/m"}) {
    Url u;
    ASSERT_TRUE(ParseUrl(text, &u).ok()) << text;
    EXPECT_EQ(u.ToString(), text);
  }
}

TEST(UrlTest, RejectsMalformed) {
  UrlView u;
  for (const char* text : {"", "http://e/s//m", "lever://", "lever://e", "lever://e/s", "lever:///s//m",
                           "lever://e//m", "lever://e/s/", "/s", "s/m", "/s/", "//", "lever://e/s/\n/m"}) {
    Status s = ParseUrl(text, &u);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << "'" << text << "'";
  }
  EXPECT_FALSE(ParseUrl(std::string(5000, 'a'), &u).ok());
}

TEST(UrlTest, ChanMethodsByName) {
  EXPECT_TRUE(IsChanMethod("DeployServiceChan"));
  EXPECT_TRUE(IsChanMethod("reply_chan"));
  EXPECT_TRUE(IsChanMethod("chan"));
  EXPECT_FALSE(IsChanMethod("Chan2"));
  EXPECT_FALSE(IsChanMethod("channel"));
  EXPECT_FALSE(IsChanMethod("sayHello"));
  EXPECT_FALSE(IsChanMethod("CHAN"));
}

TEST(UrlTest, InternalEnvs) {
  EXPECT_TRUE(IsInternalEnv("dev.lever"));
  EXPECT_FALSE(IsInternalEnv(".lever"));
  EXPECT_FALSE(IsInternalEnv("example.com"));
}

}  // namespace
}  // namespace lever
