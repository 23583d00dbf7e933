// The public msgpack-test-suite vectors (codec/testdata, see its README):
// every listed encoding must decode to the value, and our encoding of that
// value must be one of the listed encodings. Ext and timestamp groups must be
// rejected with a clear error (msgpack.h: ext has no lever::Value).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "lever/json.h"
#include "lever/msgpack.h"
#include "test_util.h"

namespace lever {
namespace {

using testing::Hex;

std::filesystem::path VectorsFile() {
  return std::filesystem::path(LEVER_VECTORS_DIR) / "msgpack-test-suite" / "msgpack-test-suite.json";
}

// The suite's JSON form of a value, as a lever::Value to compare with.
Value Expected(const Map& entry, std::string* kind) {
  if (const Value* big = entry.Find("bignum")) {  // exact, where "number" is a rounded double
    *kind = "bignum";
    Value v;
    EXPECT_TRUE(ParseJson(big->as_string(), &v).ok());
    return v;
  }
  for (const auto& [key, value] : entry) {
    if (key == "msgpack") continue;
    *kind = key;
    if (key == "binary") return Value::FromBytes(Hex(value.as_string()));
    return value;
  }
  return Value();
}

bool SameNumber(const Value& a, const Value& b) {
  if (a.is_uint() || b.is_uint()) return a == b;
  return a.ToDouble() == b.ToDouble();
}

bool Same(const Value& want, const Value& got) {
  if (want.is_number() && got.is_number()) return SameNumber(want, got);
  if (want.type() != got.type()) return false;
  if (want.is_array()) {
    const Array& a = want.as_array();
    const Array& b = got.as_array();
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!Same(a[i], b[i])) return false;
    }
    return true;
  }
  if (want.is_map()) {
    if (want.as_map().size() != got.as_map().size()) return false;
    for (const auto& [k, v] : want.as_map()) {
      const Value* g = got.as_map().Find(k);
      if (!g || !Same(v, *g)) return false;
    }
    return true;
  }
  return want == got;
}

TEST(MsgpackVectorsTest, DecodeAndEncodeEveryGroup) {
  std::ifstream in(VectorsFile(), std::ios::binary);
  ASSERT_TRUE(in) << "no vectors at " << VectorsFile();
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Value suite;
  ASSERT_TRUE(ParseJson(text, &suite).ok());
  size_t decoded = 0, rejected = 0;
  for (const auto& [group, entries] : suite.as_map()) {
    for (const Value& e : entries.as_array()) {
      std::string kind;
      Value want = Expected(e.as_map(), &kind);
      const Array& encodings = e.as_map().Find("msgpack")->as_array();
      for (const Value& hex : encodings) {
        std::string bytes = Hex(hex.as_string());
        Value got;
        Status s = DecodeMsgpack(bytes, &got);
        if (kind == "timestamp" || kind == "ext") {
          EXPECT_EQ(s.code(), Code::kInvalidArgument) << group << " " << hex.as_string();
          EXPECT_NE(s.message().find("ext type"), std::string::npos) << s.message();
          ++rejected;
          continue;
        }
        ASSERT_TRUE(s.ok()) << group << " " << hex.as_string() << ": " << s.ToString();
        EXPECT_TRUE(Same(want, got)) << group << " " << hex.as_string();
        ++decoded;
        // Our encoding of what we decoded is one of the valid encodings.
        std::string ours = EncodeMsgpack(got);
        bool listed = std::any_of(encodings.begin(), encodings.end(),
                                  [&](const Value& h) { return Hex(h.as_string()) == ours; });
        EXPECT_TRUE(listed) << group << ": our encoding of " << hex.as_string() << " is not listed";
        // The view agrees with the full decoder.
        MsgpackView view;
        ASSERT_TRUE(MsgpackView::Parse(bytes, &view).ok());
        EXPECT_EQ(view.ToValue(), got);
      }
    }
  }
  EXPECT_GT(decoded, 100u);
  EXPECT_GT(rejected, 10u);
}

}  // namespace
}  // namespace lever
