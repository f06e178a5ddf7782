#!/usr/bin/env bash
# `make demo-ratis`: an Apache Ratis group on the local cluster, formed and resized from the
# env raft-injector injects and nothing else. Starts the cluster (or reuses the running
# one), installs the webhook, builds the example's image (examples/ratis: Maven, jlink),
# applies examples/ratis/kv.yaml unchanged, and shows: 3 pods forming one group whose id is
# the injected RAFT_GROUP_ID, a key written through one pod and read through another, and
# the configuration following a scale 3→5→3 through the join and leave URLs.
#
# Rerunnable: every run starts from a fresh `demo-ratis` namespace. The cluster keeps
# running afterwards; `make demo-down` stops it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.run/demo}
ns=demo-ratis
demo=demo-ratis
# shellcheck source=scripts/lib/demo.sh
source "$repo/scripts/lib/demo.sh"

ip_of() { kubectl get pod -n "$ns" "$1" -o jsonpath='{.status.podIP}'; }
# curl against a pod's http port (pod IPs are reachable from the host), shown as typed.
pod_curl() { # pod path [curl args...]
  local pod=$1 path=$2
  shift 2
  printf '\033[2m$ curl %s http://%s:8080%s\033[0m\n' "$*" "$pod" "$path"
  curl -sS --max-time 10 "$@" "http://$(ip_of "$pod"):8080$path"
  echo
}
# Waits until every pod 0..count-1 reports exactly count peers and they agree on the leader.
wait_group() { # count
  local deadline=$((SECONDS + 120)) i views
  while ((SECONDS < deadline)); do
    views=$(for ((i = 0; i < $1; i++)); do
      curl -sS --max-time 3 "http://$(ip_of "kv-$i" 2>/dev/null):8080/raft/group" 2>/dev/null || echo '{}'
      echo
    done)
    python3 -c '
import json, sys
count = int(sys.argv[1])
views = [json.loads(l) for l in sys.stdin if l.strip()]
ok = len(views) == count and all(len(v.get("peers", [])) == count and v.get("leader") for v in views) \
  and len({v["leader"] for v in views}) == 1
sys.exit(0 if ok else 1)' "$1" <<<"$views" && return
    sleep 1
  done
  explain
  die "the group did not reach $1 peers with one leader within 120s"
}

use_cluster

say "Installing raft-injector in-cluster, and building the Ratis example's image (Maven, jlink; no Docker)"
"$controlplane" install "$dir"
"$controlplane" ratis "$dir" >/dev/null

fresh_namespace

say "Applying examples/ratis/kv.yaml unchanged: the app reads RAFT_GROUP_ID, RAFT_PEERS and POD_NAME"
started=$SECONDS
show kubectl apply -n "$ns" -f "$repo/examples/ratis/kv.yaml"
echo "  injected RAFT_GROUP_ID: $(kubectl get statefulset -n "$ns" kv -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="RAFT_GROUP_ID")].value}')"
kubectl wait -n "$ns" --for=condition=Ready pod/kv-0 pod/kv-1 pod/kv-2 --timeout 240s >/dev/null || { explain; die "pods not Ready"; }
wait_group 3
echo "  group formed $((SECONDS - started))s after apply"
pod_curl kv-0 /raft/group
pod_curl kv-2 /raft/group

say "A key written through kv-0 is read through kv-2 (a linearizable read, via the leader)"
pod_curl kv-0 /kv/greeting -X PUT --data-binary "hello from kv-0"
pod_curl kv-2 /kv/greeting

say "Scaling to 5: kv-3 and kv-4 call the join URL from their init container"
started=$SECONDS
show kubectl scale -n "$ns" statefulset/kv --replicas=5
wait_group 5
echo "  every pod reports 5 peers $((SECONDS - started))s after the scale"
pod_curl kv-4 /raft/group

say "Scaling back to 3: the preStop hook of kv-3 and kv-4 calls the leave URL (a restart would not)"
started=$SECONDS
show kubectl scale -n "$ns" statefulset/kv --replicas=3
wait_group 3
echo "  every pod reports 3 peers $((SECONDS - started))s after the scale"
pod_curl kv-1 /raft/group
pod_curl kv-1 /kv/greeting

say "The calls, as the app logged them, and what each helper decided (Events)"
kubectl logs -n "$ns" kv-0 -c kv | grep -E 'join kv-|leave kv-' | cut -c1-200 || true
show kubectl get events -n "$ns" --field-selector involvedObject.kind=StatefulSet,source=raft-injector-member \
  --sort-by .lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message

say "Done. The cluster keeps running: export KUBECONFIG=$dir/kubeconfig (stop it with: make demo-down)"
