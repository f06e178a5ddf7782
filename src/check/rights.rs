//! The webhook's own rights: RBAC lets its ServiceAccount update both webhook configurations
//! and create Secrets in its namespace; the shipped ValidatingAdmissionPolicy
//! `raft-injector-own-rights` narrows that to the caBundle and the certificate Secret. This
//! check says whether that policy is in place, bound to deny, and names the ServiceAccount
//! of the installation `check` found.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::{Api, Client};

use super::{bounded, Check, Options, INSTALLATION};

/// The policy's (and its binding's) name, as the manifests and the chart ship it.
pub const POLICY: &str = "raft-injector-own-rights";
const CHECK: &str = "the webhook may change only its caBundle and its Secret";
const HINT: &str =
    "re-apply the manifests (kubectl apply -k manifests) or upgrade the chart; it ships the \
                    ValidatingAdmissionPolicy raft-injector-own-rights (Kubernetes 1.30 or newer)";

pub async fn check(client: &Client, options: &Options, namespace: &str) -> Check {
    let policy = bounded(
        options.timeout,
        Api::<ValidatingAdmissionPolicy>::all(client.clone()).get_opt(POLICY),
    )
    .await;
    let binding = bounded(
        options.timeout,
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()).get_opt(POLICY),
    )
    .await;
    judge(namespace, policy, binding)
}

/// The policy and its binding as the API returned them, for the webhook in `namespace`.
pub fn judge(
    namespace: &str,
    policy: Result<Option<ValidatingAdmissionPolicy>, String>,
    binding: Result<Option<ValidatingAdmissionPolicyBinding>, String>,
) -> Check {
    let account = format!("system:serviceaccount:{namespace}:raft-injector");
    let policy = match policy {
        Err(e) => return Check::warn(INSTALLATION, CHECK, format!("cannot read ValidatingAdmissionPolicy {POLICY}: {e}")),
        Ok(None) => {
            return Check::warn(
                INSTALLATION,
                CHECK,
                format!(
                    "no ValidatingAdmissionPolicy {POLICY}: RBAC alone lets {account} rewrite both webhook \
                     configurations (rules, selectors, failurePolicy, URL) and create any Secret in {namespace}"
                ),
            )
            .hint(HINT)
        }
        Ok(Some(policy)) => policy,
    };
    let names_account = policy
        .spec
        .as_ref()
        .and_then(|s| s.match_conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.expression.contains(&format!("'{account}'")));
    if !names_account {
        return Check::warn(
            INSTALLATION,
            CHECK,
            format!("ValidatingAdmissionPolicy {POLICY} does not match {account}, the webhook's ServiceAccount"),
        )
        .hint(HINT);
    }
    let denies = match binding {
        Err(e) => {
            return Check::warn(
                INSTALLATION,
                CHECK,
                format!("cannot read ValidatingAdmissionPolicyBinding {POLICY}: {e}"),
            )
        }
        Ok(binding) => binding
            .and_then(|b| b.spec)
            .filter(|s| s.policy_name.as_deref() == Some(POLICY))
            .and_then(|s| s.validation_actions)
            .is_some_and(|actions| actions.iter().any(|a| a == "Deny")),
    };
    if !denies {
        return Check::warn(
            INSTALLATION,
            CHECK,
            format!("ValidatingAdmissionPolicy {POLICY} is not bound with validationActions [Deny]: it enforces nothing"),
        )
        .hint(HINT);
    }
    Check::pass(INSTALLATION, CHECK).detail(format!(
        "ValidatingAdmissionPolicy {POLICY} binds {account} to the caBundle and its Secret"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;

    fn shipped() -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("manifests/base/admission-policy.yaml"),
        )
        .unwrap();
        let mut docs = text.split("\n---\n");
        let policy = serde_saphyr::from_str(docs.next().unwrap()).unwrap();
        let binding = serde_saphyr::from_str(docs.next().unwrap()).unwrap();
        (policy, binding)
    }

    #[test]
    fn the_shipped_policy_passes_and_a_missing_unbound_or_foreign_one_warns() {
        let (policy, binding) = shipped();
        let ok = judge(
            "raft-injector",
            Ok(Some(policy.clone())),
            Ok(Some(binding.clone())),
        );
        assert_eq!(ok.outcome, Outcome::Pass, "{ok:?}");

        let missing = judge("raft-injector", Ok(None), Ok(None));
        assert_eq!(missing.outcome, Outcome::Warn);
        assert!(missing.detail.unwrap().contains("failurePolicy"));

        // Installed in another namespace than the policy names.
        let foreign = judge(
            "webhooks",
            Ok(Some(policy.clone())),
            Ok(Some(binding.clone())),
        );
        assert_eq!(foreign.outcome, Outcome::Warn);
        assert!(foreign
            .detail
            .unwrap()
            .contains("system:serviceaccount:webhooks:raft-injector"));

        let mut audit_only = binding;
        audit_only.spec.as_mut().unwrap().validation_actions = Some(vec!["Audit".to_owned()]);
        let unbound = judge("raft-injector", Ok(Some(policy)), Ok(Some(audit_only)));
        assert_eq!(unbound.outcome, Outcome::Warn);
        assert!(unbound.detail.unwrap().contains("enforces nothing"));
    }
}
