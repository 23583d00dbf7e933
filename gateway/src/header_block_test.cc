#include "header_block.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lever::gateway {
namespace {

TEST(HeaderBlock, KeepsOrderAndFindsTheFirstValue) {
  HeaderBlock h;
  EXPECT_TRUE(h.empty());
  h.Add(":method", "POST");
  h.Add("te", "trailers");
  h.Add("te", "second");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h.name(1), "te");
  EXPECT_EQ(h.value(2), "second");
  EXPECT_EQ(h.bytes(), std::string(":methodPOSTtetrailerstesecond").size());
  std::string_view v;
  ASSERT_TRUE(h.Find("te", &v));
  EXPECT_EQ(v, "trailers");
  EXPECT_FALSE(h.Find("absent", &v));
}

TEST(HeaderBlock, NvPointsIntoTheArena) {
  HeaderBlock h;
  h.Add("a", "1");
  h.Add("bb", "22");
  std::vector<nghttp2_nv> nv;
  nv.push_back({});  // cleared by ToNv
  h.ToNv(&nv);
  ASSERT_EQ(nv.size(), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(nv[1].name), nv[1].namelen), "bb");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(nv[1].value), nv[1].valuelen), "22");
  h.AppendNv(&nv);
  EXPECT_EQ(nv.size(), 4u);
}

TEST(HeaderBlock, ReleaseGivesBackABurstsStorage) {
  HeaderBlock h;
  h.Add("name", "value");
  size_t small = h.capacity();
  h.Release();
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.capacity(), small);  // small storage is kept for reuse
  for (int i = 0; i < 200; ++i) h.Add("x-some-header", std::string(300, 'v'));
  EXPECT_GT(h.capacity(), 60u << 10);
  h.Release();
  EXPECT_TRUE(h.empty());
  EXPECT_LE(h.capacity(), small);  // back to (at most) an empty block's
  h.Clear();  // Clear alone keeps storage: the pool uses Release
  h.Add("k", "v");
  EXPECT_EQ(h.size(), 1u);
}

}  // namespace
}  // namespace lever::gateway
