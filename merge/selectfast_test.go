package merge

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/merge/internal/synth"
	"github.com/onnxpost/onnxpost/onnxio"
)

// bruteThresholds sorts every model's |τ| over the plan.
func bruteThresholds(t *testing.T, mg *Merger, base *onnxio.Model, fts []*onnxio.Model, d float64) []float64 {
	t.Helper()
	out := make([]float64, len(fts))
	for i := range fts {
		var all []float64
		for _, p := range mg.Plan() {
			b, x := floats(t, base, p.Base), floats(t, fts[i], p.Models[i])
			for j := range b {
				all = append(all, math.Abs(x[j]-b[j]))
			}
		}
		slices.Sort(all)
		out[i] = all[int64(len(all))-TrimCount(d, int64(len(all)))]
	}
	return out
}

// withSampling runs f with a sample of at most blocks blocks per model and
// a collection cap, restoring the defaults afterwards.
// It returns how many models' brackets missed.
func withSampling(blocks int64, cap int, f func()) (missed int) {
	ob, oc := sampleBlocks, collectCap
	sampleBlocks, collectCap = blocks, cap
	testBracketMiss = func(n int) { missed += n }
	defer func() { sampleBlocks, collectCap, testBracketMiss = ob, oc, nil }()
	f()
	return missed
}

// TestBracketThresholdsExact checks the one-pass global trim against a full
// sort: with a real sample (a few blocks, so the bracket is narrow), with
// every value sampled, with a collection cap that forces the radix
// fallback, for float32, float16 and bfloat16 models and densities from a
// handful of values to all of them.
func TestBracketThresholdsExact(t *testing.T) {
	cfg := synth.Config{Layers: 2, Hidden: 32, FFN: 64, Vocab: 50, Classes: 3}
	for _, dt := range []onnxio.DType{onnxio.Float, onnxio.Float16, onnxio.BFloat16} {
		c := cfg
		c.DType = dt
		base, fts := zooLike(t, c)
		for _, tc := range []struct {
			name   string
			blocks int64
			cap    int
		}{
			{"sampled", 8, 1 << 22},
			{"everything sampled", 1 << 20, 1 << 22},
			{"collection overflow", 8, 1},
		} {
			for _, d := range []float64{1e-4, 0.2, 0.5, 0.97, 1} {
				missed := withSampling(tc.blocks, tc.cap, func() {
					mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: TIES, Density: d}, nil)
					if err != nil {
						t.Fatal(err)
					}
					defer mg.Close()
					want := bruteThresholds(t, mg, base, fts, d)
					if got := mg.Thresholds(); !slices.Equal(got, want) {
						t.Fatalf("%v %s density %v: thresholds %v, want %v", dt, tc.name, d, got, want)
					}
				})
				if wantMiss := tc.cap == 1; (missed > 0) != wantMiss {
					t.Fatalf("%v %s density %v: %d brackets missed, want misses: %v", dt, tc.name, d, missed, wantMiss)
				}
			}
		}
	}
}

// TestBracketMissFallsBack builds a fine-tune whose deltas are tiny at
// exactly the sampled positions and large elsewhere, so the sample's
// bracket cannot hold the threshold: the radix passes must take over and
// still give the exact threshold. A model with many equal deltas (ties at
// the threshold) is checked as well.
func TestBracketMissFallsBack(t *testing.T) {
	cfg := synth.Config{Layers: 2, Hidden: 32, FFN: 64, Vocab: 50, Classes: 3}
	base, fts := zooLike(t, cfg)
	missed := withSampling(32, 1<<22, func() { // every other block sampled
		mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: TIES}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, p := range mg.Plan() {
			n, _ := onnxio.NumElements(p.Shape)
			total += n
		}
		stride := max(1, total/(sampleBlock*sampleBlocks))
		hostile := fts[0].Clone()
		ties := fts[1].Clone()
		var off int64
		for _, p := range mg.Plan() {
			b := floats(t, base, p.Base)
			sampled := make([]bool, len(b))
			sampleRanges(off, int64(len(b)), stride, func(lo, hi int) {
				for j := lo; j < hi; j++ {
					sampled[j] = true
				}
			})
			off += int64(len(b))
			h := make([]float32, len(b))
			q := make([]float32, len(b))
			for j := range b {
				h[j] = float32(b[j] + 1 + float64(j%7))
				if sampled[j] {
					h[j] = float32(b[j] + 1e-6)
				}
				q[j] = float32(b[j] + float64(j%3)) // deltas 0, 1, 2: massive ties
			}
			for _, c := range []struct {
				m *onnxio.Model
				v []float32
			}{{hostile, h}, {ties, q}} {
				tt, err := onnxio.FromFloat32(p.Models[0], onnxio.Float, p.Shape, c.v)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.m.SetInitializer(tt); err != nil {
					t.Fatal(err)
				}
			}
		}
		mg.Close()
		models := []*onnxio.Model{hostile, ties, fts[2]}
		mg, err = New(context.Background(), Inputs{Base: base, Models: models}, Options{Method: TIES}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer mg.Close()
		want := bruteThresholds(t, mg, base, models, 0.2)
		if got := mg.Thresholds(); !slices.Equal(got, want) {
			t.Fatalf("thresholds %v, want %v", got, want)
		}
	})
	if missed == 0 {
		t.Fatal("the hostile model's bracket did not miss: the fallback was not exercised")
	}
}

// TestSampleRangesCoverStride checks that the sampled blocks of tensors
// laid end to end are exactly the blocks whose index is a multiple of the
// stride, whatever the tensor boundaries.
func TestSampleRangesCoverStride(t *testing.T) {
	sizes := []int64{1, 255, 256, 257, 1000, 3, 4096, 700}
	var total int64
	for _, n := range sizes {
		total += n
	}
	for _, stride := range []int64{1, 2, 3, 7} {
		got := make([]bool, total)
		var off int64
		for _, n := range sizes {
			sampleRanges(off, n, stride, func(lo, hi int) {
				for j := lo; j < hi; j++ {
					if got[off+int64(j)] {
						t.Fatalf("stride %d: element %d sampled twice", stride, off+int64(j))
					}
					got[off+int64(j)] = true
				}
			})
			off += n
		}
		for g := range total {
			if want := (g/sampleBlock)%stride == 0; got[g] != want {
				t.Fatalf("stride %d: element %d sampled %v, want %v", stride, g, got[g], want)
			}
		}
	}
}

// TestTensorThresholdsAllModels: the thresholds of several models over one
// tensor, found in one blocked pass (bracketScanAll), are each model's
// exact k-th largest |xᵢ − base| for its own density, on tensors shorter
// and longer than a scan block.
func TestTensorThresholdsAllModels(t *testing.T) {
	for _, n := range []int{7, scanBlock - 1, 3*scanBlock + 5, 5 * tensorSample} {
		base, xs := hostileSlices(n, 3, uint64(n)+1)
		ds := []float64{0.2, 0.01, 0.7}
		got, err := tensorThresholds(base, xs, ds)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range xs {
			a := make([]float64, n)
			for j := range base {
				a[j] = absDelta(x[j], base[j])
			}
			slices.Sort(a)
			if want := a[int64(n)-TrimCount(ds[i], int64(n))]; got[i] != want {
				t.Errorf("n=%d model %d density %v: %v, want %v", n, i, ds[i], got[i], want)
			}
		}
	}
}

// TestTensorThresholdExact checks the per-tensor radix selection against a
// full sort of |x − base| in float64, on data with many ties (deltas at
// ±0.25 and ±0.5, equal values), equal infinities (|τ| = 0), float32 keys
// shared by distinct float64 values, and Gaussian deltas, for float32 and
// float64 tensors and densities from one value to all of them.
func TestTensorThresholdExact(t *testing.T) {
	brute := func(a []float64, d float64) float64 {
		s := slices.Clone(a)
		slices.Sort(s)
		return s[int64(len(s))-TrimCount(d, int64(len(s)))]
	}
	for _, n := range []int{1, 2, 100, 5000, 3*tensorSample + 5} {
		base, xs := hostileSlices(n, 1, uint64(n))
		x := xs[0]
		if n > 2 {
			base[1], x[1] = float32(math.Inf(-1)), float32(math.Inf(-1))
		}
		b64 := make([]float64, n)
		x64 := make([]float64, n)
		for j := range base {
			b64[j] = float64(base[j])
			// distinct float64 deltas that round to one float32 key
			x64[j] = float64(x[j]) + float64(j%3)*1e-12
		}
		a32 := make([]float64, n)
		a64 := make([]float64, n)
		for j := range base {
			a32[j] = absDelta(x[j], base[j])
			a64[j] = absDelta(x64[j], b64[j])
		}
		for _, d := range []float64{1e-9, 0.01, 0.2, 0.5, 0.999, 1} {
			got, err := tensorThreshold(base, x, d)
			if err != nil {
				t.Fatal(err)
			}
			if want := brute(a32, d); got != want {
				t.Fatalf("float32 n=%d density %v: %v, want %v", n, d, got, want)
			}
			got, err = tensorThreshold(b64, x64, d)
			if err != nil {
				t.Fatal(err)
			}
			if want := brute(a64, d); got != want {
				t.Fatalf("float64 n=%d density %v: %v, want %v", n, d, got, want)
			}
			// the radix selection the bracket falls back to, directly and
			// through a forced miss
			k := TrimCount(d, int64(n))
			if got, want := radixTensorThreshold(base, x, k), brute(a32, d); got != want {
				t.Fatalf("radix n=%d density %v: %v, want %v", n, d, got, want)
			}
			missed := withSampling(sampleBlocks, 0, func() {
				if got, err = tensorThreshold(b64, x64, d); err != nil || got != brute(a64, d) {
					t.Fatalf("forced miss n=%d density %v: %v (%v), want %v", n, d, got, err, brute(a64, d))
				}
			})
			if n > 1 && missed == 0 {
				t.Fatalf("n=%d density %v: a collection cap of 0 did not force the fallback", n, d)
			}
		}
	}
}
