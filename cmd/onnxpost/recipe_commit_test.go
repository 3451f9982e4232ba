package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A recipe's final gate-and-commit: evaluated against ref on data, the
// output written only when the gate passes (exit 3 and nothing written
// otherwise), the output's own report written in both cases, and the
// recipe report carrying it under "final".
func TestRunRecipeFinalGate(t *testing.T) {
	requireORT(t)
	zoo := zooPath(t, "zoo", "mlp")
	data := zooPath(t, "data", "digits_union_test.npz")
	for _, tc := range []struct {
		name, gate string
		code       int
	}{
		{"passes", "accuracy_drop<=0.5", 0},
		{"fails", "accuracy>=0.999", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			recipe := filepath.Join(dir, "r.yaml")
			body := "data: " + abs(t, data) + "\nref: " + abs(t, filepath.Join(zoo, "base.onnx")) +
				"\ngate: \"" + tc.gate + "\"\noutput: out.onnx\noutput-report: out.json\nreport: recipe.json\nsteps:\n" +
				"  - quantize: {weights: int8, inputs: [" + abs(t, filepath.Join(zoo, "ft_low.onnx")) + "]}\n"
			if err := os.WriteFile(recipe, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if code := run([]string{"onnxpost", "run", recipe}); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			_, err := os.Stat(filepath.Join(dir, "out.onnx"))
			if written := err == nil; written != (tc.code == 0) {
				t.Fatalf("output written: %v, want %v", written, tc.code == 0)
			}
			b, err := os.ReadFile(filepath.Join(dir, "out.json"))
			if err != nil {
				t.Fatalf("output report: %v", err)
			}
			var final map[string]any
			if err := json.Unmarshal(b, &final); err != nil {
				t.Fatal(err)
			}
			gate, _ := final["gate"].(map[string]any)
			if gate["expr"] != tc.gate || gate["passed"] != (tc.code == 0) || final["command"] != "release" {
				t.Errorf("output report %s", b)
			}
			if ref, _ := final["reference"].(map[string]any); ref == nil {
				t.Errorf("no reference metrics: %s", b)
			}
			if _, err := os.Stat(filepath.Join(dir, "out.md")); err != nil {
				t.Errorf("output report's Markdown: %v", err)
			}
			rb, err := os.ReadFile(filepath.Join(dir, "recipe.json"))
			if err != nil {
				t.Fatal(err)
			}
			var rep struct {
				Passed bool            `json:"passed"`
				Error  string          `json:"error"`
				Final  json.RawMessage `json:"final"`
			}
			if err := json.Unmarshal(rb, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Passed != (tc.code == 0) || len(rep.Final) == 0 || (tc.code == 3) != strings.Contains(rep.Error, "out.onnx not written") {
				t.Errorf("recipe report %s", rb)
			}
		})
	}
}
