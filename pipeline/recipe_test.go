package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSpec knows two commands.
func fakeSpec(cmd string) (map[string]bool, bool) {
	switch cmd {
	case "merge":
		return map[string]bool{"method": false, "base": false, "density": false, "seed": false, "no-normalize": true}, true
	case "quantize":
		return map[string]bool{"weights": false, "seed": false, "threads": false, "ort-lib": false, "ep": false}, true
	case "eval":
		return map[string]bool{"save-outputs": false, "data": false}, true
	case "ext": // a command outside the transform registry
		return map[string]bool{"base": false}, true
	case "search":
		return map[string]bool{"plots": false, "baselines": false, "cache-dir": false, "target": false}, true
	}
	return nil, false
}

func writeRecipe(t *testing.T, body string) (string, []byte) {
	dir := t.TempDir()
	for _, f := range []string{"a.onnx", "b.onnx", "base.onnx", "data.npz"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, []byte(body)
}

const goodRecipe = `
name: t
seed: 7
data: data.npz
output: out.onnx
steps:
  - merge: {method: ties, base: base.onnx, density: 0.3, inputs: [a.onnx, b.onnx]}
    gate: "accuracy>=0.8"
  - quantize: {weights: int8}
`

func TestParseRecipe(t *testing.T) {
	dir, src := writeRecipe(t, goodRecipe)
	r, err := ParseRecipe(src, dir, fakeSpec)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 2 || r.Steps[0].Command != "merge" || len(r.Steps[0].Inputs) != 2 {
		t.Fatalf("bad parse: %+v", r.Steps)
	}
	args := r.Args(0, "", "/w/1.onnx", "/w/1.json")
	got := strings.Join(args, " ")
	for _, want := range []string{"merge ", "--method ties", "--density 0.3", "--seed 7", "--gate accuracy>=0.8", "-o /w/1.onnx", filepath.Join(dir, "a.onnx"), "--base " + filepath.Join(dir, "base.onnx")} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
	if a := strings.Join(r.Args(1, "/w/1.onnx", "/w/2.onnx", "/w/2.json"), " "); !strings.HasSuffix(a, "/w/1.onnx") {
		t.Errorf("step 2 does not read step 1's output: %q", a)
	}
}

func TestParseRecipeRefusals(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown top key", goodRecipe + "colour: blue\n", `unknown key "colour"`},
		{"unknown command", strings.Replace(goodRecipe, "quantize:", "quantise:", 1), `unknown key "quantise"`},
		{"unknown flag", strings.Replace(goodRecipe, "weights: int8", "wieghts: int8", 1), `quantize has no key "wieghts"`},
		{"missing file", strings.Replace(goodRecipe, "b.onnx", "missing.onnx", 1), "missing.onnx"},
		{"output set by step", strings.Replace(goodRecipe, "weights: int8", "weights: int8, o: x.onnx", 1), `"o" is set by the recipe`},
		{"no output", strings.Replace(goodRecipe, "output: out.onnx", "", 1), "needs an output"},
		{"no inputs", strings.Replace(goodRecipe, ", inputs: [a.onnx, b.onnx]", "", 1), "needs inputs"},
		{"gate without data", strings.Replace(goodRecipe, "data: data.npz", "", 1), "gate but no data"},
		{"final gate unparsable", goodRecipe + "gate: \"accuracy~0.9\"\n", `gate: evalharness: bad gate expression: "accuracy~0.9"`},
		{"final gate without data", strings.Replace(goodRecipe, "data: data.npz", "", 1) + "gate: accuracy>=0.9\n", "the recipe's gate needs data"},
		{"missing ref", goodRecipe + "ref: nothere.onnx\n", "ref nothere.onnx"},
		{"output report leaves", goodRecipe + "output-report: ../r.json\n", "output-report:"},
	}
	for _, tc := range cases {
		dir, src := writeRecipe(t, tc.body)
		_, err := ParseRecipe(src, dir, fakeSpec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

var errGate = errors.New("gate failed")

// argvRecipe's steps name a command outside the transform registry:
// they run through the StepRunner, on files.
const argvRecipe = `
name: t
seed: 7
data: data.npz
output: out.onnx
steps:
  - ext: {base: base.onnx, inputs: [a.onnx, b.onnx]}
    gate: "accuracy>=0.8"
  - ext: {}
`

func TestRecipeRunStopsAtGate(t *testing.T) {
	dir, src := writeRecipe(t, argvRecipe+"report: rep.json\n")
	r, err := ParseRecipe(src, dir, fakeSpec)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, err = r.Run(context.Background(), func(ctx context.Context, args []string) (map[string]any, error) {
		calls++
		return map[string]any{"metrics": map[string]any{"accuracy": 0.5}}, errGate
	}, "test")
	if !errors.Is(err, errGate) {
		t.Fatalf("err = %v", err)
	}
	if calls != 1 {
		t.Errorf("%d steps ran after a failed gate", calls)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); !os.IsNotExist(err) {
		t.Error("output written although a gate failed")
	}
	if _, err := os.Stat(filepath.Join(dir, "rep.json")); err != nil {
		t.Error("report not written:", err)
	}
}
