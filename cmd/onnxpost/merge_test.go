package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
)

func zoo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "models", "zoo", "mlp", name+".onnx")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("zoo missing (make zoo): %v", err)
	}
	return p
}

func TestMergeCLI(t *testing.T) {
	base, a, b, c := zoo(t, "base"), zoo(t, "ft_low"), zoo(t, "ft_high"), zoo(t, "ft_shift")
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.onnx")
	os.WriteFile(corrupt, []byte("this is not a model"), 0o644)
	cnn := filepath.Join("..", "..", "models", "zoo", "cnn", "ft_low.onnx")
	cfg := filepath.Join(dir, "m.yaml")
	os.WriteFile(cfg, []byte(`method: ties
base_model: `+abs(t, base)+`
models:
  - model: `+abs(t, a)+`
    parameters: {weight: 1, density: 0.3}
  - model: `+abs(t, b)+`
parameters: {density: 0.2, lambda: 1.0}
output: cfg-out.onnx
`), 0o644)
	lowVal := filepath.Join("..", "..", "models", "data", "digits_low_val.npz")
	folder := filepath.Join(dir, "folder")
	os.MkdirAll(folder, 0o755)
	if data, err := os.ReadFile(a); err == nil {
		os.WriteFile(filepath.Join(folder, "model.onnx"), data, 0o644)
	}
	folderModel := folder
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("method: ties\nmodels: [{model: a.onnx}]\nlamda: 1\n"), 0o644)

	tests := []struct {
		name   string
		args   []string
		code   int
		output string // written file ("" none)
	}{
		{"ties flags first", []string{"--method", "ties", "--base", base, "--density", "0.2", "--lambda", "1.0", "-o", "OUT", a, b, c}, 0, "OUT"},
		{"flags after models", []string{a, b, "--method", "linear", "--weights", "2,1", "-o", "OUT"}, 0, "OUT"},
		{"per-model density", []string{"--method", "dare-ties", "--base", base, "--density", "0.3,0.5,0.9", "--seed", "3", "-o", "OUT", a, b, c}, 0, "OUT"},
		{"config", []string{"--config", cfg}, 0, filepath.Join(dir, "cfg-out.onnx")},
		{"config unknown key", []string{"--config", badCfg, "-o", "OUT"}, 2, ""},
		{"different architecture", []string{"--method", "linear", "-o", "OUT", a, cnn}, 1, ""},
		{"missing file", []string{"--method", "linear", "-o", "OUT", a, filepath.Join(dir, "nope.onnx")}, 1, ""},
		{"corrupt file", []string{"--method", "linear", "-o", "OUT", a, corrupt}, 1, ""},
		{"density zero", []string{"--method", "ties", "--base", base, "--density", "0", "-o", "OUT", a, b}, 2, ""},
		{"density above one", []string{"--method", "ties", "--base", base, "--density", "1.5", "-o", "OUT", a, b}, 2, ""},
		{"weights sum to zero", []string{"--method", "linear", "--weights", "1,-1", "-o", "OUT", a, b}, 2, ""},
		{"no method", []string{"-o", "OUT", a, b}, 2, ""},
		{"ties without base", []string{"--method", "ties", "-o", "OUT", a, b}, 2, ""},
		{"gate without data", []string{"--method", "linear", "--gate", "accuracy>=0.5", "-o", "OUT", a, b}, 2, ""},
		{"fisher-data for ties", []string{"--method", "ties", "--base", base, "--fisher-data", lowVal, "-o", "OUT", a, b}, 2, ""},
		{"mergekit model_stock", []string{"--method", "model_stock", "--base", base, "-o", "OUT", a, b, c}, 0, "OUT"},
		{"mergekit della dashed with params", []string{"--method", "della-linear", "--base", base, "--density", "0.5", "--param", "epsilon=0.1", "--param", "rescale=false", "-o", "OUT", a, b}, 0, "OUT"},
		{"mergekit nearswap t", []string{"--method", "nearswap", "--base", base, "--t", "0.001", "-o", "OUT", a}, 0, "OUT"},
		{"mergekit model folder", []string{"--method", "karcher", "-o", "OUT", folderModel, b}, 0, "OUT"},
		{"passthrough refused", []string{"--method", "passthrough", "-o", "OUT", a, b}, 2, ""},
		{"param not declared", []string{"--method", "breadcrumbs", "--base", base, "--param", "epsilon=0.1", "-o", "OUT", a, b}, 2, ""},
		{"param without value", []string{"--method", "breadcrumbs", "--base", base, "--param", "gamma", "-o", "OUT", a, b}, 2, ""},
		{"karcher weights", []string{"--method", "karcher", "--weights", "1,2", "-o", "OUT", a, b}, 2, ""},
		{"model_stock density", []string{"--method", "model_stock", "--base", base, "--density", "0.5", "-o", "OUT", a, b}, 2, ""},
		{"sce lambda", []string{"--method", "sce", "--base", base, "--lambda", "2", "-o", "OUT", a, b}, 2, ""},
		{"model_stock one model", []string{"--method", "model_stock", "--base", base, "-o", "OUT", a}, 2, ""},
		{"fisher-data count", []string{"--method", "fisher", "--fisher-data", lowVal + "," + lowVal + "," + lowVal, "-o", "OUT", a, b}, 2, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out", tc.name+".onnx")
			os.MkdirAll(filepath.Dir(out), 0o755)
			args := []string{"onnxpost", "merge"}
			for _, a := range tc.args {
				if a == "OUT" {
					a = out
				}
				args = append(args, a)
			}
			if code := run(args); code != tc.code {
				t.Fatalf("exit code %d, want %d (%d)", code, tc.code, i)
			}
			want := tc.output
			if want == "OUT" {
				want = out
			}
			_, err := os.Stat(out)
			if want != out && err == nil {
				t.Fatalf("%s written", out)
			}
			if want == "" {
				return
			}
			m, err := onnxio.Load(want)
			if err != nil {
				t.Fatal(err)
			}
			md := m.Metadata()
			if md[merge.MetaMethod] == "" || !strings.Contains(md[merge.MetaInputs], "sha256") {
				t.Fatalf("provenance missing: %v", md)
			}
		})
	}
}

func TestSoupCLI(t *testing.T) {
	a, b := zoo(t, "ft_low"), zoo(t, "ft_high")
	out := filepath.Join(t.TempDir(), "soup.onnx")
	if code := run([]string{"onnxpost", "soup", a, b, "-o", out}); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Metadata()[merge.MetaMethod] != "uniform-soup" {
		t.Fatalf("metadata %v", m.Metadata())
	}
	if code := run([]string{"onnxpost", "soup", "--greedy", a, b, "-o", out + "2"}); code != 2 {
		t.Fatalf("greedy without data: exit code %d, want 2", code)
	}
}

func abs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// merge --method fisher --fisher-data computes each model's Fisher and
// merges with it: the result must equal merging with Fisher files written
// by `onnxpost fisher` on the same data.
func TestMergeFisherData(t *testing.T) {
	requireORT(t)
	a, b := zoo(t, "ft_low"), zoo(t, "ft_high")
	data := filepath.Join("..", "..", "models", "data")
	lo, hi := filepath.Join(data, "digits_low_val.npz"), filepath.Join(data, "digits_high_val.npz")
	dir := t.TempDir()
	fa, fb := filepath.Join(dir, "fa.onnx"), filepath.Join(dir, "fb.onnx")
	for _, f := range [][]string{{"fisher", "--data", lo, "-o", fa, a}, {"fisher", "--data", hi, "-o", fb, b}} {
		if code := run(append([]string{"onnxpost"}, f...)); code != 0 {
			t.Fatalf("%v: exit code %d", f, code)
		}
	}
	viaData, viaFiles := filepath.Join(dir, "d.onnx"), filepath.Join(dir, "f.onnx")
	if code := run([]string{"onnxpost", "merge", "--method", "fisher", "--fisher-data", lo + "," + hi, "-o", viaData, a, b}); code != 0 {
		t.Fatalf("--fisher-data: exit code %d", code)
	}
	if code := run([]string{"onnxpost", "merge", "--method", "fisher", "--fisher", fa + "," + fb, "-o", viaFiles, a, b}); code != 0 {
		t.Fatalf("--fisher: exit code %d", code)
	}
	md, err := onnxio.Load(viaData)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := onnxio.Load(viaFiles)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range md.Initializers() {
		x, _ := md.Initializer(name)
		y, err := mf.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		if string(x.Bytes()) != string(y.Bytes()) {
			t.Fatalf("tensor %s differs between --fisher-data and --fisher", name)
		}
	}
}

// The provenance of a merge covers the inputs' external data files too.
func TestMergeProvenanceHashesExternalData(t *testing.T) {
	a, b := zoo(t, "ft_low"), zoo(t, "ft_high")
	dir := t.TempDir()
	var ext []string
	for i, p := range []string{a, b} {
		m, err := onnxio.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, fmt.Sprintf("m%d.onnx", i))
		if err := m.Save(out, &onnxio.SaveOptions{External: onnxio.ExternalAlways}); err != nil {
			t.Fatal(err)
		}
		ext = append(ext, out)
	}
	out := filepath.Join(dir, "merged.onnx")
	if code := run([]string{"onnxpost", "merge", "--method", "linear", "-o", out, ext[0], ext[1]}); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	locs, err := onnxio.DataFiles(ext[0])
	if err != nil || len(locs) != 1 {
		t.Fatalf("data files of %s: %v %v", ext[0], locs, err)
	}
	want, err := merge.FileSHA256(filepath.Join(dir, locs[0]))
	if err != nil {
		t.Fatal(err)
	}
	inputs := m.Metadata()[merge.MetaInputs]
	if !strings.Contains(inputs, `"`+locs[0]+`":"`+want+`"`) {
		t.Fatalf("provenance lacks the external data's sha256 %s: %s", want, inputs)
	}
}

// TestMergeMergekitConfigCLI runs mergekit's gradient-slerp example shape
// through merge --config on the zoo transformer, and refuses passthrough
// and an unknown parameter with exit 2 before reading any model.
func TestMergeMergekitConfigCLI(t *testing.T) {
	z := filepath.Join("..", "..", "models", "zoo", "transformer")
	if _, err := os.Stat(filepath.Join(z, "base.onnx")); err != nil {
		t.Skipf("zoo missing (make zoo): %v", err)
	}
	dir := t.TempDir()
	za := abs(t, z)
	cfg := filepath.Join(dir, "slerp.yaml")
	os.WriteFile(cfg, []byte(`slices:
  - sources:
      - model: `+za+`/ft_low.onnx
        layer_range: [0, 2]
      - model: high
        layer_range: [0, 2]
merge_method: slerp
base_model: `+za+`/ft_low.onnx
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
tokenizer_source: union
output: merged.onnx
`), 0o644)
	// the folder form: a folder holding model.onnx
	data, err := os.ReadFile(filepath.Join(z, "ft_high.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "high"), 0o755)
	os.WriteFile(filepath.Join(dir, "high", "model.onnx"), data, 0o644)
	if code := run([]string{"onnxpost", "merge", "--config", cfg}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	m, err := onnxio.Load(filepath.Join(dir, "merged.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Metadata()[merge.MetaParams]; !strings.Contains(p, `"per_tensor":"t"`) {
		t.Errorf("provenance params %s", p)
	}
	// dtype: bfloat16 converts the merged weights (quant's bf16)
	if dt, _, err := m.InitializerInfo("blocks.0.q.weight"); err != nil || dt != onnxio.BFloat16 {
		t.Errorf("blocks.0.q.weight is %v (%v), want bfloat16", dt, err)
	}
	for name, yaml := range map[string]string{
		"passthrough": "merge_method: passthrough\nmodels: [{model: nope.onnx}]\noutput: x.onnx\n", // slices, not models
		"gamma":       "merge_method: ties\nbase_model: nope.onnx\nmodels: [{model: nope2.onnx, parameters: {gamma: 0.1}}]\noutput: x.onnx\n",
	} {
		p := filepath.Join(dir, name+".yaml")
		os.WriteFile(p, []byte(yaml), 0o644)
		if code := run([]string{"onnxpost", "merge", "--config", p}); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
		if _, err := os.Stat(filepath.Join(dir, "x.onnx")); err == nil {
			t.Errorf("%s: output written", name)
		}
	}
}

// TestMergePassthroughCLI runs mergekit's passthrough example shape
// (examples of layer stacking: two slices of two models, dtype float16)
// with the zoo transformers in place of the models, and its refusals.
func TestMergePassthroughCLI(t *testing.T) {
	requireORT(t)
	z := abs(t, zooPath(t, "zoo", "transformer"))
	if _, err := os.Stat(filepath.Join(z, "seed_a.onnx")); err != nil {
		t.Skipf("re-basin zoo missing (make rebasin-zoo): %v", err)
	}
	test := abs(t, zooPath(t, "data", "digits_clean_test.npz"))
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(yaml, "{Z}", z)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("frankenmerge", `slices:
  - sources:
    - model: {Z}/seed_a.onnx
      layer_range: [0, 2]
  - sources:
    - model: {Z}/seed_b.onnx
      layer_range: [1, 2]
merge_method: passthrough
dtype: float16
output: stacked.onnx
`)
	report := filepath.Join(dir, "report.json")
	if code := run([]string{"onnxpost", "merge", "--config", cfg, "--data", test, "--report", report}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	m, err := onnxio.Load(filepath.Join(dir, "stacked.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]onnxio.DType{"passthrough.0.blocks.0.q.weight": onnxio.Float16, "passthrough.2.blocks.1.ff2.weight": onnxio.Float16, "embed.weight": onnxio.Float16} {
		if dt, _, err := m.InitializerInfo(name); err != nil || dt != want {
			t.Errorf("%s: %v %v, want %v", name, dt, err, want)
		}
	}
	if m.HasInitializer("blocks.0.q.weight") {
		t.Errorf("the frame's own layer weights are still in the model")
	}
	if md := m.Metadata(); md[merge.MetaMethod] != "passthrough" || !strings.Contains(md[merge.MetaParams], `"layer_range":[1,2]`) || !strings.Contains(md[merge.MetaInputs], "seed_b.onnx") {
		t.Errorf("provenance %q %q %q", md[merge.MetaMethod], md[merge.MetaParams], md[merge.MetaInputs])
	}
	b, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(b), `"method": "passthrough"`) || !strings.Contains(string(b), `"dtype": "fp16"`) {
		t.Errorf("report %s (%v)", b, err)
	}
	for _, tc := range []struct {
		name, yaml string
		args       []string
		code       int
	}{
		{"range past the layers", "slices:\n  - sources: [{model: {Z}/seed_a.onnx, layer_range: [1, 3]}]\nmerge_method: passthrough\noutput: x.onnx\n", nil, 1},
		{"with a merge flag", "slices:\n  - sources: [{model: {Z}/seed_a.onnx, layer_range: [0, 1]}]\nmerge_method: passthrough\noutput: x.onnx\n", []string{"--weights", "1"}, 2},
		{"two sources", "slices:\n  - sources: [{model: {Z}/seed_a.onnx, layer_range: [0, 1]}, {model: {Z}/seed_b.onnx, layer_range: [0, 1]}]\nmerge_method: passthrough\noutput: x.onnx\n", nil, 2},
		{"no layers", "slices:\n  - sources: [{model: " + abs(t, zooPath(t, "zoo", "mlp", "base.onnx")) + ", layer_range: [0, 1]}]\nmerge_method: passthrough\noutput: x.onnx\n", nil, 1},
	} {
		p := write(strings.ReplaceAll(tc.name, " ", "_"), tc.yaml)
		if code := run(append([]string{"onnxpost", "merge", "--config", p}, tc.args...)); code != tc.code {
			t.Errorf("%s: exit %d, want %d", tc.name, code, tc.code)
		}
		if _, err := os.Stat(filepath.Join(dir, "x.onnx")); err == nil {
			t.Errorf("%s: output written", tc.name)
		}
	}
}
