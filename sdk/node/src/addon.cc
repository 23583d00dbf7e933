// The Node-API addon over liblever (lever.h). It exports plain classes whose
// asynchronous methods take `(err, result)` callbacks; lib/ builds the public
// API (Promises, Duplex streams, LeverError) on top.
//
// Threads: liblever calls back on gRPC and worker threads. Those callbacks
// only fill a Completion (plain C data) and post it to the JS thread through
// one thread-safe function per environment (the Bridge). The Bridge is ref'd
// while something is pending (a call, a stream read, a running server, a
// stream being opened) and unref'd otherwise, so a process with nothing
// pending exits. JS values are created and JS is called only on the JS thread.
#include <napi.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <v8.h>  // setHeapLimit only: Node-API has no heap limit

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lever.h"
#include "values.h"

namespace lever_node {
namespace {

// ---- Bridge: liblever threads -> JS thread --------------------------------

struct Completion {
  virtual ~Completion() = default;
  // On the JS thread. May throw a Napi::Error (a JS callback threw).
  virtual void Deliver(Napi::Env env) = 0;
};

struct Addon;
void CallJs(Napi::Env env, Napi::Function, Addon* addon, Completion* c);
using Tsfn = Napi::TypedThreadSafeFunction<Addon, Completion, CallJs>;

// Per-environment state (main thread and worker threads each have one).
struct Addon {
  Napi::FunctionReference stream_ctor;
  Napi::FunctionReference call_ctor;
  // Posting is guarded so that no thread touches the tsfn after the
  // environment's cleanup released it.
  std::mutex mu;
  bool closed = false;
  Tsfn tsfn;
  int pending = 0;  // JS thread only

  void Hold(Napi::Env env) {
    if (pending++ == 0) tsfn.Ref(env);
  }
  void Release(Napi::Env env) {
    if (--pending == 0) tsfn.Unref(env);
  }
  // Any thread. Takes ownership of `c`; when the environment is gone the
  // completion is destroyed (its destructor releases native resources).
  void Post(Completion* c) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!closed && tsfn.NonBlockingCall(c) == napi_ok) return;
    }
    delete c;
  }
};

void CallJs(Napi::Env env, Napi::Function, Addon*, Completion* c) {
  if (env != nullptr) {
    try {
      c->Deliver(env);
    } catch (const Napi::Error& e) {
      // A JS callback threw: make it an uncaught exception, as if it had
      // thrown from any other event-loop callback.
      napi_fatal_exception(env, e.Value());
    }
  }
  delete c;
}

Addon* GetAddon(Napi::Env env) { return env.GetInstanceData<Addon>(); }
void KeepAddon(Napi::Env, Addon*) {}

// ---- Errors ---------------------------------------------------------------

const char* StatusName(int status) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  if (status < 0 || status > 16) return "UNKNOWN";
  return kNames[status];
}

struct ErrorDeleter {
  void operator()(lever_error* e) const { lever_error_free(e); }
};
using ErrorPtr = std::unique_ptr<lever_error, ErrorDeleter>;

// A plain object {message, code, status[, remote]}; lib/errors.js turns it
// into a LeverError carrying the caller's stack.
Napi::Object ErrorInfo(Napi::Env env, int rc, const lever_error* err) {
  Napi::Object o = Napi::Object::New(env);
  const char* msg = err ? lever_error_message(err) : nullptr;
  o.Set("message", Napi::String::New(env, msg && *msg ? msg : "lever: call failed"));
  int status = err ? lever_error_status(err) : 2;
  switch (rc) {
    case LEVER_EAPP:
      o.Set("code", "REMOTE");
      o.Set("remote", FromLever(env, err ? lever_error_value(err) : nullptr));
      break;
    case LEVER_EINVALID:
      o.Set("code", "INVALID_ARGUMENT");
      status = 3;
      break;
    case LEVER_ETIMEOUT:
      o.Set("code", "DEADLINE_EXCEEDED");
      status = 4;
      break;
    default:
      o.Set("code", StatusName(status));
      break;
  }
  o.Set("status", Napi::Number::New(env, status));
  return o;
}

std::string OptString(const Napi::Value& v) { return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(); }

// Calls a stored callback, then drops it.
void Invoke(Napi::Env env, napi_ref* ref, std::initializer_list<napi_value> args) {
  napi_value fn;
  napi_get_reference_value(env, *ref, &fn);
  napi_delete_reference(env, *ref);
  *ref = nullptr;
  Napi::Function(env, fn).Call(env.Undefined(), args);
}

napi_ref Keep(Napi::Env env, napi_value v) {
  napi_ref ref = nullptr;
  if (napi_create_reference(env, v, 1, &ref) != napi_ok) throw Napi::Error::New(env);
  return ref;
}

// ---- Client ---------------------------------------------------------------

class Client : public Napi::ObjectWrap<Client> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Client",
                       {InstanceMethod<&Client::InvokeMethod>("invoke"),
                        InstanceMethod<&Client::CancelInvoke>("cancelInvoke"),
                        InstanceMethod<&Client::OpenStream>("openStream"),
                        InstanceMethod<&Client::Close>("close")});
  }

  // new Client(forceHost?: string, ownEnvironment?: string, protoJson?: bool)
  explicit Client(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Client>(info) {
    std::string force = OptString(info[0]), own = OptString(info[1]);
    lever_client_options opts = LEVER_CLIENT_OPTIONS_INIT;
    if (!force.empty()) opts.force_host = force.c_str();
    if (!own.empty()) opts.own_environment = own.c_str();
    opts.proto_json = info[2].ToBoolean() ? 1 : 0;
    lever_error* err = nullptr;
    int rc = lever_client_new(&client_, &opts, &err);
    ErrorPtr e(err);
    if (rc != 0) throw Napi::Error::New(info.Env(), std::string("lever: cannot create client: ") +
                                                        (err ? lever_error_message(err) : "?"));
  }
  ~Client() override { lever_client_free(client_); }

 private:
  struct InvokeDone : Completion {
    Addon* addon;
    napi_ref cb;
    int rc = 0;
    lever_value* result = nullptr;
    lever_error* err = nullptr;
    lever_invocation* inv = nullptr;  // cancels the call (cancelInvoke)
    ~InvokeDone() override {
      lever_value_free(result);
      lever_error_free(err);
      lever_invocation_free(inv);  // the call has ended: nothing to cancel
    }
    void Deliver(Napi::Env env) override {
      addon->Release(env);
      Napi::HandleScope scope(env);
      if (rc == 0) {
        Napi::Value v = FromLever(env, result);
        Invoke(env, &cb, {env.Null(), v});
      } else {
        Invoke(env, &cb, {ErrorInfo(env, rc, err)});
      }
    }
  };
  static void OnInvoke(int rc, lever_value* result, lever_error* err, void* payload) {
    auto* d = static_cast<InvokeDone*>(payload);
    d->rc = rc;
    d->result = result;
    d->err = err;
    d->addon->Post(d);
  }

  static lever_call_options CallOptions(const Napi::Value& timeout, const Napi::Value& wait_for_ready) {
    lever_call_options o = LEVER_CALL_OPTIONS_INIT;
    o.wait_for_ready = wait_for_ready.ToBoolean() ? 1 : 0;
    if (timeout.IsNumber()) {
      double t = timeout.As<Napi::Number>().DoubleValue();
      if (t > 0) o.timeout_ms = t > 4e9 ? 4000000000u : static_cast<unsigned int>(t);
    }
    return o;
  }

  // invoke(url, args[], timeoutMs, waitForReady, cb(errInfo, result)) -> a
  // handle for cancelInvoke, valid until cb has run.
  Napi::Value InvokeMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Check(env);
    std::string url = info[0].As<Napi::String>().Utf8Value();
    ValuePtr args = ToLever(env, info[1]);
    lever_call_options opts = CallOptions(info[2], info[3]);
    auto* d = new InvokeDone();
    d->addon = GetAddon(env);
    d->cb = Keep(env, info[4].As<Napi::Function>());
    d->addon->Hold(env);
    lever_invocation* inv = nullptr;
    int rc = lever_client_invoke_start(&inv, client_, url.c_str(), args.get(), &opts, &Client::OnInvoke, d);
    // A non-zero rc means the callback will not run (NULL args, out of
    // memory); errors in the arguments come through the callback. Either way
    // it is delivered on this thread later, so `d` is still ours here.
    if (rc != 0) {
      OnInvoke(rc, nullptr, nullptr, d);
      return env.Undefined();
    }
    d->inv = inv;
    return Napi::External<InvokeDone>::New(env, d);
  }

  // cancelInvoke(handle): cancels a call invoke started whose callback has
  // not run yet (its callback then gets CANCELLED).
  Napi::Value CancelInvoke(const Napi::CallbackInfo& info) {
    if (info[0].IsExternal()) lever_invocation_cancel(info[0].As<Napi::External<InvokeDone>>().Data()->inv);
    return info.Env().Undefined();
  }

  struct OpenDone : Completion {
    Addon* addon;
    Client* self;
    napi_ref self_ref;  // keeps the client alive while the open is pending
    napi_ref cb;
    int rc = 0;
    lever_stream* stream = nullptr;
    lever_error* err = nullptr;
    ~OpenDone() override {
      lever_stream_free(stream);
      lever_error_free(err);
    }
    void Deliver(Napi::Env env) override;
  };

  // openStream(url, args[], timeoutMs, waitForReady, cb(errInfo, nativeStream))
  Napi::Value OpenStream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Check(env);
    std::string url = info[0].As<Napi::String>().Utf8Value();
    ValuePtr args = ToLever(env, info[1]);
    lever_call_options opts = CallOptions(info[2], info[3]);
    auto* d = new OpenDone();
    d->addon = GetAddon(env);
    d->self = this;
    d->self_ref = Keep(env, Value());
    d->cb = Keep(env, info[4].As<Napi::Function>());
    d->addon->Hold(env);
    opens_in_flight_++;
    int rc = lever_client_stream_open_async(client_, url.c_str(), args.get(), &opts, &Client::OnOpen, d);
    if (rc != 0) OnOpen(rc, nullptr, nullptr, d);  // the callback will not run
    return env.Undefined();
  }
  static void OnOpen(int rc, lever_stream* stream, lever_error* err, void* payload) {
    auto* d = static_cast<OpenDone*>(payload);
    d->rc = rc;
    d->stream = stream;
    d->err = err;
    d->addon->Post(d);
  }

  // lever_client_free lets calls in flight finish; the free still waits for
  // pending opens, so that they never race with it.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    closed_ = true;
    if (opens_in_flight_ == 0) {
      lever_client_free(client_);
      client_ = nullptr;
    }
    return info.Env().Undefined();
  }
  void OpenFinished(Napi::Env env) {
    if (--opens_in_flight_ == 0 && closed_) {
      lever_client_free(client_);
      client_ = nullptr;
    }
  }

  void Check(Napi::Env env) {
    if (closed_) throw Napi::Error::New(env, "Client is closed");
  }

  lever_client* client_ = nullptr;
  int opens_in_flight_ = 0;
  bool closed_ = false;
};

// ---- Stream (client or server side) ---------------------------------------

// Stream handles held by wrappers and not yet freed (tests check for leaks).
std::atomic<int64_t> g_live_streams{0};

class Stream : public Napi::ObjectWrap<Stream> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Stream",
                       {InstanceMethod<&Stream::Recv>("recv"), InstanceMethod<&Stream::Send>("send"),
                        InstanceMethod<&Stream::CloseSend>("closeSend"),
                        InstanceMethod<&Stream::EndWithError>("endWithError"),
                        InstanceMethod<&Stream::Cancel>("cancel"), InstanceMethod<&Stream::Free>("free"),
                        InstanceMethod<&Stream::Args>("args"), InstanceMethod<&Stream::Context>("context")});
  }

  // Only from C++: new Stream(External<lever_stream>).
  explicit Stream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Stream>(info) {
    if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "lever: Stream is created by the library");
    stream_ = info[0].As<Napi::External<lever_stream>>().Data();
    g_live_streams++;
  }
  ~Stream() override {
    if (stream_) DoFree();
  }

  static Napi::Object Wrap(Napi::Env env, lever_stream* s) {
    return GetAddon(env)->stream_ctor.New({Napi::External<lever_stream>::New(env, s)});
  }

 private:
  struct RecvDone : Completion {
    Addon* addon;
    Stream* self;
    napi_ref self_ref;  // keeps the wrapper (and the lever_stream) alive
    napi_ref cb;
    int rc = 0;
    lever_value* msg = nullptr;
    lever_error* err = nullptr;
    ~RecvDone() override {
      lever_value_free(msg);
      lever_error_free(err);
    }
    void Deliver(Napi::Env env) override {
      addon->Release(env);
      Napi::HandleScope scope(env);
      self->recv_in_flight_ = false;
      napi_delete_reference(env, self_ref);
      self->MaybeFree();
      if (rc == 0) {
        Napi::Value v = FromLever(env, msg);
        Invoke(env, &cb, {env.Null(), v});
      } else if (rc == LEVER_EEND) {
        Invoke(env, &cb, {env.Null(), env.Undefined(), Napi::Boolean::New(env, true)});
      } else {
        Invoke(env, &cb, {ErrorInfo(env, rc, err)});
      }
    }
  };
  static void OnRecv(int rc, lever_value* msg, lever_error* err, void* payload) {
    auto* d = static_cast<RecvDone*>(payload);
    d->rc = rc;
    d->msg = msg;
    d->err = err;
    d->addon->Post(d);
  }

  // recv(cb(errInfo, msg, ended)): one at a time.
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (stream_ == nullptr || free_pending_) throw Napi::Error::New(env, "lever: stream is closed");
    if (recv_in_flight_) throw Napi::Error::New(env, "lever: a receive is already pending");
    auto* d = new RecvDone();
    d->addon = GetAddon(env);
    d->self = this;
    d->self_ref = Keep(env, Value());
    d->cb = Keep(env, info[0].As<Napi::Function>());
    d->addon->Hold(env);
    recv_in_flight_ = true;
    int rc = lever_stream_recv_async(stream_, &Stream::OnRecv, d);
    if (rc != 0) OnRecv(rc, nullptr, nullptr, d);
    return env.Undefined();
  }

  struct SendDone : Completion {
    Addon* addon;
    Stream* self;
    napi_ref self_ref;
    napi_ref cb;
    int rc = 0;
    lever_error* err = nullptr;
    ~SendDone() override { lever_error_free(err); }
    void Deliver(Napi::Env env) override {
      addon->Release(env);
      Napi::HandleScope scope(env);
      self->sends_in_flight_--;
      napi_delete_reference(env, self_ref);
      self->MaybeFree();
      if (rc == 0) {
        Invoke(env, &cb, {env.Null()});
      } else {
        Invoke(env, &cb, {ErrorInfo(env, rc, err)});
      }
    }
  };
  static void OnSent(int rc, lever_error* err, void* payload) {
    auto* d = static_cast<SendDone*>(payload);
    d->rc = rc;
    d->err = err;
    d->addon->Post(d);
  }

  // send(messages[], cb(errInfo|null)): queues the messages without blocking;
  // cb runs once gRPC wrote the last one (or the stream failed).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array msgs = info[0].As<Napi::Array>();
    Napi::Function cb = info[1].As<Napi::Function>();
    if (stream_ == nullptr || free_pending_) {
      cb.Call({ErrorInfo(env, LEVER_EINVALID, nullptr)});
      return env.Undefined();
    }
    uint32_t n = msgs.Length();
    // Encode everything first: a value that cannot be sent sends nothing.
    std::vector<ValuePtr> values;
    values.reserve(n);
    for (uint32_t i = 0; i < n; i++) values.push_back(ToLever(env, msgs.Get(i)));
    for (uint32_t i = 0; i + 1 < n; i++) lever_stream_send_async(stream_, values[i].get(), nullptr, nullptr);
    auto* d = new SendDone();
    d->addon = GetAddon(env);
    d->self = this;
    d->self_ref = Keep(env, Value());
    d->cb = Keep(env, cb);
    d->addon->Hold(env);
    sends_in_flight_++;
    int rc = n == 0 ? 0 : lever_stream_send_async(stream_, values[n - 1].get(), &Stream::OnSent, d);
    if (n == 0 || rc != 0) OnSent(rc, nullptr, d);
    return env.Undefined();
  }

  Napi::Value CloseSend(const Napi::CallbackInfo& info) {
    if (stream_ && !free_pending_) lever_stream_close_send(stream_);
    return info.Env().Undefined();
  }
  Napi::Value EndWithError(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (stream_ && !free_pending_) {
      ValuePtr v = ToLever(env, info[0]);
      lever_stream_end_with_error(stream_, v.get());
    }
    return env.Undefined();
  }
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    if (stream_ && !free_pending_) lever_stream_cancel(stream_);
    return info.Env().Undefined();
  }
  // Releases the handle now, or once the pending receive and sends have
  // completed (liblever still refers to it until then).
  Napi::Value Free(const Napi::CallbackInfo& info) {
    free_pending_ = true;
    MaybeFree();
    return info.Env().Undefined();
  }
  void MaybeFree() {
    if (free_pending_ && !recv_in_flight_ && sends_in_flight_ == 0) DoFree();
  }
  void DoFree() {
    if (stream_ == nullptr) return;
    lever_stream_free(stream_);
    stream_ = nullptr;
    g_live_streams--;
  }

  Napi::Value Args(const Napi::CallbackInfo& info) {
    if (stream_ == nullptr) return info.Env().Undefined();
    return FromLever(info.Env(), lever_stream_args(stream_));
  }
  Napi::Value Context(const Napi::CallbackInfo& info);

  lever_stream* stream_ = nullptr;
  int sends_in_flight_ = 0;
  bool recv_in_flight_ = false;
  bool free_pending_ = false;
};

void Client::OpenDone::Deliver(Napi::Env env) {
  addon->Release(env);
  Napi::HandleScope scope(env);
  self->OpenFinished(env);
  napi_delete_reference(env, self_ref);
  if (rc == 0) {
    Napi::Object s = Stream::Wrap(env, stream);
    stream = nullptr;  // owned by the wrapper now
    Invoke(env, &cb, {env.Null(), s});
  } else {
    Invoke(env, &cb, {ErrorInfo(env, rc, err)});
  }
}

Napi::Object ContextObject(Napi::Env env, const lever_context* ctx) {
  Napi::Object o = Napi::Object::New(env);
  if (ctx == nullptr) return o;
  auto str = [&](const char* s) { return Napi::String::New(env, s ? s : ""); };
  o.Set("url", str(lever_context_url(ctx)));
  o.Set("environment", str(lever_context_env(ctx)));
  o.Set("service", str(lever_context_service(ctx)));
  o.Set("resource", str(lever_context_resource(ctx)));
  o.Set("method", str(lever_context_method(ctx)));
  o.Set("sourceEnvironment", str(lever_context_source_env(ctx)));
  int64_t deadline = lever_context_deadline_ms(ctx);
  o.Set("deadline", deadline < 0 ? env.Null() : Napi::Number::New(env, static_cast<double>(deadline)));
  return o;
}

Napi::Value Stream::Context(const Napi::CallbackInfo& info) {
  if (stream_ == nullptr) return info.Env().Undefined();
  return ContextObject(info.Env(), lever_stream_context(stream_));
}

// ---- Call: a unary call being served --------------------------------------

class Call : public Napi::ObjectWrap<Call> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Call",
                       {InstanceMethod<&Call::Reply>("reply"), InstanceMethod<&Call::ReplyError>("replyError"),
                        InstanceMethod<&Call::Fail>("fail"), InstanceMethod<&Call::Context>("context"),
                        InstanceMethod<&Call::Cancelled>("cancelled")});
  }
  explicit Call(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Call>(info) {
    if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "lever: Call is created by the library");
    call_ = info[0].As<Napi::External<lever_call>>().Data();
  }
  // A handler that never replied (its Call was collected) fails the call.
  ~Call() override {
    if (call_) lever_call_fail(call_, 13, "the handler never replied");
  }
  static Napi::Object Wrap(Napi::Env env, lever_call* c) {
    return GetAddon(env)->call_ctor.New({Napi::External<lever_call>::New(env, c)});
  }

 private:
  lever_call* Take(Napi::Env env) {
    if (call_ == nullptr) throw Napi::Error::New(env, "lever: the call was already answered");
    lever_call* c = call_;
    call_ = nullptr;
    return c;
  }
  Napi::Value Reply(const Napi::CallbackInfo& info) {
    ValuePtr v = ToLever(info.Env(), info[0]);  // may throw: the call stays open
    lever_call_reply(Take(info.Env()), v.get());
    return info.Env().Undefined();
  }
  Napi::Value ReplyError(const Napi::CallbackInfo& info) {
    ValuePtr v = ToLever(info.Env(), info[0]);
    lever_call_reply_error(Take(info.Env()), v.get());
    return info.Env().Undefined();
  }
  Napi::Value Fail(const Napi::CallbackInfo& info) {
    int status = info[0].As<Napi::Number>().Int32Value();
    std::string msg = OptString(info[1]);
    lever_call_fail(Take(info.Env()), status, msg.c_str());
    return info.Env().Undefined();
  }
  Napi::Value Context(const Napi::CallbackInfo& info) {
    if (call_ == nullptr) return info.Env().Undefined();
    return ContextObject(info.Env(), lever_call_context(call_));
  }
  Napi::Value Cancelled(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), call_ == nullptr || lever_context_cancelled(lever_call_context(call_)) != 0);
  }

  lever_call* call_ = nullptr;
};

// ---- Server -----------------------------------------------------------------

class Server : public Napi::ObjectWrap<Server> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Server",
                       {InstanceMethod<&Server::Handle>("handle"), InstanceMethod<&Server::Start>("start"),
                        InstanceMethod<&Server::Stop>("stop")});
  }

  // new Server(listenAddr?: string, maxWorkers?: number)
  explicit Server(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Server>(info) {
    std::string addr = OptString(info[0]);
    lever_server_options opts = LEVER_SERVER_OPTIONS_INIT;
    if (!addr.empty()) opts.listen_addr = addr.c_str();
    if (info[1].IsNumber()) opts.max_workers = info[1].As<Napi::Number>().Int32Value();
    lever_error* err = nullptr;
    int rc = lever_server_new(&server_, &opts, &err);
    ErrorPtr e(err);
    if (rc != 0) throw Napi::Error::New(info.Env(), std::string("lever: ") + (err ? lever_error_message(err) : "server"));
    addon_ = GetAddon(info.Env());
  }
  ~Server() override {
    // Only reached when the server is not running (lib/ keeps a running
    // server referenced) or at environment teardown.
    lever_server_free(server_);
    for (Entry* e : entries_) {
      napi_delete_reference(Env(), e->fn);
      delete e;
    }
  }

 private:
  struct Entry {
    Addon* addon;
    napi_ref fn;
  };

  struct UnaryStart : Completion {
    Entry* entry;
    lever_call* call;
    ~UnaryStart() override {
      if (call) lever_call_fail(call, 14, "the service is shutting down");
    }
    void Deliver(Napi::Env env) override {
      Napi::HandleScope scope(env);
      Napi::Value args = FromLever(env, lever_call_args(call));
      const char* res = lever_context_resource(lever_call_context(call));
      Napi::String resource = Napi::String::New(env, res ? res : "");
      Napi::Object c = Call::Wrap(env, call);
      call = nullptr;
      napi_value fn;
      napi_get_reference_value(env, entry->fn, &fn);
      Napi::Function(env, fn).Call(env.Undefined(), {c, args, resource});
    }
  };
  static void OnUnary(lever_call* call, void* payload) {
    auto* e = static_cast<Entry*>(payload);
    auto* d = new UnaryStart();
    d->entry = e;
    d->call = call;
    e->addon->Post(d);
  }

  struct StreamStart : Completion {
    Entry* entry;
    lever_stream* stream;
    ~StreamStart() override { lever_stream_free(stream); }
    void Deliver(Napi::Env env) override {
      Napi::HandleScope scope(env);
      Napi::Value args = FromLever(env, lever_stream_args(stream));
      const char* res = lever_context_resource(lever_stream_context(stream));
      Napi::String resource = Napi::String::New(env, res ? res : "");
      Napi::Object s = Stream::Wrap(env, stream);
      stream = nullptr;
      napi_value fn;
      napi_get_reference_value(env, entry->fn, &fn);
      Napi::Function(env, fn).Call(env.Undefined(), {s, args, resource});
    }
  };
  static void OnStream(lever_stream* stream, void* payload) {
    auto* e = static_cast<Entry*>(payload);
    auto* d = new StreamStart();
    d->entry = e;
    d->stream = stream;
    e->addon->Post(d);
  }

  // handle(method, streaming, fn(call|stream, args, resource))
  Napi::Value Handle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string method = info[0].As<Napi::String>().Utf8Value();
    bool streaming = info[1].ToBoolean();
    auto* e = new Entry{addon_, Keep(env, info[2].As<Napi::Function>())};
    entries_.push_back(e);
    lever_error* err = nullptr;
    int rc = streaming ? lever_server_handle_stream(server_, method.c_str(), &Server::OnStream, e, &err)
                       : lever_server_handle(server_, method.c_str(), &Server::OnUnary, e, &err);
    ErrorPtr ep(err);
    if (rc != 0) {
      throw Napi::Error::New(env, "lever: cannot register " + method + ": " + (err ? lever_error_message(err) : "?"));
    }
    return env.Undefined();
  }

  // start() -> bound TCP port (0 for unix sockets); keeps the process alive.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    lever_error* err = nullptr;
    int rc = lever_server_start(server_, &err);
    ErrorPtr ep(err);
    if (rc != 0) throw Napi::Error::New(env, std::string("lever: cannot start: ") + (err ? lever_error_message(err) : "?"));
    running_ = true;
    addon_->Hold(env);
    return Napi::Number::New(env, lever_server_port(server_));
  }

  struct StopDone : Completion {
    Addon* addon;
    napi_ref cb;
    void Deliver(Napi::Env env) override {
      addon->Release(env);
      Napi::HandleScope scope(env);
      if (cb) Invoke(env, &cb, {});
    }
  };

  // stop(graceMs, cb()): stops on another thread, because handlers need the
  // JS thread to finish their calls during the grace period.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto* d = new StopDone();
    d->addon = addon_;
    d->cb = info[1].IsFunction() ? Keep(env, info[1]) : nullptr;
    unsigned grace = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    if (!running_) {
      addon_->Hold(env);
      addon_->Post(d);
      return env.Undefined();
    }
    running_ = false;  // the Hold of Start is handed to the StopDone
    lever_server* s = server_;
    std::thread([s, grace, d]() {
      lever_server_stop(s, grace);
      d->addon->Post(d);
    }).detach();
    return env.Undefined();
  }

  Addon* addon_ = nullptr;
  lever_server* server_ = nullptr;
  bool running_ = false;
  std::vector<Entry*> entries_;
};

// ---- Heap limit ---------------------------------------------------------------

size_t KeepHeapLimit(void*, size_t current, size_t) { return current; }

// setHeapLimit(mib): V8's old-generation limit, as --max-old-space-size=<mib>
// would have set it at start-up. For a lever-serve started ahead of its
// service (bin/lever-serve --pool-fd), which learns the service's ram only
// when handed it. Removing a near-heap-limit callback restores the limit to
// the one given (V8 lowers it only, and never below its live heap + 25 %).
Napi::Value SetHeapLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber() || !(info[0].As<Napi::Number>().DoubleValue() >= 1)) {
    throw Napi::TypeError::New(env, "setHeapLimit(mib): mib must be a number >= 1");
  }
  auto mib = static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue());
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  isolate->AddNearHeapLimitCallback(KeepHeapLimit, nullptr);
  isolate->RemoveNearHeapLimitCallback(KeepHeapLimit, mib << 20);
  return env.Undefined();
}

// ---- Hand-off of a pre-started lever-serve --------------------------------------

// readHandOff(fd): [order, passedFd]. Reads leverd's order on the unix socket
// `fd` (blocking; bin/lever-serve --pool-fd): its 32-byte header says its
// size. An fd that rides on it (SCM_RIGHTS: the instance's listening socket,
// with socket activation) comes back as passedFd (close-on-exec), else -1.
// At EOF before a whole order: an empty Buffer.
Napi::Value ReadHandOff(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "readHandOff(fd): fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string order;
  uint32_t size = 0;
  int passed = -1;
  constexpr size_t kMax = 64 << 10;  // host/src/process_runtime.cc kMaxOrder
  char buf[16384];
  while (size == 0 || order.size() < size) {
    iovec iov = {buf, std::min(sizeof buf, size == 0 ? sizeof buf : size - order.size())};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Napi::Error::New(env, std::string("readHandOff: ") + strerror(errno));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
        int got;
        std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
        if (passed < 0) {
          passed = got;
        } else {
          close(got);  // one socket is all an order carries
        }
      }
    }
    if (n == 0) {
      if (passed >= 0) close(passed);
      return Napi::Array::New(env, 0);
    }
    order.append(buf, static_cast<size_t>(n));
    if (size == 0 && order.size() >= 32) {
      std::memcpy(&size, order.data(), sizeof size);
      if (size < 32 || size > kMax) throw Napi::Error::New(env, "readHandOff: a bad order from leverd");
    }
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Buffer<char>::Copy(env, order.data(), order.size()));
  out.Set(1u, Napi::Number::New(env, passed));
  return out;
}

// moveFd(from, to): dup2(from, to) without close-on-exec, then closes `from`
// (the listening socket to the fd its LEVEROS_LISTEN_FD names).
Napi::Value MoveFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "moveFd(from, to): from and to must be numbers");
  }
  int from = info[0].As<Napi::Number>().Int32Value(), to = info[1].As<Napi::Number>().Int32Value();
  if (from != to) {
    if (dup2(from, to) < 0) throw Napi::Error::New(env, std::string("moveFd: ") + strerror(errno));
    close(from);
  } else if (fcntl(to, F_SETFD, 0) < 0) {
    throw Napi::Error::New(env, std::string("moveFd: ") + strerror(errno));
  }
  return env.Undefined();
}

// ---- Module -------------------------------------------------------------------

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* addon = new Addon();
  addon->tsfn = Tsfn::New(env, "lever", 0, 1, addon);
  addon->tsfn.Unref(env);
  Napi::Function stream = Stream::Define(env), call = Call::Define(env);
  addon->stream_ctor = Napi::Persistent(stream);
  addon->call_ctor = Napi::Persistent(call);
  // The Addon itself is leaked on purpose: liblever threads may still post
  // to it after the environment is gone (Post then finds it closed).
  env.SetInstanceData<Addon, KeepAddon>(addon);
  env.AddCleanupHook([addon]() {
    std::lock_guard<std::mutex> lock(addon->mu);
    addon->closed = true;
    addon->tsfn.Release();
  });
  exports.Set("Client", Client::Define(env));
  exports.Set("Server", Server::Define(env));
  exports.Set("Stream", stream);
  exports.Set("Call", call);
  exports.Set("version", Napi::String::New(env, LEVER_VERSION));
  exports.Set("setHeapLimit", Napi::Function::New(env, SetHeapLimit));
  exports.Set("readHandOff", Napi::Function::New(env, ReadHandOff));
  exports.Set("moveFd", Napi::Function::New(env, MoveFd));
  exports.Set("liveStreams", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::Number::New(info.Env(), static_cast<double>(g_live_streams.load()));
              }));
  return exports;
}

}  // namespace
}  // namespace lever_node

static Napi::Object InitLever(Napi::Env env, Napi::Object exports) { return lever_node::Init(env, exports); }
NODE_API_MODULE(lever, InitLever)
