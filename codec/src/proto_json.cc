// Hand-written protobuf wire format for the JSON/JSONArray/JSONObject/
// JSONProperty messages (see proto_json.h). Encoding measures every container
// once (sizes kept in pre-order) and then writes in one pass.
#include "lever/proto_json.h"

#include <cmath>
#include <cstring>

#include "utf8.h"

namespace lever {
namespace {

// Field tags: (field_number << 3) | wire_type.
constexpr uint8_t kTagString = 0x0a;    // JSON.json_string = 1, len
constexpr uint8_t kTagNumber = 0x11;    // JSON.json_number = 2, fixed64
constexpr uint8_t kTagBool = 0x18;      // JSON.json_bool = 3, varint
constexpr uint8_t kTagObject = 0x22;    // JSON.json_object = 4, len
constexpr uint8_t kTagArray = 0x2a;     // JSON.json_array = 5, len
constexpr uint8_t kTagRepeated = 0x0a;  // JSONArray.element = 1 / JSONObject.property = 1
constexpr uint8_t kTagName = 0x0a;      // JSONProperty.name = 1
constexpr uint8_t kTagValue = 0x12;     // JSONProperty.value = 2

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t Framed(size_t body) { return 1 + VarintSize(body) + body; }

class Encoder {
 public:
  // Returns the body size of the JSON message for v, recording container
  // sizes in pre-order.
  Status Measure(const Value& v, size_t* body) {
    switch (v.type()) {
      case Value::Type::kNull: *body = 0; return Status::Ok();
      case Value::Type::kBool: *body = 2; return Status::Ok();
      case Value::Type::kInt:
      case Value::Type::kUint:
      case Value::Type::kDouble: *body = 9; return Status::Ok();
      case Value::Type::kString:
        if (!internal::ValidUtf8(v.as_string())) return InvalidArgument("proto-JSON: string is not valid UTF-8");
        *body = Framed(v.as_string().size());
        return Status::Ok();
      case Value::Type::kBytes:
        return InvalidArgument("proto-JSON: bytes cannot be nested in JSON (send one bytes argument alone)");
      case Value::Type::kArray: {
        size_t slot = sizes_.size();
        sizes_.push_back(0);
        size_t inner = 0;
        for (const Value& e : v.as_array()) {
          size_t eb;
          Status s = Measure(e, &eb);
          if (!s.ok()) return s;
          inner += Framed(eb);
        }
        sizes_[slot] = inner;
        *body = Framed(inner);
        return Status::Ok();
      }
      case Value::Type::kMap: {
        size_t slot = sizes_.size();
        sizes_.push_back(0);
        size_t inner = 0;
        for (const auto& [key, value] : v.as_map()) {
          if (!internal::ValidUtf8(key)) return InvalidArgument("proto-JSON: key is not valid UTF-8");
          size_t vb;
          Status s = Measure(value, &vb);
          if (!s.ok()) return s;
          inner += Framed(PropertySize(key, vb));
        }
        sizes_[slot] = inner;
        *body = Framed(inner);
        return Status::Ok();
      }
    }
    return InvalidArgument("proto-JSON: unknown value type");
  }

  // Writes the body of the JSON message for v.
  void Write(const Value& v, std::string* out) {
    switch (v.type()) {
      case Value::Type::kNull: return;
      case Value::Type::kBool:
        out->push_back(static_cast<char>(kTagBool));
        out->push_back(v.as_bool() ? 1 : 0);
        return;
      case Value::Type::kInt:
      case Value::Type::kUint:
      case Value::Type::kDouble: {
        double d = v.ToDouble();
        char buf[8];
        std::memcpy(buf, &d, 8);  // little-endian host, as the wire
        out->push_back(static_cast<char>(kTagNumber));
        out->append(buf, 8);
        return;
      }
      case Value::Type::kString:
        out->push_back(static_cast<char>(kTagString));
        PutVarint(v.as_string().size(), out);
        out->append(v.as_string());
        return;
      case Value::Type::kBytes: return;  // rejected by Measure
      case Value::Type::kArray:
        out->push_back(static_cast<char>(kTagArray));
        PutVarint(sizes_[next_++], out);
        WriteElements(v.as_array(), out);
        return;
      case Value::Type::kMap:
        out->push_back(static_cast<char>(kTagObject));
        PutVarint(sizes_[next_++], out);
        for (const auto& [key, value] : v.as_map()) {
          size_t vb = Peek(value);
          out->push_back(static_cast<char>(kTagRepeated));
          PutVarint(PropertySize(key, vb), out);
          if (!key.empty()) {
            out->push_back(static_cast<char>(kTagName));
            PutVarint(key.size(), out);
            out->append(key);
          }
          out->push_back(static_cast<char>(kTagValue));
          PutVarint(vb, out);
          Write(value, out);
        }
        return;
    }
  }

  // The repeated `element` fields of a JSONArray body.
  void WriteElements(const Array& elements, std::string* out) {
    for (const Value& e : elements) {
      out->push_back(static_cast<char>(kTagRepeated));
      PutVarint(Peek(e), out);
      Write(e, out);
    }
  }

 private:
  static size_t PropertySize(const std::string& key, size_t value_body) {
    return (key.empty() ? 0 : Framed(key.size())) + Framed(value_body);
  }

  // The JSON body size of v, whose container size (if any) is the next slot.
  size_t Peek(const Value& v) const {
    switch (v.type()) {
      case Value::Type::kNull: return 0;
      case Value::Type::kBool: return 2;
      case Value::Type::kString: return Framed(v.as_string().size());
      case Value::Type::kArray:
      case Value::Type::kMap: return Framed(sizes_[next_]);
      default: return 9;
    }
  }

  std::vector<size_t> sizes_;
  size_t next_ = 0;
};

class Decoder {
 public:
  explicit Decoder(const DecodeLimits& limits) : limits_(limits) {}

  // Decodes (merges) a JSON message body into *out.
  Status Json(const char* p, const char* end, Value* out, uint32_t depth) {
    while (p < end) {
      uint64_t tag;
      if (!Varint(&p, end, &tag)) return Truncated();
      uint32_t field = static_cast<uint32_t>(tag >> 3);
      uint32_t wire = tag & 7;
      if (field == 1 && wire == 2) {
        std::string_view s;
        if (!Bytes(&p, end, &s)) return Truncated();
        if (!internal::ValidUtf8(s)) return InvalidArgument("proto-JSON: string is not valid UTF-8");
        *out = Value(std::string(s));
      } else if (field == 2 && wire == 1) {
        if (end - p < 8) return Truncated();
        double d;
        std::memcpy(&d, p, 8);
        p += 8;
        *out = NumberValue(d);
      } else if (field == 3 && wire == 0) {
        uint64_t b;
        if (!Varint(&p, end, &b)) return Truncated();
        *out = Value(b != 0);
      } else if ((field == 4 || field == 5) && wire == 2) {
        std::string_view body;
        if (!Bytes(&p, end, &body)) return Truncated();
        if (depth >= limits_.max_depth) {
          return ResourceExhausted("proto-JSON: nesting deeper than " + std::to_string(limits_.max_depth));
        }
        Status s = field == 4 ? Object(body, out, depth + 1) : ArrayBody(body, out, depth + 1);
        if (!s.ok()) return s;
      } else {
        Status s = SkipField(wire, &p, end);
        if (!s.ok()) return s;
      }
    }
    return Status::Ok();
  }

  // Decodes a JSONArray body, appending to *out (an array, merged as
  // protobuf merges a repeated field appearing twice).
  Status ArrayBody(std::string_view body, Value* out, uint32_t depth) {
    if (!out->is_array()) *out = Value(Array());
    Array& arr = out->as_array();
    const char* p = body.data();
    const char* end = p + body.size();
    while (p < end) {
      uint64_t tag;
      if (!Varint(&p, end, &tag)) return Truncated();
      if (tag == kTagRepeated) {
        std::string_view e;
        if (!Bytes(&p, end, &e)) return Truncated();
        Status s = Count();
        if (!s.ok()) return s;
        arr.emplace_back();
        s = Json(e.data(), e.data() + e.size(), &arr.back(), depth);
        if (!s.ok()) return s;
      } else {
        Status s = SkipField(tag & 7, &p, end);
        if (!s.ok()) return s;
      }
    }
    return Status::Ok();
  }

  Status Count() {
    if (++elements_ > limits_.max_elements) {
      return ResourceExhausted("proto-JSON: more than " + std::to_string(limits_.max_elements) + " values");
    }
    return Status::Ok();
  }

 private:
  Status Object(std::string_view body, Value* out, uint32_t depth) {
    if (!out->is_map()) *out = Value(Map());
    Map& map = out->as_map();
    const char* p = body.data();
    const char* end = p + body.size();
    while (p < end) {
      uint64_t tag;
      if (!Varint(&p, end, &tag)) return Truncated();
      if (tag != kTagRepeated) {
        Status s = SkipField(tag & 7, &p, end);
        if (!s.ok()) return s;
        continue;
      }
      std::string_view prop;
      if (!Bytes(&p, end, &prop)) return Truncated();
      Status s = Count();
      if (!s.ok()) return s;
      std::string name;
      Value value;
      const char* q = prop.data();
      const char* qend = q + prop.size();
      while (q < qend) {
        uint64_t ptag;
        if (!Varint(&q, qend, &ptag)) return Truncated();
        if (ptag == kTagName) {
          std::string_view n;
          if (!Bytes(&q, qend, &n)) return Truncated();
          if (!internal::ValidUtf8(n)) return InvalidArgument("proto-JSON: key is not valid UTF-8");
          name.assign(n);
        } else if (ptag == kTagValue) {
          std::string_view v;
          if (!Bytes(&q, qend, &v)) return Truncated();
          s = Json(v.data(), v.data() + v.size(), &value, depth);  // merges a repeated value
          if (!s.ok()) return s;
        } else {
          s = SkipField(ptag & 7, &q, qend);
          if (!s.ok()) return s;
        }
      }
      map.AppendUnchecked(std::move(name), std::move(value));
    }
    map.DeduplicateKeys();
    return Status::Ok();
  }

  static Value NumberValue(double d) {
    constexpr double kMaxSafe = 9007199254740992.0;  // 2^53
    if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= kMaxSafe && !(d == 0 && std::signbit(d))) {
      return Value(static_cast<int64_t>(d));
    }
    return Value(d);
  }

  static bool Varint(const char** p, const char* end, uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
      auto b = static_cast<uint8_t>(*(*p)++);
      result |= uint64_t{b & 0x7fu} << shift;
      if (b < 0x80) {
        *v = result;
        return true;
      }
    }
    return false;
  }

  static bool Bytes(const char** p, const char* end, std::string_view* out) {
    uint64_t n;
    if (!Varint(p, end, &n) || n > static_cast<uint64_t>(end - *p)) return false;
    *out = std::string_view(*p, n);
    *p += n;
    return true;
  }

  static Status SkipField(uint32_t wire, const char** p, const char* end) {
    switch (wire) {
      case 0: {
        uint64_t v;
        return Varint(p, end, &v) ? Status::Ok() : Truncated();
      }
      case 1:
        if (end - *p < 8) return Truncated();
        *p += 8;
        return Status::Ok();
      case 2: {
        std::string_view s;
        return Bytes(p, end, &s) ? Status::Ok() : Truncated();
      }
      case 5:
        if (end - *p < 4) return Truncated();
        *p += 4;
        return Status::Ok();
      default: return InvalidArgument("proto-JSON: unsupported wire type " + std::to_string(wire));
    }
  }

  static Status Truncated() { return InvalidArgument("proto-JSON: truncated or malformed message"); }

  const DecodeLimits& limits_;
  size_t elements_ = 0;
};

Status CheckSize(std::string_view in, const DecodeLimits& limits) {
  if (in.size() > limits.max_size) {
    return ResourceExhausted("proto-JSON: input of " + std::to_string(in.size()) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_size));
  }
  return Status::Ok();
}

}  // namespace

Status EncodeProtoJson(const Value& v, std::string* out) {
  Encoder enc;
  size_t body;
  Status s = enc.Measure(v, &body);
  if (!s.ok()) return s;
  out->reserve(out->size() + body);
  enc.Write(v, out);
  return Status::Ok();
}

Status EncodeProtoJsonArray(const Array& elements, std::string* out) {
  Encoder enc;
  size_t total = 0;
  for (const Value& e : elements) {
    size_t body;
    Status s = enc.Measure(e, &body);
    if (!s.ok()) return s;
    total += Framed(body);
  }
  out->reserve(out->size() + total);
  enc.WriteElements(elements, out);
  return Status::Ok();
}

Status DecodeProtoJson(std::string_view in, Value* out, const DecodeLimits& limits) {
  Status s = CheckSize(in, limits);
  if (!s.ok()) return s;
  Decoder dec(limits);
  Value v;
  s = dec.Count();
  if (s.ok()) s = dec.Json(in.data(), in.data() + in.size(), &v, 0);
  if (s.ok()) *out = std::move(v);
  return s;
}

Status DecodeProtoJsonArray(std::string_view in, Array* out, const DecodeLimits& limits) {
  Status s = CheckSize(in, limits);
  if (!s.ok()) return s;
  Decoder dec(limits);
  Value v{Array()};
  s = dec.ArrayBody(in, &v, 1);  // the argument list is one level
  if (s.ok()) *out = std::move(v.as_array());
  return s;
}

}  // namespace lever
