//! The Raft rules for a StatefulSet (SPEC §2 rules 1–6 and 8, and the warnings of §3).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, ServiceSpec};

use super::context::{Context, MissingService};
use super::env::{desired_env, is_injected_name};
use super::flavor::rules;
use super::pieces::is_injected_pre_stop;
use super::replicas;
use super::resolve::{self, containers, resolve, Resolved};
use super::status::{Recorded, Status};
use super::verdict::{clip, shown, subject, Verdict};

/// Checks a labelled StatefulSet. `ctx.old` is the stored object on UPDATE.
pub fn validate(sts: &StatefulSet, ctx: &Context) -> Verdict {
    validate_with(sts, ctx, &Recorded::of(sts, ctx.old))
}

/// [`validate`], with the status annotations of `sts` and `ctx.old` read already.
pub fn validate_with(sts: &StatefulSet, ctx: &Context, recorded: &Recorded) -> Verdict {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let mut verdict = Verdict::new(subject(ctx.namespace, name));

    let resolved = match resolve(sts, ctx, recorded) {
        Ok(resolved) => Some(resolved),
        Err(problems) => {
            verdict.violations.extend(problems);
            None
        }
    };

    check_service(sts, ctx, &mut verdict);
    check_replicas(sts, ctx, &mut verdict);
    check_pod_management(sts, &mut verdict);
    check_claim_retention(sts, &mut verdict);
    if let Some(resolved) = &resolved {
        rules::warnings(sts, resolved, ctx, &mut verdict);
    }
    if let Ok(index) = resolve::target_container(sts) {
        if let Some(container) = containers(sts).get(index) {
            let owned = recorded.new.as_ref();
            check_target_container(container, owned, resolved.as_ref(), &mut verdict);
        }
    }
    verdict.dedup();
    verdict
}

fn check_service(sts: &StatefulSet, ctx: &Context, verdict: &mut Verdict) {
    let Some(service_name) = service_name(sts) else {
        return; // reported by resolve
    };
    let Some(service) = ctx.service else {
        let missing = format!(
            "spec.serviceName is {} but Service {}/{} does not exist; members could not resolve each other's \
             names",
            shown(service_name),
            clip(ctx.namespace),
            clip(service_name)
        );
        match (ctx.dry_run, ctx.settings.missing_service) {
            (true, _) => verdict.warnings.push(format!(
                "{missing}; allowed in this dry run, where a Service applied alongside is not stored — a real \
                 apply is denied unless the Service exists"
            )),
            (false, MissingService::Deny) => verdict.violations.push(format!(
                "{missing} — create the headless Service (clusterIP: None) before the StatefulSet"
            )),
            (false, MissingService::Warn) => verdict.warnings.push(format!(
                "{missing}; allowed because the injector runs with --missing-service=warn — the cluster \
                 cannot form until the Service exists"
            )),
        }
        return;
    };
    let service_ref = format!("Service {}/{}", clip(ctx.namespace), clip(service_name));
    let empty = (ServiceSpec::default(), BTreeMap::new());
    let spec = service.spec.as_ref().unwrap_or(&empty.0);

    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    if cluster_ip != "None" {
        let shown = if cluster_ip.is_empty() {
            "unset".to_owned()
        } else {
            clip(cluster_ip)
        };
        verdict.violations.push(format!(
            "{service_ref} is not headless (spec.clusterIP is {shown}); Raft members need the per-pod DNS \
             names that only a headless Service gives — recreate the Service with clusterIP: None (the field \
             cannot be changed in place)"
        ));
    }

    let selector = spec.selector.as_ref().unwrap_or(&empty.1);
    let template_labels = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&empty.1);
    if selector.is_empty() {
        verdict.violations.push(format!(
            "{service_ref} has no spec.selector, so it publishes no DNS names for these pods — set its \
             selector to labels from spec.template.metadata.labels ({})",
            show_labels(template_labels)
        ));
    } else if !selector
        .iter()
        .all(|(k, v)| template_labels.get(k) == Some(v))
    {
        verdict.violations.push(format!(
            "{service_ref} selects {} but the pod template is labelled {}, so the Service publishes no DNS \
             names for these pods — make the Service selector a subset of spec.template.metadata.labels",
            show_labels(selector),
            show_labels(template_labels)
        ));
    }

    if spec.publish_not_ready_addresses != Some(true) {
        verdict.warnings.push(format!(
            "{service_ref} does not set spec.publishNotReadyAddresses: true; members cannot resolve each \
             other before they are Ready, so a new cluster cannot bootstrap — set it to true"
        ));
    }
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(none)".to_owned();
    }
    clip(
        &labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn check_replicas(sts: &StatefulSet, ctx: &Context, verdict: &mut Verdict) {
    let old = ctx.old.map(resolve::replicas);
    let new = resolve::replicas(sts);
    let (violations, warnings) = replicas::check(old, new, ctx.settings.max_replicas);
    verdict.violations.extend(violations);
    match old.and_then(|old| stop_deletes_volumes(sts, "spec.replicas", old, new)) {
        // "members keep their data" would be wrong here.
        Some(denial) => verdict.violations.push(denial),
        None => verdict.warnings.extend(warnings),
    }
}

/// Whether the StatefulSet controller deletes the claims of the pods it scales away.
pub fn deletes_claims_on_scale_down(sts: &StatefulSet) -> bool {
    let Some(spec) = sts.spec.as_ref() else {
        return false;
    };
    let has_claims = spec
        .volume_claim_templates
        .as_ref()
        .is_some_and(|t| !t.is_empty());
    let when_scaled = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_scaled.as_deref())
        .unwrap_or("Retain");
    has_claims && when_scaled == "Delete"
}

/// Stopping a running cluster (to 0) with `whenScaled: Delete` deletes every member's
/// volume: the cluster would come back empty (and, with the same peer URLs and token, as
/// members with the same IDs, which hides it). Denied, with the ways to stop safely.
pub fn stop_deletes_volumes(sts: &StatefulSet, field: &str, old: i32, new: i32) -> Option<String> {
    (old > 0 && new == 0 && deletes_claims_on_scale_down(sts)).then(|| {
        format!(
            "{field} is 0 while spec.persistentVolumeClaimRetentionPolicy.whenScaled is Delete; the StatefulSet \
             controller would delete the volume of every member it stops, and the Raft cluster would come back \
             empty, its data lost — to stop the cluster and keep its data, first set whenScaled: Retain \
             (raft-injector sets a returning removed member's old data aside), then scale to 0"
        )
    })
}

fn check_pod_management(sts: &StatefulSet, verdict: &mut Verdict) {
    let policy = sts
        .spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        .unwrap_or("OrderedReady");
    let has_readiness_probe = containers(sts).iter().any(|c| c.readiness_probe.is_some());
    if policy == "OrderedReady" && has_readiness_probe {
        verdict.warnings.push(
            "spec.podManagementPolicy is OrderedReady (the default) and the pod has a readiness probe; pod 0 \
             would wait to become Ready on a quorum that pods 1..n-1 are not yet allowed to provide — set \
             spec.podManagementPolicy: Parallel"
                .to_owned(),
        );
    }
}

fn check_claim_retention(sts: &StatefulSet, verdict: &mut Verdict) {
    let Some(spec) = sts.spec.as_ref() else {
        return;
    };
    // Without claim templates a removed member leaves no data behind.
    if spec
        .volume_claim_templates
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        return;
    }
    let when_scaled = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_scaled.as_deref())
        .unwrap_or("Retain");
    if when_scaled != "Delete" {
        verdict.warnings.push(format!(
            "spec.persistentVolumeClaimRetentionPolicy.whenScaled is {when_scaled}; a member removed on \
             scale-down keeps its volume, which stays allocated and comes back on a later scale-up holding a \
             removed member's data (the etcd flavor sets that data aside and joins anew; other Raft apps must \
             handle it) — set whenScaled: Delete, unless you stop the cluster with replicas: 0, which needs \
             Retain"
        ));
    }
}

fn check_target_container(
    container: &Container,
    owned: Option<&Status>,
    resolved: Option<&Resolved>,
    verdict: &mut Verdict,
) {
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref());
    if pre_stop.is_some_and(|hook| !is_injected_pre_stop(hook)) {
        verdict.warnings.push(format!(
            "container {:?} already has a preStop hook, so raft-injector does not add `member leave`; make \
             sure your hook removes the member only on scale-down, not on every restart",
            container.name
        ));
    }

    if let Some(resolved) = resolved {
        let shown = format!("{:?}", clip(&container.name));
        rules::container_warnings(resolved, container, &shown, verdict);
    }

    // Built only when the container has a var of a name the injector sets (every such name
    // is one `is_injected_name` knows).
    let mut ours = None;
    // Values no member has run with yet are refreshed by the mutation, not kept.
    let frozen = owned.is_some_and(|s| s.bootstrap_size != 0);
    let mut seen = std::collections::BTreeSet::new();
    for var in container.env.iter().flatten() {
        if !seen.insert(var.name.as_str()) || !is_injected_name(&var.name) {
            continue;
        }
        let injected = ours
            .get_or_insert_with(|| resolved.map(desired_env))
            .as_ref()
            .and_then(|ours| ours.iter().find(|o| o.name == var.name));
        let value = || {
            var.value
                .as_deref()
                .map(shown)
                .unwrap_or_else(|| "set from a field".to_owned())
        };
        if owned.is_some_and(|s| s.owns_env(&var.name)) {
            // Injected earlier: warn when it no longer holds what the injector would set,
            // because someone changed it (`kubectl set env`) or changed what it is built from.
            if let Some(injected) = injected.filter(|i| frozen && *i != var) {
                verdict.warnings.push(format!(
                    "container {:?} has env {} = {}, not the {} raft-injector would set now; injected \
                     values are kept as they are (changing them would restart every member) — if this was not \
                     deliberate, restore the injected value",
                    clip(&container.name),
                    var.name,
                    value(),
                    injected.value.as_deref().map(shown).unwrap_or_else(|| "field reference".to_owned()),
                ));
            }
            continue;
        }
        if injected.is_none() && resolved.is_some() {
            continue; // another flavor's name (KAFKA_LOG_DIRS on an etcd member)
        }
        let instead = injected
            .and_then(|i| i.value.as_deref())
            .map(|v| format!(" instead of the injected {}", shown(v)))
            .unwrap_or_default();
        verdict.warnings.push(format!(
            "container {:?} sets env {} itself; raft-injector keeps your value{instead}",
            clip(&container.name),
            var.name
        ));
    }
}

/// The Service a StatefulSet names in `spec.serviceName`, if any.
pub fn service_name(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .as_ref()?
        .service_name
        .as_deref()
        .filter(|n| !n.is_empty())
}
