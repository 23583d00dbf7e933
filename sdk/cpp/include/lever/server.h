// The Lever server runtime: serves a service's methods over the wire protocol
// (reference §2.5–2.7, §7.2–7.3, §10.3).
//
//   lever::Server server;                                  // LEVEROS_LISTEN_ADDR
//   server.Handle("sayHello", [](const lever::CallContext&, lever::Array& args) {
//     return lever::Result::Of("Hello, " + args[0].as_string());
//   });
//   server.HandleStream("echoChan", [](lever::ServerStreamPtr s) {
//     for (lever::Result m = s->Receive(); m.ok(); m = s->Receive()) (void)s->Send(m.value);
//   });                                                    // return = end (OK)
//   lever::Status st = server.Start();
//   server.Wait();
//
// Threads: handlers run on the runtime's worker pool (which grows while every
// worker is busy, so handlers may block, e.g. on calls to other services),
// unless registered with HandlerOptions::run_inline. Callbacks of streams run
// on gRPC threads and must not block.
//
// Resources (fixing reference §7.3): the first call for a resource R, and an
// explicit NewResource RPC with args ["R"] (what the host sends), call the
// registered "NewResource" handler once with context().resource == R and args
// ["R"]; a CloseResource RPC calls the "CloseResource" handler and forgets R.
// Both RPCs succeed (null result) when the service registers no handler.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lever/env.h"
#include "lever/rpc.h"
#include "lever/status.h"
#include "lever/value.h"
#include "lever/wire.h"

namespace lever {

namespace internal {
struct CancelWatch;
}

// What a handler knows about its call. Valid for the handler's call.
class CallContext {
 public:
  // The lever-url as received, and its parts.
  const std::string& url() const { return url_; }
  const std::string& env() const { return env_; }
  const std::string& service() const { return service_; }
  const std::string& resource() const { return resource_; }  // empty: none
  const std::string& method() const { return method_; }
  // x-lever-src-env: the caller's env for internal calls, else empty.
  const std::string& source_env() const { return source_env_; }
  // The call's deadline; time_point::max() when it has none.
  std::chrono::system_clock::time_point deadline() const { return deadline_; }
  // The codec the caller used.
  wire::Codec codec() const { return codec_; }
  // The first value of a metadata key (lower case), or empty.
  std::string_view Metadata(std::string_view key) const;
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  // True once the caller cancelled or the deadline passed.
  bool cancelled() const;
  // Calls `fn(true)` once the caller cancels the call or its deadline passes
  // (on a gRPC thread, or here when that already happened), or `fn(false)`
  // once the call is over without that: exactly once either way, so `fn` may
  // free what it holds. Any number of watchers; thread-safe.
  void WatchCancel(std::function<void(bool cancelled)> fn) const;

  class Access;

 private:
  friend class Access;
  std::string url_, env_, service_, resource_, method_, source_env_;
  std::chrono::system_clock::time_point deadline_ = std::chrono::system_clock::time_point::max();
  wire::Codec codec_ = wire::Codec::kProtoJson;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::shared_ptr<internal::CancelWatch> cancel_;
};

// A unary call handed to an asynchronous handler. Reply exactly once, from
// any thread; dropping the last reference without replying fails the call
// with INTERNAL.
class UnaryCall {
 public:
  virtual ~UnaryCall() = default;
  virtual const CallContext& context() const = 0;
  virtual Array& args() = 0;
  // Sends the result (kValue), the application error (kAppError, in-band
  // with OK) or the platform error (kPlatformError, as the gRPC status).
  virtual void Reply(Result result) = 0;
};
using UnaryCallPtr = std::shared_ptr<UnaryCall>;

// The server side of a streaming call. The stream ends (gRPC OK) when Finish
// is called or the last reference is dropped.
class ServerStream {
 public:
  virtual ~ServerStream() = default;
  virtual const CallContext& context() const = 0;
  // The arguments of the call's first message.
  virtual Array& args() = 0;
  // Blocks for the next client message: kValue, kAppError (the client sent an
  // error message), kEnd (the client half-closed) or kPlatformError
  // (cancelled).
  virtual Result Receive() = 0;
  virtual Result Receive(std::chrono::milliseconds timeout) = 0;
  // `done` runs on a gRPC thread (or inline); callbacks never run
  // concurrently and come in message order.
  virtual void ReceiveAsync(std::function<void(Result)> done) = 0;
  // Queues the message (blocking only while a few wait for flow control);
  // fails once the call has ended.
  virtual Status Send(const Value& msg) = 0;
  virtual void SendAsync(Value msg, std::function<void(Status)> done) = 0;
  // Ends the call after the queued messages: kEnd (or a default Result)
  // ends with OK, kAppError sends an error message and then OK (the
  // original's behaviour), kPlatformError ends with that gRPC status.
  // Later calls are ignored.
  virtual void Finish(Result how = Result::End()) = 0;
};
using ServerStreamPtr = std::shared_ptr<ServerStream>;

// Handler shapes. A sync unary handler returns its Result; an async one gets
// the call and replies later; a stream handler gets the stream.
using UnaryHandler = std::function<Result(const CallContext& ctx, Array& args)>;
using AsyncUnaryHandler = std::function<void(UnaryCallPtr call)>;
using StreamHandler = std::function<void(ServerStreamPtr stream)>;

struct HandlerOptions {
  // Exact number of arguments, or -1 for any. A call with another count fails
  // with INVALID_ARGUMENT. Default -1.
  int num_args = -1;
  // Run the handler on the gRPC thread that read the request, saving a thread
  // hop. Only for handlers that never block. Default false.
  bool run_inline = false;
};

struct ServerOptions {
  // "unix:/abs/path.sock" or "host:port" (port 0 picks a free port, see
  // Server::port()). Default: LEVEROS_LISTEN_ADDR, else "0.0.0.0:3837".
  std::string listen_addr = ProcessEnv().listen_addr;
  // A listening stream socket (unix or TCP) to serve on instead of binding
  // listen_addr, which then only names it in messages. Ownership: the server
  // takes it (and closes it when it stops). Default: the socket leverd made
  // and passed in (LEVEROS_LISTEN_FD), used only while listen_addr is
  // LEVEROS_LISTEN_ADDR, and by one Server per process; -1: bind listen_addr.
  int listen_fd = ProcessEnv().listen_fd;
  // Upper bound on worker threads; the pool starts empty and grows while
  // every worker is busy. Default 1024. Range: >= 1.
  int max_workers = 1024;
  // Largest message received or sent. Default 64 MiB. Range: 1 byte to 2 GiB.
  int max_message_bytes = 64 << 20;
  // Calls that may wait for a worker once all max_workers are busy; a call
  // beyond it is answered RESOURCE_EXHAUSTED at once instead of queueing
  // without bound. Default 10000.
  size_t max_queued_calls = 10000;
  // A worker with nothing to do for this long exits; the pool grows again on
  // demand. Default 30 s. Range: > 0.
  std::chrono::milliseconds worker_idle_timeout = std::chrono::seconds(30);
  // Calls one connection may have open at once (HTTP/2
  // SETTINGS_MAX_CONCURRENT_STREAMS): the gateway holds the rest until one
  // ends, so an overload queues in bounded places. Default 1000. Range: >= 1.
  int max_concurrent_streams = 1000;
};

class Server {
 public:
  explicit Server(ServerOptions options = {});
  ~Server();  // Shuts down (no grace) if still serving.
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registration happens before Start. A name is unary or streaming by the
  // rule of IsChanMethod; registering a name of the wrong kind, twice, or
  // after Start is INVALID_ARGUMENT / FAILED_PRECONDITION.
  Status Handle(std::string name, UnaryHandler handler, HandlerOptions options = {});
  Status HandleAsync(std::string name, AsyncUnaryHandler handler, HandlerOptions options = {});
  Status HandleStream(std::string name, StreamHandler handler, HandlerOptions options = {});

  // Binds and starts serving (returns once listening).
  Status Start();
  // The bound TCP port (after Start), 0 for unix sockets.
  int port() const;
  // Whether Start served on ServerOptions::listen_fd (the socket leverd
  // passed in) instead of binding listen_addr.
  bool on_listen_fd() const;
  // Blocks until Shutdown has finished.
  void Wait();
  // Stops accepting calls, lets in-flight calls finish until `grace` passes,
  // then cancels the rest, and returns when stopped. Safe from any thread and
  // idempotent; called from a handler it starts the shutdown and returns at
  // once (Wait() then tells when it is done). Handlers still running after the
  // grace period are waited for: they should watch CallContext::cancelled().
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Resources the runtime currently knows (tests).
  std::vector<std::string> ResourcesForTest() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lever
