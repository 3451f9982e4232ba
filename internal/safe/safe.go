// Package safe turns Go panics into errors at the boundaries where they
// would otherwise kill the process: the top of the CLI and every worker
// goroutine of a pool. A panic is a bug; it becomes a *PanicError naming the
// operation, so the command exits 1 with "internal error:" instead of a Go
// stack trace and exit code 2.
package safe

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
)

// DebugEnv names the environment variable that, set to a non-empty value
// other than "0", makes the CLI print the stack of an internal error.
const DebugEnv = "ONNXPOST_DEBUG"

// PanicError is a recovered panic: a bug in onnxpost, not a problem with
// the user's input.
type PanicError struct {
	// Op names the operation that panicked ("merge", "quantize worker").
	Op string
	// Value is the value passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

// Error returns "internal error: OP: VALUE".
func (e *PanicError) Error() string {
	return fmt.Sprintf("internal error: %s: %v", e.Op, e.Value)
}

// Unwrap returns the panic value when it is an error (a runtime.Error for
// an index out of range, for instance).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Recover converts a panic of the calling goroutine into a *PanicError
// stored in *errp. Call it deferred, directly:
//
//	func work() (err error) {
//		defer safe.Recover("quantize", &err)
//		...
//	}
//
// A panic that is already a *PanicError (re-raised from a worker) is kept
// as it is.
func Recover(op string, errp *error) {
	r := recover()
	if r == nil {
		return
	}
	*errp = FromPanic(op, r)
}

// FromPanic builds the *PanicError of a value returned by recover. Call it
// inside the deferred function that recovered, so the stack is the
// panicking goroutine's.
func FromPanic(op string, r any) *PanicError {
	if pe, ok := r.(*PanicError); ok {
		return pe
	}
	if err, ok := r.(error); ok {
		var pe *PanicError
		if errors.As(err, &pe) {
			return pe
		}
	}
	return &PanicError{Op: op, Value: r, Stack: debug.Stack()}
}

// Go runs f in a new goroutine and sends its result, or its panic as a
// *PanicError, on the returned channel (buffered, so the goroutine never
// blocks on it).
func Go(op string, f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() {
		var err error
		defer func() { ch <- err }()
		defer Recover(op, &err)
		err = f()
	}()
	return ch
}

// Call runs f and returns its error, or its panic as a *PanicError.
func Call(op string, f func() error) (err error) {
	defer Recover(op, &err)
	return f()
}

// Debug reports whether DebugEnv asks for stacks.
func Debug() bool {
	v := os.Getenv(DebugEnv)
	return v != "" && v != "0"
}
