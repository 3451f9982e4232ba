package merge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"unsafe"

	"github.com/onnxpost/onnxpost/internal/filehash"
	"github.com/onnxpost/onnxpost/onnxio"
)

// testTransformHook, when set by a test, is called by Transform with the
// tensor's name before it is merged.
var testTransformHook func(name string)

// Transform computes the merged tensor named name; t is the template's
// tensor of that name. Tensors that are not merged come back unchanged. It
// returns ctx's error once ctx is cancelled, and a panic while merging as
// a *safe.PanicError. TransformFunc adapts it to onnxio.TransformFunc:
// Save calls it from a pool of workers as it writes the output, so the
// merge streams.
func (m *Merger) Transform(ctx context.Context, name string, t *onnxio.Tensor) (_ *onnxio.Tensor, err error) {
	k, ok := m.index[name]
	if !ok {
		return t, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer m.recoverFault("merging "+name, &err)
	if testTransformHook != nil {
		testTransformHook(name)
	}
	p := &m.plan[k]
	base, xs, err := m.group(p, t)
	defer m.releaseGroup(base, xs)
	if err != nil {
		return nil, err
	}
	var fishers []*onnxio.Tensor
	for i, f := range m.in.Fishers {
		ft, err := m.views[f].Initializer(p.Fishers[i])
		if err != nil {
			return nil, err
		}
		defer m.release(f, ft)
		fishers = append(fishers, ft)
	}
	var out *onnxio.Tensor
	if same, err := unchanged(m.optionsFor(p), p, base, xs); err != nil {
		return nil, fmt.Errorf("merging %q: %w", p.Out, err)
	} else if same != nil {
		m.done.Add(same.NumElements())
		return same, nil
	}
	if p.DType == onnxio.Double {
		out, err = compute(m, p, base, xs, fishers, view64)
	} else {
		out, err = compute(m, p, base, xs, fishers, view32)
	}
	if err != nil {
		return nil, fmt.Errorf("merging %q: %w", p.Out, err)
	}
	m.done.Add(out.NumElements())
	return out, nil
}

// unchanged returns the merged tensor without running the method when
// every model's tensor and the base's are bitwise identical (same dtype,
// shape and bytes): the merge of n copies of x is x under every method
// whose result is a weighted mean or an interpolation of the models
// (linear with normalized weights, SLERP, NuSLERP, MultiSLERP, Karcher,
// Fisher, NearSwap, Arcee fusion, model stock), and under every
// task-vector method the task vectors xᵢ − base are all zero, so trimming,
// dropping, rescaling (0 / density = 0), sign election and λ·0 leave the
// base (task arithmetic, TIES, DARE, DARE-TIES, breadcrumbs, DELLA, SCE).
// Only linear without normalization is not idempotent: its result is
// (Σ wᵢ)·x, so it runs unless the weights sum to exactly 1. The shortcut
// keeps constants such as a −Inf attention mask, identical in every model,
// which the arithmetic would turn into NaN (−Inf − −Inf, 0·Inf), and it
// copies the values bit for bit instead of rounding them through the
// computation type. It returns nil when the method must run.
func unchanged(o *Options, p *TensorPlan, base *onnxio.Tensor, xs []*onnxio.Tensor) (*onnxio.Tensor, error) {
	if len(xs) == 0 {
		return nil, nil
	}
	if o.Method == Linear && o.NoNormalize && sum(o.Weights) != 1 {
		return nil, nil
	}
	ref := xs[0]
	if ref.DType != p.DType {
		return nil, nil
	}
	others := xs[1:]
	if base != nil {
		others = append([]*onnxio.Tensor{base}, others...)
	}
	for _, x := range others {
		if x.DType != ref.DType || !slices.Equal(x.Shape, ref.Shape) || !bytes.Equal(x.Bytes(), ref.Bytes()) {
			return nil, nil
		}
	}
	return onnxio.NewTensor(p.Out, p.DType, p.Shape, slices.Clone(ref.Bytes()))
}

// compute merges one tensor group with element type T.
func compute[T Float](m *Merger, p *TensorPlan, base *onnxio.Tensor, xs, fishers []*onnxio.Tensor, view func(*onnxio.Tensor) ([]T, error)) (*onnxio.Tensor, error) {
	vals := make([][]T, len(xs))
	for i, x := range xs {
		v, err := view(x)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	var b []T
	if base != nil {
		var err error
		if b, err = view(base); err != nil {
			return nil, err
		}
	}
	n := len(vals[0])
	dst, wrap := outBuffer[T](p.Out, p.DType, p.Shape, n, m.bufs.get)
	o := m.optionsFor(p)
	switch o.Method {
	case Linear:
		LinearTo(dst, vals, o.Weights, !o.NoNormalize)
	case TaskArithmetic:
		TaskArithmeticTo(dst, b, vals, o.Weights, o.lambda())
	case TIES:
		thr := m.thresholds
		if o.TrimScope == TrimTensor {
			var err error
			if thr, err = tensorThresholds(b, vals, o.Densities); err != nil {
				return nil, err
			}
		}
		if o.TIESDisjointSum {
			TIESSumTo(dst, b, vals, o.Weights, thr, o.lambda())
		} else {
			TIESTo(dst, b, vals, o.Weights, thr, o.lambda())
		}
	case DARE, DARETIES:
		keys := make([]uint64, len(vals))
		for i := range keys {
			keys[i] = StreamKey(o.Seed, p.Out, i)
		}
		DARETo(dst, b, vals, DAREParams{Weights: o.Weights, Densities: o.Densities, Keys: keys, Lambda: o.lambda(), TIES: o.Method == DARETIES})
	case SLERP:
		v0, v1 := b, vals[0]
		if b == nil {
			v0, v1 = vals[0], vals[1]
		}
		SLERPTo(dst, v0, v1, *o.T)
	case Fisher:
		fs := make([][]T, len(fishers))
		for i, f := range fishers {
			v, err := view(f)
			if err != nil {
				return nil, err
			}
			fs[i] = v
		}
		FisherTo(dst, vals, fs, m.coeffs, o.FisherFloor)
	default:
		if err := computeMergekit(o, p, dst, b, vals); err != nil {
			return nil, err
		}
	}
	if j := firstNonFinite(dst); j >= 0 {
		return nil, fmt.Errorf("%w: merged value %d is %v (do the inputs hold NaN or Inf?)", ErrIncompatible, j, dst[j])
	}
	t, err := wrap()
	if err != nil {
		return nil, err
	}
	if err := checkRounded(t); err != nil {
		return nil, err
	}
	return t, nil
}

// firstNonFinite returns the index of the first NaN or ±Inf of v, or −1.
// float32 values are tested on their bits, a chunk at a time (an exponent
// of all ones: adding 1 to it carries into the sign position), which is
// several times faster than converting every value to float64.
func firstNonFinite[T Float](v []T) int {
	if f, ok := any(v).([]float32); ok && len(f) > 0 {
		bits := unsafe.Slice((*uint32)(unsafe.Pointer(&f[0])), len(f))
		const chunk = 1024
		for lo := 0; lo < len(bits); lo += chunk {
			var acc uint32
			for _, b := range bits[lo:min(lo+chunk, len(bits))] {
				acc |= (b & 0x7f800000) + 0x00800000
			}
			if acc&0x80000000 == 0 {
				continue
			}
			for j := lo; j < min(lo+chunk, len(bits)); j++ {
				if bits[j]&0x7f800000 == 0x7f800000 {
					return j
				}
			}
		}
		return -1
	}
	for j, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return j
		}
	}
	return -1
}

// checkRounded fails when rounding the merged values to the output dtype
// (float16, bfloat16) made one of them infinite: the merge was finite in
// the computation type but overflows the tensor's.
func checkRounded(t *onnxio.Tensor) error {
	if t.DType != onnxio.Float16 && t.DType != onnxio.BFloat16 {
		return nil
	}
	vs, err := t.Float32()
	if err != nil {
		return err
	}
	for j, v := range vs {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: tensor %q: merged value %d overflows %v (it is %v after rounding)", ErrIncompatible, t.Name, j, t.DType, f)
		}
	}
	return nil
}

// TransformFunc returns Transform under ctx as an onnxio.TransformFunc.
func (m *Merger) TransformFunc(ctx context.Context) onnxio.TransformFunc {
	return func(name string, t *onnxio.Tensor) (*onnxio.Tensor, error) {
		return m.Transform(ctx, name, t)
	}
}

// Done returns the number of elements merged so far (for progress bars).
func (m *Merger) Done() int64 { return m.done.Load() }

// Output returns a model derived from the template (onnxio.Model.Derive:
// it shares the template's tensors) to save the merge into: pass it to
// Save with Transform set to m.Transform (as m.Save does). External data
// stays referenced, not copied.
func (m *Merger) Output() *onnxio.Model { return m.template.Derive() }

// Save writes the merged model to path, merging each tensor as it is
// written (a worker pool of so.Workers, default GOMAXPROCS). out is the
// model to save (from Output, with provenance set); so may be nil. When
// ctx is cancelled the next tensor fails with ctx's error, and the save
// removes its temporary files and leaves an existing output untouched.
func (m *Merger) Save(ctx context.Context, out *onnxio.Model, path string, so *onnxio.SaveOptions) error {
	var o onnxio.SaveOptions
	if so != nil {
		o = *so
	}
	o.Transform = m.TransformFunc(ctx)
	o.Context = ctx
	o.MapInputs = true // Transform reads the template through its own view
	o.Written = func(t *onnxio.Tensor) { m.bufs.put(t.Bytes()) }
	return out.Save(path, &o)
}

// Model returns the merged model in memory (out from Output, or nil for a
// fresh copy of the template); it stops with ctx's error when ctx is
// cancelled.
func (m *Merger) Model(ctx context.Context, out *onnxio.Model) (*onnxio.Model, error) {
	if out == nil {
		out = m.Output()
	}
	for _, p := range m.plan {
		t, err := out.Initializer(p.Out)
		if err != nil {
			return nil, err
		}
		mt, err := m.Transform(ctx, p.Out, t)
		if err != nil {
			return nil, err
		}
		if err := out.SetInitializer(mt); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Source is one input file of a merge, for provenance.
type Source struct {
	// Role is "base", "model" or "fisher".
	Role string `json:"role"`
	// Path is the file as given.
	Path string `json:"path"`
	// SHA256 is the hex digest of the file itself.
	SHA256 string `json:"sha256"`
	// Data maps each external data file the model references (location as
	// written in the model) to its hex digest.
	Data map[string]string `json:"data,omitempty"`
}

// FileSHA256 returns the hex SHA-256 of a file (internal/filehash: the
// one file digest, read once per process).
func FileSHA256(path string) (string, error) { return filehash.File(path) }

// Metadata keys of the provenance SetProvenance records.
const (
	MetaMethod = "onnxpost.merge.method"
	MetaParams = "onnxpost.merge.params"
	MetaInputs = "onnxpost.merge.inputs"
)

// SetProvenance records the merge in out's metadata_props: the method
// (MetaMethod), its parameters as a JSON object (MetaParams) and the inputs
// with their SHA-256 as a JSON array (MetaInputs).
func SetProvenance(out *onnxio.Model, opt *Options, sources []Source) error {
	pb, err := json.Marshal(opt.Params()) // encoding/json sorts map keys
	if err != nil {
		return err
	}
	sb, err := json.Marshal(sources)
	if err != nil {
		return err
	}
	out.SetMetadata(MetaMethod, string(opt.Method))
	out.SetMetadata(MetaParams, string(pb))
	out.SetMetadata(MetaInputs, string(sb))
	return nil
}
