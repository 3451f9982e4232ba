package pipeline

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/onnxio"
)

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
// exactly `level` weights of a layer, with cal as the source of the
// calibration statistics (Wanda's column norms, SparseGPT's XᵀX).
func PrunerLevel(m *onnxio.Model, method sparsity.Method, cal calib.Stats) (LevelBuilder, error) {
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
		out, rep, err := sparsity.PruneLayer(ctx, l, sparsity.Options{Method: method, Sparsity: s}, cal)
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
func sparsitySpace(m *onnxio.Model, ws []onnxio.Weight, hash string, src *calibSource, opt LevelSearch) (*space, error) {
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
			// Magnitude levels break ties by the higher index since they
			// share sparsify's pruner; levels cached under the old key
			// (lower index first) must not be reused.
			db.Method += "/ties-high-index"
			db.Build = MagnitudeLevels()
		} else {
			req := calib.Request{Grams: weightNames(ws)} // SparseGPT
			if mt == sparsity.Wanda {
				req = calib.Request{Norms: weightNames(ws)} // d values a layer, not d²
			}
			stats, h, err := src.need(req)
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
