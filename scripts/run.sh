#!/usr/bin/env bash
# Starts the platform locally, in the foreground until Ctrl-C:
#   PostgreSQL + pgvector and Redis (scripts/platform.sh), the service built in release
#   mode, migrations applied to the `public` schema, serving http://127.0.0.1:8000
#   (camera page at /, API docs at /docs). Ctrl-C stops the service and whatever
#   this command started (services that were already running are left running).
# Settings: any variable of `faceid serve --help` may be set in the environment.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

was_running=false
if scripts/platform.sh status >/dev/null 2>&1; then was_running=true; fi
scripts/platform.sh start
# shellcheck disable=SC1091
source .dev/env

server_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$was_running" = false ]; then scripts/platform.sh stop; fi
}
trap cleanup EXIT INT TERM

echo "[run] building the service (release)"
cargo build --release --locked -p faceid-service --bin faceid

# Local development secrets, generated once and kept in .dev/.
secrets=.dev/dev-secrets
if [ ! -s "$secrets" ]; then
  (umask 077; {
    echo "export SECRET_KEY=$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "export ADMIN_API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  } >"$secrets")
fi
# shellcheck disable=SC1090
source "$secrets"

export HOST=${HOST:-127.0.0.1} PORT=${PORT:-8000}
export MODELS_DIR=${MODELS_DIR:-$ROOT/models}
export LOG_FORMAT=${LOG_FORMAT:-text}
# glibc: two heaps instead of eight per core keep the resident size down under load.
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
export TENANT=${TENANT:-local}
echo "[run] serving http://$HOST:$PORT (camera page /, API docs /docs); admin key in $secrets; Ctrl-C stops"
target/release/faceid serve &
server_pid=$!
wait "$server_pid"
