package quant

import (
	"context"
	"math"
	"math/rand"
	"slices"
	"testing"
)

// TestGPTQRowChunks: quantizing the output channels in row chunks (every
// chunk size, including sizes that do not divide N and a Gram given to be
// overwritten) gives the unchunked result bit for bit: codes, scales,
// zero points, damping and loss.
func TestGPTQRowChunks(t *testing.T) {
	rng := rand.New(rand.NewSource(31))
	for _, tc := range []struct {
		name           string
		k, n, bs, lazy int
		sym, act, dead bool
	}{
		{"asym", 64, 10, 32, 128, false, false, false},
		{"sym lazy 32", 96, 37, 16, 32, true, false, false},
		{"act-order", 64, 23, 16, 32, false, true, false},
		{"dead input, damping raised", 96, 13, 16, 32, true, false, true},
		{"K not a multiple of the lazy block", 200, 31, 32, 64, false, false, false},
		{"act-order, one row", 64, 1, 32, 128, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, xtx := correlatedInputs(rng, 128, tc.k)
			if tc.dead {
				xtx[5*tc.k+5] = 0 // row 5 keeps its off-diagonal terms: not PD
			}
			w := randWeights(rng, tc.k*tc.n, 0.5)
			opt := GPTQOptions{Block: BlockOptions{BlockSize: tc.bs, Symmetric: tc.sym}, ActOrder: tc.act, LazyBlock: tc.lazy}
			want, wantInfo, err := gptq(context.Background(), w, tc.k, tc.n, xtx, false, tc.n, opt)
			if err != nil {
				t.Fatal(err)
			}
			if tc.dead && (wantInfo.DeadColumns != 1 || wantInfo.Damp <= 0.01) {
				t.Fatalf("dead input: %+v", wantInfo)
			}
			for _, rows := range []int{1, 2, 3, 7, tc.n - 1, tc.n + 5} {
				for _, owned := range []bool{false, true} {
					h := append([]float64(nil), xtx...)
					got, info, err := gptq(context.Background(), w, tc.k, tc.n, h, owned, rows, opt)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got.Codes, want.Codes) || !slices.Equal(got.ZeroPoints, want.ZeroPoints) ||
						!slices.EqualFunc(got.Scales, want.Scales, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
						t.Fatalf("%d rows a chunk (owned %v): codes, scales or zero points differ", rows, owned)
					}
					if math.Float64bits(info.Loss) != math.Float64bits(wantInfo.Loss) || info.Damp != wantInfo.Damp || info.DeadColumns != wantInfo.DeadColumns {
						t.Fatalf("%d rows a chunk: info %+v, want %+v", rows, info, wantInfo)
					}
					if !owned && !slices.Equal(h, xtx) {
						t.Fatal("the Gram was modified without being given")
					}
				}
			}
		})
	}
}

// TestGPTQChunkRows: the row chunk holds gptqChunkBytes of float64s, at
// least one row.
func TestGPTQChunkRows(t *testing.T) {
	for _, tc := range []struct{ k, want int }{
		{2048, gptqChunkBytes / (8 * 2048)},
		{11008, gptqChunkBytes / (8 * 11008)},
		{gptqChunkBytes, 1},
		{0, gptqChunkBytes / 8},
	} {
		if got := gptqChunkRows(tc.k); got != tc.want {
			t.Errorf("K = %d: %d rows, want %d", tc.k, got, tc.want)
		}
	}
}
