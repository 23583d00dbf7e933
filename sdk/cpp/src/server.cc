#include "lever/server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <future>
#include <map>
#include <unordered_map>

#include "buffers.h"
#include "executor.h"
#include "fd_listener.h"
#include "lever/url.h"
#include "stream_base.h"

namespace lever {

namespace internal {

// A call's cancel state, shared by its reactor and its contexts: the flag
// CallContext::cancelled() reads and the watchers of WatchCancel, each run
// once, when the call is cancelled or when it is over.
struct CancelWatch {
  std::atomic<bool> cancelled{false};
  std::mutex mu;
  bool over = false;
  std::vector<std::function<void(bool)>> watchers;

  void Add(std::function<void(bool)> fn) {
    std::unique_lock<std::mutex> lock(mu);
    if (over) {
      lock.unlock();
      fn(cancelled.load());
      return;
    }
    watchers.push_back(std::move(fn));
  }
  // The call was cancelled (`cancel`) or is over; the first call wins.
  void Fire(bool cancel) {
    std::vector<std::function<void(bool)>> run;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (cancel) cancelled.store(true);
      if (over) return;
      over = true;
      run.swap(watchers);
    }
    for (auto& fn : run) fn(cancel);
  }
};

}  // namespace internal

class CallContext::Access {
 public:
  // Fills a context from the gRPC call; fails on a missing or bad lever-url.
  static Status Fill(CallContext* c, const grpc::CallbackServerContext& g,
                     std::shared_ptr<internal::CancelWatch> cancel) {
    c->cancel_ = std::move(cancel);
    bool have_url = false;
    c->metadata_.reserve(g.client_metadata().size());
    for (const auto& [k, v] : g.client_metadata()) {
      std::string_view key(k.data(), k.size()), value(v.data(), v.size());
      if (key == wire::kUrlKey) {
        c->url_.assign(value);
        have_url = true;
      } else if (key == wire::kCodecKey) {
        if (value == wire::kCodecMsgpack) c->codec_ = wire::Codec::kMsgpack;
      } else if (key == wire::kSrcEnvKey) {
        c->source_env_.assign(value);
      }
      c->metadata_.emplace_back(key, value);
    }
    if (!have_url) return InvalidArgument("lever-url metadata missing");
    UrlView u;
    Status s = ParseUrl(c->url_, &u);
    if (!s.ok()) return s;
    c->env_.assign(u.env);
    c->service_.assign(u.service);
    c->resource_.assign(u.resource);
    c->method_.assign(u.method);
    auto deadline = g.deadline();
    // gRPC reports "no deadline" as a far-future time.
    if (deadline < std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 10)) c->deadline_ = deadline;
    return Status::Ok();
  }
  // A context for a NewResource/CloseResource call made by the runtime.
  static CallContext ForResource(const CallContext& from, std::string_view method, std::string_view resource) {
    CallContext c = from;
    c.method_.assign(method);
    c.resource_.assign(resource);
    return c;
  }
};

std::string_view CallContext::Metadata(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return v;
  }
  return {};
}

void CallContext::WatchCancel(std::function<void(bool cancelled)> fn) const {
  if (!cancel_) {
    fn(false);  // not a gRPC call: nothing can cancel it
    return;
  }
  cancel_->Add(std::move(fn));
}

bool CallContext::cancelled() const {
  if (cancel_ && cancel_->cancelled.load(std::memory_order_relaxed)) return true;
  return deadline_ != std::chrono::system_clock::time_point::max() && std::chrono::system_clock::now() > deadline_;
}

namespace {

constexpr std::string_view kNewResource = "NewResource";
constexpr std::string_view kCloseResource = "CloseResource";

grpc::Status ToGrpc(const Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

struct CallFlags {
  std::atomic<bool> finished{false};
  std::shared_ptr<internal::CancelWatch> cancel = std::make_shared<internal::CancelWatch>();
};

struct HandlerEntry {
  UnaryHandler sync;
  AsyncUnaryHandler async;
  StreamHandler stream;
  HandlerOptions options;
};

// A unary call made by the runtime itself (NewResource, CloseResource): its
// reply goes to `done`, on whatever thread the handler replies from.
class LocalCall final : public UnaryCall {
 public:
  LocalCall(CallContext ctx, Array args, std::function<void(Result)> done)
      : ctx_(std::move(ctx)), args_(std::move(args)), done_(std::move(done)) {}
  ~LocalCall() override { Reply(Result::Failed(Status(Code::kInternal, "handler did not reply"))); }
  const CallContext& context() const override { return ctx_; }
  Array& args() override { return args_; }
  void Reply(Result result) override {
    if (replied_.exchange(true)) return;
    auto done = std::move(done_);
    done(std::move(result));
  }

 private:
  CallContext ctx_;
  Array args_;
  std::function<void(Result)> done_;
  std::atomic<bool> replied_{false};
};

}  // namespace

// ---------------------------------------------------------------------------
class Server::Impl {
 public:
  explicit Impl(ServerOptions options)
      : options_(std::move(options)),
        executor_(options_.max_workers, options_.max_queued_calls, options_.worker_idle_timeout) {}
  // The answer to a call the executor's queue has no room for.
  Status Busy() const {
    return Status(Code::kResourceExhausted, "server busy: " + std::to_string(options_.max_workers) +
                                                " workers and " + std::to_string(options_.max_queued_calls) +
                                                " queued calls (ServerOptions::max_queued_calls)");
  }

  Status Register(std::string name, HandlerEntry entry, bool streaming) {
    if (started_) return Status(Code::kFailedPrecondition, "handlers must be registered before Start");
    if (name.empty()) return InvalidArgument("empty method name");
    if (IsChanMethod(name) != streaming) {
      return InvalidArgument(streaming ? "'" + name + "' is not a streaming method name (needs Chan, _chan or chan)"
                                       : "'" + name + "' is a streaming method name: use HandleStream");
    }
    if (!handlers_.emplace(std::move(name), std::move(entry)).second) {
      return Status(Code::kAlreadyExists, "method registered twice");
    }
    return Status::Ok();
  }

  Status Start();
  void Shutdown(std::chrono::milliseconds grace);
  void Wait() {
    std::unique_lock<std::mutex> lock(state_mu_);
    state_cv_.wait(lock, [this] { return stopped_ || !started_; });
  }

  const HandlerEntry* Find(const std::string& name) const {
    auto it = handlers_.find(name);
    return it == handlers_.end() ? nullptr : &it->second;
  }

  // Runs a unary handler for `call` (any thread that may block).
  // Runs a unary handler. An exception escaping user code (say
  // std::bad_variant_access from Value::as_string on the wrong type) fails
  // the call with UNKNOWN instead of ending the process.
  static void Invoke(const HandlerEntry& h, const UnaryCallPtr& call) {
    try {
      if (h.sync) {
        call->Reply(h.sync(call->context(), call->args()));
      } else {
        h.async(call);
      }
    } catch (const std::exception& e) {
      call->Reply(Result::Failed(Status(Code::kUnknown, std::string("handler threw: ") + e.what())));
    } catch (...) {
      call->Reply(Result::Failed(Status(Code::kUnknown, "handler threw")));
    }
  }

  // Resource bookkeeping (reference §7.2; fixes §7.3). The first call for a
  // resource (or the host's explicit NewResource) runs the NewResource
  // handler; calls arriving meanwhile wait for it without holding a thread
  // or a lock: `then` runs with OK to go on, or the Result the call fails
  // with, on the thread that finished NewResource (or inline when the
  // resource is known). No lock is held across user code. A NewResource
  // handler must not call its own resource: that call waits for it.
  bool ResourceKnown(const std::string& r) {
    std::lock_guard<std::mutex> lock(res_mu_);
    auto it = resources_.find(r);
    return it != resources_.end() && it->second->ready;
  }
  void EnsureResource(const CallContext& ctx, const std::string& r, std::function<void(Result)> then);
  // Forgets the resource, then runs the CloseResource handler.
  void CloseResource(const CallContext& ctx, const std::string& r, std::function<void(Result)> then);
  std::vector<std::string> Resources() {
    std::lock_guard<std::mutex> lock(res_mu_);
    std::vector<std::string> out;
    for (const auto& [name, state] : resources_) {
      if (state->ready) out.push_back(name);
    }
    return out;
  }

  // Dispatches a decoded unary call.
  void DispatchUnary(const std::shared_ptr<UnaryCall>& call);
  // Checks a call against a handler before it runs.
  static Status CheckArgs(const HandlerEntry& h, const Array& args) {
    if (h.options.num_args >= 0 && args.size() != static_cast<size_t>(h.options.num_args)) {
      return InvalidArgument("number of args does not match: received " + std::to_string(args.size()) +
                             " but the handler takes " + std::to_string(h.options.num_args));
    }
    return Status::Ok();
  }

  internal::Executor& executor() { return executor_; }
  const ServerOptions& options() const { return options_; }
  int port() const { return port_; }
  bool on_listen_fd() const { return on_listen_fd_; }

 private:
  struct ResourceState {
    bool ready = false;  // guarded by res_mu_; false while NewResource runs
    std::vector<std::function<void(Result)>> waiting;  // guarded by res_mu_
  };

  class Service;

  ServerOptions options_;
  std::unordered_map<std::string, HandlerEntry> handlers_;
  internal::Executor executor_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  internal::FdListener listener_;  // serving on options_.listen_fd
  bool on_listen_fd_ = false;
  int port_ = 0;
  std::mutex state_mu_;
  std::condition_variable state_cv_;
  bool started_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
  std::mutex res_mu_;
  std::map<std::string, std::shared_ptr<ResourceState>> resources_;

  friend class Server;
};

void Server::Impl::EnsureResource(const CallContext& ctx, const std::string& r, std::function<void(Result)> then) {
  std::shared_ptr<ResourceState> state;
  {
    std::lock_guard<std::mutex> lock(res_mu_);
    auto& slot = resources_[r];
    bool first = !slot;
    if (first) slot = std::make_shared<ResourceState>();
    state = slot;
    if (!state->ready) {
      state->waiting.push_back(std::move(then));
      if (!first) return;  // NewResource is running: wait for it
    }
  }
  if (then) return then(Result::Of(nullptr));  // known
  auto finish = [this, r, state](Result result) {
    std::vector<std::function<void(Result)>> waiting;
    {
      std::lock_guard<std::mutex> lock(res_mu_);
      if (result.ok()) {
        state->ready = true;
      } else {
        auto it = resources_.find(r);
        if (it != resources_.end() && it->second == state) resources_.erase(it);
      }
      waiting.swap(state->waiting);
    }
    for (auto& w : waiting) w(result);
  };
  const HandlerEntry* h = Find(std::string(kNewResource));
  if (h == nullptr || h->stream) return finish(Result::Of(nullptr));
  Invoke(*h, std::make_shared<LocalCall>(CallContext::Access::ForResource(ctx, kNewResource, r), Array{Value(r)},
                                         std::move(finish)));
}

void Server::Impl::CloseResource(const CallContext& ctx, const std::string& r, std::function<void(Result)> then) {
  {
    std::lock_guard<std::mutex> lock(res_mu_);
    auto it = resources_.find(r);
    if (it == resources_.end()) return then(Result::Of(nullptr));  // never opened here: nothing to close
    if (!it->second->ready) {
      // Still opening: close it once it is open.
      it->second->waiting.push_back([this, ctx, r, then = std::move(then)](Result opened) mutable {
        if (!opened.ok()) return then(Result::Of(nullptr));
        CloseResource(ctx, r, std::move(then));
      });
      return;
    }
    resources_.erase(it);  // forgotten: a later call opens it again
  }
  const HandlerEntry* h = Find(std::string(kCloseResource));
  if (h == nullptr || h->stream) return then(Result::Of(nullptr));
  Invoke(*h, std::make_shared<LocalCall>(CallContext::Access::ForResource(ctx, kCloseResource, r), Array{Value(r)},
                                         std::move(then)));
}

// ---------------------------------------------------------------------------
// Unary calls.

namespace {

class UnaryReactor;

class UnaryCallImpl final : public UnaryCall {
 public:
  UnaryCallImpl(UnaryReactor* reactor, std::shared_ptr<CallFlags> flags) : reactor_(reactor), flags_(std::move(flags)) {}
  ~UnaryCallImpl() override;
  const CallContext& context() const override { return ctx_; }
  Array& args() override { return args_; }
  void Reply(Result result) override;

  CallContext ctx_;
  Array args_;

 private:
  UnaryReactor* reactor_;  // valid until finished: only the finisher uses it
  std::shared_ptr<CallFlags> flags_;
};

class UnaryReactor final : public grpc::ServerGenericBidiReactor {
 public:
  UnaryReactor(Server::Impl* server, grpc::GenericCallbackServerContext* ctx) : server_(server), ctx_(ctx) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request message missing"));
      return;
    }
    auto call = std::make_shared<UnaryCallImpl>(this, flags_);
    Status s = CallContext::Access::Fill(&call->ctx_, *ctx_, flags_->cancel);
    if (s.ok()) {
      codec_ = call->ctx_.codec();
      internal::FlatBytes flat(request_);
      s = wire::DecodeRpc(flat.view(), codec_, &call->args_);
    }
    request_.Clear();
    if (!s.ok()) {
      call->Reply(Result::Failed(std::move(s)));
      return;
    }
    server_->DispatchUnary(call);
  }

  void OnCancel() override {
    flags_->cancel->Fire(true);
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
  }

  void OnDone() override {
    flags_->cancel->Fire(false);
    delete this;
  }

  // Called by the one party that won flags_->finished.
  void SendReply(const Result& r) {
    if (r.kind == Result::Kind::kPlatformError) {
      Finish(ToGrpc(r.status));
      return;
    }
    if (r.kind == Result::Kind::kEnd) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "handler returned no result"));
      return;
    }
    std::string encoded;
    Status s = wire::EncodeReply(r.value, r.kind == Result::Kind::kAppError, codec_, &encoded);
    if (!s.ok()) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "cannot encode the reply: " + s.message()));
      return;
    }
    if (codec_ == wire::Codec::kMsgpack) ctx_->AddInitialMetadata(std::string(wire::kCodecKey), std::string(wire::kCodecMsgpack));
    response_ = internal::ToByteBuffer(std::move(encoded));
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  std::shared_ptr<CallFlags> flags() const { return flags_; }

 private:
  void FinishOnce(grpc::Status st) {
    if (!flags_->finished.exchange(true)) Finish(std::move(st));
  }

  Server::Impl* server_;
  grpc::GenericCallbackServerContext* ctx_;
  std::shared_ptr<CallFlags> flags_ = std::make_shared<CallFlags>();
  wire::Codec codec_ = wire::Codec::kProtoJson;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

UnaryCallImpl::~UnaryCallImpl() {
  if (!flags_->finished.load()) Reply(Result::Failed(Status(Code::kInternal, "handler did not reply")));
}

void UnaryCallImpl::Reply(Result result) {
  if (flags_->finished.exchange(true)) return;
  reactor_->SendReply(result);
}

}  // namespace

void Server::Impl::DispatchUnary(const std::shared_ptr<UnaryCall>& call) {
  const CallContext& ctx = call->context();
  const std::string& method = ctx.method();
  if (method == kNewResource || method == kCloseResource) {
    bool queued = executor_.Post([this, call] {
      const CallContext& c = call->context();
      std::string r = c.resource();
      if (r.empty() && !call->args().empty() && call->args()[0].is_string()) r = call->args()[0].as_string();
      if (r.empty()) {
        call->Reply(Result::Failed(InvalidArgument(c.method() + " needs a resource name")));
        return;
      }
      auto reply = [call](Result result) { call->Reply(std::move(result)); };
      if (c.method() == kNewResource) {
        EnsureResource(c, r, std::move(reply));
      } else {
        CloseResource(c, r, std::move(reply));
      }
    });
    if (!queued) call->Reply(Result::Failed(Busy()));
    return;
  }
  const HandlerEntry* h = Find(method);
  if (h == nullptr) {
    call->Reply(Result::Failed(Status(Code::kNotFound, "method not found: " + method)));
    return;
  }
  if (h->stream) {
    call->Reply(Result::Failed(InvalidArgument(method + " is a streaming method: call it with HandleStreamingRPC")));
    return;
  }
  Status s = CheckArgs(*h, call->args());
  if (!s.ok()) {
    call->Reply(Result::Failed(std::move(s)));
    return;
  }
  bool need_resource = !ctx.resource().empty() && !ResourceKnown(ctx.resource());
  if (h->options.run_inline && !need_resource) {
    Invoke(*h, call);
    return;
  }
  bool queued = executor_.Post([this, h, call, need_resource] {
    if (!need_resource) return Invoke(*h, call);
    EnsureResource(call->context(), call->context().resource(), [this, h, call](Result r) {
      if (!r.ok()) return call->Reply(std::move(r));
      executor_.PostAdmitted([h, call] { Invoke(*h, call); });
    });
  });
  if (!queued) call->Reply(Result::Failed(Busy()));
}

// ---------------------------------------------------------------------------
// Streaming calls.

namespace {

class ServerStreamReactor;

class ServerStreamCore final : public internal::StreamBase {
 public:
  ServerStreamCore(Server::Impl* server, ServerStreamReactor* reactor, grpc::GenericCallbackServerContext* gctx)
      : server_(server), reactor_(reactor), gctx_(gctx) {}

  // The first read is started by the reactor's constructor.
  void Begin();
  void RequestFinish(Result how);
  void HandleCancel() {
    auto self = shared_from_this();  // finishing may delete the reactor that owns us
    cancel_->Fire(true);             // watchers run outside the stream's lock
    Lock lock(mu_);
    cancelled_ = true;
    SetTerminal(lock, Result::Failed(Status(Code::kCancelled, "call cancelled")));
    if (!lock.owns_lock()) lock.lock();
    RequestFinishLocked(lock, Result::Failed(Status(Code::kCancelled, "call cancelled")));
  }
  // The call is over: watchers that saw no cancel hear so.
  void HandleDone() { cancel_->Fire(false); }

  CallContext ctx_;
  Array args_;

 protected:
  bool CanStartOps() const override { return !finish_started_; }
  void StartReadOp(grpc::ByteBuffer* buffer) override;
  void StartWriteOp(const grpc::ByteBuffer* buffer) override;
  void HandleFirstRead(Lock& lock, bool ok) override;
  void HandleReadClosed(Lock& lock) override {
    // A failed read is the client's half-close or a cancel; OnCancel may not
    // have run yet, so ask the context too.
    if (!cancelled_ && gctx_->IsCancelled()) cancelled_ = true;
    SetTerminal(lock, cancelled_ ? Result::Failed(Status(Code::kCancelled, "call cancelled")) : Result::End());
  }
  void Abort(Lock& lock, Status status) override {
    SetTerminal(lock, Result::Failed(status));
    if (!lock.owns_lock()) lock.lock();
    RequestFinishLocked(lock, Result::Failed(std::move(status)));
  }
  void HandleWritesDrained(Lock& lock) override;
  Status EndedStatus() const override {
    return cancelled_ ? Status(Code::kCancelled, "call cancelled") : Status(Code::kFailedPrecondition, "the stream has ended");
  }

 private:
  void RequestFinishLocked(Lock& lock, Result how);

  Server::Impl* server_;
  ServerStreamReactor* reactor_;  // valid until finish_started_
  grpc::GenericCallbackServerContext* gctx_;
  std::shared_ptr<internal::CancelWatch> cancel_ = std::make_shared<internal::CancelWatch>();
  bool cancelled_ = false;
  bool finish_requested_ = false;
  bool finish_started_ = false;
  grpc::Status finish_status_;
};

// What the handler holds: the last reference going away finishes the call.
class ServerStreamHandle final : public ServerStream {
 public:
  explicit ServerStreamHandle(std::shared_ptr<ServerStreamCore> core) : core_(std::move(core)) {}
  ~ServerStreamHandle() override { core_->RequestFinish(Result::End()); }
  const CallContext& context() const override { return core_->ctx_; }
  Array& args() override { return core_->args_; }
  Result Receive() override { return core_->Receive(std::nullopt); }
  Result Receive(std::chrono::milliseconds timeout) override { return core_->Receive(timeout); }
  void ReceiveAsync(std::function<void(Result)> done) override { core_->ReceiveAsync(std::move(done)); }
  Status Send(const Value& msg) override { return core_->Send(msg); }
  void SendAsync(Value msg, std::function<void(Status)> done) override { core_->SendAsync(std::move(msg), std::move(done)); }
  void Finish(Result how) override { core_->RequestFinish(std::move(how)); }

 private:
  std::shared_ptr<ServerStreamCore> core_;
};

class ServerStreamReactor final : public grpc::ServerGenericBidiReactor {
 public:
  ServerStreamReactor(Server::Impl* server, grpc::GenericCallbackServerContext* ctx)
      : core_(std::make_shared<ServerStreamCore>(server, this, ctx)) {
    core_->Begin();
  }
  void OnReadDone(bool ok) override { core_->HandleReadDone(ok); }
  void OnWriteDone(bool ok) override { core_->HandleWriteDone(ok); }
  void OnCancel() override { core_->HandleCancel(); }
  void OnDone() override {
    core_->HandleDone();
    delete this;
  }

 private:
  std::shared_ptr<ServerStreamCore> core_;
};

void ServerStreamCore::Begin() {
  Lock lock(mu_);
  read_in_flight_ = true;
  reactor_->StartRead(&read_buffer_);
}

void ServerStreamCore::StartReadOp(grpc::ByteBuffer* buffer) { reactor_->StartRead(buffer); }
void ServerStreamCore::StartWriteOp(const grpc::ByteBuffer* buffer) { reactor_->StartWrite(buffer); }

void ServerStreamCore::HandleFirstRead(Lock& lock, bool ok) {
  if (!ok) {
    RequestFinishLocked(lock, Result::Failed(InvalidArgument("stream ended before its first message")));
    return;
  }
  Status s = CallContext::Access::Fill(&ctx_, *gctx_, cancel_);
  wire::StreamKind kind = wire::StreamKind::kEmpty;
  if (s.ok()) {
    rx_codec_ = tx_codec_ = ctx_.codec();
    Value ignored;
    internal::FlatBytes flat(read_buffer_);
    s = wire::DecodeStreamMessage(flat.view(), rx_codec_, &kind, &ignored, &args_, limits_);
  }
  read_buffer_.Clear();
  if (s.ok() && kind != wire::StreamKind::kRpc) s = InvalidArgument("the first stream message must carry the rpc");
  const HandlerEntry* h = nullptr;
  if (s.ok()) {
    h = server_->Find(ctx_.method());
    if (h == nullptr) {
      s = Status(Code::kNotFound, "method not found: " + ctx_.method());
    } else if (!h->stream) {
      s = InvalidArgument(ctx_.method() + " is not a streaming method: call it with HandleRPC");
    } else {
      s = Server::Impl::CheckArgs(*h, args_);
    }
  }
  if (!s.ok()) {
    SetTerminal(lock, Result::Failed(s));
    if (!lock.owns_lock()) lock.lock();
    RequestFinishLocked(lock, Result::Failed(std::move(s)));
    return;
  }
  // The handshake: exactly one empty message, with the codec's metadata.
  if (tx_codec_ == wire::Codec::kMsgpack) {
    gctx_->AddInitialMetadata(std::string(wire::kCodecKey), std::string(wire::kCodecMsgpack));
  }
  outbox_.push_back(PendingWrite{internal::EmptyByteBuffer(), nullptr});
  reading_enabled_ = true;
  bool need_resource = !ctx_.resource().empty();
  Pump(lock);
  if (lock.owns_lock()) lock.unlock();
  {
    // Every reference to the handle must be gone before mu_ is taken again:
    // dropping the last one finishes the call, which takes mu_.
    auto handle = std::make_shared<ServerStreamHandle>(std::static_pointer_cast<ServerStreamCore>(shared_from_this()));
    Server::Impl* server = server_;
    auto run = [h, handle]() mutable {
      std::weak_ptr<ServerStream> weak = handle;
      try {
        h->stream(std::move(handle));
      } catch (const std::exception& e) {
        if (auto st = weak.lock()) st->Finish(Result::Failed(Status(Code::kUnknown, std::string("handler threw: ") + e.what())));
      } catch (...) {
        if (auto st = weak.lock()) st->Finish(Result::Failed(Status(Code::kUnknown, "handler threw")));
      }
    };
    // Kept until the task is queued: a refused one is finished here.
    std::shared_ptr<ServerStream> refusal = handle;
    bool queued = true;
    if (need_resource) {
      // The handler runs once the resource is open (NewResource done).
      queued = server->executor().Post([server, run = std::move(run), handle = std::move(handle)]() mutable {
        const CallContext& c = handle->context();
        server->EnsureResource(c, c.resource(), [server, run = std::move(run), handle](Result r) mutable {
          if (!r.ok()) return handle->Finish(std::move(r));
          handle.reset();
          server->executor().PostAdmitted(std::move(run));
        });
      });
    } else if (h->options.run_inline) {
      handle.reset();
      refusal.reset();
      run();
    } else {
      handle.reset();
      queued = server->executor().Post(std::move(run));
    }
    if (!queued) refusal->Finish(Result::Failed(server->Busy()));
    refusal.reset();
  }
  lock.lock();  // the caller expects the lock held
}

void ServerStreamCore::RequestFinish(Result how) {
  auto self = shared_from_this();
  Lock lock(mu_);
  RequestFinishLocked(lock, std::move(how));
}

void ServerStreamCore::RequestFinishLocked(Lock& lock, Result how) {
  if (finish_requested_) return;
  finish_requested_ = true;
  send_closed_ = true;
  if (how.kind == Result::Kind::kAppError) {
    std::string encoded;
    Status s = wire::EncodeStreamValue(how.value, true, tx_codec_, &encoded);
    if (s.ok()) {
      outbox_.push_back(PendingWrite{internal::ToByteBuffer(std::move(encoded)), nullptr});
    } else {
      how = Result::Failed(Status(Code::kInternal, "cannot encode the stream error: " + s.message()));
    }
  }
  finish_status_ = how.kind == Result::Kind::kPlatformError ? ToGrpc(how.status) : grpc::Status::OK;
  Pump(lock);
}

void ServerStreamCore::HandleWritesDrained(Lock& lock) {
  if (!finish_requested_ || finish_started_ || write_in_flight_) return;
  finish_started_ = true;
  grpc::Status st = finish_status_;
  ServerStreamReactor* reactor = reactor_;
  reactor_ = nullptr;
  lock.unlock();
  reactor->Finish(std::move(st));  // may run OnDone inline: nothing after this
}

// Refuses calls to unknown gRPC methods.
class RejectReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit RejectReactor(const std::string& method) {
    Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown gRPC method " + method + " (Lever serves core.LeverRPC)"));
  }
  void OnDone() override { delete this; }
};

}  // namespace

class Server::Impl::Service final : public grpc::CallbackGenericService {
 public:
  explicit Service(Server::Impl* server) : server_(server) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    const std::string& m = ctx->method();
    if (m == wire::kUnaryMethod) return new UnaryReactor(server_, ctx);
    if (m == wire::kStreamMethod) return new ServerStreamReactor(server_, ctx);
    return new RejectReactor(m);
  }

 private:
  Server::Impl* server_;
};

Status Server::Impl::Start() {
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (started_) return Status(Code::kFailedPrecondition, "server already started");
    started_ = true;
  }
  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  // A bounded number of calls per connection (the gateway queues the rest).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, std::max(1, options_.max_concurrent_streams));
  auto fail = [this](Status s) {
    std::lock_guard<std::mutex> lock(state_mu_);
    started_ = false;
    state_cv_.notify_all();
    return s;
  };
  // The socket leverd made (socket activation) serves the address it was
  // made for, and one Server; a socket the caller gives is theirs to place.
  int fd = options_.listen_fd;
  if (fd >= 0 && fd == ProcessEnv().listen_fd) {
    if (options_.listen_addr != ProcessEnv().listen_addr) {
      fd = -1;
    } else if (!internal::ClaimInheritedListenFd()) {
      return fail(Status(Code::kFailedPrecondition, "the listening socket of LEVEROS_LISTEN_FD serves another "
                                                    "lever::Server of this process already"));
    }
  }
  if (fd >= 0) {
    if (Status s = listener_.Open(fd, std::to_string(fd) + " (" + options_.listen_addr + ")", &port_); !s.ok()) {
      return fail(std::move(s));
    }
  } else {
    builder.AddListeningPort(options_.listen_addr, grpc::InsecureServerCredentials(), &port_);
  }
  builder.RegisterCallbackGenericService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_) {
    listener_.Stop();
    return fail(Status(Code::kUnavailable, "cannot listen on " + options_.listen_addr));
  }
  if (fd >= 0) {
    on_listen_fd_ = true;
    listener_.Start(server_.get());
  } else if (options_.listen_addr.starts_with("unix:")) {
    port_ = 0;
  }
  return Status::Ok();
}

void Server::Impl::Shutdown(std::chrono::milliseconds grace) {
  if (internal::Executor::InWorker()) {
    // From a handler: the shutdown waits for handlers (this one too), so it
    // runs on a thread of its own; Wait() tells when it is done.
    std::thread([this, grace] { Shutdown(grace); }).detach();
    return;
  }
  {
    std::unique_lock<std::mutex> lock(state_mu_);
    if (!started_ || stopped_) return;
    if (stopping_) {
      state_cv_.wait(lock, [this] { return stopped_; });
      return;
    }
    stopping_ = true;
  }
  listener_.Stop();  // first: no connection added while shutting down
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  executor_.Shutdown();
  server_->Wait();
  std::lock_guard<std::mutex> lock(state_mu_);
  stopped_ = true;
  state_cv_.notify_all();  // under the lock: a waiter may destroy us right after
}

// ---------------------------------------------------------------------------

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Server::~Server() { impl_->Shutdown(std::chrono::milliseconds(0)); }

Status Server::Handle(std::string name, UnaryHandler handler, HandlerOptions options) {
  if (!handler) return InvalidArgument("null handler");
  return impl_->Register(std::move(name), HandlerEntry{std::move(handler), nullptr, nullptr, options}, false);
}
Status Server::HandleAsync(std::string name, AsyncUnaryHandler handler, HandlerOptions options) {
  if (!handler) return InvalidArgument("null handler");
  return impl_->Register(std::move(name), HandlerEntry{nullptr, std::move(handler), nullptr, options}, false);
}
Status Server::HandleStream(std::string name, StreamHandler handler, HandlerOptions options) {
  if (!handler) return InvalidArgument("null handler");
  return impl_->Register(std::move(name), HandlerEntry{nullptr, nullptr, std::move(handler), options}, true);
}
Status Server::Start() { return impl_->Start(); }
int Server::port() const { return impl_->port(); }
bool Server::on_listen_fd() const { return impl_->on_listen_fd(); }
void Server::Wait() { impl_->Wait(); }
void Server::Shutdown(std::chrono::milliseconds grace) { impl_->Shutdown(grace); }
std::vector<std::string> Server::ResourcesForTest() const { return impl_->Resources(); }

}  // namespace lever
