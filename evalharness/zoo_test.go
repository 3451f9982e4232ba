package evalharness

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// zooModels returns the digit classifiers of the zoo that have PyTorch
// golden outputs.
func zooModels(t *testing.T) (models []string, data string) {
	root := pyoracle.RepoRoot()
	data = filepath.Join(root, "models", "data", "digits_clean_test.npz")
	models, _ = filepath.Glob(filepath.Join(root, "models", "zoo", "*", "*.onnx"))
	var with []string
	for _, m := range models {
		if filepath.Base(filepath.Dir(m)) == "lm" {
			continue // the language model has its own test (TestLMPerplexityMatchesOracle)
		}
		if _, err := os.Stat(strings.TrimSuffix(m, ".onnx") + ".golden.npz"); err == nil {
			with = append(with, m)
		}
	}
	if len(with) == 0 {
		t.Skip("no zoo models with golden outputs (run `make zoo`)")
	}
	if _, err := os.Stat(data); err != nil {
		t.Skipf("zoo dataset missing: %v", err)
	}
	return with, data
}

// TestZooMatchesPyTorch checks, for every zoo model, that onnxpost's logits
// and accuracy on the digits test set equal PyTorch's (the .golden.npz the
// zoo generator saved) within 1e-5, and the accuracy computed from them.
func TestZooMatchesPyTorch(t *testing.T) {
	models, data := zooModels(t)
	requireORT(t)
	ds, err := LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range models {
		rel, _ := filepath.Rel(pyoracle.RepoRoot(), m)
		t.Run(rel, func(t *testing.T) {
			s, err := NewSessionFromFile(m, SessionOptions{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Metrics: []string{MetricAccuracy}, Batch: 50, KeepOutputs: true})
			if err != nil {
				t.Fatal(err)
			}
			golden, err := ReadNPZ(strings.TrimSuffix(m, ".onnx") + ".golden.npz")
			if err != nil {
				t.Fatal(err)
			}
			want, err := golden["logits"].Float64()
			if err != nil {
				t.Fatal(err)
			}
			got, err := res.Outputs[0].Float64()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d logits, PyTorch %d", len(got), len(want))
			}
			worst := 0.0
			for i := range got {
				worst = math.Max(worst, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
			}
			if worst > 1e-5 {
				t.Errorf("logits differ from PyTorch's by up to %.3g (relative to max(1,|x|))", worst)
			}
			ga, _ := golden["accuracy"].Float64()
			if d := math.Abs(res.Metrics[MetricAccuracy] - ga[0]); d > 1e-5 {
				t.Errorf("accuracy %.6f, PyTorch %.6f", res.Metrics[MetricAccuracy], ga[0])
			}
			t.Logf("accuracy %.4f (PyTorch %.4f), logits within %.2g", res.Metrics[MetricAccuracy], ga[0], worst)
		})
	}
}

// TestZooMatchesPythonORT compares onnxpost's logits with those of ONNX
// Runtime's Python API on the same models and data.
func TestZooMatchesPythonORT(t *testing.T) {
	models, data := zooModels(t)
	pyoracle.Python(t)
	requireORT(t)
	ds, err := LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := pyoracle.Run(t, `
import json, sys, numpy as np, onnxruntime as ort
data, out = sys.argv[1], sys.argv[2]
d = np.load(data)
res = {}
for i, m in enumerate(sys.argv[3:]):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    s = ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
    feed = {x.name: d[x.name] for x in s.get_inputs()}
    y = s.run(None, feed)[0]
    np.save(out + "/%d.npy" % i, y)
    res[m] = float((y.argmax(-1) == d["labels"]).mean())
json.dump(res, sys.stdout)
`, append([]string{data, dir}, models...)...)
	var acc map[string]float64
	if err := json.Unmarshal(out, &acc); err != nil {
		t.Fatal(err)
	}
	for i, m := range models {
		s, err := NewSessionFromFile(m, SessionOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Metrics: []string{MetricAccuracy}, Batch: 64, KeepOutputs: true})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, fmtInt(i)+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := readNPYFile(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := a.Float64()
		got, _ := res.Outputs[0].Float64()
		worst := 0.0
		for k := range got {
			worst = math.Max(worst, math.Abs(got[k]-want[k])/math.Max(1, math.Abs(want[k])))
		}
		if worst > 1e-5 || res.Metrics[MetricAccuracy] != acc[m] {
			t.Errorf("%s: logits within %.3g, accuracy %.6f vs Python ORT %.6f", m, worst, res.Metrics[MetricAccuracy], acc[m])
		}
	}
}

// TestZooFidelityMatchesNumpy compares every fidelity and label metric of
// a fine-tuned zoo model against its base with numpy's computation from
// the definitions, on ONNX Runtime (Python) outputs.
func TestZooFidelityMatchesNumpy(t *testing.T) {
	root := pyoracle.RepoRoot()
	base := filepath.Join(root, "models", "zoo", "cnn", "base.onnx")
	ft := filepath.Join(root, "models", "zoo", "cnn", "ft_shift.onnx")
	data := filepath.Join(root, "models", "data", "digits_shift_val.npz")
	for _, p := range []string{base, ft, data} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("zoo absent: %v", err)
		}
	}
	requireORT(t)
	out := pyoracle.Run(t, `
import json, sys, numpy as np, onnxruntime as ort
cand, ref, data = sys.argv[1:4]
d = np.load(data)
def run(m):
    s = ort.InferenceSession(m, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: d[i.name] for i in s.get_inputs()})[0].astype(np.float64)
c, r, y = run(cand), run(ref), d["labels"]
def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True)); return e / e.sum(1, keepdims=True)
p, q = softmax(r), softmax(c)
rank = (c > c[np.arange(len(y)), y][:, None]).sum(1)
rrank = (r > r[np.arange(len(y)), y][:, None]).sum(1)
json.dump({
  "accuracy": float((rank == 0).mean()), "top5": float((rank < 5).mean()),
  "ref_accuracy": float((rrank == 0).mean()),
  "agreement": float((c.argmax(1) == r.argmax(1)).mean()),
  "kl": float((p * (np.log(p) - np.log(q))).sum(1).mean()),
  "cosine": float(((c * r).sum(1) / np.linalg.norm(c, axis=1) / np.linalg.norm(r, axis=1)).mean()),
  "mse": float(((c - r) ** 2).mean()), "max_abs": float(np.abs(c - r).max()),
}, sys.stdout)
`, ft, base, data)
	var want map[string]float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	cand, err := NewSessionFromFile(ft, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cand.Close()
	ref, err := NewSessionFromFile(base, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	ds, err := LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), cand, ref, ds, EvalOptions{Metrics: []string{"accuracy", "top5", "agreement", "kl", "cosine", "mse", "max_abs"}, Batch: 50})
	if err != nil {
		t.Fatal(err)
	}
	want["ref_accuracy"], res.Metrics["ref_accuracy"] = want["ref_accuracy"], res.Reference.Metrics["accuracy"]
	for k, w := range want {
		g := res.Metrics[k]
		// Outputs of two ONNX Runtime builds agree to float32 rounding.
		if math.Abs(g-w) > 1e-5*math.Max(1, math.Abs(w)) {
			t.Errorf("%s = %.9g, numpy %.9g", k, g, w)
		}
	}
	t.Logf("%v", res.Metrics)
}

// TestZooTestDataFolder evaluates the zoo MLP on its ONNX test-data folder
// (written by the PyTorch exporter's side): the expected outputs serve as
// the reference.
func TestZooTestDataFolder(t *testing.T) {
	root := pyoracle.RepoRoot()
	dir := filepath.Join(root, "models", "zoo", "mlp", "test_data")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("zoo absent: %v", err)
	}
	s := openSessionPath(t, filepath.Join(root, "models", "zoo", "mlp", "base.onnx"))
	ds, err := LoadDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Metrics: []string{"max_abs", "agreement"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Metrics["max_abs"] > 1e-4 || res.Metrics["agreement"] != 1 {
		t.Errorf("against the folder's expected outputs: %v", res.Metrics)
	}
}

func openSessionPath(t *testing.T, path string) *Session {
	t.Helper()
	requireORT(t)
	s, err := NewSessionFromFile(path, SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
