"""Sanity check of the ONNX files on real photos (no TF.js involved).

  * embeddings: same-person vs different-person Euclidean distances over the genuine
    photos, (a) with a plain centred crop and (b) with face-api's own pipeline
    (detector -> landmarks -> face-api's dlib-style square box), see pipeline.py;
  * anti-spoof: the model's score on the attack, live and genuine photos.

    python sanity.py --models DIR --faces DIR
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline  # noqa: E402


def load(path):
    im = ImageOps.exif_transpose(Image.open(path))
    return np.asarray(im.convert("RGB"), dtype=np.float32)


def sess(models, name):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(os.path.join(models, name), so, providers=["CPUExecutionProvider"])


def detect_largest(det, img):
    """Largest face; if none, retry on the image zero-padded by half its larger side
    on every edge at input size 224 (the detector misses faces that fill the frame).
    Returns (image to use downstream, box in that image) or (img, None)."""
    dets = pipeline.detect(det, img)
    if not dets:
        p = max(img.shape[:2]) // 2
        img = np.pad(img, ((p, p), (p, p), (0, 0)))
        dets = pipeline.detect(det, img, input_size=224)
    if not dets:
        return img, None
    return img, max(dets, key=lambda d: d[1][2] * d[1][3])[1]


def centred_crop(img, frac=0.6):
    h, w = img.shape[:2]
    s = int(min(h, w) * frac)
    y, x = (h - s) // 2, (w - s) // 2
    return [x, y, s, s]


def stats(embs, ids):
    same, diff = [], []
    for i, j in itertools.combinations(range(len(ids)), 2):
        d = float(np.linalg.norm(embs[i] - embs[j]))
        (same if ids[i] == ids[j] else diff).append(d)
    same, diff = np.array(same), np.array(diff)
    return {
        "pairs same/diff": f"{len(same)}/{len(diff)}",
        "same mean (max)": f"{same.mean():.3f} ({same.max():.3f})",
        "diff mean (min)": f"{diff.mean():.3f} ({diff.min():.3f})",
        "accept@0.6 same": f"{np.mean(same < 0.6) * 100:.1f}%",
        "accept@0.6 diff": f"{np.mean(diff < 0.6) * 100:.2f}%",
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--faces", required=True)
    a = ap.parse_args(argv)
    det, lm, rec, spoof = (sess(a.models, f) for f in
                           ("face_detector.onnx", "face_landmarks.onnx", "face_recognition.onnx", "anti_spoof.onnx"))

    files = sorted(glob.glob(os.path.join(a.faces, "genuine", "*.*")))
    ids, e_centre, ids_p, e_pipe, nodet = [], [], [], [], []
    for f in files:
        person = re.sub(r"_\d+$", "", os.path.splitext(os.path.basename(f))[0])
        img = load(f)
        ids.append(person)
        e_centre.append(pipeline.embed(rec, img, [centred_crop(img)])[0])
        img, box = detect_largest(det, img)
        if box is None:
            nodet.append(os.path.basename(f))
            continue
        pts, _ = pipeline.landmarks(lm, img, [box])
        _, (_, _, cw, ch) = pipeline.crop(img, box)
        ab = pipeline.align_box_dlib(pts[0], cw, ch)
        ids_p.append(person)
        e_pipe.append(pipeline.embed(rec, img, [ab])[0])
    print(f"genuine photos: {len(files)}, identities: {len(set(ids))}")
    print("embedding distances, centred crop (60% of the short side):")
    for k, v in stats(e_centre, ids).items():
        print(f"   {k:18s} {v}")
    print(f"embedding distances, face-api pipeline ({len(ids_p)} photos with a detection; "
          f"no face found in {nodet}):")
    for k, v in stats(e_pipe, ids_p).items():
        print(f"   {k:18s} {v}")

    print("anti_spoof score (output `real`) on the largest detected face, 1.4x square crop:")
    for group in ("spoof/attack", "spoof/live", "genuine"):
        scores = []
        for f in sorted(glob.glob(os.path.join(a.faces, group, "*.*"))):
            img, box = detect_largest(det, load(f))
            box = box or [0, 0, img.shape[1], img.shape[0]]
            x = pipeline.antispoof_crop(img, box)[None]
            (y,) = spoof.run(None, {"input": x})
            scores.append((os.path.basename(f), float(y[0, 0])))
        vals = np.array([s for _, s in scores])
        detail = ", ".join(f"{n}={s:.2f}" for n, s in scores) if len(scores) <= 8 else ""
        print(f"   {group:13s} n={len(vals):2d} mean={vals.mean():.3f} min={vals.min():.3f} max={vals.max():.3f} {detail}")


if __name__ == "__main__":
    main()
