//! The pieces the injector adds to a pod template (SPEC §4), each built from its
//! k8s-openapi type: the helper's volume and init container, the join init container, the
//! reconcile sidecar, the preStop hook, the TLS volume, and the env as it is serialized.
//! `mutate` places them with the patch writer; `validate` recognizes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction,
    LifecycleHandler, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde_json::value::RawValue;

use super::names::*;

/// The preStop command the injector adds.
pub(crate) const LEAVE_COMMAND: [&str; 3] = [HELPER_BINARY, "member", "leave"];

/// The prefix the etcd flavor puts before the container's command.
pub(crate) const EXEC_PREFIX: [&str; 4] = [HELPER_BINARY, "member", "exec", "--"];

/// Whether `command` starts with `prefix`.
pub(crate) fn starts_with(command: &[String], prefix: &[&str]) -> bool {
    command.len() >= prefix.len() && command.iter().zip(prefix).all(|(c, p)| c == p)
}

/// The join init container: the helper, run from the shared volume inside the target's
/// image with its user, env and volumes (etcd: its data directory), adds a scaled-up member
/// to the cluster before the application starts.
pub(crate) fn join_init_container<'a>(
    target: &'a Container,
    env: Option<&'a [Env<'a>]>,
    mounts: &'a [VolumeMount],
) -> WithEnv<'a> {
    // The target's working directory and envFrom too: etcd resolves a relative data
    // directory there, and the helper reads the rest of etcd's settings from its own env.
    WithEnv {
        command: [HELPER_BINARY, "member", "join"],
        env,
        env_from: target.env_from.as_deref(),
        image: target.image.as_deref(),
        image_pull_policy: target.image_pull_policy.as_deref(),
        name: JOIN_INIT_CONTAINER,
        resources: None,
        restart_policy: None,
        security_context: Some(join_security_context(target)),
        volume_mounts: Some(mounts),
        working_dir: target.working_dir.as_deref(),
    }
}

/// The join container's mounts: the target's, the helper volume writable, and the TLS
/// Secret when there is one.
pub(crate) fn join_mounts(target: &Container, tls: bool) -> Vec<VolumeMount> {
    let mut mounts: Vec<VolumeMount> = target
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name != HELPER_VOLUME && m.name != TLS_VOLUME)
        .cloned()
        .collect();
    mounts.push(VolumeMount {
        read_only: None,
        ..helper_mount()
    });
    if tls {
        mounts.push(tls_mount());
    }
    mounts
}

/// The Secret of `raft-injector.io/tls-secret` as a volume.
pub(crate) fn tls_volume(secret: &str) -> Volume {
    Volume {
        name: TLS_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(crate) fn tls_mount() -> VolumeMount {
    VolumeMount {
        name: TLS_VOLUME.to_owned(),
        mount_path: TLS_MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// An env var as it goes into the patch: the user's own, or one the injector sets,
/// serialized once (the same vars go into the target container, the join container, the
/// sidecar and the hash).
#[derive(Clone, Copy)]
pub(crate) enum Env<'a> {
    User(&'a EnvVar),
    Injected(&'a RawValue),
    /// Set on the join container only (where etcd keeps its data).
    Join(&'a EnvVar),
}

impl Serialize for Env<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Env::User(var) | Env::Join(var) => var.serialize(serializer),
            Env::Injected(json) => json.serialize(serializer),
        }
    }
}

/// A container the injector adds with the member's env (the join init container, the
/// reconcile sidecar), written exactly as k8s-openapi writes a `Container` with these
/// fields (same names, same order) but with the env from already serialized vars. Added
/// without `env`, the env is a `copy` of the target container's (see [`Ops::copy`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WithEnv<'a> {
    command: [&'a str; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<&'a [Env<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env_from: Option<&'a [EnvFromSource]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<ResourceRequirements>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_context: Option<SecurityContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_mounts: Option<&'a [VolumeMount]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
}

/// The target's command behind `member exec --`, or `None` when it is wrapped already.
pub(crate) fn wrapped_command(target: &Container, default: &str) -> Option<Vec<String>> {
    let command = target.command.as_deref().unwrap_or_default();
    if starts_with(command, &EXEC_PREFIX) {
        return None;
    }
    // With neither command nor args the image's own entrypoint runs (`default`: where the
    // flavor's image starts it). With args only, the first arg is the program.
    let rest = match (command.is_empty(), target.args.is_some()) {
        (true, false) => &[default][..],
        _ => &[][..],
    };
    let prefix = EXEC_PREFIX.iter().chain(rest).map(|s| (*s).to_owned());
    Some(prefix.chain(command.iter().cloned()).collect())
}

/// Whether a preStop hook is the one the injector adds.
pub fn is_injected_pre_stop(hook: &LifecycleHandler) -> bool {
    hook.exec
        .as_ref()
        .and_then(|e| e.command.as_ref())
        .is_some_and(|c| c.len() == LEAVE_COMMAND.len() && starts_with(c, &LEAVE_COMMAND))
}

pub(crate) fn helper_volume() -> Volume {
    Volume {
        name: HELPER_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

pub(crate) fn helper_mount() -> VolumeMount {
    VolumeMount {
        name: HELPER_VOLUME.to_owned(),
        mount_path: HELPER_MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn pre_stop_hook() -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(LEAVE_COMMAND.map(str::to_owned).to_vec()),
        }),
        ..LifecycleHandler::default()
    }
}

/// The etcd flavor's native sidecar: `member reconcile` from the helper image, next to
/// every member, with the member's env so it finds its own etcd and StatefulSet.
pub(crate) fn reconcile_sidecar<'a>(
    image: &'a str,
    env: Option<&'a [Env<'a>]>,
    mounts: Option<&'a [VolumeMount]>,
) -> WithEnv<'a> {
    WithEnv {
        command: [HELPER_IMAGE_BINARY, "member", "reconcile"],
        env,
        env_from: None,
        image: Some(image),
        image_pull_policy: Some("IfNotPresent"),
        name: RECONCILE_SIDECAR,
        resources: Some(resources("5m")),
        restart_policy: Some("Always"),
        security_context: Some(restricted_security_context()),
        volume_mounts: mounts,
        working_dir: None,
    }
}

/// The helper's requests: a little CPU, 16Mi, at most 64Mi.
pub(crate) fn resources(cpu: &str) -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[("cpu", cpu), ("memory", "16Mi")]),
        limits: quantities(&[("memory", "64Mi")]),
        ..ResourceRequirements::default()
    }
}

/// The helper's own user (the image's USER), set explicitly so that a pod-level
/// `runAsUser: 0` (an app that must write a root-owned volume) does not make kubelet refuse
/// the helper's containers for breaking `runAsNonRoot`.
pub(crate) fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

/// The container runtime's default seccomp profile (Pod Security "restricted" asks for it).
fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

/// The join container's security context: the target's (it writes the target's volumes as
/// the target's user), without what the helper never needs: `privileged`, added
/// capabilities and privilege escalation; and with the runtime's seccomp profile unless the
/// target names a profile of its own.
fn join_security_context(target: &Container) -> SecurityContext {
    let mut context = target.security_context.clone().unwrap_or_default();
    context.privileged = None;
    context.allow_privilege_escalation = Some(false);
    if let Some(capabilities) = &mut context.capabilities {
        capabilities.add = None;
    }
    let own_profile = context
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Localhost" || p.type_ == "RuntimeDefault");
    if !own_profile {
        context.seccomp_profile = Some(runtime_default());
    }
    context
}

/// The init container that copies the helper binary into the shared volume.
pub fn helper_init_container(image: &str) -> Container {
    Container {
        name: HELPER_INIT_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(
            [HELPER_IMAGE_BINARY, "install", "--to", HELPER_MOUNT_PATH]
                .map(str::to_owned)
                .to_vec(),
        ),
        volume_mounts: Some(vec![VolumeMount {
            name: HELPER_VOLUME.to_owned(),
            mount_path: HELPER_MOUNT_PATH.to_owned(),
            ..VolumeMount::default()
        }]),
        resources: Some(resources("10m")),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    }
}
