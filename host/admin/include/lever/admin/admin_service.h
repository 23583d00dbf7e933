// The admin service built into leverd (reference §5; admin_api.h lists its
// methods). It is a Lever service on the C++ server runtime,
// listening on a unix socket in the data dir; the host routes
// lever://admin.lever/admin//... there like any other call.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lever/host/host.h"
#include "lever/server.h"
#include "lever/status.h"

namespace lever::admin {

struct AdminOptions {
  // "unix:/abs/path.sock" to listen on. Required.
  std::string listen_addr;
  // Calls must carry metadata `lever-admin-token` with this value, except
  // those whose gateway-set `x-lever-client-addr` is a TCP loopback address
  // while `token_required` is false. Calls through an instance's internal
  // socket ("unix:...") and direct connections to the admin socket (no
  // address) always need it. Required.
  std::string token;
  // Demand the token from loopback callers too (leverd --admin-token-required).
  bool token_required = false;
  // A failed upload keeps reading (and discarding) the client's chunks until
  // its half-close, so the client sees the error (reference §5.3 second
  // reading) — but no more than this many bytes. Default 64 MiB.
  size_t max_discard_bytes = size_t{64} << 20;
  // How long a deploy waits for its new version to become live (or fail)
  // after the upload. Default 60 s; the host's start timeout fails it first.
  std::chrono::milliseconds rollout_wait{60000};
  // One line per deploy and environment change ("deployed lever://..."), for
  // leverd's log. Default: none.
  std::function<void(std::string_view line)> log;
};

// The rows of ListServices and ListInstances for `env` ("" = every
// environment), and Status: {"services": ..., "instances": ...}, which is
// both `lever ps --json` and leverd's GET /_lever/status (one source).
Status ServiceRows(host::Host& host, std::string_view env, Array* rows);
Status InstanceRows(host::Host& host, std::string_view env, Array* rows);
Status NodeStatus(host::Host& host, std::string_view env, Value* out);

// The admin access rule (AdminOptions::token): OK, or PERMISSION_DENIED
// saying what is missing. `peer` is x-lever-client-addr ("" for none).
Status CheckAdminAccess(std::string_view peer, std::string_view given_token, std::string_view token,
                        bool token_required);

class AdminService {
 public:
  static Status Start(AdminOptions options, std::shared_ptr<host::Host> host, std::unique_ptr<AdminService>* out);
  ~AdminService();
  // Lets calls in flight finish for up to `grace`.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  AdminService() = default;
  std::unique_ptr<Server> server_;
};

}  // namespace lever::admin
