package sparsity

import (
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// naiveConv computes output channel o of a 2-D convolution without bias,
// directly from the definition (no im2col).
func naiveConv(x []float32, N, C, H, W int, w []float32, cg, kh, kw, group, o, oPerGroup int, sy, sx, dy, dx, pt, pl, oh, ow int) []float64 {
	var out []float64
	gr := o / oPerGroup
	for s := 0; s < N; s++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				acc := 0.0
				for c := 0; c < cg; c++ {
					for i := 0; i < kh; i++ {
						for j := 0; j < kw; j++ {
							y, xx := oy*sy-pt+i*dy, ox*sx-pl+j*dx
							if y < 0 || y >= H || xx < 0 || xx >= W {
								continue
							}
							acc += float64(x[((s*C+gr*cg+c)*H+y)*W+xx]) * float64(w[((o*cg+c)*kh+i)*kw+j])
						}
					}
				}
				out = append(out, acc)
			}
		}
	}
	return out
}

// TestConvGram checks Σ y² = wᵀ(XᵀX)w for each output channel w of a
// convolution, with y computed directly: the im2col Gram, its patch order
// and its padding agree with the convolution.
func TestConvGram(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	tests := []struct {
		name                       string
		N, C, H, W, O, kh, kw, grp int
		attrs                      []onnxio.Attr
		sy, sx, dy, dx, pt, pl     int
		oh, ow                     int
	}{
		{"pad 1", 2, 3, 5, 6, 4, 3, 3, 1, []onnxio.Attr{onnxio.AttrIntList("pads", 1, 1, 1, 1)}, 1, 1, 1, 1, 1, 1, 5, 6},
		{"stride 2 dilation 2", 2, 2, 7, 7, 3, 3, 2, 1, []onnxio.Attr{onnxio.AttrIntList("strides", 2, 1), onnxio.AttrIntList("dilations", 2, 1), onnxio.AttrIntList("pads", 0, 1, 1, 0)}, 2, 1, 2, 1, 0, 1, 2, 7},
		{"same upper", 1, 2, 4, 4, 2, 3, 3, 1, []onnxio.Attr{onnxio.AttrStr("auto_pad", "SAME_UPPER")}, 1, 1, 1, 1, 1, 1, 4, 4},
		{"group 2", 2, 4, 4, 4, 4, 3, 3, 2, []onnxio.Attr{onnxio.AttrInt("group", 2), onnxio.AttrIntList("pads", 1, 1, 1, 1)}, 1, 1, 1, 1, 1, 1, 4, 4},
	}
	for _, tc := range tests {
		cg := tc.C / tc.grp
		x := randMat(rng, tc.N*tc.C*tc.H*tc.W)
		w := randMat(rng, tc.O*cg*tc.kh*tc.kw)
		n := onnxio.Node{Name: "conv", OpType: "Conv", Inputs: []string{"x", "w"}, Attrs: tc.attrs}
		g, d, rows, err := convGram(Activation{Shape: []int64{int64(tc.N), int64(tc.C), int64(tc.H), int64(tc.W)}, Data: x},
			[]int64{int64(tc.O), int64(cg), int64(tc.kh), int64(tc.kw)}, n)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if d != cg*tc.kh*tc.kw || rows != int64(tc.N*tc.grp*tc.oh*tc.ow) {
			t.Fatalf("%s: d=%d rows=%d", tc.name, d, rows)
		}
		// For group > 1 the Gram pools all groups: Σ over groups of y² for
		// the same filter applied to each group's channels.
		for o := 0; o < tc.O; o++ {
			want := 0.0
			for gr := 0; gr < tc.grp; gr++ {
				// apply filter o to group gr
				ww := make([]float32, tc.O*cg*tc.kh*tc.kw)
				copy(ww[gr*cg*tc.kh*tc.kw*(tc.O/tc.grp):], w[o*d:(o+1)*d])
				ys := naiveConv(x, tc.N, tc.C, tc.H, tc.W, ww, cg, tc.kh, tc.kw, tc.grp, gr*(tc.O/tc.grp), tc.O/tc.grp, tc.sy, tc.sx, tc.dy, tc.dx, tc.pt, tc.pl, tc.oh, tc.ow)
				for _, y := range ys {
					want += y * y
				}
			}
			got := 0.0
			for i := 0; i < d; i++ {
				for j := 0; j < d; j++ {
					got += float64(w[o*d+i]) * g[i*d+j] * float64(w[o*d+j])
				}
			}
			if math.Abs(got-want) > 1e-9*math.Max(1, want) {
				t.Errorf("%s: channel %d: wᵀGw = %v, Σy² = %v", tc.name, o, got, want)
			}
		}
	}
}

func TestGramAndGemmTransA(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	x := randMat(rng, 7*5)
	g, rows := Gram(x, 5)
	if rows != 7 {
		t.Fatal(rows)
	}
	for i := 0; i < 5; i++ {
		for j := 0; j < 5; j++ {
			want := 0.0
			for r := 0; r < 7; r++ {
				want += float64(x[r*5+i]) * float64(x[r*5+j])
			}
			if math.Abs(g[i*5+j]-want) > 1e-12 {
				t.Fatalf("G[%d,%d] = %v, want %v", i, j, g[i*5+j], want)
			}
		}
	}
	// Gemm with transA=1 takes A as [K, M]: the Gram is over its columns.
	xt := make([]float32, len(x))
	transpose(xt, x, 7, 5)
	c := &Captured{
		nodes: map[string]onnxio.Node{"w": {Name: "gemm", OpType: "Gemm", Inputs: []string{"a", "w"}, Attrs: []onnxio.Attr{onnxio.AttrInt("transA", 1)}}},
		acts:  map[string]Activation{"a": {Shape: []int64{5, 7}, Data: xt}},
		dims:  map[string][]int64{"w": {5, 3}},
	}
	g2, d, n, err := c.InputGram("w")
	if err != nil || d != 5 || n != 7 {
		t.Fatalf("transA: d=%d n=%d err=%v", d, n, err)
	}
	for i := range g {
		if math.Abs(g[i]-g2[i]) > 1e-12 {
			t.Fatal("transA Gram differs")
		}
	}
	if _, _, _, err := c.InputGram("nope"); err == nil {
		t.Error("unknown weight: want error")
	}
}
