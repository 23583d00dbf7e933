//go:build !lever_static

package lever

// The default: liblever.so, found through lever.pc (docs/sdk-go.md "Install").
// gRPC stays inside liblever.so, loaded with its ~56 shared libraries at exec.

// #cgo pkg-config: lever
import "C"
