package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// cliEnv, set to 1, makes the test binary run the CLI on its arguments
// instead of the tests: the signal tests start it as a subprocess.
const cliEnv = "ONNXPOST_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(run(append([]string{"onnxpost"}, os.Args[1:]...)))
	}
	os.Exit(m.Run())
}

// captureStderr runs f with os.Stderr redirected and returns what it wrote.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = old }()
	f()
	w.Close()
	os.Stderr = old
	return <-done
}

// A bug that panics in a command exits 1 with "internal error:" and the
// command's name, not 2 with a Go stack; ONNXPOST_DEBUG=1 adds the stack.
func TestInternalError(t *testing.T) {
	commandHook = func(name string) {
		var s []int
		_ = s[len(name)] // index out of range
	}
	defer func() { commandHook = nil }()
	for _, debug := range []string{"", "1"} {
		t.Setenv("ONNXPOST_DEBUG", debug)
		var code int
		msg := captureStderr(t, func() { code = run([]string{"onnxpost", "inspect", "model.onnx"}) })
		if code != exitError {
			t.Errorf("exit code %d, want %d", code, exitError)
		}
		if !strings.HasPrefix(msg, "onnxpost: internal error: inspect: runtime error: index out of range") {
			t.Errorf("stderr %q", msg)
		}
		if hasStack := strings.Contains(msg, "goroutine "); hasStack != (debug == "1") {
			t.Errorf("ONNXPOST_DEBUG=%q: stack printed %v", debug, hasStack)
		}
	}
}

// bigModel writes a model of nt float tensors of n values each (a chain of
// Adds), so that a merge of two of them takes a while and streams.
func bigModel(t *testing.T, path string, nt, n int, seed float32) {
	t.Helper()
	m := onnxio.New("big", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: int64(n)}}})
	prev := "x"
	var nodes []onnxio.Node
	for i := range nt {
		v := make([]float32, n)
		for j := range v {
			v[j] = seed + float32((i*31+j)%97)/97
		}
		name := fmt.Sprintf("w%03d", i)
		tt, err := onnxio.FromFloat32(name, onnxio.Float, []int64{int64(n)}, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprintf("h%03d", i)
		nodes = append(nodes, onnxio.Node{Name: "add" + name, OpType: "Add", Inputs: []string{prev, name}, Outputs: []string{out}})
		prev = out
	}
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: prev, DType: onnxio.Float})
	if err := m.Save(path, &onnxio.SaveOptions{External: onnxio.ExternalAlways}); err != nil {
		t.Fatal(err)
	}
}

// startCLI starts the test binary as the CLI with args, env added.
func startCLI(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), cliEnv+"=1"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

// waitForTemp polls dir (and its subfolders) until a file whose name
// starts with prefix appears, and returns its path; it fails the test if
// the process exits first.
func waitForTemp(t *testing.T, cmd *exec.Cmd, exited <-chan error, dir, prefix string) string {
	t.Helper()
	for {
		var found string
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && strings.HasPrefix(info.Name(), prefix) {
				found = p
			}
			return nil
		})
		if found != "" {
			return found
		}
		select {
		case err := <-exited:
			t.Fatalf("the command ended (%v) before any %s file was seen: make the model bigger", err, prefix)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// leftovers lists the temporary files of onnxpost under dir.
func leftovers(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && (strings.HasPrefix(info.Name(), ".onnxpost-") || strings.HasPrefix(info.Name(), "onnxpost-recipe-")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func exitStatus(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatal(err)
	}
	return ee.ExitCode()
}

// A signal in the middle of a streaming merge cancels it: exit 130 for
// SIGINT, 143 for SIGTERM, one line on stderr, no temporary file left and
// the existing output (model and data file) byte for byte as it was.
func TestMergeSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~100 MB models")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	bigModel(t, a, 48, 1<<19, 0)
	bigModel(t, b, 48, 1<<19, 1)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
		name string
	}{{syscall.SIGINT, 130, "SIGINT"}, {syscall.SIGTERM, 143, "SIGTERM"}} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := filepath.Join(dir, tc.name)
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(outDir, "merged.onnx")
			old := map[string][]byte{out: []byte("an earlier model"), out + ".data": []byte("its data")}
			for p, v := range old {
				if err := os.WriteFile(p, v, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd, stderr := startCLI(t, nil, "merge", "--method", "linear", "--external-data", "-o", out, a, b)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			waitForTemp(t, cmd, exited, outDir, ".onnxpost-data-")
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if code := exitStatus(t, <-exited); code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if msg := strings.TrimSpace(stderr.String()); strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.name) || !strings.Contains(msg, "cancelled") {
				t.Errorf("stderr %q, want one line naming %s", msg, tc.name)
			}
			if l := leftovers(outDir); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
			for p, v := range old {
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, v) {
					t.Errorf("%s changed (%v)", filepath.Base(p), err)
				}
			}
		})
	}
}

// A signal while a recipe writes a step's model to its workdir (the step
// runs in process; external-data makes its write take a while) removes
// the partial files, writes the report saying "cancelled", exits 143 and
// leaves the existing output untouched.
func TestRunRecipeSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~100 MB models")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	bigModel(t, a, 48, 1<<19, 0)
	bigModel(t, b, 48, 1<<19, 1)
	out, report := filepath.Join(dir, "out.onnx"), filepath.Join(dir, "report.json")
	oldOut := []byte("an earlier model")
	if err := os.WriteFile(out, oldOut, 0o644); err != nil {
		t.Fatal(err)
	}
	recipe := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(recipe, []byte(`name: cancel
output: out.onnx
report: report.json
workdir: work
steps:
  - merge: {method: linear, external-data: true, inputs: [a.onnx, b.onnx]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := startCLI(t, []string{"TMPDIR=" + tmp}, "run", recipe)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitForTemp(t, cmd, exited, filepath.Join(dir, "work"), ".onnxpost-data-")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitStatus(t, <-exited); code != 143 {
		t.Fatalf("exit code %d, want 143; stderr:\n%s", code, stderr)
	}
	if l := leftovers(dir); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, oldOut) {
		t.Errorf("the existing output changed (%v)", err)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report: %v", err)
	}
	var rep struct {
		Passed    bool   `json:"passed"`
		Cancelled bool   `json:"cancelled"`
		Error     string `json:"error"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Passed || !rep.Cancelled || !strings.HasPrefix(rep.Error, "cancelled (interrupted by SIGTERM)") {
		t.Errorf("report %+v, want a cancelled run", rep)
	}
}

// Calibration sets with Inf, NaN or values at the float32 limit used to
// panic in the capture (exit 2); static and GPTQ quantization now exit 1
// naming the non-finite activations, and write nothing.
func TestQuantizeNonFiniteCalibration(t *testing.T) {
	requireORT(t)
	mlp := zooPath(t, "zoo", "mlp", "base.onnx")
	tr := zooPath(t, "zoo", "transformer", "base.onnx")
	val := zooPath(t, "data", "digits_clean_val.npz")
	arrays, err := evalharness.ReadNPZ(val)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	poisoned := func(name string, vals ...float32) string {
		img, err := arrays["image"].Float64()
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float32, len(img))
		for i, v := range img {
			f[i] = float32(v)
		}
		for i, v := range vals {
			f[17*i+3] = v
		}
		p := filepath.Join(dir, name+".npz")
		if err := evalharness.WriteNPZ(p, map[string]*evalharness.Array{"image": evalharness.FromFloat32(arrays["image"].Shape, f), "labels": arrays["labels"]}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name  string
		model string
		calib string
		args  []string
	}{
		{"static, Inf", mlp, poisoned("inf", inf, -inf), []string{"--weights", "int8", "--activations", "int8"}},
		{"static, NaN", mlp, poisoned("nan", float32(math.NaN())), []string{"--weights", "int8", "--activations", "int8"}},
		{"static, float32 limit", mlp, poisoned("big", 3.3e38, -3.3e38, 3.3e38, 3.3e38), []string{"--weights", "int8", "--activations", "int8"}},
		{"gptq, Inf", tr, poisoned("inf-tr", inf), []string{"--weights", "int4", "--method", "gptq", "--block", "16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			args := append([]string{"onnxpost", "quantize", tc.model, "--calib", tc.calib, "-o", out}, tc.args...)
			var code int
			msg := captureStderr(t, func() { code = run(args) })
			if code != exitError {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitError, msg)
			}
			t.Logf("stderr: %s", msg)
			if !strings.Contains(msg, "non-finite") || strings.Contains(msg, "internal error") {
				t.Errorf("stderr %q, want a non-finite activations error", msg)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("an output was written")
			}
		})
	}
}

// fisher on a model whose graph has a cycle or reads an undefined value
// used to panic (exit 2); it exits 1 naming the node.
func TestFisherInvalidGraphCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.npz")
	if err := evalharness.WriteNPZ(data, map[string]*evalharness.Array{
		"x":      evalharness.FromFloat32([]int64{2, 2}, []float32{1, 2, 3, 4}),
		"labels": evalharness.FromInt64([]int64{2}, []int64{0, 1}),
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, mention string }{
		{"cycle", "x", "h", `cycle: "fc" (MatMul)`},
		{"undefined input", "b", "nothing", `"nothing"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := onnxio.New("bad", 17)
			w, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{2, 2}, []float32{1, 0, 0, 1})
			b, _ := onnxio.FromFloat32("b", onnxio.Float, []int64{2}, []float32{0, 1})
			_ = m.SetInitializer(w)
			_ = m.SetInitializer(b)
			m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 2}}})
			if err := m.InsertNodes(
				onnxio.Node{Name: "fc", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"h"}},
				onnxio.Node{Name: "bias", OpType: "Add", Inputs: []string{"h", "b"}, Outputs: []string{"logits"}},
			); err != nil {
				t.Fatal(err)
			}
			m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: onnxio.Float})
			m.RenameInput(tc.from, tc.to)
			path := filepath.Join(dir, tc.name+".onnx")
			if err := m.Save(path, nil); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, tc.name+".fisher.onnx")
			var code int
			msg := captureStderr(t, func() { code = run([]string{"onnxpost", "fisher", "--data", data, "-o", out, path}) })
			if code != exitError || !strings.Contains(msg, tc.mention) || strings.Contains(msg, "internal error") {
				t.Fatalf("exit code %d, stderr %q; want 1 naming %s", code, msg, tc.mention)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a Fisher file was written")
			}
		})
	}
}
