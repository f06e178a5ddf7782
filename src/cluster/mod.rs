//! Where the webhook reads Services and StatefulSets from: informer caches in the cluster
//! (`cache.rs`), or the documents of a file for the offline commands (`documents.rs`).

pub mod cache;
pub mod documents;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;

/// Read-only lookups by namespace and name. Never a network call per request.
pub trait Lookup: Send + Sync {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    fn statefulset(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>>;
}
