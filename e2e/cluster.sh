#!/usr/bin/env bash
# The real-cluster suite: given a working KUBECONFIG (kind, k3d, minikube or a real
# cluster) and the images built from the repository's Dockerfiles, it installs the
# operator chart, an in-cluster PostgreSQL (pgvector) and Redis, applies both example
# tenants, waits for Ready, runs the API scenario through the tenants' Services, scales
# a tenant, deletes them and cleans up. Without a reachable cluster it says why it is
# skipped and exits 0.
#
#   e2e/cluster.sh
#
# Images (build them first, and load them into kind/k3d if that is the cluster):
#   docker build -f service/Dockerfile  -t "$FACEID_IMAGE" .
#   docker build -f operator/Dockerfile -t "$FACEID_OPERATOR_IMAGE" .
# Settings: FACEID_IMAGE (faceid:dev), FACEID_OPERATOR_IMAGE (faceid-operator:dev),
# E2E_NAMESPACE (faceid-e2e), KUBECTL/HELM (from .dev/env when unset), FACES_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ -f .dev/env ] && source .dev/env
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-helm}
FACEID_IMAGE=${FACEID_IMAGE:-faceid:dev}
FACEID_OPERATOR_IMAGE=${FACEID_OPERATOR_IMAGE:-faceid-operator:dev}
NS=${E2E_NAMESPACE:-faceid-e2e}
OPERATOR_NS=faceid-system
FACES_DIR=${FACES_DIR:-$ROOT/testdata/faces}

skip() { echo "cluster suite: SKIPPED: $*"; exit 0; }
step() { printf '\n[cluster] %s\n' "$*"; }
fail() { echo "[cluster] FAILED: $*" >&2; exit 1; }

command -v "$KUBECTL" >/dev/null 2>&1 || skip "kubectl not found (scripts/platform.sh install provides it)"
command -v "$HELM" >/dev/null 2>&1 || skip "helm not found (scripts/platform.sh install provides it)"
[ -n "${KUBECONFIG:-}" ] || [ -f "$HOME/.kube/config" ] || skip "no KUBECONFIG and no ~/.kube/config"
"$KUBECTL" version --request-timeout=5s >/dev/null 2>&1 || skip "the cluster in KUBECONFIG does not answer"
"$KUBECTL" api-resources --api-group=apps --request-timeout=5s 2>/dev/null | grep -q deployments \
  || skip "the API server serves no Deployments (a CRD-only server is not a cluster)"

cleanup() {
  step "cleaning up"
  "$KUBECTL" delete -n "$NS" -f e2e/cluster/tenants.yaml --ignore-not-found --wait=true --timeout=120s || true
  "$HELM" uninstall faceid-operator -n "$OPERATOR_NS" --wait || true
  "$KUBECTL" delete namespace "$NS" --ignore-not-found --wait=false || true
}
trap cleanup EXIT

step "installing the operator chart ($FACEID_OPERATOR_IMAGE, tenants run $FACEID_IMAGE)"
"$HELM" upgrade --install faceid-operator charts/faceid-operator -n "$OPERATOR_NS" --create-namespace \
  --set image.repository="${FACEID_OPERATOR_IMAGE%:*}" --set image.tag="${FACEID_OPERATOR_IMAGE##*:}" \
  --set defaultTenantImage="$FACEID_IMAGE" --wait --timeout 5m

step "starting PostgreSQL (pgvector) and Redis in namespace $NS"
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" apply -n "$NS" -f e2e/cluster/stores.yaml
"$KUBECTL" rollout status -n "$NS" deploy/postgres deploy/redis --timeout=5m
"$KUBECTL" create secret generic e2e-postgres -n "$NS" \
  --from-literal=url="postgres://faceid:faceid-e2e-only@postgres.$NS.svc:5432/faceid" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" create secret generic e2e-redis -n "$NS" \
  --from-literal=url="redis://redis.$NS.svc:6379/0" --dry-run=client -o yaml | "$KUBECTL" apply -f -

step "applying the tenants and waiting for Ready"
"$KUBECTL" apply -n "$NS" -f e2e/cluster/tenants.yaml
for t in acme globex; do
  "$KUBECTL" wait -n "$NS" "faceidtenant/$t" --for=condition=Ready --timeout=10m \
    || { "$KUBECTL" get -n "$NS" faceidtenant "$t" -o yaml; fail "tenant $t not Ready"; }
done
"$KUBECTL" get -n "$NS" faceidtenants
"$KUBECTL" get -n "$NS" faceidtenants -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
  | grep -v '=True' && fail "kubectl get faceidtenants shows a tenant not Ready"

step "API scenario through each tenant's Service"
port=18080
for t in acme globex; do
  svc=$("$KUBECTL" get -n "$NS" faceidtenant "$t" -o jsonpath='{.status.endpoint}')
  echo "$t endpoint: $svc"
  name=${svc#http://}; name=${name%%.*}
  "$KUBECTL" port-forward -n "$NS" "svc/$name" "$port:80" >/dev/null 2>&1 &
  pf=$!
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.2; done
  code=$(curl -s -o /tmp/faceid-e2e-reg.json -w '%{http_code}' -F username="user_$t" -F email="user_$t@example.com" \
    -F password='correct horse battery' -F face_image=@"$FACES_DIR/genuine/colin_powell_1.jpg" "http://127.0.0.1:$port/api/v1/auth/register")
  [ "$code" = 201 ] || fail "register at $t answered $code: $(cat /tmp/faceid-e2e-reg.json)"
  code=$(curl -s -o /tmp/faceid-e2e-login.json -w '%{http_code}' -F face_image=@"$FACES_DIR/genuine/colin_powell_2.jpg" \
    "http://127.0.0.1:$port/api/v1/auth/login")
  [ "$code" = 200 ] || fail "login at $t answered $code: $(cat /tmp/faceid-e2e-login.json)"
  code=$(curl -s -o /dev/null -w '%{http_code}' -F face_image=@"$FACES_DIR/genuine/tony_blair_1.jpg" "http://127.0.0.1:$port/api/v1/auth/login")
  [ "$code" = 401 ] || fail "unknown face at $t answered $code"
  kill "$pf"; wait "$pf" 2>/dev/null || true
  port=$((port + 1))
done

step "scaling acme to 2 replicas"
"$KUBECTL" scale -n "$NS" faceidtenant/acme --replicas=2
for _ in $(seq 150); do
  ready=$("$KUBECTL" get -n "$NS" faceidtenant acme -o jsonpath='{.status.readyReplicas}')
  [ "${ready:-0}" = 2 ] && break
  sleep 2
done
[ "${ready:-0}" = 2 ] || fail "acme did not reach 2 ready replicas (status.readyReplicas=${ready:-none})"

step "deleting the tenants (deletionPolicy Delete)"
"$KUBECTL" delete -n "$NS" -f e2e/cluster/tenants.yaml --wait=true --timeout=5m
echo "cluster suite: PASSED"
