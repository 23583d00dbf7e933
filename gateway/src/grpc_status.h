// gRPC status helpers for the relay's own (platform) errors.
#pragma once

#include <string>
#include <string_view>

namespace lever::gateway {

// Appends `message` percent-encoded as the gRPC spec wants for grpc-message:
// bytes outside 0x20..0x7E, and '%', become %XX (upper-case hex).
void PercentEncodeGrpcMessage(std::string_view message, std::string* out);

}  // namespace lever::gateway
