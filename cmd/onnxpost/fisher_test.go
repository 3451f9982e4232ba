package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestFisherCLI(t *testing.T) {
	requireORT(t)
	model := zoo(t, "ft_low")
	data := filepath.Join("..", "..", "models", "data", "digits_low_val.npz")
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		code    int
		written bool
	}{
		{"exact, flags first", []string{"--data", data, "--max-examples", "8", "-o", "OUT", model}, 0, true},
		{"sampled, flags after", []string{model, "--data", data, "--samples", "2", "--seed", "3", "--max-examples", "8", "--mode", "copies", "-o", "OUT", "--json"}, 0, true},
		{"loop mode", []string{model, "--data", data, "--max-examples", "4", "--mode", "loop", "-o", "OUT"}, 0, true},
		{"no output", []string{"--data", data, model}, 2, false},
		{"no data", []string{"-o", "OUT", model}, 2, false},
		{"two models", []string{"--data", data, "-o", "OUT", model, model}, 2, false},
		{"bad mode", []string{"--data", data, "--mode", "fast", "-o", "OUT", model}, 2, false},
		{"negative samples", []string{"--data", data, "--samples", "-1", "-o", "OUT", model}, 2, false},
		{"missing model", []string{"--data", data, "-o", "OUT", filepath.Join(dir, "nope.onnx")}, 1, false},
		{"wrong logits output", []string{"--data", data, "--logits", "nope", "-o", "OUT", model}, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".fisher.onnx")
			args := []string{"onnxpost", "fisher"}
			for _, a := range tc.args {
				if a == "OUT" {
					a = out
				}
				args = append(args, a)
			}
			if code := run(args); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
			_, err := os.Stat(out)
			if tc.written != (err == nil) {
				t.Fatalf("written=%v, want %v", err == nil, tc.written)
			}
			if !tc.written {
				return
			}
			f, shapes, err := fisher.Read(out)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := onnxio.Load(model)
			for _, name := range m.Initializers() {
				_, sh, _ := m.InitializerInfo(name)
				if len(f[name]) == 0 || len(shapes[name]) != len(sh) {
					t.Fatalf("%s: Fisher missing or misshaped (%v vs %v)", name, shapes[name], sh)
				}
			}
		})
	}
}
