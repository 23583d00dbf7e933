#include "grpc_status.h"

#include <gtest/gtest.h>

namespace lever::gateway {
namespace {

TEST(PercentEncodeGrpcMessage, KeepsPrintableAsciiEncodesTheRest) {
  std::string out;
  PercentEncodeGrpcMessage("a b%c\n\xC3\xA9~", &out);
  EXPECT_EQ(out, "a b%25c%0A%C3%A9~");
}

}  // namespace
}  // namespace lever::gateway
