#!/usr/bin/env bash
# A local Kubernetes control plane for raft-injector's tests and demo: real etcd,
# kube-apiserver and kube-controller-manager (statefulset, serviceaccount and
# garbage-collector controllers), all on loopback, built from Go modules.
#
#   run.sh build          build (or reuse) the controlplane binary; prints its path
#   run.sh up DIR         start everything; writes DIR/kubeconfig (admin, system:masters)
#   run.sh down DIR       stop everything `up DIR` started (its data stays in DIR)
#   run.sh reset DIR      down, then remove DIR: the next `up DIR` starts an empty cluster
#   run.sh status DIR     exit 0 when the API server in DIR answers /readyz
#
# `up` and `down` are idempotent. There is no kubelet: pods are created and stay Pending.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${RAFT_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raft-injector}

# Bump when the build command below changes, so cached binaries are rebuilt.
build_flags_rev=3

log() { printf '[controlplane] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The binary is cached outside the checkout, keyed by the sources, so fresh clones
# (CI) reuse it and a change to go.mod or main.go rebuilds it.
binary_path() {
  local key
  key=$( (echo "$build_flags_rev"; cat "$here/go.mod" "$here/go.sum" "$here/main.go") | sha256sum | cut -c1-16)
  echo "$cache/controlplane-$key"
}

build() {
  local bin
  bin=$(binary_path)
  if [[ -x $bin ]]; then
    echo "$bin"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build the control plane (https://go.dev/doc/install)"
  mkdir -p "$cache"
  log "building kube-apiserver, kube-controller-manager and etcd (a cold build takes several minutes)"
  local started=$SECONDS
  # Report the pinned release, as a release build would, so kubectl and clients see 1.32.
  local version pkg ldflags
  version=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes v\([0-9.]*\)$/\1/p' "$here/go.mod")
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$version -X $pkg.gitMajor=${version%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$version") -X $pkg.gitTreeState=clean"
  done
  # The module mirror has no checksum database for every module; go.sum pins the hashes.
  (cd "$here" && CGO_ENABLED=0 GOSUMDB=off GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags="$ldflags" -o "$bin.partial" .) || die "go build failed"
  mv "$bin.partial" "$bin"
  log "built $bin in $((SECONDS - started))s"
  echo "$bin"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

readyz() {
  local dir=$1
  [[ -f $dir/ports.env ]] || return 1
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null
}

# The last lines of a component's log, indented, for error messages.
log_tail() { # dir name
  sed 's/^/    /' < <(tail -n 15 "$1/logs/$2.log" 2>/dev/null) >&2
}

# Dies naming the first started component that is no longer running, with its log: a
# readiness probe of one component often fails because another one died.
check_running() { # dir
  local dir=$1 name
  for name in etcd kube-apiserver kube-controller-manager; do
    [[ -f $dir/pids/$name ]] || continue
    if ! alive "$dir/pids/$name"; then
      log "error: $name exited; the last lines of $dir/logs/$name.log:"
      log_tail "$dir" "$name"
      exit 1
    fi
  done
}

wait_for() { # dir what seconds command...
  local dir=$1 what=$2 seconds=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    check_running "$dir"
    if ((SECONDS >= deadline)); then
      log "error: $what did not become ready within ${seconds}s; the last lines of $dir/logs/$what.log:"
      log_tail "$dir" "$what"
      exit 1
    fi
    sleep 0.3
  done
  log "$what is up"
}

pki() {
  local dir=$1/pki
  [[ -f $dir/admin.crt ]] && return
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=raft-injector-test-ca" -out ca.crt 2>/dev/null
    issue() { # name subject extensions
      openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    issue apiserver "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
    issue admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
    # The controllers run as one identity; system:masters keeps this harness free of
    # per-controller RBAC bootstrapping.
    issue controller-manager "/O=system:masters/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

kubeconfig() { # dir user output
  local dir=$1 user=$2 out=$3
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $dir/pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $dir/pki/$user.crt
    client-key: $dir/pki/$user.key
contexts:
- name: local
  context: {cluster: local, user: $user, namespace: default}
current-context: local
EOF
}

start() { # dir name command...
  local dir=$1 name=$2
  shift 2
  alive "$dir/pids/$name" && return
  nohup "$@" >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name"
}

up() {
  local dir
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  if readyz "$dir" && alive "$dir/pids/kube-controller-manager"; then
    log "already running in $dir"
    return
  fi
  local bin
  bin=$(build)
  mkdir -p "$dir/pids" "$dir/logs"
  if [[ ! -f $dir/ports.env ]]; then
    cat >"$dir/ports.env" <<EOF
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
APISERVER_PORT=$(free_port)
EOF
  fi
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  pki "$dir"

  start "$dir" etcd "$bin" etcd --name controlplane --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "controlplane=http://127.0.0.1:$ETCD_PEER_PORT" --quota-backend-bytes 2147483648 \
    --unsafe-no-fsync
  wait_for "$dir" etcd 60 curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  start "$dir" kube-apiserver "$bin" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --cert-dir "$dir/pki/generated"
  wait_for "$dir" kube-apiserver 120 readyz "$dir"

  kubeconfig "$dir" admin "$dir/kubeconfig"
  kubeconfig "$dir" controller-manager "$dir/controller-manager.kubeconfig"
  start "$dir" kube-controller-manager "$bin" kube-controller-manager \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --controllers statefulset,serviceaccount,garbage-collector-controller \
    --leader-elect=false --use-service-account-credentials=false \
    --root-ca-file "$dir/pki/ca.crt" --service-account-private-key-file "$dir/pki/sa.key" \
    --secure-port 0
  # The serviceaccount controller creating "default" is the sign that the controllers run.
  default_account() { KUBECONFIG="$dir/kubeconfig" kubectl get serviceaccount default -o name >/dev/null 2>&1; }
  wait_for "$dir" kube-controller-manager 90 default_account
  log "ready: KUBECONFIG=$dir/kubeconfig"
}

down() {
  local dir=$1 name pidfile pid
  [[ -d $dir/pids ]] || return 0
  for name in kube-controller-manager kube-apiserver etcd; do
    pidfile=$dir/pids/$name
    if alive "$pidfile"; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$pidfile"
  done
}

case ${1:-} in
  build) build ;;
  up) [[ -n ${2:-} ]] || die "usage: run.sh up DIR"; up "$2" ;;
  down) [[ -n ${2:-} ]] || die "usage: run.sh down DIR"; down "$2" ;;
  reset) [[ -n ${2:-} ]] || die "usage: run.sh reset DIR"; down "$2"; rm -rf "$2" ;;
  status) [[ -n ${2:-} ]] || die "usage: run.sh status DIR"; readyz "$(cd "$2" && pwd)" ;;
  *) die "usage: run.sh build | up DIR | down DIR | reset DIR | status DIR" ;;
esac
