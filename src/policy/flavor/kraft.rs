//! The kraft flavor's rules: a StatefulSet of Kafka KRaft controllers on the official
//! `apache/kafka` image, configured through the `KAFKA_*` env vars that image turns into
//! `server.properties`, with a dynamic quorum (KIP-853: no `controller.quorum.voters`; the
//! members find the quorum through `controller.quorum.bootstrap.servers`).
//!
//! What each member needs that the pod template cannot say (its `node.id`, the one-time
//! format of its metadata directory) is done in the pod: the join container formats the
//! volume once with Kafka's own `kafka-storage.sh` and writes the node id for `member exec`;
//! the reconcile sidecar adds a caught-up member to the voters and repairs missed leaves.
//! The in-pod side is `member::kraft`.
//!
//! Ids this flavor derives, so that they are the same in every pod and known beforehand:
//! - the cluster id: the UUIDv5 (namespace: the group id namespace, the UUIDv5 of
//!   `raft-injector.io` in the DNS namespace) of `kraft/cluster-id/<group id>`, written as
//!   Kafka writes ids (URL-safe base64 of the 16 bytes, no padding);
//! - the directory id of a bootstrap member: the same of `kraft/directory-id/<group id>/<node id>`.
//!
//! Either is hashed again (with `/1`, `/2`, ... appended) while its text starts with `-`, which
//! Kafka's tools would read as an option, as Kafka's own `Uuid.randomUuid` avoids it.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use uuid::Uuid;

use super::super::context::Context;
use super::super::env::literal;
use super::super::names::TLS_SECRET_ANNOTATION;
use super::super::resolve::{Resolved, GROUP_ID_NAMESPACE};
use super::super::verdict::Verdict;
use super::rules::Injects;

/// The controller listener's port when no annotation names one (Kafka's documented default).
pub const DEFAULT_CONTROLLER_PORT: u16 = 9093;

/// The name of the controller listener the flavor configures.
pub const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// Where the metadata log lives when the container does not say (`KAFKA_LOG_DIRS`).
pub const DEFAULT_LOG_DIR: &str = "/var/lib/kafka/data";

/// What the official image runs when the container has neither command nor args.
pub const DEFAULT_COMMAND: &str = "/etc/kafka/docker/run";

/// Env var telling the helper the node id offset (annotation `raft-injector.io/node-id-offset`).
pub const NODE_ID_OFFSET_ENV: &str = "RAFT_KRAFT_NODE_ID_OFFSET";

/// Every env var this flavor may set.
pub const ENV_NAMES: &[&str] = &[
    "CLUSTER_ID",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_LISTENERS",
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS",
    "KAFKA_LOG_DIRS",
    NODE_ID_OFFSET_ENV,
];

/// A Kafka id (`org.apache.kafka.common.Uuid`) derived from `name`, as Kafka prints one.
fn kafka_uuid(name: &str) -> String {
    use base64_simd::URL_SAFE_NO_PAD;
    let mut attempt = 0u32;
    loop {
        let input = match attempt {
            0 => name.to_owned(),
            n => format!("{name}/{n}"),
        };
        let uuid = Uuid::new_v5(&GROUP_ID_NAMESPACE, input.as_bytes());
        let text = URL_SAFE_NO_PAD.encode_to_string(uuid.as_bytes());
        if !text.starts_with('-') {
            return text;
        }
        attempt += 1;
    }
}

/// The cluster id of the KRaft cluster of group `group_id` (brokers must be given the same).
pub fn cluster_id(group_id: &str) -> String {
    kafka_uuid(&format!("kraft/cluster-id/{group_id}"))
}

/// The directory id a bootstrap member with `node_id` is formatted with.
pub fn directory_id(group_id: &str, node_id: i32) -> String {
    kafka_uuid(&format!("kraft/directory-id/{group_id}/{node_id}"))
}

/// The join container formats the volume (it runs in the Kafka image), the sidecar adds
/// members to the voters and repairs, and `member exec` starts Kafka with its node id.
pub fn injects(_: &Resolved) -> Injects {
    Injects {
        join_container: true,
        reconcile_sidecar: true,
        exec_wrapper: true,
        sidecar_reads_helper_volume: true,
    }
}

/// The `KAFKA_*` vars after the shared ones (they refer to `$(RAFT_ID)`).
pub fn extend_env(r: &Resolved, env: &mut Vec<EnvVar>) {
    let port = r.peer_port;
    let domain = r.service_domain();
    let bootstrap: Vec<String> = (r.ordinal_start..r.ordinal_start + r.bootstrap_size.max(0))
        .map(|i| format!("{}-{i}.{domain}:{port}", r.name))
        .collect();
    env.extend([
        literal("CLUSTER_ID", cluster_id(&r.group_id)),
        literal("KAFKA_PROCESS_ROLES", "controller"),
        literal("KAFKA_CONTROLLER_LISTENER_NAMES", CONTROLLER_LISTENER),
        literal(
            "KAFKA_LISTENERS",
            format!("{CONTROLLER_LISTENER}://0.0.0.0:{port}"),
        ),
        literal(
            "KAFKA_ADVERTISED_LISTENERS",
            format!("{CONTROLLER_LISTENER}://$(RAFT_ID):{port}"),
        ),
        literal(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            format!("{CONTROLLER_LISTENER}:PLAINTEXT"),
        ),
        literal(
            "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS",
            bootstrap.join(","),
        ),
        literal("KAFKA_LOG_DIRS", DEFAULT_LOG_DIR),
        literal(NODE_ID_OFFSET_ENV, r.node_id_offset.to_string()),
    ]);
}

/// What admission warns about for KRaft controllers.
pub fn warnings(sts: &StatefulSet, r: &Resolved, ctx: &Context, verdict: &mut Verdict) {
    // Said once, when the StatefulSet is created (not on every later apply), as for etcd.
    if ctx.old.is_none() {
        let port = r.peer_port;
        verdict.warnings.push(match r.tls_secret {
            Some(_) => format!(
                "the kraft flavor does not configure TLS on the controller listener yet: {TLS_SECRET_ANNOTATION} \
                 mounts the Secret, but the listener and the helper's calls stay PLAINTEXT — limit who reaches port \
                 {port} with a NetworkPolicy"
            ),
            None => format!(
                "the controller listener (port {port}) is PLAINTEXT and accepts any client, so any pod that reaches \
                 it can read the cluster metadata and add or remove voters (AddRaftVoter, RemoveRaftVoter) — limit \
                 who reaches port {port} with a NetworkPolicy (README: Kafka KRaft)"
            ),
        });
    }
    super::rules::warn_url_annotations_ignored(
        sts,
        "the kraft flavor changes the voters through Kafka itself",
        verdict,
    );
    let parallel = sts
        .spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel");
    if !parallel && ctx.old.is_none() {
        verdict.warnings.push(
            "podManagementPolicy is not Parallel: the controllers of a new cluster start one at a time, and each \
             waits for the ones before it (a quorum needs a majority of them) — set podManagementPolicy: Parallel"
                .to_owned(),
        );
    }
}

fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .and_then(|v| v.value.as_deref())
}

/// The metadata directory Kafka in `container` will use, as its env says.
pub fn metadata_dir(container: &Container) -> String {
    env_value(container, "KAFKA_METADATA_LOG_DIR")
        .or_else(|| env_value(container, "KAFKA_LOG_DIRS").and_then(|d| d.split(',').next()))
        .unwrap_or(DEFAULT_LOG_DIR)
        .trim()
        .to_owned()
}

/// What admission warns about the target container: settings that defeat the dynamic
/// quorum, and a metadata log that no volume keeps.
pub fn container_warnings(container: &Container, verdict: &mut Verdict, shown: &str) {
    let set = |name| env_value(container, name);
    if set("KAFKA_CONTROLLER_QUORUM_VOTERS").is_some() {
        verdict.warnings.push(format!(
            "container {shown} sets KAFKA_CONTROLLER_QUORUM_VOTERS: that makes a static quorum, which no member can \
             join or leave — remove it (the kraft flavor sets KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS)"
        ));
    }
    if set("KAFKA_PROCESS_ROLES").is_some_and(|r| r.contains("broker")) {
        verdict.warnings.push(format!(
            "container {shown} sets KAFKA_PROCESS_ROLES with broker: the kraft flavor is for controllers; run \
             brokers as a StatefulSet of their own, not labelled as a Raft workload"
        ));
    }
    if set("KAFKA_CONTROLLER_QUORUM_AUTO_JOIN_ENABLE").is_some_and(|v| v.trim() == "true") {
        verdict.warnings.push(format!(
            "container {shown} sets KAFKA_CONTROLLER_QUORUM_AUTO_JOIN_ENABLE=true: a controller removed on \
             scale-down would add itself back while it still runs — remove it (the sidecar adds members)"
        ));
    }
    if set("KAFKA_NODE_ID").is_some() {
        verdict.warnings.push(format!(
            "container {shown} sets KAFKA_NODE_ID, which the kraft flavor sets per member (ordinal plus \
             annotation raft-injector.io/node-id-offset); yours is not used — remove it"
        ));
    }
    let dir = metadata_dir(container);
    let on_volume = container.volume_mounts.iter().flatten().any(|m| {
        let mount = m.mount_path.trim_end_matches('/');
        dir == mount || dir.starts_with(&format!("{mount}/"))
    });
    if !on_volume {
        verdict.warnings.push(format!(
            "container {shown} keeps the KRaft metadata log at {dir}, which no volumeMount holds: it is lost at \
             every restart, and the member then rejoins as a new voter — mount a volume (a volumeClaimTemplate) \
             there, or set KAFKA_LOG_DIRS to a directory on one"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_kafka_ids_and_stable() {
        let id = cluster_id("7d3c1a52-0000-4000-8000-000000000000");
        assert_eq!(id.len(), 22, "{id}");
        assert!(!id.starts_with('-'));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(id, cluster_id("7d3c1a52-0000-4000-8000-000000000000"));
        assert_ne!(id, cluster_id("another group"));
        assert_ne!(directory_id("g", 0), directory_id("g", 1));
        // Never a leading '-', whatever the input: many inputs would hit one otherwise.
        for i in 0..2000 {
            assert!(!directory_id("g", i).starts_with('-'));
        }
    }
}
