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
	"github.com/onnxpost/onnxpost/onnxio"
)

// captureOracle is a numpy implementation, written from the definitions:
// it exposes each weight consumer's input (found by scanning the graph) as
// an output, runs ONNX Runtime's Python API over the whole dataset, and
// computes XᵀX (Conv through an im2col built from strided slices), plus
// min/max/histograms of the requested tensors.
const captureOracleMain = `
import json
for case in json.loads(sys.argv[1]):
    oracle(*case)
`

const captureOracleFunc = `
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import helper
def oracle(model_path, data_path, out_path, weights, tensors, bins):
  weights = [w for w in weights.split(",") if w]
  tensors = [t for t in tensors.split(",") if t]
  bins = int(bins)
  m = onnx.load(model_path)
  g = m.graph
  graph_inputs = {i.name for i in g.input}
  consumer = {}
  for node in g.node:
      for w in weights:
          if len(node.input) > 1 and node.input[1] == w:
              consumer[w] = node
  fetch = sorted({consumer[w].input[0] for w in weights} | set(tensors))
  fetch = [f for f in fetch if f not in graph_inputs]
  for f in fetch:
      g.output.append(helper.make_tensor_value_info(f, onnx.TensorProto.FLOAT, None))
  so = ort.SessionOptions(); so.intra_op_num_threads = 1
  s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
  d = np.load(data_path)
  feed = {i.name: d[i.name] for i in s.get_inputs()}
  vals = dict(zip(fetch, s.run(fetch, feed))) if fetch else {}
  vals.update(feed)
  out = {}
  for w in weights:
      node = consumer[w]
      x = vals[node.input[0]].astype(np.float64)
      attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
      if node.op_type == "Conv":
          W = [i for i in g.initializer if i.name == w][0]
          if len(W.dims) == 3:  # 1-D: a 2-D conv of height 1
              O, C, kw = W.dims; kh = 1; x = x[:, :, None, :]
              sh, sw = 1, attrs.get("strides", [1])[0]; dh, dw = 1, attrs.get("dilations", [1])[0]
              pt, pb = 0, 0; pl, pr = attrs.get("pads", [0, 0])
          else:
              O, C, kh, kw = W.dims
              sh, sw = attrs.get("strides", [1, 1]); dh, dw = attrs.get("dilations", [1, 1])
              pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
          xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
          H, Wd = xp.shape[2], xp.shape[3]
          OH = (H - (kh - 1) * dh - 1) // sh + 1; OW = (Wd - (kw - 1) * dw - 1) // sw + 1
          cols = np.empty((x.shape[0], C, kh, kw, OH, OW))
          for i in range(kh):
              for j in range(kw):
                  cols[:, :, i, j] = xp[:, :, i*dh : i*dh + sh*(OH-1) + 1 : sh, j*dw : j*dw + sw*(OW-1) + 1 : sw]
          X = cols.transpose(0, 4, 5, 1, 2, 3).reshape(-1, C * kh * kw)
      elif node.op_type == "Gemm" and attrs.get("transA", 0):
          X = x.T
      else:
          X = x.reshape(-1, x.shape[-1])
      out["gram_" + w] = X.T @ X
      out["n_" + w] = np.array([X.shape[0]])
  for t in tensors:
      v = vals[t].astype(np.float64).ravel()
      out["min_" + t] = np.array([v.min()]); out["max_" + t] = np.array([v.max()])
      if bins:
          out["hist_" + t] = np.histogram(v, bins=bins, range=(v.min(), v.max()))[0].astype(np.int64)
  np.savez(out_path, **out)
`

func TestCaptureMatchesNumpy(t *testing.T) {
	requireORT(t)
	pyoracle.Python(t)
	// Small im2col chunks: several per batch, ending on partial chunks.
	defer func(n int) { im2colChunkElems = n }(im2colChunkElems)
	im2colChunkElems = 997
	type tc struct {
		model, data string
		grams       []string // nil: every MatMul.B/Gemm.B/Conv.W of group 1
		tensors     []string
		st          *Stats
		oracle      string
	}
	cases := []*tc{
		{model: testdata("mlp.onnx"), data: testdata("mlp_data.npz"), grams: []string{"w1", "w2"}, tensors: []string{"x", "h1", "logits"}},
		{model: testdata("cnn.onnx"), data: testdata("cnn_data.npz"), grams: []string{"c1", "c2", "w3"}, tensors: []string{"a2", "a3"}},
		// strided, dilated, asymmetrically padded 2-D Conv; 1-D Conv; Gemm transA
		{model: testdata("misc.onnx"), data: testdata("misc_data.npz"), grams: []string{"cm", "k1", "wg"}, tensors: []string{"a1", "s1", "xt"}},
	}
	root := pyoracle.RepoRoot()
	for _, fam := range []string{"cnn", "transformer"} {
		p := filepath.Join(root, "models", "zoo", fam, "base.onnx")
		if _, err := os.Stat(p); err == nil {
			cases = append(cases, &tc{model: p, data: filepath.Join(root, "models", "data", "digits_clean_test.npz")})
		}
	}
	const bins = 32
	tmp := t.TempDir()
	var jobs [][]any
	for k, c := range cases {
		m, err := onnxio.Load(c.model)
		if err != nil {
			t.Fatal(err)
		}
		m.EnsureNodeNames()
		if c.grams == nil {
			ws, _ := m.Weights()
			for _, w := range ws {
				if (w.Role == onnxio.RoleMatMulB || w.Role == onnxio.RoleGemmB || w.Role == onnxio.RoleConvW && w.Group <= 1) && len(w.Via) == 0 {
					c.grams = append(c.grams, w.Name)
				}
			}
		}
		ds, err := LoadDataset(c.data)
		if err != nil {
			t.Fatal(err)
		}
		if ds.N > 96 {
			// Keep the test fast: the first 96 samples, shared with the
			// oracle through a temporary file.
			ds = ds.Head(96)
			c.data = filepath.Join(tmp, fmtInt(k)+"-head.npz")
			if err := WriteNPZ(c.data, ds.Inputs); err != nil {
				t.Fatal(err)
			}
		}
		if c.st, err = Capture(context.Background(), m, ds, CaptureOptions{Grams: c.grams, Tensors: c.tensors, Bins: bins, Batch: 17, Session: SessionOptions{Threads: 1}}); err != nil {
			t.Fatal(err)
		}
		// The oracle reads the model as saved (node names ensured).
		mp := filepath.Join(tmp, fmtInt(k)+".onnx")
		if err := m.Save(mp, nil); err != nil {
			t.Fatal(err)
		}
		c.oracle = filepath.Join(tmp, fmtInt(k)+"-oracle.npz")
		jobs = append(jobs, []any{mp, c.data, c.oracle, strings.Join(c.grams, ","), strings.Join(c.tensors, ","), bins})
	}
	arg, _ := json.Marshal(jobs)
	pyoracle.Run(t, captureOracleFunc+captureOracleMain, string(arg))
	for _, c := range cases {
		t.Run(filepath.Base(filepath.Dir(c.model))+"/"+filepath.Base(c.model), func(t *testing.T) {
			st := c.st
			want, err := ReadNPZ(c.oracle)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.grams {
				got, d, n, err := st.InputGram(w)
				if err != nil {
					t.Fatal(err)
				}
				wg, _ := want["gram_"+w].Float64()
				wn, _ := want["n_"+w].Int64()
				if d*d != len(wg) || n != wn[0] {
					t.Errorf("%s: d=%d n=%d, numpy %d values n=%d", w, d, n, len(wg), wn[0])
					continue
				}
				scale := 0.0
				for _, v := range wg {
					scale = math.Max(scale, math.Abs(v))
				}
				worst := 0.0
				for i := range got {
					worst = math.Max(worst, math.Abs(got[i]-wg[i]))
				}
				if worst > 1e-9*math.Max(scale, 1) {
					t.Errorf("%s: Gram differs from numpy's by %.3g (scale %.3g)", w, worst, scale)
				}
				sq, _, _ := st.SquaredColumnNorms(w)
				if !near(sq[0], wg[0], 1e-9*math.Max(scale, 1)) {
					t.Errorf("%s: column norm² %v, numpy %v", w, sq[0], wg[0])
				}
				t.Logf("%s: d=%d n=%d, max |ΔG| %.2g of %.3g", w, d, n, worst, scale)
			}
			for _, name := range c.tensors {
				ts, ok := st.Tensor(name)
				if !ok {
					t.Fatalf("no stats for %s", name)
				}
				mn, _ := want["min_"+name].Float64()
				mx, _ := want["max_"+name].Float64()
				if ts.Min != mn[0] || ts.Max != mx[0] {
					t.Errorf("%s: range [%v, %v], numpy [%v, %v]", name, ts.Min, ts.Max, mn[0], mx[0])
				}
				wh, _ := want["hist_"+name].Int64()
				for i := range wh {
					if ts.Hist.Counts[i] != wh[i] {
						t.Errorf("%s: histogram %v, numpy %v", name, ts.Hist.Counts, wh)
						break
					}
				}
			}
		})
	}
}

func TestCaptureErrors(t *testing.T) {
	requireORT(t)
	m, err := onnxio.Load(testdata("mlp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds := loadData(t, "mlp_data.npz")
	for _, c := range []struct {
		grams []string
		want  string
	}{
		{[]string{"nope"}, "not a weight"},
		{[]string{"b1"}, "role bias"},
	} {
		if _, err := Capture(context.Background(), m, ds, CaptureOptions{Grams: c.grams}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.grams, err, c.want)
		}
	}
	st, err := Capture(context.Background(), m, ds, CaptureOptions{Grams: []string{"w1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := st.InputGram("w2"); err == nil {
		t.Error("InputGram of an uncaptured weight: no error")
	}
}
