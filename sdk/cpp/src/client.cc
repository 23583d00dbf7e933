#include "lever/client.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <thread>
#include <optional>
#include <unordered_map>

#include "buffers.h"
#include "lever/env.h"
#include "lever/json.h"
#include "lever/msgpack.h"
#include "lever/url.h"
#include "stream_base.h"

namespace lever {

Status Result::ToStatus() const {
  switch (kind) {
    case Kind::kValue:
    case Kind::kEnd:
      return Status::Ok();
    case Kind::kPlatformError:
      return status;
    case Kind::kAppError: {
      if (value.is_string()) return Status(Code::kUnknown, value.as_string());
      std::string text;
      JsonWriteOptions o;
      o.bytes_as_base64 = true;
      o.nonfinite_as_null = true;
      if (!WriteJson(value, &text, o).ok()) text = "remote error";
      return Status(Code::kUnknown, text);
    }
  }
  return Status::Ok();
}

std::string ClientOptions::DefaultGateway() { return ProcessEnv().internal_rpc_gateway; }
std::string ClientOptions::DefaultHost() { return ProcessEnv().ip_port; }
std::string ClientOptions::DefaultEnvironment() { return ProcessEnv().environment; }

namespace {

using grpc::internal::RpcMethod;

Status FromGrpc(const grpc::Status& s) {
  return Status(static_cast<Code>(s.error_code()), s.error_message());
}

// The codec the server answered in: its initial metadata echoes lever-codec.
wire::Codec ReplyCodec(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerInitialMetadata();
  auto it = md.find(grpc::string_ref(wire::kCodecKey.data(), wire::kCodecKey.size()));
  if (it != md.end() && std::string_view(it->second.data(), it->second.size()) == wire::kCodecMsgpack) {
    return wire::Codec::kMsgpack;
  }
  return wire::Codec::kProtoJson;
}

Result DecodeUnaryReply(const grpc::Status& st, const grpc::ClientContext& ctx, const grpc::ByteBuffer& response) {
  if (!st.ok()) return Result::Failed(FromGrpc(st));
  internal::FlatBytes flat(response);
  Value v;
  bool is_error = false;
  Status s = wire::DecodeReply(flat.view(), ReplyCodec(ctx), &v, &is_error);
  if (!s.ok()) return Result::Failed(Status(s.code() == Code::kInvalidArgument ? Code::kInternal : s.code(),
                                            "bad reply from server: " + s.message()));
  return is_error ? Result::AppError(std::move(v)) : Result::Of(std::move(v));
}

// A pooled channel with its registered methods (registration saves gRPC the
// per-call interning of the method path).
struct ChannelEntry {
  explicit ChannelEntry(std::shared_ptr<grpc::Channel> ch)
      : channel(std::move(ch)),
        unary(wire::kUnaryMethod, RpcMethod::NORMAL_RPC, channel),
        stream(wire::kStreamMethod, RpcMethod::BIDI_STREAMING, channel) {}
  std::shared_ptr<grpc::Channel> channel;
  RpcMethod unary;
  RpcMethod stream;
  std::chrono::steady_clock::time_point last_used;
};

// Destroys channels on a thread of its own. The last reference to a channel
// is often dropped on a gRPC callback thread (a finished call releasing its
// pooled entry after the pool expired it or the Client went away), and
// destroying a grpc::Channel there can release gRPC's shared callback
// completion queue from one of its own threads, which gRPC 1.51 turns into a
// double free. Channels are destroyed rarely, so one lazy thread suffices.
class ChannelReaper {
 public:
  static ChannelReaper& Get() {
    static ChannelReaper* reaper = new ChannelReaper;  // never destroyed: safe at exit
    return *reaper;
  }
  void Reap(ChannelEntry* e) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(e);
    if (!started_) {
      started_ = true;
      std::thread([this] { Run(); }).detach();
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return !queue_.empty(); });
      ChannelEntry* e = queue_.front();
      queue_.pop_front();
      lock.unlock();
      delete e;
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ChannelEntry*> queue_;
  bool started_ = false;
};

std::shared_ptr<ChannelEntry> MakeChannelEntry(std::shared_ptr<grpc::Channel> ch) {
  return std::shared_ptr<ChannelEntry>(new ChannelEntry(std::move(ch)),
                                       [](ChannelEntry* e) { ChannelReaper::Get().Reap(e); });
}

}  // namespace

// ---------------------------------------------------------------------------
class Client::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {}

  std::shared_ptr<ChannelEntry> Channel(const std::string& target) {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (now - last_sweep_ > std::chrono::seconds(1)) {
      last_sweep_ = now;
      SweepLocked(now);
    }
    auto& slot = pool_[target];
    if (!slot) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(options_.max_message_bytes);
      args.SetMaxSendMessageSize(options_.max_message_bytes);
      int backoff = static_cast<int>(options_.reconnect_backoff.count());
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, backoff);
      // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the
      // minimum connect timeout, so 100 ms there failed connects under load.
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, std::max(backoff, 5000));
      slot = MakeChannelEntry(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
    }
    slot->last_used = now;
    return slot;
  }

  // Drops pooled channels idle longer than the timeout; calls in flight keep
  // their entry alive until they end.
  void SweepLocked(std::chrono::steady_clock::time_point now) {
    for (auto it = pool_.begin(); it != pool_.end();) {
      if (now - it->second->last_used > options_.channel_idle_timeout) {
        it = pool_.erase(it);
      } else {
        ++it;
      }
    }
  }
  void Sweep(std::chrono::steady_clock::time_point now) {
    std::lock_guard<std::mutex> lock(mu_);
    SweepLocked(now);
  }

  size_t ChannelCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return pool_.size();
  }

  std::string TargetForEnv(std::string_view env) const {
    if (!options_.force_host.empty()) return options_.force_host;
    if (options_.internal_rpc_gateway.empty()) return options_.default_host;
    if (IsInternalEnv(env) || env == options_.own_environment) return options_.internal_rpc_gateway;
    return std::string(env);
  }

  // Resolves a URL to its absolute form and dial target.
  Status Resolve(std::string_view text, bool streaming, std::string* absolute, std::string* target) {
    UrlView u;
    Status s = ParseUrl(text, &u);
    if (!s.ok()) return s;
    if (IsChanMethod(u.method) != streaming) {
      return InvalidArgument(streaming ? "use Invoke for non-streaming methods" : "use InvokeStream for streaming methods");
    }
    if (u.env.empty()) {
      if (options_.own_environment.empty()) {
        return InvalidArgument("environment not specified and cannot be deduced (LEVEROS_ENVIRONMENT is unset)");
      }
      u.env = options_.own_environment;
    }
    absolute->clear();
    FormatUrl(u, absolute);
    *target = TargetForEnv(u.env);
    return Status::Ok();
  }

  void Prepare(grpc::ClientContext* ctx, const std::string& url, const CallOptions& o) const {
    ctx->AddMetadata(std::string(wire::kUrlKey), url);
    if (options_.codec == wire::Codec::kMsgpack) {
      ctx->AddMetadata(std::string(wire::kCodecKey), std::string(wire::kCodecMsgpack));
    }
    if (o.timeout.count() > 0) ctx->set_deadline(std::chrono::system_clock::now() + o.timeout);
    if (o.wait_for_ready) ctx->set_wait_for_ready(true);
    for (const auto& [key, value] : o.metadata) ctx->AddMetadata(key, value);
  }

  // One blocking unary call; `reply` turns its outcome into the Result.
  template <class Reply>
  Result Blocking(const std::string& absolute, const std::string& target, std::string encoded, const CallOptions& o,
                  Reply&& reply) {
    std::shared_ptr<ChannelEntry> ch = Channel(target);
    grpc::ClientContext ctx;
    Prepare(&ctx, absolute, o);
    grpc::ByteBuffer request = internal::ToByteBuffer(std::move(encoded)), response;
    grpc::Status st = grpc::internal::BlockingUnaryCall(ch->channel.get(), ch->unary, &ctx, request, &response);
    return reply(st, ctx, response);
  }

  Result Invoke(std::string_view url, const Array& args, const CallOptions& o) {
    std::string absolute, target, encoded;
    Status s = Resolve(url, false, &absolute, &target);
    if (s.ok()) s = wire::EncodeRpc(args, options_.codec, &encoded);
    if (!s.ok()) return Result::Failed(std::move(s));
    return Blocking(absolute, target, std::move(encoded), o, DecodeUnaryReply);
  }

  // Encodes a msgpack argument array as a request (passed through untouched
  // with the msgpack codec).
  Status EncodeMsgpackArgs(std::string_view args, std::string* encoded) const {
    MsgpackView view;
    Status s = MsgpackView::Parse(args, &view);
    if (s.ok() && view.type() != Value::Type::kArray) s = InvalidArgument("args must be a msgpack array");
    if (!s.ok()) return s;
    if (options_.codec == wire::Codec::kMsgpack) {
      wire::EncodeRpcMsgpackArray(args, encoded);
      return Status::Ok();
    }
    return wire::EncodeRpc(view.ToValue().as_array(), options_.codec, encoded);
  }

  // The reply of a msgpack call: a kValue result as msgpack in `*result`
  // (the server's bytes untouched when it answered in msgpack).
  static Result MsgpackReply(const grpc::Status& st, const grpc::ClientContext& ctx, const grpc::ByteBuffer& response,
                             std::string* result) {
    result->clear();
    if (st.ok() && ReplyCodec(ctx) == wire::Codec::kMsgpack) {
      internal::FlatBytes flat(response);
      uint32_t field = 0;
      std::string_view payload;
      MsgpackView check;
      if (wire::SplitReply(flat.view(), &field, &payload).ok() && field == 2 &&
          MsgpackView::Parse(payload, &check).ok()) {
        result->assign(payload);  // the result, untouched
        return Result::Of(nullptr);
      }
    }
    Result r = DecodeUnaryReply(st, ctx, response);
    if (r.ok()) {
      EncodeMsgpack(r.value, result);
      r.value = nullptr;
    }
    return r;
  }

  Result InvokeMsgpack(std::string_view url, std::string_view args, const CallOptions& o, std::string* result) {
    result->clear();
    std::string absolute, target, encoded;
    Status s = Resolve(url, false, &absolute, &target);
    if (s.ok()) s = EncodeMsgpackArgs(args, &encoded);
    if (!s.ok()) return Result::Failed(std::move(s));
    return Blocking(absolute, target, std::move(encoded), o,
                    [result](const grpc::Status& st, const grpc::ClientContext& ctx, const grpc::ByteBuffer& response) {
                      return MsgpackReply(st, ctx, response, result);
                    });
  }

  // One async unary call: its state lives as long as the call or the
  // caller's handle, so Cancel() after the end is harmless.
  struct Pending final : PendingCall {
    std::shared_ptr<ChannelEntry> ch;
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
    std::function<void(Result)> done;
    std::function<void(Result, std::string)> done_msgpack;
    void Cancel() override { ctx.TryCancel(); }
  };

  PendingCallPtr Start(const std::string& absolute, const std::string& target, std::string encoded,
                       const CallOptions& o, std::function<void(Result)> done,
                       std::function<void(Result, std::string)> done_msgpack) {
    auto p = std::make_shared<Pending>();
    p->ch = Channel(target);
    Prepare(&p->ctx, absolute, o);
    p->request = internal::ToByteBuffer(std::move(encoded));
    p->done = std::move(done);
    p->done_msgpack = std::move(done_msgpack);
    Pending* raw = p.get();
    grpc::internal::CallbackUnaryCall(raw->ch->channel.get(), raw->ch->unary, &raw->ctx, &raw->request,
                                      &raw->response, [p](grpc::Status st) mutable {
                                        // Drops what the call needed before the callback runs.
                                        std::shared_ptr<Pending> self = std::move(p);
                                        auto on_value = std::move(self->done);
                                        auto on_msgpack = std::move(self->done_msgpack);
                                        self->request.Clear();
                                        if (on_msgpack) {
                                          std::string result;
                                          Result r = MsgpackReply(st, self->ctx, self->response, &result);
                                          self->response.Clear();
                                          on_msgpack(std::move(r), std::move(result));
                                        } else {
                                          Result r = DecodeUnaryReply(st, self->ctx, self->response);
                                          self->response.Clear();
                                          on_value(std::move(r));
                                        }
                                      });
    return p;
  }

  PendingCallPtr InvokeAsync(std::string_view url, const Array& args, const CallOptions& o,
                             std::function<void(Result)> done) {
    std::string absolute, target, encoded;
    Status s = Resolve(url, false, &absolute, &target);
    if (s.ok()) s = wire::EncodeRpc(args, options_.codec, &encoded);
    if (!s.ok()) {
      done(Result::Failed(std::move(s)));
      return nullptr;
    }
    return Start(absolute, target, std::move(encoded), o, std::move(done), nullptr);
  }

  PendingCallPtr InvokeMsgpackAsync(std::string_view url, std::string_view args, const CallOptions& o,
                                    std::function<void(Result, std::string)> done) {
    std::string absolute, target, encoded;
    Status s = Resolve(url, false, &absolute, &target);
    if (s.ok()) s = EncodeMsgpackArgs(args, &encoded);
    if (!s.ok()) {
      done(Result::Failed(std::move(s)), std::string());
      return nullptr;
    }
    return Start(absolute, target, std::move(encoded), o, nullptr, std::move(done));
  }

  void OpenStream(std::string_view url, const Array& args, const CallOptions& o,
                  std::function<void(Status, ClientStreamPtr)> done);

  const ClientOptions& options() const { return options_; }

 private:
  ClientOptions options_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<ChannelEntry>> pool_;
  std::chrono::steady_clock::time_point last_sweep_{};
};

// ---------------------------------------------------------------------------
// Streams.

namespace {

class ClientStreamReactor;

class ClientStreamCore final : public internal::StreamBase {
 public:
  using OpenCallback = std::function<void(Status, ClientStreamPtr)>;

  ClientStreamCore(wire::Codec codec, OpenCallback open) : request_codec_(codec), open_(std::move(open)) {
    tx_codec_ = rx_codec_ = codec;
  }

  // Starts the call: the first message and the handshake read.
  void Begin(ClientStreamReactor* reactor, std::shared_ptr<ChannelEntry> ch, grpc::ByteBuffer first);
  void HandleMetadata(bool ok, wire::Codec server_codec) {
    auto self = shared_from_this();
    Lock lock(mu_);
    metadata_done_ = true;
    server_codec_ = server_codec;
    (void)ok;  // a failed call shows in the read and in OnDone
    MaybeOpen(lock);
  }
  void HandleDone(const grpc::Status& st);
  void Release();  // the user dropped the stream
  void Cancel();
  void CloseSend() {
    auto self = shared_from_this();
    Lock lock(mu_);
    send_closed_ = true;
    close_requested_ = true;
    Pump(lock);
  }

 protected:
  bool CanStartOps() const override { return reactor_ != nullptr && !hold_released_; }
  void StartReadOp(grpc::ByteBuffer* buffer) override;
  void StartWriteOp(const grpc::ByteBuffer* buffer) override;
  void HandleFirstRead(Lock& lock, bool ok) override;
  void HandleReadClosed(Lock& lock) override { ReleaseHold(lock); }
  void Abort(Lock& lock, Status status) override;
  void HandleWritesDrained(Lock& lock) override;
  Status EndedStatus() const override {
    if (terminal_ && terminal_->is_platform_error()) return terminal_->status;
    if (send_closed_) return Status(Code::kFailedPrecondition, "send after CloseSend");
    return Status(Code::kFailedPrecondition, "the stream has ended");
  }

 private:
  void ReleaseHold(Lock& lock);
  void MaybeOpen(Lock& lock);

  ClientStreamReactor* reactor_ = nullptr;  // valid while the hold is on
  std::shared_ptr<ChannelEntry> channel_;
  wire::Codec request_codec_;
  wire::Codec server_codec_ = wire::Codec::kProtoJson;
  OpenCallback open_;
  bool metadata_done_ = false;
  bool handshake_ok_ = false;
  bool opened_ = false;
  bool hold_released_ = false;
  bool close_requested_ = false;
  bool writes_done_started_ = false;
  std::optional<Status> abort_status_;
};

class ClientStreamHandle final : public ClientStream {
 public:
  explicit ClientStreamHandle(std::shared_ptr<ClientStreamCore> core) : core_(std::move(core)) {}
  ~ClientStreamHandle() override { core_->Release(); }
  Status Send(const Value& msg) override { return core_->Send(msg); }
  void SendAsync(Value msg, std::function<void(Status)> done) override { core_->SendAsync(std::move(msg), std::move(done)); }
  void CloseSend() override { core_->CloseSend(); }
  void Cancel() override { core_->Cancel(); }
  Result Receive() override { return core_->Receive(std::nullopt); }
  Result Receive(std::chrono::milliseconds timeout) override { return core_->Receive(timeout); }
  void ReceiveAsync(std::function<void(Result)> done) override { core_->ReceiveAsync(std::move(done)); }

 private:
  std::shared_ptr<ClientStreamCore> core_;
};

class ClientStreamReactor final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit ClientStreamReactor(std::shared_ptr<ClientStreamCore> core) : core_(std::move(core)) {}
  grpc::ClientContext* context() { return &ctx_; }
  void OnReadInitialMetadataDone(bool ok) override {
    core_->HandleMetadata(ok, ok ? ReplyCodec(ctx_) : wire::Codec::kProtoJson);
  }
  void OnReadDone(bool ok) override { core_->HandleReadDone(ok); }
  void OnWriteDone(bool ok) override { core_->HandleWriteDone(ok); }
  void OnDone(const grpc::Status& st) override {
    std::shared_ptr<ClientStreamCore> core = std::move(core_);
    delete this;
    core->HandleDone(st);
  }

 private:
  grpc::ClientContext ctx_;
  std::shared_ptr<ClientStreamCore> core_;
};

void ClientStreamCore::Begin(ClientStreamReactor* reactor, std::shared_ptr<ChannelEntry> ch, grpc::ByteBuffer first) {
  Lock lock(mu_);
  reactor_ = reactor;
  channel_ = std::move(ch);
  grpc::internal::ClientCallbackReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
      channel_->channel.get(), channel_->stream, reactor->context(), reactor);
  reactor->AddHold();  // released when the read side ends or the user lets go
  outbox_.push_back(PendingWrite{std::move(first), nullptr});
  read_in_flight_ = true;
  reactor->StartRead(&read_buffer_);
  Pump(lock);
  reactor->StartCall();
}

void ClientStreamCore::StartReadOp(grpc::ByteBuffer* buffer) { reactor_->StartRead(buffer); }
void ClientStreamCore::StartWriteOp(const grpc::ByteBuffer* buffer) { reactor_->StartWrite(buffer); }

void ClientStreamCore::HandleFirstRead(Lock& lock, bool ok) {
  if (!ok) {
    read_closed_ = true;
    ReleaseHold(lock);  // OnDone brings the status (e.g. NOT_FOUND)
    return;
  }
  wire::StreamKind kind;
  Value value;
  Array args;
  Status s;
  {
    internal::FlatBytes flat(read_buffer_);
    s = wire::DecodeStreamMessage(flat.view(), wire::Codec::kProtoJson, &kind, &value, &args, limits_);
  }
  read_buffer_.Clear();
  if (!s.ok() || kind != wire::StreamKind::kEmpty) {
    Abort(lock, Status(Code::kInternal, "the first server message of a stream must be empty"));
    return;
  }
  handshake_ok_ = true;
  MaybeOpen(lock);
}

void ClientStreamCore::MaybeOpen(Lock& lock) {
  if (!handshake_ok_ || !metadata_done_ || opened_) return;
  opened_ = true;
  // Our codec only if the server said it understood it; an original server
  // answers in proto-JSON, and the rest of the stream follows it.
  wire::Codec c = request_codec_ == wire::Codec::kMsgpack && server_codec_ == wire::Codec::kMsgpack
                      ? wire::Codec::kMsgpack
                      : wire::Codec::kProtoJson;
  tx_codec_ = rx_codec_ = c;
  reading_enabled_ = true;
  auto handle = std::make_shared<ClientStreamHandle>(std::static_pointer_cast<ClientStreamCore>(shared_from_this()));
  OpenCallback open = std::move(open_);
  Pump(lock);
  lock.unlock();
  open(Status::Ok(), std::move(handle));
  open = nullptr;
  lock.lock();
}

void ClientStreamCore::Abort(Lock& lock, Status status) {
  if (!abort_status_) abort_status_ = status;
  if (!hold_released_ && reactor_ != nullptr) reactor_->context()->TryCancel();
  read_closed_ = true;
  ReleaseHold(lock);
  if (opened_) SetTerminal(lock, Result::Failed(std::move(status)));
}

void ClientStreamCore::HandleWritesDrained(Lock& lock) {
  (void)lock;
  if (close_requested_ && !writes_done_started_ && opened_) {
    writes_done_started_ = true;
    reactor_->StartWritesDone();
  }
}

void ClientStreamCore::ReleaseHold(Lock& lock) {
  if (hold_released_ || reactor_ == nullptr) return;
  hold_released_ = true;
  reactor_->RemoveHold();  // schedules OnDone; never runs it inline
  FailOutbox(lock);
}

void ClientStreamCore::HandleDone(const grpc::Status& st) {
  Lock lock(mu_);
  reactor_ = nullptr;
  hold_released_ = true;
  Result terminal = abort_status_      ? Result::Failed(*abort_status_)
                    : st.ok()          ? Result::End()
                                       : Result::Failed(FromGrpc(st));
  FailOutbox(lock);
  if (!opened_) {
    opened_ = true;
    OpenCallback open = std::move(open_);
    Status s = terminal.is_platform_error() ? terminal.status
                                            : Status(Code::kInternal, "the stream ended before its handshake");
    terminal_ = terminal;
    lock.unlock();
    if (open) open(std::move(s), nullptr);
    return;
  }
  SetTerminal(lock, std::move(terminal));
}

void ClientStreamCore::Release() {
  auto self = shared_from_this();  // failed sends' callbacks run from here
  Lock lock(mu_);
  if (hold_released_ || reactor_ == nullptr) return;
  if (!read_closed_) reactor_->context()->TryCancel();
  ReleaseHold(lock);
}

void ClientStreamCore::Cancel() {
  auto self = shared_from_this();
  Lock lock(mu_);
  if (hold_released_ || reactor_ == nullptr) return;
  if (!abort_status_) abort_status_ = Status(Code::kCancelled, "stream cancelled by the client");
  reactor_->context()->TryCancel();
  read_closed_ = true;
  ReleaseHold(lock);
}

}  // namespace

void Client::Impl::OpenStream(std::string_view url, const Array& args, const CallOptions& o,
                              std::function<void(Status, ClientStreamPtr)> done) {
  std::string absolute, target, encoded;
  Status s = Resolve(url, true, &absolute, &target);
  if (s.ok()) s = wire::EncodeStreamRpc(args, options_.codec, &encoded);
  if (!s.ok()) {
    done(std::move(s), nullptr);
    return;
  }
  auto core = std::make_shared<ClientStreamCore>(options_.codec, std::move(done));
  auto* reactor = new ClientStreamReactor(core);
  Prepare(reactor->context(), absolute, o);
  core->Begin(reactor, Channel(target), internal::ToByteBuffer(std::move(encoded)));
}

// ---------------------------------------------------------------------------

Endpoint::Endpoint(Client* client, std::string env, std::string service, std::string resource)
    : client_(client), env_(std::move(env)), service_(std::move(service)), resource_(std::move(resource)) {}

std::string Endpoint::Url(std::string_view method) const {
  std::string out;
  std::string_view env = env_.empty() ? std::string_view(client_->options().own_environment) : std::string_view(env_);
  if (env.empty()) {
    // Relative: Resolve reports the missing environment.
    out = "/" + service_ + "/" + resource_ + "/" + std::string(method);
    return out;
  }
  FormatUrl(UrlView{env, service_, resource_, method}, &out);
  return out;
}

Result Endpoint::Invoke(std::string_view method, Array args, const CallOptions& options) const {
  return client_->InvokeUrl(Url(method), std::move(args), options);
}
PendingCallPtr Endpoint::InvokeAsync(std::string_view method, Array args, const CallOptions& options,
                                     std::function<void(Result)> done) const {
  return client_->InvokeUrlAsync(Url(method), std::move(args), options, std::move(done));
}
Status Endpoint::InvokeStream(ClientStreamPtr* out, std::string_view method, Array args,
                              const CallOptions& options) const {
  return client_->InvokeStreamUrl(out, Url(method), std::move(args), options);
}

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;

Endpoint Client::Service(std::string env, std::string service) {
  return Endpoint(this, std::move(env), std::move(service));
}
Endpoint Client::Resource(std::string env, std::string service, std::string resource) {
  return Endpoint(this, std::move(env), std::move(service), std::move(resource));
}
Result Client::InvokeUrl(std::string_view url, Array args, const CallOptions& options) {
  return impl_->Invoke(url, args, options);
}
Result Client::InvokeUrlMsgpack(std::string_view url, std::string_view args_msgpack, const CallOptions& options,
                                std::string* result_msgpack) {
  return impl_->InvokeMsgpack(url, args_msgpack, options, result_msgpack);
}
PendingCallPtr Client::InvokeUrlAsync(std::string_view url, Array args, const CallOptions& options,
                                      std::function<void(Result)> done) {
  return impl_->InvokeAsync(url, args, options, std::move(done));
}
PendingCallPtr Client::InvokeUrlMsgpackAsync(std::string_view url, std::string_view args_msgpack,
                                             const CallOptions& options,
                                             std::function<void(Result, std::string)> done) {
  return impl_->InvokeMsgpackAsync(url, args_msgpack, options, std::move(done));
}
Status Client::InvokeStreamUrl(ClientStreamPtr* out, std::string_view url, Array args, const CallOptions& options) {
  std::promise<std::pair<Status, ClientStreamPtr>> promise;
  auto future = promise.get_future();
  impl_->OpenStream(url, args, options, [&promise](Status s, ClientStreamPtr st) {
    promise.set_value({std::move(s), std::move(st)});
  });
  auto [status, stream] = future.get();
  *out = std::move(stream);
  return status;
}
void Client::InvokeStreamUrlAsync(std::string_view url, Array args, const CallOptions& options,
                                  std::function<void(Status, ClientStreamPtr)> done) {
  impl_->OpenStream(url, args, options, std::move(done));
}
std::string Client::TargetForEnv(std::string_view env) const { return impl_->TargetForEnv(env); }
const ClientOptions& Client::options() const { return impl_->options(); }
size_t Client::ChannelCountForTest() const { return impl_->ChannelCount(); }
void Client::ExpireIdleChannelsForTest(std::chrono::steady_clock::time_point now) { impl_->Sweep(now); }

}  // namespace lever
