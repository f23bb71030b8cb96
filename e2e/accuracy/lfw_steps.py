"""Verification accuracy of the embedding pipeline on a labelled photo folder, per step.

    .dev/models-venv/bin/python e2e/accuracy/lfw_steps.py target/release/faceid DIR

DIR: any folder laid out like testdata/faces (which works, with few pairs); the figures
in docs/FACE_ENGINE.md are for ../shared/faces-lfw-dev (823 photos of 250 people), which
is not part of the repository and not read by the test command.

(`source .dev/env` first, for ORT_DYLIB_PATH; the models-venv of `models/build.sh` has
numpy and Pillow.) DIR/genuine holds `<person>_<n>.<ext>` photos. Every photo is
embedded by `faceid embed` (largest face, no quality gate: every photo counts, as in the
issue's measurement), once as stored and once mirrored left to right, with each
recognition precision. Every pair of photos of the same person is a genuine pair, every
other pair an impostor pair; Euclidean distance. Printed per configuration: equal-error
rate, and the true-accept rate where the false-accept rate is at most 1e-3 and 1e-4.

Configurations:
  single photo        the embedding of the photo as sent
  mirror average      mean of the embeddings of the photo and its mirror image
  mirror average at enrolment only
                      the mirror average of one photo (the stored template) against the
                      plain embedding of another (the probe), every ordered pair: what
                      registration alone can buy, at no cost to login
  two-photo gallery   for people with 3+ photos: the mean embedding of two photos against
                      each remaining one (genuine), and against every photo of everyone
                      else (impostor): enrolment from several photos
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageOps


def embed(binary: str, files: list[str], precision: str) -> dict[str, np.ndarray]:
    env = dict(os.environ, FACE_RECOGNITION_PRECISION=precision)
    out = subprocess.run([binary, "embed", *files], env=env, capture_output=True, text=True).stdout
    got = {}
    for line in out.splitlines():
        d = json.loads(line)
        if d.get("faces"):
            got[d["image"]] = np.array(d["faces"][0]["embedding"], dtype=np.float64)
    return got


def rates(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float, float]:
    impostor = np.sort(impostor)
    ts = np.unique(np.concatenate([genuine, impostor]))
    far = np.searchsorted(impostor, ts, side="right") / len(impostor)
    frr = 1.0 - np.searchsorted(np.sort(genuine), ts, side="right") / len(genuine)
    i = int(np.argmin(np.abs(far - frr)))
    eer = (far[i] + frr[i]) / 2

    def tar_at(limit: float) -> float:
        ok = ts[far <= limit]
        return float(np.mean(genuine <= ok.max())) if len(ok) else 0.0

    return eer, tar_at(1e-3), tar_at(1e-4)


def pairs(emb: dict[str, np.ndarray], person: dict[str, str]):
    names = sorted(emb)
    m = np.stack([emb[n] for n in names])
    d = np.sqrt(((m[:, None, :] - m[None, :, :]) ** 2).sum(-1))
    same = np.array([[person[a] == person[b] for b in names] for a in names])
    iu = np.triu_indices(len(names), 1)
    return d[iu][same[iu]], d[iu][~same[iu]]


def enrolled_mirror_pairs(emb: dict[str, np.ndarray], person: dict[str, str], plain: dict[str, np.ndarray]):
    """Every ordered pair: the enrolled (mirror-averaged) template of one photo against the
    plain embedding of another, as when only registration pays for the mirror image."""
    names = sorted(emb)
    g = np.stack([emb[n] for n in names])
    p = np.stack([plain[n] for n in names])
    d = np.sqrt(((g[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    same = np.array([[person[a] == person[b] for b in names] for a in names])
    off = ~np.eye(len(names), dtype=bool)
    return d[off & same], d[off & ~same]


def gallery_pairs(emb: dict[str, np.ndarray], person: dict[str, str]):
    by = {}
    for n in sorted(emb):
        by.setdefault(person[n], []).append(n)
    genuine, impostor = [], []
    galleries = {p: np.mean([emb[n] for n in ns[:2]], axis=0) for p, ns in by.items() if len(ns) >= 3}
    for p, g in galleries.items():
        for q, ns in by.items():
            probes = ns[2:] if q == p else ns
            for n in probes:
                (genuine if q == p else impostor).append(float(np.linalg.norm(g - emb[n])))
    return np.array(genuine), np.array(impostor)


def main() -> int:
    binary, folder = sys.argv[1], sys.argv[2]
    src = os.path.join(folder, "genuine")
    files = sorted(os.path.join(src, f) for f in os.listdir(src) if not f.startswith("."))
    person = {f: re.sub(r"_\d+\.\w+$", "", os.path.basename(f)) for f in files}
    with tempfile.TemporaryDirectory() as tmp:
        mirrored = {}
        for f in files:
            m = os.path.join(tmp, os.path.basename(f) + ".png")
            ImageOps.mirror(Image.open(f).convert("RGB")).save(m)
            mirrored[m] = f
        print(f"{len(files)} photos of {len(set(person.values()))} people in {src}\n")
        print("| precision | configuration | genuine pairs | impostor pairs | EER | TAR at FAR 1e-3 | TAR at FAR 1e-4 | at 0.6: TAR / FAR | at 0.5: TAR / FAR |")
        print("|---|---|---|---|---|---|---|---|---|")
        for precision in ("float32", "int8"):
            plain = embed(binary, files, precision)
            flipped = {mirrored[k]: v for k, v in embed(binary, list(mirrored), precision).items()}
            both = {k: (v + flipped[k]) / 2 for k, v in plain.items() if k in flipped}
            for name, emb, make in (
                ("single photo", plain, pairs),
                ("mirror average", both, pairs),
                ("mirror average at enrolment only", both, lambda e, p: enrolled_mirror_pairs(e, p, plain)),
                ("two-photo gallery", plain, gallery_pairs),
                ("two-photo gallery, mirror average", both, gallery_pairs),
            ):
                g, i = make(emb, person)
                eer, t3, t4 = rates(g, i)
                at = " | ".join(f"{np.mean(g <= t):.3f} / {np.mean(i <= t) * 100:.3f}%" for t in (0.6, 0.5))
                print(f"| {precision} | {name} | {len(g)} | {len(i)} | {eer * 100:.2f}% | {t3:.3f} | {t4:.3f} | {at} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
