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
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, ExecAction, Lifecycle, LifecycleHandler,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::context::Context;
use super::env::desired_env;
use super::names::*;
use super::resolve::{containers, resolve, Resolved};
use super::status::{Recorded, Status};

pub use json_patch::Patch;

#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    #[error("cannot inject: {}", .0.join("; "))]
    Unresolved(Vec<String>),
    #[error("the injection patch could not be written: {0}")]
    Patch(#[source] serde_json::Error),
}

/// The preStop command the injector adds.
const LEAVE_COMMAND: [&str; 3] = [HELPER_BINARY, "member", "leave"];

/// The prefix the etcd flavor puts before the container's command.
const EXEC_PREFIX: [&str; 4] = [HELPER_BINARY, "member", "exec", "--"];

/// Whether `command` starts with `prefix`.
fn starts_with(command: &[String], prefix: &[&str]) -> bool {
    command.len() >= prefix.len() && command.iter().zip(prefix).all(|(c, p)| c == p)
}

/// The join init container: the helper, run from the shared volume inside the target's
/// image with its user, env and volumes (etcd: its data directory), adds a scaled-up member
/// to the cluster before the application starts.
fn join_init_container<'a>(
    target: &'a Container,
    env: Option<&'a [Env<'a>]>,
    mounts: &'a [VolumeMount],
) -> WithEnv<'a> {
    // The target's working directory too: etcd resolves a relative data directory there.
    WithEnv {
        command: [HELPER_BINARY, "member", "join"],
        env,
        image: target.image.as_deref(),
        image_pull_policy: target.image_pull_policy.as_deref(),
        name: JOIN_INIT_CONTAINER,
        resources: None,
        restart_policy: None,
        security_context: target.security_context.clone(),
        volume_mounts: Some(mounts),
        working_dir: target.working_dir.as_deref(),
    }
}

/// The join container's `RAFT_DATA_DIR` (and `RAFT_WAL_DIR`): where etcd in `target` keeps
/// its data, when its command line and env say so for certain. Without them the helper
/// never takes the member for one without data (see `member::join`).
fn join_data_env(target: &Container) -> Vec<EnvVar> {
    let Ok(location) = super::etcd_data::locate(target, ETCD_NAME_DEFAULT) else {
        return Vec::new();
    };
    let var = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut env = vec![var(DATA_DIR_ENV, location.data_dir)];
    env.extend(location.wal_dir.map(|dir| var(WAL_DIR_ENV, dir)));
    env
}

/// The join container's mounts: the target's, the helper volume writable, and the TLS
/// Secret when there is one.
fn join_mounts(target: &Container, tls: bool) -> Vec<VolumeMount> {
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
fn tls_volume(secret: &str) -> Volume {
    Volume {
        name: TLS_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn tls_mount() -> VolumeMount {
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
enum Env<'a> {
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
struct WithEnv<'a> {
    command: [&'a str; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<&'a [Env<'a>]>,
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
fn wrapped_command(target: &Container) -> Option<Vec<String>> {
    let command = target.command.as_deref().unwrap_or_default();
    if starts_with(command, &EXEC_PREFIX) {
        return None;
    }
    // With neither command nor args the image's own entrypoint runs: etcd's images
    // start etcd from this path. With args only, the first arg is the program.
    let rest = match (command.is_empty(), target.args.is_some()) {
        (true, false) => &[ETCD_DEFAULT_COMMAND][..],
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
            command: Some(LEAVE_COMMAND.map(str::to_owned).to_vec()),
        }),
        ..LifecycleHandler::default()
    }
}

/// The etcd flavor's native sidecar: `member reconcile` from the helper image, next to
/// every member, with the member's env so it finds its own etcd and StatefulSet.
fn reconcile_sidecar<'a>(
    image: &'a str,
    env: Option<&'a [Env<'a>]>,
    mounts: Option<&'a [VolumeMount]>,
) -> WithEnv<'a> {
    WithEnv {
        command: [HELPER_IMAGE_BINARY, "member", "reconcile"],
        env,
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
fn resources(cpu: &str) -> ResourceRequirements {
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
fn restricted_security_context() -> SecurityContext {
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
        ..SecurityContext::default()
    }
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

/// `prefix` followed by `rest`: the tokens of a JSON Pointer.
fn under<'a>(prefix: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    prefix.iter().chain(rest).copied().collect()
}

/// The patch as it is built: RFC 6902 operations written straight as JSON, each value
/// serialized once from its k8s-openapi type (no `serde_json::Value` in between).
struct Ops {
    json: Vec<u8>,
    count: usize,
    error: Option<serde_json::Error>,
}

impl Ops {
    fn new() -> Ops {
        Ops {
            // Allocated by the first operation: most UPDATEs need none.
            json: Vec::new(),
            count: 0,
            error: None,
        }
    }

    /// Appends `{"op":op,"path":<the pointer of path>,"value":value}`.
    fn push<'t>(
        &mut self,
        op: &str,
        path: impl IntoIterator<Item = &'t str>,
        value: &impl Serialize,
    ) {
        self.begin(op);
        self.json.extend_from_slice(b",\"path\":");
        let written = self.pointer(path).and_then(|()| {
            self.json.extend_from_slice(b",\"value\":");
            serde_json::to_writer(&mut self.json, value)
        });
        self.end(written);
    }

    /// Appends `{"op":"copy","from":<from>,"path":<path>}`: the value at `from`, as the
    /// operations before this one left it, copied to `path`.
    fn copy<'t, 'f>(
        &mut self,
        from: impl IntoIterator<Item = &'f str>,
        path: impl IntoIterator<Item = &'t str>,
    ) {
        self.begin("copy");
        self.json.extend_from_slice(b",\"from\":");
        let written = self.pointer(from).and_then(|()| {
            self.json.extend_from_slice(b",\"path\":");
            self.pointer(path)
        });
        self.end(written);
    }

    /// Writes `{"op":"<op>"` (the operation's other members follow).
    fn begin(&mut self, op: &str) {
        if self.count == 0 {
            self.json.reserve(4096);
            self.json.push(b'[');
        } else {
            self.json.push(b',');
        }
        self.json.extend_from_slice(b"{\"op\":\"");
        self.json.extend_from_slice(op.as_bytes());
        self.json.push(b'"');
    }

    fn end(&mut self, written: serde_json::Result<()>) {
        if let Err(error) = written {
            self.error.get_or_insert(error);
        }
        self.json.push(b'}');
        self.count += 1;
    }

    /// Writes `path` as a JSON string holding its JSON Pointer (RFC 6901), straight into the
    /// patch. Tokens are almost always plain (`spec`, `0`, `env`): those are copied whole.
    fn pointer<'t>(&mut self, path: impl IntoIterator<Item = &'t str>) -> serde_json::Result<()> {
        self.json.push(b'"');
        for token in path {
            self.json.push(b'/');
            if token
                .bytes()
                .all(|b| b >= 0x20 && !matches!(b, b'~' | b'/' | b'"' | b'\\'))
            {
                self.json.extend_from_slice(token.as_bytes());
                continue;
            }
            // `~` and `/` are escaped for the pointer, then the token for the JSON string.
            let escaped = token.replace('~', "~0").replace('/', "~1");
            let mut quoted = Vec::with_capacity(escaped.len() + 2);
            serde_json::to_writer(&mut quoted, &escaped)?;
            self.json.extend_from_slice(&quoted[1..quoted.len() - 1]);
        }
        self.json.push(b'"');
        Ok(())
    }

    fn add<'t>(&mut self, path: impl IntoIterator<Item = &'t str>, value: &impl Serialize) {
        self.push("add", path, value);
    }

    fn replace<'t>(&mut self, path: impl IntoIterator<Item = &'t str>, value: &impl Serialize) {
        self.push("replace", path, value);
    }

    /// Adds `item` to the list at `list_path` unless `present` finds it there, creating the
    /// list when the object has none. Returns whether it added.
    fn add_to_list<'t, T>(
        &mut self,
        list: Option<&Vec<T>>,
        list_path: impl IntoIterator<Item = &'t str>,
        present: impl Fn(&T) -> bool,
        item: &impl Serialize,
    ) -> bool {
        match list {
            None => self.add(list_path, &[item]),
            Some(items) if !items.iter().any(present) => {
                self.add(list_path.into_iter().chain(["-"]), item)
            }
            Some(_) => return false,
        }
        true
    }

    /// Adds each `(name, item)` whose name is not in `list` yet (creating the list when
    /// there is none); `name_of` reads an existing item's name.
    fn add_missing<'t, T, I: Serialize>(
        &mut self,
        list: Option<&Vec<T>>,
        list_path: impl IntoIterator<Item = &'t str> + Clone,
        name_of: impl Fn(&T) -> &str,
        items: &[(&str, I)],
    ) {
        let missing: Vec<&I> = items
            .iter()
            .filter(|(name, _)| !list.is_some_and(|l| l.iter().any(|t| name_of(t) == *name)))
            .map(|(_, item)| item)
            .collect();
        match list {
            None if !missing.is_empty() => self.add(list_path, &missing),
            None => {}
            Some(_) => {
                for item in missing {
                    self.add(list_path.clone().into_iter().chain(["-"]), item);
                }
            }
        }
    }

    /// The JSON Patch, or `None` when there is nothing to change.
    fn finish(mut self) -> Result<Option<Vec<u8>>, MutateError> {
        if let Some(error) = self.error {
            return Err(MutateError::Patch(error));
        }
        if self.count == 0 {
            return Ok(None);
        }
        self.json.push(b']');
        Ok(Some(self.json))
    }
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

    // Join on scale-up: etcd always, the generic flavor through its join URL.
    let is_etcd = r.flavor == super::flavor::Flavor::Etcd;
    if is_etcd || r.joins_by_url {
        let mounts = join_mounts(target, tls);
        let data_env = if is_etcd {
            join_data_env(target)
        } else {
            Vec::new()
        };
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
            let tls_mounts = [tls_mount()];
            let sidecar = reconcile_sidecar(
                &ctx.settings.helper_image,
                None,
                tls.then_some(&tls_mounts[..]),
            );
            append_with_env(&mut ops, &sidecar, &[]);
        }
        if let Some(command) = wrapped_command(target) {
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
        hash: injection_hash(&r, &desired, &desired_json, &owned, &init, pre_stop),
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

    ops.finish()
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

/// SHA-256 over everything the injector puts into the pod template.
fn injection_hash(
    r: &Resolved,
    desired: &[EnvVar],
    desired_json: &[&RawValue],
    owned: &[String],
    init: &Container,
    pre_stop: bool,
) -> String {
    let env: Vec<Env> = desired
        .iter()
        .zip(desired_json)
        .filter(|(v, _)| owned.contains(&v.name))
        .map(|(_, json)| Env::Injected(json))
        .collect();
    // Hashed as compact JSON, byte for byte what `Value::to_string` printed when this was
    // first written (recorded hashes must not change).
    let material = (
        env,
        init,
        helper_volume(),
        helper_mount(),
        pre_stop,
        r.container,
    );
    let mut hashing = Hashing::default();
    // Writing plain structs into the hasher cannot fail.
    let _ = serde_json::to_writer(&mut hashing, &material);
    let digest = hashing.finish();
    let mut hex = String::with_capacity(64);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    hex
}

/// SHA-256 of what is written, fed in blocks from a buffer on the stack: serde writes JSON
/// in many small pieces, and each would be a call into the hasher.
struct Hashing {
    hasher: Sha256,
    buffer: [u8; 512],
    len: usize,
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing {
            hasher: Sha256::new(),
            buffer: [0; 512],
            len: 0,
        }
    }
}

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.len + bytes.len() > self.buffer.len() {
            self.hasher.update(&self.buffer[..self.len]);
            self.len = 0;
        }
        if bytes.len() > self.buffer.len() {
            self.hasher.update(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Hashing {
    fn finish(mut self) -> [u8; 32] {
        self.hasher.update(&self.buffer[..self.len]);
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::{Hashing, Ops};
    use sha2::{Digest, Sha256};
    use std::io::Write;

    #[test]
    fn hashing_in_pieces_is_hashing_the_whole() {
        // Pieces that fit the buffer, fill it exactly, overflow it, and exceed it alone.
        let whole: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        for sizes in [
            &[1usize, 3, 17][..],
            &[512],
            &[511, 2, 700],
            &[1500, 1, 1499],
        ] {
            let mut hashing = Hashing::default();
            let mut at = 0;
            for &size in sizes.iter().cycle() {
                if at == whole.len() {
                    break;
                }
                let end = (at + size).min(whole.len());
                hashing.write_all(&whole[at..end]).unwrap();
                at = end;
            }
            assert_eq!(
                hashing.finish().as_slice(),
                Sha256::digest(&whole).as_slice(),
                "pieces of {sizes:?}"
            );
        }
    }

    /// The pointer as the patch holds it, read back as the JSON string it must be.
    fn pointer(tokens: &[&str]) -> String {
        let mut ops = Ops::new();
        ops.pointer(tokens.iter().copied()).expect("written");
        serde_json::from_slice(&ops.json).expect("a JSON string")
    }

    #[test]
    fn pointer_tokens_are_escaped_for_the_pointer_and_for_json() {
        assert_eq!(
            pointer(&["spec", "template", "0", "env", "-"]),
            "/spec/template/0/env/-"
        );
        assert_eq!(
            pointer(&["metadata", "annotations", "raft-injector.io/status"]),
            "/metadata/annotations/raft-injector.io~1status"
        );
        assert_eq!(pointer(&["a~b/c"]), "/a~0b~1c");
        assert_eq!(pointer(&["say \"hi\" \\ bye"]), "/say \"hi\" \\ bye");
        assert_eq!(pointer(&["tab\there", "ünïcödé"]), "/tab\there/ünïcödé");
        assert_eq!(pointer(&[]), "");
    }
}
