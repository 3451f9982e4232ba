package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
)

// TestRecipeTrustRefusals builds hostile recipes: each must fail
// validation with an error naming the key and the path, and nothing may
// be written.
func TestRecipeTrustRefusals(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"absolute output", strings.Replace(goodRecipe, "output: out.onnx", "output: /tmp/victim.onnx", 1), `output: the path leaves its folder: "/tmp/victim.onnx" is absolute`},
		{"dotdot output", strings.Replace(goodRecipe, "output: out.onnx", "output: ../victim.onnx", 1), `output: the path leaves its folder: "../victim.onnx"`},
		{"nested dotdot output", strings.Replace(goodRecipe, "output: out.onnx", "output: a/../../victim.onnx", 1), `output: the path leaves its folder`},
		{"absolute report", goodRecipe + "report: /tmp/r.json\n", `report: the path leaves its folder: "/tmp/r.json"`},
		{"dotdot workdir", goodRecipe + "workdir: ../work\n", `workdir: the path leaves its folder: "../work"`},
		{"symlinked workdir", goodRecipe + "workdir: escape/work\n", `workdir: the path leaves its folder: "escape/work"`},
		{"symlinked output", strings.Replace(goodRecipe, "output: out.onnx", "output: escape/out.onnx", 1), `output: the path leaves its folder`},
		{"markdown sibling symlink", goodRecipe + "report: mdlink.json\n", `report (its Markdown): the path leaves its folder: "mdlink.md"`},
		{"ort-lib in a step", goodRecipe + "  - quantize: {weights: int8, ort-lib: evil.so}\n", `quantize: a recipe cannot set process-level options: "ort-lib" chooses the native ONNX Runtime library`},
		{"ort-lib at the top", goodRecipe + "ort-lib: evil.so\n", `a recipe cannot set process-level options: "ort-lib"`},
		{"threads above the limit", goodRecipe + "  - quantize: {weights: int8, threads: 100000}\n", "threads 100000 is above the limit of"},
		{"threads not a number", goodRecipe + "  - quantize: {weights: int8, threads: [1]}\n", "is not an integer"},
		{"save-outputs outside", goodRecipe + "  - eval: {save-outputs: /tmp/o.npz}\n", `step 3 save-outputs: the path leaves its folder: "/tmp/o.npz"`},
		{"plots outside", goodRecipe + "  - search: {target: 0.5, plots: ../plots}\n", `step 3 plots: the path leaves its folder: "../plots"`},
		{"cache-dir outside", goodRecipe + "  - search: {target: 0.5, cache-dir: /root/.cache}\n", `step 3 cache-dir: the path leaves its folder`},
		{"baselines outside", goodRecipe + "  - search: {target: 0.5, baselines: escape}\n", `step 3 baselines: the path leaves its folder`},
		{"keep-rejected by a step", goodRecipe + "  - quantize: {weights: int8, keep-rejected: x.onnx}\n", `"keep-rejected" is set by the recipe`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, src := writeRecipe(t, tc.body)
			outside := t.TempDir()
			if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(outside, "victim.md"), filepath.Join(dir, "mdlink.md")); err != nil {
				t.Fatal(err)
			}
			before := dirList(t, dir)
			_, err := ParseRecipe(src, dir, fakeSpec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if after := dirList(t, dir); after != before {
				t.Errorf("validation wrote files: %s (before %s)", after, before)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("validation wrote outside: %v", ents)
			}
		})
	}
	t.Run("threads within the limit", func(t *testing.T) {
		dir, src := writeRecipe(t, goodRecipe+"  - quantize: {weights: int8, threads: 2, ep: cpu}\n")
		if _, err := ParseRecipe(src, dir, fakeSpec); err != nil {
			t.Fatal(err)
		}
	})
}

func dirList(t *testing.T, dir string) string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	return strings.Join(names, ",")
}

// TestRecipeOutDir: with WithOutDir every write resolves inside it, reads
// still resolve against the recipe's folder, and ".." may not leave it.
func TestRecipeOutDir(t *testing.T) {
	dir, src := writeRecipe(t, goodRecipe+"  - eval: {save-outputs: o.npz}\nreport: rep/r.json\nworkdir: work\n")
	out := t.TempDir()
	r, err := ParseRecipe(src, dir, fakeSpec, WithOutDir(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.OutputPath() != filepath.Join(out, "out.onnx") || r.ReportPath() != filepath.Join(out, "rep", "r.json") {
		t.Errorf("output %q, report %q", r.OutputPath(), r.ReportPath())
	}
	args := strings.Join(r.Args(2, "/w/2.onnx", "/w/3.onnx", "/w/3.json"), " ")
	if !strings.Contains(args, "--save-outputs "+filepath.Join(out, "o.npz")) || !strings.Contains(args, "--data "+filepath.Join(dir, "data.npz")) {
		t.Errorf("args %q", args)
	}
	dir2, src2 := writeRecipe(t, strings.Replace(goodRecipe, "output: out.onnx", "output: ../out.onnx", 1))
	if _, err := ParseRecipe(src2, dir2, fakeSpec, WithOutDir(out)); err == nil || !strings.Contains(err.Error(), "leaves its folder") {
		t.Errorf("err = %v", err)
	}
}

// copyModel writes a small real model to dst, as a step would.
func copyModel(t *testing.T, dst string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "evalharness", "testdata", "mlp.onnx"))
	if err != nil {
		t.Skipf("fixture: %v", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeStep "runs" a step by copying a model to its -o path.
func fakeStep(t *testing.T) StepRunner {
	return func(ctx context.Context, args []string) (map[string]any, error) {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-o" {
				copyModel(t, args[i+1])
			}
		}
		return map[string]any{}, nil
	}
}

// The output's metadata records the chain (version, the SHA-256 of every
// model the recipe reads), not the recipe; the recipe report records the
// recipe's hash and its canonical form, never its text.
func TestRecipeMetadataIsCanonical(t *testing.T) {
	body := "# secret comment: hunter2\n" + strings.Replace(argvRecipe, "name: t", "name: \"t\\e[2J\"", 1) + "report: r.json\n"
	dir, src := writeRecipe(t, body)
	r, err := ParseRecipe(src, dir, fakeSpec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), fakeStep(t), "test"); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(filepath.Join(dir, "out.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	md := m.Metadata()
	for k, v := range md {
		if strings.Contains(k, "recipe") || strings.Contains(v, "hunter2") {
			t.Errorf("the recipe landed in the metadata: %s=%q", k, v)
		}
	}
	var ins []release.Input
	if err := json.Unmarshal([]byte(md[release.MetaInputs]), &ins); err != nil || len(ins) != 3 {
		t.Fatalf("inputs %q (%v)", md[release.MetaInputs], err)
	}
	for i, name := range []string{"a.onnx", "b.onnx", "base.onnx"} {
		if ins[i].Path != filepath.Join(dir, name) || len(ins[i].SHA256) != 64 {
			t.Errorf("input %d: %+v, want %s", i, ins[i], name)
		}
	}
	if md[release.MetaVersion] != "test" {
		t.Errorf("version %q", md[release.MetaVersion])
	}
	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") {
		t.Fatalf("the recipe's text landed in the report: %s", b)
	}
	var rep RecipeReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if rep.RecipeSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 %q", rep.RecipeSHA256)
	}
	var c map[string]any
	if err := json.Unmarshal(rep.Canonical, &c); err != nil {
		t.Fatalf("report's recipe is not JSON: %v", err)
	}
	if c["output"] != "out.onnx" || c["name"] != "t\x1b[2J" || len(c["steps"].([]any)) != 2 {
		t.Errorf("canonical form %s", rep.Canonical)
	}
	// the same recipe written differently records the same form
	dir2, src2 := writeRecipe(t, strings.ReplaceAll(body, "# secret comment: hunter2\n", "")+"\n# another comment\n")
	r2, err := ParseRecipe(src2, dir2, fakeSpec)
	if err != nil {
		t.Fatal(err)
	}
	var c2 map[string]any
	if err := json.Unmarshal(r2.Canonical(), &c2); err != nil || !reflect.DeepEqual(c, c2) {
		t.Errorf("canonical forms differ:\n%s\n%s", r2.Canonical(), rep.Canonical)
	}
	mdReport, err := os.ReadFile(filepath.Join(dir, "r.md"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mdReport), "\x1b") {
		t.Errorf("escape sequence in the Markdown report: %q", mdReport)
	}
}

// A report that cannot be written leaves no output behind.
func TestRecipeUnwritableReport(t *testing.T) {
	dir, src := writeRecipe(t, argvRecipe+"report: r.json\n")
	if err := os.Mkdir(filepath.Join(dir, "r.md"), 0o755); err != nil { // the Markdown sibling is a folder
		t.Fatal(err)
	}
	r, err := ParseRecipe(src, dir, fakeSpec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(context.Background(), fakeStep(t), "test")
	if err == nil || !strings.Contains(err.Error(), "writing the report") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output written although the report could not be: %v", err)
	}
}
