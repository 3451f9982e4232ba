// Package fisher computes the diagonal Fisher information of an ONNX
// classifier with ONNX Runtime, through gradient graphs built by package
// autodiff, and reads and writes Fisher files.
//
// # Definition
//
// F = (1/N) Σ_x Σ_y p(y|x) (∂ log p(y|x)/∂θ)², elementwise, over the N
// examples x of a dataset and the classes y, with the model's own
// probabilities p = softmax(logits) (docs/ARCHITECTURE.md §5.2; Matena & Raffel's
// "expectation over the model's predictive distribution"). With
// Options.Samples = K > 0 the sum over y is replaced by the mean over K
// labels drawn from p(·|x) (seeded), for large output spaces.
//
// # How it runs
//
// Per-example gradients must be squared before they are summed, so the
// examples of a batch cannot share an ordinary backward pass. Compute builds
// one ONNX graph (ModeRows) that
//
//  1. repeats every example of a batch of B once per class (K = C rows per
//     example; K = Samples rows when sampling), giving R = B·K rows;
//  2. runs the forward pass on the R rows and forms, per row (b, k), the
//     seed e_k − p(·|x_b): the gradient of log p(k|x_b) with respect to the
//     logits, with coefficient p(k|x_b) (or 1/K);
//  3. runs ONE backward pass with per-row parameter gradients
//     (autodiff.Options.PerExample: MatMul/Gemm weight gradients as
//     per-row outer or batched products, Conv weight gradients as a
//     per-row product of the output gradient with the input's patches,
//     bias and norm gradients reduced over every axis but the row axis);
//  4. squares the per-row gradients and contracts them with the row
//     coefficients (a [1,R]×[R,n] MatMul), giving Σ_b Σ_k c_bk g_bk² for
//     every parameter.
//
// One ONNX Runtime session runs it once per batch (Options.Batch examples,
// default 16); Go accumulates the sums in float64 and divides by N. Graphs
// whose values do not keep the examples on axis 0, or that need a
// per-example rule autodiff lacks, fall back to ModeCopies — one example
// per run, with one backward pass per class written side by side in the
// same graph (exact, but the graph grows with the number of classes, and
// ONNX Runtime's session creation with it) — when the graph is small, and
// to ModeLoop — one forward run, then one run of a single-backward graph
// per class, the seed fed as an input — otherwise. Result.Mode and
// Result.Fallback say which ran and why. docs/results/fisher.md has
// measurements.
//
// # Files
//
// A Fisher file is an ONNX model with no nodes whose float32 initializers
// are named and shaped like the parameters of the model they describe
// (Result.Model and FromData make one, Read reads one); Fisher merging
// (merge.Inputs.Fishers) reads them.
//
// # Dependencies
//
// Unlike the pure algorithm packages, fisher runs ONNX Runtime sessions: it
// imports evalharness (sessions, datasets) and autodiff (graphs).
package fisher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strconv"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrModel reports a model Compute cannot handle (no float parameters, an
// output that is not [batch, classes] logits, ...).
var ErrModel = errors.New("fisher: unsupported model")

// Modes of a Fisher graph.
const (
	// ModeRows replicates every example once per class (or drawn label)
	// along the batch axis and computes per-row gradients in one backward
	// pass (autodiff's PerExample), for Batch examples per run.
	ModeRows = "rows"
	// ModeCopies runs one example per run with one backward pass per class
	// in the same graph. It is the fallback for small graphs whose ops have
	// no per-example rule or that move the batch axis.
	ModeCopies = "copies"
	// ModeLoop runs one backward pass per run: one example, one class (the
	// seed e_y − p is an input), after a forward run for p. It is the
	// fallback for large graphs, where ModeCopies' graph (and ONNX
	// Runtime's session creation) would grow with the number of classes.
	ModeLoop = "loop"
)

// copiesLimit bounds forward nodes × backward copies for ModeCopies as a
// fallback; larger graphs fall back to ModeLoop.
const copiesLimit = 4000

// Options configure Compute.
type Options struct {
	// Output names the logits output (default: the model's first
	// floating-point output).
	// It must have shape [batch, classes], or [batch, sequence,
	// vocabulary] for a language model (ModeTokens); p(y|x) =
	// softmax(logits).
	Output string
	// Params lists the tensors to compute the Fisher of (default: every
	// float initializer of the model except scalars, see DefaultParams).
	Params []string
	// Samples is the number of labels drawn from p(y|x) per example; 0
	// (the default) sums over every class exactly.
	Samples int
	// Seed seeds the label sampling.
	Seed int64
	// MaxExamples bounds the number of examples used (0: all); in
	// ModeTokens it bounds the windows (each gives its counted positions).
	MaxExamples int
	// Batch is the number of examples per run in ModeRows (default 16).
	Batch int
	// Mode forces ModeRows, ModeCopies or ModeLoop; empty chooses ModeRows
	// when the graph allows it, else ModeCopies for small graphs and
	// ModeLoop for large ones. Token logits always take ModeTokens.
	Mode string
	// Session configures the ONNX Runtime sessions.
	Session evalharness.SessionOptions
	// Progress, when set, is called after every run with the number of
	// examples done and the total.
	Progress func(done, total int)
}

// Result is a computed diagonal Fisher.
type Result struct {
	// Fisher maps each parameter name to its diagonal Fisher, shaped like
	// the parameter (row-major).
	Fisher map[string][]float32
	// Shapes maps each parameter name to its shape.
	Shapes map[string][]int64
	// Params lists the parameter names in model order.
	Params []string
	// Examples is the number of examples averaged over (ModeTokens: the
	// counted token positions).
	Examples int
	// Classes is the number of classes of the logits.
	Classes int
	// Mode is the graph mode used (ModeRows, ModeCopies or ModeLoop), and
	// Fallback why ModeRows was not used ("" when it was).
	Mode, Fallback string
	// Branch is, for an If-merged decoder (onnxio.Model.IfMerged), the If
	// attribute of the branch the data takes, on which the Fisher was
	// computed (onnxio.Model.DataBranch); "" for a plain model.
	Branch string
}

// Compute returns the diagonal Fisher of m over the dataset (see the
// package documentation). The map is keyed by parameter name; each slice is
// shaped like the parameter (row-major). It is ComputeResult(...).Fisher.
func Compute(ctx context.Context, m *onnxio.Model, ds *evalharness.Dataset, opt Options) (map[string][]float32, error) {
	r, err := ComputeResult(ctx, m, ds, opt)
	if err != nil {
		return nil, err
	}
	return r.Fisher, nil
}

// ComputeResult is Compute returning the shapes, counts and mode too. On
// an If-merged decoder (onnxio.Model.IfMerged) it computes the Fisher of
// the branch the data takes (onnxio.Model.DataBranch: the no-cache branch
// for data without past key/values), whose parameters are the decoder's
// shared weights, and records the branch in Result.Branch. It
// stops with ctx's error, checked before each batch (each example in
// ModeLoop), when ctx is cancelled.
func ComputeResult(ctx context.Context, m *onnxio.Model, ds *evalharness.Dataset, opt Options) (*Result, error) {
	if ds == nil || ds.N == 0 {
		return nil, fmt.Errorf("fisher: empty dataset")
	}
	if opt.Samples < 0 || opt.Batch < 0 || opt.MaxExamples < 0 {
		return nil, fmt.Errorf("fisher: Samples, Batch and MaxExamples must be >= 0")
	}
	if opt.Batch == 0 {
		opt.Batch = 16
	}
	n := int(ds.N)
	if opt.MaxExamples > 0 && opt.MaxExamples < n {
		n = opt.MaxExamples
	}
	branch := ""
	if _, ok := m.IfMerged(); ok {
		// the branch the data takes: its parameters are the merged
		// model's shared weights under their own names
		b, err := m.DataBranch(func(name string) bool { _, ok := ds.Inputs[name]; return ok })
		if err != nil {
			return nil, fmt.Errorf("fisher: If-merged decoder: %w", err)
		}
		m, branch = b.Model, b.Attr
	}
	r, err := computeResult(ctx, m, ds, n, opt)
	if r != nil {
		r.Branch = branch
	}
	return r, err
}

func computeResult(ctx context.Context, m *onnxio.Model, ds *evalharness.Dataset, n int, opt Options) (*Result, error) {
	g, err := Build(m, ds, opt)
	if err != nil {
		return nil, err
	}
	if g.Mode == ModeTokens {
		return resultTokens(ctx, g, m, ds, n, opt)
	}
	sess, err := newGraphSession(g, opt)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	outIdx := map[string]int{}
	for i, o := range sess.Outputs() {
		outIdx[o.Name] = i
	}
	acc := make([][]float64, len(g.Params))
	for i, p := range g.Params {
		ne, _ := onnxio.NumElements(g.Shapes[p])
		acc[i] = make([]float64, ne)
	}
	rng := rand.New(rand.NewSource(opt.Seed))
	var fwd evalharness.SessionRunner
	if opt.Samples > 0 {
		if fwd, err = forwardSession(m, g.Output, opt.Session); err != nil {
			return nil, err
		}
		defer fwd.Close()
	}
	if g.Mode == ModeLoop && fwd == nil {
		if fwd, err = forwardSession(m, g.Output, opt.Session); err != nil {
			return nil, err
		}
		defer fwd.Close()
	}
	step := 1
	if g.Mode == ModeRows {
		step = opt.Batch
	}
	for i := 0; i < n && g.Mode == ModeLoop; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := loopExample(g, sess, fwd, ds.Batch(int64(i), int64(i)+1), outIdx, acc, opt.Samples, rng); err != nil {
			return nil, fmt.Errorf("fisher: example %d: %w", i, err)
		}
		if opt.Progress != nil {
			opt.Progress(i+1, n)
		}
	}
	for i := 0; i < n && g.Mode != ModeLoop; i += step {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j := min(i+step, n)
		feed := map[string]*evalharness.Array{}
		for k, v := range ds.Batch(int64(i), int64(j)) {
			if g.inputs[k] {
				feed[k] = v
			}
		}
		if opt.Samples > 0 {
			oh, err := drawLabels(fwd, feed, g.Classes, opt.Samples, g.dtype, rng)
			if err != nil {
				return nil, err
			}
			feed[LabelsInput] = oh
		}
		outs, err := sess.Run(feed)
		if err != nil {
			return nil, fmt.Errorf("fisher: examples %d..%d: %w", i, j-1, err)
		}
		for q := range g.Params {
			v, err := outs[outIdx[g.Outputs[q]]].Float64()
			if err != nil {
				return nil, err
			}
			if len(v) != len(acc[q]) {
				return nil, fmt.Errorf("fisher: %s: Fisher term has %d elements, want %d", g.Params[q], len(v), len(acc[q]))
			}
			for k, x := range v {
				acc[q][k] += x
			}
		}
		if opt.Progress != nil {
			opt.Progress(j, n)
		}
	}
	return finishResult(g, acc, n)
}

// finishResult divides the Fisher sums acc by the number of examples n.
func finishResult(g *Graph, acc [][]float64, n int) (*Result, error) {
	res := &Result{Fisher: map[string][]float32{}, Shapes: g.Shapes, Params: g.Params, Examples: n, Classes: g.Classes, Mode: g.Mode, Fallback: g.Fallback}
	for q, p := range g.Params {
		f := make([]float32, len(acc[q]))
		for k, x := range acc[q] {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("fisher: non-finite Fisher for %s", p)
			}
			f[k] = float32(x / float64(n))
		}
		res.Fisher[p] = f
	}
	return res, nil
}

// LabelsInput is the input of a sampled-mode Fisher graph holding the
// one-hot rows of the drawn labels: [examples·Samples, classes] in
// ModeRows, [Samples, classes] in ModeCopies.
const LabelsInput = "fisher_labels_onehot"

// Graph is a Fisher graph: examples in, Σ_x Σ_y c_y (∂ log p(y|x)/∂θ)² out.
type Graph struct {
	// Model is the graph.
	Model *onnxio.Model
	// Output is the logits output of the original model.
	Output string
	// Params are the parameters, Outputs the graph outputs holding their
	// Fisher sums over the run's examples (flattened), in the same order.
	Params, Outputs []string
	// Shapes maps each parameter to its shape.
	Shapes map[string][]int64
	// Classes is the number of classes.
	Classes int
	// Samples is the number of drawn labels (0: exact).
	Samples int
	// Mode is ModeRows, ModeCopies or ModeLoop; Fallback says why
	// ModeRows was not used.
	Mode, Fallback string
	inputs         map[string]bool
	dtype          onnxio.DType // of the logits
}

// DefaultParams returns the tensors whose Fisher is computed when
// Options.Params is nil: every floating-point initializer of m's main graph
// but the scalar (0-d) ones. A 0-d initializer is a constant of an
// expression (an exponent, an epsilon, an attention scale, a mask's fill
// value): what an exporter's Constant nodes become once folded into
// initializers (onnxio.Model.FoldConstantWeights; merge, sparsify and
// quantize fold them), which the Fisher of the model as exported does not
// hold either. Its Fisher means nothing and may not even be finite (the
// gradient of Pow's exponent is y·ln(base), NaN for a negative base).
func DefaultParams(m *onnxio.Model) ([]string, error) {
	var params []string
	for _, name := range m.Initializers() {
		dt, sh, err := m.InitializerInfo(name)
		if err != nil {
			return nil, err
		}
		if len(sh) > 0 && (dt == onnxio.Float || dt == onnxio.Double || dt == onnxio.Float16 || dt == onnxio.BFloat16) {
			params = append(params, name)
		}
	}
	return params, nil
}

// Build returns the Fisher graph of m. The first two examples of ds (the
// first one twice when there is only one) probe the graph's shapes.
func Build(m *onnxio.Model, ds *evalharness.Dataset, opt Options) (*Graph, error) {
	outs := m.Outputs()
	if len(outs) == 0 {
		return nil, fmt.Errorf("%w: the model has no outputs", ErrModel)
	}
	output := opt.Output
	if output == "" {
		// the first floating-point output: never an integer copy of an input
		for _, o := range outs {
			if o.DType == onnxio.Float || o.DType == onnxio.Double || o.DType == onnxio.Float16 || o.DType == onnxio.BFloat16 {
				output = o.Name
				break
			}
		}
		if output == "" {
			return nil, fmt.Errorf("%w: the model has no floating-point output to take as logits", ErrModel)
		}
	}
	params := opt.Params
	if params == nil {
		var err error
		if params, err = DefaultParams(m); err != nil {
			return nil, err
		}
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("%w: no float parameters", ErrModel)
	}
	shapes := map[string][]int64{}
	for _, p := range params {
		_, sh, err := m.InitializerInfo(p)
		if err != nil {
			return nil, fmt.Errorf("fisher: parameter %q: %w", p, err)
		}
		shapes[p] = sh
	}
	inputs := map[string]bool{}
	feed1 := map[string]*evalharness.Array{}
	feed2 := map[string]*evalharness.Array{}
	for _, in := range m.Inputs() {
		inputs[in.Name] = true
		a, ok := ds.Inputs[in.Name]
		if !ok {
			return nil, fmt.Errorf("fisher: the dataset has no array for model input %q", in.Name)
		}
		feed1[in.Name] = a.Slice(0, 1)
		if a.Rows() >= 2 {
			feed2[in.Name] = a.Slice(0, 2)
		} else {
			two, err := evalharness.Concat([]*evalharness.Array{a.Slice(0, 1), a.Slice(0, 1)})
			if err != nil {
				return nil, err
			}
			feed2[in.Name] = two
		}
	}
	info, err := Probe(m, feed1, opt.Session)
	if err != nil {
		return nil, err
	}
	oi, ok := info[output]
	if !ok {
		return nil, fmt.Errorf("%w: no output %q", ErrModel, output)
	}
	tokens := len(oi.Shape) == 3 && oi.Shape[0] == 1
	if (len(oi.Shape) != 2 || oi.Shape[0] != 1) && !tokens {
		return nil, fmt.Errorf("%w: output %q has shape %v for one example; want [1, classes] logits or [1, sequence, vocabulary] token logits", ErrModel, output, oi.Shape)
	}
	if oi.DType != onnxio.Float && oi.DType != onnxio.Double {
		return nil, fmt.Errorf("%w: logits %q are %v; float32 or float64 needed", ErrModel, output, oi.DType)
	}
	base := &Graph{Output: output, Params: params, Shapes: shapes, Classes: int(oi.Shape[len(oi.Shape)-1]), Samples: opt.Samples, inputs: inputs, dtype: oi.DType}
	if tokens {
		if opt.Mode != "" && opt.Mode != ModeTokens {
			return nil, fmt.Errorf("%w: output %q holds token logits %v; mode %s is for [batch, classes] logits, token logits take mode %s", ErrModel, output, oi.Shape, opt.Mode, ModeTokens)
		}
		return buildTokens(m, base, info)
	}
	if opt.Mode == ModeTokens {
		return nil, fmt.Errorf("%w: mode %s needs [batch, sequence, vocabulary] logits; output %q has shape %v for one example", ErrModel, ModeTokens, output, oi.Shape)
	}
	fixed := ""
	for _, in := range m.Inputs() {
		if len(in.Shape) > 0 && in.Shape[0].Param == "" && in.Shape[0].Value > 0 {
			fixed = in.Name
		}
	}
	if fixed != "" && opt.Mode == "" {
		opt.Mode = ModeCopies
		base.Fallback = fmt.Sprintf("input %q has a fixed batch size", fixed)
	}
	switch opt.Mode {
	case "", ModeRows:
		if fixed != "" {
			return nil, fmt.Errorf("%w: mode %s needs a dynamic batch axis, but input %q has a fixed batch size", ErrModel, ModeRows, fixed)
		}
		info2, err := Probe(m, feed2, opt.Session)
		if err != nil {
			return nil, err
		}
		g, err := buildRows(m, base, info, info2)
		if err == nil {
			return g, nil
		}
		if opt.Mode == ModeRows || !errors.Is(err, autodiff.ErrUnsupported) {
			return nil, err
		}
		base.Fallback = err.Error()
		k := base.Classes
		if opt.Samples > 0 {
			k = opt.Samples
		}
		if m.NumNodes()*k > copiesLimit {
			return buildLoop(m, base, info)
		}
	case ModeCopies:
	case ModeLoop:
		return buildLoop(m, base, info)
	default:
		return nil, fmt.Errorf("fisher: unknown mode %q (want %s, %s or %s)", opt.Mode, ModeRows, ModeCopies, ModeLoop)
	}
	return buildCopies(m, base, info)
}

// SeedInput is the input of a ModeLoop graph holding the seed e_y − p,
// [1, classes].
const SeedInput = "fisher_seed"

// buildLoop builds the ModeLoop graph: one example, the gradient of
// Σ seed⊙logits for a seed [1, classes] fed as an input, flattened per
// parameter.
func buildLoop(m *onnxio.Model, base *Graph, info map[string]autodiff.Info) (*Graph, error) {
	return buildSeeded(m, base, info, ModeLoop, SeedInput, []onnxio.Dim{{Value: 1}, {Value: int64(base.Classes)}})
}

// buildSeeded returns m with the input seed (shaped like the logits) and
// one output per parameter holding the flattened gradient of Σ seed⊙logits:
// the graph of ModeLoop and ModeTokens.
func buildSeeded(m *onnxio.Model, base *Graph, info map[string]autodiff.Info, mode, seed string, shape []onnxio.Dim) (*Graph, error) {
	g := m.Derive()
	gr := *base
	gr.Mode = mode
	dt := info[base.Output].DType
	g.AddInput(onnxio.ValueInfo{Name: seed, DType: dt, Shape: shape})
	grads, err := autodiff.VJP(g, base.Output, seed, base.Params, autodiff.Options{Info: info, Prefix: "fisher_bwd"})
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	b := &graphBuilder{pre: g.UniqueName("fisher")}
	m1 := b.constant("m1", mustInts(-1))
	gr.Outputs = make([]string, len(base.Params))
	vis := make([]onnxio.ValueInfo, len(base.Params))
	for j, p := range base.Params {
		gr.Outputs[j] = b.add("Reshape", []string{grads[p], m1}, fmt.Sprintf("out%d", j))
		ne, _ := onnxio.NumElements(base.Shapes[p])
		vis[j] = onnxio.ValueInfo{Name: gr.Outputs[j], DType: info[p].DType, Shape: []onnxio.Dim{{Value: ne}}}
	}
	if err := g.InsertNodes(b.nodes...); err != nil {
		return nil, err
	}
	g.SetOutputs(vis)
	gr.Model = g
	return &gr, nil
}

// loopExample adds one example's Σ_y c_y g_y² to acc in ModeLoop: a forward
// run for p, then one gradient run per class (or drawn label).
func loopExample(g *Graph, sess, fwd evalharness.Runner, feed map[string]*evalharness.Array, outIdx map[string]int, acc [][]float64, samples int, rng *rand.Rand) error {
	in := map[string]*evalharness.Array{}
	for k, v := range feed {
		if g.inputs[k] {
			in[k] = v
		}
	}
	outs, err := fwd.Run(in)
	if err != nil {
		return err
	}
	logits, err := outs[0].Float64()
	if err != nil {
		return err
	}
	c := g.Classes
	if len(logits) != c {
		return fmt.Errorf("%w: logits of %d values, want %d", ErrModel, len(logits), c)
	}
	lp := evalharness.LogSoftmax(logits)
	p := make([]float64, c)
	for j, l := range lp {
		p[j] = math.Exp(l)
	}
	labels, coefs := labelsOf(lp, p, samples, rng)
	seed := make([]float32, c)
	for q, y := range labels {
		for j := range seed {
			seed[j] = float32(-p[j])
		}
		seed[y] += 1
		in[SeedInput] = floatArray(g.dtype, []int64{1, int64(c)}, seed)
		gout, err := sess.Run(in)
		if err != nil {
			return err
		}
		if err := addSquares(g, gout, outIdx, acc, coefs[q]); err != nil {
			return err
		}
	}
	return nil
}

// labelsOf returns the labels of one example and their coefficients: every
// class with p(y|x), or samples labels drawn from exp(lp) with 1/samples
// each.
func labelsOf(lp, p []float64, samples int, rng *rand.Rand) ([]int, []float64) {
	var labels []int
	var coefs []float64
	if samples > 0 {
		for _, y := range sampleLabels(lp, samples, rng) {
			labels = append(labels, y)
			coefs = append(coefs, 1/float64(samples))
		}
		return labels, coefs
	}
	for y := range p {
		labels = append(labels, y)
		coefs = append(coefs, p[y])
	}
	return labels, coefs
}

// addSquares adds coef·g² of the gradient run's outputs gout to acc.
func addSquares(g *Graph, gout []*evalharness.Array, outIdx map[string]int, acc [][]float64, coef float64) error {
	for j := range g.Params {
		v, err := gout[outIdx[g.Outputs[j]]].Float64()
		if err != nil {
			return err
		}
		if len(v) != len(acc[j]) {
			return fmt.Errorf("fisher: %s: gradient has %d elements, want %d", g.Params[j], len(v), len(acc[j]))
		}
		for k, x := range v {
			acc[j][k] += coef * x * x
		}
	}
	return nil
}

// sampleLabels draws k labels from the distribution exp(lp).
func sampleLabels(lp []float64, k int, rng *rand.Rand) []int {
	out := make([]int, k)
	for s := range out {
		u := rng.Float64()
		y := len(lp) - 1
		c := 0.0
		for j, l := range lp {
			c += math.Exp(l)
			if u < c {
				y = j
				break
			}
		}
		out[s] = y
	}
	return out
}

// graphBuilder collects the nodes of the Fisher head.
type graphBuilder struct {
	pre   string
	nodes []onnxio.Node
}

func (b *graphBuilder) add(op string, in []string, out string, attrs ...onnxio.Attr) string {
	out = b.pre + "/" + out
	b.nodes = append(b.nodes, onnxio.Node{Name: out + "_node", OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs})
	return out
}

func (b *graphBuilder) constant(name string, t *onnxio.Tensor) string {
	return b.add("Constant", nil, name, onnxio.AttrTensorVal("value", t))
}

func eye(dt onnxio.DType, c int) (*onnxio.Tensor, error) {
	v := make([]float64, c*c)
	for i := 0; i < c; i++ {
		v[i*c+i] = 1
	}
	return onnxio.FromFloat64("", dt, []int64{int64(c), int64(c)}, v)
}

// buildRows builds the ModeRows graph: every example replicated K times
// (K = classes, or Samples), row r = b·K + k with seed onehot_k − p and
// coefficient p_k (or 1/K), per-row gradients squared and contracted with
// the coefficients.
func buildRows(m *onnxio.Model, base *Graph, info, info2 map[string]autodiff.Info) (*Graph, error) {
	g := m.Derive()
	gr := *base
	gr.Mode = ModeRows
	c := base.Classes
	dt := info[base.Output].DType
	k := c
	if base.Samples > 0 {
		k = base.Samples
	}
	b := &graphBuilder{pre: g.UniqueName("fisher")}
	info = copyInfo(info)
	info2 = copyInfo(info2)
	var first string
	for _, in := range m.Inputs() {
		x := in.Name
		xi, ok := info[x]
		if !ok || len(xi.Shape) == 0 {
			return nil, fmt.Errorf("%w: input %q has no batch axis", autodiff.ErrUnsupported, x)
		}
		if first == "" {
			first = x
		}
		rows := b.pre + "/" + x + "_rows"
		g.RenameInput(x, rows)
		ex := make([]int64, len(xi.Shape)+1)
		for i := range ex {
			ex[i] = 1
		}
		ex[1] = int64(k)
		u := b.add("Unsqueeze", []string{x, b.constant(x+"_ax1", mustInts(1))}, x+"_u")
		e := b.add("Expand", []string{u, b.constant(x+"_ex", mustInts(ex...))}, x+"_e")
		tail := b.add("Slice", []string{b.add("Shape", []string{x}, x+"_shape"), b.constant(x+"_one", mustInts(1)), b.constant(x+"_big", mustInts(math.MaxInt64))}, x+"_tail")
		sh := b.add("Concat", []string{b.constant(x+"_m1", mustInts(-1)), tail}, x+"_rowshape", onnxio.AttrInt("axis", 0))
		b.nodes = append(b.nodes, onnxio.Node{Name: rows + "_node", OpType: "Reshape", Inputs: []string{e, sh}, Outputs: []string{rows}})
		info[rows], info2[rows] = info[x], info2[x]
	}
	if first == "" {
		return nil, fmt.Errorf("%w: the model has no inputs", ErrModel)
	}
	var rowsMat string
	if base.Samples > 0 {
		g.AddInput(onnxio.ValueInfo{Name: LabelsInput, DType: dt, Shape: []onnxio.Dim{{Value: -1}, {Value: int64(c)}}})
		rowsMat = LabelsInput
	} else {
		et, err := eye(dt, c)
		if err != nil {
			return nil, err
		}
		nb := b.add("Slice", []string{b.add("Shape", []string{first}, "in_shape"), b.constant("zero", mustInts(0)), b.constant("one", mustInts(1))}, "nbatch")
		reps := b.add("Concat", []string{nb, b.constant("one_b", mustInts(1))}, "reps", onnxio.AttrInt("axis", 0))
		rowsMat = b.add("Tile", []string{b.constant("eye", et), reps}, "onehot")
	}
	probs := b.add("Softmax", []string{base.Output}, "p", onnxio.AttrInt("axis", -1))
	seed := b.add("Sub", []string{rowsMat, probs}, "seed")
	var w string
	if base.Samples > 0 {
		t, err := onnxio.FromFloat64("", dt, []int64{}, []float64{1 / float64(k)})
		if err != nil {
			return nil, err
		}
		w = b.constant("invk", t)
	} else {
		w = probs
	}
	coef := b.add("ReduceSum", []string{b.add("Mul", []string{rowsMat, w}, "cw"), b.constant("ax1", mustInts(1))}, "coef", onnxio.AttrInt("keepdims", 0))
	coefRow := b.add("Unsqueeze", []string{coef, b.constant("ax0", mustInts(0))}, "coef_row") // [1, R]
	if err := g.InsertNodes(b.nodes...); err != nil {
		return nil, err
	}
	b.nodes = nil
	grads, err := autodiff.VJP(g, base.Output, seed, base.Params, autodiff.Options{Info: info, Info2: info2, PerExample: true, Prefix: "fisher_bwd"})
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	flat := b.constant("flat", mustInts(0, -1))
	m1 := b.constant("m1", mustInts(-1))
	vis := make([]onnxio.ValueInfo, len(base.Params))
	gr.Outputs = make([]string, len(base.Params))
	for j, p := range base.Params {
		gf := b.add("Reshape", []string{grads[p], flat}, fmt.Sprintf("g%d", j))
		sq := b.add("Mul", []string{gf, gf}, fmt.Sprintf("sq%d", j))
		f := b.add("MatMul", []string{coefRow, sq}, fmt.Sprintf("f%d", j))
		gr.Outputs[j] = b.add("Reshape", []string{f, m1}, fmt.Sprintf("out%d", j))
		ne, _ := onnxio.NumElements(base.Shapes[p])
		vis[j] = onnxio.ValueInfo{Name: gr.Outputs[j], DType: info[p].DType, Shape: []onnxio.Dim{{Value: ne}}}
	}
	if err := g.InsertNodes(b.nodes...); err != nil {
		return nil, err
	}
	g.SetOutputs(vis)
	gr.Model = g
	return &gr, nil
}

func copyInfo(m map[string]autodiff.Info) map[string]autodiff.Info {
	c := make(map[string]autodiff.Info, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// buildCopies builds the ModeCopies graph: one example, one backward pass
// per class (or drawn label) in the same graph.
func buildCopies(m *onnxio.Model, base *Graph, info map[string]autodiff.Info) (*Graph, error) {
	g := m.Derive()
	gr := *base
	gr.Mode = ModeCopies
	classes := base.Classes
	dt := info[base.Output].DType
	k := classes
	if base.Samples > 0 {
		k = base.Samples
		g.AddInput(onnxio.ValueInfo{Name: LabelsInput, DType: dt, Shape: []onnxio.Dim{{Value: int64(k)}, {Value: int64(classes)}}})
	}
	b := &graphBuilder{pre: g.UniqueName("fisher")}
	probs := b.add("Softmax", []string{base.Output}, "p", onnxio.AttrInt("axis", -1))
	pflat := b.add("Reshape", []string{probs, b.constant("minus1", mustInts(-1))}, "pflat")
	minus1 := b.pre + "/minus1"
	seeds := make([]string, k)
	coefs := make([]string, k)
	var rows string
	if base.Samples > 0 {
		rows = LabelsInput
	} else {
		t, err := eye(dt, classes)
		if err != nil {
			return nil, err
		}
		rows = b.constant("eye", t)
	}
	invK, err := onnxio.FromFloat64("", dt, []int64{}, []float64{1 / float64(k)})
	if err != nil {
		return nil, err
	}
	for s := 0; s < k; s++ {
		si := b.constant("idx"+strconv.Itoa(s), mustInts(int64(s)))
		row := b.add("Gather", []string{rows, si}, "row"+strconv.Itoa(s), onnxio.AttrInt("axis", 0)) // [1, classes]
		seeds[s] = b.add("Sub", []string{row, probs}, "seed"+strconv.Itoa(s))
		switch {
		case base.Samples == 0:
			coefs[s] = b.add("Gather", []string{pflat, si}, "coef"+strconv.Itoa(s), onnxio.AttrInt("axis", 0)) // [1]
		case s == 0:
			coefs[s] = b.constant("invk", invK)
		default:
			coefs[s] = coefs[0]
		}
	}
	if err := g.InsertNodes(b.nodes...); err != nil {
		return nil, err
	}
	b.nodes = nil
	terms := make([][]string, len(base.Params))
	for s := 0; s < k; s++ {
		grads, err := autodiff.VJP(g, base.Output, seeds[s], base.Params, autodiff.Options{Info: info, Prefix: "fisher_bwd" + strconv.Itoa(s)})
		if err != nil {
			return nil, fmt.Errorf("fisher: %w", err)
		}
		for j, p := range base.Params {
			gs := grads[p]
			sq := b.add("Mul", []string{gs, gs}, fmt.Sprintf("sq%d_%d", s, j))
			terms[j] = append(terms[j], b.add("Mul", []string{sq, coefs[s]}, fmt.Sprintf("term%d_%d", s, j)))
		}
	}
	gr.Outputs = make([]string, len(base.Params))
	vis := make([]onnxio.ValueInfo, len(base.Params))
	for j, p := range base.Params {
		sum := terms[j][0]
		if len(terms[j]) > 1 {
			sum = b.add("Sum", terms[j], fmt.Sprintf("sum_%d", j))
		}
		gr.Outputs[j] = b.add("Reshape", []string{sum, minus1}, fmt.Sprintf("out_%d", j))
		ne, _ := onnxio.NumElements(base.Shapes[p])
		vis[j] = onnxio.ValueInfo{Name: gr.Outputs[j], DType: info[p].DType, Shape: []onnxio.Dim{{Value: ne}}}
	}
	if err := g.InsertNodes(b.nodes...); err != nil {
		return nil, err
	}
	g.SetOutputs(vis)
	gr.Model = g
	return &gr, nil
}

func mustInts(v ...int64) *onnxio.Tensor {
	t, err := onnxio.FromInt64("", onnxio.Int64, []int64{int64(len(v))}, v)
	if err != nil {
		panic(err)
	}
	return t
}

// Probe runs autodiff's probe model of m on one sample and returns the
// dtype and shape of every value.
func Probe(m *onnxio.Model, feed map[string]*evalharness.Array, so evalharness.SessionOptions) (map[string]autodiff.Info, error) {
	pm, po, err := autodiff.ProbeModel(m)
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	b, err := pm.Bytes()
	if err != nil {
		return nil, err
	}
	s, err := evalharness.OpenSession(evalharness.OpenRequest{Model: b}, so)
	if err != nil {
		return nil, fmt.Errorf("fisher: probe: %w", err)
	}
	defer s.Close()
	outs, err := s.Run(feed)
	if err != nil {
		return nil, fmt.Errorf("fisher: probe: %w", err)
	}
	byName := map[string]*evalharness.Array{}
	for i, o := range s.Outputs() {
		byName[o.Name] = outs[i]
	}
	info, err := autodiff.ProbeInfo(po,
		func(o string) (onnxio.DType, error) { return byName[o].DType, nil },
		func(o string) ([]int64, error) { return byName[o].Int64() })
	if err != nil {
		return nil, err
	}
	for k, a := range feed {
		info[k] = autodiff.Info{DType: a.DType, Shape: a.Shape}
	}
	return info, nil
}

func forwardSession(m *onnxio.Model, output string, so evalharness.SessionOptions) (evalharness.SessionRunner, error) {
	return evalharness.OpenModel(m, []string{output}, so)
}

// drawLabels runs the forward model on a batch and returns, for each
// example, k one-hot rows of labels drawn from softmax(logits).
func drawLabels(fwd evalharness.Runner, feed map[string]*evalharness.Array, classes, k int, dt onnxio.DType, rng *rand.Rand) (*evalharness.Array, error) {
	outs, err := fwd.Run(feed)
	if err != nil {
		return nil, err
	}
	logits, err := outs[0].Float64()
	if err != nil {
		return nil, err
	}
	if len(logits)%classes != 0 {
		return nil, fmt.Errorf("%w: logits of %d values, not a multiple of %d classes", ErrModel, len(logits), classes)
	}
	nb := len(logits) / classes
	oh := make([]float32, nb*k*classes)
	for b := 0; b < nb; b++ {
		lp := evalharness.LogSoftmax(logits[b*classes : (b+1)*classes])
		for s, y := range sampleLabels(lp, k, rng) {
			oh[(b*k+s)*classes+y] = 1
		}
	}
	return floatArray(dt, []int64{int64(nb * k), int64(classes)}, oh), nil
}

// floatArray returns v as an array of the logits' dtype (float32 or
// float64).
func floatArray(dt onnxio.DType, shape []int64, v []float32) *evalharness.Array {
	if dt == onnxio.Double {
		d := make([]float64, len(v))
		for i, x := range v {
			d[i] = float64(x)
		}
		return evalharness.FromFloat64(shape, d)
	}
	return evalharness.FromFloat32(shape, v)
}
