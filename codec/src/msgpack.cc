// msgpack encode (msgpack-c's packer) and decode (msgpack-c's parser driven by
// a visitor that builds lever::Value directly: no msgpack::object zone, and
// every container size is checked against the bytes that remain before
// anything is reserved).
#include "lever/msgpack.h"

#include <cstring>

#include <msgpack.hpp>

#include "utf8.h"

namespace lever {
namespace {

// msgpack-c's packer writes through any type with write(const char*, size_t).
struct StringSink {
  std::string* out;
  void write(const char* p, size_t n) { out->append(p, n); }
};

void Pack(msgpack::packer<StringSink>& pk, StringSink& sink, const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull: pk.pack_nil(); break;
    case Value::Type::kBool: v.as_bool() ? pk.pack_true() : pk.pack_false(); break;
    case Value::Type::kInt: pk.pack_int64(v.as_int()); break;
    case Value::Type::kUint: pk.pack_uint64(v.as_uint()); break;
    case Value::Type::kDouble: {
      // Always float64: msgpack-c's pack_double writes integral doubles as
      // ints, which would turn 3.0 into 3 and lose the sign of -0.0.
      uint64_t bits;
      double d = v.as_double();
      std::memcpy(&bits, &d, 8);
      bits = __builtin_bswap64(bits);
      char buf[9] = {static_cast<char>(0xcb)};
      std::memcpy(buf + 1, &bits, 8);
      sink.write(buf, 9);
      break;
    }
    case Value::Type::kString: {
      const std::string& s = v.as_string();
      pk.pack_str(static_cast<uint32_t>(s.size()));
      pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
      break;
    }
    case Value::Type::kBytes: {
      const std::string& b = v.as_bytes().data();
      pk.pack_bin(static_cast<uint32_t>(b.size()));
      pk.pack_bin_body(b.data(), static_cast<uint32_t>(b.size()));
      break;
    }
    case Value::Type::kArray: {
      const Array& a = v.as_array();
      pk.pack_array(static_cast<uint32_t>(a.size()));
      for (const Value& e : a) Pack(pk, sink, e);
      break;
    }
    case Value::Type::kMap: {
      const Map& m = v.as_map();
      pk.pack_map(static_cast<uint32_t>(m.size()));
      for (const auto& [key, value] : m) {
        pk.pack_str(static_cast<uint32_t>(key.size()));
        pk.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
        Pack(pk, sink, value);
      }
      break;
    }
  }
}

// Builds a Value from msgpack-c parser events. A stack of open containers;
// each scalar lands in the innermost one.
class Builder : public msgpack::null_visitor {
 public:
  Builder(size_t input_size, const DecodeLimits& limits) : input_size_(input_size), limits_(limits) {}

  bool visit_nil() { return Put(Value()); }
  bool visit_boolean(bool b) { return Put(Value(b)); }
  bool visit_positive_integer(uint64_t u) { return Put(Value(u)); }
  bool visit_negative_integer(int64_t i) { return Put(Value(i)); }
  bool visit_float32(float f) { return Put(Value(static_cast<double>(f))); }
  bool visit_float64(double d) { return Put(Value(d)); }
  bool visit_str(const char* p, uint32_t n) {
    std::string_view s(p, n);
    if (!internal::ValidUtf8(s)) return Fail(InvalidArgument("msgpack: str is not valid UTF-8 (use bin for bytes)"));
    if (expecting_key()) {
      pending_key_.assign(s);
      have_key_ = true;
      return Count();
    }
    return Put(Value(std::string(s)));
  }
  bool visit_bin(const char* p, uint32_t n) { return Put(Value(Bytes(p, n))); }
  bool visit_ext(const char* p, uint32_t n) {
    int type = n > 0 ? static_cast<int8_t>(p[0]) : 0;
    return Fail(InvalidArgument("msgpack: ext type " + std::to_string(type) + " is not supported"));
  }

  bool start_array(uint32_t n) { return Open(Value(Array()), n, n); }
  bool end_array() { return Close(); }
  bool start_map(uint32_t n) { return Open(Value(Map()), n, uint64_t{n} * 2); }
  bool end_map() { return Close(); }

  void parse_error(size_t, size_t off) {
    if (status_.ok()) status_ = InvalidArgument("msgpack: malformed input at byte " + std::to_string(off));
  }
  void insufficient_bytes(size_t, size_t off) {
    if (status_.ok()) status_ = InvalidArgument("msgpack: truncated input at byte " + std::to_string(off));
  }

  Status TakeStatus() { return std::move(status_); }
  Value TakeRoot() { return std::move(root_); }

 private:
  struct Frame {
    Value value;
  };

  bool expecting_key() const {
    return !stack_.empty() && stack_.back().value.is_map() && !have_key_;
  }

  bool Fail(Status s) {
    if (status_.ok()) status_ = std::move(s);
    return false;
  }

  bool Count() {
    if (++elements_ > limits_.max_elements) {
      return Fail(ResourceExhausted("msgpack: more than " + std::to_string(limits_.max_elements) + " values"));
    }
    return true;
  }

  bool Put(Value v) {
    if (expecting_key()) return Fail(InvalidArgument("msgpack: map keys must be strings"));
    if (!Count()) return false;
    return Place(std::move(v));
  }

  bool Place(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return true;
    }
    Value& top = stack_.back().value;
    if (top.is_array()) {
      top.as_array().push_back(std::move(v));
    } else {
      Map& m = top.as_map();
      have_key_ = false;
      m.AppendUnchecked(std::move(pending_key_), std::move(v));
    }
    return true;
  }

  bool Open(Value container, uint32_t n, uint64_t children) {
    if (expecting_key()) return Fail(InvalidArgument("msgpack: map keys must be strings"));
    if (!Count()) return false;
    if (stack_.size() >= limits_.max_depth) {
      return Fail(ResourceExhausted("msgpack: nesting deeper than " + std::to_string(limits_.max_depth)));
    }
    // Every child takes at least one byte, so a claim beyond the input is a
    // lie: reject before reserving anything.
    declared_ += children;
    if (declared_ > input_size_) return Fail(InvalidArgument("msgpack: truncated input (container larger than input)"));
    if (container.is_array()) {
      container.as_array().reserve(n);
    } else {
      container.as_map().reserve(n);
    }
    // A map's pending key belongs to the outer map; save it with the frame.
    saved_keys_.push_back(std::move(pending_key_));
    saved_have_key_.push_back(have_key_);
    have_key_ = false;
    stack_.push_back(Frame{std::move(container)});
    return true;
  }

  bool Close() {
    Value done = std::move(stack_.back().value);
    if (done.is_map()) done.as_map().DeduplicateKeys();  // last wins, first position
    stack_.pop_back();
    pending_key_ = std::move(saved_keys_.back());
    saved_keys_.pop_back();
    have_key_ = saved_have_key_.back();
    saved_have_key_.pop_back();
    return Place(std::move(done));
  }

  size_t input_size_;
  const DecodeLimits& limits_;
  Status status_;
  Value root_;
  std::vector<Frame> stack_;
  std::vector<std::string> saved_keys_;
  std::vector<bool> saved_have_key_;
  std::string pending_key_;
  bool have_key_ = false;
  size_t elements_ = 0;
  uint64_t declared_ = 0;
};

}  // namespace

void EncodeMsgpack(const Value& v, std::string* out) {
  StringSink sink{out};
  msgpack::packer<StringSink> pk(sink);
  Pack(pk, sink, v);
}

std::string EncodeMsgpack(const Value& v) {
  std::string out;
  EncodeMsgpack(v, &out);
  return out;
}

Status DecodeMsgpack(std::string_view in, Value* out, const DecodeLimits& limits) {
  if (in.size() > limits.max_size) {
    return ResourceExhausted("msgpack: input of " + std::to_string(in.size()) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_size));
  }
  if (in.empty()) return InvalidArgument("msgpack: empty input");
  Builder builder(in.size(), limits);
  size_t offset = 0;
  bool ok = false;
  try {
    ok = msgpack::parse(in.data(), in.size(), offset, builder);
  } catch (const std::exception& e) {
    // msgpack-c throws on sizes beyond its own limits; never let it escape.
    return InvalidArgument(std::string("msgpack: ") + e.what());
  }
  Status s = builder.TakeStatus();
  if (!s.ok()) return s;
  if (!ok) return InvalidArgument("msgpack: malformed input");
  if (offset != in.size()) {
    return InvalidArgument("msgpack: " + std::to_string(in.size() - offset) + " trailing bytes after the value");
  }
  *out = builder.TakeRoot();
  return Status::Ok();
}

}  // namespace lever
