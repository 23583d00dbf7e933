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
