//! Every label, annotation and env var name that is part of the public contract (SPEC §1, §4).

/// Namespace label that opts a namespace in.
pub const INJECTION_LABEL: &str = "raft-injector.io/injection";
/// StatefulSet label that opts a workload in.
pub const RAFT_LABEL: &str = "raft-injector.io/raft";

pub const CONTAINER_ANNOTATION: &str = "raft-injector.io/container";
pub const PORT_ANNOTATION: &str = "raft-injector.io/port";
pub const CLIENT_PORT_ANNOTATION: &str = "raft-injector.io/client-port";
pub const CLUSTER_DOMAIN_ANNOTATION: &str = "raft-injector.io/cluster-domain";
pub const GROUP_ID_ANNOTATION: &str = "raft-injector.io/group-id";
pub const FLAVOR_ANNOTATION: &str = "raft-injector.io/flavor";
pub const LEAVE_URL_ANNOTATION: &str = "raft-injector.io/leave-url";
pub const JOIN_URL_ANNOTATION: &str = "raft-injector.io/join-url";
/// Generic flavor: where the application answers its member list (README: the members URL).
pub const MEMBERS_URL_ANNOTATION: &str = "raft-injector.io/members-url";
/// Flavor kraft: added to a member's ordinal to make its Kafka `node.id` (default 0).
pub const NODE_ID_OFFSET_ANNOTATION: &str = "raft-injector.io/node-id-offset";
/// The ConfigMap `<statefulset><suffix>` that records that a Raft cluster formed
/// (`member::formation`).
pub const FORMATION_RECORD_SUFFIX: &str = "-raft-formed";
pub const STATUS_ANNOTATION: &str = "raft-injector.io/status";

/// Set by the StatefulSet controller on every pod (beta and on by default since 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Name of the emptyDir volume holding the helper binary, and where it is mounted.
pub const HELPER_VOLUME: &str = "raft-injector";
pub const HELPER_MOUNT_PATH: &str = "/raft-injector";
/// Name of the init container that copies the helper binary into the volume.
pub const HELPER_INIT_CONTAINER: &str = "raft-injector";
/// Name of the init container that adds a scaled-up member to the cluster (etcd flavor,
/// and the generic flavor with a `join-url`).
pub const JOIN_INIT_CONTAINER: &str = "raft-injector-join";
/// Name of the etcd flavor's native sidecar (an init container with `restartPolicy:
/// Always`) that repairs a missed leave.
pub const RECONCILE_SIDECAR: &str = "raft-injector-reconcile";
/// What the etcd flavor runs when the container names no command (the etcd images' own).
pub const ETCD_DEFAULT_COMMAND: &str = "/usr/local/bin/etcd";
/// Path of the helper binary inside the helper image.
pub const HELPER_IMAGE_BINARY: &str = "/usr/local/bin/raft-injector";
/// Path of the helper binary inside the target container.
pub const HELPER_BINARY: &str = "/raft-injector/raft-injector";

pub const ETCD_DEFAULT_PEER_PORT: u16 = 2380;
pub const ETCD_DEFAULT_CLIENT_PORT: u16 = 2379;

/// Whether a StatefulSet carries the workload opt-in label.
pub fn is_raft_workload(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|labels| labels.get(RAFT_LABEL))
        .is_some_and(|value| value == "true")
}

/// The `ETCD_NAME` the etcd flavor sets when the user does not.
pub const ETCD_NAME_DEFAULT: &str = "$(POD_NAME)";

/// On the join container: that admission read etcd's command line (value
/// [`DATA_FROM_FLAGS_THEN_ENV`]); the flags below are the ones it gives, and what they do
/// not give etcd reads from its environment, which the join container shares.
pub const DATA_FROM_ENV: &str = "RAFT_DATA_FROM";
pub const DATA_FROM_FLAGS_THEN_ENV: &str = "flags-then-env";

/// On the join container: etcd's `--data-dir` flag, when its command line has one.
pub const DATA_DIR_ENV: &str = "RAFT_DATA_DIR";

/// On the join container: etcd's `--wal-dir` flag, when its command line has one.
pub const WAL_DIR_ENV: &str = "RAFT_WAL_DIR";

/// On the join container: etcd's `--name` flag (its data directory's default is
/// `<name>.etcd`), when its command line has one.
pub const ETCD_NAME_FLAG_ENV: &str = "RAFT_ETCD_NAME";

/// Names a Secret (`ca.crt`, `tls.crt`, `tls.key`, as cert-manager writes it) for TLS between
/// the members and for the helper's calls (SPEC §4).
pub const TLS_SECRET_ANNOTATION: &str = "raft-injector.io/tls-secret";
/// The Secret's volume, and where it is mounted in every container that talks to members.
pub const TLS_VOLUME: &str = "raft-injector-tls";
pub const TLS_MOUNT_PATH: &str = "/etc/raft-injector/tls";
pub const TLS_CA_FILE: &str = "/etc/raft-injector/tls/ca.crt";
pub const TLS_CERT_FILE: &str = "/etc/raft-injector/tls/tls.crt";
pub const TLS_KEY_FILE: &str = "/etc/raft-injector/tls/tls.key";
