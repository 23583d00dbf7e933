// The HTTP API's pure parsing (http_parse.h): targets, environments,
// content types, arguments, timeouts, status mapping, gRPC framing.
#include "http_parse.h"

#include <gtest/gtest.h>

namespace lever::gateway::http {
namespace {

int Parse(std::string_view target, std::string_view host, Target* t) {
  std::string error;
  int status = ParseTarget(target, host, t, &error);
  if (status != 0) {
    EXPECT_FALSE(error.empty());
  }
  return status;
}

TEST(HttpParse, TargetWithResourceEscapesAndForceenv) {
  Target t;
  ASSERT_EQ(Parse("/svc/a%2Fb%3Ac/m?x=1&forceenv=dev.lever", "127.0.0.1:8080", &t), 0);
  EXPECT_EQ(t.env, "dev.lever");
  EXPECT_EQ(t.service, "svc");
  EXPECT_EQ(t.resource, "a/b:c");
  EXPECT_EQ(t.method, "m");
  EXPECT_FALSE(t.streaming);
  ASSERT_EQ(Parse("/svc/x/y z/m", "dev.lever", &t), 0);
  EXPECT_EQ(t.resource, "x/y z");
  ASSERT_EQ(Parse("/helloService/sayHello", "dev.lever:8080", &t), 0);
  EXPECT_EQ(t.env, "dev.lever");
  EXPECT_EQ(t.resource, "");
  for (const char* m : {"fooChan", "foo_chan", "chan"}) {
    ASSERT_EQ(Parse(std::string("/s/") + m, "dev.lever", &t), 0);
    EXPECT_TRUE(t.streaming) << m;
  }
  ASSERT_EQ(Parse("/s/Channel", "dev.lever", &t), 0);
  EXPECT_FALSE(t.streaming);
}

TEST(HttpParse, MalformedTargetsAre400) {
  Target t;
  for (const char* target : {"", "svc/m", "/svc", "/svc/", "//m", "/svc/%zz/m", "/svc/%2/m", "/svc/%00/m",
                             "/svc/%C3%A9/m", "/svc/m?forceenv=%zz", "/svc/m?forceenv=a/b.lever",
                             "/svc/m?forceenv=a:1.lever"}) {
    EXPECT_EQ(Parse(target, "dev.lever", &t), 400) << target;
  }
}

TEST(HttpParse, UnroutableEnvironmentsAre404) {
  Target t;
  EXPECT_EQ(Parse("/svc/m", "127.0.0.1:8080", &t), 404);
  EXPECT_EQ(Parse("/svc/m", "[::1]:8080", &t), 400);  // not a name at all
  EXPECT_EQ(Parse("/svc/m", "", &t), 404);
  EXPECT_EQ(Parse("/svc/m?forceenv=example.com", "dev.lever", &t), 404);
  EXPECT_EQ(Parse("/svc/m?forceenv=", "dev.lever", &t), 404);
}

TEST(HttpParse, ContentTypes) {
  EXPECT_TRUE(IsJsonBody("application/json", false));
  EXPECT_TRUE(IsJsonBody(" Application/JSON ; charset=utf-8", false));
  EXPECT_FALSE(IsJsonBody("application/x-ndjson", false));
  EXPECT_TRUE(IsJsonBody("application/x-ndjson", true));
  EXPECT_FALSE(IsJsonBody("", false));
  EXPECT_FALSE(IsJsonBody("text/plain", true));
  EXPECT_FALSE(IsJsonBody("application/jsonx", false));
}

TEST(HttpParse, Arguments) {
  Array args;
  std::string error;
  EXPECT_EQ(ParseArgs("null", &args, &error), 0);
  EXPECT_TRUE(args.empty());
  EXPECT_EQ(ParseArgs(R"([1, "a", {"k": [true]}])", &args, &error), 0);
  EXPECT_EQ(args.size(), 3u);
  EXPECT_EQ(ParseArgs("[]", &args, &error), 0);
  EXPECT_TRUE(args.empty());
  EXPECT_EQ(ParseArgs("{}", &args, &error), 400);
  EXPECT_EQ(ParseArgs("\"x\"", &args, &error), 400);
  EXPECT_EQ(ParseArgs("[1,", &args, &error), 400);
  EXPECT_EQ(ParseArgs("", &args, &error), 400);
  EXPECT_EQ(ParseArgs(std::string(100, '[') + std::string(100, ']'), &args, &error), 400);  // depth
}

TEST(HttpParse, Timeouts) {
  int64_t ms = 0;
  EXPECT_TRUE(ParseTimeout("250ms", &ms));
  EXPECT_EQ(ms, 250);
  EXPECT_TRUE(ParseTimeout("2s", &ms));
  EXPECT_EQ(ms, 2000);
  EXPECT_TRUE(ParseTimeout("1m", &ms));
  EXPECT_EQ(ms, 60000);
  EXPECT_TRUE(ParseTimeout("15", &ms));
  EXPECT_EQ(ms, 15);
  for (const char* bad : {"", "0", "-5", "soon", "5h", "1.5s", "99999999999999999999"}) {
    EXPECT_FALSE(ParseTimeout(bad, &ms)) << bad;
  }
}

TEST(HttpParse, StatusMapping) {
  EXPECT_EQ(HttpStatusFor(Code::kOk), 200);
  EXPECT_EQ(HttpStatusFor(Code::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(Code::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(Code::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(Code::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(Code::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(Code::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(Code::kUnknown), 500);
  EXPECT_EQ(HttpStatusFor(Code::kInternal), 500);
}

TEST(HttpParse, ErrorBodiesAreJsonStrings) {
  EXPECT_EQ(JsonString("a \"b\"\n"), R"("a \"b\"\n")");
  EXPECT_EQ(JsonString(std::string("bad \xff utf8")), "\"bad ? utf8\"");
  EXPECT_EQ(DecodeGrpcMessage("a%20b%zz%"), "a b%zz%");
}

TEST(HttpParse, GrpcFrames) {
  std::string buf;
  AppendGrpcFrame("", &buf);
  AppendGrpcFrame("hello", &buf);
  buf.append("\x00\x00\x00\x00\x09part", 9);  // incomplete
  std::vector<std::string> got;
  int64_t used = ForEachGrpcFrame(buf, 100, [&](std::string_view m) {
    got.emplace_back(m);
    return true;
  });
  EXPECT_EQ(used, 15);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "");
  EXPECT_EQ(got[1], "hello");
  EXPECT_EQ(ForEachGrpcFrame(std::string("\x01\x00\x00\x00\x00", 5), 100, [](std::string_view) { return true; }), -1);
  EXPECT_EQ(ForEachGrpcFrame(std::string("\x00\x00\x00\x01\x00", 5), 100, [](std::string_view) { return true; }), -1);
}

TEST(HttpParse, RawReplyHead) {
  bool is_error = false;
  size_t header = 0;
  // byte_result of 3 bytes, the whole message.
  EXPECT_EQ(RawReplyHead(std::string("\x12\x03" "abc", 5), 5, &is_error, &header), 1);
  EXPECT_FALSE(is_error);
  EXPECT_EQ(header, 2u);
  // byte_error of 300 bytes (a two-byte varint), known from the first 3 bytes.
  EXPECT_EQ(RawReplyHead(std::string("\x22\xac\x02", 3), 303, &is_error, &header), 1);
  EXPECT_TRUE(is_error);
  EXPECT_EQ(header, 3u);
  EXPECT_EQ(RawReplyHead(std::string("\x12\x00", 2), 2, &is_error, &header), 1);  // empty bytes
  EXPECT_EQ(header, 2u);
  // Too short to tell.
  EXPECT_EQ(RawReplyHead("", 10, &is_error, &header), -1);
  EXPECT_EQ(RawReplyHead(std::string("\x12\xac", 2), 303, &is_error, &header), -1);
  // Anything else is decoded whole: a JSON result, a member that is not the
  // whole message (another member follows), an empty or truncated message,
  // an over-long varint.
  EXPECT_EQ(RawReplyHead(std::string("\x0a\x02\x1a\x00", 4), 4, &is_error, &header), 0);
  EXPECT_EQ(RawReplyHead(std::string("\x12\x01" "a\x12\x00", 5), 5, &is_error, &header), 0);
  EXPECT_EQ(RawReplyHead("", 0, &is_error, &header), 0);
  EXPECT_EQ(RawReplyHead(std::string("\x12\x80", 2), 2, &is_error, &header), 0);
  EXPECT_EQ(RawReplyHead(std::string(12, '\xff').replace(0, 1, "\x12"), 100, &is_error, &header), 0);
}

TEST(HttpTarget, AdminEnvInAnyCase) {
  for (std::string_view env : {"admin.lever", "ADMIN.LEVER", "Admin.Lever"}) EXPECT_TRUE(IsAdminEnv(env)) << env;
  for (std::string_view env : {"admin.lever.", "admin", "dev.lever", "xadmin.lever", ""}) EXPECT_FALSE(IsAdminEnv(env)) << env;
}

}  // namespace
}  // namespace lever::gateway::http
