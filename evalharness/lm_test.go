package evalharness

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// lmOracle computes masked next-token perplexity and token accuracy with
// ONNX Runtime's Python API and numpy, written from the definition: the
// logits at t predict the token at t+1 (labels[t+1] when the dataset has
// labels, entries -100 ignored, else input_ids[t+1]); position t counts
// when attention_mask[t] and [t+1] are both 1. Inputs the dataset lacks
// get the exporters' defaults: empty past_key_values, use_cache_branch
// false, position_ids from the mask. With a third argument it first
// writes a copy of the dataset with labels (input_ids, every 7th -100) and
// measures that.
const lmOracle = `
import sys, json, numpy as np, onnxruntime as ort
model, data = sys.argv[1], sys.argv[2]
d = dict(np.load(data))
if len(sys.argv) > 3:
    lab = d["input_ids"].copy()
    lab.reshape(-1)[::7] = -100
    d["labels"] = lab
    np.savez(sys.argv[3], **d)
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
ids, mask = d["input_ids"], d["attention_mask"]
lab = d.get("labels")
nll, cnt, hit = 0.0, 0, 0
for b in range(0, len(ids), 32):
    i, m = ids[b:b+32], mask[b:b+32]
    feed = {}
    for x in s.get_inputs():
        if x.name == "input_ids": feed[x.name] = i
        elif x.name == "attention_mask": feed[x.name] = m
        elif x.name == "position_ids": feed[x.name] = np.maximum(np.cumsum(m, 1) - 1, 0)
        elif x.name == "use_cache_branch": feed[x.name] = np.zeros([1], bool)
        else: feed[x.name] = np.zeros([len(i), x.shape[1], 0, x.shape[3]], np.float32)
    lg = s.run(["logits"], feed)[0].astype(np.float64)[:, :-1]
    lp = lg - lg.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    tgt = (lab[b:b+32] if lab is not None else i)[:, 1:]
    use = (m[:, :-1] == 1) & (m[:, 1:] == 1) & (tgt != -100)
    t = np.where(use, tgt, 0)
    nll -= np.take_along_axis(lp, t[..., None], -1)[..., 0][use].sum()
    hit += int(((lg.argmax(-1) == t) & use).sum())
    cnt += int(use.sum())
print(json.dumps({"perplexity": float(np.exp(nll / cnt)), "token_accuracy": hit / cnt, "positions": cnt}))
`

// TestLMPerplexityMatchesOracle checks eval's perplexity and token accuracy
// on the zoo language model's three exports (plain; KV cache with empty
// past fed; Optimum's merged decoder with an If on use_cache_branch)
// against an independent numpy computation from ONNX Runtime's logits,
// within 1e-6 relative (the contract asks 1e-4), on a dataset with padded
// windows, with and without a labels array holding -100. With the zoo
// generator's own oracle (tools/lm_perplexity.py) present, it must agree
// too.
func TestLMPerplexityMatchesOracle(t *testing.T) {
	root := pyoracle.RepoRoot()
	data := filepath.Join(root, "models", "data", "lm_fortunes_test.npz")
	if _, err := os.Stat(data); err != nil {
		t.Skipf("zoo language model datasets missing (make zoo-lm): %v", err)
	}
	requireORT(t)
	pyoracle.Python(t)
	tool := filepath.Join(root, "tools", "lm_perplexity.py")
	for _, name := range []string{"base", "base_kv", "base_merged"} {
		model := filepath.Join(root, "models", "zoo", "lm", name+".onnx")
		if _, err := os.Stat(model); err != nil {
			t.Skipf("zoo language model missing (make zoo-lm): %v", err)
		}
		t.Run(name, func(t *testing.T) {
			labeled := filepath.Join(t.TempDir(), "labeled.npz")
			for _, tc := range []struct {
				name string
				args []string
				data string
			}{
				{"input_ids targets", []string{model, data}, data},
				{"labels with -100", []string{model, data, labeled}, labeled},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var want struct {
						Perplexity    float64 `json:"perplexity"`
						TokenAccuracy float64 `json:"token_accuracy"`
						Positions     int64   `json:"positions"`
					}
					if err := json.Unmarshal(pyoracle.Run(t, lmOracle, tc.args...), &want); err != nil {
						t.Fatal(err)
					}
					ds, err := LoadDataset(tc.data)
					if err != nil {
						t.Fatal(err)
					}
					s, err := NewSessionFromFile(model, SessionOptions{})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Metrics: []string{MetricPerplexity, MetricTokenAcc}, Batch: 64})
					if err != nil {
						t.Fatal(err)
					}
					got := res.Metrics[MetricPerplexity]
					t.Logf("%s: perplexity %.10g, oracle %.10g (%d positions); token accuracy %.6f, oracle %.6f", name, got, want.Perplexity, want.Positions, res.Metrics[MetricTokenAcc], want.TokenAccuracy)
					if rel := math.Abs(got-want.Perplexity) / want.Perplexity; !(rel <= 1e-6) {
						t.Errorf("perplexity %.10g, oracle %.10g (relative difference %.3g)", got, want.Perplexity, rel)
					}
					if d := math.Abs(res.Metrics[MetricTokenAcc] - want.TokenAccuracy); !(d <= 1e-9) {
						t.Errorf("token accuracy %.9f, oracle %.9f", res.Metrics[MetricTokenAcc], want.TokenAccuracy)
					}
					if _, err := os.Stat(tool); err != nil {
						return
					}
					var z struct {
						Perplexity float64 `json:"perplexity"`
					}
					out := pyoracle.Run(t, "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')", tool, model, tc.data, "--json")
					if err := json.Unmarshal(out, &z); err != nil {
						t.Fatalf("%s: %v (%s)", tool, err, out)
					}
					if rel := math.Abs(got-z.Perplexity) / z.Perplexity; !(rel <= 1e-6) {
						t.Errorf("perplexity %.10g, %s says %.10g (relative difference %.3g)", got, tool, z.Perplexity, rel)
					}
				})
			}
		})
	}
}
