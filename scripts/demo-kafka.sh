#!/usr/bin/env bash
# `make demo-kafka`: Kafka KRaft controllers whose quorum follows `kubectl scale`. Starts the
# cluster (or reuses the running one), installs the webhook, builds the Kafka image under the
# official name (Maven Central's jars, jlink; no Docker), applies examples/kafka.yaml
# unchanged, and shows with Kafka's own tools: 3 controllers forming a dynamic quorum, a
# topic produced to and consumed from, the voters after 3 -> 5 -> 3, the helpers' Events, and
# a denial.
#
# Rerunnable: every run starts from a fresh `demo-kafka` namespace. The cluster keeps
# running afterwards; `make demo-down` stops it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/.run/demo}
ns=demo-kafka
demo=demo-kafka
# shellcheck source=scripts/lib/demo.sh
source "$repo/scripts/lib/demo.sh"

quorum() { # the voters as kafka-metadata-quorum.sh lists them, from kafka-controller-0
  kubectl exec -n "$ns" kafka-controller-0 -c kafka -- /opt/kafka/bin/kafka-metadata-quorum.sh \
    --bootstrap-controller localhost:9093 describe --status
}
voter_ids() { quorum 2>/dev/null | sed -n 's/^CurrentVoters:[[:space:]]*//p' | python3 -c '
import json, sys
print(",".join(str(v["id"]) for v in json.loads(sys.stdin.read() or "[]")))' 2>/dev/null || true; }
# Waits until the voters are exactly $1 (e.g. 0,1,2), asking the helper (no JVM) meanwhile.
wait_voters() { # ids seconds
  local deadline=$((SECONDS + $2)) seen
  while ((SECONDS < deadline)); do
    seen=$(kubectl exec -n "$ns" kafka-controller-0 -c kafka -- /raft-injector/raft-injector member status -o json 2>/dev/null |
      python3 -c '
import json, sys
s = json.load(sys.stdin)
print(",".join(sorted((m["id"].split("@")[0] for m in s["members"] if not m["learner"]), key=int)))' 2>/dev/null || true)
    if [[ $seen == "$1" && $(voter_ids) == "$1" ]]; then return; fi
    sleep 2
  done
  explain
  die "the voters were not $1 within $2s (last seen: ${seen:-nothing})"
}
tool() { show kubectl exec -n "$ns" "$@"; }

use_cluster

say "Installing raft-injector in-cluster, and building apache/kafka:4.4.0 here (Maven Central, jlink; no Docker)"
"$controlplane" install "$dir"
"$controlplane" kafka "$dir" >/dev/null

fresh_namespace

say "Applying examples/kafka.yaml unchanged: 3 controllers (flavor kraft) and a broker"
started=$SECONDS
show kubectl apply -n "$ns" -f "$repo/examples/kafka.yaml"
kubectl wait -n "$ns" --for=condition=Ready pod/kafka-controller-0 pod/kafka-controller-1 pod/kafka-controller-2 \
  pod/kafka-broker-0 --timeout 300s >/dev/null || { explain; die "pods not Ready"; }
wait_voters 0,1,2 240
echo "  a dynamic quorum of 3 voters $((SECONDS - started))s after apply"
tool kafka-controller-0 -c kafka -- /opt/kafka/bin/kafka-features.sh --bootstrap-controller localhost:9093 describe
show quorum

say "A topic, a message produced with acks=all and consumed, through the broker"
tool kafka-broker-0 -- /opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --create --topic demo \
  --partitions 1 --replication-factor 1
echo "hello from the demo" | kubectl exec -i -n "$ns" kafka-broker-0 -- /opt/kafka/bin/kafka-console-producer.sh \
  --bootstrap-server localhost:9092 --topic demo --producer-property acks=all
tool kafka-broker-0 -- /opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server localhost:9092 --topic demo \
  --from-beginning --max-messages 1 --timeout-ms 30000

say "Scaling the controllers to 5: each new one formats as an observer, catches up, and its sidecar adds it"
started=$SECONDS
show kubectl scale -n "$ns" statefulset/kafka-controller --replicas=5
wait_voters 0,1,2,3,4 300
echo "  5 voters $((SECONDS - started))s after the scale"
show quorum

say "Scaling back to 3: the preStop hook of controllers 3 and 4 removes each voter (a restart would not)"
started=$SECONDS
show kubectl scale -n "$ns" statefulset/kafka-controller --replicas=3
wait_voters 0,1,2 180
echo "  3 voters $((SECONDS - started))s after the scale"
show quorum

say "What each helper did (Events on the StatefulSet)"
show kubectl get events -n "$ns" --field-selector involvedObject.kind=StatefulSet,source=raft-injector-member \
  --sort-by .lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message

say "A denial: an even number of controllers (a quorum of 4 tolerates no more failures than one of 3)"
if kubectl apply -n "$ns" -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: kafka-even}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: kafka-even}
  ports: [{name: controller, port: 9093}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: kafka-even
  labels: {raft-injector.io/raft: "true"}
  annotations: {raft-injector.io/flavor: kraft}
spec:
  serviceName: kafka-even
  replicas: 4
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: kafka-even}}
  template:
    metadata: {labels: {app: kafka-even}}
    spec:
      containers: [{name: kafka, image: docker.io/apache/kafka:4.4.0}]
YAML
then die "an even replica count was admitted"; fi

say "Done. The cluster keeps running: export KUBECONFIG=$dir/kubeconfig (stop it with: make demo-down)"
