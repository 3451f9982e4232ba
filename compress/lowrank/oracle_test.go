package lowrank

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ortCompare is the oracle: for each (reference, candidate, dataset) triple
// given as JSON on argv[1], onnx.checker (full_check, with shape inference)
// on the candidate, then both models in ONNX Runtime on the dataset's arrays
// (named after the inputs) or, with no dataset, on seeded random inputs;
// prints the max abs difference of the outputs per triple as JSON.
const ortCompare = `
import json, sys
import numpy as np, onnx, onnxruntime as ort
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
res = []
for ref, cand, data in json.loads(sys.argv[1]):
    m = onnx.load(cand)
    onnx.checker.check_model(m, full_check=True)
    a = ort.InferenceSession(ref, so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(cand, so, providers=["CPUExecutionProvider"])
    if data:
        d = np.load(data)
        feeds = {i.name: d[i.name] for i in a.get_inputs()}
    else:
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.standard_normal([x if isinstance(x, int) else 1 for x in i.shape]).astype(np.float32) for i in a.get_inputs()}
    ya, yb = a.run(None, feeds), b.run(None, feeds)
    res.append({"max_abs": max(float(np.max(np.abs(x - y))) for x, y in zip(ya, yb)),
                "scale": max(float(np.max(np.abs(x))) for x in ya),
                "samples": int(len(ya[0])), "nodes": len(m.graph.node)})
print(json.dumps(res))
`

type oracleResult struct {
	MaxAbs  float64 `json:"max_abs"`
	Scale   float64 `json:"scale"`
	Samples int     `json:"samples"`
	Nodes   int     `json:"nodes"`
}

// compareORT runs ortCompare once over all triples (one Python start).
func compareORT(t *testing.T, triples [][3]string) []oracleResult {
	t.Helper()
	arg, err := json.Marshal(triples)
	if err != nil {
		t.Fatal(err)
	}
	out := pyoracle.Run(t, ortCompare, string(arg))
	var res []oracleResult
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(triples) {
		t.Fatalf("oracle output %s: %v", out, err)
	}
	return res
}

// TestFullRankORT: at full rank every scheme reproduces the original
// model's outputs in ONNX Runtime (max abs error ≤ 1e-4) and the rewritten
// model passes onnx.checker (full_check, with shape inference).
func TestFullRankORT(t *testing.T) {
	pyoracle.Python(t)
	all := regexp.MustCompile(`.`)
	cases := []struct {
		name  string
		model func(testing.TB) *onnxio.Model
		opt   Options
		nodes int // nodes expected in the rewritten graph
	}{
		{"svd", denseModel, Options{Scheme: SchemeSVD, Rule: Rule{ByRankRatio, 1}, Force: true}, 9},
		{"svd-energy1", denseModel, Options{Scheme: SchemeSVD, Rule: Rule{ByEnergy, 1}, Force: true}, 9},
		{"channel", convModel, Options{Scheme: SchemeChannel, Rule: Rule{ByRankRatio, 1}, Force: true, Include: all}, 9},
		{"spatial", convModel, Options{Scheme: SchemeSpatial, Rule: Rule{ByRankRatio, 1}, Force: true, Include: all}, 9},
		{"auto", convModel, Options{Scheme: SchemeAuto, Rule: Rule{ByRankRatio, 1}, Force: true, Include: all}, 9},
		{"svd-whitened", denseModel, Options{Scheme: SchemeSVD, Rule: Rule{ByRankRatio, 1}, Force: true, Calib: denseCalib(t)}, 9},
		{"channel-whitened", convModel, Options{Scheme: SchemeChannel, Rule: Rule{ByRankRatio, 1}, Force: true, Include: regexp.MustCompile(`^c2$`), Calib: convCalib(t)}, 6},
	}
	dir := t.TempDir()
	var triples [][3]string
	for _, c := range cases {
		ref := filepath.Join(dir, c.name+"-ref.onnx")
		cand := filepath.Join(dir, c.name+"-cand.onnx")
		if err := c.model(t).Save(ref, nil); err != nil {
			t.Fatal(err)
		}
		m := c.model(t)
		rep, err := Apply(context.Background(), m, c.opt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if rep.Factorized == 0 {
			t.Fatalf("%s: nothing factorized: %+v", c.name, rep.Layers)
		}
		if err := m.Save(cand, nil); err != nil {
			t.Fatal(err)
		}
		triples = append(triples, [3]string{ref, cand, ""})
	}
	for i, res := range compareORT(t, triples) {
		c := cases[i]
		t.Logf("%s: max abs %.3g (output scale %.3g), %d nodes", c.name, res.MaxAbs, res.Scale, res.Nodes)
		if res.MaxAbs > 1e-4 {
			t.Errorf("%s: max abs error %g > 1e-4", c.name, res.MaxAbs)
		}
		if res.Nodes != c.nodes {
			t.Errorf("%s: %d nodes, want %d", c.name, res.Nodes, c.nodes)
		}
	}
}

// convCalib returns an XᵀX for c2.w (d = 8·3·3) from random correlated
// patches: the whitening at full rank must still be exact.
func convCalib(t testing.TB) calib.Stats {
	rng := rand.New(rand.NewPCG(51, 52))
	d, n := 72, 400
	return grams(map[string][]float64{"c2.w": gram(anisotropic(rng, n, d), n, d)})
}

// denseCalib returns XᵀX for the dense model's three weights (d = 16, 12,
// 10) from random correlated activations.
func denseCalib(t testing.TB) calib.Stats {
	rng := rand.New(rand.NewPCG(53, 54))
	g := map[string][]float64{}
	for name, d := range map[string]int{"W1": 16, "W2": 12, "W3": 10} {
		g[name] = gram(anisotropic(rng, 200, d), 200, d)
	}
	return grams(g)
}

// numpySVD is an independent oracle for ExactSVD's singular values.
const numpySVD = `
import sys, numpy as np
m, n = int(sys.argv[2]), int(sys.argv[3])
w = np.fromfile(sys.argv[1], dtype="<f8").reshape(m, n)
print(" ".join(repr(float(s)) for s in np.linalg.svd(w, compute_uv=False)))
`

func TestSingularValuesNumpy(t *testing.T) {
	pyoracle.Python(t)
	rng := rand.New(rand.NewPCG(61, 62))
	m, n := 37, 23
	w := randVec(rng, m*n)
	path := filepath.Join(t.TempDir(), "w.bin")
	buf := make([]byte, 0, 8*len(w))
	for _, v := range w {
		buf = appendF64(buf, v)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(pyoracle.Run(t, numpySVD, path, "37", "23")))
	s, err := ExactSVD(w, m, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) != s.K() {
		t.Fatalf("numpy gave %d values, Go %d", len(fields), s.K())
	}
	for i, f := range fields {
		var want float64
		if err := json.Unmarshal([]byte(f), &want); err != nil {
			t.Fatal(err)
		}
		if d := s.S[i] - want; d > 1e-10*s.S[0] || d < -1e-10*s.S[0] {
			t.Errorf("σ%d: Go %g, numpy %g", i, s.S[i], want)
		}
	}
}

func appendF64(b []byte, v float64) []byte {
	u := math.Float64bits(v)
	for i := 0; i < 8; i++ {
		b = append(b, byte(u>>(8*i)))
	}
	return b
}

// TestZooFullRankORT: on the zoo's models and test set, every scheme at full
// rank (forced) reproduces the outputs within 1e-4 in ONNX Runtime.
func TestZooFullRankORT(t *testing.T) {
	pyoracle.Python(t)
	root := pyoracle.RepoRoot()
	data := filepath.Join(root, "models", "data", "digits_clean_test.npz")
	if _, err := os.Stat(data); err != nil {
		t.Skipf("zoo not built: %v", err)
	}
	all := regexp.MustCompile(`.`)
	cases := []struct {
		model  string
		scheme Scheme
	}{
		{"mlp", SchemeSVD}, {"transformer", SchemeSVD}, {"cnn", SchemeChannel}, {"cnn", SchemeSpatial}, {"cnn", SchemeAuto},
	}
	dir := t.TempDir()
	var triples [][3]string
	for _, c := range cases {
		ref := filepath.Join(root, "models", "zoo", c.model, "base.onnx")
		m, err := onnxio.Load(ref)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Apply(context.Background(), m, Options{Scheme: c.scheme, Rule: Rule{ByRankRatio, 1}, Include: all, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Factorized == 0 || rep.Factorized != len(rep.Layers) {
			t.Fatalf("%s/%v: factorized %d of %d layers", c.model, c.scheme, rep.Factorized, len(rep.Layers))
		}
		cand := filepath.Join(dir, c.model+"-"+c.scheme.String()+".onnx")
		if err := m.Save(cand, nil); err != nil {
			t.Fatal(err)
		}
		triples = append(triples, [3]string{ref, cand, data})
	}
	for i, res := range compareORT(t, triples) {
		c := cases[i]
		t.Logf("%s/%v: %d samples, max abs %.3g", c.model, c.scheme, res.Samples, res.MaxAbs)
		if res.MaxAbs > 1e-4 {
			t.Errorf("%s/%v: max abs error %g > 1e-4", c.model, c.scheme, res.MaxAbs)
		}
	}
}
