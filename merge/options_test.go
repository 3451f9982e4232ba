package merge

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		o        Options
		n        int
		base     bool
		wantErr  string // "" = valid
		wantDens float64
	}{
		{"ties defaults", Options{Method: TIES}, 3, true, "", 0.2},
		{"dare default density", Options{Method: DARE}, 2, true, "", 0.5},
		{"dare-ties density", Options{Method: DARETIES, Density: 0.3}, 2, true, "", 0.3},
		{"linear", Options{Method: Linear}, 2, false, "", 1},
		{"ties without base", Options{Method: TIES}, 3, false, "needs a base model", 0},
		{"linear with base", Options{Method: Linear}, 2, true, "does not use a base", 0},
		{"density zero per model", Options{Method: TIES, Densities: []float64{0.2, 0}}, 2, true, "outside (0, 1]", 0},
		{"density above one", Options{Method: TIES, Density: 1.5}, 2, true, "outside (0, 1]", 0},
		{"density negative", Options{Method: DARE, Density: -0.1}, 2, true, "outside (0, 1]", 0},
		{"weights sum to zero", Options{Method: Linear, Weights: []float64{1, -1}}, 2, false, "sum to zero", 0},
		{"weights count", Options{Method: Linear, Weights: []float64{1}}, 2, false, "1 weights for 2 models", 0},
		{"slerp needs t", Options{Method: SLERP}, 2, false, "needs the t parameter", 0},
		{"slerp t range", Options{Method: SLERP, T: ptr(1.5)}, 2, false, "outside [0, 1]", 0},
		{"slerp three models", Options{Method: SLERP, T: ptr(0.5)}, 3, false, "exactly two", 0},
		{"slerp base and one", Options{Method: SLERP, T: ptr(0.5)}, 1, true, "", 1},
		{"bad scope", Options{Method: TIES, TrimScope: "layer"}, 2, true, "trim scope", 0},
		{"unknown method", Options{Method: "magic"}, 2, false, "unknown method", 0},
		{"no models", Options{Method: Linear}, 0, false, "no models", 0},
		{"fisher negative weight", Options{Method: Fisher, Weights: []float64{2, -1}}, 2, false, "negative", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate(tc.n, tc.base)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(tc.o.Weights) != tc.n || len(tc.o.Densities) != tc.n {
					t.Fatalf("weights %v densities %v for %d models", tc.o.Weights, tc.o.Densities, tc.n)
				}
				if tc.o.Densities[0] != tc.wantDens {
					t.Fatalf("density %v, want %v", tc.o.Densities[0], tc.wantDens)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrOptions) {
				t.Fatalf("error %v, want one containing %q wrapping ErrOptions", err, tc.wantErr)
			}
		})
	}
}

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]Method{"ties": TIES, "TIES": TIES, "dare_ties": DARETIES, "task_arithmetic": TaskArithmetic, "slerp": SLERP} {
		if got, err := ParseMethod(in); err != nil || got != want {
			t.Errorf("ParseMethod(%q) = %q, %v", in, got, err)
		}
	}
}

func TestSelected(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("method: linear\nmodels: [{model: a}]\nparameters: {include: 'weight', exclude: 'norm'}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"fc.weight": true, "norm.weight": false, "fc.bias": false} {
		if got := o.Selected(name); got != want {
			t.Errorf("Selected(%q) = %v", name, got)
		}
	}
}

func TestParseConfig(t *testing.T) {
	const good = `
merge_method: ties
base_model: base.onnx
models:
  - model: a.onnx
    parameters: {weight: 2, density: 0.5}
  - model: /abs/b.onnx
parameters:
  density: 0.3
  lambda: 1.5
  trim_scope: tensor
  seed: 7
output: out/merged.onnx
data: val.npz
gate: accuracy>=0.9
`
	cfg := t.TempDir()
	c, err := ParseConfig(strings.NewReader(good), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Base != cfg+"/base.onnx" || c.Output != cfg+"/out/merged.onnx" || c.Data != cfg+"/val.npz" || c.Gate != "accuracy>=0.9" {
		t.Fatalf("paths: %+v", c)
	}
	if p := c.Paths(); p[0] != cfg+"/a.onnx" || p[1] != "/abs/b.onnx" {
		t.Fatalf("model paths %v", p)
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(2, true); err != nil {
		t.Fatal(err)
	}
	if o.Method != TIES || o.Weights[0] != 2 || o.Weights[1] != 1 || o.Densities[0] != 0.5 || o.Densities[1] != 0.3 ||
		*o.Lambda != 1.5 || o.TrimScope != TrimTensor || o.Seed != 7 {
		t.Fatalf("options %+v", o)
	}

	bad := []struct{ name, yaml, want string }{
		{"unknown key", "method: ties\nmodels: [{model: a}]\nlamda: 1\n", "field lamda not found"},
		{"unknown model key", "method: ties\nmodels: [{model: a, wieght: 1}]\n", "field wieght not found"},
		{"unknown parameter", "method: ties\nmodels: [{model: a}]\nparameters: {densty: 0.2}\n", `method ties has no parameter "densty"`},
		{"no models", "method: ties\n", "no models"},
		{"empty", "", "empty"},
		{"model without path", "method: ties\nmodels: [{parameters: {weight: 1}}]\n", "no path"},
		{"two documents", "method: ties\nmodels: [{model: a}]\n---\nmethod: linear\n", "more than one"},
		{"methods disagree", "method: ties\nmerge_method: linear\nmodels: [{model: a}]\n", "disagree"},
		{"map weight", "method: ties\nmodels: [{model: a, parameters: {weight: {a: 1}}}]\n", "a parameter value is a scalar, a list of numbers or a list of {filter, value}"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.yaml), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrOptions) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfigFisher(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(p, []byte("method: fisher\nmodels:\n - {model: a.onnx, fisher: fa.onnx}\n - {model: b.onnx}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.FisherPaths(); err == nil {
		t.Fatal("half the fisher files: no error")
	}
	c.Models[1].Fisher = filepath.Join(dir, "fb.onnx")
	fp, err := c.FisherPaths()
	if err != nil || fp[0] != filepath.Join(dir, "fa.onnx") {
		t.Fatalf("%v %v", fp, err)
	}
}
