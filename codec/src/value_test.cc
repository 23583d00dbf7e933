#include "lever/value.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "test_util.h"

namespace lever {
namespace {

TEST(ValueTest, IntegersHaveOneCanonicalForm) {
  EXPECT_EQ(Value(uint64_t{5}), Value(5));
  EXPECT_TRUE(Value(uint64_t{5}).is_int());
  EXPECT_TRUE(Value(uint64_t{INT64_MAX}).is_int());
  EXPECT_TRUE(Value(uint64_t{INT64_MAX} + 1).is_uint());
  EXPECT_NE(Value(int64_t{-1}), Value(std::numeric_limits<uint64_t>::max()));
}

TEST(ValueTest, TypesAreDistinct) {
  EXPECT_NE(Value(1), Value(1.0));
  EXPECT_NE(Value("a"), Value::FromBytes("a"));
  EXPECT_NE(Value(), Value(false));
  EXPECT_NE(Value(Array{}), Value(Map{}));
  EXPECT_EQ(TypeName(Value(Map{}).type()), "map");
}

TEST(ValueTest, DoubleEqualityKeepsSignAndNan) {
  EXPECT_EQ(Value(std::nan("")), Value(std::nan("")));
  EXPECT_NE(Value(0.0), Value(-0.0));
}

TEST(ValueTest, MapSetReplacesInPlace) {
  Map m{{"a", 1}, {"b", 2}};
  m.Set("a", 3);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.entries()[0].first, "a");
  EXPECT_EQ(m.entries()[0].second, Value(3));
  EXPECT_TRUE(m.Erase("a"));
  EXPECT_FALSE(m.Erase("a"));
  EXPECT_EQ(m.Find("a"), nullptr);
  EXPECT_EQ(*m.Find("b"), Value(2));
}

TEST(ValueTest, DeduplicateKeepsFirstPositionLastValue) {
  for (int n : {3, 50}) {  // the small and the hashed path
    Map m;
    for (int i = 0; i < n; ++i) m.AppendUnchecked("k" + std::to_string(i), i);
    m.AppendUnchecked("k0", "last");
    m.AppendUnchecked("k1", "also last");
    m.DeduplicateKeys();
    ASSERT_EQ(m.size(), static_cast<size_t>(n));
    EXPECT_EQ(m.entries()[0].first, "k0");
    EXPECT_EQ(m.entries()[0].second, Value("last"));
    EXPECT_EQ(m.entries()[1].second, Value("also last"));
    EXPECT_EQ(m.entries()[2].second, Value(2));
  }
}

TEST(ValueTest, DeduplicateHandlesEmptyKey) {
  Map m;
  for (int i = 0; i < 20; ++i) m.AppendUnchecked(i % 2 ? "" : "x" + std::to_string(i), i);
  m.DeduplicateKeys();
  EXPECT_EQ(m.size(), 11u);
  EXPECT_EQ(*m.Find(""), Value(19));
}

TEST(ValueTest, MovesAreCheap) {
  Value v(Array{Value("x"), Value(std::string(1000, 'y'))});
  const char* data = v.as_array()[1].as_string().data();
  Value w = std::move(v);
  EXPECT_EQ(w.as_array()[1].as_string().data(), data);  // the buffer moved, not copied
}

}  // namespace
}  // namespace lever
