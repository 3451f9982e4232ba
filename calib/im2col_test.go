package calib_test

import (
	"math"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
)

// TestAddSquaredNormsEqualsPatches: a Conv's column norms computed from
// its input without patches equal, bit for bit, those of its im2col rows
// accumulated by a norms-only Gram, for grouped, strided, dilated, padded
// and auto-padded 1-D and 2-D geometries, on values whose sums round.
func TestAddSquaredNormsEqualsPatches(t *testing.T) {
	cases := []struct {
		name  string
		conv  calib.Conv
		shape []int64
	}{
		{"grouped strided padded", calib.Conv{C: 2, Group: 3, KH: 3, KW: 2, SH: 2, SW: 1, DH: 1, DW: 1, PadT: 1, PadL: 0, PadB: 2, PadR: 1, AutoPad: "NOTSET"}, []int64{3, 6, 7, 5}},
		{"dilated SAME_UPPER 1-D", calib.Conv{C: 3, Group: 1, KH: 1, KW: 3, SH: 1, SW: 1, DH: 1, DW: 2, AutoPad: "SAME_UPPER", OneD: true}, []int64{4, 3, 11}},
		{"SAME_LOWER strided", calib.Conv{C: 1, Group: 2, KH: 2, KW: 3, SH: 2, SW: 3, DH: 2, DW: 1, AutoPad: "SAME_LOWER"}, []int64{2, 2, 9, 10}},
		{"VALID", calib.Conv{C: 4, Group: 1, KH: 3, KW: 3, SH: 1, SW: 1, DH: 1, DW: 1, PadT: 5, AutoPad: "VALID"}, []int64{2, 4, 6, 6}},
		{"depthwise", calib.Conv{C: 1, Group: 5, KH: 3, KW: 3, SH: 1, SW: 1, DH: 1, DW: 1, PadT: 1, PadL: 1, PadB: 1, PadR: 1, AutoPad: "NOTSET"}, []int64{2, 5, 4, 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			size := 1
			for _, d := range tc.shape {
				size *= int(d)
			}
			x := make([]float64, size)
			for i := range x {
				x[i] = math.Sin(float64(i)*0.73) * math.Exp(float64(i%17))
			}
			d := tc.conv.D()
			want := calib.NewNorms(d)
			// the first batch's sums carry into the second's
			for _, half := range [][]float64{x, x} {
				if err := tc.conv.Patches(half, tc.shape, 5, func(mat []float64, rows int) { want.AddRows(mat[:rows*d]) }); err != nil {
					t.Fatal(err)
				}
			}
			sums := make([]float64, d)
			var rows int64
			for range 2 {
				r, err := tc.conv.AddSquaredNorms(x, tc.shape, sums)
				if err != nil {
					t.Fatal(err)
				}
				rows += r
			}
			if rows != want.N() {
				t.Fatalf("%d rows, want %d", rows, want.N())
			}
			if got := want.Diagonal(); !slices.Equal(sums, got) {
				t.Fatalf("norms %v, want %v", sums, got)
			}
		})
	}
}
