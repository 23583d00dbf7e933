#include "lever/wire.h"

#include "lever/msgpack.h"
#include "lever/proto_json.h"

namespace lever::wire {
namespace {

constexpr uint8_t kWireVarint = 0;
constexpr uint8_t kWireFixed64 = 1;
constexpr uint8_t kWireLen = 2;
constexpr uint8_t kWireFixed32 = 5;

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutLenField(uint32_t field, std::string_view payload, std::string* out) {
  out->push_back(static_cast<char>((field << 3) | kWireLen));
  PutVarint(payload.size(), out);
  out->append(payload);
}

// Writes the tag and a placeholder-free length for a payload produced by
// `fill` into a scratch string; protobuf needs the length before the payload.
template <typename Fill>
Status PutLenFieldFrom(uint32_t field, std::string* out, Fill&& fill) {
  std::string payload;
  Status s = fill(&payload);
  if (!s.ok()) return s;
  PutLenField(field, payload, out);
  return Status::Ok();
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

// One field of a message: its number, wire type and (for kWireLen) payload.
struct Field {
  uint32_t number = 0;
  uint8_t type = 0;
  std::string_view payload;
};

// Reads the next field, skipping the value of non-length-delimited ones.
bool NextField(std::string_view* in, Field* f) {
  uint64_t tag;
  if (!GetVarint(in, &tag)) return false;
  f->number = static_cast<uint32_t>(tag >> 3);
  f->type = static_cast<uint8_t>(tag & 7);
  if (f->number == 0) return false;
  switch (f->type) {
    case kWireVarint: {
      uint64_t ignored;
      return GetVarint(in, &ignored);
    }
    case kWireFixed64:
      if (in->size() < 8) return false;
      in->remove_prefix(8);
      return true;
    case kWireFixed32:
      if (in->size() < 4) return false;
      in->remove_prefix(4);
      return true;
    case kWireLen: {
      uint64_t len;
      if (!GetVarint(in, &len) || len > in->size()) return false;
      f->payload = in->substr(0, len);
      in->remove_prefix(len);
      return true;
    }
    default:
      return false;
  }
}

// The msgpack array header, so that arguments are encoded without first
// copying them into one Value.
void PutMsgpackArrayHeader(size_t n, std::string* out) {
  if (n < 16) {
    out->push_back(static_cast<char>(0x90 | n));
  } else if (n <= 0xffff) {
    out->push_back(static_cast<char>(0xdc));
    out->push_back(static_cast<char>(n >> 8));
    out->push_back(static_cast<char>(n));
  } else {
    out->push_back(static_cast<char>(0xdd));
    for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(n >> shift));
  }
}

Status Malformed(std::string_view what) { return InvalidArgument("malformed " + std::string(what) + " message"); }

// Encodes one value into a JSON member (field_json) or bytes member
// (field_bytes) according to the codec.
Status PutValue(const Value& v, uint32_t field_json, uint32_t field_bytes, Codec codec, std::string* out) {
  if (codec == Codec::kMsgpack) {
    std::string payload;
    EncodeMsgpack(v, &payload);
    PutLenField(field_bytes, payload, out);
    return Status::Ok();
  }
  if (v.is_bytes()) {
    PutLenField(field_bytes, v.as_bytes().view(), out);
    return Status::Ok();
  }
  return PutLenFieldFrom(field_json, out, [&](std::string* p) { return EncodeProtoJson(v, p); });
}

// Decodes a bytes member according to the codec.
Status GetBytesValue(std::string_view payload, Codec codec, Value* v, const DecodeLimits& limits) {
  if (codec == Codec::kMsgpack) return DecodeMsgpack(payload, v, limits);
  if (payload.size() > limits.max_size) return ResourceExhausted("bytes value larger than max_size");
  *v = Value::FromBytes(std::string(payload));
  return Status::Ok();
}

Status DecodeArgs(uint32_t number, std::string_view payload, Codec codec, Array* args, const DecodeLimits& limits) {
  args->clear();
  if (number == 1) return DecodeProtoJsonArray(payload, args, limits);
  // byte_args
  if (codec == Codec::kMsgpack) {
    Value v;
    Status s = DecodeMsgpack(payload, &v, limits);
    if (!s.ok()) return s;
    if (!v.is_array()) return InvalidArgument("msgpack byte_args must be an array");
    *args = std::move(v.as_array());
    return Status::Ok();
  }
  if (payload.size() > limits.max_size) return ResourceExhausted("byte_args larger than max_size");
  args->push_back(Value::FromBytes(std::string(payload)));
  return Status::Ok();
}

// Finds the last member of the oneof among fields [1, max_field] that are
// length-delimited (every member of these messages is).
Status LastMember(std::string_view in, uint32_t max_field, std::string_view what, Field* member, bool* found) {
  *found = false;
  Field f;
  while (!in.empty()) {
    if (!NextField(&in, &f)) return Malformed(what);
    if (f.number >= 1 && f.number <= max_field) {
      if (f.type != kWireLen) return Malformed(what);
      *member = f;
      *found = true;
    }
  }
  return Status::Ok();
}

}  // namespace

Status EncodeRpc(const Array& args, Codec codec, std::string* out) {
  if (codec == Codec::kMsgpack) {
    std::string payload;
    PutMsgpackArrayHeader(args.size(), &payload);
    for (const Value& a : args) EncodeMsgpack(a, &payload);
    PutLenField(2, payload, out);
    return Status::Ok();
  }
  if (args.size() == 1 && args[0].is_bytes()) {
    PutLenField(2, args[0].as_bytes().view(), out);
    return Status::Ok();
  }
  return PutLenFieldFrom(1, out, [&](std::string* p) { return EncodeProtoJsonArray(args, p); });
}

Status DecodeRpc(std::string_view in, Codec codec, Array* args, const DecodeLimits& limits) {
  Field member;
  bool found;
  Status s = LastMember(in, 2, "RPC", &member, &found);
  if (!s.ok()) return s;
  if (!found) return InvalidArgument("RPC has no args");
  return DecodeArgs(member.number, member.payload, codec, args, limits);
}

void EncodeRpcMsgpackArray(std::string_view msgpack_array, std::string* out) { PutLenField(2, msgpack_array, out); }

Status SplitReply(std::string_view in, uint32_t* field, std::string_view* payload) {
  Field member;
  bool found;
  Status s = LastMember(in, 4, "RPCReply", &member, &found);
  if (!s.ok()) return s;
  if (!found) return Status(Code::kInternal, "reply has no result");
  *field = member.number;
  *payload = member.payload;
  return Status::Ok();
}

Status EncodeReply(const Value& v, bool is_error, Codec codec, std::string* out) {
  return is_error ? PutValue(v, 3, 4, codec, out) : PutValue(v, 1, 2, codec, out);
}

Status DecodeReply(std::string_view in, Codec codec, Value* v, bool* is_error, const DecodeLimits& limits) {
  Field member;
  bool found;
  Status s = LastMember(in, 4, "RPCReply", &member, &found);
  if (!s.ok()) return s;
  if (!found) return Status(Code::kInternal, "reply has no result");
  *is_error = member.number >= 3;
  if (member.number == 1 || member.number == 3) return DecodeProtoJson(member.payload, v, limits);
  return GetBytesValue(member.payload, codec, v, limits);
}

Status EncodeStreamRpc(const Array& args, Codec codec, std::string* out) {
  return PutLenFieldFrom(1, out, [&](std::string* p) { return EncodeRpc(args, codec, p); });
}

Status EncodeStreamValue(const Value& v, bool is_error, Codec codec, std::string* out) {
  return is_error ? PutValue(v, 4, 5, codec, out) : PutValue(v, 2, 3, codec, out);
}

Status DecodeStreamMessage(std::string_view in, Codec codec, StreamKind* kind, Value* value, Array* args,
                           const DecodeLimits& limits) {
  Field member;
  bool found;
  Status s = LastMember(in, 5, "StreamMessage", &member, &found);
  if (!s.ok()) return s;
  if (!found) {
    *kind = StreamKind::kEmpty;
    return Status::Ok();
  }
  switch (member.number) {
    case 1: {
      *kind = StreamKind::kRpc;
      Field rpc_member;
      s = LastMember(member.payload, 2, "RPC", &rpc_member, &found);
      if (!s.ok()) return s;
      if (!found) return InvalidArgument("RPC has no args");
      return DecodeArgs(rpc_member.number, rpc_member.payload, codec, args, limits);
    }
    case 2:
      *kind = StreamKind::kMessage;
      return DecodeProtoJson(member.payload, value, limits);
    case 3:
      *kind = StreamKind::kMessage;
      return GetBytesValue(member.payload, codec, value, limits);
    case 4:
      *kind = StreamKind::kError;
      return DecodeProtoJson(member.payload, value, limits);
    default:
      *kind = StreamKind::kError;
      return GetBytesValue(member.payload, codec, value, limits);
  }
}

}  // namespace lever::wire
