#!/usr/bin/env bash
# Prints the path of the helm binary the tests use, building it from its Go module the
# first time (cached by version beside the local cluster's binaries).
set -euo pipefail
version=v3.22.0
cache=${RAFT_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raft-injector}
bin="$cache/helm-$version"
if [[ ! -x $bin ]]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "[helm] building helm $version from helm.sh/helm/v3 (first run only)" >&2
  GOBIN="$tmp" CGO_ENABLED=0 go install "helm.sh/helm/v3/cmd/helm@$version" >&2
  mv "$tmp/helm" "$bin"
fi
echo "$bin"
