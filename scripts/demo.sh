#!/usr/bin/env bash
# `make demo`: the main job end to end on the local one-node cluster. Starts it (or reuses
# the one already running), installs the webhook in-cluster from the Dockerfile-built image,
# opts a namespace in, applies examples/etcd.yaml unchanged, and shows what a person wants
# to see: three pods forming an etcd cluster with no entrypoint script, a key written on one
# member and read on another, the membership following a scale 3→5→3, each decision the
# helper made, and a denial and a warning as kubectl prints them.
#
# Rerunnable: every run starts from a fresh `demo` namespace. The cluster keeps running
# afterwards, so you can look around; `make demo-down` stops it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.run/demo}
ns=demo
demo=demo
# shellcheck source=scripts/lib/demo.sh
source "$repo/scripts/lib/demo.sh"

wait_ready() { # count
  local deadline=$((SECONDS + 240)) ready
  while ((SECONDS < deadline)); do
    ready=$(kubectl get pods -n "$ns" -l app=etcd -o jsonpath='{range .items[?(@.status.containerStatuses[0].ready==true)]}{.metadata.name}{" "}{end}' 2>/dev/null)
    [[ $(wc -w <<<"$ready") == "$1" && -z $(kubectl get pods -n "$ns" -l app=etcd -o jsonpath='{.items[?(@.metadata.deletionTimestamp)].metadata.name}') ]] && return
    sleep 1
  done
  explain
  die "$1 etcd pods did not become Ready within 240s"
}
member_list() { # pod
  printf '\033[2m$ kubectl exec -n %s %s -- etcdctl member list -w table\033[0m\n' "$ns" "$1"
  kubectl exec -n "$ns" "$1" -c etcd -- etcdctl member list -w table
}
wait_members() { # count
  local deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    [[ $(kubectl exec -n "$ns" etcd-0 -c etcd -- etcdctl member list 2>/dev/null | grep -c ', started, ') == "$1" &&
      $(kubectl exec -n "$ns" etcd-0 -c etcd -- etcdctl member list 2>/dev/null | wc -l) == "$1" ]] && return
    sleep 1
  done
  explain
  die "the etcd cluster did not reach $1 started members within 120s"
}

use_cluster
show kubectl get nodes

say "Installing raft-injector in-cluster, as the README says (image from the Dockerfile, kubectl apply -k manifests; the webhook makes its own certificates)"
"$controlplane" install "$dir"
show kubectl get pods -n raft-injector

fresh_namespace

say "Applying examples/etcd.yaml unchanged: a headless Service and a StatefulSet labelled raft-injector.io/raft=true"
show kubectl apply -n "$ns" -f "$repo/examples/etcd.yaml"
wait_ready 3
show kubectl get pods -n "$ns" -o wide
echo "  etcd-1 runs: $(kubectl get pod -n "$ns" etcd-1 -o jsonpath='{.spec.containers[0].command}') — no entrypoint script"
echo "  init containers: $(kubectl get pod -n "$ns" etcd-1 -o jsonpath='{.spec.initContainers[*].name}'); preStop: $(kubectl get pod -n "$ns" etcd-1 -o jsonpath='{.spec.containers[0].lifecycle.preStop.exec.command}')"
wait_members 3
member_list etcd-0

say "A key written through etcd-0 is read through etcd-2"
show kubectl exec -n "$ns" etcd-0 -c etcd -- etcdctl put greeting "hello from etcd-0"
show kubectl exec -n "$ns" etcd-2 -c etcd -- etcdctl get greeting --print-value-only

say "Scaling to 5: the new pods join the running cluster, one at a time"
show kubectl scale -n "$ns" statefulset/etcd --replicas=5
wait_ready 5
wait_members 5
member_list etcd-0

say "Scaling back to 3: the preStop hook of etcd-3 and etcd-4 removes them (a restart would not)"
show kubectl scale -n "$ns" statefulset/etcd --replicas=3
wait_ready 3
wait_members 3
member_list etcd-0
show kubectl exec -n "$ns" etcd-1 -c etcd -- etcdctl get greeting --print-value-only

say "What each member's helper decided (Events on the StatefulSet)"
show kubectl get events -n "$ns" --field-selector involvedObject.kind=StatefulSet,source=raft-injector-member \
  --sort-by .lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message

say "A denial: 4 replicas"
show kubectl apply -n "$ns" -f "$repo/examples/denied-even-replicas.yaml" || true

say "A denial: kubectl scale to an even size"
show kubectl scale -n "$ns" statefulset/etcd --replicas=4 || true

say "A warning: a headless Service without publishNotReadyAddresses (allowed, but kubectl shows why it is risky)"
sed -e '/publishNotReadyAddresses/d' -e 's/counter/quorum/g' -e 's/replicas: 3/replicas: 0/' \
  "$repo/examples/ratis-app.yaml" >"$dir/warned.yaml"
show kubectl apply -n "$ns" -f "$dir/warned.yaml"
kubectl delete -n "$ns" -f "$dir/warned.yaml" --wait=false >/dev/null

say "Done. The cluster keeps running: export KUBECONFIG=$dir/kubeconfig (stop it with: make demo-down)"
