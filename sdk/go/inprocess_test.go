package lever

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// In-process tests: a Server on a loopback port and a Client dialling it
// directly (no leverd), for handler shapes, values, streams and errors.

type Person struct {
	Name    string         `json:"name"`
	Age     int            `json:"age,omitempty"`
	Tags    []string       `json:"tags"`
	Extra   map[string]int `json:"extra,omitempty"`
	private int
}

type testHandler struct {
	resources chan string // NewResource reports here
	release   chan struct{}
	canceled  chan error // WaitChan reports its context's end here
	blocked   chan error // Block reports its context's end here
}

func (testHandler) BasicHello(name string) (string, error) { return "hello " + name, nil }
func (testHandler) Add(ctx context.Context, a, b int) (int, error) {
	if _, ok := CallInfoFromContext(ctx); !ok {
		return 0, errors.New("no call info")
	}
	return a + b, nil
}
func (testHandler) Older(p Person) (Person, error) {
	p.Age++
	p.Tags = append(p.Tags, "older")
	return p, nil
}
func (testHandler) PtrStruct(p *Person) (*Person, error) { return p, nil }
func (testHandler) Upper(xs []string) ([]string, error) {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strings.ToUpper(x)
	}
	return out, nil
}
func (testHandler) Echo(b []byte) ([]byte, error) { return b, nil }
func (testHandler) Sum(prefix string, xs ...int) (string, error) {
	n := 0
	for _, x := range xs {
		n += x
	}
	return prefix + strings.Repeat("+", n), nil
}
func (testHandler) Who(ctx context.Context, r Resource, suffix string) (string, error) {
	ci, _ := CallInfoFromContext(ctx)
	return string(r) + "/" + ci.Method + suffix, nil
}
func (h testHandler) NewResource(ctx context.Context, r Resource) error {
	h.resources <- string(r)
	return nil
}
func (testHandler) Fail(msg string) (any, error) { return nil, errors.New("failed: " + msg) }
func (testHandler) FailBytes() error             { return ByteError{0, 1, 0xfe} }
func (testHandler) FailRaw() (string, []byte)    { return "", []byte("raw") }
func (testHandler) FailValue() (int, error) {
	return 0, &RemoteError{Err: map[string]any{"code": int64(7)}}
}
func (testHandler) Panic() (int, error)        { panic("boom") }
func (testHandler) Nothing() error             { return nil }
func (testHandler) Generic(v any) (any, error) { return v, nil }

// Park reports its start (nil) and its context's end on blocked.
func (h testHandler) Park(ctx context.Context) error {
	h.blocked <- nil
	<-ctx.Done()
	h.blocked <- ctx.Err()
	return ctx.Err()
}
func (h testHandler) Block(ctx context.Context) (string, error) {
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-h.release:
		return "released", nil
	}
}
func (testHandler) EchoChan(ctx context.Context, s Stream, prefix string) error {
	for {
		var msg any
		err := s.Receive(&msg)
		if err == io.EOF {
			return s.Send(prefix + "done")
		}
		if err != nil {
			return err
		}
		if b, ok := msg.([]byte); ok {
			if err := s.Send(append([]byte(prefix), b...)); err != nil {
				return err
			}
			continue
		}
		if msg == "fail" {
			return errors.New("stream failed")
		}
		if err := s.Send(prefix + msg.(string)); err != nil {
			return err
		}
	}
}
func (testHandler) CountChan(r Resource, s Stream, n int) error {
	for i := 0; i < n; i++ {
		if err := s.Send(string(r) + ":" + strings.Repeat("x", i)); err != nil {
			return err
		}
	}
	return nil
}
func (h testHandler) WaitChan(s Stream) error {
	<-s.Context().Done()
	h.canceled <- s.Context().Err()
	return nil
}

type inProcess struct {
	srv       *Server
	client    *Client
	svc       *Endpoint
	release   chan struct{}
	canceled  chan error
	blocked   chan error
	resources chan string
}

func startInProcess(t *testing.T) *inProcess {
	t.Helper()
	srv := NewServer()
	srv.ListenAddr = "127.0.0.1:0"
	srv.GracePeriod = 2 * time.Second
	release := make(chan struct{})
	canceled := make(chan error, 10)
	blocked := make(chan error, 100)
	resources := make(chan string, 100)
	h := testHandler{release: release, canceled: canceled, blocked: blocked, resources: resources}
	if err := srv.RegisterHandlerObject(h); err != nil {
		t.Fatal(err)
	}
	if err := srv.RegisterHandler("plainFunc", func(a, b string) (string, error) { return a + b, nil }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := NewClient()
	c.ForceHost = "127.0.0.1:" + itoaTest(srv.Port())
	c.Timeout = 20 * time.Second
	p := &inProcess{srv: srv, client: c, svc: c.Service("dev.lever", "svc"), release: release, canceled: canceled, blocked: blocked,
		resources: resources}
	t.Cleanup(func() {
		c.Close()
		srv.Stop()
		srv.Wait()
	})
	return p
}

func itoaTest(i int) string { return fmtInt(i) }
func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for i > 0 {
		s = string(rune('0'+i%10)) + s
		i /= 10
	}
	return s
}

func TestInProcessValues(t *testing.T) {
	p := startInProcess(t)
	ctx := t.Context()
	bg := context.Background() // the blocking (uncancellable) path

	var s string
	if err := p.svc.Invoke(bg, &s, "BasicHello", "name"); err != nil || s != "hello name" {
		t.Fatalf("BasicHello: %q %v", s, err)
	}
	var n int
	if err := p.svc.Invoke(ctx, &n, "Add", 2, 40); err != nil || n != 42 {
		t.Fatalf("Add: %d %v", n, err)
	}
	in := Person{Name: "ann", Age: 41, Tags: []string{"a"}, Extra: map[string]int{"k": 1}}
	var out Person
	if err := p.svc.Invoke(ctx, &out, "Older", in); err != nil {
		t.Fatal(err)
	}
	if out.Name != "ann" || out.Age != 42 || len(out.Tags) != 2 || out.Tags[1] != "older" || out.Extra["k"] != 1 {
		t.Fatalf("Older: %+v", out)
	}
	var pp *Person
	if err := p.svc.Invoke(ctx, &pp, "PtrStruct", &in); err != nil || pp == nil || pp.Name != "ann" {
		t.Fatalf("PtrStruct: %+v %v", pp, err)
	}
	if err := p.svc.Invoke(ctx, &pp, "PtrStruct", nil); err != nil || pp != nil {
		t.Fatalf("PtrStruct(nil): %+v %v", pp, err)
	}
	var up []string
	if err := p.svc.Invoke(ctx, &up, "Upper", []string{"a", "b"}); err != nil || strings.Join(up, ",") != "A,B" {
		t.Fatalf("Upper: %v %v", up, err)
	}
	blob := []byte{0, 0xff, 0x10, 'x'}
	var b []byte
	if err := p.svc.Invoke(ctx, &b, "Echo", blob); err != nil || string(b) != string(blob) {
		t.Fatalf("Echo: %v %v", b, err)
	}
	var anyB any
	if err := p.svc.Invoke(bg, &anyB, "Echo", blob); err != nil {
		t.Fatal(err)
	} else if bb, ok := anyB.([]byte); !ok || string(bb) != string(blob) {
		t.Fatalf("Echo into any: %#v", anyB)
	}
	if err := p.svc.Invoke(ctx, &s, "Sum", "n", 1, 2); err != nil || s != "n+++" {
		t.Fatalf("Sum: %q %v", s, err)
	}
	if err := p.svc.Invoke(ctx, &s, "Sum", "n"); err != nil || s != "n" {
		t.Fatalf("Sum(no varargs): %q %v", s, err)
	}
	for i := 0; i < 3; i++ {
		if err := p.client.Resource("dev.lever", "svc", "res1").Invoke(ctx, &s, "Who", "!"); err != nil || s != "res1/Who!" {
			t.Fatalf("Who: %q %v", s, err)
		}
	}
	// The first call for a resource ran NewResource once, with the resource.
	select {
	case r := <-p.resources:
		if r != "res1" {
			t.Fatalf("NewResource(%q)", r)
		}
	default:
		t.Fatal("NewResource was not called")
	}
	if len(p.resources) != 0 {
		t.Fatalf("NewResource called again for %q", <-p.resources)
	}
	if err := p.svc.Invoke(ctx, &s, "plainFunc", "a", "b"); err != nil || s != "ab" {
		t.Fatalf("plainFunc: %q %v", s, err)
	}
	if err := p.svc.Invoke(ctx, nil, "Nothing"); err != nil {
		t.Fatal(err)
	}
	var g any
	want := map[string]any{"a": []any{int64(1), 2.5, nil, true, "s"}}
	if err := p.svc.Invoke(ctx, &g, "Generic", want); err != nil {
		t.Fatal(err)
	}
	if m, ok := g.(map[string]any); !ok || len(m["a"].([]any)) != 5 || m["a"].([]any)[1] != 2.5 || m["a"].([]any)[0] != int64(1) {
		t.Fatalf("Generic: %#v", g)
	}
	// The URL forms.
	if err := p.client.InvokeURL(ctx, &s, "lever://dev.lever/svc//BasicHello", "url"); err != nil || s != "hello url" {
		t.Fatalf("InvokeURL: %q %v", s, err)
	}
}

// A client speaking proto-JSON like Lever OS 0.1: numbers arrive as doubles,
// a sole bytes argument as byte_args.
func TestInProcessProtoJSON(t *testing.T) {
	p := startInProcess(t)
	c := NewClient()
	c.ForceHost = p.client.ForceHost
	c.ProtoJSON = true
	defer c.Close()
	svc := c.Service("dev.lever", "svc")
	var n int
	if err := svc.Invoke(t.Context(), &n, "Add", 2, 40); err != nil || n != 42 {
		t.Fatalf("Add: %d %v", n, err)
	}
	var out Person
	if err := svc.Invoke(t.Context(), &out, "Older", Person{Name: "bo", Age: 1, Tags: []string{}}); err != nil || out.Age != 2 || out.Tags[0] != "older" {
		t.Fatalf("Older: %+v %v", out, err)
	}
	var b []byte
	if err := svc.Invoke(t.Context(), &b, "Echo", []byte{0, 1, 2}); err != nil || string(b) != "\x00\x01\x02" {
		t.Fatalf("Echo: %v %v", b, err)
	}
	var re *RemoteError
	if err := svc.Invoke(t.Context(), nil, "Fail", "x"); !errors.As(err, &re) || re.Error() != "failed: x" {
		t.Fatalf("Fail: %#v", err)
	}
}

func TestInProcessErrors(t *testing.T) {
	p := startInProcess(t)
	ctx := t.Context()
	var re *RemoteError
	err := p.svc.Invoke(ctx, nil, "Fail", "x")
	if !errors.As(err, &re) || err.Error() != "failed: x" {
		t.Fatalf("Fail: %#v", err)
	}
	var rbe *RemoteByteError
	err = p.svc.Invoke(ctx, nil, "FailBytes")
	if !errors.As(err, &rbe) || string(rbe.Err) != "\x00\x01\xfe" {
		t.Fatalf("FailBytes: %#v", err)
	}
	err = p.svc.Invoke(context.Background(), nil, "FailRaw")
	if !errors.As(err, &rbe) || string(rbe.Err) != "raw" {
		t.Fatalf("FailRaw: %#v", err)
	}
	err = p.svc.Invoke(ctx, nil, "FailValue")
	if !errors.As(err, &re) || re.Err.(map[string]any)["code"] != int64(7) {
		t.Fatalf("FailValue: %#v", err)
	}
	var pe *Error
	err = p.svc.Invoke(ctx, nil, "Panic")
	if !errors.As(err, &pe) || pe.Code != Unknown || !strings.Contains(pe.Message, "boom") {
		t.Fatalf("Panic: %#v", err)
	}
	err = p.svc.Invoke(ctx, nil, "BasicHello")
	if !errors.As(err, &pe) || pe.Code != InvalidArgument || !strings.Contains(pe.Message, "Received 0 but handling 1") {
		t.Fatalf("arg count: %#v", err)
	}
	err = p.svc.Invoke(ctx, nil, "Add", "x", 1)
	if !errors.As(err, &pe) || pe.Code != InvalidArgument {
		t.Fatalf("arg type: %#v", err)
	}
	err = p.svc.Invoke(ctx, nil, "NoSuchMethod")
	if !errors.As(err, &pe) {
		t.Fatalf("unknown method: %#v", err)
	}
	err = p.svc.Invoke(ctx, nil, "EchoChan")
	if !errors.As(err, &pe) || pe.Code != InvalidArgument {
		t.Fatalf("Invoke of a stream: %#v", err)
	}
	if _, err = p.svc.InvokeChan(ctx, "BasicHello"); !errors.As(err, &pe) || pe.Code != InvalidArgument {
		t.Fatalf("InvokeChan of unary: %#v", err)
	}
	var n int
	if err = p.svc.Invoke(ctx, &n, "BasicHello", "x"); err == nil {
		t.Fatal("decoding a string into an int succeeded")
	}
}

func TestInProcessCancel(t *testing.T) {
	p := startInProcess(t)
	// A deadline on ctx: the call returns context.DeadlineExceeded.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.svc.Invoke(ctx, nil, "Block"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	// Cancelling ctx returns at once and cancels the call: the handler's
	// context ends with Canceled (liblever's cancel watch; the deadline is 20 s).
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.svc.Invoke(ctx, nil, "Park") }()
		if err := <-p.blocked; err != nil { // the handler runs
			t.Fatalf("Block started with %v", err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel: %v", err)
		}
		select {
		case err := <-p.blocked:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("handler context: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the unary handler's context was not cancelled")
		}
	}
	// A stream: cancelling its ctx ends Receive with ctx.Err().
	ctx, cancel = context.WithCancel(t.Context())
	s, err := p.svc.InvokeChan(ctx, "WaitChan")
	if err != nil {
		t.Fatal(err)
	}
	go cancel()
	if err := s.Receive(nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("stream cancel: %v", err)
	}
	if err := s.Send("x"); err == nil {
		t.Fatal("Send after cancel succeeded")
	}
	// The server handler's context ends too (liblever's cancel watch tells it).
	select {
	case err := <-p.canceled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream handler's context was not cancelled")
	}
	close(p.release)
	var str string
	if err := p.svc.Invoke(t.Context(), &str, "Block"); err != nil || str != "released" {
		t.Fatalf("Block: %q %v", str, err)
	}
}

func TestInProcessStreams(t *testing.T) {
	p := startInProcess(t)
	ctx := t.Context()
	s, err := p.svc.InvokeChan(ctx, "EchoChan", "p:")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"1", "hello"} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
		var r string
		if err := s.Receive(&r); err != nil || r != "p:"+m {
			t.Fatalf("receive: %q %v", r, err)
		}
	}
	if err := s.Send([]byte{0, 1}); err != nil {
		t.Fatal(err)
	}
	var rb []byte
	if err := s.Receive(&rb); err != nil || string(rb) != "p:\x00\x01" {
		t.Fatalf("bytes: %q %v", rb, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var last string
	if err := s.Receive(&last); err != nil || last != "p:done" {
		t.Fatalf("last: %q %v", last, err)
	}
	if err := s.Receive(&last); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if err := s.Receive(&last); err != io.EOF {
		t.Fatalf("end again: %v", err)
	}
	s.Close() // idempotent after the end

	// An error from the handler ends the stream: RemoteError, then io.EOF.
	s, err = p.svc.InvokeChan(ctx, "EchoChan", "")
	if err != nil {
		t.Fatal(err)
	}
	s.Send("fail")
	var re *RemoteError
	if err := s.Receive(nil); !errors.As(err, &re) || re.Error() != "stream failed" {
		t.Fatalf("stream error: %#v", err)
	}
	if err := s.Receive(nil); err != io.EOF {
		t.Fatalf("after error: %v", err)
	}

	// Server-only stream with a resource; many streams at once.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := p.client.Resource("dev.lever", "svc", "r").InvokeChan(ctx, "CountChan", 3)
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
			var got []string
			for {
				var m string
				err := s.Receive(&m)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Error(err)
					return
				}
				got = append(got, m)
			}
			if strings.Join(got, ",") != "r:,r:x,r:xx" {
				t.Errorf("CountChan: %v", got)
			}
		}()
	}
	wg.Wait()
}

func TestHandlerShapes(t *testing.T) {
	srv := NewServer()
	bad := map[string]any{
		"noResult":    func() {},
		"threeOut":    func() (int, int, error) { return 0, 0, nil },
		"notErr":      func() (int, int) { return 0, 0 },
		"someChan":    func(s string) error { return nil },
		"streamUnary": func(s Stream) error { return nil },
		"ctxLate":     func(a int, ctx context.Context) (int, error) { return 0, nil },
		"notFunc":     42,
	}
	for name, fn := range bad {
		if err := srv.RegisterHandler(name, fn); err == nil {
			t.Errorf("%s: registered", name)
		}
	}
	good := map[string]any{
		"noArgs":      func() (int, error) { return 0, nil },
		"onlyErr":     func(ctx context.Context) error { return nil },
		"resFirst":    func(r Resource, x int) (int, error) { return 0, nil },
		"bytesErr":    func() (string, []byte) { return "", nil },
		"aChan":       func(ctx context.Context, r Resource, s Stream, x ...string) error { return nil },
		"b_chan":      func(s Stream, ctx context.Context) error { return nil },
		"chan":        func(s Stream) error { return nil },
		"NewResource": func(ctx context.Context, r Resource) error { return nil },
	}
	for name, fn := range good {
		if err := srv.RegisterHandler(name, fn); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := srv.RegisterHandler("noArgs", func() error { return nil }); err == nil {
		t.Error("registered twice")
	}
	type badObj struct{ testHandler }
	if err := NewServer().RegisterHandlerObject(struct{}{}); err == nil {
		t.Error("an object with no methods registered")
	}
}

func BenchmarkInvoke(b *testing.B) {
	srv := NewServer()
	srv.ListenAddr = "127.0.0.1:0"
	if err := srv.RegisterHandler("echo", func(s string) (string, error) { return s, nil }); err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Stop(); srv.Wait() }()
	c := NewClient()
	c.ForceHost = "127.0.0.1:" + itoaTest(srv.Port())
	defer c.Close()
	svc := c.Service("dev.lever", "svc")
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{{"blocking", context.Background()}, {"cancellable", b.Context()}} {
		b.Run(bc.name, func(b *testing.B) {
			var s string
			for b.Loop() {
				if err := svc.Invoke(bc.ctx, &s, "echo", "hello"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A client stream dropped before its end is cancelled by the GC safety net.
func TestDroppedStreamIsCancelled(t *testing.T) {
	p := startInProcess(t)
	func() {
		if _, err := p.svc.InvokeChan(t.Context(), "WaitChan"); err != nil {
			t.Fatal(err)
		}
	}()
	for i := 0; i < 100; i++ {
		runtime.GC()
		select {
		case err := <-p.canceled:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("handler context: %v", err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("a dropped stream was not cancelled")
}

// A handler may stop its own server; Wait returns once the call is done.
func TestStopFromHandler(t *testing.T) {
	srv := NewServer()
	srv.ListenAddr = "127.0.0.1:0"
	if err := srv.RegisterHandler("quit", func() (string, error) { srv.Stop(); return "bye", nil }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := NewClient()
	c.ForceHost = "127.0.0.1:" + itoaTest(srv.Port())
	defer c.Close()
	var s string
	if err := c.Service("dev.lever", "svc").Invoke(t.Context(), &s, "quit"); err != nil || s != "bye" {
		t.Fatalf("quit: %q %v", s, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- srv.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return")
	}
	srv.Stop() // idempotent
	if err := srv.Start(); err == nil {
		t.Fatal("restarted a stopped server")
	}
	c.Close()
	c.Close()
	if err := c.Service("dev.lever", "svc").Invoke(t.Context(), nil, "quit"); err == nil {
		t.Fatal("a closed client called")
	}
}
