#!/usr/bin/env bash
# Long fuzzing runs with libFuzzer (cargo-fuzz, nightly toolchain).
#
#   service/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: 300 seconds for each of decode, multipart and token. Needs `rustup toolchain
# install nightly` and `cargo install cargo-fuzz` once. Seeds the corpus from the same
# seeds the smoke tests use (service/tests/fuzz_smoke.rs) plus service/fuzz/regressions/,
# and keeps it in service/fuzz/corpus/<target>/ (git-ignored) between runs; the smoke
# tests replay that corpus too. A crash leaves its input in
# service/fuzz/artifacts/<target>/: fix it, then copy the input to
# service/fuzz/regressions/<target>/ so the normal test command replays it for ever.
#
# FUZZ_JOBS (default 1) runs that many libFuzzer workers per target; FUZZ_ARGS adds
# libFuzzer flags (e.g. FUZZ_ARGS=-max_len=65536).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$HERE"

SECONDS_PER_TARGET=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode multipart token)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "needs the nightly toolchain and cargo-fuzz: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
  exit 2
fi
# The same dependency versions as the workspace.
[ -f Cargo.lock ] || cp "$ROOT/Cargo.lock" Cargo.lock

# Seed corpus: the smoke tests' seeds, written out once.
for t in "${TARGETS[@]}"; do mkdir -p "corpus/$t"; done
if [ -z "$(ls -A corpus/"${TARGETS[0]}" 2>/dev/null)" ]; then
  (cd "$ROOT" && FUZZ_WRITE_SEEDS="$HERE/corpus" cargo test -q -p faceid-service --test fuzz_smoke -- --exact write_seed_corpus >/dev/null)
fi

jobs=()
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
for t in "${TARGETS[@]}"; do
  echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s"
  # shellcheck disable=SC2086
  cargo +nightly fuzz run "$t" "corpus/$t" "regressions/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 "${jobs[@]}" ${FUZZ_ARGS:-}
done
