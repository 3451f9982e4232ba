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
	"strings"
	"time"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// The search spaces.
const (
	SpaceSparsity = "sparsity"
	SpaceRank     = "rank"
	SpaceBits     = "bits"
)

// The fitness functions: mean KL(dense ‖ candidate) of softmax outputs
// (classifier logits), mean squared error of the flattened outputs, and
// mean 1 − cosine of the flattened outputs (embeddings). All are
// computed per sample between the dense model's output and the
// candidate's, and lower is better.
const (
	FitnessKL     = "kl"
	FitnessMSE    = "mse"
	FitnessCosine = "cosine"
)

// LevelSearch configures a per-layer level search (EvoPress) in one space.
type LevelSearch struct {
	// Space is SpaceSparsity (default), SpaceRank, SpaceBits, SpaceDrop
	// or SpaceSparsityBits ("bits,sparsity" is accepted too).
	Space string
	// Target is the budget: for sparsity the fraction of zeros over the
	// searched layers' weights; for rank the fraction of their
	// parameters kept (r·(m+n) per factorized layer); for bits the mean
	// bits per weight; for drop the number of residual blocks dropped (an
	// integer). For SpaceSparsityBits it is the sparsity target.
	Target float64
	// TargetBits is the mean bits per weight of a SpaceSparsityBits
	// search (other spaces ignore it).
	TargetBits float64
	// Levels is the number of ladder steps on each side of the uniform
	// level (default 8, EvoPress's); layers too small for all of them get
	// fewer. Bits ladders ignore it.
	Levels int
	// Step is, for sparsity, the number of weights one level step zeroes
	// in every layer (default ⌊0.5·min(s,1−s)/Levels · median layer
	// size⌋, at least 1, as EvoPress sizes it from the hidden size).
	Step int64
	// Bits is the bits ladder: increasing widths with equal steps, so the
	// budget stays exact (default 2,4 for targets up to 4 bits, else 4,8:
	// package quant's block-wise widths are 2, 4 and 8).
	Bits []int
	// BlockSize is the quantization block along the reduction axis
	// (default 32).
	BlockSize int
	// Include and Exclude select layers by weight or node name.
	Include, Exclude *regexp.Regexp
	// Method names the level builder: sparsity magnitude (default), wanda
	// or sparsegpt; rank svd (default); bits rtn (default) or gptq.
	// Builder overrides the builder (sparsity only).
	Method  string
	Builder LevelBuilder
	// BitsMethod is the bits builder (rtn, default, or gptq) of a
	// SpaceSparsityBits search, whose Method is the sparsity builder.
	BitsMethod string
	// CalibSamples bounds the calibration samples whose activations are
	// captured for wanda, sparsegpt and gptq (0: all).
	CalibSamples int
	// CacheDir caches the level database on disk ("" for memory only).
	CacheDir string
	// Batch is the evaluation batch size (default 64).
	Batch int
	// Session configures ONNX Runtime sessions.
	Session evalharness.SessionOptions
	// Search configures the evolutionary search (TotalSamples is set from
	// the calibration set).
	Search search.Options
	// Output names the model output compared (default: the first with a
	// floating-point type).
	Output string
	// Outputs names several compared outputs (the fitness is the mean of
	// their losses); it takes precedence over Output.
	Outputs []string
	// Fitness is FitnessKL, FitnessMSE or FitnessCosine; "" chooses by the
	// output's shape (FitnessForShape).
	Fitness string
	// Log, if set, receives progress lines.
	Log func(format string, args ...any)
	// Start is where the search starts: "best" (default) the baseline
	// allocation (uniform or per-layer-error) with the lower loss on the
	// whole calibration set, "uniform" the uniform one (EvoPress's start).
	// Both have the same budget.
	Start string
	// Baselines also builds the uniform and per-layer-error models
	// (SearchReport.BaselineModels), written the same way as the searched
	// one.
	Baselines bool
}

// SparsitySearch is the former name of LevelSearch.
type SparsitySearch = LevelSearch

// LayerChoice is one layer's outcome in a search report.
type LayerChoice struct {
	Name   string `json:"name"`
	Op     string `json:"op"`
	Params int64  `json:"params"`
	// Level is the ladder position relative to the uniform level.
	Level int `json:"level"`
	// Value is the level in the space's unit: zeros, rank or bits.
	Value int64 `json:"value"`
	// Cost is the layer's share of the budget: nonzeros for sparsity,
	// parameters r·(m+n) for rank, bits for bits.
	Cost int64 `json:"cost"`
	// Fraction is the zero fraction (sparsity), the parameters kept
	// (rank) or the bits per weight (bits).
	Fraction float64 `json:"fraction"`
	// Space is the entry's space in a combined search (each weight has
	// one entry per space; Name then carries the space in parentheses).
	Space string `json:"space,omitempty"`
}

// Allocation is one allocation of levels and its loss on the calibration
// set.
type Allocation struct {
	Name   string        `json:"name"`
	Loss   float64       `json:"loss"`
	Layers []LayerChoice `json:"layers"`
	// Cost sums the layers' costs; it is equal in every allocation of a
	// report (the budget). In a combined search it adds both spaces'
	// units; Costs holds each space's budget, each equal in every
	// allocation.
	Cost  int64            `json:"cost"`
	Costs map[string]int64 `json:"costs,omitempty"`
}

// SearchReport is the outcome of RunSearch.
type SearchReport struct {
	Space   string  `json:"space"`
	Method  string  `json:"method"`
	Fitness string  `json:"fitness"`
	Target  float64 `json:"target"`
	// Achieved is the budget reached, in Target's unit, exactly equal in
	// every allocation.
	Achieved float64 `json:"achieved"`
	// TargetBits and AchievedBits are the bits budget of a combined
	// sparsity,bits search (Target and Achieved are then its sparsity).
	TargetBits   float64 `json:"target_bits,omitempty"`
	AchievedBits float64 `json:"achieved_bits,omitempty"`
	TotalWeights int64   `json:"total_weights"`
	// Step is sparsity's zeros per level step.
	Step   int64 `json:"step,omitempty"`
	Levels int   `json:"levels"`
	// Ladder lists the bit widths of a bits search (which ignores Levels).
	Ladder    []int      `json:"bits_ladder,omitempty"`
	Groups    int        `json:"groups"`
	Searched  Allocation `json:"searched"`
	Uniform   Allocation `json:"uniform"`
	Heuristic Allocation `json:"heuristic"`
	History   []float64  `json:"history"`
	// Start names the allocation the search started from.
	Start        string       `json:"start"`
	Evaluations  int          `json:"evaluations"`
	Seconds      float64      `json:"seconds"`
	CandidatesPS float64      `json:"candidates_per_second"`
	Samples      int64        `json:"calibration_samples"`
	PrepSeconds  float64      `json:"prep_seconds"`
	Allocations  []Allocation `json:"-"`
	// BaselineModels holds, with LevelSearch.Baselines, the uniform and
	// per-layer-error models keyed by allocation name.
	BaselineModels map[string]*onnxio.Model `json:"-"`
}

// searchLayer is one layer's ladder: keys[k] is the level in the space's
// unit (zeros, rank, bits) at ladder index k, costs[k] its budget cost.
type searchLayer struct {
	w      onnxio.Weight
	dense  []float32
	keys   []int64
	costs  []int64
	group  int
	offset int // index of the uniform level in the ladder
	// db, space and label are set in a combined search: the entry's own
	// level database (for the per-layer-error baseline), its space and
	// its name in reports ("<weight> (<space>)").
	db    *LevelDB
	space string
	label string
}

func (l *searchLayer) name() string {
	if l.label != "" {
		return l.label
	}
	return l.w.Name
}

func (l *searchLayer) levels() int { return len(l.keys) }

// ModelHash returns the sha256 of a model's serialized bytes.
func ModelHash(m *onnxio.Model) (string, error) {
	b, err := m.Bytes()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// DatasetHash returns the sha256 of a dataset's inputs (names, dtypes,
// shapes and bytes, in name order), part of the cache key of levels built
// from calibration data.
func DatasetHash(ds *evalharness.Dataset) string {
	h := sha256.New()
	names := make([]string, 0, len(ds.Inputs))
	for n := range ds.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := ds.Inputs[n]
		fmt.Fprintf(h, "%s\x00%d\x00%v\x00", n, a.DType, a.Shape)
		h.Write(a.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ErrNoSearchableWeight reports that no MatMul, Gemm or Conv weight of the
// model can be searched; the error's text lists each such layer and why it
// was left out (already quantized, held in a subgraph, not float32...).
var ErrNoSearchableWeight = errors.New("no MatMul, Gemm or Conv weight can be searched")

// foldConstantLayers folds m's Constant nodes into initializers
// (onnxio.Model.FoldConstantWeights) when one of them holds a MatMul, Gemm
// or Conv weight, as in the PaddleOCR exports; a model whose layers read
// initializers keeps its graph as it is (its other Constant nodes, shape
// and scale values, stay nodes).
func foldConstantLayers(m *onnxio.Model) error {
	ws, err := m.Weights()
	if err != nil {
		return err
	}
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
			if w.Constant {
				_, err := m.FoldConstantWeights()
				return err
			}
		}
	}
	return nil
}

// SelectLayers returns the MatMul/Gemm/Conv float32 weights of m matching
// the filters. Weights held in Constant nodes are not listed: RunSearch
// folds them into initializers first (onnxio.Model.FoldConstantWeights).
// When none is left it returns an error wrapping ErrNoSearchableWeight
// that says, per layer, why each was not taken.
func SelectLayers(m *onnxio.Model, include, exclude *regexp.Regexp) ([]onnxio.Weight, error) {
	ws, err := m.AllWeights()
	if err != nil {
		return nil, err
	}
	var out []onnxio.Weight
	var reasons []string
	filtered := 0
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
		default:
			continue
		}
		if include != nil && !include.MatchString(w.Name) && !include.MatchString(w.Node) ||
			exclude != nil && (exclude.MatchString(w.Name) || exclude.MatchString(w.Node)) {
			filtered++
			continue
		}
		why := w.Special()
		switch {
		case why != "":
		case w.Constant:
			why = "held in a Constant node"
		case w.DType != onnxio.Float:
			why = fmt.Sprintf("%v, the search rewrites float32 weights only", w.DType)
		case len(w.Shape) < 2:
			why = fmt.Sprintf("shape %v has fewer than 2 dimensions", w.Shape)
		}
		if why != "" {
			reasons = append(reasons, fmt.Sprintf("%s (%s): %s", w.Name, w.Op, why))
			continue
		}
		out = append(out, w)
	}
	if len(out) > 0 {
		return out, nil
	}
	switch {
	case len(reasons) > 0:
		return nil, fmt.Errorf("%w:\n  %s", ErrNoSearchableWeight, strings.Join(reasons, "\n  "))
	case filtered > 0:
		return nil, fmt.Errorf("%w: the include and exclude parameters left none of the %d MatMul, Gemm or Conv weights", ErrNoSearchableWeight, filtered)
	}
	return nil, fmt.Errorf("%w: the model has no MatMul, Gemm or Conv weight", ErrNoSearchableWeight)
}

// ChooseFitness returns the fitness to use: the requested one, or, when
// none is, KL for classifier logits (the calibration set has labels, or
// the compared output's name contains "logit") and cosine otherwise (an
// embedding or other non-probability output, where a softmax KL means
// nothing).
func ChooseFitness(requested, output string, labels bool) (string, error) {
	switch requested {
	case FitnessKL, FitnessMSE, FitnessCosine:
		return requested, nil
	case "":
		if labels || strings.Contains(strings.ToLower(output), "logit") {
			return FitnessKL, nil
		}
		return FitnessCosine, nil
	}
	return "", fmt.Errorf("fitness %q: want kl, mse or cosine", requested)
}

// FitnessForShape returns the fitness to use on an output of the given
// shape: the requested one, or, when none is, KL for [N, C] class scores
// and [N, T, V] token scores (token-level, masked by attention_mask) and
// cosine (1 − cosine) for any other shape (maps, embeddings, audio).
func FitnessForShape(requested string, shape []int64) (string, error) {
	switch requested {
	case FitnessKL, FitnessMSE, FitnessCosine:
		return requested, nil
	case "":
		if len(shape) == 2 || len(shape) == 3 {
			return FitnessKL, nil
		}
		return FitnessCosine, nil
	}
	return "", fmt.Errorf("fitness %q: want kl, mse or cosine", requested)
}

// RunSparsitySearch is RunSearch in the sparsity space.
func RunSparsitySearch(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, opt LevelSearch) (*onnxio.Model, *SearchReport, error) {
	opt.Space = SpaceSparsity
	return RunSearch(ctx, m, calib, opt)
}

// space is what RunSearch needs of a search space.
type space struct {
	name, method string
	layers       []*searchLayer
	db           *LevelDB
	step         int64 // sparsity only
	ladder       []int // bits only: the widths
	// achieved converts a total cost into the target's unit.
	achieved func(cost int64) float64
	// fraction describes a layer at ladder index k.
	fraction func(l *searchLayer, k int) float64
	// apply writes the allocation into a copy of the model.
	apply func(ctx context.Context, m *onnxio.Model, lv []int) (*onnxio.Model, error)
	// extraInputs are further initializers fed as session inputs and
	// extraFeed their values for layer i at ladder index level (drop:
	// the biases zeroed with the weights); both optional.
	extraInputs []string
	extraFeed   func(i, level int) map[string]*evalharness.Array
	// uniformName and heurName name the two baselines ("" for uniform and
	// per-layer-error); heuristic, if set, replaces errorAllocation.
	uniformName, heurName string
	heuristic             func(ctx context.Context, ev search.Evaluator, all []int) ([]int, error)
	// parts are the spaces of a combined search, whose layers are the
	// entries of layers with their space set; feed, if set, gives the
	// session's weight inputs for a whole candidate (and checks its
	// budgets) instead of one input per entry.
	parts []*space
	feed  func(ctx context.Context, levels []int) (map[string]*evalharness.Array, error)
}

// RunSearch searches per-layer compression levels of m in opt.Space at an
// exact global budget, scoring candidates by the fitness (mean KL, MSE or
// 1 − cosine between the dense and the candidate outputs) on calib with
// one ONNX Runtime session whose searched weights are fed as inputs. It
// returns the model with the searched allocation and a report that
// includes the uniform and per-layer-error baselines at the same budget.
// When a MatMul, Gemm or Conv weight is held in a Constant node, m's
// Constant nodes are folded into initializers first (in place; the model
// computes the same), so that those weights can be searched.
func RunSearch(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, opt LevelSearch) (*onnxio.Model, *SearchReport, error) {
	if opt.Space == "" {
		opt.Space = SpaceSparsity
	}
	opt.Space = ParseSpace(opt.Space)
	if opt.Levels <= 0 {
		opt.Levels = 8
	}
	if opt.Batch <= 0 {
		opt.Batch = 64
	}
	if calib == nil {
		return nil, nil, errors.New("search needs a non-empty calibration set")
	}
	// the batch axis of each input (a state batched along axis 1, a scalar
	// fed whole) and the number of samples come from the model's inputs
	if err := calib.Check(evalharness.ModelInputs(m)); err != nil {
		return nil, nil, err
	}
	if calib.N <= 0 {
		return nil, nil, errors.New("search needs a non-empty calibration set")
	}
	logf := opt.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := foldConstantLayers(m); err != nil {
		return nil, nil, err
	}
	ws, err := SelectLayers(m, opt.Include, opt.Exclude)
	if err != nil {
		return nil, nil, err
	}
	hash, err := ModelHash(m)
	if err != nil {
		return nil, nil, err
	}
	tPrep := time.Now()
	src := newCalibSource(ctx, m, calib, opt, logf) // one calibration of the dense model, shared
	var sp *space
	switch opt.Space {
	case SpaceSparsity:
		sp, err = sparsitySpace(m, ws, hash, src, opt)
	case SpaceRank:
		sp, err = rankSpace(m, ws, hash, opt)
	case SpaceBits:
		sp, err = bitsSpace(m, ws, hash, src, opt)
	case SpaceDrop:
		sp, err = dropSpace(m, ws, hash, opt, logf)
	case SpaceSparsityBits:
		sp, err = sparsityBitsSpace(m, ws, hash, src, opt)
	default:
		err = fmt.Errorf("search space %q: want sparsity, rank, bits, drop or sparsity,bits", opt.Space)
	}
	if err != nil {
		return nil, nil, err
	}
	layers := sp.layers
	sl := make([]search.Layer, len(layers))
	start := make([]int, len(layers))
	var total int64
	groups := map[int]bool{}
	counted := map[string]bool{} // a combined search has two entries per weight
	for i, l := range layers {
		sl[i] = search.Layer{Name: l.name(), Cost: l.costs, Group: l.group}
		start[i] = l.offset
		if !counted[l.w.Name] {
			total += int64(len(l.dense))
			counted[l.w.Name] = true
		}
		groups[l.group] = true
	}
	if _, err := search.CheckLadders(sl); err != nil {
		return nil, nil, err
	}

	// dense reference outputs on the calibration set
	denseBytes, err := m.Bytes()
	if err != nil {
		return nil, nil, err
	}
	denseSess, err := evalharness.OpenSession(evalharness.OpenRequest{Model: denseBytes}, opt.Session)
	if err != nil {
		return nil, nil, err
	}
	outNames := opt.Outputs
	if len(outNames) == 0 && opt.Output != "" {
		outNames = []string{opt.Output}
	}
	outIdxs, err := evalharness.OutputIndices(denseSess.Outputs(), outNames)
	if err != nil {
		denseSess.Close()
		return nil, nil, err
	}
	for _, oi := range outIdxs {
		o := denseSess.Outputs()[oi]
		if ax := calib.OutputBatchAxis(o); ax != 0 {
			denseSess.Close()
			return nil, nil, fmt.Errorf("output %q is batched along axis %d; the search compares outputs batched along axis 0 (name another in LevelSearch.Outputs)", o.Name, ax)
		}
	}
	// a model exported with a fixed batch (of 1) runs with that batch
	batch, err := calib.BatchSize(denseSess.Inputs(), opt.Batch)
	if err != nil {
		denseSess.Close()
		return nil, nil, err
	}
	opt.Batch = int(batch)
	refOuts, err := evalharness.Predict(denseSess, calib, opt.Batch)
	var names0 []string
	for _, oi := range outIdxs {
		names0 = append(names0, denseSess.Outputs()[oi].Name)
	}
	denseSess.Close()
	if err != nil {
		return nil, nil, err
	}
	var targets []*outTarget
	var kinds []string
	for k, oi := range outIdxs {
		tg, err := newOutTarget(k, refOuts[oi], calib, opt.Fitness)
		if err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", names0[k], err)
		}
		targets = append(targets, tg)
		if len(kinds) == 0 || kinds[len(kinds)-1] != tg.kind {
			kinds = append(kinds, tg.kind)
		}
	}
	fitness := strings.Join(kinds, "+")

	// one session with the searched weights as inputs
	wi := m.Derive()
	var names []string
	seen := map[string]bool{}
	for _, l := range layers {
		if !seen[l.w.Name] {
			names = append(names, l.w.Name)
			seen[l.w.Name] = true
		}
	}
	names = append(names, sp.extraInputs...)
	if _, err := wi.InitializersToInputs(names); err != nil {
		return nil, nil, err
	}
	wiBytes, err := wi.Bytes()
	if err != nil {
		return nil, nil, err
	}
	sess, err := evalharness.OpenSession(evalharness.OpenRequest{Model: wiBytes, Outputs: names0}, opt.Session)
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close()

	ev := &fitnessEvaluator{
		sess: sess, calib: calib, outs: targets, batch: opt.Batch, layers: layers, db: sp.db,
		arrays: map[[2]int]*evalharness.Array{}, extra: sp.extraFeed, feed: sp.feed,
	}

	report := &SearchReport{Space: sp.name, Method: sp.method, Fitness: fitness, Target: opt.Target, TotalWeights: total,
		Step: sp.step, Levels: opt.Levels, Ladder: sp.ladder, Groups: len(groups), Samples: calib.N}
	if sp.name == SpaceBits {
		report.Levels = 0
	}
	if sp.parts != nil {
		report.TargetBits = opt.TargetBits
	}
	all := make([]int, calib.N)
	for i := range all {
		all[i] = i
	}
	describe := func(name string, lv []int) (Allocation, error) {
		loss, err := ev.Fitness(ctx, lv, all)
		if err != nil {
			return Allocation{}, err
		}
		a := Allocation{Name: name, Loss: loss}
		for i, l := range layers {
			k := lv[i]
			a.Cost += l.costs[k]
			if l.space != "" {
				if a.Costs == nil {
					a.Costs = map[string]int64{}
				}
				a.Costs[l.space] += l.costs[k]
			}
			a.Layers = append(a.Layers, LayerChoice{Name: l.name(), Op: l.w.Op, Params: int64(len(l.dense)),
				Level: k - l.offset, Value: l.keys[k], Cost: l.costs[k], Fraction: sp.fraction(l, k), Space: l.space})
		}
		return a, nil
	}

	// baselines
	uniName, heurName := "uniform", "per-layer-error"
	if sp.uniformName != "" {
		uniName, heurName = sp.uniformName, sp.heurName
	}
	if report.Uniform, err = describe(uniName, start); err != nil {
		return nil, nil, err
	}
	logf("%s allocation: %s %.6g", uniName, fitness, report.Uniform.Loss)
	var heur []int
	if sp.heuristic != nil {
		heur, err = sp.heuristic(ctx, ev, all)
	} else {
		heur, err = errorAllocation(ctx, layers, sl, start, sp.db)
	}
	if err != nil {
		return nil, nil, err
	}
	if report.Heuristic, err = describe(heurName, heur); err != nil {
		return nil, nil, err
	}
	logf("%s allocation: %s %.6g", heurName, fitness, report.Heuristic.Loss)
	report.PrepSeconds = time.Since(tPrep).Seconds()
	from := start
	switch opt.Start {
	case "", "best":
		report.Start = uniName
		if report.Heuristic.Loss < report.Uniform.Loss {
			from, report.Start = heur, heurName
		}
	case "uniform":
		report.Start = uniName
	default:
		return nil, nil, fmt.Errorf("search start %q: want best or uniform", opt.Start)
	}
	logf("searching from the %s allocation", report.Start)

	so := opt.Search
	so.TotalSamples = int(calib.N)
	if so.Rand == nil {
		so.Rand = rand.New(rand.NewSource(0))
	}
	t0 := time.Now()
	res, err := search.Search(ctx, sl, from, ev, so)
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
		if a.Cost != report.Uniform.Cost {
			return nil, nil, fmt.Errorf("%w: %s allocation costs %d, uniform %d", search.ErrBudget, a.Name, a.Cost, report.Uniform.Cost)
		}
		for s, c := range a.Costs {
			if c != report.Uniform.Costs[s] {
				return nil, nil, fmt.Errorf("%w: %s allocation costs %d in %s, uniform %d", search.ErrBudget, a.Name, c, s, report.Uniform.Costs[s])
			}
		}
	}
	report.Achieved = sp.achieved(report.Searched.Cost)
	if sp.parts != nil {
		report.Achieved = sp.parts[0].achieved(report.Searched.Costs[sp.parts[0].name])
		report.AchievedBits = sp.parts[1].achieved(report.Searched.Costs[sp.parts[1].name])
	}
	logf("searched allocation: %s %.6g (%d evaluations, %.1f candidates/s)", fitness, report.Searched.Loss, res.Evaluations, report.CandidatesPS)

	out, err := sp.apply(ctx, m, res.Levels)
	if err != nil {
		return nil, nil, err
	}
	if opt.Baselines {
		report.BaselineModels = map[string]*onnxio.Model{}
		for _, b := range []struct {
			name string
			lv   []int
		}{{uniName, start}, {heurName, heur}} {
			bm, err := sp.apply(ctx, m, b.lv)
			if err != nil {
				return nil, nil, err
			}
			report.BaselineModels[b.name] = bm
		}
	}
	report.Allocations = []Allocation{report.Uniform, report.Heuristic, report.Searched}
	return out, report, nil
}

// setLevels returns m with each layer's weight replaced by its level from
// the database (dense-shaped: pruned, or a low-rank product, or
// dequantized).
func setLevels(ctx context.Context, m *onnxio.Model, layers []*searchLayer, lv []int, db *LevelDB) (*onnxio.Model, error) {
	out := m.Derive()
	for i, l := range layers {
		v, err := db.Get(ctx, l.w, l.dense, l.keys[lv[i]])
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

// ApplyAllocation returns m with the layers of a sparsity allocation
// pruned to their zeros (LayerChoice.Value) by the magnitude (or given)
// builder; it serves baselines' outputs. It stops with ctx's error,
// checked before each layer, when ctx is cancelled.
func ApplyAllocation(ctx context.Context, m *onnxio.Model, a Allocation, build LevelBuilder) (*onnxio.Model, error) {
	if build == nil {
		build = MagnitudeLevel
	}
	ws, err := m.WeightMap()
	if err != nil {
		return nil, err
	}
	out := m.Derive()
	for _, lc := range a.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
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
		p, err := build(ctx, w, v, lc.Value)
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
// more compressed, another of the same group a level less) that most
// lowers the sum of relative layer errors ‖W−Ŵ‖²/‖W‖², until none does.
func errorAllocation(ctx context.Context, layers []*searchLayer, sl []search.Layer, start []int, db *LevelDB) ([]int, error) {
	errAt := make([][]float64, len(layers))
	for i, l := range layers {
		errAt[i] = make([]float64, l.levels())
		var norm float64
		for _, x := range l.dense {
			norm += float64(x) * float64(x)
		}
		ldb := db
		if l.db != nil {
			ldb = l.db
		}
		for k := 0; k < l.levels(); k++ {
			v, err := ldb.Get(ctx, l.w, l.dense, l.keys[k])
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
	for iter := 0; iter < 100000; iter++ {
		best, bi, bj := 0.0, -1, -1
		for i := range layers {
			if lv[i]+1 >= layers[i].levels() {
				continue
			}
			gainUp := errAt[i][lv[i]+1] - errAt[i][lv[i]]
			for j := range layers {
				if j == i || lv[j] == 0 || layers[j].group != layers[i].group {
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

// fitnessEvaluator scores a level configuration by the mean loss (KL,
// MSE or 1 − cosine) between the dense outputs and the candidate's over
// chosen calibration samples (averaged over the compared outputs), feeding
// the layers' weights as inputs of one session.
type fitnessEvaluator struct {
	sess   evalharness.Runner
	calib  *evalharness.Dataset
	outs   []*outTarget
	batch  int
	layers []*searchLayer
	db     *LevelDB
	arrays map[[2]int]*evalharness.Array
	// extra, if set, gives further inputs for layer i at a level.
	extra func(i, level int) map[string]*evalharness.Array
	// feed, if set, gives all weight inputs of a candidate instead.
	feed func(ctx context.Context, levels []int) (map[string]*evalharness.Array, error)
}

// outTarget is one compared output: its index among the session's
// outputs, the dense reference over the calibration set and the loss.
type outTarget struct {
	index   int
	ref     []float64
	rowLen  int
	classes int
	kind    string
	// mask, when set, is the calibration set's attention_mask ([N, T]):
	// KL over token scores counts only positions where it is 1.
	mask []int64
	t    int
}

// newOutTarget describes output index k of the session from its dense
// outputs over calib; requested is the fitness asked for ("" by shape).
func newOutTarget(k int, dense *evalharness.Array, calib *evalharness.Dataset, requested string) (*outTarget, error) {
	ref, err := dense.Float64()
	if err != nil {
		return nil, err
	}
	kind, err := FitnessForShape(requested, dense.Shape)
	if err != nil {
		return nil, err
	}
	tg := &outTarget{index: k, ref: ref, kind: kind, rowLen: len(ref) / int(calib.N)}
	tg.classes = tg.rowLen
	if len(dense.Shape) > 1 && dense.Shape[len(dense.Shape)-1] > 0 {
		tg.classes = int(dense.Shape[len(dense.Shape)-1])
	}
	if err := tg.setMask(calib, dense.Shape); err != nil {
		return nil, err
	}
	return tg, nil
}

func (e *fitnessEvaluator) weightArray(ctx context.Context, i, level int) (*evalharness.Array, error) {
	if a, ok := e.arrays[[2]int{i, level}]; ok {
		return a, nil
	}
	l := e.layers[i]
	v, err := e.db.Get(ctx, l.w, l.dense, l.keys[level])
	if err != nil {
		return nil, err
	}
	a := evalharness.FromFloat32(l.w.Shape, v)
	e.arrays[[2]int{i, level}] = a
	return a, nil
}

// Fitness implements search.Evaluator.
func (e *fitnessEvaluator) Fitness(ctx context.Context, levels []int, samples []int) (float64, error) {
	feed := map[string]*evalharness.Array{}
	layers := e.layers
	if e.feed != nil {
		f, err := e.feed(ctx, levels)
		if err != nil {
			return 0, err
		}
		for name, a := range f {
			feed[name] = a
		}
		layers = nil
	}
	for i, l := range layers {
		a, err := e.weightArray(ctx, i, levels[i])
		if err != nil {
			return 0, err
		}
		feed[l.w.Name] = a
		if e.extra != nil {
			for name, x := range e.extra(i, levels[i]) {
				feed[name] = x
			}
		}
	}
	sums := make([]float64, len(e.outs))
	rows := make([]int, len(e.outs))
	for s := 0; s < len(samples); s += e.batch {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		idx := samples[s:min(s+e.batch, len(samples))]
		for name, arr := range e.calib.Rows(idx) {
			feed[name] = arr
		}
		outs, err := e.sess.Run(feed)
		if err != nil {
			return 0, err
		}
		for o, tg := range e.outs {
			got, err := outs[tg.index].Float64()
			if err != nil {
				return 0, err
			}
			sum, n, err := tg.loss(got, idx)
			if err != nil {
				return 0, err
			}
			sums[o] += sum
			rows[o] += n
		}
	}
	var f float64
	for o := range e.outs {
		if rows[o] == 0 {
			return 0, errors.New("no samples to evaluate")
		}
		f += sums[o] / float64(rows[o])
	}
	f /= float64(len(e.outs))
	if math.IsNaN(f) {
		return 0, errors.New("fitness is NaN")
	}
	return f, nil
}

// loss returns the summed loss of one batch's output (samples idx of the
// calibration set) and the number of terms.
func (tg *outTarget) loss(got []float64, idx []int) (sum float64, rows int, err error) {
	if len(got) != len(idx)*tg.rowLen {
		return 0, 0, fmt.Errorf("candidate output has %d values for %d samples, want %d each", len(got), len(idx), tg.rowLen)
	}
	for k, sidx := range idx {
		ref := tg.ref[sidx*tg.rowLen : (sidx+1)*tg.rowLen]
		cand := got[k*tg.rowLen : (k+1)*tg.rowLen]
		switch tg.kind {
		case FitnessKL:
			c := tg.classes
			for r, pos := 0, 0; r+c <= tg.rowLen; r, pos = r+c, pos+1 {
				if tg.mask != nil && tg.mask[sidx*tg.t+pos] == 0 {
					continue
				}
				sum += evalharness.KL(ref[r:r+c], cand[r:r+c])
				rows++
			}
		case FitnessMSE:
			var se float64
			for j := range ref {
				d := ref[j] - cand[j]
				se += d * d
			}
			sum += se / float64(len(ref))
			rows++
		case FitnessCosine:
			sum += 1 - evalharness.Cosine(ref, cand)
			rows++
		}
	}
	return sum, rows, nil
}

// setMask keeps the calibration set's attention_mask when the compared
// output holds [N, T, V] token scores with T positions.
func (tg *outTarget) setMask(calib *evalharness.Dataset, shape []int64) error {
	m, ok := calib.Inputs["attention_mask"]
	if !ok || len(shape) != 3 || len(m.Shape) != 2 || m.Shape[1] != shape[1] {
		return nil
	}
	v, err := m.Int64()
	if err != nil {
		return fmt.Errorf("attention_mask: %w", err)
	}
	tg.mask, tg.t = v, int(shape[1])
	return nil
}

// subset returns the first n samples of ds (all when n ≤ 0 or n ≥ N),
// cut along each input's batch axis (see evalharness.Dataset.Range).
func subset(ds *evalharness.Dataset, n int) (*evalharness.Dataset, error) {
	return ds.Head(int64(n)), nil
}
