//! The checks of each opted-in StatefulSet: its namespace is opted in, the Raft rules hold
//! as things are now (the Service may have changed since admission), the injection matches
//! the running webhook, and the Raft member list matches `spec.replicas`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{AttachParams, ListParams};
use kube::{Api, Client};
use tokio::io::AsyncReadExt as _;

use super::install::Installation;
use super::membership::{self, Reported, Source};
use super::{bounded, Check, Options, Report};
use crate::member::formation::{self, Formation};
use crate::policy::flavor::Flavor;
use crate::policy::names::{
    HELPER_BINARY, HELPER_INIT_CONTAINER, HELPER_MOUNT_PATH, INJECTION_LABEL, RAFT_LABEL,
};
use crate::policy::status::Status;
use crate::policy::{validate, Context, Settings};

pub async fn check(
    client: &Client,
    options: &Options,
    installation: Option<&Installation>,
    opted_in: &Result<Vec<Namespace>, String>,
    report: &mut Report,
) {
    let api = match &options.namespace {
        Some(ns) => Api::<StatefulSet>::namespaced(client.clone(), ns),
        None => Api::<StatefulSet>::all(client.clone()),
    };
    let group = "Raft StatefulSets";
    let list = bounded(
        options.timeout,
        api.list(&ListParams::default().labels(&format!("{RAFT_LABEL}=true"))),
    )
    .await;
    let statefulsets = match list {
        Ok(list) => list.items,
        Err(e) => {
            report.push(Check::fail(group, "can list Raft StatefulSets", e));
            return;
        }
    };
    if statefulsets.is_empty() {
        report.push(Check::skip(
            group,
            format!("StatefulSets labelled {RAFT_LABEL}=true"),
            "none yet",
        ));
        return;
    }
    let opted_in: Option<Vec<&str>> = opted_in.as_ref().ok().map(|list| {
        list.iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect()
    });
    let settings = installation.map(|i| i.settings.clone()).unwrap_or_default();
    let version = installation.and_then(|i| i.version.as_deref());
    for sts in &statefulsets {
        let namespace = sts.metadata.namespace.clone().unwrap_or_default();
        let name = sts.metadata.name.clone().unwrap_or_default();
        let group = format!("StatefulSet {namespace}/{name}");
        if let Some(opted_in) = &opted_in {
            if !opted_in.contains(&namespace.as_str()) {
                report.push(
                    Check::warn(&group, "its namespace is opted in", format!("namespace {namespace} is not labelled {INJECTION_LABEL}=enabled: the webhook neither checks nor injects this StatefulSet"))
                        .hint(format!("kubectl label namespace {namespace} {INJECTION_LABEL}=enabled")),
                );
            }
        }
        let service = match service_of(client, options, sts, &namespace).await {
            Ok(service) => service,
            Err(e) => {
                report.push(Check::fail(
                    &group,
                    "Raft rules hold now",
                    format!("cannot read its Service: {e}"),
                ));
                continue;
            }
        };
        report.push(rules(&group, sts, &namespace, service.as_ref(), &settings));
        let status = Status::of(sts);
        report.push(injection(&group, sts, status.as_ref(), version, &settings));
        if let Some(status) = status {
            report.push(members(client, options, &group, sts, &namespace, status.flavor).await);
            let record = bounded(
                options.timeout,
                Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                    .get_opt(&formation::record_name(&name)),
            )
            .await;
            report.push(formation_recorded(&group, sts, record));
        }
    }
}

/// Whether the record that the cluster formed exists (`member::formation`): without it, a
/// member whose volume is lost while the others are down can only go by the peers' word.
pub fn formation_recorded(
    group: &str,
    sts: &StatefulSet,
    record: Result<Option<ConfigMap>, String>,
) -> Check {
    const CHECK: &str = "the cluster's formation is recorded";
    let namespace = sts.metadata.namespace.as_deref().unwrap_or_default();
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let record_name = formation::record_name(name);
    let record = match record {
        Ok(record) => record,
        Err(e) => {
            return Check::warn(
                group,
                CHECK,
                format!("cannot read ConfigMap {record_name}: {e}"),
            )
        }
    };
    let ready = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    match formation::judge(sts.metadata.uid.as_deref().unwrap_or_default(), record.as_ref()) {
        Formation::Formed { record, at, .. } => {
            Check::pass(group, CHECK).detail(format!("formed {at}, recorded in {record}"))
        }
        Formation::Unknown(why) => Check::warn(group, CHECK, why),
        Formation::NotRecorded if ready == 0 => {
            Check::skip(group, CHECK, "no member is Ready yet: not formed")
        }
        Formation::NotRecorded => Check::warn(
            group,
            CHECK,
            format!(
                "{ready} members are Ready but ConfigMap {namespace}/{record_name} does not exist: a member whose \
                 volume is lost while the others are down can then only go by the peers' word. The sidecar \
                 raft-injector-reconcile writes it at its first pass that sees a leader"
            ),
        )
        .hint(format!(
            "kubectl -n {namespace} logs {name}-0 -c raft-injector-reconcile | grep -i formation; the pods' \
             ServiceAccount needs get and create on configmaps (the raft-injector-member ClusterRole of this release)"
        )),
    }
}

async fn service_of(
    client: &Client,
    options: &Options,
    sts: &StatefulSet,
    namespace: &str,
) -> Result<Option<Service>, String> {
    let Some(name) = crate::policy::validate::service_name(sts) else {
        return Ok(None);
    };
    bounded(
        options.timeout,
        Api::<Service>::namespaced(client.clone(), namespace).get_opt(name),
    )
    .await
}

/// The Raft rules as a re-apply of the stored object would meet them now.
pub fn rules(
    group: &str,
    sts: &StatefulSet,
    namespace: &str,
    service: Option<&Service>,
    settings: &Settings,
) -> Check {
    const CHECK: &str = "Raft rules hold now";
    let ctx = Context {
        namespace,
        service,
        old: Some(sts),
        settings,
        dry_run: false,
    };
    let verdict = validate(sts, &ctx);
    if let Some(denial) = verdict.denial() {
        return Check::fail(group, CHECK, format!("its next apply would be denied: {denial}"))
            .hint("things changed since it was admitted (its Service, most often); fix what the message names");
    }
    if !verdict.warnings.is_empty() {
        return Check::warn(group, CHECK, verdict.warnings.join("\n"))
            .hint("allowed, but each warning names a way the cluster can misbehave; see README 'Warnings'");
    }
    Check::pass(group, CHECK)
}

/// Whether the injection is there and matches what the running webhook injects.
pub fn injection(
    group: &str,
    sts: &StatefulSet,
    status: Option<&Status>,
    running: Option<&str>,
    settings: &Settings,
) -> Check {
    const CHECK: &str = "injected, and up to date with the running webhook";
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let namespace = sts.metadata.namespace.as_deref().unwrap_or_default();
    let recreate = format!(
        "re-create it to inject it anew, keeping its pods and volumes: kubectl -n {namespace} delete statefulset {name} \
         --cascade=orphan, then apply it again (pods pick the change up as they restart)"
    );
    let Some(status) = status else {
        return Check::fail(group, CHECK, "labelled for raft-injector but never injected: no env, no member lifecycle (created before its namespace was opted in, or while the webhook was not called?)")
            .hint(recreate);
    };
    let mut stale = Vec::new();
    if let Some(running) = running {
        if status.version != running {
            stale.push(format!(
                "injected by raft-injector {}, the webhook runs {running}",
                status.version
            ));
        }
    }
    let helper = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.init_containers.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == HELPER_INIT_CONTAINER))
        .and_then(|c| c.image.clone());
    match helper {
        Some(image) if image != settings.helper_image => {
            stale.push(format!(
                "its helper image is {image}, the webhook injects {}",
                settings.helper_image
            ));
        }
        None => stale.push(format!(
            "its init container {HELPER_INIT_CONTAINER} is gone: member leave and join cannot run"
        )),
        Some(_) => {}
    }
    let summary = format!(
        "raft-injector {}, flavor {}, bootstrap size {}",
        status.version, status.flavor, status.bootstrap_size
    );
    if stale.is_empty() {
        Check::pass(group, format!("{CHECK} ({summary})"))
    } else {
        Check::warn(group, CHECK, stale.join("\n")).hint(format!(
            "an injection is frozen so that an upgrade never rolls a Raft cluster; to take the new one, {recreate}"
        ))
    }
}

/// Asks a running member for its member list and judges it against spec.replicas.
async fn members(
    client: &Client,
    options: &Options,
    group: &str,
    sts: &StatefulSet,
    namespace: &str,
    flavor: Flavor,
) -> Check {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let members_url = sts
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::policy::names::MEMBERS_URL_ANNOTATION))
        .filter(|_| flavor == Flavor::Generic);
    if flavor == Flavor::Generic && members_url.is_none() {
        return Check::skip(
            group,
            membership::CHECK,
            format!(
                "not checked: the generic flavor's member list is the application's, and annotation {} \
                 (where the helper reads it) is not set",
                crate::policy::names::MEMBERS_URL_ANNOTATION
            ),
        );
    }
    if replicas == 0 {
        return Check::skip(group, membership::CHECK, "stopped (spec.replicas 0)");
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut candidates = Vec::new();
    let range = crate::policy::ordinals::Members::of(sts);
    for ordinal in range.ordinals().take(3) {
        let pod_name = format!("{name}-{ordinal}");
        if let Ok(Some(pod)) = bounded(options.timeout, pods.get_opt(&pod_name)).await {
            if is_ready(&pod) {
                candidates.push(pod);
            }
        }
    }
    let settling = is_settling(sts);
    let mut last = format!(
        "no pod among {name}-{}..{} is Ready",
        range.start,
        range.start + replicas.min(3) - 1
    );
    for pod in &candidates {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(container) = helper_container(pod) else {
            last = format!("{pod_name} has no container with the helper at {HELPER_MOUNT_PATH}");
            continue;
        };
        match member_status(
            &pods,
            pod_name,
            &container,
            members_url.map(String::as_str),
            options,
        )
        .await
        {
            Ok(reported) => {
                let source = Source {
                    flavor,
                    namespace,
                    statefulset: name,
                    pod: pod_name,
                    container: &container,
                };
                return membership::judge(group, &source, range, &reported, settling);
            }
            Err(e) => last = format!("{pod_name}: {e}"),
        }
    }
    let check = Check::fail(
        group,
        membership::CHECK,
        format!("cannot read the member list: {last}"),
    );
    if settling {
        return Check::warn(group, membership::CHECK, check.detail.unwrap_or_default())
            .hint("the StatefulSet is still scaling or rolling; rerun check once it settles");
    }
    check.hint(format!(
        "run it by hand: kubectl -n {namespace} exec {name}-0 -- {HELPER_BINARY} member status; \
         reading it needs pods/exec create"
    ))
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Still scaling or rolling: the controller has not caught up with the spec.
fn is_settling(sts: &StatefulSet) -> bool {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &sts.status else {
        return true;
    };
    status.observed_generation < sts.metadata.generation
        || status.replicas != replicas
        || status.ready_replicas.unwrap_or(0) != replicas
        || status.current_revision != status.update_revision
}

/// The container that has the helper binary mounted (the injection's target container).
fn helper_container(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.containers.iter().find_map(|c| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == HELPER_MOUNT_PATH)
            .then(|| c.name.clone())
    })
}

/// `member status -o json` in `pod`, through the API server's exec.
async fn member_status(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    members_url: Option<&str>,
    options: &Options,
) -> Result<Reported, String> {
    // The members URL as this check read it: the pod may not be allowed to read it itself.
    let mut command = vec![HELPER_BINARY, "member", "status", "-o", "json"];
    if let Some(url) = members_url {
        command.extend(["--members-url", url]);
    }
    let params = AttachParams::default().container(container).stderr(false);
    let run = async {
        let mut attached = pods
            .exec(pod, command, &params)
            .await
            .map_err(|e| format!("exec: {e}"))?;
        let mut stdout = attached.stdout().ok_or("exec gave no stdout")?;
        let mut out = Vec::new();
        (&mut stdout)
            .take(membership::MAX_STATUS_BYTES + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("reading its output: {e}"))?;
        drop(stdout);
        let _ = attached.join().await;
        if out.len() as u64 > membership::MAX_STATUS_BYTES {
            return Err(format!(
                "{HELPER_BINARY} member status printed more than {} bytes; not read",
                membership::MAX_STATUS_BYTES
            ));
        }
        serde_json::from_slice::<Reported>(&out)
            .map(Reported::cleaned)
            .map_err(|e| {
                format!(
                    "{HELPER_BINARY} member status printed no status ({e}): {}",
                    membership::clean(String::from_utf8_lossy(&out).trim())
                )
            })
    };
    bounded(options.timeout, run).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;

    #[test]
    fn the_formation_record_passes_when_present_and_warns_when_missing_on_a_running_cluster() {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "etcd", "namespace": "demo", "uid": "u-1"},
            "status": {"replicas": 3, "readyReplicas": 3}
        }))
        .unwrap();
        let record: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "etcd-raft-formed", "namespace": "demo",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "etcd", "uid": "u-1"}]},
            "data": {"formed-at": "2026-12-08T00:00:00Z"}
        }))
        .unwrap();
        let present = formation_recorded("g", &sts, Ok(Some(record.clone())));
        assert_eq!(present.outcome, Outcome::Pass, "{present:?}");
        assert!(present.detail.unwrap().contains("2026-12-08T00:00:00Z"));
        let missing = formation_recorded("g", &sts, Ok(None));
        assert_eq!(missing.outcome, Outcome::Warn);
        assert!(missing.detail.unwrap().contains("demo/etcd-raft-formed"));
        assert!(missing.hint.unwrap().contains("configmaps"));
        // Another StatefulSet's record (this one was recreated): a warning that says so.
        sts.metadata.uid = Some("u-2".to_owned());
        let stale = formation_recorded("g", &sts, Ok(Some(record)));
        assert_eq!(stale.outcome, Outcome::Warn);
        assert!(stale.detail.unwrap().contains("earlier StatefulSet"));
        // Nothing Ready: not formed, nothing to say.
        sts.status.as_mut().unwrap().ready_replicas = Some(0);
        assert_eq!(
            formation_recorded("g", &sts, Ok(None)).outcome,
            Outcome::Skip
        );
    }

    fn statefulset(init_image: Option<&str>, status: Option<&Status>) -> StatefulSet {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "etcd", "namespace": "demo", "annotations": {}},
            "spec": {"selector": {}, "serviceName": "etcd", "template": {"spec": {"containers": [{"name": "etcd"}]}}}
        }))
        .unwrap();
        if let Some(image) = init_image {
            sts.spec
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .init_containers = Some(vec![k8s_openapi::api::core::v1::Container {
                name: HELPER_INIT_CONTAINER.to_owned(),
                image: Some(image.to_owned()),
                ..Default::default()
            }]);
        }
        if let Some(status) = status {
            sts.metadata.annotations.as_mut().unwrap().insert(
                crate::policy::names::STATUS_ANNOTATION.to_owned(),
                status.to_annotation(),
            );
        }
        sts
    }

    fn status(version: &str) -> Status {
        Status {
            version: version.to_owned(),
            bootstrap_size: 3,
            flavor: Flavor::Etcd,
            env: vec![],
            hash: String::new(),
        }
    }

    #[test]
    fn a_labelled_statefulset_never_injected_fails_with_the_way_to_inject_it() {
        let sts = statefulset(None, None);
        let check = injection("g", &sts, None, Some("0.1.0"), &Settings::default());
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check
            .hint
            .unwrap()
            .contains("kubectl -n demo delete statefulset etcd --cascade=orphan"));
    }

    #[test]
    fn an_injection_by_another_version_or_helper_image_is_a_warning() {
        let settings = Settings::default();
        let current = status(crate::VERSION);
        let sts = statefulset(Some(&settings.helper_image), Some(&current));
        let fine = injection("g", &sts, Some(&current), Some(crate::VERSION), &settings);
        assert_eq!(fine.outcome, Outcome::Pass, "{fine:?}");
        assert!(
            fine.name.contains("flavor etcd, bootstrap size 3"),
            "{}",
            fine.name
        );

        let old = status("0.0.9");
        let check = injection("g", &sts, Some(&old), Some(crate::VERSION), &settings);
        assert_eq!(check.outcome, Outcome::Warn);
        assert!(check
            .detail
            .unwrap()
            .contains("injected by raft-injector 0.0.9"));

        let other_image = statefulset(Some("registry.example/old:1"), Some(&current));
        let check = injection(
            "g",
            &other_image,
            Some(&current),
            Some(crate::VERSION),
            &settings,
        );
        assert_eq!(check.outcome, Outcome::Warn);
        assert!(check
            .detail
            .unwrap()
            .contains("helper image is registry.example/old:1"));
    }

    #[test]
    fn a_service_that_is_no_longer_headless_fails_the_rules_now() {
        let settings = Settings::default();
        let sts = statefulset(None, None);
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "etcd", "namespace": "demo"},
            "spec": {"clusterIP": "10.0.0.9", "selector": {"app": "etcd"}}
        }))
        .unwrap();
        let check = rules("g", &sts, "demo", Some(&service), &settings);
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.detail.unwrap().contains("is not headless"));
        let missing = rules("g", &sts, "demo", None, &settings);
        assert_eq!(missing.outcome, Outcome::Fail);
        assert!(missing.detail.unwrap().contains("does not exist"));
    }
}
