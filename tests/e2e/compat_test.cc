// Wire compatibility from outside: @grpc/grpc-js with the original proto (a
// client Lever did not write) makes the original system test's calls through
// leverd and sees exactly what the original would have sent it.
#include <gtest/gtest.h>

#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {
namespace {

TEST(CompatTest, GrpcJsClientWithTheOriginalProto) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(R"({"name":"basictestservice"})").exit_code, 0);
  CommandResult r = RunCommand({"/usr/bin/env", "node", std::string(LEVER_SOURCE_DIR) + "/tests/compat/node/client.js",
                                leverd.address(), "basictestservice"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Value v;
  ASSERT_TRUE(ParseJson(r.out, &v).ok()) << r.out;
  const Map& m = v.as_map();
  EXPECT_EQ(*m.Find("hello"), Value("hello node"));
  EXPECT_EQ(*m.Find("error"), Value("error sent: some test"));
  EXPECT_EQ(*m.Find("notFoundCode"), Value(5));  // NOT_FOUND
  EXPECT_EQ(*m.Find("firstMessageEmpty"), Value(true));
  EXPECT_EQ(*m.Find("replies"),
            Value(Array{"some test:1 received", "some test:2 received", "some test:hello received"}));
  EXPECT_TRUE(m.Find("streamError")->is_null());
}

}  // namespace
}  // namespace lever::e2e
