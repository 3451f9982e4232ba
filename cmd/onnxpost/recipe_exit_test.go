package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A failing recipe exits with the code its failing step's command exits
// with on its own (0 done, 1 error, 2 usage, 3 gate failed), whether the
// failure is found when the recipe is checked or while the step runs in
// process: bad values discovered at run time and missing inputs are
// usage errors in both.
func TestRecipeExitCodesEqualCommands(t *testing.T) {
	requireORT(t)
	dir := stepFixture(t)
	for name, body := range map[string]string{
		"gradient.yaml": "merge_method: linear\nmodels:\n  - model: ft_low.onnx\n    parameters: {weight: [0, 1]}\n  - model: ft_high.onnx\n",
		"bad.npz":       "not a zip",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// step is the recipe's step (its head: output and data test.npz);
		// cmd the same command alone ("{dir}" the folder; -o is added).
		step string
		cmd  []string
		code int
	}{
		{"done", "quantize: {weights: int8, inputs: [base.onnx]}", []string{"quantize", "--weights", "int8", "{dir}/base.onnx"}, 0},
		{"pattern fits no layer", "sparsify: {pattern: \"1:512\", inputs: [base.onnx]}", []string{"sparsify", "--pattern", "1:512", "{dir}/base.onnx"}, 2},
		{"a weight per model", "merge: {method: linear, weights: \"1,2,3\", inputs: [ft_low.onnx, ft_high.onnx]}",
			[]string{"merge", "--method", "linear", "--weights", "1,2,3", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}, 2},
		{"ties without base", "merge: {method: ties, inputs: [ft_low.onnx, ft_high.onnx]}",
			[]string{"merge", "--method", "ties", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}, 2},
		{"one model to quantize", "quantize: {weights: int8, inputs: [ft_low.onnx, ft_high.onnx]}",
			[]string{"quantize", "--weights", "int8", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}, 2},
		{"soup of one model", "soup: {inputs: [ft_low.onnx]}", []string{"soup", "{dir}/ft_low.onnx"}, 2},
		{"greedy soup without labels", "soup: {greedy: true, data: val.npz, metric: top6, inputs: [ft_low.onnx, ft_high.onnx]}",
			[]string{"soup", "--greedy", "--data", "{dir}/val.npz", "--metric", "top6", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}, 2},
		{"eval shard", "eval: {data: test.npz, shard: \"3/2\", inputs: [base.onnx]}", []string{"eval", "--data", "{dir}/test.npz", "--shard", "3/2", "{dir}/base.onnx"}, 2},
		{"fisher mode", "fisher: {data: val.npz, mode: nope, inputs: [base.onnx]}", []string{"fisher", "--data", "{dir}/val.npz", "--mode", "nope", "{dir}/base.onnx"}, 2},
		{"fisher batch", "fisher: {data: val.npz, batch: 0, inputs: [base.onnx]}", []string{"fisher", "--data", "{dir}/val.npz", "--batch", "0", "{dir}/base.onnx"}, 2},
		{"search target-bits", "search: {target: 0.5, target-bits: 3, calib: val.npz, inputs: [base.onnx]}",
			[]string{"search", "--target", "0.5", "--target-bits", "3", "--calib", "{dir}/val.npz", "{dir}/base.onnx"}, 2},
		{"config and models", "merge: {config: gradient.yaml, inputs: [ft_low.onnx]}", []string{"merge", "--config", "{dir}/gradient.yaml", "{dir}/ft_low.onnx"}, 2},
		{"align activations without calib", "merge: {method: linear, align: activations, inputs: [ft_low.onnx, ft_high.onnx]}",
			[]string{"merge", "--method", "linear", "--align", "activations", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}, 2},
		{"calib unused", "quantize: {weights: int8, calib: val.npz, inputs: [base.onnx]}", []string{"quantize", "--weights", "int8", "--calib", "{dir}/val.npz", "{dir}/base.onnx"}, 2},
		{"gradient on an MLP", "merge: {config: gradient.yaml}", []string{"merge", "--config", "{dir}/gradient.yaml"}, 1},
		{"nothing selected", "merge: {method: linear, include: \"^nothing$\", inputs: [ft_low.onnx, ft_high.onnx]}",
			[]string{"merge", "--method", "linear", "--include", "^nothing$", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}, 1},
		{"data not a dataset", "quantize: {weights: int8, data: bad.npz, inputs: [base.onnx]}", []string{"quantize", "--weights", "int8", "--data", "{dir}/bad.npz", "{dir}/base.onnx"}, 1},
		{"gate failed", "quantize: {weights: int8, inputs: [base.onnx]}\n    gate: \"accuracy>=1.01\"",
			[]string{"quantize", "--weights", "int8", "--data", "{dir}/test.npz", "--gate", "accuracy>=1.01", "{dir}/base.onnx"}, 3},
		{"eval gate failed", "eval: {data: test.npz, inputs: [base.onnx]}\n    gate: \"accuracy>=1.01\"",
			[]string{"eval", "--data", "{dir}/test.npz", "--gate", "accuracy>=1.01", "{dir}/base.onnx"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			recipe := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			body := "output: " + filepath.Base(out) + ".onnx\nsteps:\n  - " + tc.step + "\n"
			if strings.Contains(tc.step, "gate:") {
				body = "data: test.npz\n" + body
			}
			if err := os.WriteFile(recipe, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"onnxpost"}
			for _, a := range tc.cmd {
				args = append(args, strings.ReplaceAll(a, "{dir}", dir))
			}
			if tc.cmd[0] != "eval" {
				args = append(args, "-o", filepath.Join(out, "cmd.onnx"))
			}
			cmdCode := run(args)
			runCode := run([]string{"onnxpost", "run", recipe})
			if cmdCode != tc.code || runCode != cmdCode {
				t.Errorf("onnxpost run: exit code %d, %s alone: %d; want %d", runCode, tc.cmd[0], cmdCode, tc.code)
			}
		})
	}
}

// Commands that make no model for a chain (inspect, convert, eval-merge,
// run itself) are not recipe steps: the recipe is refused before
// anything runs (exit 2), naming the commands a step may name.
func TestRunRefusesNonStepCommands(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.onnx"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"inspect", "convert", "eval-merge", "run"} {
		recipe := filepath.Join(dir, cmd+".yaml")
		if err := os.WriteFile(recipe, []byte("output: out.onnx\nsteps:\n  - "+cmd+": {inputs: [a.onnx]}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, check := range [][]string{{"run", "--check", recipe}, {"run", recipe}} {
			if code := run(append([]string{"onnxpost"}, check...)); code != 2 {
				t.Errorf("%s step, %v: exit code %d, want 2", cmd, check, code)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "out.onnx")); err == nil {
			t.Fatalf("%s step: output written", cmd)
		}
	}
}
