//! The injection patch (SPEC §4): env vars, helper volume and init container, preStop hook
//! and the status annotation, as RFC 6902 operations on the object the API server sent.
//!
//! The patch only ever adds what is missing. Pieces already injected are left exactly as
//! they are, so a later change of `replicas`, an injector upgrade or a re-apply never
//! changes the pod template (which would roll every member of the cluster). The one
//! exception is a StatefulSet whose recorded bootstrap size is still 0: no member has run
//! with those values, so they are brought up to date.

use jsonptr::PointerBuf;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, ExecAction, Lifecycle, LifecycleHandler, Volume,
    VolumeMount,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::context::Context;
use super::env::desired_env;
use super::names::*;
use super::resolve::{containers, resolve, Resolved};
use super::status::Status;

pub use json_patch::Patch;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};

#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    #[error("cannot inject: {}", .0.join("; "))]
    Unresolved(Vec<String>),
}

/// The preStop command the injector adds.
pub fn leave_command() -> Vec<String> {
    vec![
        HELPER_BINARY.to_owned(),
        "member".to_owned(),
        "leave".to_owned(),
    ]
}

/// The prefix the etcd flavor puts before the container's command.
pub fn exec_prefix() -> Vec<String> {
    [HELPER_BINARY, "member", "exec", "--"]
        .map(str::to_owned)
        .to_vec()
}

/// The join init container: the helper, run from the shared volume inside the target's
/// image with its user, env and volumes (etcd: its data directory), adds a scaled-up member
/// to the cluster before the application starts.
fn join_init_container(target: &Container, env: Vec<EnvVar>) -> Container {
    let mut mounts: Vec<VolumeMount> = target
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name != HELPER_VOLUME)
        .cloned()
        .collect();
    mounts.push(VolumeMount {
        read_only: None,
        ..helper_mount()
    });
    Container {
        name: JOIN_INIT_CONTAINER.to_owned(),
        image: target.image.clone(),
        image_pull_policy: target.image_pull_policy.clone(),
        command: Some(
            [HELPER_BINARY, "member", "join"]
                .map(str::to_owned)
                .to_vec(),
        ),
        env: Some(env),
        volume_mounts: Some(mounts),
        security_context: target.security_context.clone(),
        ..Container::default()
    }
}

/// The target's command behind `member exec --`, or `None` when it is wrapped already.
fn wrapped_command(target: &Container) -> Option<Vec<String>> {
    let prefix = exec_prefix();
    let command = target.command.clone().unwrap_or_default();
    if command.starts_with(&prefix) {
        return None;
    }
    // With neither command nor args the image's own entrypoint runs: etcd's images
    // start etcd from this path. With args only, the first arg is the program.
    let rest = match (command.is_empty(), target.args.is_some()) {
        (true, false) => vec![ETCD_DEFAULT_COMMAND.to_owned()],
        _ => command,
    };
    Some(prefix.into_iter().chain(rest).collect())
}

/// Whether a preStop hook is the one the injector adds.
pub fn is_injected_pre_stop(hook: &LifecycleHandler) -> bool {
    hook.exec
        .as_ref()
        .and_then(|e| e.command.as_ref())
        .is_some_and(|c| *c == leave_command())
}

fn helper_volume() -> Volume {
    Volume {
        name: HELPER_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn helper_mount() -> VolumeMount {
    VolumeMount {
        name: HELPER_VOLUME.to_owned(),
        mount_path: HELPER_MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn pre_stop_hook() -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(leave_command()),
        }),
        ..LifecycleHandler::default()
    }
}

/// The etcd flavor's native sidecar: `member reconcile` from the helper image, next to
/// every member, with the member's env so it finds its own etcd and StatefulSet.
fn reconcile_sidecar(image: &str, env: Vec<EnvVar>) -> Container {
    let json = serde_json::json!({
        "name": RECONCILE_SIDECAR,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": [HELPER_IMAGE_BINARY, "member", "reconcile"],
        "env": env,
        "resources": {
            "requests": {"cpu": "5m", "memory": "16Mi"},
            "limits": {"memory": "64Mi"}
        },
        "securityContext": restricted_security_context(),
    });
    serde_json::from_value(json).unwrap_or_default()
}

/// The helper's own user (the image's USER), set explicitly so that a pod-level
/// `runAsUser: 0` (an app that must write a root-owned volume) does not make kubelet refuse
/// the helper's containers for breaking `runAsNonRoot`.
fn restricted_security_context() -> Value {
    serde_json::json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532
    })
}

/// The init container that copies the helper binary into the shared volume.
pub fn helper_init_container(image: &str) -> Container {
    // Built from JSON so the restrictive securityContext reads like the YAML it becomes.
    let json = serde_json::json!({
        "name": HELPER_INIT_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [HELPER_IMAGE_BINARY, "install", "--to", HELPER_MOUNT_PATH],
        "volumeMounts": [{"name": HELPER_VOLUME, "mountPath": HELPER_MOUNT_PATH}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"memory": "64Mi"}
        },
        "securityContext": restricted_security_context(),
    });
    serde_json::from_value(json).unwrap_or_default()
}

fn to_value(value: impl Serialize) -> Value {
    // k8s-openapi types are plain data and always serialize.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn path<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

fn add(path: PointerBuf, value: impl Serialize) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path,
        value: to_value(value),
    })
}

/// Adds `item` to the list at `list_path` unless `present` finds it there, creating the
/// list when the object has none.
fn add_to_list<T>(
    ops: &mut Vec<PatchOperation>,
    list: Option<&Vec<T>>,
    mut list_path: PointerBuf,
    present: impl Fn(&T) -> bool,
    item: impl Serialize,
) {
    match list {
        None => ops.push(add(list_path, [item])),
        Some(items) if !items.iter().any(present) => {
            list_path.push_back("-");
            ops.push(add(list_path, item));
        }
        Some(_) => {}
    }
}

/// Builds the injection patch for a labelled StatefulSet. Admitting an object that is
/// already injected yields an empty patch.
pub fn mutate(sts: &StatefulSet, ctx: &Context) -> Result<Patch, MutateError> {
    let r = resolve(sts, ctx).map_err(MutateError::Unresolved)?;
    let previous = Status::of(sts).or_else(|| ctx.old.and_then(Status::of));
    // Values no member has run with yet may be brought up to date.
    let refresh = previous.as_ref().is_some_and(|s| s.bootstrap_size == 0);
    let owned_before = |name: &str| previous.as_ref().is_some_and(|s| s.owns_env(name));

    let index = r.container.to_string();
    let container_path = |rest: &[&str]| {
        path(
            ["spec", "template", "spec", "containers", index.as_str()]
                .into_iter()
                .chain(rest.iter().copied()),
        )
    };
    let pod_path = |rest: &[&str]| {
        path(
            ["spec", "template", "spec"]
                .into_iter()
                .chain(rest.iter().copied()),
        )
    };

    let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let target = containers(sts).get(r.container).ok_or_else(|| {
        MutateError::Unresolved(vec!["the target container disappeared".to_owned()])
    })?;
    let mut ops = Vec::new();

    // Env vars.
    let desired = desired_env(&r);
    let mut owned = Vec::new();
    match &target.env {
        None => {
            owned.extend(desired.iter().map(|v| v.name.clone()));
            ops.push(add(container_path(&["env"]), &desired));
        }
        Some(existing) => {
            for var in &desired {
                match existing.iter().position(|e| e.name == var.name) {
                    None => {
                        owned.push(var.name.clone());
                        ops.push(add(container_path(&["env", "-"]), var));
                    }
                    Some(i) if owned_before(&var.name) => {
                        owned.push(var.name.clone());
                        if refresh && existing[i] != *var {
                            ops.push(PatchOperation::Replace(ReplaceOperation {
                                path: container_path(&["env", &i.to_string()]),
                                value: to_value(var),
                            }));
                        }
                    }
                    Some(_) => {} // set by the user: theirs wins
                }
            }
        }
    }

    // The helper binary: a volume, its mount in the target container, the init container.
    add_to_list(
        &mut ops,
        pod.and_then(|p| p.volumes.as_ref()),
        pod_path(&["volumes"]),
        |v| v.name == HELPER_VOLUME,
        helper_volume(),
    );
    add_to_list(
        &mut ops,
        target.volume_mounts.as_ref(),
        container_path(&["volumeMounts"]),
        |m| m.name == HELPER_VOLUME,
        helper_mount(),
    );
    let init = helper_init_container(&ctx.settings.helper_image);
    add_to_list(
        &mut ops,
        pod.and_then(|p| p.init_containers.as_ref()),
        pod_path(&["initContainers"]),
        |c| c.name == HELPER_INIT_CONTAINER,
        &init,
    );

    // Join on scale-up: etcd always, the generic flavor through its join URL.
    let is_etcd = r.flavor == super::flavor::Flavor::Etcd;
    let mut final_env = target.env.clone().unwrap_or_default();
    final_env.extend(
        desired
            .iter()
            .filter(|d| !final_env.iter().any(|e| e.name == d.name))
            .cloned()
            .collect::<Vec<_>>(),
    );
    if is_etcd || r.joins_by_url {
        let join = join_init_container(target, final_env.clone());
        let inits = pod.and_then(|p| p.init_containers.as_ref());
        match inits.and_then(|list| list.iter().position(|c| c.name == JOIN_INIT_CONTAINER)) {
            None => ops.push(add(pod_path(&["initContainers", "-"]), &join)),
            Some(i) if refresh && inits.is_some_and(|list| list[i] != join) => {
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path: pod_path(&["initContainers", &i.to_string()]),
                    value: to_value(&join),
                }));
            }
            Some(_) => {}
        }
    }

    // etcd: the reconcile sidecar, and etcd started through `member exec`.
    if is_etcd {
        // Only where nothing was injected yet: a StatefulSet injected before the sidecar
        // existed gets it when it is recreated, not on an update (that would roll every
        // member).
        let has_sidecar = |sts: &StatefulSet| {
            sts.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.init_containers.as_ref())
                .is_some_and(|list| list.iter().any(|c| c.name == RECONCILE_SIDECAR))
        };
        // (An apply that re-sends the user's manifest gets back what the stored object had.)
        let had_sidecar = ctx.old.is_some_and(has_sidecar);
        if !has_sidecar(sts) && (previous.is_none() || refresh || had_sidecar) {
            let sidecar = reconcile_sidecar(&ctx.settings.helper_image, final_env);
            ops.push(add(pod_path(&["initContainers", "-"]), &sidecar));
        }
        if let Some(command) = wrapped_command(target) {
            ops.push(add(container_path(&["command"]), command));
        }
    }

    // preStop: only when the container has none of its own.
    let pre_stop = match &target.lifecycle {
        None => {
            ops.push(add(
                container_path(&["lifecycle"]),
                Lifecycle {
                    pre_stop: Some(pre_stop_hook()),
                    ..Lifecycle::default()
                },
            ));
            true
        }
        Some(lifecycle) => match &lifecycle.pre_stop {
            None => {
                ops.push(add(
                    container_path(&["lifecycle", "preStop"]),
                    pre_stop_hook(),
                ));
                true
            }
            Some(hook) => is_injected_pre_stop(hook),
        },
    };

    // Bookkeeping.
    let status = Status {
        version: crate::VERSION.to_owned(),
        bootstrap_size: r.bootstrap_size,
        flavor: r.flavor,
        hash: injection_hash(&r, &desired, &owned, &init, pre_stop),
        env: owned,
    }
    .to_annotation();
    match &sts.metadata.annotations {
        None => ops.push(add(
            path(["metadata", "annotations"]),
            [(STATUS_ANNOTATION, &status)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )),
        Some(annotations) if annotations.get(STATUS_ANNOTATION) != Some(&status) => {
            ops.push(add(
                path(["metadata", "annotations", STATUS_ANNOTATION]),
                &status,
            ));
        }
        Some(_) => {}
    }

    Ok(Patch(ops))
}

/// SHA-256 over everything the injector puts into the pod template.
fn injection_hash(
    r: &Resolved,
    desired: &[EnvVar],
    owned: &[String],
    init: &Container,
    pre_stop: bool,
) -> String {
    let env: Vec<&EnvVar> = desired.iter().filter(|v| owned.contains(&v.name)).collect();
    // Streamed into the hash as compact JSON, byte for byte what `Value::to_string` printed
    // when this was first written (recorded hashes must not change).
    let mut hasher = HashWriter(Sha256::new());
    let material = (
        env,
        init,
        helper_volume(),
        helper_mount(),
        pre_stop,
        r.container,
    );
    // Writing plain structs into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut hasher, &material);
    let digest = hasher.0.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
