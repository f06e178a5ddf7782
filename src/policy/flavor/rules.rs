//! What each flavor adds to the shared rules, asked by flavor: the one place the rules
//! list the flavors (the in-pod side lists them in `member::cluster::for_member`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::super::context::Context;
use super::super::resolve::Resolved;
use super::super::verdict::Verdict;
use super::{etcd, generic, kraft, Flavor};

/// The pieces a flavor adds beside the shared ones (helper volume and init container,
/// preStop hook, TLS volume).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injects {
    /// The init container `raft-injector-join` (`member join`).
    pub join_container: bool,
    /// The native sidecar `raft-injector-reconcile` (`member reconcile`).
    pub reconcile_sidecar: bool,
    /// The target's command behind `member exec --`.
    pub exec_wrapper: bool,
    /// The sidecar mounts the helper volume, where the join container leaves what it decided.
    pub sidecar_reads_helper_volume: bool,
}

pub fn injects(r: &Resolved) -> Injects {
    match r.flavor {
        Flavor::Etcd => etcd::injects(r),
        Flavor::Generic => generic::injects(r),
        Flavor::Kraft => kraft::injects(r),
    }
}

/// The names of the env vars a flavor adds to the shared ones.
pub fn env_names(flavor: Flavor) -> &'static [&'static str] {
    match flavor {
        Flavor::Etcd => etcd::ENV_NAMES,
        Flavor::Kraft => kraft::ENV_NAMES,
        Flavor::Generic => &[],
    }
}

/// Appends the flavor's own env vars, after the shared ones.
pub fn extend_env(r: &Resolved, env: &mut Vec<EnvVar>) {
    match r.flavor {
        Flavor::Etcd => etcd::extend_env(r, env),
        Flavor::Kraft => kraft::extend_env(r, env),
        Flavor::Generic => {}
    }
}

/// Env the join container gets beyond the member's.
pub fn join_env(r: &Resolved, target: &Container) -> Vec<EnvVar> {
    match r.flavor {
        Flavor::Etcd => etcd::join_env(target),
        Flavor::Generic | Flavor::Kraft => Vec::new(),
    }
}

pub fn warnings(sts: &StatefulSet, r: &Resolved, ctx: &Context, verdict: &mut Verdict) {
    match r.flavor {
        Flavor::Etcd => etcd::warnings(sts, r, ctx, verdict),
        Flavor::Generic => generic::warnings(sts, verdict),
        Flavor::Kraft => kraft::warnings(sts, r, ctx, verdict),
    }
}

/// Warnings about the target container; `shown` is its name as messages print it.
pub fn container_warnings(r: &Resolved, container: &Container, shown: &str, verdict: &mut Verdict) {
    match r.flavor {
        Flavor::Etcd => etcd::container_warnings(container, verdict, shown),
        Flavor::Kraft => kraft::container_warnings(container, verdict, shown),
        Flavor::Generic => {}
    }
}

/// What the exec wrapper starts when the target container has neither command nor args:
/// the flavor's image's own entrypoint.
pub fn default_command(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Kraft => kraft::DEFAULT_COMMAND,
        Flavor::Etcd | Flavor::Generic => super::super::names::ETCD_DEFAULT_COMMAND,
    }
}

/// For flavors that change the membership themselves: the generic flavor's URL annotations
/// do nothing there, which admission says (`why`: how the flavor does it).
pub fn warn_url_annotations_ignored(sts: &StatefulSet, why: &str, verdict: &mut Verdict) {
    use super::super::names::{JOIN_URL_ANNOTATION, LEAVE_URL_ANNOTATION, MEMBERS_URL_ANNOTATION};
    let ignored = [
        JOIN_URL_ANNOTATION,
        LEAVE_URL_ANNOTATION,
        MEMBERS_URL_ANNOTATION,
    ]
    .into_iter()
    .find(|key| super::super::resolve::annotation(sts, key).is_some());
    if let Some(key) = ignored {
        verdict
            .warnings
            .push(format!("{why} and ignores {key}; remove the annotation"));
    }
}
