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

// zooDir is the reference zoo of the repository (models/zoo).
func zooDir() string { return filepath.Join(pyoracle.RepoRoot(), "models", "zoo") }

// fisherFile writes a fake diagonal Fisher for m: the same initializers
// with non-negative values, about a tenth of them exactly zero (to exercise
// the floor).
func fisherFile(t *testing.T, m *onnxio.Model, seed uint64, path string) {
	t.Helper()
	f := m.Clone()
	r := rand.New(rand.NewPCG(seed, 99))
	for _, n := range f.Initializers() {
		x, _ := f.Initializer(n)
		if !x.DType.IsFloat() {
			continue
		}
		v := make([]float32, x.NumElements())
		for i := range v {
			if r.IntN(10) > 0 {
				v[i] = float32(math.Pow(r.NormFloat64(), 2) * 1e-3)
			}
		}
		nt, err := onnxio.FromFloat32(n, onnxio.Float, x.Shape, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.SetInitializer(nt); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Save(path, nil); err != nil {
		t.Fatal(err)
	}
}

type oracleCase struct {
	name    string
	base    bool
	models  []string
	fisher  bool
	opt     Options
	ortSame bool // the output must equal the first model's outputs exactly
}

// TestOracle merges the zoo's models with every method and checks each
// merged tensor against an independent numpy implementation of the
// definitions (testdata/oracle.py): max |error| ≤ 1e-6 × the tensor's scale.
// The outputs are run in ONNX Runtime; merged with weights (1,0,0) a model
// gives exactly the first model's outputs.
func TestOracle(t *testing.T) {
	py := pyoracle.Python(t)
	_ = py
	fts := []string{"ft_low", "ft_high", "ft_shift"}
	lam := 0.7
	half := 0.35
	cases := []oracleCase{
		{name: "linear", models: fts, opt: Options{Method: Linear, Weights: []float64{1, 2, 0.5}}},
		{name: "linear-first", models: fts, opt: Options{Method: Linear, Weights: []float64{1, 0, 0}}, ortSame: true},
		{name: "linear-sum", models: fts, opt: Options{Method: Linear, Weights: []float64{0.5, 0.25, 0.25}, NoNormalize: true}},
		{name: "task-arithmetic", base: true, models: fts, opt: Options{Method: TaskArithmetic, Lambda: &lam, Weights: []float64{1, 0.5, 1}}},
		{name: "ties-global", base: true, models: fts, opt: Options{Method: TIES}},
		{name: "ties-global-weighted", base: true, models: fts, opt: Options{Method: TIES, Densities: []float64{0.1, 0.3, 0.5}, Weights: []float64{1, 2, 3}, Lambda: &lam}},
		{name: "ties-tensor", base: true, models: fts, opt: Options{Method: TIES, TrimScope: TrimTensor, Density: 0.3}},
		{name: "dare", base: true, models: fts, opt: Options{Method: DARE, Seed: 42, Weights: []float64{0.5, 0.3, 0.2}}},
		{name: "dare-ties", base: true, models: fts, opt: Options{Method: DARETIES, Seed: 7, Densities: []float64{0.3, 0.5, 0.9}}},
		{name: "slerp", models: fts[:2], opt: Options{Method: SLERP, T: &half}},
		{name: "slerp-base", base: true, models: fts[:1], opt: Options{Method: SLERP, T: &half}},
		{name: "fisher", models: fts, fisher: true, opt: Options{Method: Fisher, Weights: []float64{1, 2, 1}}},
		{name: "fisher-normalized", models: fts, fisher: true, opt: Options{Method: Fisher, FisherNormalize: true, FisherFloor: 1e-4}},
	}
	families := []string{"mlp", "cnn", "transformer", "synth-fp16-external"}
	dir := t.TempDir()
	data := filepath.Join(pyoracle.RepoRoot(), "models", "data", "digits_union_val.npz")
	// a float16 transformer-shaped family with external data, made by synth
	synthDir := filepath.Join(dir, "synth-fp16-external")
	c16 := synth.Config{Layers: 2, Hidden: 16, FFN: 32, Vocab: 40, Classes: 4, DType: onnxio.Float16}
	for i, n := range append([]string{"base"}, fts...) {
		if err := os.MkdirAll(synthDir, 0o755); err != nil {
			t.Fatal(err)
		}
		d := 0.0
		if i > 0 {
			d = 0.02
		}
		if err := synth.Write(filepath.Join(synthDir, n+".onnx"), c16, 1, uint64(i), d, true); err != nil {
			t.Fatal(err)
		}
	}
	var plans []string
	var labels []string
	for _, fam := range families {
		famDir := filepath.Join(zooDir(), fam)
		if fam == "synth-fp16-external" {
			famDir = synthDir
		}
		load := func(n string) (*onnxio.Model, string) {
			p := filepath.Join(famDir, n+".onnx")
			m, err := onnxio.Load(p)
			if err != nil {
				t.Skipf("zoo model missing (make zoo): %v", err)
			}
			return m, p
		}
		for _, tc := range cases {
			in := Inputs{}
			plan := map[string]any{"method": string(tc.opt.Method), "data": data}
			saveOpts := &onnxio.SaveOptions{}
			if fam == "synth-fp16-external" {
				delete(plan, "data")
				plan["feed"] = map[string]any{"ids": [][]int64{{1, 2, 3}, {4, 5, 6}}}
				saveOpts.External = onnxio.ExternalAlways
				saveOpts.Threshold = 64
			}
			var mpaths []string
			for i, n := range tc.models {
				m, p := load(n)
				in.Models = append(in.Models, m)
				mpaths = append(mpaths, p)
				if tc.fisher {
					fp := filepath.Join(dir, fmt.Sprintf("%s-%s-fisher%d.onnx", fam, tc.name, i))
					fisherFile(t, m, uint64(i+1), fp)
					fm, err := onnxio.Load(fp)
					if err != nil {
						t.Fatal(err)
					}
					in.Fishers = append(in.Fishers, fm)
					plan["fishers"] = append(asStrings(plan["fishers"]), fp)
				}
			}
			plan["models"] = mpaths
			if tc.base {
				b, p := load("base")
				in.Base = b
				plan["base"] = p
			}
			opt := tc.opt
			mg, err := New(context.Background(), in, opt, nil)
			if err != nil {
				t.Fatalf("%s/%s: %v", fam, tc.name, err)
			}
			opt = mg.opt
			out := filepath.Join(dir, fam+"-"+tc.name+".onnx")
			if err := mg.Save(context.Background(), mg.Output(), out, saveOpts); err != nil {
				t.Fatal(err)
			}
			plan["output"] = out
			plan["params"] = map[string]any{
				"weights": opt.Weights, "densities": opt.Densities, "lambda": opt.lambda(),
				"trim_scope": string(opt.TrimScope), "seed": opt.Seed, "t": opt.T,
				"normalize": fmt.Sprint(!opt.NoNormalize), "fisher_floor": opt.FisherFloor,
				"fisher_normalize": fmt.Sprint(opt.FisherNormalize),
			}
			plan["tensors"] = mg.Plan()
			if tc.ortSame {
				plan["ort_equal"] = mpaths[0]
			}
			b, err := json.Marshal(plan)
			if err != nil {
				t.Fatal(err)
			}
			pp := filepath.Join(dir, fam+"-"+tc.name+".json")
			if err := os.WriteFile(pp, b, 0o644); err != nil {
				t.Fatal(err)
			}
			plans = append(plans, pp)
			labels = append(labels, fam+"/"+tc.name)
		}
	}
	raw := pyoracle.Run(t, mustRead(t, filepath.Join("testdata", "oracle.py")), plans...)
	var results []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &results); err != nil {
		t.Fatalf("oracle output: %v\n%s", err, raw)
	}
	if len(results) != len(plans) {
		t.Fatalf("%d oracle results for %d plans", len(results), len(plans))
	}
	for k, res := range results {
		t.Run(labels[k], func(t *testing.T) {
			checked := 0
			worst := 0.0
			for name, v := range res {
				switch name {
				case "_copied", "_ort_ran":
					continue
				case "_ort_equal":
					var eq bool
					json.Unmarshal(v, &eq)
					if !eq {
						t.Error("ONNX Runtime outputs differ from the first model's")
					}
					continue
				}
				var e struct{ Err, Scale, ULP float64 }
				if err := json.Unmarshal(v, &e); err != nil {
					t.Fatal(err)
				}
				tol := 1e-6 * math.Max(e.Scale, 1e-30)
				if e.Err > tol && e.Err > e.ULP {
					t.Errorf("tensor %s: max |error| %.3g > %.3g (scale %.3g)", name, e.Err, tol, e.Scale)
				}
				worst = math.Max(worst, e.Err/math.Max(e.Scale, 1e-30))
				checked++
			}
			if checked == 0 {
				t.Fatal("no tensor checked")
			}
			if _, ok := res["_ort_ran"]; !ok {
				t.Error("the merged model was not run in ONNX Runtime")
			}
			t.Logf("%d tensors, worst relative error %.2g", checked, worst)
		})
	}
}

func asStrings(v any) []string {
	s, _ := v.([]string)
	return s
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
