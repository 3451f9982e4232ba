package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/onnxio"
)

// lmSubset writes the first n windows of a zoo LM dataset to dir.
func lmSubset(t *testing.T, dir, name string, n int64) string {
	t.Helper()
	arrays, err := npz.ReadFile(zooPath(t, "data", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*npz.Array{}
	for k, a := range arrays {
		row := int64(len(a.Data)) / a.Shape[0]
		out[k] = &npz.Array{Type: a.Type, Shape: append([]int64{n}, a.Shape[1:]...), Data: a.Data[:n*row]}
	}
	p := filepath.Join(dir, name)
	if err := npz.WriteFile(p, out); err != nil {
		t.Fatal(err)
	}
	return p
}

// reportPerplexity reads a command's JSON report.
func reportPerplexity(t *testing.T, path string) float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Metrics map[string]float64 `json:"metrics"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Metrics["perplexity"]
}

// reportParams reads the parameter count of a command's JSON report.
func reportParams(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Params int64 `json:"params"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Params
}

// cacheBranchAgrees runs the merged decoder at path through both branches
// (use_cache_branch false, and true with an empty past) and returns the
// largest difference of their logits relative to the largest logit.
func cacheBranchAgrees(t *testing.T, path, data string) float64 {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := evalharness.SessionFromModel(m, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := evalharness.LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	feed := map[string]*evalharness.Array{}
	for _, in := range m.Inputs() {
		switch {
		case strings.HasPrefix(in.Name, "past_key_values."):
			feed[in.Name] = evalharness.FromFloat32([]int64{n, in.Shape[1].Value, 0, in.Shape[3].Value}, nil)
		case in.Name == "input_ids" || in.Name == "attention_mask":
			feed[in.Name] = ds.Inputs[in.Name].Slice(0, n)
		}
	}
	var logits [2][]float64
	for i, b := range []byte{0, 1} {
		feed["use_cache_branch"] = &evalharness.Array{DType: onnxio.Bool, Shape: []int64{1}, Data: []byte{b}}
		outs, err := s.Run(feed)
		if err != nil {
			t.Fatalf("use_cache_branch=%d: %v", b, err)
		}
		if logits[i], err = outs[0].Float64(); err != nil {
			t.Fatal(err)
		}
	}
	var d, mx float64
	for k, x := range logits[0] {
		d = math.Max(d, math.Abs(x-logits[1][k]))
		mx = math.Max(mx, math.Abs(x))
	}
	return d / mx
}

// TestMergedDecoderTransforms: every transforming command takes the
// If-merged decoder (models/zoo/lm/base_merged.onnx, Optimum's layout) by
// transforming both branches as plain decoders and joining them; the
// written model evaluates in ONNX Runtime with the perplexity of the same
// transform on the plain export (base.onnx), and its cache branch computes
// the same logits as its no-cache branch (both were transformed alike).
func TestMergedDecoderTransforms(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("transforms the zoo LM twice per command")
	}
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	plain := zooPath(t, "zoo", "lm", "base.onnx")
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 16)
	calib := lmSubset(t, dir, "lm_pydoc_calib.npz", 16)
	search := []string{"--calib", calib, "--generations", "1", "--offspring", "2", "--tokens", "4:16", "--cache-dir", ""}
	for _, tc := range []struct {
		name, cmd string
		args      []string
		tol       float64 // relative perplexity difference allowed
	}{
		{"int4 rtn", "quantize", []string{"--weights", "int4"}, 1e-6},
		{"int4 gptq", "quantize", []string{"--weights", "int4", "--method", "gptq", "--calib", calib}, 1e-6},
		// the plain export's int8 weights run through ORT's fused
		// DequantizeLinear→MatMulNBits; the merged one dequantizes once in
		// the main graph (onnxio.JoinBranches)
		{"int8 qdq", "quantize", []string{"--weights", "int8"}, 1e-3},
		{"int8 dynamic", "quantize", []string{"--weights", "int8", "--activations", "dynamic"}, 1e-6},
		// the no-cache branch is another export of the decoder than
		// base.onnx (it also returns present.*), so static activation
		// ranges differ slightly
		{"int8 static", "quantize", []string{"--weights", "int8", "--activations", "int8", "--calib", calib}, 1e-3},
		{"fp16", "quantize", []string{"--weights", "fp16"}, 1e-5},
		{"bf16", "quantize", []string{"--weights", "bf16"}, 1e-5},
		{"wanda 2:4", "sparsify", []string{"--pattern", "2:4", "--method", "wanda", "--calib", calib}, 1e-6},
		{"sparsegpt 50%", "sparsify", []string{"--sparsity", "0.5", "--method", "sparsegpt", "--calib", calib}, 1e-6},
		{"lowrank whitened", "lowrank", []string{"--rank-ratio", "0.5", "--calib", calib, "--whiten"}, 1e-6},
		{"search sparsity", "search", append([]string{"--space", "sparsity", "--target", "0.3"}, search...), 1e-6},
		{"search bits", "search", append([]string{"--space", "bits", "--target", "5"}, search...), 1e-6},
		{"search rank", "search", append([]string{"--space", "rank", "--target", "0.7"}, search...), 1e-6},
		{"search sparsity+bits", "search", append([]string{"--space", "sparsity,bits", "--target", "0.3", "--target-bits", "5"}, search...), 1e-6},
		{"search drop", "search", append([]string{"--space", "drop", "--target", "1"}, search...), 1e-6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ppl [2]float64
			var params [2]int64
			for i, model := range []string{merged, plain} {
				out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+[]string{".merged", ".plain"}[i]+".onnx")
				rep := out + ".json"
				args := append([]string{"onnxpost", tc.cmd, model, "--data", test, "--report", rep, "-o", out}, tc.args...)
				if code := run(args); code != 0 {
					t.Fatalf("%v: exit code %d", args[1:], code)
				}
				ppl[i], params[i] = reportPerplexity(t, rep), reportParams(t, rep)
				if i == 0 {
					if d := cacheBranchAgrees(t, out, test); d > 1e-5 {
						t.Errorf("cache and no-cache branches differ by %.3g (relative)", d)
					}
					m, err := onnxio.Load(out)
					if err != nil {
						t.Fatal(err)
					}
					if m.OpCounts()["If"] != 1 || !slices.ContainsFunc(m.Inputs(), func(v onnxio.ValueInfo) bool { return v.Name == "use_cache_branch" }) {
						t.Errorf("the output is no longer a merged decoder (ops %v)", m.OpCounts())
					}
				}
			}
			if d := math.Abs(ppl[0]/ppl[1] - 1); !(d <= tc.tol) {
				t.Errorf("perplexity merged %.10g, plain %.10g: relative difference %.3g > %.3g", ppl[0], ppl[1], d, tc.tol)
			}
			// integer quantize and lowrank change the parameter count alike in
			// both (the merged input holds a few more constants than
			// base.onnx); fp16/bf16, sparsify and search fold each branch's
			// small Constant
			// values into initializers (two sets), and a dropped attention
			// block keeps its k/v projections in the cache branch, which
			// returns present.* for it
			if tc.cmd != "lowrank" && (tc.cmd != "quantize" || strings.HasSuffix(tc.name, "16")) {
				return
			}
			var before [2]int64
			for i, model := range []string{merged, plain} {
				m, err := onnxio.Load(model)
				if err != nil {
					t.Fatal(err)
				}
				if before[i], err = modelParams(m); err != nil {
					t.Fatal(err)
				}
			}
			if params[0]-before[0] != params[1]-before[1] {
				t.Errorf("params: merged %d → %d, plain %d → %d", before[0], params[0], before[1], params[1])
			}
		})
	}
}

// A merge of If-merged decoders merges both branches; a merged decoder
// beside a plain model, and --baselines (per-branch files), are refused.
func TestMergedDecoderMergeAndRefusals(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	plain := zooPath(t, "zoo", "lm", "base.onnx")
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 8)
	out := filepath.Join(dir, "m.onnx")
	rep := out + ".json"
	if code := run([]string{"onnxpost", "merge", "--method", "linear", "--data", test, "--report", rep, "-o", out, merged, merged}); code != 0 {
		t.Fatalf("merge of two merged decoders: exit code %d", code)
	}
	ref := run([]string{"onnxpost", "eval", merged, "--data", test, "--report", rep + ".ref.json"})
	if ref != 0 {
		t.Fatalf("eval: exit %d", ref)
	}
	if a, b := reportPerplexity(t, rep), reportPerplexity(t, rep+".ref.json"); math.Abs(a/b-1) > 1e-6 {
		t.Errorf("linear merge of a model with itself: perplexity %v, the model's %v", a, b)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"mixed", []string{"merge", "--method", "linear", "-o", "OUT", merged, plain}, 1},
		{"baselines", []string{"search", merged, "--space", "sparsity", "--target", "0.3", "--calib", test, "--baselines", dir, "-o", "OUT"}, 2},
		{"plots", []string{"search", merged, "--space", "sparsity", "--target", "0.3", "--calib", test, "--plots", dir, "-o", "OUT"}, 2},
	} {
		o := filepath.Join(dir, tc.name+".onnx")
		args := []string{"onnxpost"}
		for _, a := range tc.args {
			if a == "OUT" {
				a = o
			}
			args = append(args, a)
		}
		if code := run(args); code != tc.code {
			t.Errorf("%s: exit code %d, want %d", tc.name, code, tc.code)
		}
		if _, err := os.Stat(o); !os.IsNotExist(err) {
			t.Errorf("%s: %s written", tc.name, o)
		}
	}
}

// fisher on an If-merged decoder computes the Fisher of the branch the data
// takes (the no-cache one): equal to the plain export's, under the merged
// model's weight names, so merge --method fisher takes it on merged
// decoders.
func TestMergedDecoderFisher(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	plain := zooPath(t, "zoo", "lm", "base.onnx")
	calib := lmSubset(t, dir, "lm_pydoc_calib.npz", 2)
	files := map[string]string{}
	for name, model := range map[string]string{"merged": merged, "plain": plain} {
		files[name] = filepath.Join(dir, name+".fisher.onnx")
		if code := run([]string{"onnxpost", "fisher", model, "--data", calib, "--max-examples", "1", "--samples", "1", "-o", files[name]}); code != 0 {
			t.Fatalf("fisher %s: exit code %d", name, code)
		}
	}
	a, err := onnxio.Load(files["merged"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := onnxio.Load(files["plain"])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Initializers(), b.Initializers()) || len(a.Initializers()) == 0 {
		t.Fatalf("Fisher tensors %v, plain %v", a.Initializers(), b.Initializers())
	}
	for _, n := range a.Initializers() {
		x, _ := a.Initializer(n)
		y, _ := b.Initializer(n)
		xv, _ := x.Float32()
		yv, _ := y.Float32()
		for i := range xv {
			if math.Abs(float64(xv[i]-yv[i])) > 1e-6*math.Max(1e-12, math.Abs(float64(yv[i]))) {
				t.Fatalf("%s[%d]: merged %g, plain %g", n, i, xv[i], yv[i])
			}
		}
	}
	out := filepath.Join(dir, "fm.onnx")
	f := files["merged"]
	if code := run([]string{"onnxpost", "merge", "--method", "fisher", "--fisher", f + "," + f, "-o", out, merged, merged}); code != 0 {
		t.Fatalf("fisher merge of merged decoders: exit code %d", code)
	}
}
