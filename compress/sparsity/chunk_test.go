package sparsity

import (
	"context"
	"math"
	"math/rand"
	"slices"
	"testing"
)

// TestPruneRowsChunks: pruning row chunks (every chunk size, including
// sizes that do not divide the rows) gives the whole-matrix result
// (scores of the whole matrix, MaskNM or MaskRows, Apply) bit for bit.
func TestPruneRowsChunks(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	for _, tc := range []struct {
		name string
		sh   Shape
		opt  Options
	}{
		{"wanda 2:4", Shape{Rows: 13, Cols: 16, Stride: 1}, Options{Method: Wanda, Pattern: Pattern{N: 2, M: 4}}},
		{"wanda 0.5", Shape{Rows: 11, Cols: 12, Stride: 1}, Options{Method: Wanda, Sparsity: 0.5}},
		{"wanda 0.37, uneven per-row counts", Shape{Rows: 9, Cols: 7, Stride: 1}, Options{Method: Wanda, Sparsity: 0.37}},
		{"magnitude 4:8", Shape{Rows: 10, Cols: 24, Stride: 1}, Options{Method: Magnitude, Pattern: Pattern{N: 4, M: 8}}},
		{"wanda 2:4 conv (stride 3)", Shape{Rows: 5, Cols: 24, Stride: 3}, Options{Method: Wanda, Pattern: Pattern{N: 2, M: 4}}},
		{"one row", Shape{Rows: 1, Cols: 8, Stride: 1}, Options{Method: Wanda, Sparsity: 0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := make([]float32, tc.sh.Len())
			for i := range w {
				w[i] = float32(rng.NormFloat64())
				if i%7 == 3 {
					w[i] = w[i-1] // ties
				}
			}
			sq := make([]float64, tc.sh.Cols)
			for j := range sq {
				sq[j] = rng.Float64() * 10
			}
			scores, err := layerScores(w, tc.sh, tc.opt.Method, sq, 10)
			if err != nil {
				t.Fatal(err)
			}
			var mask []bool
			if tc.opt.Pattern.IsZero() {
				mask, err = MaskRows(scores, tc.sh, tc.opt.Sparsity)
			} else {
				mask, err = MaskNM(scores, tc.sh, tc.opt.Pattern)
			}
			if err != nil {
				t.Fatal(err)
			}
			want, wantPruned := Apply(w, mask), countTrue(mask)
			for _, chunk := range []int{1, 2, 3, 4, tc.sh.Rows - 1, tc.sh.Rows, tc.sh.Rows + 3} {
				got := slices.Clone(w)
				n, err := pruneRows(viewRows{v: got, rows: tc.sh.Rows, cols: tc.sh.Cols}, tc.sh, tc.opt, sq, 10, chunk)
				if err != nil {
					t.Fatal(err)
				}
				if n != wantPruned || !slices.EqualFunc(got, want, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
					t.Fatalf("chunks of %d rows: %d pruned, values differ from the whole-matrix mask (%d pruned)", chunk, n, wantPruned)
				}
			}
		})
	}
}

// TestPruneRowsNonFinite: a NaN weight is reported at its index in the
// whole matrix view, whatever the chunk it falls in, also when the tensor
// is [K, N] (the view's element (4, 5) is the tensor's 5·6+4).
func TestPruneRowsNonFinite(t *testing.T) {
	sh := Shape{Rows: 6, Cols: 8, Stride: 1}
	for _, kn := range []bool{false, true} {
		w := make([]float32, sh.Len())
		for i := range w {
			w[i] = float32(i + 1)
		}
		m := viewRows{rows: sh.Rows, cols: sh.Cols, kn: kn}
		w[m.at(4, 5)] = float32(math.NaN())
		for _, chunk := range []int{1, 4, 6} {
			m.v = slices.Clone(w)
			_, err := pruneRows(m, sh, Options{Method: Magnitude, Pattern: Pattern{N: 2, M: 4}}, nil, 0, chunk)
			if err == nil || err.Error() != "sparsity: non-finite score at 37 (NaN or Inf weights or activations)" {
				t.Fatalf("kn %v, chunk %d: %v", kn, chunk, err)
			}
		}
	}
}

// TestPruneLayerInPlace: Wanda and N:M magnitude prune a [K, N] tensor in
// place, in its own layout, to the values of the whole matrix view's mask
// (MaskNM or MaskRows of the view's scores, Apply, back to [K, N]), and
// PruneLayer leaves its input alone.
func TestPruneLayerInPlace(t *testing.T) {
	rng := rand.New(rand.NewSource(43))
	const k, n = 24, 13
	dims := []int64{k, n}
	sh := Shape{Rows: n, Cols: k, Stride: 1}
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	xtx := make([]float64, k*k)
	for j := 0; j < k; j++ {
		xtx[j*k+j] = 1 + rng.Float64()*9
	}
	cal := fixedGram{xtx: xtx, d: k, n: 10}
	for _, opt := range []Options{
		{Method: Wanda, Pattern: Pattern{N: 2, M: 4}},
		{Method: Wanda, Sparsity: 0.4},
		{Method: Magnitude, Pattern: Pattern{N: 1, M: 4}},
	} {
		view, _, err := ToMatrix(w, LayoutKN, dims)
		if err != nil {
			t.Fatal(err)
		}
		var sq []float64
		if opt.Method == Wanda {
			sq = diagonal(xtx, k)
		}
		scores, err := layerScores(view, sh, opt.Method, sq, 10)
		if err != nil {
			t.Fatal(err)
		}
		var mask []bool
		if opt.Pattern.IsZero() {
			mask, err = MaskRows(scores, sh, opt.Sparsity)
		} else {
			mask, err = MaskNM(scores, sh, opt.Pattern)
		}
		if err != nil {
			t.Fatal(err)
		}
		want := FromMatrix(Apply(view, mask), LayoutKN, sh)
		orig := slices.Clone(w)
		got, rep, err := PruneLayer(context.Background(), Layer{Name: "w", Layout: LayoutKN, Dims: dims, Data: w}, opt, cal)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(w, orig) {
			t.Fatalf("%v: PruneLayer modified its input", opt)
		}
		data := slices.Clone(w)
		got2, rep2, err := pruneLayer(context.Background(), Layer{Name: "w", Layout: LayoutKN, Dims: dims, Data: data}, opt, cal, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if &got2[0] != &data[0] {
			t.Errorf("%v: not pruned in place", opt)
		}
		for _, g := range [][]float32{got, got2} {
			if !slices.Equal(g, want) {
				t.Fatalf("%v: values differ from the whole matrix view's mask", opt)
			}
		}
		if rep.Pruned != countTrue(mask) || rep2.Pruned != rep.Pruned {
			t.Errorf("%v: %d and %d pruned, mask %d", opt, rep.Pruned, rep2.Pruned, countTrue(mask))
		}
	}
}

// TestRowChunk: a chunk holds scoreChunkBytes of float64 scores, at least
// one row.
func TestRowChunk(t *testing.T) {
	for _, tc := range []struct{ cols, want int }{{4096, scoreChunkBytes / (8 * 4096)}, {scoreChunkBytes, 1}, {0, scoreChunkBytes / 8}} {
		if got := rowChunk(tc.cols); got != tc.want {
			t.Errorf("%d columns: %d rows, want %d", tc.cols, got, tc.want)
		}
	}
}
