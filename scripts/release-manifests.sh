#!/usr/bin/env bash
# The release manifests: `kubectl kustomize manifests[/VARIANT]` with every reference to the
# raft-injector image (the webhook's container and RAFT_INJECTOR_HELPER_IMAGE, which the
# injected init containers and sidecar run) written as tag@digest, so what runs is exactly
# the image that was pushed, and the tag still says which release it is.
#
#   scripts/release-manifests.sh sha256:<64 hex> [manifests/VARIANT] > raft-injector.yaml
#
# The digest is the pushed image's: `docker buildx imagetools inspect IMAGE:TAG`, or
# `crane digest IMAGE:TAG`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
digest=${1:-}
dir=${2:-manifests}
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || {
  echo "usage: $0 sha256:<64 hex digits> [manifests/VARIANT]" >&2
  exit 2
}
image=ghcr.io/raft-injector/raft-injector:0.1.0
out=$(kubectl kustomize "$root/$dir")
grep -q "$image" <<<"$out" || { echo "$dir does not reference $image" >&2; exit 1; }
# Exact matches only: an image already pinned (ending in @sha256:...) is left alone.
sed -E "s#(^|[[:space:]\"])${image//./\\.}(\"?)\$#\1${image}@${digest}\2#" <<<"$out"
