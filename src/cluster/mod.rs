//! Where the webhook reads Services and StatefulSets from: informer caches in the cluster
//! (`cache.rs`), or the documents of a file for the offline commands (`documents.rs`).

pub mod cache;
pub mod documents;
pub mod index;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;

/// Read-only lookups by namespace and name. Never a network call per request.
pub trait Lookup: Send + Sync {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    fn statefulset(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>>;
}

/// How long admission waits for an object it expects to appear in a cache. `kubectl apply`
/// of one file creates the Service and then the StatefulSet within milliseconds, before
/// the Service's watch event has arrived; waiting briefly avoids a false denial without a
/// live API call.
pub const CACHE_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Polls `find` until it yields or `grace` runs out.
pub async fn eventually<T>(
    grace: std::time::Duration,
    mut find: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        if let Some(found) = find() {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
