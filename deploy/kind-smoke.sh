#!/usr/bin/env bash
# Smoke test of heteroserve on a real Kubernetes cluster, using kind (Kubernetes in Docker).
#
# Needs: docker, kind, kubectl, helm (the repo's .venv/bin has kubectl and helm after `make install`).
# It builds the image, loads it into a kind cluster, labels the node as node type `cpu`, installs the
# chart, then checks: every pod Ready; the gateway answers /v1/models and a completion with the
# generated API key; the planner's RBAC allows exactly what the actuator needs; and the
# KubernetesActuator, run inside the planner pod with the pod's service account, scales the CPU pool
# 1 -> 2 -> 1 (draining the removed worker through the Drain RPC).
#
#   deploy/kind-smoke.sh            # create (or reuse) the cluster, test, keep the cluster
#   CLEANUP=1 deploy/kind-smoke.sh  # delete the kind cluster at the end
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PATH="$ROOT/.venv/bin:$PATH"
CLUSTER="${CLUSTER:-heteroserve-smoke}"
NAMESPACE="${NAMESPACE:-heteroserve}"
RELEASE="${RELEASE:-hs}"
TAG="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/helm/heteroserve/Chart.yaml")"
IMAGE="heteroserve/heteroserve:$TAG"
FULL="$RELEASE-heteroserve"
POOL="cpu-colocated"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER" >/dev/null
FORWARD=""
cleanup() {
  # shellcheck disable=SC2086 # a list of pids
  [ -n "$FORWARD" ] && kill $FORWARD 2>/dev/null
  [ "${CLEANUP:-0}" = 1 ] && kind delete cluster --name "$CLUSTER"
  return 0
}
trap cleanup EXIT

step "image $IMAGE"
docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "label nodes as node type cpu (the default pool's nodeSelector)"
kubectl label nodes --all heteroserve.io/node-type=cpu --overwrite

# Scale mode needs `heteroserve planner --actuator kubernetes`; older images only publish plans.
MODE="export"
docker run --rm "$IMAGE" planner --help | grep -q kubernetes && MODE=scale
step "helm install (actuator mode: $MODE)"
VALUES="$(mktemp)"
cat >"$VALUES" <<YAML
# Small enough for a laptop's kind node.
gateway: {replicas: 1, resources: {requests: {cpu: 100m, memory: 512Mi}}}
planner: {replicas: 1, actuator: {mode: $MODE}, resources: {requests: {cpu: 50m, memory: 256Mi}},
          modelArchitecture: {num_layers: 2, hidden_size: 128, num_heads: 4, num_kv_heads: 2,
                              intermediate_size: 352, vocab_size: 2048, dtype: fp32}}
redis: {persistence: {enabled: false}, maxmemory: 256mb, resources: {requests: {cpu: 50m, memory: 300Mi}}}
workerPools:
  - {name: $POOL, nodeType: cpu, role: colocated, device: cpu, model: tiny, replicas: 1,
     pricePerHour: 0.1, kvDisk: {capacityMb: 256},
     resources: {requests: {cpu: 250m, memory: 1Gi}, limits: {memory: 2Gi}}}
YAML
helm upgrade --install "$RELEASE" "$ROOT/helm/heteroserve" --namespace "$NAMESPACE" --create-namespace \
  -f "$VALUES" --wait --timeout 15m
helm test "$RELEASE" -n "$NAMESPACE"
kubectl -n "$NAMESPACE" get pods -o wide

step "gateway answers"
API_KEY="$(kubectl -n "$NAMESPACE" get secret "$FULL-auth" -o jsonpath='{.data.default-api-key}' | base64 -d)"
kubectl -n "$NAMESPACE" port-forward "svc/$FULL-gateway" 18000:80 >/tmp/hs-port-forward.log 2>&1 &
FORWARD=$!
sleep 3
curl -fsS -H "Authorization: Bearer $API_KEY" http://127.0.0.1:18000/v1/models | tee /dev/stderr | grep -q tiny \
  || fail "/v1/models does not list the tiny model"
curl -fsS -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
  -d '{"model": "tiny", "prompt": "hello", "max_tokens": 8}' http://127.0.0.1:18000/v1/completions \
  | tee /dev/stderr | grep -q '"choices"' || fail "completion failed"
status="$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18000/v1/models)"
[ "$status" = 401 ] || fail "a request without an API key got $status, not 401"

step "planner RBAC: exactly what the actuator needs"
SA="system:serviceaccount:$NAMESPACE:$FULL-planner"
can() { kubectl auth can-i --as="$SA" -n "$NAMESPACE" "$@"; }
[ "$(can patch "deployments/$FULL-worker-$POOL" --subresource=scale)" = yes ] || fail "cannot scale its pool"
[ "$(can list nodes)" = yes ] || fail "cannot list nodes"
[ "$(can patch "deployments/$FULL-gateway" --subresource=scale)" = no ] || fail "may scale the gateway"
[ "$(can delete pods)" = no ] || fail "may delete pods"
[ "$(can get secrets)" = no ] || fail "may read secrets"

if [ "$MODE" = scale ]; then
  step "the planner leads through its Lease and observes the pools through the Kubernetes actuator"
  holder=""
  for _ in $(seq 60); do
    holder="$(kubectl -n "$NAMESPACE" get lease "$FULL-planner" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
    [ -n "$holder" ] && break
    sleep 2
  done
  [ -n "$holder" ] || fail "no planner replica holds the Lease $FULL-planner"
  echo "leader: $holder"
  kubectl -n "$NAMESPACE" port-forward "pod/$holder" 19100:9100 >/tmp/hs-planner-forward.log 2>&1 &
  FORWARD="$FORWARD $!"
  seen=""
  for _ in $(seq 60); do
    if curl -fsS http://127.0.0.1:19100/metrics 2>/dev/null | grep -q "heteroserve_pool_actual_replicas{.*pool=\"$POOL\""; then
      seen=yes; break
    fi
    sleep 3
  done
  [ -n "$seen" ] || fail "the leader exports no heteroserve_pool_actual_replicas for $POOL"
  step "PASS (the planner owns $POOL's replicas in scale mode: no manual scaling)"
  exit 0
fi
step "KubernetesActuator in the planner pod: $POOL 1 -> 2 -> 1"
kubectl -n "$NAMESPACE" exec "deploy/$FULL-planner" -- python - "$POOL" <<'PY'
import asyncio, os, sys
from dataclasses import replace
from prometheus_client import CollectorRegistry
from control_plane.actuators.base import PoolTarget
from control_plane.actuators.kubernetes import KubernetesActuator, api_client_from_environment
from control_plane.actuators.kubernetes_setup import load_kubernetes_settings, worker_drain_fn
from control_plane.actuators.metrics import ActuatorMetrics

pool = sys.argv[1]
settings = load_kubernetes_settings("/etc/heteroserve/kubernetes.yaml")
config = replace(settings.actuator, export_only=False)  # the chart runs the planner in export mode here
actuator = KubernetesActuator(config, api_client_from_environment(),
                              worker_drain_fn(os.environ["HETEROSERVE_CLUSTER_TOKEN"]),
                              ActuatorMetrics(CollectorRegistry()))

async def wait_ready(n):
    for _ in range(120):
        if (await actuator.current()).get(pool) == n:
            return
        await asyncio.sleep(5)
    raise SystemExit(f"{pool} never reached {n} ready workers")

async def main():
    print("inventory:", await actuator.inventory())
    for n in (2, 1):
        result = await actuator.apply([PoolTarget(pool, "cpu", "colocated", "cpu", "tiny", n)])
        print("applied:", result)
        await wait_ready(n)
    await actuator.close()

asyncio.run(main())
PY

step "PASS"
