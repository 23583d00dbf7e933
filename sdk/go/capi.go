package lever

// capi.go is the only file that calls liblever (lever.h). Everything else in
// the package works with Go values and the opaque handle types below. No Go
// pointer is kept by C: callbacks get a cgo.Handle as their payload.
// Byte slices are passed to C only for the duration of a call (cgo's rules).

// Which liblever it links is in link_shared.go (the default, liblever.so) and
// link_static.go (-tags lever_static: liblever.a and gRPC's archives).

/*
#include <stdint.h>
#include <stdlib.h>
#include <lever.h>

#if LEVER_VERSION_MAJOR != 0 || LEVER_VERSION_MINOR < 2
#error "sdk/go needs liblever 0.2 (lever.h LEVER_VERSION_MAJOR 0, MINOR >= 2): set PKG_CONFIG_PATH to its lever.pc"
#endif

// The trampolines of callbacks.go.
extern void leverGoUnary(lever_call *call, void *payload);
extern void leverGoStream(lever_stream *stream, void *payload);
extern void leverGoInvokeDone(int rc, lever_value *result, lever_error *err, void *payload);
extern void leverGoOpenDone(int rc, lever_stream *stream, lever_error *err, void *payload);
extern void leverGoRecvDone(int rc, lever_value *msg, lever_error *err, void *payload);
extern void leverGoInvokeMsgpackDone(int rc, lever_buf *result, lever_error *err, void *payload);
extern void leverGoCancelWatch(int cancelled, void *payload);

// Handles travel as uintptr_t and become the void* payload here, so Go never
// converts an integer to a pointer.
static int go_server_handle(lever_server *s, const char *m, uintptr_t h, lever_error **err) {
	return lever_server_handle(s, m, leverGoUnary, (void *)h, err);
}
static int go_server_handle_stream(lever_server *s, const char *m, uintptr_t h, lever_error **err) {
	return lever_server_handle_stream(s, m, leverGoStream, (void *)h, err);
}
static int go_invoke_start(lever_invocation **out, lever_client *c, const char *url, const void *args, size_t len,
                           unsigned int timeout_ms, uintptr_t h) {
	lever_call_options o = LEVER_CALL_OPTIONS_INIT;
	o.timeout_ms = timeout_ms;
	return lever_client_invoke_msgpack_start(out, c, url, args, len, &o, leverGoInvokeMsgpackDone, (void *)h);
}
static int go_watch_cancel(const lever_context *ctx, uintptr_t h) {
	return lever_context_watch_cancel(ctx, leverGoCancelWatch, (void *)h);
}
static int go_invoke_msgpack(lever_buf *out, lever_client *c, const char *url, const void *args, size_t len,
                             unsigned int timeout_ms, lever_error **err) {
	lever_call_options o = LEVER_CALL_OPTIONS_INIT;
	o.timeout_ms = timeout_ms;
	return lever_client_invoke_msgpack(out, c, url, args, len, &o, err);
}
static int go_stream_open_async(lever_client *c, const char *url, const lever_value *args, unsigned int timeout_ms,
                                uintptr_t h) {
	lever_call_options o = LEVER_CALL_OPTIONS_INIT;
	o.timeout_ms = timeout_ms;
	return lever_client_stream_open_async(c, url, args, &o, leverGoOpenDone, (void *)h);
}
static int go_stream_recv_async(lever_stream *s, uintptr_t h) {
	return lever_stream_recv_async(s, leverGoRecvDone, (void *)h);
}
static int go_client_new(lever_client **out, const char *force_host, const char *own_env, int proto_json,
                         lever_error **err) {
	lever_client_options o = LEVER_CLIENT_OPTIONS_INIT;
	o.force_host = force_host;
	o.own_environment = own_env;
	o.proto_json = proto_json;
	return lever_client_new(out, &o, err);
}
static int go_server_new(lever_server **out, const char *listen, int max_workers, lever_error **err) {
	lever_server_options o = LEVER_SERVER_OPTIONS_INIT;
	o.listen_addr = listen;
	o.max_workers = max_workers;
	return lever_server_new(out, &o, err);
}
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Opaque liblever handles, for the rest of the package.
type (
	cClient = *C.lever_client
	cStream = *C.lever_stream
	cServer = *C.lever_server
	cCall   = *C.lever_call
	cValue  = *C.lever_value
	cError  = *C.lever_error
)

const (
	rcOK      = int(C.LEVER_OK)
	rcError   = int(C.LEVER_ERROR)
	rcApp     = int(C.LEVER_EAPP)
	rcInvalid = int(C.LEVER_EINVALID)
	rcEnd     = int(C.LEVER_EEND)
)

// takeError turns (rc, err) into a Go error and frees err. rc 0 gives nil.
func takeError(rc int, e cError) error {
	if rc == rcOK {
		C.lever_error_free(e)
		return nil
	}
	defer C.lever_error_free(e)
	if rc == rcApp {
		if v := C.lever_error_value(e); v != nil {
			var val any
			if err := decodeValue(v, &val); err != nil {
				return err
			}
			if b, ok := val.([]byte); ok {
				return &RemoteByteError{Err: b}
			}
			return &RemoteError{Err: val}
		}
	}
	if e == nil {
		code := Unknown
		if rc == rcInvalid {
			code = InvalidArgument
		}
		return &Error{Code: code, Message: "liblever returned " + strconv.Itoa(rc)}
	}
	return &Error{Code: Code(C.lever_error_status(e)), Message: C.GoString(C.lever_error_message(e))}
}

// ---- values ----

// newValue converts msgpack to a lever_value the caller frees (freeValue).
func newValue(msgpack []byte) (cValue, error) {
	var out cValue
	var e cError
	var p unsafe.Pointer
	if len(msgpack) > 0 {
		p = unsafe.Pointer(&msgpack[0])
	}
	rc := int(C.lever_value_from_msgpack(&out, p, C.size_t(len(msgpack)), &e))
	if rc != rcOK {
		return nil, takeError(rc, e)
	}
	return out, nil
}

func freeValue(v cValue) { C.lever_value_free(v) }

// withMsgpack calls fn with v's msgpack encoding, valid only during fn.
func withMsgpack(v *C.lever_value, fn func([]byte) error) error {
	var buf C.lever_buf
	if rc := int(C.lever_value_to_msgpack(&buf, v)); rc != rcOK {
		return &Error{Code: ResourceExhausted, Message: "cannot encode a value as msgpack"}
	}
	defer C.lever_buf_dispose(&buf)
	return fn(unsafe.Slice((*byte)(unsafe.Pointer(buf.ptr)), int(buf.size)))
}

// decodeValue decodes a lever_value into target.
func decodeValue(v *C.lever_value, target any) error {
	return withMsgpack(v, func(b []byte) error { return unmarshal(b, target) })
}

// msgpackToJSONForTest converts msgpack to JSON text with liblever's codec.
func msgpackToJSONForTest(msgpack []byte) (string, error) {
	v, err := newValue(msgpack)
	if err != nil {
		return "", err
	}
	defer freeValue(v)
	var buf C.lever_buf
	var e cError
	if rc := int(C.lever_value_to_json(&buf, v, &e)); rc != rcOK {
		return "", takeError(rc, e)
	}
	defer C.lever_buf_dispose(&buf)
	return C.GoStringN(buf.ptr, C.int(buf.size)), nil
}

// ---- client ----

func clientNew(forceHost, ownEnv string, protoJSON bool) (cClient, error) {
	var fh, oe *C.char
	if forceHost != "" {
		fh = C.CString(forceHost)
		defer C.free(unsafe.Pointer(fh))
	}
	if ownEnv != "" {
		oe = C.CString(ownEnv)
		defer C.free(unsafe.Pointer(oe))
	}
	pj := C.int(0)
	if protoJSON {
		pj = 1
	}
	var out cClient
	var e cError
	if rc := int(C.go_client_new(&out, fh, oe, pj, &e)); rc != rcOK {
		return nil, takeError(rc, e)
	}
	return out, nil
}

func clientFree(c cClient) { C.lever_client_free(c) }

// clientInvokeMsgpack is a blocking unary call; the result is decoded into
// reply (nil: dropped).
func clientInvokeMsgpack(c cClient, url string, args []byte, timeoutMs uint32, reply any) error {
	curl := C.CString(url)
	defer C.free(unsafe.Pointer(curl))
	var out C.lever_buf
	var e cError
	rc := int(C.go_invoke_msgpack(&out, c, curl, unsafe.Pointer(&args[0]), C.size_t(len(args)), C.uint(timeoutMs), &e))
	if rc != rcOK {
		return takeError(rc, e)
	}
	defer C.lever_buf_dispose(&out)
	if reply == nil {
		return nil
	}
	return unmarshal(unsafe.Slice((*byte)(unsafe.Pointer(out.ptr)), int(out.size)), reply)
}

// asyncResult is what an async callback hands over; the receiver owns it.
type asyncResult struct {
	rc     int
	value  cValue
	stream cStream
	err    cError
	mp     C.lever_buf // msgpack result (lever_client_invoke_msgpack_start)
}

// free releases whatever the result still owns.
func (r *asyncResult) free() {
	C.lever_value_free(r.value)
	C.lever_error_free(r.err)
	if r.stream != nil {
		C.lever_stream_free(r.stream)
	}
	C.lever_buf_dispose(&r.mp)
	*r = asyncResult{}
}

// States of an asyncCall: the callback and an abandoning caller race for the
// result through one compare-and-swap, so neither a goroutine nor a leak is
// left whoever comes first.
const (
	asyncPending   = iota
	asyncDelivered // the result is (about to be) in ch
	asyncAbandoned // the caller left: the callback frees the result
)

// asyncCall is the payload of an async C call: its callback sends the result
// on ch (buffered, so the C thread never blocks) and deletes the handle.
type asyncCall struct {
	ch    chan asyncResult
	state atomic.Int32
	inv   *C.lever_invocation // unary calls: cancels the call; freed by finish
}

func newAsync() (*asyncCall, cgo.Handle) {
	a := &asyncCall{ch: make(chan asyncResult, 1)}
	return a, cgo.NewHandle(a)
}

func deliver(payload unsafe.Pointer, r asyncResult) {
	h := cgo.Handle(uintptr(payload))
	a := h.Value().(*asyncCall)
	h.Delete()
	if a.state.CompareAndSwap(asyncPending, asyncDelivered) {
		a.ch <- r
		return
	}
	r.free() // abandoned: nobody will read it
}

// abandon gives up on the call: a unary call is cancelled at once, a late
// result (a stream: cancelled by its free) is freed by whoever sees it last.
// Returns at once; nothing waits on the result.
func (a *asyncCall) abandon() {
	a.finish()
	if !a.state.CompareAndSwap(asyncPending, asyncAbandoned) {
		r := <-a.ch // delivered: the callback has sent it or is sending it now
		r.free()
	}
}

// finish releases the cancel handle (cancelling a unary call not yet ended).
func (a *asyncCall) finish() {
	if a.inv != nil {
		C.lever_invocation_free(a.inv)
		a.inv = nil
	}
}

func clientInvokeAsync(c cClient, url string, args []byte, timeoutMs uint32) (*asyncCall, error) {
	curl := C.CString(url)
	defer C.free(unsafe.Pointer(curl))
	a, h := newAsync()
	var inv *C.lever_invocation
	rc := int(C.go_invoke_start(&inv, c, curl, unsafe.Pointer(&args[0]), C.size_t(len(args)), C.uint(timeoutMs),
		C.uintptr_t(h)))
	if rc != rcOK {
		h.Delete()
		return nil, takeError(rc, nil)
	}
	a.inv = inv
	return a, nil
}

func streamOpenAsync(c cClient, url string, args []byte, timeoutMs uint32) (*asyncCall, error) {
	v, err := newValue(args)
	if err != nil {
		return nil, err
	}
	defer freeValue(v)
	curl := C.CString(url)
	defer C.free(unsafe.Pointer(curl))
	a, h := newAsync()
	if rc := int(C.go_stream_open_async(c, curl, v, C.uint(timeoutMs), C.uintptr_t(h))); rc != rcOK {
		h.Delete()
		return nil, takeError(rc, nil)
	}
	return a, nil
}

// watchCancel calls cancel when the caller of the call with context x
// cancels it or its deadline passes (liblever tells, exactly once: no
// polling, and the handle is deleted either way).
func watchCancel(x *C.lever_context, cancel context.CancelFunc) {
	h := cgo.NewHandle(cancel)
	if int(C.go_watch_cancel(x, C.uintptr_t(h))) != rcOK {
		h.Delete() // out of memory: the context still ends at the deadline and with the handler
	}
}

// ---- streams ----

func streamSend(s cStream, msg []byte) error {
	v, err := newValue(msg)
	if err != nil {
		return err
	}
	defer freeValue(v)
	var e cError
	rc := int(C.lever_stream_send(s, v, &e))
	return takeError(rc, e)
}

func streamRecvAsync(s cStream) (*asyncCall, error) {
	a, h := newAsync()
	if rc := int(C.go_stream_recv_async(s, C.uintptr_t(h))); rc != rcOK {
		h.Delete()
		return nil, takeError(rc, nil)
	}
	return a, nil
}

func streamCloseSend(s cStream) { C.lever_stream_close_send(s) }
func streamCancel(s cStream)    { C.lever_stream_cancel(s) }
func streamFree(s cStream)      { C.lever_stream_free(s) }

func streamEndWithError(s cStream, msg []byte) error {
	v, err := newValue(msg)
	if err != nil {
		return err
	}
	defer freeValue(v)
	if rc := int(C.lever_stream_end_with_error(s, v)); rc != rcOK {
		return takeError(rc, nil)
	}
	return nil
}

// streamArgs calls fn with the msgpack of a server stream's arguments.
func streamArgs(s cStream, fn func([]byte) error) error {
	return withMsgpack(C.lever_stream_args(s), fn)
}

func streamInfo(s cStream) *CallInfo { return contextInfo(C.lever_stream_context(s)) }

// ---- server ----

func serverNew(listen string, maxWorkers int) (cServer, error) {
	var cl *C.char
	if listen != "" {
		cl = C.CString(listen)
		defer C.free(unsafe.Pointer(cl))
	}
	var out cServer
	var e cError
	if rc := int(C.go_server_new(&out, cl, C.int(maxWorkers), &e)); rc != rcOK {
		return nil, takeError(rc, e)
	}
	return out, nil
}

func serverHandle(s cServer, name string, h cgo.Handle, stream bool) error {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	var e cError
	var rc int
	if stream {
		rc = int(C.go_server_handle_stream(s, cn, C.uintptr_t(h), &e))
	} else {
		rc = int(C.go_server_handle(s, cn, C.uintptr_t(h), &e))
	}
	return takeError(rc, e)
}

func serverStart(s cServer) error {
	var e cError
	rc := int(C.lever_server_start(s, &e))
	return takeError(rc, e)
}

func serverPort(s cServer) int           { return int(C.lever_server_port(s)) }
func serverWait(s cServer)               { C.lever_server_wait(s) }
func serverStop(s cServer, grace uint32) { C.lever_server_stop(s, C.uint(grace)) }
func serverFree(s cServer)               { C.lever_server_free(s) }

// watchCallCancel / watchStreamCancel: see watchCancel.
func watchCallCancel(c cCall, cancel context.CancelFunc) {
	watchCancel(C.lever_call_context(c), cancel)
}
func watchStreamCancel(s cStream, cancel context.CancelFunc) {
	watchCancel(C.lever_stream_context(s), cancel)
}

func callArgs(c cCall, fn func([]byte) error) error { return withMsgpack(C.lever_call_args(c), fn) }
func callInfo(c cCall) *CallInfo                    { return contextInfo(C.lever_call_context(c)) }

func callReply(c cCall, result []byte, isError bool) error {
	v, err := newValue(result)
	if err != nil {
		callFail(c, Internal, err.Error())
		return err
	}
	defer freeValue(v)
	if isError {
		C.lever_call_reply_error(c, v)
	} else {
		C.lever_call_reply(c, v)
	}
	return nil
}

func callFail(c cCall, code Code, msg string) {
	cm := C.CString(msg)
	defer C.free(unsafe.Pointer(cm))
	C.lever_call_fail(c, C.int(code), cm)
}

func contextInfo(x *C.lever_context) *CallInfo {
	if x == nil {
		return &CallInfo{}
	}
	ci := &CallInfo{
		URL:               C.GoString(C.lever_context_url(x)),
		Environment:       C.GoString(C.lever_context_env(x)),
		Service:           C.GoString(C.lever_context_service(x)),
		Resource:          C.GoString(C.lever_context_resource(x)),
		Method:            C.GoString(C.lever_context_method(x)),
		SourceEnvironment: C.GoString(C.lever_context_source_env(x)),
	}
	if ms := int64(C.lever_context_deadline_ms(x)); ms >= 0 {
		ci.Deadline = time.UnixMilli(ms)
	}
	return ci
}

// take decodes an async call's result into reply (nil: dropped) or returns
// its error, and frees what it owns (a stream stays with the receiver).
func (r *asyncResult) take(reply any) error {
	defer r.free()
	if r.rc != rcOK {
		e := r.err
		r.err = nil
		return takeError(r.rc, e)
	}
	if reply == nil {
		return nil
	}
	if r.mp.ptr != nil { // a msgpack call's result
		return unmarshal(unsafe.Slice((*byte)(unsafe.Pointer(r.mp.ptr)), int(r.mp.size)), reply)
	}
	if r.value == nil {
		return nil
	}
	return decodeValue(r.value, reply)
}
