// The codec's hand-written proto-JSON wire format against libprotobuf and the
// original .proto (sdk/cpp/proto/leverrpc.proto): byte-identical encodings, and
// each side reads what the other writes.
#include <cmath>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "leverrpc.pb.h"
#include "lever/proto_json.h"

namespace lever {
namespace {

// Builds the libprotobuf message for a Value the way the original Go and Node
// encoders do (reference §2.3).
void ToProto(const Value& v, core::JSON* out) {
  switch (v.type()) {
    case Value::Type::kNull: break;
    case Value::Type::kBool: out->set_json_bool(v.as_bool()); break;
    case Value::Type::kString: out->set_json_string(v.as_string()); break;
    case Value::Type::kArray: {
      core::JSONArray* a = out->mutable_json_array();
      for (const Value& e : v.as_array()) ToProto(e, a->add_element());
      break;
    }
    case Value::Type::kMap: {
      core::JSONObject* o = out->mutable_json_object();
      for (const auto& [k, e] : v.as_map()) {
        core::JSONProperty* p = o->add_property();
        p->set_name(k);
        ToProto(e, p->mutable_value());
      }
      break;
    }
    default: out->set_json_number(v.ToDouble());
  }
}

Value Random(std::mt19937& rng, int depth) {
  int kind = static_cast<int>(rng() % (depth > 3 ? 5 : 7));
  switch (kind) {
    case 0: return Value();
    case 1: return Value(rng() % 2 == 0);
    case 2: return Value(static_cast<int64_t>(rng() % 2000) - 1000);
    case 3: return Value(std::ldexp(static_cast<double>(rng()), -16));
    case 4: return Value(std::string(rng() % 20, static_cast<char>('a' + rng() % 26)));
    case 5: {
      Array a;
      for (size_t i = rng() % 5; i > 0; --i) a.push_back(Random(rng, depth + 1));
      return Value(std::move(a));
    }
    default: {
      Map m;
      for (size_t i = rng() % 5; i > 0; --i) m.Set("k" + std::to_string(rng() % 10), Random(rng, depth + 1));
      return Value(std::move(m));
    }
  }
}

TEST(ProtoJsonCompatTest, ByteIdenticalToLibprotobuf) {
  std::mt19937 rng(12345);
  std::vector<Value> values = {Value(), Value(""), Value(0), Value(false), Value(Array{}), Value(Map{}),
                               Value(Map{{"", nullptr}}), Value(Array{"world"}), Value(-0.0)};
  for (int i = 0; i < 500; ++i) values.push_back(Random(rng, 0));
  for (const Value& v : values) {
    core::JSON proto;
    ToProto(v, &proto);
    std::string ours;
    ASSERT_TRUE(EncodeProtoJson(v, &ours).ok());
    EXPECT_EQ(ours, proto.SerializeAsString());

    core::JSON parsed;
    ASSERT_TRUE(parsed.ParseFromString(ours));  // libprotobuf reads ours
    Value back;
    ASSERT_TRUE(DecodeProtoJson(proto.SerializeAsString(), &back).ok());  // we read libprotobuf's
    EXPECT_EQ(back, v);
  }
}

TEST(ProtoJsonCompatTest, ArgumentListsInsideRpc) {
  // RPC{args = JSONArray{...}}: our JSONArray body wrapped as field 1.
  Array args = {"world", 42, Map{{"a", Array{true}}}};
  std::string body;
  ASSERT_TRUE(EncodeProtoJsonArray(args, &body).ok());
  core::RPC rpc;
  for (const Value& a : args) ToProto(a, rpc.mutable_args()->add_element());
  EXPECT_EQ(rpc.args().SerializeAsString(), body);

  // Zero arguments: args present and empty, bytes 0a 00 (reference §2.5).
  core::RPC empty;
  empty.mutable_args();
  EXPECT_EQ(empty.SerializeAsString(), std::string("\x0a\x00", 2));
}

}  // namespace
}  // namespace lever
