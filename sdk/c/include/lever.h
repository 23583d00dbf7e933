/*
 * lever.h: the stable C ABI of Lever (liblever.so).
 *
 * Conventions (libgit2-style, see STYLE.md):
 *  - Opaque handles with _new/_free pairs. Every _free accepts NULL.
 *  - Functions return 0 (LEVER_OK) or a negative LEVER_E* code. Details go to
 *    an optional `lever_error **err` out-parameter (pass NULL to ignore);
 *    the caller frees it with lever_error_free. There is no thread-local error
 *    state: any thread may call any function.
 *  - Out-parameters come first; `out` values are owned by the caller unless
 *    documented as borrowed.
 *  - Options structs start with `unsigned int version`; initialise them with
 *    the _INIT macro or the _options_init function. NULL options mean the
 *    defaults. A struct with an unknown version is rejected (LEVER_EINVALID).
 *  - Callbacks get `void *payload` last and say which thread runs them. They
 *    may be called from any gRPC thread; they must not block (bounce to your
 *    own thread or event loop).
 *  - Values cross as lever_value trees (below) or as msgpack buffers.
 */
#ifndef LEVER_H
#define LEVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LEVER_EXTERN(type) extern __attribute__((visibility("default"))) type
#else
#define LEVER_EXTERN(type) extern type
#endif
#define LEVER_CALLBACK(type) type

#define LEVER_VERSION_MAJOR 0
#define LEVER_VERSION_MINOR 2
#define LEVER_VERSION_PATCH 0
#define LEVER_VERSION "0.2.0"

/* Opaque handles. */
typedef struct lever_error lever_error;
typedef struct lever_value lever_value;
typedef struct lever_client lever_client;
typedef struct lever_stream lever_stream;
typedef struct lever_server lever_server;
typedef struct lever_call lever_call;
typedef struct lever_context lever_context;
typedef struct lever_invocation lever_invocation;

/* Return codes. */
typedef enum {
  LEVER_OK = 0,
  /* The platform failed the call or operation: lever_error_status() holds
   * the gRPC status code (UNAVAILABLE, NOT_FOUND, DEADLINE_EXCEEDED, ...). */
  LEVER_ERROR = -1,
  /* The remote handler returned an application error (in-band, gRPC OK):
   * lever_error_value() holds the remote error value. */
  LEVER_EAPP = -2,
  /* Invalid argument to this API (NULL handle, bad options version, ...). */
  LEVER_EINVALID = -3,
  /* A stream ended normally: no more messages. */
  LEVER_EEND = -4,
  /* A wait with a timeout expired; the operation can be retried. */
  LEVER_ETIMEOUT = -5
} lever_error_code;

/* ---- Errors ------------------------------------------------------------ */


/* The LEVER_E* code. */
LEVER_EXTERN(int) lever_error_code_of(const lever_error *err);
/* The gRPC status code (0..16); 2 (UNKNOWN) for application errors. */
LEVER_EXTERN(int) lever_error_status(const lever_error *err);
/* The message, NUL-terminated; borrowed until lever_error_free. */
LEVER_EXTERN(const char *) lever_error_message(const lever_error *err);
/* For LEVER_EAPP, the remote error value; else NULL. Borrowed. */
LEVER_EXTERN(const lever_value *) lever_error_value(const lever_error *err);
LEVER_EXTERN(void) lever_error_free(lever_error *err);

/* ---- Buffers ------------------------------------------------------------ */

/* Bytes handed out by the library; release with lever_buf_dispose. */
typedef struct {
  char *ptr;
  size_t size;
} lever_buf;
#define LEVER_BUF_INIT {NULL, 0}
LEVER_EXTERN(void) lever_buf_dispose(lever_buf *buf);

/* ---- Values ------------------------------------------------------------- */


typedef enum {
  LEVER_TYPE_NULL = 0,
  LEVER_TYPE_BOOL,
  LEVER_TYPE_INT,    /* int64 */
  LEVER_TYPE_UINT,   /* uint64 above INT64_MAX only */
  LEVER_TYPE_DOUBLE,
  LEVER_TYPE_STRING, /* UTF-8 */
  LEVER_TYPE_BYTES,
  LEVER_TYPE_ARRAY,
  LEVER_TYPE_MAP     /* string keys, insertion order */
} lever_type;

/* Constructors: the caller owns the result (lever_value_free). Strings and
 * bytes are copied. They return NULL only when out of memory. */
LEVER_EXTERN(lever_value *) lever_value_new_null(void);
LEVER_EXTERN(lever_value *) lever_value_new_bool(int b);
LEVER_EXTERN(lever_value *) lever_value_new_int(int64_t i);
LEVER_EXTERN(lever_value *) lever_value_new_uint(uint64_t u);
LEVER_EXTERN(lever_value *) lever_value_new_double(double d);
LEVER_EXTERN(lever_value *) lever_value_new_string(const char *s, size_t len);
LEVER_EXTERN(lever_value *) lever_value_new_bytes(const void *data, size_t len);
LEVER_EXTERN(lever_value *) lever_value_new_array(void);
LEVER_EXTERN(lever_value *) lever_value_new_map(void);
LEVER_EXTERN(lever_value *) lever_value_copy(const lever_value *v);
LEVER_EXTERN(void) lever_value_free(lever_value *v);

/* Appends `item` to an array; takes ownership of `item` (also on error). */
LEVER_EXTERN(int) lever_value_array_push(lever_value *array, lever_value *item);
/* Sets `key` in a map (replacing an existing key); takes ownership of `item`. */
LEVER_EXTERN(int) lever_value_map_set(lever_value *map, const char *key, size_t key_len, lever_value *item);

/* Accessors. Calling one on a value of another type returns 0 / NULL. */
LEVER_EXTERN(lever_type) lever_value_type(const lever_value *v);
LEVER_EXTERN(int) lever_value_bool(const lever_value *v);
LEVER_EXTERN(int64_t) lever_value_int(const lever_value *v);
LEVER_EXTERN(uint64_t) lever_value_uint(const lever_value *v);
/* Any number as a double. */
LEVER_EXTERN(double) lever_value_double(const lever_value *v);
/* Borrowed pointer into `v` (not NUL-terminated for bytes; strings are). */
LEVER_EXTERN(const char *) lever_value_string(const lever_value *v, size_t *len);
LEVER_EXTERN(const void *) lever_value_bytes(const lever_value *v, size_t *len);
/* Elements of an array or entries of a map; 0 for scalars. */
LEVER_EXTERN(size_t) lever_value_size(const lever_value *v);
/* The i-th element of an array or value of a map entry; borrowed. */
LEVER_EXTERN(const lever_value *) lever_value_at(const lever_value *v, size_t i);
/* The i-th key of a map (NUL-terminated, borrowed). */
LEVER_EXTERN(const char *) lever_value_key_at(const lever_value *v, size_t i, size_t *len);
/* The value of `key` in a map, or NULL; borrowed. */
LEVER_EXTERN(const lever_value *) lever_value_map_get(const lever_value *v, const char *key, size_t key_len);

/* msgpack and JSON text. Decoders apply the codec's default size/depth limits. */
LEVER_EXTERN(int) lever_value_to_msgpack(lever_buf *out, const lever_value *v);
LEVER_EXTERN(int) lever_value_from_msgpack(lever_value **out, const void *data, size_t len, lever_error **err);
/* Bytes become base64 strings and NaN/Inf null in JSON output. */
LEVER_EXTERN(int) lever_value_to_json(lever_buf *out, const lever_value *v, lever_error **err);
LEVER_EXTERN(int) lever_value_from_json(lever_value **out, const char *text, size_t len, lever_error **err);

/* ---- Client ------------------------------------------------------------- */


typedef struct {
  unsigned int version;
  /* Dial every call here ("unix:/abs/path.sock" or "host:port"). NULL: the
   * dial rule (internal envs and the own env to LEVEROS_INTERNAL_RPC_GATEWAY
   * when set, else LEVEROS_IP_PORT, default 127.0.0.1:8080). Copied. */
  const char *force_host;
  /* The own environment for relative URLs. NULL: LEVEROS_ENVIRONMENT. Copied. */
  const char *own_environment;
  /* Non-zero: send proto-JSON as the original Lever OS 0.1 (needed to call
   * original servers). Default 0: msgpack, which our servers answer in. */
  int proto_json;
  /* A pooled channel idle this long is closed. 0: default (5 min). */
  unsigned int channel_idle_timeout_ms;
} lever_client_options;
#define LEVER_CLIENT_OPTIONS_VERSION 1
#define LEVER_CLIENT_OPTIONS_INIT {LEVER_CLIENT_OPTIONS_VERSION, NULL, NULL, 0, 0}
LEVER_EXTERN(int) lever_client_options_init(lever_client_options *opts, unsigned int version);

typedef struct {
  unsigned int version;
  /* Deadline from the start of the call. 0: none. */
  unsigned int timeout_ms;
  /* Non-zero: wait for the target to come up instead of failing UNAVAILABLE. */
  int wait_for_ready;
} lever_call_options;
#define LEVER_CALL_OPTIONS_VERSION 1
#define LEVER_CALL_OPTIONS_INIT {LEVER_CALL_OPTIONS_VERSION, 0, 0}
LEVER_EXTERN(int) lever_call_options_init(lever_call_options *opts, unsigned int version);

/* A client is thread-safe; share one per process. */
LEVER_EXTERN(int) lever_client_new(lever_client **out, const lever_client_options *opts, lever_error **err);
/* Frees the client. Calls and streams in flight keep working until they end. */
LEVER_EXTERN(void) lever_client_free(lever_client *client);

/*
 * Unary call. `url` is lever://env/service[/resource]/method or a relative
 * /service[/resource]/method. `args` is an array value (borrowed) or NULL for
 * no arguments. Returns 0 and the result in *out (caller frees), LEVER_EAPP
 * (remote error value in *err), LEVER_ERROR (platform error) or
 * LEVER_EINVALID (bad URL or arguments, streaming method name).
 */
LEVER_EXTERN(int) lever_client_invoke(lever_value **out, lever_client *client, const char *url,
                                      const lever_value *args, const lever_call_options *opts, lever_error **err);

/* The same with msgpack in and out: `args` is a msgpack array (copied), the
 * result is a msgpack value in *out (lever_buf_dispose). */
LEVER_EXTERN(int) lever_client_invoke_msgpack(lever_buf *out, lever_client *client, const char *url, const void *args,
                                              size_t args_len, const lever_call_options *opts, lever_error **err);

/* Called once when an async call ends: rc as lever_client_invoke; `result`
 * (rc 0) and `err` (rc < 0) are owned by the callback. Runs on a gRPC
 * thread, or in the calling thread for errors found before sending. */
typedef LEVER_CALLBACK(void) (*lever_invoke_cb)(int rc, lever_value *result, lever_error *err, void *payload);
LEVER_EXTERN(int) lever_client_invoke_async(lever_client *client, const char *url, const lever_value *args,
                                            const lever_call_options *opts, lever_invoke_cb cb, void *payload);

/*
 * Cancellable async unary calls. lever_client_invoke_start is
 * lever_client_invoke_async plus a handle in *out that can cancel the call;
 * `cb` still runs exactly once, with what the call ended with: after
 * lever_invocation_cancel, LEVER_ERROR with status 1 (CANCELLED) unless the
 * call ended first. Errors found before sending (bad arguments or URL) go to
 * `cb` in the calling thread, and *out is set all the same.
 *
 * Returns 0 (and sets *out, which the caller frees with
 * lever_invocation_free), LEVER_EINVALID (NULL out/client/url/cb, bad options
 * version) or LEVER_ERROR (out of memory); on an error *out is NULL and `cb`
 * is not called. `args` is borrowed for the call of this function.
 */
LEVER_EXTERN(int) lever_client_invoke_start(lever_invocation **out, lever_client *client, const char *url,
                                            const lever_value *args, const lever_call_options *opts,
                                            lever_invoke_cb cb, void *payload);

/* Called once when a msgpack call ends: rc as lever_client_invoke_msgpack.
 * For rc 0 `result` holds the result's msgpack value, which the callback
 * owns: take result->ptr and result->size, or lever_buf_dispose(result). The
 * lever_buf struct itself is valid during the callback only; for rc < 0 it is
 * empty and `err` (owned by the callback) says why. Threads as
 * lever_invoke_cb. */
typedef LEVER_CALLBACK(void) (*lever_invoke_msgpack_cb)(int rc, lever_buf *result, lever_error *err, void *payload);
/* lever_client_invoke_start with msgpack in and out, as
 * lever_client_invoke_msgpack: `args` is a msgpack array (copied; NULL and 0
 * for none). */
LEVER_EXTERN(int) lever_client_invoke_msgpack_start(lever_invocation **out, lever_client *client, const char *url,
                                                    const void *args, size_t args_len,
                                                    const lever_call_options *opts, lever_invoke_msgpack_cb cb,
                                                    void *payload);
/* Cancels the call if it has not ended: the server sees the cancellation and
 * `cb` runs soon (on a gRPC thread, possibly before this returns). Any
 * thread, any number of times, also after `cb` ran. 0, or LEVER_EINVALID for
 * NULL. */
LEVER_EXTERN(int) lever_invocation_cancel(lever_invocation *inv);
/* Releases the handle, cancelling the call if it has not ended (as
 * lever_stream_free does); `cb` still runs once, so `payload` must stay valid
 * until it has. Accepts NULL. */
LEVER_EXTERN(void) lever_invocation_free(lever_invocation *inv);

/* ---- Streams ------------------------------------------------------------ */

/* A lever_stream is one side of a streaming call: the client's
 * (lever_client_stream_open) or the server's (given to a stream handler).
 * Thread-safe. */

/* Opens a streaming call (method name ending in Chan, _chan, or `chan`) and
 * waits for the handshake. The caller frees *out with lever_stream_free. */
LEVER_EXTERN(int) lever_client_stream_open(lever_stream **out, lever_client *client, const char *url,
                                           const lever_value *args, const lever_call_options *opts, lever_error **err);

/* Opens a streaming call without blocking: `cb` gets rc 0 and the stream
 * (owned by the callback's receiver) or an error (owned by the callback).
 * It runs on a gRPC thread, or in the calling thread for errors found before
 * sending. Returns LEVER_EINVALID (and does not call `cb`) for NULL args. */
typedef LEVER_CALLBACK(void) (*lever_open_cb)(int rc, lever_stream *stream, lever_error *err, void *payload);
LEVER_EXTERN(int) lever_client_stream_open_async(lever_client *client, const char *url, const lever_value *args,
                                                 const lever_call_options *opts, lever_open_cb cb, void *payload);

/* Sends a message (borrowed; copied). Returns once it is queued; blocks only
 * while several messages already wait for flow control. A queued message
 * that cannot be written makes a later send or receive fail. */
LEVER_EXTERN(int) lever_stream_send(lever_stream *stream, const lever_value *msg, lever_error **err);
/* Sends without ever blocking: `cb` (may be NULL) gets 0 once gRPC wrote the
 * message, or an error (owned by the callback). It runs on a gRPC thread, or
 * in the calling thread when the stream has already ended. */
typedef LEVER_CALLBACK(void) (*lever_send_cb)(int rc, lever_error *err, void *payload);
LEVER_EXTERN(int) lever_stream_send_async(lever_stream *stream, const lever_value *msg, lever_send_cb cb,
                                          void *payload);
/*
 * Receives the next message into *out (caller frees). timeout_ms < 0 waits
 * forever. Returns 0, LEVER_EEND (the peer ended normally), LEVER_EAPP (the
 * peer sent an error; LEVER_EEND follows), LEVER_ERROR (the call failed, e.g.
 * cancelled) or LEVER_ETIMEOUT (nothing yet; the stream goes on).
 */
LEVER_EXTERN(int) lever_stream_recv(lever_value **out, lever_stream *stream, int timeout_ms, lever_error **err);
/* Asynchronous receive: `cb` gets what lever_stream_recv would return, with
 * `msg` and `err` owned by the callback. It runs on a gRPC thread, or in the
 * calling thread when a message is already waiting. Callbacks of one stream
 * never overlap and come in message order. */
typedef LEVER_CALLBACK(void) (*lever_recv_cb)(int rc, lever_value *msg, lever_error *err, void *payload);
LEVER_EXTERN(int) lever_stream_recv_async(lever_stream *stream, lever_recv_cb cb, void *payload);
/* Client: half-close (no more sends). Server: end the call with OK after the
 * queued messages. */
LEVER_EXTERN(int) lever_stream_close_send(lever_stream *stream);
/* Server: end the call with an application error (sent in-band, then OK).
 * `app_error` is borrowed. Client: LEVER_EINVALID. */
LEVER_EXTERN(int) lever_stream_end_with_error(lever_stream *stream, const lever_value *app_error);
/* Cancels the call (client) or ends it with CANCELLED (server). */
LEVER_EXTERN(int) lever_stream_cancel(lever_stream *stream);
/* Server streams: the call's context and arguments (borrowed from the stream). */
LEVER_EXTERN(const lever_context *) lever_stream_context(const lever_stream *stream);
LEVER_EXTERN(const lever_value *) lever_stream_args(const lever_stream *stream);
/* Releases the handle. A client stream that has not ended is cancelled; a
 * server stream that has not ended ends with OK. */
LEVER_EXTERN(void) lever_stream_free(lever_stream *stream);

/* ---- Server ------------------------------------------------------------- */


typedef struct {
  unsigned int version;
  /* "unix:/abs/path.sock" or "host:port" (port 0: any). NULL:
   * LEVEROS_LISTEN_ADDR, else "0.0.0.0:3837". Copied. */
  const char *listen_addr;
  /* Upper bound of handler threads. 0: default (1024). */
  int max_workers;
} lever_server_options;
#define LEVER_SERVER_OPTIONS_VERSION 1
#define LEVER_SERVER_OPTIONS_INIT {LEVER_SERVER_OPTIONS_VERSION, NULL, 0}
LEVER_EXTERN(int) lever_server_options_init(lever_server_options *opts, unsigned int version);

/* A unary handler. Runs on a worker thread (it may block). It owns `call`
 * and must finish it exactly once, from any thread, with lever_call_reply,
 * lever_call_reply_error or lever_call_fail. */
typedef LEVER_CALLBACK(void) (*lever_unary_handler)(lever_call *call, void *payload);
/* A stream handler. Runs on a worker thread. It owns `stream` and frees it
 * with lever_stream_free when done (which ends the call with OK if nothing
 * else ended it). */
typedef LEVER_CALLBACK(void) (*lever_stream_handler)(lever_stream *stream, void *payload);

LEVER_EXTERN(int) lever_server_new(lever_server **out, const lever_server_options *opts, lever_error **err);
/* Registers a handler; before lever_server_start. Names ending in Chan,
 * _chan or `chan` must be stream handlers, others unary. `payload` is passed
 * to every call. NewResource/CloseResource handlers get the resource in the
 * context and as their only argument. */
LEVER_EXTERN(int) lever_server_handle(lever_server *server, const char *method, lever_unary_handler handler,
                                      void *payload, lever_error **err);
LEVER_EXTERN(int) lever_server_handle_stream(lever_server *server, const char *method, lever_stream_handler handler,
                                             void *payload, lever_error **err);
/* Binds and serves in the background. */
LEVER_EXTERN(int) lever_server_start(lever_server *server, lever_error **err);
/* The bound TCP port after start; 0 for unix sockets. */
LEVER_EXTERN(int) lever_server_port(const lever_server *server);
/* Blocks until the server has stopped. */
LEVER_EXTERN(int) lever_server_wait(lever_server *server);
/* Stops accepting calls, lets calls in flight finish for grace_ms, then
 * cancels them; returns when stopped. Called from a handler it only starts
 * the shutdown and returns at once (lever_server_wait tells when it is done). */
LEVER_EXTERN(int) lever_server_stop(lever_server *server, unsigned int grace_ms);
/* Stops (no grace) if needed and frees. Not from a handler thread. */
LEVER_EXTERN(void) lever_server_free(lever_server *server);

/* The call's arguments (an array) and context, borrowed until it is finished. */
LEVER_EXTERN(const lever_value *) lever_call_args(const lever_call *call);
LEVER_EXTERN(const lever_context *) lever_call_context(const lever_call *call);
/* Finish a call; each consumes `call`. Values are borrowed (copied). A bytes
 * result travels as a byte result. */
LEVER_EXTERN(int) lever_call_reply(lever_call *call, const lever_value *result);
LEVER_EXTERN(int) lever_call_reply_error(lever_call *call, const lever_value *app_error);
/* A platform error: gRPC status code (1..16) and message. */
LEVER_EXTERN(int) lever_call_fail(lever_call *call, int status, const char *message);

/* Context accessors: NUL-terminated strings borrowed from the context. */
LEVER_EXTERN(const char *) lever_context_url(const lever_context *ctx);
LEVER_EXTERN(const char *) lever_context_env(const lever_context *ctx);
LEVER_EXTERN(const char *) lever_context_service(const lever_context *ctx);
LEVER_EXTERN(const char *) lever_context_resource(const lever_context *ctx); /* "" when none */
LEVER_EXTERN(const char *) lever_context_method(const lever_context *ctx);
LEVER_EXTERN(const char *) lever_context_source_env(const lever_context *ctx); /* "" when external */
/* Deadline in milliseconds since the Unix epoch; -1 when none. */
LEVER_EXTERN(int64_t) lever_context_deadline_ms(const lever_context *ctx);
/* Non-zero once the caller cancelled or the deadline passed. */
LEVER_EXTERN(int) lever_context_cancelled(const lever_context *ctx);
/* Called once per lever_context_watch_cancel: cancelled = 1 when the caller
 * cancelled the call or its deadline passed, 0 when the call ended without
 * that. Runs on a gRPC thread, or in the calling thread when the call had
 * already been cancelled or had ended; it must not block. */
typedef LEVER_CALLBACK(void) (*lever_cancel_cb)(int cancelled, void *payload);
/* Watches the call of `ctx` (a unary call's or a server stream's context)
 * for a cancel, without polling: `cb` runs exactly once, as above, so it may
 * free `payload`. Any number of watchers per call. Returns 0 (cb will run),
 * LEVER_EINVALID for NULL arguments or LEVER_ERROR out of memory (cb will
 * not run). */
LEVER_EXTERN(int) lever_context_watch_cancel(const lever_context *ctx, lever_cancel_cb cb, void *payload);

#ifdef __cplusplus
}
#endif

#endif /* LEVER_H */
