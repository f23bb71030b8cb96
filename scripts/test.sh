#!/usr/bin/env bash
# Runs every check, against the real local platform (PostgreSQL + pgvector, Redis,
# ONNX Runtime), and exits non-zero on any failure:
#   1. scripts/platform.sh start (installs what is missing, starts the services) and
#      scripts/kube.sh start (a fresh local Kubernetes control plane built from pinned
#      Go modules: kube-apiserver, controller-manager, scheduler, etcd, kwok nodes)
#   2. cargo fmt --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo doc --workspace --no-deps (warnings are errors)
#   5. scripts/deps.sh: cargo deny (licences, duplicate versions, banned crates,
#      sources; advisories where the RustSec database can be fetched)
#   6. cargo test --workspace (unit, integration, CRD/chart drift and end-to-end tests)
# and prints the test totals last. The services are left running for the next run;
# `scripts/platform.sh stop` and `scripts/kube.sh stop` stop them.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOG_DIR="$ROOT/target/test-logs"
mkdir -p "$LOG_DIR"

failed=()
step() {
  local name=$1; shift
  printf '\n==> %s\n' "$name"
  local start=$SECONDS
  if "$@"; then
    printf '<== %s: ok (%ss)\n' "$name" $((SECONDS - start))
  else
    printf '<== %s: FAILED (%ss)\n' "$name" $((SECONDS - start))
    failed+=("$name")
  fi
}

step "platform" scripts/platform.sh start || true
step "browser" scripts/platform.sh browser || true
# A fresh control plane every run (its state would name the previous run's database).
step "control plane" bash -c 'scripts/kube.sh stop && scripts/kube.sh start' || true
if [ ${#failed[@]} -gt 0 ]; then
  echo "the local platform did not start: nothing else can be tested" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
# shellcheck disable=SC1091
source "$ROOT/.dev/env"

# The tests run against a database of their own, recreated each run, so the data of
# `scripts/run.sh` is never touched and test schemas never pile up.
fresh_test_database() {
  local admin_url=${DATABASE_URL%/*}/postgres
  "$FACEID_PG_BIN/psql" "$admin_url" -qX -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS faceid_test WITH (FORCE)" \
    -c "CREATE DATABASE faceid_test" >/dev/null &&
  "$FACEID_PG_BIN/psql" "${DATABASE_URL%/*}/faceid_test" -qX -c "CREATE EXTENSION vector" >/dev/null
}
step "test database" fresh_test_database
export DATABASE_URL=${DATABASE_URL%/*}/faceid_test
export FACEID_KUBECONFIG="$ROOT/.dev/kube/admin.kubeconfig"

export CARGO_TERM_COLOR=never
export RUSTDOCFLAGS="-D warnings"
step "format" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "docs" cargo doc --workspace --no-deps --locked --quiet
step "dependencies" scripts/deps.sh

run_tests() {
  # Test binaries run one at a time (each runs its tests in parallel): the face engine
  # and the database tests would otherwise fight over the two cores.
  cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee "$LOG_DIR/cargo-test.log"
}
step "tests" run_tests

log="$LOG_DIR/cargo-test.log"
passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed_tests=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
ignored=$(grep -Eo '[0-9]+ ignored;' "$log" | awk '{s+=$1} END {print s+0}')

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed steps: ${failed[*]}"
  # A failed step other than the tests themselves counts as one failure in the totals.
  [ "$failed_tests" -eq 0 ] && failed_tests=1
  echo "tests: $passed passed, $failed_tests failed, $ignored skipped"
  exit 1
fi
echo "tests: $passed passed, $failed_tests failed, $ignored skipped"
