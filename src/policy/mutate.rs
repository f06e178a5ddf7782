//! The injection patch (SPEC §4): env vars, helper volume and init container, preStop hook
//! and the status annotation, as RFC 6902 operations on the object the API server sent.
//!
//! The patch only ever adds what is missing. Pieces already injected are left exactly as
//! they are, so a later change of `replicas`, an injector upgrade or a re-apply never
//! changes the pod template (which would roll every member of the cluster). The one
//! exception is a StatefulSet whose recorded bootstrap size is still 0: no member has run
//! with those values, so they are brought up to date.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, Lifecycle, Volume, VolumeMount};
use serde_json::value::RawValue;

use super::context::Context;
use super::env::desired_env;
use super::flavor::rules;
use super::names::*;
use super::patch::{under, Ops};
use super::pieces::*;
use super::resolve::{containers, resolve};
use super::status::{injection_hash, Recorded, Status};

pub use json_patch::Patch;

#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    #[error("cannot inject: {}", .0.join("; "))]
    Unresolved(Vec<String>),
    #[error("the injection patch could not be written: {0}")]
    Patch(#[source] serde_json::Error),
}

/// Builds the injection patch for a labelled StatefulSet, as operations (for the offline
/// commands and tests, which apply it); admission sends [`mutate_json`]'s bytes. Admitting
/// an object that is already injected yields an empty patch.
pub fn mutate(sts: &StatefulSet, ctx: &Context) -> Result<Patch, MutateError> {
    match mutate_json(sts, ctx)? {
        None => Ok(Patch(Vec::new())),
        Some(json) => serde_json::from_slice(&json).map_err(MutateError::Patch),
    }
}

/// The injection patch for a labelled StatefulSet as RFC 6902 JSON, or `None` when the
/// object needs no change (it is injected already).
pub fn mutate_json(sts: &StatefulSet, ctx: &Context) -> Result<Option<Vec<u8>>, MutateError> {
    mutate_json_with(sts, ctx, &Recorded::of(sts, ctx.old))
}

/// [`mutate_json`], with the status annotations of `sts` and `ctx.old` read already.
pub fn mutate_json_with(
    sts: &StatefulSet,
    ctx: &Context,
    recorded: &Recorded,
) -> Result<Option<Vec<u8>>, MutateError> {
    let r = resolve(sts, ctx, recorded).map_err(MutateError::Unresolved)?;
    let previous = recorded.previous();
    // Values no member has run with yet may be brought up to date.
    let refresh = previous.is_some_and(|s| s.bootstrap_size == 0);
    let owned_before = |name: &str| previous.is_some_and(|s| s.owns_env(name));

    let index = r.container.to_string();
    let pod_path = ["spec", "template", "spec"];
    let container_path = ["spec", "template", "spec", "containers", index.as_str()];

    let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let target = containers(sts).get(r.container).ok_or_else(|| {
        MutateError::Unresolved(vec!["the target container disappeared".to_owned()])
    })?;
    let mut ops = Ops::new();

    // Env vars, each serialized once: all into one buffer, then read back as one raw JSON
    // value per var borrowed from it (two allocations instead of a few per var).
    let desired = desired_env(&r);
    let desired_buffer = serde_json::to_string(&desired).map_err(MutateError::Patch)?;
    let desired_json: Vec<&RawValue> =
        serde_json::from_str(&desired_buffer).map_err(MutateError::Patch)?;
    let injected = |i: usize| Env::Injected(desired_json[i]);
    let mut owned = Vec::new();
    match &target.env {
        None => {
            owned.extend(desired.iter().map(|v| v.name.clone()));
            let all: Vec<Env> = (0..desired.len()).map(injected).collect();
            ops.add(under(&container_path, &["env"]), &all);
        }
        Some(existing) => {
            for (d, var) in desired.iter().enumerate() {
                match existing.iter().position(|e| e.name == var.name) {
                    None => {
                        owned.push(var.name.clone());
                        ops.add(under(&container_path, &["env", "-"]), &injected(d));
                    }
                    Some(i) if owned_before(&var.name) => {
                        owned.push(var.name.clone());
                        if refresh && existing[i] != *var {
                            let i = i.to_string();
                            ops.replace(under(&container_path, &["env", &i]), var);
                        }
                    }
                    Some(_) => {} // set by the user: theirs wins
                }
            }
        }
    }

    // The helper binary: a volume, its mount in the target container, the init container;
    // with TLS the Secret's volume and its mount too.
    let tls = r.tls_secret.is_some();
    let mut volumes = vec![(HELPER_VOLUME, helper_volume())];
    volumes.extend(r.tls_secret.as_deref().map(|s| (TLS_VOLUME, tls_volume(s))));
    ops.add_missing(
        pod.and_then(|p| p.volumes.as_ref()),
        under(&pod_path, &["volumes"]),
        |v: &Volume| v.name.as_str(),
        &volumes,
    );
    let mut mounts = vec![(HELPER_VOLUME, helper_mount())];
    if tls {
        mounts.push((TLS_VOLUME, tls_mount()));
    }
    ops.add_missing(
        target.volume_mounts.as_ref(),
        under(&container_path, &["volumeMounts"]),
        |m: &VolumeMount| m.name.as_str(),
        &mounts,
    );
    let init = helper_init_container(&ctx.settings.helper_image);
    let inits = pod.and_then(|p| p.init_containers.as_ref());
    // Where the next init container appended lands (the join container, the sidecar).
    let mut next_init = inits.map_or(0, Vec::len);
    if ops.add_to_list(
        inits,
        under(&pod_path, &["initContainers"]),
        |c| c.name == HELPER_INIT_CONTAINER,
        &init,
    ) {
        next_init += 1;
    }

    // The join container and the sidecar run with the member's whole env, which the
    // operations above have just made the target container's: each gets a `copy` of it
    // rather than a second and third copy of its JSON (a third of the patch).
    let env_path = under(&container_path, &["env"]);
    let member_env = target.env.is_some() || !desired.is_empty();
    let mut append_with_env = |ops: &mut Ops, container: &WithEnv, extra: &[EnvVar]| {
        ops.add(under(&pod_path, &["initContainers", "-"]), container);
        let index = next_init.to_string();
        if member_env {
            ops.copy(
                env_path.iter().copied(),
                under(&pod_path, &["initContainers", &index, "env"]),
            );
            for var in extra {
                ops.add(
                    under(&pod_path, &["initContainers", &index, "env", "-"]),
                    var,
                );
            }
        } else if !extra.is_empty() {
            ops.add(under(&pod_path, &["initContainers", &index, "env"]), &extra);
        }
        next_init += 1;
    };

    // What this flavor adds: the join container, the reconcile sidecar, the exec wrapper.
    let injects = rules::injects(&r);
    if injects.join_container {
        let mounts = join_mounts(target, tls);
        let data_env = rules::join_env(&r, target);
        match inits.and_then(|list| list.iter().position(|c| c.name == JOIN_INIT_CONTAINER)) {
            None => append_with_env(
                &mut ops,
                &join_init_container(target, None, &mounts),
                &data_env,
            ),
            Some(i) if refresh => {
                // Rare (injected, and no member has run yet): compared as JSON, whole.
                let mut env = final_env(target, &desired, injected, owned_before);
                env.extend(data_env.iter().map(Env::Join));
                let join = join_init_container(target, Some(&env), &mounts);
                let differs = inits.is_some_and(|list| {
                    serde_json::to_value(&list[i]).ok() != serde_json::to_value(&join).ok()
                });
                if differs {
                    let i = i.to_string();
                    ops.replace(under(&pod_path, &["initContainers", i.as_str()]), &join);
                }
            }
            Some(_) => {}
        }
    }

    if injects.reconcile_sidecar {
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
            let mut sidecar_mounts = Vec::new();
            if injects.sidecar_reads_helper_volume {
                sidecar_mounts.push(helper_mount());
            }
            if tls {
                sidecar_mounts.push(tls_mount());
            }
            let sidecar = reconcile_sidecar(
                &ctx.settings.helper_image,
                None,
                (!sidecar_mounts.is_empty()).then_some(&sidecar_mounts[..]),
            );
            append_with_env(&mut ops, &sidecar, &[]);
        }
    }
    if injects.exec_wrapper {
        if let Some(command) = wrapped_command(target, rules::default_command(r.flavor)) {
            ops.add(under(&container_path, &["command"]), &command);
        }
    }

    // preStop: only when the container has none of its own.
    let pre_stop = match &target.lifecycle {
        None => {
            ops.add(
                under(&container_path, &["lifecycle"]),
                &Lifecycle {
                    pre_stop: Some(pre_stop_hook()),
                    ..Lifecycle::default()
                },
            );
            true
        }
        Some(lifecycle) => match &lifecycle.pre_stop {
            None => {
                ops.add(
                    under(&container_path, &["lifecycle", "preStop"]),
                    &pre_stop_hook(),
                );
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
        hash: injection_hash(
            r.container,
            &desired,
            &desired_json,
            &owned,
            &init,
            pre_stop,
        ),
        env: owned,
    }
    .to_annotation();
    match &sts.metadata.annotations {
        None => ops.add(
            ["metadata", "annotations"],
            &BTreeMap::from([(STATUS_ANNOTATION, &status)]),
        ),
        Some(annotations) if annotations.get(STATUS_ANNOTATION) != Some(&status) => {
            ops.add(["metadata", "annotations", STATUS_ANNOTATION], &status);
        }
        Some(_) => {}
    }

    ops.finish().map_err(MutateError::Patch)
}

/// The member's whole env as a refreshing patch (bootstrap size still 0) leaves the target
/// container's: its own (an injected var with its new value), then the injected vars it lacks.
fn final_env<'a>(
    target: &'a Container,
    desired: &[EnvVar],
    injected: impl Fn(usize) -> Env<'a>,
    owned_before: impl Fn(&str) -> bool,
) -> Vec<Env<'a>> {
    let user_env = target.env.as_deref().unwrap_or_default();
    let injected = &injected;
    user_env
        .iter()
        .map(|e| match desired.iter().position(|d| d.name == e.name) {
            Some(d) if owned_before(&e.name) => injected(d),
            _ => Env::User(e),
        })
        .chain(
            (0..desired.len())
                .filter(|&d| !user_env.iter().any(|e| e.name == desired[d].name))
                .map(injected),
        )
        .collect()
}
