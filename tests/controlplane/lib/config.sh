# Sourced by run.sh (not run): the node's configuration files: PKI, kubeconfigs, containerd's and
# kubelet's configuration.
# It uses run.sh's settings (here, root, cache, the images' names) and its log/die.

# --- configuration ----------------------------------------------------------------------

pki() {
  local dir=$1/pki
  [[ -f $dir/kube-proxy.crt ]] && return
  rm -rf "$dir"
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
      "subjectAltName=IP:127.0.0.1,IP:$node_ip,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
    issue admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
    # The controllers and the scheduler run as system:masters; this keeps the harness free
    # of per-controller RBAC bootstrapping. The node and kube-proxy use their real identities.
    issue controller-manager "/O=system:masters/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
    issue scheduler "/O=system:masters/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
    issue node "/O=system:nodes/CN=system:node:$node_name" "extendedKeyUsage=clientAuth"
    issue kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
    issue kubelet "/CN=$node_name" "subjectAltName=IP:$node_ip,DNS:$node_name
extendedKeyUsage=serverAuth"
    # How the API server authenticates to kubelet for logs, exec and port-forward.
    issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
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
    server: https://$node_ip:$APISERVER_PORT
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

containerd_config() { # dir
  local dir=$1 c=$1/containerd
  mkdir -p "$c" "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$c/config.toml" <<EOF
# Written by tests/controlplane/run.sh: a containerd of this cluster's own, beside any other.
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # This VM lacks CAP_SYS_RESOURCE: without this, runc fails every sandbox.
  restrict_oom_score_adj = true
  # Pod network namespaces live in DIR, so down can always find and remove them.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
  cat >"$dir/cni/net.d/10-raft-injector.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "raft-injector",
  "plugins": [{
    "type": "bridge",
    "bridge": "$bridge",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": "$dir/cni/ipam"
    }
  }]
}
EOF
}

kubelet_config() { # dir
  local dir=$1
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  mkdir -p "$dir/kubelet" "$dir/pod-logs"
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$dns_ip]
# Pods never inherit the machine's resolvers: cluster names only.
resolvConf: ""
podLogsDir: $dir/pod-logs
tlsCertFile: $dir/pki/kubelet.crt
tlsPrivateKeyFile: $dir/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
# Images built here cannot be pulled again: never garbage-collect them, and never evict on
# the disk usage of a shared machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
# Quicker feedback for tests than the production defaults.
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
EOF
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $pod_cidr
hostnameOverride: $node_name
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

