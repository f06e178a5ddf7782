# Sourced by run.sh (not run): installing raft-injector in-cluster, as the README tells users to.
# It uses run.sh's settings (here, root, cache, the images' names) and its log/die.

# --- install ----------------------------------------------------------------------------

# The webhook, in-cluster, as the README's "Install on a real cluster" says: the image and
# the kustomize manifests (the webhook makes its own certificates and sets the caBundle).
# Returns when a dry-run create is denied through the webhook's Service.
install_webhook() {
  local dir archive
  dir=$(cd "$1" && pwd)
  readyz "$dir" || die "no cluster is running in $dir; start it with: $0 up $dir"
  archive=$(injector_image_archive)
  import_images "$dir" "$archive"
  export KUBECONFIG=$dir/kubeconfig
  kubectl apply -k "$root/manifests" >"$dir/logs/install.log" 2>&1 ||
    { log_tail "$dir" install; die "kubectl apply -k manifests failed"; }
  # The tag stays 0.1.0 while the code changes: a new image digest rolls the pods, so the
  # webhook always runs what was just built (a no-op when the image is unchanged).
  kubectl -n raft-injector patch deployment raft-injector --type merge -p \
    "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"test.raft-injector.io/image\":\"$(cut -c8-23 "$archive.digest")\"}}}}}" \
    >>"$dir/logs/install.log" 2>&1 || die "could not roll the webhook onto the new image"
  kubectl -n raft-injector rollout status deployment/raft-injector --timeout 180s >>"$dir/logs/install.log" 2>&1 || {
    kubectl -n raft-injector get pods -o wide >&2 || true
    kubectl -n raft-injector get events --sort-by .lastTimestamp >&2 || true
    die "the webhook Deployment did not become ready"
  }
  wait_for "$dir" install 120 admits_through_service
  log "raft-injector is installed in-cluster"
}

# A dry-run create in a namespace opted in with the label: only the webhook can deny it
# with raft-injector's message (an even replica count), proving the Service path works.
admits_through_service() {
  local out
  kubectl create namespace raft-injector-install-check --dry-run=client -o yaml |
    kubectl label --local -f - raft-injector.io/injection=enabled -o yaml | kubectl apply -f - >/dev/null 2>&1 || return 1
  out=$(kubectl apply --dry-run=server -n raft-injector-install-check -f "$root/examples/denied-even-replicas.yaml" 2>&1) && return 1
  grep -q 'denied the request' <<<"$out" || return 1
  kubectl delete namespace raft-injector-install-check --wait=false >/dev/null 2>&1
}

