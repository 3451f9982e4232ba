package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestFisherCLI(t *testing.T) {
	requireORT(t)
	model := zoo(t, "ft_low")
	data := filepath.Join("..", "..", "models", "data", "digits_low_val.npz")
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		code    int
		written bool
	}{
		{"exact, flags first", []string{"--data", data, "--max-examples", "8", "-o", "OUT", model}, 0, true},
		{"sampled, flags after", []string{model, "--data", data, "--samples", "2", "--seed", "3", "--max-examples", "8", "--mode", "copies", "-o", "OUT", "--json"}, 0, true},
		{"loop mode", []string{model, "--data", data, "--max-examples", "4", "--mode", "loop", "-o", "OUT"}, 0, true},
		{"no output", []string{"--data", data, model}, 2, false},
		{"no data", []string{"-o", "OUT", model}, 2, false},
		{"two models", []string{"--data", data, "-o", "OUT", model, model}, 2, false},
		{"bad mode", []string{"--data", data, "--mode", "fast", "-o", "OUT", model}, 2, false},
		{"negative samples", []string{"--data", data, "--samples", "-1", "-o", "OUT", model}, 2, false},
		{"missing model", []string{"--data", data, "-o", "OUT", filepath.Join(dir, "nope.onnx")}, 1, false},
		{"wrong logits output", []string{"--data", data, "--logits", "nope", "-o", "OUT", model}, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".fisher.onnx")
			args := []string{"onnxpost", "fisher"}
			for _, a := range tc.args {
				if a == "OUT" {
					a = out
				}
				args = append(args, a)
			}
			if code := run(args); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			_, err := os.Stat(out)
			if tc.written != (err == nil) {
				t.Fatalf("written=%v, want %v", err == nil, tc.written)
			}
			if !tc.written {
				return
			}
			f, shapes, err := fisher.Read(out)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := onnxio.Load(model)
			for _, name := range m.Initializers() {
				_, sh, _ := m.InitializerInfo(name)
				if len(f[name]) == 0 || len(shapes[name]) != len(sh) {
					t.Fatalf("%s: Fisher missing or misshaped (%v vs %v)", name, shapes[name], sh)
				}
			}
		})
	}
}

// fisher on the zoo LM once its Constant nodes are folded into
// initializers (what merge, sparsify and quantize write): the rotary
// frequencies are then an initializer whose gradient flows through Sin and
// Cos, and the expressions' scalars (RMSNorm's exponent and epsilon, the
// attention scale, the mask's fill value) are initializers too. On one
// 3-token window the Fisher of the folded model holds every non-scalar
// float initializer, the rotary frequencies included, and equals the
// exported model's Fisher on the weights they share; merge --fisher-data
// of two plain LMs (which folds its inputs) works and writes the model
// that merging with the fisher command's files writes.
func TestFisherLanguageModelFolded(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	plain := zooPath(t, "zoo", "lm", "base.onnx")
	m, err := onnxio.Load(plain)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.FoldConstantWeights(); err != nil || n == 0 {
		t.Fatalf("folded %d constants: %v", n, err)
	}
	folded := filepath.Join(dir, "folded.onnx")
	if err := m.Save(folded, nil); err != nil {
		t.Fatal(err)
	}
	calib := lmWindows(t, dir, "lm_pydoc_calib.npz", 1, 3)
	files := map[string]string{}
	for name, model := range map[string]string{"plain": plain, "folded": folded} {
		files[name] = filepath.Join(dir, name+".fisher.onnx")
		if code, stderr := runStderr(t, []string{"onnxpost", "fisher", model, "--data", calib, "--samples", "1", "-o", files[name]}); code != 0 {
			t.Fatalf("fisher %s: exit code %d\n%s", name, code, stderr)
		}
	}
	fp, _, err := fisher.Read(files["plain"])
	if err != nil {
		t.Fatal(err)
	}
	ff, shapes, err := fisher.Read(files["folded"])
	if err != nil {
		t.Fatal(err)
	}
	rotary := false
	for _, name := range m.Initializers() {
		dt, sh, _ := m.InitializerInfo(name)
		if !dt.IsFloat() {
			continue
		}
		if _, ok := ff[name]; ok != (len(sh) > 0) {
			t.Errorf("%s %v: in the Fisher %v, want %v (scalars are left out)", name, sh, ok, len(sh) > 0)
		}
		if _, ok := fp[name]; !ok && len(sh) > 0 {
			rotary = true // a folded constant: the rotary frequencies
			if len(shapes[name]) != 1 {
				t.Errorf("%s: Fisher shape %v", name, shapes[name])
			}
		}
	}
	if !rotary {
		t.Error("the folded model has no non-scalar initializer the exported one lacks (no rotary frequencies?)")
	}
	for name, want := range fp {
		got := ff[name]
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, exported %d", name, len(got), len(want))
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5*math.Max(1e-12, math.Abs(float64(want[i]))) {
				t.Fatalf("%s[%d]: folded %g, exported %g", name, i, got[i], want[i])
			}
		}
	}
	if testing.Short() {
		return
	}
	// merge folds its inputs before computing their Fishers
	models := []string{plain, zooPath(t, "zoo", "lm", "ft_bible.onnx")}
	var fs []string
	for i, model := range models {
		f := filepath.Join(dir, fmt.Sprintf("exact%d.onnx", i))
		if code, stderr := runStderr(t, []string{"onnxpost", "fisher", model, "--data", calib, "-o", f}); code != 0 {
			t.Fatalf("fisher %s: exit code %d\n%s", model, code, stderr)
		}
		fs = append(fs, f)
	}
	outs := map[string]string{}
	for name, flags := range map[string][]string{"data": {"--fisher-data", calib}, "files": {"--fisher", strings.Join(fs, ",")}} {
		outs[name] = filepath.Join(dir, name+".onnx")
		args := append(append([]string{"onnxpost", "merge", "--method", "fisher", "-o", outs[name]}, flags...), models...)
		if code, stderr := runStderr(t, args); code != 0 {
			t.Fatalf("merge %v: exit code %d\n%s", flags, code, stderr)
		}
	}
	sameModel(t, outs["files"], outs["data"])
}
