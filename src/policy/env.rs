//! The env vars injected into the target container (SPEC §4).

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

use super::flavor::{rules, Flavor};
use super::names::{POD_INDEX_LABEL, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use super::resolve::Resolved;

pub(crate) fn literal(name: &str, value: impl Into<String>) -> EnvVar {
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

/// The names of the env vars every flavor gets.
pub const SHARED_NAMES: &[&str] = &[
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
];

/// Whether the injector may set a var of this name, for any flavor; a user-set var with
/// one of these names earns a warning.
pub fn is_injected_name(name: &str) -> bool {
    SHARED_NAMES.contains(&name)
        || Flavor::ALL
            .iter()
            .any(|f| rules::env_names(*f).contains(&name))
}

/// The env vars the injector wants on the target container, in dependency order:
/// a `$(VAR)` reference only expands when VAR comes earlier in the list.
pub fn desired_env(r: &Resolved) -> Vec<EnvVar> {
    let domain = r.service_domain();
    // Sized for every var at once: an EnvVar is ~280 bytes, and growing the list from the
    // generic vars to the etcd ones would allocate it twice over.
    let mut env = Vec::with_capacity(SHARED_NAMES.len() + rules::env_names(r.flavor).len());
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
    rules::extend_env(r, &mut env);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_injector_sets_is_listed_as_injected() {
        for flavor in Flavor::ALL {
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
                node_id_offset: 0,
            };
            let env = desired_env(&r);
            assert!(env.len() >= 12, "{flavor}: {} vars", env.len());
            for var in env {
                assert!(
                    is_injected_name(&var.name),
                    "{flavor}: {} is set but not among the injected names (validate looks only for those)",
                    var.name
                );
            }
        }
    }
}
