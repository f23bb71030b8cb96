"""A small ONNX graph builder that keeps quantised weights quantised.

uint8 weights with min <= 0 (integral zero point) become
    DequantizeLinear(q_uint8, scale, zero_point)       y = (q - zp) * scale
uint8 weights with min > 0 (no uint8 zero point can express them) become
    Add(Mul(Cast(q_uint8 -> float), scale), min)       y = q * scale + min
float16 weights become Cast(f16 -> float).  float32 weights stay as they are.

ONNX Runtime constant-folds Cast/Mul/Add on initializers at session creation by
default.  It does NOT fold DequantizeLinear unless the session option
`session.disable_quant_qdq` is `1` (see models/README.md for measurements).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import os

from .tfjs_weights import Weight

OPSET = 17
IR_VERSION = 8  # ONNX IR for opset 17; loadable by every ONNX Runtime >= 1.12


class GraphBuilder:
    def __init__(self, name: str):
        self.name = name
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self._names = set()
        self._n = 0
        self.source_bytes = 0  # bytes of source weights referenced

    # ---- naming -------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = base.replace(":", "_")
        name = base
        while name in self._names:
            self._n += 1
            name = f"{base}__{self._n}"
        self._names.add(name)
        return name

    # ---- graph I/O ----------------------------------------------------
    def add_input(self, name: str, shape: list, elem=TensorProto.FLOAT) -> str:
        self._names.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def add_output(self, src: str, name: str, shape: list, elem=TensorProto.FLOAT) -> str:
        if src != name:
            self.node("Identity", [src], out=name)
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    # ---- constants ----------------------------------------------------
    def const(self, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def weight(self, w: Weight, perm=None, shape=None, base: str | None = None) -> str:
        """Float tensor for weight `w`, transposed by `perm` then reshaped to `shape`.

        The stored (possibly quantised) data is permuted offline; per-tensor
        quantisation parameters are unaffected by a permutation.
        """
        base = base or w.name
        data = w.data
        if perm is not None:
            data = np.transpose(data, perm)
        if shape is not None:
            data = data.reshape(shape)
        data = np.ascontiguousarray(data)
        self.source_bytes += w.nbytes
        if w.kind == "f32":
            return self.const(base, data.astype(np.float32))
        if w.kind == "f16":
            q = self.const(base + "/f16", data.astype(np.float16))
            return self.node("Cast", [q], base=base, to=TensorProto.FLOAT)
        if w.kind == "u8":
            zp = -w.min / w.scale
            if w.min <= 0 and abs(zp - round(zp)) < 1e-6 and 0 <= round(zp) <= 255:
                q = self.const(base + "/quantized", data.astype(np.uint8))
                s = self.const(base + "/scale", np.array(w.scale, dtype=np.float32))
                z = self.const(base + "/zero_point", np.array(int(round(zp)), dtype=np.uint8))
                return self.node("DequantizeLinear", [q, s, z], base=base)
            q = self.const(base + "/quantized", data.astype(np.uint8))
            c = self.node("Cast", [q], base=base + "/cast", to=TensorProto.FLOAT)
            s = self.const(base + "/scale", np.array(w.scale, dtype=np.float32))
            m = self.const(base + "/min", np.array(w.min, dtype=np.float32))
            return self.node("Add", [self.node("Mul", [c, s], base=base + "/mul"), m], base=base)
        if w.kind == "i32":
            return self.const(base, data.astype(np.int32))
        raise ValueError(w.kind)

    # ---- nodes --------------------------------------------------------
    def node(self, op: str, inputs: list, out: str | None = None, base: str | None = None, **attrs) -> str:
        if out is None:
            out = self.fresh(base or op.lower())
        else:
            self._names.add(out)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # ---- model --------------------------------------------------------
    def model(self, doc: str = "", metadata: dict | None = None) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="faceid-models-convert",
            producer_version="1",
            doc_string=doc,
        )
        m.ir_version = IR_VERSION
        for k, v in (metadata or {}).items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        onnx.checker.check_model(m, full_check=True)
        return m


def tf_same_pads(in_size: int, k: int, s: int) -> tuple:
    """TensorFlow 'SAME' padding (extra pixel goes after) for one spatial axis."""
    out = -(-in_size // s)
    total = max((out - 1) * s + k - in_size, 0)
    return total // 2, total - total // 2


def save_model(model: onnx.ModelProto, path: str):
    """Checks `model`, writes it deterministically (atomically, via a temporary file) and
    checks the written file."""
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    onnx.checker.check_model(path, full_check=True)
    print(f"  wrote {os.path.basename(path)} ({len(data)} bytes)")
