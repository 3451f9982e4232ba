package onnxio

import (
	"errors"

	"github.com/onnxpost/onnxpost/internal/safefile"
)

// Sentinel errors. Errors returned by this package wrap one of these where
// it applies, so callers can test with errors.Is.
var (
	// ErrFormat reports bytes that are not a valid ONNX protobuf or a
	// tensor whose data does not agree with its declared type and shape.
	ErrFormat = errors.New("onnxio: invalid model format")
	// ErrLimit reports a model beyond the configured Limits.
	ErrLimit = errors.New("onnxio: limit exceeded")
	// ErrDType reports a data type that an operation does not support.
	ErrDType = errors.New("onnxio: unsupported data type")
	// ErrExternalPath reports an external-data location outside the
	// model's folder (absolute, "..", or a symlink leaving it).
	ErrExternalPath = errors.New("onnxio: external data path outside the model folder")
	// ErrNotFound reports a tensor, node or value name that does not exist.
	ErrNotFound = errors.New("onnxio: not found")
	// ErrOutputPath reports an output path that cannot hold a model file
	// (empty, a folder, a special file); nothing is written.
	ErrOutputPath = errors.New("onnxio: bad output path")
	// ErrNotRegular reports an input that is not a regular file (a FIFO,
	// a device, a folder, a socket; symlinks are followed); it is refused
	// before it is read.
	ErrNotRegular = safefile.ErrNotRegular
	// ErrMismatch reports models whose structures do not match.
	ErrMismatch = errors.New("onnxio: models do not match")
)
