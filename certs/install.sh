#!/usr/bin/env bash
# Issues the webhook's serving certificate with `raft-injector certs`, stores it as the
# Secret the Deployment mounts, and puts the CA into both webhook configurations.
# No private key is written anywhere but a temporary directory and the Secret.
#
#   certs/install.sh [--days N]          (needs kubectl and a raft-injector binary on PATH,
#                                         or RAFT_INJECTOR=/path/to/raft-injector)
#
# Run it after `kubectl apply -k manifests`, and again to rotate (the webhook picks up the
# new Secret within a minute, without a restart).
set -euo pipefail
namespace=${NAMESPACE:-raft-injector}
service=${SERVICE:-raft-injector}
bin=${RAFT_INJECTOR:-raft-injector}
days=365
[[ ${1:-} == --days ]] && days=$2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" certs --service "$service" --namespace "$namespace" --out "$work" --days "$days"

kubectl -n "$namespace" create secret tls raft-injector-tls \
  --cert "$work/tls.crt" --key "$work/tls.key" --dry-run=client -o yaml | kubectl apply -f -

bundle=$(base64 <"$work/ca.crt" | tr -d '\n')
kubectl patch mutatingwebhookconfiguration raft-injector --type json \
  -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$bundle\"}]"
for i in 0 1; do
  kubectl patch validatingwebhookconfiguration raft-injector --type json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}]"
done
echo "serving certificate installed; CA bundle set on both webhook configurations"
