// The proto-JSON messages of the original wire protocol (reference §2.2–2.3),
// encoded and decoded directly in protobuf wire format, without libprotobuf:
//
//   JSON        { oneof { string json_string = 1; double json_number = 2;
//                         bool json_bool = 3; JSONObject json_object = 4;
//                         JSONArray json_array = 5; } }   // none set = null
//   JSONObject  { repeated JSONProperty property = 1; }
//   JSONArray   { repeated JSON element = 1; }
//   JSONProperty{ string name = 1; JSON value = 2; }       // absent value = null
//
// Encoding follows §2.3: every member of a oneof is written when set, even a
// zero value ("" , 0, false, empty array/object are present with their tag); a
// property's value is always written (null as an empty JSON message); an empty
// property name is omitted as proto3 does. The output is byte-identical to what
// libprotobuf produces for the same message (tests check this).
//
// Numbers: proto-JSON has only doubles. Integers are written as the nearest
// double (exact up to 2^53, as in the original). On decode a json_number that
// is integral with magnitude ≤ 2^53 (and not -0.0) becomes kInt, anything else
// kDouble: integers round-trip exactly within JavaScript's safe range, and
// larger ones come back as doubles. Use the msgpack codec (DESIGN.md,
// `lever-codec: msgpack`) for exact 64-bit integers.
// Bytes cannot appear inside proto-JSON: encoding a Value that holds kBytes is
// INVALID_ARGUMENT (a single bytes argument travels in byte_args instead).
// Strings must be valid UTF-8 in both directions (proto3 requires it).
// Decoding skips unknown fields, lets the last oneof member win, and merges a
// repeated array or object member as protobuf does.
#pragma once

#include <string>
#include <string_view>

#include "lever/limits.h"
#include "lever/status.h"
#include "lever/value.h"

namespace lever {

// Appends the bytes of a `JSON` message for `v`.
Status EncodeProtoJson(const Value& v, std::string* out);
// Appends the bytes of a `JSONArray` message for `elements` (an RPC's `args`).
Status EncodeProtoJsonArray(const Array& elements, std::string* out);

// Decodes a `JSON` message.
Status DecodeProtoJson(std::string_view in, Value* out, const DecodeLimits& limits = {});
// Decodes a `JSONArray` message into its elements.
Status DecodeProtoJsonArray(std::string_view in, Array* out, const DecodeLimits& limits = {});

}  // namespace lever
