// The service of the system test (reference §11.1, Lever OS 0.1's
// systemtest/basictestservice): the Go tests build it, deploy it to a real
// leverd with the lever CLI and call it.
package main

import (
	"context"
	"errors"
	"io"
	"log"

	lever "github.com/leveros/lever/sdk/go"
)

type Handler struct{}

func (Handler) BasicHello(name string) (string, error) { return "hello " + name, nil }

func (Handler) BasicError(msg string) (any, error) { return nil, errors.New("error sent: " + msg) }

func (Handler) ByteError() error { return lever.ByteError{0, 1, 0xfe} }

func (Handler) ReqReplyStreamChan(stream lever.Stream, prefix string) error {
	for {
		var msg string
		err := stream.Receive(&msg)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(prefix + ":" + msg + " received"); err != nil {
			return err
		}
	}
}

// Info tells who served the call: the instance's env vars and the call's
// resource.
func (Handler) Info(ctx context.Context, res lever.Resource) (map[string]string, error) {
	ci, _ := lever.CallInfoFromContext(ctx)
	return map[string]string{
		"env":      lever.OwnEnvironment,
		"service":  lever.OwnService,
		"instance": lever.OwnInstanceID,
		"resource": string(res),
		"method":   ci.Method,
	}, nil
}

// CallHello calls another service through the instance's gateway socket
// (LEVEROS_INTERNAL_RPC_GATEWAY), in its own environment.
func (Handler) CallHello(ctx context.Context, service, name string) (string, error) {
	var reply string
	err := client.Service("", service).Invoke(ctx, &reply, "SayHello", name)
	return reply, err
}

var client = lever.NewClient()

func main() {
	server := lever.NewServer()
	if err := server.RegisterHandlerObject(Handler{}); err != nil {
		log.Fatal(err)
	}
	if err := server.Serve(); err != nil {
		log.Fatal(err)
	}
}
