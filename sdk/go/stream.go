package lever

import (
	"context"
	"io"
	"runtime"
	"sync"
)

// Stream is one side of a streaming call: the client's (from InvokeChan) or
// the server's (given to a streaming handler). Send and Receive may be used
// from different goroutines; one Receive at a time.
type Stream interface {
	// Send sends a message: []byte travels as bytes (byte_message),
	// anything else as a value (msgpack.go).
	Send(msg any) error
	// Receive decodes the next message into v (a pointer; nil drops it). It
	// returns io.EOF once the peer has ended its side, a *RemoteError or
	// *RemoteByteError when the peer ended with an application error (then
	// io.EOF), or the *Error / ctx.Err() that failed the call.
	Receive(v any) error
	// Close ends the sending side. Client: half-close (the server's Receive
	// gets io.EOF); keep receiving until io.EOF to see the server's end.
	// Server: a no-op; the call ends when the handler returns.
	Close() error
	// Context is the call's context: InvokeChan's ctx on the client, the
	// handler's on the server.
	Context() context.Context
}

// streamHandle owns a C stream. Operations hold a reference while they use
// it; finish marks it done and the last reference frees it, so no
// operation ever races lever_stream_free.
type streamHandle struct {
	mu       sync.Mutex
	p        cStream
	refs     int
	done     bool
	onFinish func() bool
}

func (h *streamHandle) acquire() cStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return nil
	}
	h.refs++
	return h.p
}

func (h *streamHandle) release() {
	h.mu.Lock()
	h.refs--
	p := h.freeable()
	h.mu.Unlock()
	if p != nil {
		streamFree(p)
	}
}

func (h *streamHandle) finish() {
	h.mu.Lock()
	h.done = true
	stop := h.onFinish
	h.onFinish = nil
	p := h.freeable()
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	if p != nil {
		streamFree(p)
	}
}

// freeable returns the C stream once it is done and unused (mu held).
func (h *streamHandle) freeable() cStream {
	if !h.done || h.refs > 0 || h.p == nil {
		return nil
	}
	p := h.p
	h.p = nil
	return p
}

type stream struct {
	h      *streamHandle
	ctx    context.Context
	server bool
	cancel context.CancelFunc // server: the handler's context

	recvMu  sync.Mutex
	recvErr error // sticky once the receiving side is over
}

var errStreamEnded = &Error{Code: FailedPrecondition, Message: "stream has ended"}

func newClientStream(ctx context.Context, p cStream) *stream {
	h := &streamHandle{p: p}
	s := &stream{h: h, ctx: ctx}
	h.onFinish = context.AfterFunc(ctx, func() {
		if p := h.acquire(); p != nil {
			streamCancel(p)
			h.release()
		}
	})
	// A safety net for a stream dropped before its end: freeing cancels it.
	runtime.AddCleanup(s, func(h *streamHandle) { h.finish() }, h)
	return s
}

func newServerStream(ctx context.Context, cancel context.CancelFunc, p cStream) *stream {
	return &stream{h: &streamHandle{p: p}, ctx: ctx, server: true, cancel: cancel}
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) Send(msg any) error {
	b, err := marshal(msg)
	if err != nil {
		return err
	}
	p := s.h.acquire()
	if p == nil {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		return errStreamEnded
	}
	err = streamSend(p, b)
	s.h.release()
	runtime.KeepAlive(s)
	return ctxError(s.ctx, err)
}

func (s *stream) Receive(v any) error {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.recvErr != nil {
		return s.recvErr
	}
	p := s.h.acquire()
	if p == nil {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		return errStreamEnded
	}
	call, err := streamRecvAsync(p)
	if err != nil {
		s.h.release()
		return err
	}
	r := <-call.ch
	s.h.release()
	runtime.KeepAlive(s)
	rc := r.rc
	switch rc {
	case rcOK:
		return r.take(v)
	case rcEnd:
		r.free()
		s.recvErr = io.EOF
	default:
		err := ctxError(s.ctx, r.take(nil))
		if rc == rcApp {
			s.recvErr = io.EOF // the end follows an application error
		} else {
			s.recvErr = err
			if s.server {
				s.cancel() // the call failed: tell the handler
			}
		}
		if !s.server {
			s.h.finish()
		}
		return err
	}
	if !s.server {
		s.h.finish() // the server has ended: the call is over
	}
	return io.EOF
}

func (s *stream) Close() error {
	if s.server {
		return nil
	}
	if p := s.h.acquire(); p != nil {
		streamCloseSend(p)
		s.h.release()
	}
	runtime.KeepAlive(s)
	return nil
}
