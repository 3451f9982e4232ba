package pipeline

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sync"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/onnxio"
)

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
