package merge

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func approxEq(t *testing.T, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("[%d] = %v, want %v (all: %v vs %v)", i, got[i], want[i], got, want)
		}
	}
}

func TestLinearTo(t *testing.T) {
	a := []float64{1, 2, 3}
	b := []float64{3, 6, -3}
	c := []float64{0.5, 0.25, 8}
	tests := []struct {
		name      string
		xs        [][]float64
		w         []float64
		normalize bool
		want      []float64
	}{
		{"uniform", [][]float64{a, b}, []float64{1, 1}, true, []float64{2, 4, 0}},
		{"weighted", [][]float64{a, b}, []float64{3, 1}, true, []float64{1.5, 3, 1.5}},
		{"first only", [][]float64{a, b, c}, []float64{1, 0, 0}, true, a},
		{"unnormalized", [][]float64{a, b}, []float64{1, 0.5}, false, []float64{2.5, 5, 1.5}},
		{"negative weight extrapolates", [][]float64{a, b}, []float64{2, -1}, true, []float64{-1, -2, 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float64, 3)
			LinearTo(dst, tc.xs, tc.w, tc.normalize)
			approxEq(t, dst, tc.want, 1e-15)
		})
	}
}

func TestLinearFirstOnlyIsExactFloat32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([][]float32, 3)
	for i := range xs {
		xs[i] = make([]float32, 1000)
		for j := range xs[i] {
			xs[i][j] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(10)-5)))
		}
	}
	dst := make([]float32, 1000)
	LinearTo(dst, xs, []float64{1, 0, 0}, true)
	if !slices.Equal(dst, xs[0]) {
		t.Fatal("weights (1,0,0) do not reproduce the first model bit for bit")
	}
}

func TestTaskArithmeticTo(t *testing.T) {
	base := []float64{1, 1, 1}
	a := []float64{2, 0, 1}
	b := []float64{1, 3, 0}
	tests := []struct {
		name   string
		w      []float64
		lambda float64
		want   []float64
	}{
		{"sum", []float64{1, 1}, 1, []float64{2, 2, 0}},
		{"lambda", []float64{1, 1}, 0.5, []float64{1.5, 1.5, 0.5}},
		{"weights", []float64{2, 0}, 1, []float64{3, -1, 1}},
		{"zero lambda is base", []float64{1, 1}, 0, base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float64, 3)
			TaskArithmeticTo(dst, base, [][]float64{a, b}, tc.w, tc.lambda)
			approxEq(t, dst, tc.want, 1e-15)
		})
	}
}

func TestTIESTo(t *testing.T) {
	// base 0, so x = τ. Columns exercise: trim, sign election, zero sum → +1,
	// disjoint mean, weights.
	base := []float64{0, 0, 0, 0, 0}
	x1 := []float64{0.5, 3, -1, 1, 0.05}
	x2 := []float64{-0.2, -1, -2, -1, 0.05}
	x3 := []float64{0.4, -1, 4, 0.1, -0.05}
	tests := []struct {
		name   string
		w, thr []float64
		lambda float64
		want   []float64
	}{
		{
			// no trim: col0 Σ=0.7>0 → mean(0.5,0.4)=0.45; col1 Σ=1>0 → 3;
			// col2 Σ=1>0 → 4; col3 Σ=0.1>0 → mean(1,0.1)=0.55; col4 Σ=0.05 → 0.05
			"no trim", []float64{1, 1, 1}, []float64{0, 0, 0}, 1,
			[]float64{0.45, 3, 4, 0.55, 0.05},
		},
		{
			// thresholds drop |τ|<0.3 (model 1) |τ|<1 (2) |τ|<0.5 (3):
			// col0: 0.5, 0(-0.2 trimmed), 0 (0.4 < 0.5) → 0.5
			// col1: 3, -1, -1 → Σ=1 → 3; col2: -1,-2,4 → Σ=1 → 4
			// col3: 1,-1,0 → Σ=0 → +1 → 1; col4: all trimmed → 0
			"trim", []float64{1, 1, 1}, []float64{0.3, 1, 0.5}, 1,
			[]float64{0.5, 3, 4, 1, 0},
		},
		{
			// weights: col0 (0.5·1+0.4·3)/4; col3 (1·1+0.1·3)/4; col4 (0.05+0.05·2)/3
			"weights and lambda", []float64{1, 2, 3}, []float64{0, 0, 0}, 2,
			[]float64{2 * (0.5 + 1.2) / 4, 2 * 3, 2 * 4, 2 * 1.3 / 4, 2 * 0.15 / 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float64, 5)
			TIESTo(dst, base, [][]float64{x1, x2, x3}, tc.w, tc.thr, tc.lambda)
			approxEq(t, dst, tc.want, 1e-12)
		})
	}
}

func TestTIESWithBase(t *testing.T) {
	base := []float32{1, -1}
	x := [][]float32{{1.5, -1}, {0.5, -3}}
	dst := make([]float32, 2)
	// col0: τ=(0.5,-0.5) Σ=0 → +1 → 0.5; col1: τ=(0,-2) → -2
	TIESTo(dst, base, x, []float64{1, 1}, []float64{0, 0}, 1)
	if want := []float32{1.5, -3}; !slices.Equal(dst, want) {
		t.Fatalf("got %v, want %v", dst, want)
	}
}

func TestDARE(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 20000
	base := make([]float64, n)
	xs := [][]float64{make([]float64, n), make([]float64, n)}
	for j := range n {
		base[j] = r.NormFloat64()
		xs[0][j] = base[j] + r.NormFloat64()
		xs[1][j] = base[j] + r.NormFloat64()
	}
	w := []float64{1, 0.5}
	keys := []uint64{StreamKey(7, "w", 0), StreamKey(7, "w", 1)}

	t.Run("density 1 is task arithmetic", func(t *testing.T) {
		got, want := make([]float64, n), make([]float64, n)
		DARETo(got, base, xs, DAREParams{Weights: w, Densities: []float64{1, 1}, Keys: keys, Lambda: 0.7})
		TaskArithmeticTo(want, base, xs, w, 0.7)
		approxEq(t, got, want, 1e-12)
	})
	t.Run("density 1 with TIES is untrimmed TIES", func(t *testing.T) {
		got, want := make([]float64, n), make([]float64, n)
		DARETo(got, base, xs, DAREParams{Weights: w, Densities: []float64{1, 1}, Keys: keys, Lambda: 1, TIES: true})
		TIESTo(want, base, xs, w, []float64{0, 0}, 1)
		approxEq(t, got, want, 1e-12)
	})
	t.Run("kept fraction and rescale", func(t *testing.T) {
		got := make([]float64, n)
		d := 0.3
		DARETo(got, base, xs[:1], DAREParams{Weights: []float64{1}, Densities: []float64{d}, Keys: keys[:1], Lambda: 1})
		kept := 0
		for j := range got {
			if got[j] == base[j] {
				continue
			}
			kept++
			if want := base[j] + (xs[0][j]-base[j])/d; math.Abs(got[j]-want) > 1e-12 {
				t.Fatalf("kept entry %d = %v, want %v", j, got[j], want)
			}
		}
		// binomial(n, 0.3): sd ≈ 65; 6 sd
		if f := float64(kept); math.Abs(f-d*n) > 400 {
			t.Fatalf("kept %d of %d at density %v", kept, n, d)
		}
	})
	t.Run("chunks draw the same mask", func(t *testing.T) {
		p := DAREParams{Weights: w, Densities: []float64{0.5, 0.4}, Keys: keys, Lambda: 1, TIES: true}
		whole := make([]float64, n)
		DARETo(whole, base, xs, p)
		parts := make([]float64, n)
		for off := 0; off < n; off += 777 {
			end := min(off+777, n)
			q := p
			q.Offset = int64(off)
			DARETo(parts[off:end], base[off:end], [][]float64{xs[0][off:end], xs[1][off:end]}, q)
		}
		if !slices.Equal(whole, parts) {
			t.Fatal("chunked DARE differs from whole-tensor DARE")
		}
	})
	t.Run("seed changes the mask", func(t *testing.T) {
		a, b := make([]float64, n), make([]float64, n)
		DARETo(a, base, xs, DAREParams{Weights: w, Densities: []float64{0.5, 0.5}, Keys: keys, Lambda: 1})
		DARETo(b, base, xs, DAREParams{Weights: w, Densities: []float64{0.5, 0.5},
			Keys: []uint64{StreamKey(8, "w", 0), StreamKey(8, "w", 1)}, Lambda: 1})
		if slices.Equal(a, b) {
			t.Fatal("different seeds gave the same mask")
		}
	})
}

func TestUniformDistribution(t *testing.T) {
	key := StreamKey(0, "t", 0)
	var buckets [10]int
	const n = 100000
	for j := range int64(n) {
		u := Uniform(key, j)
		if u < 0 || u >= 1 {
			t.Fatalf("Uniform = %v", u)
		}
		buckets[int(u*10)]++
	}
	for i, c := range buckets {
		if math.Abs(float64(c)-n/10) > 600 { // sd ≈ 95
			t.Fatalf("bucket %d holds %d of %d", i, c, n)
		}
	}
	if StreamKey(0, "t", 0) == StreamKey(0, "t", 1) || StreamKey(0, "t", 0) == StreamKey(0, "u", 0) {
		t.Fatal("stream keys collide")
	}
}

func TestSLERP(t *testing.T) {
	e1 := []float64{1, 0, 0}
	e2 := []float64{0, 2, 0}
	tests := []struct {
		name   string
		v0, v1 []float64
		t      float64
		want   []float64
	}{
		{"t=0", e1, e2, 0, e1},
		{"t=1", e1, e2, 1, e2},
		// θ = π/2: c0 = c1 = sin(π/4)
		{"orthogonal midpoint", e1, e2, 0.5, []float64{math.Sqrt2 / 2, math.Sqrt2, 0}},
		{"colinear falls back to lerp", e1, []float64{3, 0, 0}, 0.25, []float64{1.5, 0, 0}},
		{"zero vector falls back to lerp", []float64{0, 0, 0}, e2, 0.25, []float64{0, 0.5, 0}},
		// θ = π/3 between (1,0,0) and (1/2,√3/2,0); t=1/2 → direction at π/6,
		// c0 = c1 = sin(π/6)/sin(π/3) = 1/√3
		{"sixty degrees", e1, []float64{0.5, math.Sqrt(3) / 2, 0}, 0.5, []float64{math.Sqrt(3) / 2, 0.5, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float64, 3)
			SLERPTo(dst, tc.v0, tc.v1, tc.t)
			approxEq(t, dst, tc.want, 1e-12)
		})
	}
}

func TestFisherTo(t *testing.T) {
	x := [][]float64{{1, 1, 1}, {3, 3, 3}}
	tests := []struct {
		name  string
		f     [][]float64
		c     []float64
		floor float64
		want  []float64
	}{
		{"equal fisher is the weighted mean", [][]float64{{1, 2, 3}, {1, 2, 3}}, []float64{1, 1}, 1e-6, []float64{2, 2, 2}},
		{"fisher weights", [][]float64{{3, 1, 0}, {1, 1, 2}}, []float64{1, 1}, 1e-6, []float64{1.5, 2, (1e-6 + 6) / (2 + 1e-6)}},
		{"floor decides when both vanish", [][]float64{{0, 0, 0}, {0, 0, 0}}, []float64{3, 1}, 1e-6, []float64{1.5, 1.5, 1.5}},
		{"zero floor, zero fisher: plain mean", [][]float64{{0, 0, 0}, {0, 0, 0}}, []float64{3, 1}, 0, []float64{2, 2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float64, 3)
			FisherTo(dst, x, tc.f, tc.c, tc.floor)
			approxEq(t, dst, tc.want, 1e-12)
		})
	}
}

func TestKernelsPanicOnLengthMismatch(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic on mismatched lengths")
		}
	}()
	LinearTo(make([]float32, 2), [][]float32{{1, 2}, {1}}, []float64{1, 1}, true)
}

func TestTrimCount(t *testing.T) {
	tests := []struct {
		d    float64
		n    int64
		want int64
	}{
		{0.2, 10, 2}, {0.2, 11, 2}, {0.2, 4, 1}, {1, 7, 7}, {0.01, 5, 1}, {0.5, 0, 0},
	}
	for _, tc := range tests {
		if got := TrimCount(tc.d, tc.n); got != tc.want {
			t.Errorf("TrimCount(%v, %d) = %d, want %d", tc.d, tc.n, got, tc.want)
		}
	}
}

func TestTopKThreshold(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 200 {
		n := 1 + r.IntN(300)
		vals := make([]float64, n)
		for j := range vals {
			if trial%3 == 0 {
				vals[j] = float64(r.IntN(5)) // many ties
			} else {
				vals[j] = math.Abs(r.NormFloat64())
			}
		}
		sorted := slices.Clone(vals)
		slices.Sort(sorted)
		k := 1 + r.IntN(n)
		if got, want := TopKThreshold(vals, k), sorted[n-k]; got != want {
			t.Fatalf("trial %d: top-%d of %d = %v, want %v", trial, k, n, got, want)
		}
	}
}

func TestSelector(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	gens := map[string]func() float64{
		"gaussian":    func() float64 { return math.Abs(r.NormFloat64()) },
		"ties":        func() float64 { return float64(r.IntN(3)) * 0.125 },
		"wide range":  func() float64 { return math.Abs(r.NormFloat64()) * math.Pow(2, float64(r.IntN(80)-40)) },
		"near equal":  func() float64 { return 1 + float64(r.IntN(1000))*math.Pow(2, -52) },
		"with zeroes": func() float64 { return float64(r.IntN(2)) * math.Abs(r.NormFloat64()) },
	}
	for name, gen := range gens {
		for _, limit := range []int64{0, 50, 1 << 20} {
			vals := make([]float64, 5000)
			for j := range vals {
				vals[j] = gen()
			}
			sorted := slices.Clone(vals)
			slices.Sort(sorted)
			for _, k := range []int64{1, 17, 1000, 4999, 5000} {
				s := NewSelector(k)
				s.CollectLimit = limit
				passes := 0
				for !s.Done() {
					// two "workers" per pass
					p1, p2 := s.NewPass(), s.NewPass()
					p1.AddSlice(vals[:2000])
					p2.AddSlice(vals[2000:])
					if err := s.EndPass(p1, p2); err != nil {
						t.Fatal(err)
					}
					passes++
				}
				if got, want := s.Threshold(), sorted[len(vals)-int(k)]; got != want {
					t.Fatalf("%s limit %d k %d: %v, want %v", name, limit, k, got, want)
				}
				if passes > 4 {
					t.Fatalf("%s: %d passes", name, passes)
				}
			}
		}
	}
}

func TestSelectorRankBeyondData(t *testing.T) {
	s := NewSelector(10)
	p := s.NewPass()
	p.AddSlice([]float64{1, 2, 3})
	if err := s.EndPass(p); err == nil {
		t.Fatal("no error for rank 10 of 3 values")
	}
}

func TestGreedySoup(t *testing.T) {
	// Scores of soups by ingredient set, keyed by sorted membership bits.
	tests := []struct {
		name    string
		n       int
		scores  map[int]float64 // bitmask → score
		want    []int
		wantTop float64
	}{
		{
			"adds improving models only",
			3,
			map[int]float64{1: 0.8, 2: 0.9, 4: 0.7, 3: 0.92, 7: 0.91},
			[]int{1, 0}, 0.92,
		},
		{
			"strict improvement: equal score is rejected",
			2,
			map[int]float64{1: 0.5, 2: 0.6, 3: 0.6},
			[]int{1}, 0.6,
		},
		{
			"equal individual scores keep index order",
			3,
			map[int]float64{1: 0.5, 2: 0.5, 4: 0.5, 3: 0.55, 7: 0.56},
			[]int{0, 1, 2}, 0.56,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			res, err := GreedySoup(context.Background(), tc.n, func(_ context.Context, ing []int) (float64, error) {
				calls++
				m := 0
				for _, i := range ing {
					m |= 1 << i
				}
				s, ok := tc.scores[m]
				if !ok {
					t.Fatalf("unexpected candidate %v", ing)
				}
				return s, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Ingredients, tc.want) || res.Score != tc.wantTop {
				t.Fatalf("soup %v score %v, want %v %v", res.Ingredients, res.Score, tc.want, tc.wantTop)
			}
			if calls != 2*tc.n-1 {
				t.Fatalf("%d scorer calls, want %d", calls, 2*tc.n-1)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := GreedySoup(context.Background(), 2, func(context.Context, []int) (float64, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the scorer's", err)
	}
}

func TestSelectorMergeAndReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	vals := make([]float64, 30000)
	for j := range vals {
		vals[j] = math.Abs(r.NormFloat64()) * float64(r.IntN(3))
	}
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	for _, k := range []int64{1, 500, 29999} {
		s := NewSelector(k)
		s.CollectLimit = 100
		var local *Pass
		for !s.Done() {
			acc := s.NewPass()
			for off := 0; off < len(vals); off += 1000 { // one "tensor" at a time
				local = s.ResetPass(local)
				local.AddSlice(vals[off : off+1000])
				acc.Merge(local)
			}
			if err := s.EndPass(acc); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := s.Threshold(), sorted[len(vals)-int(k)]; got != want {
			t.Fatalf("k %d: %v, want %v", k, got, want)
		}
	}
}
