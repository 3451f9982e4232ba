package pipeline

import (
	"context"
	"fmt"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// SpaceSparsityBits is the combined search of sparsity and bit width on
// the same 2-D MatMul weights: every weight has one entry on the sparsity
// ladder and one on the bits ladder, in separate switch groups, so that
// both budgets (LevelSearch.Target zeros, LevelSearch.TargetBits bits)
// stay exact independently.
const SpaceSparsityBits = "sparsity,bits"

// ParseSpace normalizes a space name: "bits,sparsity" and
// "sparsity,bits" (spaces around the comma allowed) both give
// SpaceSparsityBits; any other name is returned unchanged.
func ParseSpace(s string) string {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return s
	}
	a, b := strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
	if (a == SpaceSparsity && b == SpaceBits) || (a == SpaceBits && b == SpaceSparsity) {
		return SpaceSparsityBits
	}
	return s
}

// comboLevel encodes a (zeros, bits) pair as one level of the combined
// level database; bits < 256, so the pair is recovered exactly.
func comboLevel(zeros, bits int64) int64 { return zeros<<8 | bits }

// sparsityBitsSpace builds the combined space: the sparsity space and the
// bits space on the same 2-D MatMul weights, the first len(ws) entries on
// the sparsity ladder (group 0), the next on the bits ladder (groups
// 1… by size). The weight fed for a layer is the bits builder applied to
// the sparsity builder's pruned weight, cached under a key holding both
// levels and both methods. The written model prunes each layer to its
// zeros, then packs it with quant.QuantizeMixed at its width.
func sparsityBitsSpace(m *onnxio.Model, ws []onnxio.Weight, hash string, src *calibSource, opt LevelSearch) (*space, error) {
	var sel []onnxio.Weight
	for _, w := range ws {
		if w.Op == "MatMul" && len(w.Shape) == 2 {
			sel = append(sel, w)
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("sparsity,bits space: no 2-D MatMul weight selected")
	}
	so := opt
	so.Space = SpaceSparsity
	sps, err := sparsitySpace(m, sel, hash, src, so)
	if err != nil {
		return nil, err
	}
	bo := opt
	bo.Space, bo.Target, bo.Method = SpaceBits, opt.TargetBits, opt.BitsMethod
	bs, err := bitsSpace(m, sel, hash, src, bo)
	if err != nil {
		return nil, err
	}
	n := len(sel)
	if len(sps.layers) != n || len(bs.layers) != n {
		return nil, fmt.Errorf("sparsity,bits space: %d sparsity and %d bits layers for %d weights", len(sps.layers), len(bs.layers), n)
	}
	firstBits := 0
	for _, l := range sps.layers {
		firstBits = max(firstBits, l.group+1)
		l.db, l.space, l.label = sps.db, SpaceSparsity, l.w.Name+" (sparsity)"
	}
	for i, l := range bs.layers {
		if l.w.Name != sps.layers[i].w.Name {
			return nil, fmt.Errorf("sparsity,bits space: layer %d is %q in one space, %q in the other", i, sps.layers[i].w.Name, l.w.Name)
		}
		l.group += firstBits
		l.db, l.space, l.label = bs.db, SpaceBits, l.w.Name+" (bits)"
	}
	layers := append(append([]*searchLayer(nil), sps.layers...), bs.layers...)

	combo := &LevelDB{Dir: opt.CacheDir, ModelHash: hash, Log: opt.Log,
		Method:    sps.db.Method + "+" + bs.db.Method,
		CalibHash: sps.db.CalibHash + "+" + bs.db.CalibHash,
	}
	combo.Build = func(ctx context.Context, w onnxio.Weight, dense []float32, level int64) ([]float32, error) {
		zeros, bits := level>>8, level&0xff
		pruned, err := sps.db.Get(ctx, w, dense, zeros)
		if err != nil {
			return nil, err
		}
		return bs.db.Build(ctx, w, pruned, bits)
	}
	var sCost, bCost int64 // the uniform budgets, checked for every candidate
	for j := 0; j < n; j++ {
		sCost += sps.layers[j].costs[sps.layers[j].offset]
		bCost += bs.layers[j].costs[bs.layers[j].offset]
	}
	arrays := map[[3]int]*evalharness.Array{}
	feed := func(ctx context.Context, levels []int) (map[string]*evalharness.Array, error) {
		var sc, bc int64
		out := make(map[string]*evalharness.Array, n)
		for j := 0; j < n; j++ {
			sl, bl := layers[j], layers[n+j]
			ks, kb := levels[j], levels[n+j]
			sc += sl.costs[ks]
			bc += bl.costs[kb]
			key := [3]int{j, ks, kb}
			a, ok := arrays[key]
			if !ok {
				v, err := combo.Get(ctx, sl.w, sl.dense, comboLevel(sl.keys[ks], bl.keys[kb]))
				if err != nil {
					return nil, err
				}
				a = evalharness.FromFloat32(sl.w.Shape, v)
				arrays[key] = a
			}
			out[sl.w.Name] = a
		}
		if sc != sCost || bc != bCost {
			return nil, fmt.Errorf("candidate budgets: %d nonzeros and %d bits, want %d and %d", sc, bc, sCost, bCost)
		}
		return out, nil
	}
	return &space{
		name: SpaceSparsityBits, method: sps.method + "," + bs.method, layers: layers, db: combo,
		step: sps.step, ladder: bs.ladder, parts: []*space{sps, bs}, feed: feed,
		achieved: func(cost int64) float64 { return 0 }, // per part: see RunSearch
		fraction: func(l *searchLayer, k int) float64 {
			if l.space == SpaceBits {
				return bs.fraction(l, k)
			}
			return sps.fraction(l, k)
		},
		apply: func(ctx context.Context, m *onnxio.Model, lv []int) (*onnxio.Model, error) {
			pruned, err := setLevels(ctx, m, sps.layers, lv[:n], sps.db)
			if err != nil {
				return nil, err
			}
			return bs.apply(ctx, pruned, lv[n:])
		},
	}, nil
}
