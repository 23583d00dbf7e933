package lever

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
)

// Resource is the resource a call is for (lever://env/service/RESOURCE/method).
// A handler that wants it declares a parameter of this type after its
// context (or first, without one); the runtime fills it in and it is not one
// of the call's arguments.
type Resource string

var (
	contextType  = reflect.TypeFor[context.Context]()
	resourceType = reflect.TypeFor[Resource]()
	streamType   = reflect.TypeFor[Stream]()
	errorType    = reflect.TypeFor[error]()
	bytesType    = reflect.TypeFor[[]byte]()
)

// method is one registered handler and how to call it.
type method struct {
	srv       *Server
	name      string
	fn        reflect.Value
	streaming bool
	ctxAt     int // parameter positions; -1 when absent
	resAt     int
	streamAt  int
	args      []reflect.Type // the call's arguments (last: element type if variadic)
	variadic  bool
	hasResult bool // (T, E) rather than (E)
}

// newMethod checks fn's shape (doc.go, "Handlers").
func newMethod(srv *Server, name string, fn reflect.Value) (*method, error) {
	if fn.Kind() != reflect.Func || fn.IsNil() {
		return nil, fmt.Errorf("lever: handler %s is a %s, not a func", name, fn.Kind())
	}
	t := fn.Type()
	m := &method{srv: srv, name: name, fn: fn, streaming: IsChanMethod(name), ctxAt: -1, resAt: -1, streamAt: -1,
		variadic: t.IsVariadic()}
	in := t.NumIn()
	i := 0
	// Leading runtime-filled parameters: context.Context, Resource, Stream,
	// each at most once, in any order.
lead:
	for ; i < in && !(m.variadic && i == in-1); i++ {
		switch p := t.In(i); {
		case p == contextType && m.ctxAt < 0:
			m.ctxAt = i
		case p == resourceType && m.resAt < 0:
			m.resAt = i
		case p == streamType && m.streamAt < 0:
			m.streamAt = i
		default:
			break lead
		}
	}
	for ; i < in; i++ {
		p := t.In(i)
		if m.variadic && i == in-1 {
			p = p.Elem()
		}
		if p == contextType || p == streamType {
			return nil, fmt.Errorf("lever: handler %s: a %s parameter must come before the arguments", name, p)
		}
		m.args = append(m.args, p)
	}
	isErr := func(t reflect.Type) bool { return t == errorType || t == bytesType }
	if m.streaming {
		if m.streamAt < 0 {
			return nil, fmt.Errorf("lever: streaming handler %s needs a lever.Stream parameter: func([ctx context.Context,] stream lever.Stream, args...) error", name)
		}
		if t.NumOut() != 1 || t.Out(0) != errorType {
			return nil, fmt.Errorf("lever: streaming handler %s must return exactly one error", name)
		}
		return m, nil
	}
	if m.streamAt >= 0 {
		return nil, fmt.Errorf("lever: handler %s takes a lever.Stream but its name is not streaming (it must end in Chan, _chan or be chan)", name)
	}
	switch {
	case t.NumOut() == 2 && isErr(t.Out(1)):
		m.hasResult = true
	case t.NumOut() == 1 && t.Out(0) == errorType:
	default:
		return nil, fmt.Errorf("lever: handler %s must return (result, error) or error, not %s", name, t)
	}
	return m, nil
}

// decodeArgs builds the parameter list from the call's msgpack args.
func (m *method) decodeArgs(ctx context.Context, info *CallInfo, s Stream, args []byte) ([]reflect.Value, error) {
	elems, err := arrayElements(args)
	if err != nil {
		return nil, err
	}
	// NewResource/CloseResource get the resource as their only argument; a
	// handler that takes a lever.Resource gets it there instead.
	if m.resAt >= 0 && (m.name == "NewResource" || m.name == "CloseResource") {
		elems = nil
	}
	fixed := len(m.args)
	if m.variadic {
		fixed--
	}
	if len(elems) < fixed || (!m.variadic && len(elems) != fixed) {
		plus := ""
		if m.variadic {
			plus = "+"
		}
		return nil, &Error{Code: InvalidArgument, Message: "Number of args does not match. Received " +
			strconv.Itoa(len(elems)) + " but handling " + strconv.Itoa(fixed) + plus}
	}
	in := make([]reflect.Value, 0, m.fn.Type().NumIn()+len(elems))
	for i := 0; i < m.fn.Type().NumIn() && (i == m.ctxAt || i == m.resAt || i == m.streamAt); i++ {
		switch i {
		case m.ctxAt:
			in = append(in, reflect.ValueOf(&ctx).Elem())
		case m.resAt:
			in = append(in, reflect.ValueOf(Resource(info.Resource)))
		case m.streamAt:
			in = append(in, reflect.ValueOf(&s).Elem())
		}
	}
	for i, e := range elems {
		t := m.args[min(i, len(m.args)-1)]
		v := reflect.New(t)
		if err := unmarshal(e, v.Interface()); err != nil {
			return nil, &Error{Code: InvalidArgument, Message: fmt.Sprintf("argument %d of %s: %v", i+1, m.name, err)}
		}
		in = append(in, v.Elem())
	}
	return in, nil
}

func panicMessage(name string, r any) string {
	fmt.Fprintf(os.Stderr, "lever: panic in handler %s: %v\n%s", name, r, debug.Stack())
	return fmt.Sprintf("panic in handler %s: %v", name, r)
}

// serveUnary runs on its own goroutine and finishes call exactly once.
func (m *method) serveUnary(call cCall) {
	defer m.srv.inflight.Done()
	info := callInfo(call)
	ctx, cancel := m.srv.callContext(info)
	defer cancel()
	watchCallCancel(call, cancel)
	o := m.runUnary(ctx, info, call)
	if o.fail {
		callFail(call, o.code, o.msg)
	} else {
		callReply(call, o.value, o.isError)
	}
}

// unaryOutcome is how a unary call ends.
type unaryOutcome struct {
	fail    bool // a platform error: code and msg
	code    Code
	msg     string
	value   []byte // msgpack result or application error
	isError bool
}

func failed(code Code, msg string) unaryOutcome {
	return unaryOutcome{fail: true, code: code, msg: msg}
}

func (m *method) runUnary(ctx context.Context, info *CallInfo, call cCall) (o unaryOutcome) {
	var in []reflect.Value
	err := callArgs(call, func(b []byte) (err error) {
		in, err = m.decodeArgs(ctx, info, nil, b)
		return err
	})
	if err != nil {
		if e, ok := err.(*Error); ok {
			return failed(e.Code, e.Message)
		}
		return failed(InvalidArgument, err.Error())
	}
	defer func() {
		if r := recover(); r != nil {
			o = failed(Unknown, panicMessage(m.name, r))
		}
	}()
	out := m.fn.Call(in)
	ev := out[len(out)-1]
	var errVal any
	if ev.Kind() == reflect.Slice { // a []byte error
		if !ev.IsNil() {
			errVal = ev.Bytes()
		}
	} else if !ev.IsNil() {
		errVal = errorValue(ev.Interface().(error))
	}
	if errVal != nil {
		b, err := marshal(errVal)
		if err != nil {
			return failed(Internal, "cannot encode the error of "+m.name+": "+err.Error())
		}
		return unaryOutcome{value: b, isError: true}
	}
	var result any
	if m.hasResult {
		result = out[0].Interface()
	}
	b, err := marshal(result)
	if err != nil {
		return failed(Internal, "cannot encode the result of "+m.name+": "+err.Error())
	}
	return unaryOutcome{value: b}
}

// serveStream runs on its own goroutine and frees p when the handler is done.
func (m *method) serveStream(p cStream) {
	defer m.srv.inflight.Done()
	info := streamInfo(p)
	ctx, cancel := m.srv.callContext(info)
	defer cancel()
	s := newServerStream(ctx, cancel, p)
	defer s.h.finish()
	watchStreamCancel(p, cancel)
	var in []reflect.Value
	err := streamArgs(p, func(b []byte) (err error) {
		in, err = m.decodeArgs(ctx, info, s, b)
		return err
	})
	if err != nil {
		// liblever has no way to fail a server stream with a status: the
		// argument error travels as an application error.
		if e, ok := err.(*Error); ok {
			err = fmt.Errorf("%s", e.Message)
		}
		b, _ := marshal(err.Error())
		streamEndWithError(p, b)
		return
	}
	var out []reflect.Value
	panicked := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				panicMessage(m.name, r)
				panicked = true
			}
		}()
		out = m.fn.Call(in)
	}()
	q := s.h.acquire()
	if q == nil {
		return
	}
	defer s.h.release()
	switch {
	case panicked:
		streamCancel(q)
	case !out[0].IsNil():
		b, err := marshal(errorValue(out[0].Interface().(error)))
		if err != nil {
			b, _ = marshal(err.Error())
		}
		streamEndWithError(q, b)
	default:
		streamCloseSend(q)
	}
}
