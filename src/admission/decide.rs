use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::core::admission::Operation;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::request::{Objects, Request};
use super::wire::Response;
use crate::cluster::Lookup;
use crate::policy::admit::admit_with;
use crate::policy::names::is_raft_workload;
use crate::policy::scale::validate_scale;
use crate::policy::status::Recorded;
use crate::policy::validate::service_name;
use crate::policy::{Context, MutateError, Settings, Verdict};

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
}

fn decode<T: DeserializeOwned>(kind: &'static str, raw: &RawValue) -> Result<T, AdmissionError> {
    serde_json::from_str(raw.get()).map_err(|source| AdmissionError::Decode { kind, source })
}

/// What a request is about, decoded once from its raw objects.
pub enum Subject {
    /// Not a StatefulSet or its scale subresource being created or updated, or not a Raft
    /// workload: allowed untouched.
    Other,
    StatefulSet {
        sts: Box<StatefulSet>,
        old: Option<Box<StatefulSet>>,
    },
    /// `statefulsets/scale`: the new replica count, and the old one when the request has it.
    Scale { new: i32, old: Option<i32> },
}

/// Decodes what `req` is about, from its `objects`; only what the rules will read is decoded.
pub fn subject(
    webhook: Webhook,
    req: &Request,
    objects: Objects,
) -> Result<Subject, AdmissionError> {
    if !req.is_statefulsets() || !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(Subject::Other);
    }
    let missing = |kind| AdmissionError::MissingObject {
        kind,
        name: req.name.clone(),
    };
    let (object, old) = match objects {
        Objects::StatefulSets { object, old } => {
            (object.ok_or_else(|| missing("StatefulSet"))?, old)
        }
        Objects::Raw { object, old } => match req.sub_resource.as_deref() {
            None => {
                let slim = |decode: fn(&str) -> serde_json::Result<StatefulSet>, raw: &RawValue| {
                    decode(raw.get())
                        .map(Box::new)
                        .map_err(|source| AdmissionError::Decode {
                            kind: "StatefulSet",
                            source,
                        })
                };
                let object = object.ok_or_else(|| missing("StatefulSet"))?;
                let sts = slim(super::object::decode, object)?;
                let old = old.map(|raw| slim(super::old::decode, raw)).transpose()?;
                (sts, old)
            }
            Some("scale") if webhook == Webhook::Validate && req.operation == Operation::Update => {
                let object = object.ok_or_else(|| missing("Scale"))?;
                let new = replicas_of(&decode::<Scale>("Scale", object)?);
                let old = old
                    .map(|raw| decode::<Scale>("Scale", raw).map(|s| replicas_of(&s)))
                    .transpose()?;
                return Ok(Subject::Scale { new, old });
            }
            Some(_) => return Ok(Subject::Other),
        },
    };
    // Being deleted: only finalizers change now (garbage collection's orphan and
    // foreground finalizers are removed by an UPDATE); a denial would leave the object
    // Terminating for good, e.g. once its Service is gone.
    if !is_raft_workload(&object.metadata) || object.metadata.deletion_timestamp.is_some() {
        return Ok(Subject::Other);
    }
    Ok(Subject::StatefulSet { sts: object, old })
}

fn with_verdict(mut response: Response, verdict: &Verdict) -> Response {
    response.warnings = verdict.warning_messages();
    match verdict.denial() {
        Some(message) => response.forbid(message),
        None => response,
    }
}

/// Decides one admission request about `subject`. Requests that do not concern a Raft
/// StatefulSet are allowed untouched.
pub fn decide(
    webhook: Webhook,
    req: &Request,
    subject: &Subject,
    lookup: &dyn Lookup,
    settings: &Settings,
) -> Result<Response, AdmissionError> {
    let response = Response::allow(&req.uid);
    let namespace = req.namespace();
    match subject {
        Subject::Other => Ok(response),
        Subject::StatefulSet { sts, old } => {
            let service = service_name(sts).and_then(|name| lookup.service(namespace, name));
            let ctx = Context {
                namespace,
                service: service.as_deref(),
                old: old.as_deref(),
                settings,
                dry_run: req.dry_run,
            };
            // Both rules read the status annotations: read once.
            let recorded = Recorded::of(sts, ctx.old);
            let admission = admit_with(sts, &ctx, &recorded, webhook == Webhook::Mutate)?;
            match webhook {
                Webhook::Validate => Ok(with_verdict(response, &admission.verdict)),
                // An object the rules deny is left for /validate to explain, not injected.
                Webhook::Mutate => Ok(Response {
                    patch: admission.patch,
                    ..response
                }),
            }
        }
        Subject::Scale { new, old } => {
            let Some(sts) = lookup.statefulset(namespace, &req.name) else {
                return Ok(response);
            };
            if !is_raft_workload(&sts.metadata) {
                return Ok(response);
            }
            let old = old.unwrap_or_else(|| crate::policy::resolve::replicas(&sts));
            Ok(with_verdict(
                response,
                &validate_scale(&sts, namespace, old, *new, settings),
            ))
        }
    }
}

fn replicas_of(scale: &Scale) -> i32 {
    scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Turns a decision into the response to send: the one place where an error becomes a denial.
pub fn respond(req: &Request, decision: Result<Response, AdmissionError>) -> Response {
    decision.unwrap_or_else(|error| {
        tracing::warn!(
            uid = %req.uid,
            namespace = req.namespace(),
            name = %req.name,
            %error,
            "denying a request that could not be decided"
        );
        Response::allow(&req.uid).forbid(format!("raft-injector: {error}"))
    })
}
