package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestSearchSparsityBitsCLI runs --space sparsity,bits (both orders) and
// checks its usage errors: a missing --target-bits, --target-bits with
// another space, and unknown methods exit 2 without writing.
func TestSearchSparsityBitsCLI(t *testing.T) {
	requireORT(t)
	tr := zooPath(t, "zoo", "transformer", "base.onnx")
	val := zooPath(t, "data", "digits_clean_val.npz")
	rep := filepath.Join(t.TempDir(), "r.json")
	small := []string{"--calib", val, "--generations", "3", "--offspring", "4", "--tokens", "16:64", "--cache-dir", ""}
	with := func(args ...string) []string { return append(append([]string{tr}, args...), small...) }
	runCLICases(t, "search", []cliCase{
		{"combined", with("--space", "sparsity,bits", "--target", "0.5", "--target-bits", "3", "--report", rep, "-o", "OUT"), 0, true},
		{"reversed", with("--space", "bits,sparsity", "--target", "0.5", "--target-bits", "3", "--method", "magnitude,rtn", "-o", "OUT"), 0, true},
		{"no target-bits", with("--space", "sparsity,bits", "--target", "0.5", "-o", "OUT"), 2, false},
		{"target-bits alone", with("--space", "sparsity", "--target", "0.5", "--target-bits", "3", "-o", "OUT"), 2, false},
		{"bits target outside", with("--space", "sparsity,bits", "--target", "0.5", "--target-bits", "9", "-o", "OUT"), 2, false},
		{"bad bits method", with("--space", "sparsity,bits", "--target", "0.5", "--target-bits", "3", "--method", "magnitude,svd", "-o", "OUT"), 2, false},
		{"other combination", with("--space", "sparsity,rank", "--target", "0.5", "-o", "OUT"), 2, false},
	})
	b, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Search struct {
			Space        string  `json:"space"`
			Target       float64 `json:"target"`
			TargetBits   float64 `json:"target_bits"`
			AchievedBits float64 `json:"achieved_bits"`
		} `json:"search"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Search.Space != "sparsity,bits" || r.Search.Target != 0.5 || r.Search.TargetBits != 3 || r.Search.AchievedBits == 0 {
		t.Fatalf("report lacks the combined search: %+v", r.Search)
	}
}
