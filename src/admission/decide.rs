use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;
use serde::de::DeserializeOwned;

use crate::cluster::Lookup;
use crate::policy::names::is_raft_workload;
use crate::policy::scale::validate_scale;
use crate::policy::validate::service_name;
use crate::policy::{mutate, validate, Context, MutateError, Settings, Verdict};

/// The two endpoints; both see the same requests, each answers its own part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Webhook {
    /// `/mutate`: returns the injection patch, never denies on Raft rules.
    Mutate,
    /// `/validate`: denies on Raft rules, returns warnings.
    Validate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Mutate => "mutate",
            Webhook::Validate => "validate",
        }
    }
}

/// Why a well-formed review could not be decided. Each becomes a denial.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the admission request for {kind} {name} has no object")]
    MissingObject { kind: &'static str, name: String },
    #[error("the {kind} in the admission request could not be read: {source}")]
    Decode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Mutate(#[from] MutateError),
    #[error("the injection patch could not be serialized: {0}")]
    Patch(#[from] kube::core::admission::SerializePatchError),
}

fn decode<T: DeserializeOwned>(
    kind: &'static str,
    object: &DynamicObject,
) -> Result<T, AdmissionError> {
    let value =
        serde_json::to_value(object).map_err(|source| AdmissionError::Decode { kind, source })?;
    serde_json::from_value(value).map_err(|source| AdmissionError::Decode { kind, source })
}

fn object<T: DeserializeOwned>(
    kind: &'static str,
    req: &AdmissionRequest<DynamicObject>,
) -> Result<T, AdmissionError> {
    let object = req
        .object
        .as_ref()
        .ok_or_else(|| AdmissionError::MissingObject {
            kind,
            name: req.name.clone(),
        })?;
    decode(kind, object)
}

fn old_object<T: DeserializeOwned>(
    kind: &'static str,
    req: &AdmissionRequest<DynamicObject>,
) -> Result<Option<T>, AdmissionError> {
    req.old_object.as_ref().map(|o| decode(kind, o)).transpose()
}

fn with_verdict(mut response: AdmissionResponse, verdict: &Verdict) -> AdmissionResponse {
    let warnings = verdict.warning_messages();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    match verdict.denial() {
        Some(message) => forbidden(response, message),
        None => response,
    }
}

/// A denial as kubectl shows it: `Error from server (Forbidden): ... denied the request: <message>`.
fn forbidden(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut denied = response.deny(message);
    denied.result.code = 403;
    denied.result.reason = "Forbidden".to_owned();
    denied
}

/// Decides one admission request. Requests that do not concern a Raft StatefulSet are
/// allowed untouched.
pub fn decide(
    webhook: Webhook,
    req: &AdmissionRequest<DynamicObject>,
    lookup: &dyn Lookup,
    settings: &Settings,
) -> Result<AdmissionResponse, AdmissionError> {
    let response = AdmissionResponse::from(req);
    let is_statefulsets = req.resource.group == "apps" && req.resource.resource == "statefulsets";
    if !is_statefulsets || !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(response);
    }
    let namespace = req.namespace.as_deref().unwrap_or("default");

    match req.sub_resource.as_deref() {
        None => {
            let sts: StatefulSet = object("StatefulSet", req)?;
            if !is_raft_workload(&sts.metadata) {
                return Ok(response);
            }
            let old: Option<StatefulSet> = old_object("StatefulSet", req)?;
            let service = service_name(&sts).and_then(|name| lookup.service(namespace, name));
            let ctx = Context {
                namespace,
                service: service.as_deref(),
                old: old.as_ref(),
                settings,
                dry_run: req.dry_run,
            };
            let verdict = validate(&sts, &ctx);
            match webhook {
                Webhook::Validate => Ok(with_verdict(response, &verdict)),
                // An object the rules deny is left for /validate to explain, not injected.
                Webhook::Mutate if !verdict.is_allowed() => Ok(response),
                Webhook::Mutate => {
                    let patch = mutate(&sts, &ctx)?;
                    if patch.0.is_empty() {
                        Ok(response)
                    } else {
                        Ok(response.with_patch(patch)?)
                    }
                }
            }
        }
        Some("scale") if webhook == Webhook::Validate && req.operation == Operation::Update => {
            let Some(sts) = lookup.statefulset(namespace, &req.name) else {
                return Ok(response);
            };
            if !is_raft_workload(&sts.metadata) {
                return Ok(response);
            }
            let new = replicas_of(&object::<Scale>("Scale", req)?);
            let old = match old_object::<Scale>("Scale", req)? {
                Some(old) => replicas_of(&old),
                None => crate::policy::resolve::replicas(&sts),
            };
            Ok(with_verdict(
                response,
                &validate_scale(&sts, namespace, old, new, settings),
            ))
        }
        Some(_) => Ok(response),
    }
}

fn replicas_of(scale: &Scale) -> i32 {
    scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Turns a decision into the response to send: the one place where an error becomes a denial.
pub fn respond(
    req: &AdmissionRequest<DynamicObject>,
    decision: Result<AdmissionResponse, AdmissionError>,
) -> AdmissionResponse {
    decision.unwrap_or_else(|error| {
        tracing::warn!(%error, "denying a request that could not be decided");
        forbidden(
            AdmissionResponse::from(req),
            format!("raft-injector: {error}"),
        )
    })
}
