package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ehTestdata returns a fixture of evalharness's testdata folder.
func ehTestdata(name string) string {
	return filepath.Join(pyoracle.RepoRoot(), "evalharness", "testdata", name)
}

// requireORT skips the test when the ONNX Runtime library cannot be found
// (other commands' tests use it too).
func requireORT(t *testing.T) {
	t.Helper()
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
}

func evalReadJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return m
}

func TestEvalCLI(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model, ref, data := ehTestdata("mlp.onnx"), ehTestdata("mlp_b.onnx"), ehTestdata("mlp_data.npz")
	bad := filepath.Join(dir, "bad.npz")
	if err := evalharness.WriteNPZ(bad, map[string]*evalharness.Array{"x": evalharness.FromFloat64([]int64{2, 16}, make([]float64, 32))}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"metrics with ref", []string{model, "--data", data, "--ref", ref, "--metrics", "accuracy,top5,kl,agreement,cosine,mse,max_abs,latency", "--batch", "8"}, 0},
		{"flags after model", []string{model, "--data", data, "--json"}, 0},
		{"gate passes", []string{model, "--data", data, "--ref", ref, "--gate", "accuracy>=0.8,agreement>=0.5"}, 0},
		{"gate fails", []string{model, "--data", data, "--ref", ref, "--gate", "kl<=0.001"}, 3},
		{"gate on unmeasured metric", []string{model, "--data", data, "--gate", "kl<=1"}, 3},
		{"wrong dtype", []string{model, "--data", bad}, 1},
		{"missing data file", []string{model, "--data", filepath.Join(dir, "nope.npz")}, 1},
		{"kl without ref", []string{model, "--data", data, "--metrics", "kl"}, 1},
		{"no model", []string{"--data", data}, 2},
		{"bad metric", []string{model, "--data", data, "--metrics", "f1"}, 2},
		{"bad gate", []string{model, "--data", data, "--gate", "accuracy"}, 2},
		{"bad ep", []string{model, "--data", data, "--ep", "tpu"}, 2},
		{"cuda unavailable", []string{model, "--data", data, "--ep", "cuda"}, 1},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			report := filepath.Join(dir, c.name+".json")
			args := append([]string{"onnxpost", "eval"}, c.args...)
			if c.code != 2 {
				args = append(args, "--report", report)
			}
			if c.name == "cuda unavailable" {
				if os.Getenv("ONNXPOST_TEST_CUDA") != "" {
					t.Skip("CUDA available")
				}
			}
			if code := run(args); code != c.code {
				t.Fatalf("case %d: exit code %d, want %d", i, code, c.code)
			}
			if c.code == 0 || c.code == 3 {
				r := evalReadJSON(t, report)
				for _, k := range []string{"model", "samples", "metrics", "params", "bytes"} {
					if _, ok := r[k]; !ok {
						t.Errorf("report lacks %q: %v", k, r)
					}
				}
				if r["samples"].(float64) != 50 {
					t.Errorf("samples = %v", r["samples"])
				}
				if c.code == 3 && r["gate"].(map[string]any)["passed"] != false {
					t.Errorf("gate: %v", r["gate"])
				}
			}
		})
	}
	// Metrics against an independent computation are evalharness's tests;
	// here check the wiring: the report of the first case.
	r := evalReadJSON(t, filepath.Join(dir, "metrics with ref.json"))
	m := r["metrics"].(map[string]any)
	for _, k := range []string{"accuracy", "top5", "kl", "agreement", "cosine", "mse", "max_abs", "latency_p50_ms", "latency_p90_ms"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics lack %s: %v", k, m)
		}
	}
	if rm := r["reference"].(map[string]any)["metrics"].(map[string]any); rm["accuracy"] == nil {
		t.Errorf("reference metrics: %v", rm)
	}
}

// evalFinishApp is a minimal transforming command that scales nothing: it
// loads MODEL and hands it to finish with the reference REF (--ref-model).
func evalFinishApp() *cli.App {
	return &cli.App{
		Name: "t",
		Commands: []*cli.Command{{
			Name:  "copy",
			Flags: append(commonFlags(), &cli.StringFlag{Name: "ref-model"}),
			Action: func(c *cli.Context) error {
				m, err := onnxio.Load(c.Args().First())
				if err != nil {
					return err
				}
				var ref *onnxio.Model
				if p := c.String("ref-model"); p != "" {
					if ref, err = onnxio.Load(p); err != nil {
						return err
					}
				}
				return finish(c, m, ref, map[string]any{"method": "copy", "metrics": "clash"})
			},
		}},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func TestFinish(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model, ref, data := ehTestdata("mlp.onnx"), ehTestdata("mlp_b.onnx"), ehTestdata("mlp_data.npz")
	type want struct {
		written, rejected bool
		gateErr, usage    bool
	}
	cases := []struct {
		name string
		args []string
		want want
	}{
		{"no data", nil, want{written: true}},
		{"gate passes", []string{"--data", data, "--ref-model", ref, "--gate", "accuracy_drop<=0.5,agreement>=0.5"}, want{written: true}},
		{"gate fails", []string{"--data", data, "--ref-model", ref, "--gate", "kl<=0.0001"}, want{gateErr: true}},
		{"gate fails, keep rejected", []string{"--data", data, "--ref-model", ref, "--gate", "agreement>=0.999", "--keep-rejected", filepath.Join(dir, "rejected.onnx")}, want{gateErr: true, rejected: true}},
		{"gate needs a reference", []string{"--data", data, "--gate", "kl<=1"}, want{gateErr: true}},
		{"gate without data", []string{"--gate", "kl<=1"}, want{usage: true}},
		{"external data", []string{"--data", data, "--external-data"}, want{written: true}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, evalCaseName(i)+".onnx")
			report := filepath.Join(dir, evalCaseName(i)+".json")
			args := append([]string{"t", "copy", "-o", out, "--report", report, "--json"}, c.args...)
			args = append(args, model)
			err := evalFinishApp().Run(args)
			var ge gateError
			var ue usageError
			switch {
			case c.want.gateErr && !errors.As(err, &ge):
				t.Fatalf("error %v, want a gate error", err)
			case c.want.usage && !errors.As(err, &ue):
				t.Fatalf("error %v, want a usage error", err)
			case !c.want.gateErr && !c.want.usage && err != nil:
				t.Fatal(err)
			}
			_, statErr := os.Stat(out)
			if written := statErr == nil; written != c.want.written {
				t.Fatalf("output written = %v, want %v", written, c.want.written)
			}
			if c.want.usage {
				return
			}
			r := evalReadJSON(t, report)
			if r["command"] != "copy" || r["method"] != "copy" || r["copy_metrics"] != "clash" {
				t.Errorf("report keys: %v", r)
			}
			if c.want.written {
				m, err := onnxio.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(m.Metadata()["onnxpost.command"], "onnxpost copy") {
					t.Errorf("provenance: %v", m.Metadata())
				}
				if r["output"] != out || r["bytes"].(float64) <= 0 {
					t.Errorf("output %v, bytes %v", r["output"], r["bytes"])
				}
				if c.name == "external data" {
					if locs, err := onnxio.DataFiles(out); err != nil || len(locs) != 1 {
						t.Errorf("no external data: %v %v", locs, err)
					}
				}
			} else if r["output"] != "" {
				t.Errorf("output %v for a rejected candidate", r["output"])
			}
			if c.want.rejected {
				if _, err := onnxio.Load(filepath.Join(dir, "rejected.onnx")); err != nil {
					t.Errorf("rejected candidate: %v", err)
				}
			}
			if len(c.args) > 0 && c.args[0] == "--data" {
				if r["samples"].(float64) != 50 {
					t.Errorf("samples %v", r["samples"])
				}
			}
		})
	}
}

func evalCaseName(i int) string { return "case" + string(rune('a'+i)) }

func TestEvalShardsCLI(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model, ref, data := ehTestdata("mlp.onnx"), ehTestdata("mlp_b.onnx"), ehTestdata("mlp_data.npz")
	var reports []string
	for i := 0; i < 3; i++ {
		p := filepath.Join(dir, evalCaseName(i)+".json")
		if code := run([]string{"onnxpost", "eval", model, "--data", data, "--ref", ref, "--metrics", "accuracy,kl", "--shard", string(rune('0'+i)) + "/3", "--report", p}); code != 0 {
			t.Fatalf("shard %d: exit code %d", i, code)
		}
		reports = append(reports, p)
	}
	whole := filepath.Join(dir, "whole.json")
	if code := run([]string{"onnxpost", "eval", model, "--data", data, "--ref", ref, "--metrics", "accuracy,kl", "--report", whole}); code != 0 {
		t.Fatal(code)
	}
	merged := filepath.Join(dir, "merged.json")
	if code := run(append([]string{"onnxpost", "eval-merge", "--report", merged}, reports...)); code != 0 {
		t.Fatalf("eval-merge: exit code %d", code)
	}
	w, m := evalReadJSON(t, whole)["metrics"].(map[string]any), evalReadJSON(t, merged)["metrics"].(map[string]any)
	if w["accuracy"] != m["accuracy"] || w["kl"].(float64)-m["kl"].(float64) > 1e-12 || m["kl"].(float64)-w["kl"].(float64) > 1e-12 {
		t.Errorf("merged %v, whole %v", m, w)
	}
	if code := run(append([]string{"onnxpost", "eval-merge", "--gate", "kl<=0.0001"}, reports...)); code != 3 {
		t.Errorf("failing gate: exit code %d", code)
	}
	if code := run([]string{"onnxpost", "eval-merge", reports[0]}); code != 1 {
		t.Errorf("missing shards: exit code %d", code)
	}
	if code := run([]string{"onnxpost", "eval", model, "--data", data, "--shard", "3/3"}); code != 2 {
		t.Errorf("bad shard: exit code %d", code)
	}
}
