// MsgpackView: validate once with msgpack-c's parser (no allocation), then
// navigate with a small header reader that trusts the validated buffer.
#include <cstring>

#include <msgpack.hpp>

#include "lever/msgpack.h"
#include "utf8.h"

namespace lever {

// The decoded head of one msgpack value.
struct Head {
  Value::Type type = Value::Type::kNull;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  const char* payload = nullptr;  // str/bin bytes, or the first child
  uint32_t n = 0;                 // str/bin length, array elements, map entries
};

class MsgpackViewAccess {
 public:
  static MsgpackView Make(const char* p, const char* end) { return MsgpackView(p, end); }
};

namespace {

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (sizeof(T) == 2) v = __builtin_bswap16(v);
  if constexpr (sizeof(T) == 4) v = __builtin_bswap32(v);
  if constexpr (sizeof(T) == 8) v = __builtin_bswap64(v);
  return v;
}

void SetUnsigned(Head* h, uint64_t u) {
  if (u <= static_cast<uint64_t>(INT64_MAX)) {
    h->type = Value::Type::kInt;
    h->i = static_cast<int64_t>(u);
  } else {
    h->type = Value::Type::kUint;
    h->u = u;
  }
}

// Reads the head at p (the buffer was validated, so lengths are in bounds).
Head ReadHead(const char* p) {
  Head h;
  auto c = static_cast<uint8_t>(*p);
  const char* q = p + 1;
  auto sized = [&](Value::Type t, uint32_t n, const char* payload) {
    h.type = t;
    h.n = n;
    h.payload = payload;
  };
  if (c <= 0x7f) {
    SetUnsigned(&h, c);
  } else if (c >= 0xe0) {
    h.type = Value::Type::kInt;
    h.i = static_cast<int8_t>(c);
  } else if ((c & 0xf0) == 0x80) {
    sized(Value::Type::kMap, c & 0x0f, q);
  } else if ((c & 0xf0) == 0x90) {
    sized(Value::Type::kArray, c & 0x0f, q);
  } else if ((c & 0xe0) == 0xa0) {
    sized(Value::Type::kString, c & 0x1f, q);
  } else {
    switch (c) {
      case 0xc0: h.type = Value::Type::kNull; break;
      case 0xc2: h.type = Value::Type::kBool; h.b = false; break;
      case 0xc3: h.type = Value::Type::kBool; h.b = true; break;
      case 0xc4: sized(Value::Type::kBytes, Load<uint8_t>(q), q + 1); break;
      case 0xc5: sized(Value::Type::kBytes, Load<uint16_t>(q), q + 2); break;
      case 0xc6: sized(Value::Type::kBytes, Load<uint32_t>(q), q + 4); break;
      case 0xca: {
        uint32_t bits = Load<uint32_t>(q);
        float f;
        std::memcpy(&f, &bits, 4);
        h.type = Value::Type::kDouble;
        h.d = f;
        break;
      }
      case 0xcb: {
        uint64_t bits = Load<uint64_t>(q);
        h.type = Value::Type::kDouble;
        std::memcpy(&h.d, &bits, 8);
        break;
      }
      case 0xcc: SetUnsigned(&h, Load<uint8_t>(q)); break;
      case 0xcd: SetUnsigned(&h, Load<uint16_t>(q)); break;
      case 0xce: SetUnsigned(&h, Load<uint32_t>(q)); break;
      case 0xcf: SetUnsigned(&h, Load<uint64_t>(q)); break;
      case 0xd0: h.type = Value::Type::kInt; h.i = static_cast<int8_t>(Load<uint8_t>(q)); break;
      case 0xd1: h.type = Value::Type::kInt; h.i = static_cast<int16_t>(Load<uint16_t>(q)); break;
      case 0xd2: h.type = Value::Type::kInt; h.i = static_cast<int32_t>(Load<uint32_t>(q)); break;
      case 0xd3: h.type = Value::Type::kInt; h.i = static_cast<int64_t>(Load<uint64_t>(q)); break;
      case 0xd9: sized(Value::Type::kString, Load<uint8_t>(q), q + 1); break;
      case 0xda: sized(Value::Type::kString, Load<uint16_t>(q), q + 2); break;
      case 0xdb: sized(Value::Type::kString, Load<uint32_t>(q), q + 4); break;
      case 0xdc: sized(Value::Type::kArray, Load<uint16_t>(q), q + 2); break;
      case 0xdd: sized(Value::Type::kArray, Load<uint32_t>(q), q + 4); break;
      case 0xde: sized(Value::Type::kMap, Load<uint16_t>(q), q + 2); break;
      case 0xdf: sized(Value::Type::kMap, Load<uint32_t>(q), q + 4); break;
      default: break;  // ext and reserved bytes never pass validation
    }
  }
  return h;
}

// The byte after the value at p.
const char* Skip(const char* p) {
  static constexpr uint8_t kFixedSize[] = {
      // 0xc0..0xdf: bytes after the type byte for fixed-size formats.
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  auto c = static_cast<uint8_t>(*p);
  Head h = ReadHead(p);
  switch (h.type) {
    case Value::Type::kString:
    case Value::Type::kBytes: return h.payload + h.n;
    case Value::Type::kArray: {
      const char* q = h.payload;
      for (uint32_t k = 0; k < h.n; ++k) q = Skip(q);
      return q;
    }
    case Value::Type::kMap: {
      const char* q = h.payload;
      for (uint64_t k = 0; k < uint64_t{h.n} * 2; ++k) q = Skip(q);
      return q;
    }
    default:
      if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) return p + 1;
      return p + 1 + kFixedSize[c - 0xc0];
  }
}

// Checks the whole buffer against the limits and the policies of msgpack.h
// without allocating.
class Validator : public msgpack::null_visitor {
 public:
  Validator(size_t input_size, const DecodeLimits& limits) : input_size_(input_size), limits_(limits) {}
  bool visit_nil() { return Scalar(); }
  bool visit_boolean(bool) { return Scalar(); }
  bool visit_positive_integer(uint64_t) { return Scalar(); }
  bool visit_negative_integer(int64_t) { return Scalar(); }
  bool visit_float32(float) { return Scalar(); }
  bool visit_float64(double) { return Scalar(); }
  bool visit_str(const char* p, uint32_t n) {
    if (!internal::ValidUtf8(std::string_view(p, n))) {
      return Fail(InvalidArgument("msgpack: str is not valid UTF-8 (use bin for bytes)"));
    }
    in_key_ = false;
    return Count();
  }
  bool visit_bin(const char*, uint32_t) { return Scalar(); }
  bool visit_ext(const char* p, uint32_t n) {
    int type = n > 0 ? static_cast<int8_t>(p[0]) : 0;
    return Fail(InvalidArgument("msgpack: ext type " + std::to_string(type) + " is not supported"));
  }
  bool start_array(uint32_t n) { return Open(n); }
  bool end_array() { --depth_; return true; }
  bool start_map(uint32_t n) { return Open(uint64_t{n} * 2); }
  bool start_map_key() { in_key_ = true; return true; }
  bool end_map() { --depth_; return true; }
  void parse_error(size_t, size_t off) {
    if (status_.ok()) status_ = InvalidArgument("msgpack: malformed input at byte " + std::to_string(off));
  }
  void insufficient_bytes(size_t, size_t off) {
    if (status_.ok()) status_ = InvalidArgument("msgpack: truncated input at byte " + std::to_string(off));
  }
  Status TakeStatus() { return std::move(status_); }

 private:
  bool Fail(Status s) {
    if (status_.ok()) status_ = std::move(s);
    return false;
  }
  bool Scalar() {
    if (in_key_) return Fail(InvalidArgument("msgpack: map keys must be strings"));
    return Count();
  }
  bool Count() {
    if (++elements_ > limits_.max_elements) {
      return Fail(ResourceExhausted("msgpack: more than " + std::to_string(limits_.max_elements) + " values"));
    }
    return true;
  }
  bool Open(uint64_t children) {
    if (!Scalar()) return false;
    if (++depth_ > limits_.max_depth) {
      return Fail(ResourceExhausted("msgpack: nesting deeper than " + std::to_string(limits_.max_depth)));
    }
    declared_ += children;
    if (declared_ > input_size_) return Fail(InvalidArgument("msgpack: truncated input (container larger than input)"));
    return true;
  }

  size_t input_size_;
  const DecodeLimits& limits_;
  Status status_;
  size_t elements_ = 0;
  uint64_t declared_ = 0;
  uint32_t depth_ = 0;
  bool in_key_ = false;
};

}  // namespace

Status MsgpackView::Parse(std::string_view in, MsgpackView* out, const DecodeLimits& limits) {
  if (in.size() > limits.max_size) {
    return ResourceExhausted("msgpack: input of " + std::to_string(in.size()) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_size));
  }
  if (in.empty()) return InvalidArgument("msgpack: empty input");
  Validator validator(in.size(), limits);
  size_t offset = 0;
  bool ok = false;
  try {
    ok = msgpack::parse(in.data(), in.size(), offset, validator);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("msgpack: ") + e.what());
  }
  Status s = validator.TakeStatus();
  if (!s.ok()) return s;
  if (!ok) return InvalidArgument("msgpack: malformed input");
  if (offset != in.size()) {
    return InvalidArgument("msgpack: " + std::to_string(in.size() - offset) + " trailing bytes after the value");
  }
  *out = MsgpackView(in.data(), in.data() + in.size());
  return Status::Ok();
}

Value::Type MsgpackView::type() const { return ReadHead(p_).type; }
bool MsgpackView::as_bool() const { return ReadHead(p_).b; }
int64_t MsgpackView::as_int() const { return ReadHead(p_).i; }
uint64_t MsgpackView::as_uint() const { return ReadHead(p_).u; }
double MsgpackView::as_double() const {
  Head h = ReadHead(p_);
  switch (h.type) {
    case Value::Type::kInt: return static_cast<double>(h.i);
    case Value::Type::kUint: return static_cast<double>(h.u);
    default: return h.d;
  }
}
std::string_view MsgpackView::as_string() const {
  Head h = ReadHead(p_);
  return h.type == Value::Type::kString ? std::string_view(h.payload, h.n) : std::string_view();
}
std::string_view MsgpackView::as_bytes() const {
  Head h = ReadHead(p_);
  return h.type == Value::Type::kBytes ? std::string_view(h.payload, h.n) : std::string_view();
}
size_t MsgpackView::size() const {
  Head h = ReadHead(p_);
  return h.type == Value::Type::kArray || h.type == Value::Type::kMap ? h.n : 0;
}

MsgpackView MsgpackView::at(size_t i) const {
  Head h = ReadHead(p_);
  const char* q = h.payload;
  for (size_t k = 0; k < i; ++k) q = Skip(q);
  return MsgpackView(q, Skip(q));
}

bool MsgpackView::Find(std::string_view key, MsgpackView* value) const {
  Head h = ReadHead(p_);
  if (h.type != Value::Type::kMap) return false;
  bool found = false;
  const char* q = h.payload;
  for (uint32_t k = 0; k < h.n; ++k) {
    Head kh = ReadHead(q);
    const char* v = Skip(q);
    const char* next = Skip(v);
    if (std::string_view(kh.payload, kh.n) == key) {
      *value = MsgpackView(v, next);
      found = true;  // keep going: the last duplicate wins
    }
    q = next;
  }
  return found;
}

Value MsgpackView::ToValue() const {
  Value v;
  // The buffer was validated with limits at least as strict as any caller's.
  (void)DecodeMsgpack(encoded(), &v, DecodeLimits{SIZE_MAX, UINT32_MAX, SIZE_MAX});
  return v;
}

// Out of line so the header needs no msgpack internals.
namespace internal {
void ForEachArray(const char* p, void (*fn)(void*, MsgpackView), void* ctx) {
  Head h = ReadHead(p);
  const char* q = h.payload;
  for (uint32_t k = 0; k < h.n; ++k) {
    const char* next = Skip(q);
    fn(ctx, MsgpackViewAccess::Make(q, next));
    q = next;
  }
}
void ForEachMap(const char* p, void (*fn)(void*, std::string_view, MsgpackView), void* ctx) {
  Head h = ReadHead(p);
  const char* q = h.payload;
  for (uint32_t k = 0; k < h.n; ++k) {
    Head kh = ReadHead(q);
    const char* v = Skip(q);
    const char* next = Skip(v);
    fn(ctx, std::string_view(kh.payload, kh.n), MsgpackViewAccess::Make(v, next));
    q = next;
  }
}
}  // namespace internal

}  // namespace lever
