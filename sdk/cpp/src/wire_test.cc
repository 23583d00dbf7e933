#include "lever/wire.h"

#include <gtest/gtest.h>

#include "leverrpc.pb.h"
#include "lever/msgpack.h"

namespace lever::wire {
namespace {

std::string Hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out.push_back(' ');
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

std::string Rpc(const Array& args, Codec c = Codec::kProtoJson) {
  std::string out;
  EXPECT_TRUE(EncodeRpc(args, c, &out).ok());
  return out;
}

// Hand-computed protobuf bytes (reference §2.2, §2.5).
TEST(WireBytes, RpcZeroArgsIsPresentEmptyArgs) { EXPECT_EQ(Hex(Rpc({})), "0a 00"); }

TEST(WireBytes, RpcOneStringArg) {
  // RPC{args=JSONArray{element=[JSON{json_string="a"}]}}
  EXPECT_EQ(Hex(Rpc({"a"})), "0a 05 0a 03 0a 01 61");
}

TEST(WireBytes, RpcSingleBytesArgUsesByteArgs) {
  EXPECT_EQ(Hex(Rpc({Value::FromBytes("xy")})), "12 02 78 79");
}

TEST(WireBytes, RpcBytesAmongOthersIsRejectedInProtoJson) {
  std::string out;
  EXPECT_FALSE(EncodeRpc({Value::FromBytes("xy"), 1}, Codec::kProtoJson, &out).ok());
}

TEST(WireBytes, RpcMsgpackPutsArrayInByteArgs) {
  // fixarray(2) [1, "a"] = 92 01 a1 61
  EXPECT_EQ(Hex(Rpc({1, "a"}, Codec::kMsgpack)), "12 04 92 01 a1 61");
}

TEST(WireBytes, ReplyResultNumber) {
  std::string out;
  ASSERT_TRUE(EncodeReply(1.0, false, Codec::kProtoJson, &out).ok());
  // RPCReply{result=JSON{json_number=1.0}}
  EXPECT_EQ(Hex(out), "0a 09 11 00 00 00 00 00 00 f0 3f");
}

TEST(WireBytes, ReplyErrorString) {
  std::string out;
  ASSERT_TRUE(EncodeReply("boom", true, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "1a 06 0a 04 62 6f 6f 6d");
}

TEST(WireBytes, ReplyNullResultIsPresentEmptyJson) {
  std::string out;
  ASSERT_TRUE(EncodeReply(nullptr, false, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "0a 00");
}

TEST(WireBytes, ReplyBytesResultAndError) {
  std::string out;
  ASSERT_TRUE(EncodeReply(Value::FromBytes("z"), false, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "12 01 7a");
  out.clear();
  ASSERT_TRUE(EncodeReply(Value::FromBytes("z"), true, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "22 01 7a");
}

TEST(WireBytes, StreamMessages) {
  std::string out;
  ASSERT_TRUE(EncodeStreamRpc({}, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "0a 02 0a 00");
  out.clear();
  ASSERT_TRUE(EncodeStreamValue(nullptr, false, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "12 00");
  out.clear();
  ASSERT_TRUE(EncodeStreamValue(Value::FromBytes("z"), false, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "1a 01 7a");
  out.clear();
  ASSERT_TRUE(EncodeStreamValue(true, true, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "22 02 18 01");
  out.clear();
  ASSERT_TRUE(EncodeStreamValue(Value::FromBytes("e"), true, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), "2a 01 65");
}

// Cross-check with libprotobuf's generated classes.
TEST(WireBytes, MatchesGeneratedClasses) {
  core::RPC rpc;
  auto* args = rpc.mutable_args();
  args->add_element()->set_json_string("hello");
  args->add_element()->set_json_number(42);
  auto* obj = args->add_element()->mutable_json_object();
  auto* prop = obj->add_property();
  prop->set_name("k");
  prop->mutable_value()->set_json_bool(false);
  args->add_element();  // null
  Map m;
  m.Set("k", false);
  EXPECT_EQ(Hex(Rpc({"hello", 42, Value(std::move(m)), nullptr})), Hex(rpc.SerializeAsString()));

  core::StreamMessage sm;
  sm.mutable_rpc()->set_byte_args("raw");
  std::string out;
  ASSERT_TRUE(EncodeStreamRpc({Value::FromBytes("raw")}, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), Hex(sm.SerializeAsString()));

  core::RPCReply reply;
  reply.mutable_error()->mutable_json_array()->add_element()->set_json_string("x");
  out.clear();
  ASSERT_TRUE(EncodeReply(Array{"x"}, true, Codec::kProtoJson, &out).ok());
  EXPECT_EQ(Hex(out), Hex(reply.SerializeAsString()));
}

TEST(WireDecode, RoundTripsBothCodecs) {
  for (Codec c : {Codec::kProtoJson, Codec::kMsgpack}) {
    Array in{"s", 7, true, nullptr, Array{1, 2}};
    Array out;
    ASSERT_TRUE(DecodeRpc(Rpc(in, c), c, &out).ok());
    EXPECT_EQ(out, in);

    std::string enc;
    ASSERT_TRUE(EncodeReply(Value::FromBytes("b"), true, c, &enc).ok());
    Value v;
    bool is_error = false;
    ASSERT_TRUE(DecodeReply(enc, c, &v, &is_error).ok());
    EXPECT_TRUE(is_error);
    EXPECT_EQ(v, Value::FromBytes("b"));
  }
}

TEST(WireDecode, MsgpackKeepsExactIntegers) {
  Array in{int64_t{1} << 60, Value::FromBytes("a"), Value::FromBytes("b")};
  Array out;
  ASSERT_TRUE(DecodeRpc(Rpc(in, Codec::kMsgpack), Codec::kMsgpack, &out).ok());
  EXPECT_EQ(out, in);
}

TEST(WireDecode, ByteArgsInProtoJsonAreOneBytesArgument) {
  Array out;
  ASSERT_TRUE(DecodeRpc(std::string("\x12\x02xy", 4), Codec::kProtoJson, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], Value::FromBytes("xy"));
}

TEST(WireDecode, Errors) {
  Array out;
  EXPECT_EQ(DecodeRpc("", Codec::kProtoJson, &out).code(), Code::kInvalidArgument);  // no member
  EXPECT_EQ(DecodeRpc("\x0a\x05\x0a", Codec::kProtoJson, &out).code(), Code::kInvalidArgument);  // truncated
  Value v;
  bool e;
  EXPECT_EQ(DecodeReply("", Codec::kProtoJson, &v, &e).code(), Code::kInternal);
  StreamKind kind;
  ASSERT_TRUE(DecodeStreamMessage("", Codec::kProtoJson, &kind, &v, &out).ok());
  EXPECT_EQ(kind, StreamKind::kEmpty);
  // Unknown fields are skipped: field 9 varint, then message=JSON{json_bool=true}.
  ASSERT_TRUE(DecodeStreamMessage(std::string("\x48\x01\x12\x02\x18\x01", 6), Codec::kProtoJson, &kind, &v, &out).ok());
  EXPECT_EQ(kind, StreamKind::kMessage);
  EXPECT_EQ(v, Value(true));
  // msgpack byte_args must be an array.
  EXPECT_EQ(DecodeRpc(std::string("\x12\x01\x01", 3), Codec::kMsgpack, &out).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace lever::wire
