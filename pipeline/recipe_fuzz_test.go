package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRecipe feeds arbitrary text to the recipe parser: it must never
// panic, and a recipe it accepts must write only inside its folder and
// have a canonical form that is valid JSON.
func FuzzRecipe(f *testing.F) {
	f.Add([]byte(goodRecipe))
	f.Add([]byte(goodRecipe + "report: r.json\nworkdir: w\n"))
	f.Add([]byte(goodRecipe + "  - eval: {save-outputs: o.npz}\n"))
	f.Add([]byte("steps: [{quantize: {threads: 100000}}]\noutput: ../x\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte(strings.Replace(goodRecipe, "density: 0.3", "density: [7, {a: b}], method: [tiez]", 1)))
	f.Add([]byte(strings.Replace(goodRecipe, "weights: int8", "weights: {x: int3}", 1)))
	if b, err := os.ReadFile(filepath.Join("..", "models", "demo-recipe.yaml")); err == nil {
		f.Add(b)
	}
	dir := f.TempDir()
	for _, n := range []string{"a.onnx", "b.onnx", "base.onnx", "data.npz"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		r, err := ParseRecipe(src, dir, fakeSpec)
		if err != nil {
			return
		}
		for _, p := range []string{r.OutputPath(), r.ReportPath(), r.workPath} {
			if p != "" && !strings.HasPrefix(p, dir+string(filepath.Separator)) {
				t.Fatalf("accepted a write outside %s: %q", dir, p)
			}
		}
		var c map[string]any
		if err := json.Unmarshal(r.Canonical(), &c); err != nil {
			t.Fatalf("canonical form is not JSON: %v\n%s", err, r.Canonical())
		}
		for i := range r.Steps {
			_ = r.Args(i, "in.onnx", "out.onnx", "r.json")
		}
	})
}
