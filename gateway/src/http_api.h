// The HTTP/1.1 API (private). See gateway/http_api.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io.h"
#include "lever/gateway/gateway.h"

namespace lever::gateway {

class WorkerImpl;

// Takes over a sniffed HTTP/1.1 connection on its worker.
void StartHttpApi(WorkerImpl* w, Socket socket, std::string already_read, const HttpApiOptions& options);

// Sums the counters of a gateway's workers.
GatewayStats SumStats(const std::vector<std::shared_ptr<WorkerImpl>>& workers);

}  // namespace lever::gateway
