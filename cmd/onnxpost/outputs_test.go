package main

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func mkNode(op string, in, out []string, attrs ...onnxio.Attr) onnxio.Node {
	return onnxio.Node{Name: out[0] + "_node", OpType: op, Inputs: in, Outputs: out, Attrs: attrs}
}

// writeConvMap writes a model producing a [N, 1, 6, 6] map: its first
// output is an int64 copy of a "step" input, then y = Conv3x3(x) + b and
// z = Relu(y); weights scaled by scale (NaN gives an all-NaN map).
func writeConvMap(t *testing.T, path string, scale float32) {
	t.Helper()
	m := onnxio.New("convmap", 17)
	batch := onnxio.Dim{Value: -1, Param: "N"}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{batch, {Value: 1}, {Value: 6}, {Value: 6}}})
	m.AddInput(onnxio.ValueInfo{Name: "step", DType: onnxio.Int64, Shape: []onnxio.Dim{batch, {Value: 1}}})
	w := make([]float32, 9)
	rng := rand.New(rand.NewSource(11))
	for i := range w {
		w[i] = float32(rng.NormFloat64()) * scale
	}
	wt, err := onnxio.FromFloat32("W", onnxio.Float, []int64{1, 1, 3, 3}, w)
	if err != nil {
		t.Fatal(err)
	}
	bt, _ := onnxio.FromFloat32("B", onnxio.Float, []int64{1}, []float32{0.1 * scale})
	for _, x := range []*onnxio.Tensor{wt, bt} {
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.InsertNodes(
		mkNode("Identity", []string{"step"}, []string{"step_copy"}),
		mkNode("Conv", []string{"x", "W", "B"}, []string{"y"}, onnxio.AttrIntList("pads", 1, 1, 1, 1)),
		mkNode("Relu", []string{"y"}, []string{"z"}),
	); err != nil {
		t.Fatal(err)
	}
	out := []onnxio.Dim{batch, {Value: 1}, {Value: 6}, {Value: 6}}
	m.AddOutput(onnxio.ValueInfo{Name: "step_copy", DType: onnxio.Int64, Shape: []onnxio.Dim{batch, {Value: 1}}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: out})
	m.AddOutput(onnxio.ValueInfo{Name: "z", DType: onnxio.Float, Shape: out})
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
}

func writeConvData(t *testing.T, path string, labels bool) {
	t.Helper()
	const n = 8
	rng := rand.New(rand.NewSource(12))
	x := make([]float32, n*36)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	arrays := map[string]*evalharness.Array{
		"x":    evalharness.FromFloat32([]int64{n, 1, 6, 6}, x),
		"step": evalharness.FromInt64([]int64{n, 1}, make([]int64, n)),
	}
	if labels {
		arrays["labels"] = evalharness.FromInt64([]int64{n}, make([]int64, n))
	}
	if err := evalharness.WriteNPZ(path, arrays); err != nil {
		t.Fatal(err)
	}
}

// TestMapOutputThroughTransform: a transforming command with --data and a
// cosine gate on a model whose float output is a [N,1,H,W] map (behind an
// int64 first output): it is measured, gated and named in the report;
// class metrics on it are an error naming the shape; --output-name changes
// what is measured.
func TestMapOutputThroughTransform(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model, data := filepath.Join(dir, "map.onnx"), filepath.Join(dir, "map.npz")
	writeConvMap(t, model, 1)
	writeConvData(t, data, true)
	out, report := filepath.Join(dir, "fp16.onnx"), filepath.Join(dir, "fp16.json")
	if code := run([]string{"onnxpost", "quantize", model, "--weights", "fp16", "--data", data, "--gate", "cosine>=0.99", "-o", out, "--report", report}); code != 0 {
		t.Fatalf("quantize fp16 with a cosine gate: exit %d, want 0", code)
	}
	r := evalReadJSON(t, report)
	metrics := r["metrics"].(map[string]any)
	if c, _ := metrics["cosine"].(float64); c < 0.99 {
		t.Errorf("cosine %v", metrics["cosine"])
	}
	for _, m := range []string{"mse", "max_abs", "psnr"} {
		if _, ok := metrics[m]; !ok {
			t.Errorf("metrics %v lack %s", metrics, m)
		}
	}
	if outs, _ := r["outputs"].([]any); len(outs) != 1 || outs[0] != "y" {
		t.Errorf("report names outputs %v, want [y]", r["outputs"])
	}

	out2, report2 := filepath.Join(dir, "z.onnx"), filepath.Join(dir, "z.json")
	if code := run([]string{"onnxpost", "quantize", model, "--weights", "fp16", "--data", data, "--output-name", "z,y", "--gate", "z.cosine>=0.99,y.psnr>=20", "-o", out2, "--report", report2}); code != 0 {
		t.Fatalf("--output-name z,y: exit %d", code)
	}
	r2 := evalReadJSON(t, report2)
	m2 := r2["metrics"].(map[string]any)
	if _, ok := m2["z"].(map[string]any)["cosine"]; !ok || m2["cosine"] != m2["z"].(map[string]any)["cosine"] {
		t.Errorf("per-output metrics %v", m2)
	}
	if outs, _ := r2["outputs"].([]any); len(outs) != 2 || outs[0] != "z" {
		t.Errorf("outputs %v", r2["outputs"])
	}

	out3 := filepath.Join(dir, "acc.onnx")
	if code := run([]string{"onnxpost", "quantize", model, "--weights", "fp16", "--data", data, "--metrics", "accuracy", "-o", out3}); code != 1 {
		t.Errorf("accuracy on a map: exit %d, want 1", code)
	}
	if _, err := os.Stat(out3); err == nil {
		t.Error("written despite the error")
	}
	if code := run([]string{"onnxpost", "quantize", model, "--weights", "fp16", "--data", data, "--output-name", "step_copy", "-o", out3}); code != 1 {
		t.Errorf("measuring the int64 output: exit %d, want 1", code)
	}
}

// TestNaNCandidateExit3: a candidate whose measured output is all NaN
// fails the gate (exit 3) even when no condition names the metric, the
// output is not written, and the report is valid JSON with null values and
// "nonfinite".
func TestNaNCandidateExit3(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	good, bad, data := filepath.Join(dir, "good.onnx"), filepath.Join(dir, "bad.onnx"), filepath.Join(dir, "d.npz")
	writeConvMap(t, good, 1)
	writeConvMap(t, bad, float32(math.NaN()))
	writeConvData(t, data, false)
	for i, gate := range []string{"cosine>=0.99", "", "mse_ratio<=1"} {
		out, report := filepath.Join(dir, "out.onnx"), filepath.Join(dir, "r.json")
		args := []string{"t", "copy", "-o", out, "--report", report, "--data", data, "--ref-model", good}
		if gate != "" {
			args = append(args, "--gate", gate)
		}
		err := evalFinishApp().Run(append(args, bad))
		if code := exitCode(err); code != 3 {
			t.Fatalf("gate %q: exit %d (%v), want 3", gate, code, err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("gate %q: output written", gate)
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		var r map[string]any
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("report is not JSON: %v\n%s", err, b)
		}
		nf, _ := r["nonfinite"].([]any)
		if len(nf) == 0 || !strings.Contains(string(b), `"cosine": null`) {
			t.Errorf("case %d: nonfinite %v, report\n%s", i, nf, b)
		}
		os.Remove(report)
	}
}

// TestEvalNothingToCompare: eval with neither labels nor a reference says
// so and shows output statistics and latency instead of an empty table.
func TestEvalNothingToCompare(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model, data := filepath.Join(dir, "m.onnx"), filepath.Join(dir, "d.npz")
	writeConvMap(t, model, 1)
	writeConvData(t, data, false)
	if os.Getenv("ONNXPOST_EVAL_CHILD") == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run", "^TestEvalNothingToCompare$")
		cmd.Env = append(os.Environ(), "ONNXPOST_EVAL_CHILD="+dir)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		s := string(b)
		for _, want := range []string{"nothing to compare", "latency_p50_ms", "output  shape", "y       [8 1 6 6]"} {
			if !strings.Contains(s, want) {
				t.Errorf("table lacks %q:\n%s", want, s)
			}
		}
		return
	}
	report := filepath.Join(dir, "r.json")
	if code := run([]string{"onnxpost", "eval", model, "--data", data, "--report", report}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	r := evalReadJSON(t, report)
	st := r["stats"].(map[string]any)["y"].(map[string]any)
	if _, ok := st["mean"]; !ok || r["output"] != "y" {
		t.Errorf("stats %v, output %v", st, r["output"])
	}
}

// TestReportJSONWithNaN: a NaN or Inf anywhere in a command's report is
// written as null instead of failing after the model was written.
func TestReportJSONWithNaN(t *testing.T) {
	type layer struct {
		Name  string  `json:"name"`
		Err   float64 `json:"rel_err"`
		Skip  float64 `json:"skip,omitempty"`
		inner float64
	}
	res := &evalharness.Result{Metrics: evalharness.Metrics{"kl": math.NaN()}}
	report := map[string]any{"layers": []layer{{Name: "a", Err: math.NaN()}, {Name: "b", Err: 0.5}}, "ratio": math.Inf(1), "m": map[string]float32{"x": float32(math.NaN())}}
	b, err := resultJSON("quantize", res, "o.onnx", true, "o.onnx", report)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	layers := back["layers"].([]any)
	if l0 := layers[0].(map[string]any); l0["rel_err"] != nil || l0["name"] != "a" || len(l0) != 2 {
		t.Errorf("layer 0: %v", l0)
	}
	if layers[1].(map[string]any)["rel_err"] != 0.5 || back["ratio"] != nil || back["metrics"].(map[string]any)["kl"] != nil {
		t.Errorf("report: %s", b)
	}
}
