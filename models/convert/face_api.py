"""Rebuild three @vladmandic/face-api networks as ONNX graphs.

The TF.js *layers* weight manifests only list tensors; the graphs are the ones
face-api builds in code.  Each function below follows the TypeScript named in
its docstring line by line (TF.js is NHWC/HWIO, ONNX is NCHW/OIHW).
"""

from __future__ import annotations

import numpy as np

from .builder import GraphBuilder, tf_same_pads
from .tfjs_weights import Weight

HWIO_TO_OIHW = (3, 2, 0, 1)  # [kh,kw,cin,cout] -> [cout,cin,kh,kw]
DW_TO_OIHW = (2, 3, 0, 1)  # depthwise [kh,kw,c,1] -> [c,1,kh,kw]

LEAKY_ALPHA = float(np.float32(0.10000000149011612))


def _normalize(g: GraphBuilder, x: str, mean_rgb) -> str:
    """ops/normalize.ts then .div(255): (x - mean_rgb) / 255, per RGB channel."""
    mean = g.const("mean_rgb", np.array(mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1))
    x = g.node("Sub", [x, mean], base="sub_mean")
    return g.node("Div", [x, g.const("c255", np.array(255.0, dtype=np.float32))], base="div_255")


def _conv(g, x, w: Weight, b: Weight | None, stride=1, pads=(0, 0, 0, 0), group=1, perm=HWIO_TO_OIHW, base=None):
    ins = [x, g.weight(w, perm=perm)]
    if b is not None:
        ins.append(g.weight(b))
    kh, kw = w.shape[0], w.shape[1]
    return g.node("Conv", ins, base=base, kernel_shape=[kh, kw], strides=[stride, stride],
                  pads=list(pads), group=group)


def _sep_conv(g, x, W, prefix, stride=1, pads=(1, 1, 1, 1)):
    """tf.separableConv2d(x, dw, pw, stride, pad) + bias (no activation)."""
    dw = W[f"{prefix}/depthwise_filter"]
    c = dw.shape[2]
    y = _conv(g, x, dw, None, stride=stride, pads=pads, group=c, perm=DW_TO_OIHW, base=f"{prefix}/depthwise")
    return _conv(g, y, W[f"{prefix}/pointwise_filter"], W[f"{prefix}/bias"], base=f"{prefix}/pointwise")


# ---------------------------------------------------------------------------
# Tiny face detector: src/tinyFaceDetector/TinyFaceDetector.ts,
# src/tinyYolov2/TinyYolov2Base.ts (runMobilenet, forwardInput),
# src/tinyYolov2/depthwiseSeparableConv.ts, src/tinyYolov2/leaky.ts.
# ---------------------------------------------------------------------------
TINY_MEAN_RGB = [117.001, 114.697, 97.404]
TINY_ANCHORS = [(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
                (4.266906, 5.178857), (9.041765, 10.66308)]


def tiny_face_detector(W: dict) -> GraphBuilder:
    g = GraphBuilder("tiny_face_detector")
    x = g.add_input("input", ["N", 3, "H", "W"])
    x = _normalize(g, x, TINY_MEAN_RGB)
    # isFirstLayerConv2d: leaky(convLayer(x, conv0, 'valid'))
    x = _conv(g, x, W["conv0/filters"], W["conv0/bias"], base="conv0")
    x = g.node("LeakyRelu", [x], base="conv0/leaky", alpha=LEAKY_ALPHA)

    def maxpool(x, stride, base):
        # tf.maxPool(x, [2,2], stride, 'same'): TF SAME puts the extra pad after = SAME_UPPER
        return g.node("MaxPool", [x], base=base, kernel_shape=[2, 2], strides=[stride, stride],
                      auto_pad="SAME_UPPER")

    x = maxpool(x, 2, "pool0")
    for i in range(1, 6):
        # tinyYolov2/depthwiseSeparableConv.ts: pad 1 all round, separableConv2d 'valid', + bias, leaky
        x = _sep_conv(g, x, W, f"conv{i}", pads=(1, 1, 1, 1))
        x = g.node("LeakyRelu", [x], base=f"conv{i}/leaky", alpha=LEAKY_ALPHA)
        x = maxpool(x, 2 if i < 5 else 1, f"pool{i}")
    # filterSizes has 7 entries: no conv6 / conv7
    assert "conv6/bias" not in W and "conv7/bias" not in W
    x = _conv(g, x, W["conv8/filters"], W["conv8/bias"], base="conv8")
    g.add_output(x, "grid", ["N", 5 * len(TINY_ANCHORS), "h", "w"])
    return g


# ---------------------------------------------------------------------------
# 68-point landmark net: src/faceLandmarkNet/FaceLandmark68Net.ts,
# src/faceFeatureExtractor/FaceFeatureExtractor.ts + denseBlock.ts,
# src/common/depthwiseSeparableConv.ts, src/faceProcessor/FaceProcessor.ts.
# ---------------------------------------------------------------------------
FEATURE_MEAN_RGB = [122.782, 117.001, 104.298]


def face_landmark_68(W: dict) -> GraphBuilder:
    g = GraphBuilder("face_landmark_68")
    x = g.add_input("input", ["N", 3, 112, 112])
    x = _normalize(g, x, FEATURE_MEAN_RGB)
    size = 112

    def same(stride):
        ph = tf_same_pads(size, 3, stride)
        return (ph[0], ph[0], ph[1], ph[1])  # [top, left, bottom, right], square input

    for d in range(4):
        p = f"dense{d}"
        pads = same(2)
        if d == 0:
            # tf.conv2d(x, conv0.filters, [2,2], 'same') + bias
            out1 = _conv(g, x, W[f"{p}/conv0/filters"], W[f"{p}/conv0/bias"], stride=2, pads=pads, base=f"{p}/conv0")
        else:
            out1 = _sep_conv(g, x, W, f"{p}/conv0", stride=2, pads=pads)
        size = -(-size // 2)
        out1 = g.node("Relu", [out1], base=f"{p}/out1")
        s1 = same(1)
        out2 = _sep_conv(g, out1, W, f"{p}/conv1", pads=s1)
        in3 = g.node("Relu", [g.node("Add", [out1, out2])], base=f"{p}/in3")
        out3 = _sep_conv(g, in3, W, f"{p}/conv2", pads=s1)
        # tf.add(out1, tf.add(out2, out3))
        in4 = g.node("Relu", [g.node("Add", [out1, g.node("Add", [out2, out3])])], base=f"{p}/in4")
        out4 = _sep_conv(g, in4, W, f"{p}/conv3", pads=s1)
        # tf.add(out1, tf.add(out2, tf.add(out3, out4)))
        s34 = g.node("Add", [out3, out4])
        s234 = g.node("Add", [out2, s34])
        x = g.node("Relu", [g.node("Add", [out1, s234])], base=f"{p}/out")
    assert size == 7
    # tf.avgPool(out, [7,7], [2,2], 'valid') -> [N,1,1,256]
    x = g.node("AveragePool", [x], base="avgpool", kernel_shape=[7, 7], strides=[2, 2])
    x = g.node("Flatten", [x], base="flatten", axis=1)
    x = g.node("MatMul", [x, g.weight(W["fc/weights"])], base="fc/matmul")
    x = g.node("Add", [x, g.weight(W["fc/bias"])], base="fc")
    g.add_output(x, "landmarks", ["N", 136])
    return g


# ---------------------------------------------------------------------------
# Face recognition (dlib ResNet port): src/faceRecognitionNet/FaceRecognitionNet.ts,
# convLayer.ts, residualLayer.ts, scaleLayer.ts.
# ---------------------------------------------------------------------------
def face_recognition(W: dict) -> GraphBuilder:
    g = GraphBuilder("face_recognition")
    x = g.add_input("input", ["N", 3, 150, 150])
    x = _normalize(g, x, FEATURE_MEAN_RGB)

    def conv_layer(x, prefix, stride, relu, pads):
        # conv2d(x, filters, strides, padding) + bias, then scale: x * weights + biases
        y = _conv(g, x, W[f"{prefix}/conv/filters"], W[f"{prefix}/conv/bias"], stride=stride, pads=pads,
                  base=f"{prefix}/conv")
        c = W[f"{prefix}/conv/filters"].shape[3]
        y = g.node("Mul", [y, g.weight(W[f"{prefix}/scale/weights"], shape=(c, 1, 1))], base=f"{prefix}/scale_mul")
        y = g.node("Add", [y, g.weight(W[f"{prefix}/scale/biases"], shape=(c, 1, 1))], base=f"{prefix}/scale")
        return g.node("Relu", [y], base=f"{prefix}/relu") if relu else y

    SAME3 = (1, 1, 1, 1)  # 3x3 stride 1 'same'
    VALID = (0, 0, 0, 0)

    def residual(x, p):
        out = conv_layer(x, f"{p}/conv1", 1, True, SAME3)
        out = conv_layer(out, f"{p}/conv2", 1, False, SAME3)
        return g.node("Relu", [g.node("Add", [out, x])], base=f"{p}/out")

    def residual_down(x, p, size, cin):
        # convDown: 3x3 stride 2 'valid'; then convNoRelu 'same'
        out = conv_layer(x, f"{p}/conv1", 2, True, VALID)
        out = conv_layer(out, f"{p}/conv2", 1, False, SAME3)
        out_size = (size - 3) // 2 + 1
        cout = W[f"{p}/conv2/conv/filters"].shape[3]
        # tf.avgPool(x, 2, 2, 'valid')
        pooled = g.node("AveragePool", [x], base=f"{p}/avgpool", kernel_shape=[2, 2], strides=[2, 2])
        pooled_size = size // 2
        if pooled_size != out_size:
            # isAdjustShape: concat a zero row (bottom) then a zero column (right) to `out`
            assert pooled_size == out_size + 1
            out = g.node("Pad", [out, g.const(f"{p}/pads_hw", np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64))],
                         base=f"{p}/pad_hw")
        if cin != cout:
            # isPad: concat zeros (same shape as pooled) along channels, after pooled
            assert cout == 2 * cin
            pooled = g.node("Pad", [pooled, g.const(f"{p}/pads_c", np.array([0, 0, 0, 0, 0, cin, 0, 0], dtype=np.int64))],
                            base=f"{p}/pad_c")
        # tf.add(pooled, out)
        return g.node("Relu", [g.node("Add", [pooled, out])], base=f"{p}/out"), pooled_size, cout

    x = conv_layer(x, "conv32_down", 2, True, VALID)  # 7x7 stride 2 valid: 150 -> 72
    x = g.node("MaxPool", [x], base="maxpool", kernel_shape=[3, 3], strides=[2, 2])  # 72 -> 35
    size, c = 35, 32
    for p in ("conv32_1", "conv32_2", "conv32_3"):
        x = residual(x, p)
    x, size, c = residual_down(x, "conv64_down", size, c)
    for p in ("conv64_1", "conv64_2", "conv64_3"):
        x = residual(x, p)
    x, size, c = residual_down(x, "conv128_down", size, c)
    for p in ("conv128_1", "conv128_2"):
        x = residual(x, p)
    x, size, c = residual_down(x, "conv256_down", size, c)
    for p in ("conv256_1", "conv256_2"):
        x = residual(x, p)
    x, size, c = residual_down(x, "conv256_down_out", size, c)
    assert (size, c) == (2, 256)
    # out.mean([1, 2]) then matMul(fc)
    x = g.node("GlobalAveragePool", [x], base="global_avg")
    x = g.node("Flatten", [x], base="flatten", axis=1)
    x = g.node("MatMul", [x, g.weight(W["fc"])], base="fc")
    g.add_output(x, "embedding", ["N", 128])
    return g
