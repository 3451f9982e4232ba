//go:build cgo

package evalharness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/onnxpost/onnxpost/onnxio"
)

var (
	initOnce sync.Once
	initErr  error
	initLib  string
)

// Init loads the ONNX Runtime shared library (see FindLibrary; explicit may
// be empty) and creates the process-wide environment. Only the first call
// does anything; later calls return its result, whatever explicit they pass.
// Sessions call Init themselves.
func Init(explicit string) error {
	initOnce.Do(func() {
		if !littleEndian() {
			initErr = errors.New("evalharness: big-endian hosts are not supported")
			return
		}
		lib, err := FindLibrary(explicit)
		if err != nil {
			initErr = err
			return
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("evalharness: loading ONNX Runtime from %s: %v (is it an ONNX Runtime 1.30 shared library for this platform? set %s or pass another path)", lib, err, LibraryEnv)
			return
		}
		initLib = lib
	})
	return initErr
}

// LibraryPath returns the path of the loaded ONNX Runtime library, or ""
// before a successful Init.
func LibraryPath() string { return initLib }

// Version returns the loaded ONNX Runtime's version, or "" before a
// successful Init.
func Version() string {
	if initLib == "" {
		return ""
	}
	return ort.GetVersion()
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// Session is an ONNX Runtime inference session. A Session is not safe for
// concurrent use; Close releases it.
type Session struct {
	s        *ort.DynamicAdvancedSession
	inputs   []TensorInfo
	outputs  []TensorInfo
	outNames []string
	ep       string
}

// NewSession creates a session from a serialized model. Models whose
// tensors live in external data files must be opened with
// NewSessionFromFile (ONNX Runtime resolves those files relative to the
// model's path).
func NewSession(model []byte, opt SessionOptions) (*Session, error) {
	return newSession(model, "", nil, opt)
}

// NewSessionFromFile creates a session from a model file.
func NewSessionFromFile(path string, opt SessionOptions) (*Session, error) {
	return newSession(nil, path, nil, opt)
}

// NewSessionOutputs is NewSession restricted to the named outputs (all
// outputs when names is empty).
func NewSessionOutputs(model []byte, outputs []string, opt SessionOptions) (*Session, error) {
	return newSession(model, "", outputs, opt)
}

// NewSessionFromFileOutputs is NewSessionFromFile restricted to the named
// outputs (all outputs when names is empty).
func NewSessionFromFileOutputs(path string, outputs []string, opt SessionOptions) (*Session, error) {
	return newSession(nil, path, outputs, opt)
}

func newSession(model []byte, path string, outNames []string, opt SessionOptions) (*Session, error) {
	if err := Init(opt.Library); err != nil {
		return nil, err
	}
	so, err := sessionOptions(opt)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	s := &Session{ep: epName(opt.EP)}
	ins, outs, err := modelIO(model, path)
	if err != nil {
		return nil, err
	}
	s.inputs = ins
	all := map[string]TensorInfo{}
	for _, o := range outs {
		all[o.Name] = o
	}
	if len(outNames) == 0 {
		for _, o := range outs {
			outNames = append(outNames, o.Name)
		}
	}
	for _, n := range outNames {
		info, ok := all[n]
		if !ok {
			return nil, fmt.Errorf("evalharness: model has no output %q", n)
		}
		s.outputs = append(s.outputs, info)
	}
	s.outNames = outNames
	inNames := make([]string, len(s.inputs))
	for i, in := range s.inputs {
		inNames[i] = in.Name
	}
	if path != "" {
		s.s, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	} else {
		s.s, err = ort.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, so)
	}
	if err != nil {
		return nil, fmt.Errorf("evalharness: creating the %s session%s: %v", s.ep, where(path), err)
	}
	return s, nil
}

// modelIO describes a model's inputs and outputs. It reads them from the
// model's graph through onnxio's streaming scan (value infos and
// initializer names only: the weights are neither read nor copied, so the
// only copy of a large model in memory is ONNX Runtime's own), falling back
// to ONNX Runtime's own description, which costs a temporary session.
func modelIO(model []byte, path string) (ins, outs []TensorInfo, err error) {
	var sig *onnxio.Signature
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, nil, fmt.Errorf("evalharness: %w", err)
		}
		sig, err = onnxio.ReadSignature(path)
	} else {
		sig, err = onnxio.ReadSignatureFrom(bytes.NewReader(model), int64(len(model)))
	}
	if err == nil {
		for _, v := range sig.Inputs {
			ins = append(ins, TensorInfo{Name: v.Name, DType: v.DType, Shape: dimsOf(v.Shape), DimParams: paramsOf(v.Shape)})
		}
		for _, v := range sig.Outputs {
			outs = append(outs, TensorInfo{Name: v.Name, DType: v.DType, Shape: dimsOf(v.Shape), DimParams: paramsOf(v.Shape)})
		}
		return ins, outs, nil
	}
	var oi, oo []ort.InputOutputInfo
	if path != "" {
		oi, oo, err = ort.GetInputOutputInfo(path)
	} else {
		oi, oo, err = ort.GetInputOutputInfoWithONNXData(model)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("evalharness: ONNX Runtime cannot load the model%s: %v", where(path), err)
	}
	for _, i := range oi {
		ins = append(ins, infoOf(i))
	}
	for _, o := range oo {
		outs = append(outs, infoOf(o))
	}
	return ins, outs, nil
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return " for " + path
}

func epName(ep string) string {
	if ep == "" {
		return "cpu"
	}
	return strings.ToLower(ep)
}

func sessionOptions(opt SessionOptions) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("evalharness: session options: %v", err)
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if err := CheckThreads(opt.Threads); err != nil {
		return fail(fmt.Errorf("evalharness: %w", err))
	}
	if opt.Threads > 0 {
		if err := so.SetIntraOpNumThreads(opt.Threads); err != nil {
			return fail(fmt.Errorf("evalharness: setting %d threads: %v", opt.Threads, err))
		}
	}
	if opt.DisableOptimizations {
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
			return fail(fmt.Errorf("evalharness: %v", err))
		}
	}
	if opt.optimizedPath != "" {
		// (ONNX Runtime warns that the layout optimizations it saves suit
		// this machine only: the file is read back here, at once.)
		if err := so.SetLogSeverityLevel(ort.LoggingLevelError); err != nil {
			return fail(fmt.Errorf("evalharness: %v", err))
		}
		if err := so.SetOptimizedModelFilePath(opt.optimizedPath); err != nil {
			return fail(fmt.Errorf("evalharness: %v", err))
		}
	}
	if opt.noArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return fail(fmt.Errorf("evalharness: %v", err))
		}
	}
	if opt.profilePrefix != "" {
		if err := so.EnableProfiling(opt.profilePrefix); err != nil {
			return fail(fmt.Errorf("evalharness: %v", err))
		}
	}
	if opt.NoPrepack {
		if err := so.AddSessionConfigEntry("session.disable_prepacking", "1"); err != nil {
			return fail(fmt.Errorf("evalharness: %v", err))
		}
	}
	switch epName(opt.EP) {
	case "cpu":
	case "cuda":
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return fail(cudaError(err))
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": strconv.Itoa(opt.DeviceID)}); err != nil {
			return fail(cudaError(err))
		}
		if err := so.AppendExecutionProviderCUDA(co); err != nil {
			return fail(cudaError(err))
		}
	default:
		return fail(fmt.Errorf("evalharness: unknown execution provider %q (want cpu or cuda)", opt.EP))
	}
	return so, nil
}

// ErrNoCUDA reports that the CUDA execution provider is unavailable.
var ErrNoCUDA = errors.New("evalharness: the CUDA execution provider is not available")

func cudaError(err error) error {
	return fmt.Errorf("%w: the ONNX Runtime library %s is a CPU-only build or no GPU/CUDA runtime is present (load a GPU build of ONNX Runtime instead): %v", ErrNoCUDA, initLib, err)
}

func infoOf(i ort.InputOutputInfo) TensorInfo {
	shape := make([]int64, len(i.Dimensions))
	for k, d := range i.Dimensions {
		if d < 0 {
			d = -1
		}
		shape[k] = d
	}
	return TensorInfo{Name: i.Name, DType: onnxio.DType(i.DataType), Shape: shape}
}

// Inputs describes the model's inputs in graph order.
func (s *Session) Inputs() []TensorInfo { return s.inputs }

// Outputs describes the session's outputs in the order Run returns them.
func (s *Session) Outputs() []TensorInfo { return s.outputs }

// EP returns the session's execution provider name ("cpu" or "cuda").
func (s *Session) EP() string { return s.ep }

// Run runs the model on one batch. inputs must hold an array for every
// model input (extra names are an error). The outputs are returned in
// Outputs() order as new arrays.
func (s *Session) Run(inputs map[string]*Array) ([]*Array, error) {
	if s.s == nil {
		return nil, errors.New("evalharness: session is closed")
	}
	if len(inputs) != len(s.inputs) {
		for name := range inputs {
			if !s.hasInput(name) {
				return nil, fmt.Errorf("evalharness: model has no input %q", name)
			}
		}
	}
	vals := make([]ort.Value, len(s.inputs))
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, in := range s.inputs {
		a, ok := inputs[in.Name]
		if !ok || a == nil {
			return nil, fmt.Errorf("evalharness: no data for model input %q", in.Name)
		}
		v, err := toValue(a)
		if err != nil {
			return nil, fmt.Errorf("evalharness: input %q: %w", in.Name, err)
		}
		vals[i] = v
	}
	outs := make([]ort.Value, len(s.outNames))
	if err := s.s.Run(vals, outs); err != nil {
		for _, o := range outs {
			destroy(o)
		}
		return nil, fmt.Errorf("evalharness: ONNX Runtime run failed: %v", err)
	}
	res := make([]*Array, len(outs))
	var firstErr error
	for i, o := range outs {
		if isNil(o) {
			if firstErr == nil {
				firstErr = fmt.Errorf("evalharness: output %q: ONNX Runtime returned no tensor (0-d outputs are not supported; reshape it to [1])", s.outNames[i])
			}
			continue
		}
		a, err := fromValue(o)
		o.Destroy()
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("evalharness: output %q: %w", s.outNames[i], err)
		}
		res[i] = a
	}
	runtime.KeepAlive(inputs)
	if firstErr != nil {
		return nil, firstErr
	}
	return res, nil
}

func (s *Session) hasInput(name string) bool {
	for _, in := range s.inputs {
		if in.Name == name {
			return true
		}
	}
	return false
}

// Close releases the session. It is safe to call twice.
func (s *Session) Close() error {
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}

// isNil reports whether v is nil or an interface holding a nil pointer:
// onnxruntime_go leaves typed nils in the outputs it could not wrap (0-d
// tensors among them), whose Destroy would dereference nil.
func isNil(v ort.Value) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	return r.Kind() == reflect.Pointer && r.IsNil()
}

// destroy releases v unless it is a (typed) nil.
func destroy(v ort.Value) {
	if !isNil(v) {
		v.Destroy()
	}
}

// emptyByte backs zero-element tensors (ONNX Runtime needs a pointer).
var emptyByte = []byte{0}

func toValue(a *Array) (ort.Value, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	data := a.Data
	if len(data) == 0 {
		data = emptyByte
	}
	shape := ort.Shape(append([]int64(nil), a.Shape...))
	if len(shape) == 0 {
		return scalarValue(a) // onnxruntime_go's tensors refuse empty shapes
	}
	return ort.NewCustomDataTensor(shape, data, ort.TensorElementDataType(a.DType))
}

func fromValue(v ort.Value) (*Array, error) {
	shape := []int64(v.GetShape())
	a := &Array{DType: onnxio.DType(v.DataType()), Shape: append([]int64(nil), shape...)}
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[float64]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[int64]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[int32]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[int16]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[int8]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[uint8]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[uint16]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[uint32]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[uint64]:
		a.Data = bytesOf(t.GetData())
	case *ort.Tensor[bool]: // one byte per element, 0 or 1: ONNX's bool
		a.Data = bytesOf(t.GetData())
	case *ort.CustomDataTensor:
		a.Data = append([]byte(nil), t.GetData()...)
	default:
		return nil, fmt.Errorf("%w: unsupported output value %T", ErrArray, v)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// bytesOf views a typed slice as bytes without copying (the host is
// little-endian, checked by Init). onnxruntime_go copies every output into
// Go-allocated memory, which stays valid after the value is destroyed.
func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var z T
	n := len(s) * int(unsafe.Sizeof(z))
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), n)
}

// cgoBuild reports whether this build links ONNX Runtime (cgo).
const cgoBuild = true
