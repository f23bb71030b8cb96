"""MiniFASNet anti-spoofing scores on a photo folder laid out like testdata/faces
(genuine/, spoof/attack/, spoof/live/; any of them may be missing).

    python minifasnet_eval.py --models DIR --faces DIR [--faces DIR ...] [--resize linear|box]
                              [--per-file] [--check-cv2]

For every photo: EXIF orientation applied (Pillow's ImageOps.exif_transpose, what
cv2.imread does too), the face box from `face_detector.onnx` exactly as the Rust service
finds it (engine.rs `detect_faces`, detect.rs, resample.rs: tiny-416, no upscaling of
small photos, retries inside borders of the mean colour; largest box), then upstream's
crop for each model (`crop_box`: the box scaled by 2.7 / 4.0 about its centre, shifted
back inside the image) resized to 80x80 (`resize_linear`: OpenCV INTER_LINEAR, what
upstream's cv2.resize uses), in BGR 0..255, and the score = softmax probability of class 1
(real).  Upstream's fusion (test.py) averages the two models' softmax outputs.

Printed: the score per file (with --per-file) and APCER / BPCER at 0.5, 0.7, 0.9 per
group (attack species from the file names: print / replay / idphoto).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MODELS = [  # (label, file, upstream crop scale)
    ("v2", "anti_spoof_minifasnet_v2.onnx", 2.7),
    ("v1se", "anti_spoof_minifasnet_v1se.onnx", 4.0),
]
THRESHOLDS = (0.5, 0.7, 0.9)
SIZE = 80

# --- the service's detector (service/src/face/detect.rs, engine.rs) --------------------
ANCHORS = np.array([(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
                    (4.266906, 5.178857), (9.041765, 10.66308)], dtype=np.float32)
STRIDE, MIN_INPUT, RETRY_INPUT, RETRY_BORDERS = 32, 224, 320, (0.5, 0.6)


def load_rgb(path: str) -> np.ndarray:
    """uint8 HxWx3 RGB, EXIF orientation applied."""
    im = ImageOps.exif_transpose(Image.open(path))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _rust_round(v: float) -> float:  # f32::round: halves away from zero
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def resample_service(img: np.ndarray, src, dst_wh) -> np.ndarray:
    """resample.rs `resample_planar` for a placement filling the whole destination:
    box pre-filter of k = floor(min(step)) (k >= 1), then pixel-centre bilinear with
    coordinates clamped.  img uint8/float HxWx3 -> float32 3xHoxWo."""
    sx, sy, sw, sh = src
    ow, oh = dst_wh
    H, W = img.shape[:2]
    step = (sw / ow, sh / oh)
    k = max(1, int(math.floor(min(step))))
    rx0, ry0 = max(int(math.floor(sx)) - 1, 0), max(int(math.floor(sy)) - 1, 0)
    rx1 = min(int(math.ceil(sx + sw)) + 1, W)
    ry1 = min(int(math.ceil(sy + sh)) + 1, H)
    reg = img[ry0:ry1, rx0:rx1].astype(np.float32)
    rh, rw = (reg.shape[0] // k), (reg.shape[1] // k)
    reg = reg[:rh * k, :rw * k].reshape(rh, k, rw, k, 3).mean(axis=(1, 3), dtype=np.float32)

    def taps(n_out, s0, st, origin, n):
        c = s0 + (np.arange(n_out, dtype=np.float32) + 0.5) * st
        x = (c - 0.5 - origin - (k - 1) / 2.0) / k
        x = np.clip(x, 0, n - 1)
        lo = np.minimum(np.floor(x).astype(int), max(n - 2, 0))
        return lo, np.minimum(lo + 1, n - 1), (x - lo).astype(np.float32)

    x0, x1, fx = taps(ow, sx, step[0], rx0, rw)
    y0, y1, fy = taps(oh, sy, step[1], ry0, rh)
    top = reg[y0][:, x0] + fx[None, :, None] * (reg[y0][:, x1] - reg[y0][:, x0])
    bot = reg[y1][:, x0] + fx[None, :, None] * (reg[y1][:, x1] - reg[y1][:, x0])
    out = top + fy[:, None, None] * (bot - top)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def _detect_once(sess, img: np.ndarray, long_side: int):
    h, w = img.shape[:2]
    scale = long_side / max(w, h)
    sw, sh = max(_rust_round(w * scale), 1.0), max(_rust_round(h * scale), 1.0)
    tw, th = -(-int(sw) // STRIDE) * STRIDE, -(-int(sh) // STRIDE) * STRIDE
    x = np.zeros((1, 3, th, tw), np.float32)
    x[0, :, :int(sh), :int(sw)] = resample_service(img, (0, 0, w, h), (int(sw), int(sh)))
    s = sw / w
    (grid,) = sess.run(None, {"input": x})
    _, _, gh, gw = grid.shape
    g = grid[0].reshape(5, 5, gh, gw)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    dets = []
    score = sig(g[:, 4])
    for a, r, c in zip(*np.nonzero(score > 0.5)):
        cx, cy = (c + sig(g[a, 0, r, c])) * STRIDE, (r + sig(g[a, 1, r, c])) * STRIDE
        bw = math.exp(min(g[a, 2, r, c], 10.0)) * ANCHORS[a, 0] * STRIDE
        bh = math.exp(min(g[a, 3, r, c], 10.0)) * ANCHORS[a, 1] * STRIDE
        x0, y0 = min(max((cx - bw / 2) / s, 0), w), min(max((cy - bh / 2) / s, 0), h)
        x1, y1 = min(max((cx + bw / 2) / s, 0), w), min(max((cy + bh / 2) / s, 0), h)
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            dets.append((float(score[a, r, c]), [x0, y0, x1 - x0, y1 - y0]))
    dets.sort(key=lambda d: -d[0])
    keep = []
    for d in dets:
        if all(_iou(k[1], d[1]) <= 0.4 for k in keep):
            keep.append(d)
    keep.sort(key=lambda d: -(d[1][2] * d[1][3]))
    return keep


def _iou(a, b):
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def detect_largest(sess, img: np.ndarray, model_size: int = 416):
    """engine.rs detect_faces + the largest face: (score, [x, y, w, h]) or None."""
    h, w = img.shape[:2]
    own = -(-max(w, h) // STRIDE) * STRIDE
    faces = _detect_once(sess, img, max(min(model_size, own), MIN_INPUT))
    if faces:
        return faces[0]
    for frac in RETRY_BORDERS:
        pad = int(_rust_round(max(w, h) * frac))
        mean = (img.reshape(-1, 3).astype(np.uint64).sum(0) // max(w * h, 1)).astype(np.uint8)
        padded = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
        padded[:] = mean
        padded[pad:pad + h, pad:pad + w] = img
        faces = _detect_once(sess, padded, min(model_size, RETRY_INPUT))
        out = []
        for sc, (bx, by, bw, bh) in faces:
            x0, y0 = min(max(bx - pad, 0), w), min(max(by - pad, 0), h)
            x1, y1 = min(max(bx + bw - pad, 0), w), min(max(by + bh - pad, 0), h)
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                out.append((sc, [x0, y0, x1 - x0, y1 - y0]))
        if out:
            out.sort(key=lambda d: -(d[1][2] * d[1][3]))
            return out[0]
    return None


# --- upstream's crop (src/generate_patches.py CropImage) ------------------------------
def crop_box(img_w: int, img_h: int, box, scale: float):
    """CropImage._get_new_box: the box scaled by `scale` (at most to the image size less
    one pixel) about its centre, shifted back inside [0, W-1] x [0, H-1], truncated to
    ints.  Returns inclusive pixel bounds (x1, y1, x2, y2)."""
    x, y, bw, bh = box
    scale = min((img_h - 1) / bh, min((img_w - 1) / bw, scale))
    nw, nh = bw * scale, bh * scale
    cx, cy = bw / 2 + x, bh / 2 + y
    x1, y1, x2, y2 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if x1 < 0:
        x2 -= x1
        x1 = 0
    if y1 < 0:
        y2 -= y1
        y1 = 0
    if x2 > img_w - 1:
        x1 -= x2 - img_w + 1
        x2 = img_w - 1
    if y2 > img_h - 1:
        y1 -= y2 - img_h + 1
        y2 = img_h - 1
    return int(x1), int(y1), int(x2), int(y2)


def resize_linear(img: np.ndarray, ow: int, oh: int) -> np.ndarray:
    """cv2.resize(img, (ow, oh)) with INTER_LINEAR, in float: src = (dst + 0.5) * in/out
    - 0.5, clamped to the edge pixels, bilinear, no anti-aliasing; rounded to uint8 like
    OpenCV (which uses 11-bit fixed-point weights: may differ by 1 in a few pixels)."""
    ih, iw = img.shape[:2]

    def taps(n_out, n_in):
        s = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        s = np.clip(s, 0, n_in - 1)
        lo = np.floor(s).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, s - lo

    x0, x1, fx = taps(ow, iw)
    y0, y1, fy = taps(oh, ih)
    im = img.astype(np.float64)
    top = im[y0][:, x0] * (1 - fx)[None, :, None] + im[y0][:, x1] * fx[None, :, None]
    bot = im[y1][:, x0] * (1 - fx)[None, :, None] + im[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def minifas_input(rgb: np.ndarray, box, scale: float, resize: str = "linear") -> np.ndarray:
    """The network input [3,80,80] float32, BGR 0..255, for face `box` (x, y, w, h)."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = crop_box(w, h, box, scale)
    patch = rgb[y1:y2 + 1, x1:x2 + 1]
    if resize == "linear":
        chw = resize_linear(patch, SIZE, SIZE).transpose(2, 0, 1).astype(np.float32)
    else:  # the service's own resampler (box pre-filter), for comparison
        chw = resample_service(patch, (0, 0, patch.shape[1], patch.shape[0]), (SIZE, SIZE))
    return np.ascontiguousarray(chw[::-1])  # RGB -> BGR


def session(path: str, threads: int = 1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def softmax(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- evaluation -----------------------------------------------------------------------
def group_of(rel: str) -> str:
    if rel.startswith("spoof/attack/"):
        name = os.path.basename(rel).lower()
        for sp in ("idphoto", "replay", "print"):  # idphoto before print (sfas_print_idphoto)
            if sp in name:
                return f"attack:{sp}"
        return "attack:other"
    if rel.startswith("spoof/live/"):
        return "live"
    return "genuine"


def files_of(faces: str):
    out = []
    for sub in ("spoof/attack", "spoof/live", "genuine"):
        for f in sorted(glob.glob(os.path.join(faces, sub, "*.*"))):
            out.append((os.path.relpath(f, faces), f))
    return out


def evaluate(faces, det, nets, resize, per_file, check_cv2, out=sys.stdout):
    rows, nodet = [], []
    cv2 = None
    if check_cv2:
        import cv2  # noqa: F811  (optional: only to compare resize_linear with OpenCV)
    cv_diff = 0
    for rel, path in files_of(faces):
        rgb = load_rgb(path)
        found = detect_largest(det, rgb)
        if found is None:
            nodet.append(rel)
            continue
        _, box = found
        scores = {}
        for label, sess, scale in nets:
            x = minifas_input(rgb, box, scale, resize)
            if cv2 is not None:
                x1, y1, x2, y2 = crop_box(rgb.shape[1], rgb.shape[0], box, scale)
                ref = cv2.resize(np.ascontiguousarray(rgb[y1:y2 + 1, x1:x2 + 1, ::-1]), (SIZE, SIZE))
                cv_diff = max(cv_diff, int(np.abs(ref.transpose(2, 0, 1).astype(int) - x.astype(int)).max()))
            (logits, prob) = sess.run(None, {"input": x[None]})
            scores[label] = prob[0]
        fused = (scores["v2"] + scores["v1se"]) / 2
        rows.append((rel, group_of(rel), box, scores["v2"][1], scores["v1se"][1], fused[1],
                     int(np.argmax(scores["v2"] + scores["v1se"]))))
    print(f"\n== {faces}  ({len(rows)} photos with a face; no face found: {len(nodet)} {nodet[:10]})", file=out)
    if check_cv2:
        print(f"   resize_linear vs cv2.resize INTER_LINEAR: max |diff| {cv_diff} (uint8 levels)", file=out)
    if per_file:
        print(f"   {'file':44s} {'box x,y,w,h':>22s} {'v2':>6s} {'v1se':>6s} {'fused':>6s} argmax", file=out)
        for rel, grp, box, a, b, f, am in rows:
            if grp == "genuine" and per_file != "all":
                continue
            bx = ",".join(f"{v:.0f}" for v in box)
            print(f"   {rel:44s} {bx:>22s} {a:6.3f} {b:6.3f} {f:6.3f} {am}", file=out)
    groups = sorted({r[1] for r in rows}, key=lambda g: (not g.startswith("attack"), g))
    hdr = "   " + f"{'group':16s} {'n':>4s} {'metric':7s}" + "".join(
        f" {lab + '@' + str(t):>10s}" for lab in ("v2", "v1se", "fused") for t in THRESHOLDS) + f" {'argmax':>8s}"
    print(hdr, file=out)
    summary = {}
    for g in groups + (["attack:all"] if sum(r[1].startswith("attack") for r in rows) else []):
        sel = [r for r in rows if (r[1] == g or (g == "attack:all" and r[1].startswith("attack")))]
        attack = g.startswith("attack")
        cells = []
        for col in (3, 4, 5):
            v = np.array([r[col] for r in sel])
            for t in THRESHOLDS:
                # APCER: attacks accepted as real (score >= t); BPCER: bona fide rejected
                err = (v >= t) if attack else (v < t)
                cells.append(f"{int(err.sum())}/{len(v)}")
                summary[(g, col, t)] = float(err.mean())
        am = np.array([r[6] for r in sel])
        am_err = (am == 1) if attack else (am != 1)
        cells.append(f"{int(am_err.sum())}/{len(am)}")
        print("   " + f"{g:16s} {len(sel):4d} {'APCER' if attack else 'BPCER':7s}" + "".join(
            f" {c:>10s}" for c in cells), file=out)
    for g in groups:
        sel = [r for r in rows if r[1] == g]
        v = np.array([[r[3], r[4], r[5]] for r in sel])
        print(f"   {g:16s} mean score v2 {v[:, 0].mean():.3f}  v1se {v[:, 1].mean():.3f}  "
              f"fused {v[:, 2].mean():.3f} (min {v[:, 2].min():.3f}, median {np.median(v[:, 2]):.3f}, "
              f"max {v[:, 2].max():.3f})", file=out)
    return rows, summary


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True, help="folder with face_detector.onnx and the MiniFASNet files")
    ap.add_argument("--faces", required=True, action="append")
    ap.add_argument("--resize", choices=("linear", "box"), default="linear",
                    help="linear: OpenCV INTER_LINEAR like upstream (default); box: the service's resampler")
    ap.add_argument("--per-file", nargs="?", const="spoof", choices=("spoof", "all"),
                    help="print each file's scores (spoof/ only, or all)")
    ap.add_argument("--check-cv2", action="store_true", help="compare resize_linear with cv2.resize")
    a = ap.parse_args(argv)
    det = session(os.path.join(a.models, "face_detector.onnx"), 2)
    nets = [(label, session(os.path.join(a.models, f)), s) for label, f, s in MODELS]
    print("MiniFASNet scores = softmax probability of class 1 (real); fused = mean of the two "
          f"models (upstream test.py); crop resize: {a.resize}. Cells: errors/n "
          "(APCER: attacks with score >= t; BPCER: bona fide with score < t). "
          "argmax: upstream's decision (label of the summed softmax == 1).")
    for faces in a.faces:
        evaluate(faces, det, nets, a.resize, a.per_file, a.check_cv2)


if __name__ == "__main__":
    main()
