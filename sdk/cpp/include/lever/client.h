// The Lever client: calls services by Lever URL over the wire protocol
// (reference §2, §10.2–10.3).
//
//   lever::Client client;                           // options from LEVEROS_*
//   lever::Endpoint ep = client.Service("dev.lever", "helloService");
//   lever::Result r = ep.Invoke("sayHello", {"world"});
//   if (r.ok()) use(r.value);
//   else if (r.is_app_error()) remote_error(r.value);   // handler's error
//   else platform_error(r.status);                       // gRPC code + text
//
// Thread safety: Client, Endpoint and ClientStream are safe to use from any
// number of threads. Callbacks (InvokeAsync, InvokeUrlAsync,
// InvokeStreamUrlAsync, ClientStream::ReceiveAsync/SendAsync) run on gRPC's
// callback threads, or inline in the caller when the outcome is already
// known: they must not block; bounce to your own thread for long work.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lever/rpc.h"
#include "lever/status.h"
#include "lever/value.h"
#include "lever/wire.h"

namespace lever {

struct ClientOptions {
  // Dial every call to this target ("unix:/abs/path.sock" or "host:port")
  // whatever its env (the original's `forceHost`). Default: empty, meaning the
  // dial rule below.
  std::string force_host;
  // Dial rule when force_host is empty: calls to internal envs (suffix
  // `.lever`) and to the own env go to `internal_rpc_gateway` when set; other
  // envs are dialled by name as a gRPC target; with no gateway every call goes
  // to `default_host`. Defaults: LEVEROS_INTERNAL_RPC_GATEWAY, LEVEROS_IP_PORT
  // (127.0.0.1:8080) and LEVEROS_ENVIRONMENT from the process environment.
  std::string internal_rpc_gateway = DefaultGateway();
  std::string default_host = DefaultHost();
  std::string own_environment = DefaultEnvironment();
  // The codec for requests. Default kMsgpack (our servers accept it, replies
  // come back in it); use kProtoJson to call an original Lever OS 0.1 server,
  // which would read a msgpack byte_args as one bytes argument.
  wire::Codec codec = wire::Codec::kMsgpack;
  // A pooled channel unused this long is closed. Default 5 min (the
  // original's grpcUnusedTimeout). Range: > 0.
  std::chrono::milliseconds channel_idle_timeout = std::chrono::minutes(5);
  // First wait before redialling a target that refused or dropped the
  // connection (gRPC's default is 1 s; instances start in milliseconds).
  // Default 100 ms; it grows up to 5 s. Range: > 0.
  std::chrono::milliseconds reconnect_backoff = std::chrono::milliseconds(100);
  // Largest message sent or received. Default 64 MiB (the codec's limit).
  int max_message_bytes = 64 << 20;

  static std::string DefaultGateway();
  static std::string DefaultHost();
  static std::string DefaultEnvironment();
};

class Client;
class ClientStream;
using ClientStreamPtr = std::shared_ptr<ClientStream>;

// A unary call started with InvokeUrlAsync or InvokeUrlMsgpackAsync, while
// its caller may still want to cancel it. Holding the handle keeps the call's
// state (not the call) alive; drop it whenever you like.
class PendingCall {
 public:
  virtual ~PendingCall() = default;
  // Cancels the call if it has not ended: its `done` then runs (once, as
  // always, on a gRPC thread) with a CANCELLED platform error, and the server
  // sees the cancellation. Thread-safe, idempotent; a no-op once it ended.
  virtual void Cancel() = 0;
};
using PendingCallPtr = std::shared_ptr<PendingCall>;

// An open streaming call (a method whose name ends in `Chan`, `_chan` or is
// `chan`). The handshake is done when you get one. Sends and receives may
// come from several threads; each side keeps message order. Dropping the
// last reference cancels the call unless it has ended.
class ClientStream {
 public:
  virtual ~ClientStream() = default;

  // Sends a message (bytes values as byte messages). Returns once the
  // message is queued; blocks only while a few messages already wait for
  // flow control. Fails when the stream has ended; a queued message that
  // cannot be written fails a later send.
  virtual Status Send(const Value& msg) = 0;
  // Same without blocking: `done` (may be null) runs on a gRPC thread when
  // the message is written or failed.
  virtual void SendAsync(Value msg, std::function<void(Status)> done) = 0;
  // Half-closes: no more sends; the server sees the end of its input.
  virtual void CloseSend() = 0;
  // Cancels the call: both sides fail with CANCELLED.
  virtual void Cancel() = 0;
  // Blocks for the next message: kValue, kAppError (the server ended the
  // stream with an error; kEnd follows), kEnd (the server ended normally), or
  // kPlatformError (the call failed). After the end every receive returns
  // the same terminal result.
  virtual Result Receive() = 0;
  // Receive with a limit on the wait: DEADLINE_EXCEEDED platform error, that
  // does not end the stream, when nothing arrives within `timeout`.
  virtual Result Receive(std::chrono::milliseconds timeout) = 0;
  // Asynchronous receive: `done` runs on a gRPC thread (or inline when a
  // message is already waiting) with what Receive would return. Callbacks of
  // one stream never run concurrently and run in message order.
  virtual void ReceiveAsync(std::function<void(Result)> done) = 0;
};

// A service, or a resource of a service, to call.
class Endpoint {
 public:
  Endpoint(Client* client, std::string env, std::string service, std::string resource = {});

  // Unary call. Methods with streaming names are refused (INVALID_ARGUMENT).
  Result Invoke(std::string_view method, Array args, const CallOptions& options = {}) const;
  PendingCallPtr InvokeAsync(std::string_view method, Array args, const CallOptions& options,
                             std::function<void(Result)> done) const;
  // Opens a streaming call. Methods without a streaming name are refused.
  Status InvokeStream(ClientStreamPtr* out, std::string_view method, Array args,
                      const CallOptions& options = {}) const;

  const std::string& env() const { return env_; }
  const std::string& service() const { return service_; }
  const std::string& resource() const { return resource_; }

 private:
  std::string Url(std::string_view method) const;
  Client* client_;
  std::string env_, service_, resource_;
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // An empty env means the own env (LEVEROS_ENVIRONMENT).
  Endpoint Service(std::string env, std::string service);
  Endpoint Resource(std::string env, std::string service, std::string resource);

  // Calls by URL, absolute (lever://env/service[/resource]/method) or
  // relative to the own env (/service[/resource]/method).
  Result InvokeUrl(std::string_view url, Array args, const CallOptions& options = {});
  // InvokeUrl with msgpack in and out, for bindings that speak msgpack: the
  // arguments are one encoded msgpack array, and a kValue result comes back
  // as an encoded msgpack value in `*result_msgpack` (`value` stays null).
  // With the msgpack codec and one of our servers both pass through without
  // being decoded into Values. Errors come back as from InvokeUrl.
  Result InvokeUrlMsgpack(std::string_view url, std::string_view args_msgpack, const CallOptions& options,
                          std::string* result_msgpack);
  // `done` runs once, on a gRPC thread (or inline for an immediate error,
  // and then the handle is null). The handle cancels the call.
  PendingCallPtr InvokeUrlAsync(std::string_view url, Array args, const CallOptions& options,
                                std::function<void(Result)> done);
  // InvokeUrlAsync with msgpack in and out, as InvokeUrlMsgpack: a kValue
  // result comes with its encoded msgpack value as the second argument.
  PendingCallPtr InvokeUrlMsgpackAsync(std::string_view url, std::string_view args_msgpack, const CallOptions& options,
                                       std::function<void(Result, std::string result_msgpack)> done);
  Status InvokeStreamUrl(ClientStreamPtr* out, std::string_view url, Array args,
                         const CallOptions& options = {});
  // Opens a stream without blocking: `done` gets the stream or the error.
  void InvokeStreamUrlAsync(std::string_view url, Array args, const CallOptions& options,
                            std::function<void(Status, ClientStreamPtr)> done);

  // The target a URL's env is dialled at (the dial rule of ClientOptions).
  std::string TargetForEnv(std::string_view env) const;
  const ClientOptions& options() const;
  // Number of pooled channels (tests).
  size_t ChannelCountForTest() const;
  // Closes the channels idle at `now` as the periodic sweep would (tests).
  void ExpireIdleChannelsForTest(std::chrono::steady_clock::time_point now);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lever
