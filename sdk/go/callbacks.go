package lever

// The //export trampolines that liblever calls back (declared in capi.go's
// preamble). A file with //export may only declare in its preamble, so this
// one just includes lever.h for the parameter types. Each trampoline turns
// its payload back into a Go value with cgo.Handle and returns at once: the
// work happens on goroutines, never on liblever's threads.

/*
#include <lever.h>
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"unsafe"
)

// leverGoUnary runs on a liblever worker thread for each unary call.
//
//export leverGoUnary
func leverGoUnary(call *C.lever_call, payload unsafe.Pointer) {
	m := cgo.Handle(uintptr(payload)).Value().(*method)
	m.srv.inflight.Add(1)
	go m.serveUnary(call)
}

// leverGoStream runs on a liblever worker thread for each streaming call.
//
//export leverGoStream
func leverGoStream(stream *C.lever_stream, payload unsafe.Pointer) {
	m := cgo.Handle(uintptr(payload)).Value().(*method)
	m.srv.inflight.Add(1)
	go m.serveStream(stream)
}

// leverGoInvokeDone runs on a gRPC thread (or the calling thread) once an
// async call ends.
//
//export leverGoInvokeDone
func leverGoInvokeDone(rc C.int, result *C.lever_value, err *C.lever_error, payload unsafe.Pointer) {
	deliver(payload, asyncResult{rc: int(rc), value: result, err: err})
}

// leverGoInvokeMsgpackDone runs on a gRPC thread (or the calling thread)
// once a msgpack call ends; it takes over the result's bytes.
//
//export leverGoInvokeMsgpackDone
func leverGoInvokeMsgpackDone(rc C.int, result *C.lever_buf, err *C.lever_error, payload unsafe.Pointer) {
	r := asyncResult{rc: int(rc), err: err}
	if result != nil {
		r.mp = *result
		result.ptr, result.size = nil, 0
	}
	deliver(payload, r)
}

// leverGoCancelWatch runs once per watched handler call: cancelled != 0
// when its caller cancelled or the deadline passed (then the handler's
// context ends), 0 when the call is over.
//
//export leverGoCancelWatch
func leverGoCancelWatch(cancelled C.int, payload unsafe.Pointer) {
	h := cgo.Handle(uintptr(payload))
	cancel := h.Value().(context.CancelFunc)
	h.Delete()
	if cancelled != 0 {
		cancel()
	}
}

// leverGoOpenDone runs on a gRPC thread (or the calling thread) once a
// stream's handshake is done.
//
//export leverGoOpenDone
func leverGoOpenDone(rc C.int, stream *C.lever_stream, err *C.lever_error, payload unsafe.Pointer) {
	deliver(payload, asyncResult{rc: int(rc), stream: stream, err: err})
}

// leverGoRecvDone runs on a gRPC thread (or the calling thread) with the
// next stream message.
//
//export leverGoRecvDone
func leverGoRecvDone(rc C.int, msg *C.lever_value, err *C.lever_error, payload unsafe.Pointer) {
	deliver(payload, asyncResult{rc: int(rc), value: msg, err: err})
}
