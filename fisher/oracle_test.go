package fisher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// torchPython returns an interpreter that imports torch (Debian's
// python3-torch by default, or $ONNXPOST_TORCH_PYTHON), or skips the test.
func torchPython(t testing.TB) string {
	t.Helper()
	cands := []string{os.Getenv("ONNXPOST_TORCH_PYTHON"), "/usr/bin/python3"}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if err := exec.Command(c, "-c", "import torch, numpy, sklearn").Run(); err == nil {
			return c
		}
	}
	t.Skip("PyTorch oracle skipped: no Python with torch, numpy and sklearn (Debian's python3-torch, or set ONNXPOST_TORCH_PYTHON)")
	return ""
}

func runOracle(t testing.TB, py string, args ...string) {
	t.Helper()
	cmd := exec.Command(py, append([]string{filepath.Join(pyoracle.RepoRoot(), "tools", "fisher_oracle.py")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fisher_oracle.py %v: %v\n%s", args, err, stderr.String())
	}
}

// writeWeights writes m's float initializers to an .npz.
func writeWeights(t testing.TB, m *onnxio.Model, path string) {
	t.Helper()
	arrs := map[string]*evalharness.Array{}
	for _, name := range m.Initializers() {
		tt, err := m.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		if tt.DType != onnxio.Float {
			continue
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		arrs[name] = evalharness.FromFloat32(tt.Shape, v)
	}
	if err := evalharness.WriteNPZ(path, arrs); err != nil {
		t.Fatal(err)
	}
}

func readNPZ(t testing.TB, path string) map[string][]float64 {
	t.Helper()
	a, err := evalharness.ReadNPZ(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for k, v := range a {
		f, err := v.Float64()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = f
	}
	return out
}

// relErr returns ‖got−want‖/‖want‖ and the largest elementwise error
// relative to max|want|, with both denominators floored by floor (a small
// fraction of the model's largest value): tensors whose exact gradient is
// zero — the attention key bias, to which softmax is invariant — hold only
// rounding noise, which no relative measure can compare.
func relErr(got []float32, want []float64, floor float64) (norm, maxRel float64) {
	var d2, w2, wmax, dmax float64
	for i := range want {
		d := float64(got[i]) - want[i]
		d2 += d * d
		w2 += want[i] * want[i]
		wmax = math.Max(wmax, math.Abs(want[i]))
		dmax = math.Max(dmax, math.Abs(d))
	}
	n := float64(len(want))
	return math.Sqrt(d2) / math.Max(math.Sqrt(w2), floor*math.Sqrt(n)), dmax / math.Max(wmax, floor)
}

// floorOf returns 1e-3 of the largest absolute value over every tensor.
func floorOf(want map[string][]float64) float64 {
	mx := 0.0
	for _, v := range want {
		for _, x := range v {
			mx = math.Max(mx, math.Abs(x))
		}
	}
	return 1e-3 * mx
}

const (
	oracleExamples = 12 // examples in the Fisher comparison
	gradExamples   = 16 // batch of the gradient comparison
)

// TestMatchesPyTorch compares, for each zoo base model, (1) the Fisher with
// tools/fisher_oracle.py (PyTorch autograd in float64, per example and
// class) and (2) autodiff's gradient graph of Σ S⊙logits (S random, a batch
// of 16) with PyTorch autograd. One Python process serves every check.
func TestMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the PyTorch oracle (about 10 s of CPU)")
	}
	requireORT(t)
	py := torchPython(t)
	data := zoo("data", "digits_clean_val.npz")
	ds, err := evalharness.LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	fams := []string{"mlp", "cnn", "transformer"}
	dir := t.TempDir()
	models := map[string]*onnxio.Model{}
	r := rand.New(rand.NewSource(3))
	s := make([]float32, gradExamples*10)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	seed := evalharness.FromFloat32([]int64{gradExamples, 10}, s)
	sp := filepath.Join(dir, "s.npz")
	if err := evalharness.WriteNPZ(sp, map[string]*evalharness.Array{"seed": seed}); err != nil {
		t.Fatal(err)
	}
	var jobs []map[string]any
	for _, fam := range fams {
		m, err := onnxio.Load(zoo("zoo", fam, "base.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		models[fam] = m
		wp := filepath.Join(dir, fam+"_w.npz")
		writeWeights(t, m, wp)
		jobs = append(jobs,
			map[string]any{"mode": "fisher", "family": fam, "weights": wp, "data": data, "n": oracleExamples, "out": filepath.Join(dir, fam+"_f.npz")},
			map[string]any{"mode": "grad", "family": fam, "weights": wp, "data": data, "n": gradExamples, "seed": sp, "out": filepath.Join(dir, fam+"_g.npz")})
	}
	jb, _ := json.Marshal(jobs)
	jp := filepath.Join(dir, "jobs.json")
	if err := os.WriteFile(jp, jb, 0o644); err != nil {
		t.Fatal(err)
	}
	runOracle(t, py, "jobs", jp)
	for _, fam := range fams {
		t.Run(fam+"/fisher", func(t *testing.T) {
			checkFisher(t, models[fam], ds, fam, readNPZ(t, filepath.Join(dir, fam+"_f.npz")))
		})
		t.Run(fam+"/gradients", func(t *testing.T) {
			checkGradients(t, models[fam], ds.Inputs["image"].Slice(0, gradExamples), seed, readNPZ(t, filepath.Join(dir, fam+"_g.npz")))
		})
	}
}

func checkFisher(t *testing.T, m *onnxio.Model, ds *evalharness.Dataset, fam string, want map[string][]float64) {
	modes := []string{fisher.ModeRows}
	if fam == "mlp" {
		modes = append(modes, fisher.ModeCopies)
	}
	for _, mode := range modes {
		r, err := fisher.ComputeResult(context.Background(), m, ds, fisher.Options{MaxExamples: oracleExamples, Mode: mode, Batch: 7})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Params) != len(want) {
			t.Fatalf("%d parameters, oracle has %d", len(r.Params), len(want))
		}
		worst := 0.0
		for _, p := range r.Params {
			w, ok := want[p]
			if !ok {
				t.Fatalf("oracle has no parameter %s", p)
			}
			n, mx := relErr(r.Fisher[p], w, floorOf(want))
			worst = math.Max(worst, math.Max(n, mx))
			if n > 1e-4 || mx > 1e-4 {
				t.Errorf("%s %s: Fisher differs from PyTorch: relative error %.3g (norm), %.3g (max, relative to the largest entry)", mode, p, n, mx)
			}
		}
		t.Logf("%s: %d parameters agree with PyTorch (mode %s), worst relative error %.2g", fam, len(r.Params), r.Mode, worst)
	}
}

func checkGradients(t *testing.T, m *onnxio.Model, x, seed *evalharness.Array, want map[string][]float64) {
	info, err := fisher.Probe(m, map[string]*evalharness.Array{"image": x.Slice(0, 1)}, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var params []string
	for p := range want {
		params = append(params, p)
	}
	sort.Strings(params)
	g, names, err := autodiff.Gradients(m, "logits", "seed", params, autodiff.Options{Info: info})
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sess, err := evalharness.NewSession(b, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	outs, err := sess.Run(map[string]*evalharness.Array{"image": x, "seed": seed})
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, o := range sess.Outputs() {
		idx[o.Name] = i
	}
	worst := 0.0
	for i, p := range params {
		got, err := outs[idx[names[i]]].Float64()
		if err != nil {
			t.Fatal(err)
		}
		g32 := make([]float32, len(got))
		for k := range got {
			g32[k] = float32(got[k])
		}
		nrm, mx := relErr(g32, want[p], floorOf(want))
		worst = math.Max(worst, math.Max(nrm, mx))
		if nrm > 1e-4 || mx > 1e-4 {
			t.Errorf("%s: gradient differs from PyTorch: relative error %.3g (norm), %.3g (max)", p, nrm, mx)
		}
	}
	t.Logf("%d gradients agree with PyTorch autograd, worst relative error %.2g", len(params), worst)
}
