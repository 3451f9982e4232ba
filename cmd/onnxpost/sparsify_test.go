package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func sparsifyZoo(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", "models", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("zoo missing (make zoo): %v", err)
	}
	return p
}

func TestSparsifyCLI(t *testing.T) {
	mlp, cnn := sparsifyZoo(t, "zoo/mlp/base.onnx"), sparsifyZoo(t, "zoo/cnn/base.onnx")
	val := sparsifyZoo(t, "data/digits_clean_val.npz")
	_, ortErr := evalharness.FindLibrary("")
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		code    int
		pattern string // checked on the output with VerifyNM
		needORT bool
	}{
		{"2:4 magnitude mlp", []string{mlp, "-o", "OUT", "--pattern", "2:4"}, 0, "2:4", false},
		{"4:8 magnitude cnn", []string{"--pattern", "4:8", "-o", "OUT", cnn}, 0, "4:8", false},
		{"70% global", []string{mlp, "-o", "OUT", "--sparsity", "0.7", "--scope", "global"}, 0, "", false},
		{"exclude", []string{mlp, "-o", "OUT", "--pattern", "2:4", "--exclude", "fc3"}, 0, "2:4", false},
		{"N equals M", []string{mlp, "-o", "OUT", "--pattern", "4:4"}, 2, "", false},
		{"N above M", []string{mlp, "-o", "OUT", "--pattern", "5:4"}, 2, "", false},
		{"M divides no layer", []string{mlp, "-o", "OUT", "--pattern", "3:7"}, 2, "", false},
		{"M divides no layer, wanda", []string{mlp, "-o", "OUT", "--pattern", "1:7", "--method", "wanda", "--calib", val}, 2, "", false},
		{"pattern and sparsity", []string{mlp, "-o", "OUT", "--pattern", "2:4", "--sparsity", "0.5"}, 2, "", false},
		{"neither", []string{mlp, "-o", "OUT"}, 2, "", false},
		{"sparsity 1", []string{mlp, "-o", "OUT", "--sparsity", "1"}, 2, "", false},
		{"wanda without calib", []string{mlp, "-o", "OUT", "--pattern", "2:4", "--method", "wanda"}, 2, "", false},
		{"sparsegpt without calib", []string{mlp, "-o", "OUT", "--sparsity", "0.5", "--method", "sparsegpt"}, 2, "", false},
		{"sparsegpt global", []string{mlp, "-o", "OUT", "--sparsity", "0.5", "--method", "sparsegpt", "--scope", "global", "--calib", val}, 2, "", false},
		{"bad regex", []string{mlp, "-o", "OUT", "--pattern", "2:4", "--include", "("}, 2, "", false},
		{"no output", []string{mlp, "--pattern", "2:4"}, 2, "", false},
		{"wanda 2:4 cnn", []string{cnn, "-o", "OUT", "--pattern", "2:4", "--method", "wanda", "--calib", val}, 0, "2:4", true},
		{"sparsegpt 4:8 cnn sequential", []string{cnn, "-o", "OUT", "--pattern", "4:8", "--method", "sparsegpt", "--sequential", "--calib", val}, 0, "4:8", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needORT && ortErr != nil {
				t.Skipf("ONNX Runtime: %v", ortErr)
			}
			out := filepath.Join(dir, tc.name+".onnx")
			rep := filepath.Join(dir, tc.name+".json")
			args := []string{"onnxpost", "sparsify", "--quiet", "--report", rep}
			for _, a := range tc.args {
				if a == "OUT" {
					a = out
				}
				args = append(args, a)
			}
			if code := run(args); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			if tc.code != 0 {
				if _, err := os.Stat(out); err == nil {
					t.Fatalf("%s written on failure", out)
				}
				return
			}
			m, err := onnxio.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Sparsity sparsity.Report `json:"sparsity"`
			}
			b, err := os.ReadFile(rep)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Sparsity.Layers) == 0 || doc.Sparsity.Zeros == 0 {
				t.Fatalf("report: %+v", doc.Sparsity)
			}
			for _, l := range doc.Sparsity.Layers {
				tt, err := m.Initializer(l.Name)
				if err != nil {
					t.Fatal(err)
				}
				data, _ := tt.Float32()
				if l.Skipped != "" || tc.pattern == "" {
					continue
				}
				p, _ := sparsity.ParsePattern(tc.pattern)
				c, err := sparsity.VerifyNM(data, l.Layout, tt.Shape, p)
				if err != nil || !c.OK() {
					t.Errorf("%s: %+v %v", l.Name, c, err)
				}
			}
		})
	}
}
