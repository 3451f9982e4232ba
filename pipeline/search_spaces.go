package pipeline

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"sync"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
)

// lazyStats captures the input Gram matrices of the searched weights on
// the first request only, so that a run whose levels are all in the disk
// cache never runs the capture.
type lazyStats struct {
	// ctx is the search's: the capture runs on the first InputGram, from
	// inside a level builder, whose calibration interface has no context.
	ctx   context.Context
	once  sync.Once
	m     *onnxio.Model
	ds    *evalharness.Dataset
	names []string
	opt   evalharness.CaptureOptions
	st    *evalharness.Stats
	err   error
	logf  func(string, ...any)
}

// InputGram implements the calibration interface of the compression and
// quantization packages.
func (l *lazyStats) InputGram(weight string) ([]float64, int, int64, error) {
	l.once.Do(func() {
		l.logf("capturing the input Gram matrices of %d layers on %d calibration samples", len(l.names), l.ds.N)
		l.opt.Grams = l.names
		l.st, l.err = evalharness.Capture(l.ctx, l.m, l.ds, l.opt)
	})
	if l.err != nil {
		return nil, 0, 0, l.err
	}
	return l.st.InputGram(weight)
}

func newLazyStats(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, ws []onnxio.Weight, opt LevelSearch, logf func(string, ...any)) (*lazyStats, string, error) {
	ds, err := subset(calib, opt.CalibSamples)
	if err != nil {
		return nil, "", err
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Name
	}
	return &lazyStats{ctx: ctx, m: m, ds: ds, names: names, logf: logf,
		opt: evalharness.CaptureOptions{Batch: opt.Batch, Session: opt.Session}}, DatasetHash(ds), nil
}

// PrunedSparsity returns a fraction s for which package sparsity prunes
// exactly `zeros` of n weights (sparsity.PrunedCount(s, n) == zeros).
func PrunedSparsity(zeros int64, n int) (float64, error) {
	if zeros < 0 || zeros >= int64(n) {
		return 0, fmt.Errorf("%d zeros of %d weights: outside [0, n)", zeros, n)
	}
	s := float64(zeros) / float64(n)
	for i := 0; i < 64 && int64(sparsity.PrunedCount(s, n)) < zeros; i++ {
		s = math.Nextafter(s, 1)
	}
	for i := 0; i < 64 && int64(sparsity.PrunedCount(s, n)) > zeros; i++ {
		s = math.Nextafter(s, 0)
	}
	if int64(sparsity.PrunedCount(s, n)) != zeros {
		return 0, fmt.Errorf("no sparsity prunes exactly %d of %d weights", zeros, n)
	}
	return s, nil
}

// PrunerLevel returns a LevelBuilder that prunes with package sparsity's
// per-layer unstructured method (wanda or sparsegpt; magnitude works too)
// exactly `level` weights of a layer, with calib as the source of XᵀX.
func PrunerLevel(m *onnxio.Model, method sparsity.Method, calib sparsity.Calibration) (LevelBuilder, error) {
	cands, _, err := sparsity.Candidates(m, sparsity.Selection{})
	if err != nil {
		return nil, err
	}
	layouts := map[string]sparsity.Layer{}
	for _, c := range cands {
		layouts[c.Name] = c
	}
	return func(ctx context.Context, w onnxio.Weight, values []float32, zeros int64) ([]float32, error) {
		l, ok := layouts[w.Name]
		if !ok {
			return nil, fmt.Errorf("package sparsity cannot prune %q", w.Name)
		}
		if zeros == int64(len(values)) {
			return make([]float32, len(values)), nil
		}
		s, err := PrunedSparsity(zeros, len(values))
		if err != nil {
			return nil, err
		}
		l.Data = values
		out, rep, err := sparsity.PruneLayer(ctx, l, sparsity.Options{Method: method, Sparsity: s}, calib)
		if err != nil {
			return nil, err
		}
		if out == nil {
			return nil, fmt.Errorf("package sparsity skipped %q: %s", w.Name, rep.Skipped)
		}
		if int64(rep.Pruned) != zeros {
			return nil, fmt.Errorf("package sparsity pruned %d weights of %q, want %d", rep.Pruned, w.Name, zeros)
		}
		return out, nil
	}, nil
}

// sparsitySpace builds ladders of equal steps of zeros in every layer.
func sparsitySpace(ctx context.Context, m *onnxio.Model, ws []onnxio.Weight, hash string, calib *evalharness.Dataset, opt LevelSearch, logf func(string, ...any)) (*space, error) {
	if !(opt.Target > 0 && opt.Target < 1) {
		return nil, fmt.Errorf("sparsity target %v outside (0, 1)", opt.Target)
	}
	method := opt.Method
	if method == "" {
		method = string(sparsity.Magnitude)
	}
	db := &LevelDB{Dir: opt.CacheDir, ModelHash: hash, Log: opt.Log, Method: "sparsity/" + method, Build: opt.Builder}
	if db.Build == nil {
		mt, err := sparsity.ParseMethod(method)
		if err != nil {
			return nil, err
		}
		if mt == sparsity.Magnitude {
			db.Build = MagnitudeLevels()
		} else {
			stats, h, err := newLazyStats(ctx, m, calib, ws, opt, logf)
			if err != nil {
				return nil, err
			}
			db.CalibHash = h
			if db.Build, err = PrunerLevel(m, mt, stats); err != nil {
				return nil, err
			}
		}
	}
	layers := make([]*searchLayer, len(ws))
	var sizes []int64
	var total int64
	for i, w := range ws {
		v, err := weightValues(m, w)
		if err != nil {
			return nil, err
		}
		total += int64(len(v))
		sizes = append(sizes, int64(len(v)))
		layers[i] = &searchLayer{w: w, dense: v}
	}
	step := opt.Step
	if step <= 0 {
		sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
		median := sizes[len(sizes)/2]
		step = int64(0.5 * math.Min(opt.Target, 1-opt.Target) / float64(opt.Levels) * float64(median))
		step = max(step, 1)
	}
	for _, l := range layers {
		n := int64(len(l.dense))
		base := int64(math.Round(opt.Target * float64(n)))
		down := min(int64(opt.Levels), base/step)     // fewer zeros
		up := min(int64(opt.Levels), (n-1-base)/step) // more zeros, never all
		l.offset = int(down)
		for k := -down; k <= up; k++ {
			z := base + k*step
			l.keys = append(l.keys, z)
			l.costs = append(l.costs, n-z) // nonzeros: falls by step per level
		}
	}
	return &space{
		name: SpaceSparsity, method: method, layers: layers, db: db, step: step,
		achieved: func(cost int64) float64 { return float64(total-cost) / float64(total) },
		fraction: func(l *searchLayer, k int) float64 { return float64(l.keys[k]) / float64(len(l.dense)) },
		apply: func(ctx context.Context, m *onnxio.Model, lv []int) (*onnxio.Model, error) {
			return setLevels(ctx, m, layers, lv, db)
		},
	}, nil
}

func weightValues(m *onnxio.Model, w onnxio.Weight) ([]float32, error) {
	t, err := m.Initializer(w.Name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}

// matrixDims returns the matrix view of a weight for the rank space: rows
// are the tensor's first axis (K of MatMul B [K,N], N of Gemm B with
// transB, O of Conv W), columns the rest. The low-rank approximant does
// not depend on the orientation.
func matrixDims(w onnxio.Weight) (int, int) {
	rows := int(w.Shape[0])
	cols := 1
	for _, d := range w.Shape[1:] {
		cols *= int(d)
	}
	return rows, cols
}

// SVDLevel returns a LevelBuilder whose level is a rank: the product A·B
// of the rank-r factors of the layer's exact SVD, dense-shaped. SVDs are
// computed once per layer.
func SVDLevel() LevelBuilder {
	var mu sync.Mutex
	svds := map[string]*lowrank.SVD{}
	return func(ctx context.Context, w onnxio.Weight, values []float32, rank int64) ([]float32, error) {
		m, n := matrixDims(w)
		if rank < 1 || rank > int64(min(m, n)) {
			return nil, fmt.Errorf("rank %d outside [1, %d]", rank, min(m, n))
		}
		mu.Lock()
		s, ok := svds[w.Name]
		mu.Unlock()
		if !ok {
			x := make([]float64, len(values))
			for i, v := range values {
				x[i] = float64(v)
			}
			var err error
			if s, err = lowrank.ExactSVD(x, m, n); err != nil {
				return nil, err
			}
			mu.Lock()
			svds[w.Name] = s
			mu.Unlock()
		}
		r := int(rank)
		a, b := s.Factors(r)
		out := make([]float32, m*n)
		row := make([]float64, n)
		for i := 0; i < m; i++ {
			clear(row)
			for k := 0; k < r; k++ {
				aik := a[i*r+k]
				bk := b[k*n : (k+1)*n]
				for j, x := range bk {
					row[j] += aik * x
				}
			}
			for j, x := range row {
				out[i*n+j] = float32(x)
			}
		}
		return out, nil
	}
}

// rankSpace builds rank ladders: layer i at rank r costs r·(mᵢ+nᵢ)
// parameters, so layers are grouped by mᵢ+nᵢ (EvoPress's group_rule size)
// and a level step is Δr ranks, equal inside a group. Ranks stay in [1,
// BreakEven(m,n)], where the factorization saves parameters, so the cost
// is exactly what the two-MatMul rewrite keeps.
func rankSpace(m *onnxio.Model, ws []onnxio.Weight, hash string, opt LevelSearch) (*space, error) {
	if !(opt.Target > 0 && opt.Target < 1) {
		return nil, fmt.Errorf("rank target %v (fraction of parameters kept) outside (0, 1)", opt.Target)
	}
	method := opt.Method
	if method == "" {
		method = "svd"
	}
	if method != "svd" {
		return nil, fmt.Errorf("rank levels: method %q, want svd", method)
	}
	db := &LevelDB{Dir: opt.CacheDir, ModelHash: hash, Log: opt.Log, Method: "rank/svd", Build: SVDLevel()}
	var layers []*searchLayer
	var total int64
	type info struct{ m, n, be, ru int }
	var infos []info
	for _, w := range ws {
		if w.Op != "MatMul" && w.Op != "Gemm" {
			continue // convs: the rewrite's schemes depend on strides and groups
		}
		mm, nn := matrixDims(w)
		be := lowrank.BreakEven(mm, nn)
		if be < 1 {
			continue
		}
		v, err := weightValues(m, w)
		if err != nil {
			return nil, err
		}
		ru := int(math.Floor(opt.Target * float64(mm*nn) / float64(mm+nn)))
		ru = min(max(ru, 1), be)
		layers = append(layers, &searchLayer{w: w, dense: v})
		infos = append(infos, info{mm, nn, be, ru})
		total += int64(mm * nn)
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("rank space: no MatMul or Gemm layer can save parameters")
	}
	keys := make([]int64, len(layers))
	for i, in := range infos {
		keys[i] = int64(in.m + in.n)
	}
	groups := search.GroupBySize(keys)
	// Δr per group from its smallest break-even rank
	minBE := map[int]int{}
	for i, g := range groups {
		if v, ok := minBE[g]; !ok || infos[i].be < v {
			minBE[g] = infos[i].be
		}
	}
	for i, l := range layers {
		in := infos[i]
		g := groups[i]
		dr := max(1, int(0.5*math.Min(opt.Target, 1-opt.Target)/float64(opt.Levels)*float64(minBE[g])))
		down := min(opt.Levels, (in.ru-1)/dr)
		up := min(opt.Levels, (in.be-in.ru)/dr)
		l.group, l.offset = g, down
		for k := -down; k <= up; k++ {
			r := in.ru + k*dr
			l.keys = append(l.keys, int64(r))
			l.costs = append(l.costs, int64(r*(in.m+in.n)))
		}
	}
	return &space{
		name: SpaceRank, method: method, layers: layers, db: db,
		achieved: func(cost int64) float64 { return float64(cost) / float64(total) },
		fraction: func(l *searchLayer, k int) float64 { return float64(l.costs[k]) / float64(len(l.dense)) },
		apply: func(ctx context.Context, m *onnxio.Model, lv []int) (*onnxio.Model, error) {
			out := m.Derive()
			for i, l := range layers {
				_, err := lowrank.Apply(ctx, out, lowrank.Options{
					Scheme:  lowrank.SchemeSVD,
					Rule:    lowrank.Rule{Kind: lowrank.ByRank, Value: float64(l.keys[lv[i]])},
					Include: regexp.MustCompile("^" + regexp.QuoteMeta(l.w.Name) + "$"),
					Method:  lowrank.Exact,
				})
				if err != nil {
					return nil, fmt.Errorf("low-rank rewrite of %q at rank %d: %w", l.w.Name, l.keys[lv[i]], err)
				}
			}
			return out, nil
		},
	}, nil
}

// BitsLevel returns a LevelBuilder whose level is a bit width: the MatMul
// weight B [K,N] quantized block-wise along K by package quant (RTN, or
// GPTQ with calib) and dequantized.
func BitsLevel(method string, block int, calib quant.Calibration) LevelBuilder {
	return func(ctx context.Context, w onnxio.Weight, values []float32, bits int64) ([]float32, error) {
		if w.Op != "MatMul" || len(w.Shape) != 2 {
			return nil, fmt.Errorf("bits levels: %q is not a 2-D MatMul weight", w.Name)
		}
		k, n := int(w.Shape[0]), int(w.Shape[1])
		bo := quant.BlockOptions{Bits: int(bits), BlockSize: block}
		var b *quant.Blockwise
		var err error
		if method == "gptq" {
			xtx, d, _, gerr := calib.InputGram(w.Name)
			if gerr != nil {
				return nil, gerr
			}
			if d != k {
				return nil, fmt.Errorf("Gram of %q is %d×%d, want %d", w.Name, d, d, k)
			}
			b, _, err = quant.GPTQ(ctx, values, k, n, xtx, quant.GPTQOptions{Block: bo})
		} else {
			b, err = quant.QuantizeRTN(values, k, n, bo)
		}
		if err != nil {
			return nil, err
		}
		return b.Dequantize(), nil
	}
}

// bitsSpace builds bit-width ladders (package quant's block-wise widths)
// on the 2-D MatMul weights: a layer of n weights at b bits costs b·n, so
// layers are grouped by n and the ladder's steps must be equal (2,4 or
// 4,8 — quant supports 2, 4 and 8 bits). The start gives the
// lower width to the first layers of each group in graph order and the
// higher one to the rest, so that each group averages the target as
// closely as whole layers allow; the budget is then exact for every
// candidate.
func bitsSpace(ctx context.Context, m *onnxio.Model, ws []onnxio.Weight, hash string, calib *evalharness.Dataset, opt LevelSearch, logf func(string, ...any)) (*space, error) {
	ladder := opt.Bits
	if len(ladder) == 0 {
		if opt.Target <= 4 {
			ladder = []int{2, 4}
		} else {
			ladder = []int{4, 8}
		}
	}
	for i := 1; i < len(ladder); i++ {
		if ladder[i]-ladder[i-1] != ladder[1]-ladder[0] || ladder[i] <= ladder[i-1] {
			return nil, fmt.Errorf("bits ladder %v: steps must be equal and increasing for an exact budget", ladder)
		}
	}
	if len(ladder) < 2 || opt.Target < float64(ladder[0]) || opt.Target > float64(ladder[len(ladder)-1]) {
		return nil, fmt.Errorf("bits target %v outside the ladder %v", opt.Target, ladder)
	}
	block := opt.BlockSize
	if block == 0 {
		block = 32
	}
	method := opt.Method
	if method == "" {
		method = "rtn"
	}
	db := &LevelDB{Dir: opt.CacheDir, ModelHash: hash, Log: opt.Log, Method: fmt.Sprintf("bits/%s/b%d", method, block)}
	var layers []*searchLayer
	for _, w := range ws {
		if w.Op == "MatMul" && len(w.Shape) == 2 {
			v, err := weightValues(m, w)
			if err != nil {
				return nil, err
			}
			layers = append(layers, &searchLayer{w: w, dense: v})
		}
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("bits space: no 2-D MatMul weight selected")
	}
	var qcalib quant.Calibration // GPTQ's XᵀX, also for the packed output
	switch method {
	case "rtn":
		db.Build = BitsLevel(method, block, nil)
	case "gptq":
		sel := make([]onnxio.Weight, len(layers))
		for i, l := range layers {
			sel[i] = l.w
		}
		stats, h, err := newLazyStats(ctx, m, calib, sel, opt, logf)
		if err != nil {
			return nil, err
		}
		db.CalibHash = h
		db.Build = BitsLevel(method, block, stats)
		qcalib = stats
	default:
		return nil, fmt.Errorf("bits levels: method %q, want rtn or gptq", method)
	}
	sizes := make([]int64, len(layers))
	var total int64
	for i, l := range layers {
		sizes[i] = int64(len(l.dense))
		total += sizes[i]
	}
	groups := search.GroupBySize(sizes)
	members := map[int][]int{}
	for i, g := range groups {
		members[g] = append(members[g], i)
	}
	// start: per group, the target's mean bits as closely as whole
	// ladder steps allow (floor(T) level everywhere, then the remaining
	// steps spread over the group's later layers)
	stepBits := float64(ladder[1] - ladder[0])
	for g, idx := range members {
		steps := int(math.Round((opt.Target - float64(ladder[0])) / stepBits * float64(len(idx))))
		per, extra := steps/len(idx), steps%len(idx)
		for j, i := range idx {
			lv := per
			if j >= len(idx)-extra {
				lv++
			}
			lv = min(lv, len(ladder)-1)
			l := layers[i]
			l.group, l.offset = g, lv
			n := int64(len(l.dense))
			for _, b := range ladder {
				l.keys = append(l.keys, int64(b))
				l.costs = append(l.costs, int64(b)*n)
			}
		}
	}
	return &space{
		name: SpaceBits, method: method, layers: layers, db: db, ladder: ladder,
		achieved: func(cost int64) float64 { return float64(cost) / float64(total) },
		fraction: func(l *searchLayer, k int) float64 { return float64(l.keys[k]) },
		// the written model holds the real packed weights: MatMulNBits with
		// each layer's own width (the same codes the search evaluated
		// dequantized); weights outside the search stay float
		apply: func(ctx context.Context, m *onnxio.Model, lv []int) (*onnxio.Model, error) {
			bits := make(map[string]int, len(layers))
			for i, l := range layers {
				bits[l.w.Name] = int(l.keys[lv[i]])
			}
			q, _, err := quant.QuantizeMixed(ctx, m, bits, quant.Options{Method: method, BlockSize: block, Calibration: qcalib, BitsOnly: true})
			return q, err
		},
	}, nil
}
