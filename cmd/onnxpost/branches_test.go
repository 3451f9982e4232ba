package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	return lmWindows(t, dir, name, n, 0)
}

// lmWindows writes the first n windows of a zoo LM dataset, cut to their
// first tokens (all when tokens is 0), to dir.
func lmWindows(t *testing.T, dir, name string, n, tokens int64) string {
	t.Helper()
	arrays, err := npz.ReadFile(zooPath(t, "data", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*npz.Array{}
	for k, a := range arrays {
		if len(a.Shape) != 2 {
			t.Fatalf("%s: %s has shape %v, want [windows, tokens]", name, k, a.Shape)
		}
		row := int64(len(a.Data)) / a.Shape[0]
		cols := a.Shape[1]
		if tokens > 0 {
			cols = tokens
		}
		elem := row / a.Shape[1]
		var data []byte
		for i := int64(0); i < n; i++ {
			data = append(data, a.Data[i*row:i*row+cols*elem]...)
		}
		out[k] = &npz.Array{Type: a.Type, Shape: []int64{n, cols}, Data: data}
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
// beside a plain model is refused.
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
		want string
	}{
		{"mixed", []string{"merge", "--method", "linear", "-o", "OUT", merged, plain}, 1,
			"an If-merged decoder cannot be combined with plain models (1 of 2 models are merged decoders)"},
		{"mixed base", []string{"merge", "--method", "task_arithmetic", "--base", plain, "-o", "OUT", merged, merged}, 1,
			"an If-merged decoder cannot be combined with plain models (1 of 2 models are merged decoders)"},
		{"base only", []string{"merge", "--method", "task_arithmetic", "--base", merged, "-o", "OUT"}, 2,
			"no models to merge: give models or a config"},
		{"mixed fisher-data", []string{"merge", "--method", "fisher", "--fisher-data", test, "-o", "OUT", merged, plain}, 1,
			"an If-merged decoder cannot be combined with plain models (1 of 2 models are merged decoders)"},
		// the branch runs refuse these before any Fisher is computed
		{"fisher-data without fisher", []string{"merge", "--method", "linear", "--fisher-data", test, "-o", "OUT", merged, merged}, 2,
			"fisher and fisher-data are only used by method fisher"},
		{"fisher and fisher-data", []string{"merge", "--method", "fisher", "--fisher", merged + "," + merged, "--fisher-data", test, "-o", "OUT", merged, merged}, 2,
			"give either fisher files or fisher-data datasets, not both"},
	} {
		o := filepath.Join(dir, tc.name+".onnx")
		args := []string{"onnxpost"}
		for _, a := range tc.args {
			if a == "OUT" {
				a = o
			}
			args = append(args, a)
		}
		if code, stderr := runStderr(t, args); code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit code %d, want %d; stderr %q, want %q", tc.name, code, tc.code, stderr, tc.want)
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

// mergedLike writes base_merged.onnx with its shared weights replaced by
// those of the plain decoder at plain (the zoo's fine-tunes are plain
// exports whose weights carry the merged decoder's names) to dir/name.
func mergedLike(t *testing.T, dir, name, plain string) string {
	t.Helper()
	m, err := onnxio.Load(zooPath(t, "zoo", "lm", "base_merged.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := onnxio.Load(plain)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range m.Initializers() {
		have[n] = true
	}
	var ts []*onnxio.Tensor
	for _, n := range p.Initializers() {
		w, err := p.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		if have[n] && len(w.Shape) >= 2 {
			ts = append(ts, w)
		}
	}
	if len(ts) < 10 {
		t.Fatalf("only %d weights of %s are named as in the merged decoder", len(ts), plain)
	}
	if m, err = m.WithInitializers(ts...); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// maxWeightDiff returns the largest difference, relative to the largest
// magnitude of the tensor, between the float initializers of a and b that
// b holds under the same name, and how many were compared.
func maxWeightDiff(t *testing.T, a, b string) (float64, int) {
	t.Helper()
	ma, err := onnxio.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := onnxio.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	n := 0
	for _, name := range mb.Initializers() {
		y, err := mb.Initializer(name)
		if err != nil || !y.DType.IsFloat() || len(y.Shape) < 2 {
			continue
		}
		x, err := ma.Initializer(name)
		if err != nil {
			t.Fatalf("%s lacks %s", a, name)
		}
		xv, _ := x.Float64()
		yv, _ := y.Float64()
		var d, mx float64
		for i := range yv {
			d = math.Max(d, math.Abs(xv[i]-yv[i]))
			mx = math.Max(mx, math.Abs(yv[i]))
		}
		worst = math.Max(worst, d/math.Max(mx, 1e-30))
		n++
	}
	return worst, n
}

// merge --method fisher --fisher-data on If-merged decoders computes each
// model's Fisher once, on the branch the data takes (the no-cache one;
// TestMergedDecoderFisher shows it equals the plain export's), and merges
// the shared weights with it: the same model as merging with the Fisher
// files the fisher command writes for the merged decoders, both branches of
// the output computing the same logits.
func TestMergedDecoderFisherData(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("four exact Fishers of the zoo LM")
	}
	dir := t.TempDir()
	mBase := zooPath(t, "zoo", "lm", "base_merged.onnx")
	mBible := mergedLike(t, dir, "bible_merged.onnx", zooPath(t, "zoo", "lm", "ft_bible.onnx"))
	// the exact Fisher costs one backward per vocabulary entry per
	// position: one window of three tokens (two positions counted)
	calib := lmWindows(t, dir, "lm_pydoc_calib.npz", 1, 3)
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 4)
	var files []string
	for i, m := range []string{mBase, mBible} {
		f := filepath.Join(dir, fmt.Sprintf("f%d.onnx", i))
		if code, stderr := runStderr(t, []string{"onnxpost", "fisher", m, "--data", calib, "-o", f}); code != 0 {
			t.Fatalf("fisher %s: exit code %d\n%s", m, code, stderr)
		}
		files = append(files, f)
	}
	outs := map[string]string{}
	for name, flags := range map[string][]string{"data": {"--fisher-data", calib}, "files": {"--fisher", strings.Join(files, ",")}} {
		outs[name] = filepath.Join(dir, name+".onnx")
		args := append(append([]string{"onnxpost", "merge", "--method", "fisher", "-o", outs[name]}, flags...), mBase, mBible)
		code, stderr := runStderr(t, args)
		if code != 0 {
			t.Fatalf("merge %v: exit code %d\n%s", flags, code, stderr)
		}
		if name == "data" && !strings.Contains(stderr, "the branch the data takes)") {
			t.Errorf("stderr does not say which branch the Fisher is computed on:\n%s", stderr)
		}
	}
	sameModel(t, outs["files"], outs["data"])
	// the merge moved the weights: it is no copy of either input
	for _, in := range []string{mBase, mBible} {
		if d, _ := maxWeightDiff(t, outs["data"], in); d < 1e-4 {
			t.Errorf("the Fisher merge equals its input %s (difference %.3g)", in, d)
		}
	}
	if d := cacheBranchAgrees(t, outs["data"], test); d > 1e-5 {
		t.Errorf("cache and no-cache branches differ by %.3g (relative)", d)
	}
}

// search --baselines and --plots on an If-merged decoder: the baselines
// are merged decoders (each branch's baseline joined, both branches giving
// the same logits) with the weights of the plain export's baselines, and
// the plots are written.
func TestMergedDecoderSearchBaselinesPlots(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	calib := lmSubset(t, dir, "lm_pydoc_calib.npz", 8)
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 4)
	for name, model := range map[string]string{"merged": zooPath(t, "zoo", "lm", "base_merged.onnx"), "plain": zooPath(t, "zoo", "lm", "base.onnx")} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"onnxpost", "search", model, "--space", "sparsity", "--target", "0.3", "--calib", calib,
			"--generations", "1", "--offspring", "2", "--tokens", "4:16", "--cache-dir", "",
			"--baselines", filepath.Join(dir, name, "baselines"), "--plots", filepath.Join(dir, name, "plots"), "-o", filepath.Join(dir, name, "out.onnx")}
		if code, stderr := runStderr(t, args); code != 0 {
			t.Fatalf("%s: exit code %d\n%s", name, code, stderr)
		}
	}
	for _, b := range []string{"uniform", "per-layer-error"} {
		mp := filepath.Join(dir, "merged", "baselines", b+".onnx")
		m, err := onnxio.Load(mp)
		if err != nil {
			t.Fatalf("%s baseline: %v", b, err)
		}
		if _, ok := m.IfMerged(); !ok {
			t.Errorf("the %s baseline is not a merged decoder (ops %v)", b, m.OpCounts())
		}
		if d := cacheBranchAgrees(t, mp, test); d > 1e-5 {
			t.Errorf("%s baseline: cache and no-cache branches differ by %.3g (relative)", b, d)
		}
		if d, n := maxWeightDiff(t, mp, filepath.Join(dir, "plain", "baselines", b+".onnx")); n < 10 || d > 1e-6 {
			t.Errorf("%s baseline vs the plain export's: %d weights compared, largest relative difference %.3g", b, n, d)
		}
	}
	for _, p := range []string{"search_fitness.png"} {
		for _, name := range []string{"merged", "plain"} {
			if st, err := os.Stat(filepath.Join(dir, name, "plots", p)); err != nil || st.Size() == 0 {
				t.Errorf("%s plots: %s: %v", name, p, err)
			}
		}
	}
}

// A recipe chaining sparsify (Wanda 2:4, calibrated) and quantize (int8)
// on an If-merged decoder runs in process through transform.Apply and
// gives the model the two commands give chained one by one; the result is
// a merged decoder whose branches compute the same logits.
func TestMergedDecoderRecipeEqualsCommands(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	calib := lmSubset(t, dir, "lm_pydoc_calib.npz", 8)
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 4)
	runRecipe(t, dir, "output: recipe.onnx\nsteps:\n"+
		"  - sparsify: {pattern: \"2:4\", method: wanda, calib: "+abs(t, calib)+", inputs: ["+abs(t, merged)+"]}\n"+
		"  - quantize: {weights: int8}\n")
	sp, q := filepath.Join(dir, "sparse.onnx"), filepath.Join(dir, "cli.onnx")
	for _, args := range [][]string{
		{"sparsify", merged, "--pattern", "2:4", "--method", "wanda", "--calib", calib, "-o", sp},
		{"quantize", sp, "--weights", "int8", "-o", q},
	} {
		if code, stderr := runStderr(t, append([]string{"onnxpost"}, args...)); code != 0 {
			t.Fatalf("%s: exit code %d\n%s", args[0], code, stderr)
		}
	}
	got, err := onnxio.Load(filepath.Join(dir, "recipe.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := onnxio.Load(q)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SameGraph(want) {
		t.Errorf("the recipe's model differs from the commands' (ops %v vs %v)", got.OpCounts(), want.OpCounts())
	}
	if got.OpCounts()["If"] != 1 || !slices.ContainsFunc(got.Inputs(), func(v onnxio.ValueInfo) bool { return v.Name == "use_cache_branch" }) {
		t.Errorf("the recipe's output is no longer a merged decoder (ops %v)", got.OpCounts())
	}
	if d := cacheBranchAgrees(t, filepath.Join(dir, "recipe.onnx"), test); d > 1e-5 {
		t.Errorf("cache and no-cache branches differ by %.3g (relative)", d)
	}
}

// The branch runs of a command on an If-merged decoder capture statistics
// keyed by weight names (Grams, column norms) once, on the no-cache
// branch, and the cache branch's run takes them; activation ranges
// (static int8) and sequential pruning's statistics are captured per
// branch.
func TestMergedDecoderCommandsShareCalibration(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	calib := lmSubset(t, dir, "lm_pydoc_calib.npz", 4)
	const msg = "branch then_branch: the calibration statistics of the else_branch (keyed by weight names)"
	for _, tc := range []struct {
		name   string
		args   []string
		shared bool
	}{
		{"wanda", []string{"sparsify", "--pattern", "2:4", "--method", "wanda"}, true},
		{"sparsegpt sequential", []string{"sparsify", "--pattern", "2:4", "--method", "sparsegpt", "--sequential"}, false},
		{"gptq", []string{"quantize", "--weights", "int4", "--method", "gptq"}, true},
		{"lowrank whitened", []string{"lowrank", "--rank-ratio", "0.5", "--whiten"}, true},
		{"int8 static", []string{"quantize", "--weights", "int8", "--activations", "int8"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			args := append(append([]string{"onnxpost"}, tc.args...), merged, "--calib", calib, "-o", out)
			code, stderr := runStderr(t, args)
			if code != 0 {
				t.Fatalf("exit code %d\n%s", code, stderr)
			}
			if got := strings.Contains(stderr, msg); got != tc.shared {
				t.Errorf("statistics shared: %v, want %v\n%s", got, tc.shared, stderr)
			}
		})
	}
}

// A recipe step that runs through the command line (search) on an
// If-merged decoder splits it with the step's own command line.
func TestMergedDecoderRecipeSearchStep(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	calib := lmSubset(t, dir, "lm_pydoc_calib.npz", 4)
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 4)
	runRecipe(t, dir, "output: out.onnx\nsteps:\n"+
		"  - search: {space: sparsity, target: 0.3, generations: 1, offspring: 2, tokens: \"4:16\", cache-dir: \"\", calib: "+abs(t, calib)+", inputs: ["+abs(t, merged)+"]}\n")
	if d := cacheBranchAgrees(t, filepath.Join(dir, "out.onnx"), test); d > 1e-5 {
		t.Errorf("cache and no-cache branches differ by %.3g (relative)", d)
	}
}

// The joined model of a command on an If-merged decoder records the
// transform (onnxpost.sparsity, as the plain model's output does) and the
// command's provenance, not the branch runs' temporary files.
func TestMergedDecoderMetadata(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	out := filepath.Join(dir, "s.onnx")
	if code, stderr := runStderr(t, []string{"onnxpost", "sparsify", merged, "--pattern", "2:4", "-o", out}); code != 0 {
		t.Fatalf("exit code %d\n%s", code, stderr)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	meta := m.Metadata()
	if !strings.HasPrefix(meta["onnxpost.sparsity"], "magnitude 2:4, ") {
		t.Errorf("onnxpost.sparsity = %q", meta["onnxpost.sparsity"])
	}
	for k, v := range meta {
		if strings.Contains(v, ".onnxpost-branches-") {
			t.Errorf("%s names a branch run's temporary file: %s", k, v)
		}
	}
	if !strings.Contains(meta["onnxpost.command"], merged) {
		t.Errorf("onnxpost.command = %q, want the command's", meta["onnxpost.command"])
	}
}

// runRecipe writes body as dir/r.yaml and runs it (onnxpost run), failing
// the test unless it exits 0.
func runRecipe(t *testing.T, dir, body string) {
	t.Helper()
	recipe := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(recipe, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runStderr(t, []string{"onnxpost", "run", recipe}); code != 0 {
		t.Fatalf("run: exit code %d\n%s", code, stderr)
	}
}

// A quantized merged decoder stays one: the int8 QDQ join dequantizes the
// shared weights once in the main graph, and the commands after quantize
// still split it into its branches. Pruning the lm_head left in float by
// quantize --exclude prunes it in both branches, as in the plain export;
// sparsifying a fully quantized merged decoder names, per branch, the
// weights that are already quantized.
func TestQuantizedMergedDecoderStaysMerged(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	plain := zooPath(t, "zoo", "lm", "base.onnx")
	test := lmSubset(t, dir, "lm_pydoc_test.npz", 4)
	q := map[string]string{}
	for name, model := range map[string]string{"merged": merged, "plain": plain} {
		q[name] = filepath.Join(dir, name+".int8.onnx")
		if code, stderr := runStderr(t, []string{"onnxpost", "quantize", model, "--weights", "int8", "--exclude", "lm_head", "-o", q[name]}); code != 0 {
			t.Fatalf("quantize %s: exit code %d\n%s", name, code, stderr)
		}
	}
	qm, err := onnxio.Load(q["merged"])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := qm.IfMerged(); !ok {
		t.Fatalf("the int8 merged decoder is not recognised as merged (main ops %v)", qm.OpCounts())
	}
	s := map[string]string{}
	for name := range q {
		s[name] = filepath.Join(dir, name+".sparse.onnx")
		code, stderr := runStderr(t, []string{"onnxpost", "sparsify", q[name], "--sparsity", "0.3", "-o", s[name]})
		if code != 0 {
			t.Fatalf("sparsify %s: exit code %d\n%s", name, code, stderr)
		}
		if split := strings.Contains(stderr, "If-merged decoder: transforming its branches"); split != (name == "merged") {
			t.Errorf("sparsify %s: split into branches %v\n%s", name, split, stderr)
		}
	}
	ms, err := onnxio.Load(s["merged"])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ms.IfMerged(); !ok {
		t.Errorf("the sparsified int8 merged decoder is not merged (main ops %v)", ms.OpCounts())
	}
	ps, err := onnxio.Load(s["plain"])
	if err != nil {
		t.Fatal(err)
	}
	a, err := ms.Initializer("lm_head.weight")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ps.Initializer("lm_head.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the merged decoder's pruned lm_head differs from the plain export's")
	}
	if d := cacheBranchAgrees(t, s["merged"], test); d > 1e-5 {
		t.Errorf("cache and no-cache branches differ by %.3g (relative)", d)
	}

	// every weight quantized: nothing to prune, said per branch
	full := filepath.Join(dir, "full.int8.onnx")
	if code := run([]string{"onnxpost", "quantize", merged, "--weights", "int8", "-o", full}); code != 0 {
		t.Fatalf("quantize: exit code %d", code)
	}
	out := filepath.Join(dir, "full.sparse.onnx")
	code, stderr := runStderr(t, []string{"onnxpost", "sparsify", full, "--sparsity", "0.3", "-o", out})
	if code != 1 || !strings.Contains(stderr, "branch else_branch: nothing to transform") || !strings.Contains(stderr, "already quantized") {
		t.Errorf("sparsify of a fully quantized merged decoder: exit code %d, stderr\n%s", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s written", out)
	}
}

// merge --config of If-merged decoders goes through the branches like
// merge with flags: the same model as the flags that mean the same merge
// (graph, weights and the merge's method and parameters), and the
// config's output is written when -o is not given. A recipe's merge step
// takes merged decoders too, with the config or with the flags' keys:
// the same model again.
func TestMergedDecoderMergeConfig(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	base, err := filepath.Abs(zooPath(t, "zoo", "lm", "base_merged.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	bible := mergedLike(t, dir, "bible_merged.onnx", zooPath(t, "zoo", "lm", "ft_bible.onnx"))
	for _, tc := range []struct {
		name, config string
		flags        []string
		keys         string // the recipe step's
	}{
		{"linear", "merge_method: linear\nmodels:\n  - model: " + base + "\n    parameters:\n      weight: 0.3\n  - model: bible_merged.onnx\n    parameters:\n      weight: 0.7\n",
			[]string{"--method", "linear", "--weights", "0.3,0.7", base, bible},
			"method: linear, weights: \"0.3,0.7\", inputs: [" + base + ", " + bible + "]"},
		{"ties", "merge_method: ties\nbase_model: " + base + "\nmodels:\n  - model: bible_merged.onnx\n    parameters:\n      weight: 1\n      density: 0.5\n",
			[]string{"--method", "ties", "--base", base, "--weights", "1", "--density", "0.5", bible},
			"method: ties, base: " + base + ", weights: \"1\", density: 0.5, inputs: [" + bible + "]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(cfg, []byte(tc.config+"output: "+tc.name+".config.onnx\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			fromConfig := filepath.Join(dir, tc.name+".config.onnx")
			code, stderr := runStderr(t, []string{"onnxpost", "merge", "--config", cfg})
			if code != 0 {
				t.Fatalf("merge --config: exit code %d\n%s", code, stderr)
			}
			if !strings.Contains(stderr, "If-merged decoder: transforming its branches") {
				t.Errorf("merge --config did not split the merged decoders:\n%s", stderr)
			}
			fromFlags := filepath.Join(dir, tc.name+".flags.onnx")
			if code, stderr := runStderr(t, append([]string{"onnxpost", "merge", "-o", fromFlags}, tc.flags...)); code != 0 {
				t.Fatalf("merge %v: exit code %d\n%s", tc.flags, code, stderr)
			}
			sameModel(t, fromFlags, fromConfig)
			a, err := onnxio.Load(fromConfig)
			if err != nil {
				t.Fatal(err)
			}
			b, err := onnxio.Load(fromFlags)
			if err != nil {
				t.Fatal(err)
			}
			// the provenance names the input files, not the branch runs'
			for k, v := range b.Metadata() {
				if strings.Contains(v, ".onnxpost-branches-") {
					t.Errorf("%s names a branch run's temporary file: %s", k, v)
				}
			}
			if !strings.Contains(b.Metadata()["onnxpost.merge.inputs"], bible) {
				t.Errorf("onnxpost.merge.inputs = %s, want %s in it", b.Metadata()["onnxpost.merge.inputs"], bible)
			}
			for _, k := range []string{"onnxpost.merge.method", "onnxpost.merge.params", "onnxpost.merge.inputs"} {
				va := a.Metadata()[k]
				vb := b.Metadata()[k]
				if va != vb || va == "" {
					t.Errorf("%s: config %q, flags %q", k, va, vb)
				}
			}
			if _, ok := a.IfMerged(); !ok {
				t.Error("the config's merge is no merged decoder")
			}
			for how, step := range map[string]string{"config": "config: " + cfg, "keys": tc.keys} {
				out := tc.name + ".recipe-" + how + ".onnx"
				runRecipe(t, dir, "output: "+out+"\nsteps:\n  - merge: {"+step+"}\n")
				sameModel(t, fromFlags, filepath.Join(dir, out))
				r, err := onnxio.Load(filepath.Join(dir, out))
				if err != nil {
					t.Fatal(err)
				}
				if got, want := r.Metadata()["onnxpost.merge.inputs"], b.Metadata()["onnxpost.merge.inputs"]; got != want {
					t.Errorf("recipe (%s): onnxpost.merge.inputs %s, the command's %s", how, got, want)
				}
			}
		})
	}
}
