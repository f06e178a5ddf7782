//! The env vars injected into the target container (SPEC §4).

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

use super::flavor::Flavor;
use super::names::{POD_INDEX_LABEL, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use super::resolve::Resolved;

fn literal(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Every name the injector may set, for any flavor; a user-set var with one of these names
/// earns a warning.
pub const INJECTED_NAMES: &[&str] = &[
    "POD_NAME",
    "POD_NAMESPACE",
    "RAFT_ORDINAL",
    "RAFT_SERVICE",
    "RAFT_PORT",
    "RAFT_CLUSTER_DOMAIN",
    "RAFT_ID",
    "RAFT_ADDRESS",
    "RAFT_PEER_PATTERN",
    "RAFT_PEERS",
    "RAFT_CLUSTER_SIZE",
    "RAFT_GROUP_ID",
    "RAFT_TLS_CA_FILE",
    "RAFT_TLS_CERT_FILE",
    "RAFT_TLS_KEY_FILE",
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

/// The env vars the injector wants on the target container, in dependency order:
/// a `$(VAR)` reference only expands when VAR comes earlier in the list.
pub fn desired_env(r: &Resolved) -> Vec<EnvVar> {
    let domain = r.service_domain();
    // Sized for every var at once: an EnvVar is ~280 bytes, and growing the list from the
    // generic vars to the etcd ones would allocate it twice over.
    let mut env = Vec::with_capacity(INJECTED_NAMES.len());
    env.extend([
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field(
            "RAFT_ORDINAL",
            &format!("metadata.labels['{POD_INDEX_LABEL}']"),
        ),
        literal("RAFT_SERVICE", &r.service),
        literal("RAFT_PORT", r.peer_port.to_string()),
        literal("RAFT_CLUSTER_DOMAIN", &r.cluster_domain),
        literal("RAFT_ID", format!("$(POD_NAME).{domain}")),
        literal("RAFT_ADDRESS", format!("$(RAFT_ID):{}", r.peer_port)),
        literal("RAFT_PEER_PATTERN", r.peer_pattern()),
        literal("RAFT_PEERS", r.bootstrap_peers()),
        literal("RAFT_CLUSTER_SIZE", r.bootstrap_size.to_string()),
        literal("RAFT_GROUP_ID", &r.group_id),
    ]);
    let tls = r.tls_secret.is_some();
    if tls {
        env.extend([
            literal("RAFT_TLS_CA_FILE", TLS_CA_FILE),
            literal("RAFT_TLS_CERT_FILE", TLS_CERT_FILE),
            literal("RAFT_TLS_KEY_FILE", TLS_KEY_FILE),
        ]);
    }
    if r.flavor == Flavor::Etcd {
        let (peer, client) = (r.peer_port, r.client_port);
        let scheme = r.etcd_scheme();
        env.extend([
            literal("ETCD_NAME", super::names::ETCD_NAME_DEFAULT),
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
        if tls {
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
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_injector_sets_is_listed_as_injected() {
        for flavor in [Flavor::Etcd, Flavor::Generic] {
            let r = Resolved {
                name: "etcd".into(),
                namespace: "demo".into(),
                service: "etcd".into(),
                container: 0,
                peer_port: 2380,
                client_port: 2379,
                flavor,
                cluster_domain: "cluster.local".into(),
                group_id: "g".into(),
                bootstrap_size: 3,
                ordinal_start: 0,
                joins_by_url: false,
                reads_members: false,
                tls_secret: Some("etcd-tls".into()),
            };
            let env = desired_env(&r);
            assert!(env.len() >= 12, "{flavor}: {} vars", env.len());
            for var in env {
                assert!(
                    INJECTED_NAMES.contains(&var.name.as_str()),
                    "{flavor}: {} is set but not in INJECTED_NAMES (validate looks only for those)",
                    var.name
                );
            }
        }
    }
}
