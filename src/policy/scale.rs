//! Rules for the `statefulsets/scale` subresource (SPEC §2 rules 7–10): what
//! `kubectl scale` and autoscalers use. The Scale object carries no labels, so the caller
//! passes the StatefulSet it belongs to.

use k8s_openapi::api::apps::v1::StatefulSet;

use super::context::Settings;
use super::replicas;
use super::status::Status;
use super::verdict::{subject, Verdict};

/// Checks a change of a Raft StatefulSet's replica count from `old` to `new`.
pub fn validate_scale(
    sts: &StatefulSet,
    namespace: &str,
    old: i32,
    new: i32,
    settings: &Settings,
) -> Verdict {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let mut verdict = Verdict::new(subject(namespace, name));
    let (violations, warnings) = replicas::check(Some(old), new, settings.max_replicas);
    verdict.violations.extend(violations);
    match super::validate::stop_deletes_volumes(sts, "spec.replicas", old, new) {
        // "members keep their data" would be wrong here.
        Some(denial) => verdict.violations.push(denial),
        None => verdict.warnings.extend(warnings),
    }

    // A StatefulSet created with 0 replicas has an empty bootstrap peer list, and the scale
    // subresource cannot change the pod template to fill it in.
    let never_bootstrapped = Status::of(sts).is_some_and(|s| s.bootstrap_size == 0);
    if never_bootstrapped && new > 0 {
        verdict.violations.push(format!(
            "the StatefulSet was created with 0 replicas, so its bootstrap peer list is still empty and \
             scaling it cannot fill it in — set spec.replicas to {new} in the manifest and apply it, so \
             raft-injector records the bootstrap members"
        ));
    }
    verdict
}
