package main

import (
	"encoding/json"
	"fmt"
	"github.com/onnxpost/onnxpost/onnxio"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// realModel is one entry of the real-model corpus's manifest.json (written
// by `make realmodels`, tools/realmodels/fetch.py).
type realModel struct {
	Name    string `json:"name"`
	Package string `json:"package"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Params  int64  `json:"params"`
	Output  string `json:"output"`
}

// realModelKnownFailures lists the checks that fail on the code of the last
// matrix run (docs/results/real-models.md lists them with reproductions). A known
// failure is logged and skipped instead of failing the test; once it passes,
// the test says so, and its entry should be removed.
var realModelKnownFailures = map[string]string{
	"t5-title-enc/inspect": "part of the int8 weights of ONNX Runtime's dynamic quantization are not discovered",
	"t5-title-dec/inspect": "part of the int8 weights of ONNX Runtime's dynamic quantization are not discovered",
}

// realModelsDir is the corpus folder: $ONNXPOST_REALMODELS or the
// repository's .cache/realmodels.
func realModelsDir() string {
	if d := os.Getenv("ONNXPOST_REALMODELS"); d != "" {
		return d
	}
	return filepath.Join(pyoracle.RepoRoot(), ".cache", "realmodels")
}

// captureStdout runs f with os.Stdout redirected and returns what it printed.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	old := os.Stdout
	os.Stdout = tmp
	defer func() { os.Stdout = old }()
	f()
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tmp)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRealModels runs inspect and eval (against itself, on the first samples
// of the model's own realistic dataset) on every model of the real-model corpus. It skips when
// the corpus is absent (`make realmodels` fetches it; it is not part of
// `make test`).
func TestRealModels(t *testing.T) {
	dir := realModelsDir()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if os.IsNotExist(err) {
		t.Skipf("real-model corpus absent (%s): run `make realmodels`", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	var models []realModel
	if err := json.Unmarshal(b, &models); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if len(models) < 8 {
		t.Fatalf("manifest lists %d models, want at least 8", len(models))
	}
	requireORT(t)
	out := t.TempDir()
	for _, m := range models {
		model := filepath.Join(dir, m.Name, "model.onnx")
		data := filepath.Join(dir, m.Name, "small.npz") // the first samples of data.npz
		check := func(t *testing.T, key string, failure string) {
			t.Helper()
			reason, known := realModelKnownFailures[key]
			switch {
			case failure != "" && known:
				t.Skipf("known failure (%s): %s", reason, failure)
			case failure != "":
				t.Fatal(failure)
			case known:
				t.Logf("%s now passes: remove it from realModelKnownFailures", key)
			}
		}
		t.Run(m.Name+"/inspect", func(t *testing.T) {
			var code int
			stdout := captureStdout(t, func() { code = run([]string{"onnxpost", "inspect", "--json", model}) })
			failure := ""
			var r struct {
				Params  int64             `json:"params"`
				Outputs []json.RawMessage `json:"outputs"`
			}
			if code != 0 {
				failure = fmt.Sprintf("inspect: exit code %d", code)
			} else if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				failure = "inspect --json: " + err.Error()
			} else if float64(r.Params) < 0.9*float64(m.Params) {
				// The manifest counts every float tensor of every graph and
				// Constant (shape constants included): inspect must find at
				// least 90% of them.
				failure = fmt.Sprintf("inspect finds %d parameters, the model holds %d", r.Params, m.Params)
			}
			check(t, m.Name+"/inspect", failure)
		})
		t.Run(m.Name+"/eval", func(t *testing.T) {
			report := filepath.Join(out, m.Name+".json")
			args := []string{"onnxpost", "eval", model, "--data", data, "--ref", model, "--report", report}
			if m.Name == "akiki-vad" {
				args = append(args, "--batch", "1") // the model's batch is fixed to 1
			}
			var code int
			captureStdout(t, func() { code = run(args) })
			failure := ""
			if code != 0 {
				failure = fmt.Sprintf("eval: exit code %d", code)
			} else {
				r := evalReadJSON(t, report)
				met, _ := r["metrics"].(map[string]any)
				cos, ok := met["cosine"].(float64)
				switch {
				case !ok:
					failure = fmt.Sprintf("eval against itself reports no cosine: %v", met)
				case math.Abs(cos-1) > 1e-6:
					failure = fmt.Sprintf("eval against itself: cosine %g, want 1", cos)
				}
			}
			check(t, m.Name+"/eval", failure)
		})
		t.Run(m.Name+"/nan", func(t *testing.T) {
			if _, known := realModelKnownFailures[m.Name+"/eval"]; known {
				t.Skip("eval of this model is a known failure")
			}
			nan, which := nanCopy(t, model, filepath.Join(out, m.Name+"-nan.onnx"))
			report := filepath.Join(out, m.Name+"-nan.json")
			args := []string{"onnxpost", "eval", nan, "--data", data, "--ref", model, "--gate", "cosine>=-1", "--report", report}
			var code int
			captureStdout(t, func() { code = run(args) })
			if code != exitGate {
				t.Fatalf("eval of a copy with NaN in %s: exit code %d, want %d", which, code, exitGate)
			}
			r := evalReadJSON(t, report)
			if nf, _ := r["nonfinite"].([]any); len(nf) == 0 {
				t.Fatalf("report of the NaN copy (%s) lists no nonfinite values: %v", which, r)
			}
		})
	}
}

// nanCopy writes to dst a copy of the model at src in which the float
// weight of the main graph's last MatMul, Gemm or Conv (else its last norm
// or bias, else its last float tensor of at least 64 values) is NaN
// throughout (the
// last, because an earlier NaN may be absorbed on its way: ONNX Runtime's
// Relu maps NaN to 0), or every float weight when all of them live in
// subgraphs (a branch that is not taken would hide one), and says which
// weight it changed.
func nanCopy(t *testing.T, src, dst string) (string, string) {
	t.Helper()
	m, err := onnxio.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.FoldConstantWeights(); err != nil {
		t.Fatal(err)
	}
	ws, err := m.AllWeights()
	if err != nil {
		t.Fatal(err)
	}
	isFloat := func(w onnxio.Weight) bool {
		return !w.Quantized && !w.Sparse && (w.DType == onnxio.Float || w.DType == onnxio.Float16 || w.DType == onnxio.Double)
	}
	var pick []onnxio.Weight
	for _, roles := range [][]string{
		{onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW},
		{onnxio.RoleNorm, onnxio.RoleBias},
		{onnxio.RoleOther}, // e.g. the scale of an RMSNorm built from Mul
	} {
		for _, w := range ws {
			if slices.Contains(roles, w.Role) && isFloat(w) && elems(w.Shape) >= 64 && w.Stored == "" && w.Scope == "" && (len(pick) == 0 || w.NodeIndex >= pick[0].NodeIndex) {
				pick = []onnxio.Weight{w}
			}
		}
		if len(pick) > 0 {
			break
		}
	}
	which := ""
	if len(pick) == 0 {
		which = "every float weight"
		for _, w := range ws {
			if isFloat(w) && m.HoistWeight(w) == nil {
				pick = append(pick, w)
			}
		}
	}
	if len(pick) == 0 {
		t.Skip("no float weight to set to NaN")
	}
	for _, w := range pick {
		v := make([]float32, elems(w.Shape))
		for i := range v {
			v[i] = float32(math.NaN())
		}
		nt, err := onnxio.FromFloat32(w.Name, w.DType, w.Shape, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(nt); err != nil {
			t.Fatal(err)
		}
	}
	if which == "" {
		which = fmt.Sprintf("weight %q", pick[0].Name)
	}
	if err := m.Save(dst, nil); err != nil {
		t.Fatal(err)
	}
	return dst, which
}

func elems(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}
