#include "lever/msgpack.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "test_util.h"  // NOLINT: PrintTo

namespace lever {
namespace {

using testing::Hex;

Value RoundTrip(const Value& v) {
  Value out;
  Status s = DecodeMsgpack(EncodeMsgpack(v), &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

Value Sample() {
  Map inner{{"k", Value::FromBytes(std::string("\0\xff", 2))}};
  return Value(Map{{"null", nullptr},
                   {"t", true},
                   {"f", false},
                   {"min", std::numeric_limits<int64_t>::min()},
                   {"max", std::numeric_limits<int64_t>::max()},
                   {"umax", std::numeric_limits<uint64_t>::max()},
                   {"neg", -33},
                   {"d", 0.1},
                   {"negzero", -0.0},
                   {"inf", std::numeric_limits<double>::infinity()},
                   {"nan", std::nan("")},
                   {"s", "héllo ❤"},
                   {"empty_s", ""},
                   {"empty_b", Value::FromBytes("")},
                   {"empty_a", Array{}},
                   {"empty_m", Map{}},
                   {"nested", Array{Value(Array{Value(inner)})}}});
}

TEST(MsgpackTest, RoundTripsEveryTypeAndEdge) { EXPECT_EQ(RoundTrip(Sample()), Sample()); }

TEST(MsgpackTest, EncodesSmallestForms) {
  EXPECT_EQ(EncodeMsgpack(Value(1)), Hex("01"));
  EXPECT_EQ(EncodeMsgpack(Value(-1)), Hex("ff"));
  EXPECT_EQ(EncodeMsgpack(Value(256)), Hex("cd0100"));
  EXPECT_EQ(EncodeMsgpack(Value(nullptr)), Hex("c0"));
  EXPECT_EQ(EncodeMsgpack(Value("a")), Hex("a161"));
  EXPECT_EQ(EncodeMsgpack(Value::FromBytes("a")), Hex("c40161"));
  EXPECT_EQ(EncodeMsgpack(Value(Array{1, 2})), Hex("920102"));
  EXPECT_EQ(EncodeMsgpack(Value(Map{{"a", 1}})), Hex("81a16101"));
  EXPECT_EQ(EncodeMsgpack(Value(0.5)), Hex("cb3fe0000000000000"));
  EXPECT_EQ(EncodeMsgpack(Value(3.0)), Hex("cb4008000000000000"));  // stays a double
}

TEST(MsgpackTest, DuplicateKeysLastWinsFirstPosition) {
  Value v;
  ASSERT_TRUE(DecodeMsgpack(Hex("83 a161 01 a162 02 a161 03"), &v).ok());
  ASSERT_EQ(v.as_map().size(), 2u);
  EXPECT_EQ(v.as_map().entries()[0].first, "a");
  EXPECT_EQ(v.as_map().entries()[0].second, Value(3));
}

TEST(MsgpackTest, RejectsMalformedInput) {
  Value v;
  struct Case {
    const char* hex;
    Code code;
  } cases[] = {
      {"", Code::kInvalidArgument},                  // empty
      {"c1", Code::kInvalidArgument},                // never used
      {"92 01", Code::kInvalidArgument},             // truncated array
      {"a5 61 62", Code::kInvalidArgument},          // truncated str
      {"cd 01", Code::kInvalidArgument},             // truncated uint16
      {"01 02", Code::kInvalidArgument},             // trailing bytes
      {"81 01 02", Code::kInvalidArgument},          // int key
      {"81 90 02", Code::kInvalidArgument},          // array key
      {"a2 c3 28", Code::kInvalidArgument},          // invalid UTF-8 str
      {"a3 ed a0 80", Code::kInvalidArgument},       // UTF-16 surrogate in UTF-8
      {"d4 01 10", Code::kInvalidArgument},          // ext
      {"d6 ff 5a 4a f6 a5", Code::kInvalidArgument}, // timestamp ext
      {"dd ff ff ff ff", Code::kInvalidArgument},    // 4G-element array in 5 bytes
      {"df ff ff ff ff", Code::kInvalidArgument},    // 4G-entry map in 5 bytes
      {"c6 ff ff ff ff 00", Code::kInvalidArgument}, // bin longer than input
  };
  for (const Case& c : cases) {
    Status s = DecodeMsgpack(Hex(c.hex), &v);
    EXPECT_EQ(s.code(), c.code) << c.hex << " -> " << s.ToString();
    EXPECT_FALSE(s.message().empty());
  }
}

TEST(MsgpackTest, EveryTruncationFailsCleanly) {
  std::string full = EncodeMsgpack(Sample());
  for (size_t n = 0; n < full.size(); ++n) {
    Value v;
    EXPECT_FALSE(DecodeMsgpack(std::string_view(full).substr(0, n), &v).ok()) << n;
    MsgpackView view;
    EXPECT_FALSE(MsgpackView::Parse(std::string_view(full).substr(0, n), &view).ok()) << n;
  }
}

TEST(MsgpackTest, EnforcesLimits) {
  Value v;
  DecodeLimits limits;
  limits.max_size = 3;
  EXPECT_EQ(DecodeMsgpack(Hex("a3616263"), &v, limits).code(), Code::kResourceExhausted);

  limits = {};
  limits.max_depth = 3;
  EXPECT_TRUE(DecodeMsgpack(Hex("919191c0"), &v, limits).ok());
  Status s = DecodeMsgpack(Hex("91919191c0"), &v, limits);
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_NE(s.message().find("deeper than 3"), std::string::npos);

  limits = {};
  limits.max_elements = 3;
  EXPECT_TRUE(DecodeMsgpack(Hex("920102"), &v, limits).ok());
  EXPECT_EQ(DecodeMsgpack(Hex("93010203"), &v, limits).code(), Code::kResourceExhausted);
}

TEST(MsgpackTest, DeepNestingIsRejectedNotCrashing) {
  std::string deep(100000, '\x91');
  deep.push_back('\xc0');
  Value v;
  EXPECT_EQ(DecodeMsgpack(deep, &v).code(), Code::kResourceExhausted);
  MsgpackView view;
  EXPECT_EQ(MsgpackView::Parse(deep, &view).code(), Code::kResourceExhausted);
}

TEST(MsgpackViewTest, ReadsWithoutCopying) {
  std::string buf = EncodeMsgpack(Sample());
  MsgpackView view;
  ASSERT_TRUE(MsgpackView::Parse(buf, &view).ok());
  EXPECT_EQ(view.type(), Value::Type::kMap);
  EXPECT_EQ(view.size(), Sample().as_map().size());
  MsgpackView s;
  ASSERT_TRUE(view.Find("s", &s));
  EXPECT_EQ(s.as_string(), "héllo ❤");
  EXPECT_GE(s.as_string().data(), buf.data());  // points into the buffer
  EXPECT_LT(s.as_string().data(), buf.data() + buf.size());
  MsgpackView x;
  ASSERT_TRUE(view.Find("min", &x));
  EXPECT_EQ(x.as_int(), std::numeric_limits<int64_t>::min());
  ASSERT_TRUE(view.Find("umax", &x));
  EXPECT_EQ(x.type(), Value::Type::kUint);
  EXPECT_EQ(x.as_uint(), std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(view.Find("d", &x));
  EXPECT_EQ(x.as_double(), 0.1);
  ASSERT_TRUE(view.Find("t", &x));
  EXPECT_TRUE(x.as_bool());
  EXPECT_FALSE(view.Find("missing", &x));
  EXPECT_EQ(view.ToValue(), Sample());

  ASSERT_TRUE(view.Find("nested", &x));
  MsgpackView inner = x.at(0).at(0);
  MsgpackView k;
  ASSERT_TRUE(inner.Find("k", &k));
  EXPECT_EQ(k.as_bytes(), std::string_view("\0\xff", 2));

  size_t n = 0;
  view.ForEach([&](std::string_view key, MsgpackView value) {
    EXPECT_EQ(key, Sample().as_map().entries()[n].first);
    EXPECT_EQ(value.ToValue(), Sample().as_map().entries()[n].second);
    ++n;
  });
  EXPECT_EQ(n, view.size());
}

TEST(MsgpackViewTest, ArrayIteration) {
  std::string buf = EncodeMsgpack(Value(Array{1, "two", Array{3}}));
  MsgpackView view;
  ASSERT_TRUE(MsgpackView::Parse(buf, &view).ok());
  std::vector<Value> seen;
  view.ForEach([&](MsgpackView e) { seen.push_back(e.ToValue()); });
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1], Value("two"));
  EXPECT_EQ(view.at(2).at(0).as_int(), 3);
  EXPECT_EQ(view.at(2).encoded(), EncodeMsgpack(Value(Array{3})));
}

}  // namespace
}  // namespace lever
