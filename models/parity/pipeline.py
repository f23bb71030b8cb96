"""Reference (numpy) implementation of face-api's pre- and post-processing around
the four ONNX files, written from the TypeScript sources of @vladmandic/face-api
1.7.15 and @vladmandic/human 3.3.6.  It is the executable form of what
models/README.md documents; compare_onnx.py checks it end to end against
face-api's own results.

Images are float32 HxWx3 RGB arrays with values 0..255.
"""

from __future__ import annotations

import math

import numpy as np

ANCHORS = np.array([(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
                    (4.266906, 5.178857), (9.041765, 10.66308)], dtype=np.float64)


def js_round(v: float) -> int:
    """JavaScript Math.round (halves go up)."""
    return int(math.floor(v + 0.5))


def resize_bilinear_tf(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """tf.image.resizeBilinear(x, [h, w], alignCorners=false, halfPixelCenters=false):
    source = dest * in/out (no half-pixel offset, no antialiasing)."""
    in_h, in_w = img.shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return img.astype(np.float32)
    ys = np.arange(out_h) * (in_h / out_h)
    xs = np.arange(out_w) * (in_w / out_w)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(np.ceil(ys).astype(int), in_h - 1)
    x1 = np.minimum(np.ceil(xs).astype(int), in_w - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    im = img.astype(np.float64)
    top = im[y0][:, x0] + (im[y0][:, x1] - im[y0][:, x0]) * fx
    bot = im[y1][:, x0] + (im[y1][:, x1] - im[y1][:, x0]) * fx
    return (top + (bot - top) * fy).astype(np.float32)


def pad_to_square(img: np.ndarray, center: bool) -> np.ndarray:
    """ops/padToSquare.ts: zero-pad the shorter side.  center=False: all padding after
    (bottom/right).  center=True: after = round(d/2), before = d - after."""
    h, w = img.shape[:2]
    if h == w:
        return img
    d = abs(h - w)
    after = js_round(d * 0.5) if center else d
    before = d - after
    pads = ((0, 0), (before, after), (0, 0)) if h > w else ((before, after), (0, 0), (0, 0))
    return np.pad(img, pads)


def to_batch_item(img: np.ndarray, size: int, center: bool) -> np.ndarray:
    """NetInput.toBatchTensor for one tensor input -> CHW float32."""
    sq = pad_to_square(img, center)
    if sq.shape[0] != size or sq.shape[1] != size:
        sq = resize_bilinear_tf(sq, size, size)
    return np.ascontiguousarray(sq.transpose(2, 0, 1), dtype=np.float32)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def decode_grid(grid: np.ndarray, score_threshold: float = 0.5):
    """grid: [25, rows, cols] (one image) -> list of (score, cx, cy, w, h) in units of the
    network input divided by its size, i.e. relative to the padded square input."""
    _, rows, cols = grid.shape
    g = grid.reshape(5, 5, rows, cols).astype(np.float64)  # [anchor, (x,y,w,h,score), row, col]
    out = []
    score = sigmoid(g[:, 4])
    for a, r, c in zip(*np.nonzero(score > score_threshold)):
        cx = (c + sigmoid(g[a, 0, r, c])) / cols
        cy = (r + sigmoid(g[a, 1, r, c])) / rows
        w = math.exp(g[a, 2, r, c]) * ANCHORS[a, 0] / cols
        h = math.exp(g[a, 3, r, c]) * ANCHORS[a, 1] / rows
        out.append((float(score[a, r, c]), cx, cy, w, h))
    return out


def iou(a, b):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    iw = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    ih = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def nms(boxes, scores, iou_threshold=0.4):
    """ops/nonMaxSuppression.ts (greedy, highest score first, drop IoU > threshold)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    pick = []
    while order:
        cur = order.pop()
        pick.append(cur)
        order = [i for i in order if iou(boxes[cur], boxes[i]) <= iou_threshold]
    return pick


def detect(sess, img: np.ndarray, input_size=416, score_threshold=0.5, iou_threshold=0.4):
    """TinyFaceDetector.locateFaces -> list of (score, [x, y, w, h]) in image pixels."""
    h, w = img.shape[:2]
    x = to_batch_item(img, input_size, center=False)[None]
    (grid,) = sess.run(None, {"input": x})
    # face-api's correction factors use the rounded resized size (computeReshapedDimensions)
    scale = input_size / max(h, w)
    rw, rh = js_round(w * scale), js_round(h * scale)
    fx, fy = input_size / rw, input_size / rh
    dets = []
    for score, cx, cy, bw, bh in decode_grid(grid[0], score_threshold):
        cx, cy, bw, bh = cx * fx, cy * fy, bw * fx, bh * fy  # relative to the unpadded image
        dets.append((score, [(cx - bw / 2), (cy - bh / 2), bw, bh]))
    keep = nms([d[1] for d in dets], [d[0] for d in dets], iou_threshold)
    return [(dets[i][0], [dets[i][1][0] * w, dets[i][1][1] * h, dets[i][1][2] * w, dets[i][1][3] * h]) for i in keep]


def clip_box(box, img_w, img_h):
    """Box.clipAtImageBorders then floor (what extractFaceTensors crops)."""
    x, y, bw, bh = box
    cx, cy = max(x, 0.0), max(y, 0.0)
    cw = min(x + bw - cx, img_w - cx)
    ch = min(y + bh - cy, img_h - cy)
    return [math.floor(cx), math.floor(cy), math.floor(cw), math.floor(ch)]


def crop(img, box):
    x, y, w, h = clip_box(box, img.shape[1], img.shape[0])
    return img[y:y + h, x:x + w], (x, y, w, h)


def landmarks(sess, img, boxes):
    """FaceLandmark68Net on the detection boxes -> [N,68,2] image pixels (face-api's convention:
    shifted by the unclipped detection box origin)."""
    crops = [crop(img, b) for b in boxes]
    x = np.stack([to_batch_item(c, 112, center=True) for c, _ in crops])
    (raw,) = sess.run(None, {"input": x})
    out = []
    for (c, (_, _, cw, ch)), r, b in zip(crops, raw, boxes):
        s = 112 / max(cw, ch)
        w2, h2 = cw * s, ch * s
        pad_x = abs(w2 - h2) / 2 if w2 < h2 else 0.0
        pad_y = abs(w2 - h2) / 2 if h2 < w2 else 0.0
        pts = r.reshape(68, 2).astype(np.float64)
        rel_x = (pts[:, 0] * 112 - pad_x) / w2
        rel_y = (pts[:, 1] * 112 - pad_y) / h2
        out.append(np.stack([rel_x * cw + b[0], rel_y * ch + b[1]], axis=1))
    return np.array(out), raw


def align_box_dlib(pts: np.ndarray, crop_w: float, crop_h: float):
    """FaceLandmarks.alignDlib: square box from eye and mouth centres (no rotation)."""
    le, re_, mouth = pts[36:42].mean(0), pts[42:48].mean(0), pts[48:68].mean(0)
    d = (np.linalg.norm(mouth - le) + np.linalg.norm(mouth - re_)) / 2
    size = math.floor(d / 0.45)
    ref = (le + re_ + mouth) / 3
    x = math.floor(max(0.0, ref[0] - 0.5 * size))
    y = math.floor(max(0.0, ref[1] - 0.43 * size))
    return [x, y, min(size, crop_w + x), min(size, crop_h + y)]


def embed(sess, img, boxes):
    x = np.stack([to_batch_item(crop(img, b)[0], 150, center=True) for b in boxes])
    (e,) = sess.run(None, {"input": x})
    return e


def antispoof_crop(img, box, out=128, enlarge=1.4):
    """Square crop of `enlarge` x the larger box side around the box centre, bilinear
    (tf.image.cropAndResize semantics, zeros outside the image), 0..255 CHW."""
    x, y, w, h = box
    cx, cy, half = x + w / 2, y + h / 2, enlarge * max(w, h) / 2
    y1, x1, y2, x2 = cy - half, cx - half, cy + half, cx + half
    H, W = img.shape[:2]
    ys = y1 + np.arange(out) * (y2 - y1) / (out - 1)
    xs = x1 + np.arange(out) * (x2 - x1) / (out - 1)
    valid = (ys[:, None] >= 0) & (ys[:, None] <= H - 1) & (xs[None] >= 0) & (xs[None] <= W - 1)
    yc, xc = np.clip(ys, 0, H - 1), np.clip(xs, 0, W - 1)
    y0, x0 = np.floor(yc).astype(int), np.floor(xc).astype(int)
    y1i, x1i = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy, fx = (yc - y0)[:, None, None], (xc - x0)[None, :, None]
    im = img.astype(np.float64)
    top = im[y0][:, x0] + (im[y0][:, x1i] - im[y0][:, x0]) * fx
    bot = im[y1i][:, x0] + (im[y1i][:, x1i] - im[y1i][:, x0]) * fx
    res = (top + (bot - top) * fy) * valid[..., None]
    return np.ascontiguousarray(res.transpose(2, 0, 1), dtype=np.float32)
