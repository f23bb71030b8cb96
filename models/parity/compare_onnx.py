"""Feed the tensors written by run_tfjs.cjs to the ONNX files and report the worst
absolute difference per model.

    python compare_onnx.py --cases DIR --models DIR [--json FILE] [--max-abs-diff X]

Exits non-zero when any worst difference exceeds --max-abs-diff (default 1e-3),
or when a model's output never matched any case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline  # noqa: E402

MODELS = {
    "det416": "face_detector.onnx",
    "det224": "face_detector.onnx",
    "landmarks": "face_landmarks.onnx",
    "recognition": "face_recognition.onnx",
    "antispoof": "anti_spoof.onnx",
}


def session(path: str, fold_qdq: bool) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if fold_qdq:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def end_to_end(a, index) -> dict:
    """Run pipeline.py (the documented pre/post-processing) with the ONNX files on the
    decoded images and compare with face-api's own detections, landmarks, aligned
    boxes and descriptors."""
    s = {k: session(os.path.join(a.models, f), True) for k, f in
         (("det", "face_detector.onnx"), ("lm", "face_landmarks.onnx"), ("rec", "face_recognition.onnx"))}
    r = {"images": 0, "faces": 0, "face_count_mismatches": 0, "det_box_px": 0.0, "det_score": 0.0,
         "landmarks_px": 0.0, "aligned_box_px": 0.0, "descriptor": 0.0}
    for im in index.get("images", []):
        img = np.load(os.path.join(a.cases, im["image"])).astype(np.float32)
        ref = im["faces"]
        r["images"] += 1
        dets = pipeline.detect(s["det"], img)
        if len(dets) != len(ref):
            r["face_count_mismatches"] += 1
            continue
        if not ref:
            continue
        r["faces"] += len(ref)
        # face-api orders by NMS pick (descending score); match greedily by box
        for f in ref:
            best = min(dets, key=lambda d: max(abs(p - q) for p, q in zip(d[1], f["box"])))
            r["det_box_px"] = max(r["det_box_px"], max(abs(p - q) for p, q in zip(best[1], f["box"])))
            r["det_score"] = max(r["det_score"], abs(best[0] - f["score"]))
        boxes = [f["box"] for f in ref]
        lms, _ = pipeline.landmarks(s["lm"], img, boxes)
        for f, lm, b in zip(ref, lms, boxes):
            r["landmarks_px"] = max(r["landmarks_px"], float(np.max(np.abs(lm - np.array(f["landmarks"])))))
            _, (_, _, cw, ch) = pipeline.crop(img, b)
            ab = pipeline.align_box_dlib(np.array(f["landmarks"]), cw, ch)
            r["aligned_box_px"] = max(r["aligned_box_px"], max(abs(p - q) for p, q in zip(ab, f["alignedBox"])))
        emb = pipeline.embed(s["rec"], img, [f["alignedBox"] for f in ref])
        r["descriptor"] = max(r["descriptor"], float(np.max(np.abs(emb - np.array([f["descriptor"] for f in ref])))))
    r["ok"] = (r["face_count_mismatches"] == 0 and r["det_box_px"] < 0.05 and r["landmarks_px"] < 0.05
               and r["aligned_box_px"] <= 1 and r["descriptor"] < 1e-3)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True, help="output folder of run_tfjs.cjs")
    ap.add_argument("--models", required=True, help="folder with the .onnx files")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--max-abs-diff", type=float, default=1e-3)
    a = ap.parse_args(argv)

    with open(os.path.join(a.cases, "index.json")) as f:
        index = json.load(f)
    sessions = {}
    summary = {}
    for case in index["cases"]:
        key = case["model"]
        x = np.load(os.path.join(a.cases, case["input"]))
        ref = np.load(os.path.join(a.cases, case["output"]))
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # NHWC -> NCHW
        for fold in (False, True):
            skey = (MODELS[key], fold)
            if skey not in sessions:
                sessions[skey] = session(os.path.join(a.models, MODELS[key]), fold)
            (y,) = sessions[skey].run(None, {"input": x})
            if y.ndim == 4:
                y = y.transpose(0, 2, 3, 1)  # NCHW grid -> NHWC like tfjs
            assert y.shape == ref.shape, (key, case["id"], y.shape, ref.shape)
            d = float(np.max(np.abs(y.astype(np.float64) - ref)))
            s = summary.setdefault(f"{key}{'+fold_qdq' if fold else ''}", {
                "onnx": MODELS[key], "cases": 0, "samples": 0, "worst_abs_diff": 0.0,
                "worst_case": None, "max_abs_ref": 0.0})
            s["cases"] += 1
            s["samples"] += int(ref.shape[0])
            s["max_abs_ref"] = max(s["max_abs_ref"], float(np.max(np.abs(ref))))
            if d >= s["worst_abs_diff"]:
                s["worst_abs_diff"], s["worst_case"] = d, case["id"]
        if key == "recognition" and case.get("pipelineDiff") not in (None, 0):
            print(f"note: {case['id']}: crop reconstruction differs from face-api's pipeline by {case['pipelineDiff']}")

    print(f"tfjs {index['tfjs']['tfjs-core']} ({index['backend']} backend), onnxruntime {ort.__version__}")
    print(f"{'model':26s} {'onnx file':24s} {'cases':>5s} {'N':>4s} {'max|ref|':>9s} {'worst |diff|':>12s}  worst case")
    bad = False
    for k, s in summary.items():
        print(f"{k:26s} {s['onnx']:24s} {s['cases']:5d} {s['samples']:4d} {s['max_abs_ref']:9.3f} {s['worst_abs_diff']:12.3e}  {s['worst_case']}")
        bad |= not (s["worst_abs_diff"] <= a.max_abs_diff)
    e2e = end_to_end(a, index)
    for k, v in e2e.items():
        print(f"end-to-end {k:32s} {v}")
    bad |= not e2e["ok"]
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"tfjs": index["tfjs"], "onnxruntime": ort.__version__, "models": summary, "end_to_end": e2e},
                      f, indent=1)
    if bad:
        print(f"FAIL: a worst difference exceeds {a.max_abs_diff}")
        return 1
    print(f"OK: every worst difference <= {a.max_abs_diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
