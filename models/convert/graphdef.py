"""A small TF.js graph-model (GraphDef JSON) -> ONNX converter.

Covers the ops of the Human anti-spoofing / liveness models: Placeholder, Const,
Identity, Conv2D, DepthwiseConv2dNative, _FusedConv2D (BiasAdd [+ Relu/Relu6]),
BiasAdd, MatMul, _FusedMatMul (BiasAdd [+ Relu]), Relu, Relu6, Sigmoid, Softmax,
MaxPool, AvgPool, Reshape, Add/AddV2, Mul.  Anything else raises.

Activations are kept NCHW inside the ONNX graph.  The graph's NHWC input is
exposed as an NCHW `input`; a 4-D tensor is transposed back to NHWC only where
the TF graph depends on the memory order (Reshape / flatten).  Constants stay
in the dtype of the weight manifest (float16 here) behind a Cast.
"""

from __future__ import annotations

import base64
import json
import os

import numpy as np

from .builder import GraphBuilder
from .tfjs_weights import read_weights


def _attr(node, key, default=None):
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return []
    if "shape" in a:
        return [int(d.get("size", -1)) for d in a["shape"].get("dim", [])]
    if "type" in a:
        return a["type"]
    return a


class GraphDefConverter:
    def __init__(self, model_json_path: str, name: str):
        with open(model_json_path) as f:
            self.j = json.load(f)
        assert self.j.get("format") == "graph-model", "not a TF.js graph model"
        self.weights = read_weights(self.j["weightsManifest"], os.path.dirname(model_json_path))
        self.nodes = {n["name"]: n for n in self.j["modelTopology"]["node"]}
        self.g = GraphBuilder(name)
        self.val = {}  # tf tensor name -> onnx name
        self.layout = {}  # onnx name -> "NCHW" for 4-D activations
        self.rank = {}

    # -- helpers -----------------------------------------------------------
    def _in(self, ref: str) -> str:
        ref = ref.split(":")[0].lstrip("^")
        if ref not in self.val:
            self._convert(ref)
        return self.val[ref]

    def _const_np(self, ref: str) -> np.ndarray:
        ref = ref.split(":")[0]
        node = self.nodes[ref]
        if node["op"] == "Identity":
            return self._const_np(node["input"][0])
        assert node["op"] == "Const", f"{ref} is not constant"
        self.g.source_bytes += self.weights[ref].nbytes  # consumed as a graph constant
        return self.weights[ref].to_float()

    def _is_const(self, ref):
        node = self.nodes[ref.split(":")[0]]
        return node["op"] == "Const" or (node["op"] == "Identity" and self._is_const(node["input"][0]))

    def _weight(self, ref, perm=None, shape=None):
        return self.g.weight(self.weights[ref.split(":")[0]], perm=perm, shape=shape)

    def _to_nhwc(self, x: str) -> str:
        if self.layout.get(x) == "NCHW":
            return self.g.node("Transpose", [x], base=x + "/to_nhwc", perm=[0, 2, 3, 1])
        return x

    @staticmethod
    def _pool_conv_attrs(node, kh, kw):
        pad = _attr(node, "padding")
        strides = _attr(node, "strides", [1, 1, 1, 1])
        if _attr(node, "data_format", "NHWC") != "NHWC":
            raise NotImplementedError("only NHWC graphs")
        dil = _attr(node, "dilations", [1, 1, 1, 1]) or [1, 1, 1, 1]
        attrs = {"strides": [strides[1], strides[2]], "kernel_shape": [kh, kw]}
        if dil[1:3] != [1, 1]:
            attrs["dilations"] = [dil[1], dil[2]]
        if pad == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"  # TF SAME: extra pixel after
        elif pad == "VALID":
            attrs["pads"] = [0, 0, 0, 0]
        else:
            raise NotImplementedError(f"padding {pad}")
        return attrs

    def _activation(self, x, fused_ops, name):
        for op in fused_ops:
            if op == "BiasAdd":
                continue
            if op == "Relu":
                x = self.g.node("Relu", [x], base=name + "/relu")
            elif op == "Relu6":
                x = self.g.node("Clip", [x, self.g.const("zero", np.array(0, np.float32)),
                                         self.g.const("six", np.array(6, np.float32))], base=name + "/relu6")
            else:
                raise NotImplementedError(f"fused op {op}")
        return x

    # -- conversion --------------------------------------------------------
    def _convert(self, name: str):
        node = self.nodes[name]
        op = node["op"]
        ins = [i for i in node.get("input", []) if not i.startswith("^")]
        g = self.g
        out = None
        if op == "Const":
            out = self._weight(name)
        elif op == "Identity":
            out = self._in(ins[0])
            self.val[name] = out
            return
        elif op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            x = self._in(ins[0])
            assert self.layout.get(x) == "NCHW"
            wref = ins[1].split(":")[0]
            kh, kw, cin, cm = self.weights[wref].shape
            attrs = self._pool_conv_attrs(node, kh, kw)
            if op.startswith("Depthwise") or op.startswith("FusedDepthwise"):
                w = self._weight(wref, perm=(2, 3, 0, 1), shape=(cin * cm, 1, kh, kw))
                attrs["group"] = cin
            else:
                w = self._weight(wref, perm=(3, 2, 0, 1))
            conv_in = [x, w]
            fused = _attr(node, "fused_ops", []) if op.startswith("_Fused") or op.startswith("Fused") else []
            if fused and fused[0] == "BiasAdd":
                conv_in.append(self._weight(ins[2]))
            elif fused:
                raise NotImplementedError(f"{name}: fused_ops {fused}")
            out = g.node("Conv", conv_in, base=name, **attrs)
            out = self._activation(out, fused, name)
            self.layout[out] = "NCHW"
        elif op in ("MaxPool", "AvgPool"):
            x = self._in(ins[0])
            ks = _attr(node, "ksize")
            attrs = self._pool_conv_attrs(node, ks[1], ks[2])
            if op == "AvgPool" and attrs.get("auto_pad") == "SAME_UPPER":
                attrs["count_include_pad"] = 0  # TF excludes padding from the average
            out = g.node("MaxPool" if op == "MaxPool" else "AveragePool", [x], base=name, **attrs)
            self.layout[out] = "NCHW"
        elif op in ("Relu", "Relu6", "Sigmoid", "Tanh", "Elu"):
            x = self._in(ins[0])
            if op == "Relu6":
                out = self._activation(x, ["Relu6"], name)
            else:
                out = g.node(op, [x], base=name)
            if self.layout.get(x):
                self.layout[out] = self.layout[x]
        elif op == "Softmax":
            x = self._in(ins[0])
            assert not self.layout.get(x)
            out = g.node("Softmax", [x], base=name, axis=-1)
        elif op == "BiasAdd":
            x = self._in(ins[0])
            if self.layout.get(x) == "NCHW":
                c = self.weights[ins[1].split(":")[0]].shape[0]
                b = self._weight(ins[1], shape=(c, 1, 1))
                out = g.node("Add", [x, b], base=name)
                self.layout[out] = "NCHW"
            else:
                out = g.node("Add", [x, self._weight(ins[1])], base=name)
        elif op in ("Add", "AddV2", "Mul", "Sub"):
            onnx_op = {"Add": "Add", "AddV2": "Add", "Mul": "Mul", "Sub": "Sub"}[op]
            args = []
            lay = None
            for i in ins:
                if self._is_const(i):
                    args.append(("c", i))
                else:
                    v = self._in(i)
                    lay = lay or self.layout.get(v)
                    args.append(("v", v))
            names = []
            for kind, v in args:
                if kind == "c":
                    shape = self.weights[v.split(":")[0]].shape
                    if lay == "NCHW" and len(shape) == 1 and shape[0] > 1:
                        names.append(self._weight(v, shape=(shape[0], 1, 1)))
                    elif lay == "NCHW" and len(shape) > 1:
                        raise NotImplementedError(f"{name}: broadcast of rank-{len(shape)} constant in NCHW")
                    else:
                        names.append(self._weight(v))
                else:
                    if lay == "NCHW" and self.layout.get(v) != "NCHW":
                        raise NotImplementedError(f"{name}: mixed layouts")
                    names.append(v)
            out = g.node(onnx_op, names, base=name)
            if lay:
                self.layout[out] = lay
        elif op in ("MatMul", "_FusedMatMul"):
            a = self._to_nhwc(self._in(ins[0]))
            if _attr(node, "transpose_a", False):
                raise NotImplementedError("transpose_a")
            perm = (1, 0) if _attr(node, "transpose_b", False) else None
            b = self._weight(ins[1], perm=perm) if self._is_const(ins[1]) else self._in(ins[1])
            out = g.node("MatMul", [a, b], base=name + "/matmul")
            fused = _attr(node, "fused_ops", []) if op == "_FusedMatMul" else []
            if fused and fused[0] == "BiasAdd":
                out = g.node("Add", [out, self._weight(ins[2])], base=name + "/bias")
            elif fused:
                raise NotImplementedError(f"{name}: fused_ops {fused}")
            out = self._activation(out, fused, name)
        elif op == "Reshape":
            x = self._to_nhwc(self._in(ins[0]))  # TF reshape follows NHWC memory order
            shape = self._const_np(ins[1]).astype(np.int64)
            out = g.node("Reshape", [x, g.const(name + "/shape", shape)], base=name)
            if len(shape) == 4:
                raise NotImplementedError("Reshape to 4-D")
        elif op == "Placeholder":
            raise AssertionError("Placeholder handled in convert()")
        else:
            raise NotImplementedError(f"op {op} ({name})")
        self.val[name] = out

    def convert(self, input_divisor: float | None = None):
        """Build the ONNX graph.  The NHWC placeholder becomes an NCHW `input`
        [N,3,H,W]; when `input_divisor` is given the input is divided by it first
        (255: the ONNX input takes 0..255 pixel values, the TF graph sees 0..1)."""
        sig = self.j["signature"]
        (in_key, in_spec), = sig["inputs"].items()
        dims = [int(d["size"]) for d in in_spec["tensorShape"]["dim"]]
        assert len(dims) == 4, "expects one NHWC image input"
        _, h, w, c = dims
        x = self.g.add_input("input", ["N", c, h, w])
        if input_divisor is not None:
            x = self.g.node("Div", [x, self.g.const("input_divisor", np.array(input_divisor, np.float32))],
                            base="input_scaled")
        self.layout[x] = "NCHW"
        self.val[in_spec["name"].split(":")[0]] = x
        outs = []
        for key, spec in sig["outputs"].items():
            ref = spec["name"].split(":")[0]
            o = self._in(ref)
            oshape = ["N"] + [int(d["size"]) for d in spec["tensorShape"]["dim"]][1:]
            outs.append((o, key, oshape))
        self.input_hw = (h, w)
        return outs
