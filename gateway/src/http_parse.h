// Pure pieces of the HTTP API (gateway/http_api.md): request target ->
// Lever URL, content types, JSON arguments, gRPC framing and status mapping.
// No I/O, no state: unit-tested in http_parse_test.cc and fuzzed by
// fuzz/http_request_fuzzer.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lever/status.h"
#include "lever/value.h"

namespace lever::gateway::http {

// What a POST target names.
struct Target {
  std::string env;
  std::string service;
  std::string resource;
  std::string method;
  bool streaming = false;
};

// Percent-decodes `in` (RFC 3986; `+` stays `+`, or becomes a space with
// `plus_is_space`, as in a query). False on a malformed escape.
bool PercentDecode(std::string_view in, std::string* out, bool plus_is_space = false);

// Parses a request target "/<service>[/<resource>]/<method>[?query]" and
// picks the environment: `forceenv=` in the query, else `host` without its
// port. The path is percent-decoded before it is split (reference §3:
// /svc/a%2Fb%3Ac/m is resource "a/b:c"). Returns 0 and fills `out`, or an
// HTTP status (400 malformed, 404 no routable environment) with `error` set.
int ParseTarget(std::string_view target, std::string_view host, Target* out, std::string* error);

// The admin environment, admin.lever, in any letter case.
bool IsAdminEnv(std::string_view env);

// The media type of a Content-Type value, lower-cased, without parameters.
std::string MediaType(std::string_view content_type);
// application/json (unary and streaming) or application/x-ndjson (streaming).
bool IsJsonBody(std::string_view content_type, bool streaming);

// A JSON argument list: an array (its elements) or `null` (no arguments).
// Returns 0 or 400 with `error` set.
int ParseArgs(std::string_view text, Array* args, std::string* error);

// "Lever-Timeout" values: "250ms", "2s", "1m" or a bare number of
// milliseconds. False when malformed or not positive.
bool ParseTimeout(std::string_view text, int64_t* millis);

// The HTTP status for a gRPC status code (http_api.md).
int HttpStatusFor(Code code);
// The reason phrase of a status this API sends.
std::string_view Reason(int status);

// `text` as a JSON string literal (error bodies).
std::string JsonString(std::string_view text);

// Decodes the percent-encoding of a grpc-message value.
std::string DecodeGrpcMessage(std::string_view in);

// Appends a gRPC length-prefixed message (uncompressed).
void AppendGrpcFrame(std::string_view message, std::string* out);

// A unary reply (an RPCReply of `message_len` bytes, of which `prefix` is the
// start) whose only member is byte_result (2) or byte_error (4) and spans the
// whole message, so that its payload can go to the client as it arrives:
// returns 1 and sets `*is_error` and `*header` (the bytes before the
// payload), 0 when the message is anything else (the caller buffers and
// decodes it), -1 when `prefix` is too short to tell.
int RawReplyHead(std::string_view prefix, size_t message_len, bool* is_error, size_t* header);

// Splits a buffer of gRPC frames: returns the frames' total consumed bytes
// and calls `f(message)` for each complete one. Stops at the first
// incomplete frame. Returns -1 on a compressed frame or one longer than
// `max_message` (the caller fails the call).
template <typename F>
int64_t ForEachGrpcFrame(std::string_view in, size_t max_message, F&& f) {
  size_t pos = 0;
  while (in.size() - pos >= 5) {
    auto* p = reinterpret_cast<const uint8_t*>(in.data() + pos);
    if (p[0] != 0) return -1;
    size_t len = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) | (size_t{p[3]} << 8) | size_t{p[4]};
    if (len > max_message) return -1;
    if (in.size() - pos - 5 < len) break;
    if (!f(in.substr(pos + 5, len))) return -1;
    pos += 5 + len;
  }
  return static_cast<int64_t>(pos);
}

}  // namespace lever::gateway::http
