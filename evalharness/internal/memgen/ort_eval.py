"""ONNX Runtime's own peak memory on memgen's model, for comparison with
`onnxpost eval`: one CPU session created from the file, one run on the
whole dataset.

    /usr/bin/time -v python evalharness/internal/memgen/ort_eval.py MODEL DATA.npz
"""
import sys

import numpy as np
import onnxruntime as ort

s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
d = np.load(sys.argv[2])
out = s.run(None, {i.name: d[i.name] for i in s.get_inputs()})
print(out[0].shape)
