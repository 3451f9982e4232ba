package merge

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/merge/internal/synth"
	"github.com/onnxpost/onnxpost/onnxio"
)

// mergekitCase is one configuration of a mergekit method for the oracles.
type mergekitCase struct {
	name   string
	base   bool
	models int
	opt    Options
}

func mergekitCases() []mergekitCase {
	f := func(x float64) *float64 { return &x }
	b := func(x bool) *bool { return &x }
	return []mergekitCase{
		{"dare-linear", true, 3, Options{Method: DARELinear, Seed: 5, Densities: []float64{0.3, 0.5, 0.9}, Weights: []float64{1, 0.5, 2}}},
		{"dare-linear-norescale-normalize", true, 2, Options{Method: DARELinear, Seed: 9, Density: 0.4, Lambda: f(0.8), Mergekit: MethodParams{Rescale: b(false), Normalize: b(true)}}},
		{"breadcrumbs", true, 3, Options{Method: Breadcrumbs, Density: 0.6, Weights: []float64{0.3, 0.3, 0.4}}},
		{"breadcrumbs-ties", true, 3, Options{Method: BreadcrumbsTIES, Densities: []float64{0.5, 0.7, 0.9}, Mergekit: MethodParams{Gammas: []float64{0, 0.05, 0.1}}}},
		{"breadcrumbs-rescale", true, 2, Options{Method: Breadcrumbs, Density: 0.5, Mergekit: MethodParams{Gamma: f(0.1), Rescale: b(true)}}},
		{"della", true, 3, Options{Method: Della, Seed: 11, Density: 0.5, Weights: []float64{1, 2, 1}}},
		{"della-linear", true, 2, Options{Method: DellaLinear, Seed: 2, Densities: []float64{0.4, 0.6}, Mergekit: MethodParams{Epsilon: f(0.2)}}},
		{"model-stock", true, 3, Options{Method: ModelStock}},
		{"model-stock-filter-wise", true, 2, Options{Method: ModelStock, Mergekit: MethodParams{FilterWise: true}}},
		{"nuslerp", false, 2, Options{Method: NuSlerp, Weights: []float64{1, 3}}},
		{"nuslerp-base-rows", true, 2, Options{Method: NuSlerp, Weights: []float64{2, 1}, Mergekit: MethodParams{NuSlerpFlatten: b(false), NuSlerpRowWise: true}}},
		{"nuslerp-lastaxis", false, 2, Options{Method: NuSlerp, Mergekit: MethodParams{NuSlerpFlatten: b(false)}}},
		{"multislerp", false, 3, Options{Method: MultiSlerp, Weights: []float64{1, 2, 3}}},
		{"multislerp-base", true, 3, Options{Method: MultiSlerp, Weights: []float64{0.2, 0.3, 0.5}, Mergekit: MethodParams{NormalizeWeights: b(false)}}},
		{"karcher", false, 3, Options{Method: Karcher}},
		{"karcher-iter", false, 2, Options{Method: Karcher, Mergekit: MethodParams{MaxIter: 50, Tol: 1e-9}}},
		{"sce", true, 3, Options{Method: SCE}},
		{"sce-topk", true, 3, Options{Method: SCE, Mergekit: MethodParams{SelectTopK: f(0.3)}}},
		{"nearswap", true, 1, Options{Method: NearSwap, T: f(0.01)}},
		{"arcee-fusion", true, 1, Options{Method: ArceeFusion}},
	}
}

// TestMergekitOracleRandom checks every mergekit kernel against the numpy
// oracle (testdata/oracle_mergekit.py) on random tensors of several ranks,
// including rows of one entry: max |error| ≤ 1e-6 × the tensor's scale.
func TestMergekitOracleRandom(t *testing.T) {
	pyoracle.Python(t)
	shapes := [][]int64{{37}, {8, 13}, {4, 3, 2, 5}, {6, 1}}
	dir := t.TempDir()
	var plans, labels []string
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range mergekitCases() {
		for si, shape := range shapes {
			n := 1
			for _, d := range shape {
				n *= int(d)
			}
			gen := func(center []float32, scale float64) []float32 {
				v := make([]float32, n)
				for j := range v {
					c := float32(0)
					if center != nil {
						c = center[j]
					}
					v[j] = c + float32(r.NormFloat64()*scale)
				}
				return v
			}
			base := gen(nil, 1)
			xs := make([][]float32, tc.models)
			for i := range xs {
				xs[i] = gen(base, 0.1)
			}
			opt := tc.opt
			if err := opt.Validate(tc.models, tc.base); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var b []float32
			if tc.base {
				b = base
			}
			name := fmt.Sprintf("w%d", si)
			dst := make([]float32, n)
			p := &TensorPlan{Out: name, Shape: shape}
			if err := computeMergekit(&opt, p, dst, b, xs); err != nil {
				t.Fatalf("%s %v: %v", tc.name, shape, err)
			}
			for j, v := range dst {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s %v: entry %d is %v", tc.name, shape, j, v)
				}
			}
			plan := map[string]any{"method": string(opt.Method), "params": opt.Params(), "shape": shape,
				"name": name, "base": b, "models": xs, "got": dst}
			if b == nil {
				plan["base"] = nil
			}
			pp := filepath.Join(dir, fmt.Sprintf("%s-%d.json", tc.name, si))
			writeJSON(t, pp, plan)
			plans = append(plans, pp)
			labels = append(labels, fmt.Sprintf("%s/%v", tc.name, shape))
		}
	}
	checkOracle(t, plans, labels)
}

// TestMergekitOracleZoo merges the zoo's models with every mergekit method
// through the streaming engine (New, Save) and checks each merged tensor
// against the numpy oracle.
func TestMergekitOracleZoo(t *testing.T) {
	pyoracle.Python(t)
	fts := []string{"ft_low", "ft_high", "ft_shift"}
	dir := t.TempDir()
	var plans, labels []string
	// a float16 transformer-shaped family with external data, made by synth
	synthDir := filepath.Join(dir, "synth-fp16-external")
	if err := os.MkdirAll(synthDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c16 := synth.Config{Layers: 2, Hidden: 16, FFN: 32, Vocab: 40, Classes: 4, DType: onnxio.Float16}
	for i, n := range append([]string{"base"}, fts...) {
		d := 0.0
		if i > 0 {
			d = 0.02
		}
		if err := synth.Write(filepath.Join(synthDir, n+".onnx"), c16, 1, uint64(i), d, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, fam := range []string{"mlp", "cnn", "transformer", "synth-fp16-external"} {
		famDir := filepath.Join(zooDir(), fam)
		saveOpts := &onnxio.SaveOptions{}
		if fam == "synth-fp16-external" {
			famDir = synthDir
			saveOpts.External, saveOpts.Threshold = onnxio.ExternalAlways, 64
		}
		load := func(n string) (*onnxio.Model, string) {
			p := filepath.Join(famDir, n+".onnx")
			m, err := onnxio.Load(p)
			if err != nil {
				t.Skipf("zoo model missing (make zoo): %v", err)
			}
			return m, p
		}
		for _, tc := range mergekitCases() {
			in := Inputs{}
			var paths []string
			for _, n := range fts[:tc.models] {
				m, p := load(n)
				in.Models = append(in.Models, m)
				paths = append(paths, p)
			}
			plan := map[string]any{"method": string(tc.opt.Method), "models": paths}
			if tc.base {
				m, p := load("base")
				in.Base = m
				plan["base"] = p
			}
			mg, err := New(context.Background(), in, tc.opt, nil)
			if err != nil {
				t.Fatalf("%s/%s: %v", fam, tc.name, err)
			}
			out := filepath.Join(dir, fam+"-"+tc.name+".onnx")
			if err := mg.Save(context.Background(), mg.Output(), out, saveOpts); err != nil {
				t.Fatalf("%s/%s: %v", fam, tc.name, err)
			}
			plan["output"], plan["params"], plan["tensors"] = out, mg.opt.Params(), mg.Plan()
			pp := filepath.Join(dir, fam+"-"+tc.name+".json")
			writeJSON(t, pp, plan)
			plans = append(plans, pp)
			labels = append(labels, fam+"/"+tc.name)
		}
	}
	checkOracle(t, plans, labels)
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkOracle runs oracle_mergekit.py over plans and checks max |error| ≤
// 1e-6 × scale for every tensor (or one float16 unit in the last place
// of the expected values, for float16 outputs).
func checkOracle(t *testing.T, plans, labels []string) {
	t.Helper()
	raw := pyoracle.Run(t, mustRead(t, filepath.Join("testdata", "oracle_mergekit.py")), plans...)
	var results []map[string]struct{ Err, Scale, ULP float64 }
	if err := json.Unmarshal(raw, &results); err != nil {
		t.Fatalf("oracle output: %v\n%s", err, raw)
	}
	if len(results) != len(plans) {
		t.Fatalf("%d oracle results for %d plans", len(results), len(plans))
	}
	for k, res := range results {
		t.Run(labels[k], func(t *testing.T) {
			if len(res) == 0 {
				t.Fatal("no tensor checked")
			}
			worst := 0.0
			for name, e := range res {
				if e.Err > 1e-6*math.Max(e.Scale, 1e-30) && e.Err > e.ULP {
					t.Errorf("tensor %s: max |error| %.3g > 1e-6 × scale %.3g", name, e.Err, e.Scale)
				}
				worst = math.Max(worst, e.Err/math.Max(e.Scale, 1e-30))
			}
			t.Logf("%d tensors, worst relative error %.2g", len(res), worst)
		})
	}
}
