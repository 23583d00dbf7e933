package lever

import (
	"fmt"
	"strconv"
)

// Code is a gRPC status code, as carried by platform errors (*Error).
type Code int

// The gRPC status codes.
const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.Itoa(int(c)) + ")"
}

// Error is a platform error: the call failed in Lever or gRPC (unknown
// service or method, bad arguments, no instance, deadline, cancelled...)
// rather than in the remote handler. Compare Code with errors.As.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return "lever: " + e.Code.String() + ": " + e.Message }

// RemoteError is an application error sent by the remote handler (in-band,
// reference §2.5). Err is the decoded error value: a Go handler's error
// arrives as its Error() string, so Error() prints it bare, as the original.
type RemoteError struct {
	Err any
}

func (e *RemoteError) Error() string { return fmt.Sprintf("%v", e.Err) }

// RemoteByteError is an application error the remote handler sent as bytes
// (byte_error).
type RemoteByteError struct {
	Err []byte
}

func (e *RemoteByteError) Error() string { return string(e.Err) }

// BytesError is an error that a handler wants sent as bytes (byte_error)
// rather than as its Error() string.
type BytesError interface {
	error
	GetBytes() []byte
}

// ByteError is a ready-made BytesError: return lever.ByteError(b) from a
// handler to send b as the error.
type ByteError []byte

func (e ByteError) Error() string    { return string(e) }
func (e ByteError) GetBytes() []byte { return []byte(e) }

// errorValue is what a handler's error becomes on the wire: bytes for a
// BytesError, the remote value for a RemoteError passed along, else the
// Error() string.
func errorValue(err error) any {
	switch e := err.(type) {
	case BytesError:
		return e.GetBytes()
	case *RemoteByteError:
		return e.Err
	case *RemoteError:
		return e.Err
	}
	return err.Error()
}
