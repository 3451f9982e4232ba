//go:build !cgo

package evalharness

import (
	"errors"
	"fmt"
)

// errNoCgo reports a build without cgo, which ONNX Runtime needs; it wraps
// ErrNoLibrary so that callers treat it as a missing library.
var errNoCgo = fmt.Errorf("%w; besides, this build has no cgo, which ONNX Runtime needs (build with CGO_ENABLED=1)", ErrNoLibrary)

// ErrNoCUDA reports that the CUDA execution provider is unavailable.
var ErrNoCUDA = errors.New("evalharness: the CUDA execution provider is not available")

// Init reports that ONNX Runtime is unavailable in builds without cgo.
func Init(explicit string) error { return errNoCgo }

// LibraryPath returns "" in builds without cgo.
func LibraryPath() string { return "" }

// Version returns "" in builds without cgo.
func Version() string { return "" }

// Session is unavailable in builds without cgo.
type Session struct{}

// NewSession reports that ONNX Runtime is unavailable.
func NewSession(model []byte, opt SessionOptions) (*Session, error) { return nil, errNoCgo }

// NewSessionFromFile reports that ONNX Runtime is unavailable.
func NewSessionFromFile(path string, opt SessionOptions) (*Session, error) { return nil, errNoCgo }

// NewSessionFromFileOutputs reports that ONNX Runtime is unavailable.
func NewSessionFromFileOutputs(path string, outputs []string, opt SessionOptions) (*Session, error) {
	return nil, errNoCgo
}

// NewSessionOutputs reports that ONNX Runtime is unavailable.
func NewSessionOutputs(model []byte, outputs []string, opt SessionOptions) (*Session, error) {
	return nil, errNoCgo
}

func newSession(model []byte, path string, outputs []string, opt SessionOptions) (*Session, error) {
	return nil, errNoCgo
}

// Inputs returns nil.
func (s *Session) Inputs() []TensorInfo { return nil }

// Outputs returns nil.
func (s *Session) Outputs() []TensorInfo { return nil }

// EP returns "".
func (s *Session) EP() string { return "" }

// Run reports that ONNX Runtime is unavailable.
func (s *Session) Run(inputs map[string]*Array) ([]*Array, error) { return nil, errNoCgo }

// Close does nothing.
func (s *Session) Close() error { return nil }

// cgoBuild reports whether this build links ONNX Runtime (cgo).
const cgoBuild = false
