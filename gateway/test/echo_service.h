// A core.LeverRPC instance for the gateway's tests and benchmark (a test
// double, not the Lever server runtime). Behaviour by the method of the
// `lever-url` metadata:
//   unary   echo         reply byte_result = request byte_args
//           headers      reply byte_result = the request metadata, "k=v\n", sorted
//           block        wait until the call is cancelled (counts it)
//   stream  echoChan     empty first message, then echo each message until half-close
//           downloadChan empty first message, then N bytes (N = decimal byte_args of the
//                        first message) in 64 KiB byte_message chunks
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "leverrpc.grpc.pb.h"

namespace lever::gateway::testing {

class EchoService final : public core::LeverRPC::Service {
 public:
  grpc::Status HandleRPC(grpc::ServerContext* ctx, const core::RPC* request, core::RPCReply* reply) override;
  grpc::Status HandleStreamingRPC(grpc::ServerContext* ctx,
                                  grpc::ServerReaderWriter<core::StreamMessage, core::StreamMessage>* stream) override;

  // Observations for tests.
  std::atomic<int> blocked{0};      // block calls that started
  std::atomic<int> cancelled{0};    // block calls that saw IsCancelled()
  std::atomic<int64_t> download_sent{0};
  std::mutex mu;
  std::condition_variable cv;  // notified on every change above
  void Notify() {
    std::lock_guard<std::mutex> lock(mu);
    cv.notify_all();
  }
};

// The unary `echo` alone on gRPC's callback API: no thread hand-off and no
// thread churn, the fairer instance for the benchmark. Other methods and
// streams answer UNIMPLEMENTED.
class CallbackEchoService final : public core::LeverRPC::CallbackService {
 public:
  grpc::ServerUnaryReactor* HandleRPC(grpc::CallbackServerContext* ctx, const core::RPC* request,
                                      core::RPCReply* reply) override;
  grpc::ServerBidiReactor<core::StreamMessage, core::StreamMessage>* HandleStreamingRPC(
      grpc::CallbackServerContext* ctx) override;
};

// A gRPC server with an EchoService (or, with `callback`, a
// CallbackEchoService) on `address` (e.g. "unix:/tmp/x.sock").
struct EchoServer {
  EchoService service;
  CallbackEchoService callback_service;
  std::unique_ptr<grpc::Server> server;
  bool Start(const std::string& address, bool callback = false);
  ~EchoServer();
};

}  // namespace lever::gateway::testing
