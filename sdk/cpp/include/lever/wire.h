// The top-level messages of the Lever wire protocol (reference §2.2, §2.5,
// §2.7), encoded and decoded in protobuf wire format by hand:
//
//   RPC           { oneof { JSONArray args = 1; bytes byte_args = 2; } }
//   RPCReply      { oneof { JSON result = 1; bytes byte_result = 2;
//                           JSON error = 3;  bytes byte_error = 4; } }
//   StreamMessage { oneof { RPC rpc = 1; JSON message = 2; bytes byte_message = 3;
//                           JSON error = 4; bytes byte_error = 5; } }
//
// Why by hand and not with the generated classes of leverrpc.proto: each of
// these messages is a single oneof around one payload, so writing it is one
// tag byte, one varint and the payload, which the codec already produces in
// wire format (EncodeProtoJson*) or as msgpack. Going through libprotobuf would
// build a message tree only to serialise it again. The tests check the bytes
// against the generated classes.
//
// Two codecs (DESIGN.md "Wire protocol"):
//  - kProtoJson, the original: values travel as JSON messages, except that a
//    top-level bytes value uses the byte_* member (raw bytes) and a call whose
//    only argument is bytes uses byte_args.
//  - kMsgpack, negotiated with the `lever-codec: msgpack` metadata: the
//    arguments are one msgpack array in byte_args, and every value is a msgpack
//    value in byte_result / byte_message / byte_error.
// Decoders accept the JSON members in msgpack mode too (a peer may answer in
// proto-JSON) and never trust lengths beyond the input.
#pragma once

#include <string>
#include <string_view>

#include "lever/limits.h"
#include "lever/status.h"
#include "lever/value.h"

namespace lever::wire {

enum class Codec : uint8_t { kProtoJson, kMsgpack };

// Metadata keys of the protocol.
inline constexpr std::string_view kUrlKey = "lever-url";
inline constexpr std::string_view kCodecKey = "lever-codec";
inline constexpr std::string_view kCodecMsgpack = "msgpack";
inline constexpr std::string_view kSrcEnvKey = "x-lever-src-env";
inline constexpr std::string_view kGatewayKey = "x-lever-internal-rpc-gateway";

// gRPC method paths.
inline constexpr const char* kUnaryMethod = "/core.LeverRPC/HandleRPC";
inline constexpr const char* kStreamMethod = "/core.LeverRPC/HandleStreamingRPC";

// ---- RPC -------------------------------------------------------------------
// Appends an RPC message. kProtoJson fails (INVALID_ARGUMENT) when an argument
// holds bytes nested inside it, which proto-JSON cannot carry.
Status EncodeRpc(const Array& args, Codec codec, std::string* out);
// Decodes an RPC. `codec` says how byte_args is read: kProtoJson gives one
// bytes argument, kMsgpack a msgpack array of arguments. An RPC with no member
// set is INVALID_ARGUMENT ("RPC has no args"), as in the original.
Status DecodeRpc(std::string_view in, Codec codec, Array* args, const DecodeLimits& limits = {});

// Appends an RPC whose byte_args is `msgpack_array`, an already encoded
// msgpack array (kMsgpack mode; the caller validated it).
void EncodeRpcMsgpackArray(std::string_view msgpack_array, std::string* out);

// ---- RPCReply --------------------------------------------------------------
// Appends an RPCReply with `v` as the result (is_error false) or the error.
Status EncodeReply(const Value& v, bool is_error, Codec codec, std::string* out);
// Decodes an RPCReply. A reply with no member set is INTERNAL ("reply has no
// result"), as the original clients treat it.
Status DecodeReply(std::string_view in, Codec codec, Value* v, bool* is_error,
                   const DecodeLimits& limits = {});

// The member an RPCReply sets (1 result, 2 byte_result, 3 error, 4
// byte_error) and its undecoded payload, for pass-through.
Status SplitReply(std::string_view in, uint32_t* field, std::string_view* payload);

// ---- StreamMessage ---------------------------------------------------------
enum class StreamKind : uint8_t {
  kEmpty,    // no member: only valid as the server's first message
  kRpc,      // the client's first message: `args` holds the call's arguments
  kMessage,  // a data message: `value`
  kError,    // an application error: `value`; the sender ends the stream
};
// Appends a StreamMessage carrying an RPC (the client's first message).
Status EncodeStreamRpc(const Array& args, Codec codec, std::string* out);
// Appends a data (is_error false) or error StreamMessage.
Status EncodeStreamValue(const Value& v, bool is_error, Codec codec, std::string* out);
// Decodes a StreamMessage. kRpc fills `args`, kMessage/kError fill `value`.
Status DecodeStreamMessage(std::string_view in, Codec codec, StreamKind* kind, Value* value, Array* args,
                           const DecodeLimits& limits = {});

}  // namespace lever::wire
