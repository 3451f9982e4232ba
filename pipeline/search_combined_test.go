package pipeline

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

func TestParseSpace(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sparsity,bits", SpaceSparsityBits},
		{"bits,sparsity", SpaceSparsityBits},
		{"bits, sparsity", SpaceSparsityBits},
		{"sparsity", SpaceSparsity},
		{"sparsity,rank", "sparsity,rank"},
		{"bits,bits", "bits,bits"},
	} {
		if got := ParseSpace(tc.in); got != tc.want {
			t.Errorf("ParseSpace(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSparsityBitsSearchOnZoo searches sparsity and bits together on the
// transformer's MatMul weights at 50 % zeros and 3 bits: both budgets are
// exact in every allocation, the same seed gives the same bytes, the
// written model (pruned, then packed by quant) holds at least each
// layer's pruned fraction of zeros and computes the KL the search
// reported. A second and third run (the other order, then reading the
// disk cache) give the same bytes.
func TestSparsityBitsSearchOnZoo(t *testing.T) {
	m, ds := loadZoo(t, "transformer", 96)
	cache := t.TempDir()
	run := func(space, dir string) (*onnxio.Model, *SearchReport) {
		out, rep, err := RunSearch(context.Background(), m, ds, LevelSearch{Space: space, Target: 0.5, TargetBits: 3, Levels: 4, CacheDir: dir, Search: smallSearch(3)})
		if err != nil {
			t.Fatal(err)
		}
		return out, rep
	}
	out, rep := run("sparsity,bits", "")
	b1, _ := out.Bytes()
	// same seed, either order, levels built into and then read back from
	// the disk cache: the same bytes
	for _, space := range []string{"bits,sparsity", "sparsity,bits"} {
		o, _ := run(space, cache)
		if b, _ := o.Bytes(); string(b) != string(b1) {
			t.Errorf("%s with the cache: same seed gave a different model", space)
		}
	}
	if rep.Space != SpaceSparsityBits || len(rep.Searched.Layers)%2 != 0 {
		t.Fatalf("space %q with %d entries", rep.Space, len(rep.Searched.Layers))
	}
	n := len(rep.Searched.Layers) / 2
	// both budgets, recomputed from the entries, in every allocation
	zerosOf := func(a Allocation) (zeros, params, bits int64) {
		for i, lc := range a.Layers {
			switch {
			case i < n && lc.Space == SpaceSparsity && strings.HasSuffix(lc.Name, " (sparsity)"):
				zeros += lc.Value
				params += lc.Params
			case i >= n && lc.Space == SpaceBits && strings.HasSuffix(lc.Name, " (bits)"):
				bits += lc.Value * lc.Params
			default:
				t.Fatalf("%s: entry %d is %q in space %q", a.Name, i, lc.Name, lc.Space)
			}
		}
		return
	}
	uz, up, ub := zerosOf(rep.Uniform)
	if up != rep.TotalWeights {
		t.Errorf("sparsity entries cover %d weights, report %d", up, rep.TotalWeights)
	}
	for _, a := range []Allocation{rep.Uniform, rep.Heuristic, rep.Searched} {
		z, _, b := zerosOf(a)
		if z != uz || b != ub {
			t.Errorf("%s: %d zeros and %d bits, uniform %d and %d", a.Name, z, b, uz, ub)
		}
		if a.Costs[SpaceSparsity] != up-z || a.Costs[SpaceBits] != b {
			t.Errorf("%s: costs %v, want %d nonzeros and %d bits", a.Name, a.Costs, up-z, b)
		}
	}
	if math.Abs(rep.Achieved-0.5) > 0.01 || math.Abs(rep.AchievedBits-3) > 0.1 {
		t.Errorf("achieved %.4f zeros and %.4f bits, want about 0.5 and 3", rep.Achieved, rep.AchievedBits)
	}
	if got := float64(uz) / float64(up); got != rep.Achieved {
		t.Errorf("achieved %.6f, entries give %.6f", rep.Achieved, got)
	}
	if got := float64(ub) / float64(up); got != rep.AchievedBits {
		t.Errorf("achieved %.6f bits, entries give %.6f", rep.AchievedBits, got)
	}
	// the written model: every searched weight packed in one MatMulNBits
	// whose dequantized values, (code − zero point)·scale, hold at least
	// the layer's pruned zeros (0 is on the asymmetric grid)
	zeros := writtenZeros(t, out)
	for _, lc := range rep.Searched.Layers[:n] {
		name := strings.TrimSuffix(lc.Name, " (sparsity)")
		if out.HasInitializer(name) {
			t.Errorf("%s is still stored in float", name)
		}
		z, ok := zeros[name]
		if !ok {
			t.Errorf("%s: no MatMulNBits in the written model", name)
			continue
		}
		t.Logf("%s: pruned %d, %d zeros written", name, lc.Value, z)
		if z < lc.Value {
			t.Errorf("%s: %d zeros in the written model, pruned %d", name, z, lc.Value)
		}
	}
	kl := meanKL(t, m, out, ds)
	t.Logf("written model KL %.6g, search %.6g (uniform %.6g, per-layer-error %.6g)", kl, rep.Searched.Loss, rep.Uniform.Loss, rep.Heuristic.Loss)
	if kl <= 0 || math.Abs(kl-rep.Searched.Loss) > 1e-4*math.Max(1, rep.Searched.Loss) {
		t.Errorf("written model KL %.6g, search reported %.6g", kl, rep.Searched.Loss)
	}
	if md := SearchMarkdown(rep); !strings.Contains(md, " (sparsity) |") || !strings.Contains(md, " bits |") {
		t.Errorf("report lacks the per-space entries:\n%s", md)
	}
}

// writtenZeros unpacks every MatMulNBits of m (asymmetric, with zero
// points) and counts the weights whose dequantized value is 0, keyed by
// the weight name before packing (the B input's name less "_Q<bits>").
func writtenZeros(t *testing.T, m *onnxio.Model) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	raw := func(name string) []byte {
		tt, err := m.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		return tt.Bytes()
	}
	code := func(b []byte, i, bits int) int {
		bit := i * bits
		return int(b[bit/8]>>(bit%8)) & (1<<bits - 1)
	}
	for _, nd := range m.Nodes() {
		if nd.OpType != "MatMulNBits" || len(nd.Inputs) < 4 {
			continue
		}
		k, n := int(nd.Int("K", 0)), int(nd.Int("N", 0))
		bits, bs := int(nd.Int("bits", 0)), int(nd.Int("block_size", 0))
		nb := (k + bs - 1) / bs
		blob, zpRow := bs*bits/8, (nb*bits+7)/8
		B, zp := raw(nd.Inputs[1]), raw(nd.Inputs[3])
		st, err := m.Initializer(nd.Inputs[2])
		if err != nil {
			t.Fatal(err)
		}
		scales, err := st.Float32()
		if err != nil {
			t.Fatal(err)
		}
		var z int64
		for c := 0; c < n; c++ {
			for j := 0; j < nb; j++ {
				zc := code(zp[c*zpRow:], j, bits)
				for i := 0; i < bs && j*bs+i < k; i++ {
					if float32(code(B[(c*nb+j)*blob:], i, bits)-zc)*scales[c*nb+j] == 0 {
						z++
					}
				}
			}
		}
		out[strings.TrimSuffix(nd.Inputs[1], fmt.Sprintf("_Q%d", bits))] = z
	}
	return out
}
