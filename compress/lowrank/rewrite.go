package lowrank

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/internal/safe"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Options configure Apply.
type Options struct {
	// Scheme chooses which layers are factorized and how (default
	// SchemeSVD): SchemeSVD rewrites MatMul and Gemm, SchemeChannel and
	// SchemeSpatial rewrite Conv, SchemeAuto all three.
	Scheme Scheme
	// Rule chooses the ranks (required).
	Rule Rule
	// Include, when not nil, restricts the layers to those whose node or
	// weight name it matches; it must match at least one factorizable layer.
	// Included Convs are taken whatever their stride, kernel or position
	// (the default takes stride-1, non-1×1 Convs except the first, TRP's
	// rule), and a configuration the scheme cannot express is an error
	// instead of a skip.
	Include *regexp.Regexp
	// Exclude drops the layers whose node or weight name it matches.
	Exclude *regexp.Regexp
	// Calib, when not nil, makes the SVD data-aware: whitened by the
	// Cholesky factor of each layer input's XᵀX (SVD-LLM). The spatial
	// scheme cannot be whitened and is refused.
	Calib calib.Stats
	// Damp is the relative damping of XᵀX (see NewWhitener); 0 means
	// DefaultDamp, a negative value no damping (escalated only on failure).
	Damp float64
	// Method picks the SVD algorithm (see Method).
	Method Method
	// Randomized tunes the randomized SVD (its Seed makes it reproducible).
	Randomized RandomizedOptions
	// Force factorizes layers even when the chosen rank saves no
	// parameters (r ≥ mn/(m+n)); used to check exactness at full rank.
	Force bool
}

// LayerReport describes what Apply did to one layer.
type LayerReport struct {
	// Node and Weight are the consuming node's and the weight's names; Op
	// is the node's op type.
	Node   string  `json:"node"`
	Weight string  `json:"weight"`
	Op     string  `json:"op"`
	Shape  []int64 `json:"shape"`
	// Scheme is the scheme applied (svd, channel, spatial).
	Scheme string `json:"scheme"`
	// M, N are the factorized matrix's dimensions (rank r costs r·(M+N)).
	M int `json:"m"`
	N int `json:"n"`
	// Rank is the rank chosen; 0 when the layer was left alone.
	Rank int `json:"rank"`
	// Energy is the fraction of Σσ² kept at Rank (of the whitened
	// spectrum when Whitened); 1 for a layer left alone.
	Energy float64 `json:"energy"`
	// ParamsBefore and ParamsAfter count the weight's elements before and
	// the two factors' after (biases are unchanged and not counted).
	ParamsBefore int64 `json:"params_before"`
	ParamsAfter  int64 `json:"params_after"`
	// Factorized tells whether the layer was rewritten; Reason says why
	// not.
	Factorized bool   `json:"factorized"`
	Reason     string `json:"reason,omitempty"`
	Whitened   bool   `json:"whitened,omitempty"`
	// SVD is the algorithm used: exact or randomized.
	SVD string `json:"svd,omitempty"`
}

// Report is the result of Apply.
type Report struct {
	Scheme string        `json:"scheme"`
	Rule   string        `json:"rule"`
	Layers []LayerReport `json:"layers"`
	// Factorized counts the layers rewritten.
	Factorized int `json:"factorized"`
	// LayerParamsBefore/After sum ParamsBefore/After over the layers
	// considered.
	LayerParamsBefore int64 `json:"layer_params_before"`
	LayerParamsAfter  int64 `json:"layer_params_after"`
	// ModelParamsBefore/After count every parameter tensor of the model
	// (onnxio.Weights, as `onnxpost inspect` does).
	ModelParamsBefore int64 `json:"model_params_before"`
	ModelParamsAfter  int64 `json:"model_params_after"`
}

// WriteTable prints the per-layer table of the report.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "layer\top\tscheme\tm×n\trank\tenergy\tparams before\tparams after\tnote\t")
	for _, l := range r.Layers {
		rank, energy := "-", "-"
		if l.Factorized {
			rank = fmt.Sprint(l.Rank)
			energy = fmt.Sprintf("%.4f", l.Energy)
		}
		note := l.Reason
		if l.Factorized && l.Whitened {
			note = "whitened"
		}
		mn := "-"
		if l.M > 0 {
			mn = fmt.Sprintf("%d×%d", l.M, l.N)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t\n", l.Node, l.Op, l.Scheme, mn, rank, energy, l.ParamsBefore, l.ParamsAfter, note)
	}
	fmt.Fprintf(tw, "total (%d factorized)\t\t\t\t\t\t%d\t%d\t\t\n", r.Factorized, r.LayerParamsBefore, r.LayerParamsAfter)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "model parameters: %d → %d (%.1f%%)\n", r.ModelParamsBefore, r.ModelParamsAfter,
		100*float64(r.ModelParamsAfter)/float64(max(1, r.ModelParamsBefore)))
	return err
}

// layer is one candidate during Apply.
type layer struct {
	w      onnxio.Weight
	node   onnxio.Node
	scheme Scheme
	attrs  ConvAttrs // normalized, for Conv
	m, n   int
	mat    []float64 // canonical matrix (see prepare)
	xtx    []float64 // the input's XᵀX until decompose
	wh     *Whitener
	svd    *SVD
	alt    *layer // SchemeAuto on Conv: the spatial alternative
	rank   int
	rep    *LayerReport
}

// Apply factorizes the selected layers of model in place and returns the
// report. Layers the options select but cannot rewrite usefully (no saving,
// tied weights, a weight reached through other ops, a Conv the scheme cannot
// express unless named by Include) are left alone and reported with a
// reason. Errors: invalid options (ErrOption), an Include that matches no
// layer, an included Conv the scheme cannot express (ErrUnsupported), bad
// calibration (ErrCalibration), an impossible budget (ErrBudget). It stops
// with ctx's error, checked before each layer is read and before each SVD
// starts (an SVD itself runs to its end), when ctx is cancelled; model is
// then unchanged. A panic in a decomposition worker comes back as a
// *safe.PanicError.
func Apply(ctx context.Context, model *onnxio.Model, opt Options) (*Report, error) {
	opt, damp, err := opt.normalize()
	if err != nil {
		return nil, err
	}
	weights, err := model.Weights()
	if err != nil {
		return nil, err
	}
	rep := &Report{Scheme: opt.Scheme.String(), Rule: opt.Rule.String(), ModelParamsBefore: modelParams(weights)}
	layers, reps, err := selectLayers(model, opt)
	if err != nil {
		return nil, err
	}

	// Read every layer's matrix and calibration (sequentially: the model and
	// the calibration need not be safe for concurrent use), then whiten and
	// decompose them in parallel.
	var jobs []*layer
	for _, l := range layers {
		jobs = append(jobs, l)
		if l.alt != nil {
			jobs = append(jobs, l.alt)
		}
	}
	for _, l := range jobs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := l.prepare(model, opt); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.w.Node, err)
		}
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, l := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if errs[i] = ctx.Err(); errs[i] != nil {
				return
			}
			errs[i] = safe.Call("decomposing "+l.w.Node, func() error { return l.decompose(opt, damp) })
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", jobs[i].w.Node, err)
		}
	}
	if err := chooseRanks(layers, opt.Rule); err != nil {
		return nil, err
	}
	for _, l := range layers {
		if err := l.rewrite(model, opt.Force); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.w.Node, err)
		}
	}
	for _, l := range reps {
		rep.Layers = append(rep.Layers, *l)
		rep.LayerParamsBefore += l.ParamsBefore
		rep.LayerParamsAfter += l.ParamsAfter
		if l.Factorized {
			rep.Factorized++
		}
	}
	after, err := model.Weights()
	if err != nil {
		return nil, err
	}
	rep.ModelParamsAfter = modelParams(after)
	if rep.Factorized > 0 {
		recordProvenance(model, rep)
	}
	return rep, nil
}

// normalize validates the options and fills defaults; it returns the
// absolute damping factor to use.
func (opt Options) normalize() (Options, float64, error) {
	if opt.Scheme == 0 {
		opt.Scheme = SchemeSVD
	}
	if _, err := ParseScheme(opt.Scheme.String()); err != nil {
		return opt, 0, err
	}
	if err := opt.Rule.Validate(); err != nil {
		return opt, 0, err
	}
	if opt.Calib != nil && opt.Scheme == SchemeSpatial {
		return opt, 0, fmt.Errorf("%w: the spatial scheme cannot be whitened (its matrix is not the im2col view); set the scheme parameter to channel", ErrOption)
	}
	damp := opt.Damp
	if damp == 0 {
		damp = DefaultDamp
	} else if damp < 0 {
		damp = 0
	}
	return opt, damp, nil
}

// Candidates returns the names of the weights Apply would decompose with
// these options (before rank selection: some may still be left alone for
// saving nothing), e.g. to capture their calibration statistics first. It
// gives the errors Apply gives for the selection. opt.Calib is not used,
// but whether it is nil matters (the auto scheme considers spatial
// factorizations only without calibration). Like Apply it names unnamed
// nodes of model.
func Candidates(model *onnxio.Model, opt Options) ([]string, error) {
	opt, _, err := opt.normalize()
	if err != nil {
		return nil, err
	}
	layers, _, err := selectLayers(model, opt)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(layers))
	for i, l := range layers {
		names[i] = l.w.Name
	}
	return names, nil
}

// selectLayers finds the layers the options select, in weight order, and
// the reports of all considered layers (those left alone carry a reason).
func selectLayers(model *onnxio.Model, opt Options) ([]*layer, []*LayerReport, error) {
	model.EnsureNodeNames()
	weights, err := model.Weights()
	if err != nil {
		return nil, nil, err
	}
	nodes := map[string]onnxio.Node{}
	for _, n := range model.Nodes() {
		nodes[n.Name] = n
	}
	firstConv := -1
	for _, w := range weights {
		if w.Role == onnxio.RoleConvW && (firstConv < 0 || w.NodeIndex < firstConv) {
			firstConv = w.NodeIndex
		}
	}

	var layers []*layer
	var reps []*LayerReport // in weight order
	included := 0
	for _, w := range weights {
		var dense bool
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB:
			dense = true
		case onnxio.RoleConvW:
		default:
			continue
		}
		named := opt.Include != nil && (opt.Include.MatchString(w.Node) || opt.Include.MatchString(w.Name))
		if opt.Include != nil && !named {
			continue
		}
		scheme := opt.Scheme
		switch {
		case dense && (scheme == SchemeChannel || scheme == SchemeSpatial):
			continue
		case dense:
			scheme = SchemeSVD
		case scheme == SchemeSVD:
			continue
		}
		if named {
			included++
		}
		if opt.Exclude != nil && (opt.Exclude.MatchString(w.Node) || opt.Exclude.MatchString(w.Name)) {
			continue
		}
		node := nodes[w.Node]
		lr := &LayerReport{Node: w.Node, Weight: w.Name, Op: w.Op, Shape: slices.Clone(w.Shape), Scheme: scheme.String(), Energy: 1, ParamsBefore: w.Params()}
		lr.ParamsAfter = lr.ParamsBefore
		l := &layer{w: w, node: node, scheme: scheme, rep: lr}
		reps = append(reps, lr)
		skip := func(format string, args ...any) {
			lr.Reason = fmt.Sprintf(format, args...)
		}
		switch {
		case w.Quantized:
			skip("%s; lowrank factorizes float weights", w.Special())
			continue
		case w.Consumers != 1:
			skip("weight shared by %d nodes", w.Consumers)
			continue
		case len(w.Via) > 0:
			skip("weight reaches %s through %s", w.Op, strings.Join(w.Via, ","))
			continue
		case !w.DType.IsFloat():
			skip("weight dtype %v", w.DType)
			continue
		case w.Params() == 0:
			skip("empty weight")
			continue
		}
		if dense {
			if len(w.Shape) != 2 {
				skip("weight of rank %d", len(w.Shape))
				continue
			}
			if w.Role == onnxio.RoleGemmB && w.TransB {
				l.m, l.n = int(w.Shape[0]), int(w.Shape[1])
			} else {
				l.m, l.n = int(w.Shape[1]), int(w.Shape[0])
			}
		} else {
			err := l.convSetup(opt, named, w.NodeIndex == firstConv)
			if errors.Is(err, errSkip) {
				skip("%s", strings.TrimPrefix(err.Error(), errSkip.Error()+": "))
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("layer %s: %w", w.Node, err)
			}
		}
		layers = append(layers, l)
	}
	if opt.Include != nil && included == 0 {
		return nil, nil, fmt.Errorf("%w: the include parameter %q matches no layer that scheme %v factorizes (%s; node or weight names)", ErrOption, opt.Include.String(), opt.Scheme, schemeOps(opt.Scheme))
	}
	return layers, reps, nil
}

var errSkip = errors.New("skip")

func schemeOps(s Scheme) string {
	switch s {
	case SchemeSVD:
		return "MatMul, Gemm"
	case SchemeChannel, SchemeSpatial:
		return "Conv"
	}
	return "MatMul, Gemm, Conv"
}

func modelParams(ws []onnxio.Weight) int64 {
	var n int64
	for _, w := range ws {
		n += w.Params()
	}
	return n
}

// convSetup checks a Conv layer's attributes for its scheme. Layers the
// default selection leaves out return errSkip; configurations the scheme
// cannot express return errSkip, or ErrUnsupported when named.
func (l *layer) convSetup(opt Options, named, first bool) error {
	w := l.w
	if len(w.Shape) < 3 {
		return fmt.Errorf("%w: conv weight of rank %d", errSkip, len(w.Shape))
	}
	kernel := make([]int, len(w.Shape)-2)
	for i := range kernel {
		kernel[i] = int(w.Shape[i+2])
	}
	n := l.node
	raw := ConvAttrs{
		Kernel: toInts(n.Ints("kernel_shape")), Strides: toInts(n.Ints("strides")),
		Pads: toInts(n.Ints("pads")), Dilations: toInts(n.Ints("dilations")),
		Group: int(n.Int("group", 1)), AutoPad: n.Str("auto_pad", "NOTSET"),
	}
	refuse := func(err error) error {
		if named {
			return err
		}
		return fmt.Errorf("%w: %s", errSkip, strings.TrimPrefix(err.Error(), ErrUnsupported.Error()+": "))
	}
	a, err := raw.Normalize(kernel)
	if err != nil {
		return refuse(err)
	}
	l.attrs = a
	if !named {
		switch {
		case first:
			return fmt.Errorf("%w: first conv (name it in the include parameter to factorize it)", errSkip)
		case a.IsPointwise():
			return fmt.Errorf("%w: 1×1 conv", errSkip)
		case !a.IsStride1():
			return fmt.Errorf("%w: stride %v (TRP's rule: stride-1 convs only; name it in the include parameter)", errSkip, a.Strides)
		}
	}
	o, c := int(w.Shape[0]), int(w.Shape[1])
	spatial := func() (*layer, error) {
		if _, _, err := SplitSpatial(a); err != nil {
			return nil, err
		}
		return &layer{w: w, node: n, scheme: SchemeSpatial, attrs: a, m: c * kernel[0], n: o * kernel[1], rep: l.rep}, nil
	}
	switch l.scheme {
	case SchemeChannel, SchemeAuto:
		if _, _, err := SplitChannel(a); err != nil {
			return refuse(err)
		}
		l.m, l.n = o, int(w.Params())/o
		if l.scheme == SchemeAuto {
			l.scheme = SchemeChannel
			l.rep.Scheme = "channel"
			if opt.Calib == nil {
				l.alt, _ = spatial() // nil when not expressible: channel only
			}
		}
	case SchemeSpatial:
		sl, err := spatial()
		if err != nil {
			return refuse(err)
		}
		l.m, l.n = sl.m, sl.n
	}
	return nil
}

func toInts(v []int64) []int {
	if v == nil {
		return nil
	}
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// prepare reads the weight into the canonical matrix and, when calibrated,
// the input's XᵀX.
//
// Canonical matrices: MatMul and Gemm(transB=0) B [K,N] → Bᵀ [N,K]; Gemm
// (transB=1) B [N,K] as is; channel Conv W [O, C·∏k]; spatial Conv
// SpatialMatrix(W) [C·kh, O·kw]. Rows are outputs and columns the reduction
// axis except for spatial.
func (l *layer) prepare(model *onnxio.Model, opt Options) error {
	t, err := model.ConstantOrInitializer(l.w.Name)
	if err != nil {
		return err
	}
	v, err := t.Float64()
	if err != nil {
		return err
	}
	switch {
	case l.scheme == SchemeSpatial:
		s := l.w.Shape
		l.mat = SpatialMatrix(v, int(s[0]), int(s[1]), int(s[2]), int(s[3]))
	case l.w.Role == onnxio.RoleGemmB && l.w.TransB, l.w.Role == onnxio.RoleConvW:
		l.mat = v
	default:
		l.mat = Transpose(v, l.n, l.m)
	}
	if opt.Calib != nil && l.scheme != SchemeSpatial {
		xtx, d, _, err := opt.Calib.InputGram(l.w.Name)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCalibration, err)
		}
		if d != l.n || len(xtx) != d*d {
			return fmt.Errorf("%w: XᵀX is %d×%d (%d values), the weight's reduction size is %d", ErrCalibration, d, d, len(xtx), l.n)
		}
		l.xtx = xtx
	}
	return nil
}

// decompose whitens (when calibrated) and computes the layer's SVD.
func (l *layer) decompose(opt Options, damp float64) error {
	var err error
	if l.xtx != nil {
		if l.wh, err = NewWhitener(l.xtx, l.n, damp); err != nil {
			return err
		}
		l.xtx = nil
		l.rep.Whitened = true
	}
	l.svd, err = Decompose(l.mat, l.m, l.n, l.wh, opt.Rule.Prior(l.m, l.n), opt.Method, opt.Randomized)
	return err
}

// chooseRanks sets l.rank for every layer, and for SchemeAuto convs picks
// the scheme: the one with fewer parameters at the rule's rank (energy,
// rank, rank ratio; ties go to spatial, which kept more accuracy at equal
// parameters on the zoo's CNN, as in TRP's ResNet results), or with more
// energy at the layer's proportional share P·mn of parameters (params
// ratio).
func chooseRanks(layers []*layer, rule Rule) error {
	pick := func(l *layer) {
		if l.alt == nil {
			return
		}
		a := l.alt
		useAlt := false
		if rule.Kind == ByParamsRatio {
			rl := max(1, int(rule.Value*float64(l.m*l.n))/(l.m+l.n))
			ra := max(1, int(rule.Value*float64(a.m*a.n))/(a.m+a.n))
			useAlt = a.svd.Energy(min(ra, a.svd.K())) > l.svd.Energy(min(rl, l.svd.K()))
		} else {
			rl, ra := rule.Select(l.svd), rule.Select(a.svd)
			useAlt = ra*(a.m+a.n) <= rl*(l.m+l.n)
		}
		if useAlt {
			l.scheme, l.m, l.n, l.mat, l.svd = a.scheme, a.m, a.n, a.mat, a.svd
			l.rep.Scheme = "spatial"
		}
		l.alt = nil
	}
	for _, l := range layers {
		pick(l)
		l.rep.M, l.rep.N = l.m, l.n
		l.rep.SVD = "exact"
		if l.svd.K() < min(l.m, l.n) {
			l.rep.SVD = "randomized"
		}
	}
	if rule.Kind != ByParamsRatio {
		for _, l := range layers {
			l.rank = rule.Select(l.svd)
		}
		return nil
	}
	bl := make([]BudgetLayer, len(layers))
	for i, l := range layers {
		bl[i] = BudgetLayer{M: l.m, N: l.n, Sigma: l.svd.S, Total: l.svd.Total}
	}
	ranks, err := Budget(bl, rule.Value)
	if err != nil {
		return err
	}
	for i, l := range layers {
		l.rank = ranks[i]
	}
	return nil
}

// rewrite replaces the layer's node by its two factors (or records why
// not).
func (l *layer) rewrite(model *onnxio.Model, force bool) error {
	r := l.rank
	if r == Dense || (!force && !Saves(l.m, l.n, r)) {
		be := BreakEven(l.m, l.n)
		if r == Dense {
			l.rep.Reason = "budget keeps it dense"
		} else {
			l.rep.Reason = fmt.Sprintf("rank %d saves nothing (break-even %d)", r, be)
		}
		return nil
	}
	a, b := Factorize(l.svd, r, l.wh) // a [m,r], b [r,n]
	w, node := l.w, l.node
	dt := w.DType
	nameA := model.UniqueName(w.Name + "_lowrank_a")
	mid := model.UniqueName(node.Outputs[0] + "_lowrank")
	n1 := onnxio.Node{Name: model.UniqueName(node.Name + "_lowrank_a"), OpType: node.OpType, Domain: node.Domain}
	n2 := onnxio.Node{Name: model.UniqueName(node.Name + "_lowrank_b"), OpType: node.OpType, Domain: node.Domain, Outputs: slices.Clone(node.Outputs)}
	var t1, t2 *onnxio.Tensor
	var err error
	var nameB string
	newTensors := func(v1 []float64, s1 []int64, v2 []float64, s2 []int64) {
		if t1, err = onnxio.FromFloat64(nameA, dt, s1, v1); err != nil {
			return
		}
		if err = model.SetInitializer(t1); err != nil {
			return
		}
		nameB = model.UniqueName(w.Name + "_lowrank_b")
		if t2, err = onnxio.FromFloat64(nameB, dt, s2, v2); err != nil {
			return
		}
		err = model.SetInitializer(t2)
	}
	R, M, N := int64(r), int64(l.m), int64(l.n)
	switch {
	case w.Op == "MatMul":
		// X·B, B [K=n, N=m] ≈ (bᵀ [n,r]) · (aᵀ [r,m]).
		newTensors(Transpose(b, r, l.n), []int64{N, R}, Transpose(a, l.m, r), []int64{R, M})
		n1.Inputs = []string{node.Inputs[0], nameA}
		n2.Inputs = []string{mid, nameB}
	case w.Op == "Gemm":
		// alpha·op(A)·op(B) + beta·C = Gemm2(Gemm1(A; alpha, transA), C; beta).
		if w.TransB {
			newTensors(b, []int64{R, N}, a, []int64{M, R})
		} else {
			newTensors(Transpose(b, r, l.n), []int64{N, R}, Transpose(a, l.m, r), []int64{R, M})
		}
		tb := node.Int("transB", 0)
		n1.Inputs = []string{node.Inputs[0], nameA}
		n1.Attrs = []onnxio.Attr{onnxio.AttrFloatVal("alpha", node.Float("alpha", 1)), onnxio.AttrInt("transA", node.Int("transA", 0)), onnxio.AttrInt("transB", tb)}
		n2.Inputs = []string{mid, nameB}
		if c := node.Input(2); c != "" {
			n2.Inputs = append(n2.Inputs, c)
		}
		n2.Attrs = []onnxio.Attr{onnxio.AttrFloatVal("beta", node.Float("beta", 1)), onnxio.AttrInt("transB", tb)}
	case l.scheme == SchemeChannel:
		// first: Conv(x; b as [r, C, k…]) with the original geometry;
		// second: 1×…×1 Conv(·; a as [O, r, 1…], bias).
		fa, sa, _ := SplitChannel(l.attrs)
		s1 := append([]int64{R}, w.Shape[1:]...)
		s2 := []int64{M, R}
		for range l.attrs.Kernel {
			s2 = append(s2, 1)
		}
		newTensors(b, s1, a, s2)
		n1.Inputs = []string{node.Inputs[0], nameA}
		n1.Attrs = convAttrs(fa)
		n2.Inputs = []string{mid, nameB}
		n2.Attrs = convAttrs(sa)
	case l.scheme == SchemeSpatial:
		s := w.Shape
		o, c, kh, kw := int(s[0]), int(s[1]), int(s[2]), int(s[3])
		vert, horiz := SpatialWeights(a, b, r, o, c, kh, kw)
		va, ha, _ := SplitSpatial(l.attrs)
		newTensors(vert, []int64{R, s[1], s[2], 1}, horiz, []int64{s[0], R, 1, s[3]})
		n1.Inputs = []string{node.Inputs[0], nameA}
		n1.Attrs = convAttrs(va)
		n2.Inputs = []string{mid, nameB}
		n2.Attrs = convAttrs(ha)
	default:
		return fmt.Errorf("%w: %s with scheme %v", ErrUnsupported, w.Op, l.scheme)
	}
	if err != nil {
		return err
	}
	if w.Op == "Conv" {
		if bias := node.Input(2); bias != "" {
			n2.Inputs = append(n2.Inputs, bias)
		}
	}
	n1.Outputs = []string{mid}
	if err := model.ReplaceNode(node.Name, []onnxio.Node{n1, n2}); err != nil {
		return err
	}
	if err := model.RemoveWeight(w.Name); err != nil {
		return err
	}
	l.rep.Rank = r
	l.rep.Energy = l.svd.Energy(r)
	l.rep.ParamsAfter = t1.NumElements() + t2.NumElements()
	l.rep.Factorized = true
	l.rep.Reason = ""
	return nil
}

func convAttrs(a ConvAttrs) []onnxio.Attr {
	i64 := func(v []int) []int64 {
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out
	}
	return []onnxio.Attr{
		onnxio.AttrIntList("kernel_shape", i64(a.Kernel)...),
		onnxio.AttrIntList("strides", i64(a.Strides)...),
		onnxio.AttrIntList("pads", i64(a.Pads)...),
		onnxio.AttrIntList("dilations", i64(a.Dilations)...),
		onnxio.AttrInt("group", int64(a.Group)),
	}
}
