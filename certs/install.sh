#!/usr/bin/env bash
# Issues (or rotates) the webhook's serving certificate with `raft-injector certs`, stores it
# as the Secret the Deployment mounts, and keeps both webhook configurations' caBundle right,
# without a window in which the API server distrusts the certificate being served.
#
#   certs/install.sh [--days N] [--new-ca] [--wait-seconds N]
#
# needs kubectl, openssl and a raft-injector binary on PATH (or RAFT_INJECTOR=/path/to/it).
#
# The CA lives in the Secret raft-injector-ca and is reused on every run, so a normal rotation
# only replaces the serving pair: the caBundle does not change, and the pods pick up the new
# Secret within a minute or two, without a restart. With --new-ca (or on first install):
#   1. the caBundle becomes old CA + new CA, so either serving certificate is trusted;
#   2. the Secrets are updated;
#   3. it waits until every webhook pod serves the new certificate (each pod's
#      raft_injector_serving_certificate_info metric, read through the API server);
#   4. only then the old CA is dropped from the caBundle.
# If step 3 times out, the bundle keeps both CAs (safe); run the script again later.
# No private key is written anywhere but a temporary directory and the Secrets.
set -euo pipefail
namespace=${NAMESPACE:-raft-injector}
service=${SERVICE:-raft-injector}
webhooks=${WEBHOOK_CONFIGURATION:-raft-injector}
tls_secret=${TLS_SECRET:-raft-injector-tls}
ca_secret=${CA_SECRET:-raft-injector-ca}
bin=${RAFT_INJECTOR:-raft-injector}
days=365 new_ca=() wait_seconds=180
while (($#)); do
  case $1 in
    --days) days=$2; shift 2 ;;
    --new-ca) new_ca=(--new-ca); shift ;;
    --wait-seconds) wait_seconds=$2; shift 2 ;;
    *) echo "usage: certs/install.sh [--days N] [--new-ca] [--wait-seconds N]" >&2; exit 2 ;;
  esac
done

say() { printf 'certs/install.sh: %s\n' "$*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The kept CA, if there is one.
if kubectl -n "$namespace" get secret "$ca_secret" >/dev/null 2>&1; then
  for key in ca.crt ca.key; do
    kubectl -n "$namespace" get secret "$ca_secret" -o "jsonpath={.data.${key//./\\.}}" | base64 -d >"$work/$key"
  done
  chmod 600 "$work/ca.key"
fi
"$bin" certs --service "$service" --namespace "$namespace" --out "$work" --days "$days" "${new_ca[@]}"
new_ca_pem=$(cat "$work/ca.crt")

bundle_of() { # configuration kind -> the PEM bundle of its first webhook
  kubectl get "$1" "$webhooks" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null | base64 -d 2>/dev/null || true
}

set_bundle() { # PEM
  local encoded kind count i patch
  encoded=$(printf '%s\n' "$1" | base64 -w0)
  for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
    count=$(kubectl get "$kind" "$webhooks" -o jsonpath='{range .webhooks[*]}x{end}')
    patch="["
    for ((i = 0; i < ${#count}; i++)); do
      ((i > 0)) && patch+=","
      patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$encoded\"}"
    done
    kubectl patch "$kind" "$webhooks" --type json -p "$patch]" >/dev/null
  done
}

# 1. Trust the new CA before anything serves a certificate it signed.
current=$(bundle_of mutatingwebhookconfiguration)
if [[ $current != *"$new_ca_pem"* ]]; then
  current=$(printf '%s\n%s\n' "$current" "$new_ca_pem" | sed '/^$/d')
  set_bundle "$current"
  say "caBundle: added the new CA to the $(($(grep -c 'BEGIN CERTIFICATE' <<<"$current") - 1)) already trusted"
fi
# Other CAs still in the bundle (an earlier CA, or one a change did not finish dropping)
# are dropped once no pod serves a certificate they signed.
if [[ $(grep -c 'BEGIN CERTIFICATE' <<<"$current") -gt 1 ]]; then
  drop_old=true
else
  drop_old=false
fi

# 2. The Secrets: the CA (kept for the next run) and the serving pair the pods mount.
kubectl -n "$namespace" create secret generic "$ca_secret" \
  --from-file=ca.crt="$work/ca.crt" --from-file=ca.key="$work/ca.key" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" create secret tls "$tls_secret" \
  --cert "$work/tls.crt" --key "$work/tls.key" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
say "Secret $namespace/$tls_secret: new serving certificate"

# 3. Wait until every webhook pod serves it (pods reload the mounted Secret by themselves).
fingerprint=$(openssl x509 -in "$work/tls.crt" -outform der | sha256sum | cut -d' ' -f1)
pods_behind() {
  kubectl -n "$namespace" get endpointslices -l "kubernetes.io/service-name=$service" \
    -o jsonpath='{range .items[*].endpoints[*]}{.targetRef.name}{"\n"}{end}' 2>/dev/null | sed '/^$/d' | sort -u
}
serves_new() { # pod
  kubectl get --raw "/api/v1/namespaces/$namespace/pods/$1:9090/proxy/metrics" 2>/dev/null \
    | grep -q "raft_injector_serving_certificate_info{sha256=\"$fingerprint\"} 1"
}
if [[ $drop_old == true ]]; then
  deadline=$((SECONDS + wait_seconds))
  while :; do
    waiting=()
    while read -r pod; do
      [[ -n $pod ]] && ! serves_new "$pod" && waiting+=("$pod")
    done < <(pods_behind)
    ((${#waiting[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      say "pods still serving the old certificate after ${wait_seconds}s: ${waiting[*]}"
      say "the caBundle keeps both CAs, so nothing is broken; run certs/install.sh again to finish"
      exit 1
    fi
    sleep 5
  done
  say "every webhook pod serves the new certificate"
  # 4. Only the new CA from now on.
  set_bundle "$new_ca_pem"
  say "caBundle: the new CA only"
else
  say "the CA is unchanged, so the caBundle needs no change; pods pick up the new pair by themselves"
fi
