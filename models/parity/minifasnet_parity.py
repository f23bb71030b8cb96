"""Parity of anti_spoof_minifasnet_{v2,v1se}.onnx with upstream's network in PyTorch.

    python minifasnet_parity.py --src DIR --models DIR [--faces DIR ...] [--random N]

Needs torch (a build-time tool only, not in convert/requirements.txt; see
models/README.md).  The PyTorch side is upstream's network definition
(minivision-ai/Silent-Face-Anti-Spoofing, src/model_lib/MiniFASNet.py, Apache-2.0,
(c) Minivision), re-implemented below with the same module structure and names so that
upstream's checkpoints load with `load_state_dict(strict=True)`; the checkpoints are read
by torch.load itself, and `convert.minifasnet.read_state_dict` (the converter's
torch-free reader) is checked against it tensor by tensor.  Inputs: N random tensors
uniform in 0..255 and the real crops (minifasnet_eval.minifas_input) of every photo in
the --faces folders.  Prints the worst |ONNX - torch| of the logits and probabilities;
exits 1 above 1e-4 on probabilities or 1e-3 on logits.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn import (AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Linear, Module, PReLU, ReLU,
                      Sequential, Sigmoid)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import minifasnet_eval as ev  # noqa: E402
from convert import minifasnet as conv  # noqa: E402


# ---- upstream's network (src/model_lib/MiniFASNet.py), Apache-2.0, (c) Minivision ------
class Flatten(Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class Conv_block(Module):
    def __init__(self, in_c, out_c, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1):
        super().__init__()
        self.conv = Conv2d(in_c, out_c, kernel_size=kernel, groups=groups, stride=stride, padding=padding,
                           bias=False)
        self.bn = BatchNorm2d(out_c)
        self.prelu = PReLU(out_c)

    def forward(self, x):
        return self.prelu(self.bn(self.conv(x)))


class Linear_block(Module):
    def __init__(self, in_c, out_c, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1):
        super().__init__()
        self.conv = Conv2d(in_c, out_channels=out_c, kernel_size=kernel, groups=groups, stride=stride,
                           padding=padding, bias=False)
        self.bn = BatchNorm2d(out_c)

    def forward(self, x):
        return self.bn(self.conv(x))


class SEModule(Module):
    def __init__(self, channels, reduction):
        super().__init__()
        self.avg_pool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.bn1 = BatchNorm2d(channels // reduction)
        self.relu = ReLU(inplace=True)
        self.fc2 = Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.sigmoid = Sigmoid()

    def forward(self, x):
        s = self.sigmoid(self.bn2(self.fc2(self.relu(self.bn1(self.fc1(self.avg_pool(x)))))))
        return x * s


class Depth_Wise(Module):
    def __init__(self, c1, c2, c3, residual=False, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=1,
                 se_reduct=None):
        super().__init__()
        self.conv = Conv_block(c1[0], out_c=c1[1], kernel=(1, 1), padding=(0, 0), stride=(1, 1))
        self.conv_dw = Conv_block(c2[0], c2[1], groups=c2[0], kernel=kernel, padding=padding, stride=stride)
        self.project = Linear_block(c3[0], c3[1], kernel=(1, 1), padding=(0, 0), stride=(1, 1))
        self.residual = residual
        if se_reduct is not None:  # upstream's Depth_Wise_SE
            self.se_module = SEModule(c3[1], se_reduct)

    def forward(self, x):
        y = self.project(self.conv_dw(self.conv(x)))
        if self.residual:
            if hasattr(self, "se_module"):
                y = self.se_module(y)
            return x + y
        return y


class Residual(Module):  # Residual, or ResidualSE when se=True (SE in the last block only)
    def __init__(self, c1, c2, c3, num_block, se=False):
        super().__init__()
        self.model = Sequential(*[
            Depth_Wise(c1[i], c2[i], c3[i], residual=True, kernel=(3, 3), padding=(1, 1), stride=(1, 1),
                       se_reduct=4 if se and i == num_block - 1 else None)
            for i in range(num_block)])

    def forward(self, x):
        return self.model(x)


class MiniFASNet(Module):
    def __init__(self, keep, se, embedding_size=128, conv6_kernel=(5, 5), num_classes=3, img_channel=3):
        super().__init__()
        k = keep
        self.conv1 = Conv_block(img_channel, k[0], kernel=(3, 3), stride=(2, 2), padding=(1, 1))
        self.conv2_dw = Conv_block(k[0], k[1], kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=k[1])
        self.conv_23 = Depth_Wise((k[1], k[2]), (k[2], k[3]), (k[3], k[4]), kernel=(3, 3), stride=(2, 2),
                                  padding=(1, 1), groups=k[3])
        ix = [4, 7, 10, 13]
        self.conv_3 = Residual([(k[i], k[i + 1]) for i in ix], [(k[i + 1], k[i + 2]) for i in ix],
                               [(k[i + 2], k[i + 3]) for i in ix], 4, se)
        self.conv_34 = Depth_Wise((k[16], k[17]), (k[17], k[18]), (k[18], k[19]), kernel=(3, 3), stride=(2, 2),
                                  padding=(1, 1), groups=k[19])
        ix = [19, 22, 25, 28, 31, 34]
        self.conv_4 = Residual([(k[i], k[i + 1]) for i in ix], [(k[i + 1], k[i + 2]) for i in ix],
                               [(k[i + 2], k[i + 3]) for i in ix], 6, se)
        self.conv_45 = Depth_Wise((k[37], k[38]), (k[38], k[39]), (k[39], k[40]), kernel=(3, 3), stride=(2, 2),
                                  padding=(1, 1), groups=k[40])
        ix = [40, 43]
        self.conv_5 = Residual([(k[i], k[i + 1]) for i in ix], [(k[i + 1], k[i + 2]) for i in ix],
                               [(k[i + 2], k[i + 3]) for i in ix], 2, se)
        self.conv_6_sep = Conv_block(k[46], k[47], kernel=(1, 1), stride=(1, 1), padding=(0, 0))
        self.conv_6_dw = Linear_block(k[47], k[48], groups=k[48], kernel=conv6_kernel, stride=(1, 1),
                                      padding=(0, 0))
        self.conv_6_flatten = Flatten()
        self.linear = Linear(512, embedding_size, bias=False)
        self.bn = BatchNorm1d(embedding_size)
        self.drop = torch.nn.Dropout(p=0.2)
        self.prob = Linear(embedding_size, num_classes, bias=False)

    def forward(self, x):
        for m in (self.conv1, self.conv2_dw, self.conv_23, self.conv_3, self.conv_34, self.conv_4, self.conv_45,
                  self.conv_5, self.conv_6_sep, self.conv_6_dw, self.conv_6_flatten, self.linear, self.bn,
                  self.drop, self.prob):
            x = m(x)
        return x
# ---------------------------------------------------------------------------------------


def torch_model(pth, arch):
    keep_name, se = conv.ARCH[arch]
    m = MiniFASNet(conv.KEEP[keep_name], se, conv6_kernel=conv.CONV6_KERNEL)
    try:
        sd = torch.load(pth, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (older torch without weights_only for legacy files)
        sd = torch.load(pth, map_location="cpu")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    m.load_state_dict(sd, strict=True)
    return m.eval(), sd


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="folder with the upstream .pth files")
    ap.add_argument("--models", required=True, help="folder with the ONNX files and face_detector.onnx")
    ap.add_argument("--faces", action="append", default=[])
    ap.add_argument("--random", type=int, default=64)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    det = ev.session(os.path.join(a.models, "face_detector.onnx"), 2)
    # real crops (the same photo gives a different crop for each scale)
    photos = []
    for faces in a.faces:
        for _, path in ev.files_of(faces):
            rgb = ev.load_rgb(path)
            found = ev.detect_largest(det, rgb)
            if found is not None:
                photos.append((rgb, found[1]))
    print(f"torch {torch.__version__}; {a.random} random inputs (uniform 0..255) and "
          f"{len(photos)} real face crops per model")
    worst_fail = False
    for pth, _sha, arch, fname, scale in conv.MODELS:
        path = os.path.join(a.src, pth)
        model, sd = torch_model(path, arch)
        mine = conv.read_state_dict(path)
        assert set(mine) == set(sd), "state dict keys differ"
        sd_diff = max(float(np.abs(mine[k].astype(np.float64) - sd[k].numpy().astype(np.float64)).max())
                      for k in sd)
        sess = ev.session(os.path.join(a.models, fname))
        rng = np.random.default_rng(0)
        rand = rng.uniform(0, 255, size=(a.random, 3, 80, 80)).astype(np.float32)
        real = np.stack([ev.minifas_input(rgb, box, scale) for rgb, box in photos]) if photos else rand[:0]
        for label, x in (("random", rand), ("real crops", real)):
            if len(x) == 0:
                continue
            with torch.no_grad():
                t_logits = model(torch.from_numpy(x)).numpy().astype(np.float64)
            t_prob = F.softmax(torch.from_numpy(t_logits), dim=1).numpy()
            o_logits, o_prob = [], []
            for i in range(len(x)):  # batch 1, as the service runs it
                lo, pr = sess.run(None, {"input": x[i:i + 1]})
                o_logits.append(lo[0])
                o_prob.append(pr[0])
            o_logits, o_prob = np.array(o_logits, np.float64), np.array(o_prob, np.float64)
            dl = float(np.abs(o_logits - t_logits).max())
            dp = float(np.abs(o_prob - t_prob).max())
            agree = int((o_prob.argmax(1) == t_prob.argmax(1)).sum())
            fail = dp > 1e-4 or dl > 1e-3
            worst_fail |= fail
            print(f"  {fname:34s} {label:10s} n={len(x):3d}  max|logit| {np.abs(t_logits).max():7.3f}  "
                  f"max|dlogit| {dl:.2e}  max|dprob| {dp:.2e}  argmax agree {agree}/{len(x)}"
                  f"{'  FAIL' if fail else ''}")
        print(f"  {fname:34s} torch-free reader vs torch.load: max |diff| {sd_diff:.1e} over {len(sd)} tensors")
    return 1 if worst_fail else 0


if __name__ == "__main__":
    sys.exit(main())
