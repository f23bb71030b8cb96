"""Read TensorFlow.js weight manifests (+ .bin shards) entry by entry.

Each entry keeps its on-disk representation so that the ONNX file can stay
close to the source size:
  * kind "u8"  : uint8 data with per-tensor affine quantisation
                 value = q * scale + min   (tfjs-core io_utils.decodeWeights)
  * kind "f16" : float16 data (tfjs 'float16' quantisation, exact in float32)
  * kind "f32" : plain float32 data
  * kind "i32" : plain int32 data
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Weight:
    name: str
    shape: tuple
    kind: str  # "u8" | "f16" | "f32" | "i32"
    data: np.ndarray  # stored representation, already reshaped to `shape`
    scale: float = 1.0
    min: float = 0.0

    def to_float(self) -> np.ndarray:
        """float32 values exactly as tfjs-core decodes them (computed in double, rounded once)."""
        if self.kind == "u8":
            return (self.data.astype(np.float64) * self.scale + self.min).astype(np.float32)
        if self.kind == "f16":
            return self.data.astype(np.float32)
        return self.data

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


_DTYPE_SIZE = {"float32": 4, "int32": 4, "bool": 1}


def read_weights(manifest: list, base_dir: str) -> dict:
    """manifest: the list of {paths, weights} groups (tfjs weightsManifest)."""
    out = {}
    for group in manifest:
        buf = b"".join(open(os.path.join(base_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for spec in group["weights"]:
            shape = tuple(int(d) for d in spec["shape"])
            n = int(np.prod(shape)) if shape else 1
            q = spec.get("quantization")
            if q is not None:
                qd = q["dtype"]
                if qd == "uint8":
                    arr = np.frombuffer(buf, dtype=np.uint8, count=n, offset=off)
                    off += n
                    w = Weight(spec["name"], shape, "u8", arr.reshape(shape).copy(), float(q["scale"]), float(q["min"]))
                elif qd == "float16":
                    arr = np.frombuffer(buf, dtype="<f2", count=n, offset=off)
                    off += 2 * n
                    w = Weight(spec["name"], shape, "f16", arr.reshape(shape).astype(np.float16))
                else:
                    raise ValueError(f"unsupported quantisation {qd} for {spec['name']}")
            else:
                dt = spec["dtype"]
                if dt == "float32":
                    arr = np.frombuffer(buf, dtype="<f4", count=n, offset=off)
                    w = Weight(spec["name"], shape, "f32", arr.reshape(shape).astype(np.float32))
                elif dt == "int32":
                    arr = np.frombuffer(buf, dtype="<i4", count=n, offset=off)
                    w = Weight(spec["name"], shape, "i32", arr.reshape(shape).astype(np.int32))
                else:
                    raise ValueError(f"unsupported dtype {dt} for {spec['name']}")
                off += _DTYPE_SIZE[dt] * n
            if spec["name"] in out:
                raise ValueError(f"duplicate weight {spec['name']}")
            out[spec["name"]] = w
        if off != len(buf):
            raise ValueError(f"manifest covers {off} bytes but shards hold {len(buf)}")
    return out


def read_layers_manifest(path: str) -> dict:
    """face-api style `*-weights_manifest.json` next to its .bin shard(s)."""
    with open(path) as f:
        manifest = json.load(f)
    return read_weights(manifest, os.path.dirname(path))
