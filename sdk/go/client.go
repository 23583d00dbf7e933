package lever

import (
	"context"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Client calls Lever services. It is safe for concurrent use; share one per
// process. The fields configure it and are read once, at its first call.
type Client struct {
	// ForceHost dials every call at this address ("host:port" or
	// "unix:/abs/path.sock"). Empty: the dial rule (LEVEROS_INTERNAL_RPC_GATEWAY
	// inside an instance, else LEVEROS_IP_PORT, else 127.0.0.1:8080).
	ForceHost string
	// ProtoJSON sends proto-JSON like Lever OS 0.1, to call original servers.
	// Default false: msgpack, which this platform's servers answer in.
	ProtoJSON bool
	// Timeout bounds each unary call whose context has no deadline. 0: none.
	Timeout time.Duration

	mu sync.Mutex
	h  *clientHandle
}

// clientHandle owns the C client; calls hold rw.RLock while they use it.
type clientHandle struct {
	rw     sync.RWMutex
	p      cClient
	closed bool
}

func (h *clientHandle) free() {
	h.rw.Lock()
	defer h.rw.Unlock()
	if !h.closed {
		h.closed = true
		if h.p != nil {
			clientFree(h.p)
			h.p = nil
		}
	}
}

// NewClient returns a client; set its fields before the first call.
func NewClient() *Client { return &Client{} }

var errClosed = &Error{Code: FailedPrecondition, Message: "client is closed"}

// handle returns the C client (created at the first call) read-locked; the
// caller unlocks h.rw.
func (c *Client) handle() (*clientHandle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		p, err := clientNew(c.ForceHost, "", c.ProtoJSON)
		if err != nil {
			return nil, err
		}
		c.h = &clientHandle{p: p}
		// A safety net only: Close releases the client deterministically.
		runtime.AddCleanup(c, func(h *clientHandle) { h.free() }, c.h)
	}
	h := c.h
	h.rw.RLock()
	if h.closed {
		h.rw.RUnlock()
		return nil, errClosed
	}
	return h, nil
}

// Close releases the client. Calls and streams in flight finish normally;
// later calls fail. Safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	h := c.h
	if h == nil {
		c.h = &clientHandle{closed: true}
	}
	c.mu.Unlock()
	if h != nil {
		h.free()
	}
	return nil
}

// Endpoint is a service, or one resource of a service, to call.
type Endpoint struct {
	client                 *Client
	env, service, resource string
}

// Service returns the endpoint of a service. An empty env means the own
// environment (LEVEROS_ENVIRONMENT).
func (c *Client) Service(env, service string) *Endpoint {
	return &Endpoint{client: c, env: env, service: service}
}

// Resource returns the endpoint of one resource of a service: every call
// for it goes to the instance that owns it.
func (c *Client) Resource(env, service, resource string) *Endpoint {
	return &Endpoint{client: c, env: env, service: service, resource: resource}
}

func (e *Endpoint) url(method string) string {
	var b strings.Builder
	if e.env != "" {
		b.WriteString("lever://")
		b.WriteString(e.env)
	}
	b.WriteString("/")
	b.WriteString(e.service)
	b.WriteString("/")
	b.WriteString(e.resource)
	b.WriteString("/")
	b.WriteString(method)
	return b.String()
}

// Invoke calls a non-streaming method and decodes its result into reply
// (a pointer; nil drops the result). See Client.InvokeURL.
func (e *Endpoint) Invoke(ctx context.Context, reply any, method string, args ...any) error {
	if IsChanMethod(method) {
		return &Error{Code: InvalidArgument, Message: "Use InvokeChan / InvokeChanURL for streaming methods"}
	}
	return e.client.InvokeURL(ctx, reply, e.url(method), args...)
}

// InvokeChan opens a streaming method (a name ending in Chan, _chan or
// equal to chan). See Client.InvokeChanURL.
func (e *Endpoint) InvokeChan(ctx context.Context, method string, args ...any) (Stream, error) {
	if !IsChanMethod(method) {
		return nil, &Error{Code: InvalidArgument, Message: "Use Invoke / InvokeURL for non-streaming methods"}
	}
	return e.client.InvokeChanURL(ctx, e.url(method), args...)
}

// timeoutMs is the call's timeout for liblever: the time left until ctx's
// deadline (rounded up), else def; 0 means none.
func timeoutMs(ctx context.Context, def time.Duration) (uint32, error) {
	d := def
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
		if d <= 0 {
			return 0, context.DeadlineExceeded
		}
	}
	if d <= 0 {
		return 0, nil
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		return 0, nil
	}
	return uint32(ms), nil
}

// ctxError prefers ctx's error for a call that failed once ctx had ended:
// liblever's deadline (ctx's, rounded up) or the remote handler's (the same
// deadline, on the server's clock) may fire before ctx's own timer.
func ctxError(ctx context.Context, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// InvokeURL calls a non-streaming method by its Lever URL
// (lever://env/service[/resource]/method, or /service[/resource]/method in
// the own environment) with args encoded as msgpack (msgpack.go), and
// decodes the result into reply. A remote application error is a
// *RemoteError or *RemoteByteError, a platform failure an *Error. When ctx
// ends first, InvokeURL returns ctx.Err() at once; a deadline on ctx also
// travels with the call.
func (c *Client) InvokeURL(ctx context.Context, reply any, url string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a, err := marshalArray(args)
	if err != nil {
		return err
	}
	tmo, err := timeoutMs(ctx, c.Timeout)
	if err != nil {
		return err
	}
	h, err := c.handle()
	if err != nil {
		return err
	}
	if ctx.Done() == nil {
		// Nothing can cancel the call: one blocking C call, msgpack in and out.
		err = clientInvokeMsgpack(h.p, url, a, tmo, reply)
		h.rw.RUnlock()
		runtime.KeepAlive(c)
		return err
	}
	call, err := clientInvokeAsync(h.p, url, a, tmo)
	h.rw.RUnlock()
	runtime.KeepAlive(c)
	if err != nil {
		return err
	}
	select {
	case r := <-call.ch:
		call.finish()
		return ctxError(ctx, r.take(reply))
	case <-ctx.Done():
		call.abandon() // cancels the call now; its result is freed by the callback
		return ctx.Err()
	}
}

// InvokeChanURL opens a streaming method by its Lever URL and returns once
// the stream is established (reference §2.7 handshake). Cancelling ctx
// cancels the stream; a deadline on ctx bounds the whole stream.
func (c *Client) InvokeChanURL(ctx context.Context, url string, args ...any) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := marshalArray(args)
	if err != nil {
		return nil, err
	}
	tmo, err := timeoutMs(ctx, 0)
	if err != nil {
		return nil, err
	}
	h, err := c.handle()
	if err != nil {
		return nil, err
	}
	call, err := streamOpenAsync(h.p, url, a, tmo)
	h.rw.RUnlock()
	runtime.KeepAlive(c)
	if err != nil {
		return nil, err
	}
	select {
	case r := <-call.ch:
		p := r.stream
		r.stream = nil
		if err := r.take(nil); err != nil {
			return nil, ctxError(ctx, err)
		}
		return newClientStream(ctx, p), nil
	case <-ctx.Done():
		call.abandon() // a late stream is freed, and so cancelled, by the callback
		return nil, ctx.Err()
	}
}
