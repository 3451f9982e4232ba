package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge/rebasin"
	"github.com/onnxpost/onnxpost/onnxio"
)

// permutedCopy writes src with every hidden group permuted at random.
func permutedCopy(t *testing.T, src, dst string) {
	t.Helper()
	m, err := onnxio.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := rebasin.Groups(m)
	if err != nil {
		t.Fatal(err)
	}
	perms := make([][]int, len(gs))
	for g := range gs {
		n := gs[g].Size
		perms[g] = make([]int, n)
		for i := range perms[g] {
			perms[g][i] = (i*7 + 3) % n // a fixed derangement-like shuffle
		}
	}
	p, err := rebasin.Permute(m, gs, perms)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Save(dst, nil); err != nil {
		t.Fatal(err)
	}
}

func initValues(t *testing.T, path string) map[string][]float64 {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for _, n := range m.Initializers() {
		x, _ := m.Initializer(n)
		out[n], _ = x.Float64()
	}
	return out
}

// TestMergeAlignCLI: merging a model with a permuted copy of itself gives
// the model back with --align (both matchings), and something else
// without; bad flag combinations are usage errors; unsupported graphs are
// refused by name and nothing is written.
func TestMergeAlignCLI(t *testing.T) {
	base := zoo(t, "base")
	dir := t.TempDir()
	perm := filepath.Join(dir, "perm.onnx")
	permutedCopy(t, base, perm)
	calib := filepath.Join("..", "..", "models", "data", "digits_clean_val.npz")
	tr := filepath.Join("..", "..", "models", "zoo", "transformer", "base.onnx")
	want := initValues(t, base)
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		equal int // 1: output weights equal base's; 2: they differ; 0: not checked
	}{
		{"weights", []string{"--method", "linear", "--align", "weights"}, 0, 1},
		{"unaligned", []string{"--method", "linear"}, 0, 2},
		// Dead units carry no signal for activation matching: only run it.
		{"activations", []string{"--method", "linear", "--align", "activations", "--calib", calib}, 0, 0},
		{"activations no calib", []string{"--method", "linear", "--align", "activations"}, 2, 0},
		{"bad mode", []string{"--method", "linear", "--align", "neurons"}, 2, 0},
		{"calib without activations", []string{"--method", "linear", "--align", "weights", "--calib", calib}, 2, 0},
		{"calib alone", []string{"--method", "linear", "--calib", calib}, 2, 0},
		{"fisher files", []string{"--method", "fisher", "--fisher", base + "," + perm, "--align", "weights"}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "activations" {
				if err := evalharness.Init(""); errors.Is(err, evalharness.ErrNoLibrary) {
					t.Skipf("ONNX Runtime not available: %v", err)
				}
			}
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			rep := out + ".json"
			args := append([]string{"onnxpost", "merge", "-o", out, "--report", rep}, tc.args...)
			args = append(args, base, perm)
			if code := run(args); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			if tc.code != 0 {
				if _, err := os.Stat(out); err == nil {
					t.Fatal("output written")
				}
				return
			}
			got := initValues(t, out)
			same := true
			for n, v := range want {
				for i := range v {
					same = same && v[i] == got[n][i]
				}
			}
			if (tc.equal == 1 && !same) || (tc.equal == 2 && same) {
				t.Fatalf("output equals the base: %v, want case %d", same, tc.equal)
			}
			if tc.equal != 2 {
				doc, _ := os.ReadFile(rep)
				if !strings.Contains(string(doc), `"alignment"`) || !strings.Contains(string(doc), `"moved"`) {
					t.Fatalf("report lacks the alignment: %s", doc)
				}
			}
		})
	}
	t.Run("onto base", func(t *testing.T) {
		// Every model is aligned onto --base: the permuted copy's task
		// vector is then zero and task arithmetic returns the base.
		out := filepath.Join(dir, "onto_base.onnx")
		if code := run([]string{"onnxpost", "merge", "--method", "task-arithmetic", "--base", base, "--align", "weights", "-o", out, perm}); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		got := initValues(t, out)
		for n, v := range want {
			for i := range v {
				if v[i] != got[n][i] {
					t.Fatalf("%s[%d]: %v, want %v", n, i, got[n][i], v[i])
				}
			}
		}
	})
	t.Run("transformer", func(t *testing.T) {
		out := filepath.Join(dir, "tr.onnx")
		if code := run([]string{"onnxpost", "merge", "--method", "linear", "--align", "weights", "-o", out, tr, tr}); code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
	})
	t.Run("unsupported refused", func(t *testing.T) {
		// Gemm → Transpose → Gemm: the hidden units are reshuffled by an
		// op re-basin does not follow: exit 1, nothing written.
		m := onnxio.New("t", 17)
		m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 4}, {Value: 4}}})
		for _, w := range []string{"w1", "w2"} {
			tt, _ := onnxio.FromFloat32(w, onnxio.Float, []int64{4, 4}, make([]float32, 16))
			m.SetInitializer(tt)
		}
		m.InsertNodes(
			onnxio.Node{Name: "g1", OpType: "Gemm", Inputs: []string{"x", "w1"}, Outputs: []string{"h"}},
			onnxio.Node{Name: "tr", OpType: "Transpose", Inputs: []string{"h"}, Outputs: []string{"t"}},
			onnxio.Node{Name: "g2", OpType: "Gemm", Inputs: []string{"t", "w2"}, Outputs: []string{"y"}},
		)
		m.SetOutputs([]onnxio.ValueInfo{{Name: "y", DType: onnxio.Float}})
		in := filepath.Join(dir, "transpose.onnx")
		if err := m.Save(in, nil); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "refused.onnx")
		if code := run([]string{"onnxpost", "merge", "--method", "linear", "--align", "weights", "-o", out, in, in}); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("output written")
		}
	})
}
