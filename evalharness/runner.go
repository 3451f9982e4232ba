package evalharness

import (
	"os"

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
	// Open, when set, opens every session the library creates with these
	// options (Capture, EvaluateModels, WeightSession, and the sessions of
	// fisher and the search) in place of ONNX Runtime: a fake runner in
	// tests (see package evaltest), another engine in a program. Nil opens
	// ONNX Runtime sessions.
	Open Opener

	// optimizedPath, when set, has ONNX Runtime write the model it runs,
	// after its graph optimizations, to this file (Capture's groups).
	optimizedPath string
	// profilePrefix, when set, has ONNX Runtime profile the session's runs
	// into a JSON file named with this prefix, written when it closes.
	profilePrefix string
	// noArena turns ONNX Runtime's CPU memory arena off.
	noArena bool
}

// SessionRunner is a Runner that holds resources until Close: what an
// Opener returns. *Session implements it.
type SessionRunner interface {
	Runner
	// Close releases the session.
	Close() error
}

// OpenRequest says which model a session runs and what it returns.
type OpenRequest struct {
	// Model is a serialized model with every tensor inline; when it is
	// empty, Path names a model file instead (its external data resolved
	// against the file's folder).
	Model []byte
	Path  string
	// Outputs are the outputs the session returns, in this order; empty
	// means all of the model's, in graph order.
	Outputs []string
}

// Opener opens a session on req's model; opt are the options the library
// was given (opt.Open is the Opener itself).
type Opener func(req OpenRequest, opt SessionOptions) (SessionRunner, error)

// OpenSession opens a session through opt.Open, or an ONNX Runtime
// Session when opt.Open is nil. It is the one place the library opens
// sessions.
func OpenSession(req OpenRequest, opt SessionOptions) (SessionRunner, error) {
	if opt.Open != nil {
		return opt.Open(req, opt)
	}
	s, err := newSession(req.Model, req.Path, req.Outputs, opt)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

// OpenModel opens a session (OpenSession) on m, returning outputs (all when
// empty). A model keeping more than MapAbove bytes in external data files
// is opened from a hidden model file written beside it that refers to
// those files (onnxio's WriteReferencing; removed once the session is
// open), with weight pre-packing off (SessionOptions.NoPrepack): ONNX
// Runtime then maps the weights from the data files instead of receiving a
// serialized copy, so opening and running a multi-gigabyte model costs
// little anonymous memory. Other models, and models whose folder cannot
// take the file, are serialized with every tensor inline.
func OpenModel(m *onnxio.Model, outputs []string, opt SessionOptions) (SessionRunner, error) {
	if m.ExternalBytes() > MapAbove {
		if p, err := m.WriteReferencing(); err == nil {
			defer os.Remove(p)
			o := opt
			o.NoPrepack = true
			return OpenSession(OpenRequest{Path: p, Outputs: outputs}, o)
		}
	}
	b, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return OpenSession(OpenRequest{Model: b, Outputs: outputs}, opt)
}

var _ SessionRunner = (*Session)(nil)
