package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// listFiles returns the names of the files under dir (recursively,
// relative), to check that a failed command left nothing behind.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// A report that cannot be written fails the command before the model is
// committed: exit 1, no model, no temporary files.
func TestUnwritableReportWritesNothing(t *testing.T) {
	model := ehTestdata("mlp.onnx")
	for _, tc := range []struct {
		name   string
		report func(dir string) string
	}{
		{"missing folder", func(dir string) string { return filepath.Join(dir, "no", "such", "r.json") }},
		{"report is a folder", func(dir string) string {
			p := filepath.Join(dir, "r.json")
			os.Mkdir(p, 0o755)
			return p
		}},
		{"markdown sibling is a folder", func(dir string) string {
			os.Mkdir(filepath.Join(dir, "r.md"), 0o755)
			return filepath.Join(dir, "r.json")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.onnx")
			report := tc.report(dir)
			before := listFiles(t, dir)
			// a real transforming command through the CLI's exit codes
			if code := run([]string{"onnxpost", "sparsify", "--sparsity", "0.5", "-o", out, "--report", report, model}); code != exitError {
				t.Fatalf("exit code %d, want %d", code, exitError)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("the model was written although the report could not be: %v", err)
			}
			if after := listFiles(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("files left behind: %v (before %v)", after, before)
			}
		})
	}
	t.Run("writable report still works", func(t *testing.T) {
		dir := t.TempDir()
		out, report := filepath.Join(dir, "out.onnx"), filepath.Join(dir, "r.json")
		if code := run([]string{"onnxpost", "sparsify", "--sparsity", "0.5", "-o", out, "--report", report, model}); code != exitOK {
			t.Fatalf("exit code %d", code)
		}
		got := strings.Join(listFiles(t, dir), ",")
		if got != "out.onnx,r.json,r.md" {
			t.Errorf("files %s", got)
		}
		if r := evalReadJSON(t, report); r["bytes"].(float64) <= 0 {
			t.Errorf("report bytes %v", r["bytes"])
		}
	})
}

// --threads above the ceiling is a usage error naming the limit, for every
// command that takes it, before any work.
func TestThreadsCeiling(t *testing.T) {
	t.Setenv("ONNXPOST_MAX_THREADS", "")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	model, data := ehTestdata("mlp.onnx"), ehTestdata("mlp_data.npz")
	for _, args := range [][]string{
		{"eval", model, "--data", data, "--threads", "100000"},
		{"sparsify", "--sparsity", "0.5", "--threads", "100000", "-o", out, model},
		{"fisher", model, "--data", data, "--threads", "100000", "-o", out},
		{"merge", "--method", "linear", "--threads", "100000", "-o", out, model, model},
	} {
		if code := run(append([]string{"onnxpost"}, args...)); code != exitUsage {
			t.Errorf("%v: exit code %d, want %d", args, code, exitUsage)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("%v wrote its output", args)
		}
	}
	if err := checkThreads(100000); err == nil || !strings.Contains(err.Error(), "above the limit of") {
		t.Errorf("error %v does not name the limit", err)
	}
}

// Hostile recipes are refused at validation (run and run --check), exit 2,
// nothing written anywhere.
func TestRunRecipeTrust(t *testing.T) {
	model := ehTestdata("mlp.onnx")
	for _, tc := range []struct {
		name, body, want string
	}{
		{"absolute output", "output: OUTSIDE/victim.onnx\nsteps:\n  - quantize: {weights: int8, inputs: [MODEL]}\n", "leaves its folder"},
		{"dotdot report", "output: o.onnx\nreport: ../r.json\nsteps:\n  - quantize: {weights: int8, inputs: [MODEL]}\n", "leaves its folder"},
		{"ort-lib", "output: o.onnx\nsteps:\n  - quantize: {weights: int8, ort-lib: evil.so, inputs: [MODEL]}\n", "ort-lib"},
		{"threads", "output: o.onnx\nsteps:\n  - quantize: {weights: int8, threads: 100000, inputs: [MODEL]}\n", "above the limit"},
	} {
		for _, check := range []bool{true, false} {
			t.Run(tc.name+map[bool]string{true: " --check", false: ""}[check], func(t *testing.T) {
				dir, outside := t.TempDir(), t.TempDir()
				body := strings.NewReplacer("OUTSIDE", outside, "MODEL", model).Replace(tc.body)
				recipe := filepath.Join(dir, "r.yaml")
				if err := os.WriteFile(recipe, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{"onnxpost", "run", recipe}
				if check {
					args = []string{"onnxpost", "run", "--check", recipe}
				}
				if code := run(args); code != exitUsage {
					t.Fatalf("exit code %d, want %d", code, exitUsage)
				}
				if got := strings.Join(listFiles(t, dir), ","); got != "r.yaml" {
					t.Errorf("files in the recipe's folder: %s", got)
				}
				if got := listFiles(t, outside); len(got) != 0 {
					t.Errorf("files outside: %v", got)
				}
			})
		}
	}
	t.Run("missing out-dir", func(t *testing.T) {
		dir := t.TempDir()
		recipe := filepath.Join(dir, "r.yaml")
		os.WriteFile(recipe, []byte("output: o.onnx\nsteps:\n  - quantize: {weights: int8, inputs: ["+model+"]}\n"), 0o644)
		if code := run([]string{"onnxpost", "run", "--check", "--out-dir", filepath.Join(dir, "nope"), recipe}); code != exitUsage {
			t.Errorf("exit code %d", code)
		}
	})
}

// merge --config refuses an output outside its folder (exit 2, nothing
// written) and resolves it inside --out-dir when given.
func TestMergeConfigTrust(t *testing.T) {
	model := ehTestdata("mlp.onnx")
	dir, outside := t.TempDir(), t.TempDir()
	write := func(output string) string {
		p := filepath.Join(dir, "m.yaml")
		body := "method: linear\nmodels: [{model: " + model + "}, {model: " + model + "}]\noutput: " + output + "\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, o := range []string{filepath.Join(outside, "victim.onnx"), "../victim.onnx"} {
		if code := run([]string{"onnxpost", "merge", "--config", write(o)}); code != exitUsage {
			t.Errorf("output %s: exit code %d, want %d", o, code, exitUsage)
		}
		if got := listFiles(t, outside); len(got) != 0 {
			t.Errorf("written outside: %v", got)
		}
	}
	out := t.TempDir()
	if code := run([]string{"onnxpost", "merge", "--config", write("merged.onnx"), "--out-dir", out}); code != exitOK {
		t.Fatalf("--out-dir: exit code %d", code)
	}
	if got := strings.Join(listFiles(t, out), ","); got != "merged.onnx" {
		t.Errorf("files in --out-dir: %s", got)
	}
	if code := run([]string{"onnxpost", "merge", "--method", "linear", "--out-dir", out, "-o", filepath.Join(out, "x.onnx"), model, model}); code != exitUsage {
		t.Errorf("--out-dir without --config: exit code %d", code)
	}
}

// eval-merge refuses shard reports that contradict each other: exit 1,
// no merged report.
func TestEvalMergeRefusesInconsistentShards(t *testing.T) {
	dir := t.TempDir()
	shard := func(name, idx string, samples int64, dataset string) string {
		r := map[string]any{
			"model": "m.onnx", "samples": samples, "metrics": map[string]any{"accuracy": 1}, "shard": idx,
			"sums": map[string]any{"metrics": []string{"accuracy"}, "labels": true, "samples": samples, "correct": samples,
				"dataset": dataset, "dataset_samples": 10},
		}
		b, err := marshalJSON(r)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	merged := filepath.Join(dir, "merged.json")
	good0, good1 := shard("a.json", "0/2", 5, "d.npz"), shard("b.json", "1/2", 5, "d.npz")
	if code := run([]string{"onnxpost", "eval-merge", "--report", merged, good0, good1}); code != exitOK {
		t.Fatalf("consistent shards: exit code %d", code)
	}
	os.Remove(merged)
	os.Remove(filepath.Join(dir, "merged.md"))
	for _, tc := range []struct {
		name  string
		files []string
	}{
		{"zero samples", []string{good0, shard("z.json", "1/2", 0, "d.npz")}},
		{"other dataset", []string{good0, shard("o.json", "1/2", 5, "e.npz")}},
		{"duplicate", []string{good0, good0}},
		{"missing", []string{good0}},
		{"counts disagree", []string{good0, good1, shard("c.json", "2/3", 3, "d.npz")}},
	} {
		if code := run(append([]string{"onnxpost", "eval-merge", "--report", merged}, tc.files...)); code != exitError {
			t.Errorf("%s: exit code %d, want %d", tc.name, code, exitError)
		}
		if _, err := os.Stat(merged); !os.IsNotExist(err) {
			t.Errorf("%s: merged report written", tc.name)
		}
	}
}

// eval --save-outputs with an unwritable report writes nothing.
func TestEvalUnwritableReportWritesNothing(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	npz := filepath.Join(dir, "outs.npz")
	report := filepath.Join(dir, "missing", "r.json")
	if code := run([]string{"onnxpost", "eval", ehTestdata("mlp.onnx"), "--data", ehTestdata("mlp_data.npz"), "--save-outputs", npz, "--report", report}); code != exitError {
		t.Fatalf("exit code %d, want %d", code, exitError)
	}
	if got := listFiles(t, dir); len(got) != 0 {
		t.Errorf("files written: %v", got)
	}
}

// TestMissingRequiredFlagIsUsage checks that a required flag left out is a
// usage error (exit 2), like every other command-line mistake.
func TestMissingRequiredFlagIsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"eval", "model.onnx"},
		{"convert", "model.onnx"},
	} {
		var code int
		msg := captureStderr(t, func() { code = run(append([]string{"onnxpost"}, args...)) })
		if code != exitUsage {
			t.Errorf("%v: exit code %d, want %d (stderr %q)", args, code, exitUsage, msg)
		}
		if !strings.Contains(msg, "Required flag") {
			t.Errorf("%v: stderr %q does not name the missing flag", args, msg)
		}
	}
}
