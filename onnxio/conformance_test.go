package onnxio

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// The conformance test runs over the ONNX backend test data: the
// onnx/backend/test/data folder of the onnx wheel and Debian's
// libonnx-testdata, which tools/gen_conformance.sh fetches into
// .cache/onnx-testdata (make test calls it). ONNXPOST_ONNX_TESTDATA (a
// list of folders) adds or replaces the roots. Without any of them the
// test skips with a message.

func conformanceRoots() []string {
	var roots []string
	if env := os.Getenv("ONNXPOST_ONNX_TESTDATA"); env != "" {
		roots = append(roots, filepath.SplitList(env)...)
	}
	cache := filepath.Join(pyoracle.RepoRoot(), ".cache", "onnx-testdata")
	for _, sub := range []string{"wheel", "debian"} {
		roots = append(roots, filepath.Join(cache, sub))
	}
	var out []string
	for _, r := range roots {
		if st, err := os.Stat(r); err == nil && st.IsDir() {
			out = append(out, r)
		}
	}
	return out
}

// conformanceFiles lists the distinct (by content) model.onnx and
// test_data_set_*/*.pb files under roots; dups counts the duplicate models left out.
func conformanceFiles(t *testing.T, roots []string) (models, tensors []string, dups int) {
	t.Helper()
	seen := map[[32]byte]bool{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			isModel := d.Name() == "model.onnx"
			isPB := strings.HasSuffix(d.Name(), ".pb") && strings.HasPrefix(filepath.Base(filepath.Dir(path)), "test_data_set_")
			if !isModel && !isPB {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			if seen[h] {
				if isModel {
					dups++
				}
				return nil
			}
			seen[h] = true
			if isModel {
				models = append(models, path)
			} else {
				tensors = append(tensors, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(models)
	sort.Strings(tensors)
	return models, tensors, dups
}

func TestConformanceModels(t *testing.T) {
	roots := conformanceRoots()
	if len(roots) == 0 {
		t.Skip("no ONNX backend test data: run tools/gen_conformance.sh (make test does) or set ONNXPOST_ONNX_TESTDATA")
	}
	models, _, dups := conformanceFiles(t, roots)
	if len(models) == 0 {
		t.Fatalf("no model.onnx under %v", roots)
	}
	tmp := fastTempDir(t)
	inits := 0
	for k, path := range models {
		m, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		// inline: Load → Save → Load is proto.Equal
		out := filepath.Join(tmp, strconv.Itoa(k)+".onnx")
		if err := m.Save(out, &SaveOptions{External: ExternalNever}); err != nil {
			t.Errorf("%s: save inline: %v", path, err)
			continue
		}
		back, err := Load(out)
		if err != nil {
			t.Errorf("%s: reload inline: %v", path, err)
			continue
		}
		if !m.Equal(back) {
			t.Errorf("%s: inline round trip is not proto.Equal", path)
		}
		// weight discovery and matching work on every model (and a model
		// matches its own round trip)
		if _, err := m.Weights(); err != nil {
			t.Errorf("%s: Weights: %v", path, err)
		}
		if _, err := Match(m, back); err != nil {
			t.Errorf("%s: does not match its round trip: %v", path, err)
		}
		// external: every initializer of 1 byte or more goes to the data file
		ext := filepath.Join(tmp, strconv.Itoa(k)+"-ext.onnx")
		if err := m.Save(ext, &SaveOptions{External: ExternalAlways, Threshold: 1, Align: 64}); err != nil {
			t.Errorf("%s: save external: %v", path, err)
			continue
		}
		eback, err := Load(ext)
		if err != nil {
			t.Errorf("%s: reload external: %v", path, err)
			continue
		}
		if got, want := eback.Initializers(), m.Initializers(); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Errorf("%s: external round trip changed the initializers: %q vs %q", path, got, want)
			continue
		}
		for _, name := range m.Initializers() {
			inits++
			a, err1 := m.Initializer(name)
			b, err2 := eback.Initializer(name)
			if err1 != nil || err2 != nil {
				t.Errorf("%s: initializer %q: %v / %v", path, name, err1, err2)
				continue
			}
			if a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || !bytes.Equal(a.Bytes(), b.Bytes()) || !equalStrings(a.Strings, b.Strings) {
				t.Errorf("%s: initializer %q differs after the external round trip", path, name)
			}
		}
		os.Remove(out)
		if locs, err := DataFiles(ext); err == nil {
			for _, l := range locs {
				os.Remove(filepath.Join(filepath.Dir(ext), l))
			}
		}
		os.Remove(ext)
	}
	t.Logf("conformance: %d distinct model.onnx files (%d duplicates skipped) from %v round-tripped inline and with external data (%d initializers compared)", len(models), dups, roots, inits)
}

// fastTempDir returns a temporary folder on /dev/shm when it exists (Save
// fsyncs every file it writes: on a tmpfs that costs nothing, which keeps the
// thousand-model round trip fast on a busy disk), else t.TempDir().
func fastTempDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "onnxio-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func equalStrings(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// conformanceOracle is run by pyoracle. argv: list file, re-encoded folder,
// output folder. For each tensor file i (line i of the list) it decides from
// the test's model.onnx whether the file is a TensorProto (sequences,
// optionals and maps are skipped), reads it with onnx.numpy_helper, writes
// the values (float64, or raw bytes for complex and 64-bit integers, or the
// strings in hex), and reads back the re-encoded file <re>/<i>.pb that Go
// wrote to check it holds the same dtype, shape and bytes.
const conformanceOracle = `
import json, os, sys
import numpy as np
import onnx
from onnx import numpy_helper

lst, re_dir, out_dir = sys.argv[1:4]
models = {}
def kinds(model_path):
    if model_path not in models:
        try:
            m = onnx.load(model_path, load_external_data=False)
            inits = {t.name for t in m.graph.initializer}
            ins = [v.type.WhichOneof("value") for v in m.graph.input if v.name not in inits]
            outs = [v.type.WhichOneof("value") for v in m.graph.output]
            models[model_path] = (ins, outs)
        except Exception:
            models[model_path] = None
    return models[model_path]

def is_tensor(path):
    base = os.path.basename(path)
    k = kinds(os.path.join(os.path.dirname(os.path.dirname(path)), "model.onnx"))
    if k is None:
        return False
    for prefix, lst_ in (("input_", k[0]), ("output_", k[1])):
        if base.startswith(prefix):
            try:
                j = int(base[len(prefix):-3])
            except ValueError:
                return False
            return j < len(lst_) and lst_[j] == "tensor_type"
    return False

def payload(t, arr):
    if t.data_type == onnx.TensorProto.STRING:
        return {"strings": [(s if isinstance(s, bytes) else str(s).encode()).hex() for s in arr.flatten()]}
    if t.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128, onnx.TensorProto.INT64, onnx.TensorProto.UINT64):
        return {"raw": np.ascontiguousarray(arr).tobytes().hex()}
    return None

with open(lst) as f, open(os.path.join(out_dir, "manifest.jsonl"), "w") as out:
    for i, path in enumerate(l.rstrip("\n") for l in f):
        rec = {"i": i}
        if not is_tensor(path):
            rec["skip"] = "not a tensor"
            out.write(json.dumps(rec) + "\n")
            continue
        t = onnx.TensorProto()
        with open(path, "rb") as g:
            t.ParseFromString(g.read())
        if t.data_location == onnx.TensorProto.EXTERNAL:
            rec["skip"] = "external data"
            out.write(json.dumps(rec) + "\n")
            continue
        arr = numpy_helper.to_array(t)
        rec["dtype"] = t.data_type
        rec["shape"] = list(arr.shape)
        p = payload(t, arr)
        if p is None:
            arr.astype(np.float64).astype("<f8").tofile(os.path.join(out_dir, "%d.f64" % i))
        else:
            rec.update(p)
        re_path = os.path.join(re_dir, "%d.pb" % i)
        if os.path.exists(re_path):
            t2 = onnx.TensorProto()
            with open(re_path, "rb") as g:
                t2.ParseFromString(g.read())
            arr2 = numpy_helper.to_array(t2)
            if t2.data_type != t.data_type or arr2.dtype != arr.dtype or arr2.shape != arr.shape:
                rec["reencode"] = "type %d %s %s vs %d %s %s" % (t2.data_type, arr2.dtype, arr2.shape, t.data_type, arr.dtype, arr.shape)
            elif t.data_type == onnx.TensorProto.STRING:
                rec["reencode"] = "ok" if list(arr2.flatten()) == list(arr.flatten()) else "strings differ"
            else:
                rec["reencode"] = "ok" if np.ascontiguousarray(arr2).tobytes() == np.ascontiguousarray(arr).tobytes() else "values differ"
        out.write(json.dumps(rec) + "\n")
`

type oracleRecord struct {
	I        int      `json:"i"`
	Skip     string   `json:"skip"`
	DType    int32    `json:"dtype"`
	Shape    []int64  `json:"shape"`
	Strings  []string `json:"strings"`
	Raw      *string  `json:"raw"`
	Reencode string   `json:"reencode"`
}

func TestConformanceTensors(t *testing.T) {
	roots := conformanceRoots()
	if len(roots) == 0 {
		t.Skip("no ONNX backend test data: run tools/gen_conformance.sh (make test does) or set ONNXPOST_ONNX_TESTDATA")
	}
	pyoracle.Python(t)
	_, files, _ := conformanceFiles(t, roots)
	if len(files) == 0 {
		t.Fatalf("no test_data_set_*/*.pb under %v", roots)
	}
	tmp := t.TempDir()
	reDir, outDir := filepath.Join(tmp, "re"), filepath.Join(tmp, "out")
	os.Mkdir(reDir, 0o755)
	os.Mkdir(outDir, 0o755)
	parsed := make([]*Tensor, len(files))
	parseErr := make([]error, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parsed[i], parseErr[i] = ParseTensor(b) // any file: must not panic
		if parseErr[i] != nil {
			continue
		}
		enc, err := MarshalTensor(parsed[i])
		if err != nil {
			t.Errorf("%s: MarshalTensor: %v", f, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(reDir, strconv.Itoa(i)+".pb"), enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list := filepath.Join(tmp, "list.txt")
	if err := os.WriteFile(list, []byte(strings.Join(files, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pyoracle.Run(t, conformanceOracle, list, reDir, outDir)
	man, err := os.ReadFile(filepath.Join(outDir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var checked, skipped, values int
	byType := map[DType]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(man), []byte("\n")) {
		var r oracleRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		f := files[r.I]
		if r.Skip != "" {
			skipped++
			continue
		}
		checked++
		tt := parsed[r.I]
		if parseErr[r.I] != nil {
			t.Errorf("%s: ParseTensor: %v", f, parseErr[r.I])
			continue
		}
		byType[tt.DType]++
		if int32(tt.DType) != r.DType || !slices.Equal(tt.Shape, r.Shape) {
			t.Errorf("%s: got %v %v, numpy says dtype %d shape %v", f, tt.DType, tt.Shape, r.DType, r.Shape)
			continue
		}
		if r.Reencode != "ok" {
			t.Errorf("%s: re-encoded tensor read by numpy_helper: %s", f, r.Reencode)
		}
		switch {
		case r.Strings != nil || tt.DType == String:
			if len(r.Strings) != len(tt.Strings) {
				t.Errorf("%s: %d strings, numpy has %d", f, len(tt.Strings), len(r.Strings))
				continue
			}
			for k, s := range r.Strings {
				if hex.EncodeToString(tt.Strings[k]) != s {
					t.Errorf("%s: string %d differs", f, k)
				}
			}
			values += len(r.Strings)
		case r.Raw != nil:
			raw, _ := hex.DecodeString(*r.Raw)
			if !bytes.Equal(raw, tt.Bytes()) {
				t.Errorf("%s: %v bytes differ from numpy's", f, tt.DType)
			}
			values += int(tt.NumElements())
		default:
			ref, err := os.ReadFile(filepath.Join(outDir, strconv.Itoa(r.I)+".f64"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := tt.Float64()
			if err != nil {
				t.Errorf("%s: Float64: %v", f, err)
				continue
			}
			if len(ref) != 8*len(got) {
				t.Errorf("%s: %d values, numpy has %d", f, len(got), len(ref)/8)
				continue
			}
			bad := 0
			for k, g := range got {
				w := math.Float64frombits(binary.LittleEndian.Uint64(ref[8*k:]))
				if !sameFloat(g, w) {
					if bad < 3 {
						t.Errorf("%s: value %d: got %v, numpy %v", f, k, g, w)
					}
					bad++
				}
			}
			values += len(got)
		}
	}
	t.Logf("conformance: %d distinct .pb files; %d TensorProto files (%d values) decoded and re-encoded against numpy_helper, %d non-tensor files (sequences, optionals, maps) skipped; by dtype: %v", len(files), checked, values, skipped, byType)
	if checked == 0 {
		t.Error("no tensor was checked")
	}
}

// sameFloat reports whether a and b are the same value: both NaN, or equal
// with the same sign (so -0 differs from +0).
func sameFloat(a, b float64) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return a == b && math.Signbit(a) == math.Signbit(b)
}

// TestSavedModelsReadByOnnx: what Save writes, inline and with external
// data, is read by onnx (onnx.load with its external-data loader and
// onnx.checker) with the same tensor bytes as onnxio's, and ONNX Runtime
// computes the same outputs from both files.
func TestSavedModelsReadByOnnx(t *testing.T) {
	pyoracle.Python(t)
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	dir := t.TempDir()
	inline := filepath.Join(dir, "inline.onnx")
	ext := filepath.Join(dir, "ext.onnx")
	if err := m.Save(inline, &SaveOptions{External: ExternalNever}); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(ext, &SaveOptions{External: ExternalAlways, Threshold: 100}); err != nil {
		t.Fatal(err)
	}
	const script = `
import hashlib, sys
import onnx
from onnx import numpy_helper
for path in sys.argv[1:]:
    onnx.checker.check_model(path)
    m = onnx.load(path)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        print(path, t.name, t.data_type, list(a.shape), hashlib.sha256(a.tobytes()).hexdigest())
# ONNX Runtime gives the same outputs from the inline and the external file
import numpy as np
import onnxruntime as ort
rng = np.random.default_rng(0)
feeds = {"X": rng.standard_normal((2, 8), dtype=np.float32), "ids": rng.integers(0, 10, (2, 3)),
         "img": rng.standard_normal((2, 4, 8, 8), dtype=np.float32)}
outs = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, feeds) for p in sys.argv[1:]]
for a, b in zip(outs[0], outs[1]):
    if a.shape != b.shape or a.tobytes() != b.tobytes() or not np.isfinite(a).all():
        sys.exit("onnxruntime outputs differ between the inline and the external-data model")
`
	out := pyoracle.Run(t, script, inline, ext)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2*len(m.Initializers()) {
		t.Fatalf("onnx saw %d initializers, want %d:\n%s", len(lines), 2*len(m.Initializers()), out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		name := f[1]
		tt, err := m.Initializer(name)
		if err != nil {
			t.Fatalf("%s: onnx reads an initializer %q that onnxio does not have", f[0], name)
		}
		sum := sha256.Sum256(tt.Bytes())
		if f[2] != strconv.Itoa(int(tt.DType)) || hex.EncodeToString(sum[:]) != f[len(f)-1] {
			t.Errorf("%s: %s differs as read by onnx (%s)", filepath.Base(f[0]), name, line)
		}
	}
}
