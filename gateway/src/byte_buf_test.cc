#include "byte_buf.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lever::gateway {
namespace {

std::string ReadAll(ByteBuf& b, size_t chunk) {
  std::string out;
  std::vector<uint8_t> tmp(chunk);
  while (size_t n = b.Read(tmp.data(), tmp.size())) out.append(reinterpret_cast<char*>(tmp.data()), n);
  return out;
}

void Append(ByteBuf& b, const std::string& s) { b.Append(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

TEST(ByteBuf, FifoAcrossPartialReads) {
  ByteBuf b;
  EXPECT_TRUE(b.empty());
  Append(b, "hello ");
  Append(b, "world");
  EXPECT_EQ(b.size(), 11u);
  uint8_t two[2];
  ASSERT_EQ(b.Read(two, 2), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(two), 2), "he");
  Append(b, "!");
  EXPECT_EQ(ReadAll(b, 3), "llo world!");
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.Read(two, 2), 0u);
}

TEST(ByteBuf, CompactsWhenMostIsConsumed) {
  ByteBuf b;
  std::string big(200u << 10, 'x');
  Append(b, big);
  std::vector<uint8_t> tmp(150u << 10);
  ASSERT_EQ(b.Read(tmp.data(), tmp.size()), tmp.size());
  Append(b, "tail");  // compacts first: the consumed head is dropped
  EXPECT_EQ(b.size(), (50u << 10) + 4);
  std::string rest = ReadAll(b, 4096);
  EXPECT_EQ(rest.substr(rest.size() - 4), "tail");
  EXPECT_EQ(rest.size(), (50u << 10) + 4);
}

TEST(ByteBuf, ReleaseGivesBackLargeStorageOnly) {
  ByteBuf b;
  Append(b, std::string(1024, 'a'));
  b.Release();
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), 1024u);  // small storage is kept for reuse
  Append(b, std::string(ByteBuf::kKeepBytes + 1, 'b'));
  b.Release();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.capacity(), 0u);
}

}  // namespace
}  // namespace lever::gateway
