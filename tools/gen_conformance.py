#!/usr/bin/env python3
"""gen_conformance.py — regenerate onnxio's golden fixtures (onnxio/testdata/golden).

Run with the oracle virtualenv (numpy, onnx, ml_dtypes):

    .venv/bin/python tools/gen_conformance.py

It writes, from independent implementations (numpy, ml_dtypes, onnx.helper
and onnx.numpy_helper), never from onnxio's own code:

  decode.json   every code of each float8/float6/float4 and 2/4-bit integer
                type -> its value (float64 bits, hex), from ml_dtypes
  encode.json   float32 inputs (bits) -> the code/bits ONNX's saturating Cast
                gives (numpy for float16, ml_dtypes for the rest): ties,
                subnormals, overflow, infinities, NaN, -0 and random values
  tensors/*.pb  small TensorProtos written by onnx.helper.make_tensor, once
                with raw_data and once with the typed fields, for every
                numeric type
  tensors.json  the values numpy_helper.to_array reads from each .pb

The Go tests (golden_test.go) read these files; they need no Python.
"""
import json
import os
import sys

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnxio", "testdata", "golden")

# onnxio's dtype names -> (TensorProto enum, numpy/ml_dtypes type)
SMALL = {
    "float8e4m3fn": (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn, 8),
    "float8e4m3fnuz": (TensorProto.FLOAT8E4M3FNUZ, ml_dtypes.float8_e4m3fnuz, 8),
    "float8e5m2": (TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2, 8),
    "float8e5m2fnuz": (TensorProto.FLOAT8E5M2FNUZ, ml_dtypes.float8_e5m2fnuz, 8),
    "float8e8m0": (TensorProto.FLOAT8E8M0, ml_dtypes.float8_e8m0fnu, 8),
    "float4e2m1": (TensorProto.FLOAT4E2M1, ml_dtypes.float4_e2m1fn, 4),
    "float6e2m3": (TensorProto.FLOAT6E2M3, ml_dtypes.float6_e2m3fn, 6),
    "float6e3m2": (TensorProto.FLOAT6E3M2, ml_dtypes.float6_e3m2fn, 6),
    "uint4": (TensorProto.UINT4, ml_dtypes.uint4, 4),
    "int4": (TensorProto.INT4, ml_dtypes.int4, 4),
    "uint2": (TensorProto.UINT2, ml_dtypes.uint2, 2),
    "int2": (TensorProto.INT2, ml_dtypes.int2, 2),
}


def f64hex(a):
    return [format(int(x), "016x") for x in np.asarray(a, dtype=np.float64).view(np.uint64).ravel()]


def decode_tables():
    out = {}
    for name, (_, dt, bits) in SMALL.items():
        codes = np.arange(1 << bits, dtype=np.uint8)
        out[name] = f64hex(codes.view(dt).astype(np.float64))
    return out


def special_inputs(rng):
    xs = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 1.5, 2.5, 3.5,
          65504.0, 65519.0, 65520.0, 65536.0, 1e10, -1e10, 3.4e38, 1e-3, 1e-5,
          2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-25 * 1.0000001, 2.0**-26, 2.0**-14,
          2.0**-14 - 2.0**-25, 448.0, 464.0, 480.0, 500.0, 57344.0, 61440.0, 6.0, 7.0, 8.0,
          240.0, 0.0625, 0.001953125, 2.0**-9, 2.0**-10, 2.0**-17, 2.0**-16, 2.0**-18,
          7.5, 28.0, 30.0, 32.0, 0.25, 0.75, 0.1875, 0.125]
    xs += list(rng.standard_normal(80) * 4)
    xs += list(rng.standard_normal(40) * 300)
    xs += list(np.exp(rng.uniform(-30, 30, 40)))
    with np.errstate(over="ignore"):
        xs = np.array(xs, dtype=np.float32)
    return np.concatenate([xs, -xs])


def encode_tables(rng):
    xs = special_inputs(rng)
    np.seterr(over="ignore")
    bitsx = [format(int(b), "08x") for b in xs.view(np.uint32)]
    out = {
        "float16": list(zip(bitsx, [int(v) for v in xs.astype(np.float16).view(np.uint16)])),
        "bfloat16": list(zip(bitsx, [int(v) for v in xs.astype(ml_dtypes.bfloat16).view(np.uint16)])),
    }
    # ONNX Cast with saturate=1 (the default): finite values beyond the
    # range become the largest finite value of that sign; infinities stay
    # infinite only where the format has them (E5M2); NaN stays NaN.
    for name in ["float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "float4e2m1", "float6e2m3", "float6e3m2"]:
        dt = SMALL[name][1]
        bits = SMALL[name][2]
        fmax = float(ml_dtypes.finfo(dt).max)
        has_inf = name == "float8e5m2"
        vals = xs.astype(np.float64)
        clipped = np.where(np.isnan(vals), vals, np.clip(vals, -fmax, fmax))
        if has_inf:
            clipped = np.where(np.isinf(vals), vals, clipped)
        codes = clipped.astype(dt).view(np.uint8) & ((1 << bits) - 1)
        rows = []
        for b, x, c in zip(bitsx, vals, codes):
            if np.isnan(x) and name in ("float4e2m1", "float6e2m3", "float6e3m2"):
                continue  # no NaN in these formats; ONNX leaves it undefined
            rows.append((b, int(c)))
        out[name] = rows
    return out


def tensor_fixtures(rng, tdir):
    """Tensors through onnx.helper.make_tensor, raw and typed, with the
    values numpy_helper reads back."""
    expected = {}
    cases = {
        "float32": (TensorProto.FLOAT, np.array([0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-40], np.float32)),
        "float64": (TensorProto.DOUBLE, np.array([0, -0.0, 1.5, 1e300, np.nan, 5e-324], np.float64)),
        "float16": (TensorProto.FLOAT16, np.array([0, -0.0, 1.5, 65504, 6e-8, -np.inf, np.nan], np.float16)),
        "bfloat16": (TensorProto.BFLOAT16, np.array([0, -0.0, 1.5, 3e38, 1e-40, -np.inf, np.nan], ml_dtypes.bfloat16)),
        "int8": (TensorProto.INT8, np.array([-128, -1, 0, 127], np.int8)),
        "uint8": (TensorProto.UINT8, np.array([0, 1, 255], np.uint8)),
        "int16": (TensorProto.INT16, np.array([-32768, -1, 32767], np.int16)),
        "uint16": (TensorProto.UINT16, np.array([0, 65535, 12345], np.uint16)),
        "int32": (TensorProto.INT32, np.array([-2**31, -1, 2**31 - 1], np.int32)),
        "uint32": (TensorProto.UINT32, np.array([0, 2**32 - 1, 7], np.uint32)),
        "int64": (TensorProto.INT64, np.array([-2**53, -1, 2**53], np.int64)),
        "uint64": (TensorProto.UINT64, np.array([0, 2**53, 12], np.uint64)),
        "bool": (TensorProto.BOOL, np.array([True, False, True], np.bool_)),
    }
    for name, (enum, dt, bits) in SMALL.items():
        n = 7 if bits < 8 else 9  # odd counts exercise the padding of packed types
        codes = rng.integers(0, 1 << bits, n).astype(np.uint8)
        arr = codes.view(dt)
        if name.startswith("float"):
            arr = arr[~np.isnan(arr.astype(np.float64))]
        cases[name] = (enum, arr)
    for name, (enum, arr) in cases.items():
        shape = [1, len(arr)] if len(arr) % 2 else [len(arr)]
        arr = arr.reshape(shape)
        for kind in ("raw", "typed"):
            if kind == "raw":
                t = helper.make_tensor(name + "_" + kind, enum, shape, arr, raw=True)
            else:
                t = helper.make_tensor(name + "_" + kind, enum, shape, arr.astype(np.float64).ravel().tolist() if arr.dtype.kind == "V" or name in SMALL or name in ("float16", "bfloat16") else arr.ravel().tolist())
            back = numpy_helper.to_array(t)
            a64 = back.astype(np.float64)
            ref = arr.astype(np.float64)
            if not np.array_equal(a64, ref, equal_nan=True):
                sys.exit("%s %s: onnx.helper round trip changed the values: %s vs %s" % (name, kind, a64, ref))
            fn = "%s_%s.pb" % (name, kind)
            with open(os.path.join(tdir, fn), "wb") as f:
                f.write(t.SerializeToString())
            rec = {"dtype": enum, "shape": shape, "values": f64hex(a64)}
            if name in ("int64", "uint64"):
                rec["int64"] = [int(v) for v in back.view(np.int64).ravel()]
            rec["field"] = "raw_data" if t.HasField("raw_data") else [f.name for f, _ in t.ListFields() if f.name.endswith("_data")][0]
            expected[fn] = rec
    return expected


def main():
    rng = np.random.default_rng(20261128)
    tdir = os.path.join(OUT, "tensors")
    os.makedirs(tdir, exist_ok=True)
    with open(os.path.join(OUT, "decode.json"), "w") as f:
        json.dump(decode_tables(), f, indent=0, sort_keys=True)
    with open(os.path.join(OUT, "encode.json"), "w") as f:
        json.dump(encode_tables(rng), f, separators=(",", ":"), sort_keys=True)
    with open(os.path.join(OUT, "tensors.json"), "w") as f:
        json.dump(tensor_fixtures(rng, tdir), f, indent=1, sort_keys=True)
    print("onnx", onnx.__version__, "ml_dtypes", ml_dtypes.__version__, "numpy", np.__version__, "->", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
