package sparsity

import (
	"bytes"
	"context"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// gramsByName serves a random XᵀX (and its diagonal) per weight.
type gramsByName struct {
	calib.Missing
	g map[string][]float64
}

func (s gramsByName) InputGram(name string) ([]float64, int, int64, error) {
	g, ok := s.g[name]
	if !ok {
		return nil, 0, 0, calib.ErrMissing
	}
	d := int(math.Sqrt(float64(len(g))))
	return slices.Clone(g), d, 20, nil
}

func (s gramsByName) SquaredColumnNorms(name string) ([]float64, int64, error) {
	g, ok := s.g[name]
	if !ok {
		return nil, 0, calib.ErrMissing
	}
	d := int(math.Sqrt(float64(len(g))))
	return diagonal(g, d), 20, nil
}

// TestPruneModelInPlace: PruneModel, which prunes float32 weights in
// bytes of their own, stores what PruneLayer returns for each weight, bit
// for bit, for every method, on a model held in memory and on one with
// external data; the in-memory model's earlier tensors and the external
// data file are not written.
func TestPruneModelInPlace(t *testing.T) {
	rng := rand.New(rand.NewSource(17))
	base := testModel(t, rng)
	dir := t.TempDir()
	path := filepath.Join(dir, "m.onnx")
	if err := base.Save(path, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Threshold: 64}); err != nil {
		t.Fatal(err)
	}
	layers, _, err := Candidates(base, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	cal := gramsByName{g: map[string][]float64{}}
	for _, l := range layers {
		sh, err := ShapeOf(l.Layout, l.Dims)
		if err != nil {
			t.Fatal(err)
		}
		x := randMat(rng, 20*sh.Cols)
		g := make([]float64, sh.Cols*sh.Cols)
		for s := 0; s < 20; s++ {
			for i := 0; i < sh.Cols; i++ {
				for j := 0; j < sh.Cols; j++ {
					g[i*sh.Cols+j] += float64(x[s*sh.Cols+i]) * float64(x[s*sh.Cols+j])
				}
			}
		}
		cal.g[l.Name] = g
	}
	for _, opt := range []Options{
		{Method: SparseGPT, Pattern: Pattern{N: 2, M: 4}, BlockSize: 8},
		{Method: SparseGPT, Sparsity: 0.5, BlockSize: 8},
		{Method: Wanda, Pattern: Pattern{N: 2, M: 4}},
		{Method: Wanda, Sparsity: 0.5},
		{Method: Magnitude, Pattern: Pattern{N: 2, M: 4}},
		{Method: Magnitude, Sparsity: 0.5},
	} {
		for _, external := range []bool{false, true} {
			m := base.Clone()
			if external {
				if m, err = onnxio.Load(path); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string][]float32{}
			held := map[string][]float32{} // views of the model's own tensors
			for _, l := range layers {
				tt, err := m.Initializer(l.Name)
				if err != nil {
					t.Fatal(err)
				}
				if l.Data, err = tt.Float32(); err != nil {
					t.Fatal(err)
				}
				held[l.Name] = slices.Clone(l.Data)
				if !external {
					if v, ok := tt.Float32View(); ok {
						held[l.Name] = v // the model's RawData
					}
				}
				out, _, err := PruneLayer(context.Background(), l, opt, cal)
				if err != nil {
					t.Fatal(err)
				}
				want[l.Name] = out
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			before := map[string][]byte{}
			for _, f := range files {
				before[f], _ = os.ReadFile(f)
			}
			if _, err := PruneModel(context.Background(), m, opt, Selection{}, cal); err != nil {
				t.Fatalf("%v external %v: %v", opt, external, err)
			}
			for _, l := range layers {
				if want[l.Name] == nil {
					continue
				}
				tt, err := m.Initializer(l.Name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tt.Float32()
				if err != nil {
					t.Fatal(err)
				}
				if tt.DType == onnxio.Float && !slices.EqualFunc(got, want[l.Name], func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
					t.Errorf("%v external %v: %s differs from PruneLayer's", opt, external, l.Name)
				}
				if !external {
					orig, _ := base.Initializer(l.Name)
					ov, _ := orig.Float32()
					if !slices.Equal(held[l.Name], ov) {
						t.Errorf("%v: %s: the model's earlier tensor was written", opt, l.Name)
					}
				}
			}
			for _, f := range files {
				if b, _ := os.ReadFile(f); !bytes.Equal(b, before[f]) {
					t.Errorf("%v external %v: %s was written", opt, external, f)
				}
			}
		}
	}
}
