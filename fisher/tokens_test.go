package fisher_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

// tokenModel is a bigram language model: logits[n, t] = E[ids[n, t]]·W +
// mask[n, t]·b, so the gradient of position t's log-likelihood touches only
// row ids[t] of E, and the Fisher has a closed form.
type tokenModel struct {
	v, d int
	e, w []float32 // [v, d], [d, v]
	b    []float32 // [v]
}

func newTokenModel(r *rand.Rand, v, d int) *tokenModel {
	tm := &tokenModel{v: v, d: d, e: make([]float32, v*d), w: make([]float32, d*v), b: make([]float32, v)}
	for i := range tm.e {
		tm.e[i] = float32(r.NormFloat64())
	}
	for i := range tm.w {
		tm.w[i] = float32(r.NormFloat64() * 0.7)
	}
	for i := range tm.b {
		tm.b[i] = float32(r.NormFloat64() * 0.3)
	}
	return tm
}

func (tm *tokenModel) model(t *testing.T) *onnxio.Model {
	t.Helper()
	m := onnxio.New("bigram", 17)
	for _, x := range []struct {
		name  string
		shape []int64
		v     []float32
	}{{"E", []int64{int64(tm.v), int64(tm.d)}, tm.e}, {"W", []int64{int64(tm.d), int64(tm.v)}, tm.w}, {"b", []int64{int64(tm.v)}, tm.b}} {
		tt, err := onnxio.FromFloat32(x.name, onnxio.Float, x.shape, x.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	axes, _ := onnxio.FromInt64("axes", onnxio.Int64, []int64{1}, []int64{-1})
	if err := m.SetInitializer(axes); err != nil {
		t.Fatal(err)
	}
	seq := []onnxio.Dim{{Param: "batch"}, {Param: "sequence"}}
	m.AddInput(onnxio.ValueInfo{Name: "input_ids", DType: onnxio.Int64, Shape: seq})
	m.AddInput(onnxio.ValueInfo{Name: "attention_mask", DType: onnxio.Int64, Shape: seq})
	if err := m.InsertNodes(
		onnxio.Node{Name: "embed", OpType: "Gather", Inputs: []string{"E", "input_ids"}, Outputs: []string{"h"}},
		onnxio.Node{Name: "head", OpType: "MatMul", Inputs: []string{"h", "W"}, Outputs: []string{"z"}},
		onnxio.Node{Name: "maskf", OpType: "Cast", Inputs: []string{"attention_mask"}, Outputs: []string{"mf"}, Attrs: []onnxio.Attr{onnxio.AttrInt("to", int64(onnxio.Float))}},
		onnxio.Node{Name: "mask3", OpType: "Unsqueeze", Inputs: []string{"mf", "axes"}, Outputs: []string{"m3"}},
		onnxio.Node{Name: "mb", OpType: "Mul", Inputs: []string{"m3", "b"}, Outputs: []string{"bm"}},
		onnxio.Node{Name: "bias", OpType: "Add", Inputs: []string{"z", "bm"}, Outputs: []string{"logits"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "sequence"}, {Value: int64(tm.v)}}})
	return m
}

// fisher returns the exact token-level Fisher of the counted positions.
func (tm *tokenModel) fisher(ids, mask, labels []int64, n, seq int) map[string][]float64 {
	f := map[string][]float64{"E": make([]float64, tm.v*tm.d), "W": make([]float64, tm.d*tm.v), "b": make([]float64, tm.v)}
	count := 0
	for s := 0; s < n; s++ {
		for t := 0; t+1 < seq; t++ {
			k := s*seq + t
			if mask[k] == 0 || mask[k+1] == 0 || labels != nil && labels[k+1] == -100 {
				continue
			}
			count++
			x := ids[k]
			z := make([]float64, tm.v)
			for j := range z {
				z[j] = float64(tm.b[j])
				for i := 0; i < tm.d; i++ {
					z[j] += float64(tm.e[int(x)*tm.d+i]) * float64(tm.w[i*tm.v+j])
				}
			}
			lp := evalharness.LogSoftmax(z)
			for y := 0; y < tm.v; y++ {
				py := math.Exp(lp[y])
				g := make([]float64, tm.v) // e_y − p
				for j := range g {
					g[j] = -math.Exp(lp[j])
				}
				g[y]++
				for i := 0; i < tm.d; i++ {
					ge := 0.0
					for j := 0; j < tm.v; j++ {
						gw := float64(tm.e[int(x)*tm.d+i]) * g[j]
						f["W"][i*tm.v+j] += py * gw * gw
						ge += float64(tm.w[i*tm.v+j]) * g[j]
					}
					f["E"][int(x)*tm.d+i] += py * ge * ge
				}
				for j := range g {
					f["b"][j] += py * g[j] * g[j]
				}
			}
		}
	}
	for _, v := range f {
		for i := range v {
			v[i] /= float64(count)
		}
	}
	return f
}

// Token-level Fisher of [batch, sequence, vocabulary] logits: every counted
// next-token position is one example (attention_mask 1 at t and t+1,
// labels[t+1] not -100), exact over the vocabulary; it equals the closed
// form of a bigram model, including padded positions and ignored labels.
func TestTokenFisherMatchesClosedForm(t *testing.T) {
	requireORT(t)
	r := rand.New(rand.NewSource(3))
	tm := newTokenModel(r, 7, 3)
	const n, seq = 3, 6
	ids := make([]int64, n*seq)
	for i := range ids {
		ids[i] = int64(r.Intn(tm.v))
	}
	mask := []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1} // right padding; left padding
	labels := make([]int64, n*seq)
	copy(labels, ids)
	labels[2*seq+4] = -100
	for _, withLabels := range []bool{false, true} {
		in := map[string]*evalharness.Array{
			"input_ids":      evalharness.FromInt64([]int64{n, seq}, ids),
			"attention_mask": evalharness.FromInt64([]int64{n, seq}, mask),
		}
		ds, err := evalharness.NewDataset(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		var lab []int64
		if withLabels {
			ds.TokenLabels = evalharness.FromInt64([]int64{n, seq}, labels)
			lab = labels
		}
		res, err := fisher.ComputeResult(context.Background(), tm.model(t), ds, fisher.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantCount := 5 + 3 + 4
		if withLabels {
			wantCount--
		}
		if res.Mode != fisher.ModeTokens || res.Examples != wantCount || res.Classes != tm.v {
			t.Fatalf("mode %s, %d examples, %d classes; want %s, %d, %d", res.Mode, res.Examples, res.Classes, fisher.ModeTokens, wantCount, tm.v)
		}
		want := tm.fisher(ids, mask, lab, n, seq)
		for name, w := range want {
			norm, worst := relErr(res.Fisher[name], w, floorOf(want))
			if worst > 1e-4 {
				t.Errorf("labels=%v %s: max relative error %.3g (norm %.3g)", withLabels, name, worst, norm)
			}
		}
	}
}

// Sampled token Fisher is seeded, and a mode meant for [batch, classes]
// logits is refused on token logits by name.
func TestTokenFisherSampledAndModes(t *testing.T) {
	requireORT(t)
	r := rand.New(rand.NewSource(5))
	tm := newTokenModel(r, 9, 4)
	const n, seq = 4, 5
	ids := make([]int64, n*seq)
	mask := make([]int64, n*seq)
	for i := range ids {
		ids[i], mask[i] = int64(r.Intn(tm.v)), 1
	}
	ds, err := evalharness.NewDataset(map[string]*evalharness.Array{
		"input_ids":      evalharness.FromInt64([]int64{n, seq}, ids),
		"attention_mask": evalharness.FromInt64([]int64{n, seq}, mask),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := tm.model(t)
	checkSeeded(t, m, ds, fisher.Options{Samples: 2, MaxExamples: 3})
	_, err = fisher.Compute(context.Background(), m, ds, fisher.Options{Mode: fisher.ModeRows})
	if !errors.Is(err, fisher.ErrModel) || !strings.Contains(err.Error(), "token logits take mode tokens") {
		t.Fatalf("err = %v, want ErrModel naming mode tokens", err)
	}
	allPad := make([]int64, n*seq)
	ds0, err := evalharness.NewDataset(map[string]*evalharness.Array{
		"input_ids":      evalharness.FromInt64([]int64{n, seq}, ids),
		"attention_mask": evalharness.FromInt64([]int64{n, seq}, allPad),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fisher.Compute(context.Background(), m, ds0, fisher.Options{Samples: 1})
	if !errors.Is(err, fisher.ErrModel) || !strings.Contains(err.Error(), "no counted token position") {
		t.Fatalf("err = %v, want ErrModel: no counted token position", err)
	}
}
