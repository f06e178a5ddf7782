#!/usr/bin/env bash
# `make demo`: the main job end to end on a local control plane. Starts it, runs the
# webhook, opts a namespace in, applies the examples, and shows what a person wants to see:
# the env an etcd pod gets, a denial and a warning as kubectl prints them. Then stops
# everything it started.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.run/demo}
mkdir -p "$dir/logs"
bin=${RAFT_INJECTOR_BIN:-$repo/target/debug/raft-injector}
[[ -x $bin ]] || (cd "$repo" && cargo build --locked --bins)
controlplane=$repo/tests/controlplane/run.sh

# kubectl shows what users see; without one on PATH, use the control plane's own (the
# kubectl of the same Kubernetes release, built into its multi-call binary).
if ! command -v kubectl >/dev/null; then
  shim=$dir/bin
  mkdir -p "$shim"
  printf '#!/bin/sh\nexec "%s" kubectl "$@"\n' "$("$controlplane" build)" >"$shim/kubectl"
  chmod +x "$shim/kubectl"
  export PATH="$shim:$PATH"
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

webhook_pid=
cleanup() {
  [[ -n $webhook_pid ]] && kill "$webhook_pid" 2>/dev/null && wait "$webhook_pid" 2>/dev/null
  "$controlplane" down "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "Starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
# Every run starts from an empty cluster, so leftovers of an earlier run (or of one that was
# interrupted) cannot get in the way.
"$controlplane" down "$dir"
rm -rf "${dir:?}/etcd" "$dir/pki" "$dir/ports.env" "$dir/logs" "$dir/webhook-certs"
mkdir -p "$dir/logs"
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
# in-cluster Service (same selectors and rules; clientConfig.url instead of .service).
python3 - "$repo/manifests/base/webhooks.yaml" "$port" "$dir/webhook-certs/ca.crt" >"$dir/webhooks.json" <<'PY'
import base64, json, subprocess, sys
shipped, port, ca = sys.argv[1], sys.argv[2], sys.argv[3]
# kubectl converts the YAML, so no YAML library is needed here.
text = subprocess.run(["kubectl", "create", "--dry-run=client", "-o", "json", "-f", shipped],
                      check=True, capture_output=True, text=True).stdout
docs, at, decoder = [], 0, json.JSONDecoder()
while text[at:].strip():  # one JSON object per document, back to back
    doc, at = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
    docs.append(doc)
bundle = base64.b64encode(open(ca, "rb").read()).decode()
for doc in docs:
    for hook in doc["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
PY
kubectl apply -f "$dir/webhooks.json" >/dev/null

say "Opting a namespace in"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
show kubectl label namespace demo raft-injector.io/injection=enabled --overwrite
# The API server picks up webhook configurations asynchronously: wait until a denial shows.
for _ in $(seq 1 50); do
  probe=$(kubectl apply --dry-run=server -n demo -f "$repo/examples/denied-even-replicas.yaml" 2>&1 || true)
  [[ $probe == *validate.raft-injector.io* ]] && break
  sleep 0.2
done

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
