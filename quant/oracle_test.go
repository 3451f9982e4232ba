package quant

import (
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// runOracle writes in as JSON, runs script with its path and decodes the
// script's JSON stdout into out.
func runOracle(t *testing.T, script string, in any, out any) {
	t.Helper()
	pyoracle.Python(t)
	p := filepath.Join(t.TempDir(), "in.json")
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(pyoracle.Run(t, script, p), out); err != nil {
		t.Fatal(err)
	}
}

// Independent numpy implementation of ONNX Runtime's int8 weight scheme
// (quant_utils: range widened to 0, symmetric int8 → [-127, 127], zero
// point round(qmin − rmin/scale), round half to even).
const int8Oracle = `
import json, sys, numpy as np
d = json.load(open(sys.argv[1]))
w = np.array(d["w"], dtype=np.float32).reshape(d["shape"])
sym, axis = d["sym"], d["axis"]
qmin, qmax = (-127, 127) if sym else (-128, 127)
def params(x):
    rmin = min(float(x.min()), 0.0); rmax = max(float(x.max()), 0.0)
    if sym:
        a = max(abs(rmin), abs(rmax)); rmin, rmax = -a, a
    s = np.float32((rmax - rmin) / (qmax - qmin))
    if s == 0:
        return np.float32(1), 0
    z = 0 if sym else int(np.clip(np.round(qmin - rmin / np.float64(s)), qmin, qmax))
    return s, z
if axis < 0:
    s, z = params(w)
    S = np.full([1] * w.ndim, s, np.float32); Z = np.full([1] * w.ndim, z)
    scales, zps = [float(s)], [z]
else:
    moved = np.moveaxis(w, axis, 0)
    ps = [params(moved[c]) for c in range(moved.shape[0])]
    shp = [1] * w.ndim; shp[axis] = -1
    S = np.array([p[0] for p in ps], np.float32).reshape(shp)
    Z = np.array([p[1] for p in ps]).reshape(shp)
    scales, zps = [float(p[0]) for p in ps], [p[1] for p in ps]
q = np.clip(np.round(w.astype(np.float64) / S.astype(np.float64)) + Z, qmin, qmax).astype(np.int64)
deq = ((q - Z).astype(np.float32) * S).astype(np.float32)
print(json.dumps({"q": q.reshape(-1).tolist(), "scales": scales, "zps": zps, "deq": deq.reshape(-1).tolist()}))
`

// oracleBatch runs one oracle script over many cases in a single Python
// process (interpreter and onnxruntime start-up dominate the cost): each
// case is written to a file, the script is executed with that file as
// sys.argv[1], and its printed JSON is handed to the case's check.
type oracleBatch struct {
	script string
	ins    []any
	checks []func(raw json.RawMessage)
}

func (b *oracleBatch) add(in any, check func(raw json.RawMessage)) {
	b.ins = append(b.ins, in)
	b.checks = append(b.checks, check)
}

const batchDriver = `
import contextlib, io, json, sys
src = open(sys.argv[2]).read()
cases = json.load(open(sys.argv[1]))
out = []
for i, c in enumerate(cases):
    p = sys.argv[1] + ".%d" % i
    json.dump(c, open(p, "w"))
    sys.argv = [sys.argv[0], p, sys.argv[2]]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(src, "oracle", "exec"), {"__name__": "__main__"})
    out.append(json.loads(buf.getvalue()))
print(json.dumps(out))
`

func (b *oracleBatch) run(t *testing.T) {
	t.Helper()
	pyoracle.Python(t)
	dir := t.TempDir()
	sp := filepath.Join(dir, "oracle.py")
	if err := os.WriteFile(sp, []byte(b.script), 0o644); err != nil {
		t.Fatal(err)
	}
	ip := filepath.Join(dir, "cases.json")
	data, err := json.Marshal(b.ins)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ip, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var outs []json.RawMessage
	if err := json.Unmarshal(pyoracle.Run(t, batchDriver, ip, sp), &outs); err != nil {
		t.Fatal(err)
	}
	if len(outs) != len(b.checks) {
		t.Fatalf("%d oracle results for %d cases", len(outs), len(b.checks))
	}
	for i, c := range b.checks {
		c(outs[i])
	}
}

func decode(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func f32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func TestOracleInt8Linear(t *testing.T) {
	pyoracle.Python(t)
	batch := &oracleBatch{script: int8Oracle}
	rng := rand.New(rand.NewSource(9))
	for _, tc := range []struct {
		shape []int
		axis  int
		sym   bool
	}{
		{[]int{32, 8}, 1, true}, {[]int{32, 8}, -1, false}, {[]int{6, 3, 3, 3}, 0, true},
		{[]int{6, 3, 3, 3}, 0, false}, {[]int{8, 24}, 0, false}, {[]int{10, 7}, -1, true},
	} {
		w := randWeights(rng, numel(tc.shape), 0.2)
		w[0] = 1.5 // an outlier
		l, err := QuantizeLinear(w, tc.shape, LinearOptions{Axis: tc.axis, Symmetric: tc.sym})
		if err != nil {
			t.Fatal(err)
		}
		tc := tc
		batch.add(map[string]any{"w": w, "shape": tc.shape, "sym": tc.sym, "axis": tc.axis}, func(raw json.RawMessage) {
			var got struct {
				Q      []int
				Scales []float64
				Zps    []int
				Deq    []float64
			}
			decode(t, raw, &got)
			for i := range l.Scale {
				if l.Scale[i] != float32(got.Scales[i]) || int(l.ZeroPoint[i]) != got.Zps[i] {
					t.Fatalf("%v axis %d: channel %d (%g, %d), oracle (%g, %d)", tc.shape, tc.axis, i, l.Scale[i], l.ZeroPoint[i], got.Scales[i], got.Zps[i])
				}
			}
			deq, want := l.Dequantize(), f32s(got.Deq)
			for i := range l.Q {
				if int(l.Q[i]) != got.Q[i] || deq[i] != want[i] {
					t.Fatalf("%v axis %d: element %d q %d deq %g, oracle %d %g", tc.shape, tc.axis, i, l.Q[i], deq[i], got.Q[i], want[i])
				}
			}
		})
	}
	batch.run(t)
}

// ONNX Runtime's own block quantizer (the C++ kernel behind
// MatMulNBitsQuantizer) on the same weights.
const ortBlockOracle = `
import json, sys, numpy as np
from onnxruntime.capi._pybind_state import quantize_matmul_4bits
d = json.load(open(sys.argv[1]))
k, n, bs, sym = d["k"], d["n"], d["bs"], d["sym"]
w = np.array(d["w"], dtype=np.float32).reshape(k, n)
kb = (k + bs - 1) // bs
packed = np.zeros((n, kb, bs // 2), np.uint8)
scales = np.zeros((n, kb), np.float32)
zp = np.zeros((n, (kb + 1) // 2), np.uint8)
quantize_matmul_4bits(packed, w, scales, zp, bs, n, k, sym)
print(json.dumps({"b": packed.reshape(-1).tolist(), "scales": scales.reshape(-1).tolist(), "zp": zp.reshape(-1).tolist()}))
`

func TestOracleRTNMatchesORTQuantizer(t *testing.T) {
	pyoracle.Python(t)
	batch := &oracleBatch{script: ortBlockOracle}
	rng := rand.New(rand.NewSource(10))
	for _, tc := range []struct {
		k, n, bs int
		sym      bool
	}{{64, 8, 32, false}, {64, 8, 16, true}, {96, 5, 32, false}, {128, 4, 128, true}} {
		w := randWeights(rng, tc.k*tc.n, 0.1)
		b, err := QuantizeRTN(w, tc.k, tc.n, BlockOptions{BlockSize: tc.bs, Symmetric: tc.sym})
		if err != nil {
			t.Fatal(err)
		}
		B, scales, zps := b.MatMulNBits()
		tc := tc
		batch.add(map[string]any{"w": w, "k": tc.k, "n": tc.n, "bs": tc.bs, "sym": tc.sym}, func(raw json.RawMessage) {
			var got struct {
				B      []int
				Scales []float64
				Zp     []int
			}
			decode(t, raw, &got)
			for i := range scales {
				if math.Abs(float64(scales[i])-got.Scales[i]) > 1e-7*math.Abs(got.Scales[i]) {
					t.Fatalf("%+v: scale %d: %g, ORT %g", tc, i, scales[i], got.Scales[i])
				}
			}
			diff := 0
			for i := range B {
				if int(B[i]) != got.B[i] {
					diff++
				}
			}
			if diff > 0 {
				t.Fatalf("%+v: %d of %d packed bytes differ from ORT's quantizer", tc, diff, len(B))
			}
			if !tc.sym {
				for i := range zps {
					if int(zps[i]) != got.Zp[i] {
						t.Fatalf("%+v: zero point byte %d: %d, ORT %d", tc, i, zps[i], got.Zp[i])
					}
				}
			}
		})
	}
	batch.run(t)
}

// MatMulNBits and blocked DequantizeLinear run by ONNX Runtime against a
// float MatMul on the dequantized weights.
const ortRunOracle = `
import json, sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
import onnxruntime as ort
d = json.load(open(sys.argv[1]))
k, n, bs, sym = d["k"], d["n"], d["bs"], d["sym"]
a = np.array(d["a"], np.float32).reshape(-1, k)
deq = np.array(d["deq"], np.float32).reshape(k, n)
nb = (k + bs - 1) // bs
ref = a.astype(np.float64) @ deq.astype(np.float64)
out = {}
# MatMulNBits
inits = [numpy_helper.from_array(np.array(d["B"], np.uint8).reshape(n, nb, bs // 2), "B"),
         numpy_helper.from_array(np.array(d["scales"], np.float32).reshape(n, nb), "S")]
ins = ["A", "B", "S"]
if not sym:
    inits.append(numpy_helper.from_array(np.array(d["zp"], np.uint8).reshape(n, -1), "Z")); ins.append("Z")
node = helper.make_node("MatMulNBits", ins, ["Y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=bs)
g = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)], ir_version=10)
s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
out["nbits"] = float(np.abs(s.run(None, {"A": a})[0] - ref).max())
# blocked DequantizeLinear (opset 21) + MatMul
qt = TensorProto.INT4 if sym else TensorProto.UINT4
inits = [helper.make_tensor("Q", qt, [k, n], bytes(d["qdq"]), raw=True),
         numpy_helper.from_array(np.array(d["qscales"], np.float32).reshape(nb, n), "QS")]
dq_in = ["Q", "QS"]
if not sym:
    inits.append(helper.make_tensor("QZ", qt, [nb, n], bytes(d["qzp"]), raw=True)); dq_in.append("QZ")
nodes = [helper.make_node("DequantizeLinear", dq_in, ["W"], axis=0, block_size=bs),
         helper.make_node("MatMul", ["A", "W"], ["Y"])]
g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
onnx.checker.check_model(m, full_check=True)
for lvl, key in ((ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "qdq"), (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "qdqopt")):
    so = ort.SessionOptions(); so.graph_optimization_level = lvl
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out[key] = float(np.abs(s.run(None, {"A": a})[0] - ref).max())
out["scale"] = float(np.abs(ref).max())
print(json.dumps(out))
`

func TestOracleORTRunsMatMulNBitsAndBlockedDQ(t *testing.T) {
	pyoracle.Python(t)
	batch := &oracleBatch{script: ortRunOracle}
	rng := rand.New(rand.NewSource(11))
	for _, tc := range []struct {
		k, n, bs int
		sym      bool
	}{{64, 8, 32, false}, {64, 8, 16, true}, {80, 6, 32, false}, {80, 6, 16, true}} {
		w := randWeights(rng, tc.k*tc.n, 0.1)
		b, err := QuantizeRTN(w, tc.k, tc.n, BlockOptions{BlockSize: tc.bs, Symmetric: tc.sym})
		if err != nil {
			t.Fatal(err)
		}
		B, scales, zps := b.MatMulNBits()
		qd, qs, qz, err := b.BlockedQDQ()
		if err != nil {
			t.Fatal(err)
		}
		a := randWeights(rng, 5*tc.k, 1)
		tc := tc
		batch.add(map[string]any{
			"k": tc.k, "n": tc.n, "bs": tc.bs, "sym": tc.sym, "a": a, "deq": b.Dequantize(),
			"B": bytesToInts(B), "scales": scales, "zp": bytesToInts(zps),
			"qdq": bytesToInts(qd), "qscales": qs, "qzp": bytesToInts(qz),
		}, func(raw json.RawMessage) {
			var got struct{ Nbits, Qdq, Qdqopt, Scale float64 }
			decode(t, raw, &got)
			tol := 1e-5 * (1 + got.Scale)
			if got.Nbits > tol || got.Qdq > tol {
				t.Fatalf("%+v: max |ORT − float matmul|: MatMulNBits %g, DequantizeLinear %g (tol %g)", tc, got.Nbits, got.Qdq, tol)
			}
			t.Logf("%+v: blocked DequantizeLinear+MatMul with ORT's optimizations: max error %g", tc, got.Qdqopt)
		})
	}
	batch.run(t)
}

func bytesToInts(b []uint8) []int {
	out := make([]int, len(b))
	for i, v := range b {
		out[i] = int(v)
	}
	return out
}

// Independent numpy GPTQ written from the paper's Algorithm 1 with the
// reference code's conventions (dead columns, damping, lazy batches,
// parameters found on the weights at block start, act-order with static
// groups).
const gptqOracle = `
import json, sys, numpy as np
d = json.load(open(sys.argv[1]))
k, n, gs, sym, act, lazy = d["k"], d["n"], d["bs"], d["sym"], d["act"], d["lazy"]
W = np.array(d["w"], np.float64).reshape(k, n).T.copy()   # [n, k]
H = np.array(d["h"], np.float64).reshape(k, k).copy()
maxq = 15.0
def find(x):                       # x: [n, g] -> scale[n], zero[n]
    xmin = np.minimum(x.min(1), 0); xmax = np.maximum(x.max(1), 0)
    if sym:
        xmax = np.maximum(-xmin, xmax); xmin = np.where(xmin < 0, -xmax, xmin)
    both = (xmin == 0) & (xmax == 0)
    xmin = np.where(both, -1, xmin); xmax = np.where(both, 1, xmax)
    s = ((xmax - xmin) / maxq).astype(np.float32).astype(np.float64)
    z = np.full(n, 8.0) if sym else np.round(-xmin / ((xmax - xmin) / maxq))
    return s, z
dead = np.diag(H) == 0
H[dead, dead] = 1; W[:, dead] = 0
nb = (k + gs - 1) // gs
static = [find(W[:, j*gs:(j+1)*gs]) for j in range(nb)] if act else None
perm = np.argsort(-np.diag(H), kind="stable") if act else np.arange(k)
W = W[:, perm]; H = H[perm][:, perm]
H[np.diag_indices(k)] += 0.01 * np.mean(np.diag(H))
Hinv = np.linalg.cholesky(np.linalg.inv(H)).T
codes = np.zeros((n, k))
for i1 in range(0, k, lazy):
    i2 = min(i1 + lazy, k)
    W1 = W[:, i1:i2].copy(); E = np.zeros_like(W1)
    for i in range(i2 - i1):
        c = i1 + i
        if act:
            s, z = static[perm[c] // gs]
        elif c % gs == 0:
            s, z = find(W[:, c:c+gs])
        x = W1[:, i]
        code = np.clip(np.round(x / s) + z, 0, maxq)
        q = s * (code - z)
        codes[:, perm[c]] = code
        e = (x - q) / Hinv[c, c]
        W1[:, i:] -= np.outer(e, Hinv[c, i1 + i:i2])
        E[:, i] = e
    W[:, i2:] -= E @ Hinv[i1:i2, i2:]
print(json.dumps({"codes": codes.astype(int).reshape(-1).tolist()}))
`

func TestOracleGPTQ(t *testing.T) {
	pyoracle.Python(t)
	batch := &oracleBatch{script: gptqOracle}
	rng := rand.New(rand.NewSource(12))
	for _, tc := range []struct {
		k, n, bs, lazy int
		sym, act       bool
	}{{64, 6, 32, 128, false, false}, {96, 4, 16, 32, true, false}, {64, 6, 16, 32, false, true}} {
		_, xtx := correlatedInputs(rng, 128, tc.k)
		w := randWeights(rng, tc.k*tc.n, 0.5)
		g, _, err := GPTQ(context.Background(), w, tc.k, tc.n, xtx, GPTQOptions{
			Block: BlockOptions{BlockSize: tc.bs, Symmetric: tc.sym}, ActOrder: tc.act, LazyBlock: tc.lazy})
		if err != nil {
			t.Fatal(err)
		}
		tc := tc
		batch.add(map[string]any{"k": tc.k, "n": tc.n, "bs": tc.bs, "sym": tc.sym,
			"act": tc.act, "lazy": tc.lazy, "w": w, "h": xtx}, func(raw json.RawMessage) {
			var got struct{ Codes []int }
			decode(t, raw, &got)
			diff := 0
			for c := 0; c < tc.n; c++ {
				for kk := 0; kk < tc.k; kk++ {
					if int(g.Codes[c*tc.k+kk]) != got.Codes[c*tc.k+kk] {
						diff++
					}
				}
			}
			// Both run in float64; only a rounding tie flipped by summation
			// order may differ.
			if diff > len(g.Codes)/500 {
				t.Fatalf("%+v: %d of %d codes differ from the numpy GPTQ", tc, diff, len(g.Codes))
			}
		})
	}
	batch.run(t)
}
