// The HTTP/1.1 API (private). See gateway/http_api.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http_parse.h"
#include "io.h"
#include "lever/gateway/gateway.h"

namespace lever::gateway {

class WorkerImpl;
class Downstream;
struct Stream;

// Takes over a sniffed HTTP/1.1 connection on its worker.
void StartHttpApi(WorkerImpl* w, Socket socket, std::string already_read, const HttpApiOptions& options);

// Opens the gRPC call of an HTTP exchange (a POST, a WebSocket) on a new
// relay Stream whose response side is `d`, and routes it like any call:
// `grpc_path` is wire::kUnaryMethod or kStreamMethod, `initial` the first
// request bytes (gRPC frames), `eof` whether they are all; `admin_token`,
// when set, goes as lever-admin-token (admin.lever calls only);
// `timeout_ms` > 0 is the call's grpc-timeout.
Stream* OpenHttpCall(WorkerImpl* w, Downstream* d, const http::Target& target, const char* grpc_path,
                     std::string_view admin_token, std::string_view initial, bool eof, int64_t timeout_ms = 0);

// Sums the counters of a gateway's workers.
GatewayStats SumStats(const std::vector<std::shared_ptr<WorkerImpl>>& workers);

}  // namespace lever::gateway
