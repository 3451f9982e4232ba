package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// cliCase is one invocation of a transforming command: its arguments
// ("OUT" is replaced by a fresh output path), the exit code expected and
// whether the output must exist afterwards.
type cliCase struct {
	name  string
	args  []string
	code  int
	wrote bool
}

func runCLICases(t *testing.T, cmd string, cases []cliCase) {
	t.Helper()
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".onnx")
			args := []string{"onnxpost", cmd}
			for _, a := range tc.args {
				if a == "OUT" {
					a = out
				}
				args = append(args, a)
			}
			if code := run(args); code != tc.code {
				t.Fatalf("%v: exit code %d, want %d", args[1:], code, tc.code)
			}
			_, err := os.Stat(out)
			if tc.wrote != (err == nil) {
				t.Fatalf("output written: %v, want %v", err == nil, tc.wrote)
			}
			if tc.wrote {
				if _, err := onnxio.Load(out); err != nil {
					t.Fatalf("output does not load: %v", err)
				}
			}
		})
	}
}

func zooPath(t *testing.T, parts ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{"..", "..", "models"}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("zoo missing (make zoo): %v", err)
	}
	return p
}

func TestLowrankCLI(t *testing.T) {
	requireORT(t)
	mlp := zooPath(t, "zoo", "mlp", "base.onnx")
	cnn := zooPath(t, "zoo", "cnn", "base.onnx")
	test := zooPath(t, "data", "digits_clean_test.npz")
	runCLICases(t, "lowrank", []cliCase{
		{"svd energy", []string{mlp, "--energy", "0.9", "-o", "OUT"}, 0, true},
		{"channel with data", []string{cnn, "--scheme", "channel", "--rank-ratio", "0.5", "--data", test, "-o", "OUT"}, 0, true},
		{"energy above one", []string{mlp, "--energy", "1.5", "-o", "OUT"}, 2, false},
		{"energy zero", []string{mlp, "--energy", "0", "-o", "OUT"}, 2, false},
		{"include matches nothing", []string{mlp, "--energy", "0.9", "--include", "no_such_layer", "-o", "OUT"}, 2, false},
		{"gate fails", []string{mlp, "--rank", "1", "--data", test, "--gate", "accuracy>=0.99", "-o", "OUT"}, 3, false},
	})
}

func TestQuantizeCLI(t *testing.T) {
	requireORT(t)
	mlp := zooPath(t, "zoo", "mlp", "base.onnx")
	tr := zooPath(t, "zoo", "transformer", "base.onnx")
	val := zooPath(t, "data", "digits_clean_val.npz")
	test := zooPath(t, "data", "digits_clean_test.npz")
	dir := t.TempDir()
	q := filepath.Join(dir, "q.onnx")
	if code := run([]string{"onnxpost", "quantize", mlp, "--weights", "int8", "-o", q}); code != 0 {
		t.Fatalf("int8: exit code %d", code)
	}
	runCLICases(t, "quantize", []cliCase{
		{"int8 gated", []string{mlp, "--weights", "int8", "--data", test, "--gate", "accuracy_drop<=0.02", "-o", "OUT"}, 0, true},
		{"int4 gptq", []string{tr, "--weights", "int4", "--method", "gptq", "--block", "16", "--calib", val, "-o", "OUT"}, 0, true},
		{"fp16", []string{tr, "--weights", "fp16", "-o", "OUT"}, 0, true},
		{"static without calib", []string{mlp, "--weights", "int8", "--activations", "int8", "-o", "OUT"}, 2, false},
		{"block not a power of two", []string{tr, "--weights", "int4", "--block", "24", "-o", "OUT"}, 2, false},
		{"block too small", []string{tr, "--weights", "int4", "--block", "8", "-o", "OUT"}, 2, false},
		{"already quantized", []string{q, "--weights", "int8", "-o", "OUT"}, 1, false},
	})
}

func TestSearchCLI(t *testing.T) {
	requireORT(t)
	mlp := zooPath(t, "zoo", "mlp", "base.onnx")
	val := zooPath(t, "data", "digits_clean_val.npz")
	test := zooPath(t, "data", "digits_clean_test.npz")
	dir := t.TempDir()
	rep := filepath.Join(dir, "r.json")
	// every weight already quantized: nothing to search (exit 1, per-layer reasons)
	quantized := filepath.Join(dir, "q.onnx")
	if code := run([]string{"onnxpost", "quantize", mlp, "--weights", "int8", "-o", quantized}); code != 0 {
		t.Fatalf("quantize: exit %d", code)
	}
	runCLICases(t, "search", []cliCase{
		{"all quantized", []string{quantized, "--target", "0.5", "--calib", val, "--generations", "2", "-o", "OUT"}, 1, false},
		{"include matches nothing", []string{mlp, "--target", "0.5", "--calib", val, "--include", "no_such_layer", "-o", "OUT"}, 1, false},
		{"sparsity", []string{mlp, "--target", "0.5", "--calib", val, "--generations", "5", "--data", test, "--report", rep, "-o", "OUT"}, 0, true},
		{"no calib", []string{mlp, "--target", "0.5", "-o", "OUT"}, 2, false},
		{"target outside", []string{mlp, "--target", "1.5", "--calib", val, "-o", "OUT"}, 2, false},
		{"stages mismatch", []string{mlp, "--target", "0.5", "--calib", val, "--selection", "4:2:1", "--tokens", "8:16", "-o", "OUT"}, 2, false},
	})
	b, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Search struct {
			Target float64 `json:"target"`
		} `json:"search"`
		Metrics map[string]float64 `json:"metrics"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Search.Target != 0.5 || r.Metrics["accuracy"] == 0 {
		t.Fatalf("report lacks the search or the metrics: %s", b)
	}
}

func TestRunRecipeCLI(t *testing.T) {
	requireORT(t)
	zoo := zooPath(t, "zoo")
	data := zooPath(t, "data")
	dir := t.TempDir()
	write := func(name, gate, extra string) string {
		p := filepath.Join(dir, name+".yaml")
		body := "name: " + name + "\nseed: 1\ndata: " + abs(t, filepath.Join(data, "digits_union_test.npz")) +
			"\noutput: " + name + ".onnx\nreport: " + name + ".json\n" + extra + "steps:\n" +
			"  - merge: {method: linear, inputs: [" + abs(t, filepath.Join(zoo, "mlp", "ft_low.onnx")) + ", " + abs(t, filepath.Join(zoo, "mlp", "ft_flip.onnx")) + "]}\n" +
			"    gate: \"" + gate + "\"\n" +
			"  - quantize: {weights: int8}\n    gate: \"accuracy_drop<=0.02\"\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name   string
		recipe string
		code   int
		output bool
	}{
		{"passes", write("ok", "accuracy>=0.5", ""), 0, true},
		{"gate fails", write("gated", "accuracy>=0.99", ""), 3, false},
		{"unknown key", write("typo", "accuracy>=0.5", "colour: blue\n"), 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code := run([]string{"onnxpost", "run", tc.recipe}); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			base := tc.recipe[:len(tc.recipe)-len(".yaml")]
			_, err := os.Stat(base + ".onnx")
			if tc.output != (err == nil) {
				t.Fatalf("output written: %v, want %v", err == nil, tc.output)
			}
			if tc.code != 2 {
				if _, err := os.Stat(base + ".json"); err != nil {
					t.Fatalf("report not written: %v", err)
				}
			}
			if tc.output {
				m, err := onnxio.Load(base + ".onnx")
				if err != nil {
					t.Fatal(err)
				}
				// the model records the chain; the recipe report, the recipe
				if m.Metadata()["onnxpost.inputs"] == "" || m.Metadata()["onnxpost.version"] == "" {
					t.Fatalf("chain not recorded in the output's metadata: %v", m.Metadata())
				}
				b, err := os.ReadFile(base + ".json")
				if err != nil || !strings.Contains(string(b), `"recipe_sha256"`) {
					t.Fatalf("recipe not recorded in its report (%v)", err)
				}
			}
		})
	}
}

// A quantized model reports the parameters of the float model it came
// from: packed MatMulNBits weights count as K×N, scales and zero points
// not at all.
func TestModelParamsOfQuantizedModels(t *testing.T) {
	requireORT(t)
	mlp := zooPath(t, "zoo", "mlp", "base.onnx")
	m, err := onnxio.Load(mlp)
	if err != nil {
		t.Fatal(err)
	}
	want, err := modelParams(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, w := range []string{"int8", "int4"} {
		out := filepath.Join(dir, w+".onnx")
		if code := run([]string{"onnxpost", "quantize", mlp, "--weights", w, "-o", out}); code != 0 {
			t.Fatalf("%s: exit code %d", w, code)
		}
		q, err := onnxio.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := modelParams(q)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s model reports %d parameters, the float model %d", w, got, want)
		}
	}
}
