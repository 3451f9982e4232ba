package sparsity

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// oracleDoc is what testdata/oracle.py writes: a zoo layer (rows × cols),
// the XᵀX of its captured input activations, and the numpy results.
type oracleDoc struct {
	Model  string `json:"model"`
	Weight string `json:"weight"`
	Rows   int    `json:"rows"`
	Cols   int    `json:"cols"`
	N      int64  `json:"n"`
	W      string `json:"w"`
	XTX    string `json:"xtx"`
	Cases  []struct {
		Name string `json:"name"`
		W    string `json:"w"`
	} `json:"cases"`
}

func decodeF32(t *testing.T, s string) []float32 {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func decodeF64(t *testing.T, s string) []float64 {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float64, len(b)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v
}

// fixedGram is a calibration of one fixed XᵀX (the oracle's).
type fixedGram struct {
	calib.Missing
	xtx []float64
	d   int
	n   int64
}

// InputGram returns a copy (calib.Stats: the caller's to keep and overwrite).
func (g fixedGram) InputGram(string) ([]float64, int, int64, error) {
	return append([]float64(nil), g.xtx...), g.d, g.n, nil
}

func (g fixedGram) SquaredColumnNorms(string) ([]float64, int64, error) {
	return diagonal(g.xtx, g.d), g.n, nil
}

func diagonal(xtx []float64, d int) []float64 {
	out := make([]float64, d)
	for i := range out {
		out[i] = xtx[i*d+i]
	}
	return out
}

// parseCase turns "sparsegpt 4:8 block 16" into Options.
func parseCase(t *testing.T, name string) Options {
	f := strings.Fields(name)
	opt := Options{Method: Method(f[0])}
	if strings.Contains(f[1], ":") {
		p, err := ParsePattern(f[1])
		if err != nil {
			t.Fatal(err)
		}
		opt.Pattern = p
	} else {
		s, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		opt.Sparsity = s
	}
	if len(f) == 4 && f[2] == "block" {
		b, _ := strconv.Atoi(f[3])
		opt.BlockSize = b
	}
	return opt
}

// checkOracle runs every case of doc through PruneLayer and compares: the
// set of zeros must be identical; Wanda's kept values exactly equal,
// SparseGPT's updated values within 1e-4 of the layer's largest |value|.
func checkOracle(t *testing.T, doc oracleDoc) {
	w := decodeF32(t, doc.W)
	xtx := decodeF64(t, doc.XTX)
	if len(w) != doc.Rows*doc.Cols || len(xtx) != doc.Cols*doc.Cols {
		t.Fatalf("oracle document sizes: %d weights, %d XᵀX", len(w), len(xtx))
	}
	cal := fixedGram{xtx: xtx, d: doc.Cols, n: doc.N}
	layer := Layer{Name: doc.Weight, Layout: LayoutNK, Dims: []int64{int64(doc.Rows), int64(doc.Cols)}, Data: w}
	if len(doc.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range doc.Cases {
		want := decodeF32(t, c.W)
		opt := parseCase(t, c.Name)
		got, rep, err := PruneLayer(context.Background(), layer, opt, cal)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		scale, maxDiff, zeroDiff := 0.0, 0.0, 0
		for i := range want {
			scale = math.Max(scale, math.Abs(float64(want[i])))
			maxDiff = math.Max(maxDiff, math.Abs(float64(got[i]-want[i])))
			if (got[i] == 0) != (want[i] == 0) {
				zeroDiff++
			}
		}
		tol := 0.0
		if opt.Method == SparseGPT {
			tol = 1e-4 * scale
		}
		t.Logf("%s on %s %s: pruned %d, zero mismatches %d, max |Go−numpy| %.3g (scale %.3g)", c.Name, doc.Model, doc.Weight, rep.Pruned, zeroDiff, maxDiff, scale)
		if zeroDiff != 0 || maxDiff > tol {
			t.Errorf("%s: %d zero mismatches, max difference %g > %g", c.Name, zeroDiff, maxDiff, tol)
		}
	}
}

// TestOracleGolden compares with numpy results stored in
// testdata/oracle_golden.json.gz (written by TestOracleNumpy with
// ONNXPOST_UPDATE_GOLDEN=1), so it runs without Python.
func TestOracleGolden(t *testing.T) {
	f, err := os.Open("testdata/oracle_golden.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var doc oracleDoc
	if err := json.NewDecoder(zr).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	checkOracle(t, doc)
}

// TestOracleNumpy captures the activations of a zoo layer with ONNX Runtime
// and prunes it with the independent numpy reference (testdata/oracle.py),
// then compares with the Go results.
func TestOracleNumpy(t *testing.T) {
	py := pyoracle.Python(t)
	root := pyoracle.RepoRoot()
	model := filepath.Join(root, "models", "zoo", "mlp", "base.onnx")
	data := filepath.Join(root, "models", "data", "digits_clean_val.npz")
	for _, p := range []string{model, data} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("zoo not built: %v", err)
		}
	}
	out := filepath.Join(t.TempDir(), "oracle.json")
	cmd := exec.Command(py, "testdata/oracle.py", model, "fc1.weight", data, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oracle.py: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc oracleDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	checkOracle(t, doc)
	if os.Getenv("ONNXPOST_UPDATE_GOLDEN") == "1" {
		f, err := os.Create("testdata/oracle_golden.json.gz")
		if err != nil {
			t.Fatal(err)
		}
		zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
