"""Time each ONNX model on one thread, with and without `session.disable_quant_qdq=1`,
and show which weight-decoding nodes survive ONNX Runtime's graph optimisation.

    python bench.py --models DIR [--runs N] [--threads T] [--batch B]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

CASES = [
    ("face_detector.onnx", "detector 416x416", (1, 3, 416, 416)),
    ("face_detector.onnx", "detector 320x320", (1, 3, 320, 320)),
    ("face_detector.onnx", "detector 224x224", (1, 3, 224, 224)),
    ("face_landmarks.onnx", "landmarks 112x112", (1, 3, 112, 112)),
    ("face_recognition.onnx", "recognition 150x150", (1, 3, 150, 150)),
    ("anti_spoof.onnx", "anti_spoof 128x128", (1, 3, 128, 128)),
]


def make_session(path, fold, threads, optimized_out=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if fold:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    if optimized_out:
        so.optimized_model_filepath = optimized_out
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def op_counts(path):
    m = onnx.load(path)
    return collections.Counter(n.op_type for n in m.graph.node)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args(argv)
    ort.set_default_logger_severity(3)  # saving the optimised graph warns about NCHWc nodes
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}, intra_op_num_threads={a.threads}, batch={a.batch}, "
          f"{a.runs} runs after warm-up, ms per inference: median (min)")
    print(f"{'model':22s} {'default':>15s} {'fold_qdq':>15s}   nodes left after optimisation (default | fold_qdq)")
    tmp = tempfile.mkdtemp()
    for fname, label, shape in CASES:
        shape = (a.batch,) + shape[1:]
        x = rng.uniform(0, 255, size=shape).astype(np.float32)
        res = []
        for fold in (False, True):
            opt = os.path.join(tmp, f"{label.replace(' ', '_')}_{int(fold)}.onnx")
            s = make_session(os.path.join(a.models, fname), fold, a.threads, opt)
            for _ in range(5):
                s.run(None, {"input": x})
            ts = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                s.run(None, {"input": x})
                ts.append((time.perf_counter() - t0) * 1e3)
            c = op_counts(opt)
            left = {k: v for k, v in c.items() if k in ("DequantizeLinear", "Cast", "Mul", "Add")}
            res.append((f"{statistics.median(ts):.2f} ({min(ts):.2f})", left, sum(c.values())))
        (t0, l0, n0), (t1, l1, n1) = res
        print(f"{label:22s} {t0:>15s} {t1:>15s}   {n0} nodes {dict(l0)} | {n1} nodes {dict(l1)}")


if __name__ == "__main__":
    main()
