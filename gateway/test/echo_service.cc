#include "echo_service.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "lever/url.h"

namespace lever::gateway::testing {
namespace {

std::string MethodOf(const grpc::ServerContext* ctx) {
  auto it = ctx->client_metadata().find("lever-url");
  if (it == ctx->client_metadata().end()) return "";
  UrlView url;
  std::string text(it->second.data(), it->second.size());
  if (!ParseUrl(text, &url).ok()) return "";
  return std::string(url.method);
}

void WaitCancelled(grpc::ServerContext* ctx, EchoService* service) {
  service->blocked++;
  service->Notify();
  // The sync API has no cancel callback: poll, bounded.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!ctx->IsCancelled() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (ctx->IsCancelled()) service->cancelled++;
  service->Notify();
}

}  // namespace

grpc::Status EchoService::HandleRPC(grpc::ServerContext* ctx, const core::RPC* request, core::RPCReply* reply) {
  std::string method = MethodOf(ctx);
  if (method == "echo") {
    reply->set_byte_result(request->byte_args());
  } else if (method == "headers") {
    std::vector<std::string> lines;
    for (const auto& [k, v] : ctx->client_metadata()) {
      lines.push_back(std::string(k.data(), k.size()) + "=" + std::string(v.data(), v.size()) + "\n");
    }
    std::sort(lines.begin(), lines.end());
    std::string all;
    for (auto& l : lines) all += l;
    reply->set_byte_result(all);
  } else if (method == "block") {
    WaitCancelled(ctx, this);
    return grpc::Status::CANCELLED;
  } else {
    return grpc::Status(grpc::StatusCode::UNKNOWN, "Method not found");
  }
  return grpc::Status::OK;
}

grpc::Status EchoService::HandleStreamingRPC(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<core::StreamMessage, core::StreamMessage>* stream) {
  std::string method = MethodOf(ctx);
  core::StreamMessage first;
  if (!stream->Read(&first) || !first.has_rpc()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first message must carry rpc");
  }
  stream->Write(core::StreamMessage());  // the empty first server message
  if (method == "echoChan") {
    core::StreamMessage m;
    while (stream->Read(&m)) {
      if (!stream->Write(m)) break;
    }
    return grpc::Status::OK;
  }
  if (method == "downloadChan") {
    int64_t total = std::stoll(first.rpc().byte_args());
    core::StreamMessage m;
    m.set_byte_message(std::string(64 << 10, 'd'));
    for (int64_t sent = 0; sent < total;) {
      int64_t n = std::min<int64_t>(total - sent, 64 << 10);
      if (n != static_cast<int64_t>(m.byte_message().size())) m.set_byte_message(std::string(n, 'd'));
      if (!stream->Write(m)) return grpc::Status(grpc::StatusCode::CANCELLED, "reader went away");
      sent += n;
      download_sent.store(sent);
      Notify();
    }
    return grpc::Status::OK;
  }
  if (method == "blockChan") {
    WaitCancelled(ctx, this);
    return grpc::Status::CANCELLED;
  }
  return grpc::Status(grpc::StatusCode::UNKNOWN, "Method not found");
}

grpc::ServerUnaryReactor* CallbackEchoService::HandleRPC(grpc::CallbackServerContext* ctx,
                                                         const core::RPC* request, core::RPCReply* reply) {
  auto* reactor = ctx->DefaultReactor();
  auto it = ctx->client_metadata().find("lever-url");
  UrlView url;
  std::string text = it == ctx->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
  if (ParseUrl(text, &url).ok() && url.method == "echo") {
    reply->set_byte_result(request->byte_args());
    reactor->Finish(grpc::Status::OK);
  } else {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "only echo"));
  }
  return reactor;
}

grpc::ServerBidiReactor<core::StreamMessage, core::StreamMessage>* CallbackEchoService::HandleStreamingRPC(
    grpc::CallbackServerContext*) {
  class Unimplemented : public grpc::ServerBidiReactor<core::StreamMessage, core::StreamMessage> {
   public:
    Unimplemented() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "only unary echo")); }
    void OnDone() override { delete this; }
  };
  return new Unimplemented;
}

bool EchoServer::Start(const std::string& address, bool callback) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  if (callback) {
    builder.RegisterService(&callback_service);
  } else {
    builder.RegisterService(&service);
  }
  server = builder.BuildAndStart();
  return server != nullptr;
}

EchoServer::~EchoServer() {
  if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace lever::gateway::testing
