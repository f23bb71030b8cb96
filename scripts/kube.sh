#!/usr/bin/env bash
# A real, local Kubernetes control plane for the operator's end-to-end tests, built from
# pinned Go modules (e2e/kube/go.mod): etcd, kube-apiserver (RBAC, service-account
# tokens, admission), kube-controller-manager (namespace lifecycle, garbage collector,
# deployment/replicaset/HPA/disruption controllers, service-account token controller),
# kube-scheduler, and kwok simulating nodes and the pod lifecycle (pods of a Deployment
# are scheduled, turn Running and Ready; no container runs).
#
#   scripts/kube.sh build    build the binaries into .dev/kube/bin (Go's own module and
#                            build caches make a rebuild take seconds to a minute)
#   scripts/kube.sh start    build if needed, then start everything (idempotent) and wait
#                            until nodes are Ready and the controllers work
#   scripts/kube.sh stop     stop every process (the state in .dev/kube/data goes too)
#   scripts/kube.sh status   say what runs
#   scripts/kube.sh env      print `export KUBECONFIG=...` (cluster-admin) for a shell
#
# Only loopback addresses are used: the API server on https://127.0.0.1:56443, etcd on
# 127.0.0.1:52379. Logs: .dev/kube/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE="$ROOT/e2e/kube"
KUBE="$ROOT/.dev/kube"
BIN="$KUBE/bin"
PKI="$KUBE/pki"
RUN="$KUBE/run"
LOGS="$KUBE/logs"
DATA="$KUBE/data"
API_PORT=${FACEID_KUBE_API_PORT:-56443}
ETCD_PORT=${FACEID_KUBE_ETCD_PORT:-52379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16
NODES=${FACEID_KUBE_NODES:-3}
ADMIN_KUBECONFIG="$KUBE/admin.kubeconfig"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)

log() { printf '[kube] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------- build
build_stamp() {
  { echo "ldflags: version"; cat "$MODULE/go.mod" "$MODULE/go.sum" "$MODULE"/cmd/*/*.go; } | sha256sum | cut -c1-16
  go version
}

build() {
  command -v go >/dev/null || die "Go is not installed (the machine image has it; see README)"
  mkdir -p "$BIN"
  local stamp
  stamp=$(build_stamp)
  if [ -f "$BIN/.stamp" ] && [ "$(cat "$BIN/.stamp")" = "$stamp" ] &&
    for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || exit 1; done; then
    return 0
  fi
  log "building ${COMPONENTS[*]} from e2e/kube/go.mod (cold: many minutes; cached: about a minute)"
  local start=$SECONDS
  # -trimpath keeps machine paths out of the binaries; the caches stay Go's defaults, so
  # a fresh clone on the same machine reuses them.
  # The version Kubernetes' own build stamps in (hack/lib/version.sh): Helm and kubectl
  # read it to check a chart's kubeVersion and the version skew.
  local version major minor pkg flags=""
  version=$(cd "$MODULE" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  major=${version#v}; major=${major%%.*}
  minor=${version#v*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$MODULE" && go build -trimpath -buildvcs=false -ldflags "$flags" -o "$BIN/" ./cmd/etcd \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/kwok/cmd/kwok)
  printf '%s\n' "$stamp" >"$BIN/.stamp"
  log "built in $((SECONDS - start)) s"
}

# ------------------------------------------------------------------------------ PKI
cert() { # name subject [extensions]
  local name=$1 subject=$2 ext=${3:-}
  [ -f "$PKI/$name.crt" ] && return 0
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  local extfile="$PKI/$name.ext"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" >"$extfile"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$extfile" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$extfile"
}

kubeconfig() { # file user-cert
  local file=$1 user=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: faceid-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$user.crt
    client-key: $PKI/$user.key
contexts:
- name: faceid-e2e
  context: {cluster: faceid-e2e, user: $user}
current-context: faceid-e2e
EOF
}

pki() {
  mkdir -p "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=faceid-e2e-ca" -days 3650 -sha256 \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  cert apiserver "/CN=kube-apiserver" \
    "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=faceid-e2e-admin" "extendedKeyUsage=clientAuth"
  cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  # kwok acts for the simulated kubelets; it runs with the admin's rights, as kwok's own
  # cluster setups do.
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig "$ADMIN_KUBECONFIG" admin
  kubeconfig "$KUBE/controller-manager.kubeconfig" controller-manager
  kubeconfig "$KUBE/scheduler.kubeconfig" scheduler
}

# ------------------------------------------------------------------------ processes
pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

spawn() { # name command...
  local name=$1; shift
  if pid_alive "$name"; then return 0; fi
  log "starting $name"
  # setsid: the processes outlive this script and are stopped by `stop`, not by the
  # caller's terminal.
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      die "$what did not come up within ${seconds}s (logs: $LOGS)"
    fi
    sleep 1
  done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

api_ready() { kubectl_admin get --raw /readyz; }

start_etcd() {
  # --unsafe-no-fsync: a throwaway test store; fsync would make every write wait on disk.
  spawn etcd "$BIN/etcd" --name faceid-e2e --data-dir "$DATA/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "faceid-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" --unsafe-no-fsync --log-level warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  # --endpoint-reconciler-type=none: the `kubernetes` Service's endpoints would have to
  # name a non-loopback address, and nothing in these tests dials it.
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --cert-dir "$PKI" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --audit-policy-file "$MODULE/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" \
    --audit-log-format json --audit-log-maxsize 200 --audit-log-maxbackup 1 \
    --profiling=false
  wait_for kube-apiserver 90 api_ready
}

start_controller_manager() {
  local kc="$KUBE/controller-manager.kubeconfig"
  spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port 0 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-cidr "$POD_CIDR" --service-cluster-ip-range "$SERVICE_CIDR" \
    --cluster-name faceid-e2e \
    --concurrent-gc-syncs 5 \
    --horizontal-pod-autoscaler-sync-period 5s \
    --profiling=false
}

start_scheduler() {
  local kc="$KUBE/scheduler.kubeconfig"
  spawn kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false
}

start_kwok() {
  spawn kwok "$BIN/kwok" --kubeconfig "$ADMIN_KUBECONFIG" --config "$MODULE/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr "$POD_CIDR" --node-ip 10.244.255.254 --node-lease-duration-seconds 40 \
    --server-address ""
}

create_nodes() {
  local i
  for i in $(seq 0 $((NODES - 1))); do
    kubectl_admin apply --server-side --field-manager faceid-e2e -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    topology.kubernetes.io/zone: zone-$((i % 2))
EOF
  done
}

nodes_ready() {
  local ready
  ready=$(kubectl_admin get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)
  [ "$ready" -ge "$NODES" ]
}

controllers_work() {
  # The root-CA publisher of the controller-manager writes this ConfigMap into every
  # namespace; the token controller gives every namespace its `default` ServiceAccount.
  kubectl_admin -n default get configmap kube-root-ca.crt && kubectl_admin -n default get serviceaccount default
}

start() {
  build
  mkdir -p "$RUN" "$LOGS" "$DATA"
  pki
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  wait_for "kube-controller-manager" 60 controllers_work
  create_nodes
  wait_for "kwok nodes" 60 nodes_ready
  log "control plane ready: export KUBECONFIG=$ADMIN_KUBECONFIG"
}

stop() {
  local name pid
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if pid_alive "$name"; then
      pid=$(cat "$RUN/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$RUN/$name.pid"
  done
  # A stopped cluster's state is worthless to the next start (tokens, leases, pods of
  # processes that are gone): start from a clean store every time.
  rm -rf "$DATA"
}

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export KUBECONFIG=$ADMIN_KUBECONFIG" ;;
  *) echo "usage: $0 build|start|stop|status|env" >&2; exit 2 ;;
esac
