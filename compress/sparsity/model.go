package sparsity

import (
	"context"
	"fmt"
	"regexp"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// MetaSparsity is the metadata_props key PruneModel records its method,
// target and result under.
const MetaSparsity = "onnxpost.sparsity"

// Selection says which weights of a model PruneModel prunes: the weights of
// MatMul (2-D B), Gemm (B) and Conv (W) nodes, filtered by regular
// expressions over the weight or node name.
type Selection struct {
	// Include, when not nil, keeps only weights whose name or consuming
	// node's name matches.
	Include *regexp.Regexp
	// Exclude, when not nil, drops weights whose name or node name matches.
	Exclude *regexp.Regexp
	// Subgraphs also selects main-graph weights that If/Loop/Scan
	// subgraphs read (pruned in place, they keep their name): only for
	// methods without calibration, since the inputs of a consumer inside a
	// subgraph cannot be captured. HoistSubgraphWeights moves the weights
	// held in subgraphs to the main graph first.
	Subgraphs bool
}

// HoistSubgraphWeights moves the MatMul/Gemm/Conv weights held as
// initializers in If/Loop/Scan subgraphs to the main graph (where the
// subgraphs read them by name), so that Selection.Subgraphs can select
// them; it returns the names it could not move with the reason.
func HoistSubgraphWeights(m *onnxio.Model, sel Selection) (map[string]string, error) {
	ws, err := m.AllWeights()
	if err != nil {
		return nil, err
	}
	left := map[string]string{}
	for _, w := range ws {
		if w.Stored == "" || !w.DType.IsFloat() || !sel.takes(w) {
			continue
		}
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
		default:
			continue
		}
		if err := m.HoistWeight(w); err != nil {
			left[w.Name] = err.Error()
		}
	}
	return left, nil
}

func (s Selection) takes(w onnxio.Weight) bool {
	match := func(re *regexp.Regexp) bool { return re.MatchString(w.Name) || re.MatchString(w.Node) }
	if s.Include != nil && !match(s.Include) {
		return false
	}
	if s.Exclude != nil && match(s.Exclude) {
		return false
	}
	return true
}

// layoutOf returns the layout of a weight, or why it cannot be pruned.
func layoutOf(w onnxio.Weight) (Layout, string) {
	switch w.Role {
	case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
	default:
		return "", "role " + w.Role
	}
	if !w.DType.IsFloat() {
		return "", "dtype " + w.DType.String() + " is not a float type"
	}
	if w.Consumers > 1 {
		return "", fmt.Sprintf("shared by %d nodes", w.Consumers)
	}
	if w.Role == onnxio.RoleConvW {
		if len(w.Shape) < 3 || w.OutAxis != 0 || w.InAxis != 1 {
			return "", fmt.Sprintf("conv weight of shape %v, axes out %d in %d", w.Shape, w.OutAxis, w.InAxis)
		}
		return LayoutConv, ""
	}
	if len(w.Shape) != 2 {
		return "", fmt.Sprintf("%d-D %s", len(w.Shape), w.Role)
	}
	switch {
	case w.InAxis == 0 && w.OutAxis == 1:
		return LayoutKN, ""
	case w.InAxis == 1 && w.OutAxis == 0:
		return LayoutNK, ""
	}
	return "", fmt.Sprintf("axes out %d in %d", w.OutAxis, w.InAxis)
}

// PruneWeightMagnitude returns a copy of values (weight w's data) with
// exactly zeros entries of smallest magnitude set to zero, in the order
// PruneLayer's magnitude method uses: ties prune the higher index first in
// the layer's matrix view (output units × reduction, see Layout), so a
// MatMul B [K, N] breaks ties along K within an output unit, as sparsify
// does. A weight without a prunable layout (another role, shared) is
// pruned in its flat order.
func PruneWeightMagnitude(w onnxio.Weight, values []float32, zeros int) ([]float32, error) {
	l, why := layoutOf(w)
	if why != "" {
		return PruneMagnitude(values, zeros)
	}
	m, sh, err := ToMatrix(values, l, w.Shape)
	if err != nil {
		return nil, fmt.Errorf("sparsity: %s: %w", w.Name, err)
	}
	out, err := PruneMagnitude(m, zeros)
	if err != nil {
		return nil, fmt.Errorf("sparsity: %s: %w", w.Name, err)
	}
	return FromMatrix(out, l, sh), nil
}

// Candidates lists the weights of m that PruneModel would consider, as
// Layers without data, and the reports of those it cannot prune (a
// non-float dtype, a weight shared by several nodes, a batched MatMul).
// Weights the selection leaves out are not listed at all.
func Candidates(m *onnxio.Model, sel Selection) ([]Layer, []LayerReport, error) {
	ws, err := m.Weights()
	if err != nil {
		return nil, nil, err
	}
	if sel.Subgraphs {
		all, err := m.AllWeights()
		if err != nil {
			return nil, nil, err
		}
		for _, w := range all {
			if w.Scope != "" && w.Stored == "" && !w.Sparse {
				ws = append(ws, w)
			}
		}
	}
	var layers []Layer
	var skipped []LayerReport
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
		default:
			continue
		}
		if !sel.takes(w) {
			continue
		}
		l, why := layoutOf(w)
		if w.Quantized {
			why = w.Special()
		}
		if why != "" {
			skipped = append(skipped, LayerReport{Name: w.Name, Shape: w.Shape, Params: int(w.Params()), Skipped: why})
			continue
		}
		layers = append(layers, Layer{Name: w.Name, Layout: l, Dims: w.Shape})
	}
	return layers, skipped, nil
}

// PruneModel prunes the selected weights of m in place (each keeps its
// name, dtype and shape; pruned weights become exact zeros) and returns the
// report, with the weights it could not prune listed as skipped. Weights
// held in Constant nodes are folded into initializers first. cal may be
// nil for Magnitude. With Options.Scope global, all selected weights are in
// memory at once; otherwise one layer at a time (plus m's own copies).
// It stops with ctx's error, checked before each layer, when ctx is
// cancelled (m is then partly pruned: prune a copy when that matters).
func PruneModel(ctx context.Context, m *onnxio.Model, opt Options, sel Selection, cal calib.Stats) (Report, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return Report{}, err
	}
	if opt.Method.NeedsCalibration() && cal == nil {
		return Report{}, fmt.Errorf("%w: %s", ErrNoCalibration, opt.Method)
	}
	if _, err := m.FoldConstantWeights(); err != nil {
		return Report{}, err
	}
	layers, skipped, err := Candidates(m, sel)
	if err != nil {
		return Report{}, err
	}
	if len(layers) == 0 {
		return Report{}, fmt.Errorf("sparsity: no prunable MatMul/Gemm/Conv weight selected")
	}
	global := opt.Pattern.IsZero() && opt.Scope == ScopeGlobal
	reps := make([]LayerReport, 0, len(layers)+len(skipped))
	for i := range layers {
		if global {
			t, err := m.Initializer(layers[i].Name)
			if err != nil {
				return Report{}, err
			}
			if layers[i].Data, err = t.Float32(); err != nil {
				return Report{}, fmt.Errorf("sparsity: %s: %w", layers[i].Name, err)
			}
			continue
		}
		lr, err := pruneModelLayer(ctx, m, layers[i], opt, cal)
		if err != nil {
			return Report{}, err
		}
		reps = append(reps, lr)
	}
	rep := Report{Method: opt.Method, Scope: opt.Scope, Sparsity: opt.Sparsity}
	if !opt.Pattern.IsZero() {
		rep.Pattern, rep.Scope, rep.Sparsity = opt.Pattern.String(), "", 0
	}
	if global {
		outs, r, err := Prune(ctx, layers, opt, cal)
		if err != nil {
			return Report{}, err
		}
		for i, l := range layers {
			t, err := m.Initializer(l.Name)
			if err != nil {
				return Report{}, err
			}
			orig, err := originalOf(t)
			if err != nil {
				return Report{}, err
			}
			if err := store(m, orig, outs[i]); err != nil {
				return Report{}, err
			}
		}
		reps = r.Layers
	}
	rep.Layers = append(reps, skipped...)
	// totals, and the independent N:M check on what is now in the model
	pruned, n24 := 0, 0
	for i := range rep.Layers {
		lr := &rep.Layers[i]
		if lr.Skipped != "" {
			rep.Skipped++
			continue
		}
		pruned++
		t, err := m.Initializer(lr.Name)
		if err != nil {
			return Report{}, err
		}
		data, ok := t.Float32View() // read only: no float32 copy beside the bytes
		if !ok {
			if data, err = t.Float32(); err != nil {
				return Report{}, err
			}
		}
		// count what the model now holds (a narrow dtype may round more
		// values to zero)
		lr.Zeros = CountZeros(data)
		lr.ZeroFraction = float64(lr.Zeros) / float64(len(data))
		if !opt.Pattern.IsZero() {
			c, err := VerifyNM(data, lr.Layout, t.Shape, opt.Pattern)
			if err != nil {
				return Report{}, fmt.Errorf("sparsity: %s: %w", lr.Name, err)
			}
			lr.NM = &c
			rep.NMViolations += c.Violations
		}
		lr.Sparse24 = sparse24(data, lr.Layout, t.Shape)
		if lr.Sparse24 {
			n24++
		}
		rep.Params += lr.Params
		rep.Pruned += lr.Pruned
		rep.Zeros += lr.Zeros
	}
	if pruned == 0 {
		if !opt.Pattern.IsZero() {
			return rep, fmt.Errorf("%w (M=%d)", ErrNoLayerFits, opt.Pattern.M)
		}
		return rep, fmt.Errorf("sparsity: no layer pruned")
	}
	if rep.Params > 0 {
		rep.ZeroFraction = float64(rep.Zeros) / float64(rep.Params)
	}
	rep.TensorRT = newTensorRTHint(n24)
	desc := fmt.Sprintf("%s %s", rep.Method, rep.Pattern)
	if opt.Pattern.IsZero() {
		desc = fmt.Sprintf("%s %v %s", rep.Method, opt.Sparsity, opt.Scope)
	}
	m.SetMetadata(MetaSparsity, fmt.Sprintf("%s, %d of %d weights zero", desc, rep.Zeros, rep.Params))
	return rep, nil
}

// pruneModelLayer prunes one weight of m (PruneModel, per layer) and
// stores it. A float32 weight that the method prunes in place (all but
// unstructured magnitude) is pruned in bytes of its own
// (Model.OwnedInitializer), which become the new initializer: the step
// holds one copy of the weight and a chunk of rows. Otherwise the weight
// is converted to float32 and back, and the tensor's bytes are not kept
// while the layer is pruned.
func pruneModelLayer(ctx context.Context, m *onnxio.Model, l Layer, opt Options, cal calib.Stats) (LayerReport, error) {
	dt, _, err := m.InitializerInfo(l.Name)
	if err != nil {
		return LayerReport{}, err
	}
	own := dt == onnxio.Float && opt.inPlace()
	get := m.Initializer
	if own {
		get = m.OwnedInitializer
	}
	t, err := get(l.Name)
	if err != nil {
		return LayerReport{}, err
	}
	orig, err := originalOf(t)
	if err != nil {
		return LayerReport{}, err
	}
	var raw []byte     // the bytes view is over
	var view []float32 // the values, in place
	if v, ok := t.Float32View(); ok && own {
		view, raw = v, t.Bytes()
		l.Data = v
	} else if l.Data, err = t.Float32(); err != nil {
		return LayerReport{}, fmt.Errorf("sparsity: %s: %w", l.Name, err)
	}
	t = nil
	out, lr, err := pruneLayer(ctx, l, opt, cal, true, 0) // l.Data is not used after
	if err != nil || out == nil {
		return lr, err
	}
	if len(view) > 0 && &out[0] == &view[0] {
		nt, err := onnxio.NewTensor(orig.name, orig.dtype, orig.shape, raw)
		if err != nil {
			return lr, err
		}
		return lr, m.SetInitializer(nt)
	}
	return lr, store(m, orig, out)
}

// original is what store needs of a weight's tensor: its name, dtype and
// shape, and its values only when they are float64 (unchanged weights
// keep their full precision).
type original struct {
	name  string
	dtype onnxio.DType
	shape []int64
	f64   []float64
}

// originalOf returns what store needs of t.
func originalOf(t *onnxio.Tensor) (original, error) {
	o := original{name: t.Name, dtype: t.DType, shape: t.Shape}
	if t.DType == onnxio.Double {
		var err error
		if o.f64, err = t.Float64(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// store writes pruned values back in the tensor's dtype. For float64
// tensors kept weights of a mask-only method keep their exact value.
func store(m *onnxio.Model, orig original, out []float32) error {
	var nt *onnxio.Tensor
	var err error
	if orig.dtype == onnxio.Double {
		v := make([]float64, len(out))
		for i, x := range out {
			switch {
			case x == 0:
			case float32(orig.f64[i]) == x:
				v[i] = orig.f64[i] // unchanged weight: keep full precision
			default:
				v[i] = float64(x)
			}
		}
		nt, err = onnxio.FromFloat64(orig.name, orig.dtype, orig.shape, v)
		if err != nil {
			return err
		}
	} else if nt, err = onnxio.FromFloat32(orig.name, orig.dtype, orig.shape, out); err != nil {
		return err
	}
	return m.SetInitializer(nt)
}
