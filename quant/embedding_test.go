package quant

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// embeddingModel: ids [n,3] → Gather(table [50,8]) → MatMul(w [8,4]) → y.
func embeddingModel(t *testing.T) (*onnxio.Model, []float32) {
	t.Helper()
	r := rand.New(rand.NewSource(1))
	table := make([]float32, 50*8)
	for i := range table {
		table[i] = float32(r.NormFloat64())
	}
	w := make([]float32, 8*4)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	m := onnxio.New("emb", 17)
	m.AddInput(onnxio.ValueInfo{Name: "ids", DType: onnxio.Int64, Shape: []onnxio.Dim{{Param: "n"}, {Value: 3}}})
	tt, _ := onnxio.FromFloat32("table", onnxio.Float, []int64{50, 8}, table)
	wt, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{8, 4}, w)
	for _, x := range []*onnxio.Tensor{tt, wt} {
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.InsertNodes(
		onnxio.Node{Name: "gather", OpType: "Gather", Inputs: []string{"table", "ids"}, Outputs: []string{"e"}},
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"e", "w"}, Outputs: []string{"y"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	return m, table
}

func TestEmbeddingsQuantized(t *testing.T) {
	m, table := embeddingModel(t)
	for _, act := range []string{"", "dynamic"} {
		q, rep, err := Quantize(context.Background(), m, Options{Weights: "int8", Activations: act})
		if err != nil {
			t.Fatal(err)
		}
		if q.HasInitializer("table") || !q.HasInitializer("table_quantized") {
			t.Fatalf("%q: the embedding table was not replaced by int8: %v", act, q.Initializers())
		}
		dt, _, _ := q.InitializerInfo("table_quantized")
		if dt != onnxio.Int8 {
			t.Fatalf("table stored as %v", dt)
		}
		var emb *LayerReport
		for i := range rep.Layers {
			if rep.Layers[i].Weight == "table" {
				emb = &rep.Layers[i]
			}
		}
		if emb == nil || emb.RelError > 0.01 {
			t.Fatalf("%q: embedding report %+v", act, emb)
		}
		// the rows dequantize to within half a step of the float table
		qt, _ := q.Initializer("table_quantized")
		codes, _ := qt.Float64()
		st, _ := q.Initializer("table_scale")
		scale, _ := st.Float64()
		for i, c := range codes {
			if d := math.Abs(c*scale[0] - float64(table[i])); d > scale[0]/2+1e-7 {
				t.Fatalf("row value %d off by %g (scale %g)", i, d, scale[0])
			}
		}
		if err := evalharness.Init(""); err != nil {
			continue // ONNX Runtime checks below need the library (make ort)
		}
		ids := []int64{0, 7, 49, 3, 3, 12}
		run := func(mm *onnxio.Model) []float64 {
			b, err := mm.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			s, err := evalharness.NewSession(b, evalharness.SessionOptions{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			out, err := s.Run(map[string]*evalharness.Array{"ids": evalharness.FromInt64([]int64{2, 3}, ids)})
			if err != nil {
				t.Fatal(err)
			}
			v, _ := out[0].Float64()
			return v
		}
		ref, got := run(m), run(q)
		var num, den float64
		for i := range ref {
			num += (got[i] - ref[i]) * (got[i] - ref[i])
			den += ref[i] * ref[i]
		}
		if rel := math.Sqrt(num / den); rel > 0.02 {
			t.Fatalf("%q: quantized output off by %.4f relative", act, rel)
		}
	}
}

func TestEmbeddingsExcluded(t *testing.T) {
	m, _ := embeddingModel(t)
	q, _, err := Quantize(context.Background(), m, Options{Weights: "int8", ExcludeOps: []string{"Gather"}})
	if err != nil {
		t.Fatal(err)
	}
	if !q.HasInitializer("table") {
		t.Fatal("--exclude-ops Gather did not keep the table in float")
	}
}
