//! Admission end to end through kube-apiserver, with server-side dry runs that store
//! nothing: a valid Raft StatefulSet must come back injected, and one with an even replica
//! count must be denied by raft-injector's own message.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};

use super::install::Installation;
use super::{bounded, Check, Options, Report, INSTALLATION};
use crate::policy::names::{INJECTION_LABEL, PORT_ANNOTATION, RAFT_LABEL, STATUS_ANNOTATION};

const ADMITTED: &str = "a valid Raft StatefulSet is admitted and injected (server-side dry run)";
const DENIED: &str = "an even replica count is denied (server-side dry run)";

/// A small Raft StatefulSet the rules allow (its Service is missing, which a dry run only
/// warns about), or deny with `replicas: 2`.
pub fn probe(replicas: i32) -> StatefulSet {
    // The rules need a name (no generateName); a fresh one never meets an existing object.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("raft-injector-check-{nanos:08x}");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "labels": {RAFT_LABEL: "true"},
            "annotations": {PORT_ANNOTATION: "7000"}
        },
        "spec": {
            "replicas": replicas,
            "serviceName": "raft-injector-check",
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
            "selector": {"matchLabels": {"app": "raft-injector-check"}},
            "template": {
                "metadata": {"labels": {"app": "raft-injector-check"}},
                "spec": {"containers": [{"name": "app", "image": "raft-injector-check.invalid/app"}]}
            }
        }
    }))
    .unwrap_or_default()
}

/// Where the dry runs go: the `--namespace` given, if opted in, else the first opted-in
/// namespace that is not the webhook's own.
fn target_namespace(
    options: &Options,
    installation: &Installation,
    opted_in: &[Namespace],
) -> Option<String> {
    let mut usable = opted_in
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.metadata.name.as_ref())
        .filter(|n| *n != "kube-system" && Some(*n) != installation.namespace.as_ref());
    match &options.namespace {
        Some(wanted) => usable.find(|n| *n == wanted).cloned(),
        None => usable.next().cloned(),
    }
}

pub async fn check(
    client: &Client,
    options: &Options,
    installation: Option<&Installation>,
    opted_in: &Result<Vec<Namespace>, String>,
    report: &mut Report,
) {
    let Some(installation) = installation else {
        return;
    };
    let target = opted_in
        .as_ref()
        .map(|list| target_namespace(options, installation, list));
    let namespace = match target {
        Ok(Some(namespace)) => namespace,
        Ok(None) => {
            let which = match &options.namespace {
                Some(n) => format!("namespace {n} is not opted in"),
                None => "no namespace is opted in".to_owned(),
            };
            report.push(
                Check::skip(
                    INSTALLATION,
                    "admission through kube-apiserver (dry run)",
                    format!("{which}; the dry runs need one"),
                )
                .hint(format!(
                    "opt a namespace in: kubectl label namespace NAME {INJECTION_LABEL}=enabled"
                )),
            );
            return;
        }
        Err(e) => {
            report.push(Check::fail(
                INSTALLATION,
                "admission through kube-apiserver (dry run)",
                format!("cannot list namespaces: {e}"),
            ));
            return;
        }
    };
    let api = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let params = PostParams {
        dry_run: true,
        field_manager: Some("raft-injector-check".to_owned()),
    };
    let webhook_hint = "a webhook call failed: an x509 error means the caBundle does not trust the serving \
                        certificate; 'connection refused' or 'no endpoints' means no ready webhook pod; a timeout \
                        means the pods are overloaded or a NetworkPolicy blocks kube-apiserver";

    let admitted = bounded(options.timeout, api.create(&params, &probe(1))).await;
    report.push(match admitted {
        Ok(sts) => admitted_check(&sts, &namespace, installation.version.as_deref()),
        Err(e) => Check::fail(
            INSTALLATION,
            ADMITTED,
            format!("in namespace {namespace}: {e}"),
        )
        .hint(webhook_hint),
    });

    let denied = bounded(options.timeout, api.create(&params, &probe(2))).await;
    report.push(match denied {
        Err(e) if e.contains("denied the request") && e.contains("spec.replicas is 2") => {
            Check::pass(INSTALLATION, format!("{DENIED} in namespace {namespace}"))
        }
        Err(e) => Check::fail(INSTALLATION, DENIED, format!("in namespace {namespace}: {e}")).hint(webhook_hint),
        Ok(_) => Check::fail(
            INSTALLATION,
            DENIED,
            format!("a StatefulSet with 2 replicas was admitted in namespace {namespace}: the validating webhook was not called"),
        )
        .hint("check the ValidatingWebhookConfiguration's namespaceSelector and objectSelector (kubectl get validatingwebhookconfigurations -o yaml)"),
    });
}

/// The answer to the valid probe must show the injection: RAFT_ID on the container and the
/// status annotation (with the running version, when that is known).
fn admitted_check(sts: &StatefulSet, namespace: &str, version: Option<&str>) -> Check {
    let env: Vec<&str> = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.as_ref())
        .map(|env| env.iter().map(|e| e.name.as_str()).collect())
        .unwrap_or_default();
    let annotations: BTreeMap<String, String> =
        sts.metadata.annotations.clone().unwrap_or_default();
    let status = crate::policy::status::Status::of(sts);
    if !env.contains(&"RAFT_ID") || status.is_none() {
        return Check::fail(
            INSTALLATION,
            ADMITTED,
            format!(
                "admitted in namespace {namespace} but not injected (env: {:?}; {STATUS_ANNOTATION} {})",
                env,
                if annotations.contains_key(STATUS_ANNOTATION) { "unreadable" } else { "absent" }
            ),
        )
        .hint("the mutating webhook was not called: check the MutatingWebhookConfiguration's selectors and that it exists");
    }
    let recorded = status.map(|s| s.version).unwrap_or_default();
    match version {
        Some(running) if running != recorded => Check::warn(
            INSTALLATION,
            ADMITTED,
            format!("injected by raft-injector {recorded}, while the webhook pods report {running}"),
        )
        .hint("a second, older installation may be answering; kubectl get mutatingwebhookconfigurations"),
        _ => Check::pass(INSTALLATION, format!("{ADMITTED} in namespace {namespace}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;
    use crate::policy::{mutate, validate, Context, Settings};

    #[test]
    fn the_probe_is_allowed_in_a_dry_run_and_the_even_one_is_denied_by_the_rules() {
        let settings = Settings::default();
        let ctx = Context {
            namespace: "demo",
            service: None,
            old: None,
            settings: &settings,
            dry_run: true,
        };
        let verdict = validate(&probe(1), &ctx);
        assert!(verdict.is_allowed(), "{verdict:?}");
        let denial = validate(&probe(2), &ctx).denial().unwrap();
        assert!(denial.contains("spec.replicas is 2"), "{denial}");
        assert!(!mutate(&probe(1), &ctx).unwrap().is_empty());
    }

    #[test]
    fn an_answer_without_the_injection_fails_and_names_the_mutating_webhook() {
        let check = admitted_check(&probe(1), "demo", Some("0.1.0"));
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check
            .hint
            .unwrap()
            .contains("mutating webhook was not called"));
    }
}
