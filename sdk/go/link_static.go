//go:build lever_static

package lever

// With -tags lever_static: liblever.a and gRPC's static archives, through
// lever-static.pc, so a service binary loads no gRPC, abseil or protobuf
// shared library at exec, most of a cold start's cost (docs/sdk-go.md
// "Static linking").

// #cgo pkg-config: lever-static
import "C"
