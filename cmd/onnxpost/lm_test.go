package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestLanguageModelCLI runs the transforming commands on the zoo language
// model (a Llama-style decoder, [N, T, V] logits) with a perplexity gate:
// int4 RTN and GPTQ, int8, fp16, Wanda and SparseGPT on token activations
// (padded positions left out) and a bits search pass perplexity_ratio<=1.10
// and write a model that loads; an impossible gate exits 3, writes
// nothing, and still writes the report with the measured ratio. The
// KV-cache export (empty past fed) takes the same commands.
func TestLanguageModelCLI(t *testing.T) {
	requireORT(t)
	base := zooPath(t, "zoo", "lm", "base.onnx")
	kv := zooPath(t, "zoo", "lm", "base_kv.onnx")
	calib := zooPath(t, "data", "lm_pydoc_calib.npz")
	test := zooPath(t, "data", "lm_pydoc_test.npz")
	const gate = "perplexity_ratio<=1.10"
	runCLICases(t, "quantize", []cliCase{
		{"int4", []string{base, "--weights", "int4", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
		{"int4 gptq", []string{base, "--weights", "int4", "--method", "gptq", "--calib", calib, "--calib-samples", "32", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
		{"int4 kv cache", []string{kv, "--weights", "int4", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
		{"int8", []string{base, "--weights", "int8", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
		{"fp16", []string{base, "--weights", "fp16", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
	})
	runCLICases(t, "sparsify", []cliCase{
		{"wanda", []string{base, "--sparsity", "0.3", "--method", "wanda", "--calib", calib, "--calib-samples", "32", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
		{"sparsegpt kv cache", []string{kv, "--sparsity", "0.3", "--method", "sparsegpt", "--calib", calib, "--calib-samples", "32", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
	})
	runCLICases(t, "search", []cliCase{
		{"bits", []string{base, "--space", "bits", "--target", "5", "--calib", calib, "--generations", "2", "--offspring", "2", "--tokens", "8:32", "--cache-dir", "", "--data", test, "--gate", gate, "-o", "OUT"}, 0, true},
	})

	// eval takes every export, the merged decoder's If included, with
	// the same perplexity (the numbers are compared with a numpy oracle in
	// evalharness)
	merged := zooPath(t, "zoo", "lm", "base_merged.onnx")
	for _, m := range []string{base, kv, merged} {
		if code := run([]string{"onnxpost", "eval", m, "--data", test, "--metrics", "perplexity,token_accuracy", "--gate", "perplexity<=20"}); code != 0 {
			t.Errorf("eval %s: exit code %d", m, code)
		}
	}

	dir := t.TempDir()
	out, report := filepath.Join(dir, "q.onnx"), filepath.Join(dir, "q.json")
	code := run([]string{"onnxpost", "quantize", base, "--weights", "int4", "--data", test, "--gate", "perplexity_ratio<=0.5", "--report", report, "-o", out})
	if code != 3 {
		t.Fatalf("impossible gate: exit code %d, want 3", code)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("impossible gate: %s exists (%v)", out, err)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("impossible gate: no report: %v", err)
	}
	var r struct {
		Metrics   map[string]float64 `json:"metrics"`
		Reference struct {
			Metrics map[string]float64 `json:"metrics"`
		} `json:"reference"`
		Gate struct {
			Passed     bool `json:"passed"`
			Conditions []struct {
				Value float64 `json:"value"`
			} `json:"conditions"`
		} `json:"gate"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	p, ref := r.Metrics["perplexity"], r.Reference.Metrics["perplexity"]
	if r.Gate.Passed || len(r.Gate.Conditions) != 1 || !(p > 1) || !(ref > 1) {
		t.Fatalf("report: gate %+v, perplexity %v, reference %v", r.Gate, p, ref)
	}
	if ratio := r.Gate.Conditions[0].Value; math.Abs(ratio-p/ref) > 1e-12 || ratio <= 1 || ratio > 1.10 {
		t.Errorf("perplexity_ratio %v, want candidate/reference %v in (1, 1.10]", ratio, p/ref)
	}
}
