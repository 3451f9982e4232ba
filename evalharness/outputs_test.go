package evalharness

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// requireORTLib skips the test when ONNX Runtime cannot be loaded.
func requireORTLib(t *testing.T) {
	t.Helper()
	if err := Init(""); err != nil {
		if errors.Is(err, ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
}

func node(op string, in, out []string, attrs ...onnxio.Attr) onnxio.Node {
	return onnxio.Node{Name: out[0] + "_node", OpType: op, Inputs: in, Outputs: out, Attrs: attrs}
}

// bigramLM builds a language model whose first output is an int64 copy of
// input_ids and whose second is the token scores
// logits[b,t,:] = table[input_ids[b,t], :] · attention_mask[b,t] ([batch,
// seq, V]); a third output is softmax(logits).
func bigramLM(t *testing.T, table []float32, v int64) *Session {
	t.Helper()
	return gatherModel(t, table, v, v)
}

// gatherModel is bigramLM with a [rows, v] table: with rows > v its
// outputs are per-token features of width v, not scores over the rows
// token ids (an encoder's hidden states).
func gatherModel(t *testing.T, table []float32, rows, v int64) *Session {
	t.Helper()
	m := onnxio.New("lm", 17)
	dims := []onnxio.Dim{{Value: -1, Param: "batch"}, {Value: -1, Param: "seq"}}
	m.AddInput(onnxio.ValueInfo{Name: "input_ids", DType: onnxio.Int64, Shape: dims})
	m.AddInput(onnxio.ValueInfo{Name: "attention_mask", DType: onnxio.Int64, Shape: dims})
	e, err := onnxio.FromFloat32("E", onnxio.Float, []int64{rows, v}, table)
	if err != nil {
		t.Fatal(err)
	}
	ax, _ := onnxio.NewTensor("ax", onnxio.Int64, []int64{1}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	for _, x := range []*onnxio.Tensor{e, ax} {
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
	}
	err = m.InsertNodes(
		node("Identity", []string{"input_ids"}, []string{"ids"}),
		node("Gather", []string{"E", "input_ids"}, []string{"raw"}),
		node("Cast", []string{"attention_mask"}, []string{"maskf"}, onnxio.AttrInt("to", int64(onnxio.Float))),
		node("Unsqueeze", []string{"maskf", "ax"}, []string{"masku"}),
		node("Mul", []string{"raw", "masku"}, []string{"logits"}),
		node("Softmax", []string{"logits"}, []string{"probs"}, onnxio.AttrInt("axis", -1)),
	)
	if err != nil {
		t.Fatal(err)
	}
	out3 := []onnxio.Dim{{Value: -1, Param: "batch"}, {Value: -1, Param: "seq"}, {Value: v}}
	m.AddOutput(onnxio.ValueInfo{Name: "ids", DType: onnxio.Int64, Shape: dims})
	m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: onnxio.Float, Shape: out3})
	m.AddOutput(onnxio.ValueInfo{Name: "probs", DType: onnxio.Float, Shape: out3})
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(b, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tokenData returns input_ids [n, seq] in [0, v) and a right-padded
// attention_mask.
func tokenData(rng *rand.Rand, n, seq, v int64) (ids, mask []int64) {
	ids = make([]int64, n*seq)
	mask = make([]int64, n*seq)
	for i := int64(0); i < n; i++ {
		length := 2 + rng.Int63n(seq-1) // 2..seq real tokens
		for t := int64(0); t < seq; t++ {
			ids[i*seq+t] = rng.Int63n(v)
			if t < length {
				mask[i*seq+t] = 1
			}
		}
	}
	return ids, mask
}

// TestTokenScoresOfTheFloatOutput checks that the default output is the
// first floating-point one (not the int64 copy of input_ids), that
// perplexity equals a direct computation from the definition (masked,
// next-token) and that a named output is measured and reported.
func TestTokenScoresOfTheFloatOutput(t *testing.T) {
	requireORTLib(t)
	const n, seq, v = 5, 6, 7
	rng := rand.New(rand.NewSource(4))
	table := make([]float32, v*v)
	for i := range table {
		table[i] = float32(rng.NormFloat64() * 2)
	}
	lm := bigramLM(t, table, v)
	ids, mask := tokenData(rng, n, seq, v)
	ds, err := NewDataset(map[string]*Array{"input_ids": FromInt64([]int64{n, seq}, ids), "attention_mask": FromInt64([]int64{n, seq}, mask)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), lm, nil, ds, EvalOptions{Batch: 2, Metrics: []string{MetricPerplexity, MetricTokenAcc}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Output != "logits" || strings.Join(res.OutputNames, ",") != "logits" {
		t.Fatalf("measured %q %v, want logits (the first float output)", res.Output, res.OutputNames)
	}
	want, acc := directPerplexity(table, v, seq, ids, ids, mask)
	if got := res.Metrics[MetricPerplexity]; math.Abs(got-want) > 1e-5*want {
		t.Errorf("perplexity %.9g, want %.9g", got, want)
	}
	if got := res.Metrics[MetricTokenAcc]; math.Abs(got-acc) > 1e-12 {
		t.Errorf("token_accuracy %v, want %v", got, acc)
	}

	// [N, T] labels replace input_ids as targets; -100 is ignored.
	labels := append([]int64(nil), ids...)
	for i := range labels {
		if i%4 == 1 {
			labels[i] = -100
		}
	}
	dl, err := datasetFromArrays("mem", map[string]*Array{"input_ids": FromInt64([]int64{n, seq}, ids), "attention_mask": FromInt64([]int64{n, seq}, mask), LabelsName: FromInt64([]int64{n, seq}, labels)})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := Evaluate(context.Background(), lm, lm, dl, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantL, accL := directPerplexity(table, v, seq, ids, labels, mask)
	if got := rl.Metrics[MetricPerplexity]; math.Abs(got-wantL) > 1e-5*wantL || got == want {
		t.Errorf("perplexity with labels %.9g, want %.9g (without: %.9g)", got, wantL, want)
	}
	if got := rl.Metrics[MetricTokenAcc]; math.Abs(got-accL) > 1e-12 {
		t.Errorf("token_accuracy with labels %v, want %v", got, accL)
	}
	for _, m := range []string{MetricPerplexity, MetricTokenAcc, MetricAgreement, MetricKL, MetricCosine} {
		if _, ok := rl.Metrics[m]; !ok {
			t.Errorf("default token metrics %v lack %s", rl.Metrics, m)
		}
	}
	if rl.Metrics[MetricAgreement] != 1 || rl.Metrics[MetricKL] > 1e-12 {
		t.Errorf("self-comparison: %v", rl.Metrics)
	}

	// --output-name: several outputs, each under OUTPUT.metric.
	r2, err := Evaluate(context.Background(), lm, lm, ds, EvalOptions{Outputs: []string{"probs", "logits"}, Metrics: []string{MetricCosine, MetricMaxAbs}})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Output != "probs" || r2.Metrics["probs.cosine"] == 0 || r2.Metrics["logits.max_abs"] != 0 || r2.Metrics[MetricCosine] != r2.Metrics["probs.cosine"] {
		t.Errorf("named outputs: output %q, metrics %v", r2.Output, r2.Metrics)
	}
	if _, err := Evaluate(context.Background(), lm, nil, ds, EvalOptions{Outputs: []string{"ids"}}); err == nil || !strings.Contains(err.Error(), `output "ids" is int64`) {
		t.Errorf("measuring the int64 output: %v", err)
	}
	if _, err := Evaluate(context.Background(), lm, nil, ds, EvalOptions{Outputs: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `no output "nope"`) {
		t.Errorf("unknown output: %v", err)
	}
	// Class metrics on token scores are an error naming the shape.
	lab1 := &Dataset{Inputs: ds.Inputs, Labels: make([]int64, n)}
	if _, err := Evaluate(context.Background(), lm, nil, lab1, EvalOptions{Metrics: []string{MetricAccuracy}}); err == nil || !strings.Contains(err.Error(), "does not apply to output \"logits\" of shape [2 6 7]") && !strings.Contains(err.Error(), "of shape [5 6 7]") {
		t.Errorf("accuracy on token scores: %v", err)
	}
}

// directPerplexity computes, from the definition, the perplexity and token
// accuracy of the bigram model: logits at t (the table row of ids[t])
// predict targets[t+1]; a position counts when mask[t] and mask[t+1] are 1
// and the target is not -100.
func directPerplexity(table []float32, v, seq int64, ids, targets, mask []int64) (ppl, acc float64) {
	var sum float64
	var count, correct int
	n := int64(len(ids)) / seq
	for i := int64(0); i < n; i++ {
		for p := int64(0); p+1 < seq; p++ {
			if mask[i*seq+p] == 0 || mask[i*seq+p+1] == 0 || targets[i*seq+p+1] == -100 {
				continue
			}
			row := table[ids[i*seq+p]*v : (ids[i*seq+p]+1)*v]
			y := targets[i*seq+p+1]
			var z float64
			best := 0
			for j, x := range row {
				z += math.Exp(float64(x))
				if x > row[best] {
					best = j
				}
			}
			sum += math.Log(z) - float64(row[y])
			count++
			if int64(best) == y {
				correct++
			}
		}
	}
	return math.Exp(sum / float64(count)), float64(correct) / float64(count)
}

// TestNaNCandidateFailsTheGate: a candidate whose float output is all NaN
// (behind an int64 first output) scores NaN, not cosine 1; the gate fails
// on a condition that reads the metric and on the output alone; JSON holds
// null and lists the names.
func TestNaNCandidateFailsTheGate(t *testing.T) {
	requireORTLib(t)
	const n, seq, v = 4, 5, 6
	rng := rand.New(rand.NewSource(5))
	good := make([]float32, v*v)
	bad := make([]float32, v*v)
	for i := range good {
		good[i] = float32(rng.NormFloat64())
		bad[i] = float32(math.NaN())
	}
	ids, mask := tokenData(rng, n, seq, v)
	ds, err := NewDataset(map[string]*Array{"input_ids": FromInt64([]int64{n, seq}, ids), "attention_mask": FromInt64([]int64{n, seq}, mask)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), bigramLM(t, bad, v), bigramLM(t, good, v), ds, EvalOptions{Require: []string{MetricCosine}})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Metrics[MetricCosine]; !math.IsNaN(c) {
		t.Fatalf("cosine of an all-NaN candidate = %v, want NaN", c)
	}
	if res.Metrics[MetricTokenAcc] != 0 || res.Metrics[MetricAgreement] != 0 {
		t.Errorf("NaN scores counted as right: %v", res.Metrics)
	}
	for _, name := range []string{"cosine", "kl", "perplexity", "logits"} {
		if !contains(res.Nonfinite, name) {
			t.Errorf("nonfinite %v lacks %s", res.Nonfinite, name)
		}
	}
	g, _ := ParseGate("cosine>=0.99")
	gr := g.CheckResult(res)
	if gr.Passed || gr.Conditions[0].Passed || gr.Conditions[0].Value != nil || !strings.Contains(gr.Conditions[0].Reason, "NaN") {
		t.Fatalf("gate: %+v", gr)
	}
	empty, _ := ParseGate("")
	if gr := empty.CheckResult(res); gr.Passed || !strings.Contains(gr.Failed(), `output "logits" holds`) {
		t.Errorf("gate without conditions: %+v", gr)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	metrics := back["metrics"].(map[string]any)
	if v, ok := metrics["cosine"]; !ok || v != nil {
		t.Errorf("cosine in JSON: %v (want null)", v)
	}
	if !strings.Contains(string(b), `"nonfinite":[`) {
		t.Errorf("JSON lacks nonfinite: %s", b)
	}
	var rt Result
	if err := json.Unmarshal(b, &rt); err != nil || !math.IsNaN(rt.Metrics[MetricCosine]) {
		t.Errorf("round trip: %v, cosine %v", err, rt.Metrics[MetricCosine])
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TestInputsNotBatchedAlongAxis0 evaluates a model with a sample rate
// given once (a fixed [1] table, fed whole; onnxruntime_go cannot build 0-d
// tensors, so the true scalar is covered by TestScalarInputFedWhole) and a
// recurrent state [2, batch, 4] (split along axis 1):
// y = (x + state[0] + state[1]) · sr.
func TestInputsNotBatchedAlongAxis0(t *testing.T) {
	requireORTLib(t)
	m := onnxio.New("rnn", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: -1, Param: "N"}, {Value: 4}}})
	m.AddInput(onnxio.ValueInfo{Name: "sr", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}}})
	m.AddInput(onnxio.ValueInfo{Name: "state", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}, {Value: -1, Param: "N"}, {Value: 4}}})
	i0, _ := onnxio.NewTensor("i0", onnxio.Int64, nil, make([]byte, 8))
	i1, _ := onnxio.NewTensor("i1", onnxio.Int64, nil, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	for _, x := range []*onnxio.Tensor{i0, i1} {
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.InsertNodes(
		node("Gather", []string{"state", "i0"}, []string{"s0"}, onnxio.AttrInt("axis", 0)),
		node("Gather", []string{"state", "i1"}, []string{"s1"}, onnxio.AttrInt("axis", 0)),
		node("Add", []string{"x", "s0"}, []string{"a"}),
		node("Add", []string{"a", "s1"}, []string{"b"}),
		node("Mul", []string{"b", "sr"}, []string{"y"}),
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: -1, Param: "N"}, {Value: 4}}})
	b, _ := m.Bytes()
	s, err := NewSession(b, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 5
	rng := rand.New(rand.NewSource(6))
	x := make([]float32, n*4)
	st := make([]float32, 2*n*4)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range st {
		st[i] = float32(rng.NormFloat64())
	}
	arrays := map[string]*Array{"x": FromFloat32([]int64{n, 4}, x), "sr": FromFloat32([]int64{1}, []float32{16000}), "state": FromFloat32([]int64{2, n, 4}, st)}
	path := filepath.Join(t.TempDir(), "rnn.npz")
	if err := WriteNPZ(path, arrays); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDataset(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Batch: 2, KeepOutputs: true, Metrics: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Samples != n {
		t.Fatalf("samples %d, want %d", res.Samples, n)
	}
	if ax := ds.BatchAxes(); ax["x"] != 0 || ax["sr"] != -1 || ax["state"] != 1 {
		t.Errorf("batch axes %v, want x 0, sr -1, state 1", ax)
	}
	got, _ := res.Outputs[0].Float64()
	for i := 0; i < n; i++ {
		for j := 0; j < 4; j++ {
			want := (float64(x[i*4+j]) + float64(st[i*4+j]) + float64(st[n*4+i*4+j])) * 16000
			if math.Abs(got[i*4+j]-want) > 1e-6*math.Abs(want)+1e-3 {
				t.Fatalf("y[%d,%d] = %v, want %v", i, j, got[i*4+j], want)
			}
		}
	}
	// The state's batch axis must agree with x's.
	bad := map[string]*Array{"x": arrays["x"], "sr": arrays["sr"], "state": FromFloat32([]int64{2, 3, 4}, st[:24])}
	dsb, err := NewDataset(bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dsb.Check(s.Inputs()); err == nil || !strings.Contains(err.Error(), `"state" has 3 along axis 1`) {
		t.Errorf("disagreeing batch axes: %v", err)
	}
}

// TestScalarInputFedWhole: a 0-d input (a sample rate) is given once and
// fed whole to every batch, beside an input batched along axis 0.
func TestScalarInputFedWhole(t *testing.T) {
	var seen [][]int64
	r := &fnRunner{
		ins:  []TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 2}, DimParams: []string{"N", ""}}, {Name: "sr", DType: onnxio.Float, Shape: []int64{}, DimParams: []string{}}},
		outs: []TensorInfo{{Name: "y", DType: onnxio.Float, Shape: []int64{-1, 2}}},
		fn: func(in map[string]*Array) ([]*Array, error) {
			seen = append(seen, in["sr"].Shape, in["x"].Shape)
			sr, _ := in["sr"].Float64()
			x, _ := in["x"].Float64()
			y := make([]float32, len(x))
			for i := range x {
				y[i] = float32(x[i] * sr[0])
			}
			return []*Array{FromFloat32(in["x"].Shape, y)}, nil
		},
	}
	arrays := map[string]*Array{"x": FromFloat32([]int64{3, 2}, []float32{1, 2, 3, 4, 5, 6}), "sr": FromFloat32(nil, []float32{2})}
	path := filepath.Join(t.TempDir(), "sr.npz")
	if err := WriteNPZ(path, arrays); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDataset(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{Batch: 2, KeepOutputs: true, Metrics: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := res.Outputs[0].Float64()
	if res.Samples != 3 || fmtFloats(got) != "[2 4 6 8 10 12]" {
		t.Errorf("samples %d, y %v", res.Samples, got)
	}
	// Every run (evaluation, warm-up and latency runs: nothing to compare)
	// got the scalar whole and x in batches of at most 2.
	for k := 0; k < len(seen); k += 2 {
		if len(seen[k]) != 0 || seen[k+1][0] > 2 {
			t.Fatalf("shapes fed: %v", seen)
		}
	}
}

func fmtFloats(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestScalarInputORT: a model with a true 0-d input (a sample rate) runs
// in ONNX Runtime with the scalar fed whole to every batch.
func TestScalarInputORT(t *testing.T) {
	requireORTLib(t)
	m := onnxio.New("sr", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: -1, Param: "N"}, {Value: 2}}})
	m.AddInput(onnxio.ValueInfo{Name: "sr", DType: onnxio.Int64, Shape: []onnxio.Dim{}})
	if err := m.InsertNodes(
		node("Cast", []string{"sr"}, []string{"srf"}, onnxio.AttrInt("to", int64(onnxio.Float))),
		node("Mul", []string{"x", "srf"}, []string{"y"}),
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: -1, Param: "N"}, {Value: 2}}})
	b, _ := m.Bytes()
	s, err := NewSession(b, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := NewDataset(map[string]*Array{"x": FromFloat32([]int64{3, 2}, []float32{1, 2, 3, 4, 5, 6}), "sr": FromInt64(nil, []int64{16000})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Batch: 2, KeepOutputs: true, NoDefaultLatency: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := res.Outputs[0].Float64()
	if fmtFloats(got) != "[16000 32000 48000 64000 80000 96000]" {
		t.Errorf("y = %v", got)
	}
}

// TestDerivedDecoderInputs: position_ids come from attention_mask and
// missing past_key_values.* are fed empty.
func TestDerivedDecoderInputs(t *testing.T) {
	var fed map[string]*Array
	r := &fnRunner{
		ins: []TensorInfo{
			{Name: "input_ids", DType: onnxio.Int64, Shape: []int64{-1, -1}, DimParams: []string{"batch", "seq"}},
			{Name: "attention_mask", DType: onnxio.Int64, Shape: []int64{-1, -1}, DimParams: []string{"batch", "seq"}},
			{Name: "position_ids", DType: onnxio.Int64, Shape: []int64{-1, -1}, DimParams: []string{"batch", "seq"}},
			{Name: "past_key_values.0.key", DType: onnxio.Float, Shape: []int64{-1, 2, -1, 4}, DimParams: []string{"batch", "", "past", ""}},
			{Name: "past_key_values.0.value", DType: onnxio.Float, Shape: []int64{2, -1, -1, 4}, DimParams: []string{"", "past", "batch", ""}},
		},
		outs: []TensorInfo{{Name: "y", DType: onnxio.Float, Shape: []int64{-1, 1}}},
		fn: func(in map[string]*Array) ([]*Array, error) {
			fed = in
			n := in["input_ids"].Shape[0]
			return []*Array{FromFloat32([]int64{n, 1}, make([]float32, n))}, nil
		},
	}
	ids := FromInt64([]int64{2, 4}, []int64{5, 6, 7, 8, 1, 2, 0, 0})
	mask := FromInt64([]int64{2, 4}, []int64{1, 1, 1, 1, 1, 1, 0, 0})
	ds, err := NewDataset(map[string]*Array{"input_ids": ids, "attention_mask": mask}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{Batch: 2, Metrics: []string{}}); err != nil {
		t.Fatal(err)
	}
	pos, _ := fed["position_ids"].Int64()
	if strconv.Quote(strings.Trim(strings.Join(strings.Fields(strings.Trim(fmtInts(pos), "[]")), ","), ",")) != `"0,1,2,3,0,1,1,1"` {
		t.Errorf("position_ids %v", pos)
	}
	if pkv := fed["past_key_values.0.key"]; pkv == nil || !slices.Equal(pkv.Shape, []int64{2, 2, 0, 4}) {
		t.Errorf("past_key_values: %+v", pkv)
	}
	if pkv := fed["past_key_values.0.value"]; pkv == nil || !slices.Equal(pkv.Shape, []int64{2, 0, 2, 4}) || len(pkv.Data) != 0 {
		t.Errorf("past_key_values (batch on axis 2): %+v", pkv)
	}
}

func fmtInts(v []int64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatInt(x, 10)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// fnRunner is a Runner made of a function, for tests of the harness's own
// logic.
type fnRunner struct {
	ins, outs []TensorInfo
	fn        func(map[string]*Array) ([]*Array, error)
}

func (f *fnRunner) Inputs() []TensorInfo                       { return f.ins }
func (f *fnRunner) Outputs() []TensorInfo                      { return f.outs }
func (f *fnRunner) Run(in map[string]*Array) ([]*Array, error) { return f.fn(in) }

// TestLabelsAndNaNScores: labels outside the classes are an error; NaN
// scores never count as right; top5 >= top1 always.
func TestLabelsAndNaNScores(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	r := randomLinear(rng, 3, 4, 1)
	x := make([]float32, 6*3)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	in := map[string]*Array{"x": FromFloat32([]int64{6, 3}, x)}
	ds, _ := NewDataset(in, []int64{0, 1, 2, 3, 4, 0})
	_, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{})
	if !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), "label 4 of a sample is outside the 4 classes") {
		t.Errorf("label 4 of 4 classes: %v", err)
	}
	nan := &linearRunner{in: 3, out: 4, w: make([]float64, 12)}
	for i := range nan.w {
		nan.w[i] = math.NaN()
	}
	ds2, _ := NewDataset(in, []int64{0, 0, 0, 0, 0, 0}) // argmax of an all-NaN row would be 0
	res, err := Evaluate(context.Background(), nan, r, ds2, EvalOptions{Metrics: []string{MetricAccuracy, MetricTop5, MetricAgreement}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Metrics[MetricAccuracy] != 0 || res.Metrics[MetricTop5] != 0 || res.Metrics[MetricAgreement] != 0 || !contains(res.Nonfinite, "y") {
		t.Errorf("all-NaN scores: metrics %v, nonfinite %v", res.Metrics, res.Nonfinite)
	}
	if res.Reference.Metrics[MetricTop5] < res.Reference.Metrics[MetricAccuracy] {
		t.Errorf("top5 %v < top1 %v", res.Reference.Metrics[MetricTop5], res.Reference.Metrics[MetricAccuracy])
	}
	// One NaN in a row whose finite maximum is the label: top1 and top5
	// agree (both wrong), never top5 < top1.
	row := []float64{5, math.NaN(), 1, 0}
	if argmaxRow(row) != 0 || !rowFinite(row[:1]) || rowFinite(row) {
		t.Fatal("helpers")
	}
}

// mapRunner outputs y[b,0,h,w] = scale · x[b,0,h,w] + shift (a [N,1,H,W]
// map).
func mapRunner(scale, shift float64) *fnRunner {
	return &fnRunner{
		ins:  []TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 1, 3, 3}}},
		outs: []TensorInfo{{Name: "y", DType: onnxio.Float, Shape: []int64{-1, 1, 3, 3}}},
		fn: func(in map[string]*Array) ([]*Array, error) {
			v, _ := in["x"].Float64()
			out := make([]float32, len(v))
			for i, x := range v {
				out[i] = float32(scale*x + shift)
			}
			return []*Array{FromFloat32(in["x"].Shape, out)}, nil
		},
	}
}

// TestMapOutputs: any other float shape takes cosine, mse, max_abs, psnr by
// default; class metrics on it are an error naming the shape.
func TestMapOutputs(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	x := make([]float32, 4*9)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{4, 1, 3, 3}, x)}, []int64{0, 1, 0, 1})
	res, err := Evaluate(context.Background(), mapRunner(1.01, 0), mapRunner(1, 0), ds, EvalOptions{Require: []string{"y.cosine"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{MetricCosine, MetricMSE, MetricMaxAbs, MetricPSNR} {
		if _, ok := res.Metrics[m]; !ok {
			t.Errorf("default map metrics %v lack %s", res.Metrics, m)
		}
	}
	if _, ok := res.Metrics[MetricAccuracy]; ok {
		t.Errorf("accuracy on a map output: %v", res.Metrics)
	}
	for _, m := range []string{MetricAccuracy, MetricKL, MetricAgreement} {
		_, err := Evaluate(context.Background(), mapRunner(1.01, 0), mapRunner(1, 0), ds, EvalOptions{Metrics: []string{m}})
		if err == nil || !strings.Contains(err.Error(), "metric "+m+` does not apply to output "y" of shape [4 1 3 3]`) {
			t.Errorf("%s on a map: %v", m, err)
		}
		_, err = Evaluate(context.Background(), mapRunner(1.01, 0), mapRunner(1, 0), ds, EvalOptions{Require: []string{m}})
		if err == nil || !strings.Contains(err.Error(), "does not apply") {
			t.Errorf("gate on %s of a map: %v", m, err)
		}
	}
	g, err := ParseGate("cosine>=0.99,y.psnr>=30,mse_ratio<=2,w.cosine>=0.5")
	if err != nil {
		t.Fatal(err)
	}
	if gr := g.CheckResult(res); !gr.Conditions[0].Passed || !gr.Conditions[1].Passed || gr.Conditions[2].Reason == "" || gr.Conditions[3].Reason != `output "w" was not measured (name it in EvalOptions.Outputs)` {
		t.Errorf("gate: %+v", gr)
	}
}

// TestGateRatioAndQualified checks X_ratio, OUTPUT.metric and non-finite
// values in gates.
func TestGateRatioAndQualified(t *testing.T) {
	g, err := ParseGate("perplexity_ratio<=1.05,Logits.kl<=0.1,Logits.perplexity_drop>=-1")
	if err != nil {
		t.Fatal(err)
	}
	cand := map[string]float64{"perplexity": 10.4, "Logits.kl": 0.05, "Logits.perplexity": 10.4}
	ref := map[string]float64{"perplexity": 10, "Logits.perplexity": 10}
	r := g.Check(cand, ref)
	if !r.Passed || *r.Conditions[0].Value != 1.04 {
		t.Errorf("%+v", r)
	}
	cand["Logits.kl"] = math.Inf(1)
	if r := g.Check(cand, ref); r.Passed || r.Conditions[1].Value != nil || !strings.Contains(r.Conditions[1].Reason, "+Inf") {
		t.Errorf("Inf: %+v", r)
	}
	if _, err := ParseGate("y.latency_p50_ms<=3"); err == nil {
		t.Error("per-output latency accepted")
	}
	if names, needRef := g.Metrics(); strings.Join(names, ",") != "perplexity,Logits.kl,Logits.perplexity" || !needRef {
		t.Errorf("gate metrics %v %v", names, needRef)
	}
}

// TestMetricsJSON checks nesting of per-output metrics and null for
// non-finite values, both ways.
func TestMetricsJSON(t *testing.T) {
	m := Metrics{"kl": 0.5, "a.b.kl": math.NaN(), "a.b.cosine": 1, "mse": math.Inf(1)}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"a.b":{"cosine":1,"kl":null},"kl":0.5,"mse":null}` {
		t.Errorf("JSON %s", b)
	}
	var back Metrics
	if err := json.Unmarshal(b, &back); err != nil || back["a.b.cosine"] != 1 || !math.IsNaN(back["a.b.kl"]) || !math.IsNaN(back["mse"]) {
		t.Errorf("back %v %v", back, err)
	}
	if got := strings.Join(m.Nonfinite(), ","); got != "a.b.kl,mse" {
		t.Errorf("nonfinite %s", got)
	}
	s := Sums{KL: math.NaN(), MaxAbs: math.Inf(1), Samples: 3}
	sb, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var sback Sums
	if err := json.Unmarshal(sb, &sback); err != nil || !math.IsNaN(sback.KL) || !math.IsInf(sback.MaxAbs, 1) || sback.Samples != 3 {
		t.Errorf("sums round trip: %s -> %+v %v", sb, sback, err)
	}
}

// TestMetricsAgainstNumpy cross-checks cosine, mse, max_abs, psnr (map
// output) and kl, agreement (class output) on a perturbed copy with numpy.
func TestMetricsAgainstNumpy(t *testing.T) {
	pyoracle.Python(t)
	rng := rand.New(rand.NewSource(9))
	x := make([]float32, 6*9)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{6, 1, 3, 3}, x)}, nil)
	res, err := Evaluate(context.Background(), mapRunner(1.1, 0.05), mapRunner(1, 0), ds, EvalOptions{Batch: 4, Metrics: []string{MetricCosine, MetricMSE, MetricMaxAbs, MetricPSNR}})
	if err != nil {
		t.Fatal(err)
	}
	cand := randomLinear(rng, 3, 5, 1)
	ref := &linearRunner{in: 3, out: 5, w: append([]float64(nil), cand.w...)}
	for i := range ref.w {
		ref.w[i] += rng.NormFloat64() * 0.3
	}
	xc := make([]float32, 7*3)
	for i := range xc {
		xc[i] = float32(rng.NormFloat64())
	}
	dc, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{7, 3}, xc)}, nil)
	rc, err := Evaluate(context.Background(), cand, ref, dc, EvalOptions{Batch: 3, Metrics: []string{MetricKL, MetricAgreement, MetricCosine}})
	if err != nil {
		t.Fatal(err)
	}
	co, _ := cand.Run(map[string]*Array{"x": dc.Inputs["x"]})
	ro, _ := ref.Run(map[string]*Array{"x": dc.Inputs["x"]})
	dir := t.TempDir()
	p := filepath.Join(dir, "a.npz")
	mo, _ := mapRunner(1.1, 0.05).Run(map[string]*Array{"x": ds.Inputs["x"]})
	if err := WriteNPZ(p, map[string]*Array{"x": ds.Inputs["x"], "m": mo[0], "c": co[0], "r": ro[0]}); err != nil {
		t.Fatal(err)
	}
	out := pyoracle.Run(t, `
import sys, numpy as np
d = np.load(sys.argv[1])
x = d["x"].astype(np.float32)
cand = d["m"].astype(np.float64).reshape(6, -1)
ref = x.astype(np.float64).reshape(6, -1)
cos = np.mean(np.sum(cand * ref, 1) / (np.linalg.norm(cand, axis=1) * np.linalg.norm(ref, axis=1)))
mse = np.mean((cand - ref) ** 2)
mx = np.max(np.abs(cand - ref))
psnr = 10 * np.log10(np.max(np.abs(ref)) ** 2 / mse)
c = d["c"].astype(np.float64); r = d["r"].astype(np.float64)
def logsm(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))
lp, lq = logsm(r), logsm(c)
kl = np.mean(np.sum(np.exp(lp) * (lp - lq), 1))
agree = np.mean(c.argmax(1) == r.argmax(1))
ccos = np.mean(np.sum(c * r, 1) / (np.linalg.norm(c, axis=1) * np.linalg.norm(r, axis=1)))
print(*[repr(float(v)) for v in (cos, mse, mx, psnr, kl, agree, ccos)])
`, p)
	var want []float64
	for _, f := range strings.Fields(string(out)) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatalf("oracle output %q", out)
		}
		want = append(want, v)
	}
	got := []float64{res.Metrics[MetricCosine], res.Metrics[MetricMSE], res.Metrics[MetricMaxAbs], res.Metrics[MetricPSNR], rc.Metrics[MetricKL], rc.Metrics[MetricAgreement], rc.Metrics[MetricCosine]}
	names := []string{"cosine", "mse", "max_abs", "psnr", "kl", "agreement", "class cosine"}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9*math.Max(1, math.Abs(want[i])) {
			t.Errorf("%s: Go %.12g, numpy %.12g", names[i], got[i], want[i])
		}
	}
}

// TestEvaluateChecksContext: a cancelled context stops the evaluation
// between batches.
func TestEvaluateChecksContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	runs := 0
	r := mapRunner(1, 0)
	inner := r.fn
	r.fn = func(in map[string]*Array) ([]*Array, error) {
		runs++
		cancel()
		return inner(in)
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{4, 1, 3, 3}, make([]float32, 36))}, nil)
	_, err := Evaluate(ctx, r, mapRunner(1, 0), ds, EvalOptions{Batch: 1})
	if !errors.Is(err, context.Canceled) || runs > 1 {
		t.Fatalf("error %v after %d runs, want context.Canceled after at most 1", err, runs)
	}
}

// TestRowsAlongBatchAxes: Rows gathers samples along each input's batch
// axis and keeps inputs without one whole.
func TestRowsAlongBatchAxes(t *testing.T) {
	st := make([]float32, 2*3*2)
	for i := range st {
		st[i] = float32(i)
	}
	ds, err := NewDataset(map[string]*Array{
		"x":     FromFloat32([]int64{3, 1}, []float32{10, 11, 12}),
		"sr":    FromFloat32(nil, []float32{8000}),
		"state": FromFloat32([]int64{2, 3, 2}, st),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ins := []TensorInfo{
		{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 1}, DimParams: []string{"N", ""}},
		{Name: "sr", DType: onnxio.Float, Shape: []int64{}, DimParams: []string{}},
		{Name: "state", DType: onnxio.Float, Shape: []int64{2, -1, 2}, DimParams: []string{"", "N", ""}},
	}
	if err := ds.Check(ins); err != nil {
		t.Fatal(err)
	}
	r := ds.Rows([]int{2, 0})
	x, _ := r["x"].Float64()
	s, _ := r["state"].Float64()
	if fmtFloats(x) != "[12 10]" || fmtFloats(s) != "[4 5 0 1 10 11 6 7]" || len(r["sr"].Shape) != 0 {
		t.Errorf("rows: x %v, state %v %v, sr %v", x, s, r["state"].Shape, r["sr"].Shape)
	}
	b := ds.Batch(1, 3)
	bs, _ := b["state"].Float64()
	if fmtFloats(bs) != "[2 3 4 5 8 9 10 11]" || !slices.Equal(b["state"].Shape, []int64{2, 2, 2}) {
		t.Errorf("batch: state %v %v", bs, b["state"].Shape)
	}
}

// TestMetricsAll: every metric means every one that applies and that the
// data allows, per output shape.
func TestMetricsAll(t *testing.T) {
	all, _ := ParseMetrics("all")
	rng := rand.New(rand.NewSource(12))
	x := make([]float32, 4*9)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{4, 1, 3, 3}, x)}, []int64{0, 1, 0, 1})
	res, err := Evaluate(context.Background(), mapRunner(1.01, 0), mapRunner(1, 0), ds, EvalOptions{Metrics: all, MinTimedRuns: 2, Warmup: 1})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range res.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "cosine,latency_p50_ms,latency_p90_ms,max_abs,mse,psnr,throughput" {
		t.Errorf("all on a map: %s", got)
	}
}

// TestKLFromLogSumExp: the fused token-position KL equals KL.
func TestKLFromLogSumExp(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	for k := 0; k < 20; k++ {
		a, b := make([]float64, 50), make([]float64, 50)
		for i := range a {
			a[i], b[i] = rng.NormFloat64()*3, rng.NormFloat64()*3
		}
		want := KL(a, b)
		if got := klLSE(a, b, logSumExp(a), logSumExp(b)); math.Abs(got-want) > 1e-12*math.Max(1, want) {
			t.Fatalf("klLSE %v, KL %v", got, want)
		}
	}
	if !math.IsNaN(klLSE([]float64{1, math.NaN()}, []float64{1, 2}, logSumExp([]float64{1, math.NaN()}), logSumExp([]float64{1, 2}))) {
		t.Error("NaN lost")
	}
}

// TestKLOfNaNReference: a NaN reference row gives a NaN KL, never 0.
func TestKLOfNaNReference(t *testing.T) {
	if v := KL([]float64{math.NaN(), 1}, []float64{1, 2}); !math.IsNaN(v) {
		t.Errorf("KL with a NaN reference = %v", v)
	}
}

// TestTestDataDirScalar: an ONNX test-data folder may hold a scalar input
// (the same in every set); it is fed whole, and one that differs between
// sets is an error.
func TestTestDataDirScalar(t *testing.T) {
	dir := t.TempDir()
	write := func(set, file string, tt *onnxio.Tensor) {
		b, err := onnxio.MarshalTensor(tt)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, set)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for k, sr := range []float32{16000, 16000} {
		set := "test_data_set_" + strconv.Itoa(k)
		x, _ := onnxio.FromFloat32("x", onnxio.Float, []int64{1, 2}, []float32{float32(k), 1})
		s, _ := onnxio.FromFloat32("sr", onnxio.Float, nil, []float32{sr})
		write(set, "input_0.pb", x)
		write(set, "input_1.pb", s)
	}
	ds, err := LoadDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	ins := []TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 2}, DimParams: []string{"N", ""}}, {Name: "sr", DType: onnxio.Float, Shape: []int64{}}}
	if err := ds.Check(ins); err != nil || ds.N != 2 || ds.BatchAxes()["sr"] != -1 {
		t.Fatalf("check: %v, N %d, axes %v", err, ds.N, ds.BatchAxes())
	}
	s, _ := onnxio.FromFloat32("sr", onnxio.Float, nil, []float32{8000})
	write("test_data_set_1", "input_1.pb", s)
	if _, err := LoadDataset(dir); err == nil || !strings.Contains(err.Error(), `scalar input "sr" differs between the sets`) {
		t.Errorf("differing scalars: %v", err)
	}
}

// TestFeaturesAreNotTokenScores: a [N, T, D] output whose D is smaller than
// the dataset's token ids (an encoder's hidden states) is compared as
// features by default, and perplexity on it is refused with the reason.
func TestFeaturesAreNotTokenScores(t *testing.T) {
	requireORTLib(t)
	const n, seq, vocab, d = 4, 6, 40, 5
	rng := rand.New(rand.NewSource(9))
	table := make([]float32, vocab*d)
	for i := range table {
		table[i] = float32(rng.NormFloat64())
	}
	enc := gatherModel(t, table, vocab, d)
	ids, mask := tokenData(rng, n, seq, vocab)
	ids[0] = vocab - 1 // an id beyond the d values per position
	ds, err := NewDataset(map[string]*Array{"input_ids": FromInt64([]int64{n, seq}, ids), "attention_mask": FromInt64([]int64{n, seq}, mask)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), enc, enc, ds, EvalOptions{Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{MetricCosine, MetricMSE, MetricMaxAbs} {
		if _, ok := res.Metrics[m]; !ok {
			t.Errorf("default metrics %v lack %s", res.Metrics, m)
		}
	}
	for _, m := range []string{MetricPerplexity, MetricTokenAcc, MetricKL} {
		if _, ok := res.Metrics[m]; ok {
			t.Errorf("default metrics %v hold %s of features", res.Metrics, m)
		}
	}
	_, err = Evaluate(context.Background(), enc, nil, ds, EvalOptions{Metrics: []string{MetricPerplexity}})
	if err == nil || !strings.Contains(err.Error(), "does not hold scores over the vocabulary") {
		t.Fatalf("perplexity of features: %v", err)
	}
}
