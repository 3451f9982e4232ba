package merge

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A merge config cannot write outside its folder (or --out-dir) nor set
// process-level options.
func TestConfigTrust(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	const models = "method: linear\nmodels: [{model: a.onnx}, {model: /abs/b.onnx}]\n"
	for _, tc := range []struct{ name, extra, want string }{
		{"absolute output", "output: /tmp/victim.onnx\n", `output: the path leaves its folder: "/tmp/victim.onnx" is absolute`},
		{"dotdot output", "output: ../victim.onnx\n", `output: the path leaves its folder: "../victim.onnx"`},
		{"symlinked output", "output: escape/victim.onnx\n", `output: the path leaves its folder: "escape/victim.onnx"`},
		{"ort-lib", "ort-lib: evil.so\n", `cannot set process-level options: "ort-lib"`},
		{"threads", "threads: 100000\n", `cannot set process-level options: "threads"`},
		{"threads in parameters", "parameters: {threads: 8}\n", `cannot set process-level options: "threads"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(models+tc.extra), dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrOptions) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	out := t.TempDir()
	c, err := ParseConfig(strings.NewReader(models+"output: sub/m.onnx\n"), dir, WithOutDir(out))
	if err != nil {
		t.Fatal(err)
	}
	if c.Output != filepath.Join(out, "sub", "m.onnx") || c.Models[0].Model != filepath.Join(dir, "a.onnx") {
		t.Errorf("output %q, model %q", c.Output, c.Models[0].Model)
	}
	if _, err := ParseConfig(strings.NewReader(models+"output: ../m.onnx\n"), dir, WithOutDir(out)); err == nil {
		t.Error("an output leaving --out-dir was accepted")
	}
}
