// Package pipeline wires onnxpost's algorithm packages to the evaluation
// harness: per-layer level search with ONNX Runtime as the judge, recipes
// that chain steps with gates, and reports.
package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"sort"
	"time"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// SparsitySearch configures a per-layer unstructured-sparsity search.
type SparsitySearch struct {
	// Target is the fraction of zeros over the searched layers' weights.
	Target float64
	// Levels is the number of ladder steps on each side of the uniform
	// level (default 8, EvoPress's); layers too small for all of them get
	// fewer.
	Levels int
	// Step is the number of weights one level step zeroes in every layer
	// (default ⌊0.5·min(s,1−s)/Levels · median layer size⌋, at least 1, as
	// EvoPress sizes it from the hidden size).
	Step int64
	// Include and Exclude select layers by weight or node name.
	Include, Exclude *regexp.Regexp
	// Method names the level builder ("magnitude" by default); Builder
	// overrides the builder.
	Method  string
	Builder LevelBuilder
	// CacheDir caches the level database on disk ("" for memory only).
	CacheDir string
	// Batch is the evaluation batch size (default 64).
	Batch int
	// Session configures ONNX Runtime sessions.
	Session evalharness.SessionOptions
	// Search configures the evolutionary search (TotalSamples is set from
	// the calibration set).
	Search search.Options
	// Output names the model output compared (default: the first).
	Output string
	// Log, if set, receives progress lines.
	Log func(format string, args ...any)
}

// LayerChoice is one layer's outcome in a search report.
type LayerChoice struct {
	Name     string  `json:"name"`
	Op       string  `json:"op"`
	Params   int64   `json:"params"`
	Level    int     `json:"level"`
	Zeros    int64   `json:"zeros"`
	Sparsity float64 `json:"sparsity"`
}

// Allocation is one allocation of levels and its fidelity on the
// calibration set.
type Allocation struct {
	Name   string        `json:"name"`
	KL     float64       `json:"kl"`
	Layers []LayerChoice `json:"layers"`
	Zeros  int64         `json:"zeros"`
}

// SearchReport is the outcome of RunSparsitySearch.
type SearchReport struct {
	Target       float64      `json:"target"`
	Achieved     float64      `json:"achieved"`
	TotalWeights int64        `json:"total_weights"`
	Step         int64        `json:"step"`
	Levels       int          `json:"levels"`
	Searched     Allocation   `json:"searched"`
	Uniform      Allocation   `json:"uniform"`
	Heuristic    Allocation   `json:"heuristic"`
	History      []float64    `json:"history"`
	Evaluations  int          `json:"evaluations"`
	Seconds      float64      `json:"seconds"`
	CandidatesPS float64      `json:"candidates_per_second"`
	Samples      int64        `json:"calibration_samples"`
	Allocations  []Allocation `json:"-"`
}

type searchLayer struct {
	w      onnxio.Weight
	dense  []float32
	base   int64 // zeros at the uniform level
	offset int   // index of the uniform level in the ladder
	levels int
}

func (l *searchLayer) zeros(idx int, step int64) int64 { return l.base + int64(idx-l.offset)*step }

// ModelHash returns the sha256 of a model's serialized bytes.
func ModelHash(m *onnxio.Model) (string, error) {
	b, err := m.Bytes()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// SelectLayers returns the MatMul/Gemm/Conv float32 weights of m matching
// the filters.
func SelectLayers(m *onnxio.Model, include, exclude *regexp.Regexp) ([]onnxio.Weight, error) {
	ws, err := m.Weights()
	if err != nil {
		return nil, err
	}
	var out []onnxio.Weight
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
		default:
			continue
		}
		if w.DType != onnxio.Float || w.Constant {
			continue
		}
		if include != nil && !include.MatchString(w.Name) && !include.MatchString(w.Node) {
			continue
		}
		if exclude != nil && (exclude.MatchString(w.Name) || exclude.MatchString(w.Node)) {
			continue
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, errors.New("no MatMul, Gemm or Conv weights selected")
	}
	return out, nil
}

// RunSparsitySearch searches per-layer unstructured sparsity levels of m
// at an exact global budget, scoring candidates by mean KL(dense ‖
// candidate) on calib with one ONNX Runtime session whose searched weights
// are fed as inputs. It returns the model with the searched allocation and
// a report that includes the uniform and per-layer-error baselines at the
// same budget.
func RunSparsitySearch(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, opt SparsitySearch) (*onnxio.Model, *SearchReport, error) {
	if !(opt.Target > 0 && opt.Target < 1) {
		return nil, nil, fmt.Errorf("sparsity target %v outside (0, 1)", opt.Target)
	}
	if opt.Levels <= 0 {
		opt.Levels = 8
	}
	if opt.Batch <= 0 {
		opt.Batch = 64
	}
	if opt.Builder == nil {
		if opt.Method != "" && opt.Method != "magnitude" {
			return nil, nil, fmt.Errorf("no level builder for method %q", opt.Method)
		}
		opt.Method, opt.Builder = "magnitude", MagnitudeLevel
	}
	logf := opt.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ws, err := SelectLayers(m, opt.Include, opt.Exclude)
	if err != nil {
		return nil, nil, err
	}
	hash, err := ModelHash(m)
	if err != nil {
		return nil, nil, err
	}
	db := &LevelDB{Dir: opt.CacheDir, ModelHash: hash, Method: opt.Method, Build: opt.Builder}

	// ladders: equal steps of opt.Step zeros in every layer
	layers := make([]*searchLayer, len(ws))
	var sizes []int64
	var total int64
	for i, w := range ws {
		t, err := m.Initializer(w.Name)
		if err != nil {
			return nil, nil, err
		}
		v, err := t.Float32()
		if err != nil {
			return nil, nil, err
		}
		n := int64(len(v))
		total += n
		sizes = append(sizes, n)
		layers[i] = &searchLayer{w: w, dense: v, base: int64(math.Round(opt.Target * float64(n)))}
	}
	step := opt.Step
	if step <= 0 {
		sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
		median := sizes[len(sizes)/2]
		step = int64(0.5 * math.Min(opt.Target, 1-opt.Target) / float64(opt.Levels) * float64(median))
		step = max(step, 1)
	}
	sl := make([]search.Layer, len(layers))
	start := make([]int, len(layers))
	for i, l := range layers {
		n := int64(len(l.dense))
		down := min(int64(opt.Levels), l.base/step)   // fewer zeros
		up := min(int64(opt.Levels), (n-l.base)/step) // more zeros
		l.offset, l.levels = int(down), int(down+up+1)
		cost := make([]int64, l.levels)
		for k := range cost {
			cost[k] = n - l.zeros(k, step) // nonzeros: falls by step per level
		}
		sl[i] = search.Layer{Name: l.w.Name, Cost: cost}
		start[i] = l.offset
	}

	// dense reference logits on the calibration set
	denseBytes, err := m.Bytes()
	if err != nil {
		return nil, nil, err
	}
	denseSess, err := evalharness.NewSession(denseBytes, opt.Session)
	if err != nil {
		return nil, nil, err
	}
	outIdx := 0
	if opt.Output != "" {
		outIdx = -1
		for k, o := range denseSess.Outputs() {
			if o.Name == opt.Output {
				outIdx = k
			}
		}
		if outIdx < 0 {
			denseSess.Close()
			return nil, nil, fmt.Errorf("the model has no output %q", opt.Output)
		}
	}
	outName := denseSess.Outputs()[outIdx].Name
	refOuts, err := evalharness.Predict(denseSess, calib, opt.Batch)
	denseSess.Close()
	if err != nil {
		return nil, nil, err
	}
	ref, err := refOuts[outIdx].Float64()
	if err != nil {
		return nil, nil, err
	}

	// one session with the searched weights as inputs
	wi := m.Clone()
	names := make([]string, len(layers))
	for i, l := range layers {
		names[i] = l.w.Name
	}
	if _, err := wi.InitializersToInputs(names); err != nil {
		return nil, nil, err
	}
	wiBytes, err := wi.Bytes()
	if err != nil {
		return nil, nil, err
	}
	sess, err := evalharness.NewSessionOutputs(wiBytes, []string{outName}, opt.Session)
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close()

	ev := &klEvaluator{
		sess: sess, calib: calib, ref: ref, batch: opt.Batch, layers: layers, step: step, db: db,
		arrays: map[[2]int]*evalharness.Array{},
	}
	ev.rowLen = len(ref) / int(calib.N)
	ev.classes = int(refOuts[outIdx].Shape[len(refOuts[outIdx].Shape)-1])

	report := &SearchReport{Target: opt.Target, TotalWeights: total, Step: step, Levels: opt.Levels, Samples: calib.N}
	all := make([]int, calib.N)
	for i := range all {
		all[i] = i
	}
	describe := func(name string, lv []int) (Allocation, error) {
		kl, err := ev.Fitness(ctx, lv, all)
		if err != nil {
			return Allocation{}, err
		}
		a := Allocation{Name: name, KL: kl}
		for i, l := range layers {
			z := l.zeros(lv[i], step)
			a.Zeros += z
			a.Layers = append(a.Layers, LayerChoice{Name: l.w.Name, Op: l.w.Op, Params: int64(len(l.dense)), Level: lv[i] - l.offset, Zeros: z, Sparsity: float64(z) / float64(len(l.dense))})
		}
		return a, nil
	}

	// baselines
	if report.Uniform, err = describe("uniform", start); err != nil {
		return nil, nil, err
	}
	logf("uniform allocation: KL %.5f", report.Uniform.KL)
	heur, err := errorAllocation(layers, sl, start, step, db)
	if err != nil {
		return nil, nil, err
	}
	if report.Heuristic, err = describe("per-layer-error", heur); err != nil {
		return nil, nil, err
	}
	logf("per-layer-error allocation: KL %.5f", report.Heuristic.KL)

	so := opt.Search
	so.TotalSamples = int(calib.N)
	if so.Rand == nil {
		so.Rand = rand.New(rand.NewSource(0))
	}
	userProgress := so.Progress
	so.Progress = func(gen int, parent []int, f float64) {
		if userProgress != nil {
			userProgress(gen, parent, f)
		}
	}
	t0 := time.Now()
	res, err := search.Search(ctx, sl, start, ev, so)
	if err != nil {
		return nil, nil, err
	}
	report.Seconds = time.Since(t0).Seconds()
	report.History = res.History
	report.Evaluations = res.Evaluations
	if report.Seconds > 0 {
		report.CandidatesPS = float64(res.Evaluations) / report.Seconds
	}
	if report.Searched, err = describe("searched", res.Levels); err != nil {
		return nil, nil, err
	}
	for _, a := range []Allocation{report.Uniform, report.Heuristic, report.Searched} {
		if a.Zeros != report.Uniform.Zeros {
			return nil, nil, fmt.Errorf("%w: %s allocation has %d zeros, uniform %d", search.ErrBudget, a.Name, a.Zeros, report.Uniform.Zeros)
		}
	}
	report.Achieved = float64(report.Searched.Zeros) / float64(total)
	logf("searched allocation: KL %.5f (%d evaluations, %.1f candidates/s)", report.Searched.KL, res.Evaluations, report.CandidatesPS)

	out, err := applyLevels(m, layers, res.Levels, step, db)
	if err != nil {
		return nil, nil, err
	}
	report.Allocations = []Allocation{report.Uniform, report.Heuristic, report.Searched}
	return out, report, nil
}

// ApplyAllocation returns m with each layer of a reported allocation
// pruned to its zeros, using the same level builder.
func applyLevels(m *onnxio.Model, layers []*searchLayer, lv []int, step int64, db *LevelDB) (*onnxio.Model, error) {
	out := m.Clone()
	for i, l := range layers {
		v, err := db.Get(l.w, l.dense, l.zeros(lv[i], step))
		if err != nil {
			return nil, err
		}
		t, err := onnxio.FromFloat32(l.w.Name, onnxio.Float, l.w.Shape, v)
		if err != nil {
			return nil, err
		}
		if err := out.SetInitializer(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ApplyAllocation returns m with the layers of allocation a pruned by the
// magnitude (or given) builder; it serves baselines' outputs.
func ApplyAllocation(m *onnxio.Model, a Allocation, build LevelBuilder) (*onnxio.Model, error) {
	if build == nil {
		build = MagnitudeLevel
	}
	ws, err := m.WeightMap()
	if err != nil {
		return nil, err
	}
	out := m.Clone()
	for _, lc := range a.Layers {
		w, ok := ws[lc.Name]
		if !ok {
			return nil, fmt.Errorf("no weight %q", lc.Name)
		}
		t, err := m.Initializer(lc.Name)
		if err != nil {
			return nil, err
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		p, err := build(w, v, lc.Zeros)
		if err != nil {
			return nil, err
		}
		nt, err := onnxio.FromFloat32(lc.Name, onnxio.Float, w.Shape, p)
		if err != nil {
			return nil, err
		}
		if err := out.SetInitializer(nt); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// errorAllocation is the per-layer-error baseline: starting from uniform,
// repeatedly apply the single budget-neutral switch (one layer a level
// sparser, another a level denser) that most lowers the sum of relative
// layer errors ‖W−Ŵ‖²/‖W‖², until none does.
func errorAllocation(layers []*searchLayer, sl []search.Layer, start []int, step int64, db *LevelDB) ([]int, error) {
	errAt := make([][]float64, len(layers))
	for i, l := range layers {
		errAt[i] = make([]float64, l.levels)
		var norm float64
		for _, x := range l.dense {
			norm += float64(x) * float64(x)
		}
		for k := 0; k < l.levels; k++ {
			v, err := db.Get(l.w, l.dense, l.zeros(k, step))
			if err != nil {
				return nil, err
			}
			var e float64
			for j := range v {
				d := float64(v[j]) - float64(l.dense[j])
				e += d * d
			}
			if norm > 0 {
				e /= norm
			}
			errAt[i][k] = e
		}
	}
	lv := append([]int(nil), start...)
	for iter := 0; iter < 10000; iter++ {
		best, bi, bj := 0.0, -1, -1
		for i := range layers {
			if lv[i]+1 >= layers[i].levels {
				continue
			}
			gainUp := errAt[i][lv[i]+1] - errAt[i][lv[i]]
			for j := range layers {
				if j == i || lv[j] == 0 {
					continue
				}
				delta := gainUp + errAt[j][lv[j]-1] - errAt[j][lv[j]]
				if delta < best-1e-15 {
					best, bi, bj = delta, i, j
				}
			}
		}
		if bi < 0 {
			break
		}
		lv[bi]++
		lv[bj]--
	}
	if search.Budget(sl, lv) != search.Budget(sl, start) {
		return nil, search.ErrBudget
	}
	return lv, nil
}

// klEvaluator scores a level configuration by the mean KL(dense ‖
// candidate) over chosen calibration samples, feeding the layers' weights
// as inputs of one session.
type klEvaluator struct {
	sess    evalharness.Runner
	calib   *evalharness.Dataset
	ref     []float64
	rowLen  int
	classes int
	batch   int
	layers  []*searchLayer
	step    int64
	db      *LevelDB
	arrays  map[[2]int]*evalharness.Array
}

func (e *klEvaluator) weightArray(i, level int) (*evalharness.Array, error) {
	if a, ok := e.arrays[[2]int{i, level}]; ok {
		return a, nil
	}
	l := e.layers[i]
	v, err := e.db.Get(l.w, l.dense, l.zeros(level, e.step))
	if err != nil {
		return nil, err
	}
	a := evalharness.FromFloat32(l.w.Shape, v)
	e.arrays[[2]int{i, level}] = a
	return a, nil
}

// Fitness implements search.Evaluator.
func (e *klEvaluator) Fitness(ctx context.Context, levels []int, samples []int) (float64, error) {
	feed := map[string]*evalharness.Array{}
	for i, l := range e.layers {
		a, err := e.weightArray(i, levels[i])
		if err != nil {
			return 0, err
		}
		feed[l.w.Name] = a
	}
	var sum float64
	var rows int
	for s := 0; s < len(samples); s += e.batch {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		idx := samples[s:min(s+e.batch, len(samples))]
		for name, arr := range e.calib.Inputs {
			feed[name] = gatherRows(arr, idx)
		}
		outs, err := e.sess.Run(feed)
		if err != nil {
			return 0, err
		}
		got, err := outs[0].Float64()
		if err != nil {
			return 0, err
		}
		c := e.classes
		for k, sidx := range idx {
			for r := 0; r < e.rowLen; r += c {
				ref := e.ref[sidx*e.rowLen+r : sidx*e.rowLen+r+c]
				cand := got[k*e.rowLen+r : k*e.rowLen+r+c]
				sum += evalharness.KL(ref, cand)
				rows++
			}
		}
	}
	if rows == 0 {
		return 0, errors.New("no samples to evaluate")
	}
	return sum / float64(rows), nil
}

// gatherRows returns the rows idx of a along its first axis.
func gatherRows(a *evalharness.Array, idx []int) *evalharness.Array {
	rowBytes := len(a.Data) / int(a.Shape[0])
	data := make([]byte, 0, rowBytes*len(idx))
	for _, i := range idx {
		data = append(data, a.Data[i*rowBytes:(i+1)*rowBytes]...)
	}
	shape := append([]int64{int64(len(idx))}, a.Shape[1:]...)
	return &evalharness.Array{DType: a.DType, Shape: shape, Data: data}
}
