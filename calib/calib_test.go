package calib_test

import (
	"errors"
	"math"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/calib/calibtest"
)

// TestFromActivationsConforms runs the in-memory implementation through the
// conformance suite, with the default im2col chunk and with a tiny one
// (several chunks per batch, ending on partial chunks).
func TestFromActivationsConforms(t *testing.T) {
	for _, chunk := range []int{0, 7} {
		calibtest.Run(t, func(t *testing.T, f calibtest.Fixture) (calib.Stats, error) {
			r := f.Request
			r.Im2colChunk = chunk
			return calib.FromActivations(f.Model, f.Activations, r, nil)
		})
	}
}

// TestNoneIsMissing: None answers ErrMissing to everything.
func TestNoneIsMissing(t *testing.T) {
	_, _, _, e1 := calib.None.InputGram("w")
	_, _, e2 := calib.None.SquaredColumnNorms("w")
	_, _, e3 := calib.None.ActivationRange("t")
	_, _, e4 := calib.None.ActivationHistogram("t")
	for i, err := range []error{e1, e2, e3, e4} {
		if !errors.Is(err, calib.ErrMissing) {
			t.Errorf("method %d: err = %v, want ErrMissing", i, err)
		}
	}
}

func TestGramOf(t *testing.T) {
	g, n, err := calib.GramOf([]float32{1, 2, 3, 4, 5, 6}, 2) // rows (1,2) (3,4) (5,6)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{35, 44, 44, 56}
	if n != 3 {
		t.Errorf("n = %d, want 3", n)
	}
	for i := range want {
		if g[i] != want[i] {
			t.Fatalf("Gram %v, want %v", g, want)
		}
	}
	if _, _, err := calib.GramOf([]float32{1, 2, 3}, 2); !errors.Is(err, calib.ErrUnsupported) {
		t.Errorf("3 values in rows of 2: err = %v, want ErrUnsupported", err)
	}
	if _, _, err := calib.GramOf([]float32{1, float32(math.Inf(1))}, 2); !errors.Is(err, calib.ErrNonFinite) {
		t.Errorf("Inf: err = %v, want ErrNonFinite", err)
	}
}

// TestNormsOnlyEqualsGramDiagonal: the norms-only accumulator is
// bit-identical to the Gram's diagonal on values whose sums round.
func TestNormsOnlyEqualsGramDiagonal(t *testing.T) {
	const d = 7
	x := make([]float64, 301*d)
	for i := range x {
		x[i] = math.Sin(float64(i)*0.37) * math.Exp(float64(i%11))
	}
	g, nd := calib.NewGram(d), calib.NewNorms(d)
	for r0 := 0; r0 < len(x); r0 += 64 * d { // uneven batches
		part := x[r0:min(r0+64*d, len(x))]
		g.AddRows(part)
		nd.AddRows(part)
	}
	a, b := g.Diagonal(), nd.Diagonal()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("column %d: Gram diagonal %v, norms %v", i, a[i], b[i])
		}
	}
	// transA: columns of a d×m matrix
	g, nd = calib.NewGram(d), calib.NewNorms(d)
	g.AddColumns(x[:d*40], 40)
	nd.AddColumns(x[:d*40], 40)
	a, b = g.Diagonal(), nd.Diagonal()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("transA column %d: Gram diagonal %v, norms %v", i, a[i], b[i])
		}
	}
}
