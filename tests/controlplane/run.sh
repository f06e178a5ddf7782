#!/usr/bin/env bash
# A local one-node Kubernetes cluster for raft-injector's tests and demo, all built from Go
# modules at one Kubernetes pin: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet and kube-proxy (one multi-call binary), Debian's containerd, runc
# and CNI plugins, CoreDNS as a pod, and kube-controller-manager's host-path provisioner.
#
#   run.sh build          build (or reuse) the controlplane binary; prints its path
#   run.sh images         build (or reuse) the node's images (pause, etcd, CoreDNS); prints them
#   run.sh up DIR         start everything; writes DIR/kubeconfig (admin, system:masters) and
#                         returns when the node is Ready and cluster DNS answers
#   run.sh install DIR    build the raft-injector image from the Dockerfile, load it, and
#                         install the webhook in-cluster the way the README tells users to
#   run.sh ratis DIR      build the Ratis example's image (examples/ratis: Maven, jlink) and
#                         load it into the node; prints its name
#   run.sh kafka DIR      build the Kafka image (apache/kafka's layout and name, from Maven
#                         Central's jars) and load it into the node; prints its name
#   run.sh down DIR       stop everything `up DIR` started; leaves no process, container,
#                         mount, network namespace, link, iptables rule or cgroup behind
#                         (the cluster's data stays in DIR)
#   run.sh reset DIR      down, then remove DIR and its volumes: the next `up DIR` starts empty
#   run.sh status DIR     exit 0 when the API server in DIR answers /readyz
#
# `up` and `down` are idempotent. One node runs per machine (kube-proxy's iptables chains
# and the node's bridge are machine-wide): `up` refuses while another DIR's node runs.
# Pods reach the API server through the `kubernetes` Service; pod IPs (10.244.0.0/24) are
# reachable from the host. No traffic leaves the machine: cluster DNS has no upstream and
# containerd's registry traffic goes to a closed loopback port, so an image that was not
# built here fails fast with ErrImagePull instead of being fetched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${RAFT_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raft-injector}

# Bump when the build command below changes, so cached binaries are rebuilt.
build_flags_rev=3

# The node's network. The node IP is the bridge's own address: the API server and kubelet
# listen there, so pods reach them and nothing listens on the machine's real interfaces.
bridge=rinj0
pod_cidr=10.244.0.0/24
node_ip=10.244.0.1
service_cidr=10.0.0.0/24
dns_ip=10.0.0.10
node_name=raft-node
lock=/run/raft-injector-node
# What kubelet and kube-proxy change on the host; `up` saves them and `down` restores them.
sysctls=(net/ipv4/ip_forward vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/conf/all/route_localnet)

pause_image=registry.k8s.io/pause:3.10
coredns_image=registry.k8s.io/coredns/coredns:v1.11.3
etcd_image=quay.io/coreos/etcd:v3.5.16
injector_image=ghcr.io/raft-injector/raft-injector:0.1.0

log() { printf '[controlplane] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The image factory, the configuration files and the installer live beside this file; what
# is left here is the node's lifecycle: processes, host state, up, down, reset.
# shellcheck source=tests/controlplane/lib/images.sh
source "$here/lib/images.sh"
# shellcheck source=tests/controlplane/lib/config.sh
source "$here/lib/config.sh"
# shellcheck source=tests/controlplane/lib/install.sh
source "$here/lib/install.sh"

# --- processes --------------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A component runs when its pid is alive and still this node's process: every component's
# command line names a path under the node's directory (a pid left by a killed session may
# since belong to something else, which `stop` must never kill).
alive() { # dir/pids/name
  local pid
  [[ -f $1 ]] && pid=$(cat "$1") && [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "${1%/pids/*}/"
}

# Whether any component of the node in DIR is running.
node_running() { # dir
  local pidfile
  for pidfile in "$1"/pids/*; do
    alive "$pidfile" && return 0
  done
  return 1
}

readyz() {
  local dir=$1
  [[ -f $dir/ports.env ]] || return 1
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    "https://$node_ip:$APISERVER_PORT/readyz" >/dev/null
}

# The last lines of a component's log, indented, for error messages.
log_tail() { # dir name
  sed 's/^/    /' < <(tail -n 15 "$1/logs/$2.log" 2>/dev/null) >&2
}

components=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

# Dies naming the first started component that is no longer running, with its log: a
# readiness probe of one component often fails because another one died.
check_running() { # dir
  local dir=$1 name
  for name in "${components[@]}"; do
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

start() { # dir name command...
  local dir=$1 name=$2
  shift 2
  alive "$dir/pids/$name" && return
  nohup "$@" >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name"
}

stop() { # dir name
  local pidfile=$1/pids/$2 pid
  if alive "$pidfile"; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $2"
  fi
  rm -f "$pidfile"
}

# --- the node's host state --------------------------------------------------------------

preflight() {
  [[ $(id -u) == 0 ]] || die "the node needs root (kubelet, containerd and CNI manage the host's network and cgroups)"
  local missing=()
  for tool in containerd runc ctr iptables ip gcc curl openssl python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    missing+=("CNI plugins in /usr/lib/cni")
  ((${#missing[@]} == 0)) || die "missing: ${missing[*]} (Debian: apt-get install containerd runc containernetworking-plugins iptables conntrack musl-tools)"
}

# One local node per machine (one bridge, one set of KUBE-* chains). Another node that is
# still running is waited for up to RAFT_NODE_LOCK_WAIT seconds (default 0: fail at once);
# one whose processes are all gone (its session was killed before `down`) is cleaned up.
take_lock() { # dir
  local dir=$1 other deadline=$((SECONDS + ${RAFT_NODE_LOCK_WAIT:-0}))
  [[ -f $lock ]] && other=$(cat "$lock")
  if [[ -n ${other:-} && $other != "$dir" && -d $other ]]; then
    local waiting=false
    while node_running "$other"; do
      ((SECONDS < deadline)) ||
        die "another local node is running from $other; stop it first: $0 down $other"
      $waiting || log "another local node is running from $other; waiting up to $((deadline - SECONDS))s for it to stop"
      waiting=true
      sleep 5
    done
    # Still named by the lock: it stopped without `down` (its own `down` frees the lock).
    if [[ $(cat "$lock" 2>/dev/null) == "$other" ]]; then
      log "the local node in $other stopped without 'down' (its processes are gone); removing what it left"
      down "$other"
    fi
  fi
  echo "$dir" >"$lock"
}

host_network() { # dir
  local dir=$1 name
  if [[ ! -f $dir/sysctls.saved ]]; then
    for name in "${sysctls[@]}"; do
      [[ -f /proc/sys/$name ]] && echo "$name=$(cat "/proc/sys/$name")"
    done >"$dir/sysctls.saved"
  fi
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
  echo 1 >/proc/sys/net/ipv4/ip_forward
}

import_images() { # dir archive...
  local dir=$1 archive ref digest
  shift
  for archive in "$@"; do
    digest=$(cat "$archive.digest")
    ref=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])' \
      < <(tar -xOf "$archive" index.json))
    if ctr -a "$dir/containerd/containerd.sock" -n k8s.io images ls "name==$ref" 2>/dev/null | grep -q "$digest"; then
      continue
    fi
    ctr -a "$dir/containerd/containerd.sock" -n k8s.io images import "$archive" >/dev/null ||
      die "importing $archive into containerd failed"
    log "loaded $ref"
  done
}

node_ready() {
  [[ $(KUBECONFIG="$1/kubeconfig" kubectl get node "$node_name" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# Asks cluster DNS for the API server's Service name, from the host, as a pod would.
dns_answers() {
  python3 - "$dns_ip" <<'EOF'
import socket, struct, sys
name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"
query = struct.pack(">HHHHHH", 0x5241, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
try:
    s.sendto(query, (sys.argv[1], 53))
    reply = s.recv(512)
except OSError:
    sys.exit(1)
# An answer with rcode 0 and at least one record.
sys.exit(0 if reply[:2] == query[:2] and reply[3] & 0x0F == 0 and struct.unpack(">H", reply[6:8])[0] > 0 else 1)
EOF
}

# CoreDNS runs as a pod, so its story is in the API rather than in DIR/logs.
dns_answers_or_explain() {
  dns_answers && return
  if ((SECONDS >= ${dns_deadline:=$((SECONDS + 115))})); then
    KUBECONFIG="$dir/kubeconfig" kubectl -n kube-system get pods -o wide >"$dir/logs/coredns.log" 2>&1 || true
    KUBECONFIG="$dir/kubeconfig" kubectl -n kube-system get events --sort-by .lastTimestamp >>"$dir/logs/coredns.log" 2>&1 || true
    KUBECONFIG="$dir/kubeconfig" kubectl -n kube-system logs deploy/coredns --tail 20 >>"$dir/logs/coredns.log" 2>&1 || true
  fi
  return 1
}

# --- up ---------------------------------------------------------------------------------

up() {
  local dir
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  if readyz "$dir" && alive "$dir/pids/kubelet" && alive "$dir/pids/kube-proxy"; then
    log "already running in $dir"
    return
  fi
  preflight
  take_lock "$dir"
  local bin started=$SECONDS
  bin=$(build)
  local node_images
  mapfile -t node_images < <(images)
  mkdir -p "$dir/pids" "$dir/logs"
  if [[ ! -f $dir/ports.env ]] || ! grep -q KUBELET_PORT "$dir/ports.env"; then
    cat >"$dir/ports.env" <<EOF
APISERVER_HOST=$node_ip
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
APISERVER_PORT=$(free_port)
KUBELET_PORT=$(free_port)
KUBELET_HEALTHZ_PORT=$(free_port)
PROXY_HEALTHZ_PORT=$(free_port)
PROXY_METRICS_PORT=$(free_port)
EOF
  fi
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  pki "$dir"
  host_network "$dir"

  start "$dir" etcd "$bin" etcd --name controlplane --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "controlplane=http://127.0.0.1:$ETCD_PEER_PORT" --quota-backend-bytes 2147483648 \
    --unsafe-no-fsync
  wait_for "$dir" etcd 60 curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  start "$dir" kube-apiserver "$bin" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$node_ip" --advertise-address "$node_ip" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$dir/pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-cluster-ip-range "$service_cidr" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --cert-dir "$dir/pki/generated"
  wait_for "$dir" kube-apiserver 120 readyz "$dir"

  kubeconfig "$dir" admin "$dir/kubeconfig"
  kubeconfig "$dir" controller-manager "$dir/controller-manager.kubeconfig"
  kubeconfig "$dir" scheduler "$dir/scheduler.kubeconfig"
  kubeconfig "$dir" node "$dir/node.kubeconfig"
  kubeconfig "$dir" kube-proxy "$dir/kube-proxy.kubeconfig"
  # The host-path provisioner gives volumeClaimTemplates real volumes (under /tmp/hostpath_pv,
  # where the provisioner insists on them; `reset` removes this cluster's).
  start "$dir" kube-controller-manager "$bin" kube-controller-manager \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --controllers '*' --enable-hostpath-provisioner \
    --leader-elect=false --use-service-account-credentials=false \
    --root-ca-file "$dir/pki/ca.crt" --service-account-private-key-file "$dir/pki/sa.key" \
    --service-cluster-ip-range "$service_cidr" \
    --secure-port 0
  start "$dir" kube-scheduler "$bin" kube-scheduler \
    --kubeconfig "$dir/scheduler.kubeconfig" --leader-elect=false --secure-port 0
  # The serviceaccount controller creating "default" is the sign that the controllers run.
  default_account() { KUBECONFIG="$dir/kubeconfig" kubectl get serviceaccount default -o name >/dev/null 2>&1; }
  wait_for "$dir" kube-controller-manager 90 default_account

  containerd_config "$dir"
  # Registry traffic goes to a closed loopback port: images come only from this machine.
  start "$dir" containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    containerd --config "$dir/containerd/config.toml"
  containerd_up() { ctr -a "$dir/containerd/containerd.sock" version >/dev/null 2>&1; }
  wait_for "$dir" containerd 60 containerd_up
  import_images "$dir" "${node_images[@]}"

  kubelet_config "$dir"
  start "$dir" kubelet "$bin" kubelet --config "$dir/kubelet.yaml" --kubeconfig "$dir/node.kubeconfig" \
    --root-dir "$dir/kubelet" --hostname-override "$node_name" --node-ip "$node_ip"
  wait_for "$dir" kubelet 120 node_ready "$dir"
  start "$dir" kube-proxy "$bin" kube-proxy --config "$dir/kube-proxy.yaml"
  proxy_up() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"; }
  wait_for "$dir" kube-proxy 60 proxy_up

  KUBECONFIG="$dir/kubeconfig" kubectl apply -f "$here/addons/" >"$dir/logs/addons.log" 2>&1 ||
    { log_tail "$dir" addons; die "applying the cluster add-ons failed"; }
  wait_for "$dir" coredns 120 dns_answers_or_explain
  log "ready in $((SECONDS - started))s: KUBECONFIG=$dir/kubeconfig"
}

# --- down -------------------------------------------------------------------------------

down() {
  local dir=$1 name
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd)
  # Remember this cluster's host-path volumes while the API server still answers, for reset.
  if readyz "$dir" 2>/dev/null; then
    KUBECONFIG="$dir/kubeconfig" kubectl get pv -o 'jsonpath={range .items[*]}{.spec.hostPath.path}{"\n"}{end}' \
      2>/dev/null >>"$dir/hostpath-volumes" || true
  fi
  stop "$dir" kube-proxy
  stop "$dir" kubelet
  # Pod sandboxes go the way kubelet removes them (CNI DEL), while containerd still runs.
  if alive "$dir/pids/containerd"; then
    "$(build)" cri-reset "unix://$dir/containerd/containerd.sock" 2>>"$dir/logs/down.log" ||
      log "warning: some pod sandboxes did not stop cleanly (see $dir/logs/down.log); removing them by force"
    force_remove_containers "$dir"
  fi
  stop "$dir" containerd
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$dir" "$name"
  done
  host_cleanup "$dir"
  [[ -f $lock && $(cat "$lock") == "$dir" ]] && rm -f "$lock"
  leftovers "$dir"
}

# Whatever CRI could not stop: kill the tasks, delete the containers.
force_remove_containers() {
  local dir=$1 ctr_=(ctr -a "$1/containerd/containerd.sock" -n k8s.io) id
  for id in $("${ctr_[@]}" tasks ls -q 2>/dev/null); do
    "${ctr_[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $("${ctr_[@]}" containers ls -q 2>/dev/null); do
    "${ctr_[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    "${ctr_[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
}

# The mounts below DIR, deepest first.
mounts_under() { awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r; }

host_cleanup() {
  local dir=$1 mount pid name value
  # Shims and containers that outlived containerd (a crash, a kill -9).
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd/containerd.sock" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
  # Containers whose shim is gone keep running in kubelet's pod cgroups: kill them there.
  # Only one local node runs on a machine (the lock), so every kubepods cgroup is this node's.
  local deadline=$((SECONDS + 10))
  while pid=$(cat /sys/fs/cgroup/*/kubepods/{,*/}{,*/}{,*/}cgroup.procs 2>/dev/null | sort -u) && [[ -n $pid ]]; do
    # shellcheck disable=SC2086
    kill -9 $pid 2>/dev/null || true
    ((SECONDS < deadline)) || break
    sleep 0.2
  done
  for mount in $(mounts_under "$dir"); do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
  remove_kube_chains
  ip link del "$bridge" 2>/dev/null || true
  # kubelet's pod cgroups (cgroupfs driver), deepest first.
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  if [[ -f $dir/sysctls.saved ]]; then
    while IFS='=' read -r name value; do
      echo "$value" >"/proc/sys/$name" 2>/dev/null || true
    done <"$dir/sysctls.saved"
    rm -f "$dir/sysctls.saved"
  fi
}

# kube-proxy's and kubelet's iptables chains (KUBE-*), IPv4 and IPv6: first the jumps to
# them from the built-in chains, then the chains themselves. Only one local node runs on a
# machine (the lock), so every KUBE-* chain here is this node's.
remove_kube_chains() {
  local cmd table rule chain chains
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$cmd" -t "$table" -S >/dev/null 2>&1 || continue
      while read -r rule; do
        eval "$cmd -t $table ${rule/#-A/-D}" 2>/dev/null || true
      done < <("$cmd" -t "$table" -S | grep -E '^-A [A-Z]+ .*-j KUBE-')
      chains=$("$cmd" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }')
      for chain in $chains; do "$cmd" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do "$cmd" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}

kube_chains_present() {
  local cmd
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null && "$cmd-save" 2>/dev/null | grep -q '^:KUBE-' && return 0
  done
  return 1
}

# Reports (and fails on) anything of this cluster still on the machine.
leftovers() {
  local dir=$1 found=()
  pgrep -f "$dir/" >/dev/null && found+=("processes: $(pgrep -af "$dir/" | cut -c1-120 | paste -sd';')")
  [[ -n $(mounts_under "$dir") ]] && found+=("mounts: $(mounts_under "$dir" | paste -sd' ')")
  ip link show "$bridge" >/dev/null 2>&1 && found+=("link $bridge")
  kube_chains_present && found+=("iptables KUBE-* chains")
  compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null && found+=("cgroups kubepods")
  ((${#found[@]} == 0)) || die "down left behind: ${found[*]}"
}

reset() {
  local dir=$1 path
  down "$dir"
  if [[ -f $dir/hostpath-volumes ]]; then
    while read -r path; do
      [[ $path == /tmp/hostpath_pv/* ]] && rm -rf "$path"
    done <"$dir/hostpath-volumes"
  fi
  rm -rf "$dir"
}

case ${1:-} in
  build) build ;;
  images) images ;;
  up) [[ -n ${2:-} ]] || die "usage: run.sh up DIR"; up "$2" ;;
  install) [[ -n ${2:-} ]] || die "usage: run.sh install DIR"; install_webhook "$2" ;;
  ratis) [[ -n ${2:-} ]] || die "usage: run.sh ratis DIR"; load_ratis "$2" ;;
  kafka) [[ -n ${2:-} ]] || die "usage: run.sh kafka DIR"; load_kafka "$2" ;;
  down) [[ -n ${2:-} ]] || die "usage: run.sh down DIR"; down "$2" ;;
  reset) [[ -n ${2:-} ]] || die "usage: run.sh reset DIR"; reset "$2" ;;
  status) [[ -n ${2:-} ]] || die "usage: run.sh status DIR"; readyz "$(cd "$2" && pwd)" ;;
  *) die "usage: run.sh build | images | up DIR | install DIR | ratis DIR | kafka DIR | down DIR | reset DIR | status DIR" ;;
esac
