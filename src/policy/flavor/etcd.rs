//! The etcd flavor's rules: the `ETCD_*` env that configures the plain `etcd` binary from the
//! StatefulSet, the pieces it adds (the join container with where etcd keeps its data, the
//! reconcile sidecar, etcd started through `member exec`), and what admission warns about.
//! The in-pod side (etcd's JSON gateway, join, repair) is `member::etcd`.

use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::super::context::Context;
use super::super::env::literal;
use super::super::names::{
    DATA_DIR_ENV, DATA_FROM_ENV, DATA_FROM_FLAGS_THEN_ENV, ETCD_NAME_DEFAULT, ETCD_NAME_FLAG_ENV,
    TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TLS_SECRET_ANNOTATION, WAL_DIR_ENV,
};
use super::super::resolve::Resolved;
use super::super::verdict::Verdict;
use super::etcd_data;
use super::rules::Injects;
use k8s_openapi::api::apps::v1::StatefulSet;

/// Every env var this flavor may set.
pub const ENV_NAMES: &[&str] = &[
    "ETCD_NAME",
    "ETCD_INITIAL_CLUSTER",
    "ETCD_INITIAL_CLUSTER_TOKEN",
    "ETCD_INITIAL_CLUSTER_STATE",
    "ETCD_INITIAL_ADVERTISE_PEER_URLS",
    "ETCD_LISTEN_PEER_URLS",
    "ETCD_LISTEN_CLIENT_URLS",
    "ETCD_ADVERTISE_CLIENT_URLS",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "ETCD_TRUSTED_CA_FILE",
    "ETCD_CLIENT_CERT_AUTH",
    "ETCD_PEER_CERT_FILE",
    "ETCD_PEER_KEY_FILE",
    "ETCD_PEER_TRUSTED_CA_FILE",
    "ETCD_PEER_CLIENT_CERT_AUTH",
    "ETCDCTL_ENDPOINTS",
    "ETCDCTL_CACERT",
    "ETCDCTL_CERT",
    "ETCDCTL_KEY",
];

/// etcd joins by itself, repairs through its gateway, and starts through `member exec`
/// (which applies what the join decided).
pub fn injects(_: &Resolved) -> Injects {
    Injects {
        join_container: true,
        reconcile_sidecar: true,
        exec_wrapper: true,
        sidecar_reads_helper_volume: false,
    }
}

/// The `ETCD_*` vars after the shared ones (they refer to `$(RAFT_ID)`).
pub fn extend_env(r: &Resolved, env: &mut Vec<EnvVar>) {
    let (peer, client) = (r.peer_port, r.client_port);
    let scheme = r.etcd_scheme();
    env.extend([
        literal("ETCD_NAME", ETCD_NAME_DEFAULT),
        literal("ETCD_INITIAL_CLUSTER", r.etcd_initial_cluster()),
        literal(
            "ETCD_INITIAL_CLUSTER_TOKEN",
            format!("{}-{}", r.namespace, r.name),
        ),
        literal("ETCD_INITIAL_CLUSTER_STATE", "new"),
        literal(
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            format!("{scheme}://$(RAFT_ID):{peer}"),
        ),
        literal(
            "ETCD_LISTEN_PEER_URLS",
            format!("{scheme}://0.0.0.0:{peer}"),
        ),
        literal(
            "ETCD_LISTEN_CLIENT_URLS",
            format!("{scheme}://0.0.0.0:{client}"),
        ),
        literal(
            "ETCD_ADVERTISE_CLIENT_URLS",
            format!("{scheme}://$(RAFT_ID):{client}"),
        ),
    ]);
    if r.tls_secret.is_some() {
        // Client certificates on both ports: without them any pod could read every key
        // and change the membership. etcdctl in the container finds the cluster as is.
        env.extend([
            literal("ETCD_CERT_FILE", TLS_CERT_FILE),
            literal("ETCD_KEY_FILE", TLS_KEY_FILE),
            literal("ETCD_TRUSTED_CA_FILE", TLS_CA_FILE),
            literal("ETCD_CLIENT_CERT_AUTH", "true"),
            literal("ETCD_PEER_CERT_FILE", TLS_CERT_FILE),
            literal("ETCD_PEER_KEY_FILE", TLS_KEY_FILE),
            literal("ETCD_PEER_TRUSTED_CA_FILE", TLS_CA_FILE),
            literal("ETCD_PEER_CLIENT_CERT_AUTH", "true"),
            literal("ETCDCTL_ENDPOINTS", format!("https://$(RAFT_ID):{client}")),
            literal("ETCDCTL_CACERT", TLS_CA_FILE),
            literal("ETCDCTL_CERT", TLS_CERT_FILE),
            literal("ETCDCTL_KEY", TLS_KEY_FILE),
        ]);
    }
}

/// The join container's `RAFT_DATA_FROM` and the flags of etcd's command line that say
/// where its data is (`RAFT_DATA_DIR`, `RAFT_WAL_DIR`, `RAFT_ETCD_NAME`). Without them (etcd
/// behind a shell or a config file) the helper never takes the member for one without
/// data (see `member::etcd::join`).
pub fn join_env(target: &Container) -> Vec<EnvVar> {
    let Ok(flags) = etcd_data::locate(target) else {
        return Vec::new();
    };
    let mut env = vec![literal(DATA_FROM_ENV, DATA_FROM_FLAGS_THEN_ENV)];
    env.extend(flags.data_dir.map(|dir| literal(DATA_DIR_ENV, dir)));
    env.extend(flags.wal_dir.map(|dir| literal(WAL_DIR_ENV, dir)));
    env.extend(flags.name.map(|name| literal(ETCD_NAME_FLAG_ENV, name)));
    env
}

/// What admission warns about for etcd.
pub fn warnings(sts: &StatefulSet, r: &Resolved, ctx: &Context, verdict: &mut Verdict) {
    // Said once, when the StatefulSet is created (not on every later apply).
    if r.tls_secret.is_none() && ctx.old.is_none() {
        verdict.warnings.push(format!(
            "etcd runs without TLS: its client and peer ports are plaintext and accept any client, so any pod \
             that reaches them can read every key and change the membership — set annotation \
             {TLS_SECRET_ANNOTATION} to a Secret with ca.crt, tls.crt and tls.key, or limit who reaches the \
             ports with a NetworkPolicy (README: TLS between members)"
        ));
    }
    super::rules::warn_url_annotations_ignored(
        sts,
        "the etcd flavor changes the membership through etcd itself",
        verdict,
    );
}

/// What admission warns about the target container: a data directory the helper cannot
/// locate for certain.
pub fn container_warnings(container: &Container, verdict: &mut Verdict, shown: &str) {
    if let Err(why) = etcd_data::locate(container) {
        verdict.warnings.push(format!(
            "cannot tell where etcd in container {shown} keeps its data: {why}; a member that comes back \
             without data is then never replaced automatically (it waits, with an Event, for an operator) — \
             run etcd directly and give --data-dir as a flag or ETCD_DATA_DIR"
        ));
    }
}
