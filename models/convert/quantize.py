"""Static int8 quantisation of the recognition network (face_recognition_int8.onnx).

    python -m convert.quantize --models DIR --faces DIR --out FILE

Why only this network: on the AVX-512 VNNI cores this service runs on, ONNX Runtime's
int8 convolutions run the recognition ResNet (29 dense 3x3 convolutions) 2.9x faster than
float32 (2.85 -> 1.0 ms, one thread), while the detector's and the anti-spoof network's
depthwise convolutions get slower and the landmark network barely changes
(`docs/FACE_ENGINE.md`, "int8 recognition").

What it does, deterministically (a second run writes the same bytes):
  1. fold the committed model's weight `DequantizeLinear`s into float32 (ONNX Runtime's
     basic graph optimisations with `session.disable_quant_qdq`, as the service loads it);
  2. calibration inputs: every photo in FACES_DIR/genuine and FACES_DIR/spoof/live, its
     largest face found by the detector, aligned by face-api's own dlib-style box
     (parity/pipeline.py), 150x150, 0..255: the same kind of input the service feeds;
  3. `quantize_static`: QDQ format, uint8 activations with min/max calibration, int8
     weights per output channel; the final fully connected layer stays float32 (it
     halves the worst error at no measurable cost);
  4. `onnx.checker`, then write.
The photos only set the activation ranges (a few hundred numbers in the file); the
service never reads them.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
import pipeline  # noqa: E402
import sanity  # noqa: E402

SOURCE = "face_recognition.onnx"
# The final fully connected layer (after global average pooling): kept float32.
KEEP_FLOAT = ["fc__14"]


def calibration_chips(models: str, faces: str) -> list[np.ndarray]:
    det = sanity.sess(models, "face_detector.onnx")
    lm = sanity.sess(models, "face_landmarks.onnx")
    files = sorted(glob.glob(os.path.join(faces, "genuine", "*.*")))
    files += sorted(glob.glob(os.path.join(faces, "spoof", "live", "*.*")))
    chips = []
    for f in files:
        img, box = sanity.detect_largest(det, sanity.load(f))
        if box is None:
            continue
        pts, _ = pipeline.landmarks(lm, img, [box])
        _, (_, _, cw, ch) = pipeline.crop(img, box)
        ab = pipeline.align_box_dlib(pts[0], cw, ch)
        chips.append(pipeline.to_batch_item(pipeline.crop(img, ab)[0], 150, center=True)[None])
    if len(chips) < 20:
        sys.exit(f"only {len(chips)} calibration faces under {faces}: need at least 20")
    return chips


class Chips(CalibrationDataReader):
    def __init__(self, chips):
        self._it = iter({"input": c} for c in chips)

    def get_next(self):
        return next(self._it, None)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True, help="folder with the float models")
    ap.add_argument("--faces", required=True, help="photo folder (genuine/, spoof/live/)")
    ap.add_argument("--out", required=True, help="the int8 model to write")
    a = ap.parse_args(argv)
    chips = calibration_chips(a.models, a.faces)
    with tempfile.TemporaryDirectory() as tmp:
        folded = os.path.join(tmp, "folded.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        so.optimized_model_filepath = folded
        ort.InferenceSession(os.path.join(a.models, SOURCE), so, providers=["CPUExecutionProvider"])
        quantized = os.path.join(tmp, "int8.onnx")
        # quantize_static logs (root logger) a suggestion to run its pre-processing; the
        # folding above is that step for this graph (constant folding, shapes are static).
        logging.getLogger().setLevel(logging.ERROR)
        quantize_static(
            folded,
            quantized,
            Chips(chips),
            quant_format=QuantFormat.QDQ,
            calibrate_method=CalibrationMethod.MinMax,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=KEEP_FLOAT,
        )
        model = onnx.load(quantized)
    model.doc_string = (
        f"{SOURCE} with int8 weights (per channel) and uint8 activations (min/max over "
        f"{len(chips)} aligned faces); built by models/convert/quantize.py"
    )
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    with open(a.out + ".tmp", "wb") as f:
        f.write(data)
    os.replace(a.out + ".tmp", a.out)
    print(f"  wrote {os.path.basename(a.out)} ({len(data)} bytes, {len(chips)} calibration faces)")


if __name__ == "__main__":
    main()
