#!/usr/bin/env bash
# `make demo`: the main job end to end on a local control plane. Starts it, runs the
# webhook, opts a namespace in, applies the examples, and shows what a person wants to see:
# the env an etcd pod gets, a denial and a warning as kubectl prints them. Then stops
# everything it started.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.run/demo}
mkdir -p "$dir/logs"
bin=$repo/target/debug/raft-injector
[[ -x $bin ]] || (cd "$repo" && cargo build --locked --bins)
controlplane=$repo/tests/controlplane/run.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

webhook_pid=
cleanup() {
  [[ -n $webhook_pid ]] && kill "$webhook_pid" 2>/dev/null && wait "$webhook_pid" 2>/dev/null
  "$controlplane" down "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "Starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
"$controlplane" up "$dir"
export KUBECONFIG=$dir/kubeconfig

say "Starting the webhook on https://127.0.0.1 with a fresh certificate"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
metrics=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" certs --ip 127.0.0.1 --out "$dir/webhook-certs"
"$bin" serve --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$metrics" \
  --tls-cert "$dir/webhook-certs/tls.crt" --tls-key "$dir/webhook-certs/tls.key" \
  >"$dir/logs/webhook.log" 2>&1 &
webhook_pid=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$metrics/readyz" && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null || { cat "$dir/logs/webhook.log"; exit 1; }

# The shipped webhook configurations, pointed at the local process instead of the
# in-cluster Service.
kubectl apply -f "$repo/manifests/base/webhooks.yaml" >/dev/null
bundle=$(base64 <"$dir/webhook-certs/ca.crt" | tr -d '\n')
config() { printf '{"url":"https://127.0.0.1:%s%s","caBundle":"%s"}' "$port" "$1" "$bundle"; }
kubectl patch mutatingwebhookconfiguration raft-injector --type json \
  -p "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig\",\"value\":$(config /mutate)}]" >/dev/null
kubectl patch validatingwebhookconfiguration raft-injector --type json \
  -p "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig\",\"value\":$(config /validate)},
       {\"op\":\"replace\",\"path\":\"/webhooks/1/clientConfig\",\"value\":$(config /validate)}]" >/dev/null
sleep 1 # the API server picks up webhook configurations asynchronously

say "Opting a namespace in"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
show kubectl label namespace demo raft-injector.io/injection=enabled --overwrite

say "Applying examples/etcd.yaml: a Service and a StatefulSet labelled raft-injector.io/raft=true"
show kubectl apply -n demo -f "$repo/examples/etcd.yaml"
show kubectl apply -n demo -f "$repo/examples/ratis-app.yaml"

say "The env the statefulset controller gave pod etcd-1 (no entrypoint script anywhere)"
for _ in $(seq 1 100); do kubectl get pod -n demo etcd-1 >/dev/null 2>&1 && break; sleep 0.2; done
kubectl get pod -n demo etcd-1 -o go-template='{{range (index .spec.containers 0).env}}  {{.name}}={{if .value}}{{.value}}{{else}}(from {{.valueFrom.fieldRef.fieldPath}}){{end}}{{"\n"}}{{end}}'
echo "  init container: $(kubectl get pod -n demo etcd-1 -o jsonpath='{.spec.initContainers[0].name} ({.spec.initContainers[0].image})')"
echo "  preStop hook:   $(kubectl get pod -n demo etcd-1 -o jsonpath='{.spec.containers[0].lifecycle.preStop.exec.command}')"

say "A denial: 4 replicas"
show kubectl apply -n demo -f "$repo/examples/denied-even-replicas.yaml" || true

say "A denial: kubectl scale to an even size"
show kubectl scale -n demo statefulset/etcd --replicas=4 || true

say "A warning: a headless Service without publishNotReadyAddresses"
sed -e '/publishNotReadyAddresses/d' -e 's/counter/quorum/g' "$repo/examples/ratis-app.yaml" >"$dir/warned.yaml"
show kubectl apply -n demo -f "$dir/warned.yaml"

say "Scaling etcd from 3 to 5 is allowed, and leaves the pod template alone"
show kubectl scale -n demo statefulset/etcd --replicas=5
echo "  RAFT_CLUSTER_SIZE is still $(kubectl get sts -n demo etcd -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="RAFT_CLUSTER_SIZE")].value}'); pods 3 and 4 join at runtime"

say "Done; stopping the webhook and the control plane"
