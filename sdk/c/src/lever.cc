// The C ABI over the C++ core. No C++ exception or type crosses it: every
// entry point catches std::bad_alloc (the only exception the core can throw)
// and maps it to LEVER_ERROR. Everything that may allocate runs inside
// LEVER_GUARD_BEGIN/END or its own try; the error helpers themselves never
// throw (out of memory, they hand out one static error).
#include "lever.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "lever/client.h"
#include "lever/json.h"
#include "lever/msgpack.h"
#include "lever/server.h"
#include "lever/url.h"

// The opaque C types. A lever_value is a lever::Value (never defined as a
// struct: pointers are cast), a lever_context a lever::CallContext.
struct lever_error {
  int code = LEVER_ERROR;
  int status = 2;
  std::string message;
  lever::Value value;
  bool has_value = false;
};

struct lever_client {
  explicit lever_client(lever::ClientOptions o) : client(std::move(o)) {}
  lever::Client client;
};

struct lever_stream {
  lever::ClientStreamPtr client;
  lever::ServerStreamPtr server;
  lever::Value args;  // server streams: the call's arguments
};

struct lever_server {
  explicit lever_server(lever::ServerOptions o) : server(std::move(o)) {}
  lever::Server server;
};

struct lever_call {
  lever::UnaryCallPtr call;
  lever::Value args;
};

struct lever_invocation {
  lever::PendingCallPtr call;  // null when the call failed before it was sent
};

namespace {

using lever::Result;
using lever::Value;

Value* V(lever_value* v) { return reinterpret_cast<Value*>(v); }
const Value* V(const lever_value* v) { return reinterpret_cast<const Value*>(v); }
lever_value* C(Value* v) { return reinterpret_cast<lever_value*>(v); }
const lever_value* C(const Value* v) { return reinterpret_cast<const lever_value*>(v); }
const lever::CallContext* X(const lever_context* c) { return reinterpret_cast<const lever::CallContext*>(c); }
const lever_context* C(const lever::CallContext* c) { return reinterpret_cast<const lever_context*>(c); }

// The error handed out when even an error cannot be allocated: static,
// never freed (lever_error_free knows it).
lever_error* OutOfMemoryError() noexcept {
  // "out of memory" fits the small-string buffer: building it allocates nothing.
  static lever_error e = [] {
    lever_error x;
    x.code = LEVER_ERROR;
    x.status = static_cast<int>(lever::Code::kResourceExhausted);
    x.message = "out of memory";
    return x;
  }();
  return &e;
}

// Never throws: out of memory gives the static error above.
lever_error* MakeError(int code, int status, std::string_view message) noexcept {
  try {
    auto e = std::make_unique<lever_error>();
    e->code = code;
    e->status = status;
    e->message.assign(message);
    return e.release();
  } catch (const std::bad_alloc&) {
    return OutOfMemoryError();
  }
}

int Fail(lever_error** err, int code, int status, std::string_view message) noexcept {
  if (err != nullptr) *err = MakeError(code, status, message);
  return code;
}

int Invalid(lever_error** err, std::string_view message) noexcept {
  return Fail(err, LEVER_EINVALID, static_cast<int>(lever::Code::kInvalidArgument), message);
}

int OutOfMemory(lever_error** err) noexcept {
  return Fail(err, LEVER_ERROR, static_cast<int>(lever::Code::kResourceExhausted), "out of memory");
}

int FromStatus(lever_error** err, const lever::Status& s) {
  int code = s.code() == lever::Code::kInvalidArgument ? LEVER_EINVALID : LEVER_ERROR;
  return Fail(err, code, static_cast<int>(s.code()), s.message());
}

// Maps a Result to (rc, *out, *err). `out` may be null for results that are
// dropped.
int FromResult(Result r, lever_value** out, lever_error** err) {
  switch (r.kind) {
    case Result::Kind::kValue:
      if (out != nullptr) *out = C(new Value(std::move(r.value)));
      return LEVER_OK;
    case Result::Kind::kEnd:
      return LEVER_EEND;
    case Result::Kind::kAppError: {
      if (err != nullptr) {
        auto e = std::make_unique<lever_error>();
        e->code = LEVER_EAPP;
        e->status = static_cast<int>(lever::Code::kUnknown);
        e->message = r.ToStatus().message();
        e->value = std::move(r.value);
        e->has_value = true;
        *err = e.release();
      }
      return LEVER_EAPP;
    }
    case Result::Kind::kPlatformError:
      if (r.status.code() == lever::Code::kDeadlineExceeded && r.status.message() == lever::kReceiveTimeoutMessage) {
        return Fail(err, LEVER_ETIMEOUT, static_cast<int>(r.status.code()), r.status.message());
      }
      return Fail(err, LEVER_ERROR, static_cast<int>(r.status.code()), r.status.message());
  }
  return LEVER_ERROR;
}

// The arguments of a call: an array value, or none.
int ArgsOf(const lever_value* args, lever::Array* out, lever_error** err) {
  out->clear();
  if (args == nullptr) return LEVER_OK;
  if (!V(args)->is_array()) return Invalid(err, "args must be an array value");
  *out = V(args)->as_array();
  return LEVER_OK;
}

// Errors in the caller's URL or call style are LEVER_EINVALID; everything
// the server says is LEVER_ERROR or LEVER_EAPP.
int CheckUrl(const char* url, bool streaming, lever_error** err) {
  lever::UrlView u;
  lever::Status s = lever::ParseUrl(url, &u);
  if (!s.ok()) return Invalid(err, s.message());
  if (lever::IsChanMethod(u.method) != streaming) {
    return Invalid(err, streaming ? "use lever_client_invoke for non-streaming methods"
                                  : "use lever_client_stream_open for streaming methods");
  }
  return LEVER_OK;
}

lever::CallOptions CallOpts(const lever_call_options* o) {
  lever::CallOptions co;
  if (o != nullptr) {
    co.timeout = std::chrono::milliseconds(o->timeout_ms);
    co.wait_for_ready = o->wait_for_ready != 0;
  }
  return co;
}

bool BadVersion(const void* opts, unsigned int version, unsigned int expected) {
  return opts != nullptr && version != expected;
}

void SetBuf(lever_buf* out, const std::string& data) {
  out->ptr = static_cast<char*>(std::malloc(data.size() + 1));
  if (out->ptr == nullptr) throw std::bad_alloc();
  std::memcpy(out->ptr, data.data(), data.size());
  out->ptr[data.size()] = '\0';
  out->size = data.size();
}

// The callback of a call or receive that ends with a value; never throws.
// (lever_invoke_cb and lever_recv_cb are the same type.)
void DeliverValue(lever_invoke_cb cb, void* payload, Result r) noexcept {
  lever_value* out = nullptr;
  lever_error* e = nullptr;
  int rc;
  try {
    rc = FromResult(std::move(r), &out, &e);
  } catch (const std::bad_alloc&) {
    rc = OutOfMemory(&e);
  }
  cb(rc, out, e, payload);
}

// The callback of a msgpack call; never throws.
void DeliverMsgpack(lever_invoke_msgpack_cb cb, void* payload, Result r, const std::string& result) noexcept {
  lever_buf buf = LEVER_BUF_INIT;
  lever_error* e = nullptr;
  int rc;
  try {
    if (r.ok()) {
      SetBuf(&buf, result);
      rc = LEVER_OK;
    } else {
      rc = FromResult(std::move(r), nullptr, &e);
    }
  } catch (const std::bad_alloc&) {
    rc = OutOfMemory(&e);
  }
  cb(rc, &buf, e, payload);
}

// A msgpack argument array; none is the empty array.
std::string_view MsgpackArgs(const void* args, size_t args_len) {
  static const char kEmptyArray = static_cast<char>(0x90);
  return (args != nullptr && args_len > 0) ? std::string_view(static_cast<const char*>(args), args_len)
                                           : std::string_view(&kEmptyArray, 1);
}

// The arguments of a msgpack call must be one msgpack array.
int CheckMsgpackArgs(std::string_view a, lever_error** err) {
  lever::MsgpackView view;
  lever::Status s = lever::MsgpackView::Parse(a, &view);
  if (!s.ok()) return FromStatus(err, s);
  if (view.type() != lever::Value::Type::kArray) return Invalid(err, "args must be a msgpack array");
  return LEVER_OK;
}

// Starts a unary call for lever_client_invoke_async (out null) and
// lever_client_invoke_start; the arguments are checked. Errors found before
// sending go to `cb` in this thread.
int StartInvoke(lever_invocation** out, lever_client* client, const char* url, const lever_value* args,
                const lever_call_options* opts, lever_invoke_cb cb, void* payload) {
  try {
    std::unique_ptr<lever_invocation> inv;
    if (out != nullptr) inv = std::make_unique<lever_invocation>();
    lever::Array a;
    lever_error* err = nullptr;
    int rc = ArgsOf(args, &a, &err);
    if (rc == LEVER_OK) rc = CheckUrl(url, false, &err);
    if (rc != LEVER_OK) {
      if (out != nullptr) *out = inv.release();
      cb(rc, nullptr, err, payload);
      return LEVER_OK;
    }
    lever::PendingCallPtr call = client->client.InvokeUrlAsync(
        url, std::move(a), CallOpts(opts), [cb, payload](Result r) { DeliverValue(cb, payload, std::move(r)); });
    if (out != nullptr) {
      inv->call = std::move(call);
      *out = inv.release();
    }
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

}  // namespace

#define LEVER_GUARD_BEGIN try {
#define LEVER_GUARD_END(err)                                                               \
  }                                                                                        \
  catch (const std::bad_alloc&) {                                                          \
    return OutOfMemory(err);                                                               \
  }

extern "C" {

// ---- Errors ---------------------------------------------------------------

int lever_error_code_of(const lever_error* err) { return err ? err->code : LEVER_OK; }
int lever_error_status(const lever_error* err) { return err ? err->status : 0; }
const char* lever_error_message(const lever_error* err) { return err ? err->message.c_str() : ""; }
const lever_value* lever_error_value(const lever_error* err) { return err && err->has_value ? C(&err->value) : nullptr; }
void lever_error_free(lever_error* err) {
  if (err != OutOfMemoryError()) delete err;
}

void lever_buf_dispose(lever_buf* buf) {
  if (buf == nullptr) return;
  std::free(buf->ptr);
  buf->ptr = nullptr;
  buf->size = 0;
}

// ---- Values ---------------------------------------------------------------

lever_value* lever_value_new_null(void) { return C(new (std::nothrow) Value()); }
lever_value* lever_value_new_bool(int b) { return C(new (std::nothrow) Value(b != 0)); }
lever_value* lever_value_new_int(int64_t i) { return C(new (std::nothrow) Value(static_cast<long long>(i))); }
lever_value* lever_value_new_uint(uint64_t u) { return C(new (std::nothrow) Value(static_cast<unsigned long long>(u))); }
lever_value* lever_value_new_double(double d) { return C(new (std::nothrow) Value(d)); }
lever_value* lever_value_new_string(const char* s, size_t len) {
  try {
    return C(new Value(std::string(s ? s : "", s ? len : 0)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
lever_value* lever_value_new_bytes(const void* data, size_t len) {
  try {
    return C(new Value(lever::Bytes(data ? data : "", data ? len : 0)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
lever_value* lever_value_new_array(void) { return C(new (std::nothrow) Value(lever::Array{})); }
lever_value* lever_value_new_map(void) { return C(new (std::nothrow) Value(lever::Map{})); }
lever_value* lever_value_copy(const lever_value* v) {
  if (v == nullptr) return nullptr;
  try {
    return C(new Value(*V(v)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void lever_value_free(lever_value* v) { delete V(v); }

int lever_value_array_push(lever_value* array, lever_value* item) {
  std::unique_ptr<Value> owned(V(item));
  if (array == nullptr || item == nullptr || !V(array)->is_array()) return LEVER_EINVALID;
  try {
    V(array)->as_array().push_back(std::move(*owned));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_value_map_set(lever_value* map, const char* key, size_t key_len, lever_value* item) {
  std::unique_ptr<Value> owned(V(item));
  if (map == nullptr || key == nullptr || item == nullptr || !V(map)->is_map()) return LEVER_EINVALID;
  try {
    V(map)->as_map().Set(std::string(key, key_len), std::move(*owned));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

lever_type lever_value_type(const lever_value* v) {
  return v ? static_cast<lever_type>(V(v)->type()) : LEVER_TYPE_NULL;
}
int lever_value_bool(const lever_value* v) { return v && V(v)->is_bool() ? V(v)->as_bool() : 0; }
int64_t lever_value_int(const lever_value* v) { return v && V(v)->is_int() ? V(v)->as_int() : 0; }
uint64_t lever_value_uint(const lever_value* v) {
  if (v == nullptr) return 0;
  if (V(v)->is_uint()) return V(v)->as_uint();
  if (V(v)->is_int() && V(v)->as_int() >= 0) return static_cast<uint64_t>(V(v)->as_int());
  return 0;
}
double lever_value_double(const lever_value* v) { return v && V(v)->is_number() ? V(v)->ToDouble() : 0; }
const char* lever_value_string(const lever_value* v, size_t* len) {
  if (v == nullptr || !V(v)->is_string()) {
    if (len) *len = 0;
    return nullptr;
  }
  if (len) *len = V(v)->as_string().size();
  return V(v)->as_string().c_str();
}
const void* lever_value_bytes(const lever_value* v, size_t* len) {
  if (v == nullptr || !V(v)->is_bytes()) {
    if (len) *len = 0;
    return nullptr;
  }
  if (len) *len = V(v)->as_bytes().size();
  return V(v)->as_bytes().data().data();
}
size_t lever_value_size(const lever_value* v) {
  if (v == nullptr) return 0;
  if (V(v)->is_array()) return V(v)->as_array().size();
  if (V(v)->is_map()) return V(v)->as_map().size();
  return 0;
}
const lever_value* lever_value_at(const lever_value* v, size_t i) {
  if (v == nullptr) return nullptr;
  if (V(v)->is_array()) return i < V(v)->as_array().size() ? C(&V(v)->as_array()[i]) : nullptr;
  if (V(v)->is_map()) return i < V(v)->as_map().size() ? C(&V(v)->as_map().entries()[i].second) : nullptr;
  return nullptr;
}
const char* lever_value_key_at(const lever_value* v, size_t i, size_t* len) {
  if (v == nullptr || !V(v)->is_map() || i >= V(v)->as_map().size()) {
    if (len) *len = 0;
    return nullptr;
  }
  const std::string& k = V(v)->as_map().entries()[i].first;
  if (len) *len = k.size();
  return k.c_str();
}
const lever_value* lever_value_map_get(const lever_value* v, const char* key, size_t key_len) {
  if (v == nullptr || key == nullptr || !V(v)->is_map()) return nullptr;
  return C(V(v)->as_map().Find(std::string_view(key, key_len)));
}

int lever_value_to_msgpack(lever_buf* out, const lever_value* v) {
  if (out == nullptr || v == nullptr) return LEVER_EINVALID;
  try {
    SetBuf(out, lever::EncodeMsgpack(*V(v)));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_value_from_msgpack(lever_value** out, const void* data, size_t len, lever_error** err) {
  if (out == nullptr || (data == nullptr && len > 0)) return Invalid(err, "null argument");
  LEVER_GUARD_BEGIN
  auto v = std::make_unique<Value>();
  lever::Status s = lever::DecodeMsgpack(std::string_view(static_cast<const char*>(data), len), v.get());
  if (!s.ok()) return FromStatus(err, s);
  *out = C(v.release());
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_value_to_json(lever_buf* out, const lever_value* v, lever_error** err) {
  if (out == nullptr || v == nullptr) return Invalid(err, "null argument");
  LEVER_GUARD_BEGIN
  std::string text;
  lever::JsonWriteOptions o;
  o.bytes_as_base64 = true;
  o.nonfinite_as_null = true;
  lever::Status s = lever::WriteJson(*V(v), &text, o);
  if (!s.ok()) return FromStatus(err, s);
  SetBuf(out, text);
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_value_from_json(lever_value** out, const char* text, size_t len, lever_error** err) {
  if (out == nullptr || (text == nullptr && len > 0)) return Invalid(err, "null argument");
  LEVER_GUARD_BEGIN
  auto v = std::make_unique<Value>();
  lever::Status s = lever::ParseJson(std::string_view(text ? text : "", len), v.get());
  if (!s.ok()) return FromStatus(err, s);
  *out = C(v.release());
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

// ---- Client ---------------------------------------------------------------

int lever_client_options_init(lever_client_options* opts, unsigned int version) {
  if (opts == nullptr || version != LEVER_CLIENT_OPTIONS_VERSION) return LEVER_EINVALID;
  *opts = lever_client_options LEVER_CLIENT_OPTIONS_INIT;
  return LEVER_OK;
}

int lever_call_options_init(lever_call_options* opts, unsigned int version) {
  if (opts == nullptr || version != LEVER_CALL_OPTIONS_VERSION) return LEVER_EINVALID;
  *opts = lever_call_options LEVER_CALL_OPTIONS_INIT;
  return LEVER_OK;
}

int lever_client_new(lever_client** out, const lever_client_options* opts, lever_error** err) {
  if (out == nullptr) return Invalid(err, "null out");
  if (opts && BadVersion(opts, opts->version, LEVER_CLIENT_OPTIONS_VERSION)) {
    return Invalid(err, "unsupported lever_client_options version");
  }
  LEVER_GUARD_BEGIN
  lever::ClientOptions o;
  if (opts != nullptr) {
    if (opts->force_host) o.force_host = opts->force_host;
    if (opts->own_environment) o.own_environment = opts->own_environment;
    if (opts->proto_json) o.codec = lever::wire::Codec::kProtoJson;
    if (opts->channel_idle_timeout_ms) o.channel_idle_timeout = std::chrono::milliseconds(opts->channel_idle_timeout_ms);
  }
  *out = new lever_client(std::move(o));
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

void lever_client_free(lever_client* client) { delete client; }

int lever_client_invoke(lever_value** out, lever_client* client, const char* url, const lever_value* args,
                        const lever_call_options* opts, lever_error** err) {
  if (out == nullptr || client == nullptr || url == nullptr) return Invalid(err, "null argument");
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) {
    return Invalid(err, "unsupported lever_call_options version");
  }
  *out = nullptr;
  LEVER_GUARD_BEGIN
  lever::Array a;
  if (int rc = ArgsOf(args, &a, err); rc != LEVER_OK) return rc;
  if (int rc = CheckUrl(url, false, err); rc != LEVER_OK) return rc;
  Result r = client->client.InvokeUrl(url, std::move(a), CallOpts(opts));
  return FromResult(std::move(r), out, err);
  LEVER_GUARD_END(err)
}

int lever_client_invoke_msgpack(lever_buf* out, lever_client* client, const char* url, const void* args,
                                size_t args_len, const lever_call_options* opts, lever_error** err) {
  if (out == nullptr || client == nullptr || url == nullptr) return Invalid(err, "null argument");
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) {
    return Invalid(err, "unsupported lever_call_options version");
  }
  out->ptr = nullptr;
  out->size = 0;
  LEVER_GUARD_BEGIN
  if (int rc = CheckUrl(url, false, err); rc != LEVER_OK) return rc;
  std::string_view a = MsgpackArgs(args, args_len);
  if (int rc = CheckMsgpackArgs(a, err); rc != LEVER_OK) return rc;
  std::string result;
  Result r = client->client.InvokeUrlMsgpack(url, a, CallOpts(opts), &result);
  if (r.ok()) {
    SetBuf(out, result);
    return LEVER_OK;
  }
  return FromResult(std::move(r), nullptr, err);
  LEVER_GUARD_END(err)
}

int lever_client_invoke_async(lever_client* client, const char* url, const lever_value* args,
                              const lever_call_options* opts, lever_invoke_cb cb, void* payload) {
  if (client == nullptr || url == nullptr || cb == nullptr) return LEVER_EINVALID;
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) return LEVER_EINVALID;
  return StartInvoke(nullptr, client, url, args, opts, cb, payload);
}

int lever_client_invoke_start(lever_invocation** out, lever_client* client, const char* url, const lever_value* args,
                              const lever_call_options* opts, lever_invoke_cb cb, void* payload) {
  if (out == nullptr) return LEVER_EINVALID;
  *out = nullptr;
  if (client == nullptr || url == nullptr || cb == nullptr) return LEVER_EINVALID;
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) return LEVER_EINVALID;
  return StartInvoke(out, client, url, args, opts, cb, payload);
}

int lever_client_invoke_msgpack_start(lever_invocation** out, lever_client* client, const char* url,
                                      const void* args, size_t args_len, const lever_call_options* opts,
                                      lever_invoke_msgpack_cb cb, void* payload) {
  if (out == nullptr) return LEVER_EINVALID;
  *out = nullptr;
  if (client == nullptr || url == nullptr || cb == nullptr || (args == nullptr && args_len > 0)) return LEVER_EINVALID;
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) return LEVER_EINVALID;
  try {
    auto inv = std::make_unique<lever_invocation>();
    lever_error* err = nullptr;
    std::string_view a = MsgpackArgs(args, args_len);
    int rc = CheckUrl(url, false, &err);
    if (rc == LEVER_OK) rc = CheckMsgpackArgs(a, &err);
    if (rc != LEVER_OK) {
      *out = inv.release();
      lever_buf none = LEVER_BUF_INIT;
      cb(rc, &none, err, payload);
      return LEVER_OK;
    }
    inv->call = client->client.InvokeUrlMsgpackAsync(url, a, CallOpts(opts),
                                                     [cb, payload](Result r, std::string result) {
                                                       DeliverMsgpack(cb, payload, std::move(r), result);
                                                     });
    *out = inv.release();
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_invocation_cancel(lever_invocation* inv) {
  if (inv == nullptr) return LEVER_EINVALID;
  if (inv->call) inv->call->Cancel();
  return LEVER_OK;
}

void lever_invocation_free(lever_invocation* inv) {
  if (inv == nullptr) return;
  if (inv->call) inv->call->Cancel();  // a no-op once the call ended
  delete inv;
}

// ---- Streams --------------------------------------------------------------

int lever_client_stream_open(lever_stream** out, lever_client* client, const char* url, const lever_value* args,
                             const lever_call_options* opts, lever_error** err) {
  if (out == nullptr || client == nullptr || url == nullptr) return Invalid(err, "null argument");
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) {
    return Invalid(err, "unsupported lever_call_options version");
  }
  *out = nullptr;
  LEVER_GUARD_BEGIN
  lever::Array a;
  if (int rc = ArgsOf(args, &a, err); rc != LEVER_OK) return rc;
  if (int rc = CheckUrl(url, true, err); rc != LEVER_OK) return rc;
  lever::ClientStreamPtr s;
  lever::Status st = client->client.InvokeStreamUrl(&s, url, std::move(a), CallOpts(opts));
  if (!st.ok()) return Fail(err, LEVER_ERROR, static_cast<int>(st.code()), st.message());
  auto* ls = new lever_stream;
  ls->client = std::move(s);
  *out = ls;
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_client_stream_open_async(lever_client* client, const char* url, const lever_value* args,
                                   const lever_call_options* opts, lever_open_cb cb, void* payload) {
  if (client == nullptr || url == nullptr || cb == nullptr) return LEVER_EINVALID;
  if (opts && BadVersion(opts, opts->version, LEVER_CALL_OPTIONS_VERSION)) return LEVER_EINVALID;
  lever_error* err = nullptr;
  try {
    lever::Array a;
    int rc = ArgsOf(args, &a, &err);
    if (rc == LEVER_OK) rc = CheckUrl(url, true, &err);
    if (rc != LEVER_OK) {
      cb(rc, nullptr, err, payload);
      return LEVER_OK;
    }
    client->client.InvokeStreamUrlAsync(url, std::move(a), CallOpts(opts),
                                        [cb, payload](lever::Status st, lever::ClientStreamPtr s) {
                                          lever_error* e = nullptr;
                                          if (!st.ok()) {
                                            // (Two statements: `e` must be set before it is passed.)
                                            int failed = Fail(&e, LEVER_ERROR, static_cast<int>(st.code()), st.message());
                                            cb(failed, nullptr, e, payload);
                                            return;
                                          }
                                          auto* ls = new (std::nothrow) lever_stream;
                                          if (ls == nullptr) {
                                            int failed = OutOfMemory(&e);  // s is cancelled
                                            cb(failed, nullptr, e, payload);
                                            return;
                                          }
                                          ls->client = std::move(s);
                                          cb(LEVER_OK, ls, nullptr, payload);
                                        });
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_stream_send_async(lever_stream* stream, const lever_value* msg, lever_send_cb cb, void* payload) {
  if (stream == nullptr || msg == nullptr) return LEVER_EINVALID;
  try {
    auto done = [cb, payload](lever::Status st) {
      if (cb == nullptr) return;
      if (st.ok()) {
        cb(LEVER_OK, nullptr, payload);
        return;
      }
      lever_error* e = nullptr;
      Fail(&e, LEVER_ERROR, static_cast<int>(st.code()), st.message());
      cb(LEVER_ERROR, e, payload);
    };
    if (stream->client) {
      stream->client->SendAsync(*V(msg), std::move(done));
    } else {
      stream->server->SendAsync(*V(msg), std::move(done));
    }
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_stream_send(lever_stream* stream, const lever_value* msg, lever_error** err) {
  if (stream == nullptr || msg == nullptr) return Invalid(err, "null argument");
  LEVER_GUARD_BEGIN
  lever::Status s = stream->client ? stream->client->Send(*V(msg)) : stream->server->Send(*V(msg));
  if (!s.ok()) return FromStatus(err, s);
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_stream_recv(lever_value** out, lever_stream* stream, int timeout_ms, lever_error** err) {
  if (out == nullptr || stream == nullptr) return Invalid(err, "null argument");
  *out = nullptr;
  LEVER_GUARD_BEGIN
  Result r;
  if (timeout_ms < 0) {
    r = stream->client ? stream->client->Receive() : stream->server->Receive();
  } else {
    auto t = std::chrono::milliseconds(timeout_ms);
    r = stream->client ? stream->client->Receive(t) : stream->server->Receive(t);
  }
  return FromResult(std::move(r), out, err);
  LEVER_GUARD_END(err)
}

int lever_stream_recv_async(lever_stream* stream, lever_recv_cb cb, void* payload) {
  if (stream == nullptr || cb == nullptr) return LEVER_EINVALID;
  try {
    auto done = [cb, payload](Result r) { DeliverValue(cb, payload, std::move(r)); };
    if (stream->client) {
      stream->client->ReceiveAsync(std::move(done));
    } else {
      stream->server->ReceiveAsync(std::move(done));
    }
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_stream_close_send(lever_stream* stream) {
  if (stream == nullptr) return LEVER_EINVALID;
  if (stream->client) {
    stream->client->CloseSend();
  } else {
    stream->server->Finish(Result::End());
  }
  return LEVER_OK;
}

int lever_stream_end_with_error(lever_stream* stream, const lever_value* app_error) {
  if (stream == nullptr || app_error == nullptr || !stream->server) return LEVER_EINVALID;
  try {
    stream->server->Finish(Result::AppError(*V(app_error)));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_stream_cancel(lever_stream* stream) {
  if (stream == nullptr) return LEVER_EINVALID;
  try {
    if (stream->client) {
      stream->client->Cancel();
    } else {
      stream->server->Finish(Result::Failed(lever::Status(lever::Code::kCancelled, "cancelled by the server")));
    }
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

const lever_context* lever_stream_context(const lever_stream* stream) {
  return stream && stream->server ? C(&stream->server->context()) : nullptr;
}

const lever_value* lever_stream_args(const lever_stream* stream) {
  return stream && stream->server ? C(&stream->args) : nullptr;
}

void lever_stream_free(lever_stream* stream) { delete stream; }

// ---- Server ---------------------------------------------------------------

int lever_server_options_init(lever_server_options* opts, unsigned int version) {
  if (opts == nullptr || version != LEVER_SERVER_OPTIONS_VERSION) return LEVER_EINVALID;
  *opts = lever_server_options LEVER_SERVER_OPTIONS_INIT;
  return LEVER_OK;
}

int lever_server_new(lever_server** out, const lever_server_options* opts, lever_error** err) {
  if (out == nullptr) return Invalid(err, "null out");
  if (opts && BadVersion(opts, opts->version, LEVER_SERVER_OPTIONS_VERSION)) {
    return Invalid(err, "unsupported lever_server_options version");
  }
  LEVER_GUARD_BEGIN
  lever::ServerOptions o;
  if (opts != nullptr) {
    if (opts->listen_addr) o.listen_addr = opts->listen_addr;
    if (opts->max_workers > 0) o.max_workers = opts->max_workers;
  }
  *out = new lever_server(std::move(o));
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_server_handle(lever_server* server, const char* method, lever_unary_handler handler, void* payload,
                        lever_error** err) {
  if (server == nullptr || method == nullptr || handler == nullptr) return Invalid(err, "null argument");
  LEVER_GUARD_BEGIN
  lever::Status s = server->server.HandleAsync(method, [handler, payload](lever::UnaryCallPtr call) {
    auto* c = new (std::nothrow) lever_call;
    if (c == nullptr) {
      call->Reply(Result::Failed(lever::Status(lever::Code::kResourceExhausted, "out of memory")));
      return;
    }
    c->args = Value(std::move(call->args()));  // a move: no allocation
    c->call = std::move(call);
    handler(c, payload);
  });
  if (!s.ok()) return FromStatus(err, s);
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_server_handle_stream(lever_server* server, const char* method, lever_stream_handler handler, void* payload,
                               lever_error** err) {
  if (server == nullptr || method == nullptr || handler == nullptr) return Invalid(err, "null argument");
  LEVER_GUARD_BEGIN
  lever::Status s = server->server.HandleStream(method, [handler, payload](lever::ServerStreamPtr st) {
    auto* ls = new (std::nothrow) lever_stream;
    try {
      if (ls == nullptr) throw std::bad_alloc();
      ls->args = Value(st->args());
    } catch (const std::bad_alloc&) {
      delete ls;
      st->Finish(Result::Failed(lever::Status(lever::Code::kResourceExhausted, "out of memory")));
      return;
    }
    ls->server = std::move(st);
    handler(ls, payload);
  });
  if (!s.ok()) return FromStatus(err, s);
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_server_start(lever_server* server, lever_error** err) {
  if (server == nullptr) return Invalid(err, "null server");
  LEVER_GUARD_BEGIN
  lever::Status s = server->server.Start();
  if (!s.ok()) return Fail(err, LEVER_ERROR, static_cast<int>(s.code()), s.message());
  return LEVER_OK;
  LEVER_GUARD_END(err)
}

int lever_server_port(const lever_server* server) { return server ? server->server.port() : 0; }

int lever_server_wait(lever_server* server) {
  if (server == nullptr) return LEVER_EINVALID;
  server->server.Wait();
  return LEVER_OK;
}

int lever_server_stop(lever_server* server, unsigned int grace_ms) {
  if (server == nullptr) return LEVER_EINVALID;
  server->server.Shutdown(std::chrono::milliseconds(grace_ms));
  return LEVER_OK;
}

void lever_server_free(lever_server* server) { delete server; }

const lever_value* lever_call_args(const lever_call* call) { return call ? C(&call->args) : nullptr; }
const lever_context* lever_call_context(const lever_call* call) {
  return call ? C(&call->call->context()) : nullptr;
}

int lever_call_reply(lever_call* call, const lever_value* result) {
  if (call == nullptr) return LEVER_EINVALID;
  std::unique_ptr<lever_call> owned(call);
  try {
    call->call->Reply(Result::Of(result ? *V(result) : Value()));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_call_reply_error(lever_call* call, const lever_value* app_error) {
  if (call == nullptr) return LEVER_EINVALID;
  std::unique_ptr<lever_call> owned(call);
  try {
    call->call->Reply(Result::AppError(app_error ? *V(app_error) : Value()));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

int lever_call_fail(lever_call* call, int status, const char* message) {
  if (call == nullptr) return LEVER_EINVALID;
  std::unique_ptr<lever_call> owned(call);
  if (status < 1 || status > 16) status = static_cast<int>(lever::Code::kUnknown);
  try {
    call->call->Reply(Result::Failed(lever::Status(static_cast<lever::Code>(status), message ? message : "")));
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

const char* lever_context_url(const lever_context* ctx) { return ctx ? X(ctx)->url().c_str() : ""; }
const char* lever_context_env(const lever_context* ctx) { return ctx ? X(ctx)->env().c_str() : ""; }
const char* lever_context_service(const lever_context* ctx) { return ctx ? X(ctx)->service().c_str() : ""; }
const char* lever_context_resource(const lever_context* ctx) { return ctx ? X(ctx)->resource().c_str() : ""; }
const char* lever_context_method(const lever_context* ctx) { return ctx ? X(ctx)->method().c_str() : ""; }
const char* lever_context_source_env(const lever_context* ctx) { return ctx ? X(ctx)->source_env().c_str() : ""; }
int64_t lever_context_deadline_ms(const lever_context* ctx) {
  if (ctx == nullptr || X(ctx)->deadline() == std::chrono::system_clock::time_point::max()) return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(X(ctx)->deadline().time_since_epoch()).count();
}
int lever_context_cancelled(const lever_context* ctx) { return ctx && X(ctx)->cancelled() ? 1 : 0; }

int lever_context_watch_cancel(const lever_context* ctx, lever_cancel_cb cb, void* payload) {
  if (ctx == nullptr || cb == nullptr) return LEVER_EINVALID;
  try {
    X(ctx)->WatchCancel([cb, payload](bool cancelled) { cb(cancelled ? 1 : 0, payload); });
  } catch (const std::bad_alloc&) {
    return LEVER_ERROR;
  }
  return LEVER_OK;
}

}  // extern "C"
