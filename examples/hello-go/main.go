// The hello service in Go: SayHello("world") returns "Hello, world!".
//
// Build it beside lever.json as `serve` and deploy the folder (docs/sdk-go.md):
//
//	export PKG_CONFIG_PATH=<prefix>/lib/pkgconfig   # where liblever's lever.pc is
//	CGO_LDFLAGS="-Wl,-rpath,$(pkg-config --variable=libdir lever)" go build -o serve .
//	# or, for a faster cold start (gRPC linked in statically, no rpath needed):
//	go build -tags lever_static -o serve .
//	lever deploy .
//	lever invoke /helloService/SayHello '"world"'
package main

import (
	"log"

	lever "github.com/leveros/lever/sdk/go"
)

// Handler's exported methods are the service's methods, by their Go names.
type Handler struct{}

func (Handler) SayHello(name string) (string, error) {
	return "Hello, " + name + "!", nil
}

func main() {
	server := lever.NewServer() // listens where leverd says (LEVEROS_LISTEN_ADDR)
	if err := server.RegisterHandlerObject(Handler{}); err != nil {
		log.Fatal(err)
	}
	if err := server.Serve(); err != nil { // until SIGTERM
		log.Fatal(err)
	}
}
