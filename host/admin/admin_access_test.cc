// The admin access rule (CheckAdminAccess): who needs the token.
#include <gtest/gtest.h>

#include "lever/admin/admin_service.h"

namespace lever::admin {
namespace {

constexpr std::string_view kToken = "0123456789abcdef0123456789abcdef";

TEST(AdminAccess, LoopbackTcpNeedsNoTokenUnlessRequired) {
  for (std::string_view peer : {"127.0.0.1:5000", "127.1.2.3:1", "[::1]:5000", "[::ffff:127.0.0.1]:5000"}) {
    EXPECT_TRUE(CheckAdminAccess(peer, "", kToken, false).ok()) << peer;
    Status s = CheckAdminAccess(peer, "", kToken, true);
    EXPECT_EQ(s.code(), Code::kPermissionDenied) << peer;
    EXPECT_NE(s.message().find("lever-admin-token"), std::string::npos) << s.message();
    EXPECT_TRUE(CheckAdminAccess(peer, kToken, kToken, true).ok()) << peer;
  }
}

TEST(AdminAccess, InstancesRemoteAndDirectCallersNeedTheToken) {
  for (std::string_view peer : {"unix:/var/lib/lever/run/env-dev.lever.sock", "", "10.0.0.2:4000", "[fe80::1]:4000",
                                "128.0.0.1:1", "[::1]", "::1"}) {
    Status s = CheckAdminAccess(peer, "", kToken, false);
    EXPECT_EQ(s.code(), Code::kPermissionDenied) << peer;
    EXPECT_EQ(CheckAdminAccess(peer, "wrong", kToken, false).code(), Code::kPermissionDenied) << peer;
    EXPECT_EQ(CheckAdminAccess(peer, std::string(kToken) + "x", kToken, false).code(), Code::kPermissionDenied);
    EXPECT_TRUE(CheckAdminAccess(peer, kToken, kToken, false).ok()) << peer;
  }
  EXPECT_NE(CheckAdminAccess("unix:/x.sock", "", kToken, false).message().find("an instance"), std::string::npos);
  EXPECT_NE(CheckAdminAccess("10.0.0.2:1", "bad", kToken, false).message().find("wrong"), std::string::npos);
}

TEST(AdminAccess, AnEmptyTokenMatchesNothing) {
  EXPECT_EQ(CheckAdminAccess("10.0.0.2:1", "", "", false).code(), Code::kPermissionDenied);
}

}  // namespace
}  // namespace lever::admin
