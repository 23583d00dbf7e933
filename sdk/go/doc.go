// Package lever is the Go SDK of Lever: a client for calling Lever services
// and the runtime that serves a Go service. It keeps the API of Lever OS
// 0.1's Go package (reference §10.3) with a context.Context on every call,
// and wraps liblever, Lever's C library, with cgo (standard library only).
//
// # Client
//
//	client := lever.NewClient()
//	client.ForceHost = "127.0.0.1:8080" // optional
//	var reply string
//	err := client.Service("dev.lever", "helloService").Invoke(ctx, &reply, "SayHello", "world")
//
// Arguments and results are mapped like encoding/json maps values (structs by
// their json tags, typed slices, maps, pointers), except that []byte stays
// bytes. A remote handler's error is a *RemoteError or *RemoteByteError; a
// platform failure (unknown service, no instance, deadline...) is an *Error
// with a gRPC Code. When ctx ends first, a call returns ctx.Err().
//
// # Streams
//
// Methods whose name ends in Chan or _chan (or is chan) are streaming:
//
//	s, err := client.Service("dev.lever", "svc").InvokeChan(ctx, "ReqReplyStreamChan", "arg")
//	err = s.Send("hello")
//	err = s.Receive(&reply) // io.EOF once the server has ended
//	err = s.Close()         // half-close: no more sends
//
// # Server
//
//	server := lever.NewServer()
//	server.RegisterHandlerObject(&Handler{}) // exported methods, by Go name
//	server.RegisterHandler("other", fn)
//	server.Serve() // until SIGTERM (what leverd sends) or SIGINT
//
// # Handlers
//
// A unary handler is a func that returns (T, error) or just error:
//
//	func([ctx context.Context,] [res lever.Resource,] args...) (T, error)
//
// A streaming handler (its name ends in Chan, _chan or is chan) returns an
// error and takes a lever.Stream:
//
//	func([ctx context.Context,] [res lever.Resource,] stream lever.Stream, args...) error
//
// The leading context.Context, lever.Resource and lever.Stream parameters are
// filled in by the runtime (in any order, each at most once, before the
// arguments); the remaining parameters are the call's arguments, decoded into
// their Go types (struct values, pointers, typed slices, maps, []byte...). A
// variadic last parameter takes the remaining arguments. The argument count
// must match, else the call fails with InvalidArgument.
//
// The context is cancelled at the call's deadline, when the caller cancels
// (liblever tells at once), when the server stops and when the handler
// returns; lever.CallInfoFromContext tells the call's URL, environment,
// resource, method and caller's environment.
//
// A []byte result travels as bytes (byte_result). An error travels in-band
// as its Error() string, or as bytes when it is a lever.BytesError (such as
// lever.ByteError) or when the handler's error result has type []byte; a
// *RemoteError or *RemoteByteError from a nested call passes on its value. A
// panic fails the call with Unknown. A streaming handler's error ends the
// stream with that error; returning nil ends it normally.
//
// Services that define NewResource / CloseResource get them called when an
// instance takes on or gives up a resource (the resource is their
// lever.Resource parameter, or their only argument).
package lever
