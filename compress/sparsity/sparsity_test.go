package sparsity

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/internal/selection/selectiontest"
)

func randMat(rng *rand.Rand, n int) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	return w
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in      string
		want    Pattern
		wantErr bool
	}{
		{"2:4", Pattern{2, 4}, false},
		{"4:8", Pattern{4, 8}, false},
		{" 1:16 ", Pattern{1, 16}, false},
		{"4:4", Pattern{}, true},
		{"5:4", Pattern{}, true},
		{"0:4", Pattern{}, true},
		{"2-4", Pattern{}, true},
		{"a:4", Pattern{}, true},
		{"", Pattern{}, true},
	}
	for _, tc := range tests {
		got, err := ParsePattern(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParsePattern(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPrunedCount(t *testing.T) {
	tests := []struct {
		s    float64
		n    int
		want int
	}{
		{0.5, 10, 5}, {0.5, 11, 5}, {0.7, 10, 7}, {0.7, 3, 2},
		{0.29, 100, 29}, // 0.29*100 is 28.999999999999996 in float64
		{0.57, 100, 57}, // 56.99999999999999
		{0, 100, 0}, {0.999, 1000, 999}, {0.5, 0, 0},
	}
	for _, tc := range tests {
		if got := PrunedCount(tc.s, tc.n); got != tc.want {
			t.Errorf("PrunedCount(%v, %d) = %d, want %d", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestSplitCountsSum(t *testing.T) {
	for _, s := range []float64{0.1, 0.5, 0.7, 0.33} {
		sizes := []int{7, 13, 1, 128, 5}
		got := splitCounts(s, sizes)
		sum, n := 0, 0
		for i, c := range got {
			if c < 0 || c > sizes[i] {
				t.Fatalf("s=%v: unit %d prunes %d of %d", s, i, c, sizes[i])
			}
			sum += c
			n += sizes[i]
		}
		if sum != PrunedCount(s, n) {
			t.Errorf("s=%v: sum %d, want %d", s, sum, PrunedCount(s, n))
		}
	}
}

func TestMaskNM(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, tc := range []struct {
		sh Shape
		p  Pattern
	}{
		{Shape{5, 16, 1}, Pattern{2, 4}},
		{Shape{3, 24, 1}, Pattern{4, 8}},
		{Shape{4, 8 * 9, 9}, Pattern{2, 4}}, // conv 3x3, C=8
		{Shape{2, 12, 1}, Pattern{1, 3}},
	} {
		w := randMat(rng, tc.sh.Len())
		scores := MagnitudeScores(w)
		pr, err := MaskNM(scores, tc.sh, tc.p)
		if err != nil {
			t.Fatal(err)
		}
		// every group (stride apart) prunes exactly M-N, and each pruned
		// score is <= each kept score of its group.
		for r := 0; r < tc.sh.Rows; r++ {
			for s := 0; s < tc.sh.Stride; s++ {
				for c0 := 0; c0 < tc.sh.Reduction(); c0 += tc.p.M {
					var kept, dropped []float64
					for q := 0; q < tc.p.M; q++ {
						j := r*tc.sh.Cols + (c0+q)*tc.sh.Stride + s
						if pr[j] {
							dropped = append(dropped, scores[j])
						} else {
							kept = append(kept, scores[j])
						}
					}
					if len(dropped) != tc.p.M-tc.p.N {
						t.Fatalf("%v: group pruned %d", tc, len(dropped))
					}
					for _, d := range dropped {
						for _, k := range kept {
							if d > k {
								t.Fatalf("%v: pruned %v > kept %v", tc, d, k)
							}
						}
					}
				}
			}
		}
	}
	// ties: all-equal scores prune the later columns of each group
	pr, _ := MaskNM(make([]float64, 8), Shape{1, 8, 1}, Pattern{2, 4})
	want := []bool{false, false, true, true, false, false, true, true}
	for i := range want {
		if pr[i] != want[i] {
			t.Fatalf("tie mask %v, want %v", pr, want)
		}
	}
	if _, err := MaskNM(make([]float64, 6), Shape{1, 6, 1}, Pattern{2, 4}); err == nil {
		t.Error("6 columns with M=4: want error")
	}
	if _, err := MaskNM([]float64{math.NaN(), 1, 2, 3}, Shape{1, 4, 1}, Pattern{2, 4}); err == nil {
		t.Error("NaN score: want error")
	}
}

func TestVerifyNM(t *testing.T) {
	p := Pattern{2, 4}
	tests := []struct {
		name  string
		l     Layout
		dims  []int64
		data  []float32
		viol  int
		group int
	}{
		// [K=4,N=2]: column 0 = 1,1,1,0 (3 non-zeros), column 1 = 1,0,0,0
		{"KN bad column", LayoutKN, []int64{4, 2}, []float32{1, 1, 1, 0, 1, 0, 0, 0}, 1, 2},
		// rows are 2:4 along N but columns are not: still a violation along K
		{"KN axis", LayoutKN, []int64{4, 4}, []float32{1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0}, 2, 4},
		{"NK ok", LayoutNK, []int64{2, 4}, []float32{1, 0, 2, 0, 0, 0, 0, 3}, 0, 2},
		{"NK bad", LayoutNK, []int64{1, 8}, []float32{1, 0, 0, 0, 1, 1, 1, 0}, 1, 2},
		// conv [O=1,C=4,1,2]: position 0 channels = 1,1,1,0 -> bad; position 1 = 0,0,0,1
		{"conv", LayoutConv, []int64{1, 4, 1, 2}, []float32{1, 0, 1, 0, 1, 0, 0, 1}, 1, 2},
	}
	for _, tc := range tests {
		c, err := VerifyNM(tc.data, tc.l, tc.dims, p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Violations != tc.viol || c.Groups != tc.group || c.OK() != (tc.viol == 0) {
			t.Errorf("%s: got %+v, want %d violations of %d groups", tc.name, c, tc.viol, tc.group)
		}
	}
	if _, err := VerifyNM(make([]float32, 6), LayoutNK, []int64{1, 6}, p); err == nil {
		t.Error("reduction 6 with M=4: want error")
	}
	if _, err := VerifyNM(make([]float32, 5), LayoutNK, []int64{1, 6}, p); err == nil {
		t.Error("short data: want error")
	}
}

// TestNMRoundTripLayouts prunes each layout through the matrix view and
// checks the output with the independent verifier, then breaks one group.
func TestNMRoundTripLayouts(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, tc := range []struct {
		l    Layout
		dims []int64
		p    Pattern
	}{
		{LayoutKN, []int64{16, 6}, Pattern{2, 4}},
		{LayoutNK, []int64{6, 16}, Pattern{2, 4}},
		{LayoutKN, []int64{16, 3}, Pattern{4, 8}},
		{LayoutConv, []int64{3, 8, 3, 3}, Pattern{2, 4}},
		{LayoutConv, []int64{2, 16, 2, 1}, Pattern{4, 8}},
	} {
		n := 1
		for _, d := range tc.dims {
			n *= int(d)
		}
		data := randMat(rng, n)
		outs, rep, err := Prune(context.Background(), []Layer{{Name: "w", Layout: tc.l, Dims: tc.dims, Data: data}}, Options{Pattern: tc.p}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := outs[0]
		if rep.NMViolations != 0 || rep.Layers[0].NM == nil || !rep.Layers[0].NM.OK() {
			t.Fatalf("%v: report %+v", tc, rep.Layers[0])
		}
		if want24 := tc.p == (Pattern{2, 4}); rep.Layers[0].Sparse24 != want24 || (rep.TensorRT != nil) != want24 {
			t.Fatalf("%v: 2:4 flag %v, hint %+v", tc, rep.Layers[0].Sparse24, rep.TensorRT)
		}
		if rep.Pruned != n*(tc.p.M-tc.p.N)/tc.p.M || rep.Zeros != rep.Pruned {
			t.Fatalf("%v: pruned %d zeros %d of %d", tc, rep.Pruned, rep.Zeros, n)
		}
		for i := range out { // kept values unchanged
			if out[i] != 0 && out[i] != data[i] {
				t.Fatalf("%v: kept value changed", tc)
			}
		}
		// un-prune every weight: the verifier must now reject.
		c, _ := VerifyNM(data, tc.l, tc.dims, tc.p)
		if c.OK() {
			t.Fatalf("%v: verifier accepted the dense tensor", tc)
		}
	}
}

func TestMaskUnstructuredExact(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, s := range []float64{0, 0.5, 0.7, 0.29} {
		w := make([]float32, 1001)
		for i := range w {
			w[i] = float32(rng.Intn(7) - 3) // many ties, zeros
		}
		pr, err := MaskUnstructured(MagnitudeScores(w), s)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := countTrue(pr), PrunedCount(s, len(w)); got != want {
			t.Errorf("s=%v: pruned %d, want %d", s, got, want)
		}
	}
	if _, err := MaskUnstructured([]float64{1}, 1); err == nil {
		t.Error("sparsity 1: want error")
	}
}

func TestMaskRowsAndWanda(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	sh := Shape{Rows: 7, Cols: 13, Stride: 1}
	w := randMat(rng, sh.Len())
	diag := make([]float64, sh.Cols)
	for j := range diag {
		diag[j] = rng.Float64() * 10
	}
	scores, err := WandaScores(w, sh, diag, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range scores {
		want := math.Abs(float64(w[i])) * math.Sqrt(diag[i%sh.Cols]/4)
		if math.Abs(scores[i]-want) > 1e-12*want {
			t.Fatalf("score %d = %v, want %v", i, scores[i], want)
		}
	}
	pr, err := MaskRows(scores, sh, 0.7)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := countTrue(pr), PrunedCount(0.7, sh.Len()); got != want {
		t.Errorf("pruned %d, want %d", got, want)
	}
	for r := 0; r < sh.Rows; r++ {
		row := scores[r*sh.Cols : (r+1)*sh.Cols]
		k := countTrue(pr[r*sh.Cols : (r+1)*sh.Cols])
		if math.Abs(float64(k)-0.7*float64(sh.Cols)) >= 1 {
			t.Errorf("row %d prunes %d of %d", r, k, sh.Cols)
		}
		want := selectiontest.RefLowest(row, k)
		for j := range want {
			if want[j] != pr[r*sh.Cols+j] {
				t.Fatalf("row %d: mask differs from the sorting reference", r)
			}
		}
	}
	if _, err := WandaScores(w, sh, diag[:3], 4); err == nil {
		t.Error("short diagonal: want error")
	}
}

func TestMaskGlobal(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	a, b := MagnitudeScores(randMat(rng, 100)), MagnitudeScores(randMat(rng, 37))
	for i := range b {
		b[i] *= 3 // layer b has larger weights: global keeps more of it
	}
	masks, err := MaskGlobal([][]float64{a, b}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if got := countTrue(masks[0]) + countTrue(masks[1]); got != PrunedCount(0.5, 137) {
		t.Errorf("pruned %d, want %d", got, PrunedCount(0.5, 137))
	}
	maxPruned, minKept := 0.0, math.Inf(1)
	for l, s := range [][]float64{a, b} {
		for i, v := range s {
			if masks[l][i] {
				maxPruned = math.Max(maxPruned, v)
			} else {
				minKept = math.Min(minKept, v)
			}
		}
	}
	if maxPruned > minKept {
		t.Errorf("one threshold violated: pruned %v > kept %v", maxPruned, minKept)
	}
	if countTrue(masks[0])*37 <= countTrue(masks[1])*100 {
		t.Errorf("global scope should prune the small-weight layer more")
	}
}

type gramCalib struct {
	calib.Missing
	x map[string][]float64
	d map[string]int
}

func (g gramCalib) SquaredColumnNorms(name string) ([]float64, int64, error) {
	xtx, d, n, err := g.InputGram(name)
	if err != nil {
		return nil, 0, err
	}
	return diagonal(xtx, d), n, nil
}

func (g gramCalib) InputGram(name string) ([]float64, int, int64, error) {
	x, ok := g.x[name]
	if !ok {
		return nil, 0, 0, errors.New("no activations for " + name)
	}
	d := g.d[name]
	return gram(x, d), d, int64(len(x) / d), nil
}

// gram returns XᵀX of X (n×d).
func gram(x []float64, d int) []float64 {
	n := len(x) / d
	g := make([]float64, d*d)
	for r := 0; r < n; r++ {
		row := x[r*d : (r+1)*d]
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				g[i*d+j] += row[i] * row[j]
			}
		}
	}
	return g
}

// correlated returns n×d activations with correlated, unevenly scaled
// columns (so that the criteria differ).
func correlated(rng *rand.Rand, n, d int) []float64 {
	mix := make([]float64, d*d)
	for i := range mix {
		mix[i] = rng.NormFloat64()
	}
	x := make([]float64, n*d)
	z := make([]float64, d)
	for r := 0; r < n; r++ {
		for i := range z {
			z[i] = rng.NormFloat64()
		}
		for j := 0; j < d; j++ {
			s := 0.0
			for i := 0; i < d; i++ {
				s += z[i] * mix[i*d+j]
			}
			x[r*d+j] = s * (0.2 + 3*float64(j%5))
		}
	}
	return x
}

func TestPruneRefusals(t *testing.T) {
	l := []Layer{{Name: "w", Layout: LayoutNK, Dims: []int64{2, 6}, Data: make([]float32, 12)}}
	if _, _, err := Prune(context.Background(), l, Options{Pattern: Pattern{2, 4}}, nil); !errors.Is(err, ErrNoLayerFits) {
		t.Errorf("M=4 on K=6: err %v, want ErrNoLayerFits", err)
	}
	if _, _, err := Prune(context.Background(), l, Options{Method: Wanda, Sparsity: 0.5}, nil); !errors.Is(err, ErrNoCalibration) {
		t.Errorf("wanda without calibration: err %v", err)
	}
	if _, _, err := Prune(context.Background(), l, Options{Method: SparseGPT, Pattern: Pattern{2, 4}}, nil); !errors.Is(err, ErrNoCalibration) {
		t.Errorf("sparsegpt without calibration: err %v", err)
	}
	if _, _, err := Prune(context.Background(), l, Options{Pattern: Pattern{4, 4}}, nil); err == nil {
		t.Error("4:4: want error")
	}
	if _, _, err := Prune(context.Background(), l, Options{Method: SparseGPT, Sparsity: 0.5, Scope: ScopeGlobal}, gramCalib{}); err == nil {
		t.Error("sparsegpt global: want error")
	}
	if _, _, err := Prune(context.Background(), l, Options{Method: SparseGPT, Pattern: Pattern{2, 8}, BlockSize: 12}, gramCalib{}); err == nil {
		t.Error("block 12 with M=8: want error")
	}
	// one layer fits, one is skipped and reported
	rng := rand.New(rand.NewSource(7))
	l2 := []Layer{l[0], {Name: "v", Layout: LayoutKN, Dims: []int64{8, 3}, Data: randMat(rng, 24)}}
	outs, rep, err := Prune(context.Background(), l2, Options{Pattern: Pattern{2, 4}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0] != nil || rep.Layers[0].Skipped == "" || rep.Skipped != 1 || outs[1] == nil || rep.Pruned != 12 {
		t.Errorf("skip report: %+v", rep)
	}
	// d mismatch from calibration
	c := gramCalib{x: map[string][]float64{"v": make([]float64, 10*4)}, d: map[string]int{"v": 4}}
	if _, _, err := Prune(context.Background(), l2[1:], Options{Method: Wanda, Pattern: Pattern{2, 4}}, c); err == nil {
		t.Error("gram size mismatch: want error")
	}
}

func TestPruneUnstructuredExact(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	layers := []Layer{
		{Name: "a", Layout: LayoutKN, Dims: []int64{24, 10}, Data: randMat(rng, 240)},
		{Name: "b", Layout: LayoutConv, Dims: []int64{5, 3, 3, 3}, Data: randMat(rng, 135)},
	}
	c := gramCalib{x: map[string][]float64{"a": correlated(rng, 50, 24), "b": correlated(rng, 50, 27)}, d: map[string]int{"a": 24, "b": 27}}
	for _, m := range []Method{Magnitude, Wanda, SparseGPT} {
		for _, sc := range []Scope{ScopeLayer, ScopeGlobal} {
			if m == SparseGPT && sc == ScopeGlobal {
				continue
			}
			for _, s := range []float64{0.5, 0.7} {
				_, rep, err := Prune(context.Background(), layers, Options{Method: m, Sparsity: s, Scope: sc, BlockSize: 8}, c)
				if err != nil {
					t.Fatal(err)
				}
				if sc == ScopeLayer {
					for _, lr := range rep.Layers {
						if lr.Pruned != PrunedCount(s, lr.Params) || lr.Zeros != lr.Pruned {
							t.Errorf("%s %s s=%v %s: pruned %d zeros %d, want %d", m, sc, s, lr.Name, lr.Pruned, lr.Zeros, PrunedCount(s, lr.Params))
						}
					}
				} else if rep.Pruned != PrunedCount(s, 375) || rep.Zeros != rep.Pruned {
					t.Errorf("%s global s=%v: pruned %d zeros %d, want %d", m, s, rep.Pruned, rep.Zeros, PrunedCount(s, 375))
				}
			}
		}
	}
}
