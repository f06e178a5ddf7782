//! Gives the informer caches a moment to catch up before a decision that depends on an
//! object the request implies exists (see [`crate::cluster::CACHE_GRACE`]).

use std::time::Duration;

use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::DynamicObject;

use crate::cluster::{eventually, Lookup};
use crate::policy::names::RAFT_LABEL;

/// Waits, at most `grace`, until the caches hold what `req` refers to: the headless
/// Service of a Raft StatefulSet, or the StatefulSet behind a `statefulsets/scale` request.
/// Returns at once when the object is already cached or the request needs nothing.
pub async fn settle(req: &AdmissionRequest<DynamicObject>, lookup: &dyn Lookup, grace: Duration) {
    let is_statefulsets = req.resource.group == "apps" && req.resource.resource == "statefulsets";
    if grace.is_zero()
        || !is_statefulsets
        || !matches!(req.operation, Operation::Create | Operation::Update)
    {
        return;
    }
    let namespace = req.namespace.as_deref().unwrap_or("default");
    match req.sub_resource.as_deref() {
        None => {
            let Some(object) = req.object.as_ref() else {
                return;
            };
            let labelled = object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RAFT_LABEL))
                .is_some_and(|v| v == "true");
            let service = object.data["spec"]["serviceName"]
                .as_str()
                .unwrap_or_default();
            if labelled && !service.is_empty() && lookup.service(namespace, service).is_none() {
                let found = eventually(grace, || lookup.service(namespace, service)).await;
                tracing::debug!(
                    service,
                    found = found.is_some(),
                    "waited for the Service cache"
                );
            }
        }
        Some("scale") if lookup.statefulset(namespace, &req.name).is_none() => {
            let found = eventually(grace, || lookup.statefulset(namespace, &req.name)).await;
            tracing::debug!(found = found.is_some(), "waited for the StatefulSet cache");
        }
        Some(_) => {}
    }
}
