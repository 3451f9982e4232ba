package pipeline

import (
	"context"
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
)

// BitsLevel returns a LevelBuilder whose level is a bit width: the MatMul
// weight B [K,N] quantized block-wise along K by package quant (RTN, or
// GPTQ with cal's XᵀX) and dequantized.
func BitsLevel(method string, block int, cal calib.Stats) LevelBuilder {
	return func(ctx context.Context, w onnxio.Weight, values []float32, bits int64) ([]float32, error) {
		if w.Op != "MatMul" || len(w.Shape) != 2 {
			return nil, fmt.Errorf("bits levels: %q is not a 2-D MatMul weight", w.Name)
		}
		k, n := int(w.Shape[0]), int(w.Shape[1])
		bo := quant.BlockOptions{Bits: int(bits), BlockSize: block}
		var b *quant.Blockwise
		var err error
		if method == "gptq" {
			xtx, d, _, gerr := cal.InputGram(w.Name)
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
func bitsSpace(m *onnxio.Model, ws []onnxio.Weight, hash string, src *calibSource, opt LevelSearch) (*space, error) {
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
	var qcalib calib.Stats // GPTQ's XᵀX, also for the packed output
	switch method {
	case "rtn":
		db.Build = BitsLevel(method, block, nil)
	case "gptq":
		sel := make([]onnxio.Weight, len(layers))
		for i, l := range layers {
			sel[i] = l.w
		}
		stats, h, err := src.need(calib.Request{Grams: weightNames(sel)})
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
