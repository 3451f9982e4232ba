package evalharness

import (
	"github.com/onnxpost/onnxpost/onnxio"
)

// TensorInfo describes one input or output of a model.
type TensorInfo struct {
	// Name is the graph input or output name.
	Name string
	// DType is the element type.
	DType onnxio.DType
	// Shape lists the dimensions; -1 marks a symbolic or unknown dimension.
	Shape []int64
	// DimParams holds the symbolic name of each dimension ("" for a fixed
	// or unnamed one), or nil when unknown; it locates the batch axis of
	// inputs that are not batched along axis 0.
	DimParams []string
}

// Runner runs a model on named inputs. *Session implements it with ONNX
// Runtime; the harness's own logic (batching, metrics, gates) only needs
// this interface.
type Runner interface {
	// Inputs describes the model's inputs, in graph order.
	Inputs() []TensorInfo
	// Outputs describes the model's outputs, in graph order.
	Outputs() []TensorInfo
	// Run runs the model on one batch; inputs maps every input name to
	// an array. It returns the outputs in Outputs() order.
	Run(inputs map[string]*Array) ([]*Array, error)
}

// SessionOptions configure a Session.
type SessionOptions struct {
	// EP is the execution provider: "cpu" (the default when empty) or
	// "cuda".
	EP string
	// Threads is the number of intra-op threads; 0 lets ONNX Runtime
	// choose.
	Threads int
	// DeviceID selects the GPU for the CUDA execution provider.
	DeviceID int
	// Library is an explicit path of the ONNX Runtime shared library; see
	// FindLibrary for the search when empty. Only the first
	// initialization in a process loads a library.
	Library string
	// DisableOptimizations turns ONNX Runtime's graph optimizations off.
	DisableOptimizations bool
	// NoPrepack turns off ONNX Runtime's pre-packing of weights
	// (session.disable_prepacking): a session opened from a file with
	// external data then maps the weights instead of copying them, which
	// keeps a large model's session out of the process's anonymous memory
	// at some cost in speed (captures and load checks).
	NoPrepack bool
}

var _ Runner = (*Session)(nil)
