// Round trips on loopback: the Lever client and server runtime next to a
// plain gRPC C++ echo service (callback generic service, ByteBuffer echo, no
// Lever encoding) in the same process, on the same kinds of sockets.
//
//   rpc_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <memory>

#include "lever/client.h"
#include "lever/server.h"

namespace {

const std::string kPayload(64, 'p');

// ---- plain gRPC echo ---------------------------------------------------------

class EchoReactor final : public grpc::ServerGenericBidiReactor {
 public:
  EchoReactor() { StartRead(&buf_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&buf_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    StartRead(&buf_);
  }
  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer buf_;
};

class EchoService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    return new EchoReactor;
  }
};

struct Env {
  std::string dir;
  std::string unix_addr, grpc_unix_addr;
  int tcp_port = 0, grpc_tcp_port = 0;
  std::unique_ptr<lever::Server> lever_unix, lever_tcp;
  EchoService echo;
  std::unique_ptr<grpc::Server> grpc_server;

  Env() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lever-bench-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    unix_addr = "unix:" + dir + "/lever.sock";
    grpc_unix_addr = "unix:" + dir + "/grpc.sock";
    lever_unix = MakeLever(unix_addr);
    lever_tcp = MakeLever("127.0.0.1:0");
    tcp_port = lever_tcp->port();
    grpc::ServerBuilder b;
    b.AddListeningPort(grpc_unix_addr, grpc::InsecureServerCredentials());
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &grpc_tcp_port);
    b.RegisterCallbackGenericService(&echo);
    grpc_server = b.BuildAndStart();
  }

  static std::unique_ptr<lever::Server> MakeLever(const std::string& addr) {
    lever::ServerOptions o;
    o.listen_addr = addr;
    auto s = std::make_unique<lever::Server>(o);
    (void)s->Handle("echo", [](const lever::CallContext&, lever::Array& a) { return lever::Result::Of(std::move(a[0])); });
    (void)s->Handle(
        "echoInline", [](const lever::CallContext&, lever::Array& a) { return lever::Result::Of(std::move(a[0])); },
        lever::HandlerOptions{.run_inline = true});
    (void)s->HandleStream("echoChan", [](lever::ServerStreamPtr st) {
      for (lever::Result m = st->Receive(); m.ok(); m = st->Receive()) {
        if (!st->Send(m.value).ok()) return;
      }
    });
    // The same echo as callbacks (what the Node/Go bindings do): no handler
    // thread wakes up per message.
    (void)s->HandleStream(
        "echoAsyncChan",
        [](lever::ServerStreamPtr st) {
          auto step = std::make_shared<std::function<void(lever::Result)>>();
          *step = [st, step](lever::Result m) {
            if (!m.ok()) {
              st->Finish(lever::Result::End());
              *step = nullptr;
              return;
            }
            st->SendAsync(std::move(m.value), nullptr);
            st->ReceiveAsync(*step);
          };
          st->ReceiveAsync(*step);
        },
        lever::HandlerOptions{.run_inline = true});
    (void)s->Start();
    return s;
  }
};

Env& GetEnv() {
  static Env* env = new Env;  // lives for the process
  return *env;
}

std::string LeverTarget(bool tcp) {
  Env& e = GetEnv();
  return tcp ? "127.0.0.1:" + std::to_string(e.tcp_port) : e.unix_addr;
}

std::string GrpcTarget(bool tcp) {
  Env& e = GetEnv();
  return tcp ? "127.0.0.1:" + std::to_string(e.grpc_tcp_port) : e.grpc_unix_addr;
}

// ---- Lever --------------------------------------------------------------------

void BM_LeverUnary(benchmark::State& state, bool tcp, lever::wire::Codec codec, const char* method) {
  lever::ClientOptions o;
  o.force_host = LeverTarget(tcp);
  o.codec = codec;
  lever::Client client(o);
  lever::Endpoint ep = client.Service("dev.lever", "bench");
  for (auto _ : state) {
    lever::Result r = ep.Invoke(method, {kPayload});
    if (!r.ok()) {
      state.SkipWithError(r.ToStatus().ToString().c_str());
      break;
    }
  }
}

void BM_LeverStream(benchmark::State& state, bool tcp, lever::wire::Codec codec, const char* method) {
  lever::ClientOptions o;
  o.force_host = LeverTarget(tcp);
  o.codec = codec;
  lever::Client client(o);
  lever::ClientStreamPtr s;
  lever::Status st = client.Service("dev.lever", "bench").InvokeStream(&s, method, {});
  if (!st.ok()) {
    state.SkipWithError(st.ToString().c_str());
    return;
  }
  lever::Value msg(kPayload);
  for (auto _ : state) {
    if (!s->Send(msg).ok() || !s->Receive().ok()) {
      state.SkipWithError("stream failed");
      break;
    }
  }
  s->CloseSend();
}

// ---- plain gRPC ---------------------------------------------------------------

void BM_GrpcUnary(benchmark::State& state, bool tcp) {
  auto ch = grpc::CreateChannel(GrpcTarget(tcp), grpc::InsecureChannelCredentials());
  grpc::internal::RpcMethod method("/bench.Echo/Unary", grpc::internal::RpcMethod::NORMAL_RPC, ch);
  grpc::Slice slice(kPayload);
  for (auto _ : state) {
    grpc::ClientContext ctx;
    grpc::ByteBuffer req(&slice, 1), resp;
    grpc::Status s = grpc::internal::BlockingUnaryCall(ch.get(), method, &ctx, req, &resp);
    if (!s.ok()) {
      state.SkipWithError(s.error_message().c_str());
      break;
    }
  }
}

void BM_GrpcStream(benchmark::State& state, bool tcp) {
  auto ch = grpc::CreateChannel(GrpcTarget(tcp), grpc::InsecureChannelCredentials());
  grpc::internal::RpcMethod method("/bench.Echo/Stream", grpc::internal::RpcMethod::BIDI_STREAMING, ch);
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> rw(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(ch.get(), method, &ctx));
  grpc::Slice slice(kPayload);
  grpc::ByteBuffer req(&slice, 1), resp;
  for (auto _ : state) {
    if (!rw->Write(req) || !rw->Read(&resp)) {
      state.SkipWithError("stream failed");
      break;
    }
  }
  rw->WritesDone();
  (void)rw->Finish();
}

using lever::wire::Codec;
BENCHMARK_CAPTURE(BM_GrpcUnary, unix, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverUnary, unix_msgpack, false, Codec::kMsgpack, "echo")->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverUnary, unix_msgpack_inline, false, Codec::kMsgpack, "echoInline")->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverUnary, unix_protojson, false, Codec::kProtoJson, "echo")->UseRealTime();
BENCHMARK_CAPTURE(BM_GrpcUnary, tcp, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverUnary, tcp_msgpack, true, Codec::kMsgpack, "echo")->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverUnary, tcp_msgpack_inline, true, Codec::kMsgpack, "echoInline")->UseRealTime();
BENCHMARK_CAPTURE(BM_GrpcStream, unix, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverStream, unix_msgpack, false, Codec::kMsgpack, "echoChan")->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverStream, unix_msgpack_callbacks, false, Codec::kMsgpack, "echoAsyncChan")->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverStream, unix_protojson, false, Codec::kProtoJson, "echoChan")->UseRealTime();
BENCHMARK_CAPTURE(BM_GrpcStream, tcp, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_LeverStream, tcp_msgpack, true, Codec::kMsgpack, "echoChan")->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
