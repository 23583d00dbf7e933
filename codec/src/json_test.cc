#include "lever/json.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "test_util.h"

namespace lever {
namespace {

Value Parse(std::string_view text) {
  Value v;
  Status s = ParseJson(text, &v);
  EXPECT_TRUE(s.ok()) << text << ": " << s.ToString();
  return v;
}

std::string Write(const Value& v, JsonWriteOptions o = {}) {
  std::string out;
  Status s = WriteJson(v, &out, o);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(JsonTest, ParsesEveryType) {
  Value v = Parse(R"({"n":null,"t":true,"f":false,"i":-5,"u":18446744073709551615,"d":1.5,
                     "e":1e3,"s":"a\"b\\\u00e9\n","a":[],"o":{}})");
  const Map& m = v.as_map();
  EXPECT_TRUE(m.Find("n")->is_null());
  EXPECT_EQ(*m.Find("t"), Value(true));
  EXPECT_EQ(*m.Find("i"), Value(-5));
  EXPECT_EQ(*m.Find("u"), Value(std::numeric_limits<uint64_t>::max()));
  EXPECT_EQ(*m.Find("d"), Value(1.5));
  EXPECT_EQ(*m.Find("e"), Value(1000.0));
  EXPECT_EQ(*m.Find("s"), Value("a\"b\\é\n"));
  EXPECT_EQ(*m.Find("a"), Value(Array{}));
  EXPECT_EQ(*m.Find("o"), Value(Map{}));
}

TEST(JsonTest, IntegerEdges) {
  EXPECT_EQ(Parse("-9223372036854775808"), Value(std::numeric_limits<int64_t>::min()));
  EXPECT_EQ(Parse("9223372036854775807"), Value(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(Parse("9223372036854775808"), Value(uint64_t{1} << 63));
  Value v;
  Status s = ParseJson("18446744073709551616", &v);  // 2^64
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_FALSE(ParseJson("-9223372036854775809", &v).ok());
}

TEST(JsonTest, WritesCompactAndRoundTrips) {
  Value v(Map{{"a", Array{1, -2, 0.5, true, nullptr, "x"}},
              {"big", std::numeric_limits<uint64_t>::max()},
              {"min", std::numeric_limits<int64_t>::min()},
              {"ctl", std::string("\x01\t\"", 3)},
              {"d", 3.0}});
  std::string text = Write(v);
  EXPECT_EQ(text,
            R"({"a":[1,-2,0.5,true,null,"x"],"big":18446744073709551615,"min":-9223372036854775808,)"
            R"("ctl":"\u0001\t\"","d":3.0})");
  EXPECT_EQ(Parse(text), v);
}

TEST(JsonTest, DoublesRoundTripExactly) {
  for (double d : {0.1, 1e300, -1e-300, 5e-324, 123456789.125, std::numeric_limits<double>::max()}) {
    EXPECT_EQ(Parse(Write(Value(d))), Value(d)) << d;
  }
  EXPECT_EQ(Parse(Write(Value(-0.0))), Value(-0.0));
}

TEST(JsonTest, NonFinitePolicy) {
  std::string out;
  EXPECT_EQ(WriteJson(Value(std::nan("")), &out).code(), Code::kInvalidArgument);
  out.clear();
  EXPECT_EQ(WriteJson(Value(std::numeric_limits<double>::infinity()), &out).code(), Code::kInvalidArgument);
  JsonWriteOptions o;
  o.nonfinite_as_null = true;
  EXPECT_EQ(Write(Value(Array{std::nan(""), -std::numeric_limits<double>::infinity()}), o), "[null,null]");
}

TEST(JsonTest, BytesPolicy) {
  std::string out;
  EXPECT_EQ(WriteJson(Value::FromBytes("x"), &out).code(), Code::kInvalidArgument);
  JsonWriteOptions o;
  o.bytes_as_base64 = true;
  EXPECT_EQ(Write(Value(Array{Value::FromBytes(""), Value::FromBytes("f"), Value::FromBytes("fo"),
                              Value::FromBytes("foo"), Value::FromBytes("foob")}),
                  o),
            R"(["","Zg==","Zm8=","Zm9v","Zm9vYg=="])");
}

TEST(JsonTest, InvalidUtf8Policy) {
  Value v;
  EXPECT_EQ(ParseJson("\"\xc3\x28\"", &v).code(), Code::kInvalidArgument);
  std::string out;
  EXPECT_EQ(WriteJson(Value(std::string("\xff")), &out).code(), Code::kInvalidArgument);
  out.clear();
  EXPECT_EQ(WriteJson(Value(Map{{std::string("\xff"), 1}}), &out).code(), Code::kInvalidArgument);
}

TEST(JsonTest, DuplicateKeysLastWinsFirstPosition) {
  Value v = Parse(R"({"a":1,"b":2,"a":3})");
  ASSERT_EQ(v.as_map().size(), 2u);
  EXPECT_EQ(v.as_map().entries()[0].first, "a");
  EXPECT_EQ(v.as_map().entries()[0].second, Value(3));
}

TEST(JsonTest, PrettyPrints) {
  JsonWriteOptions o;
  o.indent = 2;
  EXPECT_EQ(Write(Value(Map{{"a", Array{1, 2}}, {"b", Map{}}, {"c", Array{}}}), o),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": []\n}");
}

TEST(JsonTest, RejectsMalformed) {
  Value v;
  for (const char* text : {"", " ", "[", "[1,]", "{\"a\"}", "{a:1}", "01", "1.", "nul", "\"abc", "[1] x",
                           "'s'", "NaN", "Infinity", "[\"\\x\"]", "\"\x01\""}) {
    Status s = ParseJson(text, &v);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << "'" << text << "'" << s.ToString();
  }
}

TEST(JsonTest, EnforcesLimits) {
  Value v;
  DecodeLimits limits;
  limits.max_depth = 2;
  EXPECT_TRUE(ParseJson("[[1]]", &v, limits).ok());
  EXPECT_EQ(ParseJson("[[[1]]]", &v, limits).code(), Code::kResourceExhausted);
  EXPECT_EQ(ParseJson(R"({"a":{"b":{}}})", &v, limits).code(), Code::kResourceExhausted);

  limits = {};
  limits.max_elements = 3;
  EXPECT_TRUE(ParseJson("[1,2]", &v, limits).ok());
  EXPECT_EQ(ParseJson("[1,2,3]", &v, limits).code(), Code::kResourceExhausted);
  EXPECT_EQ(ParseJson(R"({"a":1,"b":2})", &v, limits).code(), Code::kResourceExhausted);

  limits = {};
  limits.max_size = 4;
  EXPECT_EQ(ParseJson("[1,2]", &v, limits).code(), Code::kResourceExhausted);

  std::string deep(100000, '[');
  EXPECT_EQ(ParseJson(deep + std::string(100000, ']'), &v).code(), Code::kResourceExhausted);
  EXPECT_FALSE(ParseJson(deep, &v).ok());
}

}  // namespace
}  // namespace lever
