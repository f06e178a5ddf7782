# Shared by the demo scripts (sourced, not run): printing, failing with what the cluster
# looked like, kubectl on PATH, and the local cluster started or reused with raft-injector
# installed and a fresh opted-in namespace. The sourcing script sets `repo`, `dir`, `ns`
# and `demo` (its name, for messages) first.

controlplane=$repo/tests/controlplane/run.sh

# kubectl shows what users see; without one on PATH, use the cluster's own (the kubectl of
# the same Kubernetes release, built into its multi-call binary).
if ! command -v kubectl >/dev/null; then
  mkdir -p "$dir/bin"
  printf '#!/bin/sh\nexec "%s" kubectl "$@"\n' "$("$controlplane" build)" >"$dir/bin/kubectl"
  chmod +x "$dir/bin/kubectl"
  export PATH="$dir/bin:$PATH"
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
die() { printf '%s: %s\n' "$demo" "$*" >&2; exit 1; }

# What the cluster looked like, when a step does not finish in time.
explain() {
  kubectl get pods,pvc -n "$ns" -o wide >&2 || true
  kubectl get events -n "$ns" --sort-by .lastTimestamp >&2 | tail -n 20 || true
}

# One node runs per machine: reuse the one that is up (the tests', or an earlier demo's),
# else start one in $dir. Sets `dir` and KUBECONFIG.
use_cluster() {
  local running
  running=$(cat /run/raft-injector-node 2>/dev/null || true)
  if [[ -n $running ]] && "$controlplane" status "$running" 2>/dev/null; then
    say "Reusing the local cluster in $running"
    dir=$running
  else
    say "Starting the local cluster: etcd, kube-apiserver, controllers, scheduler, kubelet, containerd, kube-proxy, CoreDNS"
    "$controlplane" up "$dir"
  fi
  export KUBECONFIG=$dir/kubeconfig
}

# A fresh namespace $ns, opted in with the label.
fresh_namespace() {
  say "Opting a fresh namespace in"
  kubectl delete namespace "$ns" --ignore-not-found --timeout 180s >/dev/null
  kubectl create namespace "$ns" >/dev/null
  show kubectl label namespace "$ns" raft-injector.io/injection=enabled
}
