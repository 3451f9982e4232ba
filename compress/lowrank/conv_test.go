package lowrank

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// conv2d is a direct 2-D convolution from the ONNX Conv definition
// (batch 1, group 1): x [c, h, w], weight [o, c, kh, kw], attrs normalized.
func conv2d(x []float64, c, h, w int, wt []float64, o int, a ConvAttrs) (y []float64, ho, wo int) {
	kh, kw := a.Kernel[0], a.Kernel[1]
	sh, sw := a.Strides[0], a.Strides[1]
	dh, dw := a.Dilations[0], a.Dilations[1]
	ho = (h+a.Pads[0]+a.Pads[2]-dh*(kh-1)-1)/sh + 1
	wo = (w+a.Pads[1]+a.Pads[3]-dw*(kw-1)-1)/sw + 1
	y = make([]float64, o*ho*wo)
	for p := 0; p < o; p++ {
		for i := 0; i < ho; i++ {
			for j := 0; j < wo; j++ {
				var sum float64
				for ci := 0; ci < c; ci++ {
					for u := 0; u < kh; u++ {
						for v := 0; v < kw; v++ {
							yy := i*sh + u*dh - a.Pads[0]
							xx := j*sw + v*dw - a.Pads[1]
							if yy < 0 || yy >= h || xx < 0 || xx >= w {
								continue
							}
							sum += wt[((p*c+ci)*kh+u)*kw+v] * x[(ci*h+yy)*w+xx]
						}
					}
				}
				y[(p*ho+i)*wo+j] = sum
			}
		}
	}
	return y, ho, wo
}

func randVec(rng *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return v
}

func maxAbsDiff(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

var convCases = []struct {
	name       string
	o, c, h, w int
	attrs      ConvAttrs
}{
	{"3x3 same pad", 6, 4, 9, 8, ConvAttrs{Kernel: []int{3, 3}, Pads: []int{1, 1, 1, 1}}},
	{"3x5 asym pads", 5, 3, 10, 11, ConvAttrs{Kernel: []int{3, 5}, Pads: []int{0, 2, 2, 1}}},
	{"stride 2x1 dilation 1x2", 4, 3, 12, 12, ConvAttrs{Kernel: []int{3, 3}, Strides: []int{2, 1}, Dilations: []int{1, 2}, Pads: []int{1, 2, 1, 2}}},
	{"5x5 stride 2 no pad", 8, 2, 13, 13, ConvAttrs{Kernel: []int{5, 5}, Strides: []int{2, 2}}},
	{"valid auto_pad", 3, 3, 7, 7, ConvAttrs{Kernel: []int{3, 2}, AutoPad: "VALID", Pads: []int{1, 1, 1, 1}}},
}

// TestChannelExactAtFullRank: Conv(W) = Conv1x1(Conv_k(x; first); second) at
// full rank, with the original strides, pads and dilations on the first.
func TestChannelExactAtFullRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, cc := range convCases {
		t.Run(cc.name, func(t *testing.T) {
			a, err := cc.attrs.Normalize(cc.attrs.Kernel)
			if err != nil {
				t.Fatal(err)
			}
			kh, kw := a.Kernel[0], a.Kernel[1]
			w := randVec(rng, cc.o*cc.c*kh*kw)
			x := randVec(rng, cc.c*cc.h*cc.w)
			want, ho, wo := conv2d(x, cc.c, cc.h, cc.w, w, cc.o, a)

			m, n := cc.o, cc.c*kh*kw
			s, err := ExactSVD(w, m, n)
			if err != nil {
				t.Fatal(err)
			}
			r := s.K()
			second, first := s.Factors(r) // second [o, r], first [r, c·kh·kw]
			fa, sa, err := SplitChannel(a)
			if err != nil {
				t.Fatal(err)
			}
			z, zh, zw := conv2d(x, cc.c, cc.h, cc.w, first, r, fa)
			got, gh, gw := conv2d(z, r, zh, zw, second, cc.o, sa)
			if gh != ho || gw != wo {
				t.Fatalf("output %d×%d, want %d×%d", gh, gw, ho, wo)
			}
			if d := maxAbsDiff(got, want); d > 1e-9 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
}

// TestSpatialExactAtFullRank: Conv(W) = Conv_{1×kw}(Conv_{kh×1}(x; vert);
// horiz) at full rank, pads, strides and dilations split by axis.
func TestSpatialExactAtFullRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, cc := range convCases {
		t.Run(cc.name, func(t *testing.T) {
			a, err := cc.attrs.Normalize(cc.attrs.Kernel)
			if err != nil {
				t.Fatal(err)
			}
			kh, kw := a.Kernel[0], a.Kernel[1]
			w := randVec(rng, cc.o*cc.c*kh*kw)
			x := randVec(rng, cc.c*cc.h*cc.w)
			want, ho, wo := conv2d(x, cc.c, cc.h, cc.w, w, cc.o, a)

			m, n := cc.c*kh, cc.o*kw
			s, err := ExactSVD(SpatialMatrix(w, cc.o, cc.c, kh, kw), m, n)
			if err != nil {
				t.Fatal(err)
			}
			r := s.K()
			fa, fb := s.Factors(r)
			vert, horiz := SpatialWeights(fa, fb, r, cc.o, cc.c, kh, kw)
			va, ha, err := SplitSpatial(a)
			if err != nil {
				t.Fatal(err)
			}
			z, zh, zw := conv2d(x, cc.c, cc.h, cc.w, vert, r, va)
			got, gh, gw := conv2d(z, r, zh, zw, horiz, cc.o, ha)
			if gh != ho || gw != wo {
				t.Fatalf("output %d×%d, want %d×%d", gh, gw, ho, wo)
			}
			if d := maxAbsDiff(got, want); d > 1e-9 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
}

// TestSpatialMatrixLayout pins the permutation M[(c,i),(p,j)] = W[p,c,i,j].
func TestSpatialMatrixLayout(t *testing.T) {
	o, c, kh, kw := 2, 3, 2, 4
	w := make([]float64, o*c*kh*kw)
	for i := range w {
		w[i] = float64(i)
	}
	m := SpatialMatrix(w, o, c, kh, kw)
	for p := 0; p < o; p++ {
		for ci := 0; ci < c; ci++ {
			for i := 0; i < kh; i++ {
				for j := 0; j < kw; j++ {
					if got, want := m[(ci*kh+i)*(o*kw)+p*kw+j], w[((p*c+ci)*kh+i)*kw+j]; got != want {
						t.Fatalf("M[(%d,%d),(%d,%d)] = %g, want %g", ci, i, p, j, got, want)
					}
				}
			}
		}
	}
}

// TestSpatialLowRankIsEckartYoung: at rank r the spatial factors' product,
// permuted back, is the best rank-r approximation of SpatialMatrix(W).
func TestSpatialLowRankIsEckartYoung(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	o, c, kh, kw := 6, 5, 3, 3
	w := randVec(rng, o*c*kh*kw)
	m, n := c*kh, o*kw
	s, err := ExactSVD(SpatialMatrix(w, o, c, kh, kw), m, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{1, 4, 9} {
		fa, fb := s.Factors(r)
		vert, horiz := SpatialWeights(fa, fb, r, o, c, kh, kw)
		// Rebuild W_r[p,c,i,j] = Σ_k vert[k,c,i]·horiz[p,k,j].
		wr := make([]float64, len(w))
		for p := 0; p < o; p++ {
			for ci := 0; ci < c; ci++ {
				for i := 0; i < kh; i++ {
					for j := 0; j < kw; j++ {
						var sum float64
						for k := 0; k < r; k++ {
							sum += vert[(k*c+ci)*kh+i] * horiz[(p*r+k)*kw+j]
						}
						wr[((p*c+ci)*kh+i)*kw+j] = sum
					}
				}
			}
		}
		got, want := sqDiff(w, wr), s.Tail(r)
		if math.Abs(got-want) > 1e-5*want {
			t.Errorf("rank %d: ‖W−W_r‖² = %g, Σ_{i>r}σ² = %g", r, got, want)
		}
	}
}

func TestConvRefusals(t *testing.T) {
	cases := []struct {
		name  string
		attrs ConvAttrs
		split func(ConvAttrs) (ConvAttrs, ConvAttrs, error)
	}{
		{"grouped channel", ConvAttrs{Kernel: []int{3, 3}, Group: 2}, SplitChannel},
		{"grouped spatial", ConvAttrs{Kernel: []int{3, 3}, Group: 4}, SplitSpatial},
		{"1-D spatial", ConvAttrs{Kernel: []int{3}}, SplitSpatial},
		{"3-D spatial", ConvAttrs{Kernel: []int{3, 3, 3}}, SplitSpatial},
	}
	for _, c := range cases {
		a, err := c.attrs.Normalize(c.attrs.Kernel)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, _, err := c.split(a); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", c.name, err)
		}
	}
	bad := []ConvAttrs{
		{Kernel: []int{3, 3}, AutoPad: "SAME_UPPER"},
		{Kernel: []int{3, 3}, Pads: []int{1, 1}},
		{Kernel: []int{3, 3}, Strides: []int{1}},
		{Kernel: []int{5, 5}},
	}
	for _, b := range bad {
		if _, err := b.Normalize([]int{3, 3}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Normalize(%+v): err = %v, want ErrUnsupported", b, err)
		}
	}
}

func TestNormalizeDefaults(t *testing.T) {
	a, err := ConvAttrs{}.Normalize([]int{3, 5})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Strides, []int{1, 1}) || !slices.Equal(a.Dilations, []int{1, 1}) ||
		!slices.Equal(a.Pads, []int{0, 0, 0, 0}) || a.Group != 1 || !a.IsStride1() || a.IsPointwise() {
		t.Errorf("defaults: %+v", a)
	}
	p, _ := ConvAttrs{}.Normalize([]int{1, 1})
	if !p.IsPointwise() {
		t.Error("1×1 kernel not pointwise")
	}
}
