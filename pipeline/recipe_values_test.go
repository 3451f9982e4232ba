package pipeline

import (
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/transform"
)

// valueSpec accepts every declared parameter of the registry's commands
// (and their path flags) as a flag, so that only the values are judged.
func valueSpec(cmd string) (map[string]bool, bool) {
	c := CommandNamed(cmd)
	if c == nil {
		return nil, false
	}
	out := map[string]bool{"base": false, "calib": false, "config": false, "seed": false}
	for _, p := range c.Params() {
		out[p.Name] = p.Kind == transform.Bool
	}
	return out, true
}

// TestParseRecipeValues: every value a step gives a registered command is
// checked through the declared parameters at parse time (run --check),
// naming the step, the key, the value and what is allowed.
func TestParseRecipeValues(t *testing.T) {
	const head = "output: out.onnx\nsteps:\n  - "
	const in = ", inputs: [a.onnx, b.onnx], base: base.onnx}\n"
	for _, tc := range []struct {
		name, step string
		want       []string // nil: valid
	}{
		{"good ties", "merge: {method: ties, density: 0.3" + in, nil},
		{"mergekit spelling", "merge: {method: task_arithmetic, lambda: 0.5" + in, nil},
		{"bad method", "merge: {method: tiez" + in, []string{"step 1 (merge)", `method = "tiez"`, "unknown method", "ties"}},
		{"density 7", "merge: {method: ties, density: 7" + in, []string{"step 1 (merge)", `density = "7"`, "(0, 1]"}},
		{"density list", "merge: {method: ties, density: [0.3, 1.5]" + in, []string{`element "1.5"`, "(0, 1]"}},
		{"slerp t", "merge: {method: slerp, t: 2, inputs: [a.onnx, b.onnx]}\n", []string{`t = "2"`, "[0, 1]"}},
		{"slerp without t", "merge: {method: slerp, inputs: [a.onnx, b.onnx]}\n", []string{"slerp needs t"}},
		{"mergekit param", "merge: {method: della, param: [gamma=x]" + in, []string{`param = "gamma=x"`}},
		{"merge config", "merge: {config: base.onnx, density: 7, inputs: [a.onnx]}\n", []string{`density = "7"`}},
		{"bad regexp", "merge: {method: ties, include: \"(\"" + in, []string{`include = "("`, "missing closing )"}},
		{"good int4", "quantize: {weights: int4, block: 64, method: gptq, calib: data.npz, inputs: [a.onnx]}\n", nil},
		{"gptq without calib", "quantize: {weights: int4, method: gptq, inputs: [a.onnx]}\n", []string{"step 1 (quantize)", "quantize/int4-gptq needs calibration data: calib"}},
		{"calib unused", "quantize: {weights: int8, calib: data.npz, inputs: [a.onnx]}\n", []string{"step 1 (quantize)", "quantize/int8 reads no calibration data: remove calib"}},
		{"int3", "quantize: {weights: int3, inputs: [a.onnx]}\n", []string{"step 1 (quantize)", `weights = "int3"`, "int8, int4, fp16, bf16"}},
		{"block 48", "quantize: {weights: int4, block: 48, inputs: [a.onnx]}\n", []string{`block = "48"`, "power of two"}},
		{"negative samples", "quantize: {activations: int8, calib-samples: -5, inputs: [a.onnx]}\n", []string{`calib-samples = "-5"`, ">= 1"}},
		{"percentile", "quantize: {activations: int8, percentile: 20, inputs: [a.onnx]}\n", []string{`percentile = "20"`, "(50, 100]"}},
		{"accuracy level", "quantize: {weights: int4, accuracy-level: 5, inputs: [a.onnx]}\n", []string{`accuracy-level = "5"`}},
		{"int4 activations", "quantize: {weights: int4, activations: dynamic, inputs: [a.onnx]}\n", []string{"activation quantization applies to int8 weights"}},
		{"good 2:4", "sparsify: {pattern: \"2:4\", method: wanda, calib: data.npz, inputs: [a.onnx]}\n", nil},
		{"wanda without calib", "sparsify: {pattern: \"2:4\", method: wanda, inputs: [a.onnx]}\n", []string{"step 1 (sparsify)", "sparsify/wanda needs calibration data: calib"}},
		{"whiten without calib", "lowrank: {rank: 4, whiten: true, inputs: [a.onnx]}\n", []string{"step 1 (lowrank)", "needs calibration data: calib"}},
		{"pattern 5:4", "sparsify: {pattern: \"5:4\", inputs: [a.onnx]}\n", []string{"step 1 (sparsify)", `pattern = "5:4"`, "0 < N < M"}},
		{"sparsity 1", "sparsify: {sparsity: 1, inputs: [a.onnx]}\n", []string{`sparsity = "1"`, "[0, 1)"}},
		{"pattern and sparsity", "sparsify: {pattern: \"2:4\", sparsity: 0.5, inputs: [a.onnx]}\n", []string{"exactly one of pattern"}},
		{"sparsify method", "sparsify: {sparsity: 0.5, method: wandda, inputs: [a.onnx]}\n", []string{`method = "wandda"`, "magnitude, wanda, sparsegpt"}},
		{"sparsegpt blocksize", "sparsify: {pattern: \"2:4\", method: sparsegpt, blocksize: 6, inputs: [a.onnx]}\n", []string{"blocksize 6 is not a multiple of M=4"}},
		{"good lowrank", "lowrank: {rank: 4, inputs: [a.onnx]}\n", nil},
		{"rank 0", "lowrank: {rank: 0, inputs: [a.onnx]}\n", []string{"step 1 (lowrank)", `rank = "0"`, "≥ 1"}},
		{"energy 1.5", "lowrank: {energy: 1.5, inputs: [a.onnx]}\n", []string{`energy = "1.5"`, "(0,1]"}},
		{"two rules", "lowrank: {energy: 0.9, rank: 4, inputs: [a.onnx]}\n", []string{"exactly one of energy"}},
		{"power iters", "lowrank: {rank: 4, power-iters: -1, inputs: [a.onnx]}\n", []string{`power-iters = "-1"`, ">= 0"}},
		{"good search", "search: {space: bits, target: 3, method: gptq, calib: data.npz, inputs: [a.onnx]}\n", nil},
		{"search without calib", "search: {space: bits, target: 3, inputs: [a.onnx]}\n", []string{"step 1 (search)", "search needs calib"}},
		{"search target", "search: {space: sparsity, target: 1.5, inputs: [a.onnx]}\n", []string{"step 1 (search)", `target = "1.5"`, "(0, 1)"}},
		{"bits target", "search: {space: bits, target: 0.5, inputs: [a.onnx]}\n", []string{`target = "0.5"`, "[2, 8]"}},
		{"drop target", "search: {space: drop, target: 1.5, inputs: [a.onnx]}\n", []string{"whole number"}},
		{"search space", "search: {space: sparsty, target: 0.5, inputs: [a.onnx]}\n", []string{`space = "sparsty"`}},
		{"search method", "search: {space: rank, target: 0.5, method: rtn, inputs: [a.onnx]}\n", []string{`method = "rtn"`, "want svd"}},
		{"search generations", "search: {target: 0.5, generations: -1, inputs: [a.onnx]}\n", []string{`generations = "-1"`, ">= 0"}},
		{"search generations 0 (default)", "search: {target: 0.5, generations: 0, calib: data.npz, inputs: [a.onnx]}\n", nil},
		{"search selection", "search: {target: 0.5, selection: \"4:2\", inputs: [a.onnx]}\n", []string{`selection = "4:2"`, "ending with 1"}},
		{"combined needs bits", "search: {space: \"sparsity,bits\", target: 0.5, inputs: [a.onnx]}\n", []string{"needs target-bits"}},
		{"ladder", "search: {space: bits, target: 3, bits: [2, 3], inputs: [a.onnx]}\n", []string{`element "3"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, src := writeRecipe(t, head+tc.step)
			_, err := ParseRecipe(src, dir, valueSpec)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("valid recipe refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRegistryValid: the registry passes transform.Validate, and every
// declared default is accepted by its own parameter (Validate checks).
func TestRegistryValid(t *testing.T) {
	if err := transform.Validate(Commands); err != nil {
		t.Fatal(err)
	}
}

// A false boolean reaches the step's command line: quantize's per-channel
// defaults to true, and a recipe's per-channel: false used to be dropped.
func TestRecipeArgsFalseBool(t *testing.T) {
	dir, src := writeRecipe(t, "output: out.onnx\nsteps:\n  - quantize: {per-channel: false, symmetric: true, inputs: [a.onnx]}\n")
	r, err := ParseRecipe(src, dir, valueSpec)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(r.Args(0, "", "o.onnx", "r.json"), " ")
	for _, want := range []string{"--per-channel=false", "--symmetric "} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
}

// The options of steps that run through their commands' entry points are
// checked at parse time too: types (integers, booleans), ep, metrics,
// and the entry points' checks that need no file (eval's shard, fisher's
// mode and counts, soup's metric, search's combinations).
func TestParseRecipeCommandOptions(t *testing.T) {
	spec := func(cmd string) (map[string]bool, bool) {
		if _, ok := commandDecls[cmd]; !ok {
			return nil, false
		}
		flags, _ := valueSpec(cmd)
		if flags == nil {
			flags = map[string]bool{}
		}
		for k, d := range commandDecls[cmd] {
			flags[k] = d.kind == flagBool
		}
		for k, d := range commonDecls {
			if transforming[cmd] {
				flags[k] = d.kind == flagBool
			}
		}
		return flags, true
	}
	const head = "output: out.onnx\nsteps:\n  - "
	for _, tc := range []struct{ step, want string }{
		{"eval: {data: data.npz, batch: abc, inputs: [a.onnx]}", `batch = "abc": want an integer`},
		{"eval: {data: data.npz, ep: tpu, inputs: [a.onnx]}", `ep = "tpu": want cpu or cuda`},
		{"eval: {data: data.npz, metrics: nope, inputs: [a.onnx]}", `metrics = "nope"`},
		{"eval: {data: data.npz, shard: \"3/2\", inputs: [a.onnx]}", "shard"},
		{"eval: {inputs: [a.onnx]}", "eval needs data"},
		{"fisher: {data: data.npz, samples: x, inputs: [a.onnx]}", `samples = "x": want an integer`},
		{"fisher: {data: data.npz, mode: nope, inputs: [a.onnx]}", "mode must be rows"},
		{"fisher: {data: data.npz, inputs: [a.onnx]}\n    gate: \"kl<=1\"", "remove the step's gate"},
		{"soup: {greedy: maybe, inputs: [a.onnx, b.onnx]}", `greedy = "maybe": want true or false`},
		{"soup: {metric: top6, inputs: [a.onnx, b.onnx]}", "metric must be accuracy or top5"},
		{"soup: {greedy: true, inputs: [a.onnx, b.onnx]}", "greedy needs data"},
		{"search: {target: 0.5, target-bits: 3, calib: data.npz, inputs: [a.onnx]}", "target-bits applies to space sparsity,bits only"},
		{"merge: {method: linear, progress: often, inputs: [a.onnx, b.onnx]}", `progress = "often"`},
	} {
		body := head + tc.step + "\n"
		if strings.Contains(tc.step, "gate") {
			body = "data: data.npz\n" + body
		}
		dir, src := writeRecipe(t, body)
		_, err := ParseRecipe(src, dir, spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.step, err, tc.want)
		}
	}
}
