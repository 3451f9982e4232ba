package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
	"github.com/onnxpost/onnxpost/transform"
)

// chainRecipe merges two models, prunes 2:4 and quantizes to int8: three
// in-process steps, no data.
const chainRecipe = `
name: chain
output: out.onnx
report: r.json
steps:
  - merge: {method: linear, inputs: [a.onnx, b.onnx]}
  - sparsify: {pattern: "2:4"}
  - quantize: {weights: int8}
`

// writeModels writes the MLP fixtures as a.onnx and b.onnx into a fresh
// folder and returns it.
func writeModels(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for dst, src := range map[string]string{"a.onnx": "mlp.onnx", "b.onnx": "mlp_b.onnx"} {
		b, err := os.ReadFile(filepath.Join("..", "evalharness", "testdata", src))
		if err != nil {
			t.Skipf("fixture: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// noRunner fails the test when a step goes through the StepRunner.
func noRunner(t *testing.T) StepRunner {
	return func(ctx context.Context, args []string) (map[string]any, error) {
		t.Errorf("step ran through the StepRunner: %v", args)
		return nil, errors.New("no runner")
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// The steps of a recipe of registered transforms run in process: no
// StepRunner call, no intermediate model in the recipe's folder or in a
// temporary folder (TMPDIR points nowhere, so making one would fail the
// run), and the report says so (no output, no -o in args). With workdir,
// every step writes its model and result there.
func TestRecipeInProcessWritesNoIntermediate(t *testing.T) {
	dir := writeModels(t)
	t.Setenv("TMPDIR", filepath.Join(dir, "no-such-folder"))
	r, err := ParseRecipe([]byte(chainRecipe), dir, valueSpec)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), noRunner(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.onnx", "b.onnx", "out.onnx", "r.json", "r.md"}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	if len(rep.Steps) != 3 {
		t.Fatalf("%d steps reported", len(rep.Steps))
	}
	for _, s := range rep.Steps {
		if s.Output != "" || slices.Contains(s.Args, "-o") || s.Result["params"] == nil || s.Result["command"] != s.Command {
			t.Errorf("step %d: output %q, args %v, result %v", s.Step, s.Output, s.Args, s.Result)
		}
	}
	if rep.Steps[1].Result["sparsity"] == nil || rep.Steps[2].Result["layers"] == nil || rep.Steps[0].Result["merge_params"] == nil {
		t.Errorf("the transforms' reports are missing from the step results")
	}

	// with workdir, each step's model and result are kept
	dir2 := writeModels(t)
	r2, err := ParseRecipe([]byte(chainRecipe+"workdir: work\n"), dir2, valueSpec)
	if err != nil {
		t.Fatal(err)
	}
	rep2, err := r2.Run(context.Background(), noRunner(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"step01-merge.json", "step01-merge.md", "step01-merge.onnx", "step02-sparsify.json", "step02-sparsify.md", "step02-sparsify.onnx",
		"step03-quantize.json", "step03-quantize.md", "step03-quantize.onnx"}
	if got := files(t, filepath.Join(dir2, "work")); !slices.Equal(got, want) {
		t.Errorf("workdir files %v, want %v", got, want)
	}
	if rep2.Steps[2].Output != filepath.Join(dir2, "work", "step03-quantize.onnx") {
		t.Errorf("step 3 output %q", rep2.Steps[2].Output)
	}
}

// A three-step recipe's output is byte-identical to running the three
// registered transforms from Go and committing the result with the same
// provenance.
func TestRecipeChainEqualsTransforms(t *testing.T) {
	dir := writeModels(t)
	r, err := ParseRecipe([]byte(chainRecipe), dir, valueSpec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), noRunner(t), "test"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out.onnx"))
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	in, srcs, err := merge.LoadInputs("", []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	run := func(cmd string, values map[string]any, in transform.Input) *onnxio.Model {
		t.Helper()
		tr, args, err := CommandNamed(cmd).Check(values)
		if err != nil {
			t.Fatal(err)
		}
		in.Args = args
		m, _, err := tr.Run(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := run("merge", map[string]any{"method": "linear"}, transform.Input{Models: in.Models, Options: srcs})
	m = run("sparsify", map[string]any{"pattern": "2:4"}, transform.Input{Models: []*onnxio.Model{m}})
	m = run("quantize", map[string]any{"weights": "int8"}, transform.Input{Models: []*onnxio.Model{m}})
	ins, err := release.HashInputs(a, b)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "go.onnx")
	if _, err := release.Commit(ctx, m, nil, release.Options{Output: out, Provenance: &release.Provenance{Version: "test", Inputs: ins}}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the recipe's output (%d bytes) differs from the transforms' (%d bytes)", len(got), len(want))
	}
}

// A cancelled context stops an in-process step: nothing is written but
// the report, which says the run was cancelled.
func TestRecipeInProcessCancelled(t *testing.T) {
	dir := writeModels(t)
	r, err := ParseRecipe([]byte(chainRecipe), dir, valueSpec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("interrupted by SIGINT"))
	rep, err := r.Run(ctx, noRunner(t), "test")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !rep.Cancelled || !strings.HasPrefix(rep.Error, "cancelled (interrupted by SIGINT)") || rep.Passed {
		t.Errorf("report %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output written: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil || doc["cancelled"] != true {
		t.Errorf("report file %s (%v)", b, err)
	}
}

// Every step of a command the library knows runs in process: registered
// merge, quantize, sparsify and lowrank steps whose keys the transform
// path knows through their transforms, the others (search, soup, fisher,
// eval, merges with a config, Fisher files or an alignment) through their
// commands' entry points; only a command a FlagSpec adds (ext) takes the
// StepRunner.
func TestRecipeInProcess(t *testing.T) {
	spec := func(cmd string) (map[string]bool, bool) {
		if cmd == "ext" {
			return map[string]bool{}, true
		}
		flags, ok := valueSpec(cmd)
		for _, k := range []string{"external-data", "allow-noop", "config", "align", "data", "calib", "greedy", "samples"} {
			if flags == nil {
				flags = map[string]bool{}
				ok = true
			}
			flags[k] = k == "greedy" || k == "external-data" || k == "allow-noop"
		}
		return flags, ok
	}
	for _, tc := range []struct {
		step                string
		inProcess, viaTrans bool
	}{
		{"quantize: {weights: int8}", true, true},
		{"quantize: {weights: int8, allow-noop: true, seed: 3}", true, true},
		{"sparsify: {pattern: \"2:4\", method: wanda, calib: data.npz}", true, true},
		{"lowrank: {rank: 4}", true, true},
		{"merge: {method: ties, base: base.onnx, inputs: [a.onnx, b.onnx]}", true, true},
		{"quantize: {weights: int8, external-data: true}", true, true},
		{"merge: {config: base.onnx, inputs: [a.onnx]}", true, false},
		{"merge: {method: linear, align: weights, inputs: [a.onnx, b.onnx]}", true, false},
		{"search: {target: 0.5, calib: data.npz}", true, false},
		{"soup: {greedy: true, data: data.npz, inputs: [a.onnx, b.onnx]}", true, false},
		{"fisher: {data: data.npz, samples: 1}", true, false},
		{"eval: {data: data.npz}", true, false},
		{"ext: {}", false, false},
	} {
		dir, _ := writeRecipe(t, "")
		src := "output: out.onnx\nsteps:\n  - quantize: {weights: int8, inputs: [a.onnx]}\n  - " + tc.step + "\n"
		r, err := ParseRecipe([]byte(src), dir, spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.step, err)
		}
		if got := r.InProcess(1); got != tc.inProcess {
			t.Errorf("%s: InProcess = %v, want %v", tc.step, got, tc.inProcess)
		}
		if got := r.viaTransform(1); got != tc.viaTrans {
			t.Errorf("%s: viaTransform = %v, want %v", tc.step, got, tc.viaTrans)
		}
	}
}

// A step whose transform changes nothing (pruning 2:4 what is 2:4
// already) fails, as the command does without --allow-noop; allow-noop
// keeps the unchanged model.
func TestRecipeInProcessNoop(t *testing.T) {
	dir := writeModels(t)
	const body = "output: out.onnx\nsteps:\n  - sparsify: {pattern: \"2:4\", inputs: [a.onnx]}\n  - sparsify: {pattern: \"2:4\"%s}\n"
	spec := func(cmd string) (map[string]bool, bool) {
		flags, ok := valueSpec(cmd)
		if ok {
			flags["allow-noop"] = true
		}
		return flags, ok
	}
	r, err := ParseRecipe([]byte(strings.Replace(body, "%s", "", 1)), dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), noRunner(t), "test"); !errors.Is(err, ErrNothingChanged) {
		t.Fatalf("err = %v, want ErrNothingChanged", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output written: %v", err)
	}
	r, err = ParseRecipe([]byte(strings.Replace(body, "%s", ", allow-noop: true", 1)), dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), noRunner(t), "test"); err != nil {
		t.Fatal(err)
	}
}

// An in-process step with data is evaluated against its input and gated:
// a failed gate stops the recipe with release.ErrGateFailed, the step's
// result holds the metrics and the gate, nothing is written but the
// report; a passing gate lets the chain go on.
func TestRecipeInProcessGate(t *testing.T) {
	if err := evalharness.Init(""); err != nil {
		t.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
	for _, tc := range []struct {
		gate   string
		passed bool
	}{
		{"agreement>=0.5", true},
		{"kl<=-1", false},
	} {
		dir := writeModels(t)
		b, err := os.ReadFile(filepath.Join("..", "evalharness", "testdata", "mlp_data.npz"))
		if err != nil {
			t.Skipf("fixture: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data.npz"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		src := "data: data.npz\noutput: out.onnx\nreport: r.json\nsteps:\n  - sparsify: {pattern: \"2:4\", inputs: [a.onnx]}\n    gate: \"" + tc.gate + "\"\n  - quantize: {weights: int8}\n"
		r, err := ParseRecipe([]byte(src), dir, valueSpec)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := r.Run(context.Background(), noRunner(t), "test")
		if tc.passed != (err == nil) || !tc.passed && !errors.Is(err, release.ErrGateFailed) {
			t.Fatalf("%s: err = %v", tc.gate, err)
		}
		gate, _ := rep.Steps[0].Result["gate"].(map[string]any)
		metrics, _ := rep.Steps[0].Result["metrics"].(map[string]any)
		if gate["expr"] != tc.gate || gate["passed"] != tc.passed || metrics["agreement"] == nil || rep.Steps[0].Result["reference"] == nil {
			t.Errorf("%s: step result %v", tc.gate, rep.Steps[0].Result)
		}
		if want := map[bool]int{true: 2, false: 1}[tc.passed]; len(rep.Steps) != want {
			t.Errorf("%s: %d steps ran, want %d", tc.gate, len(rep.Steps), want)
		}
		if _, err := os.Stat(filepath.Join(dir, "out.onnx")); (err == nil) != tc.passed {
			t.Errorf("%s: output written: %v", tc.gate, err == nil)
		}
	}
}

// A step outside the registry between in-process steps: the model before
// it is written to a temporary folder for the StepRunner, its output is
// read back for the next in-process step, and the folder is removed.
func TestRecipeMixedSteps(t *testing.T) {
	dir := writeModels(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	spec := func(cmd string) (map[string]bool, bool) {
		if cmd == "ext" {
			return map[string]bool{}, true
		}
		return valueSpec(cmd)
	}
	src := "output: out.onnx\nsteps:\n  - sparsify: {pattern: \"2:4\", inputs: [a.onnx]}\n  - ext: {}\n  - quantize: {weights: int8}\n"
	r, err := ParseRecipe([]byte(src), dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	rep, err := r.Run(context.Background(), func(ctx context.Context, args []string) (map[string]any, error) {
		calls++
		in := args[len(args)-1]
		m, err := onnxio.Load(in)
		if err != nil {
			t.Errorf("the step's input %s: %v", in, err)
			return nil, err
		}
		if !strings.HasPrefix(in, tmp) {
			t.Errorf("input %s outside the temporary folder", in)
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-o" {
				if err := m.Save(args[i+1], nil); err != nil {
					return nil, err
				}
			}
		}
		return map[string]any{"bytes": 1.0}, nil
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(rep.Steps) != 3 || rep.Steps[1].Output == "" || rep.Steps[2].Output != "" {
		t.Errorf("%d runner calls, steps %+v", calls, rep.Steps)
	}
	for _, f := range files(t, tmp) {
		if strings.Contains(f, "onnxpost-recipe-") {
			t.Errorf("temporary file left: %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); err != nil {
		t.Error(err)
	}
}

// commandRecipe chains the steps that run through their commands' entry
// points: soup, eval, search, fisher, a merge with an alignment, then a
// transform step.
const commandRecipe = `
name: commands
output: out.onnx
report: r.json
steps:
  - soup: {inputs: [a.onnx, b.onnx]}
  - eval: {data: data.npz, metrics: agreement, ref: a.onnx}
  - search: {target: 0.5, calib: data.npz, generations: 1, offspring: 2, levels: 2, tokens: "4:8", cache-dir: ""}
  - fisher: {data: data.npz, max-examples: 4, samples: 1}
  - merge: {method: linear, align: weights, inputs: [a.onnx, b.onnx]}
  - quantize: {weights: int8}
`

// The steps of search, soup, fisher, eval and merge with an alignment
// run in process with no StepRunner and write no intermediate file: not
// in the recipe's folder, not in a temporary folder (TMPDIR points
// nowhere, so making one fails the run). With workdir, each step's model
// and result are written there.
func TestRecipeCommandStepsWriteNoIntermediate(t *testing.T) {
	if err := evalharness.Init(""); err != nil {
		t.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
	spec := func(cmd string) (map[string]bool, bool) {
		if !slices.Contains(StepCommands(), cmd) {
			return nil, false
		}
		flags, _ := valueSpec(cmd)
		if flags == nil {
			flags = map[string]bool{}
		}
		for k := range commandDecls[cmd] {
			flags[k] = commandDecls[cmd][k].kind == flagBool
		}
		return flags, true
	}
	for _, workdir := range []bool{false, true} {
		dir := writeModels(t)
		b, err := os.ReadFile(filepath.Join("..", "evalharness", "testdata", "mlp_data.npz"))
		if err != nil {
			t.Skipf("fixture: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data.npz"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("TMPDIR", filepath.Join(dir, "no-such-folder"))
		src := commandRecipe
		if workdir {
			src += "workdir: work\n"
		}
		r, err := ParseRecipe([]byte(src), dir, spec)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Steps {
			if !r.InProcess(i) {
				t.Errorf("step %d (%s) does not run in process", i+1, r.Steps[i].Command)
			}
		}
		rep, err := r.Run(context.Background(), nil, "test")
		if err != nil {
			t.Fatal(err)
		}
		// r.png: the report's plot of the eval step's metrics
		want := []string{"a.onnx", "b.onnx", "data.npz", "out.onnx", "r.json", "r.md", "r.png"}
		got := files(t, dir)
		if workdir {
			var kept []string
			for _, f := range got {
				if !strings.HasPrefix(f, "work"+string(filepath.Separator)) {
					kept = append(kept, f)
				}
			}
			got = kept
		}
		if !slices.Equal(got, want) {
			t.Errorf("workdir %v: files %v, want %v", workdir, got, want)
		}
		if len(rep.Steps) != 6 {
			t.Fatalf("%d steps reported", len(rep.Steps))
		}
		for i, s := range rep.Steps {
			if (s.Output != "") != workdir || s.Result == nil {
				t.Errorf("workdir %v: step %d: output %q, result %v", workdir, i+1, s.Output, s.Result)
			}
		}
		if rep.Steps[1].Result["metrics"] == nil || rep.Steps[2].Result["search"] == nil || rep.Steps[3].Result["tensors"] == nil ||
			rep.Steps[4].Result["alignment"] == nil || rep.Steps[0].Result["method"] != "uniform-soup" {
			t.Errorf("workdir %v: the commands' results are missing from the steps': %v", workdir, rep.Steps)
		}
		if workdir {
			var names []string
			for _, f := range files(t, filepath.Join(dir, "work")) {
				if strings.HasSuffix(f, ".onnx") {
					names = append(names, f)
				}
			}
			wantNames := []string{"step01-soup.onnx", "step02-eval.onnx", "step03-search.onnx", "step04-fisher.onnx", "step05-merge.onnx", "step06-quantize.onnx"}
			if !slices.Equal(names, wantNames) {
				t.Errorf("workdir models %v, want %v", names, wantNames)
			}
		}
	}
}
