#include "lever/proto_json.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "test_util.h"

namespace lever {
namespace {

using testing::Hex;

std::string Enc(const Value& v) {
  std::string out;
  Status s = EncodeProtoJson(v, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::string EncArgs(const Array& a) {
  std::string out;
  Status s = EncodeProtoJsonArray(a, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

Value Dec(std::string_view bytes) {
  Value v;
  Status s = DecodeProtoJson(bytes, &v);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return v;
}

// Hand-computed from the proto (reference §2.2) and the encoding rules of
// §2.3: zero values inside the oneof are present.
TEST(ProtoJsonTest, EncodesKnownBytes) {
  EXPECT_EQ(Enc(Value()), "");
  EXPECT_EQ(Enc(Value("")), Hex("0a 00"));
  EXPECT_EQ(Enc(Value("hi")), Hex("0a 02 68 69"));
  EXPECT_EQ(Enc(Value(false)), Hex("18 00"));
  EXPECT_EQ(Enc(Value(true)), Hex("18 01"));
  EXPECT_EQ(Enc(Value(0)), Hex("11 00 00 00 00 00 00 00 00"));
  EXPECT_EQ(Enc(Value(1)), Hex("11 00 00 00 00 00 00 f0 3f"));
  EXPECT_EQ(Enc(Value(Array{})), Hex("2a 00"));
  EXPECT_EQ(Enc(Value(Map{})), Hex("22 00"));
  // ["world"]: JSON{json_array{element{json_string "world"}}}
  EXPECT_EQ(Enc(Value(Array{"world"})), Hex("2a 09 0a 07 0a 05 77 6f 72 6c 64"));
  // {"a":null}: property{name "a", value JSON{} present}
  EXPECT_EQ(Enc(Value(Map{{"a", nullptr}})), Hex("22 07 0a 05 0a 01 61 12 00"));
  // {"":true}: the empty name is omitted, as proto3 does
  EXPECT_EQ(Enc(Value(Map{{"", true}})), Hex("22 06 0a 04 12 02 18 01"));
}

TEST(ProtoJsonTest, EncodesArgumentLists) {
  EXPECT_EQ(EncArgs({}), "");  // RPC.args present and empty is 0a 00 around this
  EXPECT_EQ(EncArgs({"world"}), Hex("0a 07 0a 05 77 6f 72 6c 64"));
  EXPECT_EQ(EncArgs({nullptr, 1}), Hex("0a 00 0a 09 11 00 00 00 00 00 00 f0 3f"));
  Array back;
  ASSERT_TRUE(DecodeProtoJsonArray(EncArgs({"a", Array{1, 2}, Map{{"k", "v"}}}), &back).ok());
  EXPECT_EQ(back, (Array{"a", Array{1, 2}, Map{{"k", "v"}}}));
}

TEST(ProtoJsonTest, RoundTripsNestedValues) {
  Value v(Map{{"name", "x"},
              {"list", Array{Array{}, Map{}, "", 0, false, nullptr, -1.25, Array{Array{Array{1}}}}},
              {"obj", Map{{"deep", Map{{"er", Array{"s"}}}}}},
              {"big", 9007199254740992}});
  EXPECT_EQ(Dec(Enc(v)), v);
}

TEST(ProtoJsonTest, NumberPolicy) {
  EXPECT_EQ(Dec(Enc(Value(9007199254740992))), Value(9007199254740992));   // 2^53 exact
  EXPECT_EQ(Dec(Enc(Value(-9007199254740992))), Value(-9007199254740992));
  EXPECT_TRUE(Dec(Enc(Value(int64_t{1} << 60))).is_double());  // beyond 2^53: a double
  EXPECT_EQ(Dec(Enc(Value(int64_t{1} << 60))), Value(std::ldexp(1.0, 60)));
  EXPECT_EQ(Dec(Enc(Value(std::numeric_limits<uint64_t>::max()))), Value(std::ldexp(1.0, 64)));
  EXPECT_EQ(Dec(Enc(Value(2.5))), Value(2.5));
  EXPECT_EQ(Dec(Enc(Value(-0.0))), Value(-0.0));
  EXPECT_TRUE(std::isnan(Dec(Enc(Value(std::nan("")))).as_double()));
  EXPECT_EQ(Dec(Enc(Value(std::numeric_limits<double>::infinity()))),
            Value(std::numeric_limits<double>::infinity()));
}

TEST(ProtoJsonTest, BytesAndInvalidUtf8AreRejected) {
  std::string out;
  EXPECT_EQ(EncodeProtoJson(Value(Array{Value::FromBytes("x")}), &out).code(), Code::kInvalidArgument);
  out.clear();
  EXPECT_EQ(EncodeProtoJson(Value(std::string("\xff")), &out).code(), Code::kInvalidArgument);
  Value v;
  EXPECT_EQ(DecodeProtoJson(Hex("0a 01 ff"), &v).code(), Code::kInvalidArgument);
}

TEST(ProtoJsonTest, DecodesProtobufSemantics) {
  // The last oneof member wins.
  EXPECT_EQ(Dec(Hex("0a 01 61 18 01")), Value(true));
  // A repeated json_array member merges (appends), as protobuf merges messages.
  EXPECT_EQ(Dec(Hex("2a 02 0a 00 2a 04 0a 02 18 01")), Value(Array{nullptr, true}));
  // Unknown fields are skipped (varint, fixed64, length-delimited, fixed32).
  EXPECT_EQ(Dec(Hex("30 05 39 0000000000000000 42 01 00 4d 00000000 0a 01 61")), Value("a"));
  // An absent property value is null; duplicate names: last wins.
  EXPECT_EQ(Dec(Hex("22 0a 0a 03 0a 01 61 0a 03 0a 01 62")), Value(Map{{"a", nullptr}, {"b", nullptr}}));
  EXPECT_EQ(Dec(Hex("22 10 0a 05 0a 01 61 18 01 0a 07 0a 01 61 12 02 18 00")).as_map().size(), 1u);
}

TEST(ProtoJsonTest, RejectsMalformed) {
  Value v;
  for (const char* hex : {"0a", "0a 05 61", "11 00 00", "18", "2a 05 0a", "22 03 0a 05 0a", "0b", "80",
                          "ff ff ff ff ff ff ff ff ff ff ff"}) {
    Status s = DecodeProtoJson(Hex(hex), &v);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << hex << " " << s.ToString();
  }
}

TEST(ProtoJsonTest, EnforcesLimits) {
  // Depth: nest json_array N times.
  std::string deep;
  Value nested = Value(Array{});
  for (int i = 0; i < 200; ++i) nested = Value(Array{nested});
  deep = Enc(nested);
  Value v;
  EXPECT_EQ(DecodeProtoJson(deep, &v).code(), Code::kResourceExhausted);
  DecodeLimits limits;
  limits.max_depth = 300;
  EXPECT_TRUE(DecodeProtoJson(deep, &v, limits).ok());

  limits = {};
  limits.max_elements = 3;
  Array args;
  EXPECT_TRUE(DecodeProtoJsonArray(EncArgs({1, 2, 3}), &args, limits).ok());
  EXPECT_EQ(DecodeProtoJsonArray(EncArgs({1, 2, 3, 4}), &args, limits).code(), Code::kResourceExhausted);

  limits = {};
  limits.max_size = 2;
  EXPECT_EQ(DecodeProtoJson(Hex("0a 01 61"), &v, limits).code(), Code::kResourceExhausted);
}

}  // namespace
}  // namespace lever
