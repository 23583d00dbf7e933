// Types shared by the Lever client and server runtime.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lever/status.h"
#include "lever/value.h"

namespace lever {

// The outcome of a call or of one stream receive. It tells apart the three
// ways a Lever call can end (reference §2.5–2.7):
//  - kValue: a result (unary) or a data message (stream) in `value`;
//  - kAppError: the remote handler returned an error; `value` is the remote
//    error value (a string for errors with only a message, bytes for byte
//    errors). It travelled in-band with gRPC status OK;
//  - kEnd: a stream ended normally (the peer half-closed or returned);
//  - kPlatformError: the platform failed the call (transport, routing, the
//    server runtime, deadline, cancel): `status` holds the gRPC code and text.
struct Result {
  enum class Kind : uint8_t { kValue, kAppError, kEnd, kPlatformError };

  Kind kind = Kind::kValue;
  Value value;
  Status status;

  static Result Of(Value v) { return Result{Kind::kValue, std::move(v), {}}; }
  static Result AppError(Value v) { return Result{Kind::kAppError, std::move(v), {}}; }
  static Result End() { return Result{Kind::kEnd, {}, {}}; }
  static Result Failed(Status s) { return Result{Kind::kPlatformError, {}, std::move(s)}; }

  bool ok() const { return kind == Kind::kValue; }
  bool is_app_error() const { return kind == Kind::kAppError; }
  bool is_end() const { return kind == Kind::kEnd; }
  bool is_platform_error() const { return kind == Kind::kPlatformError; }
  // OK for kValue and kEnd; the platform status for kPlatformError; for an
  // application error UNKNOWN with the error's text (a string error is used
  // as is, anything else as JSON), for code that only wants a Status.
  Status ToStatus() const;
};

// The message of the DEADLINE_EXCEEDED platform error that a stream receive
// with a timeout returns when nothing arrived in time (the stream goes on).
inline constexpr std::string_view kReceiveTimeoutMessage = "no stream message within the timeout";

// Per-call options of the client.
struct CallOptions {
  // Deadline relative to the start of the call. Default: none (zero). A call
  // past its deadline fails with DEADLINE_EXCEEDED and the server sees it
  // cancelled.
  std::chrono::milliseconds timeout{0};
  // Wait for the target to become reachable instead of failing at once with
  // UNAVAILABLE (the original 2016 client always waited). Default: false.
  bool wait_for_ready = false;
  // Extra request metadata (gRPC headers), e.g. {"lever-admin-token", token}
  // for an admin call. Keys lower-case; values printable ASCII. The
  // platform's own keys (lever-url, lever-codec, x-*) are not for this.
  std::vector<std::pair<std::string, std::string>> metadata;
};

}  // namespace lever
