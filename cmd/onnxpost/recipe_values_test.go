package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/pipeline"
	"github.com/onnxpost/onnxpost/transform"
)

// `run --check` (and `run`) refuse every bad value of a transforming
// command's parameter before any step runs: exit 2, a message naming the
// step, the key, the value and what is allowed, nothing written. A good
// recipe still passes --check.
func TestRunCheckRejectsBadValues(t *testing.T) {
	model := ehTestdata("mlp.onnx")
	for _, tc := range []struct {
		name, step string
		want       []string // nil: valid
	}{
		{"valid", "quantize: {weights: int4, block: 64, inputs: [MODEL]}", nil},
		{"method tiez", "merge: {method: tiez, inputs: [MODEL, MODEL]}", []string{"step 2 (merge)", `method = "tiez"`, "unknown method", "ties, dare"}},
		{"density 7", "merge: {method: ties, base: MODEL, density: 7, inputs: [MODEL, MODEL]}", []string{"step 2 (merge)", `density = "7"`, "(0, 1]"}},
		{"pattern 5:4", `sparsify: {pattern: "5:4", inputs: [MODEL]}`, []string{"step 2 (sparsify)", `pattern = "5:4"`, "0 < N < M"}},
		{"weights int3", "quantize: {weights: int3, inputs: [MODEL]}", []string{"step 2 (quantize)", `weights = "int3"`, "int8, int4, fp16, bf16"}},
		{"rank 0", "lowrank: {rank: 0, inputs: [MODEL]}", []string{"step 2 (lowrank)", `rank = "0"`, "≥ 1"}},
		{"rank ratio 2", "lowrank: {rank-ratio: 2, inputs: [MODEL]}", []string{`rank-ratio = "2"`, "(0,1]"}},
		{"search target", "search: {space: sparsity, target: 1.5, calib: DATA, inputs: [MODEL]}", []string{"step 2 (search)", `target = "1.5"`, "(0, 1)"}},
		{"bits target", "search: {space: bits, target: 9, calib: DATA, inputs: [MODEL]}", []string{`target = "9"`, "[2, 8]"}},
		{"negative calib samples", "quantize: {activations: int8, calib-samples: -3, calib: DATA, inputs: [MODEL]}", []string{`calib-samples = "-3"`, ">= 1"}},
		{"negative sparsify samples", "sparsify: {sparsity: 0.5, method: wanda, calib-samples: -1, calib: DATA, inputs: [MODEL]}", []string{`calib-samples = "-1"`, ">= 0"}},
		{"sparsity 1.2", "sparsify: {sparsity: 1.2, inputs: [MODEL]}", []string{`sparsity = "1.2"`, "[0, 1)"}},
	} {
		for _, check := range []bool{true, false} {
			t.Run(tc.name+map[bool]string{true: " --check"}[check], func(t *testing.T) {
				if tc.want == nil && !check {
					t.Skip("a valid recipe runs: covered by the recipe tests")
				}
				dir := t.TempDir()
				body := "output: o.onnx\nworkdir: work\nreport: r.json\nsteps:\n  - quantize: {weights: int8, inputs: [MODEL]}\n  - " + tc.step + "\n"
				body = strings.NewReplacer("MODEL", model, "DATA", ehTestdata("mlp_data.npz")).Replace(body)
				recipe := filepath.Join(dir, "r.yaml")
				if err := os.WriteFile(recipe, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{"onnxpost", "run", recipe}
				if check {
					args = []string{"onnxpost", "run", "--check", recipe}
				}
				var code int
				stderr := captureStderr(t, func() { code = run(args) })
				if tc.want == nil {
					if code != 0 {
						t.Fatalf("exit code %d, want 0: %s", code, stderr)
					}
					return
				}
				if code != exitUsage {
					t.Fatalf("exit code %d, want %d: %s", code, exitUsage, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr lacks %q:\n%s", w, stderr)
					}
				}
				if strings.Contains(stderr, "==> onnxpost") {
					t.Errorf("a step ran:\n%s", stderr)
				}
				if got := strings.Join(listFiles(t, dir), ","); got != "r.yaml" {
					t.Errorf("files written: %s", got)
				}
			})
		}
	}
}

// The transforming commands check their flags through the same
// declarations: a bad value is exit 2 naming the flag and what is allowed.
func TestTransformFlagsCheckedByDeclaration(t *testing.T) {
	model := ehTestdata("mlp.onnx")
	out := filepath.Join(t.TempDir(), "o.onnx")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"quantize", "--weights", "int3"}, `weights = "int3": want one of int8, int4, fp16, bf16`},
		{[]string{"quantize", "--weights", "int4", "--accuracy-level", "9"}, `accuracy-level = "9": want an integer in [0, 4]`},
		{[]string{"sparsify", "--pattern", "5:4"}, `pattern = "5:4"`},
		{[]string{"lowrank", "--rank", "4", "--oversample", "0"}, `oversample = "0": want an integer in >= 1`},
		{[]string{"merge", "--method", "tiez", model}, `method = "tiez": unknown method`},
		{[]string{"merge", "--method", "ties", "--base", model, "--trim-scope", "row", model}, `trim-scope = "row": want one of global, tensor`},
		{[]string{"search", "--space", "bits", "--target", "9", "--calib", ehTestdata("mlp_data.npz")}, `target = "9"`},
		{[]string{"quantize", "--weights", "int8", "--method", "gptq"}, "--method gptq applies to --weights int4"},
		{[]string{"lowrank", "--energy", "0.9", "--rank", "4"}, "give exactly one of energy, rank-ratio, rank, params-ratio (got 2)"},
		{[]string{"lowrank"}, "give exactly one of energy, rank-ratio, rank, params-ratio (got 0)"},
		{[]string{"lowrank", "--rank", "4", "--whiten", "--calib", ehTestdata("mlp_data.npz"), "--scheme", "spatial"}, "whiten supports the svd, channel and auto schemes"},
		{[]string{"sparsify", "--pattern", "2:4", "--sparsity", "0.5"}, "give exactly one of pattern N:M and sparsity S"},
		{[]string{"sparsify", "--pattern", "2:4", "--method", "sparsegpt", "--blocksize", "6", "--calib", ehTestdata("mlp_data.npz")}, "blocksize 6 is not a multiple of M=4"},
	} {
		args := append([]string{"onnxpost"}, tc.args...)
		args = append(args, "-o", out, model)
		var code int
		stderr := captureStderr(t, func() { code = run(args) })
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v wrote %s", tc.args, out)
		}
	}
}

// Every declared parameter of a registered command is a flag of that
// command with the declared default (none where the transforms' defaults
// differ), so the command line's defaults are the library's.
func TestTransformFlagsMatchDeclarations(t *testing.T) {
	for _, cmd := range pipeline.Commands {
		var flags []cli.Flag
		for _, c := range commands {
			if c.Name == cmd.Name {
				flags = c.Flags
			}
		}
		if flags == nil {
			t.Errorf("no command %s", cmd.Name)
			continue
		}
		for _, p := range cmd.Params() {
			var got cli.Flag
			for _, f := range flags {
				if f.Names()[0] == p.Name {
					got = f
				}
			}
			if got == nil {
				t.Errorf("%s: no flag --%s", cmd.Name, p.Name)
				continue
			}
			def := ""
			switch f := got.(type) {
			case *cli.BoolFlag:
				def = strconv.FormatBool(f.Value)
			case cli.DocGenerationFlag:
				def = f.GetValue()
			}
			want := p.Default
			switch p.Kind {
			case transform.Bool:
				if want == "" {
					want = "false" // differing defaults: unset
				}
			case transform.Int, transform.Float:
				if want == "" {
					want = "0"
				}
			case transform.List:
				if p.Repeated {
					want = ""
				}
			}
			if strings.Trim(def, `"`) != want {
				t.Errorf("%s --%s: flag default %q, declared %q", cmd.Name, p.Name, def, want)
			}
		}
	}
}
