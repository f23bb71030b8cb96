"""Convert the Silent-Face-Anti-Spoofing MiniFASNet checkpoints (PyTorch state dicts) to ONNX.

    python -m convert.minifasnet --src DIR --out DIR      (run from models/)

DIR for --src holds `2.7_80x80_MiniFASNetV2.pth` and `4_0_0_80x80_MiniFASNetV1SE.pth`
(minivision-ai/Silent-Face-Anti-Spoofing, `resources/anti_spoof_models/`, pinned by
SHA-256 below).  Writes `anti_spoof_minifasnet_v2.onnx` and `anti_spoof_minifasnet_v1se.onnx`.

No PyTorch is needed: the checkpoints are read by `read_state_dict` (a restricted
unpickler for torch.save's legacy format, which these two files use, and for its zip
format), and the graph is rebuilt here from the network definition in upstream's
`src/model_lib/MiniFASNet.py` (Apache-2.0, (c) Minivision; the layer structure, the
`keep_dict` channel lists and the module names below follow that file).  Every
BatchNorm (eval mode, eps 1e-5) is folded, in float64, into the convolution or linear
layer before it; Dropout is the identity at inference.  `parity/minifasnet_parity.py`
checks the result against upstream's network in PyTorch on the same checkpoints.

Graph (80x80 input; `get_kernel(80, 80)` = 5x5 for conv_6_dw):
  conv1 3x3/2 -> conv2_dw 3x3 dw -> conv_23 (Depth_Wise /2) -> conv_3 (4 residual
  Depth_Wise) -> conv_34 (/2) -> conv_4 (6 residual) -> conv_45 (/2) -> conv_5
  (2 residual) -> conv_6_sep 1x1 -> conv_6_dw 5x5 dw (linear) -> flatten 512 ->
  linear 512->128 + BatchNorm1d -> prob 128->3 -> logits; Softmax -> prob.
  Conv_block = conv + BN + PReLU(per channel), written as two convolutions, Relu and Add
  (`_Net.conv_prelu`); Linear_block = conv + BN.  In the SE
  variant (MiniFASNetV1SE) the last block of conv_3, conv_4 and conv_5 multiplies its
  projection by sigmoid(BN(fc2(relu(BN(fc1(global_avg_pool(x))))))) before the residual
  add (SEModule, reduction 4).

I/O of both files: input `input` float32 [N,3,80,80], **BGR** (OpenCV channel order),
pixel values 0..255 (upstream's ToTensor does not divide by 255; no mean/std).
Outputs `logits` float32 [N,3] and `prob` float32 [N,3] = softmax(logits); class 1 is
"real face", classes 0 and 2 are attack classes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import onnx

from .builder import GraphBuilder, save_model

UPSTREAM = "minivision-ai/Silent-Face-Anti-Spoofing@b6d5f04ad78778917853b25c778acef6d5626d15"
SRC_PATH = "resources/anti_spoof_models"
BN_EPS = 1e-5  # torch.nn.BatchNorm{1,2}d default; upstream does not change it

# (checkpoint, sha256, architecture, output file, crop scale used by upstream's test.py)
MODELS = [
    ("2.7_80x80_MiniFASNetV2.pth",
     "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
     "MiniFASNetV2", "anti_spoof_minifasnet_v2.onnx", 2.7),
    ("4_0_0_80x80_MiniFASNetV1SE.pth",
     "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
     "MiniFASNetV1SE", "anti_spoof_minifasnet_v1se.onnx", 4.0),
]

# Channel lists from upstream's MiniFASNet.py (`keep_dict`): V1/V1SE use '1.8M', V2 '1.8M_'.
KEEP = {
    "1.8M": [32, 32, 103, 103, 64, 13, 13, 64, 26, 26,
             64, 13, 13, 64, 52, 52, 64, 231, 231, 128,
             154, 154, 128, 52, 52, 128, 26, 26, 128, 52,
             52, 128, 26, 26, 128, 26, 26, 128, 308, 308,
             128, 26, 26, 128, 26, 26, 128, 512, 512],
    "1.8M_": [32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13,
              13, 64, 13, 13, 64, 231, 231, 128, 231, 231, 128, 52,
              52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26,
              128, 308, 308, 128, 26, 26, 128, 26, 26, 128, 512, 512],
}
ARCH = {  # name -> (keep list, SE blocks)
    "MiniFASNetV1": ("1.8M", False),
    "MiniFASNetV2": ("1.8M_", False),
    "MiniFASNetV1SE": ("1.8M", True),
    "MiniFASNetV2SE": ("1.8M_", True),
}
INPUT_SIZE = 80
CONV6_KERNEL = ((INPUT_SIZE + 15) // 16, (INPUT_SIZE + 15) // 16)  # upstream get_kernel(80, 80)


# ---------------------------------------------------------------------------------------
# torch.save checkpoints without torch
# ---------------------------------------------------------------------------------------
_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Tensor(collections.namedtuple("_Tensor", "key storage_type offset size stride")):
    pass


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    kind, stype, key = storage[0], storage[1], storage[2]
    assert kind == "storage", storage
    return _Tensor(key, stype, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Allows only what a plain state dict holds: an OrderedDict of tensors."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in checkpoint")

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel, view_metadata); zip: (.., numel)
        return (pid[0], pid[1], str(pid[2]))


def _view(t: _Tensor, raw: np.ndarray) -> np.ndarray:
    item = raw.itemsize
    a = np.lib.stride_tricks.as_strided(raw[t.offset:], shape=t.size,
                                        strides=[s * item for s in t.stride])
    return np.array(a)  # contiguous copy


def read_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    """A torch.save'd state dict as numpy arrays, in file order ('module.' prefix of
    DataParallel checkpoints removed, as upstream's _load_model does)."""
    with open(path, "rb") as f:
        data = f.read()
    storages = {}
    if data[:2] == b"PK":  # torch >= 1.6 zip format
        z = zipfile.ZipFile(io.BytesIO(data))
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        sd = _Unpickler(io.BytesIO(z.read(pkl))).load()
        for t in sd.values():
            if t.key not in storages:
                storages[t.key] = np.frombuffer(z.read(f"{prefix}data/{t.key}"), dtype=_DTYPES[t.storage_type])
    else:  # legacy format: magic, protocol, sys_info, the object, storage keys, storages
        f = io.BytesIO(data)
        assert pickle.load(f) == _LEGACY_MAGIC, f"{path}: not a torch checkpoint"
        assert pickle.load(f) == 1001, f"{path}: unknown legacy protocol"
        info = pickle.load(f)
        assert info.get("little_endian", True), f"{path}: big-endian checkpoint"
        sd = _Unpickler(f).load()
        keys = pickle.load(f)
        types = {t.key: t.storage_type for t in sd.values()}
        for key in keys:
            (n,) = struct.unpack("<q", f.read(8))
            dt = np.dtype(_DTYPES[types[key]])
            storages[key] = np.frombuffer(f.read(n * dt.itemsize), dtype=dt)
        assert f.tell() == len(data), f"{path}: {len(data) - f.tell()} trailing bytes"
    out = collections.OrderedDict()
    for k, t in sd.items():
        name = k[len("module."):] if k.startswith("module.") else k
        out[name] = _view(t, storages[t.key])
    return out


# ---------------------------------------------------------------------------------------
# the network (structure of upstream's MiniFASNet.py)
# ---------------------------------------------------------------------------------------
class _Net:
    def __init__(self, sd, name):
        self.sd = sd
        self.used = set()
        self.g = GraphBuilder(name)

    def p(self, key) -> np.ndarray:
        self.used.add(key)
        return self.sd[key].astype(np.float64)

    def bn_fold(self, prefix):
        """BatchNorm (eval) as y = x * s + t."""
        s = self.p(f"{prefix}.weight") / np.sqrt(self.p(f"{prefix}.running_var") + BN_EPS)
        t = self.p(f"{prefix}.bias") - self.p(f"{prefix}.running_mean") * s
        self.used.add(f"{prefix}.num_batches_tracked")
        return s, t

    def conv_bn(self, x, conv, bn, stride=1, pad=0, group=1):
        w = self.p(f"{conv}.weight")  # bias=False everywhere upstream
        s, t = self.bn_fold(bn)
        w = w * s[:, None, None, None]
        k = w.shape[2:]
        W = self.g.const(f"{conv}.weight", w.astype(np.float32))
        B = self.g.const(f"{conv}.bias", t.astype(np.float32))
        return self.g.node("Conv", [x, W, B], base=conv, kernel_shape=list(k), strides=[stride, stride],
                           pads=[pad, pad, pad, pad], group=group)

    def conv_block(self, x, m, stride=1, pad=0, dw=False, prelu=True):
        """Conv_block (conv + BN + PReLU) or, prelu=False, Linear_block (conv + BN).

        PReLU is written without the PRelu operator (see `conv_prelu`)."""
        group = self.sd[f"{m}.conv.weight"].shape[0] if dw else 1
        if prelu:
            return self.conv_prelu(x, m, stride, pad, group)
        return self.conv_bn(x, f"{m}.conv", f"{m}.bn", stride, pad, group)

    def conv_prelu(self, x, m, stride, pad, group):
        """PReLU(conv(x)) as Relu(conv(x; (1-a)W, (1-a)b)) + conv(x; aW, ab).

        With z = conv(x): for z > 0, (1-a)z + az = z; for z < 0, 0 + az: PReLU exactly,
        whenever every slope a < 1 (asserted; the checkpoints' slopes lie in
        -0.28..0.59). Why: ONNX Runtime runs convolutions in its blocked NCHWc layout on
        AVX-512 and fuses Relu and the Add into them, but has no NCHWc PRelu, so each of
        the 33 PReLUs cost two layout reorders around a plain-layout operator. Twice the
        convolution arithmetic (0.082 -> 0.16 GFLOP) runs in 35-40% less time (2.5 instead
        of 4.0 ms, one thread; models/README.md). The scaling is done in float64 with the
        BatchNorm folding, before the one cast to float32."""
        w = self.p(f"{m}.conv.weight")  # bias=False everywhere upstream
        s, t = self.bn_fold(f"{m}.bn")
        w = w * s[:, None, None, None]
        a = self.p(f"{m}.prelu.weight").reshape(-1)
        assert a.shape == t.shape and np.all(a < 1.0), f"{m}: PReLU slopes must be < 1"
        k = list(w.shape[2:])
        attrs = dict(kernel_shape=k, strides=[stride, stride], pads=[pad, pad, pad, pad], group=group)
        branches = []
        for part, scale in (("positive", 1.0 - a), ("negative", a)):
            W = self.g.const(f"{m}.conv.weight.{part}", (w * scale[:, None, None, None]).astype(np.float32))
            B = self.g.const(f"{m}.conv.bias.{part}", (t * scale).astype(np.float32))
            branches.append(self.g.node("Conv", [x, W, B], base=f"{m}.conv.{part}", **attrs))
        positive = self.g.node("Relu", [branches[0]], base=f"{m}.prelu.relu")
        return self.g.node("Add", [positive, branches[1]], base=f"{m}.prelu")

    def se(self, x, m):
        """SEModule: x * sigmoid(BN(fc2(relu(BN(fc1(avgpool(x)))))))."""
        p = self.g.node("GlobalAveragePool", [x], base=f"{m}.avg_pool")
        h = self.conv_bn(p, f"{m}.fc1", f"{m}.bn1")
        h = self.g.node("Relu", [h], base=f"{m}.relu")
        h = self.conv_bn(h, f"{m}.fc2", f"{m}.bn2")
        h = self.g.node("Sigmoid", [h], base=f"{m}.sigmoid")
        return self.g.node("Mul", [x, h], base=m)

    def depth_wise(self, x, m, stride, residual, se=False):
        """Depth_Wise / Depth_Wise_SE: 1x1 Conv_block, 3x3 depthwise Conv_block (pad 1),
        1x1 Linear_block, [SE], [+ input]."""
        y = self.conv_block(x, f"{m}.conv")
        y = self.conv_block(y, f"{m}.conv_dw", stride=stride, pad=1, dw=True)
        y = self.conv_block(y, f"{m}.project", prelu=False)
        if residual and se:
            y = self.se(y, f"{m}.se_module")
        if residual:
            y = self.g.node("Add", [x, y], base=m)
        return y

    def build(self, se: bool):
        g = self.g
        x = g.add_input("input", ["N", 3, INPUT_SIZE, INPUT_SIZE])
        y = self.conv_block(x, "conv1", stride=2, pad=1)
        y = self.conv_block(y, "conv2_dw", stride=1, pad=1, dw=True)
        y = self.depth_wise(y, "conv_23", 2, residual=False)
        for stage, n in (("conv_3", 4), ("conv_34", 0), ("conv_4", 6), ("conv_45", 0), ("conv_5", 2)):
            if n == 0:
                y = self.depth_wise(y, stage, 2, residual=False)
                continue
            for i in range(n):  # ResidualSE: only the last block of a stage has the SE module
                y = self.depth_wise(y, f"{stage}.model.{i}", 1, residual=True, se=se and i == n - 1)
        y = self.conv_block(y, "conv_6_sep")
        y = self.conv_block(y, "conv_6_dw", dw=True, prelu=False)  # 5x5 'valid' -> 1x1
        y = g.node("Flatten", [y], base="conv_6_flatten", axis=1)
        # linear (no bias) + BatchNorm1d folded; Dropout is the identity in eval mode
        w = self.p("linear.weight")
        s, t = self.bn_fold("bn")
        W = g.const("linear.weight", (w * s[:, None]).astype(np.float32))
        B = g.const("linear.bias", t.astype(np.float32))
        y = g.node("Gemm", [y, W, B], base="linear", transB=1)
        P = g.const("prob.weight", self.p("prob.weight").astype(np.float32))
        logits = g.node("Gemm", [y, P], out="logits", transB=1)
        g.add_output(logits, "logits", ["N", 3])
        prob = g.node("Softmax", [logits], out="prob", axis=1)
        g.add_output(prob, "prob", ["N", 3])
        missing = set(self.sd) - self.used
        assert not missing, f"state dict entries not used: {sorted(missing)}"
        return g


def build_model(pth: str, arch: str, fname: str, scale: float) -> onnx.ModelProto:
    keep_name, se = ARCH[arch]
    sd = read_state_dict(pth)
    keep = KEEP[keep_name]
    # shapes the checkpoint must have for this keep list (first and last layers)
    assert sd["conv1.conv.weight"].shape == (keep[0], 3, 3, 3), sd["conv1.conv.weight"].shape
    assert sd["conv_6_dw.conv.weight"].shape == (keep[48], 1, *CONV6_KERNEL)
    assert sd["prob.weight"].shape == (3, 128)
    net = _Net(sd, os.path.splitext(fname)[0])
    g = net.build(se)
    src = os.path.basename(pth)
    return g.model(
        doc=f"{UPSTREAM} {SRC_PATH}/{src} ({arch}) converted by models/convert/minifasnet.py",
        metadata={
            "source": f"{UPSTREAM} {SRC_PATH}/{src}",
            "source_sha256": hashlib.sha256(open(pth, "rb").read()).hexdigest(),
            "license": "Apache-2.0",
            "architecture": arch,
            "inputs": "input float32 [N,3,80,80] BGR 0..255 (no normalisation): the face box scaled "
                      f"x{scale:g} about its centre, shifted inside the image, resized to 80x80",
            "outputs": "logits float32 [N,3]; prob float32 [N,3] = softmax(logits); class 1 = real face",
            "crop_scale": f"{scale:g}",
        },
    )



def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="folder with the two upstream .pth files")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    for pth, sha, arch, fname, scale in MODELS:
        path = os.path.join(a.src, pth)
        got = hashlib.sha256(open(path, "rb").read()).hexdigest()
        if got != sha:
            sys.exit(f"{path}: sha256 {got}, expected {sha}")
        save_model(build_model(path, arch, fname, scale), os.path.join(a.out, fname))
    return 0


if __name__ == "__main__":
    sys.exit(main())
