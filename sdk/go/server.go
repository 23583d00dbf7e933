package lever

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"runtime/cgo"
	"sync"
	"syscall"
	"time"
)

// Server serves a service's methods. Register handlers, then Serve (or
// Start and Wait). Set the fields before Start.
type Server struct {
	// ListenAddr is where to serve: "unix:/abs/path.sock" or "host:port"
	// (port 0: any free port, see Port). Empty: LEVEROS_LISTEN_ADDR (set by
	// leverd), else 0.0.0.0:3837.
	ListenAddr string
	// MaxWorkers bounds liblever's handler threads. 0: its default (1024).
	MaxWorkers int
	// GracePeriod is how long Stop lets calls in flight finish before they
	// are cancelled. 0: 5 s.
	GracePeriod time.Duration

	mu       sync.Mutex
	methods  map[string]*method
	order    []string
	handles  []cgo.Handle
	p        cServer
	started  bool
	stopping bool
	base     context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup
	waitOnce sync.Once
	stopped  chan struct{} // closed once lever_server_stop has returned
	done     chan struct{}
}

// NewServer returns a server with no handlers.
func NewServer() *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{methods: map[string]*method{}, base: ctx, cancel: cancel, done: make(chan struct{}),
		stopped: make(chan struct{})}
}

// RegisterHandler registers fn as the method name. See the package
// documentation for the handler shapes.
func (s *Server) RegisterHandler(name string, fn any) error {
	m, err := newMethod(s, name, reflect.ValueOf(fn))
	if err != nil {
		return err
	}
	return s.add([]*method{m})
}

// RegisterHandlerObject registers every exported method of obj under its Go
// name (so a Go service exposes e.g. SayHello). Nothing is registered if
// one of them is not a handler.
func (s *Server) RegisterHandlerObject(obj any) error {
	v := reflect.ValueOf(obj)
	if !v.IsValid() {
		return fmt.Errorf("lever: RegisterHandlerObject(nil)")
	}
	var ms []*method
	for i := 0; i < v.NumMethod(); i++ {
		name := v.Type().Method(i).Name
		m, err := newMethod(s, name, v.Method(i))
		if err != nil {
			return fmt.Errorf("%w (method %s of %s)", err, name, v.Type())
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return fmt.Errorf("lever: %s has no exported methods", v.Type())
	}
	return s.add(ms)
}

func (s *Server) add(ms []*method) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("lever: register handlers before Start")
	}
	for _, m := range ms {
		if _, dup := s.methods[m.name]; dup {
			return fmt.Errorf("lever: method %s registered twice", m.name)
		}
	}
	for _, m := range ms {
		s.methods[m.name] = m
		s.order = append(s.order, m.name)
	}
	return nil
}

// Start binds and serves in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("lever: server already started")
	}
	p, err := serverNew(s.ListenAddr, s.MaxWorkers)
	if err != nil {
		return err
	}
	for _, name := range s.order {
		m := s.methods[name]
		h := cgo.NewHandle(m)
		s.handles = append(s.handles, h)
		if err = serverHandle(p, name, h, m.streaming); err != nil {
			break
		}
	}
	if err == nil {
		err = serverStart(p)
	}
	if err != nil {
		serverFree(p)
		s.freeHandles()
		return err
	}
	s.p = p
	s.started = true
	return nil
}

func (s *Server) freeHandles() {
	for _, h := range s.handles {
		h.Delete()
	}
	s.handles = nil
}

// Port is the bound TCP port after Start (0 for unix sockets).
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0
	}
	return serverPort(s.p)
}

// Stop starts a graceful shutdown and returns at once: no new calls, calls in
// flight get GracePeriod to finish, then their contexts are cancelled. Wait
// (or Serve) returns when it is done. Safe from handlers; idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.stopping {
		return
	}
	s.stopping = true
	grace := s.GracePeriod
	if grace <= 0 {
		grace = 5 * time.Second
	}
	p := s.p
	t := time.AfterFunc(grace, s.cancel)
	go func() {
		serverStop(p, uint32(grace/time.Millisecond))
		t.Stop()
		s.cancel()
		close(s.stopped)
	}()
}

// Wait blocks until the server has stopped and released everything.
func (s *Server) Wait() error {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("lever: server not started")
	}
	s.waitOnce.Do(func() {
		serverWait(p)
		<-s.stopped // only Stop stops a server; never free p under its call
		s.cancel()
		s.inflight.Wait()
		serverFree(p)
		s.mu.Lock()
		s.freeHandles()
		s.mu.Unlock()
		close(s.done)
	})
	<-s.done
	return nil
}

// Serve starts the server and blocks until it stops. SIGTERM (what leverd
// sends to stop an instance) and SIGINT stop it gracefully.
func (s *Server) Serve() error {
	if err := s.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	go func() {
		select {
		case <-sig:
			s.Stop()
		case <-s.done:
		}
	}()
	return s.Wait()
}

// callContext is a handler's context: cancelled at the call's deadline, when
// the server stops, and when the handler returns.
func (s *Server) callContext(info *CallInfo) (context.Context, context.CancelFunc) {
	ctx := context.WithValue(s.base, callInfoKey{}, info)
	if !info.Deadline.IsZero() {
		return context.WithDeadline(ctx, info.Deadline)
	}
	return context.WithCancel(ctx)
}
