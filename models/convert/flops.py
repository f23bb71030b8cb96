"""FLOPs per inference (2 x multiply-accumulates of Conv / MatMul / Gemm) from the graph.

    python -m convert.flops DIR      (run from models/)
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import shape_inference

SIZES = {
    "face_detector.onnx": [(1, 3, 416, 416), (1, 3, 320, 320), (1, 3, 224, 224)],
    "face_landmarks.onnx": [(1, 3, 112, 112)],
    "face_recognition.onnx": [(1, 3, 150, 150)],
    "anti_spoof.onnx": [(1, 3, 128, 128)],
    "anti_spoof_minifasnet_v2.onnx": [(1, 3, 80, 80)],
    "anti_spoof_minifasnet_v1se.onnx": [(1, 3, 80, 80)],
}


def _dims(vi):
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def flops(model: onnx.ModelProto, shape) -> tuple:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.Clear()
        d.dim_value = v
    m = shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    shapes = {vi.name: _dims(vi) for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    detail = {}
    for n in m.graph.node:
        if n.op_type == "Conv":
            out = shapes[n.output[0]]
            w = shapes[n.input[1]]  # [cout, cin/group, kh, kw]
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            a, b = shapes[n.input[0]], shapes[n.input[1]]
            macs = int(np.prod(a)) * int(b[-1])
        else:
            continue
        assert macs > 0, (n.name, n.op_type)
        total += 2 * macs
        detail[n.op_type] = detail.get(n.op_type, 0) + 2 * macs
    return total, detail


def main(argv=None):
    d = (argv or sys.argv[1:] or ["."])[0]
    for fname, sizes in SIZES.items():
        model = onnx.load(os.path.join(d, fname))
        for s in sizes:
            total, detail = flops(model, s)
            print(f"{fname:24s} {'x'.join(map(str, s[2:])):8s} {total / 1e9:8.4f} GFLOP  ({total} FLOP)")


if __name__ == "__main__":
    main()
