//! Gives the informer caches a moment to catch up before a decision that depends on an
//! object the request implies exists (see [`crate::cluster::CACHE_GRACE`]).

use std::time::Duration;

use super::{Request, Subject};
use crate::cluster::{eventually, Lookup};
use crate::policy::validate::service_name;

/// Waits, at most `grace`, until the caches hold what the request refers to: the headless
/// Service of a Raft StatefulSet, or the StatefulSet behind a `statefulsets/scale` request.
/// Returns at once when the object is already cached or the request needs nothing.
pub async fn settle(req: &Request<'_>, subject: &Subject, lookup: &dyn Lookup, grace: Duration) {
    if grace.is_zero() {
        return;
    }
    let namespace = req.namespace();
    match subject {
        Subject::StatefulSet { sts, .. } => {
            let Some(service) = service_name(sts).filter(|s| !s.is_empty()) else {
                return;
            };
            if lookup.service(namespace, service).is_none() {
                let found = eventually(grace, || lookup.service(namespace, service)).await;
                tracing::debug!(
                    service,
                    found = found.is_some(),
                    "waited for the Service cache"
                );
            }
        }
        Subject::Scale { .. } if lookup.statefulset(namespace, &req.name).is_none() => {
            let found = eventually(grace, || lookup.statefulset(namespace, &req.name)).await;
            tracing::debug!(found = found.is_some(), "waited for the StatefulSet cache");
        }
        Subject::Scale { .. } | Subject::Other => {}
    }
}
